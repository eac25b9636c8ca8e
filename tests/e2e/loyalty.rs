//! Loyalty actions end to end: the lifecycle with its history and etags, illegal moves, the
//! guard rails (consent, caps, erased, unknown and merged customers), campaign budgets that
//! concurrent approvals (on one hub and on two hubs over one database) never overspend, the
//! points ledger (idempotency, never negative under concurrent redemptions, reversals), every
//! validation refusal and the scopes.

use std::collections::BTreeSet;
use std::net::SocketAddr;

use cxhub_proto::common::v1 as common;
use cxhub_proto::feeds::v1 as feeds;
use cxhub_proto::loyalty::v1 as pb;
use cxhub_proto::loyalty::v1::loyalty_action_service_client::LoyaltyActionServiceClient;
use cxhub_proto::profile::v1 as profile;
use cxhub_testkit::{TestHub, with_token};
use prost_types::Timestamp;
use tonic::Code;
use tonic::transport::Channel;

use crate::{fields, reason, refused, rid};

type Client = LoyaltyActionServiceClient<Channel>;

const T0: i64 = 1_700_000_000;

fn ts(seconds: i64) -> Option<Timestamp> {
    Some(Timestamp { seconds, nanos: 0 })
}

fn in_days(days: i64) -> Option<Timestamp> {
    ts(chrono::Utc::now().timestamp() + days * 86_400)
}

fn eur(minor: i64) -> Option<common::Money> {
    Some(common::Money {
        amount_minor: minor,
        currency_code: "EUR".into(),
    })
}

/// A contact record of `customer` in the CRM, with marketing consent on e-mail when
/// `marketing` is true.
fn contact(id: &str, emails: &[&str], marketing: bool, version: i64) -> feeds::Record {
    feeds::Record {
        source: "crm".into(),
        record_id: format!("contact-{id}"),
        updated_at: ts(T0 + version),
        customer: Some(common::SourceCustomer {
            source_customer_id: id.to_owned(),
            emails: emails.iter().map(|e| (*e).to_owned()).collect(),
            phones: Vec::new(),
        }),
        body: Some(feeds::record::Body::Contact(feeds::Contact {
            given_name: "Ana".into(),
            family_name: "Silva".into(),
            preferred_language: "pt-PT".into(),
            consents: if marketing {
                vec![feeds::Consent {
                    purpose: feeds::ConsentPurpose::Marketing as i32,
                    channel: feeds::ConsentChannel::Email as i32,
                    status: feeds::ConsentStatus::Granted as i32,
                    given_at: ts(T0),
                }]
            } else {
                Vec::new()
            },
            lifecycle_stage: feeds::LifecycleStage::Customer as i32,
            ..Default::default()
        })),
    }
}

/// Ingests a contact and answers the hub customer id.
async fn customer_on(
    channel: Channel,
    id: &str,
    emails: &[&str],
    marketing: bool,
    version: i64,
) -> String {
    let results = feeds::feed_service_client::FeedServiceClient::new(channel)
        .ingest_records(feeds::IngestRecordsRequest {
            records: vec![contact(id, emails, marketing, version)],
        })
        .await
        .expect("ingest")
        .into_inner()
        .results;
    assert!(!results[0].customer_id.is_empty(), "{results:?}");
    results[0].customer_id.clone()
}

async fn customer(hub: &TestHub, id: &str, marketing: bool) -> String {
    customer_on(hub.channel().await, id, &[], marketing, 1).await
}

fn input(customer: &str, kind: pb::ActionKind, channel: pb::ContactChannel) -> pb::ActionInput {
    pb::ActionInput {
        customer_id: customer.to_owned(),
        kind: kind as i32,
        reason: "NPS 3 on the delivery survey".into(),
        channel: channel as i32,
        due_at: in_days(2),
        assignee_team: "care-lisbon".into(),
        ..Default::default()
    }
}

async fn propose(c: &mut Client, action: pb::ActionInput) -> Result<pb::Action, tonic::Status> {
    c.propose_action(pb::ProposeActionRequest {
        request_id: rid(),
        action: Some(action),
    })
    .await
    .map(|r| r.into_inner().action.expect("action"))
}

async fn transition(
    c: &mut Client,
    id: &str,
    to: pb::ActionState,
) -> Result<pb::Action, tonic::Status> {
    c.transition_action(pb::TransitionActionRequest {
        request_id: rid(),
        action_id: id.to_owned(),
        to_state: to as i32,
        etag: String::new(),
    })
    .await
    .map(|r| r.into_inner().action.expect("action"))
}

async fn campaign(c: &mut Client, key: &str, budget: i64) -> pb::Campaign {
    c.create_campaign(pb::CreateCampaignRequest {
        request_id: rid(),
        campaign: Some(pb::Campaign {
            key: key.into(),
            name: format!("Campaign {key}"),
            budget: eur(budget),
            ..Default::default()
        }),
    })
    .await
    .expect("campaign created")
    .into_inner()
    .campaign
    .expect("campaign")
}

async fn get_campaign(c: &mut Client, id: &str) -> pb::Campaign {
    c.get_campaign(pb::GetCampaignRequest {
        lookup: Some(pb::get_campaign_request::Lookup::Id(id.to_owned())),
    })
    .await
    .expect("campaign")
    .into_inner()
    .campaign
    .expect("campaign")
}

