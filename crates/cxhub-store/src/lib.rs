//! The storage of cxhub: sea-orm entities and the repository implementations, over SQLite
//! (the default: one file, WAL, `synchronous = FULL`) and PostgreSQL (for scale), with the
//! same migrations (`cxhub-migrations`) on both.
//!
//! ```no_run
//! # async fn demo() -> cxhub_domain::Result<()> {
//! use cxhub_store::{Store, StoreOptions};
//! let store = Store::connect("sqlite://cxhub.db", StoreOptions::default()).await?;
//! store.migrate().await?;
//! // `store` implements `cxhub_domain::repo::TouchpointRepo`.
//! # Ok(()) }
//! ```
//!
//! Every mutating repository method is one transaction that also stores its result under the
//! request's [`RequestKey`](cxhub_domain::idempotency::RequestKey): a retry gets the stored
//! result back and writes nothing. Batches are written with multi-row statements, chunked to
//! stay under the bind-parameter limits of both backends.

mod changes;
mod customer_query;
mod customer_scores;
mod customers;
mod entity;
mod error;
mod idempotency;
mod interactions;
mod journeys;
mod lite;
mod loyalty;
mod loyalty_effect;
mod loyalty_events;
mod loyalty_rules;
mod privacy;
mod readers;
mod repo;
mod scoring;
mod sql;
mod store;
mod tcp_nodelay;
mod touchpoints;

use chrono::{DateTime, SubsecRound, Utc};

pub use loyalty_events::AccrualPass;
pub use privacy::{PrivacyStore, suppressed_records_total};
pub use store::{Store, StoreOptions, drop_postgres_schema};

/// Most bind parameters in one statement: SQLite's limit (PostgreSQL allows 65,535).
const MAX_BIND_PARAMS: usize = 32_766;

/// Most values in one `IN (…)` list.
const IN_LIST_CHUNK: usize = 10_000;

/// Rows per multi-row insert of a table with `columns` columns.
const fn rows_per_statement(columns: usize) -> usize {
    MAX_BIND_PARAMS / columns
}

/// The current time, rounded to microseconds (what both backends store), so what a write
/// returns equals what a later read returns.
fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}
