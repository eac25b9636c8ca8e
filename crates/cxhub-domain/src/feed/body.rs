//! The typed content of each record type, and what a record becomes: profile fields (contacts),
//! an interaction at a touchpoint (every other type) and a ledger entry (orders, invoices,
//! payments, refunds). See [`derive`].
//!
//! Every type here is validated already (the feeds service checks the wire record), so
//! [`derive`] is total: it never fails and never looks at the hub's clock.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::profile::ContactFields;
use super::{Derived, FeedRecord, Interaction, TouchpointMap, Transaction, TransactionKind};
use crate::money::Money;
use crate::record::RecordType;
use crate::text_enum::text_enum;
use crate::touchpoint::{Channel, Key};

text_enum!(
    /// Where a support case stands.
    CaseStatus {
        /// Open, being worked on.
        Open = "open",
        /// Waiting on the customer or a third party.
        Pending = "pending",
        /// Solved to the customer's satisfaction.
        Resolved = "resolved",
        /// Closed without resolution (duplicate, abandoned, refused).
        Closed = "closed",
    }
);

impl CaseStatus {
    /// Whether the case is over (resolved or closed): it then has a `closed_at`.
    pub fn is_closed(self) -> bool {
        matches!(self, CaseStatus::Resolved | CaseStatus::Closed)
    }
}

text_enum!(
    /// How urgent a support case is.
    CasePriority {
        /// Low.
        Low = "low",
        /// Normal.
        Normal = "normal",
        /// High.
        High = "high",
        /// Urgent.
        Urgent = "urgent",
    }
);

text_enum!(
    /// A kind of logged activity.
    ActivityKind {
        /// A phone call.
        Call = "call",
        /// A meeting in person or by video.
        Meeting = "meeting",
        /// An e-mail.
        Email = "email",
        /// A letter.
        Letter = "letter",
    }
);

impl ActivityKind {
    /// The channel an activity of this kind happens through: a call by phone, a meeting in a
    /// store (branch), an e-mail by e-mail, a letter by letter.
    pub fn channel(self) -> Channel {
        match self {
            ActivityKind::Call => Channel::Phone,
            ActivityKind::Meeting => Channel::Store,
            ActivityKind::Email => Channel::Email,
            ActivityKind::Letter => Channel::Letter,
        }
    }
}

text_enum!(
    /// Who started an exchange.
    Direction {
        /// The customer.
        Inbound = "inbound",
        /// The company.
        Outbound = "outbound",
    }
);

text_enum!(
    /// Whether an order stands.
    OrderStatus {
        /// Placed (and possibly fulfilled): it counts as a purchase.
        Placed = "placed",
        /// Cancelled before fulfilment: it does not count as a purchase.
        Cancelled = "cancelled",
    }
);

text_enum!(
    /// Where a shipment stands.
    ShipmentStatus {
        /// On its way.
        InTransit = "in_transit",
        /// Delivered.
        Delivered = "delivered",
        /// Could not be delivered.
        Failed = "failed",
    }
);

text_enum!(
    /// Why goods came back.
    ReturnReason {
        /// Damaged or faulty.
        Defective = "defective",
        /// Not what was ordered.
        WrongItem = "wrong_item",
        /// Arrived too late to be useful.
        Late = "late",
        /// The customer changed their mind.
        NotWanted = "not_wanted",
        /// Any other reason.
        Other = "other",
    }
);

text_enum!(
    /// Where an invoice stands. Overdue is derived: open after `due_at`.
    InvoiceStatus {
        /// Issued, not yet paid.
        Open = "open",
        /// Paid in full.
        Paid = "paid",
        /// Cancelled.
        Void = "void",
        /// Written off.
        Uncollectible = "uncollectible",
    }
);

text_enum!(
    /// Whether a payment went through.
    PaymentStatus {
        /// Money received.
        Succeeded = "succeeded",
        /// Declined or failed.
        Failed = "failed",
    }
);

text_enum!(
    /// What happened to a subscription.
    SubscriptionEventKind {
        /// Started.
        Started = "started",
        /// Renewed for another period.
        Renewed = "renewed",
        /// Moved to a dearer plan.
        Upgraded = "upgraded",
        /// Moved to a cheaper plan.
        Downgraded = "downgraded",
        /// Paused.
        Paused = "paused",
        /// Cancelled.
        Cancelled = "cancelled",
    }
);

/// CRM: a support case (ticket, complaint, request).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SupportCase {
    /// When the case was opened.
    pub opened_at: DateTime<Utc>,
    /// When it was closed: set exactly when the status is resolved or closed, not before
    /// `opened_at`.
    pub closed_at: Option<DateTime<Utc>>,
    /// Where the case stands.
    pub status: CaseStatus,
    /// How urgent it is.
    pub priority: CasePriority,
    /// The source's category, e.g. `billing`; empty if none.
    pub category: String,
    /// The channel the customer used to open it.
    pub channel: Channel,
}

