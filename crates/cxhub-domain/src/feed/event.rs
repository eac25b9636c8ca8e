//! Transaction events: what a feed record says happened to an order, a payment, a support case
//! or a subscription, recorded by the store in the transaction that ingests the record (at most
//! once per record and kind) and read in order by the loyalty rule follower and the points
//! accrual.
//!
//! | record | event | facts |
//! | --- | --- | --- |
//! | shipment, status delivered | `order.delivered` (the order's record id) | `event.delay_days`, `event.company_at_fault` |
//! | payment, status failed | `payment.failed` | `event.company_at_fault` |
//! | payment, status succeeded | `payment.succeeded` (its amount) | — |
//! | refund | `refund.issued` (the payment's record id, the amount) | — |
//! | support case, status resolved | `case.resolved` | `event.case_resolved` (true) |
//! | support case, status closed (unresolved) | `case.closed` | `event.case_resolved` (false) |
//! | subscription event, downgraded | `subscription.downgraded` | — |
//! | subscription event, cancelled | `subscription.cancelled` | — |
//!
//! A case is resolved or closed once per kind: a case that is reopened and ends the same way
//! again adds no second event, one that ends the other way does (it is another outcome).
//!
//! An event carries no personal data: the record's key, the related record id, amounts, times
//! and the derived facts. Its customer is found at read time through the record, so the events
//! of an erased customer (whose records are deleted) lead to no one.

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

use super::body::{CaseStatus, PaymentStatus, RecordBody, ShipmentStatus, SubscriptionEventKind};
use crate::loyalty::condition::Facts;
use crate::loyalty::rule::Trigger;
use crate::money::Money;
use crate::text_enum::text_enum;

text_enum!(
    /// What happened to a transaction.
    RecordEventKind {
        /// A shipment of an order was delivered.
        OrderDelivered = "order.delivered",
        /// A payment failed.
        PaymentFailed = "payment.failed",
        /// A payment went through: the money was received.
        PaymentSucceeded = "payment.succeeded",
        /// Money was given back on a payment.
        RefundIssued = "refund.issued",
        /// A support case was resolved (solved to the customer's satisfaction).
        CaseResolved = "case.resolved",
        /// A support case was closed without resolution (duplicate, abandoned, refused).
        CaseClosed = "case.closed",
        /// A subscription moved to a cheaper plan.
        SubscriptionDowngraded = "subscription.downgraded",
        /// A subscription was cancelled.
        SubscriptionCancelled = "subscription.cancelled",
    }
);

impl RecordEventKind {
    /// The rule trigger the event fires, if any.
    pub fn trigger(self) -> Option<Trigger> {
        match self {
            RecordEventKind::OrderDelivered => Some(Trigger::OrderDelivered),
            RecordEventKind::PaymentFailed => Some(Trigger::PaymentFailed),
            RecordEventKind::CaseResolved | RecordEventKind::CaseClosed => {
                Some(Trigger::CaseClosed)
            }
            RecordEventKind::SubscriptionDowngraded => Some(Trigger::SubscriptionDowngraded),
            RecordEventKind::SubscriptionCancelled => Some(Trigger::SubscriptionCancelled),
            RecordEventKind::PaymentSucceeded | RecordEventKind::RefundIssued => None,
        }
    }

    /// For a support case's end, whether it was resolved (`event.case_resolved`).
    pub fn case_resolved(self) -> Option<bool> {
        match self {
            RecordEventKind::CaseResolved => Some(true),
            RecordEventKind::CaseClosed => Some(false),
            _ => None,
        }
    }
}

/// One event of a record (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordEvent {
    /// What happened.
    pub kind: RecordEventKind,
    /// When (delivered, attempted, refunded, closed, changed).
    pub occurred_at: DateTime<Utc>,
    /// The record it is about, in the same source: the order of a delivery, the payment of a
    /// refund.
    pub related_record_id: Option<String>,
    /// The money moved: a succeeded payment's amount, a refund's amount (positive).
    pub amount: Option<Money>,
    /// How many whole days after the promised time a delivery arrived (0 when on time);
    /// `None` when no delivery time was promised.
    pub delay_days: Option<i64>,
    /// Whether the company caused it: a delivery later than promised, a payment that failed
    /// for a reason on the company's side ([`payment_failure_is_company_fault`]).
    pub company_at_fault: Option<bool>,
}

