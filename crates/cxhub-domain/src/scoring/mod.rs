//! Scoring math: customer lifetime value (BG/NBD and Gamma-Gamma), survey metrics (NPS, CSAT,
//! CES with confidence intervals and trend tests), RFM segments, the customer category and
//! churn risk. Pure functions over plain numbers; the scoring service feeds them from the
//! transactions ledger and survey responses.
//!
//! This module also holds what ties them together into one stored [`CustomerScores`] per
//! customer: the [`CustomerFacts`] the store reads, [`fit_models`] (one fit per currency over
//! the whole ledger) and [`score_customer`], and the [`CustomerScoreRepo`] they are kept in.

pub mod category;
pub mod churn;
pub mod churn_fit;
pub mod clv;
pub mod metrics;
pub mod rfm;
pub mod sentiment;
pub mod survey;

use std::collections::BTreeMap;

use async_trait::async_trait;
use chrono::{DateTime, Duration, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use self::category::{CategoryConfig, CategoryDecision, CategoryInputs, categorise};
use self::churn::{CHURN_MODEL_VERSION, ChurnBand, ChurnConfig, ChurnInputs, ChurnScore};
use self::clv::{BgNbd, CustomerSummary, GammaGamma};
use self::metrics::CustomerCategory;
use self::rfm::{RfmInput, RfmModel, RfmSegment, RfmThresholds};
use crate::error::Result;
use crate::identifier::CustomerId;
use crate::money::{Currency, Money};
use crate::page::{Page, PageRequest};

/// The version of the way scores are put together (which rules, which models, which
/// conventions); part of every score's model version.
pub const SCORES_VERSION: &str = "scores-1";

/// Interaction outcomes the category and churn rules count (see [`CustomerFacts::signals`]).
pub const SIGNAL_OUTCOMES: &[&str] = &[
    OPEN_CASE_OUTCOMES[0],
    OPEN_CASE_OUTCOMES[1],
    "CASE_RESOLVED",
    "CASE_CLOSED_UNRESOLVED",
    "PAYMENT_FAILED",
    "SUBSCRIPTION_DOWNGRADED",
    "SUBSCRIPTION_CANCELLED",
    "DELIVERED_LATE",
    "DELIVERY_FAILED",
    "RETURNED_DEFECTIVE",
    "RETURNED_WRONG_ITEM",
    "RETURNED_LATE",
    "RETURNED_NOT_WANTED",
    "RETURNED_OTHER",
];

/// Outcomes of a support case that is not resolved yet.
pub const OPEN_CASE_OUTCOMES: [&str; 2] = ["CASE_OPENED", "CASE_PENDING"];

/// A placed order of the ledger.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerOrder {
    /// When it was placed.
    pub at: DateTime<Utc>,
    /// Its total.
    pub amount: Money,
}

/// An interaction outcome the rules count, and when it happened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signal {
    /// One of [`SIGNAL_OUTCOMES`].
    pub outcome: String,
    /// When it happened.
    pub at: DateTime<Utc>,
}

/// Everything the scores of one customer are computed from, as the store reads it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CustomerFacts {
    /// The customer (live: not merged away, not erased).
    pub customer: CustomerId,
    /// Placed orders (status `placed`), any time up to the as-of time.
    pub orders: Vec<LedgerOrder>,
    /// The latest NPS and CSAT answers at or before the as-of time.
    pub latest_nps: Option<category::DatedAnswer>,
    /// See `latest_nps`.
    pub latest_csat: Option<category::DatedAnswer>,
    /// The latest survey comment at or before the as-of time, if any.
    #[serde(default)]
    pub latest_comment: Option<SurveyComment>,
    /// Interactions with an outcome of [`SIGNAL_OUTCOMES`]: those of open cases
    /// ([`OPEN_CASE_OUTCOMES`]) whenever they happened, the others since the start of the
    /// longest window of the rules ([`ScoreConfig::signal_window_days`]).
    pub signals: Vec<Signal>,
}

