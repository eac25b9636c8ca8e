//! The executors' side of loyalty actions end to end: `WatchActions` streams a team's actions
//! as they become ready (filters by state, kind and channel), a reconnect with the last token
//! delivers every later event exactly once (on another hub over the same database too), a
//! token behind the retention is OUT_OF_RANGE with the oldest usable token; and
//! `ReportActionOutcome` moves actions through their lifecycle idempotently, keeps every
//! report on the action, refuses illegal moves, and leaves failed deliveries APPROVED where
//! the SLA report finds them. The points programme: earning rules per currency with tier
//! multipliers, accrual idempotent per transaction (also when earned at once), tiers by points
//! earned (lowered by refunds, not by spending), expired lots leaving before anything spends
//! them. Every validation refusal and the scopes.

use std::collections::BTreeSet;
use std::time::Duration;

use cxhub_domain::loyalty::repo::LoyaltyRepo;
use cxhub_proto::common::v1 as common;
use cxhub_proto::feeds::v1 as feeds;
use cxhub_proto::loyalty::v1 as pb;
use cxhub_proto::loyalty::v1::loyalty_action_service_client::LoyaltyActionServiceClient;
use cxhub_testkit::{TestHub, with_token};
use pb::ActionState as S;
use prost_types::Timestamp;
use tonic::transport::Channel;
use tonic::{Code, Streaming};
use tonic_types::StatusExt;

use crate::{fields, reason, refused, rid};

type Client = LoyaltyActionServiceClient<Channel>;

const TEAM: &str = "care-lisbon";

fn in_days(days: i64) -> Option<Timestamp> {
    Some(Timestamp {
        seconds: chrono::Utc::now().timestamp() + days * 86_400,
        nanos: 0,
    })
}

fn eur(minor: i64) -> Option<common::Money> {
    Some(common::Money {
        amount_minor: minor,
        currency_code: "EUR".into(),
    })
}

/// Ingests a contact without consents and answers the hub customer id.
async fn customer(hub: &TestHub, id: &str) -> String {
    let results = feeds::feed_service_client::FeedServiceClient::new(hub.channel().await)
        .ingest_records(feeds::IngestRecordsRequest {
            records: vec![feeds::Record {
                source: "crm".into(),
                record_id: format!("contact-{id}"),
                updated_at: Some(Timestamp {
                    seconds: 1_700_000_000,
                    nanos: 0,
                }),
                customer: Some(common::SourceCustomer {
                    source_customer_id: id.to_owned(),
                    emails: Vec::new(),
                    phones: Vec::new(),
                }),
                body: Some(feeds::record::Body::Contact(feeds::Contact {
                    given_name: "Ana".into(),
                    family_name: "Silva".into(),
                    lifecycle_stage: feeds::LifecycleStage::Customer as i32,
                    ..Default::default()
                })),
            }],
        })
        .await
        .expect("ingest")
        .into_inner()
        .results;
    assert!(!results[0].customer_id.is_empty(), "{results:?}");
    results[0].customer_id.clone()
}

/// A follow-up call (needs no consent) of `team`.
fn call(customer: &str, team: &str) -> pb::ActionInput {
    pb::ActionInput {
        customer_id: customer.to_owned(),
        kind: pb::ActionKind::FollowUpCall as i32,
        reason: "NPS 3 on the delivery survey".into(),
        channel: pb::ContactChannel::Phone as i32,
        due_at: in_days(2),
        assignee_team: team.to_owned(),
        ..Default::default()
    }
}

async fn propose(c: &mut Client, action: pb::ActionInput) -> pb::Action {
    c.propose_action(pb::ProposeActionRequest {
        request_id: rid(),
        action: Some(action),
    })
    .await
    .expect("proposed")
    .into_inner()
    .action
    .expect("action")
}

async fn transition(c: &mut Client, id: &str, to: S) -> pb::Action {
    c.transition_action(pb::TransitionActionRequest {
        request_id: rid(),
        action_id: id.to_owned(),
        to_state: to as i32,
        etag: String::new(),
    })
    .await
    .expect("moved")
    .into_inner()
    .action
    .expect("action")
}

/// Proposes and approves an action; answers its id.
async fn approved(c: &mut Client, action: pb::ActionInput) -> String {
    let id = propose(c, action).await.id;
    transition(c, &id, S::Approved).await;
    id
}

async fn watch(
    c: &mut Client,
    req: pb::WatchActionsRequest,
) -> Streaming<pb::WatchActionsResponse> {
    c.watch_actions(req)
        .await
        .expect("watch accepted")
        .into_inner()
}

fn team(team: &str) -> pb::WatchActionsRequest {
    pb::WatchActionsRequest {
        assignee_team: team.to_owned(),
        ..Default::default()
    }
}

/// Reads responses until `n` events arrived (within 10 s).
async fn take(stream: &mut Streaming<pb::WatchActionsResponse>, n: usize) -> Vec<pb::ActionEvent> {
    let mut events = Vec::new();
    while events.len() < n {
        let next = tokio::time::timeout(Duration::from_secs(10), stream.message())
            .await
            .unwrap_or_else(|_| panic!("only {} of {n} events arrived: {events:?}", events.len()))
            .expect("stream healthy")
            .expect("stream open");
        events.extend(next.events);
    }
    events
}

