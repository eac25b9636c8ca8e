//! Wire records ↔ domain records. Validation of a record happens here, once, and collects every
//! violation with the path of its field from the record (`order.lines[2].unit_price.currency_code`,
//! `customer.emails[0]`, `updated_at`), so a source learns everything wrong with a record in one
//! answer.
//!
//! [`prepare`] is the hot path of ingestion (once per record of every batch): paths are only
//! built when a field is invalid, a line's currency is parsed once per distinct code, and the
//! record is encoded once, for both its content hash and its stored payload.
//!
//! Free functions rather than `TryFrom`: the orphan rule forbids implementing a foreign trait
//! between two foreign types (`cxhub_proto` ↔ `cxhub_domain`).

use chrono::{DateTime, Utc};
use cxhub_domain::feed::{
    self, Activity, ActivityKind, CasePriority, CaseStatus, Consent, ConsentChannel,
    ConsentPurpose, ConsentStatus, ContactFields, Direction, FeedRecord, FieldIdentifier,
    IgnoredIdentifier, IngestItem, Invoice, InvoiceStatus, LifecycleStage, Order, OrderLine,
    OrderReturn, OrderStatus, Payment, PaymentStatus, PostalAddress, RecordBody, Refund,
    ReturnLine, ReturnReason, Shipment, ShipmentStatus, SourceCustomer, SubscriptionEvent,
    SubscriptionEventKind, SupportCase, SurveyAnswer, SurveyResponse, TouchpointMap,
};
use cxhub_domain::identifier::{
    Classified, Identifier, JunkPolicy, JunkReason, classify_email, classify_phone,
    classify_source_id,
};
use cxhub_domain::money::{Currency, Money};
use cxhub_domain::record::{
    ContentHash, RecordKey, StoredVersion, check_record_id, check_source, check_timestamp,
    check_unix_timestamp, to_storage_precision,
};
use cxhub_domain::scoring::survey as sv;
use cxhub_domain::touchpoint::{Channel, Key};
use cxhub_domain::{FieldViolation, Violations};
use cxhub_proto::common::v1 as common;
use cxhub_proto::feeds::v1 as pb;
use cxhub_proto::touchpoint::v1 as tp;
use prost::Message;
use prost_types::Timestamp;

/// Most e-mail addresses one record may give its customer.
pub const MAX_EMAILS: usize = 20;
/// Most phone numbers one record may give its customer.
pub const MAX_PHONES: usize = 20;
/// Most lines of an order or a return.
pub const MAX_LINES: usize = 500;
/// Largest quantity of one line.
pub const MAX_QUANTITY: i64 = 1_000_000;
/// Most postal addresses of a contact.
pub const MAX_ADDRESSES: usize = 10;
/// Most street lines of an address.
pub const MAX_ADDRESS_LINES: usize = 4;
/// Longest language tag accepted, in characters (BCP 47 sets no limit; real tags with a script,
/// a region and a variant stay well below it).
pub const MAX_LANGUAGE_TAG: usize = 64;

/// How many consents a contact can have: one per (purpose, channel).
const MAX_CONSENTS: usize = 4 * 6;
/// Names, street lines, subjects, failure and refund reasons.
const MAX_TEXT: usize = 200;
/// Categories, SKUs, plans.
const MAX_SHORT_TEXT: usize = 100;

/// The configured part of ingestion that turns a valid record into an [`IngestItem`].
#[derive(Debug, Clone, Default)]
pub struct IngestPolicy {
    /// The region (ISO 3166 alpha-2, e.g. `PT`) national phone numbers are read in; empty for
    /// none (then only international numbers are usable).
    pub default_region: String,
    /// Which identifiers are junk beyond the built-in rules.
    pub junk: JunkPolicy,
    /// Which touchpoint each record type's interactions land on.
    pub touchpoints: TouchpointMap,
}

/// Validates a wire record and prepares it for the store: the domain record's key and version
/// (its `updated_at` at storage precision and the SHA-256 of its canonical encoding), its
/// identifiers (the source customer id as the anchor; usable e-mails and phones, deduplicated;
/// junk ones set aside with why), the encoded payload, and what it becomes ([`feed::derive`]).
///
/// Every violation is reported, with paths from the record. A junk e-mail or phone does not
/// reject the record (it links no one and is reported back as ignored); a malformed one does,
/// and so does a junk source customer id (the record could not be given to a customer).
///
/// The encoding is prost's: for a decoded message it is canonical (fields in number order,
/// unknown fields dropped, maps ordered), so a re-sent record hashes the same.
pub fn prepare(
    record: &pb::Record,
    index: usize,
    now: DateTime<Utc>,
    policy: &IngestPolicy,
) -> Result<IngestItem, Vec<FieldViolation>> {
    let mut c = Check::new(now);
    let feed_record = c.record(record);
    let ids = c.identifiers(record, policy);
    if !c.v.is_empty() {
        return Err(c.v.into_vec());
    }
    let (Some(feed_record), Some(anchor)) = (feed_record, ids.anchor) else {
        // Every missing piece was reported above; this is a safety net, not a path.
        return Err(vec![FieldViolation {
            field: String::new(),
            description: "the record could not be read".into(),
        }]);
    };
    let payload = record.encode_to_vec();
    let version = StoredVersion {
        updated_at: feed_record.updated_at,
        hash: ContentHash::of(&payload),
    };
    let derived = feed::derive(&feed_record, &policy.touchpoints);
    Ok(IngestItem {
        index,
        key: feed_record.key,
        version,
        anchor,
        identifiers: ids.usable,
        ignored: ids.ignored,
        payload,
        derived,
    })
}

/// Validates a wire record into a domain record, without classifying its identifiers (see
/// [`prepare`]): every violation is reported, with paths from the record.
pub fn record_from_pb(
    record: &pb::Record,
    now: DateTime<Utc>,
) -> Result<FeedRecord, Vec<FieldViolation>> {
    let mut c = Check::new(now);
    let feed_record = c.record(record);
    match feed_record {
        Some(r) if c.v.is_empty() => Ok(r),
        _ => Err(c.v.into_vec()),
    }
}

// ------------------------------------------------------------------------------------------------
// Domain → wire, for the profile service.

/// A protobuf timestamp from a UTC time.
pub fn timestamp(t: DateTime<Utc>) -> Timestamp {
    Timestamp {
        seconds: t.timestamp(),
        nanos: i32::try_from(t.timestamp_subsec_nanos()).unwrap_or(0),
    }
}

/// The wire form of a postal address.
pub fn postal_address_to_pb(a: &PostalAddress) -> pb::PostalAddress {
    pb::PostalAddress {
        lines: a.lines.clone(),
        locality: a.locality.clone(),
        region: a.region.clone(),
        postal_code: a.postal_code.clone(),
        country_code: a.country_code.clone(),
    }
}

/// The wire form of a consent (the domain's `any` channel is UNSPECIFIED on the wire).
pub fn consent_to_pb(c: &Consent) -> pb::Consent {
    pb::Consent {
        purpose: consent_purpose_to_pb(c.purpose) as i32,
        channel: consent_channel_to_pb(c.channel) as i32,
        status: consent_status_to_pb(c.status) as i32,
        given_at: Some(timestamp(c.given_at)),
    }
}

/// The wire form of a lifecycle stage; UNSPECIFIED when no source knows it.
pub fn lifecycle_stage_to_pb(stage: Option<LifecycleStage>) -> pb::LifecycleStage {
    match stage {
        None => pb::LifecycleStage::Unspecified,
        Some(LifecycleStage::Lead) => pb::LifecycleStage::Lead,
        Some(LifecycleStage::Prospect) => pb::LifecycleStage::Prospect,
        Some(LifecycleStage::Customer) => pb::LifecycleStage::Customer,
        Some(LifecycleStage::FormerCustomer) => pb::LifecycleStage::FormerCustomer,
    }
}

/// The wire value of a consent channel: `any` is UNSPECIFIED ("every channel").
pub fn consent_channel_to_pb(c: ConsentChannel) -> pb::ConsentChannel {
    match c {
        ConsentChannel::Any => pb::ConsentChannel::Unspecified,
        ConsentChannel::Email => pb::ConsentChannel::Email,
        ConsentChannel::Sms => pb::ConsentChannel::Sms,
        ConsentChannel::Phone => pb::ConsentChannel::Phone,
        ConsentChannel::Post => pb::ConsentChannel::Post,
        ConsentChannel::Push => pb::ConsentChannel::Push,
    }
}

fn lifecycle_stage_from_pb(v: i32) -> Result<Option<LifecycleStage>, String> {
    match pb::LifecycleStage::try_from(v) {
        Ok(pb::LifecycleStage::Unspecified) => Ok(None),
        Ok(pb::LifecycleStage::Lead) => Ok(Some(LifecycleStage::Lead)),
        Ok(pb::LifecycleStage::Prospect) => Ok(Some(LifecycleStage::Prospect)),
        Ok(pb::LifecycleStage::Customer) => Ok(Some(LifecycleStage::Customer)),
        Ok(pb::LifecycleStage::FormerCustomer) => Ok(Some(LifecycleStage::FormerCustomer)),
        Err(_) => Err(format!("unknown lifecycle stage {v}")),
    }
}

fn consent_channel_from_pb(v: i32) -> Result<ConsentChannel, String> {
    match pb::ConsentChannel::try_from(v) {
        Ok(pb::ConsentChannel::Unspecified) => Ok(ConsentChannel::Any),
        Ok(pb::ConsentChannel::Email) => Ok(ConsentChannel::Email),
        Ok(pb::ConsentChannel::Sms) => Ok(ConsentChannel::Sms),
        Ok(pb::ConsentChannel::Phone) => Ok(ConsentChannel::Phone),
        Ok(pb::ConsentChannel::Post) => Ok(ConsentChannel::Post),
        Ok(pb::ConsentChannel::Push) => Ok(ConsentChannel::Push),
        Err(_) => Err(format!("unknown consent channel {v}")),
    }
}