/// A survey comment as written, for the category's comment-sentiment rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SurveyComment {
    /// The text.
    pub text: String,
    /// The language tag the response named (`pt-BR`, `de`…), empty when it named none (not its
    /// survey's default). A tag without a lexicon, or an empty one, has the language detected
    /// from the text, as `SubmitResponses` does when it answers the comment's sentiment.
    pub language: String,
    /// When it was written.
    pub answered_at: DateTime<Utc>,
}

impl SurveyComment {
    /// The comment's sentiment as the category rules use it.
    pub fn dated_sentiment(&self) -> category::DatedComment {
        let analysed = sentiment::analyze(&self.text, sentiment::Language::parse(&self.language));
        #[allow(clippy::cast_possible_truncation)]
        let score_milli = (analysed.score.clamp(-1.0, 1.0) * 1000.0).round() as i32;
        category::DatedComment {
            score_milli,
            label: analysed.label,
            answered_at: self.answered_at,
            language: Some(analysed.language),
            language_source: Some(analysed.language_source),
            drivers: analysed.drivers,
            model_version: sentiment::SENTIMENT_MODEL_VERSION.to_owned(),
        }
    }
}

/// How scores are computed.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ScoreConfig {
    /// Category rules.
    pub category: CategoryConfig,
    /// Churn model.
    pub churn: ChurnConfig,
    /// CLV horizon, in weeks (default 52).
    pub clv_horizon_weeks: f64,
    /// Yearly discount rate of CLV (default 0.10); compounded weekly.
    pub annual_discount_rate: f64,
    /// Hours between full recomputes made by the background recompute (default 24): the models
    /// are refitted on the grown ledger and every customer is rescored, so scores that depend on
    /// the passing of time (recency, days since the last purchase, P(alive)) move even for
    /// customers nothing happened to. 0 turns the periodic recompute off (the incremental one
    /// and `RecomputeScores` still run).
    pub full_recompute_every_hours: f64,
}

impl Default for ScoreConfig {
    fn default() -> Self {
        Self {
            category: CategoryConfig::default(),
            churn: ChurnConfig::default(),
            clv_horizon_weeks: 52.0,
            annual_discount_rate: 0.10,
            full_recompute_every_hours: 24.0,
        }
    }
}

impl ScoreConfig {
    /// The longest window of the rules, in days: signals older than this are not read.
    pub fn signal_window_days(&self) -> i64 {
        self.category
            .complaint_window_days
            .max(self.churn.event_window_days)
            .max(self.churn.failed_payment_window_days)
    }

    /// Whether models fitted at `fitted_at` are due for the periodic full recompute at `now`.
    pub fn full_recompute_due(&self, fitted_at: DateTime<Utc>, now: DateTime<Utc>) -> bool {
        let hours = self.full_recompute_every_hours;
        if !(hours.is_finite() && hours > 0.0) {
            return false;
        }
        #[allow(clippy::cast_possible_truncation)]
        let every = Duration::milliseconds((hours * 3_600_000.0).round() as i64);
        now - fitted_at >= every
    }

    /// The weekly discount rate equivalent to the yearly one.
    pub fn weekly_discount_rate(&self) -> f64 {
        (1.0 + self.annual_discount_rate).powf(1.0 / 52.0) - 1.0
    }
}

/// The models fitted on the ledger for one currency.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FittedModels {
    /// The currency of the customers and amounts fitted.
    pub currency: Currency,
    /// The number of the full recompute that fitted them (1, 2, …).
    pub version: i64,
    /// When they were fitted; also the end of the calibration period.
    pub fitted_at: DateTime<Utc>,
    /// Customers whose main currency it is.
    pub customers: u64,
    /// Of those, customers with at least one repeat purchase day.
    pub repeat_customers: u64,
    /// BG/NBD, in weeks; `None` when it could not be fitted (see `notes`).
    pub bg_nbd: Option<BgNbd>,
    /// Gamma-Gamma, in minor units of the currency; `None` when it could not be fitted.
    pub gamma_gamma: Option<GammaGamma>,
    /// RFM quintile thresholds (monetary: total spend in minor units).
    pub rfm: Option<RfmThresholds>,
    /// Why a model is missing.
    pub notes: Vec<String>,
}

