//! The customer's privacy rights: consent answers given to the hub and their history, erasure
//! with suppression of the erased identifiers, export of every datum held, and the audit trail
//! of who read or changed personal data.
//!
//! How consents combine: an answer recorded with [`PrivacyRepo::update_consents`] is stored as
//! a contact record of the hub's own source [`CONSENT_SOURCE`] held by the customer, so the
//! profile's rule for consents applies to it unchanged (per purpose and channel the answer with
//! the latest `given_at` wins, whichever source gave it; at equal times the `consent` source
//! priority decides), and it follows the customer through merges and splits like any record.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::feed::{Consent, ConsentChannel, ConsentPurpose, ConsentStatus};
use crate::idempotency::RequestKey;
use crate::identifier::{CustomerId, Identifier};
use crate::page::{Page, PageRequest};
use crate::repo::{CustomerView, MergeView};

/// The source of the contact records holding the consents given to the hub directly. Feeds
/// cannot use it: feed source names have no `.`.
pub const CONSENT_SOURCE: &str = "cxhub.consents";

/// Most answers in one update.
pub const MAX_CONSENTS_PER_UPDATE: usize = 24;

/// Consent answers given to the hub, from one source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsentUpdate {
    /// The answers, at most one per (purpose, channel).
    pub consents: Vec<Consent>,
    /// Where they were collected, e.g. `preference-centre`.
    pub source: String,
}

/// One answer recorded by an update, as the history keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsentChange {
    /// The entry's id (UUID v7 text).
    pub id: String,
    /// The customer it was recorded for.
    pub customer: CustomerId,
    /// What for.
    pub purpose: ConsentPurpose,
    /// Over which channel.
    pub channel: ConsentChannel,
    /// The current status before the answer, if there was one.
    pub previous: Option<ConsentStatus>,
    /// The answer.
    pub status: ConsentStatus,
    /// When the customer gave it.
    pub given_at: DateTime<Utc>,
    /// Whether it became the current answer.
    pub effective: bool,
    /// Where it was collected.
    pub source: String,
    /// The principal whose call recorded it.
    pub recorded_by: String,
    /// When the hub recorded it.
    pub recorded_at: DateTime<Utc>,
}

/// The outcome of an update: the customer's consents now and the history entries written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsentsUpdated {
    /// The customer (the survivor, for a merged id).
    pub customer: CustomerId,
    /// Its current consents, ordered by purpose then channel.
    pub consents: Vec<Consent>,
    /// The history entries written, in request order.
    pub changes: Vec<ConsentChange>,
}

/// What an erasure removed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Erasure {
    /// The erasure's id (UUID v7 text).
    pub id: String,
    /// The survivor, then every customer merged into it.
    pub customers: Vec<CustomerId>,
    /// When.
    pub erased_at: DateTime<Utc>,
    /// By whom.
    pub erased_by: String,
    /// Identifiers removed and suppressed.
    pub identifiers_suppressed: i64,
    /// Source records removed.
    pub records_removed: i64,
    /// Interactions kept under an anonymous id.
    pub interactions_anonymised: i64,
    /// Transactions kept under an anonymous id.
    pub transactions_anonymised: i64,
    /// Stored request answers removed.
    pub request_records_removed: i64,
    /// Whether the customer was erased already when asked (this is the first erasure's answer).
    pub already_erased: bool,
}

/// A source record as stored, with its payload as received.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredRecord {
    /// The source system.
    pub source: String,
    /// The record type.
    pub record_type: String,
    /// The record's id in its source.
    pub record_id: String,
    /// The version stored.
    pub updated_at: DateTime<Utc>,
    /// When the hub stored it.
    pub ingested_at: DateTime<Utc>,
    /// The payload as received (the encoded feed record; JSON for [`CONSENT_SOURCE`]).
    #[serde(skip)]
    pub payload: Vec<u8>,
}

/// An interaction as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredInteraction {
    /// Source of the record it came from.
    pub source: String,
    /// Its record type.
    pub record_type: String,
    /// Its record id.
    pub record_id: String,
    /// The touchpoint's key.
    pub touchpoint_key: String,
    /// The channel.
    pub channel: String,
    /// When it happened.
    pub occurred_at: DateTime<Utc>,
    /// Its outcome code.
    pub outcome: String,
}

/// A ledger entry as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredTransaction {
    /// Source of the record it came from.
    pub source: String,
    /// Its record type.
    pub record_type: String,
    /// Its record id.
    pub record_id: String,
    /// `order`, `invoice`, `payment` or `refund`.
    pub kind: String,
    /// Amount in minor units.
    pub amount_minor: i64,
    /// ISO 4217 code.
    pub currency_code: String,
    /// When.
    pub occurred_at: DateTime<Utc>,
    /// Status text.
    pub status: String,
    /// When an invoice is due.
    pub due_at: Option<DateTime<Utc>>,
}

/// One audit event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEvent {
    /// The event's id (UUID v7 text), increasing with time.
    pub id: String,
    /// Who called.
    pub principal: String,
    /// The RPC, e.g. `GetCustomer`.
    pub rpc: String,
    /// The customer concerned.
    pub customer: CustomerId,
    /// When.
    pub occurred_at: DateTime<Utc>,
}