fn amount(m: &Option<common::Money>) -> i64 {
    m.as_ref().map_or(-1, |m| m.amount_minor)
}

#[tokio::test]
async fn an_action_moves_through_its_lifecycle_with_history_etags_and_budget() {
    use pb::ActionState as S;
    let hub = TestHub::start().await;
    let mut c = LoyaltyActionServiceClient::new(hub.channel().await);
    let ana = customer(&hub, "ana", true).await;
    let promo = campaign(&mut c, "winback.q4", 10_000).await;

    let mut offer = input(
        &ana,
        pb::ActionKind::RetentionOffer,
        pb::ContactChannel::Email,
    );
    offer.value = eur(2_500);
    offer.campaign_id = promo.id.clone();
    offer.rule_id = "retention-high-churn".into();
    offer.rule_version = 3;
    let request = pb::ProposeActionRequest {
        request_id: rid(),
        action: Some(offer.clone()),
    };
    let proposed = c
        .propose_action(request.clone())
        .await
        .expect("proposed")
        .into_inner()
        .action
        .expect("action");
    assert_eq!(proposed.state, S::Proposed as i32);
    assert_eq!(proposed.action.as_ref().map(|a| a.rule_version), Some(3));
    assert!(proposed.history.is_empty());
    // A retry answers the first result; another payload under the same id is refused.
    let again = c.propose_action(request.clone()).await.expect("retry");
    assert_eq!(again.into_inner().action, Some(proposed.clone()));
    let mut reused = request.clone();
    if let Some(a) = reused.action.as_mut() {
        a.reason = "something else".into();
    }
    refused(
        c.propose_action(reused).await,
        Code::InvalidArgument,
        "REQUEST_ID_REUSED",
    );

    // Illegal moves name the legal ones, with a PreconditionFailure detail.
    let status = refused(
        transition(&mut c, &proposed.id, S::Sent).await,
        Code::FailedPrecondition,
        "ILLEGAL_TRANSITION",
    );
    assert!(
        status.message().contains("APPROVED, CANCELLED"),
        "{status:?}"
    );
    use tonic_types::StatusExt;
    assert!(status.get_details_precondition_failure().is_some());
    // A stale etag aborts.
    let stale = c
        .transition_action(pb::TransitionActionRequest {
            request_id: rid(),
            action_id: proposed.id.clone(),
            to_state: S::Approved as i32,
            etag: "r0".into(),
        })
        .await;
    refused(stale, Code::Aborted, "ETAG_MISMATCH");

    let approved = c
        .transition_action(pb::TransitionActionRequest {
            request_id: rid(),
            action_id: proposed.id.clone(),
            to_state: S::Approved as i32,
            etag: proposed.etag.clone(),
        })
        .await
        .expect("approved")
        .into_inner()
        .action
        .expect("action");
    assert_ne!(approved.etag, proposed.etag);
    let budget = get_campaign(&mut c, &promo.id).await;
    assert_eq!(
        (amount(&budget.reserved), amount(&budget.spent)),
        (2_500, 0)
    );

    for to in [S::Sent, S::Accepted, S::Redeemed] {
        transition(&mut c, &proposed.id, to).await.expect("moved");
    }
    let done = c
        .get_action(pb::GetActionRequest {
            id: proposed.id.clone(),
        })
        .await
        .expect("get")
        .into_inner()
        .action
        .expect("action");
    assert_eq!(done.state, S::Redeemed as i32);
    let moves: Vec<(i32, i32)> = done
        .history
        .iter()
        .map(|t| (t.from_state, t.to_state))
        .collect();
    assert_eq!(
        moves,
        [
            (S::Proposed as i32, S::Approved as i32),
            (S::Approved as i32, S::Sent as i32),
            (S::Sent as i32, S::Accepted as i32),
            (S::Accepted as i32, S::Redeemed as i32),
        ]
    );
    assert!(
        done.history
            .iter()
            .all(|t| t.principal == "anonymous" && t.at.is_some())
    );
    let budget = get_campaign(&mut c, &promo.id).await;
    assert_eq!(
        (amount(&budget.reserved), amount(&budget.spent)),
        (0, 2_500)
    );
    let status = refused(
        transition(&mut c, &proposed.id, S::Cancelled).await,
        Code::FailedPrecondition,
        "ILLEGAL_TRANSITION",
    );
    assert!(status.message().contains("REDEEMED is final"), "{status:?}");

    // A campaign's actions are worth something, in the budget's currency.
    let mut usd = input(
        &ana,
        pb::ActionKind::GoodwillCredit,
        pb::ContactChannel::Phone,
    );
    usd.campaign_id = promo.id.clone();
    usd.value = Some(common::Money {
        amount_minor: 100,
        currency_code: "USD".into(),
    });
    let status = refused(
        propose(&mut c, usd.clone()).await,
        Code::InvalidArgument,
        "CURRENCY_MISMATCH",
    );
    assert_eq!(fields(&status), ["action.value.currency_code"]);
    usd.value = None;
    let status = refused(
        propose(&mut c, usd).await,
        Code::InvalidArgument,
        "INVALID_FIELDS",
    );
    assert_eq!(fields(&status), ["action.value"]);
    refused(
        c.get_action(pb::GetActionRequest {
            id: "01900000-0000-7000-8000-000000000009".into(),
        })
        .await,
        Code::NotFound,
        "ACTION_NOT_FOUND",
    );

    // A cancelled approval gives its reservation back.
    let apology = input(
        &ana,
        pb::ActionKind::GoodwillCredit,
        pb::ContactChannel::Phone,
    );
    let credit = propose(
        &mut c,
        pb::ActionInput {
            value: eur(1_000),
            campaign_id: promo.id.clone(),
            ..apology
        },
    )
    .await
    .expect("proposed");
    transition(&mut c, &credit.id, S::Approved)
        .await
        .expect("approved");
    assert_eq!(
        amount(&get_campaign(&mut c, &promo.id).await.reserved),
        1_000
    );
    transition(&mut c, &credit.id, S::Cancelled)
        .await
        .expect("cancelled");
    let budget = get_campaign(&mut c, &promo.id).await;
    assert_eq!(
        (amount(&budget.reserved), amount(&budget.spent)),
        (0, 2_500)
    );
}