/// A customer's lifetime value and what it is made of.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClvPart {
    /// The currency of the amounts (the customer's main currency).
    pub currency: Currency,
    /// Horizon, weeks.
    pub horizon_weeks: f64,
    /// Yearly discount rate.
    pub annual_discount_rate: f64,
    /// The fit used ([`FittedModels::version`]).
    pub fit_version: i64,
    /// The customer's history in the models' terms (weeks; repeat purchase days).
    pub summary: CustomerSummary,
    /// Probability the customer is still active (BG/NBD).
    pub p_alive: f64,
    /// Expected purchases over the horizon, undiscounted (BG/NBD).
    pub expected_purchases: f64,
    /// Expected spend per purchase, minor units (Gamma-Gamma).
    pub expected_spend_minor: i64,
    /// Discounted value over the horizon, minor units.
    pub value_minor: i64,
}

/// A customer's RFM scores and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RfmPart {
    /// Recency, frequency (purchase days) and monetary (total spend, minor units) inputs.
    pub input: RfmInput,
    /// Recency score 1–5.
    pub r: u8,
    /// Frequency score 1–5.
    pub f: u8,
    /// Monetary score 1–5.
    pub m: u8,
    /// The segment.
    pub segment: RfmSegment,
    /// The grid cells of the segment, e.g. "R 5 and F 4–5".
    pub segment_rule: String,
    /// One sentence per dimension.
    pub reasons: Vec<String>,
    /// The fit whose thresholds were used.
    pub fit_version: i64,
}

/// Every score of one customer, with the reasons.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CustomerScores {
    /// The customer.
    pub customer: CustomerId,
    /// The time the scores describe.
    pub as_of: DateTime<Utc>,
    /// Which models: [`SCORES_VERSION`], [`CHURN_MODEL_VERSION`] and the CLV fit.
    pub model_version: String,
    /// Category.
    pub category: CategoryDecision,
    /// Churn risk.
    pub churn: ChurnScore,
    /// Lifetime value; `None` without a purchase or a fit for the customer's currency.
    pub clv: Option<ClvPart>,
    /// RFM; `None` without a purchase or a fit for the customer's currency.
    pub rfm: Option<RfmPart>,
}

/// The snake_case text of an RFM segment, as stored.
pub fn segment_text(segment: RfmSegment) -> &'static str {
    match segment {
        RfmSegment::Champions => "champions",
        RfmSegment::Loyal => "loyal",
        RfmSegment::PotentialLoyalist => "potential_loyalist",
        RfmSegment::NewCustomers => "new_customers",
        RfmSegment::Promising => "promising",
        RfmSegment::NeedAttention => "need_attention",
        RfmSegment::AboutToSleep => "about_to_sleep",
        RfmSegment::AtRisk => "at_risk",
        RfmSegment::CantLoseThem => "cant_lose_them",
        RfmSegment::Hibernating => "hibernating",
        RfmSegment::Lost => "lost",
    }
}

/// The main currency of some orders: the one with the most orders (ties: the smallest code).
pub fn main_currency(orders: &[LedgerOrder]) -> Option<Currency> {
    let mut counts: BTreeMap<&str, (usize, Currency)> = BTreeMap::new();
    for o in orders {
        counts
            .entry(o.amount.currency.code())
            .or_insert((0, o.amount.currency))
            .0 += 1;
    }
    let mut best: Option<(usize, Currency)> = None;
    for (n, c) in counts.into_values() {
        if best.is_none_or(|(m, _)| n > m) {
            best = Some((n, c));
        }
    }
    best.map(|(_, c)| c)
}

/// Whether a count is zero: stored explanations leave zero counts out (they read back as zero).
fn is_zero(n: &u32) -> bool {
    *n == 0
}

fn epoch_day(date: NaiveDate) -> f64 {
    let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).unwrap_or_default();
    (date - epoch).num_days() as f64
}

/// What the models see of one customer in `currency`, as of `as_of`.
struct History {
    summary: Option<CustomerSummary>,
    rfm: Option<RfmInput>,
    orders: Vec<(DateTime<Utc>, i64)>,
}