/// CRM: an activity logged against the customer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Activity {
    /// What kind of activity.
    pub kind: ActivityKind,
    /// Who started it.
    pub direction: Direction,
    /// When it happened.
    pub occurred_at: DateTime<Utc>,
    /// A short subject; empty if none.
    pub subject: String,
}

/// One line of an order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderLine {
    /// The product's stock-keeping unit.
    pub sku: String,
    /// How many, 1 to 1,000,000.
    pub quantity: u32,
    /// Price of one unit, not negative.
    pub unit_price: Money,
}

/// ERP: an order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Order {
    /// When the order was placed.
    pub ordered_at: DateTime<Utc>,
    /// The lines, 1 to 500, all in one currency.
    pub lines: Vec<OrderLine>,
    /// The channel the order came through.
    pub channel: Channel,
    /// The store, site or sales point in the source; empty if none.
    pub store_id: String,
    /// Whether the order stands.
    pub status: OrderStatus,
}

impl Order {
    /// The order's total, Σ quantity × unit price; `None` when there are no lines, the lines
    /// are in more than one currency, or the total does not fit in an `i64` of minor units
    /// (validation refuses all three).
    pub fn total(&self) -> Option<Money> {
        let (first, rest) = self.lines.split_first()?;
        let mut total = first
            .unit_price
            .amount_minor
            .checked_mul(first.quantity.into())?;
        for line in rest {
            if line.unit_price.currency != first.unit_price.currency {
                return None;
            }
            let amount = line
                .unit_price
                .amount_minor
                .checked_mul(line.quantity.into())?;
            total = total.checked_add(amount)?;
        }
        Some(Money::new(total, first.unit_price.currency))
    }
}

/// ERP: a shipment or delivery of an order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shipment {
    /// The order's record id in the same source.
    pub order_id: String,
    /// When it left.
    pub shipped_at: DateTime<Utc>,
    /// When the company promised delivery, if it did.
    pub promised_at: Option<DateTime<Utc>>,
    /// When it was delivered: set exactly when the status is delivered, not before
    /// `shipped_at`.
    pub delivered_at: Option<DateTime<Utc>>,
    /// Where it stands.
    pub status: ShipmentStatus,
}

/// One returned product.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReturnLine {
    /// The product's stock-keeping unit.
    pub sku: String,
    /// How many, 1 to 1,000,000.
    pub quantity: u32,
}

/// ERP: goods the customer sent back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderReturn {
    /// The order's record id in the same source.
    pub order_id: String,
    /// When the return was registered.
    pub returned_at: DateTime<Utc>,
    /// What came back, 1 to 500 lines.
    pub lines: Vec<ReturnLine>,
    /// Why.
    pub reason: ReturnReason,
}

/// Billing: an invoice.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Invoice {
    /// When it was issued.
    pub issued_at: DateTime<Utc>,
    /// When payment is due, not before `issued_at` (may be in the future).
    pub due_at: DateTime<Utc>,
    /// The amount due, not negative.
    pub amount: Money,
    /// Where it stands.
    pub status: InvoiceStatus,
}

/// Billing: one payment attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Payment {
    /// When it was attempted.
    pub attempted_at: DateTime<Utc>,
    /// The amount, positive.
    pub amount: Money,
    /// Whether it went through.
    pub status: PaymentStatus,
    /// Why it failed: set for failed payments, empty otherwise.
    pub failure_reason: String,
    /// The invoice's record id in the same source; empty if none.
    pub invoice_id: String,
}

/// Billing: one event in a subscription's life.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubscriptionEvent {
    /// The subscription's id in the source.
    pub subscription_id: String,
    /// What happened.
    pub kind: SubscriptionEventKind,
    /// When.
    pub occurred_at: DateTime<Utc>,
    /// The plan after the event; empty if not given.
    pub plan: String,
    /// The recurring amount after the event, not negative, if given.
    pub recurring_amount: Option<Money>,
}

/// Billing: money given back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refund {
    /// When it was refunded.
    pub refunded_at: DateTime<Utc>,
    /// The amount given back, positive (the ledger entry is its negative).
    pub amount: Money,
    /// The payment's record id in the same source; empty if none.
    pub payment_id: String,
    /// Why; empty if not given.
    pub reason: String,
}

/// One answer of a survey response: the question's key and the value given.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SurveyAnswer {
    /// The key of the question answered.
    pub question_key: String,
    /// The answer (its scale is checked against the stored survey by the store).
    pub value: i32,
}