#[tokio::test]
async fn guard_rails_refuse_without_consent_over_caps_and_for_erased_or_unknown_customers() {
    let hub = TestHub::start().await;
    let mut c = LoyaltyActionServiceClient::new(hub.channel().await);
    let ana = customer(&hub, "ana", true).await;
    let rui = customer(&hub, "rui", false).await;

    // No marketing consent: no retention offer, but a follow-up call is a service contact.
    let status = refused(
        propose(
            &mut c,
            input(
                &rui,
                pb::ActionKind::RetentionOffer,
                pb::ContactChannel::Email,
            ),
        )
        .await,
        Code::FailedPrecondition,
        "NOT_ELIGIBLE",
    );
    assert!(status.message().contains("CONSENT_MISSING"), "{status:?}");
    propose(
        &mut c,
        input(
            &rui,
            pb::ActionKind::FollowUpCall,
            pb::ContactChannel::Phone,
        ),
    )
    .await
    .expect("service contacts need no consent");
    // Consent on e-mail does not cover SMS.
    refused(
        propose(
            &mut c,
            input(
                &ana,
                pb::ActionKind::RetentionOffer,
                pb::ContactChannel::Sms,
            ),
        )
        .await,
        Code::FailedPrecondition,
        "NOT_ELIGIBLE",
    );

    // One retention offer per 90 days, even declined; a cancelled one does not count.
    let first = propose(
        &mut c,
        input(
            &ana,
            pb::ActionKind::RetentionOffer,
            pb::ContactChannel::Email,
        ),
    )
    .await
    .expect("first offer");
    let status = refused(
        propose(
            &mut c,
            input(
                &ana,
                pb::ActionKind::RetentionOffer,
                pb::ContactChannel::Email,
            ),
        )
        .await,
        Code::FailedPrecondition,
        "NOT_ELIGIBLE",
    );
    assert!(status.message().contains("FREQUENCY_CAP"), "{status:?}");
    transition(&mut c, &first.id, pb::ActionState::Cancelled)
        .await
        .expect("cancelled");
    let second = propose(
        &mut c,
        input(
            &ana,
            pb::ActionKind::RetentionOffer,
            pb::ContactChannel::Email,
        ),
    )
    .await
    .expect("a cancelled offer frees the cap");

    // Unknown customers are not found; erased ones are never targeted, not even for service.
    refused(
        propose(
            &mut c,
            input(
                "01900000-0000-7000-8000-000000000001",
                pb::ActionKind::Apology,
                pb::ContactChannel::Phone,
            ),
        )
        .await,
        Code::NotFound,
        "CUSTOMER_NOT_FOUND",
    );
    let mut privacy = profile::customer_privacy_service_client::CustomerPrivacyServiceClient::new(
        hub.channel().await,
    );
    privacy
        .erase_customer(profile::EraseCustomerRequest {
            request_id: rid(),
            customer_id: ana.clone(),
        })
        .await
        .expect("erased");
    let status = refused(
        propose(
            &mut c,
            input(&ana, pb::ActionKind::Apology, pb::ContactChannel::Phone),
        )
        .await,
        Code::FailedPrecondition,
        "NOT_ELIGIBLE",
    );
    assert!(status.message().contains("CUSTOMER_ERASED"), "{status:?}");
    // An action proposed before the erasure cannot be approved after it.
    let status = refused(
        transition(&mut c, &second.id, pb::ActionState::Approved).await,
        Code::FailedPrecondition,
        "NOT_ELIGIBLE",
    );
    assert!(status.message().contains("CUSTOMER_ERASED"), "{status:?}");
}