/// Summarises the orders in `currency` with the papers' conventions: time in weeks at day
/// resolution (UTC days), several orders of one day one purchase occasion, the first occasion
/// not a repeat, the calibration ending on the as-of day.
fn history(facts: &CustomerFacts, currency: Currency, as_of: DateTime<Utc>) -> History {
    let orders: Vec<(DateTime<Utc>, i64)> = facts
        .orders
        .iter()
        .filter(|o| o.amount.currency == currency && o.at <= as_of)
        .map(|o| (o.at, o.amount.amount_minor))
        .collect();
    let weeks: Vec<(f64, f64)> = orders
        .iter()
        .map(|(t, v)| (epoch_day(t.date_naive()) / 7.0, *v as f64))
        .collect();
    let summary = clv::summarise(&weeks, epoch_day(as_of.date_naive()) / 7.0);
    let rfm = orders.iter().map(|(t, _)| *t).max().map(|last| {
        let mut days: Vec<NaiveDate> = orders.iter().map(|(t, _)| t.date_naive()).collect();
        days.sort_unstable();
        days.dedup();
        RfmInput {
            recency_days: u32::try_from((as_of.date_naive() - last.date_naive()).num_days().max(0))
                .unwrap_or(u32::MAX),
            frequency: days.len() as u64,
            monetary: orders.iter().map(|(_, v)| *v as f64).sum(),
        }
    });
    History {
        summary,
        rfm,
        orders,
    }
}

/// Fits BG/NBD, Gamma-Gamma and the RFM thresholds over every customer, one fit per currency
/// (customers grouped by their [`main_currency`]; only orders in it count), as of `as_of`. A
/// model that cannot be fitted is left out with a note.
pub fn fit_models(
    facts: &[CustomerFacts],
    as_of: DateTime<Utc>,
    version: i64,
) -> Vec<FittedModels> {
    let mut by_currency: BTreeMap<&str, (Currency, Vec<CustomerSummary>, Vec<RfmInput>)> =
        BTreeMap::new();
    for f in facts {
        let Some(currency) = main_currency(&f.orders) else {
            continue;
        };
        let h = history(f, currency, as_of);
        let entry = by_currency
            .entry(currency.code())
            .or_insert_with(|| (currency, Vec::new(), Vec::new()));
        if let Some(s) = h.summary {
            entry.1.push(s);
        }
        if let Some(r) = h.rfm {
            entry.2.push(r);
        }
    }
    by_currency
        .into_values()
        .map(|(currency, summaries, rfm_inputs)| {
            let mut notes = Vec::new();
            let bg_nbd = BgNbd::fit(&summaries)
                .map_err(|e| notes.push(format!("BG/NBD: {e}")))
                .ok();
            let gamma_gamma = GammaGamma::fit(&summaries)
                .map_err(|e| notes.push(format!("Gamma-Gamma: {e}")))
                .ok();
            let rfm = RfmModel::fit(&rfm_inputs).map(|m| *m.thresholds());
            FittedModels {
                currency,
                version,
                fitted_at: as_of,
                customers: summaries.len() as u64,
                repeat_customers: summaries.iter().filter(|s| s.frequency > 0.0).count() as u64,
                bg_nbd,
                gamma_gamma,
                rfm,
                notes,
            }
        })
        .collect()
}

fn minor(value: f64) -> i64 {
    if value.is_finite() {
        // `as` saturates at the bounds of i64.
        value.round() as i64
    } else {
        0
    }
}

