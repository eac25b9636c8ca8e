//! The ingest benchmark (issue: feeds). Feeds CDNOW purchase histories, scaled up, plus generated
//! CRM and billing contacts whose e-mails overlap, through the real gRPC server, and prints in
//! the same run the raw baseline of writing the same rows into the same engine without gRPC and
//! without the ORM (multi-row upserts on SQLite, UNNEST upserts on PostgreSQL), one transaction
//! per batch in both cases.
//!
//! ```text
//! cargo bench -p cxhub-tests --bench ingest                     # SQLite
//! CXHUB_BENCH_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/postgres \
//!   cargo bench -p cxhub-tests --bench ingest                   # SQLite, then PostgreSQL
//! CXHUB_BENCH_SCALE=5 …                                         # copies of CDNOW (default 3)
//! CXHUB_BENCH_ONLY=sqlite|postgres …                            # one backend only
//! ```
//!
//! Figures printed, per backend:
//! - raw: records/s of the baseline (same SQLite settings as the hub: WAL, synchronous=FULL,
//!   64 MiB page cache);
//! - IngestRecords and SyncRecords: records/s through the hub, and ÷ raw;
//! - re-send: the same batches again (all UNCHANGED, no row changed) ÷ the first send;
//! - resolution: ingest time with e-mails and phones on every record ÷ the same records with
//!   only their source customer ids (identity resolution reduced to the anchor).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::type_complexity,
    clippy::cast_precision_loss,
    missing_docs
)]

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use cxhub_proto::common::v1 as common;
use cxhub_proto::feeds::v1 as pb;
use cxhub_proto::feeds::v1::feed_service_client::FeedServiceClient;
use cxhub_store::StoreOptions;
use prost::Message;
use sea_orm::sqlx;
use sha2::{Digest, Sha256};
use tokio_stream::StreamExt;
use tonic::transport::Channel;

mod support;
use support::{Hub, Purchase, load_cdnow, noon, start_hub, ts};

const BATCH: usize = 1_000;
/// IngestRecords calls in flight at once.
const IN_FLIGHT: usize = 4;

// ------------------------------------------------------------------------------------------------
// Data

fn email(customer: u64) -> String {
    format!("buyer{customer}@mail.cdnow-bench.net")
}

fn phone(customer: u64) -> String {
    // US numbers in the 212 area with a varied subscriber part (never a run or one digit), one
    // per customer below 6.3 million: the subscriber part walks the residues of 9,000 (7919 is
    // prime to it), the exchange counts the rounds. (Deriving both parts from the customer
    // number modulo 700 and 9,000 repeated every 63,000 customers, so the third copy of CDNOW
    // shared phones with the first and 12,569 of its contacts joined strangers.)
    format!(
        "+1 212 {:03} {:04}",
        200 + (customer / 9000) % 700,
        1000 + (customer * 7919) % 9000
    )
}