/// Asserts no event arrives within a short while.
async fn quiet(stream: &mut Streaming<pb::WatchActionsResponse>) {
    if let Ok(next) = tokio::time::timeout(Duration::from_millis(700), stream.message()).await {
        let next = next.expect("stream healthy").expect("stream open");
        assert!(next.events.is_empty(), "unexpected events: {next:?}");
    }
}

/// (action id, from state, to state) of each event.
fn moves(events: &[pb::ActionEvent]) -> Vec<(String, S, S)> {
    events
        .iter()
        .map(|e| {
            (
                e.action.as_ref().map(|a| a.id.clone()).unwrap_or_default(),
                e.from_state(),
                e.to_state(),
            )
        })
        .collect()
}

#[tokio::test]
async fn executors_stream_their_approved_actions_and_resume_exactly_once() {
    let hub = TestHub::start().await;
    let mut c = LoyaltyActionServiceClient::new(hub.channel().await);
    let ana = customer(&hub, "ana").await;
    let mut live = watch(&mut c, team(TEAM)).await;

    let first = approved(&mut c, call(&ana, TEAM)).await;
    let _sales = approved(&mut c, call(&ana, "sales-porto")).await;
    let second = approved(&mut c, call(&ana, TEAM)).await;
    let _only_proposed = propose(&mut c, call(&ana, TEAM)).await;
    let got = take(&mut live, 2).await;
    assert_eq!(
        moves(&got),
        [
            (first.clone(), S::Proposed, S::Approved),
            (second.clone(), S::Proposed, S::Approved),
        ]
    );
    assert!(got[0].sequence < got[1].sequence);
    let event = &got[0];
    assert_eq!(event.principal, "anonymous");
    assert!(event.occurred_at.is_some());
    let action = event.action.as_ref().expect("action");
    assert_eq!(action.state, S::Approved as i32);
    assert_eq!(
        action.action.as_ref().map(|a| a.customer_id.as_str()),
        Some(ana.as_str())
    );
    quiet(&mut live).await;
    let resume_from = got[0].resume_token.clone();
    drop(live);

    // While nobody listens: a third approval, and the first action is cancelled.
    let third = approved(&mut c, call(&ana, TEAM)).await;
    transition(&mut c, &first, S::Cancelled).await;

    // Resuming after the first event delivers the second and the third, once each; the
    // first shows as it is now.
    let mut resumed = watch(
        &mut c,
        pb::WatchActionsRequest {
            resume_token: resume_from.clone(),
            ..team(TEAM)
        },
    )
    .await;
    let later = take(&mut resumed, 2).await;
    assert_eq!(
        moves(&later),
        [
            (second.clone(), S::Proposed, S::Approved),
            (third.clone(), S::Proposed, S::Approved),
        ]
    );
    quiet(&mut resumed).await;

    // Asking for cancellations too: the cancellation of the first arrives after the approvals.
    let mut with_cancels = watch(
        &mut c,
        pb::WatchActionsRequest {
            resume_token: resume_from,
            states: vec![S::Approved as i32, S::Cancelled as i32],
            ..team(TEAM)
        },
    )
    .await;
    let got = take(&mut with_cancels, 3).await;
    assert_eq!(
        moves(&got),
        [
            (second.clone(), S::Proposed, S::Approved),
            (third.clone(), S::Proposed, S::Approved),
            (first.clone(), S::Approved, S::Cancelled),
        ]
    );

    // From the oldest, proposals only: all four of the team, none of sales.
    let mut proposals = watch(
        &mut c,
        pb::WatchActionsRequest {
            from_oldest: true,
            states: vec![S::Proposed as i32],
            ..team(TEAM)
        },
    )
    .await;
    let got = take(&mut proposals, 4).await;
    assert!(
        got.iter()
            .all(|e| e.from_state() == S::Unspecified && e.to_state() == S::Proposed),
        "{got:?}"
    );
    quiet(&mut proposals).await;

    // Kinds and channels narrow: a survey invitation by e-mail is not a phone call.
    let mut calls = watch(
        &mut c,
        pb::WatchActionsRequest {
            from_oldest: true,
            kinds: vec![pb::ActionKind::FollowUpCall as i32],
            channels: vec![pb::ContactChannel::Phone as i32],
            ..team(TEAM)
        },
    )
    .await;
    assert_eq!(take(&mut calls, 3).await.len(), 3);
    quiet(&mut calls).await;
    let mut letters = watch(
        &mut c,
        pb::WatchActionsRequest {
            from_oldest: true,
            channels: vec![pb::ContactChannel::Letter as i32],
            ..team(TEAM)
        },
    )
    .await;
    quiet(&mut letters).await;
    let mut customs = watch(
        &mut c,
        pb::WatchActionsRequest {
            from_oldest: true,
            kinds: vec![pb::ActionKind::Custom as i32],
            ..team(TEAM)
        },
    )
    .await;
    quiet(&mut customs).await;
}