/// Every score of one customer as of `as_of`, with the fitted `models` (any currencies; the
/// customer's main currency is picked).
pub fn score_customer(
    facts: &CustomerFacts,
    models: &[FittedModels],
    as_of: DateTime<Utc>,
    config: &ScoreConfig,
) -> CustomerScores {
    let since = |days: i64| as_of - Duration::days(days);
    let count = |pred: &dyn Fn(&Signal) -> bool, days: Option<i64>| -> u32 {
        let n = facts
            .signals
            .iter()
            .filter(|s| s.at <= as_of && days.is_none_or(|d| s.at >= since(d)) && pred(s))
            .count();
        u32::try_from(n).unwrap_or(u32::MAX)
    };
    let is = |outcomes: &'static [&'static str]| {
        move |s: &Signal| outcomes.contains(&s.outcome.as_str())
    };
    let open_cases = count(&is(&OPEN_CASE_OUTCOMES), None);
    let recent_cases = count(
        &|s: &Signal| s.outcome.starts_with("CASE_"),
        Some(config.category.complaint_window_days),
    );
    let category = categorise(
        &CategoryInputs {
            latest_nps: facts.latest_nps,
            latest_csat: facts.latest_csat,
            latest_comment: facts
                .latest_comment
                .as_ref()
                .map(SurveyComment::dated_sentiment),
            open_cases,
            recent_cases,
        },
        as_of,
        &config.category,
    );

    let currency = main_currency(&facts.orders);
    let h = currency.map(|c| history(facts, c, as_of));
    let churn_window = Some(config.churn.event_window_days);
    let inputs = ChurnInputs {
        category: category.category,
        category_explanation: category.explanation.clone(),
        open_cases,
        failed_payments: count(
            &is(&["PAYMENT_FAILED"]),
            Some(config.churn.failed_payment_window_days),
        ),
        downgrades: count(&is(&["SUBSCRIPTION_DOWNGRADED"]), churn_window),
        cancellations: count(&is(&["SUBSCRIPTION_CANCELLED"]), churn_window),
        late_deliveries: count(&is(&["DELIVERED_LATE", "DELIVERY_FAILED"]), churn_window),
        returns: count(
            &|s: &Signal| s.outcome.starts_with("RETURNED_"),
            churn_window,
        ),
        ..ChurnInputs::from_orders(
            h.as_ref().map(|h| h.orders.as_slice()).unwrap_or_default(),
            as_of,
            &config.churn,
        )
    };
    let churn = churn::churn_score(&inputs, &config.churn);

    let fitted = currency.and_then(|c| models.iter().find(|m| m.currency == c));
    let clv = match (fitted, h.as_ref().and_then(|h| h.summary)) {
        (Some(m), Some(summary)) => m.bg_nbd.zip(m.gamma_gamma).map(|(bg, gg)| {
            let e = clv::clv(
                &bg,
                &gg,
                &summary,
                config.clv_horizon_weeks,
                config.weekly_discount_rate(),
            );
            ClvPart {
                currency: m.currency,
                horizon_weeks: config.clv_horizon_weeks,
                annual_discount_rate: config.annual_discount_rate,
                fit_version: m.version,
                summary,
                p_alive: e.p_alive,
                expected_purchases: e.expected_purchases,
                expected_spend_minor: minor(e.expected_spend),
                value_minor: minor(e.value),
            }
        }),
        _ => None,
    };
    let rfm = match (fitted, h.as_ref().and_then(|h| h.rfm)) {
        (Some(m), Some(input)) => m.rfm.map(|t| {
            let e = RfmModel::from_thresholds(t).explain(&input);
            RfmPart {
                input,
                r: e.score.recency,
                f: e.score.frequency,
                m: e.score.monetary,
                segment: e.score.segment,
                segment_rule: e.segment_rule.to_owned(),
                reasons: e.reasons,
                fit_version: m.version,
            }
        }),
        _ => None,
    };
    let model_version = match fitted {
        Some(m) => format!(
            "{SCORES_VERSION}; {CHURN_MODEL_VERSION}; fit {} {}",
            m.version,
            m.currency.code()
        ),
        None => format!("{SCORES_VERSION}; {CHURN_MODEL_VERSION}; no fit"),
    };
    CustomerScores {
        customer: facts.customer,
        as_of,
        model_version,
        category,
        churn,
        clv,
        rfm,
    }
}

/// Which scored customers to list.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ScoreFilter {
    /// Only this category.
    pub category: Option<CustomerCategory>,
    /// Only this churn band.
    pub churn_band: Option<ChurnBand>,
    /// Only this RFM segment.
    pub segment: Option<RfmSegment>,
    /// Only customers with a CLV in this currency of at least this amount.
    pub min_clv: Option<Money>,
}

