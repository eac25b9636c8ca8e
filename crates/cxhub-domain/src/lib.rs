//! The cxhub model and its rules: ids, validation, the touchpoint hierarchy, journeys,
//! idempotency and pagination, and the repository traits that `cxhub-store` implements.
//!
//! No tonic, no sea-orm, no I/O: everything here is plain data and pure functions, so the rules
//! can be tested (and property-tested) without a server or a database.

pub mod batch;
pub mod change;
pub mod customer_query;
pub mod error;
pub mod feed;
mod id;
pub mod idempotency;
pub mod identifier;
pub mod interaction;
pub mod journey;
pub mod loyalty;
pub mod money;
pub mod page;
pub mod privacy;
pub mod record;
pub mod repo;
pub mod resolution;
pub mod scoring;
mod text_enum;
pub mod touchpoint;

pub use error::{Error, FieldViolation, Result, Violations};
