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
//! 3. **NPS report over 1,000,000 responses of 100,000 customers** (`CXHUB_BENCH_ONLY=report`,
//!    not part of the default run): `GetScoreReport` grouped by touchpoint (sub-touchpoints rolled
//!    up) and month over a year, warm, median of 7 calls. Target ≤ 1.5 × the baseline: the
//!    hand-written SQL `GROUP BY` of the same counts (promoters, passives, detractors per main
//!    touchpoint and month), run on the same database in the same run. See [`report`].
//!
//! ```text
//! cargo bench -p cxhub-tests --bench scoring                    # SQLite
//! CXHUB_BENCH_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/postgres \
//!   cargo bench -p cxhub-tests --bench scoring                  # SQLite, then PostgreSQL
//! CXHUB_BENCH_CUSTOMERS=20000 …                                 # fewer customers (default 100,000)
//! CXHUB_BENCH_ONLY=fit|sqlite|postgres …                        # one part only
//! CXHUB_BENCH_ONLY=report [CXHUB_BENCH_POSTGRES_URL=…] …        # the report, SQLite then PostgreSQL
//! CXHUB_BENCH_RESPONSES=100000 …                                # fewer responses (default 1,000,000)
//! CXHUB_BENCH_REPORT_ONLY=sqlite|postgres …                     # the report on one backend
//! CXHUB_BENCH_KEEP=/some/dir …                                  # keep the databases (SQLite file in that dir)
//! ```
//!
//! For the report on PostgreSQL use the Unix socket
//! (`postgres://postgres@localhost/cxhub?host=/var/run/postgresql`): see
//! docs/operating-postgres.md on TCP.

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
    // `RUST_LOG=cxhub_scoring=info` shows the recompute's own phases (read, fits, write).
    if std::env::var_os("RUST_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .init();
    }
    let customers: u64 = std::env::var("CXHUB_BENCH_CUSTOMERS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(100_000);
    let only = std::env::var("CXHUB_BENCH_ONLY").unwrap_or_default();
    if only == "report" {
        report::run(customers);
        return;
    }
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
    // `CXHUB_BENCH_KEEP=/some/dir` keeps the SQLite database there, to look at afterwards.
    let keep = std::env::var_os("CXHUB_BENCH_KEEP").map(std::path::PathBuf::from);
    let db_dir = keep.as_deref().unwrap_or(dir.path());
    if only.is_empty() || only == "sqlite" {
        let url = format!("sqlite://{}", db_dir.join("scoring.db").display());
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

// ------------------------------------------------------------------------------------------------
// 3. The NPS report

/// The NPS report over a year of responses, beside the hand-written SQL `GROUP BY` of the same
/// counts, on SQLite and (with `CXHUB_BENCH_POSTGRES_URL`) PostgreSQL.
///
/// Seeding: the demo registry; `customers` customers through `IngestRecords` (contacts); one
/// NPS survey attached to 20 touchpoints of the demo registry (14 main ones and 6
/// sub-touchpoints) through `CreateSurvey`; then the responses with multi-row `INSERT`s straight
/// into `survey_responses` and `survey_answers`, every column as `SubmitResponses` writes it
/// (content hash of the `ResponseInput`, the survey's default language, day and month
/// numbers). Before the big run a small sample checks that: the rows `SubmitResponses` stores
/// are column for column the rows this bench inserts, a hub seeded by inserts answers the same
/// reports as one seeded through `SubmitResponses`, and re-submitting inserted responses
/// through the RPC answers UNCHANGED.
mod report {
    use std::collections::BTreeMap;
    use std::time::{Duration, Instant};

    use chrono::{DateTime, TimeZone, Utc};
    use cxhub_domain::scoring::survey::{
        AnswerQuery, SurveyRepo, TimeBucket, TimeRange, epoch_day, epoch_month,
    };
    use cxhub_proto::common::v1 as common;
    use cxhub_proto::feeds::v1 as pb;
    use cxhub_proto::feeds::v1::feed_service_client::FeedServiceClient;
    use cxhub_proto::scoring::v1 as spb;
    use cxhub_proto::scoring::v1::scoring_service_client::ScoringServiceClient;
    use cxhub_store::StoreOptions;
    use prost::Message;
    use sea_orm::{
        ConnectionTrait, Database, DatabaseConnection, DbBackend, Statement, TransactionTrait,
        Value,
    };
    use sha2::{Digest, Sha256};
    use tonic::transport::Channel;

    use super::secs;
    use super::support::{Hub, serve_store, ts};

    const SURVEY: &str = "bench.nps";
    const QUESTION: &str = "recommend";
    const MAIN_TOUCHPOINTS: usize = 14;
    const SUB_TOUCHPOINTS: usize = 6;
    const DAYS: i64 = 365;
    const ROUNDS: usize = 7;
    /// Responses per generated chunk (and per insert transaction).
    const CHUNK: u64 = 50_000;
    /// Bind parameters per statement (SQLite's limit is 32,766).
    const PARAMS: usize = 30_000;

    const RESPONSE_COLUMNS: [&str; 11] = [
        "response_id",
        "survey_id",
        "customer_id",
        "touchpoint_id",
        "interaction_id",
        "language",
        "comment",
        "answered_at",
        "received_at",
        "content_hash",
        "language_given",
    ];
    const ANSWER_COLUMNS: [&str; 11] = [
        "response_id",
        "position",
        "question_key",
        "kind",
        "value",
        "survey_id",
        "touchpoint_id",
        "customer_id",
        "answered_at",
        "answered_day",
        "answered_month",
    ];

    fn year_start() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0).single().unwrap()
    }

    fn year_range() -> Option<spb::TimeRange> {
        Some(spb::TimeRange {
            from: Some(ts(year_start())),
            to: Some(ts(year_start() + chrono::Duration::days(DAYS))),
        })
    }

    fn splitmix(x: u64) -> u64 {
        let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A touchpoint the survey is attached to.
    #[derive(Clone)]
    struct Tp {
        id: String,
        key: String,
    }

    /// What one seeded database holds.
    struct World {
        hub: Hub,
        db: DatabaseConnection,
        /// `"schema".` on PostgreSQL, empty on SQLite.
        prefix: String,
        schema: Option<String>,
        customers: Vec<String>,
        touchpoints: Vec<Tp>,
        survey_id: String,
    }

    /// Response `i`: (customer index, touchpoint index, NPS answer, answered at). Touchpoints
    /// differ in how they are rated, customers answer about 10 times each, answers spread over
    /// the year.
    fn response(
        i: u64,
        customers: usize,
        touchpoints: usize,
    ) -> (usize, usize, i32, DateTime<Utc>) {
        let a = splitmix(i);
        let b = splitmix(a);
        let c = splitmix(b);
        let tp = (a % touchpoints as u64) as usize;
        let customer = (b % customers as u64) as usize;
        let value = ((c % 11) as i32 + (tp % 4) as i32 - 1).clamp(0, 10);
        let at =
            year_start() + chrono::Duration::seconds(((c >> 8) % (DAYS as u64 * 86_400)) as i64);
        (customer, tp, value, at)
    }

    fn input(w: &World, i: u64) -> spb::ResponseInput {
        let (customer, tp, value, at) = response(i, w.customers.len(), w.touchpoints.len());
        spb::ResponseInput {
            response_id: format!("bench-{i}"),
            customer_id: w.customers[customer].clone(),
            survey_key: SURVEY.into(),
            touchpoint_key: w.touchpoints[tp].key.clone(),
            answers: vec![spb::Answer {
                question_key: QUESTION.into(),
                value,
            }],
            answered_at: Some(ts(at)),
            ..Default::default()
        }
    }

    /// The `survey_responses` and `survey_answers` rows of responses `ids`, as
    /// `SubmitResponses` writes them (received at `received`).
    fn rows(
        w: &World,
        ids: std::ops::Range<u64>,
        received: DateTime<Utc>,
    ) -> (Vec<Vec<Value>>, Vec<Vec<Value>>) {
        let mut responses = Vec::with_capacity(ids.end.saturating_sub(ids.start) as usize);
        let mut answers = Vec::with_capacity(responses.capacity());
        for i in ids {
            let (customer, tp, value, at) = response(i, w.customers.len(), w.touchpoints.len());
            let hash = Sha256::digest(input(w, i).encode_to_vec()).to_vec();
            let id = format!("bench-{i}");
            let customer = w.customers[customer].clone();
            let tp = w.touchpoints[tp].id.clone();
            responses.push(vec![
                Value::from(id.clone()),
                Value::from(w.survey_id.clone()),
                Value::from(customer.clone()),
                Value::from(tp.clone()),
                Value::String(None),
                Value::from("en".to_owned()),
                Value::String(None),
                Value::from(at),
                Value::from(received),
                Value::from(hash),
                // The responses name no language: stored with the survey's default.
                Value::from(false),
            ]);
            answers.push(vec![
                Value::from(id),
                Value::from(0i64),
                Value::from(QUESTION.to_owned()),
                Value::from("nps".to_owned()),
                Value::from(i64::from(value)),
                Value::from(w.survey_id.clone()),
                Value::from(tp),
                Value::from(customer),
                Value::from(at),
                Value::from(epoch_day(at)),
                Value::from(epoch_month(at)),
            ]);
        }
        (responses, answers)
    }

    async fn insert(
        db: &impl ConnectionTrait,
        table: &str,
        columns: &[&str],
        rows: Vec<Vec<Value>>,
    ) {
        let backend = db.get_database_backend();
        for chunk in rows.chunks(PARAMS / columns.len()) {
            let mut sql = format!("INSERT INTO {table} ({}) VALUES ", columns.join(", "));
            let mut values = Vec::with_capacity(chunk.len() * columns.len());
            for (r, row) in chunk.iter().enumerate() {
                sql.push_str(if r == 0 { "(" } else { ", (" });
                for (c, value) in row.iter().enumerate() {
                    if c > 0 {
                        sql.push_str(", ");
                    }
                    values.push(value.clone());
                    match backend {
                        DbBackend::Postgres => sql.push_str(&format!("${}", values.len())),
                        _ => sql.push('?'),
                    }
                }
                sql.push(')');
            }
            db.execute_raw(Statement::from_sql_and_values(backend, sql, values))
                .await
                .expect("insert");
        }
    }

    /// Inserts responses `ids` with multi-row inserts, one transaction per chunk.
    async fn insert_responses(w: &World, ids: std::ops::Range<u64>) {
        let received = chrono::SubsecRound::trunc_subsecs(Utc::now(), 6);
        let mut start = ids.start;
        while start < ids.end {
            let end = (start + CHUNK).min(ids.end);
            let (responses, answers) = rows(w, start..end, received);
            let txn = w.db.begin().await.expect("begin");
            let p = &w.prefix;
            insert(
                &txn,
                &format!("{p}survey_responses"),
                &RESPONSE_COLUMNS,
                responses,
            )
            .await;
            insert(
                &txn,
                &format!("{p}survey_answers"),
                &ANSWER_COLUMNS,
                answers,
            )
            .await;
            txn.commit().await.expect("commit");
            start = end;
        }
    }

    /// Submits responses `ids` through `SubmitResponses`, 1,000 a call; every result.
    async fn submit_responses(w: &World, ids: std::ops::Range<u64>) -> Vec<spb::ResponseResult> {
        let mut scoring = scoring(&w.hub.channel);
        let mut out = Vec::new();
        let ids: Vec<u64> = ids.collect();
        for batch in ids.chunks(1_000) {
            out.extend(
                scoring
                    .submit_responses(spb::SubmitResponsesRequest {
                        responses: batch.iter().map(|&i| input(w, i)).collect(),
                    })
                    .await
                    .expect("submit")
                    .into_inner()
                    .results,
            );
        }
        out
    }

    /// One connection for the baseline and the seeding, with the driver's defaults: on SQLite
    /// SQLite's own 2 MB page cache, which reads a table in random order faster than the hub's
    /// 64 MiB (3.2 s against 4.6 s for the baseline before `survey_answers_report_idx`), so the
    /// baseline is not slowed down by the hub's settings.
    async fn connect(url: &str) -> DatabaseConnection {
        let mut options = sea_orm::ConnectOptions::new(url);
        options
            .max_connections(1)
            .min_connections(1)
            .sqlx_logging(false);
        Database::connect(options).await.expect("connect")
    }

    fn scoring(channel: &Channel) -> ScoringServiceClient<Channel> {
        ScoringServiceClient::new(channel.clone())
            .max_decoding_message_size(64 * 1024 * 1024)
            .max_encoding_message_size(64 * 1024 * 1024)
    }

    fn bench_url(base: &str, name: &str, dir: &std::path::Path) -> (String, StoreOptions) {
        if base.starts_with("sqlite") {
            (
                format!("sqlite://{}", dir.join(format!("{name}.db")).display()),
                StoreOptions::default(),
            )
        } else {
            (
                base.to_owned(),
                StoreOptions {
                    schema: Some(format!("bench_{name}_{}", uuid::Uuid::now_v7().simple())),
                    max_connections: None,
                },
            )
        }
    }

    /// A hub with the demo registry, `customers` customers and the survey, on `url`.
    async fn world(url: &str, options: StoreOptions, customers: usize) -> World {
        let schema = options.schema.clone();
        let args = cxhub::ServeArgs {
            database_url: Some(url.to_owned()),
            services: Some(vec!["feeds".into(), "scoring".into()]),
            demo: true,
            max_message_bytes: Some(64 * 1024 * 1024),
            request_timeout: Some(Duration::from_secs(600)),
            ..Default::default()
        };
        let store = cxhub::open_store(url, options).await.expect("store");
        let hub = serve_store(args, store).await;
        let db = connect(url).await;
        let prefix = schema
            .as_ref()
            .map(|s| format!("\"{s}\"."))
            .unwrap_or_default();

        let mut feeds = FeedServiceClient::new(hub.channel.clone())
            .max_decoding_message_size(64 * 1024 * 1024)
            .max_encoding_message_size(64 * 1024 * 1024);
        let mut ids = Vec::with_capacity(customers);
        let all: Vec<usize> = (0..customers).collect();
        for batch in all.chunks(1_000) {
            let records = batch
                .iter()
                .map(|i| pb::Record {
                    source: "crm".into(),
                    record_id: format!("c-{i}"),
                    updated_at: Some(ts(year_start())),
                    customer: Some(common::SourceCustomer {
                        source_customer_id: format!("c-{i}"),
                        emails: vec![],
                        phones: vec![],
                    }),
                    body: Some(pb::record::Body::Contact(pb::Contact {
                        given_name: format!("Customer {i}"),
                        ..Default::default()
                    })),
                })
                .collect();
            let results = feeds
                .ingest_records(pb::IngestRecordsRequest { records })
                .await
                .expect("customers")
                .into_inner()
                .results;
            for r in results {
                assert!(!r.customer_id.is_empty(), "{r:?}");
                ids.push(r.customer_id);
            }
        }

        // 14 main touchpoints below an area, and 6 sub-touchpoints (of different main ones).
        let rows = db
            .query_all_raw(Statement::from_string(
                db.get_database_backend(),
                format!(
                    "SELECT t.id, t.key, t.is_main, t.parent_id, p.is_main AS parent_main \
                     FROM {prefix}touchpoints t LEFT JOIN {prefix}touchpoints p ON p.id = t.parent_id \
                     ORDER BY t.key"
                ),
            ))
            .await
            .expect("touchpoints");
        let mut mains = Vec::new();
        let mut subs = Vec::new();
        let mut parents = std::collections::BTreeSet::new();
        for row in rows {
            let id: String = row.try_get("", "id").unwrap();
            let key: String = row.try_get("", "key").unwrap();
            let main: bool = row.try_get("", "is_main").unwrap();
            let parent: Option<String> = row.try_get("", "parent_id").unwrap();
            let parent_main: Option<bool> = row.try_get("", "parent_main").unwrap();
            match (main, parent) {
                (true, Some(_)) if mains.len() < MAIN_TOUCHPOINTS => mains.push(Tp { id, key }),
                (false, Some(parent))
                    if parent_main == Some(true)
                        && subs.len() < SUB_TOUCHPOINTS
                        && parents.insert(parent.clone()) =>
                {
                    subs.push((Tp { id, key }, parent));
                }
                _ => {}
            }
        }
        assert_eq!(
            mains.len(),
            MAIN_TOUCHPOINTS,
            "demo registry main touchpoints"
        );
        assert_eq!(subs.len(), SUB_TOUCHPOINTS, "demo registry sub-touchpoints");
        let touchpoints: Vec<Tp> = mains
            .into_iter()
            .chain(subs.into_iter().map(|(t, _)| t))
            .collect();

        let survey = scoring(&hub.channel)
            .create_survey(spb::CreateSurveyRequest {
                request_id: "bench-survey".into(),
                survey: Some(spb::Survey {
                    key: SURVEY.into(),
                    name: "Would you recommend us?".into(),
                    questions: vec![spb::Question {
                        key: QUESTION.into(),
                        kind: spb::QuestionKind::Nps as i32,
                        text: BTreeMap::from([(
                            "en".to_owned(),
                            "How likely are you to recommend us to a friend?".to_owned(),
                        )]),
                        ..Default::default()
                    }],
                    languages: vec!["en".into()],
                    default_language: "en".into(),
                    touchpoint_keys: touchpoints.iter().map(|t| t.key.clone()).collect(),
                    ..Default::default()
                }),
            })
            .await
            .expect("survey")
            .into_inner()
            .survey
            .expect("survey");
        World {
            hub,
            db,
            prefix,
            schema,
            customers: ids,
            touchpoints,
            survey_id: survey.id,
        }
    }

    async fn close(w: World, url: &str) {
        let _ = w.db.close().await;
        w.hub.stop().await;
        if let Some(schema) = w.schema {
            if std::env::var("CXHUB_BENCH_KEEP").is_ok() {
                println!("kept the PostgreSQL schema {schema}");
            } else {
                let _ = cxhub_store::drop_postgres_schema(url, &schema).await;
            }
        }
    }

    /// Every stored row of both tables (but `received_at`), ordered, as values.
    async fn stored(w: &World) -> (Vec<Vec<Value>>, Vec<Vec<Value>>) {
        let backend = w.db.get_database_backend();
        let p = &w.prefix;
        let read = |sql: String| {
            let db = &w.db;
            async move {
                db.query_all_raw(Statement::from_string(backend, sql))
                    .await
                    .expect("read")
            }
        };
        let responses = read(format!(
            "SELECT {} FROM {p}survey_responses ORDER BY response_id",
            RESPONSE_COLUMNS.join(", ")
        ))
        .await
        .into_iter()
        .map(|r| {
            vec![
                Value::from(r.try_get::<String>("", "response_id").unwrap()),
                Value::from(r.try_get::<String>("", "survey_id").unwrap()),
                Value::from(r.try_get::<String>("", "customer_id").unwrap()),
                Value::from(r.try_get::<String>("", "touchpoint_id").unwrap()),
                Value::String(r.try_get::<Option<String>>("", "interaction_id").unwrap()),
                Value::from(r.try_get::<String>("", "language").unwrap()),
                Value::String(r.try_get::<Option<String>>("", "comment").unwrap()),
                Value::from(r.try_get::<DateTime<Utc>>("", "answered_at").unwrap()),
                Value::from(r.try_get::<Vec<u8>>("", "content_hash").unwrap()),
                Value::from(r.try_get::<bool>("", "language_given").unwrap()),
            ]
        })
        .collect();
        let answers = read(format!(
            "SELECT {} FROM {p}survey_answers ORDER BY response_id, position",
            ANSWER_COLUMNS.join(", ")
        ))
        .await
        .into_iter()
        .map(|r| {
            let int = |c: &str| -> i64 {
                r.try_get::<i64>("", c)
                    .or_else(|_| r.try_get::<i32>("", c).map(i64::from))
                    .unwrap()
            };
            vec![
                Value::from(r.try_get::<String>("", "response_id").unwrap()),
                Value::from(int("position")),
                Value::from(r.try_get::<String>("", "question_key").unwrap()),
                Value::from(r.try_get::<String>("", "kind").unwrap()),
                Value::from(int("value")),
                Value::from(r.try_get::<String>("", "survey_id").unwrap()),
                Value::from(r.try_get::<String>("", "touchpoint_id").unwrap()),
                Value::from(r.try_get::<String>("", "customer_id").unwrap()),
                Value::from(r.try_get::<DateTime<Utc>>("", "answered_at").unwrap()),
                Value::from(int("answered_day")),
                Value::from(int("answered_month")),
            ]
        })
        .collect();
        (responses, answers)
    }

    /// The requests the sample compares: by main touchpoint and month, by category and channel,
    /// by (unrolled) touchpoint and week.
    fn sample_requests() -> Vec<spb::GetScoreReportRequest> {
        use spb::GroupBy as G;
        vec![
            report_request(),
            spb::GetScoreReportRequest {
                range: year_range(),
                group_by: vec![G::CustomerCategory as i32, G::Channel as i32],
                ..Default::default()
            },
            spb::GetScoreReportRequest {
                range: year_range(),
                group_by: vec![G::Touchpoint as i32, G::TimeBucket as i32],
                time_bucket: spb::TimeBucket::Week as i32,
                ..Default::default()
            },
        ]
    }

    fn report_request() -> spb::GetScoreReportRequest {
        spb::GetScoreReportRequest {
            range: year_range(),
            group_by: vec![
                spb::GroupBy::Touchpoint as i32,
                spb::GroupBy::TimeBucket as i32,
            ],
            time_bucket: spb::TimeBucket::Month as i32,
            roll_up_sub_touchpoints: true,
            ..Default::default()
        }
    }

    /// Checks on a sample that inserted rows are what `SubmitResponses` writes (see [`report`]).
    async fn check_sample(name: &str, base: &str, dir: &std::path::Path) {
        const CUSTOMERS: usize = 300;
        const RESPONSES: u64 = 3_000;
        let (url, options) = bench_url(base, "sample_rpc", dir);
        let by_rpc = world(&url, options, CUSTOMERS).await;
        let results = submit_responses(&by_rpc, 0..RESPONSES).await;
        assert!(
            results
                .iter()
                .all(|r| r.outcome == spb::ResponseOutcome::Created as i32),
            "{:?}",
            results
                .iter()
                .find(|r| r.outcome != spb::ResponseOutcome::Created as i32)
        );
        let (mut responses, mut answers) = rows(&by_rpc, 0..RESPONSES, Utc::now());
        for row in &mut responses {
            row.remove(8); // received_at
        }
        let sort = |rows: &mut Vec<Vec<Value>>| {
            rows.sort_by_key(|r| format!("{:?}{:?}", r[0], r[1]));
        };
        sort(&mut responses);
        sort(&mut answers);
        let (mut got_responses, mut got_answers) = stored(&by_rpc).await;
        sort(&mut got_responses);
        sort(&mut got_answers);
        assert_eq!(got_responses, responses, "survey_responses rows");
        assert_eq!(got_answers, answers, "survey_answers rows");

        let (url2, options2) = bench_url(base, "sample_sql", dir);
        let by_sql = world(&url2, options2, CUSTOMERS).await;
        insert_responses(&by_sql, 0..RESPONSES).await;
        for request in sample_requests() {
            let a = scoring(&by_rpc.hub.channel)
                .get_score_report(request.clone())
                .await
                .expect("report")
                .into_inner();
            let b = scoring(&by_sql.hub.channel)
                .get_score_report(request)
                .await
                .expect("report")
                .into_inner();
            assert!(!a.groups.is_empty());
            assert_eq!(
                a, b,
                "the same report from inserted and submitted responses"
            );
        }
        let again = submit_responses(&by_sql, 0..1_000).await;
        assert!(
            again
                .iter()
                .all(|r| r.outcome == spb::ResponseOutcome::Unchanged as i32),
            "inserted responses re-submitted: {:?}",
            again
                .iter()
                .find(|r| r.outcome != spb::ResponseOutcome::Unchanged as i32)
        );
        println!(
            "{name}: sample of {RESPONSES} responses: inserted rows equal submitted ones column for column, the same {} reports, re-submitted ones UNCHANGED",
            sample_requests().len()
        );
        close(by_rpc, &url).await;
        close(by_sql, &url2).await;
    }

    /// (main touchpoint key, month start) → (promoters, passives, detractors).
    type Counts = BTreeMap<(String, i64), (u64, u64, u64)>;

    fn rpc_counts(report: &spb::GetScoreReportResponse) -> Counts {
        report
            .groups
            .iter()
            .map(|g| {
                let key = g.key.as_ref().expect("key");
                let nps = g.scores.as_ref().and_then(|s| s.nps.as_ref()).expect("nps");
                let n = nps.score.as_ref().expect("score").answer_count as f64;
                let count = |percent: f64| (percent * n / 100.0).round() as u64;
                (
                    (
                        key.touchpoint_key.clone(),
                        key.bucket_start.as_ref().expect("bucket").seconds,
                    ),
                    (
                        count(nps.promoters_percent),
                        count(nps.passives_percent),
                        count(nps.detractors_percent),
                    ),
                )
            })
            .collect()
    }

    /// The hand-written report: one `GROUP BY` over the NPS answers of the range, each
    /// sub-touchpoint counted at its parent main touchpoint.
    fn baseline_sql(w: &World) -> Statement {
        let p = &w.prefix;
        let backend = w.db.get_database_backend();
        let (a, b) = match backend {
            DbBackend::Postgres => ("$1", "$2"),
            _ => ("?", "?"),
        };
        let sql = format!(
            "SELECT CASE WHEN t.is_main THEN t.id ELSE t.parent_id END AS main_id, \
             a.answered_month AS month, \
             SUM(CASE WHEN a.value >= 9 THEN 1 ELSE 0 END) AS promoters, \
             SUM(CASE WHEN a.value BETWEEN 7 AND 8 THEN 1 ELSE 0 END) AS passives, \
             SUM(CASE WHEN a.value <= 6 THEN 1 ELSE 0 END) AS detractors \
             FROM {p}survey_answers a JOIN {p}touchpoints t ON t.id = a.touchpoint_id \
             WHERE a.kind = 'nps' AND a.answered_at >= {a} AND a.answered_at < {b} \
             GROUP BY CASE WHEN t.is_main THEN t.id ELSE t.parent_id END, a.answered_month"
        );
        Statement::from_sql_and_values(
            backend,
            sql,
            [
                Value::from(year_start()),
                Value::from(year_start() + chrono::Duration::days(DAYS)),
            ],
        )
    }

    async fn sql_counts(w: &World) -> Counts {
        let keys: BTreeMap<String, String> =
            w.db.query_all_raw(Statement::from_string(
                w.db.get_database_backend(),
                format!("SELECT id, key FROM {}touchpoints", w.prefix),
            ))
            .await
            .expect("keys")
            .into_iter()
            .map(|r| (r.try_get("", "id").unwrap(), r.try_get("", "key").unwrap()))
            .collect();
        w.db.query_all_raw(baseline_sql(w))
            .await
            .expect("baseline")
            .into_iter()
            .map(|r| {
                let id: String = r.try_get("", "main_id").unwrap();
                let month: i64 = r.try_get("", "month").unwrap();
                let get = |c: &str| -> u64 { r.try_get::<i64>("", c).unwrap() as u64 };
                (
                    (
                        keys[&id].clone(),
                        TimeBucket::Month.start(month).unwrap().timestamp(),
                    ),
                    (get("promoters"), get("passives"), get("detractors")),
                )
            })
            .collect()
    }

    fn median(mut v: Vec<Duration>) -> Duration {
        v.sort();
        v[v.len() / 2]
    }

    async fn run_one(
        name: &str,
        base: &str,
        dir: &std::path::Path,
        customers: usize,
        responses: u64,
    ) {
        check_sample(name, base, dir).await;
        let (url, options) = bench_url(base, "report", dir);
        let started = Instant::now();
        let w = world(&url, options, customers).await;
        println!(
            "{name}: {} customers, {} touchpoints ({MAIN_TOUCHPOINTS} main, {SUB_TOUCHPOINTS} sub) and the survey seeded through the RPCs in {:.1} s",
            w.customers.len(),
            w.touchpoints.len(),
            secs(started.elapsed())
        );
        let started = Instant::now();
        insert_responses(&w, 0..responses).await;
        let analyse = match w.db.get_database_backend() {
            DbBackend::Postgres => format!(
                "VACUUM ANALYZE {p}survey_answers; VACUUM ANALYZE {p}survey_responses",
                p = w.prefix
            ),
            // As a hub that has served a while: the WAL written back (the hub never runs
            // ANALYZE on SQLite; autovacuum would on PostgreSQL).
            _ => "PRAGMA wal_checkpoint(TRUNCATE)".to_owned(),
        };
        for statement in analyse.split("; ") {
            w.db.execute_unprepared(statement).await.expect("analyze");
        }
        println!(
            "{name}: {responses} NPS responses inserted in {:.1} s (then {analyse})",
            secs(started.elapsed())
        );

        let store = cxhub::open_store(
            &url,
            StoreOptions {
                schema: w.schema.clone(),
                max_connections: None,
            },
        )
        .await
        .expect("store");
        let query = AnswerQuery {
            range: TimeRange {
                from: year_start(),
                to: year_start() + chrono::Duration::days(DAYS),
            },
            survey_ids: None,
            touchpoint_ids: None,
            by_touchpoint: true,
            bucket: Some(TimeBucket::Month),
            by_latest_nps: false,
        };
        let mut client = scoring(&w.hub.channel);
        let mut rpc_times = Vec::new();
        let mut sql_times = Vec::new();
        let mut store_times = Vec::new();
        let mut last = None;
        for round in 0..ROUNDS + 2 {
            let started = Instant::now();
            let report = client
                .get_score_report(report_request())
                .await
                .expect("report")
                .into_inner();
            let rpc = started.elapsed();
            let started = Instant::now();
            let rows =
                w.db.query_all_raw(baseline_sql(&w))
                    .await
                    .expect("baseline");
            let sql = started.elapsed();
            assert!(!rows.is_empty());
            let started = Instant::now();
            let counts = store.count_answers(&query).await.expect("counts");
            let counted = started.elapsed();
            assert!(!counts.is_empty());
            // Two warm-up rounds.
            if round >= 2 {
                rpc_times.push(rpc);
                sql_times.push(sql);
                store_times.push(counted);
            }
            last = Some(report);
        }
        let report = last.expect("a report");
        let from_rpc = rpc_counts(&report);
        let from_sql = sql_counts(&w).await;
        assert_eq!(from_rpc, from_sql, "the report's counts are the SQL's");
        let total = report.total.as_ref().expect("total");
        assert_eq!(total.response_count, responses);
        let sum: u64 = from_sql.values().map(|(p, q, d)| p + q + d).sum();
        assert_eq!(sum, responses);
        let (rpc, sql) = (median(rpc_times.clone()), median(sql_times.clone()));
        let ratio = secs(rpc) / secs(sql).max(1e-9);
        println!(
            "{name}: GetScoreReport by touchpoint (rolled up) and month, {} groups, NPS {:.2}: median {:.1} ms of {ROUNDS} (min {:.1}, max {:.1})",
            report.groups.len(),
            total
                .nps
                .as_ref()
                .and_then(|n| n.score.as_ref())
                .map_or(f64::NAN, |s| s.value),
            secs(rpc) * 1e3,
            secs(*rpc_times.iter().min().unwrap()) * 1e3,
            secs(*rpc_times.iter().max().unwrap()) * 1e3,
        );
        println!(
            "{name}: baseline, the hand-written SQL GROUP BY: median {:.1} ms (min {:.1}, max {:.1}); report ÷ baseline {ratio:.2} × (target ≤ 1.5 ×: {})",
            secs(sql) * 1e3,
            secs(*sql_times.iter().min().unwrap()) * 1e3,
            secs(*sql_times.iter().max().unwrap()) * 1e3,
            if ratio <= 1.5 { "PASS" } else { "MISS" }
        );
        println!(
            "{name}: of which the store's count of answers (one GROUP BY, called directly): median {:.1} ms",
            secs(median(store_times)) * 1e3
        );
        close(w, &url).await;
    }

    pub fn run(customers: u64) {
        let responses: u64 = std::env::var("CXHUB_BENCH_RESPONSES")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(1_000_000);
        let customers = usize::try_from(customers).expect("customers");
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let temp = tempfile::tempdir().expect("temp dir");
        // CXHUB_BENCH_KEEP=dir: keep the SQLite files there and the PostgreSQL schemas.
        let dir = std::env::var("CXHUB_BENCH_KEEP")
            .map_or_else(|_| temp.path().to_owned(), std::path::PathBuf::from);
        let one = std::env::var("CXHUB_BENCH_REPORT_ONLY").unwrap_or_default();
        if one != "postgres" {
            runtime.block_on(run_one("SQLite", "sqlite", &dir, customers, responses));
        }
        if let Ok(url) = std::env::var("CXHUB_BENCH_POSTGRES_URL")
            && one != "sqlite"
        {
            runtime.block_on(run_one("PostgreSQL", &url, &dir, customers, responses));
        }
    }
}