/// The order of a listing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum ScoreOrder {
    /// Highest churn probability first (ties by customer id).
    ChurnDesc,
    /// Highest CLV first (ties by customer id); customers without a CLV are not listed.
    ClvDesc,
}

/// Where the incremental recompute has got to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScorePosition {
    /// The last change-log position handled.
    pub change_seq: i64,
    /// Survey responses received up to this time are handled.
    pub responses_through: DateTime<Utc>,
}

/// Storage of customer scores and the fitted models.
#[async_trait]
pub trait CustomerScoreRepo: Send + Sync {
    /// Live customers (not merged away), by id ascending, after `after`, at most `limit`.
    async fn live_customers(
        &self,
        after: Option<CustomerId>,
        limit: u32,
    ) -> Result<Vec<CustomerId>>;

    /// The facts of the live customers among `customers` as of `as_of` (the others are left
    /// out), with signals since `as_of − signal_days`.
    async fn customer_facts(
        &self,
        customers: &[CustomerId],
        as_of: DateTime<Utc>,
        signal_days: i64,
    ) -> Result<Vec<CustomerFacts>>;

    /// Replaces the fitted models with `models` and sets the incremental position, in one
    /// transaction.
    async fn save_models(&self, models: &[FittedModels], position: ScorePosition) -> Result<()>;

    /// The fitted models (empty before the first full recompute).
    async fn fitted_models(&self) -> Result<Vec<FittedModels>>;

    /// Writes scores (replacing earlier ones) of customers that are still live; answers how
    /// many were written.
    async fn save_scores(&self, scores: Vec<CustomerScores>) -> Result<u64>;

    /// Deletes the scores of `customers`; answers how many went.
    async fn delete_scores(&self, customers: &[CustomerId]) -> Result<u64>;

    /// Deletes the scores computed before `before` (a full recompute's leftovers: customers
    /// merged away or erased since); answers how many went.
    async fn delete_scores_before(&self, before: DateTime<Utc>) -> Result<u64>;

    /// Drops the secondary indexes of the stored scores (the listings' and the one
    /// [`delete_scores_before`](Self::delete_scores_before) reads) before a full recompute
    /// rewrites every row: building them once afterwards costs less than keeping them up to
    /// date row by row. Listings stay correct meanwhile, only slower.
    async fn pause_score_indexes(&self) -> Result<()>;

    /// Builds the indexes [`pause_score_indexes`](Self::pause_score_indexes) dropped (those
    /// missing; nothing when all exist). Also run when the store starts, in case a process
    /// stopped in between.
    async fn restore_score_indexes(&self) -> Result<()>;

    /// The scores of a customer, following merges to the survivor: the live id and its
    /// scores (`None` when not scored yet). `NOT_FOUND` for an unknown or erased customer.
    async fn customer_scores(
        &self,
        customer: CustomerId,
    ) -> Result<(CustomerId, Option<CustomerScores>)>;

    /// A page of scored live customers.
    async fn list_scores(
        &self,
        filter: &ScoreFilter,
        order: ScoreOrder,
        page: &PageRequest,
    ) -> Result<Page<CustomerScores>>;

    /// Where the incremental recompute has got to; `None` before the first full recompute.
    async fn score_position(&self) -> Result<Option<ScorePosition>>;

    /// Records the incremental position (never moves it backwards).
    async fn save_score_position(&self, position: ScorePosition) -> Result<()>;

    /// Customers with survey responses received in (`after`, `until`].
    async fn responding_customers(
        &self,
        after: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<Vec<CustomerId>>;
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use chrono::TimeZone;

    fn eur(minor: i64) -> Money {
        Money::new(minor, Currency::parse("EUR").unwrap())
    }

    fn day(n: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 1, 12, 0, 0).single().unwrap() + Duration::days(n)
    }