impl RecordEvent {
    /// Sets the `event.*` facts a rule condition reads in `facts`: `event.type` always,
    /// `event.delay_days`, `event.company_at_fault` and `event.case_resolved` when known.
    pub fn add_facts(&self, facts: &mut Facts) {
        facts.set("event.type", self.kind.as_str());
        if let Some(resolved) = self.kind.case_resolved() {
            facts.set("event.case_resolved", resolved);
        }
        if let Some(days) = self.delay_days {
            #[allow(clippy::cast_precision_loss)]
            facts.set("event.delay_days", days as f64);
        }
        if let Some(fault) = self.company_at_fault {
            facts.set("event.company_at_fault", fault);
        }
    }
}

/// The event a record body makes, if any (see the module docs).
pub fn event_of(body: &RecordBody) -> Option<RecordEvent> {
    match body {
        RecordBody::Shipment(s) if s.status == ShipmentStatus::Delivered => {
            let delivered = s.delivered_at?;
            let delay_days = s
                .promised_at
                .map(|promised| (delivered - promised).num_days().max(0));
            Some(RecordEvent {
                kind: RecordEventKind::OrderDelivered,
                occurred_at: delivered,
                related_record_id: Some(s.order_id.clone()),
                amount: None,
                delay_days,
                company_at_fault: Some(s.promised_at.is_some_and(|p| delivered > p)),
            })
        }
        RecordBody::Payment(p) => Some(match p.status {
            PaymentStatus::Failed => RecordEvent {
                kind: RecordEventKind::PaymentFailed,
                occurred_at: p.attempted_at,
                related_record_id: None,
                amount: None,
                delay_days: None,
                company_at_fault: Some(payment_failure_is_company_fault(&p.failure_reason)),
            },
            PaymentStatus::Succeeded => RecordEvent {
                kind: RecordEventKind::PaymentSucceeded,
                occurred_at: p.attempted_at,
                related_record_id: None,
                amount: Some(p.amount),
                delay_days: None,
                company_at_fault: None,
            },
        }),
        RecordBody::Refund(r) => Some(RecordEvent {
            kind: RecordEventKind::RefundIssued,
            occurred_at: r.refunded_at,
            related_record_id: (!r.payment_id.is_empty()).then(|| r.payment_id.clone()),
            amount: Some(r.amount),
            delay_days: None,
            company_at_fault: None,
        }),
        RecordBody::SupportCase(c) => {
            let kind = match c.status {
                CaseStatus::Resolved => RecordEventKind::CaseResolved,
                CaseStatus::Closed => RecordEventKind::CaseClosed,
                CaseStatus::Open | CaseStatus::Pending => return None,
            };
            Some(RecordEvent {
                kind,
                occurred_at: c.closed_at?,
                related_record_id: None,
                amount: None,
                delay_days: None,
                company_at_fault: None,
            })
        }
        RecordBody::SubscriptionEvent(s) => {
            let kind = match s.kind {
                SubscriptionEventKind::Downgraded => RecordEventKind::SubscriptionDowngraded,
                SubscriptionEventKind::Cancelled => RecordEventKind::SubscriptionCancelled,
                SubscriptionEventKind::Started
                | SubscriptionEventKind::Renewed
                | SubscriptionEventKind::Upgraded
                | SubscriptionEventKind::Paused => return None,
            };
            Some(RecordEvent {
                kind,
                occurred_at: s.occurred_at,
                related_record_id: None,
                amount: None,
                delay_days: None,
                company_at_fault: None,
            })
        }
        _ => None,
    }
}

/// Failure reasons on the company's side (its processor, gateway or systems), compared after
/// [`normalise_reason`]. Any other reason, the customer's bank declining included, is not the
/// company's fault: a goodwill gesture is only owed when the company is known to be at fault.
pub const COMPANY_FAULT_REASONS: [&str; 14] = [
    "processing_error",
    "processor_error",
    "processor_unavailable",
    "gateway_error",
    "gateway_timeout",
    "timeout",
    "technical_error",
    "system_error",
    "internal_error",
    "service_unavailable",
    "network_error",
    "configuration_error",
    "duplicate_transaction",
    "merchant_error",
];

