//! The churn model fitted on the hub's own history end to end: a population whose churn follows
//! failed payments, a full recompute that fits, checks on held-out customers and uses the fit
//! (coefficients in the answer, the fitted version on every score, the background recompute
//! keeping it), and a population too small to fit, which keeps the defaults and says why.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chrono::DateTime;
use cxhub_proto::common::v1 as common;
use cxhub_proto::feeds::v1 as feeds;
use cxhub_proto::scoring::v1 as pb;
use cxhub_proto::scoring::v1::scoring_service_client::ScoringServiceClient;
use cxhub_proto::touchpoint::v1::Channel;
use cxhub_testkit::TestHub;
use prost_types::Timestamp;
use tonic::transport::Channel as Transport;

use crate::rid;

type Client = ScoringServiceClient<Transport>;

const DAY: i64 = 86_400;

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

fn ts(seconds: i64) -> Option<Timestamp> {
    Some(Timestamp { seconds, nanos: 0 })
}

fn eur(amount_minor: i64) -> Option<common::Money> {
    Some(common::Money {
        amount_minor,
        currency_code: "EUR".into(),
    })
}

fn record(id: String, customer: usize, t: i64, body: feeds::record::Body) -> feeds::Record {
    feeds::Record {
        source: "erp".into(),
        record_id: id,
        updated_at: ts(t),
        customer: Some(common::SourceCustomer {
            source_customer_id: format!("E-{customer}"),
            emails: vec![format!("c{customer}@shop.pt")],
            phones: Vec::new(),
        }),
        body: Some(body),
    }
}

fn order(customer: usize, t: i64) -> feeds::Record {
    let body = feeds::record::Body::Order(feeds::Order {
        ordered_at: ts(t),
        lines: vec![feeds::OrderLine {
            sku: "SKU-1".into(),
            quantity: 1,
            unit_price: eur(25_00),
        }],
        channel: Channel::Web as i32,
        store_id: String::new(),
        status: feeds::OrderStatus::Placed as i32,
    });
    record(format!("o-{customer}-{t}"), customer, t, body)
}

fn failed_payment(customer: usize, t: i64) -> feeds::Record {
    let body = feeds::record::Body::Payment(feeds::Payment {
        attempted_at: ts(t),
        amount: eur(25_00),
        status: feeds::PaymentStatus::Failed as i32,
        failure_reason: "card_declined".into(),
        invoice_id: String::new(),
    });
    record(format!("p-{customer}-{t}"), customer, t, body)
}

fn cancellation(customer: usize, t: i64) -> feeds::Record {
    let body = feeds::record::Body::SubscriptionEvent(feeds::SubscriptionEvent {
        subscription_id: format!("sub-{customer}"),
        kind: feeds::SubscriptionEventKind::Cancelled as i32,
        occurred_at: ts(t),
        plan: "box-monthly".into(),
        recurring_amount: None,
    });
    record(format!("s-{customer}-{t}"), customer, t, body)
}

async fn ingest(hub: &TestHub, records: Vec<feeds::Record>) -> Vec<String> {
    let mut ids = Vec::new();
    for chunk in records.chunks(1_000) {
        let results = hub
            .feeds()
            .await
            .ingest_records(feeds::IngestRecordsRequest {
                records: chunk.to_vec(),
            })
            .await
            .expect("batch accepted")
            .into_inner()
            .results;
        for r in &results {
            assert!(r.violations.is_empty(), "{r:?}");
        }
        ids.extend(results.into_iter().map(|r| r.customer_id));
    }
    ids
}

