//! The loyalty rule benchmarks (issue 6, "Performance"):
//!
//! - sweep: a sweep over 100k customers evaluates and writes its actions in ≤ 2 s. Seeds live
//!   customers straight into a fresh store with multi-row inserts, dry-runs then sweeps one rule
//!   that targets every one of them (a follow-up call by phone: no consent or cap stands in the
//!   way, 10 % held out), and prints, in the same run, the time of a raw multi-row INSERT of as
//!   many action rows in one transaction as the baseline. The dry run reads the facts and the
//!   guard-rail state and decides, without writing: sweep − dry run ≈ the writes.
//! - events: event-triggered rules act within 1 s of the triggering write at 1,000 events/s.
//!   Serves a hub with the default detractor follow-up rule enabled, submits NPS ≤ 6 answers
//!   at 1,000 a second (`SubmitResponses`, one call per 20 ms tick) for 10 s, and measures for
//!   each the time from the acknowledged write to its follow-up call appearing on a
//!   `WatchActions` stream (from the oldest event, as an executor reads them). The baseline,
//!   from the same run: the round trip of the `SubmitResponses` calls themselves.
//!
//! ```text
//! cargo bench -p cxhub-tests --bench loyalty
//! CXHUB_BENCH_CUSTOMERS=20000 cargo bench -p cxhub-tests --bench loyalty
//! CXHUB_BENCH_POSTGRES_URL='postgres://postgres@localhost/cxhub_bench?host=/var/run/postgresql' \
//!   cargo bench -p cxhub-tests --bench loyalty
//! CXHUB_BENCH_ONLY=events,sqlite …   # parts (sweep, events) and backends (sqlite, postgres)
//! CXHUB_BENCH_SWEEP_BATCH=5000 …    # customers per sweep transaction (default: the hub's)
//! CXHUB_BENCH_EVENTS_PER_SECOND=1000 CXHUB_BENCH_EVENT_SECONDS=10 …
//! ```

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    missing_docs
)]

mod support;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use cxhub_domain::identifier::CustomerId;
use cxhub_domain::loyalty::action::{ActionKind, ContactChannel};
use cxhub_domain::loyalty::repo::{GuardConfig, LoyaltyRepo};
use cxhub_domain::loyalty::rule::{ActionTemplate, Holdout, Rule, RuleLimits, RuleSpec, Trigger};
use cxhub_domain::touchpoint::Key;
use cxhub_proto::loyalty::v1 as pb;
use cxhub_proto::scoring::v1 as scoring;
use cxhub_store::{Store, StoreOptions};
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, Statement, TransactionTrait, Value};

/// One backend to run on: a fresh database (SQLite file or PostgreSQL schema).
struct Backend {
    name: &'static str,
    url: String,
    options: StoreOptions,
}

impl Backend {
    fn db(&self) -> DbBackend {
        if self.url.starts_with("postgres") {
            DbBackend::Postgres
        } else {
            DbBackend::Sqlite
        }
    }

    /// A plain connection to the backend's database (in its schema), for seeding.
    async fn raw(&self) -> DatabaseConnection {
        let url = match self.db() {
            DbBackend::Sqlite => format!("{}?mode=rw", self.url),
            _ => self.url.clone(),
        };
        let mut opts = sea_orm::ConnectOptions::new(url);
        if let Some(schema) = &self.options.schema {
            opts.set_schema_search_path(schema.clone());
        }
        sea_orm::Database::connect(opts)
            .await
            .expect("raw connection")
    }
}

/// Rows per multi-row insert (well under the bind limits for 18 columns).
const ROWS: usize = 1000;

