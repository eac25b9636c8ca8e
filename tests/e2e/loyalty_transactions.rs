//! Transaction events end to end: a delivery and a failed payment ingested from a feed fire the
//! `ORDER_DELIVERED` and `PAYMENT_FAILED` rules exactly once (not again on a replayed, updated
//! or stale record, nor after a restart; never for an erased customer); succeeded payments
//! earn points by the programme, once even with an `EarnPoints` of the same transaction, and
//! refunds reverse them; expired points are posted by the expiry task. A support case that
//! ends and a subscription downgraded or cancelled fire `CASE_CLOSED`,
//! `SUBSCRIPTION_DOWNGRADED` and `SUBSCRIPTION_CANCELLED` rules the same way, once.

use cxhub_domain::loyalty::repo::{EventPass, GuardConfig, LoyaltyRepo};
use cxhub_proto::common::v1 as common;
use cxhub_proto::feeds::v1 as feeds;
use cxhub_proto::loyalty::v1 as pb;
use cxhub_proto::loyalty::v1::loyalty_action_service_client::LoyaltyActionServiceClient;
use cxhub_testkit::TestHub;
use prost_types::Timestamp;
use tonic::transport::Channel;

use crate::loyalty_rules::enable;
use crate::rid;

type Client = LoyaltyActionServiceClient<Channel>;

/// Seconds since the epoch of the records' times: a little before now, so that none is in
/// the future.
fn base() -> i64 {
    chrono::Utc::now().timestamp() - 10 * 86_400
}

fn ts(seconds: i64) -> Option<Timestamp> {
    Some(Timestamp { seconds, nanos: 0 })
}

fn money(minor: i64, code: &str) -> Option<common::Money> {
    Some(common::Money {
        amount_minor: minor,
        currency_code: code.into(),
    })
}

/// A record of `source` about source customer `who`, version `updated_at`.
fn record(
    source: &str,
    id: &str,
    who: &str,
    updated_at: i64,
    body: feeds::record::Body,
) -> feeds::Record {
    feeds::Record {
        source: source.into(),
        record_id: id.into(),
        updated_at: ts(updated_at),
        customer: Some(common::SourceCustomer {
            source_customer_id: who.into(),
            emails: Vec::new(),
            phones: Vec::new(),
        }),
        body: Some(body),
    }
}

/// Ingests `records`, answering each one's outcome and customer.
async fn ingest(hub: &TestHub, records: Vec<feeds::Record>) -> Vec<(i32, String)> {
    hub.feeds()
        .await
        .ingest_records(feeds::IngestRecordsRequest { records })
        .await
        .expect("ingested")
        .into_inner()
        .results
        .into_iter()
        .map(|r| (r.outcome, r.customer_id))
        .collect()
}

/// A contact in `source` consenting to surveys by e-mail; answers the hub customer id.
async fn contact(hub: &TestHub, source: &str, who: &str) -> String {
    let body = feeds::record::Body::Contact(feeds::Contact {
        given_name: "Ana".into(),
        family_name: "Silva".into(),
        consents: vec![feeds::Consent {
            purpose: feeds::ConsentPurpose::Surveys as i32,
            channel: feeds::ConsentChannel::Email as i32,
            status: feeds::ConsentStatus::Granted as i32,
            given_at: ts(base()),
        }],
        lifecycle_stage: feeds::LifecycleStage::Customer as i32,
        ..Default::default()
    });
    let results = ingest(
        hub,
        vec![record(source, &format!("contact-{who}"), who, base(), body)],
    )
    .await;
    results[0].1.clone()
}

fn order(at: i64) -> feeds::record::Body {
    feeds::record::Body::Order(feeds::Order {
        ordered_at: ts(at),
        lines: vec![feeds::OrderLine {
            sku: "sku-1".into(),
            quantity: 2,
            unit_price: money(25_00, "EUR"),
        }],
        channel: cxhub_proto::touchpoint::v1::Channel::Web as i32,
        store_id: String::new(),
        status: feeds::OrderStatus::Placed as i32,
    })
}