/// Surveys: a customer's response to a survey of the hub. Well-formed here; whether it fits
/// its survey (active, attached to the touchpoint, every question answered within its scale)
/// is checked by the store against the stored survey, with
/// [`crate::scoring::survey::check_answers`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SurveyResponse {
    /// The survey's key.
    pub survey_key: Key,
    /// The touchpoint the response is about.
    pub touchpoint_key: Key,
    /// The interaction the survey followed, as its source knows it.
    pub interaction_id: Option<String>,
    /// The answers, in the order given.
    pub answers: Vec<SurveyAnswer>,
    /// The comment, if any.
    pub comment: Option<String>,
    /// The language; `None` means the survey's default.
    pub language: Option<String>,
    /// When the customer answered.
    pub answered_at: DateTime<Utc>,
}

impl SurveyResponse {
    /// The answers as `(question key, value)`, the shape the survey checks take.
    pub fn answer_pairs(&self) -> Vec<(String, i32)> {
        self.answers
            .iter()
            .map(|a| (a.question_key.clone(), a.value))
            .collect()
    }
}

/// The typed content of a record. Serialised with the record type's text as the tag
/// (`{"order": {…}}`, `{"return": {…}}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordBody {
    /// CRM: a contact.
    Contact(ContactFields),
    /// CRM: a support case.
    SupportCase(SupportCase),
    /// CRM: a logged activity.
    Activity(Activity),
    /// ERP: an order.
    Order(Order),
    /// ERP: a shipment or delivery.
    Shipment(Shipment),
    /// ERP: a return.
    #[serde(rename = "return")]
    OrderReturn(OrderReturn),
    /// Billing: an invoice.
    Invoice(Invoice),
    /// Billing: a payment attempt.
    Payment(Payment),
    /// Billing: a subscription event.
    SubscriptionEvent(SubscriptionEvent),
    /// Billing: a refund.
    Refund(Refund),
    /// Surveys: a survey response.
    SurveyResponse(SurveyResponse),
}

impl RecordBody {
    /// The record type this body is.
    pub fn record_type(&self) -> RecordType {
        match self {
            RecordBody::Contact(_) => RecordType::Contact,
            RecordBody::SupportCase(_) => RecordType::SupportCase,
            RecordBody::Activity(_) => RecordType::Activity,
            RecordBody::Order(_) => RecordType::Order,
            RecordBody::Shipment(_) => RecordType::Shipment,
            RecordBody::OrderReturn(_) => RecordType::Return,
            RecordBody::Invoice(_) => RecordType::Invoice,
            RecordBody::Payment(_) => RecordType::Payment,
            RecordBody::SubscriptionEvent(_) => RecordType::SubscriptionEvent,
            RecordBody::Refund(_) => RecordType::Refund,
            RecordBody::SurveyResponse(_) => RecordType::SurveyResponse,
        }
    }

    /// What refines the touchpoint of this body in a [`TouchpointMap`]: the channel of a
    /// support case or an order, the kind of an activity; `None` for the other types.
    pub fn qualifier(&self) -> Option<&'static str> {
        match self {
            RecordBody::SupportCase(c) => Some(c.channel.as_str()),
            RecordBody::Order(o) => Some(o.channel.as_str()),
            RecordBody::Activity(a) => Some(a.kind.as_str()),
            _ => None,
        }
    }
}