fn placeholders(db: DbBackend, rows: usize, columns: usize) -> String {
    let mut n = 0;
    (0..rows)
        .map(|_| {
            let row: Vec<String> = (0..columns)
                .map(|_| {
                    n += 1;
                    match db {
                        DbBackend::Postgres => format!("${n}"),
                        _ => "?".to_owned(),
                    }
                })
                .collect();
            format!("({})", row.join(", "))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

async fn insert_rows(
    conn: &impl ConnectionTrait,
    head: &str,
    columns: usize,
    rows: Vec<Vec<Value>>,
) {
    let db = conn.get_database_backend();
    for chunk in rows.chunks(ROWS) {
        let sql = format!("{head} VALUES {}", placeholders(db, chunk.len(), columns));
        let values: Vec<Value> = chunk.iter().flatten().cloned().collect();
        conn.execute_raw(Statement::from_sql_and_values(db, sql, values))
            .await
            .expect("insert");
    }
}

fn text(s: impl Into<String>) -> Value {
    Value::String(Some(s.into()))
}

/// Seeds `n` live customers (no consents, no scores); answers their ids.
async fn seed_customers(raw: &DatabaseConnection, n: usize) -> Vec<CustomerId> {
    let now = chrono::Utc::now();
    let ids: Vec<CustomerId> = (0..n).map(|_| CustomerId::generate()).collect();
    let txn = raw.begin().await.expect("begin");
    let rows = ids
        .iter()
        .map(|id| {
            vec![
                text(id.to_string()),
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
    if raw.get_database_backend() == DbBackend::Postgres {
        // What autovacuum would do soon after a load this size: without statistics the planner
        // takes the fresh table for an empty one and scans it for every lookup.
        raw.execute_unprepared("ANALYZE customers")
            .await
            .expect("analyze");
    }
    ids
}

fn env<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let only: Vec<String> = std::env::var("CXHUB_BENCH_ONLY")
        .unwrap_or_default()
        .split(',')
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .collect();
    let wants = |group: &[&str], name: &str| {
        !only.iter().any(|o| group.contains(&o.as_str())) || only.iter().any(|o| o == name)
    };
    let parts = ["sweep", "events"];
    let backends = ["sqlite", "postgres"];
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("temp dir");
    let mut runs = Vec::new();
    if wants(&backends, "sqlite") {
        runs.push(Backend {
            name: "SQLite (WAL, synchronous=FULL)",
            url: String::new(),
            options: StoreOptions::default(),
        });
    }
    if wants(&backends, "postgres") {
        match std::env::var("CXHUB_BENCH_POSTGRES_URL") {
            Ok(url) => runs.push(Backend {
                name: "PostgreSQL",
                url,
                options: StoreOptions::default(),
            }),
            Err(_) => println!("(PostgreSQL skipped: set CXHUB_BENCH_POSTGRES_URL)"),
        }
    }
    for backend in &runs {
        for part in parts {
            if !wants(&parts, part) {
                continue;
            }
            // A fresh database for each part.
            let fresh = match backend.url.as_str() {
                "" => Backend {
                    name: backend.name,
                    url: format!(
                        "sqlite://{}",
                        dir.path().join(format!("loyalty-{part}.db")).display()
                    ),
                    options: StoreOptions::default(),
                },
                url => Backend {
                    name: backend.name,
                    url: url.to_owned(),
                    options: StoreOptions {
                        schema: Some(format!("bench_{}", uuid::Uuid::now_v7().simple())),
                        max_connections: None,
                    },
                },
            };
            println!("\n== {part}, {}", fresh.name);
            runtime.block_on(async {
                match part {
                    "sweep" => sweep(&fresh).await,
                    _ => events(&fresh).await,
                }
                if let Some(schema) = &fresh.options.schema {
                    let _ = cxhub_store::drop_postgres_schema(&fresh.url, schema).await;
                }
            });
        }
    }
}

// ------------------------------------------------------------------------------------------------
// Sweep

async fn sweep(backend: &Backend) {
    let customers: usize = env("CXHUB_BENCH_CUSTOMERS", 100_000);
    let store = Store::connect(&backend.url, backend.options.clone())
        .await
        .expect("store");
    store.migrate().await.expect("migrated");
    let raw = backend.raw().await;

    let started = Instant::now();
    seed_customers(&raw, customers).await;
    println!(
        "seeded {customers} customers in {:.2} s",
        started.elapsed().as_secs_f64()
    );

    let now = chrono::Utc::now();
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
    let guard = GuardConfig::default();

    // Phase: read and decide, no writes (a dry run over every customer, 10,000 per call).
    let started = Instant::now();
    let (mut after, mut treated) = (None, 0usize);
    loop {
        let page = store
            .dry_run_rule(&rule, &guard, after, 10_000)
            .await
            .expect("dry run");
        treated += page
            .targets
            .iter()
            .filter(|t| t.decision == cxhub_domain::loyalty::rule::Decision::Treat)
            .count();
        match page.next_after {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    let dry = started.elapsed().as_secs_f64();
    println!("dry run (read facts and guard rails, decide): {treated} to treat in {dry:.2} s");

    let batch = env("CXHUB_BENCH_SWEEP_BATCH", cxhub_loyalty::SWEEP_BATCH);
    let started = Instant::now();
    let report = store
        .run_sweep(&rule, &guard, chrono::Utc::now(), batch)
        .await
        .expect("swept");
    let sweep = started.elapsed().as_secs_f64();
    println!(
        "sweep ({batch} customers a transaction): {} scanned, {} proposed, {} held out, {} blocked \
         in {sweep:.2} s ({:.0} customers/s; writes ≈ {:.2} s)",
        report.scanned,
        report.proposed,
        report.held_out,
        report.blocked,
        report.scanned as f64 / sweep,
        sweep - dry
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

// ------------------------------------------------------------------------------------------------
// Events

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn describe(sorted: &[Duration]) -> String {
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    format!(
        "p50 {:.0} ms, p95 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
        ms(percentile(sorted, 0.50)),
        ms(percentile(sorted, 0.95)),
        ms(percentile(sorted, 0.99)),
        ms(sorted.last().copied().unwrap_or_default())
    )
}

async fn events(backend: &Backend) {
    let per_second: usize = env("CXHUB_BENCH_EVENTS_PER_SECOND", 1000);
    let seconds: f64 = env("CXHUB_BENCH_EVENT_SECONDS", 10.0);
    let tick = Duration::from_millis(env("CXHUB_BENCH_TICK_MS", 20));
    let per_tick = ((per_second as f64 * tick.as_secs_f64()).round() as usize).max(1);
    let ticks = (seconds / tick.as_secs_f64()).round() as usize;
    let total = per_tick * ticks;

    let args = cxhub::ServeArgs {
        database_url: Some(backend.url.clone()),
        demo: true,
        max_message_bytes: Some(64 * 1024 * 1024),
        request_timeout: Some(Duration::from_secs(600)),
        ..Default::default()
    };
    let store = cxhub::open_store(&backend.url, backend.options.clone())
        .await
        .expect("store");
    let raw = backend.raw().await;
    // One customer per answer, so that no frequency cap stands in the way.
    let customers = seed_customers(&raw, total).await;
    let hub = support::serve_store(args, store).await;

    let mut loyalty =
        pb::loyalty_action_service_client::LoyaltyActionServiceClient::new(hub.channel.clone());
    loyalty
        .update_rule(pb::UpdateRuleRequest {
            request_id: "bench-enable-detractor".into(),
            rule: Some(pb::Rule {
                id: "detractor-follow-up".into(),
                enabled: true,
                holdout: Some(pb::Holdout {
                    control_share: 0.0,
                    seed: 1,
                }),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["enabled".into(), "holdout".into()],
            }),
            etag: String::new(),
            expected_version: 1,
        })
        .await
        .expect("rule enabled");
    let mut s = scoring::scoring_service_client::ScoringServiceClient::new(hub.channel.clone());
    s.create_survey(scoring::CreateSurveyRequest {
        survey: Some(scoring::Survey {
            key: "bench.after-teller".into(),
            name: "After the teller".into(),
            questions: vec![scoring::Question {
                key: "recommend".into(),
                kind: scoring::QuestionKind::Nps as i32,
                text: std::collections::BTreeMap::from([(
                    "en".to_owned(),
                    "Recommend us?".to_owned(),
                )]),
                ..Default::default()
            }],
            languages: vec!["en".into()],
            touchpoint_keys: vec!["branch.teller".into()],
            ..Default::default()
        }),
        request_id: "bench-create-survey".into(),
    })
    .await
    .expect("survey");

    // The executor: every follow-up call, from the oldest event, stamped when it arrives.
    let watch = loyalty
        .watch_actions(pb::WatchActionsRequest {
            assignee_team: "customer-care".into(),
            from_oldest: true,
            states: vec![pb::ActionState::Proposed as i32],
            ..Default::default()
        })
        .await
        .expect("watch")
        .into_inner();
    let (seen_tx, mut seen_rx) = tokio::sync::mpsc::unbounded_channel::<(String, Instant)>();
    let watcher = tokio::spawn(async move {
        let mut watch = watch;
        while let Ok(Some(message)) = watch.message().await {
            let at = Instant::now();
            for event in message.events {
                if event.to_state == pb::ActionState::Proposed as i32
                    && let Some(input) = event.action.and_then(|a| a.action)
                {
                    let _ = seen_tx.send((input.customer_id, at));
                }
            }
        }
    });

    // The producer: `per_tick` detractor answers every tick, each stamped when acknowledged.
    let answered_at = chrono::Utc::now() - chrono::Duration::minutes(1);
    let started = Instant::now();
    let mut acked: HashMap<String, Instant> = HashMap::with_capacity(total);
    let mut round_trips = Vec::with_capacity(ticks);
    let mut interval = tokio::time::interval(tick);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    for (t, batch) in customers.chunks(per_tick).enumerate() {
        interval.tick().await;
        let responses = batch
            .iter()
            .enumerate()
            .map(|(i, customer)| scoring::ResponseInput {
                response_id: format!("bench-{t}-{i}"),
                customer_id: customer.to_string(),
                survey_key: "bench.after-teller".into(),
                touchpoint_key: "branch.teller".into(),
                answers: vec![scoring::Answer {
                    question_key: "recommend".into(),
                    value: (i % 7) as i32,
                }],
                answered_at: Some(support::ts(answered_at)),
                ..Default::default()
            })
            .collect();
        let sent = Instant::now();
        let results = s
            .submit_responses(scoring::SubmitResponsesRequest { responses })
            .await
            .expect("submitted")
            .into_inner()
            .results;
        let at = Instant::now();
        round_trips.push(at - sent);
        assert!(
            results
                .iter()
                .all(|r| r.outcome == scoring::ResponseOutcome::Created as i32),
            "{results:?}"
        );
        for customer in batch {
            acked.insert(customer.to_string(), at);
        }
    }
    let sending = started.elapsed().as_secs_f64();

    // Every answer's call, or a minute's wait at most.
    let mut latencies = Vec::with_capacity(total);
    let mut early = 0usize;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let mut pending: HashMap<String, Instant> = HashMap::new();
    while latencies.len() + early < total {
        let next = tokio::time::timeout_at(deadline, seen_rx.recv()).await;
        let Ok(Some((customer, at))) = next else {
            break;
        };
        pending.insert(customer, at);
        pending.retain(|customer, at| match acked.get(customer) {
            Some(ack) => {
                match at.checked_duration_since(*ack) {
                    Some(latency) => latencies.push(latency),
                    // Seen before the acknowledgement arrived back (possible on a busy
                    // machine): counted as immediate.
                    None => early += 1,
                }
                false
            }
            None => true,
        });
    }
    watcher.abort();
    latencies.sort();
    round_trips.sort();
    println!(
        "events: {total} detractor answers sent in {sending:.2} s ({:.0} events/s, {per_tick} per \
         {} ms call); {} follow-up calls watched ({early} before their ack)",
        total as f64 / sending,
        tick.as_millis(),
        latencies.len() + early
    );
    println!("ack → action on WatchActions: {}", describe(&latencies));
    println!(
        "baseline, the SubmitResponses round trip: {}; the follower and the watch poll every 200 ms \
         when caught up",
        describe(&round_trips)
    );
    hub.stop().await;
}