/// Declares the two conversions of an enum whose wire form has an UNSPECIFIED zero: to the
/// wire, and from it (`Ok(None)` for UNSPECIFIED, an error for a value the contract lacks).
macro_rules! wire_enum {
    (
        $what:literal, $domain:ident, $module:ident :: $wire:ident, $to_pb:ident, $from_pb:ident,
        { $($d:ident => $w:ident),+ $(,)? }
    ) => {
        #[doc = concat!("The wire value of a ", $what, ".")]
        pub fn $to_pb(value: $domain) -> $module::$wire {
            match value {
                $($domain::$d => $module::$wire::$w,)+
            }
        }

        fn $from_pb(value: i32) -> Result<Option<$domain>, String> {
            match $module::$wire::try_from(value) {
                Ok($module::$wire::Unspecified) => Ok(None),
                $(Ok($module::$wire::$w) => Ok(Some($domain::$d)),)+
                Err(_) => Err(format!(concat!("unknown ", $what, " {}"), value)),
            }
        }
    };
}

wire_enum!("channel", Channel, tp::Channel, channel_to_pb, channel_from_pb, {
    Store => Store, Web => Web, MobileApp => MobileApp, Phone => Phone, Email => Email,
    Letter => Letter, Chat => Chat, Social => Social, AtmKiosk => AtmKiosk,
    FieldService => FieldService, Partner => Partner, Other => Other,
});
wire_enum!("consent purpose", ConsentPurpose, pb::ConsentPurpose, consent_purpose_to_pb, consent_purpose_from_pb, {
    Marketing => Marketing, Analytics => Analytics, Surveys => Surveys, Profiling => Profiling,
});
wire_enum!("consent status", ConsentStatus, pb::ConsentStatus, consent_status_to_pb, consent_status_from_pb, {
    Granted => Granted, Denied => Denied,
});
wire_enum!("case status", CaseStatus, pb::CaseStatus, case_status_to_pb, case_status_from_pb, {
    Open => Open, Pending => Pending, Resolved => Resolved, Closed => Closed,
});
wire_enum!("case priority", CasePriority, pb::CasePriority, case_priority_to_pb, case_priority_from_pb, {
    Low => Low, Normal => Normal, High => High, Urgent => Urgent,
});
wire_enum!("activity kind", ActivityKind, pb::ActivityKind, activity_kind_to_pb, activity_kind_from_pb, {
    Call => Call, Meeting => Meeting, Email => Email, Letter => Letter,
});
wire_enum!("direction", Direction, pb::Direction, direction_to_pb, direction_from_pb, {
    Inbound => Inbound, Outbound => Outbound,
});
wire_enum!("order status", OrderStatus, pb::OrderStatus, order_status_to_pb, order_status_from_pb, {
    Placed => Placed, Cancelled => Cancelled,
});
wire_enum!("shipment status", ShipmentStatus, pb::ShipmentStatus, shipment_status_to_pb, shipment_status_from_pb, {
    InTransit => InTransit, Delivered => Delivered, Failed => Failed,
});
wire_enum!("return reason", ReturnReason, pb::ReturnReason, return_reason_to_pb, return_reason_from_pb, {
    Defective => Defective, WrongItem => WrongItem, Late => Late, NotWanted => NotWanted,
    Other => Other,
});
wire_enum!("invoice status", InvoiceStatus, pb::InvoiceStatus, invoice_status_to_pb, invoice_status_from_pb, {
    Open => Open, Paid => Paid, Void => Void, Uncollectible => Uncollectible,
});
wire_enum!("payment status", PaymentStatus, pb::PaymentStatus, payment_status_to_pb, payment_status_from_pb, {
    Succeeded => Succeeded, Failed => Failed,
});
wire_enum!("subscription event kind", SubscriptionEventKind, pb::SubscriptionEventKind, subscription_event_kind_to_pb, subscription_event_kind_from_pb, {
    Started => Started, Renewed => Renewed, Upgraded => Upgraded, Downgraded => Downgraded,
    Paused => Paused, Cancelled => Cancelled,
});

// ------------------------------------------------------------------------------------------------
// Wire → domain.

/// The path of a field, built only when the field is invalid: a fixed path (`"updated_at"`) or
/// a closure for an indexed one (`|| format!("order.lines[{i}].sku")`).
trait Field {
    fn path(&self) -> String;
}

impl Field for &str {
    fn path(&self) -> String {
        (*self).to_owned()
    }
}

impl<F: Fn() -> String> Field for F {
    fn path(&self) -> String {
        self()
    }
}

fn join(base: &impl Field, leaf: &str) -> String {
    let mut path = base.path();
    path.push('.');
    path.push_str(leaf);
    path
}

/// What a money amount may be.
#[derive(Clone, Copy)]
enum Sign {
    /// Zero or more.
    NotNegative,
    /// More than zero.
    Positive,
}

/// The identifiers of a record, classified.
struct Identifiers {
    anchor: Option<Identifier>,
    usable: Vec<FieldIdentifier>,
    ignored: Vec<IgnoredIdentifier>,
}

/// The violations of one record, and the hub's clock to check its timestamps against.
struct Check {
    v: Violations,
    now: DateTime<Utc>,
}

impl Check {
    fn new(now: DateTime<Utc>) -> Self {
        Self {
            v: Violations::new(),
            now,
        }
    }

    fn add(&mut self, field: impl Field, description: impl Into<String>) {
        self.v.add(field.path(), description);
    }

    fn check<T>(&mut self, result: Result<T, String>, field: impl Field) -> Option<T> {
        match result {
            Ok(value) => Some(value),
            Err(description) => {
                self.add(field, description);
                None
            }
        }
    }

    /// A required enum value: UNSPECIFIED is refused.
    fn required<T>(&mut self, value: Result<Option<T>, String>, field: impl Field) -> Option<T> {
        match value {
            Ok(Some(value)) => Some(value),
            Ok(None) => {
                self.add(field, "required");
                None
            }
            Err(description) => {
                self.add(field, description);
                None
            }
        }
    }

    /// Text of at most `max` characters, and not blank when `required`.
    fn text(&mut self, s: &str, max: usize, required: bool, field: impl Field) {
        if required && s.trim().is_empty() {
            self.add(field, "required");
        } else if s.len() > max {
            // Only count characters when the bytes could exceed the limit.
            let chars = s.chars().count();
            if chars > max {
                self.add(field, format!("at most {max} characters (got {chars})"));
            }
        }
    }

    /// The id of another record (or an account, a store) in the same source: the rules of a
    /// record id (1 to 256 bytes, printable, no surrounding whitespace); `what` names it when
    /// it is required and missing.
    fn reference(&mut self, id: &str, required: Option<&str>, field: impl Field) {
        match required {
            Some(what) if id.is_empty() => self.add(field, format!("required: {what}")),
            _ if id.is_empty() => {}
            _ => {
                if let Err(problem) = check_record_id(id) {
                    self.add(field, problem);
                }
            }
        }
    }

    /// A required time of something that happened: from 1900 to a day after the hub's clock.
    fn happened(&mut self, t: Option<&Timestamp>, field: impl Field) -> Option<DateTime<Utc>> {
        let Some(t) = t else {
            self.add(field, "required");
            return None;
        };
        self.happened_at(t, field)
    }

    /// An optional time of something that happened; `Err` when it is given and invalid.
    fn happened_opt(
        &mut self,
        t: Option<&Timestamp>,
        field: impl Field,
    ) -> Result<Option<DateTime<Utc>>, ()> {
        match t {
            None => Ok(None),
            Some(t) => self.happened_at(t, field).map(Some).ok_or(()),
        }
    }

    fn happened_at(&mut self, t: &Timestamp, field: impl Field) -> Option<DateTime<Utc>> {
        let mut found = Violations::new();
        let checked = check_unix_timestamp(t.seconds, t.nanos, "", self.now, &mut found);
        for problem in found.into_vec() {
            self.v.add(field.path(), problem.description);
        }
        checked
    }

    /// A time that may lie ahead (a due date, a promised delivery): from 1900 to the end of
    /// 9999, the range of a `google.protobuf.Timestamp`.
    fn scheduled(&mut self, t: &Timestamp, field: impl Field) -> Option<DateTime<Utc>> {
        let Some(nanos) = u32::try_from(t.nanos).ok().filter(|n| *n < 1_000_000_000) else {
            self.add(
                field,
                format!("nanos must be from 0 to 999999999 (got {})", t.nanos),
            );
            return None;
        };
        // 9999-12-31T23:59:59Z.
        const LATEST_SECONDS: i64 = 253_402_300_799;
        if t.seconds > LATEST_SECONDS {
            self.add(
                field,
                format!(
                    "{} seconds is after 9999-12-31T23:59:59Z, the last time a protobuf Timestamp holds",
                    t.seconds
                ),
            );
            return None;
        }
        let Some(time) = DateTime::from_timestamp(t.seconds, nanos) else {
            self.add(field, format!("{} seconds is out of range", t.seconds));
            return None;
        };
        // Checked as a source timestamp against its own time, so only the 1900 rule applies.
        let mut found = Violations::new();
        check_timestamp(time, "", time.max(self.now), &mut found);
        let valid = found.is_empty();
        for problem in found.into_vec() {
            self.v.add(field.path(), problem.description);
        }
        valid.then(|| to_storage_precision(time))
    }

    /// `later` must not be before `earlier` (both valid); reported at `field`.
    fn not_before(
        &mut self,
        later: Option<DateTime<Utc>>,
        earlier: Option<DateTime<Utc>>,
        field: impl Field,
        earlier_name: &str,
    ) {
        if let (Some(later), Some(earlier)) = (later, earlier)
            && later < earlier
        {
            self.add(field, format!("must not be before `{earlier_name}`"));
        }
    }

    /// A money amount with a known currency and the sign the field allows.
    fn money(&mut self, m: Option<&common::Money>, sign: Sign, field: impl Field) -> Option<Money> {
        let Some(m) = m else {
            self.add(field, "required");
            return None;
        };
        let currency = Currency::parse(&m.currency_code);
        self.sign(m.amount_minor, sign, &field);
        match currency {
            Ok(currency) => Some(Money::new(m.amount_minor, currency)),
            Err(problem) => {
                self.v.add(join(&field, "currency_code"), problem);
                None
            }
        }
    }