    #[test]
    fn the_full_recompute_is_due_after_its_interval_and_never_when_off() {
        let config = ScoreConfig::default();
        assert!(!config.full_recompute_due(day(0), day(0) + Duration::hours(23)));
        assert!(config.full_recompute_due(day(0), day(1)));
        let hourly = ScoreConfig {
            full_recompute_every_hours: 1.0,
            ..config
        };
        assert!(!hourly.full_recompute_due(day(0), day(0) + Duration::minutes(59)));
        assert!(hourly.full_recompute_due(day(0), day(0) + Duration::minutes(60)));
        for off in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            let never = ScoreConfig {
                full_recompute_every_hours: off,
                ..config
            };
            assert!(!never.full_recompute_due(day(0), day(400)), "{off}");
        }
    }

    fn facts(orders: &[(i64, i64)], signals: &[(&str, i64)]) -> CustomerFacts {
        CustomerFacts {
            customer: CustomerId::generate(),
            orders: orders
                .iter()
                .map(|&(d, v)| LedgerOrder {
                    at: day(d),
                    amount: eur(v),
                })
                .collect(),
            latest_nps: None,
            latest_csat: None,
            latest_comment: None,
            signals: signals
                .iter()
                .map(|&(o, d)| Signal {
                    outcome: o.into(),
                    at: day(d),
                })
                .collect(),
        }
    }

    #[test]
    fn signals_count_within_their_windows() {
        let f = facts(
            &[(0, 1000)],
            &[
                ("PAYMENT_FAILED", 95),
                ("PAYMENT_FAILED", 60), // 40 days before day 100: outside 30 days
                ("CASE_OPENED", 1),     // open cases count at any age
                ("RETURNED_DEFECTIVE", 50),
                ("DELIVERED_LATE", 5), // 95 days: outside 90
            ],
        );
        let s = score_customer(&f, &[], day(100), &ScoreConfig::default());
        let i = &s.churn.inputs;
        assert_eq!(
            (
                i.failed_payments,
                i.open_cases,
                i.returns,
                i.late_deliveries
            ),
            (1, 1, 1, 0)
        );
        assert_eq!(s.category.category, CustomerCategory::Negative);
        assert!(s.clv.is_none() && s.rfm.is_none());
        assert!(s.model_version.ends_with("no fit"));
    }

    #[test]
    fn fits_are_per_main_currency_and_score_the_customers_of_it() {
        let mut population = Vec::new();
        for i in 0..40 {
            // Customers buying every 7 + i % 5 days since day i, some stopping early.
            let step = 7 + i % 5;
            let stop = if i % 3 == 0 { 40 } else { 200 };
            let orders: Vec<(i64, i64)> = (0..)
                .map(|k| (i + k * step, 1000 + 100 * (i % 7) + 37 * ((k * k + i) % 11)))
                .take_while(|&(d, _)| d <= stop.min(200))
                .collect();
            population.push(facts(&orders, &[]));
        }
        let mut usd = facts(&[], &[]);
        usd.orders.push(LedgerOrder {
            at: day(3),
            amount: Money::new(500, Currency::parse("USD").unwrap()),
        });
        population.push(usd);
        let fitted = fit_models(&population, day(200), 1);
        assert_eq!(fitted.len(), 2);
        let eur = &fitted[0];
        assert_eq!(eur.currency.code(), "EUR");
        assert_eq!(eur.customers, 40);
        assert!(
            eur.bg_nbd.is_some() && eur.gamma_gamma.is_some() && eur.rfm.is_some(),
            "{eur:?}"
        );
        let usd = &fitted[1];
        assert!(usd.bg_nbd.is_none() && !usd.notes.is_empty());

        let s = score_customer(&population[1], &fitted, day(200), &ScoreConfig::default());
        let clv = s.clv.unwrap();
        assert_eq!(clv.fit_version, 1);
        assert!(clv.p_alive > 0.0 && clv.p_alive <= 1.0);
        assert!(clv.value_minor > 0);
        assert!(s.rfm.is_some());
        assert_eq!(
            s.model_version,
            "scores-1; churn-logit-default-1; fit 1 EUR"
        );
    }
}