/// `n` customers buying every 10 days from 140 days ago; the reference time of the fit is 90
/// days before the recompute. Customers with an odd number had two failed payments 95 and 100
/// days ago: most of them stop buying at the reference time, every third of them buys on but
/// cancels its subscription 50 days ago. The others buy on. One in ten does the opposite of its
/// group (buys on despite the failed payments, or stops without any).
/// Answers the records, whether each customer churned, and the index of each customer's first
/// record.
fn population(n: usize, base: i64) -> (Vec<feeds::Record>, Vec<bool>, Vec<usize>) {
    let day = |d: i64| base - d * DAY;
    let mut records = Vec::new();
    let mut churns = Vec::new();
    let mut first = Vec::new();
    for i in 0..n {
        first.push(records.len());
        let failing = i % 2 == 1;
        let contrary = i % 10 == 7 || i % 10 == 8;
        for d in (90..=140).rev().step_by(10) {
            records.push(order(i, day(d)));
        }
        if failing {
            records.push(failed_payment(i, day(100)));
            records.push(failed_payment(i, day(95)));
        }
        let cancels = failing && !contrary && i % 3 == 0;
        let stops = (failing != contrary) && !cancels;
        if !stops {
            for d in (10..=80).rev().step_by(10) {
                records.push(order(i, day(d)));
            }
        }
        if cancels {
            records.push(cancellation(i, day(50)));
        }
        churns.push(stops || cancels);
    }
    (records, churns, first)
}

async fn recompute(c: &mut Client) -> pb::RecomputeScoresResponse {
    c.recompute_scores(pb::RecomputeScoresRequest { request_id: rid() })
        .await
        .expect("recomputed")
        .into_inner()
}

async fn scores(c: &mut Client, id: &str) -> pb::CustomerScores {
    c.get_customer_scores(pb::GetCustomerScoresRequest {
        customer_id: id.into(),
    })
    .await
    .expect("scores")
    .into_inner()
    .scores
    .expect("scores set")
}

fn day_text(seconds: i64) -> String {
    DateTime::from_timestamp(seconds, 0)
        .expect("valid time")
        .format("%Y-%m-%d")
        .to_string()
}

