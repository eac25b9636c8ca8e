//! Reads of the unified customer beyond one id: several at once, by identifier, by prefix
//! search, the 360° view an employee at a touchpoint needs, and the customer's interactions and
//! transactions page by page. Every read follows merge redirects.
//!
//! The rules here are pure: the search key names are folded to ([`search_key`]), the prefix
//! ranges searches scan ([`prefix_upper_bound`]), the transaction summary
//! ([`TransactionSummary::from_groups`]) and the state of subscriptions
//! ([`active_subscriptions`]). [`CustomerQueryRepo`] is what the store implements.

use std::collections::{BTreeMap, BTreeSet};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use unicode_normalization::UnicodeNormalization;
use unicode_normalization::char::is_combining_mark;

use crate::error::Result;
use crate::feed::{
    CasePriority, CaseStatus, LifecycleStage, SubscriptionEventKind, TransactionKind,
};
use crate::identifier::{CustomerId, Identifier};
use crate::money::{Currency, Money};
use crate::page::{Page, PageRequest};
use crate::repo::CustomerView;
use crate::scoring::CustomerScores;
use crate::scoring::churn::ChurnBand;
use crate::scoring::metrics::CustomerCategory;
use crate::touchpoint::Channel;

/// Most ids in one `BatchGetCustomers`.
pub const MAX_BATCH_GET: usize = 100;
/// Interactions in a 360° view when the caller asks for none.
pub const DEFAULT_RECENT_INTERACTIONS: u32 = 20;
/// Most interactions in a 360° view.
pub const MAX_RECENT_INTERACTIONS: u32 = 100;
/// How far back failed payments count in a 360° view.
pub const FAILED_PAYMENT_WINDOW_DAYS: i64 = 90;
/// Longest search prefix, in characters.
pub const MAX_PREFIX: usize = 100;

// ------------------------------------------------------------------------------------------------
// Search keys

/// The form names are searched in: compatibility-decomposed (NFKD), without combining marks
/// (accents), lowercase, with every run of whitespace, `-`, `'`, `.` or `,` as one space,
/// trimmed. `  Zoë  Ángel-Díaz ` becomes `zoe angel diaz`.
pub fn search_key(text: &str) -> String {
    let folded: String = text
        .nfkd()
        .filter(|c| !is_combining_mark(*c))
        .flat_map(char::to_lowercase)
        .collect();
    let mut out = String::with_capacity(folded.len());
    for word in folded.split(|c: char| c.is_whitespace() || matches!(c, '-' | '\'' | '.' | ',')) {
        if word.is_empty() {
            continue;
        }
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(word);
    }
    out
}

/// The keys a customer is found under by a name prefix: the folded given name, the folded
/// family name, the full name (`given family`) and each word of the two names, so `mar`,
/// `garcia`, `jose` and `maria jose g` all find Maria José García.
pub fn name_keys(given_name: &str, family_name: &str) -> BTreeSet<String> {
    let given = search_key(given_name);
    let family = search_key(family_name);
    let mut keys = BTreeSet::new();
    for name in [&given, &family] {
        if !name.is_empty() {
            keys.insert(name.clone());
            keys.extend(name.split(' ').map(str::to_owned));
        }
    }
    if !given.is_empty() && !family.is_empty() {
        keys.insert(format!("{given} {family}"));
    }
    keys
}

/// The smallest string greater than every string starting with `prefix` (in code point order,
/// which is byte order in UTF-8), so that `prefix <= s < bound` is exactly "s starts with
/// prefix" and an index scans just that range. `None` when there is no such bound (the prefix
/// is empty or all U+10FFFF).
pub fn prefix_upper_bound(prefix: &str) -> Option<String> {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(last) = chars.pop() {
        let next = match u32::from(last) {
            0xD7FF => Some('\u{E000}'),
            n => char::from_u32(n + 1),
        };
        if let Some(next) = next {
            chars.push(next);
            return Some(chars.into_iter().collect());
        }
    }
    None
}

// ------------------------------------------------------------------------------------------------
// Search

