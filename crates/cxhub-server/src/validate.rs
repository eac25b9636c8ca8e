//! Request validation shared by the services: idempotency keys of mutating requests, and the end
//! of a validation that gathered every violation.

use cxhub_domain::idempotency::RequestKey;
use cxhub_domain::{Error, Violations};
use prost::Message;
use tonic::{Request, Status};

use crate::{principal, to_status};

/// The idempotency key of a mutating request: the caller, `service/method`, its `request_id`
/// and the request itself without that id (`clear_id` blanks it), so that a retry matches and a
/// reused id with other content does not. Violations of the id are recorded in `v`.
pub fn request_key<M: Message + Clone>(
    req: &Request<M>,
    service: &str,
    method: &str,
    request_id: &str,
    clear_id: impl FnOnce(&mut M),
    v: &mut Violations,
) -> Option<RequestKey> {
    let mut payload = req.get_ref().clone();
    clear_id(&mut payload);
    let caller = principal(req);
    match RequestKey::new(
        &caller.name,
        &format!("{service}/{method}"),
        request_id,
        &payload.encode_to_vec(),
    ) {
        Ok(key) => Some(key),
        Err(err) => {
            for violation in Vec::from(err) {
                v.add(violation.field, violation.description);
            }
            None
        }
    }
}

/// Ends a validation: every violation gathered in `v` at once (INVALID_ARGUMENT), or the
/// validated value.
pub fn validated<T>(v: Violations, value: Option<T>) -> Result<T, Status> {
    v.into_result().map_err(to_status)?;
    value.ok_or_else(|| {
        to_status(Error::internal(
            "validation produced no value and no violation",
        ))
    })
}