/// CDNOW scaled `scale` times: per customer a CRM contact (e-mail and phone), for 30 % of them
/// a billing contact with the same e-mail under another source, and one ERP order per
/// purchase carrying the customer's e-mail. With `identifiers` false every record carries only
/// its source customer id.
fn generate(purchases: &[Purchase], scale: u64, identifiers: bool) -> Vec<pb::Record> {
    let mut records = Vec::new();
    let mut customers: Vec<u32> = purchases.iter().map(|p| p.customer).collect();
    customers.sort_unstable();
    customers.dedup();
    let first_day = purchases.iter().map(|p| p.date).min().expect("data");
    for copy in 0..scale {
        let id = |c: u32| u64::from(c) + copy * 100_000;
        for &c in &customers {
            let cid = id(c);
            let reference = |prefix: &str, with_phone: bool| common::SourceCustomer {
                source_customer_id: format!("{prefix}{cid}"),
                emails: if identifiers {
                    vec![email(cid)]
                } else {
                    vec![]
                },
                phones: if identifiers && with_phone {
                    vec![phone(cid)]
                } else {
                    vec![]
                },
            };
            records.push(pb::Record {
                source: "crm".into(),
                record_id: format!("contact-{cid}"),
                updated_at: Some(ts(noon(first_day))),
                customer: Some(reference("c", true)),
                body: Some(pb::record::Body::Contact(pb::Contact {
                    given_name: format!("Given{cid}"),
                    family_name: format!("Family{}", cid % 977),
                    preferred_language: "en".into(),
                    lifecycle_stage: pb::LifecycleStage::Customer as i32,
                    ..Default::default()
                })),
            });
            if cid % 10 < 3 {
                records.push(pb::Record {
                    source: "billing".into(),
                    record_id: format!("account-{cid}"),
                    updated_at: Some(ts(noon(first_day))),
                    customer: Some(reference("b", false)),
                    body: Some(pb::record::Body::Contact(pb::Contact {
                        given_name: format!("G. {cid}"),
                        account_id: format!("acct-{cid}"),
                        ..Default::default()
                    })),
                });
            }
        }
        for (line, p) in purchases.iter().enumerate() {
            let cid = id(p.customer);
            let quantity = p.cds.max(1);
            records.push(pb::Record {
                source: "erp".into(),
                record_id: format!("order-{copy}-{line}"),
                updated_at: Some(ts(noon(p.date))),
                customer: Some(common::SourceCustomer {
                    source_customer_id: format!("e{cid}"),
                    emails: if identifiers {
                        vec![email(cid)]
                    } else {
                        vec![]
                    },
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
    }
    records
}

// ------------------------------------------------------------------------------------------------
// The hub

/// The feed client of a hub, with room for the largest batches.
fn feeds(hub: &Hub) -> FeedServiceClient<Channel> {
    FeedServiceClient::new(hub.channel.clone())
        .max_decoding_message_size(64 * 1024 * 1024)
        .max_encoding_message_size(64 * 1024 * 1024)
}

/// Counts of results per outcome.
type Tally = HashMap<i32, usize>;

async fn ingest_all(hub: &Hub, batches: Arc<Vec<Vec<pb::Record>>>) -> (Duration, Tally) {
    let started = Instant::now();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..IN_FLIGHT {
        let (mut client, batches, next) = (feeds(hub), batches.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let mut tally = Tally::new();
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(batch) = batches.get(i) else { break };
                let response = client
                    .ingest_records(pb::IngestRecordsRequest {
                        records: batch.clone(),
                    })
                    .await
                    .expect("ingest");
                for r in response.into_inner().results {
                    *tally.entry(r.outcome).or_default() += 1;
                }
            }
            tally
        }));
    }
    let mut tally = Tally::new();
    for task in tasks {
        for (k, v) in task.await.unwrap() {
            *tally.entry(k).or_default() += v;
        }
    }
    (started.elapsed(), tally)
}

async fn sync_all(hub: &Hub, batches: Arc<Vec<Vec<pb::Record>>>) -> (Duration, Tally) {
    let started = Instant::now();
    let requests = tokio_stream::iter(
        batches
            .iter()
            .enumerate()
            .map(|(i, b)| pb::SyncRecordsRequest {
                batch_number: i as u64,
                records: b.clone(),
            })
            .collect::<Vec<_>>(),
    );
    let mut responses = feeds(hub)
        .sync_records(requests)
        .await
        .expect("sync")
        .into_inner();
    let mut tally = Tally::new();
    let mut acked = 0;
    while let Some(r) = responses.next().await {
        let r = r.expect("ack");
        assert_eq!(r.batch_number, acked as u64, "acks in order");
        acked += 1;
        for x in r.results {
            *tally.entry(x.outcome).or_default() += 1;
        }
    }
    assert_eq!(acked, batches.len(), "every batch acknowledged");
    (started.elapsed(), tally)
}

fn describe(tally: &Tally) -> String {
    let mut parts: Vec<String> = tally
        .iter()
        .map(|(k, v)| {
            let name = pb::RecordOutcome::try_from(*k)
                .map(|o| {
                    o.as_str_name()
                        .trim_start_matches("RECORD_OUTCOME_")
                        .to_owned()
                })
                .unwrap_or_else(|_| k.to_string());
            format!("{name} {v}")
        })
        .collect();
    parts.sort();
    parts.join(", ")
}

// ------------------------------------------------------------------------------------------------
// The raw baseline: the same rows, straight through sqlx

/// The rows the hub writes for a batch, computed without the hub.
#[derive(Default)]
struct Rows {
    customers: Vec<String>,
    identities: Vec<(String, String, String)>,
    records: Vec<(
        String,
        String,
        String,
        DateTime<Utc>,
        Vec<u8>,
        String,
        String,
        Vec<u8>,
        Option<String>,
    )>,
    interactions: Vec<(String, String, String, String, DateTime<Utc>)>,
    transactions: Vec<(String, String, String, String, i64, DateTime<Utc>)>,
}

fn to_time(t: &Option<prost_types::Timestamp>) -> DateTime<Utc> {
    let t = t.as_ref().expect("time");
    DateTime::from_timestamp(t.seconds, 0).expect("time")
}

/// Customer ids by e-mail (or source id), as resolution would find them, batch by batch.
fn raw_rows(batches: &[Vec<pb::Record>]) -> Vec<Rows> {
    let mut customer_of: HashMap<String, String> = HashMap::new();
    let mut held: HashSet<(String, String)> = HashSet::new();
    let mut out = Vec::new();
    for batch in batches {
        let mut rows = Rows::default();
        for r in batch {
            let customer = r.customer.as_ref().expect("customer");
            let anchor = format!("{}:{}", r.source, customer.source_customer_id);
            let key = customer
                .emails
                .first()
                .cloned()
                .unwrap_or_else(|| anchor.clone());
            let id = customer_of
                .entry(key)
                .or_insert_with(|| {
                    let id = uuid::Uuid::now_v7().to_string();
                    rows.customers.push(id.clone());
                    id
                })
                .clone();
            let mut idents = vec![("source_id".to_owned(), anchor)];
            idents.extend(
                customer
                    .emails
                    .iter()
                    .map(|e| ("email".to_owned(), e.clone())),
            );
            idents.extend(
                customer
                    .phones
                    .iter()
                    .map(|p| ("phone".to_owned(), p.clone())),
            );
            for (kind, value) in idents {
                if held.insert((kind.clone(), value.clone())) {
                    rows.identities.push((kind, value, id.clone()));
                }
            }
            let bytes = r.encode_to_vec();
            let hash = Sha256::digest(&bytes).to_vec();
            let (record_type, contact) = match &r.body {
                Some(pb::record::Body::Contact(c)) => (
                    "contact",
                    Some(format!(
                        r#"{{"given_name":"{}","family_name":"{}","addresses":[],"preferred_language":"{}","consents":[],"account_id":"{}","lifecycle_stage":null}}"#,
                        c.given_name, c.family_name, c.preferred_language, c.account_id
                    )),
                ),
                _ => ("order", None),
            };
            rows.records.push((
                r.source.clone(),
                record_type.to_owned(),
                r.record_id.clone(),
                to_time(&r.updated_at),
                hash,
                id.clone(),
                customer.source_customer_id.clone(),
                bytes,
                contact,
            ));
            if let Some(pb::record::Body::Order(o)) = &r.body {
                let at = to_time(&o.ordered_at);
                let amount: i64 = o
                    .lines
                    .iter()
                    .map(|l| l.quantity * l.unit_price.as_ref().map_or(0, |m| m.amount_minor))
                    .sum();
                rows.interactions.push((
                    r.source.clone(),
                    r.record_id.clone(),
                    id.clone(),
                    "commerce.web-checkout".into(),
                    at,
                ));
                rows.transactions.push((
                    r.source.clone(),
                    r.record_id.clone(),
                    id.clone(),
                    "order".into(),
                    amount,
                    at,
                ));
            }
        }
        out.push(rows);
    }
    out
}

fn placeholders(rows: usize, cols: usize) -> String {
    let one = format!("({})", vec!["?"; cols].join(", "));
    vec![one; rows].join(", ")
}

async fn raw_sqlite(path: &std::path::Path, batches: &[Rows]) -> Duration {
    use sqlx::sqlite::{
        SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous,
    };
    let options = SqliteConnectOptions::new()
        .filename(path)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Full)
        .pragma("cache_size", "-65536");
    let pool = SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(options)
        .await
        .expect("raw sqlite");
    let now = Utc::now();
    let started = Instant::now();
    for rows in batches {
        let mut tx = pool.begin().await.unwrap();
        for chunk in rows.customers.chunks(2000) {
            let sql = format!(
                "INSERT INTO customers (id, merged_into, given_name, family_name, addresses_json, preferred_language, consents_json, account_id, lifecycle_stage, provenance_json, revision, created_at, updated_at) VALUES {}",
                vec!["(?, NULL, '', '', '[]', '', '[]', '', NULL, '{}', 0, ?, ?)"; chunk.len()]
                    .join(", ")
            );
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql.as_str()));
            for c in chunk {
                q = q.bind(c).bind(now).bind(now);
            }
            q.execute(&mut *tx).await.unwrap();
        }
        for chunk in rows.identities.chunks(2000) {
            let sql = format!(
                "INSERT INTO customer_identities (kind, value, customer_id, created_at) VALUES {} ON CONFLICT (kind, value, customer_id) DO NOTHING",
                placeholders(chunk.len(), 4)
            );
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql.as_str()));
            for (k, v, c) in chunk {
                q = q.bind(k).bind(v).bind(c).bind(now);
            }
            q.execute(&mut *tx).await.unwrap();
        }
        for chunk in rows.records.chunks(1000) {
            let sql = format!(
                "INSERT INTO feed_records (source, record_type, record_id, updated_at, content_hash, customer_id, source_customer_id, payload, contact_json, ingested_at) VALUES {} \
                 ON CONFLICT (source, record_type, record_id) DO UPDATE SET updated_at = excluded.updated_at, content_hash = excluded.content_hash, customer_id = excluded.customer_id, source_customer_id = excluded.source_customer_id, payload = excluded.payload, contact_json = excluded.contact_json, ingested_at = excluded.ingested_at",
                placeholders(chunk.len(), 10)
            );
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql.as_str()));
            for (s, t, id, at, hash, c, sc, payload, contact) in chunk {
                q = q
                    .bind(s)
                    .bind(t)
                    .bind(id)
                    .bind(at)
                    .bind(hash)
                    .bind(c)
                    .bind(sc)
                    .bind(payload)
                    .bind(contact)
                    .bind(now);
            }
            q.execute(&mut *tx).await.unwrap();
        }
        for chunk in rows.interactions.chunks(1000) {
            let sql = format!(
                "INSERT INTO interactions (source, record_type, record_id, customer_id, touchpoint_key, channel, occurred_at, outcome, content_hash) VALUES {} \
                 ON CONFLICT (source, record_type, record_id) DO UPDATE SET customer_id = excluded.customer_id, touchpoint_key = excluded.touchpoint_key, channel = excluded.channel, occurred_at = excluded.occurred_at, outcome = excluded.outcome, content_hash = excluded.content_hash",
                vec!["(?, 'order', ?, ?, ?, 'web', ?, 'ORDER_PLACED', x'00')"; chunk.len()]
                    .join(", ")
            );
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql.as_str()));
            for (s, id, c, tp, at) in chunk {
                q = q.bind(s).bind(id).bind(c).bind(tp).bind(at);
            }
            q.execute(&mut *tx).await.unwrap();
        }
        for chunk in rows.transactions.chunks(1000) {
            let sql = format!(
                "INSERT INTO transactions (source, record_type, record_id, customer_id, kind, amount_minor, currency_code, occurred_at, status, due_at) VALUES {} \
                 ON CONFLICT (source, record_type, record_id) DO UPDATE SET customer_id = excluded.customer_id, kind = excluded.kind, amount_minor = excluded.amount_minor, currency_code = excluded.currency_code, occurred_at = excluded.occurred_at, status = excluded.status, due_at = excluded.due_at",
                vec!["(?, 'order', ?, ?, ?, ?, 'USD', ?, 'placed', NULL)"; chunk.len()].join(", ")
            );
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql.as_str()));
            for (s, id, c, kind, amount, at) in chunk {
                q = q.bind(s).bind(id).bind(c).bind(kind).bind(amount).bind(at);
            }
            q.execute(&mut *tx).await.unwrap();
        }
        tx.commit().await.unwrap();
    }
    let elapsed = started.elapsed();
    pool.close().await;
    elapsed
}