/// A shipment of order `o-1`, shipped at `at`, promised two days later, delivered
/// `delivered_after` seconds after shipping (in transit when `None`).
fn shipment(at: i64, delivered_after: Option<i64>) -> feeds::record::Body {
    feeds::record::Body::Shipment(feeds::Shipment {
        order_id: "o-1".into(),
        shipped_at: ts(at),
        promised_at: ts(at + 2 * 86_400),
        delivered_at: delivered_after.and_then(|d| ts(at + d)),
        status: if delivered_after.is_some() {
            feeds::ShipmentStatus::Delivered as i32
        } else {
            feeds::ShipmentStatus::InTransit as i32
        },
    })
}

fn payment(at: i64, minor: i64, code: &str, failure: Option<&str>) -> feeds::record::Body {
    feeds::record::Body::Payment(feeds::Payment {
        attempted_at: ts(at),
        amount: money(minor, code),
        status: if failure.is_some() {
            feeds::PaymentStatus::Failed as i32
        } else {
            feeds::PaymentStatus::Succeeded as i32
        },
        failure_reason: failure.unwrap_or_default().into(),
        invoice_id: String::new(),
    })
}

fn refund(at: i64, minor: i64, payment_id: &str) -> feeds::record::Body {
    feeds::record::Body::Refund(feeds::Refund {
        refunded_at: ts(at),
        amount: money(minor, "EUR"),
        payment_id: payment_id.into(),
        reason: "damaged".into(),
    })
}

/// Enables the shipped rule `id` without a control group.
/// One pass of the rule follower over `store`, with the default guard rails.
async fn follow(store: &impl LoyaltyRepo) -> EventPass {
    store
        .follow_rule_events(&GuardConfig::default(), 1000)
        .await
        .expect("pass")
}

async fn actions_of(c: &mut Client, customer: &str) -> Vec<pb::Action> {
    c.list_actions(pb::ListActionsRequest {
        customer_id: customer.into(),
        ..Default::default()
    })
    .await
    .expect("list")
    .into_inner()
    .actions
}

fn kinds(actions: &[pb::Action]) -> Vec<(String, i32)> {
    let mut out: Vec<(String, i32)> = actions
        .iter()
        .filter_map(|a| a.action.as_ref())
        .map(|a| (a.rule_id.clone(), a.kind))
        .collect();
    out.sort();
    out
}

const CREATED: i32 = feeds::RecordOutcome::Created as i32;
const UPDATED: i32 = feeds::RecordOutcome::Updated as i32;
const UNCHANGED: i32 = feeds::RecordOutcome::Unchanged as i32;
const STALE: i32 = feeds::RecordOutcome::Stale as i32;