/// What a search matches on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SearchBy {
    /// A prefix of a name key (already folded with [`search_key`]).
    Name(String),
    /// A prefix of a normalised e-mail address.
    Email(String),
    /// A prefix of an E.164 phone number (`+` and digits).
    Phone(String),
    /// Nothing: the lifecycle stage alone filters.
    Any,
}

/// A customer search: a prefix and/or a lifecycle stage, category or churn band.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SearchFilter {
    /// What the prefix applies to.
    pub by: SearchBy,
    /// Only customers at this stage.
    pub lifecycle_stage: Option<LifecycleStage>,
    /// Only customers whose latest scores put them in this category (unscored customers never
    /// match). Left out of the serialised filter when unset, so page tokens issued before
    /// score filters existed stay valid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<CustomerCategory>,
    /// Only customers whose latest scores put them in this churn band.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub churn_band: Option<ChurnBand>,
}

/// One search hit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustomerSummary {
    /// The (live) customer.
    pub id: CustomerId,
    /// Given name(s).
    pub given_name: String,
    /// Family name(s).
    pub family_name: String,
    /// Lifecycle stage.
    pub lifecycle_stage: Option<LifecycleStage>,
    /// What matched: the name key, e-mail address or phone number (empty for a stage-only
    /// search).
    pub matched: String,
    /// When the profile last changed.
    pub updated_at: DateTime<Utc>,
}

// ------------------------------------------------------------------------------------------------
// Lookup

/// The customers holding one identifier.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LookupResult {
    /// The identifier, normalised.
    pub identifier: Identifier,
    /// Every live customer holding it, by id.
    pub customers: Vec<CustomerView>,
    /// Whether it links records to one customer: false when several customers hold it
    /// (overshared) or a split disputed it.
    pub linking: bool,
}

// ------------------------------------------------------------------------------------------------
// Interactions and transactions

/// A half-open time range `[from, to)`; either end may be open.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimeRange {
    /// Inclusive start.
    pub from: Option<DateTime<Utc>>,
    /// Exclusive end.
    pub to: Option<DateTime<Utc>>,
}

/// Which stored record a row came from.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct RowKey {
    /// Source system.
    pub source: String,
    /// Record type (`order`, `support_case`, … or `interaction` for reported ones).
    pub record_type: String,
    /// Record id in the source.
    pub record_id: String,
}

/// The position of a row in a newest-first listing, as a page token carries it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimeCursor {
    /// The row's time.
    pub at: DateTime<Utc>,
    /// The row's key (breaks ties between rows of the same time).
    pub key: RowKey,
}

/// One interaction of a customer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InteractionView {
    /// The record it came from.
    pub key: RowKey,
    /// The touchpoint's key.
    pub touchpoint_key: String,
    /// The channel.
    pub channel: Channel,
    /// When it happened.
    pub occurred_at: DateTime<Utc>,
    /// What came of it (UPPER_SNAKE_CASE).
    pub outcome: String,
}

/// One entry of a customer's transactions ledger.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransactionView {
    /// The record it came from.
    pub key: RowKey,
    /// What kind.
    pub kind: TransactionKind,
    /// The amount (negative for refunds).
    pub amount: Money,
    /// When.
    pub occurred_at: DateTime<Utc>,
    /// The record's status (`placed`, `open`, `failed`, …).
    pub status: String,
    /// When an invoice is due.
    pub due_at: Option<DateTime<Utc>>,
}

// ------------------------------------------------------------------------------------------------
// 360

/// The ledger entries of one (kind, status, currency), aggregated by the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransactionGroup {
    /// Kind.
    pub kind: TransactionKind,
    /// Status text.
    pub status: String,
    /// Currency.
    pub currency: Currency,
    /// How many entries.
    pub count: i64,
    /// Sum of their amounts.
    pub total_minor: i64,
    /// How many are due before now (invoices).
    pub overdue_count: i64,
    /// Sum of the amounts due before now.
    pub overdue_minor: i64,
    /// How many happened in the failed-payment window.
    pub recent_count: i64,
}