/// A second hub, as a second process (or a restarted one) would be: its own store over the
/// database of the first (see [`crate::loyalty::second_hub`]), and a channel to it.
async fn second_hub(hub: &TestHub, marker: &str) -> (Channel, tokio::task::JoinHandle<()>) {
    let (addr, task) = crate::loyalty::second_hub(hub, marker).await;
    let channel = Channel::from_shared(format!("http://{addr}"))
        .expect("uri")
        .connect()
        .await
        .expect("second hub");
    (channel, task)
}

/// The action ids of `events`, checking that their positions strictly increase.
fn ids_in_order(events: &[pb::ActionEvent]) -> Vec<String> {
    let seqs: Vec<i64> = events.iter().map(|e| e.sequence).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    moves(events).into_iter().map(|(id, _, _)| id).collect()
}

#[tokio::test]
async fn a_token_resumes_on_another_hub_and_concurrent_writers_never_make_events_repeat_or_skip() {
    let hub = TestHub::start().await;
    let mut a = LoyaltyActionServiceClient::new(hub.channel().await);
    let marker = format!("loop.replicas.{}", rid());
    a.create_campaign(pb::CreateCampaignRequest {
        request_id: rid(),
        campaign: Some(pb::Campaign {
            key: marker.clone(),
            name: "marker".into(),
            budget: eur(1),
            ..Default::default()
        }),
    })
    .await
    .expect("marker campaign");
    let ana = customer(&hub, "ana").await;
    let mut on_a = watch(&mut a, team(TEAM)).await;
    let first = approved(&mut a, call(&ana, TEAM)).await;
    let got = take(&mut on_a, 1).await;
    assert_eq!(moves(&got)[0].0, first);
    let token = got[0].resume_token.clone();
    drop(on_a);

    // The other hub (a replica, or this one restarted) resumes from the token.
    let (channel_b, task) = second_hub(&hub, &marker).await;
    let mut b = LoyaltyActionServiceClient::new(channel_b);
    let second = approved(&mut b, call(&ana, TEAM)).await;
    let mut on_b = watch(
        &mut b,
        pb::WatchActionsRequest {
            resume_token: token.clone(),
            ..team(TEAM)
        },
    )
    .await;
    assert_eq!(moves(&take(&mut on_b, 1).await)[0].0, second);

    // Both hubs propose and approve at once; a watcher on each sees every approval exactly
    // once, in one order.
    let mut on_a = watch(
        &mut a,
        pb::WatchActionsRequest {
            resume_token: token,
            ..team(TEAM)
        },
    )
    .await;
    let mut writers = tokio::task::JoinSet::new();
    for i in 0..20 {
        let mut c = if i % 2 == 0 { a.clone() } else { b.clone() };
        let action = call(&ana, TEAM);
        writers.spawn(async move { approved(&mut c, action).await });
    }
    let mut expected = BTreeSet::from([second.clone()]);
    while let Some(id) = writers.join_next().await {
        expected.insert(id.expect("writer"));
    }
    let from_a = ids_in_order(&take(&mut on_a, 21).await);
    assert_eq!(from_a.len(), 21);
    assert_eq!(from_a.iter().cloned().collect::<BTreeSet<_>>(), expected);
    assert_eq!(from_a[0], second);
    quiet(&mut on_a).await;
    let from_b = ids_in_order(&take(&mut on_b, 20).await);
    expected.remove(&second);
    assert_eq!(from_b.len(), 20);
    assert_eq!(from_b.iter().cloned().collect::<BTreeSet<_>>(), expected);
    assert_eq!(from_b, from_a[1..], "one order for every watcher");
    quiet(&mut on_b).await;
    task.abort();
}

#[tokio::test]
async fn a_token_behind_the_retention_is_out_of_range_with_the_oldest_token() {
    let hub = TestHub::start().await;
    let mut c = LoyaltyActionServiceClient::new(hub.channel().await);
    let ana = customer(&hub, "ana").await;
    let mut live = watch(
        &mut c,
        pb::WatchActionsRequest {
            states: vec![S::Proposed as i32, S::Approved as i32],
            ..team(TEAM)
        },
    )
    .await;
    approved(&mut c, call(&ana, TEAM)).await;
    let seen = take(&mut live, 2).await;
    // A consumer that handled the proposal but not the approval yet.
    let old = seen[0].resume_token.clone();
    let last = seen[1].resume_token.clone();
    drop(live);
    // Everything so far is pruned (as the hub does past `change_retention`).
    let pruned = hub
        .store
        .prune_action_events(chrono::Utc::now() + chrono::Duration::seconds(5))
        .await
        .expect("pruned");
    assert_eq!(pruned, 2, "the proposal and the approval");
    let status = refused(
        c.watch_actions(pb::WatchActionsRequest {
            resume_token: old,
            ..team(TEAM)
        })
        .await,
        Code::OutOfRange,
        "EVENTS_PRUNED",
    );
    let info = status.get_details_error_info().expect("error info");
    // A consumer that handled everything pruned misses nothing: its token still works.
    watch(
        &mut c,
        pb::WatchActionsRequest {
            resume_token: last,
            ..team(TEAM)
        },
    )
    .await;
    let oldest = info
        .metadata
        .get("oldest_token")
        .expect("oldest token")
        .clone();
    // The oldest token works, and so does from_oldest: both start after what was pruned.
    let mut resumed = watch(
        &mut c,
        pb::WatchActionsRequest {
            resume_token: oldest,
            ..team(TEAM)
        },
    )
    .await;
    let mut from_oldest = watch(
        &mut c,
        pb::WatchActionsRequest {
            from_oldest: true,
            ..team(TEAM)
        },
    )
    .await;
    let next = approved(&mut c, call(&ana, TEAM)).await;
    assert_eq!(moves(&take(&mut resumed, 1).await)[0].0, next);
    assert_eq!(moves(&take(&mut from_oldest, 1).await)[0].0, next);
    quiet(&mut resumed).await;
}