#[tokio::test]
async fn a_merged_id_acts_on_the_survivor_and_lists_follow_merges_and_filters() {
    let hub = TestHub::start().await;
    let channel = hub.channel().await;
    let mut c = LoyaltyActionServiceClient::new(channel.clone());
    let a = customer_on(channel.clone(), "m1", &[], true, 1).await;
    let b = customer_on(channel.clone(), "m2", &["same@mail.pt"], true, 1).await;
    let before = propose(
        &mut c,
        input(&b, pb::ActionKind::Apology, pb::ContactChannel::Email),
    )
    .await
    .expect("on b");
    // m1 gets b's e-mail: the two merge.
    let survivor = customer_on(channel.clone(), "m1", &["same@mail.pt"], true, 2).await;
    assert!(survivor == a || survivor == b);
    let absorbed = if survivor == a { &b } else { &a };
    let after = propose(
        &mut c,
        input(
            absorbed,
            pb::ActionKind::FollowUpCall,
            pb::ContactChannel::Phone,
        ),
    )
    .await
    .expect("on the absorbed id");
    assert_eq!(
        after.action.as_ref().map(|x| x.customer_id.as_str()),
        Some(survivor.as_str())
    );

    let lister = c.clone();
    let list = |filter: pb::ListActionsRequest| {
        let mut c = lister.clone();
        async move { c.list_actions(filter).await.expect("list").into_inner() }
    };
    let ids = |r: &pb::ListActionsResponse| -> Vec<String> {
        r.actions.iter().map(|a| a.id.clone()).collect()
    };
    let all = list(pb::ListActionsRequest {
        customer_id: survivor.clone(),
        ..Default::default()
    })
    .await;
    assert_eq!(ids(&all), [before.id.clone(), after.id.clone()]);
    // Pages of one: stable tokens, bound to the filters.
    let first = list(pb::ListActionsRequest {
        customer_id: survivor.clone(),
        page_size: 1,
        ..Default::default()
    })
    .await;
    assert_eq!(ids(&first), [before.id.as_str()]);
    let rest = list(pb::ListActionsRequest {
        customer_id: survivor.clone(),
        page_size: 1,
        page_token: first.next_page_token.clone(),
        ..Default::default()
    })
    .await;
    assert_eq!(ids(&rest), [after.id.as_str()]);
    let wrong = c
        .list_actions(pb::ListActionsRequest {
            kind: pb::ActionKind::Apology as i32,
            page_token: first.next_page_token.clone(),
            ..Default::default()
        })
        .await;
    assert_eq!(
        fields(&refused(wrong, Code::InvalidArgument, "INVALID_FIELDS")),
        ["page_token"]
    );
    let calls = list(pb::ListActionsRequest {
        kind: pb::ActionKind::FollowUpCall as i32,
        assignee_team: "care-lisbon".into(),
        ..Default::default()
    })
    .await;
    assert_eq!(ids(&calls), [after.id.as_str()]);
    let cancelled = transition(&mut c, &before.id, pb::ActionState::Cancelled)
        .await
        .expect("cancelled");
    let by_state = list(pb::ListActionsRequest {
        state: pb::ActionState::Cancelled as i32,
        ..Default::default()
    })
    .await;
    assert_eq!(ids(&by_state), [cancelled.id.as_str()]);
    // Overdue: an action due in the past, still PROPOSED.
    let mut late = input(
        &survivor,
        pb::ActionKind::ServiceRecovery,
        pb::ContactChannel::Phone,
    );
    late.due_at = ts(T0);
    let late = propose(&mut c, late).await.expect("late");
    assert!(late.sla_breached);
    let overdue = list(pb::ListActionsRequest {
        sla_breached_only: true,
        ..Default::default()
    })
    .await;
    assert_eq!(ids(&overdue), [late.id.as_str()]);
}

#[tokio::test]
async fn concurrent_approvals_never_overspend_a_budget() {
    let hub = TestHub::start().await;
    let mut c = LoyaltyActionServiceClient::new(hub.channel().await);
    let promo = campaign(&mut c, "goodwill.storm", 5_000).await;
    let mut ids = Vec::new();
    for i in 0..16 {
        let who = customer(&hub, &format!("g{i}"), false).await;
        let mut credit = input(
            &who,
            pb::ActionKind::GoodwillCredit,
            pb::ContactChannel::Email,
        );
        credit.value = eur(1_000);
        credit.campaign_id = promo.id.clone();
        ids.push(propose(&mut c, credit).await.expect("proposed").id);
    }
    let mut approvals = tokio::task::JoinSet::new();
    for id in ids {
        let mut c = c.clone();
        approvals.spawn(async move { transition(&mut c, &id, pb::ActionState::Approved).await });
    }
    let (mut ok, mut exhausted) = (0, 0);
    while let Some(result) = approvals.join_next().await {
        match result.expect("task") {
            Ok(_) => ok += 1,
            Err(status) => {
                assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
                assert_eq!(reason(&status), "BUDGET_EXHAUSTED");
                exhausted += 1;
            }
        }
    }
    assert_eq!((ok, exhausted), (5, 11));
    let budget = get_campaign(&mut c, &promo.id).await;
    assert_eq!(
        (amount(&budget.reserved), amount(&budget.spent)),
        (5_000, 0)
    );
}