async fn raw_postgres(url: &str, schema: &str, batches: &[Rows]) -> Duration {
    use sqlx::postgres::PgPoolOptions;
    let search_path = format!("SET search_path TO \"{schema}\"");
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .after_connect(move |conn, _| {
            let sql = search_path.clone();
            Box::pin(async move {
                sqlx::Executor::execute(conn, sqlx::AssertSqlSafe(sql))
                    .await
                    .map(|_| ())
            })
        })
        .connect(url)
        .await
        .expect("raw postgres");
    let now = Utc::now();
    let started = Instant::now();
    for rows in batches {
        let mut tx = pool.begin().await.unwrap();
        if !rows.customers.is_empty() {
            sqlx::query(
                "INSERT INTO customers (id, merged_into, given_name, family_name, addresses_json, preferred_language, consents_json, account_id, lifecycle_stage, provenance_json, revision, created_at, updated_at) \
                 SELECT id, NULL, '', '', '[]', '', '[]', '', NULL, '{}', 0, $2, $2 FROM UNNEST($1::text[]) AS t(id)",
            )
            .bind(&rows.customers)
            .bind(now)
            .execute(&mut *tx)
            .await
            .unwrap();
        }
        if !rows.identities.is_empty() {
            let (k, v, c): (Vec<_>, Vec<_>, Vec<_>) = rows.identities.iter().cloned().fold(
                (vec![], vec![], vec![]),
                |mut acc, (k, v, c)| {
                    acc.0.push(k);
                    acc.1.push(v);
                    acc.2.push(c);
                    acc
                },
            );
            sqlx::query(
                "INSERT INTO customer_identities (kind, value, customer_id, created_at) \
                 SELECT k, v, c, $4 FROM UNNEST($1::text[], $2::text[], $3::text[]) AS t(k, v, c) \
                 ON CONFLICT (kind, value, customer_id) DO NOTHING",
            )
            .bind(k)
            .bind(v)
            .bind(c)
            .bind(now)
            .execute(&mut *tx)
            .await
            .unwrap();
        }
        let n = rows.records.len();
        let mut cols: (
            Vec<&str>,
            Vec<&str>,
            Vec<&str>,
            Vec<DateTime<Utc>>,
            Vec<&[u8]>,
            Vec<&str>,
            Vec<&str>,
            Vec<&[u8]>,
            Vec<Option<&str>>,
        ) = (
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
        );
        for (s, t, id, at, hash, c, sc, payload, contact) in &rows.records {
            cols.0.push(s);
            cols.1.push(t);
            cols.2.push(id);
            cols.3.push(*at);
            cols.4.push(hash);
            cols.5.push(c);
            cols.6.push(sc);
            cols.7.push(payload);
            cols.8.push(contact.as_deref());
        }
        sqlx::query(
            "INSERT INTO feed_records (source, record_type, record_id, updated_at, content_hash, customer_id, source_customer_id, payload, contact_json, ingested_at) \
             SELECT s, t, i, u, h, c, sc, p, cj, $10 FROM UNNEST($1::text[], $2::text[], $3::text[], $4::timestamptz[], $5::bytea[], $6::text[], $7::text[], $8::bytea[], $9::text[]) AS x(s, t, i, u, h, c, sc, p, cj) \
             ON CONFLICT (source, record_type, record_id) DO UPDATE SET updated_at = excluded.updated_at, content_hash = excluded.content_hash, customer_id = excluded.customer_id, source_customer_id = excluded.source_customer_id, payload = excluded.payload, contact_json = excluded.contact_json, ingested_at = excluded.ingested_at",
        )
        .bind(cols.0).bind(cols.1).bind(cols.2).bind(cols.3).bind(cols.4).bind(cols.5).bind(cols.6).bind(cols.7).bind(cols.8).bind(now)
        .execute(&mut *tx)
        .await
        .unwrap();
        if !rows.interactions.is_empty() {
            let s: Vec<&str> = rows.interactions.iter().map(|r| r.0.as_str()).collect();
            let id: Vec<&str> = rows.interactions.iter().map(|r| r.1.as_str()).collect();
            let c: Vec<&str> = rows.interactions.iter().map(|r| r.2.as_str()).collect();
            let tp: Vec<&str> = rows.interactions.iter().map(|r| r.3.as_str()).collect();
            let at: Vec<DateTime<Utc>> = rows.interactions.iter().map(|r| r.4).collect();
            sqlx::query(
                "INSERT INTO interactions (source, record_type, record_id, customer_id, touchpoint_key, channel, occurred_at, outcome, content_hash) \
                 SELECT s, 'order', i, c, tp, 'web', at, 'ORDER_PLACED', '\\x00'::bytea FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::timestamptz[]) AS x(s, i, c, tp, at) \
                 ON CONFLICT (source, record_type, record_id) DO UPDATE SET customer_id = excluded.customer_id, touchpoint_key = excluded.touchpoint_key, channel = excluded.channel, occurred_at = excluded.occurred_at, outcome = excluded.outcome, content_hash = excluded.content_hash",
            )
            .bind(s).bind(id).bind(c).bind(tp).bind(at)
            .execute(&mut *tx)
            .await
            .unwrap();
            let kind: Vec<&str> = rows.transactions.iter().map(|r| r.3.as_str()).collect();
            let amount: Vec<i64> = rows.transactions.iter().map(|r| r.4).collect();
            let s: Vec<&str> = rows.transactions.iter().map(|r| r.0.as_str()).collect();
            let id: Vec<&str> = rows.transactions.iter().map(|r| r.1.as_str()).collect();
            let c: Vec<&str> = rows.transactions.iter().map(|r| r.2.as_str()).collect();
            let at: Vec<DateTime<Utc>> = rows.transactions.iter().map(|r| r.5).collect();
            sqlx::query(
                "INSERT INTO transactions (source, record_type, record_id, customer_id, kind, amount_minor, currency_code, occurred_at, status, due_at) \
                 SELECT s, 'order', i, c, k, a, 'USD', at, 'placed', NULL FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::int8[], $6::timestamptz[]) AS x(s, i, c, k, a, at) \
                 ON CONFLICT (source, record_type, record_id) DO UPDATE SET customer_id = excluded.customer_id, kind = excluded.kind, amount_minor = excluded.amount_minor, currency_code = excluded.currency_code, occurred_at = excluded.occurred_at, status = excluded.status, due_at = excluded.due_at",
            )
            .bind(s).bind(id).bind(c).bind(kind).bind(amount).bind(at)
            .execute(&mut *tx)
            .await
            .unwrap();
        }
        tx.commit().await.unwrap();
    }
    let elapsed = started.elapsed();
    pool.close().await;
    elapsed
}

