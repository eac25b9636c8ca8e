//! End-to-end tests over real gRPC: each test starts a hub on `127.0.0.1:0` over a fresh
//! database (SQLite, or PostgreSQL when `CXHUB_TEST_POSTGRES_URL` is set) and talks to it with
//! the generated clients.

mod changes;
mod churn_fit;
mod customer_scores;
mod feed_responses;
mod feeds;
mod interactions;
mod loyalty;
mod loyalty_effect;
mod loyalty_loop;
mod loyalty_rules;
mod loyalty_transactions;
mod privacy;
mod profile_reads;
mod registry;
mod scoring;
mod server;

use cxhub_proto::touchpoint::v1 as pb;
use tonic::{Code, Status};
use tonic_types::StatusExt;

/// A fresh request id.
pub fn rid() -> String {
    format!("req-{}", uuid_like())
}

fn uuid_like() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(1);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{nanos:x}-{}", NEXT.fetch_add(1, Ordering::Relaxed))
}

/// A valid root touchpoint.
pub fn touchpoint(key: &str) -> pb::Touchpoint {
    pb::Touchpoint {
        key: key.to_owned(),
        name: format!("Touchpoint {key}"),
        description: "made by a test".into(),
        channel: pb::Channel::Web as i32,
        stage: pb::JourneyStage::Purchase as i32,
        department: "digital".into(),
        main: true,
        ..Default::default()
    }
}

/// A valid sub-touchpoint below the touchpoint with key `parent`.
pub fn child(key: &str, parent: &str) -> pb::Touchpoint {
    pb::Touchpoint {
        main: false,
        parent_key: parent.to_owned(),
        ..touchpoint(key)
    }
}

/// The `BadRequest` field paths of a status.
pub fn fields(status: &Status) -> Vec<String> {
    status
        .get_details_bad_request()
        .map(|b| b.field_violations.into_iter().map(|v| v.field).collect())
        .unwrap_or_default()
}

/// The `ErrorInfo` reason of a status.
pub fn reason(status: &Status) -> String {
    status
        .get_details_error_info()
        .map(|i| i.reason)
        .unwrap_or_default()
}

/// Asserts a call failed with `code` and `reason`, returning the status.
#[track_caller]
pub fn refused<T: std::fmt::Debug>(
    result: Result<T, Status>,
    code: Code,
    expected_reason: &str,
) -> Status {
    match result {
        Ok(value) => panic!("expected {code:?} ({expected_reason}), got success: {value:?}"),
        Err(status) => {
            assert_eq!(status.code(), code, "status: {status:?}");
            assert_eq!(reason(&status), expected_reason, "status: {status:?}");
            status
        }
    }
}
