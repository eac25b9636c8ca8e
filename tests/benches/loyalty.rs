//! The rule-sweep benchmark (issue 6, "Performance": a sweep over 100k customers evaluates and
//! writes its actions in ≤ 2 s). Seeds live customers straight into a fresh SQLite store with
//! multi-row inserts, sweeps one rule that targets every one of them (a follow-up call by
//! phone: no consent or cap stands in the way, 10 % held out), and prints, in the same run, the
//! time of a raw multi-row INSERT of as many action rows in one transaction as the baseline.
//!
//! ```text
//! cargo bench -p cxhub-tests --bench loyalty
//! CXHUB_BENCH_CUSTOMERS=20000 cargo bench -p cxhub-tests --bench loyalty
//! ```
//!
//! SQLite only for now.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::cast_precision_loss,
    missing_docs
)]

use std::time::Instant;

use cxhub_domain::identifier::CustomerId;
use cxhub_domain::loyalty::action::{ActionKind, ContactChannel};
use cxhub_domain::loyalty::repo::{GuardConfig, LoyaltyRepo};
use cxhub_domain::loyalty::rule::{ActionTemplate, Holdout, Rule, RuleLimits, RuleSpec, Trigger};
use cxhub_domain::touchpoint::Key;
use cxhub_store::{Store, StoreOptions};
use sea_orm::{ConnectionTrait, DbBackend, Statement, TransactionTrait, Value};

/// Rows per multi-row insert (well under SQLite's bind limit for 18 columns).
const ROWS: usize = 1000;

fn placeholders(rows: usize, columns: usize) -> String {
    let row = format!("({})", vec!["?"; columns].join(", "));
    vec![row; rows].join(", ")
}

async fn insert_rows(
    conn: &impl ConnectionTrait,
    head: &str,
    columns: usize,
    rows: Vec<Vec<Value>>,
) {
    for chunk in rows.chunks(ROWS) {
        let sql = format!("{head} VALUES {}", placeholders(chunk.len(), columns));
        let values: Vec<Value> = chunk.iter().flatten().cloned().collect();
        conn.execute_raw(Statement::from_sql_and_values(
            DbBackend::Sqlite,
            sql,
            values,
        ))
        .await
        .expect("insert");
    }
}

fn text(s: impl Into<String>) -> Value {
    Value::String(Some(s.into()))
}

fn main() {
    let customers: usize = std::env::var("CXHUB_BENCH_CUSTOMERS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(100_000);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}", dir.path().join("loyalty.db").display());
    runtime.block_on(bench(&url, customers));
}

async fn bench(url: &str, customers: usize) {
    let store = Store::connect(url, StoreOptions::default())
        .await
        .expect("store");
    store.migrate().await.expect("migrated");
    let raw = sea_orm::Database::connect(format!("{url}?mode=rw"))
        .await
        .expect("raw connection");

    // Seed.
    let started = Instant::now();
    let now = chrono::Utc::now();
    let txn = raw.begin().await.expect("begin");
    let rows = (0..customers)
        .map(|_| {
            vec![
                text(CustomerId::generate().to_string()),
                text("Ana"),
                text("Silva"),
                text("[]"),
                text("pt-PT"),
                text("[]"),
                text(""),
                text("{}"),
                Value::BigInt(Some(1)),
                Value::ChronoDateTimeUtc(Some(now)),
                Value::ChronoDateTimeUtc(Some(now)),
            ]
        })
        .collect();
    insert_rows(
        &txn,
        "INSERT INTO customers (id, given_name, family_name, addresses_json, \
         preferred_language, consents_json, account_id, provenance_json, revision, created_at, \
         updated_at)",
        11,
        rows,
    )
    .await;
    txn.commit().await.expect("commit");
    println!(
        "seeded {customers} customers in {:.2} s",
        started.elapsed().as_secs_f64()
    );

    // The sweep.
    let rule = Rule {
        id: Key::parse("bench-follow-up").expect("key"),
        version: 1,
        spec: RuleSpec {
            name: "Bench".into(),
            trigger: Trigger::DailySweep,
            condition: "!has(nps.latest)".into(),
            action: ActionTemplate {
                kind: ActionKind::FollowUpCall,
                channel: ContactChannel::Phone,
                value: None,
                campaign: None,
                due_in_seconds: 48 * 3600,
                assignee_team: "care".into(),
                reason_template: String::new(),
            },
            limits: RuleLimits::default(),
            holdout: Holdout {
                control_share: 0.1,
                seed: 1,
            },
            enabled: true,
        },
        created_by: "bench".into(),
        created_at: now,
    };
    let started = Instant::now();
    let report = store
        .run_sweep(&rule, &GuardConfig::default(), chrono::Utc::now(), 500)
        .await
        .expect("swept");
    let sweep = started.elapsed().as_secs_f64();
    println!(
        "sweep: {} scanned, {} proposed, {} held out, {} blocked in {sweep:.2} s ({:.0} customers/s)",
        report.scanned,
        report.proposed,
        report.held_out,
        report.blocked,
        report.scanned as f64 / sweep
    );

    // Baseline: as many action rows in one raw multi-row INSERT.
    let n = usize::try_from(report.proposed).expect("fits");
    let rows = (0..n)
        .map(|_| {
            vec![
                text(uuid::Uuid::now_v7().to_string()),
                text(CustomerId::generate().to_string()),
                text("follow_up_call"),
                text("bench-baseline"),
                Value::BigInt(Some(1)),
                text("baseline"),
                text("PHONE"),
                Value::BigInt(None),
                Value::String(None),
                Value::String(None),
                Value::BigInt(Some(0)),
                Value::ChronoDateTimeUtc(Some(now)),
                text("care"),
                text("PROPOSED"),
                Value::BigInt(Some(1)),
                text("bench"),
                Value::ChronoDateTimeUtc(Some(now)),
                Value::ChronoDateTimeUtc(Some(now)),
            ]
        })
        .collect();
    let started = Instant::now();
    let txn = raw.begin().await.expect("begin");
    insert_rows(
        &txn,
        "INSERT INTO loyalty_actions (id, customer_id, kind, rule_id, rule_version, reason, \
         channel, value_minor, value_currency, campaign_id, reserved_minor, due_at, \
         assignee_team, state, revision, created_by, created_at, updated_at)",
        18,
        rows,
    )
    .await;
    txn.commit().await.expect("commit");
    let baseline = started.elapsed().as_secs_f64();
    println!(
        "baseline: raw INSERT of {n} action rows in {baseline:.2} s; sweep ÷ baseline = {:.1}",
        sweep / baseline
    );
}