    fn sign(&mut self, amount_minor: i64, sign: Sign, field: &impl Field) -> bool {
        let problem = match sign {
            Sign::NotNegative if amount_minor < 0 => "must not be negative",
            Sign::Positive if amount_minor <= 0 => "must be positive",
            _ => return true,
        };
        self.v.add(join(field, "amount_minor"), problem);
        false
    }

    fn record(&mut self, r: &pb::Record) -> Option<FeedRecord> {
        self.check(check_source(&r.source), "source");
        self.check(check_record_id(&r.record_id), "record_id");
        let updated_at = self.happened(r.updated_at.as_ref(), "updated_at");
        let customer = self.customer(r.customer.as_ref());
        let body = match &r.body {
            None => {
                self.add(
                    "body",
                    "required: the record's type and content, one of contact, support_case, activity, order, shipment, order_return, invoice, payment, subscription_event, refund, survey_response",
                );
                None
            }
            Some(body) => self.body(body),
        };
        let body = body?;
        Some(FeedRecord {
            key: RecordKey {
                source: r.source.clone(),
                record_type: body.record_type(),
                record_id: r.record_id.clone(),
            },
            updated_at: updated_at?,
            customer: customer?,
            body,
        })
    }

    /// The customer as the source knows them; the values are classified by [`Check::identifiers`].
    fn customer(&mut self, c: Option<&common::SourceCustomer>) -> Option<SourceCustomer> {
        let Some(c) = c else {
            self.add(
                "customer",
                "required: the customer the record is about, with at least `source_customer_id`",
            );
            return None;
        };
        if c.source_customer_id.trim().is_empty() {
            self.add(
                "customer.source_customer_id",
                "required: the customer's id in the source system",
            );
        }
        if c.emails.len() > MAX_EMAILS {
            self.add(
                "customer.emails",
                format!(
                    "at most {MAX_EMAILS} e-mail addresses (got {})",
                    c.emails.len()
                ),
            );
        }
        if c.phones.len() > MAX_PHONES {
            self.add(
                "customer.phones",
                format!(
                    "at most {MAX_PHONES} phone numbers (got {})",
                    c.phones.len()
                ),
            );
        }
        Some(SourceCustomer {
            source_customer_id: c.source_customer_id.clone(),
            emails: c.emails.clone(),
            phones: c.phones.clone(),
        })
    }

    /// Classifies the customer's identifiers: the source customer id must be usable (it anchors
    /// the record); junk e-mails and phones are set aside, malformed ones are violations.
    fn identifiers(&mut self, r: &pb::Record, policy: &IngestPolicy) -> Identifiers {
        let mut ids = Identifiers {
            anchor: None,
            usable: Vec::new(),
            ignored: Vec::new(),
        };
        let Some(c) = &r.customer else {
            return ids;
        };
        // A bad source or a blank id is reported already.
        if check_source(&r.source).is_ok() && !c.source_customer_id.trim().is_empty() {
            let field = "customer.source_customer_id";
            match classify_source_id(&r.source, &c.source_customer_id, &policy.junk) {
                Classified::Usable(id) => ids.anchor = Some(id),
                Classified::Junk(reason) => self.add(field, junk_anchor(reason)),
                Classified::Invalid(problem) => self.add(field, problem.description()),
            }
        }
        if c.emails.len() <= MAX_EMAILS {
            for (i, raw) in c.emails.iter().enumerate() {
                let classified = classify_email(raw, &policy.junk);
                self.classified(classified, &mut ids, || format!("customer.emails[{i}]"));
            }
        }
        if c.phones.len() <= MAX_PHONES {
            for (i, raw) in c.phones.iter().enumerate() {
                let classified = classify_phone(raw, &policy.default_region, &policy.junk);
                self.classified(classified, &mut ids, || format!("customer.phones[{i}]"));
            }
        }
        ids
    }

    fn classified(&mut self, classified: Classified, ids: &mut Identifiers, field: impl Field) {
        match classified {
            Classified::Usable(identifier) => {
                if !ids.usable.iter().any(|f| f.identifier == identifier) {
                    ids.usable.push(FieldIdentifier {
                        field: field.path(),
                        identifier,
                    });
                }
            }
            Classified::Junk(reason) => ids.ignored.push(IgnoredIdentifier {
                field: field.path(),
                reason: reason.as_str().to_owned(),
                description: reason.description().to_owned(),
            }),
            Classified::Invalid(problem) => self.add(field, problem.description()),
        }
    }

    fn body(&mut self, body: &pb::record::Body) -> Option<RecordBody> {
        use pb::record::Body as B;
        match body {
            B::Contact(c) => self.contact(c).map(RecordBody::Contact),
            B::SupportCase(c) => self.support_case(c).map(RecordBody::SupportCase),
            B::Activity(a) => self.activity(a).map(RecordBody::Activity),
            B::Order(o) => self.order(o).map(RecordBody::Order),
            B::Shipment(s) => self.shipment(s).map(RecordBody::Shipment),
            B::OrderReturn(r) => self.order_return(r).map(RecordBody::OrderReturn),
            B::Invoice(i) => self.invoice(i).map(RecordBody::Invoice),
            B::Payment(p) => self.payment(p).map(RecordBody::Payment),
            B::SubscriptionEvent(e) => self
                .subscription_event(e)
                .map(RecordBody::SubscriptionEvent),
            B::Refund(r) => self.refund(r).map(RecordBody::Refund),
            B::SurveyResponse(r) => self.survey_response(r).map(RecordBody::SurveyResponse),
        }
    }

    fn contact(&mut self, c: &pb::Contact) -> Option<ContactFields> {
        self.text(&c.given_name, MAX_TEXT, false, "contact.given_name");
        self.text(&c.family_name, MAX_TEXT, false, "contact.family_name");
        let addresses = self.addresses(&c.addresses);
        let preferred_language = if c.preferred_language.is_empty() {
            Some(String::new())
        } else {
            self.check(
                language_tag(&c.preferred_language),
                "contact.preferred_language",
            )
        };
        let consents = self.consents(&c.consents);
        self.reference(&c.account_id, None, "contact.account_id");
        let lifecycle_stage = self.check(
            lifecycle_stage_from_pb(c.lifecycle_stage),
            "contact.lifecycle_stage",
        );
        Some(ContactFields {
            given_name: c.given_name.clone(),
            family_name: c.family_name.clone(),
            addresses: addresses?,
            preferred_language: preferred_language?,
            consents: consents?,
            account_id: c.account_id.clone(),
            lifecycle_stage: lifecycle_stage?,
        })
    }

    fn addresses(&mut self, addresses: &[pb::PostalAddress]) -> Option<Vec<PostalAddress>> {
        if addresses.len() > MAX_ADDRESSES {
            self.add(
                "contact.addresses",
                format!(
                    "at most {MAX_ADDRESSES} addresses (got {})",
                    addresses.len()
                ),
            );
            return None;
        }
        let mut out = Vec::with_capacity(addresses.len());
        for (i, a) in addresses.iter().enumerate() {
            if a.lines.len() > MAX_ADDRESS_LINES {
                self.add(
                    || format!("contact.addresses[{i}].lines"),
                    format!(
                        "at most {MAX_ADDRESS_LINES} street lines (got {})",
                        a.lines.len()
                    ),
                );
            } else {
                for (j, line) in a.lines.iter().enumerate() {
                    self.text(line, MAX_TEXT, false, || {
                        format!("contact.addresses[{i}].lines[{j}]")
                    });
                }
            }
            let country = &a.country_code;
            if country.is_empty() {
                self.add(
                    || format!("contact.addresses[{i}].country_code"),
                    "required: an ISO 3166-1 alpha-2 code in capitals, e.g. `PT`",
                );
            } else if country.len() != 2 || !country.bytes().all(|b| b.is_ascii_uppercase()) {
                self.add(
                    || format!("contact.addresses[{i}].country_code"),
                    format!(
                        "`{country}` is not an ISO 3166-1 alpha-2 code: two capital letters, e.g. `PT`"
                    ),
                );
            }
            out.push(PostalAddress {
                lines: a.lines.clone(),
                locality: a.locality.clone(),
                region: a.region.clone(),
                postal_code: a.postal_code.clone(),
                country_code: a.country_code.clone(),
            });
        }
        Some(out)
    }

    fn consents(&mut self, consents: &[pb::Consent]) -> Option<Vec<Consent>> {
        if consents.len() > MAX_CONSENTS {
            self.add(
                "contact.consents",
                format!(
                    "at most one consent per (purpose, channel), so at most {MAX_CONSENTS} (got {})",
                    consents.len()
                ),
            );
            return None;
        }
        let mut out: Vec<Consent> = Vec::with_capacity(consents.len());
        let mut seen: Vec<(ConsentPurpose, ConsentChannel, usize)> = Vec::new();
        let mut ok = true;
        for (i, c) in consents.iter().enumerate() {
            let at = |leaf: &'static str| move || format!("contact.consents[{i}].{leaf}");
            let purpose = self.required(consent_purpose_from_pb(c.purpose), at("purpose"));
            let channel = self.check(consent_channel_from_pb(c.channel), at("channel"));
            let status = self.required(consent_status_from_pb(c.status), at("status"));
            let given_at = self.happened(c.given_at.as_ref(), at("given_at"));
            if let (Some(purpose), Some(channel)) = (purpose, channel) {
                if let Some((_, _, first)) = seen
                    .iter()
                    .find(|(p, ch, _)| *p == purpose && *ch == channel)
                {
                    self.add(
                        || format!("contact.consents[{i}]"),
                        format!(
                            "a second consent for ({purpose}, {channel}): the first is contact.consents[{first}], and a contact holds one per purpose and channel"
                        ),
                    );
                    ok = false;
                } else {
                    seen.push((purpose, channel, i));
                }
            }
            match (purpose, channel, status, given_at) {
                (Some(purpose), Some(channel), Some(status), Some(given_at)) => out.push(Consent {
                    purpose,
                    channel,
                    status,
                    given_at,
                }),
                _ => ok = false,
            }
        }
        ok.then_some(out)
    }