#[tokio::test]
async fn bad_watch_requests_are_refused_with_their_fields() {
    let hub = TestHub::start().await;
    let mut c = LoyaltyActionServiceClient::new(hub.channel().await);
    let status = refused(
        c.watch_actions(pb::WatchActionsRequest {
            assignee_team: " ".into(),
            kinds: vec![pb::ActionKind::Unspecified as i32, 99],
            channels: vec![pb::ContactChannel::Unspecified as i32],
            states: vec![S::Unspecified as i32],
            resume_token: "not-a-token".into(),
            from_oldest: true,
        })
        .await,
        Code::InvalidArgument,
        "INVALID_FIELDS",
    );
    let mut got = fields(&status);
    got.sort();
    assert_eq!(
        got,
        [
            "assignee_team",
            "channels[0]",
            "from_oldest",
            "kinds[0]",
            "kinds[1]",
            "resume_token",
            "states[0]"
        ]
    );
    let status = refused(
        c.watch_actions(pb::WatchActionsRequest {
            assignee_team: "x".repeat(101),
            ..Default::default()
        })
        .await,
        Code::InvalidArgument,
        "INVALID_FIELDS",
    );
    assert_eq!(fields(&status), ["assignee_team"]);
    // A token of the customer change feed is not one of this stream; nor is one ahead of the
    // log (from another hub).
    for token in [
        cxhub_domain::change::resume_token(0),
        cxhub_domain::loyalty::executor::event_token(1_000_000),
    ] {
        let status = refused(
            c.watch_actions(pb::WatchActionsRequest {
                resume_token: token,
                ..team(TEAM)
            })
            .await,
            Code::InvalidArgument,
            "INVALID_FIELDS",
        );
        assert_eq!(fields(&status), ["resume_token"]);
    }
}

fn report(id: &str, outcome: pb::ActionOutcomeKind) -> pb::ReportActionOutcomeRequest {
    pb::ReportActionOutcomeRequest {
        request_id: rid(),
        action_id: id.to_owned(),
        outcome: outcome as i32,
        ..Default::default()
    }
}

async fn reported(c: &mut Client, req: pb::ReportActionOutcomeRequest) -> pb::Action {
    c.report_action_outcome(req)
        .await
        .expect("reported")
        .into_inner()
        .action
        .expect("action")
}

fn amount(m: &Option<common::Money>) -> i64 {
    m.as_ref().map_or(-1, |m| m.amount_minor)
}

