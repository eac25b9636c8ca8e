//! The points ledger of the loyalty programme, in double entry.
//!
//! Every movement is an [`Entry`] between a customer's account and a counter account: the
//! programme ([`Account::Programme`], the counterpart of points issued, redeemed, reversed or
//! adjusted) or breakage ([`Account::Breakage`], the counterpart of points that expired). Each
//! entry has two legs that sum to zero, so the sum over all accounts is always zero, and a
//! customer's balance is the sum of their legs, never negative.
//!
//! Points are held in *lots*, one per accrual (or positive adjustment), each with its expiry.
//! Anything that takes points away consumes lots oldest first (FIFO by the time they were
//! earned); expiry takes exactly the lots that have expired; a reversal on refund takes from the
//! lot of the refunded transaction first.
//!
//! Every posting is idempotent by request id: posting the same entry again changes nothing, the
//! same request id with a different entry is refused.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Months, Utc};
use serde::{Deserialize, Serialize};

use crate::error::{Error, FieldViolation, Violations};
use crate::idempotency::check_request_id;
use crate::identifier::CustomerId;
use crate::money::{Currency, Money};

/// The largest number of points one entry may move, so that no sum of entries can overflow.
pub const MAX_ENTRY_POINTS: i64 = 1_000_000_000_000;

/// What an entry does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum EntryKind {
    /// Points earned by a transaction: positive, from the programme.
    Accrual,
    /// Points spent by the customer: negative, to the programme.
    Redemption,
    /// Points that expired: negative, to breakage.
    Expiry,
    /// Points clawed back because the transaction that earned them was refunded: negative (or
    /// zero with a shortfall), to the programme.
    Reversal,
    /// A manual correction, either sign, against the programme.
    Adjustment,
}

/// An account of the ledger.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Account {
    /// A customer's points: their balance.
    Customer(CustomerId),
    /// The programme's side of issuing, redeeming, reversing and adjusting points.
    Programme,
    /// The programme's side of expired points (breakage).
    Breakage,
}

/// One leg of an entry: points added to (or, negative, taken from) an account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Leg {
    /// The account.
    pub account: Account,
    /// The change of its balance.
    pub points: i64,
}

/// One movement of points between a customer and the programme (or breakage).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// The caller-chosen idempotency key of the posting.
    pub request_id: String,
    /// Whose points move.
    pub customer: CustomerId,
    /// What the movement is.
    pub kind: EntryKind,
    /// The change of the customer's balance: positive for accruals, negative for redemptions,
    /// expiries and reversals, non-zero either way for adjustments.
    pub points: i64,
    /// When it happened (an accrual's lot is dated by it).
    pub at: DateTime<Utc>,
    /// The transaction (order, payment) the points come from: required for accruals and
    /// reversals, which find their accrual by it.
    pub source_ref: Option<String>,
    /// When the points of an accrual (or positive adjustment) expire; `None`: never. Only for
    /// entries that add points.
    pub expires_at: Option<DateTime<Utc>>,
    /// For a reversal, the points that should have been clawed back but were no longer there
    /// (already spent or expired); 0 for every other entry.
    pub shortfall: i64,
}

impl Entry {
    /// The account on the other side of the customer's.
    pub fn counter_account(&self) -> Account {
        match self.kind {
            EntryKind::Expiry => Account::Breakage,
            EntryKind::Accrual
            | EntryKind::Redemption
            | EntryKind::Reversal
            | EntryKind::Adjustment => Account::Programme,
        }
    }

    /// The two legs: the customer's and the counter account's, summing to zero.
    pub fn legs(&self) -> [Leg; 2] {
        [
            Leg {
                account: Account::Customer(self.customer),
                points: self.points,
            },
            Leg {
                account: self.counter_account(),
                points: -self.points,
            },
        ]
    }

    /// Checks the entry on its own (`INVALID_ARGUMENT` listing every bad field): the request id,
    /// the sign of `points` for the kind, its size, the source reference, the expiry and the
    /// shortfall.
    pub fn check(&self) -> Result<(), Error> {
        let mut v = Violations::new();
        v.check("request_id", check_request_id(&self.request_id));
        let sign_ok = match self.kind {
            EntryKind::Accrual => self.points > 0,
            EntryKind::Redemption | EntryKind::Expiry => self.points < 0,
            EntryKind::Reversal => self.points < 0 || (self.points == 0 && self.shortfall > 0),
            EntryKind::Adjustment => self.points != 0,
        };
        if !sign_ok {
            let expected = match self.kind {
                EntryKind::Accrual => "positive",
                EntryKind::Redemption | EntryKind::Expiry => "negative",
                EntryKind::Reversal => "negative, or zero with a shortfall",
                EntryKind::Adjustment => "non-zero",
            };
            v.add(
                "points",
                format!(
                    "a {:?} changes the balance by a {expected} number of points (got {})",
                    self.kind, self.points
                ),
            );
        }
        if self.points.unsigned_abs() > MAX_ENTRY_POINTS.unsigned_abs() {
            v.add(
                "points",
                format!("at most {MAX_ENTRY_POINTS} points per entry"),
            );
        }
        let needs_source = matches!(self.kind, EntryKind::Accrual | EntryKind::Reversal);
        match &self.source_ref {
            None if needs_source => v.add(
                "source_ref",
                format!(
                    "required for a {:?}: the transaction the points come from",
                    self.kind
                ),
            ),
            Some(source) if source.trim().is_empty() || source.len() > 256 => v.add(
                "source_ref",
                "1 to 256 characters, the id of the transaction",
            ),
            _ => {}
        }
        if let Some(expires_at) = self.expires_at {
            if self.points <= 0 {
                v.add("expires_at", "only entries that add points have an expiry");
            } else if expires_at <= self.at {
                v.add(
                    "expires_at",
                    format!("must be after the entry's time {}", self.at),
                );
            }
        }
        if self.kind == EntryKind::Reversal {
            if !(0..=MAX_ENTRY_POINTS).contains(&self.shortfall) {
                v.add("shortfall", format!("0 to {MAX_ENTRY_POINTS} points"));
            }
        } else if self.shortfall != 0 {
            v.add("shortfall", "only a reversal has a shortfall");
        }
        v.into_result()
    }
}

