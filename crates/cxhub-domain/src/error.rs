//! The one error type of the domain and of every repository. `cxhub-server` maps it to a gRPC
//! status with `google.rpc` details; nothing here knows about gRPC.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// One invalid field of a request: which field (a path such as `touchpoints[3].key`) and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldViolation {
    /// Path of the field in the request, dot-separated, with `[i]` for list items.
    pub field: String,
    /// Why it is invalid, in a sentence a caller can act on.
    pub description: String,
}

/// Collects every field violation of a request, so a caller learns all of them at once.
#[derive(Debug, Default, Clone)]
pub struct Violations(Vec<FieldViolation>);

impl Violations {
    /// An empty collection.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records that `field` is invalid because of `description`.
    /// Checks a required message field: `check(value, self)` when it is present, else the
    /// violation "`field`: required" and `None`.
    pub fn required<'a, T, U>(
        &mut self,
        value: Option<&'a T>,
        field: &str,
        check: impl FnOnce(&'a T, &mut Self) -> Option<U>,
    ) -> Option<U> {
        match value {
            Some(value) => check(value, self),
            None => {
                self.add(field, "required");
                None
            }
        }
    }

    pub fn add(&mut self, field: impl Into<String>, description: impl Into<String>) {
        self.0.push(FieldViolation {
            field: field.into(),
            description: description.into(),
        });
    }

    /// Keeps the value of `result`, or records its error against `field`.
    pub fn check<T>(&mut self, field: impl Into<String>, result: Result<T, String>) -> Option<T> {
        match result {
            Ok(value) => Some(value),
            Err(description) => {
                self.add(field, description);
                None
            }
        }
    }

    /// Whether nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `Ok(())` when nothing was recorded, else an [`Error::InvalidArgument`] with every violation.
    pub fn into_result(self) -> Result<(), Error> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(Error::invalid(self.0))
        }
    }

    /// The recorded violations.
    pub fn into_vec(self) -> Vec<FieldViolation> {
        self.0
    }
}

/// Result of domain and repository operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong, in terms a caller can act on. Every variant with a `reason` carries an
/// UPPER_SNAKE_CASE code that callers can switch on (it becomes `google.rpc.ErrorInfo.reason`).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request is invalid; `violations` lists every bad field.
    #[error("invalid argument ({reason}): {}", describe(violations))]
    InvalidArgument {
        /// Machine-readable reason, e.g. `INVALID_FIELDS` or `REQUEST_ID_REUSED`.
        reason: &'static str,
        /// Every invalid field.
        violations: Vec<FieldViolation>,
    },
    /// The named resource does not exist.
    #[error("{resource} {name} not found")]
    NotFound {
        /// Kind of resource, e.g. `touchpoint`.
        resource: &'static str,
        /// How the caller named it (id or key).
        name: String,
    },
    /// The resource to create exists already.
    #[error("{message}")]
    AlreadyExists {
        /// Machine-readable reason, e.g. `TOUCHPOINT_KEY_TAKEN`.
        reason: &'static str,
        /// Field of the request that collides, e.g. `touchpoint.key`.
        field: String,
        /// Human-readable explanation.
        message: String,
    },
    /// The system is not in the state the operation needs; the caller must change it first.
    #[error("{message}")]
    FailedPrecondition {
        /// Machine-readable reason, e.g. `ACTIVE_CHILDREN`.
        reason: &'static str,
        /// Human-readable explanation.
        message: String,
    },
    /// A concurrency conflict (stale etag, lost race): read again and retry.
    #[error("{message}")]
    Aborted {
        /// Machine-readable reason, e.g. `ETAG_MISMATCH`.
        reason: &'static str,
        /// Human-readable explanation.
        message: String,
    },
    /// Over a limit; retry later.
    #[error("{message}")]
    ResourceExhausted {
        /// Machine-readable reason, e.g. `CONCURRENCY_LIMIT`.
        reason: &'static str,
        /// Human-readable explanation.
        message: String,
        /// When a retry may succeed.
        retry_after: Option<Duration>,
    },
    /// The position asked for is outside what exists (e.g. a resume token older than the
    /// retention); `metadata` tells the caller where it can start instead.
    #[error("{message}")]
    OutOfRange {
        /// Machine-readable reason, e.g. `CHANGES_PRUNED`.
        reason: &'static str,
        /// Human-readable explanation.
        message: String,
        /// What the caller can use instead (becomes `google.rpc.ErrorInfo.metadata`).
        metadata: Vec<(String, String)>,
    },
    /// A dependency (the database) is unavailable for now; retry the call.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// A bug or an unexpected failure. Logged with detail, returned without it.
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    /// An [`Error::InvalidArgument`] with reason `INVALID_FIELDS`.
    pub fn invalid(violations: Vec<FieldViolation>) -> Self {
        Error::InvalidArgument {
            reason: "INVALID_FIELDS",
            violations,
        }
    }

    /// An [`Error::InvalidArgument`] about one field.
    pub fn invalid_field(field: impl Into<String>, description: impl Into<String>) -> Self {
        Error::invalid(vec![FieldViolation {
            field: field.into(),
            description: description.into(),
        }])
    }

    /// An [`Error::NotFound`].
    pub fn not_found(resource: &'static str, name: impl Into<String>) -> Self {
        Error::NotFound {
            resource,
            name: name.into(),
        }
    }

    /// An [`Error::FailedPrecondition`].
    pub fn precondition(reason: &'static str, message: impl Into<String>) -> Self {
        Error::FailedPrecondition {
            reason,
            message: message.into(),
        }
    }

    /// An [`Error::Aborted`].
    pub fn aborted(reason: &'static str, message: impl Into<String>) -> Self {
        Error::Aborted {
            reason,
            message: message.into(),
        }
    }

    /// An [`Error::Internal`].
    pub fn internal(detail: impl std::fmt::Display) -> Self {
        Error::Internal(detail.to_string())
    }
}

fn describe(violations: &[FieldViolation]) -> String {
    violations
        .iter()
        .map(|v| format!("{}: {}", v.field, v.description))
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn violations_collect_every_field() {
        let mut v = Violations::new();
        assert_eq!(v.check("a", Ok::<_, String>(1)), Some(1));
        assert_eq!(v.check::<i32>("b", Err("too long".into())), None);
        v.add("c", "missing");
        match v.into_result() {
            Err(Error::InvalidArgument { reason, violations }) => {
                assert_eq!(reason, "INVALID_FIELDS");
                let fields: Vec<_> = violations.iter().map(|v| v.field.as_str()).collect();
                assert_eq!(fields, ["b", "c"]);
            }
            other => panic!("expected InvalidArgument, got {other:?}"),
        }
    }

    #[test]
    fn empty_violations_are_ok() {
        assert!(Violations::new().into_result().is_ok());
    }
}