    fn support_case(&mut self, c: &pb::SupportCase) -> Option<SupportCase> {
        let opened_at = self.happened(c.opened_at.as_ref(), "support_case.opened_at");
        let closed_at = self.happened_opt(c.closed_at.as_ref(), "support_case.closed_at");
        let status = self.required(case_status_from_pb(c.status), "support_case.status");
        let priority = self.required(case_priority_from_pb(c.priority), "support_case.priority");
        self.text(&c.category, MAX_SHORT_TEXT, false, "support_case.category");
        let channel = self.required(channel_from_pb(c.channel), "support_case.channel");
        if let Ok(closed) = closed_at {
            self.not_before(closed, opened_at, "support_case.closed_at", "opened_at");
            match status {
                Some(s) if s.is_closed() && c.closed_at.is_none() => self.add(
                    "support_case.closed_at",
                    format!(
                        "required: a {} case has a closing time",
                        s.as_str().to_uppercase()
                    ),
                ),
                Some(s) if !s.is_closed() && c.closed_at.is_some() => self.add(
                    "support_case.closed_at",
                    format!(
                        "must be unset while the case is {}",
                        s.as_str().to_uppercase()
                    ),
                ),
                _ => {}
            }
        }
        Some(SupportCase {
            opened_at: opened_at?,
            closed_at: closed_at.ok()?,
            status: status?,
            priority: priority?,
            category: c.category.clone(),
            channel: channel?,
        })
    }

    fn activity(&mut self, a: &pb::Activity) -> Option<Activity> {
        let kind = self.required(activity_kind_from_pb(a.kind), "activity.kind");
        let direction = self.required(direction_from_pb(a.direction), "activity.direction");
        let occurred_at = self.happened(a.occurred_at.as_ref(), "activity.occurred_at");
        self.text(&a.subject, MAX_TEXT, false, "activity.subject");
        Some(Activity {
            kind: kind?,
            direction: direction?,
            occurred_at: occurred_at?,
            subject: a.subject.clone(),
        })
    }

    fn order(&mut self, o: &pb::Order) -> Option<Order> {
        let ordered_at = self.happened(o.ordered_at.as_ref(), "order.ordered_at");
        let lines = self.order_lines(&o.lines);
        let channel = self.required(channel_from_pb(o.channel), "order.channel");
        self.reference(&o.store_id, None, "order.store_id");
        let status = self.required(order_status_from_pb(o.status), "order.status");
        Some(Order {
            ordered_at: ordered_at?,
            lines: lines?,
            channel: channel?,
            store_id: o.store_id.clone(),
            status: status?,
        })
    }

    /// The lines of an order: 1 to 500, each priced (not negative), all in one currency, and
    /// a total (Σ quantity × unit price) that fits in 64-bit minor units.
    fn order_lines(&mut self, lines: &[pb::OrderLine]) -> Option<Vec<OrderLine>> {
        if !self.line_count(lines.len(), "order.lines") {
            return None;
        }
        let mut out = Vec::with_capacity(lines.len());
        let mut ok = true;
        // The order's currency: the first line's code, parsed once.
        let mut first: Option<(&str, Currency)> = None;
        let mut total: Option<i64> = Some(0);
        for (i, line) in lines.iter().enumerate() {
            self.text(&line.sku, MAX_SHORT_TEXT, true, || {
                format!("order.lines[{i}].sku")
            });
            let quantity = self.quantity(line.quantity, || format!("order.lines[{i}].quantity"));
            let price_field = || format!("order.lines[{i}].unit_price");
            let Some(price) = &line.unit_price else {
                self.add(price_field, "required");
                ok = false;
                continue;
            };
            let sign_ok = self.sign(price.amount_minor, Sign::NotNegative, &price_field);
            let currency = match first {
                Some((code, currency)) if code == price.currency_code => Some(currency),
                _ => match Currency::parse(&price.currency_code) {
                    Ok(currency) => match first {
                        None => {
                            first = Some((price.currency_code.as_str(), currency));
                            Some(currency)
                        }
                        Some((code, _)) => {
                            self.v.add(
                                join(&price_field, "currency_code"),
                                format!(
                                    "`{}` differs from the order's currency `{code}` (lines[0]): the lines of an order are all in one currency",
                                    price.currency_code
                                ),
                            );
                            None
                        }
                    },
                    Err(problem) => {
                        self.v.add(join(&price_field, "currency_code"), problem);
                        None
                    }
                },
            };
            match (quantity, currency) {
                (Some(quantity), Some(currency)) if sign_ok => {
                    let amount = price.amount_minor.checked_mul(quantity.into());
                    total = total.zip(amount).and_then(|(t, a)| t.checked_add(a));
                    if total.is_none() && ok {
                        self.add(
                            "order.lines",
                            format!(
                                "the order's total (Σ quantity × unit_price) is out of range from lines[{i}] on: at most {} minor units",
                                i64::MAX
                            ),
                        );
                        ok = false;
                    }
                    out.push(OrderLine {
                        sku: line.sku.clone(),
                        quantity,
                        unit_price: Money::new(price.amount_minor, currency),
                    });
                }
                _ => ok = false,
            }
        }
        ok.then_some(out)
    }

    fn line_count(&mut self, n: usize, field: &'static str) -> bool {
        if n == 0 {
            self.add(field, format!("required: 1 to {MAX_LINES} lines"));
            false
        } else if n > MAX_LINES {
            self.add(field, format!("at most {MAX_LINES} lines (got {n})"));
            false
        } else {
            true
        }
    }

    fn quantity(&mut self, quantity: i64, field: impl Field) -> Option<u32> {
        let valid = (1..=MAX_QUANTITY).contains(&quantity);
        let converted = u32::try_from(quantity).ok().filter(|_| valid);
        if converted.is_none() {
            self.add(
                field,
                format!("must be from 1 to {MAX_QUANTITY} (got {quantity})"),
            );
        }
        converted
    }

    fn shipment(&mut self, s: &pb::Shipment) -> Option<Shipment> {
        self.reference(
            &s.order_id,
            Some("the order's record id in the same source"),
            "shipment.order_id",
        );
        let shipped_at = self.happened(s.shipped_at.as_ref(), "shipment.shipped_at");
        let promised_at = match &s.promised_at {
            None => Ok(None),
            Some(t) => self
                .scheduled(t, "shipment.promised_at")
                .map(Some)
                .ok_or(()),
        };
        let delivered_at = self.happened_opt(s.delivered_at.as_ref(), "shipment.delivered_at");
        let status = self.required(shipment_status_from_pb(s.status), "shipment.status");
        if let Ok(delivered) = delivered_at {
            self.not_before(delivered, shipped_at, "shipment.delivered_at", "shipped_at");
            match status {
                Some(ShipmentStatus::Delivered) if s.delivered_at.is_none() => self.add(
                    "shipment.delivered_at",
                    "required: a DELIVERED shipment has a delivery time",
                ),
                Some(status) if status != ShipmentStatus::Delivered && s.delivered_at.is_some() => {
                    self.add(
                        "shipment.delivered_at",
                        format!(
                            "must be unset while the shipment is {}",
                            status.as_str().to_uppercase()
                        ),
                    )
                }
                _ => {}
            }
        }
        Some(Shipment {
            order_id: s.order_id.clone(),
            shipped_at: shipped_at?,
            promised_at: promised_at.ok()?,
            delivered_at: delivered_at.ok()?,
            status: status?,
        })
    }

    fn order_return(&mut self, r: &pb::OrderReturn) -> Option<OrderReturn> {
        self.reference(
            &r.order_id,
            Some("the order's record id in the same source"),
            "order_return.order_id",
        );
        let returned_at = self.happened(r.returned_at.as_ref(), "order_return.returned_at");
        let lines = if self.line_count(r.lines.len(), "order_return.lines") {
            let mut out = Vec::with_capacity(r.lines.len());
            for (i, line) in r.lines.iter().enumerate() {
                self.text(&line.sku, MAX_SHORT_TEXT, true, || {
                    format!("order_return.lines[{i}].sku")
                });
                let quantity = self.quantity(line.quantity, || {
                    format!("order_return.lines[{i}].quantity")
                });
                if let Some(quantity) = quantity {
                    out.push(ReturnLine {
                        sku: line.sku.clone(),
                        quantity,
                    });
                }
            }
            (out.len() == r.lines.len()).then_some(out)
        } else {
            None
        };
        let reason = self.required(return_reason_from_pb(r.reason), "order_return.reason");
        Some(OrderReturn {
            order_id: r.order_id.clone(),
            returned_at: returned_at?,
            lines: lines?,
            reason: reason?,
        })
    }

    fn invoice(&mut self, i: &pb::Invoice) -> Option<Invoice> {
        let issued_at = self.happened(i.issued_at.as_ref(), "invoice.issued_at");
        let due_at = match &i.due_at {
            None => {
                self.add("invoice.due_at", "required");
                None
            }
            Some(t) => self.scheduled(t, "invoice.due_at"),
        };
        self.not_before(due_at, issued_at, "invoice.due_at", "issued_at");
        let amount = self.money(i.amount.as_ref(), Sign::NotNegative, "invoice.amount");
        let status = self.required(invoice_status_from_pb(i.status), "invoice.status");
        Some(Invoice {
            issued_at: issued_at?,
            due_at: due_at?,
            amount: amount?,
            status: status?,
        })
    }

    fn payment(&mut self, p: &pb::Payment) -> Option<Payment> {
        let attempted_at = self.happened(p.attempted_at.as_ref(), "payment.attempted_at");
        let amount = self.money(p.amount.as_ref(), Sign::Positive, "payment.amount");
        let status = self.required(payment_status_from_pb(p.status), "payment.status");
        match status {
            Some(PaymentStatus::Failed) if p.failure_reason.trim().is_empty() => self.add(
                "payment.failure_reason",
                "required for a FAILED payment, e.g. `card_declined`",
            ),
            Some(PaymentStatus::Succeeded) if !p.failure_reason.is_empty() => self.add(
                "payment.failure_reason",
                "must be empty for a SUCCEEDED payment",
            ),
            _ => self.text(&p.failure_reason, MAX_TEXT, false, "payment.failure_reason"),
        }
        self.reference(&p.invoice_id, None, "payment.invoice_id");
        Some(Payment {
            attempted_at: attempted_at?,
            amount: amount?,
            status: status?,
            failure_reason: p.failure_reason.clone(),
            invoice_id: p.invoice_id.clone(),
        })
    }