/// Money owed on invoices: how many and how much per currency.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InvoiceTotals {
    /// How many invoices.
    pub count: i64,
    /// Their amounts, per currency, by currency code.
    pub amounts: Vec<Money>,
}

/// What a customer bought and owes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransactionSummary {
    /// Placed orders less refunds, per currency, by currency code.
    pub lifetime_revenue: Vec<Money>,
    /// Placed orders (cancelled ones do not count).
    pub order_count: i64,
    /// When the last placed order was placed.
    pub last_purchase_at: Option<DateTime<Utc>>,
    /// Open invoices.
    pub open_invoices: InvoiceTotals,
    /// Open invoices past their due date.
    pub overdue_invoices: InvoiceTotals,
    /// Failed payment attempts in the last [`FAILED_PAYMENT_WINDOW_DAYS`] days.
    pub failed_payments_recent: i64,
}

impl TransactionSummary {
    /// The summary of the aggregated ledger (see [`TransactionGroup`]) and the time of the last
    /// placed order.
    pub fn from_groups(
        groups: &[TransactionGroup],
        last_purchase_at: Option<DateTime<Utc>>,
    ) -> Self {
        let mut revenue: BTreeMap<Currency, i64> = BTreeMap::new();
        let mut open: BTreeMap<Currency, i64> = BTreeMap::new();
        let mut overdue: BTreeMap<Currency, i64> = BTreeMap::new();
        let mut summary = TransactionSummary {
            last_purchase_at,
            ..TransactionSummary::default()
        };
        for g in groups {
            match (g.kind, g.status.as_str()) {
                (TransactionKind::Order, "placed") => {
                    summary.order_count += g.count;
                    add(&mut revenue, g.currency, g.total_minor);
                }
                (TransactionKind::Refund, _) => add(&mut revenue, g.currency, g.total_minor),
                (TransactionKind::Invoice, "open") => {
                    summary.open_invoices.count += g.count;
                    add(&mut open, g.currency, g.total_minor);
                    if g.overdue_count > 0 {
                        summary.overdue_invoices.count += g.overdue_count;
                        add(&mut overdue, g.currency, g.overdue_minor);
                    }
                }
                (TransactionKind::Payment, "failed") => {
                    summary.failed_payments_recent += g.recent_count;
                }
                _ => {}
            }
        }
        let money = |totals: BTreeMap<Currency, i64>| {
            let mut list: Vec<Money> = totals
                .into_iter()
                .map(|(currency, amount)| Money::new(amount, currency))
                .collect();
            list.sort_by(|a, b| a.currency.code().cmp(b.currency.code()));
            list
        };
        summary.lifetime_revenue = money(revenue);
        summary.open_invoices.amounts = money(open);
        summary.overdue_invoices.amounts = money(overdue);
        summary
    }
}

fn add(totals: &mut BTreeMap<Currency, i64>, currency: Currency, amount: i64) {
    let total = totals.entry(currency).or_default();
    *total = total.saturating_add(amount);
}

/// A support case as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SupportCaseView {
    /// Source system.
    pub source: String,
    /// The case's record id.
    pub record_id: String,
    /// Where it stands.
    pub status: CaseStatus,
    /// How urgent.
    pub priority: CasePriority,
    /// The source's category.
    pub category: String,
    /// The channel it was opened through.
    pub channel: Channel,
    /// When it was opened.
    pub opened_at: DateTime<Utc>,
}

/// One stored subscription event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubscriptionEventRow {
    /// Source system.
    pub source: String,
    /// The event's record id.
    pub record_id: String,
    /// The subscription's id in the source.
    pub subscription_id: String,
    /// What happened.
    pub kind: SubscriptionEventKind,
    /// When.
    pub occurred_at: DateTime<Utc>,
    /// The plan after the event.
    pub plan: String,
    /// The recurring amount after the event.
    pub recurring_amount: Option<Money>,
}