/// Which audit events to list.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct AuditFilter {
    /// Only about this customer.
    pub customer: Option<CustomerId>,
    /// Only by this principal.
    pub principal: Option<String>,
    /// At or after.
    pub start: Option<DateTime<Utc>>,
    /// Before.
    pub end: Option<DateTime<Utc>>,
}

/// Everything held about one customer.
#[derive(Debug, Clone, PartialEq)]
pub struct CustomerExport {
    /// The profile, identifiers and record count.
    pub customer: CustomerView,
    /// Every hub id that is this customer now: the survivor, then the ids merged into it.
    pub ids: Vec<CustomerId>,
    /// The merges it survived, newest first.
    pub merges: Vec<MergeView>,
    /// Its source records, by source, type and id.
    pub records: Vec<StoredRecord>,
    /// Its interactions, oldest first.
    pub interactions: Vec<StoredInteraction>,
    /// Its transactions, oldest first.
    pub transactions: Vec<StoredTransaction>,
    /// Its consent history, newest first.
    pub consent_history: Vec<ConsentChange>,
    /// The audit events about it, newest first (this export's own included).
    pub audit_events: Vec<AuditEvent>,
}

/// Storage of consents, erasures and exports.
#[async_trait]
pub trait PrivacyRepo: Send + Sync {
    /// Records consent answers for a customer (following redirects) under the identity lock,
    /// rebuilds its profile and writes one history entry per answer. `NotFound`;
    /// `FailedPrecondition` `CUSTOMER_ERASED`.
    async fn update_consents(
        &self,
        req: &RequestKey,
        customer: CustomerId,
        update: ConsentUpdate,
    ) -> Result<ConsentsUpdated>;

    /// The consent history of a customer and of every customer merged into it, newest first.
    async fn consent_history(
        &self,
        customer: CustomerId,
        page: &PageRequest,
    ) -> Result<Page<ConsentChange>>;

    /// Erases a customer, its survivor and everything merged into it, in one transaction under
    /// the identity lock, and suppresses its identifiers. An erased customer answers its first
    /// erasure (with `already_erased`). `NotFound` for an id never known.
    async fn erase_customer(
        &self,
        req: &RequestKey,
        customer: CustomerId,
        principal: &str,
    ) -> Result<Erasure>;

    /// Everything held about a customer (following redirects), read in one snapshot.
    /// `NotFound`; `FailedPrecondition` `CUSTOMER_ERASED`.
    async fn export_customer(&self, customer: CustomerId) -> Result<CustomerExport>;
}

/// The audit trail of reads and changes of personal data. It never holds the data itself.
#[async_trait]
pub trait AuditLog: Send + Sync {
    /// Records that `principal` called `rpc` about each of `customers` (one event each).
    async fn record(&self, principal: &str, rpc: &str, customers: &[CustomerId]) -> Result<()>;

    /// Lists events newest first, after `page.after` (an event id).
    async fn list_audit_events(
        &self,
        filter: &AuditFilter,
        page: &PageRequest,
    ) -> Result<Page<AuditEvent>>;
}

/// The error for a customer that was erased.
pub fn erased(customer: CustomerId) -> Error {
    Error::precondition(
        "CUSTOMER_ERASED",
        format!("customer {customer} was erased: nothing is held about it"),
    )
}

/// Checks a consent source name: 1 to 64 letters, digits, `.`, `_` or `-`.
pub fn check_consent_source(source: &str) -> Result<(), String> {
    if source.is_empty() {
        return Err("required: where the answers were collected, e.g. preference-centre".into());
    }
    if source.len() > 64 {
        return Err("at most 64 characters".into());
    }
    if !source
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        return Err("only letters, digits, '.', '_' and '-'".into());
    }
    Ok(())
}

/// The keyed hash under which a suppressed identifier is kept: HMAC-SHA256 of
/// `kind NUL value` with `key`, in lowercase hex. Without the key a list of hashes cannot be
/// checked against guessed e-mails or phone numbers.
pub fn suppression_hash(key: &[u8], id: &Identifier) -> String {
    const BLOCK: usize = 64;
    let mut block = [0u8; BLOCK];
    if key.len() > BLOCK {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let mut inner = Sha256::new();
    inner.update(block.map(|b| b ^ 0x36));
    inner.update(id.kind().as_str().as_bytes());
    inner.update([0u8]);
    inner.update(id.value().as_bytes());
    let inner = inner.finalize();
    let mut outer = Sha256::new();
    outer.update(block.map(|b| b ^ 0x5c));
    outer.update(inner);
    outer
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suppression_hashes_are_hmac_sha256_and_depend_on_the_key() {
        let id = Identifier::Email("x".into());
        let a = suppression_hash(b"key-one", &id);
        let b = suppression_hash(b"key-two", &id);
        assert_ne!(a, b);
        assert_eq!(a.len(), 64);
        assert!(!a.contains('x'));
        assert_eq!(a, suppression_hash(b"key-one", &id));
        assert_ne!(
            a,
            suppression_hash(b"key-one", &Identifier::Phone("x".into()))
        );
    }

    #[test]
    fn consent_sources_are_checked() {
        assert!(check_consent_source("preference-centre").is_ok());
        assert!(check_consent_source("").is_err());
        assert!(check_consent_source("has space").is_err());
        assert!(check_consent_source(&"a".repeat(65)).is_err());
    }
}