/// Points earned together, spent or expired together: what one accrual (or positive adjustment)
/// added, and how much of it is left.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lot {
    /// The request id of the entry that created the lot.
    pub request_id: String,
    /// The transaction the points were earned on, if any.
    pub source_ref: Option<String>,
    /// When they were earned.
    pub earned_at: DateTime<Utc>,
    /// When they expire; `None`: never.
    pub expires_at: Option<DateTime<Utc>>,
    /// Points left (always positive: an empty lot is dropped).
    pub remaining: i64,
}

impl Lot {
    /// Whether the lot has expired at `now` (at or after its expiry).
    pub fn is_expired(&self, now: DateTime<Utc>) -> bool {
        self.expires_at.is_some_and(|at| now >= at)
    }
}

/// What expires out of one lot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LotExpiry {
    /// The request id of the lot's entry.
    pub request_id: String,
    /// The points that expire (what was left of the lot).
    pub points: i64,
}

/// The lots (and their remaining points) that have expired at `now`, oldest first. Points expire
/// at the lot's `expires_at` (set to N months after the accrual, see [`expiry_after_months`]).
pub fn expire(lots: &[Lot], now: DateTime<Utc>) -> Vec<LotExpiry> {
    let mut expired: Vec<&Lot> = lots.iter().filter(|l| l.is_expired(now)).collect();
    expired.sort_by(|a, b| fifo_key(a).cmp(&fifo_key(b)));
    expired
        .into_iter()
        .map(|l| LotExpiry {
            request_id: l.request_id.clone(),
            points: l.remaining,
        })
        .collect()
}

fn fifo_key(lot: &Lot) -> (DateTime<Utc>, &str) {
    (lot.earned_at, &lot.request_id)
}

/// The expiry of points earned at `earned_at` that expire `months` calendar months later (the
/// same day of the month, or the month's last day when it is shorter: 31 January + 1 month is
/// 28/29 February). `None` when `months` is 0 (never expire) or the date is out of range.
pub fn expiry_after_months(earned_at: DateTime<Utc>, months: u32) -> Option<DateTime<Utc>> {
    if months == 0 {
        return None;
    }
    earned_at.checked_add_months(Months::new(months))
}

// ---------------------------------------------------------------------------------------------
// Earning rules

/// How transactions in one currency earn points.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EarningRule {
    /// The currency of the transactions this rule applies to.
    pub currency: Currency,
    /// Points per whole unit of the currency spent (per 1 EUR, per 1 JPY).
    pub points_per_unit: u32,
    /// Multipliers per tier name, in percent: 150 earns ×1.5. A tier not listed earns ×1 (100).
    pub tier_multiplier_percent: BTreeMap<String, u32>,
    /// The most points one transaction may earn, if limited.
    pub max_points_per_transaction: Option<i64>,
}

/// Checks a set of earning rules (field `earning_rules`): at most one per currency, caps not
/// negative, multipliers at most 1000 % (INVALID_ARGUMENT listing every problem).
pub fn check_earning_rules(rules: &[EarningRule]) -> Result<(), Error> {
    let mut v = Violations::new();
    for (i, rule) in rules.iter().enumerate() {
        if rules[..i].iter().any(|r| r.currency == rule.currency) {
            v.add(
                format!("earning_rules[{i}].currency"),
                format!("a rule for {} is already defined", rule.currency),
            );
        }
        if rule.max_points_per_transaction.is_some_and(|m| m < 0) {
            v.add(
                format!("earning_rules[{i}].max_points_per_transaction"),
                "must not be negative",
            );
        }
        for (tier, percent) in &rule.tier_multiplier_percent {
            if *percent > 1000 {
                v.add(
                    format!("earning_rules[{i}].tier_multiplier_percent[{tier}]"),
                    format!("at most 1000 (×10), got {percent}"),
                );
            }
        }
    }
    v.into_result()
}

/// The points a transaction of `amount` earns for a customer in `tier`:
/// `floor(amount in units × points_per_unit × multiplier)`, computed exactly in minor units,
/// then capped by the rule's maximum and [`MAX_ENTRY_POINTS`]. Fractions of a point are never
/// awarded (1.99 EUR at 1 point per EUR earns 1 point). Zero or negative amounts earn nothing
/// (refunds are handled by reversals). Refused with `FAILED_PRECONDITION` / `NO_EARNING_RULE`
/// when no rule covers the currency.
pub fn points_for(rules: &[EarningRule], amount: Money, tier: Option<&str>) -> Result<i64, Error> {
    let Some(rule) = rules.iter().find(|r| r.currency == amount.currency) else {
        return Err(Error::precondition(
            "NO_EARNING_RULE",
            format!(
                "no earning rule for {}: transactions in it earn no points",
                amount.currency
            ),
        ));
    };
    if amount.amount_minor <= 0 {
        return Ok(0);
    }
    let percent = tier
        .and_then(|t| rule.tier_multiplier_percent.get(t))
        .copied()
        .unwrap_or(100);
    let scale = 10i128.pow(u32::from(amount.currency.exponent())) * 100;
    let raw = i128::from(amount.amount_minor)
        .checked_mul(i128::from(rule.points_per_unit))
        .and_then(|x| x.checked_mul(i128::from(percent)))
        .map_or(i128::MAX, |x| x / scale);
    let mut points =
        i64::try_from(raw.min(i128::from(MAX_ENTRY_POINTS))).unwrap_or(MAX_ENTRY_POINTS);
    if let Some(max) = rule.max_points_per_transaction {
        points = points.min(max.max(0));
    }
    Ok(points)
}

// ---------------------------------------------------------------------------------------------
// Refunds