/// A subscription in force.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubscriptionView {
    /// Source system.
    pub source: String,
    /// The subscription's id in the source.
    pub subscription_id: String,
    /// The plan now (from the latest event that named one).
    pub plan: String,
    /// The recurring amount now (from the latest event that gave one).
    pub recurring_amount: Option<Money>,
    /// The first event the hub holds for it.
    pub since: DateTime<Utc>,
    /// The latest event.
    pub last_event: SubscriptionEventKind,
    /// When the latest event happened.
    pub last_event_at: DateTime<Utc>,
}

/// The subscriptions whose latest event (by time, then record id) leaves them in force: not
/// paused, not cancelled. Ordered by source then subscription id.
pub fn active_subscriptions(events: &[SubscriptionEventRow]) -> Vec<SubscriptionView> {
    let mut by_subscription: BTreeMap<(&str, &str), Vec<&SubscriptionEventRow>> = BTreeMap::new();
    for e in events {
        by_subscription
            .entry((e.source.as_str(), e.subscription_id.as_str()))
            .or_default()
            .push(e);
    }
    let mut out = Vec::new();
    for ((source, subscription_id), mut list) in by_subscription {
        list.sort_by(|a, b| (a.occurred_at, &a.record_id).cmp(&(b.occurred_at, &b.record_id)));
        let (Some(first), Some(last)) = (list.first(), list.last()) else {
            continue;
        };
        if matches!(
            last.kind,
            SubscriptionEventKind::Paused | SubscriptionEventKind::Cancelled
        ) {
            continue;
        }
        out.push(SubscriptionView {
            source: source.to_owned(),
            subscription_id: subscription_id.to_owned(),
            plan: list
                .iter()
                .rev()
                .find(|e| !e.plan.is_empty())
                .map(|e| e.plan.clone())
                .unwrap_or_default(),
            recurring_amount: list.iter().rev().find_map(|e| e.recurring_amount),
            since: first.occurred_at,
            last_event: last.kind,
            last_event_at: last.occurred_at,
        });
    }
    out
}

/// The ids a customer has in one source and the records that source sent about it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceIdentities {
    /// The source system.
    pub source: String,
    /// The customer's ids in it, ascending.
    pub source_customer_ids: Vec<String>,
    /// How many records of that source the customer holds.
    pub record_count: i64,
}

/// Groups the source ids a customer holds and the record counts per (source, source customer
/// id) by source, ascending.
pub fn group_by_source(
    identifiers: &[crate::repo::HeldIdentifier],
    record_counts: &[(String, String, i64)],
) -> Vec<SourceIdentities> {
    let mut groups: BTreeMap<String, (BTreeSet<String>, i64)> = BTreeMap::new();
    for held in identifiers {
        if let Identifier::SourceId { source, id } = &held.identifier {
            groups
                .entry(source.clone())
                .or_default()
                .0
                .insert(id.clone());
        }
    }
    for (source, id, n) in record_counts {
        let group = groups.entry(source.clone()).or_default();
        group.0.insert(id.clone());
        group.1 += n;
    }
    groups
        .into_iter()
        .map(|(source, (ids, record_count))| SourceIdentities {
            source,
            source_customer_ids: ids.into_iter().collect(),
            record_count,
        })
        .collect()
}

/// Everything an employee at a touchpoint needs about one customer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Customer360 {
    /// The profile (with provenance and consents) and every identifier.
    pub customer: CustomerView,
    /// Source ids and record counts per source.
    pub sources: Vec<SourceIdentities>,
    /// The latest interactions, newest first.
    pub recent_interactions: Vec<InteractionView>,
    /// What the customer bought and owes.
    pub transactions: TransactionSummary,
    /// Cases open or pending, newest first.
    pub open_cases: Vec<SupportCaseView>,
    /// Subscriptions in force.
    pub active_subscriptions: Vec<SubscriptionView>,
    /// The latest scores, if the customer has been scored.
    pub scores: Option<CustomerScores>,
}

/// The reads of the profile service beyond `GetCustomer`, each in one read snapshot.
#[async_trait]
pub trait CustomerQueryRepo: Send + Sync {
    /// Reads each id (following redirects), in order; `None` for an unknown id.
    async fn batch_get_customers(&self, ids: &[CustomerId]) -> Result<Vec<Option<CustomerView>>>;