/// A second hub, as a second process would be: its own store (own pools) over the database of
/// the first.
pub(crate) async fn second_hub(
    hub: &TestHub,
    marker: &str,
) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let args = cxhub::ServeArgs {
        database_url: Some(hub.settings.database_url.clone()),
        listen: Some(SocketAddr::from(([127, 0, 0, 1], 0))),
        ..Default::default()
    };
    let settings = args.resolve().expect("settings");
    let schema = current_schema(marker).await;
    let store = cxhub::open_store(
        &hub.settings.database_url,
        cxhub_store::StoreOptions {
            schema,
            ..Default::default()
        },
    )
    .await
    .expect("second store");
    let listener = tokio::net::TcpListener::bind(settings.listen)
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let task = tokio::spawn(async move {
        let _ = cxhub::serve_on(&settings, store, listener, std::future::pending()).await;
    });
    (addr, task)
}

/// The PostgreSQL schema of the hub's store (`None` on SQLite), found through the campaign
/// with `marker` as its key, which the test wrote.
pub(crate) async fn current_schema(marker: &str) -> Option<String> {
    use sea_orm::ConnectionTrait;
    let url = std::env::var("CXHUB_TEST_POSTGRES_URL").ok()?;
    let db = sea_orm::Database::connect(url.as_str())
        .await
        .expect("connect");
    let rows = db
        .query_all_raw(sea_orm::Statement::from_string(
            sea_orm::DbBackend::Postgres,
            "SELECT table_schema FROM information_schema.tables WHERE table_name = 'loyalty_campaigns'",
        ))
        .await
        .expect("schemas");
    let mut found = Vec::new();
    for row in rows {
        let schema: String = row.try_get("", "table_schema").expect("schema");
        let probe = db
            .query_one_raw(sea_orm::Statement::from_string(
                sea_orm::DbBackend::Postgres,
                format!("SELECT 1 AS x FROM \"{schema}\".loyalty_campaigns WHERE key = '{marker}'"),
            ))
            .await
            .ok()
            .flatten();
        if probe.is_some() {
            found.push(schema);
        }
    }
    assert_eq!(
        found.len(),
        1,
        "exactly one schema holds the campaign {marker}: {found:?}"
    );
    found.pop()
}

/// A connection to the hub's database (its schema on PostgreSQL), for checks behind the API.
async fn raw_db(hub: &TestHub, marker: &str) -> sea_orm::DatabaseConnection {
    let url = hub.settings.database_url.clone();
    let mut options = sea_orm::ConnectOptions::new(url);
    if let Some(schema) = current_schema(marker).await {
        options.set_schema_search_path(schema);
    }
    sea_orm::Database::connect(options)
        .await
        .expect("raw connection")
}

#[tokio::test]
async fn two_hubs_on_one_database_never_overspend_nor_overdraw() {
    let hub = TestHub::start().await;
    let mut a = LoyaltyActionServiceClient::new(hub.channel().await);
    // A key of this run only: schemas of earlier runs may be left behind.
    let marker = format!("two.hubs.{}", rid());
    let promo = campaign(&mut a, &marker, 3_000).await;
    let (addr, task) = second_hub(&hub, &marker).await;
    let channel_b = Channel::from_shared(format!("http://{addr}"))
        .expect("uri")
        .connect()
        .await
        .expect("second hub");
    let b = LoyaltyActionServiceClient::new(channel_b);
    let mut ids = Vec::new();
    for i in 0..10 {
        let who = customer(&hub, &format!("t{i}"), false).await;
        let mut credit = input(
            &who,
            pb::ActionKind::GoodwillCredit,
            pb::ContactChannel::Email,
        );
        credit.value = eur(1_000);
        credit.campaign_id = promo.id.clone();
        ids.push(propose(&mut a, credit).await.expect("proposed").id);
    }
    // The second hub sees the first one's campaign: one database.
    let mut b_reader = b.clone();
    assert_eq!(get_campaign(&mut b_reader, &promo.id).await.key, marker);
    let mut approvals = tokio::task::JoinSet::new();
    for (i, id) in ids.into_iter().enumerate() {
        let mut c = if i % 2 == 0 { a.clone() } else { b.clone() };
        approvals.spawn(async move { transition(&mut c, &id, pb::ActionState::Approved).await });
    }
    let mut approved = 0;
    while let Some(result) = approvals.join_next().await {
        match result.expect("task") {
            Ok(_) => approved += 1,
            Err(status) => assert_eq!(reason(&status), "BUDGET_EXHAUSTED", "{status:?}"),
        }
    }
    assert_eq!(approved, 3);
    assert_eq!(
        amount(&get_campaign(&mut a, &promo.id).await.reserved),
        3_000
    );

    // Points: 100 earned, 20 redemptions of 10 through both hubs at once: exactly 10 pass.
    let ana = customer(&hub, "points-ana", false).await;
    a.accrue_points(pb::AccruePointsRequest {
        request_id: rid(),
        customer_id: ana.clone(),
        points: 100,
        source_ref: "order-1".into(),
        expires_at: None,
    })
    .await
    .expect("accrued");
    let mut redemptions = tokio::task::JoinSet::new();
    for i in 0..20 {
        let mut c = if i % 2 == 0 { a.clone() } else { b.clone() };
        let ana = ana.clone();
        redemptions.spawn(async move {
            c.redeem_points(pb::RedeemPointsRequest {
                request_id: rid(),
                customer_id: ana,
                points: 10,
                source_ref: String::new(),
            })
            .await
        });
    }
    let mut passed = 0;
    while let Some(result) = redemptions.join_next().await {
        match result.expect("task") {
            Ok(_) => passed += 1,
            Err(status) => assert_eq!(reason(&status), "INSUFFICIENT_POINTS", "{status:?}"),
        }
    }
    assert_eq!(passed, 10);
    let balance = a
        .get_points_balance(pb::GetPointsBalanceRequest {
            customer_id: ana,
            recent_entries: 100,
        })
        .await
        .expect("balance")
        .into_inner();
    assert_eq!((balance.balance, balance.entries.len()), (0, 11));
    task.abort();
}