#[tokio::test]
async fn executors_report_outcomes_idempotently_through_the_lifecycle() {
    use pb::ActionOutcomeKind as O;
    let hub = TestHub::start().await;
    let mut c = LoyaltyActionServiceClient::new(hub.channel().await);
    let ana = customer(&hub, "ana").await;
    let promo = c
        .create_campaign(pb::CreateCampaignRequest {
            request_id: rid(),
            campaign: Some(pb::Campaign {
                key: "goodwill.loop".into(),
                name: "Goodwill".into(),
                budget: eur(10_000),
                ..Default::default()
            }),
        })
        .await
        .expect("campaign")
        .into_inner()
        .campaign
        .expect("campaign");
    let credit = pb::ActionInput {
        kind: pb::ActionKind::GoodwillCredit as i32,
        value: eur(1_500),
        campaign_id: promo.id.clone(),
        ..call(&ana, TEAM)
    };
    let id = approved(&mut c, credit).await;
    let mut sent_stream = watch(
        &mut c,
        pb::WatchActionsRequest {
            states: vec![S::Sent as i32, S::Redeemed as i32],
            ..team(TEAM)
        },
    )
    .await;

    // Sent, with the executor's reference: a retry answers the same; another report under
    // the same request id is refused.
    let sent_req = pb::ReportActionOutcomeRequest {
        external_ref: "sms-4711".into(),
        note: "voucher code sent".into(),
        ..report(&id, O::Sent)
    };
    let sent = reported(&mut c, sent_req.clone()).await;
    assert_eq!(sent.state, S::Sent as i32);
    assert_eq!(sent.outcomes.len(), 1);
    let outcome = &sent.outcomes[0];
    assert_eq!(
        (
            outcome.kind(),
            outcome.external_ref.as_str(),
            outcome.note.as_str()
        ),
        (O::Sent, "sms-4711", "voucher code sent")
    );
    assert_eq!(outcome.principal, "anonymous");
    assert!(outcome.reported_at.is_some());
    let retry = reported(&mut c, sent_req.clone()).await;
    assert_eq!(retry, sent);
    let mut reused = sent_req.clone();
    reused.external_ref = "sms-4712".into();
    refused(
        c.report_action_outcome(reused).await,
        Code::InvalidArgument,
        "REQUEST_ID_REUSED",
    );

    // Redeemed before accepted is an illegal move, with a PreconditionFailure; a failed
    // delivery of something already sent too.
    let status = refused(
        c.report_action_outcome(report(&id, O::Redeemed)).await,
        Code::FailedPrecondition,
        "ILLEGAL_TRANSITION",
    );
    assert!(status.get_details_precondition_failure().is_some());
    assert!(status.message().contains("ACCEPTED"), "{status:?}");
    let status = refused(
        c.report_action_outcome(pb::ReportActionOutcomeRequest {
            reason: "bounced".into(),
            ..report(&id, O::FailedToDeliver)
        })
        .await,
        Code::FailedPrecondition,
        "ILLEGAL_TRANSITION",
    );
    assert!(status.message().contains("APPROVED"), "{status:?}");

    // Accepted, then redeemed: the campaign spends what the approval reserved.
    reported(&mut c, report(&id, O::Accepted)).await;
    let redeemed = reported(&mut c, report(&id, O::Redeemed)).await;
    assert_eq!(redeemed.state, S::Redeemed as i32);
    let kinds: Vec<O> = redeemed.outcomes.iter().map(|o| o.kind()).collect();
    assert_eq!(kinds, [O::Sent, O::Accepted, O::Redeemed]);
    let moves_made: Vec<(i32, i32)> = redeemed
        .history
        .iter()
        .map(|t| (t.from_state, t.to_state))
        .collect();
    assert_eq!(
        moves_made,
        [
            (S::Proposed as i32, S::Approved as i32),
            (S::Approved as i32, S::Sent as i32),
            (S::Sent as i32, S::Accepted as i32),
            (S::Accepted as i32, S::Redeemed as i32),
        ]
    );
    let budget = c
        .get_campaign(pb::GetCampaignRequest {
            lookup: Some(pb::get_campaign_request::Lookup::Id(promo.id.clone())),
        })
        .await
        .expect("campaign")
        .into_inner()
        .campaign
        .expect("campaign");
    assert_eq!(
        (amount(&budget.reserved), amount(&budget.spent)),
        (0, 1_500)
    );
    let shown = c
        .get_action(pb::GetActionRequest { id: id.clone() })
        .await
        .expect("get")
        .into_inner()
        .action
        .expect("action");
    assert_eq!(shown.outcomes, redeemed.outcomes);
    // The moves the reports made are on the stream of whoever asked for them.
    let streamed = take(&mut sent_stream, 2).await;
    assert_eq!(
        moves(&streamed),
        [
            (id.clone(), S::Approved, S::Sent),
            (id.clone(), S::Accepted, S::Redeemed),
        ]
    );

    // A failed delivery keeps the action APPROVED; past its due time the SLA report lists it.
    let late = approved(
        &mut c,
        pb::ActionInput {
            due_at: Some(Timestamp {
                seconds: chrono::Utc::now().timestamp() - 3_600,
                nanos: 0,
            }),
            ..call(&ana, "care-late")
        },
    )
    .await;
    let on_time = approved(&mut c, call(&ana, "care-late")).await;
    let failed = reported(
        &mut c,
        pb::ReportActionOutcomeRequest {
            reason: "nobody answered".into(),
            ..report(&late, O::FailedToDeliver)
        },
    )
    .await;
    assert_eq!(failed.state, S::Approved as i32);
    assert!(failed.sla_breached);
    assert_eq!(failed.outcomes[0].reason, "nobody answered");
    let breached = c
        .list_actions(pb::ListActionsRequest {
            assignee_team: "care-late".into(),
            sla_breached_only: true,
            ..Default::default()
        })
        .await
        .expect("list")
        .into_inner()
        .actions;
    let ids: Vec<&str> = breached.iter().map(|a| a.id.as_str()).collect();
    assert_eq!(ids, [late.as_str()]);
    assert!(!ids.contains(&on_time.as_str()));
    // Tried again, it is sent: no longer breached.
    let sent_late = reported(&mut c, report(&late, O::Sent)).await;
    assert!(!sent_late.sla_breached);
    assert_eq!(sent_late.outcomes.len(), 2);
}