    fn subscription_event(&mut self, e: &pb::SubscriptionEvent) -> Option<SubscriptionEvent> {
        self.reference(
            &e.subscription_id,
            Some("the subscription's id in the source"),
            "subscription_event.subscription_id",
        );
        let kind = self.required(
            subscription_event_kind_from_pb(e.kind),
            "subscription_event.kind",
        );
        let occurred_at = self.happened(e.occurred_at.as_ref(), "subscription_event.occurred_at");
        self.text(&e.plan, MAX_SHORT_TEXT, false, "subscription_event.plan");
        let recurring_amount = match &e.recurring_amount {
            None => Some(None),
            Some(m) => self
                .money(
                    Some(m),
                    Sign::NotNegative,
                    "subscription_event.recurring_amount",
                )
                .map(Some),
        };
        Some(SubscriptionEvent {
            subscription_id: e.subscription_id.clone(),
            kind: kind?,
            occurred_at: occurred_at?,
            plan: e.plan.clone(),
            recurring_amount: recurring_amount?,
        })
    }

    fn refund(&mut self, r: &pb::Refund) -> Option<Refund> {
        let refunded_at = self.happened(r.refunded_at.as_ref(), "refund.refunded_at");
        let amount = self.money(r.amount.as_ref(), Sign::Positive, "refund.amount");
        self.reference(&r.payment_id, None, "refund.payment_id");
        self.text(&r.reason, MAX_TEXT, false, "refund.reason");
        Some(Refund {
            refunded_at: refunded_at?,
            amount: amount?,
            payment_id: r.payment_id.clone(),
            reason: r.reason.clone(),
        })
    }

    /// The shape of a survey response, with the field rules of `SubmitResponses`; whether it
    /// fits its survey is the store's check, against the stored survey.
    fn survey_response(&mut self, r: &pb::SurveyResponse) -> Option<SurveyResponse> {
        let survey_key = self.check(Key::parse(&r.survey_key), "survey_response.survey_key");
        let touchpoint_key = self.check(
            Key::parse(&r.touchpoint_key),
            "survey_response.touchpoint_key",
        );
        let interaction_id = self.check(
            sv::check_interaction_id(&r.interaction_id),
            "survey_response.interaction_id",
        );
        if r.answers.is_empty() {
            self.add("survey_response.answers", "at least one answer is required");
        }
        let comment = self.check(sv::check_comment(&r.comment), "survey_response.comment");
        let language = if r.language.is_empty() {
            Some(None)
        } else {
            self.check(sv::check_language(&r.language), "survey_response.language")
                .map(Some)
        };
        let answered_at = self.happened(r.answered_at.as_ref(), "survey_response.answered_at");
        Some(SurveyResponse {
            survey_key: survey_key?,
            touchpoint_key: touchpoint_key?,
            interaction_id: interaction_id?,
            answers: r
                .answers
                .iter()
                .map(|a| SurveyAnswer {
                    question_key: a.question_key.clone(),
                    value: a.value,
                })
                .collect(),
            comment: comment?,
            language: language?,
            answered_at: answered_at?,
        })
    }
}

/// Why a junk source customer id rejects the record.
fn junk_anchor(reason: JunkReason) -> String {
    format!(
        "{} ({}): a record needs the real id of its customer in the source, or it cannot be given to a customer",
        reason.description(),
        reason.as_str()
    )
}