/// A refund of (part of) a transaction that earned points.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refund {
    /// What the transaction was worth.
    pub transaction_amount: Money,
    /// What was refunded of it before this refund.
    pub refunded_before: Money,
    /// What this refund gives back.
    pub refunded_now: Money,
}

/// The points to claw back for `refund` of a transaction that earned `accrued` points:
/// proportional to the refunded amount, computed cumulatively so that partial refunds that add
/// up to the whole transaction claw back exactly `accrued`:
/// `floor(accrued × (before + now) / amount) − floor(accrued × before / amount)`.
/// Refused (`INVALID_ARGUMENT`) for amounts in another currency (reason `CURRENCY_MISMATCH`), a
/// transaction amount that is not positive, a negative refund, or refunds above the transaction
/// amount.
pub fn reversal_points(accrued: i64, refund: &Refund) -> Result<i64, Error> {
    let currency = refund.transaction_amount.currency;
    if refund.refunded_before.currency != currency || refund.refunded_now.currency != currency {
        return Err(Error::InvalidArgument {
            reason: "CURRENCY_MISMATCH",
            violations: vec![FieldViolation {
                field: "refund.currency_code".into(),
                description: format!("the transaction is in {currency}: its refunds must be too"),
            }],
        });
    }
    let mut v = Violations::new();
    let amount = i128::from(refund.transaction_amount.amount_minor);
    let before = i128::from(refund.refunded_before.amount_minor);
    let now = i128::from(refund.refunded_now.amount_minor);
    if amount <= 0 {
        v.add("transaction_amount", "must be positive");
    }
    if before < 0 {
        v.add("refunded_before", "must not be negative");
    }
    if now < 0 {
        v.add("refunded_now", "must not be negative");
    }
    if before + now > amount {
        v.add(
            "refunded_now",
            format!(
                "{} refunded in all is more than the transaction's {}",
                Money::new(i64::try_from(before + now).unwrap_or(i64::MAX), currency),
                refund.transaction_amount
            ),
        );
    }
    v.into_result()?;
    let accrued = i128::from(accrued.max(0));
    let points = accrued * (before + now) / amount - accrued * before / amount;
    i64::try_from(points).map_err(Error::internal)
}

/// What a reversal on refund will do: the points wanted back, what can be clawed back (no more
/// than the balance), the shortfall, and the entry to post (none when nothing is wanted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReversalPlan {
    /// Points the refund should take back.
    pub wanted: i64,
    /// Points actually taken back.
    pub clawed_back: i64,
    /// `wanted - clawed_back`: points already spent or expired.
    pub shortfall: i64,
    /// The entry to post.
    pub entry: Option<Entry>,
}

// ---------------------------------------------------------------------------------------------
// Tiers

/// A tier of the programme: reached by earning at least `min_points_earned` in the trailing
/// `window` (e.g. Gold: 5,000 points in 12 months).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TierRule {
    /// The tier's name, e.g. `gold`.
    pub name: String,
    /// Points the customer must have earned in the window.
    pub min_points_earned: i64,
    /// The trailing window.
    pub window: Duration,
}

// ---------------------------------------------------------------------------------------------
// The ledger

/// What [`Ledger::post`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PostOutcome {
    /// The entry was posted.
    Posted,
    /// The same entry had been posted under that request id: nothing changed.
    Duplicate,
}

/// The points ledger: the entries in posting order, the account balances and the customers' lots.
/// A value type: the store loads the part it needs (one customer's), posts, and writes back in
/// one transaction.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ledger {
    entries: Vec<Entry>,
    by_request: BTreeMap<String, usize>,
    accounts: BTreeMap<Account, i64>,
    lots: BTreeMap<CustomerId, Vec<Lot>>,
}

impl Ledger {
    /// An empty ledger.
    pub fn new() -> Self {
        Self::default()
    }

    /// Every posted entry, in posting order.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// The balance of an account (0 when it never moved).
    pub fn account_balance(&self, account: Account) -> i64 {
        self.accounts.get(&account).copied().unwrap_or(0)
    }

    /// A customer's balance: the sum of their legs.
    pub fn balance(&self, customer: CustomerId) -> i64 {
        self.account_balance(Account::Customer(customer))
    }

    /// A customer's lots with points left, oldest first.
    pub fn lots(&self, customer: CustomerId) -> &[Lot] {
        self.lots.get(&customer).map_or(&[], Vec::as_slice)
    }