    /// The live customers holding `identifier`. `NotFound` (reason `CUSTOMER_NOT_FOUND`) when
    /// none does.
    async fn lookup_customers(&self, identifier: &Identifier) -> Result<LookupResult>;

    /// Live customers matching `filter`, in key order (name key, e-mail or phone, then id;
    /// by id for a stage-only search), each once, after `page.after`.
    async fn search_customers(
        &self,
        filter: &SearchFilter,
        page: &PageRequest,
    ) -> Result<Page<CustomerSummary>>;

    /// The 360° view of a customer (following redirects) as of `now`, with its `recent`
    /// latest interactions. `NotFound` for an unknown id.
    async fn customer_360(
        &self,
        id: CustomerId,
        recent: u32,
        now: DateTime<Utc>,
    ) -> Result<Customer360>;

    /// A customer's interactions in `range`, newest first, after `page.after` (an encoded
    /// [`TimeCursor`]); the live customer's id comes first. `NotFound` for an unknown id.
    async fn list_interactions(
        &self,
        id: CustomerId,
        range: &TimeRange,
        page: &PageRequest,
    ) -> Result<(CustomerId, Page<InteractionView>)>;

    /// A customer's ledger entries in `range`, newest first, as [`Self::list_interactions`].
    async fn list_transactions(
        &self,
        id: CustomerId,
        range: &TimeRange,
        page: &PageRequest,
    ) -> Result<(CustomerId, Page<TransactionView>)>;
}

/// Encodes a cursor for [`PageRequest::after`].
pub fn encode_cursor(cursor: &TimeCursor) -> String {
    serde_json::to_string(cursor).unwrap_or_default()
}

