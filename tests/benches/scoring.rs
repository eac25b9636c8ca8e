//! The scoring benchmark (issue: scoring). Two figures, each beside a baseline measured in the
//! same run:
//!
//! 1. **CLV fit on CDNOW master** (23,570 customers, calibration to the end of the data, time in
//!    weeks): BG/NBD and Gamma-Gamma fitted by maximum likelihood. Target ≤ 1 s. Baseline: the
//!    time to turn the purchases into the per-customer summaries the fit reads.
//! 2. **Full recompute of 100,000 customers** (CDNOW purchase histories copied until there are
//!    100,000 customers, fed through `IngestRecords`, then `RecomputeScores`): fit the models
//!    over the ledger and write churn, CLV, RFM and category for every customer. Target ≤ 2 s.
//!    Baseline: one plain `SELECT` of the same ledger rows, in the same database.
//!
//! ```text
//! cargo bench -p cxhub-tests --bench scoring                    # SQLite
//! CXHUB_BENCH_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/postgres \
//!   cargo bench -p cxhub-tests --bench scoring                  # SQLite, then PostgreSQL
//! CXHUB_BENCH_CUSTOMERS=20000 …                                 # fewer customers (default 100,000)
//! CXHUB_BENCH_ONLY=fit|sqlite|postgres …                        # one part only
//! ```

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::cast_precision_loss,
    missing_docs
)]

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use cxhub_domain::scoring::clv::{BgNbd, CustomerSummary, GammaGamma, summarise};
use cxhub_proto::common::v1 as common;
use cxhub_proto::feeds::v1 as pb;
use cxhub_proto::feeds::v1::feed_service_client::FeedServiceClient;
use cxhub_proto::scoring::v1 as spb;
use cxhub_proto::scoring::v1::scoring_service_client::ScoringServiceClient;
use cxhub_store::StoreOptions;
use sea_orm::{ConnectionTrait, Database, Statement};

mod support;
use support::{Purchase, load_cdnow, noon, start_hub, ts};

const WEEK_SECONDS: f64 = 7.0 * 86_400.0;

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

fn verdict(pass: bool) -> &'static str {
    if pass { "meets" } else { "MISSES" }
}

// ------------------------------------------------------------------------------------------------
// 1. The CLV fit

fn fit_cdnow(purchases: &[Purchase]) {
    let started = Instant::now();
    let end = purchases.iter().map(|p| p.date).max().expect("data");
    let mut by_customer: BTreeMap<u32, Vec<(f64, f64)>> = BTreeMap::new();
    for p in purchases {
        let weeks = (noon(p.date) - noon(end)).num_seconds() as f64 / WEEK_SECONDS;
        by_customer
            .entry(p.customer)
            .or_default()
            .push((weeks, p.cents as f64 / 100.0));
    }
    let summaries: Vec<CustomerSummary> = by_customer
        .values()
        .filter_map(|h| summarise(h, 0.0))
        .collect();
    let summarised = started.elapsed();

    let started = Instant::now();
    let bg = BgNbd::fit(&summaries).expect("BG/NBD fit");
    let gg = GammaGamma::fit(&summaries).expect("Gamma-Gamma fit");
    let fitted = started.elapsed();
    println!(
        "CLV fit on CDNOW master: {} customers, {} with a repeat purchase",
        summaries.len(),
        summaries.iter().filter(|s| s.frequency > 0.0).count()
    );
    println!(
        "  BG/NBD r={:.4} α={:.4} a={:.4} b={:.4}; Gamma-Gamma p={:.4} q={:.4} γ={:.4}",
        bg.r, bg.alpha, bg.a, bg.b, gg.p, gg.q, gg.gamma
    );
    println!(
        "  fit {:.3} s (target ≤ 1 s: {}); baseline, summarising the purchases: {:.3} s; fit ÷ baseline {:.1} ×",
        secs(fitted),
        verdict(secs(fitted) <= 1.0),
        secs(summarised),
        secs(fitted) / secs(summarised).max(1e-9)
    );
}

// ------------------------------------------------------------------------------------------------
// 2. The full recompute