    /// Posts `entry`. Idempotent by request id: the same entry again is a
    /// [`PostOutcome::Duplicate`] and changes nothing; the same request id with a different entry
    /// is refused (`INVALID_ARGUMENT` / `REQUEST_ID_REUSED`). Refused, changing nothing:
    /// an invalid entry (see [`Entry::check`]); taking more than the balance
    /// (`FAILED_PRECONDITION` / `INSUFFICIENT_POINTS`); expiring more than has expired at the
    /// entry's time (`EXPIRY_EXCEEDS_EXPIRED`); reversing more than the transaction earned
    /// and was not yet reversed (`REVERSAL_EXCEEDS_ACCRUAL`).
    pub fn post(&mut self, entry: Entry) -> Result<PostOutcome, Error> {
        entry.check()?;
        if let Some(&i) = self.by_request.get(&entry.request_id) {
            if self.entries.get(i) == Some(&entry) {
                return Ok(PostOutcome::Duplicate);
            }
            return Err(Error::InvalidArgument {
                reason: "REQUEST_ID_REUSED",
                violations: vec![FieldViolation {
                    field: "request_id".into(),
                    description: format!(
                        "request id {} was already used for a different entry: use a new id for a new entry",
                        entry.request_id
                    ),
                }],
            });
        }
        let balance = self.balance(entry.customer);
        let after = balance.checked_add(entry.points).ok_or_else(|| {
            Error::precondition(
                "POINTS_OVERFLOW",
                format!("the balance of {} cannot grow any further", entry.customer),
            )
        })?;
        if after < 0 {
            return Err(Error::precondition(
                "INSUFFICIENT_POINTS",
                format!(
                    "customer {} has {balance} points, the {:?} needs {}",
                    entry.customer, entry.kind, -entry.points
                ),
            ));
        }
        match entry.kind {
            EntryKind::Expiry => {
                let expired: i64 = expire(self.lots(entry.customer), entry.at)
                    .iter()
                    .map(|e| e.points)
                    .sum();
                if -entry.points > expired {
                    return Err(Error::precondition(
                        "EXPIRY_EXCEEDS_EXPIRED",
                        format!(
                            "only {expired} points of customer {} have expired at {}, the entry expires {}",
                            entry.customer, entry.at, -entry.points
                        ),
                    ));
                }
            }
            EntryKind::Reversal => {
                let source = entry.source_ref.as_deref().unwrap_or_default();
                let open =
                    self.accrued(entry.customer, source) - self.reversed(entry.customer, source);
                let taking = -entry.points + entry.shortfall;
                if taking > open {
                    return Err(Error::precondition(
                        "REVERSAL_EXCEEDS_ACCRUAL",
                        format!(
                            "transaction {source} has {open} points of customer {} left to reverse, the entry reverses {taking}",
                            entry.customer
                        ),
                    ));
                }
            }
            EntryKind::Accrual | EntryKind::Redemption | EntryKind::Adjustment => {}
        }
        // Every check passed: apply.
        for leg in entry.legs() {
            *self.accounts.entry(leg.account).or_insert(0) += leg.points;
        }
        let lots = self.lots.entry(entry.customer).or_default();
        if entry.points > 0 {
            lots.push(Lot {
                request_id: entry.request_id.clone(),
                source_ref: entry.source_ref.clone(),
                earned_at: entry.at,
                expires_at: entry.expires_at,
                remaining: entry.points,
            });
            lots.sort_by(|a, b| fifo_key(a).cmp(&fifo_key(b)));
        } else {
            consume(lots, &entry);
        }
        self.by_request
            .insert(entry.request_id.clone(), self.entries.len());
        self.entries.push(entry);
        Ok(PostOutcome::Posted)
    }

    fn accrued(&self, customer: CustomerId, source: &str) -> i64 {
        self.entries_of(customer, source, EntryKind::Accrual)
            .map(|e| e.points)
            .sum()
    }

    /// Points reversed for a transaction: clawed back plus shortfalls.
    fn reversed(&self, customer: CustomerId, source: &str) -> i64 {
        self.entries_of(customer, source, EntryKind::Reversal)
            .map(|e| -e.points + e.shortfall)
            .sum()
    }

    fn entries_of<'a>(
        &'a self,
        customer: CustomerId,
        source: &'a str,
        kind: EntryKind,
    ) -> impl Iterator<Item = &'a Entry> + 'a {
        self.entries.iter().filter(move |e| {
            e.customer == customer && e.kind == kind && e.source_ref.as_deref() == Some(source)
        })
    }

    /// The expiry entry that expires every lot of `customer` expired at `now`, or `None` when
    /// nothing has expired.
    pub fn plan_expiry(
        &self,
        request_id: &str,
        customer: CustomerId,
        now: DateTime<Utc>,
    ) -> Option<Entry> {
        let points: i64 = expire(self.lots(customer), now)
            .iter()
            .map(|e| e.points)
            .sum();
        (points > 0).then(|| Entry {
            request_id: request_id.to_owned(),
            customer,
            kind: EntryKind::Expiry,
            points: -points,
            at: now,
            source_ref: None,
            expires_at: None,
            shortfall: 0,
        })
    }

    /// Plans the reversal of the points that transaction `source_ref` earned `customer`, for
    /// `refund`: proportional to the refunded amount (see [`reversal_points`]), limited to what
    /// was not reversed yet, and never more than the balance: what is no longer there is recorded
    /// as the shortfall.
    pub fn plan_reversal(
        &self,
        request_id: &str,
        customer: CustomerId,
        source_ref: &str,
        refund: &Refund,
        at: DateTime<Utc>,
    ) -> Result<ReversalPlan, Error> {
        let accrued = self.accrued(customer, source_ref);
        let open = accrued - self.reversed(customer, source_ref);
        let wanted = reversal_points(accrued, refund)?.min(open).max(0);
        let clawed_back = wanted.min(self.balance(customer));
        let shortfall = wanted - clawed_back;
        let entry = (wanted > 0).then(|| Entry {
            request_id: request_id.to_owned(),
            customer,
            kind: EntryKind::Reversal,
            points: -clawed_back,
            at,
            source_ref: Some(source_ref.to_owned()),
            expires_at: None,
            shortfall,
        });
        Ok(ReversalPlan {
            wanted,
            clawed_back,
            shortfall,
            entry,
        })
    }

    /// Plans the reversal of up to `points` of what transaction `source_ref` earned
    /// `customer` (a caller that computed the points itself, e.g. from its own refund rules):
    /// refused with `FAILED_PRECONDITION` / `REVERSAL_EXCEEDS_ACCRUAL` beyond what the
    /// transaction earned and was not reversed yet; never more than the balance, the rest is
    /// the shortfall.
    pub fn plan_reversal_of_points(
        &self,
        request_id: &str,
        customer: CustomerId,
        source_ref: &str,
        points: i64,
        at: DateTime<Utc>,
    ) -> Result<ReversalPlan, Error> {
        let open = self.accrued(customer, source_ref) - self.reversed(customer, source_ref);
        if points > open {
            return Err(Error::precondition(
                "REVERSAL_EXCEEDS_ACCRUAL",
                format!(
                    "transaction {source_ref} has {open} points of customer {customer} left to reverse, the request reverses {points}"
                ),
            ));
        }
        let wanted = points.max(0);
        let clawed_back = wanted.min(self.balance(customer));
        let shortfall = wanted - clawed_back;
        let entry = (wanted > 0).then(|| Entry {
            request_id: request_id.to_owned(),
            customer,
            kind: EntryKind::Reversal,
            points: -clawed_back,
            at,
            source_ref: Some(source_ref.to_owned()),
            expires_at: None,
            shortfall,
        });
        Ok(ReversalPlan {
            wanted,
            clawed_back,
            shortfall,
            entry,
        })
    }

    /// Points `customer` earned in `(since, until]`: their accruals in that window, each
    /// transaction's less what its refunds reversed (a refunded purchase earned nothing).
    /// Redemptions, expiries and adjustments do not count.
    pub fn points_earned(
        &self,
        customer: CustomerId,
        since: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> i64 {
        let mut per_source: BTreeMap<&str, i64> = BTreeMap::new();
        for e in &self.entries {
            if e.customer == customer
                && e.kind == EntryKind::Accrual
                && e.at > since
                && e.at <= until
            {
                *per_source
                    .entry(e.source_ref.as_deref().unwrap_or_default())
                    .or_insert(0) += e.points;
            }
        }
        per_source
            .into_iter()
            .map(|(source, earned)| (earned - self.reversed(customer, source)).max(0))
            .sum()
    }

    /// The highest tier `customer` qualifies for at `now` (the one with the largest
    /// `min_points_earned` among those whose threshold they meet in its window), or `None`.
    pub fn tier<'a>(
        &self,
        rules: &'a [TierRule],
        customer: CustomerId,
        now: DateTime<Utc>,
    ) -> Option<&'a TierRule> {
        rules
            .iter()
            .filter(|r| self.points_earned(customer, now - r.window, now) >= r.min_points_earned)
            .max_by_key(|r| r.min_points_earned)
    }

    /// Checks the ledger's invariants, returning the first one broken: the legs of all entries
    /// sum to zero; every customer's balance is non-negative and equals the points left in their
    /// lots; every lot holds points.
    pub fn check_invariants(&self) -> Result<(), String> {
        let total: i128 = self.accounts.values().map(|b| i128::from(*b)).sum();
        if total != 0 {
            return Err(format!("the accounts sum to {total}, not 0"));
        }
        let legs: i128 = self
            .entries
            .iter()
            .flat_map(Entry::legs)
            .map(|l| i128::from(l.points))
            .sum();
        if legs != 0 {
            return Err(format!("the legs sum to {legs}, not 0"));
        }
        for (account, balance) in &self.accounts {
            if let Account::Customer(customer) = account {
                if *balance < 0 {
                    return Err(format!(
                        "customer {customer} has a negative balance {balance}"
                    ));
                }
                let in_lots: i64 = self.lots(*customer).iter().map(|l| l.remaining).sum();
                if in_lots != *balance {
                    return Err(format!(
                        "customer {customer}: balance {balance}, but {in_lots} in lots"
                    ));
                }
            }
        }
        if let Some(lot) = self.lots.values().flatten().find(|l| l.remaining <= 0) {
            return Err(format!(
                "lot {} holds {} points",
                lot.request_id, lot.remaining
            ));
        }
        Ok(())
    }
}