#[tokio::test]
async fn a_delivered_order_fires_the_delivery_rules_exactly_once() {
    // The follower is driven pass by pass here: the hub's own stays off.
    let hub = TestHub::builder()
        .demo()
        .loyalty_rule_tasks(false)
        .start()
        .await;
    let mut c = LoyaltyActionServiceClient::new(hub.channel().await);
    enable(&mut c, "post-delivery-survey").await;
    enable(&mut c, "late-delivery-apology").await;
    let ana = contact(&hub, "erp", "ana").await;
    let t = base();

    // An order, then its shipment on the way: nothing delivered, nothing fires.
    let results = ingest(
        &hub,
        vec![
            record("erp", "o-1", "ana", t, order(t)),
            record("erp", "s-1", "ana", t + 1, shipment(t, None)),
        ],
    )
    .await;
    assert_eq!(results, [(CREATED, ana.clone()), (CREATED, ana.clone())]);
    let pass = follow(&hub.store).await;
    assert_eq!((pass.events, pass.proposed), (0, 0), "{pass:?}");
    assert!(actions_of(&mut c, &ana).await.is_empty());

    // Delivered three days after shipping, a day after the promise: the survey invitation
    // and (whole days late: 1) no apology.
    let delivered = record("erp", "s-1", "ana", t + 2, shipment(t, Some(3 * 86_400)));
    let results = ingest(&hub, vec![delivered.clone()]).await;
    assert_eq!(results, [(UPDATED, ana.clone())]);
    let pass = follow(&hub.store).await;
    // The change-log entry of the update is read too.
    assert_eq!(
        (pass.read, pass.events, pass.proposed),
        (2, 2, 1),
        "{pass:?}"
    );
    let actions = actions_of(&mut c, &ana).await;
    assert_eq!(
        kinds(&actions),
        [(
            "post-delivery-survey".to_owned(),
            pb::ActionKind::SurveyInvitation as i32
        )]
    );
    assert_eq!(actions[0].created_by, "system:rule-events");

    // The same record again, a newer version still delivered, an older version: no event.
    let mut newer = delivered.clone();
    newer.updated_at = ts(t + 3);
    let mut older = delivered.clone();
    older.updated_at = ts(t + 1);
    older.body = Some(shipment(t, None));
    let results = ingest(&hub, vec![delivered, newer, older]).await;
    let outcomes: Vec<i32> = results.iter().map(|r| r.0).collect();
    assert_eq!(outcomes, [UNCHANGED, UPDATED, STALE]);
    let pass = follow(&hub.store).await;
    // Only the change-log entry of the newer version (its interaction) is read.
    assert_eq!(
        (pass.read, pass.events, pass.proposed),
        (1, 0, 0),
        "{pass:?}"
    );

    // A second shipment delivered four days late: the apology too (its survey invitation is
    // blocked by the weekly cap on survey invitations).
    let late = record("erp", "s-2", "ana", t + 4, shipment(t, Some(6 * 86_400)));
    ingest(&hub, vec![late]).await;
    let pass = follow(&hub.store).await;
    assert_eq!(
        (pass.events, pass.proposed, pass.blocked),
        (2, 1, 1),
        "{pass:?}"
    );
    let actions = actions_of(&mut c, &ana).await;
    assert_eq!(
        kinds(&actions),
        [
            (
                "late-delivery-apology".to_owned(),
                pb::ActionKind::Apology as i32
            ),
            (
                "post-delivery-survey".to_owned(),
                pb::ActionKind::SurveyInvitation as i32
            ),
        ]
    );
    let apology = actions
        .iter()
        .filter_map(|a| a.action.as_ref())
        .find(|a| a.rule_id == "late-delivery-apology")
        .expect("apology");
    assert!(
        apology.reason.contains("event.delay_days = 4"),
        "{}",
        apology.reason
    );

    // A restart: a new store over the same database reads on from the stored position.
    let marker = format!("tx.restart.{}", rid());
    c.create_campaign(pb::CreateCampaignRequest {
        request_id: rid(),
        campaign: Some(pb::Campaign {
            key: marker.clone(),
            name: "marker".into(),
            budget: money(100, "EUR"),
            ..Default::default()
        }),
    })
    .await
    .expect("marker campaign");
    let restarted = cxhub::open_store(
        &hub.settings.database_url,
        cxhub_store::StoreOptions {
            schema: crate::loyalty::current_schema(&marker).await,
            ..Default::default()
        },
    )
    .await
    .expect("second store");
    let pass = follow(&restarted).await;
    assert_eq!(
        (pass.read, pass.events, pass.proposed),
        (0, 0, 0),
        "{pass:?}"
    );
    assert_eq!(actions_of(&mut c, &ana).await.len(), 2);
}

