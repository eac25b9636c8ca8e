//! Keyset pagination with opaque page tokens.
//!
//! A token holds the sort key of the last item returned and a fingerprint of the filters it
//! was issued with, so a page never repeats or skips an item when others are inserted between
//! calls, and a token cannot be replayed with different filters.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// Page size when the caller gives 0.
pub const DEFAULT_PAGE_SIZE: u32 = 100;
/// Largest page size.
pub const MAX_PAGE_SIZE: u32 = 1000;

/// Which page to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageRequest {
    /// How many items at most.
    pub size: u32,
    /// The sort key of the last item of the previous page, if any.
    pub after: Option<String>,
}

/// One page of items.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    /// The items, in order.
    pub items: Vec<T>,
    /// The sort key to continue after, if there may be more.
    pub next_after: Option<String>,
}

#[derive(Serialize, Deserialize)]
struct Token {
    /// Sort key of the last item.
    a: String,
    /// Filter fingerprint.
    f: String,
}

/// A fingerprint of a filter value (anything serializable), to bind tokens to filters.
pub fn filter_fingerprint<F: Serialize>(filter: &F) -> String {
    let bytes = serde_json::to_vec(filter).unwrap_or_default();
    let digest = Sha256::digest(&bytes);
    URL_SAFE_NO_PAD.encode(&digest[..12])
}

/// Validates the page size and decodes the token (fields `page_size`, `page_token`).
pub fn page_request(page_size: i32, page_token: &str, fingerprint: &str) -> Result<PageRequest> {
    let mut violations = crate::Violations::new();
    let size = match u32::try_from(page_size) {
        Ok(0) => Some(DEFAULT_PAGE_SIZE),
        Ok(n) if n <= MAX_PAGE_SIZE => Some(n),
        _ => {
            violations.add(
                "page_size",
                format!("must be between 0 and {MAX_PAGE_SIZE}"),
            );
            None
        }
    };
    let after = if page_token.is_empty() {
        None
    } else {
        match decode_token(page_token) {
            Some(token) if token.f == fingerprint => Some(token.a),
            Some(_) => {
                violations.add(
                    "page_token",
                    "the token was issued for other filters: repeat the filters of the first page",
                );
                None
            }
            None => {
                violations.add("page_token", "not a token issued by this service");
                None
            }
        }
    };
    violations.into_result()?;
    Ok(PageRequest {
        size: size.unwrap_or(DEFAULT_PAGE_SIZE),
        after,
    })
}

/// Encodes the token of the next page (empty when there is none).
pub fn next_page_token(next_after: Option<&str>, fingerprint: &str) -> String {
    match next_after {
        None => String::new(),
        Some(after) => {
            let token = Token {
                a: after.to_owned(),
                f: fingerprint.to_owned(),
            };
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(&token).unwrap_or_default())
        }
    }
}

fn decode_token(s: &str) -> Option<Token> {
    let bytes = URL_SAFE_NO_PAD.decode(s).ok()?;
    serde_json::from_slice(&bytes).ok()
}

impl From<Error> for Vec<crate::FieldViolation> {
    fn from(err: Error) -> Self {
        match err {
            Error::InvalidArgument { violations, .. } => violations,
            other => vec![crate::FieldViolation {
                field: String::new(),
                description: other.to_string(),
            }],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_are_bound_to_filters() {
        let fp = filter_fingerprint(&("web", 3));
        let token = next_page_token(Some("store.checkout"), &fp);
        let page = page_request(10, &token, &fp).expect("valid token");
        assert_eq!(page.after.as_deref(), Some("store.checkout"));
        assert_eq!(page.size, 10);

        let other = filter_fingerprint(&("store", 3));
        let err = page_request(10, &token, &other).expect_err("other filters");
        assert!(matches!(err, Error::InvalidArgument { .. }));
    }

    #[test]
    fn page_size_and_garbage_tokens_are_refused_together() {
        let err = page_request(-1, "garbage!", "fp").expect_err("invalid");
        let fields: Vec<_> = Vec::from(err).into_iter().map(|v| v.field).collect();
        assert_eq!(fields, ["page_size", "page_token"]);
        assert_eq!(
            page_request(0, "", "fp").expect("default").size,
            DEFAULT_PAGE_SIZE
        );
        assert!(page_request(1001, "", "fp").is_err());
        assert_eq!(next_page_token(None, "fp"), "");
    }
}