#[tokio::test]
async fn bad_reports_are_refused_with_their_fields() {
    use pb::ActionOutcomeKind as O;
    let hub = TestHub::start().await;
    let mut c = LoyaltyActionServiceClient::new(hub.channel().await);
    let status = refused(
        c.report_action_outcome(pb::ReportActionOutcomeRequest {
            request_id: String::new(),
            action_id: "nope".into(),
            outcome: O::Unspecified as i32,
            reason: String::new(),
            external_ref: "r".repeat(257),
            note: "n".repeat(2_001),
        })
        .await,
        Code::InvalidArgument,
        "INVALID_FIELDS",
    );
    let mut got = fields(&status);
    got.sort();
    assert_eq!(
        got,
        ["action_id", "external_ref", "note", "outcome", "request_id"]
    );
    let status = refused(
        c.report_action_outcome(report(
            "01900000-0000-7000-8000-000000000009",
            O::FailedToDeliver,
        ))
        .await,
        Code::InvalidArgument,
        "INVALID_FIELDS",
    );
    assert_eq!(fields(&status), ["reason"]);
    let status = refused(
        c.report_action_outcome(report("01900000-0000-7000-8000-000000000009", O::Sent))
            .await,
        Code::NotFound,
        "ACTION_NOT_FOUND",
    );
    assert_eq!(reason(&status), "ACTION_NOT_FOUND");
}

#[tokio::test]
async fn watching_needs_the_read_scope_and_reporting_the_write_scope() {
    let hub = TestHub::builder()
        .token("dash:loyalty:read:read-secret")
        .token("exec:loyalty:read+loyalty:write:write-secret")
        .start()
        .await;
    let mut c = LoyaltyActionServiceClient::new(hub.channel().await);
    let req = || {
        report(
            "01900000-0000-7000-8000-000000000009",
            pb::ActionOutcomeKind::Sent,
        )
    };
    let denied = c
        .report_action_outcome(with_token(req(), "read-secret"))
        .await;
    assert_eq!(
        denied.expect_err("read scope").code(),
        Code::PermissionDenied
    );
    let no_token = c.watch_actions(team(TEAM)).await;
    assert_eq!(
        no_token.expect_err("no token").code(),
        Code::Unauthenticated
    );
    c.watch_actions(with_token(team(TEAM), "read-secret"))
        .await
        .expect("the read scope may watch");
    let write = c
        .report_action_outcome(with_token(req(), "write-secret"))
        .await;
    assert_eq!(write.expect_err("unknown action").code(), Code::NotFound);
}

fn rule(currency: &str, points_per_unit: i32) -> pb::EarningRule {
    pb::EarningRule {
        currency_code: currency.to_owned(),
        points_per_unit,
        ..Default::default()
    }
}

fn tier(name: &str, min_points_earned: i64) -> pb::Tier {
    pb::Tier {
        name: name.to_owned(),
        min_points_earned,
        window_days: 365,
    }
}

fn earn(customer: &str, transaction: &str, minor: i64) -> pb::EarnPointsRequest {
    pb::EarnPointsRequest {
        customer_id: customer.to_owned(),
        transaction_id: transaction.to_owned(),
        amount: eur(minor),
    }
}

async fn earned(c: &mut Client, req: pb::EarnPointsRequest) -> pb::EarnPointsResponse {
    c.earn_points(req).await.expect("earned").into_inner()
}

async fn balance_of(c: &mut Client, customer: &str) -> pb::GetPointsBalanceResponse {
    c.get_points_balance(pb::GetPointsBalanceRequest {
        customer_id: customer.to_owned(),
        recent_entries: 100,
    })
    .await
    .expect("balance")
    .into_inner()
}