#[tokio::test]
async fn a_failed_payment_that_was_our_fault_brings_an_apology_and_erased_customers_nothing() {
    use cxhub_proto::profile::v1 as profile;
    let hub = TestHub::builder()
        .demo()
        .loyalty_rule_tasks(false)
        .start()
        .await;
    let mut c = LoyaltyActionServiceClient::new(hub.channel().await);
    enable(&mut c, "failed-payment-apology").await;
    enable(&mut c, "post-delivery-survey").await;
    let ana = contact(&hub, "billing", "ana").await;
    let bob = contact(&hub, "erp", "bob").await;
    let t = base();

    // Declined by the customer's bank: not our fault. A gateway timeout: ours.
    ingest(
        &hub,
        vec![
            record(
                "billing",
                "p-1",
                "ana",
                t,
                payment(t, 10_00, "EUR", Some("card_declined")),
            ),
            record(
                "billing",
                "p-2",
                "ana",
                t,
                payment(t, 10_00, "EUR", Some("gateway_timeout")),
            ),
        ],
    )
    .await;
    // Bob's delivery, then Bob is erased before the follower runs.
    ingest(
        &hub,
        vec![record("erp", "s-9", "bob", t, shipment(t, Some(86_400)))],
    )
    .await;
    let mut privacy = profile::customer_privacy_service_client::CustomerPrivacyServiceClient::new(
        hub.channel().await,
    );
    privacy
        .erase_customer(profile::EraseCustomerRequest {
            request_id: rid(),
            customer_id: bob.clone(),
        })
        .await
        .expect("erased");

    let pass = follow(&hub.store).await;
    // Three transaction events (and the change log) read; Bob's leads to no one.
    assert!(pass.read >= 3, "{pass:?}");
    assert_eq!((pass.events, pass.proposed), (2, 1), "{pass:?}");
    let actions = actions_of(&mut c, &ana).await;
    assert_eq!(
        kinds(&actions),
        [(
            "failed-payment-apology".to_owned(),
            pb::ActionKind::Apology as i32
        )]
    );
    let reason = &actions[0].action.as_ref().expect("input").reason;
    assert!(reason.contains("event.company_at_fault"), "{reason}");
    let all = c
        .list_actions(pb::ListActionsRequest::default())
        .await
        .expect("list")
        .into_inner()
        .actions;
    assert_eq!(all.len(), 1, "nothing for the erased customer: {all:?}");
}

async fn set_programme(c: &mut Client, expiry_months: i32) {
    c.set_points_programme(pb::SetPointsProgrammeRequest {
        request_id: rid(),
        programme: Some(pb::PointsProgramme {
            earning_rules: vec![pb::EarningRule {
                currency_code: "EUR".into(),
                points_per_unit: 1,
                tier_multiplier_percent: Default::default(),
                max_points_per_transaction: 0,
            }],
            expiry_months,
            tiers: Vec::new(),
            version: 0,
            updated_at: None,
        }),
    })
    .await
    .expect("programme set");
}

async fn balance(c: &mut Client, customer: &str) -> pb::GetPointsBalanceResponse {
    c.get_points_balance(pb::GetPointsBalanceRequest {
        customer_id: customer.into(),
        recent_entries: 100,
    })
    .await
    .expect("balance")
    .into_inner()
}

fn entry_kinds(b: &pb::GetPointsBalanceResponse) -> Vec<(i32, i64, String)> {
    b.entries
        .iter()
        .rev()
        .map(|e| (e.kind, e.points, e.request_id.clone()))
        .collect()
}