#[tokio::test]
async fn the_ledger_is_idempotent_never_negative_and_reverses_within_the_accrual() {
    let hub = TestHub::start().await;
    let mut c = LoyaltyActionServiceClient::new(hub.channel().await);
    let ana = customer(&hub, "ledger-ana", false).await;
    let accrue = pb::AccruePointsRequest {
        request_id: rid(),
        customer_id: ana.clone(),
        points: 500,
        source_ref: "order-7".into(),
        expires_at: in_days(365),
    };
    let first = c
        .accrue_points(accrue.clone())
        .await
        .expect("accrued")
        .into_inner();
    assert_eq!(first.balance, 500);
    let retry = c
        .accrue_points(accrue.clone())
        .await
        .expect("retry")
        .into_inner();
    assert_eq!(retry, first, "a retry answers the first result");
    let reused = c
        .accrue_points(pb::AccruePointsRequest {
            points: 501,
            ..accrue.clone()
        })
        .await;
    assert_eq!(
        fields(&refused(reused, Code::InvalidArgument, "REQUEST_ID_REUSED")),
        ["request_id"]
    );
    // The same id on another RPC is another entry: refused too.
    let cross = c
        .redeem_points(pb::RedeemPointsRequest {
            request_id: accrue.request_id.clone(),
            customer_id: ana.clone(),
            points: 1,
            source_ref: String::new(),
        })
        .await;
    refused(cross, Code::InvalidArgument, "REQUEST_ID_REUSED");

    let over = c
        .redeem_points(pb::RedeemPointsRequest {
            request_id: rid(),
            customer_id: ana.clone(),
            points: 501,
            source_ref: String::new(),
        })
        .await;
    refused(over, Code::FailedPrecondition, "INSUFFICIENT_POINTS");
    let spent = c
        .redeem_points(pb::RedeemPointsRequest {
            request_id: rid(),
            customer_id: ana.clone(),
            points: 400,
            source_ref: "voucher-1".into(),
        })
        .await
        .expect("redeemed")
        .into_inner();
    assert_eq!(spent.balance, 100);
    // A refund of the whole order: 500 wanted back, 100 there, 400 short.
    refused(
        c.reverse_points(pb::ReversePointsRequest {
            request_id: rid(),
            customer_id: ana.clone(),
            source_ref: "order-7".into(),
            points: 501,
        })
        .await,
        Code::FailedPrecondition,
        "REVERSAL_EXCEEDS_ACCRUAL",
    );
    let reversed = c
        .reverse_points(pb::ReversePointsRequest {
            request_id: rid(),
            customer_id: ana.clone(),
            source_ref: "order-7".into(),
            points: 500,
        })
        .await
        .expect("reversed")
        .into_inner();
    let entry = reversed.entry.expect("entry");
    assert_eq!(
        (entry.points, entry.shortfall, reversed.balance),
        (-100, 400, 0)
    );
    let balance = c
        .get_points_balance(pb::GetPointsBalanceRequest {
            customer_id: ana.clone(),
            recent_entries: 2,
        })
        .await
        .expect("balance")
        .into_inner();
    let kinds: Vec<i32> = balance.entries.iter().map(|e| e.kind).collect();
    assert_eq!(balance.balance, 0);
    assert_eq!(
        kinds,
        [
            pb::PointsEntryKind::Reversal as i32,
            pb::PointsEntryKind::Redemption as i32
        ]
    );

    // Concurrent redemptions on one hub never overdraw.
    c.accrue_points(pb::AccruePointsRequest {
        request_id: rid(),
        customer_id: ana.clone(),
        points: 50,
        source_ref: "order-8".into(),
        expires_at: None,
    })
    .await
    .expect("accrued");
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..12 {
        let mut c = c.clone();
        let ana = ana.clone();
        tasks.spawn(async move {
            c.redeem_points(pb::RedeemPointsRequest {
                request_id: rid(),
                customer_id: ana,
                points: 10,
                source_ref: String::new(),
            })
            .await
            .is_ok()
        });
    }
    let mut passed = 0;
    while let Some(ok) = tasks.join_next().await {
        passed += usize::from(ok.expect("task"));
    }
    assert_eq!(passed, 5);

    // Double entry, behind the API: two legs per entry, each entry's legs sum to zero, the
    // customer's legs sum to the balance.
    let marker = format!("ledger.marker.{}", rid());
    campaign(&mut c, &marker, 0).await;
    let db = raw_db(&hub, &marker).await;
    use sea_orm::ConnectionTrait;
    let one = |sql: String| {
        let db = db.clone();
        async move {
            let row = db
                .query_one_raw(sea_orm::Statement::from_string(
                    db.get_database_backend(),
                    sql,
                ))
                .await
                .expect("query")
                .expect("row");
            row.try_get::<i64>("", "n").expect("n")
        }
    };
    let entries = one("SELECT COUNT(*) AS n FROM loyalty_point_entries".into()).await;
    assert_eq!(entries, 9, "2 accruals, 6 redemptions, 1 reversal");
    assert_eq!(
        one("SELECT COUNT(*) AS n FROM loyalty_point_legs".into()).await,
        2 * entries
    );
    assert_eq!(
        one(
            "SELECT COUNT(*) AS n FROM (SELECT entry_id FROM loyalty_point_legs \
             GROUP BY entry_id HAVING SUM(points) <> 0) unbalanced"
                .into()
        )
        .await,
        0
    );
    assert_eq!(
        one(format!(
            "SELECT CAST(COALESCE(SUM(points), 0) AS BIGINT) AS n FROM loyalty_point_legs \
             WHERE account = 'customer:{ana}'"
        ))
        .await,
        0
    );
}