/// A failure reason in lowercase with spaces and `-` as `_`.
pub fn normalise_reason(reason: &str) -> String {
    reason
        .trim()
        .chars()
        .map(|c| match c {
            ' ' | '-' => '_',
            c => c.to_ascii_lowercase(),
        })
        .collect()
}

/// Whether a payment that failed with `reason` failed through the company's fault (its reason
/// is one of [`COMPANY_FAULT_REASONS`]).
pub fn payment_failure_is_company_fault(reason: &str) -> bool {
    COMPANY_FAULT_REASONS.contains(&normalise_reason(reason).as_str())
}

/// Longest transaction id of an `EarnPoints` (its request id `earn:<id>` stays within the 128
/// characters of a request id).
pub const MAX_TRANSACTION_ID_LEN: usize = 123;

/// The transaction id under which an ingested payment earns points: `<source>:<record_id>`
/// (what a caller of `EarnPoints` passes as `transaction_id` for the same payment, so that the
/// two never both count), or, when that is longer than [`MAX_TRANSACTION_ID_LEN`] or holds
/// characters other than printable ASCII, `<source>:sha256:<hex of the record id>` cut to
/// that length.
pub fn ingested_transaction_id(source: &str, record_id: &str) -> String {
    let plain = format!("{source}:{record_id}");
    if plain.len() <= MAX_TRANSACTION_ID_LEN && plain.bytes().all(|b| b.is_ascii_graphic()) {
        return plain;
    }
    let hex: String = Sha256::digest(record_id.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let mut id = format!("{source}:sha256:{hex}");
    id.truncate(MAX_TRANSACTION_ID_LEN);
    id
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use chrono::TimeZone;

    use super::*;
    use crate::feed::body::{
        CasePriority, Payment, Refund, Shipment, SubscriptionEvent, SupportCase,
    };
    use crate::loyalty::condition::Value;
    use crate::money::Currency;
    use crate::touchpoint::Channel;

    fn at(day: u32, hour: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, day, hour, 0, 0).unwrap()
    }

    fn eur(minor: i64) -> Money {
        Money::new(minor, Currency::parse("EUR").unwrap())
    }

    fn shipment(status: ShipmentStatus, promised: Option<u32>, delivered: Option<u32>) -> Shipment {
        Shipment {
            order_id: "o-1".into(),
            shipped_at: at(1, 8),
            promised_at: promised.map(|d| at(d, 12)),
            delivered_at: delivered.map(|d| at(d, 18)),
            status,
        }
    }

    #[test]
    fn only_a_delivered_shipment_is_a_delivery() {
        let late = event_of(&RecordBody::Shipment(shipment(
            ShipmentStatus::Delivered,
            Some(2),
            Some(5),
        )))
        .unwrap();
        assert_eq!(late.kind, RecordEventKind::OrderDelivered);
        assert_eq!(late.related_record_id.as_deref(), Some("o-1"));
        assert_eq!(late.occurred_at, at(5, 18));
        // 3 days and 6 hours late: 3 whole days.
        assert_eq!(late.delay_days, Some(3));
        assert_eq!(late.company_at_fault, Some(true));

        let early = event_of(&RecordBody::Shipment(shipment(
            ShipmentStatus::Delivered,
            Some(5),
            Some(2),
        )))
        .unwrap();
        assert_eq!(
            (early.delay_days, early.company_at_fault),
            (Some(0), Some(false))
        );
        let unpromised = event_of(&RecordBody::Shipment(shipment(
            ShipmentStatus::Delivered,
            None,
            Some(2),
        )))
        .unwrap();
        assert_eq!(
            (unpromised.delay_days, unpromised.company_at_fault),
            (None, Some(false))
        );
        for status in [ShipmentStatus::InTransit, ShipmentStatus::Failed] {
            assert_eq!(
                event_of(&RecordBody::Shipment(shipment(status, Some(2), None))),
                None
            );
        }
    }

    fn payment(status: PaymentStatus, reason: &str) -> RecordBody {
        RecordBody::Payment(Payment {
            attempted_at: at(3, 10),
            amount: eur(42_50),
            status,
            failure_reason: reason.into(),
            invoice_id: String::new(),
        })
    }

    #[test]
    fn payments_fail_by_the_company_only_for_reasons_on_its_side() {
        let ours = event_of(&payment(PaymentStatus::Failed, "Gateway Timeout")).unwrap();
        assert_eq!(ours.kind, RecordEventKind::PaymentFailed);
        assert_eq!(ours.company_at_fault, Some(true));
        assert_eq!(ours.amount, None);
        for theirs in ["card_declined", "insufficient_funds", "something else", ""] {
            let e = event_of(&payment(PaymentStatus::Failed, theirs)).unwrap();
            assert_eq!(e.company_at_fault, Some(false), "{theirs}");
        }
        let paid = event_of(&payment(PaymentStatus::Succeeded, "")).unwrap();
        assert_eq!(paid.kind, RecordEventKind::PaymentSucceeded);
        assert_eq!(paid.amount, Some(eur(42_50)));
        assert_eq!(paid.company_at_fault, None);
    }

    #[test]
    fn a_refund_names_its_payment() {
        let refund = |payment_id: &str| {
            RecordBody::Refund(Refund {
                refunded_at: at(4, 9),
                amount: eur(10_00),
                payment_id: payment_id.into(),
                reason: "damaged".into(),
            })
        };
        let e = event_of(&refund("p-1")).unwrap();
        assert_eq!(e.kind, RecordEventKind::RefundIssued);
        assert_eq!(e.related_record_id.as_deref(), Some("p-1"));
        assert_eq!(e.amount, Some(eur(10_00)));
        assert_eq!(event_of(&refund("")).unwrap().related_record_id, None);
    }

    #[test]
    fn deliveries_failed_payments_case_ends_and_lost_subscriptions_trigger_rules() {
        assert_eq!(
            RecordEventKind::OrderDelivered.trigger(),
            Some(Trigger::OrderDelivered)
        );
        assert_eq!(
            RecordEventKind::PaymentFailed.trigger(),
            Some(Trigger::PaymentFailed)
        );
        assert_eq!(RecordEventKind::PaymentSucceeded.trigger(), None);
        assert_eq!(RecordEventKind::RefundIssued.trigger(), None);
        for kind in [RecordEventKind::CaseResolved, RecordEventKind::CaseClosed] {
            assert_eq!(kind.trigger(), Some(Trigger::CaseClosed));
        }
        assert_eq!(
            RecordEventKind::SubscriptionDowngraded.trigger(),
            Some(Trigger::SubscriptionDowngraded)
        );
        assert_eq!(
            RecordEventKind::SubscriptionCancelled.trigger(),
            Some(Trigger::SubscriptionCancelled)
        );
    }

    fn case(status: CaseStatus, closed: Option<u32>) -> RecordBody {
        RecordBody::SupportCase(SupportCase {
            opened_at: at(1, 9),
            closed_at: closed.map(|d| at(d, 17)),
            status,
            priority: CasePriority::Normal,
            category: "billing".into(),
            channel: Channel::Email,
        })
    }

    #[test]
    fn a_case_ends_resolved_or_closed_once_it_has_a_close_time() {
        let resolved = event_of(&case(CaseStatus::Resolved, Some(3))).unwrap();
        assert_eq!(resolved.kind, RecordEventKind::CaseResolved);
        assert_eq!(resolved.occurred_at, at(3, 17));
        assert_eq!(
            (resolved.related_record_id.as_deref(), resolved.amount),
            (None, None)
        );
        let closed = event_of(&case(CaseStatus::Closed, Some(4))).unwrap();
        assert_eq!(closed.kind, RecordEventKind::CaseClosed);
        assert_eq!(closed.occurred_at, at(4, 17));
        for status in [CaseStatus::Open, CaseStatus::Pending] {
            assert_eq!(event_of(&case(status, None)), None);
        }
        // An inconsistent record (over without a close time) makes no event.
        assert_eq!(event_of(&case(CaseStatus::Resolved, None)), None);

        let mut facts = Facts::new();
        resolved.add_facts(&mut facts);
        assert_eq!(
            facts.get("event.type"),
            Some(&Value::Text("case.resolved".into()))
        );
        assert_eq!(facts.get("event.case_resolved"), Some(&Value::Bool(true)));
        let mut facts = Facts::new();
        closed.add_facts(&mut facts);
        assert_eq!(facts.get("event.case_resolved"), Some(&Value::Bool(false)));
        let unresolved = crate::loyalty::condition::compile_all(
            "!event.case_resolved",
            &crate::loyalty::condition::FactSchema::customer(),
        )
        .unwrap();
        assert!(unresolved.evaluate(&facts).matched);
        // Other events carry no `event.case_resolved`.
        let mut paid = Facts::new();
        event_of(&payment(PaymentStatus::Succeeded, ""))
            .unwrap()
            .add_facts(&mut paid);
        assert_eq!(paid.get("event.case_resolved"), None);
    }

    fn subscription(kind: SubscriptionEventKind) -> RecordBody {
        RecordBody::SubscriptionEvent(SubscriptionEvent {
            subscription_id: "sub-1".into(),
            kind,
            occurred_at: at(6, 11),
            plan: "basic".into(),
            recurring_amount: Some(eur(9_00)),
        })
    }

    #[test]
    fn only_downgrades_and_cancellations_of_subscriptions_are_events() {
        let down = event_of(&subscription(SubscriptionEventKind::Downgraded)).unwrap();
        assert_eq!(down.kind, RecordEventKind::SubscriptionDowngraded);
        assert_eq!(down.occurred_at, at(6, 11));
        assert_eq!(
            (down.amount, down.related_record_id.as_deref()),
            (None, None)
        );
        let cancelled = event_of(&subscription(SubscriptionEventKind::Cancelled)).unwrap();
        assert_eq!(cancelled.kind, RecordEventKind::SubscriptionCancelled);
        for kind in [
            SubscriptionEventKind::Started,
            SubscriptionEventKind::Renewed,
            SubscriptionEventKind::Upgraded,
            SubscriptionEventKind::Paused,
        ] {
            assert_eq!(event_of(&subscription(kind)), None, "{kind:?}");
        }
        let mut facts = Facts::new();
        down.add_facts(&mut facts);
        assert_eq!(
            facts.get("event.type"),
            Some(&Value::Text("subscription.downgraded".into()))
        );
        assert_eq!(facts.get("event.case_resolved"), None);
    }

    #[test]
    fn facts_are_what_rule_conditions_read() {
        let late = event_of(&RecordBody::Shipment(shipment(
            ShipmentStatus::Delivered,
            Some(2),
            Some(5),
        )))
        .unwrap();
        let mut facts = Facts::new();
        late.add_facts(&mut facts);
        assert_eq!(
            facts.get("event.type"),
            Some(&Value::Text("order.delivered".into()))
        );
        assert_eq!(facts.get("event.delay_days"), Some(&Value::Number(3.0)));
        assert_eq!(
            facts.get("event.company_at_fault"),
            Some(&Value::Bool(true))
        );
        let apology = crate::loyalty::condition::compile_all(
            "event.delay_days >= 2 && event.company_at_fault",
            &crate::loyalty::condition::FactSchema::customer(),
        )
        .unwrap();
        assert!(apology.evaluate(&facts).matched);
        let mut paid = Facts::new();
        event_of(&payment(PaymentStatus::Succeeded, ""))
            .unwrap()
            .add_facts(&mut paid);
        assert_eq!(paid.get("event.delay_days"), None);
        assert!(!apology.evaluate(&paid).matched);
    }

    #[test]
    fn ingested_transaction_ids_fit_earn_points() {
        assert_eq!(ingested_transaction_id("billing", "p-1"), "billing:p-1");
        let spaced = ingested_transaction_id("billing", "p 1");
        assert!(spaced.starts_with("billing:sha256:"), "{spaced}");
        let long = ingested_transaction_id("billing", &"x".repeat(200));
        assert!(long.len() <= MAX_TRANSACTION_ID_LEN, "{long}");
        let source = "s".repeat(64);
        assert_eq!(
            ingested_transaction_id(&source, "p 1").len(),
            MAX_TRANSACTION_ID_LEN
        );
        assert!(long.bytes().all(|b| b.is_ascii_graphic()));
        assert_ne!(long, ingested_transaction_id("billing", &"x".repeat(201)));
    }
}