// ------------------------------------------------------------------------------------------------
// Runs

fn rate(n: usize, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64()
}

struct Backend {
    name: &'static str,
    /// A fresh database URL and store options for each hub.
    fresh: Box<dyn Fn() -> (String, StoreOptions, Option<(String, String)>)>,
}

async fn cleanup(fresh: Option<(String, String)>) {
    if let Some((url, schema)) = fresh {
        let _ = cxhub_store::drop_postgres_schema(&url, &schema).await;
    }
}

async fn run(
    backend: &Backend,
    batches: Arc<Vec<Vec<pb::Record>>>,
    anchors_only: Arc<Vec<Vec<pb::Record>>>,
) {
    let n: usize = batches.iter().map(Vec::len).sum();
    println!(
        "\n== {} — {n} records in batches of {BATCH} ==",
        backend.name
    );

    // Raw baseline, on a freshly migrated database.
    let (url, options, pg) = (backend.fresh)();
    let store = cxhub::open_store(&url, options).await.expect("migrate");
    drop(store);
    let rows = raw_rows(&batches);
    let raw = match &pg {
        None => {
            raw_sqlite(
                std::path::Path::new(url.trim_start_matches("sqlite://")),
                &rows,
            )
            .await
        }
        Some((pg_url, schema)) => raw_postgres(pg_url, schema, &rows).await,
    };
    cleanup(pg).await;
    let raw_rate = rate(n, raw);
    println!(
        "raw upsert (no gRPC, no ORM)   {:>9.0} records/s  ({:.2} s)",
        raw_rate,
        raw.as_secs_f64()
    );

    // IngestRecords, then the same again.
    let (url, options, pg) = (backend.fresh)();
    let hub = start_hub(&url, options, &["feeds"]).await;
    let (first, tally) = ingest_all(&hub, batches.clone()).await;
    println!(
        "IngestRecords ×{IN_FLIGHT} in flight     {:>9.0} records/s  ({:.2} s)  = {:.2} × raw   [{}]",
        rate(n, first),
        first.as_secs_f64(),
        rate(n, first) / raw_rate,
        describe(&tally)
    );
    let (again, tally) = ingest_all(&hub, batches.clone()).await;
    println!(
        "re-send (all UNCHANGED)         {:>9.0} records/s  ({:.2} s)  = {:.2} × the first send   [{}]",
        rate(n, again),
        again.as_secs_f64(),
        again.as_secs_f64() / first.as_secs_f64(),
        describe(&tally)
    );
    hub.stop().await;
    cleanup(pg).await;

    // SyncRecords, one stream.
    let (url, options, pg) = (backend.fresh)();
    let hub = start_hub(&url, options, &["feeds"]).await;
    let (sync, tally) = sync_all(&hub, batches.clone()).await;
    println!(
        "SyncRecords, one stream         {:>9.0} records/s  ({:.2} s)  = {:.2} × raw   [{}]",
        rate(n, sync),
        sync.as_secs_f64(),
        rate(n, sync) / raw_rate,
        describe(&tally)
    );
    hub.stop().await;
    cleanup(pg).await;

    // The same records with only their source customer ids.
    let (url, options, pg) = (backend.fresh)();
    let hub = start_hub(&url, options, &["feeds"]).await;
    let (bare, _) = ingest_all(&hub, anchors_only).await;
    println!(
        "anchors only (no e-mail/phone)  {:>9.0} records/s  ({:.2} s)   identity resolution adds {:+.0} %",
        rate(n, bare),
        bare.as_secs_f64(),
        (first.as_secs_f64() / bare.as_secs_f64() - 1.0) * 100.0
    );
    hub.stop().await;
    cleanup(pg).await;
}

