//! Domain error → gRPC status, with `google.rpc` error details callers can decode.

use std::collections::HashMap;

use cxhub_domain::Error;
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, FieldViolation, PreconditionViolation, StatusExt};

/// `google.rpc.ErrorInfo.domain` of every error the hub returns.
pub const ERROR_DOMAIN: &str = "cxhub.dev";

/// Maps a domain error to a gRPC status with google.rpc details (tonic_types::ErrorDetails / StatusExt).
///
/// Internal and unavailable errors are logged with their detail and returned without it.
pub fn to_status(err: Error) -> Status {
    match err {
        Error::InvalidArgument { reason, violations } => {
            let message = match violations.as_slice() {
                [] => "the request is invalid".to_owned(),
                [one] => format!("invalid {}: {}", one.field, one.description),
                many => format!(
                    "{} fields are invalid: {}",
                    many.len(),
                    many.iter()
                        .map(|v| v.field.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            };
            let mut details = ErrorDetails::with_error_info(reason, ERROR_DOMAIN, HashMap::new());
            details.set_bad_request(
                violations
                    .into_iter()
                    .map(|v| FieldViolation::new(v.field, v.description))
                    .collect::<Vec<_>>(),
            );
            Status::with_error_details(Code::InvalidArgument, message, details)
        }
        Error::NotFound { resource, name } => {
            let mut details = ErrorDetails::with_error_info(
                not_found_reason(resource),
                ERROR_DOMAIN,
                HashMap::from([("resource".to_owned(), resource.to_owned())]),
            );
            details.set_resource_info(resource, name.clone(), "", format!("{resource} not found"));
            Status::with_error_details(
                Code::NotFound,
                format!("{resource} {name} not found"),
                details,
            )
        }
        Error::AlreadyExists {
            reason,
            field,
            message,
        } => {
            let mut details = ErrorDetails::with_error_info(reason, ERROR_DOMAIN, HashMap::new());
            details.add_bad_request_violation(field, message.clone());
            Status::with_error_details(Code::AlreadyExists, message, details)
        }
        Error::FailedPrecondition { reason, message } => {
            let mut details = ErrorDetails::with_error_info(reason, ERROR_DOMAIN, HashMap::new());
            details.set_precondition_failure(vec![PreconditionViolation::new(
                reason,
                "",
                message.clone(),
            )]);
            Status::with_error_details(Code::FailedPrecondition, message, details)
        }
        Error::Aborted { reason, message } => Status::with_error_details(
            Code::Aborted,
            message,
            ErrorDetails::with_error_info(reason, ERROR_DOMAIN, HashMap::new()),
        ),
        Error::ResourceExhausted {
            reason,
            message,
            retry_after,
        } => {
            let mut details = ErrorDetails::with_error_info(reason, ERROR_DOMAIN, HashMap::new());
            if let Some(delay) = retry_after {
                details.set_retry_info(Some(delay));
            }
            Status::with_error_details(Code::ResourceExhausted, message, details)
        }
        Error::OutOfRange {
            reason,
            message,
            metadata,
        } => Status::with_error_details(
            Code::OutOfRange,
            message,
            ErrorDetails::with_error_info(
                reason,
                ERROR_DOMAIN,
                metadata.into_iter().collect::<HashMap<_, _>>(),
            ),
        ),
        Error::Unavailable(detail) => {
            tracing::warn!(error = %detail, "dependency unavailable");
            Status::with_error_details(
                Code::Unavailable,
                "the service is unavailable for now; retry the call",
                ErrorDetails::with_error_info("UNAVAILABLE", ERROR_DOMAIN, HashMap::new()),
            )
        }
        Error::Internal(detail) => {
            tracing::error!(error = %detail, "internal error");
            Status::internal("internal error")
        }
    }
}

/// `touchpoint` → `TOUCHPOINT_NOT_FOUND`, `loyalty account` → `LOYALTY_ACCOUNT_NOT_FOUND`.
fn not_found_reason(resource: &str) -> String {
    let mut reason = String::with_capacity(resource.len() + 10);
    let mut last_was_separator = true;
    let mut previous_lower = false;
    for c in resource.chars() {
        if c.is_ascii_alphanumeric() {
            // camelCase boundary: `loyaltyAccount` → `LOYALTY_ACCOUNT`.
            if c.is_ascii_uppercase() && previous_lower && !last_was_separator {
                reason.push('_');
            }
            reason.push(c.to_ascii_uppercase());
            last_was_separator = false;
            previous_lower = c.is_ascii_lowercase() || c.is_ascii_digit();
        } else if !last_was_separator {
            reason.push('_');
            last_was_separator = true;
            previous_lower = false;
        }
    }
    while reason.ends_with('_') {
        reason.pop();
    }
    if reason.is_empty() {
        reason.push_str("RESOURCE");
    }
    reason.push_str("_NOT_FOUND");
    reason
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use cxhub_domain::error::FieldViolation as DomainViolation;

    use super::*;

    #[test]
    fn invalid_argument_lists_every_field() {
        let status = to_status(Error::invalid(vec![
            DomainViolation {
                field: "touchpoint.key".into(),
                description: "must not be empty".into(),
            },
            DomainViolation {
                field: "touchpoint.channel".into(),
                description: "unknown channel".into(),
            },
        ]));
        assert_eq!(status.code(), Code::InvalidArgument);
        let details = status.get_error_details();
        let bad = details.bad_request().expect("bad request");
        let fields: Vec<_> = bad
            .field_violations
            .iter()
            .map(|v| v.field.as_str())
            .collect();
        assert_eq!(fields, ["touchpoint.key", "touchpoint.channel"]);
        assert_eq!(bad.field_violations[1].description, "unknown channel");
        let info = details.error_info().expect("error info");
        assert_eq!(info.reason, "INVALID_FIELDS");
        assert_eq!(info.domain, "cxhub.dev");
    }

    #[test]
    fn not_found_names_the_resource() {
        let status = to_status(Error::not_found("touchpoint", "tp_123"));
        assert_eq!(status.code(), Code::NotFound);
        assert_eq!(status.message(), "touchpoint tp_123 not found");
        let details = status.get_error_details();
        let info = details.error_info().expect("error info");
        assert_eq!(info.reason, "TOUCHPOINT_NOT_FOUND");
        let resource = details.resource_info().expect("resource info");
        assert_eq!(resource.resource_type, "touchpoint");
        assert_eq!(resource.resource_name, "tp_123");
    }

    #[test]
    fn not_found_reason_is_upper_snake() {
        assert_eq!(
            not_found_reason("loyalty account"),
            "LOYALTY_ACCOUNT_NOT_FOUND"
        );
        assert_eq!(
            not_found_reason("customer-profile"),
            "CUSTOMER_PROFILE_NOT_FOUND"
        );
        assert_eq!(not_found_reason("journeyStep"), "JOURNEY_STEP_NOT_FOUND");
        assert_eq!(not_found_reason(""), "RESOURCE_NOT_FOUND");
    }

    #[test]
    fn already_exists_points_at_the_field() {
        let status = to_status(Error::AlreadyExists {
            reason: "TOUCHPOINT_KEY_TAKEN",
            field: "touchpoint.key".into(),
            message: "a touchpoint with key web exists already".into(),
        });
        assert_eq!(status.code(), Code::AlreadyExists);
        let details = status.get_error_details();
        assert_eq!(
            details.error_info().expect("error info").reason,
            "TOUCHPOINT_KEY_TAKEN"
        );
        let bad = details.bad_request().expect("bad request");
        assert_eq!(bad.field_violations[0].field, "touchpoint.key");
    }

    #[test]
    fn failed_precondition_has_a_violation() {
        let status = to_status(Error::precondition(
            "ACTIVE_CHILDREN",
            "archive the children first",
        ));
        assert_eq!(status.code(), Code::FailedPrecondition);
        let details = status.get_error_details();
        assert_eq!(
            details.error_info().expect("error info").reason,
            "ACTIVE_CHILDREN"
        );
        let failure = details
            .precondition_failure()
            .expect("precondition failure");
        assert_eq!(failure.violations[0].r#type, "ACTIVE_CHILDREN");
        assert_eq!(
            failure.violations[0].description,
            "archive the children first"
        );
    }

    #[test]
    fn aborted_carries_the_reason() {
        let status = to_status(Error::aborted("ETAG_MISMATCH", "the etag is stale"));
        assert_eq!(status.code(), Code::Aborted);
        assert_eq!(status.message(), "the etag is stale");
        assert_eq!(
            status
                .get_error_details()
                .error_info()
                .expect("error info")
                .reason,
            "ETAG_MISMATCH"
        );
    }

    #[test]
    fn resource_exhausted_tells_when_to_retry() {
        let status = to_status(Error::ResourceExhausted {
            reason: "QUOTA",
            message: "over quota".into(),
            retry_after: Some(Duration::from_secs(2)),
        });
        assert_eq!(status.code(), Code::ResourceExhausted);
        let details = status.get_error_details();
        assert_eq!(details.error_info().expect("error info").reason, "QUOTA");
        let retry = details.retry_info().expect("retry info");
        assert_eq!(retry.retry_delay, Some(Duration::from_secs(2)));

        let without = to_status(Error::ResourceExhausted {
            reason: "QUOTA",
            message: "over quota".into(),
            retry_after: None,
        });
        assert!(without.get_error_details().retry_info().is_none());
    }

    #[test]
    fn internal_and_unavailable_hide_the_detail() {
        let status = to_status(Error::internal("connection string postgres://secret"));
        assert_eq!(status.code(), Code::Internal);
        assert_eq!(status.message(), "internal error");
        assert!(status.details().is_empty());

        let status = to_status(Error::Unavailable("pool timed out on db-7".into()));
        assert_eq!(status.code(), Code::Unavailable);
        assert!(!status.message().contains("db-7"));
    }
}