#[tokio::test]
async fn payments_earn_points_once_and_refunds_reverse_them() {
    let hub = TestHub::builder().loyalty_rule_tasks(false).start().await;
    let mut c = LoyaltyActionServiceClient::new(hub.channel().await);
    let ana = contact(&hub, "billing", "ana").await;
    let t = base();

    // Before a programme, a payment earns nothing; it is not retried later either.
    let early = record("billing", "p-0", "ana", t, payment(t, 30_00, "EUR", None));
    ingest(&hub, vec![early]).await;
    let pass = hub.store.accrue_points(1000).await.expect("pass");
    assert_eq!(
        (pass.read, pass.earned, pass.skipped),
        (1, 0, 1),
        "{pass:?}"
    );
    set_programme(&mut c, 12).await;

    // 100.00 EUR paid earns 100 points; a failed payment and a currency without an earning
    // rule earn nothing.
    let paid = record("billing", "p-1", "ana", t, payment(t, 10_000, "EUR", None));
    ingest(
        &hub,
        vec![
            paid.clone(),
            record(
                "billing",
                "p-x",
                "ana",
                t,
                payment(t, 10_000, "EUR", Some("card_declined")),
            ),
            record(
                "billing",
                "p-usd",
                "ana",
                t,
                payment(t, 10_000, "USD", None),
            ),
        ],
    )
    .await;
    let pass = hub.store.accrue_points(1000).await.expect("pass");
    assert_eq!(
        (pass.read, pass.earned, pass.skipped),
        (3, 1, 2),
        "{pass:?}"
    );
    assert_eq!(balance(&mut c, &ana).await.balance, 100);

    // Re-ingested, or a newer version of it: no second accrual.
    let mut newer = paid.clone();
    newer.updated_at = ts(t + 1);
    ingest(&hub, vec![paid, newer]).await;
    let pass = hub.store.accrue_points(1000).await.expect("pass");
    assert_eq!((pass.read, pass.earned), (0, 0), "{pass:?}");

    // EarnPoints of the same transaction answers the automatic accrual, and does not add.
    let earn = |transaction: &str, minor: i64| pb::EarnPointsRequest {
        customer_id: ana.clone(),
        transaction_id: transaction.into(),
        amount: money(minor, "EUR"),
    };
    let same = c
        .earn_points(earn("billing:p-1", 10_000))
        .await
        .expect("replayed")
        .into_inner();
    assert_eq!(same.balance, 100);
    assert_eq!(same.entry.as_ref().map(|e| e.points), Some(100));
    // And the other way round: earned by the RPC first, the ingested payment adds nothing.
    let first = c
        .earn_points(earn("billing:p-2", 50_00))
        .await
        .expect("earned")
        .into_inner();
    assert_eq!(first.balance, 150);
    ingest(
        &hub,
        vec![record(
            "billing",
            "p-2",
            "ana",
            t,
            payment(t, 50_00, "EUR", None),
        )],
    )
    .await;
    let pass = hub.store.accrue_points(1000).await.expect("pass");
    assert_eq!(
        (pass.read, pass.earned, pass.skipped),
        (1, 0, 1),
        "{pass:?}"
    );
    assert_eq!(balance(&mut c, &ana).await.balance, 150);

    // Refunds reverse their share of the payment's points: 40.00 of 100.00 takes 40; a
    // refund of 80.00 more (beyond what was paid) takes the 60 left, never more.
    ingest(
        &hub,
        vec![
            record("billing", "r-1", "ana", t + 5, refund(t + 5, 40_00, "p-1")),
            record("billing", "r-2", "ana", t + 6, refund(t + 6, 80_00, "p-1")),
            record("billing", "r-3", "ana", t + 7, refund(t + 7, 10_00, "p-x")),
        ],
    )
    .await;
    let pass = hub.store.accrue_points(1000).await.expect("pass");
    assert_eq!(
        (pass.read, pass.reversed, pass.skipped),
        (3, 2, 1),
        "{pass:?}"
    );
    let b = balance(&mut c, &ana).await;
    assert_eq!(b.balance, 50);
    let reversal = pb::PointsEntryKind::Reversal as i32;
    let accrual = pb::PointsEntryKind::Accrual as i32;
    assert_eq!(
        entry_kinds(&b),
        [
            (accrual, 100, "earn:billing:p-1".to_owned()),
            (accrual, 50, "earn:billing:p-2".to_owned()),
            (reversal, -40, "rev:billing:r-1".to_owned()),
            (reversal, -60, "rev:billing:r-2".to_owned()),
        ]
    );
    // The position is stored: nothing is posted twice.
    let pass = hub.store.accrue_points(1000).await.expect("pass");
    assert_eq!(pass.read, 0, "{pass:?}");
    assert_eq!(balance(&mut c, &ana).await.balance, 50);

    // A payment that fails after it earned gives its points back, once.
    let p3 = |at: i64, failure: Option<&str>| {
        record(
            "billing",
            "p-3",
            "ana",
            at,
            payment(t, 20_00, "EUR", failure),
        )
    };
    ingest(&hub, vec![p3(t, None)]).await;
    hub.store.accrue_points(1000).await.expect("pass");
    assert_eq!(balance(&mut c, &ana).await.balance, 70);
    ingest(&hub, vec![p3(t + 1, Some("chargeback"))]).await;
    let pass = hub.store.accrue_points(1000).await.expect("pass");
    assert_eq!(pass.reversed, 1, "{pass:?}");
    assert_eq!(balance(&mut c, &ana).await.balance, 50);
}