/// Takes `-entry.points` from the lots: an expiry takes the expired lots, oldest first; a reversal
/// takes from its transaction's lot first, then oldest first; anything else oldest first. The
/// caller has checked that there is enough.
fn consume(lots: &mut Vec<Lot>, entry: &Entry) {
    let mut left = -entry.points;
    let mut order: Vec<usize> = (0..lots.len()).collect();
    match entry.kind {
        EntryKind::Expiry => order.retain(|&i| lots[i].is_expired(entry.at)),
        EntryKind::Reversal => {
            order.sort_by_key(|&i| lots[i].source_ref != entry.source_ref);
        }
        EntryKind::Accrual | EntryKind::Redemption | EntryKind::Adjustment => {}
    }
    for i in order {
        if left == 0 {
            break;
        }
        let take = left.min(lots[i].remaining);
        lots[i].remaining -= take;
        left -= take;
    }
    lots.retain(|l| l.remaining > 0);
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use chrono::TimeZone;
    use proptest::prelude::*;
    use uuid::Uuid;

    fn day(d: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0).unwrap() + Duration::days(d)
    }

    fn alice() -> CustomerId {
        CustomerId(Uuid::from_u128(1))
    }

    fn eur(minor: i64) -> Money {
        Money::new(minor, Currency::parse("EUR").unwrap())
    }

    fn entry(id: &str, kind: EntryKind, points: i64, at: DateTime<Utc>) -> Entry {
        Entry {
            request_id: id.into(),
            customer: alice(),
            kind,
            points,
            at,
            source_ref: None,
            expires_at: None,
            shortfall: 0,
        }
    }

    /// An accrual on transaction `source`, expiring 12 months later.
    fn accrual(id: &str, source: &str, points: i64, at: DateTime<Utc>) -> Entry {
        Entry {
            source_ref: Some(source.into()),
            expires_at: expiry_after_months(at, 12),
            ..entry(id, EntryKind::Accrual, points, at)
        }
    }

    fn reason(result: Result<PostOutcome, Error>) -> &'static str {
        match result {
            Err(Error::FailedPrecondition { reason, .. })
            | Err(Error::InvalidArgument { reason, .. }) => reason,
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn accrual_and_redemption_move_points_in_double_entry() {
        let mut ledger = Ledger::new();
        let a = accrual("a1", "order-1", 500, day(0));
        assert_eq!(a.legs().iter().map(|l| l.points).sum::<i64>(), 0);
        assert_eq!(ledger.post(a).unwrap(), PostOutcome::Posted);
        ledger
            .post(entry("r1", EntryKind::Redemption, -200, day(1)))
            .unwrap();
        assert_eq!(ledger.balance(alice()), 300);
        assert_eq!(ledger.account_balance(Account::Programme), -300);
        assert_eq!(ledger.account_balance(Account::Breakage), 0);
        ledger.check_invariants().unwrap();
    }

    #[test]
    fn a_redemption_beyond_the_balance_is_refused_and_changes_nothing() {
        let mut ledger = Ledger::new();
        ledger.post(accrual("a1", "order-1", 100, day(0))).unwrap();
        let before = ledger.clone();
        let result = ledger.post(entry("r1", EntryKind::Redemption, -101, day(1)));
        match result {
            Err(Error::FailedPrecondition { reason, message }) => {
                assert_eq!(reason, "INSUFFICIENT_POINTS");
                assert!(message.contains("has 100 points"), "{message}");
                assert!(message.contains("needs 101"), "{message}");
            }
            other => panic!("expected INSUFFICIENT_POINTS, got {other:?}"),
        }
        assert_eq!(ledger, before);
        let take_too_much = entry("adj", EntryKind::Adjustment, -101, day(1));
        assert_eq!(reason(ledger.post(take_too_much)), "INSUFFICIENT_POINTS");
    }

    #[test]
    fn postings_are_idempotent_by_request_id() {
        let mut ledger = Ledger::new();
        let a = accrual("a1", "order-1", 100, day(0));
        ledger.post(a.clone()).unwrap();
        let after_first = ledger.clone();
        assert_eq!(ledger.post(a.clone()).unwrap(), PostOutcome::Duplicate);
        assert_eq!(ledger, after_first);
        let different = Entry { points: 99, ..a };
        assert_eq!(reason(ledger.post(different)), "REQUEST_ID_REUSED");
        assert_eq!(ledger, after_first);
    }

    #[test]
    fn invalid_entries_are_refused_listing_every_field() {
        let mut bad = entry("", EntryKind::Accrual, -5, day(0));
        bad.expires_at = Some(day(-1));
        bad.shortfall = 3;
        let Err(Error::InvalidArgument { violations, .. }) = bad.check() else {
            panic!("expected INVALID_ARGUMENT");
        };
        let fields: Vec<_> = violations.iter().map(|v| v.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "request_id",
                "points",
                "source_ref",
                "expires_at",
                "shortfall"
            ]
        );
        assert!(
            entry("x", EntryKind::Redemption, 5, day(0))
                .check()
                .is_err()
        );
        assert!(
            entry("x", EntryKind::Adjustment, 0, day(0))
                .check()
                .is_err()
        );
        let huge = accrual("x", "o", MAX_ENTRY_POINTS + 1, day(0));
        assert!(huge.check().is_err());
    }

    #[test]
    fn redemptions_consume_the_oldest_lots_first() {
        let mut ledger = Ledger::new();
        ledger.post(accrual("a2", "order-2", 300, day(10))).unwrap();
        ledger.post(accrual("a1", "order-1", 100, day(0))).unwrap();
        ledger
            .post(entry("r1", EntryKind::Redemption, -150, day(20)))
            .unwrap();
        let lots: Vec<_> = ledger
            .lots(alice())
            .iter()
            .map(|l| (l.request_id.as_str(), l.remaining))
            .collect();
        assert_eq!(lots, [("a2", 250)]);
    }

    #[test]
    fn points_expire_n_months_after_accrual() {
        assert_eq!(
            expiry_after_months(day(30), 1),
            Some(Utc.with_ymd_and_hms(2025, 2, 28, 0, 0, 0).unwrap())
        );
        assert_eq!(expiry_after_months(day(0), 0), None);

        let mut ledger = Ledger::new();
        ledger.post(accrual("a1", "order-1", 100, day(0))).unwrap();
        ledger.post(accrual("a2", "order-2", 50, day(40))).unwrap();
        ledger
            .post(entry("r1", EntryKind::Redemption, -30, day(50)))
            .unwrap();
        let one_year = expiry_after_months(day(0), 12).unwrap();
        assert!(expire(ledger.lots(alice()), one_year - Duration::seconds(1)).is_empty());
        assert_eq!(
            expire(ledger.lots(alice()), one_year),
            [LotExpiry {
                request_id: "a1".into(),
                points: 70
            }]
        );
        assert_eq!(
            ledger.plan_expiry("x0", alice(), one_year - Duration::seconds(1)),
            None
        );
        let expiry = ledger.plan_expiry("x1", alice(), one_year).unwrap();
        assert_eq!(expiry.points, -70);
        ledger.post(expiry).unwrap();
        assert_eq!(ledger.balance(alice()), 50);
        assert_eq!(ledger.account_balance(Account::Breakage), 70);
        ledger.check_invariants().unwrap();

        // Expiring live points is refused.
        let too_early = entry("x2", EntryKind::Expiry, -10, one_year);
        assert_eq!(reason(ledger.post(too_early)), "EXPIRY_EXCEEDS_EXPIRED");
    }

    #[test]
    fn earning_rules_round_down_apply_tier_multipliers_and_caps() {
        let rules = [
            EarningRule {
                currency: Currency::parse("EUR").unwrap(),
                points_per_unit: 2,
                tier_multiplier_percent: BTreeMap::from([("gold".to_owned(), 150)]),
                max_points_per_transaction: Some(1_000),
            },
            EarningRule {
                currency: Currency::parse("JPY").unwrap(),
                points_per_unit: 1,
                tier_multiplier_percent: BTreeMap::new(),
                max_points_per_transaction: None,
            },
        ];
        check_earning_rules(&rules).unwrap();
        assert_eq!(points_for(&rules, eur(1_999), None).unwrap(), 39); // 19.99 × 2
        assert_eq!(points_for(&rules, eur(1_999), Some("gold")).unwrap(), 59); // × 1.5
        assert_eq!(points_for(&rules, eur(1_999), Some("silver")).unwrap(), 39);
        assert_eq!(points_for(&rules, eur(1_000_000), None).unwrap(), 1_000); // capped
        assert_eq!(points_for(&rules, eur(-500), None).unwrap(), 0);
        let jpy = Money::new(1_500, Currency::parse("JPY").unwrap());
        assert_eq!(points_for(&rules, jpy, None).unwrap(), 1_500);
        let usd = Money::new(100, Currency::parse("USD").unwrap());
        match points_for(&rules, usd, None) {
            Err(Error::FailedPrecondition { reason, .. }) => assert_eq!(reason, "NO_EARNING_RULE"),
            other => panic!("expected NO_EARNING_RULE, got {other:?}"),
        }
        let duplicate = [rules[0].clone(), rules[0].clone()];
        assert!(check_earning_rules(&duplicate).is_err());
    }

    #[test]
    fn partial_refunds_reverse_proportionally_and_add_up_to_the_accrual() {
        let refund = |before, now| Refund {
            transaction_amount: eur(3_000),
            refunded_before: eur(before),
            refunded_now: eur(now),
        };
        assert_eq!(reversal_points(100, &refund(0, 1_000)).unwrap(), 33);
        assert_eq!(reversal_points(100, &refund(1_000, 1_000)).unwrap(), 33);
        assert_eq!(reversal_points(100, &refund(2_000, 1_000)).unwrap(), 34);
        assert_eq!(reversal_points(100, &refund(0, 3_000)).unwrap(), 100);
        assert!(reversal_points(100, &refund(2_000, 1_001)).is_err());
        let usd = Refund {
            refunded_now: Money::new(5, Currency::parse("USD").unwrap()),
            ..refund(0, 0)
        };
        match reversal_points(100, &usd) {
            Err(Error::InvalidArgument { reason, .. }) => assert_eq!(reason, "CURRENCY_MISMATCH"),
            other => panic!("expected CURRENCY_MISMATCH, got {other:?}"),
        }
    }

    #[test]
    fn a_reversal_claws_back_what_remains_and_records_the_shortfall() {
        let mut ledger = Ledger::new();
        ledger.post(accrual("a1", "order-1", 100, day(0))).unwrap();
        ledger.post(accrual("a2", "order-2", 40, day(1))).unwrap();
        ledger
            .post(entry("r1", EntryKind::Redemption, -120, day(2)))
            .unwrap();
        assert_eq!(ledger.balance(alice()), 20);
        let full = Refund {
            transaction_amount: eur(5_000),
            refunded_before: eur(0),
            refunded_now: eur(5_000),
        };
        let plan = ledger
            .plan_reversal("v1", alice(), "order-1", &full, day(3))
            .unwrap();
        assert_eq!(
            (plan.wanted, plan.clawed_back, plan.shortfall),
            (100, 20, 80)
        );
        let reversal = plan.entry.unwrap();
        assert_eq!((reversal.points, reversal.shortfall), (-20, 80));
        ledger.post(reversal).unwrap();
        assert_eq!(ledger.balance(alice()), 0);
        ledger.check_invariants().unwrap();
        // The transaction is fully reversed: a second refund finds nothing left to reverse.
        let again = ledger
            .plan_reversal("v2", alice(), "order-1", &full, day(4))
            .unwrap();
        assert_eq!(again.entry, None);
        let mut forced = entry("v3", EntryKind::Reversal, 0, day(4));
        forced.source_ref = Some("order-1".into());
        forced.shortfall = 1;
        assert_eq!(reason(ledger.post(forced)), "REVERSAL_EXCEEDS_ACCRUAL");
    }

    #[test]
    fn a_reversal_of_points_is_limited_to_the_open_accrual_and_the_balance() {
        let mut ledger = Ledger::new();
        ledger.post(accrual("a1", "order-1", 100, day(0))).unwrap();
        ledger
            .post(entry("r1", EntryKind::Redemption, -70, day(1)))
            .unwrap();
        let too_many = ledger.plan_reversal_of_points("v0", alice(), "order-1", 101, day(2));
        assert!(matches!(
            too_many,
            Err(Error::FailedPrecondition {
                reason: "REVERSAL_EXCEEDS_ACCRUAL",
                ..
            })
        ));
        let plan = ledger
            .plan_reversal_of_points("v1", alice(), "order-1", 60, day(2))
            .unwrap();
        assert_eq!(
            (plan.wanted, plan.clawed_back, plan.shortfall),
            (60, 30, 30)
        );
        ledger.post(plan.entry.unwrap()).unwrap();
        assert_eq!(ledger.balance(alice()), 0);
        ledger.check_invariants().unwrap();
        // 60 of 100 reversed (30 clawed back, 30 short): 40 remain reversible.
        assert!(
            ledger
                .plan_reversal_of_points("v2", alice(), "order-1", 41, day(3))
                .is_err()
        );
        let rest = ledger
            .plan_reversal_of_points("v2", alice(), "order-1", 40, day(3))
            .unwrap();
        assert_eq!((rest.clawed_back, rest.shortfall), (0, 40));
        ledger.post(rest.entry.unwrap()).unwrap();
        ledger.check_invariants().unwrap();
    }

    #[test]
    fn a_reversal_takes_from_its_own_transaction_lot_first() {
        let mut ledger = Ledger::new();
        ledger.post(accrual("a1", "order-1", 100, day(0))).unwrap();
        ledger.post(accrual("a2", "order-2", 60, day(1))).unwrap();
        let half = Refund {
            transaction_amount: eur(1_000),
            refunded_before: eur(0),
            refunded_now: eur(500),
        };
        let plan = ledger
            .plan_reversal("v1", alice(), "order-2", &half, day(2))
            .unwrap();
        ledger.post(plan.entry.unwrap()).unwrap();
        let lots: Vec<_> = ledger
            .lots(alice())
            .iter()
            .map(|l| (l.request_id.as_str(), l.remaining))
            .collect();
        assert_eq!(lots, [("a1", 100), ("a2", 30)]);
    }

    #[test]
    fn tiers_count_points_earned_in_the_window_not_the_balance() {
        let tiers = [
            TierRule {
                name: "silver".into(),
                min_points_earned: 1_000,
                window: Duration::days(365),
            },
            TierRule {
                name: "gold".into(),
                min_points_earned: 5_000,
                window: Duration::days(365),
            },
        ];
        let mut ledger = Ledger::new();
        ledger
            .post(accrual("a0", "order-0", 9_000, day(0)))
            .unwrap(); // leaves the window
        ledger
            .post(accrual("a1", "order-1", 3_000, day(100)))
            .unwrap();
        ledger
            .post(accrual("a2", "order-2", 2_500, day(200)))
            .unwrap();
        // Spending points does not lower the tier.
        ledger
            .post(entry("r1", EntryKind::Redemption, -14_000, day(300)))
            .unwrap();
        assert_eq!(
            ledger.points_earned(alice(), day(400) - Duration::days(365), day(400)),
            5_500
        );
        assert_eq!(ledger.tier(&tiers, alice(), day(400)).unwrap().name, "gold");
        // A refund reverses what its transaction earned, including the part of it that could
        // no longer be clawed back (1,000 wanted, 500 left in the balance).
        let refund = Refund {
            transaction_amount: eur(10_000),
            refunded_before: eur(0),
            refunded_now: eur(4_000),
        };
        let plan = ledger
            .plan_reversal("v1", alice(), "order-2", &refund, day(401))
            .unwrap();
        ledger.post(plan.entry.unwrap()).unwrap();
        assert_eq!(
            ledger.tier(&tiers, alice(), day(401)).unwrap().name,
            "silver"
        );
        assert_eq!(ledger.tier(&tiers, alice(), day(800)), None);
    }

    #[derive(Debug, Clone)]
    enum Op {
        Accrue { who: u8, points: i64 },
        Redeem { who: u8, points: i64 },
        Expire { who: u8 },
        Refund { who: u8, pick: usize, tenths: i64 },
        Adjust { who: u8, points: i64 },
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0u8..2, 1i64..1_000).prop_map(|(who, points)| Op::Accrue { who, points }),
            (0u8..2, 1i64..1_500).prop_map(|(who, points)| Op::Redeem { who, points }),
            (0u8..2).prop_map(|who| Op::Expire { who }),
            (0u8..2, any::<usize>(), 1i64..=10).prop_map(|(who, pick, tenths)| Op::Refund {
                who,
                pick,
                tenths
            }),
            (0u8..2, -500i64..500)
                .prop_filter("non-zero", |(_, p)| *p != 0)
                .prop_map(|(who, points)| Op::Adjust { who, points }),
        ]
    }

    proptest! {
        #[test]
        fn invariants_hold_and_replays_change_nothing(
            ops in proptest::collection::vec((op(), 0i64..20), 1..80),
        ) {
            let customers = [CustomerId(Uuid::from_u128(1)), CustomerId(Uuid::from_u128(2))];
            let mut ledger = Ledger::new();
            let mut posted = Vec::new();
            // (customer, transaction, amount, refunded so far)
            let mut transactions: Vec<(CustomerId, String, i64, i64)> = Vec::new();
            let mut now = day(0);
            for (i, (op, advance)) in ops.into_iter().enumerate() {
                now += Duration::days(advance);
                let id = format!("req-{i}");
                let candidate = match op {
                    Op::Accrue { who, points } => {
                        let customer = customers[usize::from(who)];
                        let source = format!("order-{i}");
                        transactions.push((customer, source.clone(), points * 100, 0));
                        Some(Entry {
                            customer,
                            source_ref: Some(source),
                            expires_at: expiry_after_months(now, 1),
                            ..entry(&id, EntryKind::Accrual, points, now)
                        })
                    }
                    Op::Redeem { who, points } => Some(Entry {
                        customer: customers[usize::from(who)],
                        ..entry(&id, EntryKind::Redemption, -points, now)
                    }),
                    Op::Expire { who } => ledger.plan_expiry(&id, customers[usize::from(who)], now),
                    Op::Refund { who, pick, tenths } => {
                        let theirs: Vec<usize> = (0..transactions.len())
                            .filter(|t| transactions[*t].0 == customers[usize::from(who)])
                            .collect();
                        if theirs.is_empty() {
                            None
                        } else {
                            let t = theirs[pick % theirs.len()];
                            let (customer, source, amount, refunded) = transactions[t].clone();
                            let now_refunded = (amount * tenths / 10).min(amount - refunded);
                            let refund = Refund {
                                transaction_amount: eur(amount),
                                refunded_before: eur(refunded),
                                refunded_now: eur(now_refunded),
                            };
                            transactions[t].3 += now_refunded;
                            let plan = ledger.plan_reversal(&id, customer, &source, &refund, now).unwrap();
                            prop_assert_eq!(plan.clawed_back + plan.shortfall, plan.wanted);
                            plan.entry
                        }
                    }
                    Op::Adjust { who, points } => Some(Entry {
                        customer: customers[usize::from(who)],
                        expires_at: if points > 0 { expiry_after_months(now, 2) } else { None },
                        ..entry(&id, EntryKind::Adjustment, points, now)
                    }),
                };
                let Some(candidate) = candidate else { continue };
                let before = ledger.clone();
                let balance = ledger.balance(candidate.customer);
                match ledger.post(candidate.clone()) {
                    Ok(outcome) => {
                        prop_assert_eq!(outcome, PostOutcome::Posted);
                        posted.push(candidate);
                    }
                    Err(Error::FailedPrecondition { reason, .. }) => {
                        prop_assert_eq!(reason, "INSUFFICIENT_POINTS");
                        prop_assert!(balance + candidate.points < 0);
                        prop_assert_eq!(&ledger, &before);
                    }
                    Err(other) => prop_assert!(false, "unexpected refusal {other:?}"),
                }
                if let Err(broken) = ledger.check_invariants() {
                    prop_assert!(false, "{}", broken);
                }
            }
            // Replaying every posting changes nothing.
            let settled = ledger.clone();
            for entry in posted {
                prop_assert_eq!(ledger.post(entry).unwrap(), PostOutcome::Duplicate);
            }
            prop_assert_eq!(&ledger, &settled);
        }
    }
}