/// What a valid record becomes, besides being stored:
///
/// - a contact: its profile fields, and nothing else;
/// - a survey response: the response, and nothing else (it names its touchpoint itself);
/// - every other type: one [`Interaction`] at the touchpoint `map` gives for the record type
///   (and qualifier, see [`RecordBody::qualifier`]), with an UPPER_SNAKE_CASE outcome;
/// - orders, invoices, payments and refunds: also one [`Transaction`] of the ledger.
///
/// | type | channel | occurred at | outcomes |
/// |---|---|---|---|
/// | support case | the case's | `closed_at` when resolved or closed, else `opened_at` | `CASE_OPENED`, `CASE_PENDING`, `CASE_RESOLVED`, `CASE_CLOSED_UNRESOLVED` |
/// | activity | call: phone, meeting: store, e-mail: email, letter: letter | `occurred_at` | `CALL_INBOUND`, `CALL_OUTBOUND`, `MEETING_…`, `EMAIL_…`, `LETTER_…` |
/// | order | the order's | `ordered_at` | `ORDER_PLACED`, `ORDER_CANCELLED` |
/// | shipment | field service | `delivered_at` if any, else `shipped_at` | `IN_TRANSIT`, `DELIVERED_ON_TIME`, `DELIVERED_LATE` (after `promised_at`), `DELIVERED` (no promise), `DELIVERY_FAILED` |
/// | return | other (the record does not say how the goods came back) | `returned_at` | `RETURNED_DEFECTIVE`, `RETURNED_WRONG_ITEM`, `RETURNED_LATE`, `RETURNED_NOT_WANTED`, `RETURNED_OTHER` |
/// | invoice | email | `issued_at` | `INVOICE_OPEN`, `INVOICE_PAID`, `INVOICE_VOID`, `INVOICE_UNCOLLECTIBLE` |
/// | payment | web | `attempted_at` | `PAYMENT_SUCCEEDED`, `PAYMENT_FAILED` |
/// | subscription event | web | `occurred_at` | `SUBSCRIPTION_STARTED`, `_RENEWED`, `_UPGRADED`, `_DOWNGRADED`, `_PAUSED`, `_CANCELLED` |
/// | refund | web | `refunded_at` | `REFUNDED` |
///
/// Ledger entries: an order's amount is its [`Order::total`] with status `placed` or
/// `cancelled`; an invoice's amount and status with its `due_at`; a payment's amount with
/// status `succeeded` or `failed`; a refund's amount negated, status `refunded`.
pub fn derive(record: &FeedRecord, map: &TouchpointMap) -> Derived {
    let body = &record.body;
    let interaction = |channel: Channel, occurred_at: DateTime<Utc>, outcome: &str| {
        Some(Interaction {
            touchpoint_key: map
                .touchpoint_for(body.record_type(), body.qualifier())
                .to_owned(),
            channel,
            occurred_at,
            outcome: outcome.to_owned(),
        })
    };
    let transaction = |kind, amount, occurred_at, status: &str, due_at| {
        Some(Transaction {
            kind,
            amount,
            occurred_at,
            status: status.to_owned(),
            due_at,
        })
    };
    let derived = match body {
        RecordBody::Contact(fields) => Derived {
            contact: Some(fields.clone()),
            ..Derived::default()
        },
        RecordBody::SurveyResponse(r) => Derived {
            survey_response: Some(r.clone()),
            ..Derived::default()
        },
        RecordBody::SupportCase(c) => {
            let occurred_at = match c.closed_at {
                Some(closed_at) if c.status.is_closed() => closed_at,
                _ => c.opened_at,
            };
            Derived {
                interaction: interaction(c.channel, occurred_at, case_outcome(c.status)),
                support_case: Some(c.clone()),
                ..Derived::default()
            }
        }
        RecordBody::Activity(a) => Derived {
            interaction: interaction(
                a.kind.channel(),
                a.occurred_at,
                activity_outcome(a.kind, a.direction),
            ),
            ..Derived::default()
        },
        RecordBody::Order(o) => {
            let outcome = match o.status {
                OrderStatus::Placed => "ORDER_PLACED",
                OrderStatus::Cancelled => "ORDER_CANCELLED",
            };
            Derived {
                interaction: interaction(o.channel, o.ordered_at, outcome),
                transaction: o.total().and_then(|total| {
                    transaction(
                        TransactionKind::Order,
                        total,
                        o.ordered_at,
                        o.status.as_str(),
                        None,
                    )
                }),
                ..Derived::default()
            }
        }
        RecordBody::Shipment(s) => Derived {
            interaction: interaction(
                Channel::FieldService,
                s.delivered_at.unwrap_or(s.shipped_at),
                shipment_outcome(s),
            ),
            ..Derived::default()
        },
        RecordBody::OrderReturn(r) => Derived {
            interaction: interaction(Channel::Other, r.returned_at, return_outcome(r.reason)),
            ..Derived::default()
        },
        RecordBody::Invoice(i) => {
            let outcome = match i.status {
                InvoiceStatus::Open => "INVOICE_OPEN",
                InvoiceStatus::Paid => "INVOICE_PAID",
                InvoiceStatus::Void => "INVOICE_VOID",
                InvoiceStatus::Uncollectible => "INVOICE_UNCOLLECTIBLE",
            };
            Derived {
                interaction: interaction(Channel::Email, i.issued_at, outcome),
                transaction: transaction(
                    TransactionKind::Invoice,
                    i.amount,
                    i.issued_at,
                    i.status.as_str(),
                    Some(i.due_at),
                ),
                ..Derived::default()
            }
        }
        RecordBody::Payment(p) => {
            let outcome = match p.status {
                PaymentStatus::Succeeded => "PAYMENT_SUCCEEDED",
                PaymentStatus::Failed => "PAYMENT_FAILED",
            };
            Derived {
                interaction: interaction(Channel::Web, p.attempted_at, outcome),
                transaction: transaction(
                    TransactionKind::Payment,
                    p.amount,
                    p.attempted_at,
                    p.status.as_str(),
                    None,
                ),
                ..Derived::default()
            }
        }
        RecordBody::SubscriptionEvent(e) => Derived {
            interaction: interaction(Channel::Web, e.occurred_at, subscription_outcome(e.kind)),
            subscription: Some(e.clone()),
            ..Derived::default()
        },
        RecordBody::Refund(r) => Derived {
            interaction: interaction(Channel::Web, r.refunded_at, "REFUNDED"),
            transaction: transaction(
                TransactionKind::Refund,
                Money::new(r.amount.amount_minor.saturating_neg(), r.amount.currency),
                r.refunded_at,
                "refunded",
                None,
            ),
            ..Derived::default()
        },
    };
    Derived {
        event: super::event_of(body),
        ..derived
    }
}