#[tokio::test]
async fn the_points_programme_earns_by_currency_and_tier_idempotently_per_transaction() {
    let hub = TestHub::start().await;
    let mut c = LoyaltyActionServiceClient::new(hub.channel().await);
    let ana = customer(&hub, "ana").await;
    refused(
        c.get_points_programme(pb::GetPointsProgrammeRequest {})
            .await,
        Code::NotFound,
        "POINTS_PROGRAMME_NOT_FOUND",
    );
    refused(
        c.earn_points(earn(&ana, "order-0", 1_000)).await,
        Code::FailedPrecondition,
        "NO_EARNING_RULE",
    );

    // Every invalid field at once.
    let mut gold_bad = rule("EUR", 1);
    gold_bad
        .tier_multiplier_percent
        .insert("Gold".into(), 2_000);
    let status = refused(
        c.set_points_programme(pb::SetPointsProgrammeRequest {
            request_id: rid(),
            programme: Some(pb::PointsProgramme {
                earning_rules: vec![rule("EUR", 0), gold_bad],
                expiry_months: -1,
                tiers: vec![
                    pb::Tier {
                        name: "gold".into(),
                        min_points_earned: 0,
                        window_days: 0,
                    },
                    tier("gold", 1),
                ],
                version: 3,
                updated_at: None,
            }),
        })
        .await,
        Code::InvalidArgument,
        "INVALID_FIELDS",
    );
    let got: BTreeSet<String> = fields(&status).into_iter().collect();
    let want: BTreeSet<String> = [
        "programme.earning_rules[0].points_per_unit",
        "programme.earning_rules[1].currency_code",
        "programme.earning_rules[1].tier_multiplier_percent[Gold]",
        "programme.expiry_months",
        "programme.tiers[0].min_points_earned",
        "programme.tiers[0].window_days",
        "programme.tiers[1].name",
        "programme.version",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect();
    assert_eq!(got, want);

    // 10 points per euro, ×1.5 for gold; points expire after 12 months; silver at 1,000
    // points earned in a year, gold at 2,000.
    let mut eur_rule = rule("EUR", 10);
    eur_rule.tier_multiplier_percent.insert("gold".into(), 150);
    let programme = pb::PointsProgramme {
        earning_rules: vec![eur_rule],
        expiry_months: 12,
        tiers: vec![tier("silver", 1_000), tier("gold", 2_000)],
        ..Default::default()
    };
    let set = c
        .set_points_programme(pb::SetPointsProgrammeRequest {
            request_id: rid(),
            programme: Some(programme.clone()),
        })
        .await
        .expect("set")
        .into_inner()
        .programme
        .expect("programme");
    assert_eq!(set.version, 1);
    assert_eq!(set.earning_rules, programme.earning_rules);
    assert_eq!(set.tiers, programme.tiers);
    let read = c
        .get_points_programme(pb::GetPointsProgrammeRequest {})
        .await
        .expect("get")
        .into_inner()
        .programme
        .expect("programme");
    assert_eq!(read, set);

    // 12.34 EUR earns 123 points (fractions never), expiring in a year.
    let first = earned(&mut c, earn(&ana, "order-1", 1_234)).await;
    let entry = first.entry.clone().expect("entry");
    assert_eq!((entry.points, first.balance), (123, 123));
    assert_eq!(entry.source_ref, "order-1");
    assert_eq!(entry.request_id, "earn:order-1");
    let expires = entry.expires_at.as_ref().expect("expiry").seconds;
    assert!(expires > chrono::Utc::now().timestamp() + 360 * 86_400);
    // Idempotent per transaction: again, the same answer; another amount is refused.
    assert_eq!(earned(&mut c, earn(&ana, "order-1", 1_234)).await, first);
    refused(
        c.earn_points(earn(&ana, "order-1", 9_999)).await,
        Code::InvalidArgument,
        "REQUEST_ID_REUSED",
    );
    refused(
        c.earn_points(pb::EarnPointsRequest {
            amount: Some(common::Money {
                amount_minor: 1_000,
                currency_code: "USD".into(),
            }),
            ..earn(&ana, "order-usd", 0)
        })
        .await,
        Code::FailedPrecondition,
        "NO_EARNING_RULE",
    );
    refused(
        c.earn_points(earn(&ana, "order-tiny", 5)).await,
        Code::FailedPrecondition,
        "NO_POINTS_EARNED",
    );
    assert_eq!(balance_of(&mut c, &ana).await.tier, "");

    // Tiers follow points earned in the window: silver, then gold, whose multiplier applies.
    earned(&mut c, earn(&ana, "order-2", 10_000)).await;
    assert_eq!(balance_of(&mut c, &ana).await.tier, "silver");
    earned(&mut c, earn(&ana, "order-3", 10_000)).await;
    assert_eq!(balance_of(&mut c, &ana).await.tier, "gold");
    let boosted = earned(&mut c, earn(&ana, "order-4", 1_000)).await;
    assert_eq!(boosted.entry.map(|e| e.points), Some(150));
    assert_eq!(boosted.balance, 123 + 1_000 + 1_000 + 150);

    // Spending points does not lower the tier; a refund (reversal) does: order-3 earned
    // nothing after all.
    c.redeem_points(pb::RedeemPointsRequest {
        request_id: rid(),
        customer_id: ana.clone(),
        points: 500,
        source_ref: "voucher-1".into(),
    })
    .await
    .expect("redeemed");
    assert_eq!(balance_of(&mut c, &ana).await.tier, "gold");
    c.reverse_points(pb::ReversePointsRequest {
        request_id: rid(),
        customer_id: ana.clone(),
        source_ref: "order-3".into(),
        points: 1_000,
    })
    .await
    .expect("reversed");
    let after = balance_of(&mut c, &ana).await;
    assert_eq!(after.tier, "silver");
    assert_eq!(after.balance, 2_273 - 500 - 1_000);

    // Replacing the programme bumps its version.
    let again = c
        .set_points_programme(pb::SetPointsProgrammeRequest {
            request_id: rid(),
            programme: Some(programme),
        })
        .await
        .expect("set again")
        .into_inner()
        .programme
        .expect("programme");
    assert_eq!(again.version, 2);

    // The same transaction earned from many callers at once posts once.
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let mut c = c.clone();
        let ana = ana.clone();
        tasks.spawn(async move { earned(&mut c, earn(&ana, "order-race", 2_000)).await });
    }
    let mut answers = BTreeSet::new();
    while let Some(answer) = tasks.join_next().await {
        let answer = answer.expect("task");
        answers.insert(format!("{:?}", answer.entry));
    }
    assert_eq!(answers.len(), 1, "{answers:?}");
    let entries = balance_of(&mut c, &ana).await.entries;
    assert_eq!(
        entries
            .iter()
            .filter(|e| e.source_ref == "order-race")
            .count(),
        1
    );
}