#[tokio::test]
async fn the_hub_accrues_points_by_itself() {
    let hub = TestHub::start().await;
    let mut c = LoyaltyActionServiceClient::new(hub.channel().await);
    set_programme(&mut c, 0).await;
    let ana = contact(&hub, "billing", "ana").await;
    let t = base();
    ingest(
        &hub,
        vec![record(
            "billing",
            "p-1",
            "ana",
            t,
            payment(t, 12_34, "EUR", None),
        )],
    )
    .await;
    // No pass is driven here: the hub's accrual task posts the points on its own.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        if balance(&mut c, &ana).await.balance == 12 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the hub's accrual posted nothing"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn expired_points_are_posted_by_the_expiry_task() {
    let hub = TestHub::builder().loyalty_rule_tasks(false).start().await;
    let mut c = LoyaltyActionServiceClient::new(hub.channel().await);
    let ana = contact(&hub, "billing", "ana").await;
    let now = chrono::Utc::now();
    // Two lots: one expiring in a moment, one in a year.
    for (id, points, expires) in [
        ("soon", 30, now + chrono::Duration::seconds(3)),
        ("later", 5, now + chrono::Duration::days(365)),
    ] {
        c.accrue_points(pb::AccruePointsRequest {
            request_id: format!("accrue-{id}"),
            customer_id: ana.clone(),
            points,
            source_ref: format!("tx-{id}"),
            expires_at: ts(expires.timestamp()),
        })
        .await
        .expect("accrued");
    }
    // Nothing has expired yet.
    assert_eq!(
        hub.store
            .expire_points(chrono::Utc::now(), 100)
            .await
            .expect("run"),
        0
    );
    let until = now + chrono::Duration::seconds(4);
    while chrono::Utc::now() < until {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert_eq!(
        hub.store
            .expire_points(chrono::Utc::now(), 100)
            .await
            .expect("run"),
        1
    );
    let b = balance(&mut c, &ana).await;
    assert_eq!(b.balance, 5);
    let expiry = pb::PointsEntryKind::Expiry as i32;
    let expiries: Vec<i64> = b
        .entries
        .iter()
        .filter(|e| e.kind == expiry)
        .map(|e| e.points)
        .collect();
    assert_eq!(expiries, [-30]);
    // Posted once: the next run finds nothing.
    assert_eq!(
        hub.store
            .expire_points(chrono::Utc::now(), 100)
            .await
            .expect("run"),
        0
    );
}

/// An enabled rule `id` on `trigger` proposing a `kind` by e-mail when `condition` holds,
/// without a control group.
async fn event_rule(
    c: &mut Client,
    id: &str,
    trigger: pb::RuleTrigger,
    condition: &str,
    kind: pb::ActionKind,
) {
    c.create_rule(pb::CreateRuleRequest {
        request_id: rid(),
        rule: Some(pb::Rule {
            id: id.into(),
            name: format!("Rule {id}"),
            trigger: trigger as i32,
            condition: condition.into(),
            action: Some(pb::ActionTemplate {
                kind: kind as i32,
                channel: pb::ContactChannel::Email as i32,
                due_in: Some(prost_types::Duration {
                    seconds: 48 * 3600,
                    nanos: 0,
                }),
                assignee_team: "retention".into(),
                ..Default::default()
            }),
            limits: Some(pb::RuleLimits {
                max_actions_per_run: 100,
                max_actions_per_day: 0,
            }),
            holdout: Some(pb::Holdout {
                control_share: 0.0,
                seed: 1,
            }),
            enabled: true,
            ..Default::default()
        }),
    })
    .await
    .expect("rule created");
}

fn support_case(
    opened: i64,
    status: feeds::CaseStatus,
    closed: Option<i64>,
) -> feeds::record::Body {
    feeds::record::Body::SupportCase(feeds::SupportCase {
        opened_at: ts(opened),
        closed_at: closed.and_then(ts),
        status: status as i32,
        priority: feeds::CasePriority::High as i32,
        category: "billing".into(),
        channel: cxhub_proto::touchpoint::v1::Channel::Phone as i32,
    })
}

fn subscription(at: i64, kind: feeds::SubscriptionEventKind) -> feeds::record::Body {
    feeds::record::Body::SubscriptionEvent(feeds::SubscriptionEvent {
        subscription_id: "sub-1".into(),
        kind: kind as i32,
        occurred_at: ts(at),
        plan: "basic-monthly".into(),
        recurring_amount: money(9_00, "EUR"),
    })
}

/// The rule ids of the customer's actions.
async fn rules_of(c: &mut Client, customer: &str) -> Vec<String> {
    let mut ids: Vec<String> = actions_of(c, customer)
        .await
        .iter()
        .filter_map(|a| a.action.as_ref())
        .map(|a| a.rule_id.clone())
        .collect();
    ids.sort();
    ids
}

#[tokio::test]
async fn a_closed_case_and_a_lost_subscription_fire_their_rules_exactly_once() {
    let hub = TestHub::builder()
        .demo()
        .loyalty_rule_tasks(false)
        .start()
        .await;
    let mut c = LoyaltyActionServiceClient::new(hub.channel().await);
    // Unresolved cases are recovered; downgrades get a retention call, cancellations a
    // win-back call.
    event_rule(
        &mut c,
        "unresolved-case-recovery",
        pb::RuleTrigger::CaseClosed,
        "!event.case_resolved",
        pb::ActionKind::ServiceRecovery,
    )
    .await;
    event_rule(
        &mut c,
        "downgrade-retention-call",
        pb::RuleTrigger::SubscriptionDowngraded,
        "event.type == \"subscription.downgraded\"",
        pb::ActionKind::FollowUpCall,
    )
    .await;
    event_rule(
        &mut c,
        "cancellation-win-back",
        pb::RuleTrigger::SubscriptionCancelled,
        "event.type == \"subscription.cancelled\"",
        pb::ActionKind::FollowUpCall,
    )
    .await;
    let ana = contact(&hub, "crm", "ana").await;
    let bob = contact(&hub, "billing", "bob").await;
    let t = base();

    // Open cases and a renewal, an upgrade and a pause: nothing ends, nothing fires.
    let open = record(
        "crm",
        "case-1",
        "ana",
        t,
        support_case(t, feeds::CaseStatus::Open, None),
    );
    let pending = record(
        "crm",
        "case-2",
        "ana",
        t,
        support_case(t, feeds::CaseStatus::Pending, None),
    );
    ingest(&hub, vec![open, pending]).await;
    let unrelated: Vec<feeds::Record> = [
        feeds::SubscriptionEventKind::Renewed,
        feeds::SubscriptionEventKind::Upgraded,
        feeds::SubscriptionEventKind::Paused,
    ]
    .into_iter()
    .enumerate()
    .map(|(i, kind)| {
        let at = t + i64::try_from(i).expect("small");
        record(
            "billing",
            &format!("se-{i}"),
            "bob",
            at,
            subscription(at, kind),
        )
    })
    .collect();
    ingest(&hub, unrelated).await;
    let pass = follow(&hub.store).await;
    assert_eq!((pass.events, pass.proposed), (0, 0), "{pass:?}");
    assert!(actions_of(&mut c, &ana).await.is_empty());
    assert!(actions_of(&mut c, &bob).await.is_empty());

    // Case 1 closed without resolution: one recovery. Case 2 resolved: the rule is asked
    // (an event) but its condition does not hold.
    let closed = record(
        "crm",
        "case-1",
        "ana",
        t + 10,
        support_case(t, feeds::CaseStatus::Closed, Some(t + 86_400)),
    );
    let resolved = record(
        "crm",
        "case-2",
        "ana",
        t + 10,
        support_case(t, feeds::CaseStatus::Resolved, Some(t + 3_600)),
    );
    let results = ingest(&hub, vec![closed.clone(), resolved.clone()]).await;
    assert_eq!(results, [(UPDATED, ana.clone()), (UPDATED, ana.clone())]);
    let pass = follow(&hub.store).await;
    assert_eq!((pass.events, pass.proposed), (2, 1), "{pass:?}");
    assert_eq!(rules_of(&mut c, &ana).await, ["unresolved-case-recovery"]);
    let recovery = actions_of(&mut c, &ana).await;
    let reason = &recovery[0].action.as_ref().expect("action").reason;
    assert!(reason.contains("event.case_resolved"), "{reason}");
    assert_eq!(recovery[0].created_by, "system:rule-events");

    // Replayed (UNCHANGED), a newer version still closed, an older one still open: no event.
    let mut newer = closed.clone();
    newer.updated_at = ts(t + 11);
    let mut older = closed.clone();
    older.updated_at = ts(t + 5);
    older.body = Some(support_case(t, feeds::CaseStatus::Open, None));
    let results = ingest(&hub, vec![closed, resolved, newer, older]).await;
    let outcomes: Vec<i32> = results.iter().map(|r| r.0).collect();
    assert_eq!(outcomes, [UNCHANGED, UNCHANGED, UPDATED, STALE]);
    let pass = follow(&hub.store).await;
    assert_eq!((pass.events, pass.proposed), (0, 0), "{pass:?}");
    assert_eq!(rules_of(&mut c, &ana).await, ["unresolved-case-recovery"]);

    // Bob downgrades: one retention call, also after the record is replayed.
    let down = record(
        "billing",
        "se-down",
        "bob",
        t + 20,
        subscription(t + 20, feeds::SubscriptionEventKind::Downgraded),
    );
    ingest(&hub, vec![down.clone()]).await;
    let pass = follow(&hub.store).await;
    assert_eq!((pass.events, pass.proposed), (1, 1), "{pass:?}");
    assert_eq!(rules_of(&mut c, &bob).await, ["downgrade-retention-call"]);
    let results = ingest(&hub, vec![down]).await;
    assert_eq!(results[0].0, UNCHANGED);
    let pass = follow(&hub.store).await;
    assert_eq!((pass.events, pass.proposed), (0, 0), "{pass:?}");

    // Then cancels: the win-back call, and no second retention call.
    ingest(
        &hub,
        vec![record(
            "billing",
            "se-cancel",
            "bob",
            t + 30,
            subscription(t + 30, feeds::SubscriptionEventKind::Cancelled),
        )],
    )
    .await;
    let pass = follow(&hub.store).await;
    assert_eq!((pass.events, pass.proposed), (1, 1), "{pass:?}");
    assert_eq!(
        rules_of(&mut c, &bob).await,
        ["cancellation-win-back", "downgrade-retention-call"]
    );
    // Ana got nothing from Bob's subscription.
    assert_eq!(rules_of(&mut c, &ana).await, ["unresolved-case-recovery"]);
}