/// Checks a BCP 47 language tag for plausibility and writes it in the conventional case
/// (RFC 5646 §2.1.1): `PT-br` becomes `pt-BR`, `zh-hant-tw` becomes `zh-Hant-TW`.
///
/// Plausible: at most [`MAX_LANGUAGE_TAG`] characters; subtags of 1 to 8 ASCII letters and
/// digits joined by `-`; a primary language of 2, 3 or 5 to 8 letters (or `x` for a private
/// tag, `i` for a grandfathered one); every singleton (`u`, `x`…) followed by a subtag. The
/// registry of subtags is not consulted, so a well-formed but unregistered tag passes.
fn language_tag(tag: &str) -> Result<String, String> {
    let malformed = || {
        format!(
            "`{tag}` is not a BCP 47 language tag: subtags of 1 to 8 letters or digits joined by `-`, starting with a language code, e.g. `pt-BR`, `de`, `zh-Hant-TW`"
        )
    };
    if tag.len() > MAX_LANGUAGE_TAG {
        return Err(format!(
            "at most {MAX_LANGUAGE_TAG} characters for a language tag"
        ));
    }
    let mut out = String::with_capacity(tag.len());
    // After a singleton, subtags are extensions or private use: lowercase, any shape.
    let mut extension = false;
    let mut private = false;
    let mut awaiting_subtag = false;
    for (i, subtag) in tag.split('-').enumerate() {
        let well_formed =
            (1..=8).contains(&subtag.len()) && subtag.bytes().all(|b| b.is_ascii_alphanumeric());
        if !well_formed {
            return Err(malformed());
        }
        let letters = subtag.bytes().all(|b| b.is_ascii_alphabetic());
        let singleton = subtag.len() == 1;
        if i == 0 {
            let language = letters && matches!(subtag.len(), 2 | 3 | 5..=8);
            let special = subtag.eq_ignore_ascii_case("x") || subtag.eq_ignore_ascii_case("i");
            if !(language || special) {
                return Err(malformed());
            }
        } else {
            out.push('-');
        }
        if singleton && !private {
            if awaiting_subtag {
                return Err(malformed());
            }
            extension = true;
            awaiting_subtag = true;
            private = subtag.eq_ignore_ascii_case("x");
        } else {
            awaiting_subtag = false;
        }
        if i > 0 && !extension && letters && subtag.len() == 2 {
            out.push_str(&subtag.to_ascii_uppercase());
        } else if i > 0 && !extension && letters && subtag.len() == 4 {
            let (head, rest) = subtag.split_at(1);
            out.push_str(&head.to_ascii_uppercase());
            out.push_str(&rest.to_ascii_lowercase());
        } else {
            out.push_str(&subtag.to_ascii_lowercase());
        }
    }
    if awaiting_subtag {
        return Err(malformed());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use cxhub_domain::feed::TransactionKind;
    use cxhub_domain::record::RecordType;
    use pb::record::Body;

    const NOW: i64 = 1_800_000_000;
    const DAY: i64 = 86_400;

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(NOW, 0).unwrap()
    }

    fn ts(seconds: i64) -> Option<Timestamp> {
        Some(Timestamp { seconds, nanos: 0 })
    }

    fn ago(seconds: i64) -> Option<Timestamp> {
        ts(NOW - seconds)
    }

    fn money(amount_minor: i64, code: &str) -> Option<common::Money> {
        Some(common::Money {
            amount_minor,
            currency_code: code.into(),
        })
    }

    fn policy() -> IngestPolicy {
        IngestPolicy {
            default_region: "PT".into(),
            ..IngestPolicy::default()
        }
    }

    fn record(body: Body) -> pb::Record {
        pb::Record {
            source: "sap-erp".into(),
            record_id: "4500012345".into(),
            updated_at: ago(100),
            customer: Some(common::SourceCustomer {
                source_customer_id: "C-000123".into(),
                emails: vec!["Ana.Silva@Gmail.com".into()],
                phones: vec!["916 482 739".into()],
            }),
            body: Some(body),
        }
    }

    fn line(sku: &str, quantity: i64, price: i64, code: &str) -> pb::OrderLine {
        pb::OrderLine {
            sku: sku.into(),
            quantity,
            unit_price: money(price, code),
        }
    }

    fn order(lines: Vec<pb::OrderLine>) -> Body {
        Body::Order(pb::Order {
            ordered_at: ago(DAY),
            lines,
            channel: tp::Channel::Web as i32,
            store_id: "lisbon-chiado".into(),
            status: pb::OrderStatus::Placed as i32,
        })
    }

    fn contact() -> pb::Contact {
        pb::Contact {
            given_name: "Ana".into(),
            family_name: "Silva".into(),
            addresses: vec![pb::PostalAddress {
                lines: vec!["Rua Garrett 1".into()],
                locality: "Lisboa".into(),
                region: String::new(),
                postal_code: "1200-203".into(),
                country_code: "PT".into(),
            }],
            preferred_language: "pt-PT".into(),
            consents: vec![pb::Consent {
                purpose: pb::ConsentPurpose::Marketing as i32,
                channel: pb::ConsentChannel::Email as i32,
                status: pb::ConsentStatus::Granted as i32,
                given_at: ago(DAY),
            }],
            account_id: "ACC-1".into(),
            lifecycle_stage: pb::LifecycleStage::Customer as i32,
        }
    }

    /// One valid body of every record type.
    fn valid_bodies() -> Vec<Body> {
        vec![
            Body::Contact(contact()),
            Body::SupportCase(pb::SupportCase {
                opened_at: ago(2 * DAY),
                closed_at: ago(DAY),
                status: pb::CaseStatus::Resolved as i32,
                priority: pb::CasePriority::High as i32,
                category: "billing".into(),
                channel: tp::Channel::Phone as i32,
            }),
            Body::Activity(pb::Activity {
                kind: pb::ActivityKind::Meeting as i32,
                direction: pb::Direction::Outbound as i32,
                occurred_at: ago(DAY),
                subject: "Annual review".into(),
            }),
            order(vec![
                line("CARD-READER", 2, 1_250, "EUR"),
                line("CHEQUE-BOOK", 1, 500, "EUR"),
            ]),
            Body::Shipment(pb::Shipment {
                order_id: "4500012344".into(),
                shipped_at: ago(3 * DAY),
                promised_at: ago(2 * DAY),
                delivered_at: ago(DAY),
                status: pb::ShipmentStatus::Delivered as i32,
            }),
            Body::OrderReturn(pb::OrderReturn {
                order_id: "4500012344".into(),
                returned_at: ago(DAY),
                lines: vec![pb::ReturnLine {
                    sku: "CARD-READER".into(),
                    quantity: 1,
                }],
                reason: pb::ReturnReason::Defective as i32,
            }),
            Body::Invoice(pb::Invoice {
                issued_at: ago(DAY),
                // Due in a month: a due date may lie ahead.
                due_at: ts(NOW + 30 * DAY),
                amount: money(9_900, "EUR"),
                status: pb::InvoiceStatus::Open as i32,
            }),
            Body::Payment(pb::Payment {
                attempted_at: ago(DAY),
                amount: money(9_900, "EUR"),
                status: pb::PaymentStatus::Failed as i32,
                failure_reason: "card_declined".into(),
                invoice_id: "INV-1".into(),
            }),
            Body::SubscriptionEvent(pb::SubscriptionEvent {
                subscription_id: "sub_1".into(),
                kind: pb::SubscriptionEventKind::Upgraded as i32,
                occurred_at: ago(DAY),
                plan: "premium-monthly".into(),
                recurring_amount: money(1_500, "EUR"),
            }),
            Body::Refund(pb::Refund {
                refunded_at: ago(DAY),
                amount: money(2_500, "EUR"),
                payment_id: "pay_1".into(),
                reason: "damaged".into(),
            }),
            Body::SurveyResponse(survey_response()),
        ]
    }

    fn survey_response() -> pb::SurveyResponse {
        pb::SurveyResponse {
            survey_key: "branch.visit".into(),
            touchpoint_key: "branch.teller".into(),
            interaction_id: "visit-77".into(),
            answers: vec![pb::SurveyAnswer {
                question_key: "recommend".into(),
                value: 9,
            }],
            comment: "Atendimento rápido".into(),
            language: "pt-PT".into(),
            answered_at: ago(DAY),
        }
    }

    fn fields_of(violations: &[FieldViolation]) -> Vec<&str> {
        violations.iter().map(|v| v.field.as_str()).collect()
    }

    fn violations(record: &pb::Record) -> Vec<FieldViolation> {
        prepare(record, 0, now(), &policy()).unwrap_err()
    }

    fn description<'a>(violations: &'a [FieldViolation], field: &str) -> &'a str {
        violations
            .iter()
            .find(|v| v.field == field)
            .map(|v| v.description.as_str())
            .unwrap_or_else(|| panic!("no violation at {field}: {violations:?}"))
    }

    #[test]
    fn a_valid_record_of_every_type_is_prepared() {
        let types: Vec<RecordType> = valid_bodies()
            .into_iter()
            .enumerate()
            .map(|(i, body)| {
                let item = prepare(&record(body), i, now(), &policy())
                    .unwrap_or_else(|v| panic!("record {i}: {v:?}"));
                assert_eq!(item.index, i);
                assert_eq!(item.key.source, "sap-erp");
                assert_eq!(item.key.record_id, "4500012345");
                assert_eq!(
                    item.version.updated_at,
                    now() - chrono::TimeDelta::seconds(100)
                );
                assert_eq!(
                    item.anchor,
                    Identifier::SourceId {
                        source: "sap-erp".into(),
                        id: "C-000123".into()
                    }
                );
                let ids: Vec<(&str, &Identifier)> = item
                    .identifiers
                    .iter()
                    .map(|f| (f.field.as_str(), &f.identifier))
                    .collect();
                assert_eq!(
                    ids,
                    [
                        (
                            "customer.emails[0]",
                            &Identifier::Email("ana.silva@gmail.com".into())
                        ),
                        (
                            "customer.phones[0]",
                            &Identifier::Phone("+351916482739".into())
                        ),
                    ]
                );
                assert!(item.ignored.is_empty());
                let is_contact = item.key.record_type == RecordType::Contact;
                let is_response = item.key.record_type == RecordType::SurveyResponse;
                assert_eq!(item.derived.contact.is_some(), is_contact);
                assert_eq!(item.derived.survey_response.is_some(), is_response);
                assert_eq!(
                    item.derived.interaction.is_some(),
                    !is_contact && !is_response
                );
                item.key.record_type
            })
            .collect();
        assert_eq!(types, RecordType::ALL);
    }

    #[test]
    fn a_survey_response_keeps_its_answers_and_its_shape_is_checked() {
        let item = prepare(
            &record(Body::SurveyResponse(survey_response())),
            0,
            now(),
            &policy(),
        )
        .unwrap();
        let r = item.derived.survey_response.unwrap();
        assert_eq!(r.survey_key.as_str(), "branch.visit");
        assert_eq!(r.touchpoint_key.as_str(), "branch.teller");
        assert_eq!(r.interaction_id.as_deref(), Some("visit-77"));
        assert_eq!(r.answer_pairs(), [("recommend".to_owned(), 9)]);
        assert_eq!(r.comment.as_deref(), Some("Atendimento rápido"));
        assert_eq!(r.language.as_deref(), Some("pt-PT"));
        assert_eq!(r.answered_at, now() - chrono::TimeDelta::days(1));
        assert_eq!(item.key.record_type, RecordType::SurveyResponse);

        // Empty optional fields are absent, not empty.
        let bare = pb::SurveyResponse {
            interaction_id: String::new(),
            comment: String::new(),
            language: String::new(),
            ..survey_response()
        };
        let r = prepare(&record(Body::SurveyResponse(bare)), 0, now(), &policy())
            .unwrap()
            .derived
            .survey_response
            .unwrap();
        assert_eq!(
            (r.interaction_id, r.comment, r.language),
            (None, None, None)
        );

        let bad = pb::SurveyResponse {
            survey_key: String::new(),
            touchpoint_key: "Teller Desk".into(),
            interaction_id: " ".into(),
            answers: Vec::new(),
            comment: "x".repeat(2_001),
            language: "not a tag".into(),
            answered_at: ago(-3 * DAY),
        };
        assert_eq!(
            fields_of(&violations(&record(Body::SurveyResponse(bad)))),
            [
                "survey_response.survey_key",
                "survey_response.touchpoint_key",
                "survey_response.interaction_id",
                "survey_response.answers",
                "survey_response.comment",
                "survey_response.language",
                "survey_response.answered_at",
            ]
        );
    }

    #[test]
    fn a_contact_keeps_its_fields_with_a_conventional_language_tag() {
        let mut c = contact();
        c.preferred_language = "PT-br".into();
        let item = prepare(&record(Body::Contact(c)), 0, now(), &policy()).unwrap();
        let fields = item.derived.contact.unwrap();
        assert_eq!(fields.preferred_language, "pt-BR");
        assert_eq!(fields.given_name, "Ana");
        assert_eq!(fields.addresses[0].country_code, "PT");
        assert_eq!(fields.consents[0].channel, ConsentChannel::Email);
        assert_eq!(fields.lifecycle_stage, Some(LifecycleStage::Customer));
    }

    #[test]
    fn an_order_derives_its_total_and_its_touchpoint() {
        let item = prepare(
            &record(order(vec![
                line("A", 3, 250, "EUR"),
                line("B", 1, 1_000, "EUR"),
            ])),
            0,
            now(),
            &policy(),
        )
        .unwrap();
        let t = item.derived.transaction.unwrap();
        assert_eq!(t.kind, TransactionKind::Order);
        assert_eq!(t.amount.amount_minor, 1_750);
        assert_eq!(t.amount.currency.code(), "EUR");
        let i = item.derived.interaction.unwrap();
        assert_eq!(i.outcome, "ORDER_PLACED");
        assert_eq!(i.touchpoint_key, "orders.checkout.web-checkout");
        assert_eq!(i.channel, Channel::Web);
    }

    #[test]
    fn every_violation_of_a_record_is_reported_at_once() {
        let mut r = record(order(vec![
            line("", 0, -1, "eur"),
            pb::OrderLine {
                sku: "x".repeat(101),
                quantity: MAX_QUANTITY + 1,
                unit_price: None,
            },
            line("OK", 1, 100, "XAU"),
        ]));
        r.source = "SAP ERP".into();
        r.record_id = " 45".into();
        r.updated_at = None;
        if let Some(Body::Order(o)) = &mut r.body {
            o.channel = 0;
            o.status = 42;
            o.ordered_at = ts(NOW + 2 * DAY);
        }
        r.customer = Some(common::SourceCustomer {
            source_customer_id: "C-1".into(),
            emails: vec!["not-an-email".into()],
            phones: vec!["916 482 739 000 111".into()],
        });
        let v = violations(&r);
        assert_eq!(
            fields_of(&v),
            [
                "source",
                "record_id",
                "updated_at",
                "order.ordered_at",
                "order.lines[0].sku",
                "order.lines[0].quantity",
                "order.lines[0].unit_price.amount_minor",
                "order.lines[0].unit_price.currency_code",
                "order.lines[1].sku",
                "order.lines[1].quantity",
                "order.lines[1].unit_price",
                "order.lines[2].unit_price.currency_code",
                "order.channel",
                "order.status",
                "customer.emails[0]",
                "customer.phones[0]",
            ]
        );
        assert_eq!(description(&v, "updated_at"), "required");
        assert!(description(&v, "order.ordered_at").contains("more than 1 day after"));
        assert!(description(&v, "order.lines[1].sku").contains("at most 100 characters"));
        assert!(description(&v, "order.lines[0].unit_price.currency_code").contains("uppercase"));
        assert!(description(&v, "order.lines[2].unit_price.currency_code").contains("special"));
        assert!(description(&v, "order.status").contains("unknown order status 42"));
        assert!(description(&v, "customer.emails[0]").contains("missing @"));
    }

    #[test]
    fn a_record_without_body_or_customer_is_refused() {
        let r = pb::Record {
            source: "crm".into(),
            record_id: "1".into(),
            updated_at: ago(1),
            customer: None,
            body: None,
        };
        let v = violations(&r);
        assert_eq!(fields_of(&v), ["customer", "body"]);
        assert!(description(&v, "body").starts_with("required"));
    }

    #[test]
    fn junk_identifiers_are_ignored_but_the_record_is_accepted() {
        let mut r = record(valid_bodies().remove(3));
        r.customer = Some(common::SourceCustomer {
            source_customer_id: "C-000123".into(),
            emails: vec![
                "ana.silva@gmail.com".into(),
                "test@example.com".into(),
                " ANA.SILVA@gmail.com ".into(),
            ],
            phones: vec!["000 000 000".into(), "N/A".into()],
        });
        let item = prepare(&r, 7, now(), &policy()).unwrap();
        // The two spellings of one address are one identifier, from its first field.
        assert_eq!(item.identifiers.len(), 1);
        assert_eq!(item.identifiers[0].field, "customer.emails[0]");
        let ignored: Vec<(&str, &str)> = item
            .ignored
            .iter()
            .map(|i| (i.field.as_str(), i.reason.as_str()))
            .collect();
        assert_eq!(
            ignored,
            [
                ("customer.emails[1]", "PLACEHOLDER_DOMAIN"),
                ("customer.phones[0]", "REPEATED_DIGITS"),
                ("customer.phones[1]", "PLACEHOLDER"),
            ]
        );
        assert!(item.ignored.iter().all(|i| !i.description.is_empty()));
        // The payload keeps the values as sent.
        let decoded = pb::Record::decode(item.payload.as_slice()).unwrap();
        assert_eq!(decoded, r);
    }

    #[test]
    fn invalid_identifiers_and_a_junk_anchor_reject_the_record() {
        let mut r = record(valid_bodies().remove(1));
        r.customer = Some(common::SourceCustomer {
            source_customer_id: "unknown".into(),
            emails: vec!["ana@gmail".into()],
            phones: vec!["12".repeat(11)],
        });
        let v = violations(&r);
        assert_eq!(
            fields_of(&v),
            [
                "customer.source_customer_id",
                "customer.emails[0]",
                "customer.phones[0]"
            ]
        );
        assert!(description(&v, "customer.source_customer_id").contains("PLACEHOLDER"));
        assert!(description(&v, "customer.emails[0]").contains("no dot"));

        r.customer = Some(common::SourceCustomer {
            source_customer_id: "  ".into(),
            emails: vec!["a@b.pt".into(); MAX_EMAILS + 1],
            phones: vec![],
        });
        let v = violations(&r);
        assert_eq!(
            fields_of(&v),
            ["customer.source_customer_id", "customer.emails"]
        );
        assert!(description(&v, "customer.source_customer_id").starts_with("required"));
    }

    #[test]
    fn timestamps_before_1900_or_more_than_a_day_ahead_are_refused() {
        let mut r = record(valid_bodies().remove(2));
        r.updated_at = ts(-2_208_988_801);
        if let Some(Body::Activity(a)) = &mut r.body {
            a.occurred_at = ts(NOW + DAY + 1);
        }
        let v = violations(&r);
        assert_eq!(fields_of(&v), ["updated_at", "activity.occurred_at"]);
        assert!(description(&v, "updated_at").contains("before 1900"));

        // Up to a day ahead is clock skew, accepted; nanos are kept to the microsecond.
        r.updated_at = Some(Timestamp {
            seconds: NOW + DAY - 1,
            nanos: 123_456_789,
        });
        if let Some(Body::Activity(a)) = &mut r.body {
            a.occurred_at = ago(0);
        }
        let item = prepare(&r, 0, now(), &policy()).unwrap();
        assert_eq!(
            item.version.updated_at.timestamp_subsec_nanos(),
            123_456_000
        );

        r.updated_at = Some(Timestamp {
            seconds: NOW,
            nanos: -1,
        });
        assert_eq!(fields_of(&violations(&r)), ["updated_at"]);
    }

    #[test]
    fn due_and_promised_dates_may_lie_ahead_but_not_beyond_9999() {
        let mut invoice = record(valid_bodies().remove(6));
        if let Some(Body::Invoice(i)) = &mut invoice.body {
            i.due_at = ts(NOW + 400 * DAY);
        }
        assert!(prepare(&invoice, 0, now(), &policy()).is_ok());
        if let Some(Body::Invoice(i)) = &mut invoice.body {
            i.due_at = ts(253_402_300_800);
        }
        assert_eq!(fields_of(&violations(&invoice)), ["invoice.due_at"]);
        if let Some(Body::Invoice(i)) = &mut invoice.body {
            i.due_at = ts(-2_208_988_801);
        }
        let v = violations(&invoice);
        assert!(description(&v, "invoice.due_at").contains("before 1900"));
        if let Some(Body::Invoice(i)) = &mut invoice.body {
            i.due_at = ts(i64::MIN);
        }
        let v = violations(&invoice);
        assert!(description(&v, "invoice.due_at").contains("out of range"));

        let shipment = record(Body::Shipment(pb::Shipment {
            order_id: "o1".into(),
            shipped_at: ago(DAY),
            promised_at: ts(NOW + 10 * DAY),
            delivered_at: None,
            status: pb::ShipmentStatus::InTransit as i32,
        }));
        let item = prepare(&shipment, 0, now(), &policy()).unwrap();
        assert_eq!(item.derived.interaction.unwrap().outcome, "IN_TRANSIT");
    }

    #[test]
    fn an_order_in_two_currencies_is_refused() {
        let r = record(order(vec![
            line("A", 1, 100, "EUR"),
            line("B", 1, 100, "EUR"),
            line("C", 1, 100, "USD"),
        ]));
        let v = violations(&r);
        assert_eq!(fields_of(&v), ["order.lines[2].unit_price.currency_code"]);
        assert!(description(&v, "order.lines[2].unit_price.currency_code").contains("`EUR`"));
    }

    #[test]
    fn an_order_whose_total_overflows_is_refused() {
        // Each line fits; the total does not.
        let r = record(order(vec![
            line("A", 1, i64::MAX - 10, "EUR"),
            line("B", 1, 11, "EUR"),
        ]));
        let v = violations(&r);
        assert_eq!(fields_of(&v), ["order.lines"]);
        assert!(description(&v, "order.lines").contains("out of range from lines[1]"));
        // One line whose quantity × price overflows.
        let r = record(order(vec![line("A", 1_000, i64::MAX / 999, "JPY")]));
        assert_eq!(fields_of(&violations(&r)), ["order.lines"]);
        // Up to the limit is fine.
        let r = record(order(vec![
            line("A", 1, i64::MAX - 10, "EUR"),
            line("B", 1, 10, "EUR"),
        ]));
        let item = prepare(&r, 0, now(), &policy()).unwrap();
        assert_eq!(
            item.derived.transaction.unwrap().amount.amount_minor,
            i64::MAX
        );
    }

    #[test]
    fn line_counts_are_bounded() {
        assert_eq!(
            fields_of(&violations(&record(order(vec![])))),
            ["order.lines"]
        );
        let many = vec![line("A", 1, 1, "EUR"); MAX_LINES + 1];
        let v = violations(&record(order(many)));
        assert_eq!(fields_of(&v), ["order.lines"]);
        assert!(description(&v, "order.lines").contains("at most 500"));
        let most = vec![line("A", 1, 1, "EUR"); MAX_LINES];
        assert!(prepare(&record(order(most)), 0, now(), &policy()).is_ok());
        // Characters, not bytes: 100 two-byte characters is a valid SKU.
        let sku = "é".repeat(100);
        assert!(
            prepare(
                &record(order(vec![line(&sku, 1, 1, "EUR")])),
                0,
                now(),
                &policy()
            )
            .is_ok()
        );
    }

    #[test]
    fn statuses_must_agree_with_their_fields() {
        let cases: Vec<(Body, &[&str])> = vec![
            (
                Body::SupportCase(pb::SupportCase {
                    opened_at: ago(DAY),
                    closed_at: None,
                    status: pb::CaseStatus::Resolved as i32,
                    priority: pb::CasePriority::Low as i32,
                    category: String::new(),
                    channel: tp::Channel::Chat as i32,
                }),
                &["support_case.closed_at"],
            ),
            (
                Body::SupportCase(pb::SupportCase {
                    opened_at: ago(DAY),
                    closed_at: ago(2 * DAY),
                    status: pb::CaseStatus::Open as i32,
                    priority: 0,
                    category: "c".repeat(101),
                    channel: 0,
                }),
                &[
                    "support_case.priority",
                    "support_case.category",
                    "support_case.channel",
                    "support_case.closed_at",
                    "support_case.closed_at",
                ],
            ),
            (
                Body::Shipment(pb::Shipment {
                    order_id: String::new(),
                    shipped_at: ago(DAY),
                    promised_at: None,
                    delivered_at: None,
                    status: pb::ShipmentStatus::Delivered as i32,
                }),
                &["shipment.order_id", "shipment.delivered_at"],
            ),
            (
                Body::Shipment(pb::Shipment {
                    order_id: "o1".into(),
                    shipped_at: ago(DAY),
                    promised_at: None,
                    delivered_at: ago(2 * DAY),
                    status: pb::ShipmentStatus::Failed as i32,
                }),
                &["shipment.delivered_at", "shipment.delivered_at"],
            ),
            (
                Body::Payment(pb::Payment {
                    attempted_at: ago(DAY),
                    amount: money(0, "EUR"),
                    status: pb::PaymentStatus::Failed as i32,
                    failure_reason: " ".into(),
                    invoice_id: String::new(),
                }),
                &["payment.amount.amount_minor", "payment.failure_reason"],
            ),
            (
                Body::Payment(pb::Payment {
                    attempted_at: ago(DAY),
                    amount: money(10, "EUR"),
                    status: pb::PaymentStatus::Succeeded as i32,
                    failure_reason: "card_declined".into(),
                    invoice_id: "\tINV".into(),
                }),
                &["payment.failure_reason", "payment.invoice_id"],
            ),
            (
                Body::Invoice(pb::Invoice {
                    issued_at: ago(DAY),
                    due_at: ago(2 * DAY),
                    amount: money(-1, "EUR"),
                    status: pb::InvoiceStatus::Paid as i32,
                }),
                &["invoice.due_at", "invoice.amount.amount_minor"],
            ),
            (
                Body::Invoice(pb::Invoice {
                    issued_at: ago(DAY),
                    due_at: None,
                    amount: None,
                    status: 0,
                }),
                &["invoice.due_at", "invoice.amount", "invoice.status"],
            ),
            (
                Body::Refund(pb::Refund {
                    refunded_at: None,
                    amount: money(-5, "EUR"),
                    payment_id: String::new(),
                    reason: "r".repeat(201),
                }),
                &[
                    "refund.refunded_at",
                    "refund.amount.amount_minor",
                    "refund.reason",
                ],
            ),
            (
                Body::SubscriptionEvent(pb::SubscriptionEvent {
                    subscription_id: String::new(),
                    kind: 0,
                    occurred_at: ago(DAY),
                    plan: String::new(),
                    recurring_amount: money(-1, "usd"),
                }),
                &[
                    "subscription_event.subscription_id",
                    "subscription_event.kind",
                    "subscription_event.recurring_amount.amount_minor",
                    "subscription_event.recurring_amount.currency_code",
                ],
            ),
            (
                Body::Activity(pb::Activity {
                    kind: 0,
                    direction: 9,
                    occurred_at: None,
                    subject: String::new(),
                }),
                &[
                    "activity.kind",
                    "activity.direction",
                    "activity.occurred_at",
                ],
            ),
            (
                Body::OrderReturn(pb::OrderReturn {
                    order_id: "o1".into(),
                    returned_at: ago(DAY),
                    lines: vec![pb::ReturnLine {
                        sku: String::new(),
                        quantity: -3,
                    }],
                    reason: 0,
                }),
                &[
                    "order_return.lines[0].sku",
                    "order_return.lines[0].quantity",
                    "order_return.reason",
                ],
            ),
        ];
        for (body, expected) in cases {
            let v = violations(&record(body.clone()));
            assert_eq!(fields_of(&v), expected, "{body:?}: {v:?}");
        }
    }

    #[test]
    fn a_contact_is_checked_field_by_field() {
        let mut c = contact();
        c.given_name = "a".repeat(201);
        c.addresses[0].country_code = "pt".into();
        c.addresses[0].lines = vec!["l".into(); 5];
        c.addresses.push(pb::PostalAddress {
            lines: vec!["x".repeat(201)],
            country_code: String::new(),
            ..Default::default()
        });
        c.preferred_language = "portuguese".into();
        c.consents.push(pb::Consent {
            // UNSPECIFIED channel is every channel: not the same slot as e-mail.
            channel: pb::ConsentChannel::Unspecified as i32,
            ..c.consents[0]
        });
        c.consents.push(c.consents[0]);
        c.consents.push(pb::Consent {
            purpose: 0,
            channel: 77,
            status: 0,
            given_at: None,
        });
        c.account_id = "x".repeat(257);
        c.lifecycle_stage = 9;
        let v = violations(&record(Body::Contact(c)));
        assert_eq!(
            fields_of(&v),
            [
                "contact.given_name",
                "contact.addresses[0].lines",
                "contact.addresses[0].country_code",
                "contact.addresses[1].lines[0]",
                "contact.addresses[1].country_code",
                "contact.preferred_language",
                "contact.consents[2]",
                "contact.consents[3].purpose",
                "contact.consents[3].channel",
                "contact.consents[3].status",
                "contact.consents[3].given_at",
                "contact.account_id",
                "contact.lifecycle_stage",
            ]
        );
        assert!(description(&v, "contact.consents[2]").contains("contact.consents[0]"));

        let mut c = contact();
        c.addresses = vec![c.addresses[0].clone(); MAX_ADDRESSES + 1];
        assert_eq!(
            fields_of(&violations(&record(Body::Contact(c)))),
            ["contact.addresses"]
        );
    }

    #[test]
    fn language_tags_are_plausible_bcp47_in_conventional_case() {
        for (tag, canonical) in [
            ("pt-BR", "pt-BR"),
            ("PT-br", "pt-BR"),
            ("de", "de"),
            ("vi", "vi"),
            ("zh-hant-tw", "zh-Hant-TW"),
            ("es-419", "es-419"),
            ("sr-Latn-RS", "sr-Latn-RS"),
            ("en-US-x-twain", "en-US-x-twain"),
            ("de-DE-u-co-phonebk", "de-DE-u-co-phonebk"),
            ("x-klingon", "x-klingon"),
            ("i-Navajo", "i-navajo"),
            ("yue", "yue"),
        ] {
            assert_eq!(language_tag(tag).as_deref(), Ok(canonical), "{tag}");
        }
        for bad in [
            "",
            "p",
            "portuguese-br",
            "pt_BR",
            "pt-",
            "-pt",
            "pt--BR",
            "12",
            "pt-BR-u",
            "pt-a-b",
            "pt BR",
            "ptç",
        ] {
            assert!(language_tag(bad).is_err(), "{bad:?}");
        }
        assert!(language_tag(&format!("en{}", "-abcdefgh".repeat(8))).is_err());
    }

    #[test]
    fn the_hash_is_stable_across_reencoding_and_follows_the_content() {
        let r = record(valid_bodies().remove(3));
        let first = prepare(&r, 0, now(), &policy()).unwrap();
        // Decoding the payload and encoding it again gives the same bytes and hash.
        let decoded = pb::Record::decode(first.payload.as_slice()).unwrap();
        let again = prepare(&decoded, 5, now(), &policy()).unwrap();
        assert_eq!(again.payload, first.payload);
        assert_eq!(again.version, first.version);
        assert_eq!(first.version.hash, ContentHash::of(&r.encode_to_vec()));

        // Unknown fields a newer client sends are not part of the content.
        let mut with_unknown = first.payload.clone();
        with_unknown.extend_from_slice(&[0xF8, 0x06, 0x01]); // field 111, varint 1
        let decoded = pb::Record::decode(with_unknown.as_slice()).unwrap();
        assert_eq!(
            prepare(&decoded, 0, now(), &policy()).unwrap().version,
            first.version
        );

        // Any change of content changes the hash, not the version time.
        let mut changed = r.clone();
        if let Some(Body::Order(o)) = &mut changed.body {
            o.lines[0].quantity += 1;
        }
        let other = prepare(&changed, 0, now(), &policy()).unwrap();
        assert_ne!(other.version.hash, first.version.hash);
        assert_eq!(other.version.updated_at, first.version.updated_at);
    }

    #[test]
    fn record_from_pb_checks_the_record_without_its_identifiers() {
        let mut r = record(valid_bodies().remove(4));
        r.customer = Some(common::SourceCustomer {
            source_customer_id: "unknown".into(),
            emails: vec!["not an e-mail".into()],
            phones: vec![],
        });
        let feed = record_from_pb(&r, now()).unwrap();
        assert_eq!(feed.key.record_type, RecordType::Shipment);
        assert_eq!(feed.customer.emails, ["not an e-mail"]);
        r.record_id.clear();
        assert_eq!(
            fields_of(&record_from_pb(&r, now()).unwrap_err()),
            ["record_id"]
        );
    }

    #[test]
    fn every_wire_enum_value_maps_both_ways() {
        for c in Channel::ALL {
            assert_eq!(channel_from_pb(channel_to_pb(*c) as i32), Ok(Some(*c)));
        }
        for c in ConsentChannel::ALL {
            assert_eq!(
                consent_channel_from_pb(consent_channel_to_pb(*c) as i32),
                Ok(*c)
            );
        }
        for p in ConsentPurpose::ALL {
            assert_eq!(
                consent_purpose_from_pb(consent_purpose_to_pb(*p) as i32),
                Ok(Some(*p))
            );
        }
        for s in LifecycleStage::ALL {
            assert_eq!(
                lifecycle_stage_from_pb(lifecycle_stage_to_pb(Some(*s)) as i32),
                Ok(Some(*s))
            );
        }
        assert_eq!(lifecycle_stage_to_pb(None), pb::LifecycleStage::Unspecified);
        for s in CaseStatus::ALL {
            assert_eq!(
                case_status_from_pb(case_status_to_pb(*s) as i32),
                Ok(Some(*s))
            );
        }
        for s in CasePriority::ALL {
            assert_eq!(
                case_priority_from_pb(case_priority_to_pb(*s) as i32),
                Ok(Some(*s))
            );
        }
        for k in ActivityKind::ALL {
            assert_eq!(
                activity_kind_from_pb(activity_kind_to_pb(*k) as i32),
                Ok(Some(*k))
            );
        }
        for d in Direction::ALL {
            assert_eq!(direction_from_pb(direction_to_pb(*d) as i32), Ok(Some(*d)));
        }
        for s in OrderStatus::ALL {
            assert_eq!(
                order_status_from_pb(order_status_to_pb(*s) as i32),
                Ok(Some(*s))
            );
        }
        for s in ShipmentStatus::ALL {
            assert_eq!(
                shipment_status_from_pb(shipment_status_to_pb(*s) as i32),
                Ok(Some(*s))
            );
        }
        for r in ReturnReason::ALL {
            assert_eq!(
                return_reason_from_pb(return_reason_to_pb(*r) as i32),
                Ok(Some(*r))
            );
        }
        for s in InvoiceStatus::ALL {
            assert_eq!(
                invoice_status_from_pb(invoice_status_to_pb(*s) as i32),
                Ok(Some(*s))
            );
        }
        for s in PaymentStatus::ALL {
            assert_eq!(
                payment_status_from_pb(payment_status_to_pb(*s) as i32),
                Ok(Some(*s))
            );
        }
        for k in SubscriptionEventKind::ALL {
            assert_eq!(
                subscription_event_kind_from_pb(subscription_event_kind_to_pb(*k) as i32),
                Ok(Some(*k))
            );
        }
        for s in ConsentStatus::ALL {
            assert_eq!(
                consent_status_from_pb(consent_status_to_pb(*s) as i32),
                Ok(Some(*s))
            );
        }
        assert_eq!(channel_from_pb(0), Ok(None));
        assert!(channel_from_pb(99).is_err());
        assert!(consent_channel_from_pb(-1).is_err());
    }

    #[test]
    fn profile_fields_convert_back_to_the_wire() {
        let c = contact();
        let item = prepare(&record(Body::Contact(c.clone())), 0, now(), &policy()).unwrap();
        let fields = item.derived.contact.unwrap();
        let addresses: Vec<_> = fields.addresses.iter().map(postal_address_to_pb).collect();
        assert_eq!(addresses, c.addresses);
        let consents: Vec<_> = fields.consents.iter().map(consent_to_pb).collect();
        assert_eq!(consents, c.consents);
        assert_eq!(
            lifecycle_stage_to_pb(fields.lifecycle_stage) as i32,
            c.lifecycle_stage
        );
        let t = DateTime::from_timestamp(NOW, 123_456_000).unwrap();
        assert_eq!(
            timestamp(t),
            Timestamp {
                seconds: NOW,
                nanos: 123_456_000
            }
        );
    }
}