#[tokio::test]
async fn bad_earnings_are_refused_with_their_fields() {
    let hub = TestHub::start().await;
    let mut c = LoyaltyActionServiceClient::new(hub.channel().await);
    let status = refused(
        c.earn_points(pb::EarnPointsRequest {
            customer_id: "nope".into(),
            transaction_id: "order 1".into(),
            amount: None,
        })
        .await,
        Code::InvalidArgument,
        "INVALID_FIELDS",
    );
    let mut got = fields(&status);
    got.sort();
    assert_eq!(got, ["amount", "customer_id", "transaction_id"]);
    let status = refused(
        c.earn_points(pb::EarnPointsRequest {
            customer_id: "01900000-0000-7000-8000-000000000001".into(),
            transaction_id: "x".repeat(124),
            amount: Some(common::Money {
                amount_minor: 0,
                currency_code: "EURO".into(),
            }),
        })
        .await,
        Code::InvalidArgument,
        "INVALID_FIELDS",
    );
    let mut got = fields(&status);
    got.sort();
    assert_eq!(
        got,
        [
            "amount.amount_minor",
            "amount.currency_code",
            "transaction_id"
        ]
    );
}

#[tokio::test]
async fn expired_points_leave_the_balance_oldest_first_before_anything_spends_them() {
    use sea_orm::ConnectionTrait;
    let hub = TestHub::start().await;
    let mut c = LoyaltyActionServiceClient::new(hub.channel().await);
    let marker = format!("loop.expiry.{}", rid());
    c.create_campaign(pb::CreateCampaignRequest {
        request_id: rid(),
        campaign: Some(pb::Campaign {
            key: marker.clone(),
            name: "marker".into(),
            budget: eur(1),
            ..Default::default()
        }),
    })
    .await
    .expect("marker campaign");
    c.set_points_programme(pb::SetPointsProgrammeRequest {
        request_id: rid(),
        programme: Some(pb::PointsProgramme {
            earning_rules: vec![rule("EUR", 10)],
            expiry_months: 12,
            ..Default::default()
        }),
    })
    .await
    .expect("programme");
    let ana = customer(&hub, "ana").await;
    earned(&mut c, earn(&ana, "order-old", 1_000)).await;
    earned(&mut c, earn(&ana, "order-new", 1_000)).await;

    // A year goes by for the first order's points: its stored expiry is moved to the past.
    let mut options = sea_orm::ConnectOptions::new(hub.settings.database_url.clone());
    if let Some(schema) = crate::loyalty::current_schema(&marker).await {
        options.set_schema_search_path(schema);
    }
    let db = sea_orm::Database::connect(options).await.expect("raw db");
    let backend = db.get_database_backend();
    let placeholder = |n: usize| match backend {
        sea_orm::DbBackend::Postgres => format!("${n}"),
        _ => "?".to_owned(),
    };
    let posted: chrono::DateTime<chrono::Utc> = db
        .query_one_raw(sea_orm::Statement::from_sql_and_values(
            backend,
            format!(
                "SELECT posted_at FROM loyalty_point_entries WHERE request_id = {}",
                placeholder(1)
            ),
            [sea_orm::Value::String(Some("earn:order-old".into()))],
        ))
        .await
        .expect("entry")
        .expect("the first order's entry")
        .try_get("", "posted_at")
        .expect("posted_at");
    // Just after it was earned: already in the past.
    let past = posted + chrono::Duration::milliseconds(1);
    db.execute_raw(sea_orm::Statement::from_sql_and_values(
        backend,
        format!(
            "UPDATE loyalty_point_entries SET expires_at = {} WHERE request_id = {}",
            placeholder(1),
            placeholder(2)
        ),
        [
            sea_orm::Value::ChronoDateTimeUtc(Some(past)),
            sea_orm::Value::String(Some("earn:order-old".into())),
        ],
    ))
    .await
    .expect("moved the expiry");

    // The balance no longer counts them, and they cannot be spent.
    assert_eq!(balance_of(&mut c, &ana).await.balance, 100);
    let redeem = |points: i64| pb::RedeemPointsRequest {
        request_id: rid(),
        customer_id: ana.clone(),
        points,
        source_ref: String::new(),
    };
    refused(
        c.redeem_points(redeem(150)).await,
        Code::FailedPrecondition,
        "INSUFFICIENT_POINTS",
    );
    let spent = c
        .redeem_points(redeem(60))
        .await
        .expect("redeemed")
        .into_inner();
    assert_eq!(spent.balance, 40);
    // The expiry was posted as its own entry, before the redemption.
    let entries = balance_of(&mut c, &ana).await.entries;
    let kinds: Vec<(pb::PointsEntryKind, i64)> =
        entries.iter().map(|e| (e.kind(), e.points)).collect();
    assert_eq!(
        kinds,
        [
            (pb::PointsEntryKind::Redemption, -60),
            (pb::PointsEntryKind::Expiry, -100),
            (pb::PointsEntryKind::Accrual, 100),
            (pb::PointsEntryKind::Accrual, 100),
        ]
    );
    assert_eq!(balance_of(&mut c, &ana).await.balance, 40);
}
