//! Idempotent writes: every mutating RPC carries a caller-chosen `request_id`. The repository
//! stores the first result under (principal, method, request id) in the same transaction as
//! the write; a retry with the same id and the same payload gets that result back, the same id
//! with another payload is refused.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{Error, FieldViolation, Result};

/// Longest request id accepted.
pub const MAX_REQUEST_ID_LEN: usize = 128;

/// Identifies one mutating request for idempotency.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestKey {
    /// Who called (request ids are scoped per caller).
    pub principal: String,
    /// Full gRPC method, e.g. `cxhub.touchpoint.v1.TouchpointRegistryService/CreateTouchpoint`.
    pub method: String,
    /// The caller's request id.
    pub request_id: String,
    /// Hex SHA-256 of the request payload without the request id.
    pub fingerprint: String,
}

impl RequestKey {
    /// Builds a key, checking the request id (field `request_id`); `payload` is the encoded
    /// request with its `request_id` cleared.
    pub fn new(principal: &str, method: &str, request_id: &str, payload: &[u8]) -> Result<Self> {
        check_request_id(request_id).map_err(|description| {
            Error::invalid(vec![FieldViolation {
                field: "request_id".into(),
                description,
            }])
        })?;
        Ok(Self {
            principal: principal.to_owned(),
            method: method.to_owned(),
            request_id: request_id.to_owned(),
            fingerprint: hex(&Sha256::digest(payload)),
        })
    }

    /// The error for a reused request id with a different payload.
    pub fn reused(&self) -> Error {
        Error::InvalidArgument {
            reason: "REQUEST_ID_REUSED",
            violations: vec![FieldViolation {
                field: "request_id".into(),
                description: format!(
                    "request id {} was already used for a different request to {}: use a new id for a new request",
                    self.request_id, self.method
                ),
            }],
        }
    }
}

/// Answers of requests whose work is not one transaction (a rule sweep commits batch by
/// batch, so its answer cannot be stored with its writes): the answer is stored after the
/// work, and retries get it back instead of running the work again.
///
/// Such work must be safe to repeat on its own, because a crash between the last write and
/// the stored answer makes the retry run it again (a sweep acts at most once per rule
/// version, customer and day, so a repeat only reports what was done already).
#[async_trait::async_trait]
pub trait AnswerLog: Send + Sync {
    /// The answer stored for `req` (as JSON): `None` when it was never answered,
    /// `REQUEST_ID_REUSED` when its id was answered for another payload.
    async fn stored_answer(&self, req: &RequestKey) -> Result<Option<String>>;

    /// Stores `answer` (JSON) as the answer of `req` and returns the answer retries get: this
    /// one, or the one a concurrent duplicate stored first.
    async fn store_answer(&self, req: &RequestKey, answer: String) -> Result<String>;
}

/// Runs `work` as the request `req` logged in `log`: a request answered before gets its stored
/// answer without running `work`; otherwise `work` runs and its answer is stored (or, if a
/// concurrent duplicate stored one first, that one is answered).
pub async fn answer_once<T, L>(
    log: &L,
    req: &RequestKey,
    work: impl std::future::Future<Output = Result<T>>,
) -> Result<T>
where
    T: Serialize + serde::de::DeserializeOwned,
    L: AnswerLog + ?Sized,
{
    let decode = |json: &str| {
        serde_json::from_str::<T>(json)
            .map_err(|err| Error::Internal(format!("a stored answer does not decode: {err}")))
    };
    if let Some(stored) = log.stored_answer(req).await? {
        return decode(&stored);
    }
    let answer = work.await?;
    let json = serde_json::to_string(&answer)
        .map_err(|err| Error::Internal(format!("an answer does not encode: {err}")))?;
    decode(&log.store_answer(req, json).await?)
}

/// Checks a request id: 1 to 128 printable ASCII characters.
pub fn check_request_id(id: &str) -> Result<(), String> {
    if id.is_empty() {
        return Err("required: a caller-chosen idempotency key (a UUID is a good choice)".into());
    }
    if id.len() > MAX_REQUEST_ID_LEN {
        return Err(format!("at most {MAX_REQUEST_ID_LEN} characters"));
    }
    if !id.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("only printable ASCII characters without spaces".into());
    }
    Ok(())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_checked() {
        assert!(RequestKey::new("p", "m", "", b"x").is_err());
        assert!(RequestKey::new("p", "m", "has space", b"x").is_err());
        assert!(RequestKey::new("p", "m", &"a".repeat(129), b"x").is_err());
        let a = RequestKey::new("p", "m", "req-1", b"x").expect("valid");
        let b = RequestKey::new("p", "m", "req-1", b"y").expect("valid");
        assert_ne!(a.fingerprint, b.fingerprint);
        assert!(matches!(
            a.reused(),
            Error::InvalidArgument {
                reason: "REQUEST_ID_REUSED",
                ..
            }
        ));
    }
}