/// Decodes a cursor of [`encode_cursor`]; `InvalidArgument` on `page_token` if it is not one.
pub fn decode_cursor(after: &str) -> Result<TimeCursor> {
    serde_json::from_str(after).map_err(|_| {
        crate::Error::invalid_field("page_token", "not a token issued by this service")
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn at(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + s, 0).unwrap()
    }

    fn eur() -> Currency {
        Currency::parse("EUR").unwrap()
    }

    #[test]
    fn search_keys_fold_case_accents_and_separators() {
        assert_eq!(search_key("  Zoë  Ángel-Díaz "), "zoe angel diaz");
        assert_eq!(search_key("O'BRIEN"), "o brien");
        assert_eq!(
            search_key("Ｍüller"),
            "muller",
            "full-width letters fold too"
        );
        assert_eq!(
            search_key("ÅSA"),
            search_key("a\u{30A}sa"),
            "composed or not"
        );
        assert_eq!(search_key(" - "), "");
        let keys = name_keys("María José", "García");
        let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
        assert_eq!(
            keys,
            ["garcia", "jose", "maria", "maria jose", "maria jose garcia"]
        );
        assert!(name_keys("", "").is_empty());
    }

    #[test]
    fn prefix_bounds_cover_exactly_the_prefixed_strings() {
        assert_eq!(prefix_upper_bound("ab").as_deref(), Some("ac"));
        assert_eq!(prefix_upper_bound("+351").as_deref(), Some("+352"));
        assert_eq!(
            prefix_upper_bound("a\u{D7FF}").as_deref(),
            Some("a\u{E000}")
        );
        assert_eq!(prefix_upper_bound("a\u{10FFFF}").as_deref(), Some("b"));
        assert_eq!(prefix_upper_bound(""), None);
        assert_eq!(prefix_upper_bound("\u{10FFFF}"), None);
        let bound = prefix_upper_bound("mar").unwrap();
        for s in ["mar", "mara", "mar\u{10FFFF}zz", "marz"] {
            assert!(s >= "mar" && s < bound.as_str(), "{s}");
        }
        for s in ["maq", "mas", "ma"] {
            assert!(!(s >= "mar" && s < bound.as_str()), "{s}");
        }
    }

    fn group(kind: TransactionKind, status: &str, count: i64, total: i64) -> TransactionGroup {
        TransactionGroup {
            kind,
            status: status.into(),
            currency: eur(),
            count,
            total_minor: total,
            overdue_count: 0,
            overdue_minor: 0,
            recent_count: 0,
        }
    }

    #[test]
    fn the_summary_counts_placed_orders_less_refunds_and_what_is_owed() {
        let usd = Currency::parse("USD").unwrap();
        let groups = vec![
            group(TransactionKind::Order, "placed", 3, 30_00),
            group(TransactionKind::Order, "cancelled", 1, 99_00),
            TransactionGroup {
                currency: usd,
                ..group(TransactionKind::Order, "placed", 1, 5_00)
            },
            group(TransactionKind::Refund, "refunded", 1, -10_00),
            TransactionGroup {
                overdue_count: 1,
                overdue_minor: 20_00,
                ..group(TransactionKind::Invoice, "open", 2, 50_00)
            },
            group(TransactionKind::Invoice, "paid", 4, 40_000),
            TransactionGroup {
                recent_count: 2,
                ..group(TransactionKind::Payment, "failed", 3, 30_00)
            },
            TransactionGroup {
                recent_count: 5,
                ..group(TransactionKind::Payment, "succeeded", 5, 50_00)
            },
        ];
        let s = TransactionSummary::from_groups(&groups, Some(at(9)));
        assert_eq!(
            s.lifetime_revenue,
            [Money::new(20_00, eur()), Money::new(5_00, usd)]
        );
        assert_eq!(s.order_count, 4);
        assert_eq!(s.last_purchase_at, Some(at(9)));
        assert_eq!(s.open_invoices.count, 2);
        assert_eq!(s.open_invoices.amounts, [Money::new(50_00, eur())]);
        assert_eq!(s.overdue_invoices.count, 1);
        assert_eq!(s.overdue_invoices.amounts, [Money::new(20_00, eur())]);
        assert_eq!(s.failed_payments_recent, 2);
        assert_eq!(
            TransactionSummary::from_groups(&[], None),
            TransactionSummary::default()
        );
    }

    fn event(sub: &str, id: &str, kind: SubscriptionEventKind, t: i64) -> SubscriptionEventRow {
        SubscriptionEventRow {
            source: "billing".into(),
            record_id: id.into(),
            subscription_id: sub.into(),
            kind,
            occurred_at: at(t),
            plan: if kind == SubscriptionEventKind::Upgraded {
                "premium".into()
            } else {
                String::new()
            },
            recurring_amount: None,
        }
    }

    #[test]
    fn a_subscription_is_active_unless_its_latest_event_pauses_or_cancels_it() {
        use SubscriptionEventKind as K;
        let events = vec![
            event("s1", "e2", K::Upgraded, 20),
            event("s1", "e1", K::Started, 10),
            event("s2", "e3", K::Started, 10),
            event("s2", "e4", K::Cancelled, 30),
            event("s3", "e5", K::Started, 10),
            event("s3", "e6", K::Paused, 20),
            event("s3", "e7", K::Renewed, 40),
            event("s4", "e8", K::Started, 10),
            event("s4", "e9", K::Paused, 50),
        ];
        let active = active_subscriptions(&events);
        let ids: Vec<&str> = active.iter().map(|s| s.subscription_id.as_str()).collect();
        assert_eq!(ids, ["s1", "s3"]);
        assert_eq!(active[0].plan, "premium");
        assert_eq!(active[0].since, at(10));
        assert_eq!(active[0].last_event, K::Upgraded);
        assert_eq!(active[1].last_event_at, at(40));
    }

    #[test]
    fn cursors_round_trip_and_garbage_is_a_page_token_violation() {
        let cursor = TimeCursor {
            at: at(5),
            key: RowKey {
                source: "erp".into(),
                record_type: "order".into(),
                record_id: "o-1".into(),
            },
        };
        assert_eq!(decode_cursor(&encode_cursor(&cursor)).unwrap(), cursor);
        let err = decode_cursor("{}").unwrap_err();
        let fields: Vec<String> = Vec::from(err).into_iter().map(|v| v.field).collect();
        assert_eq!(fields, ["page_token"]);
    }
}