fn case_outcome(status: CaseStatus) -> &'static str {
    match status {
        CaseStatus::Open => "CASE_OPENED",
        CaseStatus::Pending => "CASE_PENDING",
        CaseStatus::Resolved => "CASE_RESOLVED",
        CaseStatus::Closed => "CASE_CLOSED_UNRESOLVED",
    }
}

fn activity_outcome(kind: ActivityKind, direction: Direction) -> &'static str {
    use ActivityKind as K;
    use Direction as D;
    match (kind, direction) {
        (K::Call, D::Inbound) => "CALL_INBOUND",
        (K::Call, D::Outbound) => "CALL_OUTBOUND",
        (K::Meeting, D::Inbound) => "MEETING_INBOUND",
        (K::Meeting, D::Outbound) => "MEETING_OUTBOUND",
        (K::Email, D::Inbound) => "EMAIL_INBOUND",
        (K::Email, D::Outbound) => "EMAIL_OUTBOUND",
        (K::Letter, D::Inbound) => "LETTER_INBOUND",
        (K::Letter, D::Outbound) => "LETTER_OUTBOUND",
    }
}

fn shipment_outcome(s: &Shipment) -> &'static str {
    match (s.status, s.delivered_at, s.promised_at) {
        (ShipmentStatus::InTransit, _, _) => "IN_TRANSIT",
        (ShipmentStatus::Failed, _, _) => "DELIVERY_FAILED",
        (ShipmentStatus::Delivered, Some(delivered), Some(promised)) if delivered > promised => {
            "DELIVERED_LATE"
        }
        (ShipmentStatus::Delivered, Some(_), Some(_)) => "DELIVERED_ON_TIME",
        (ShipmentStatus::Delivered, _, _) => "DELIVERED",
    }
}

fn return_outcome(reason: ReturnReason) -> &'static str {
    match reason {
        ReturnReason::Defective => "RETURNED_DEFECTIVE",
        ReturnReason::WrongItem => "RETURNED_WRONG_ITEM",
        ReturnReason::Late => "RETURNED_LATE",
        ReturnReason::NotWanted => "RETURNED_NOT_WANTED",
        ReturnReason::Other => "RETURNED_OTHER",
    }
}