/// One ERP order per purchase, CDNOW copied until `customers` customers exist (copy k renames
/// customer c to c + k·100,000); only the source customer id identifies the buyer.
fn orders(purchases: &[Purchase], customers: u64) -> Vec<pb::Record> {
    let distinct = {
        let mut ids: Vec<u32> = purchases.iter().map(|p| p.customer).collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    };
    let mut records = Vec::new();
    let mut copy = 0u64;
    let mut remaining = customers;
    while remaining > 0 {
        let take = remaining.min(distinct.len() as u64);
        let last_kept = distinct[take as usize - 1];
        for (line, p) in purchases.iter().enumerate() {
            if p.customer > last_kept {
                continue;
            }
            let cid = u64::from(p.customer) + copy * 100_000;
            let quantity = p.cds.max(1);
            records.push(pb::Record {
                source: "erp".into(),
                record_id: format!("order-{copy}-{line}"),
                updated_at: Some(ts(noon(p.date))),
                customer: Some(common::SourceCustomer {
                    source_customer_id: format!("e{cid}"),
                    emails: vec![],
                    phones: vec![],
                }),
                body: Some(pb::record::Body::Order(pb::Order {
                    ordered_at: Some(ts(noon(p.date))),
                    lines: vec![pb::OrderLine {
                        sku: "cd".into(),
                        quantity,
                        unit_price: Some(common::Money {
                            amount_minor: p.cents / quantity,
                            currency_code: "USD".into(),
                        }),
                    }],
                    channel: cxhub_proto::touchpoint::v1::Channel::Web as i32,
                    store_id: String::new(),
                    status: pb::OrderStatus::Placed as i32,
                })),
            });
        }
        remaining -= take;
        copy += 1;
    }
    records
}

/// Reads every ledger row the recompute reads, with one plain query; answers the time and rows.
async fn raw_read(url: &str, schema: Option<&str>) -> (Duration, usize) {
    let db = Database::connect(url).await.expect("connect");
    let table = match schema {
        Some(s) => format!("\"{s}\".transactions"),
        None => "transactions".to_owned(),
    };
    let sql = format!(
        "SELECT customer_id, kind, amount_minor, currency_code, occurred_at, status FROM {table} ORDER BY customer_id, occurred_at"
    );
    let started = Instant::now();
    let rows = db
        .query_all_raw(Statement::from_string(db.get_database_backend(), sql))
        .await
        .expect("raw read");
    let took = started.elapsed();
    let _ = db.close().await;
    (took, rows.len())
}

async fn recompute(name: &str, url: &str, options: StoreOptions, records: &[pb::Record]) {
    let schema = options.schema.clone();
    let hub = start_hub(url, options, &["feeds", "scoring"]).await;
    let mut feeds = FeedServiceClient::new(hub.channel.clone())
        .max_decoding_message_size(64 * 1024 * 1024)
        .max_encoding_message_size(64 * 1024 * 1024);
    let started = Instant::now();
    for batch in records.chunks(1_000) {
        feeds
            .ingest_records(pb::IngestRecordsRequest {
                records: batch.to_vec(),
            })
            .await
            .expect("seed");
    }
    println!(
        "{name}: seeded {} orders in {:.1} s",
        records.len(),
        secs(started.elapsed())
    );

    let (raw, rows) = raw_read(url, schema.as_deref()).await;
    let mut scoring = ScoringServiceClient::new(hub.channel.clone());
    for round in 1..=2 {
        let started = Instant::now();
        let done = scoring
            .recompute_scores(spb::RecomputeScoresRequest {
                request_id: format!("recompute-{round}"),
            })
            .await
            .expect("recompute")
            .into_inner();
        let took = started.elapsed();
        println!(
            "  full recompute #{round}: {} customers scored in {:.2} s (target ≤ 2 s: {}); baseline, one SELECT of the {rows} ledger rows: {:.2} s; recompute ÷ baseline {:.1} ×",
            done.customers_scored,
            secs(took),
            verdict(secs(took) <= 2.0),
            secs(raw),
            secs(took) / secs(raw).max(1e-9)
        );
    }
    hub.stop().await;
    if let Some(schema) = schema {
        let _ = cxhub_store::drop_postgres_schema(url, &schema).await;
    }
}

fn main() {
    let customers: u64 = std::env::var("CXHUB_BENCH_CUSTOMERS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(100_000);
    let only = std::env::var("CXHUB_BENCH_ONLY").unwrap_or_default();
    let purchases = load_cdnow();
    if only.is_empty() || only == "fit" {
        fit_cdnow(&purchases);
    }
    if only == "fit" {
        return;
    }
    let records = orders(&purchases, customers);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("temp dir");
    if only.is_empty() || only == "sqlite" {
        let url = format!("sqlite://{}", dir.path().join("scoring.db").display());
        runtime.block_on(recompute("SQLite", &url, StoreOptions::default(), &records));
    }
    if only == "sqlite" {
        return;
    }
    if let Ok(url) = std::env::var("CXHUB_BENCH_POSTGRES_URL") {
        let options = StoreOptions {
            schema: Some(format!("bench_{}", uuid::Uuid::now_v7().simple())),
            max_connections: None,
        };
        runtime.block_on(recompute("PostgreSQL", &url, options, &records));
    }
}