#[tokio::test]
async fn churn_is_fitted_on_the_hubs_history_when_it_beats_the_defaults() {
    let hub = TestHub::builder().demo().start().await;
    let mut c = ScoringServiceClient::new(hub.channel().await);
    let base = now() - 60;
    let (records, churns, first) = population(320, base);
    let results = ingest(&hub, records).await;
    let ids: Vec<String> = first.iter().map(|&i| results[i].clone()).collect();
    assert_eq!(churns.iter().filter(|c| **c).count(), 160);

    let done = recompute(&mut c).await;
    assert_eq!(done.customers_scored, 320);
    assert_eq!(done.models.len(), 1, "{done:?}");
    let model = done.models[0].churn_model.clone().expect("churn model");
    let as_of = done.as_of.expect("as_of").seconds;
    assert!(model.fitted, "{model:?}");
    assert_eq!(
        model.version,
        format!("churn-logit-fit-1-{}", day_text(as_of))
    );
    assert!(model.note.starts_with("fitted on "), "{}", model.note);
    let k = model.coefficients.expect("coefficients");
    assert_eq!(Some(k), model.candidate);
    // The default is 0.7 per failed payment; here two of them nearly decide churn.
    assert!(k.failed_payment > 1.0, "{k:?}");
    let report = model.report.expect("report");
    assert_eq!(report.labelled, 320, "{report:?}");
    assert_eq!(report.unlabelled, 0);
    assert_eq!(report.horizon_days, 90);
    assert_eq!(
        report.reference_time.expect("reference").seconds,
        as_of - 90 * DAY
    );
    assert_eq!(
        report.train_churned + report.holdout_churned,
        160,
        "{report:?}"
    );
    assert!(report.holdout_churned >= 10 && report.holdout_retained >= 10);
    let (fitted, default) = (
        report.fitted_log_loss.expect("fitted"),
        report.default_log_loss.expect("default"),
    );
    assert!(fitted < default, "{fitted} vs {default}");
    // Only the failed payments tell the customers apart at the reference time, and one in five
    // goes against them: an AUC near 0.8, whichever customers the id hash holds out.
    assert!(report.fitted_auc.expect("auc") > 0.6, "{report:?}");
    assert!(report.iterations > 0);
    eprintln!("fitted churn model: {k:?}; {report:?}");

    // Every score says which model made it and keeps its reasons. Customer 1 stopped buying
    // after its failed payments.
    assert!(churns[1]);
    let stopped = scores(&mut c, &ids[1]).await;
    assert_eq!(
        stopped.model_version,
        format!("scores-1; {}; fit 1 EUR", model.version)
    );
    let churn = stopped.churn.expect("churn");
    assert_eq!(churn.model_version, model.version);
    assert!((churn.intercept - k.intercept).abs() < 1e-12);
    assert!(!churn.contributions.is_empty());
    let overdue = churn
        .contributions
        .iter()
        .find(|r| r.factor == "overdue")
        .expect("overdue reason");
    assert!(overdue.contribution > 0.0 && overdue.reason.starts_with("no purchase in "));
    assert!(churn.top_reasons.iter().all(|r| r.contribution > 0.0));

    // The background recompute rescores with the stored fitted model: a new failed payment
    // of customer 0 (who buys on) is seen with the fitted coefficient.
    let before = scores(&mut c, &ids[0]).await.churn.expect("churn");
    assert!(
        before
            .contributions
            .iter()
            .all(|r| r.factor != "failed_payments")
    );
    ingest(&hub, vec![failed_payment(0, now() - 30)]).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let after = loop {
        let s = scores(&mut c, &ids[0]).await;
        let churn = s.churn.clone().expect("churn");
        if churn
            .contributions
            .iter()
            .any(|r| r.factor == "failed_payments")
        {
            break s;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not rescored: {s:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let churn = after.churn.expect("churn");
    assert_eq!(churn.model_version, model.version);
    assert!(after.model_version.contains(&model.version));
    let failed = churn
        .contributions
        .iter()
        .find(|r| r.factor == "failed_payments")
        .expect("failed payment reason");
    assert!(
        (failed.contribution - k.failed_payment).abs() < 1e-9,
        "{failed:?}"
    );
    assert_eq!(failed.reason, "1 failed payment in 30 days");
}

#[tokio::test]
async fn too_few_outcomes_keep_the_default_churn_model_and_say_why() {
    let hub = TestHub::builder().demo().start().await;
    let mut c = ScoringServiceClient::new(hub.channel().await);
    let (records, _, first) = population(40, now() - 60);
    let results = ingest(&hub, records).await;
    let ids: Vec<String> = first.iter().map(|&i| results[i].clone()).collect();
    let done = recompute(&mut c).await;
    assert_eq!(done.customers_scored, 40);
    let model = done.models[0].churn_model.clone().expect("churn model");
    assert!(!model.fitted, "{model:?}");
    assert_eq!(model.version, "churn-logit-default-1");
    assert!(model.candidate.is_none());
    assert!(
        model.note.starts_with("not fitted: ") && model.note.ends_with("50 and 50 needed"),
        "{}",
        model.note
    );
    let k = model.coefficients.expect("coefficients");
    assert_eq!(
        (k.intercept, k.failed_payment, k.cancellation),
        (-2.0, 0.7, 1.5)
    );
    let report = model.report.expect("report");
    assert_eq!(report.labelled, 40);
    assert!(report.train_churned < 50 && report.fitted_log_loss.is_none());
    let s = scores(&mut c, &ids[1]).await;
    assert_eq!(
        s.model_version,
        "scores-1; churn-logit-default-1; fit 1 EUR"
    );
    let churn = s.churn.expect("churn");
    assert_eq!(churn.model_version, "churn-logit-default-1");
    let failed = churn
        .contributions
        .iter()
        .find(|r| r.factor == "failed_payments");
    // Customer 1's failed payments were 95 and 100 days ago: outside the 30-day window now.
    assert!(failed.is_none(), "{churn:?}");
    assert!(!churn.contributions.is_empty());
}
