//! Feed records and what they become: a contact becomes profile fields and identities, a survey
//! response becomes one of the customer's survey responses, the other record types become
//! interactions at touchpoints and entries of the customer's transactions ledger.
//!
//! The flow: the feeds service validates a wire record into a [`FeedRecord`] (every violation
//! collected), classifies its identifiers (junk ones link no one), [`derive`]s what it becomes
//! with the configured [`TouchpointMap`], and hands the store an [`IngestItem`]; the store
//! decides CREATED/UPDATED/UNCHANGED/STALE/CONFLICT, checks survey responses against their
//! stored surveys (REJECTED when they do not fit), resolves the customer and writes the batch
//! in one transaction.

mod body;
mod event;
mod mapping;
mod profile;

pub use body::*;
pub use event::{
    COMPANY_FAULT_REASONS, MAX_TRANSACTION_ID_LEN, RecordEvent, RecordEventKind, event_of,
    ingested_transaction_id, normalise_reason, payment_failure_is_company_fault,
};
pub use mapping::{DEFAULT_TOUCHPOINTS, TouchpointMap};
pub use profile::{
    Consent, ConsentChannel, ConsentPurpose, ConsentStatus, ContactFields, LifecycleStage,
    PostalAddress, Profile, ProfileSource, build_profile,
};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::identifier::{CustomerId, Identifier};
use crate::money::Money;
use crate::record::{RecordKey, StoredVersion};
use crate::text_enum::text_enum;
use crate::touchpoint::Channel;

/// Most records in one batch unless configured otherwise.
pub const DEFAULT_MAX_BATCH: usize = 1_000;

/// The customer a record is about, as its source knows them (validated, not yet normalised:
/// normalisation and junk detection classify each value).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceCustomer {
    /// The customer's id in the record's source.
    pub source_customer_id: String,
    /// E-mail addresses as the source holds them.
    pub emails: Vec<String>,
    /// Phone numbers as the source holds them.
    pub phones: Vec<String>,
}

/// A validated feed record.
#[derive(Debug, Clone, PartialEq)]
pub struct FeedRecord {
    /// Source, type (the body's) and id.
    pub key: RecordKey,
    /// The source's `updated_at`, at storage precision.
    pub updated_at: DateTime<Utc>,
    /// The customer as the source knows them.
    pub customer: SourceCustomer,
    /// The typed content.
    pub body: RecordBody,
}

/// One event of one customer at one touchpoint, with its outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Interaction {
    /// The touchpoint's key in the registry (from the [`TouchpointMap`]).
    pub touchpoint_key: String,
    /// The channel it happened through.
    pub channel: Channel,
    /// When it happened.
    pub occurred_at: DateTime<Utc>,
    /// What came of it, an UPPER_SNAKE_CASE code such as `DELIVERED_LATE`, `PAYMENT_FAILED`,
    /// `CASE_RESOLVED`.
    pub outcome: String,
}

text_enum!(
    /// What kind of money movement a ledger entry is.
    TransactionKind {
        /// A placed order: a purchase (the input of CLV).
        Order = "order",
        /// An invoice issued: money owed.
        Invoice = "invoice",
        /// A payment attempt (status says whether it went through).
        Payment = "payment",
        /// Money given back (amount negative).
        Refund = "refund",
    }
);

/// One entry of a customer's transactions ledger.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transaction {
    /// What kind.
    pub kind: TransactionKind,
    /// The amount: positive for orders, invoices and payments, negative for refunds.
    pub amount: Money,
    /// When (ordered, issued, attempted, refunded).
    pub occurred_at: DateTime<Utc>,
    /// The record's status in lowercase text, e.g. `placed`, `cancelled`, `open`, `paid`,
    /// `succeeded`, `failed`.
    pub status: String,
    /// When an invoice is due; `None` for the other kinds.
    pub due_at: Option<DateTime<Utc>>,
}

/// What one record becomes, besides being stored.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Derived {
    /// Profile fields, for a contact.
    pub contact: Option<ContactFields>,
    /// The interaction, for every type but contacts.
    pub interaction: Option<Interaction>,
    /// The ledger entry, for orders, invoices, payments and refunds.
    pub transaction: Option<Transaction>,
    /// The case as it stands, for a support case (kept for open-case reads).
    pub support_case: Option<SupportCase>,
    /// The event, for a subscription event (kept for subscription-state reads).
    pub subscription: Option<SubscriptionEvent>,
    /// The response, for a survey response (stored as the response [`survey_response_id`]).
    pub survey_response: Option<SurveyResponse>,
    /// What happened to a transaction, for a delivered shipment, a payment or a refund
    /// (recorded once per record and kind, see [`event_of`]).
    pub event: Option<RecordEvent>,
}

/// An identifier of a record that links no one, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IgnoredIdentifier {
    /// The field it came from, e.g. `customer.emails[1]`.
    pub field: String,
    /// An UPPER_SNAKE_CASE code (`PLACEHOLDER`, `OVERSHARED`, `DISPUTED`…).
    pub reason: String,
    /// The reason in words.
    pub description: String,
}

/// One usable identifier of a record and the field it came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldIdentifier {
    /// The field, e.g. `customer.emails[0]`.
    pub field: String,
    /// The normalised identifier.
    pub identifier: Identifier,
}

/// A valid record ready for the store.
#[derive(Debug, Clone, PartialEq)]
pub struct IngestItem {
    /// Position in the request's batch.
    pub index: usize,
    /// Which record.
    pub key: RecordKey,
    /// Its version and content hash.
    pub version: StoredVersion,
    /// The source customer id as an identifier: the record's anchor (it always links).
    pub anchor: Identifier,
    /// The other usable identifiers (e-mails, phones), deduplicated.
    pub identifiers: Vec<FieldIdentifier>,
    /// Identifiers dropped before the store (junk), reported back as they are.
    pub ignored: Vec<IgnoredIdentifier>,
    /// The canonical encoded record, kept for export and audit.
    pub payload: Vec<u8>,
    /// What it becomes.
    pub derived: Derived,
}

/// What ingesting one valid record did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IngestResult {
    /// Position in the batch.
    pub index: usize,
    /// What happened.
    pub outcome: crate::record::IngestOutcome,
    /// The customer the record belongs to.
    pub customer: CustomerId,
    /// Customers merged into `customer` because of this record.
    pub merged: Vec<CustomerId>,
    /// Identifiers that linked no one: the item's junk ones plus the store's findings.
    pub ignored: Vec<IgnoredIdentifier>,
}

/// A record the store refused: a check only the store can make failed (a survey response that
/// does not fit its stored survey). Nothing of it was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RejectedRecord {
    /// Position in the batch.
    pub index: usize,
    /// Every violation, with paths from the record (`survey_response.answers[0].value`).
    pub violations: Vec<crate::error::FieldViolation>,
}

/// What the store did with one record of a batch: ingested, or refused.
pub type Ingested = std::result::Result<IngestResult, RejectedRecord>;

/// The id a survey response ingested as a feed record is stored under: `<source>:<record_id>`.
/// A source name holds no `:`, so the first one splits the two. A caller of `SubmitResponses`
/// who uses the same id sends the same response: it is stored, and counted, once.
pub fn survey_response_id(key: &RecordKey) -> String {
    format!("{}:{}", key.source, key.record_id)
}