fn subscription_outcome(kind: SubscriptionEventKind) -> &'static str {
    match kind {
        SubscriptionEventKind::Started => "SUBSCRIPTION_STARTED",
        SubscriptionEventKind::Renewed => "SUBSCRIPTION_RENEWED",
        SubscriptionEventKind::Upgraded => "SUBSCRIPTION_UPGRADED",
        SubscriptionEventKind::Downgraded => "SUBSCRIPTION_DOWNGRADED",
        SubscriptionEventKind::Paused => "SUBSCRIPTION_PAUSED",
        SubscriptionEventKind::Cancelled => "SUBSCRIPTION_CANCELLED",
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::collections::{BTreeMap, BTreeSet};

    use super::*;
    use crate::feed::SourceCustomer;
    use crate::money::Currency;
    use crate::record::RecordKey;

    fn at(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + seconds, 0).unwrap()
    }

    fn eur(amount_minor: i64) -> Money {
        Money::new(amount_minor, Currency::parse("EUR").unwrap())
    }

    fn record(body: RecordBody) -> FeedRecord {
        FeedRecord {
            key: RecordKey {
                source: "erp".into(),
                record_type: body.record_type(),
                record_id: "r1".into(),
            },
            updated_at: at(1_000),
            customer: SourceCustomer {
                source_customer_id: "c1".into(),
                emails: vec![],
                phones: vec![],
            },
            body,
        }
    }

    fn derived(body: RecordBody) -> Derived {
        derive(&record(body), &TouchpointMap::default())
    }

    fn interaction(body: RecordBody) -> Interaction {
        derived(body).interaction.unwrap()
    }

    fn case(status: CaseStatus, closed_at: Option<i64>, channel: Channel) -> RecordBody {
        RecordBody::SupportCase(SupportCase {
            opened_at: at(0),
            closed_at: closed_at.map(at),
            status,
            priority: CasePriority::Normal,
            category: "billing".into(),
            channel,
        })
    }

    fn shipment(
        status: ShipmentStatus,
        promised: Option<i64>,
        delivered: Option<i64>,
    ) -> RecordBody {
        RecordBody::Shipment(Shipment {
            order_id: "o1".into(),
            shipped_at: at(0),
            promised_at: promised.map(at),
            delivered_at: delivered.map(at),
            status,
        })
    }

    fn order(status: OrderStatus, lines: &[(u32, i64)], channel: Channel) -> RecordBody {
        RecordBody::Order(Order {
            ordered_at: at(5),
            lines: lines
                .iter()
                .enumerate()
                .map(|(i, (quantity, price))| OrderLine {
                    sku: format!("sku-{i}"),
                    quantity: *quantity,
                    unit_price: eur(*price),
                })
                .collect(),
            channel,
            store_id: String::new(),
            status,
        })
    }

    /// One body of every non-contact type, for every outcome code.
    fn every_outcome() -> Vec<(RecordBody, &'static str)> {
        let mut cases = vec![
            (case(CaseStatus::Open, None, Channel::Phone), "CASE_OPENED"),
            (
                case(CaseStatus::Pending, None, Channel::Phone),
                "CASE_PENDING",
            ),
            (
                case(CaseStatus::Resolved, Some(9), Channel::Web),
                "CASE_RESOLVED",
            ),
            (
                case(CaseStatus::Closed, Some(9), Channel::Chat),
                "CASE_CLOSED_UNRESOLVED",
            ),
            (
                order(OrderStatus::Placed, &[(1, 100)], Channel::Web),
                "ORDER_PLACED",
            ),
            (
                order(OrderStatus::Cancelled, &[(1, 100)], Channel::Store),
                "ORDER_CANCELLED",
            ),
            (
                shipment(ShipmentStatus::InTransit, Some(50), None),
                "IN_TRANSIT",
            ),
            (
                shipment(ShipmentStatus::Delivered, Some(50), Some(50)),
                "DELIVERED_ON_TIME",
            ),
            (
                shipment(ShipmentStatus::Delivered, Some(50), Some(51)),
                "DELIVERED_LATE",
            ),
            (
                shipment(ShipmentStatus::Delivered, None, Some(51)),
                "DELIVERED",
            ),
            (
                shipment(ShipmentStatus::Failed, None, None),
                "DELIVERY_FAILED",
            ),
            (
                RecordBody::Refund(Refund {
                    refunded_at: at(3),
                    amount: eur(250),
                    payment_id: "p1".into(),
                    reason: String::new(),
                }),
                "REFUNDED",
            ),
        ];
        for (kind, inbound, outbound) in [
            (ActivityKind::Call, "CALL_INBOUND", "CALL_OUTBOUND"),
            (ActivityKind::Meeting, "MEETING_INBOUND", "MEETING_OUTBOUND"),
            (ActivityKind::Email, "EMAIL_INBOUND", "EMAIL_OUTBOUND"),
            (ActivityKind::Letter, "LETTER_INBOUND", "LETTER_OUTBOUND"),
        ] {
            for (direction, code) in [
                (Direction::Inbound, inbound),
                (Direction::Outbound, outbound),
            ] {
                cases.push((
                    RecordBody::Activity(Activity {
                        kind,
                        direction,
                        occurred_at: at(7),
                        subject: String::new(),
                    }),
                    code,
                ));
            }
        }
        for (reason, code) in [
            (ReturnReason::Defective, "RETURNED_DEFECTIVE"),
            (ReturnReason::WrongItem, "RETURNED_WRONG_ITEM"),
            (ReturnReason::Late, "RETURNED_LATE"),
            (ReturnReason::NotWanted, "RETURNED_NOT_WANTED"),
            (ReturnReason::Other, "RETURNED_OTHER"),
        ] {
            cases.push((
                RecordBody::OrderReturn(OrderReturn {
                    order_id: "o1".into(),
                    returned_at: at(8),
                    lines: vec![ReturnLine {
                        sku: "s".into(),
                        quantity: 1,
                    }],
                    reason,
                }),
                code,
            ));
        }
        for (status, code) in [
            (InvoiceStatus::Open, "INVOICE_OPEN"),
            (InvoiceStatus::Paid, "INVOICE_PAID"),
            (InvoiceStatus::Void, "INVOICE_VOID"),
            (InvoiceStatus::Uncollectible, "INVOICE_UNCOLLECTIBLE"),
        ] {
            cases.push((
                RecordBody::Invoice(Invoice {
                    issued_at: at(1),
                    due_at: at(100),
                    amount: eur(999),
                    status,
                }),
                code,
            ));
        }
        for (status, reason, code) in [
            (PaymentStatus::Succeeded, "", "PAYMENT_SUCCEEDED"),
            (PaymentStatus::Failed, "card_declined", "PAYMENT_FAILED"),
        ] {
            cases.push((
                RecordBody::Payment(Payment {
                    attempted_at: at(2),
                    amount: eur(999),
                    status,
                    failure_reason: reason.into(),
                    invoice_id: String::new(),
                }),
                code,
            ));
        }
        for (kind, code) in [
            (SubscriptionEventKind::Started, "SUBSCRIPTION_STARTED"),
            (SubscriptionEventKind::Renewed, "SUBSCRIPTION_RENEWED"),
            (SubscriptionEventKind::Upgraded, "SUBSCRIPTION_UPGRADED"),
            (SubscriptionEventKind::Downgraded, "SUBSCRIPTION_DOWNGRADED"),
            (SubscriptionEventKind::Paused, "SUBSCRIPTION_PAUSED"),
            (SubscriptionEventKind::Cancelled, "SUBSCRIPTION_CANCELLED"),
        ] {
            cases.push((
                RecordBody::SubscriptionEvent(SubscriptionEvent {
                    subscription_id: "sub1".into(),
                    kind,
                    occurred_at: at(4),
                    plan: "premium-monthly".into(),
                    recurring_amount: Some(eur(1_500)),
                }),
                code,
            ));
        }
        cases
    }

    #[test]
    fn every_outcome_code_is_derived_and_distinct() {
        let cases = every_outcome();
        let mut codes = BTreeSet::new();
        for (body, code) in cases {
            let derived = derived(body.clone());
            assert_eq!(derived.contact, None);
            let interaction = derived.interaction.unwrap();
            assert_eq!(interaction.outcome, code, "{body:?}");
            assert!(!interaction.touchpoint_key.is_empty(), "{body:?}");
            assert!(codes.insert(code), "{code} twice");
        }
        // Every record type but contacts is covered.
        assert_eq!(codes.len(), 4 + 8 + 2 + 5 + 5 + 4 + 2 + 6 + 1);
    }

    #[test]
    fn a_contact_becomes_profile_fields_only() {
        let fields = ContactFields {
            given_name: "Ana".into(),
            ..ContactFields::default()
        };
        let d = derived(RecordBody::Contact(fields.clone()));
        assert_eq!(
            d,
            Derived {
                contact: Some(fields),
                interaction: None,
                transaction: None,
                support_case: None,
                subscription: None,
                survey_response: None,
                event: None,
            }
        );
    }

    #[test]
    fn a_survey_response_becomes_the_response_only() {
        let response = SurveyResponse {
            survey_key: Key::parse("branch.visit").unwrap(),
            touchpoint_key: Key::parse("branch.teller").unwrap(),
            interaction_id: None,
            answers: vec![SurveyAnswer {
                question_key: "recommend".into(),
                value: 9,
            }],
            comment: Some("rápido".into()),
            language: None,
            answered_at: at(6),
        };
        let body = RecordBody::SurveyResponse(response.clone());
        assert_eq!(body.record_type(), RecordType::SurveyResponse);
        assert_eq!(body.qualifier(), None);
        assert_eq!(
            derived(body.clone()),
            Derived {
                survey_response: Some(response),
                ..Derived::default()
            }
        );
        let json = serde_json::to_value(&body).unwrap();
        assert!(json.get("survey_response").is_some(), "{json}");
        assert_eq!(serde_json::from_value::<RecordBody>(json).unwrap(), body);
    }

    #[test]
    fn late_delivery_is_strictly_after_the_promise_and_happens_when_delivered() {
        let late = interaction(shipment(ShipmentStatus::Delivered, Some(50), Some(51)));
        assert_eq!(late.outcome, "DELIVERED_LATE");
        assert_eq!(late.occurred_at, at(51));
        assert_eq!(late.channel, Channel::FieldService);
        let on_time = interaction(shipment(ShipmentStatus::Delivered, Some(50), Some(49)));
        assert_eq!(on_time.outcome, "DELIVERED_ON_TIME");
        let in_transit = interaction(shipment(ShipmentStatus::InTransit, Some(50), None));
        assert_eq!(in_transit.occurred_at, at(0), "shipped_at until delivered");
    }

    #[test]
    fn a_case_happens_when_closed_if_closed_else_when_opened() {
        let closed = interaction(case(CaseStatus::Resolved, Some(9), Channel::Store));
        assert_eq!(closed.occurred_at, at(9));
        assert_eq!(closed.channel, Channel::Store);
        let open = interaction(case(CaseStatus::Open, None, Channel::Chat));
        assert_eq!(open.occurred_at, at(0));
        assert_eq!(open.channel, Channel::Chat);
    }

    #[test]
    fn activities_happen_through_the_channel_of_their_kind() {
        for (kind, channel) in [
            (ActivityKind::Call, Channel::Phone),
            (ActivityKind::Meeting, Channel::Store),
            (ActivityKind::Email, Channel::Email),
            (ActivityKind::Letter, Channel::Letter),
        ] {
            let i = interaction(RecordBody::Activity(Activity {
                kind,
                direction: Direction::Inbound,
                occurred_at: at(7),
                subject: "hello".into(),
            }));
            assert_eq!(i.channel, channel);
            assert_eq!(i.occurred_at, at(7));
        }
    }

    #[test]
    fn a_refund_is_a_negative_ledger_entry() {
        let d = derived(RecordBody::Refund(Refund {
            refunded_at: at(3),
            amount: eur(250),
            payment_id: String::new(),
            reason: "damaged".into(),
        }));
        let t = d.transaction.unwrap();
        assert_eq!(t.kind, TransactionKind::Refund);
        assert_eq!(t.amount, eur(-250));
        assert_eq!(t.occurred_at, at(3));
        assert_eq!(t.status, "refunded");
        assert_eq!(t.due_at, None);
    }

    #[test]
    fn an_order_is_a_ledger_entry_of_its_total() {
        let d = derived(order(
            OrderStatus::Placed,
            &[(3, 250), (1, 1_000), (2, 0)],
            Channel::Web,
        ));
        let t = d.transaction.unwrap();
        assert_eq!(t.kind, TransactionKind::Order);
        assert_eq!(t.amount, eur(1_750));
        assert_eq!(t.status, "placed");
        assert_eq!(t.occurred_at, at(5));
        let i = d.interaction.unwrap();
        assert_eq!(i.channel, Channel::Web);
        assert_eq!(i.touchpoint_key, "orders.checkout.web-checkout");

        let cancelled = derived(order(OrderStatus::Cancelled, &[(1, 5)], Channel::Store));
        assert_eq!(cancelled.transaction.unwrap().status, "cancelled");
    }

    #[test]
    fn order_totals_refuse_overflow_and_mixed_currencies() {
        let RecordBody::Order(mut o) = order(
            OrderStatus::Placed,
            &[(2, i64::MAX / 2), (1, 1)],
            Channel::Web,
        ) else {
            unreachable!()
        };
        assert_eq!(o.total(), Some(eur(i64::MAX)));
        o.lines[1].quantity = 2;
        assert_eq!(o.total(), None);
        o.lines[1].quantity = 1;
        o.lines[1].unit_price = Money::new(1, Currency::parse("USD").unwrap());
        assert_eq!(o.total(), None);
        o.lines.clear();
        assert_eq!(o.total(), None);
    }

    #[test]
    fn invoices_and_payments_are_ledger_entries_with_their_status() {
        let invoice = derived(RecordBody::Invoice(Invoice {
            issued_at: at(1),
            due_at: at(100),
            amount: eur(999),
            status: InvoiceStatus::Open,
        }));
        let t = invoice.transaction.unwrap();
        assert_eq!(
            (t.kind, t.amount, t.status.as_str(), t.due_at),
            (TransactionKind::Invoice, eur(999), "open", Some(at(100)))
        );
        assert_eq!(invoice.interaction.unwrap().channel, Channel::Email);

        let payment = derived(RecordBody::Payment(Payment {
            attempted_at: at(2),
            amount: eur(999),
            status: PaymentStatus::Failed,
            failure_reason: "card_declined".into(),
            invoice_id: "inv-1".into(),
        }));
        let t = payment.transaction.unwrap();
        assert_eq!(
            (t.kind, t.status.as_str(), t.occurred_at),
            (TransactionKind::Payment, "failed", at(2))
        );
    }

    #[test]
    fn other_types_have_no_ledger_entry() {
        for (body, _) in every_outcome() {
            let has_entry = matches!(
                body,
                RecordBody::Order(_)
                    | RecordBody::Invoice(_)
                    | RecordBody::Payment(_)
                    | RecordBody::Refund(_)
            );
            assert_eq!(derived(body).transaction.is_some(), has_entry);
        }
    }

    #[test]
    fn the_touchpoint_follows_the_configured_map() {
        let map = TouchpointMap::with_overrides(
            BTreeMap::from([
                ("support_case.chat".to_owned(), "chat.assistant".to_owned()),
                ("activity".to_owned(), "branch".to_owned()),
            ]),
            "touchpoints",
        )
        .unwrap();
        let chat = derive(&record(case(CaseStatus::Open, None, Channel::Chat)), &map);
        assert_eq!(chat.interaction.unwrap().touchpoint_key, "chat.assistant");
        // Another channel still falls back on its default.
        let phone = derive(&record(case(CaseStatus::Open, None, Channel::Phone)), &map);
        assert_eq!(
            phone.interaction.unwrap().touchpoint_key,
            "contact-centre.service-line"
        );
    }

    #[test]
    fn bodies_serialise_under_their_record_type() {
        for (body, _) in every_outcome() {
            let json = serde_json::to_value(&body).unwrap();
            let tag = json.as_object().unwrap().keys().next().unwrap().clone();
            assert_eq!(tag, body.record_type().as_str());
            let back: RecordBody = serde_json::from_value(json).unwrap();
            assert_eq!(back, body);
        }
    }
}