#[tokio::test]
async fn every_invalid_field_is_listed() {
    let hub = TestHub::start().await;
    let mut c = LoyaltyActionServiceClient::new(hub.channel().await);
    let bad = c
        .propose_action(pb::ProposeActionRequest {
            request_id: String::new(),
            action: Some(pb::ActionInput {
                customer_id: "nope".into(),
                kind: pb::ActionKind::Custom as i32,
                custom_kind: "Bad Kind".into(),
                rule_id: String::new(),
                rule_version: 2,
                reason: " ".into(),
                channel: 0,
                value: Some(common::Money {
                    amount_minor: -1,
                    currency_code: "XXY".into(),
                }),
                campaign_id: "x".into(),
                due_at: None,
                assignee_team: String::new(),
            }),
        })
        .await;
    assert_eq!(
        fields(&refused(bad, Code::InvalidArgument, "INVALID_FIELDS")),
        [
            "request_id",
            "action.customer_id",
            "action.custom_kind",
            "action.rule_version",
            "action.reason",
            "action.channel",
            "action.value.currency_code",
            "action.value.amount_minor",
            "action.campaign_id",
            "action.due_at",
            "action.assignee_team",
        ]
    );
    let bad = c
        .transition_action(pb::TransitionActionRequest {
            request_id: String::new(),
            action_id: "x".into(),
            to_state: 0,
            etag: String::new(),
        })
        .await;
    assert_eq!(
        fields(&refused(bad, Code::InvalidArgument, "INVALID_FIELDS")),
        ["request_id", "action_id", "to_state"]
    );
    let bad = c
        .create_campaign(pb::CreateCampaignRequest {
            request_id: rid(),
            campaign: Some(pb::Campaign {
                key: "Bad Key".into(),
                name: String::new(),
                budget: None,
                ..Default::default()
            }),
        })
        .await;
    assert_eq!(
        fields(&refused(bad, Code::InvalidArgument, "INVALID_FIELDS")),
        ["campaign.key", "campaign.name", "campaign.budget"]
    );
    let bad = c
        .accrue_points(pb::AccruePointsRequest {
            request_id: "has space".into(),
            customer_id: String::new(),
            points: 0,
            source_ref: String::new(),
            expires_at: ts(T0),
        })
        .await;
    assert_eq!(
        fields(&refused(bad, Code::InvalidArgument, "INVALID_FIELDS")),
        [
            "request_id",
            "customer_id",
            "points",
            "source_ref",
            "expires_at"
        ]
    );
    let bad = c
        .reverse_points(pb::ReversePointsRequest {
            request_id: rid(),
            customer_id: "x".into(),
            source_ref: String::new(),
            points: -5,
        })
        .await;
    assert_eq!(
        fields(&refused(bad, Code::InvalidArgument, "INVALID_FIELDS")),
        ["customer_id", "source_ref", "points"]
    );
    let bad = c
        .get_points_balance(pb::GetPointsBalanceRequest {
            customer_id: String::new(),
            recent_entries: 101,
        })
        .await;
    assert_eq!(
        fields(&refused(bad, Code::InvalidArgument, "INVALID_FIELDS")),
        ["customer_id", "recent_entries"]
    );
    let bad = c
        .list_actions(pb::ListActionsRequest {
            customer_id: "x".into(),
            state: 42,
            page_size: -1,
            ..Default::default()
        })
        .await;
    assert_eq!(
        fields(&refused(bad, Code::InvalidArgument, "INVALID_FIELDS")),
        ["customer_id", "state", "page_size"]
    );
    let bad = c
        .redeem_points(pb::RedeemPointsRequest {
            request_id: String::new(),
            customer_id: "x".into(),
            points: 0,
            source_ref: "s".repeat(257),
        })
        .await;
    assert_eq!(
        fields(&refused(bad, Code::InvalidArgument, "INVALID_FIELDS")),
        ["request_id", "customer_id", "points", "source_ref"]
    );
    let bad = c.get_action(pb::GetActionRequest { id: "x".into() }).await;
    assert_eq!(
        fields(&refused(bad, Code::InvalidArgument, "INVALID_FIELDS")),
        ["id"]
    );
    let bad = c
        .get_campaign(pb::GetCampaignRequest { lookup: None })
        .await;
    assert_eq!(
        fields(&refused(bad, Code::InvalidArgument, "INVALID_FIELDS")),
        ["lookup"]
    );
    let bad = c
        .get_campaign(pb::GetCampaignRequest {
            lookup: Some(pb::get_campaign_request::Lookup::Key("Bad".into())),
        })
        .await;
    assert_eq!(
        fields(&refused(bad, Code::InvalidArgument, "INVALID_FIELDS")),
        ["key"]
    );
    let taken = campaign(&mut c, "dup.key", 1).await;
    let dup = c
        .create_campaign(pb::CreateCampaignRequest {
            request_id: rid(),
            campaign: Some(pb::Campaign {
                key: taken.key.clone(),
                name: "again".into(),
                budget: eur(1),
                ..Default::default()
            }),
        })
        .await;
    refused(dup, Code::AlreadyExists, "CAMPAIGN_KEY_TAKEN");
}