fn main() {
    let scale: u64 = std::env::var("CXHUB_BENCH_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let purchases = load_cdnow();
    let to_batches = |records: Vec<pb::Record>| -> Arc<Vec<Vec<pb::Record>>> {
        Arc::new(records.chunks(BATCH).map(<[pb::Record]>::to_vec).collect())
    };
    let batches = to_batches(generate(&purchases, scale, true));
    let anchors = to_batches(generate(&purchases, scale, false));
    let contacts = batches
        .iter()
        .flatten()
        .filter(|r| matches!(r.body, Some(pb::record::Body::Contact(_))))
        .count();
    println!(
        "CDNOW ×{scale}: {} purchases → {} records ({contacts} contacts, 30 % of customers also in billing with the same e-mail)",
        purchases.len() as u64 * scale,
        batches.iter().map(Vec::len).sum::<usize>()
    );

    let dir = tempfile::tempdir().expect("temp dir");
    let counter = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let sqlite = {
        let (dir, counter) = (dir.path().to_owned(), counter.clone());
        Backend {
            name: "SQLite (WAL, synchronous=FULL)",
            fresh: Box::new(move || {
                let i = counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                (
                    format!("sqlite://{}", dir.join(format!("bench{i}.db")).display()),
                    StoreOptions::default(),
                    None,
                )
            }),
        }
    };
    let only = std::env::var("CXHUB_BENCH_ONLY").unwrap_or_default();
    if only.is_empty() || only == "sqlite" {
        runtime.block_on(run(&sqlite, batches.clone(), anchors.clone()));
    }

    if only == "sqlite" {
        return;
    }
    if let Ok(url) = std::env::var("CXHUB_BENCH_POSTGRES_URL") {
        let postgres = Backend {
            name: "PostgreSQL",
            fresh: Box::new(move || {
                let schema = format!("bench_{}", uuid::Uuid::now_v7().simple());
                (
                    url.clone(),
                    StoreOptions {
                        schema: Some(schema.clone()),
                        max_connections: None,
                    },
                    Some((url.clone(), schema)),
                )
            }),
        };
        runtime.block_on(run(&postgres, batches, anchors));
    } else {
        println!("\n(PostgreSQL skipped: set CXHUB_BENCH_POSTGRES_URL)");
    }
}