#[tokio::test]
async fn scopes_guard_reads_and_writes() {
    let hub = TestHub::builder()
        .token("dash:loyalty:read:read-secret")
        .token("exec:loyalty:read+loyalty:write:write-secret")
        .start()
        .await;
    let mut c = LoyaltyActionServiceClient::new(hub.channel().await);
    let balance = || pb::GetPointsBalanceRequest {
        customer_id: "01900000-0000-7000-8000-000000000001".into(),
        recent_entries: 0,
    };
    let accrue = || pb::AccruePointsRequest {
        request_id: "scoped-1".into(),
        customer_id: "01900000-0000-7000-8000-000000000001".into(),
        points: 1,
        source_ref: "o".into(),
        expires_at: None,
    };
    let denied = c.accrue_points(with_token(accrue(), "read-secret")).await;
    assert_eq!(
        denied.expect_err("read scope cannot write").code(),
        Code::PermissionDenied
    );
    let no_token = c.get_points_balance(balance()).await;
    assert_eq!(
        no_token.expect_err("no token").code(),
        Code::Unauthenticated
    );
    // With the right scope the call reaches the service (an unknown customer).
    let read = c
        .get_points_balance(with_token(balance(), "read-secret"))
        .await;
    assert_eq!(read.expect_err("unknown customer").code(), Code::NotFound);
    let write = c.accrue_points(with_token(accrue(), "write-secret")).await;
    assert_eq!(write.expect_err("unknown customer").code(), Code::NotFound);
    let ids: BTreeSet<&str> = cxhub_loyalty::METHODS.iter().map(|m| m.method).collect();
    assert_eq!(ids.len(), 22);
}

#[tokio::test]
async fn a_customer_holding_an_identifier_an_erasure_suppressed_is_never_targeted() {
    let hub = TestHub::start().await;
    let channel = hub.channel().await;
    let mut c = LoyaltyActionServiceClient::new(channel.clone());
    let erased = customer_on(channel.clone(), "s1", &["shared@mail.pt"], false, 1).await;
    let other = customer_on(channel.clone(), "s2", &[], false, 1).await;
    let call = || {
        input(
            &other,
            pb::ActionKind::FollowUpCall,
            pb::ContactChannel::Email,
        )
    };
    profile::customer_privacy_service_client::CustomerPrivacyServiceClient::new(channel)
        .erase_customer(profile::EraseCustomerRequest {
            request_id: rid(),
            customer_id: erased,
        })
        .await
        .expect("erased");
    propose(&mut c, call())
        .await
        .expect("the other customer holds nothing suppressed");
    // The other customer holds the erased customer's e-mail too (as after a split, or records
    // kept from before the erasure): contacting them could reach the erased person.
    let marker = format!("suppressed.marker.{}", rid());
    campaign(&mut c, &marker, 0).await;
    let db = raw_db(&hub, &marker).await;
    use sea_orm::ConnectionTrait;
    let backend = db.get_database_backend();
    let sql = match backend {
        sea_orm::DbBackend::Postgres => {
            "INSERT INTO customer_identities (kind, value, customer_id, created_at) \
             VALUES ($1, $2, $3, $4)"
        }
        _ => {
            "INSERT INTO customer_identities (kind, value, customer_id, created_at) \
             VALUES (?, ?, ?, ?)"
        }
    };
    db.execute_raw(sea_orm::Statement::from_sql_and_values(
        backend,
        sql,
        [
            "email".into(),
            "shared@mail.pt".into(),
            other.clone().into(),
            sea_orm::Value::ChronoDateTimeUtc(Some(chrono::Utc::now())),
        ],
    ))
    .await
    .expect("identity");
    let status = refused(
        propose(&mut c, call()).await,
        Code::FailedPrecondition,
        "NOT_ELIGIBLE",
    );
    assert!(
        status.message().contains("CUSTOMER_SUPPRESSED"),
        "{status:?}"
    );
    assert!(!status.message().contains("CUSTOMER_ERASED"), "{status:?}");
}
