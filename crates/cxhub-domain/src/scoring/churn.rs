//! Churn risk: the probability that a customer drifts away, its band, and the reasons with their
//! contributions, from a logistic model over the customer's purchase history and experience.
//!
//! `logit(p) = intercept + Σ coefficientᵢ · featureᵢ`, `p = 1 / (1 + e^(−logit))`. Each
//! feature's term is its *contribution* (in log-odds): the reasons of a score are its positive
//! contributions, largest first, in words ("2 failed payments in 30 days").
//!
//! # Default coefficients ([`Coefficients::DEFAULT`], model [`CHURN_MODEL_VERSION`])
//!
//! The hub has no labelled churn outcomes when it starts, so the defaults are set by reasoning,
//! not fitted (once it has, [`churn_fit`](super::churn_fit) fits them on its history and uses
//! the fit when it beats them on held-out customers). They are chosen so that the baseline is a typical yearly churn and so that one strong signal moves a
//! customer to the medium band and two to the high band:
//!
//! | feature | coefficient | why |
//! |---|---|---|
//! | intercept | −2.0 | p ≈ 12 % for a customer with no signal: a common yearly churn rate in retail and subscriptions |
//! | overdue: ln(days since the last purchase ÷ usual interval), when above 1 | +1.0 per unit of log | 120 days against a usual 30 (4× overdue) adds ln 4 ≈ +1.39; being late by the usual interval again (2×) adds +0.69. Buy-till-you-die models (BG/NBD) make the same point: a long silence relative to one's own rate is the strongest sign of dropout |
//! | no purchase on record | +0.5 | a customer who never bought has no habit to keep |
//! | frequency: ln(1 + purchase occasions) | −0.25 | repeat buyers are stickier; 10 occasions take off 0.6 |
//! | spend trend: fall of the last window's spend against the window before, 0..1 | +0.8 | a customer whose spend halves gets +0.4 |
//! | category negative / advocate | +1.0 / −0.7 | detractors defect at roughly twice the rate of passives; promoters less |
//! | open support cases (at most 3 count) | +0.5 each | an unresolved problem |
//! | failed payments in the failed-payment window (at most 3) | +0.7 each | involuntary churn starts with failed payments |
//! | subscription downgrades in the event window (at most 2) | +0.6 each | a customer winding down |
//! | subscription cancellations in the event window (at most 2) | +1.5 each | the outcome itself, for a subscription among several |
//! | late or failed deliveries in the event window (at most 3) | +0.3 each | a broken promise |
//! | returns in the event window (at most 3) | +0.25 each | dissatisfaction with what was bought |
//!
//! Bands ([`ChurnConfig`]): low below 0.30, medium below 0.60, high from 0.60.

use std::cmp::Ordering;

use chrono::{DateTime, Duration, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use super::category::category_text;
use super::metrics::CustomerCategory;
use crate::text_enum::text_enum;

/// The version of the churn model and its default coefficients, stored with every score.
pub const CHURN_MODEL_VERSION: &str = "churn-logit-default-1";

text_enum!(
    /// A churn risk band.
    ChurnBand {
        /// Below the medium threshold.
        Low = "low",
        /// Between the medium and high thresholds.
        Medium = "medium",
        /// At or above the high threshold.
        High = "high",
    }
);

text_enum!(
    /// A feature of the churn model.
    ChurnFactor {
        /// Days since the last purchase against the customer's usual interval.
        Overdue = "overdue",
        /// The customer never bought.
        NoPurchase = "no_purchase",
        /// Number of purchase occasions.
        Frequency = "frequency",
        /// Spend falling between two windows.
        SpendTrend = "spend_trend",
        /// The customer's category.
        Category = "category",
        /// Support cases still open.
        OpenCases = "open_cases",
        /// Failed payments in the failed-payment window.
        FailedPayments = "failed_payments",
        /// Subscription downgrades in the event window.
        Downgrades = "downgrades",
        /// Subscription cancellations in the event window.
        Cancellations = "cancellations",
        /// Late or failed deliveries in the event window.
        LateDeliveries = "late_deliveries",
        /// Returns in the event window.
        Returns = "returns",
    }
);

/// The coefficients of the model (log-odds); see the module documentation for the defaults.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Coefficients {
    /// Log-odds of a customer with no signal.
    pub intercept: f64,
    /// Per unit of ln(days since the last purchase ÷ usual interval), when overdue.
    pub overdue: f64,
    /// When the customer never bought.
    pub no_purchase: f64,
    /// Per unit of ln(1 + purchase occasions).
    pub frequency: f64,
    /// Per unit of spend fall (0 = no fall, 1 = nothing spent in the last window).
    pub spend_trend: f64,
    /// When the category is negative.
    pub negative: f64,
    /// When the category is advocate.
    pub advocate: f64,
    /// Per open support case.
    pub open_case: f64,
    /// Per failed payment.
    pub failed_payment: f64,
    /// Per downgrade.
    pub downgrade: f64,
    /// Per cancellation.
    pub cancellation: f64,
    /// Per late or failed delivery.
    pub late_delivery: f64,
    /// Per return.
    pub r#return: f64,
}

impl Coefficients {
    /// The documented defaults.
    pub const DEFAULT: Coefficients = Coefficients {
        intercept: -2.0,
        overdue: 1.0,
        no_purchase: 0.5,
        frequency: -0.25,
        spend_trend: 0.8,
        negative: 1.0,
        advocate: -0.7,
        open_case: 0.5,
        failed_payment: 0.7,
        downgrade: 0.6,
        cancellation: 1.5,
        late_delivery: 0.3,
        r#return: 0.25,
    };
}

/// The number of coefficients of the model: the intercept and one per feature
/// ([`feature_values`]).
pub const COEFFICIENTS: usize = 13;

/// The names of the coefficients, in the order of [`Coefficients::to_array`] (the intercept,
/// then the features in the order of [`feature_values`]).
pub const COEFFICIENT_NAMES: [&str; COEFFICIENTS] = [
    "intercept",
    "overdue",
    "no_purchase",
    "frequency",
    "spend_trend",
    "negative",
    "advocate",
    "open_case",
    "failed_payment",
    "downgrade",
    "cancellation",
    "late_delivery",
    "return",
];

impl Coefficients {
    /// The coefficients in the order of [`COEFFICIENT_NAMES`].
    pub fn to_array(&self) -> [f64; COEFFICIENTS] {
        [
            self.intercept,
            self.overdue,
            self.no_purchase,
            self.frequency,
            self.spend_trend,
            self.negative,
            self.advocate,
            self.open_case,
            self.failed_payment,
            self.downgrade,
            self.cancellation,
            self.late_delivery,
            self.r#return,
        ]
    }

    /// The coefficients from the order of [`COEFFICIENT_NAMES`].
    pub fn from_array(v: [f64; COEFFICIENTS]) -> Coefficients {
        Coefficients {
            intercept: v[0],
            overdue: v[1],
            no_purchase: v[2],
            frequency: v[3],
            spend_trend: v[4],
            negative: v[5],
            advocate: v[6],
            open_case: v[7],
            failed_payment: v[8],
            downgrade: v[9],
            cancellation: v[10],
            late_delivery: v[11],
            r#return: v[12],
        }
    }
}

/// The value of each feature for `inputs`, in the order of [`COEFFICIENT_NAMES`] after the
/// intercept (whose value is always 1): a customer's log-odds are the intercept plus the dot
/// product of these with the feature coefficients, and each non-zero term is one
/// [`Contribution`] of [`churn_score`]. Counts are capped as the module documentation says.
pub fn feature_values(inputs: &ChurnInputs, config: &ChurnConfig) -> [f64; COEFFICIENTS - 1] {
    let counted = |n: u32, cap: u32| f64::from(n.min(cap));
    let (overdue, no_purchase) = match inputs.days_since_last_purchase {
        None => (0.0, 1.0),
        Some(days) => {
            let usual = match inputs.usual_interval_days {
                Some(usual) if usual > 0.0 => usual,
                _ => config.default_interval_days,
            };
            let ratio = days.max(0) as f64 / usual;
            (if ratio > 1.0 { ratio.ln() } else { 0.0 }, 0.0)
        }
    };
    let frequency = f64::from(inputs.purchase_occasions).ln_1p();
    let fall =
        if inputs.spend_before_minor > 0 && inputs.spend_recent_minor < inputs.spend_before_minor {
            1.0 - inputs.spend_recent_minor.max(0) as f64 / inputs.spend_before_minor as f64
        } else {
            0.0
        };
    let is = |c: CustomerCategory| if inputs.category == c { 1.0 } else { 0.0 };
    [
        overdue,
        no_purchase,
        frequency,
        fall,
        is(CustomerCategory::Negative),
        is(CustomerCategory::Advocate),
        counted(inputs.open_cases, 3),
        counted(inputs.failed_payments, 3),
        counted(inputs.downgrades, 2),
        counted(inputs.cancellations, 2),
        counted(inputs.late_deliveries, 3),
        counted(inputs.returns, 3),
    ]
}

impl Default for Coefficients {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// Windows, caps and band thresholds of the churn model.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ChurnConfig {
    /// The coefficients.
    pub coefficients: Coefficients,
    /// Usual interval between purchases assumed for a customer with a single purchase
    /// occasion, in days (default 60).
    pub default_interval_days: f64,
    /// Failed payments count within this many days (default 30).
    pub failed_payment_window_days: i64,
    /// Downgrades, cancellations, late deliveries, returns and recent cases count within this
    /// many days (default 90).
    pub event_window_days: i64,
    /// The spend trend compares the last this-many days with the same length before (default
    /// 90).
    pub trend_window_days: i64,
    /// A probability at or above this is medium (default 0.30).
    pub medium_from: f64,
    /// A probability at or above this is high (default 0.60).
    pub high_from: f64,
}

impl Default for ChurnConfig {
    fn default() -> Self {
        Self {
            coefficients: Coefficients::DEFAULT,
            default_interval_days: 60.0,
            failed_payment_window_days: 30,
            event_window_days: 90,
            trend_window_days: 90,
            medium_from: 0.30,
            high_from: 0.60,
        }
    }
}

impl ChurnConfig {
    /// The band of a probability.
    pub fn band(&self, probability: f64) -> ChurnBand {
        if probability >= self.high_from {
            ChurnBand::High
        } else if probability >= self.medium_from {
            ChurnBand::Medium
        } else {
            ChurnBand::Low
        }
    }
}

/// What the churn model looks at, summarised from the customer's history as of a time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChurnInputs {
    /// Whole days since the last purchase; `None` when the customer never bought.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub days_since_last_purchase: Option<i64>,
    /// Median days between consecutive purchase days; `None` with fewer than two.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usual_interval_days: Option<f64>,
    /// Purchase occasions (days with a placed order).
    pub purchase_occasions: u32,
    /// Spend in the last trend window, minor units of the customer's currency.
    pub spend_recent_minor: i64,
    /// Spend in the trend window before that.
    pub spend_before_minor: i64,
    /// The customer's category.
    pub category: CustomerCategory,
    /// The category decision in words. Not serialized: it is the explanation of the category
    /// decision stored beside the churn score, which the store puts back on read.
    #[serde(default, skip_serializing)]
    pub category_explanation: String,
    /// Support cases open now.
    #[serde(default, skip_serializing_if = "super::is_zero")]
    pub open_cases: u32,
    /// Failed payments in the failed-payment window.
    #[serde(default, skip_serializing_if = "super::is_zero")]
    pub failed_payments: u32,
    /// Subscription downgrades in the event window.
    #[serde(default, skip_serializing_if = "super::is_zero")]
    pub downgrades: u32,
    /// Subscription cancellations in the event window.
    #[serde(default, skip_serializing_if = "super::is_zero")]
    pub cancellations: u32,
    /// Late or failed deliveries in the event window.
    #[serde(default, skip_serializing_if = "super::is_zero")]
    pub late_deliveries: u32,
    /// Returns in the event window.
    #[serde(default, skip_serializing_if = "super::is_zero")]
    pub returns: u32,
}

impl ChurnInputs {
    /// Summarises purchase times and spend (`orders`: placed orders, minor units of one
    /// currency) as of `as_of`; orders after it are ignored. The other fields start at zero
    /// and neutral.
    pub fn from_orders(
        orders: &[(DateTime<Utc>, i64)],
        as_of: DateTime<Utc>,
        config: &ChurnConfig,
    ) -> ChurnInputs {
        let mut days: Vec<NaiveDate> = orders
            .iter()
            .filter(|(t, _)| *t <= as_of)
            .map(|(t, _)| t.date_naive())
            .collect();
        days.sort_unstable();
        days.dedup();
        let last = orders
            .iter()
            .filter(|(t, _)| *t <= as_of)
            .map(|(t, _)| *t)
            .max();
        let mut gaps: Vec<f64> = days
            .windows(2)
            .map(|w| (w[1] - w[0]).num_days() as f64)
            .collect();
        gaps.sort_by(f64::total_cmp);
        let usual = match gaps.len() {
            0 => None,
            n if n % 2 == 1 => Some(gaps[n / 2]),
            n => Some(0.5 * (gaps[n / 2 - 1] + gaps[n / 2])),
        };
        let window = Duration::days(config.trend_window_days);
        let spend = |from: DateTime<Utc>, to: DateTime<Utc>| -> i64 {
            orders
                .iter()
                .filter(|(t, _)| *t > from && *t <= to)
                .map(|(_, v)| *v)
                .fold(0i64, i64::saturating_add)
        };
        ChurnInputs {
            days_since_last_purchase: last.map(|t| (as_of - t).num_days()),
            usual_interval_days: usual,
            purchase_occasions: u32::try_from(days.len()).unwrap_or(u32::MAX),
            spend_recent_minor: spend(as_of - window, as_of),
            spend_before_minor: spend(as_of - window - window, as_of - window),
            category: CustomerCategory::Neutral,
            category_explanation: String::new(),
            open_cases: 0,
            failed_payments: 0,
            downgrades: 0,
            cancellations: 0,
            late_deliveries: 0,
            returns: 0,
        }
    }
}

/// One feature's part of a score.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Contribution {
    /// The feature.
    pub factor: ChurnFactor,
    /// Its term in the log-odds (positive raises the risk).
    pub contribution: f64,
    /// The reason in words, e.g. "2 failed payments in 30 days".
    pub reason: String,
}

/// A churn score and how it came about.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChurnScore {
    /// Probability of churn, 0..1.
    pub probability: f64,
    /// The band of the probability.
    pub band: ChurnBand,
    /// The intercept of the model.
    pub intercept: f64,
    /// Every non-zero contribution, largest first (risk-raising before protective ones).
    pub contributions: Vec<Contribution>,
    /// What the model looked at.
    pub inputs: ChurnInputs,
    /// The model version ([`CHURN_MODEL_VERSION`]).
    pub model_version: String,
}

impl ChurnScore {
    /// The reasons that raise the risk, largest first, at most `n`.
    pub fn top_reasons(&self, n: usize) -> impl Iterator<Item = &Contribution> {
        self.contributions
            .iter()
            .filter(|c| c.contribution > 0.0)
            .take(n)
    }
}

fn plural(n: u32, one: &str, many: &str) -> String {
    if n == 1 {
        format!("1 {one}")
    } else {
        format!("{n} {many}")
    }
}

/// Scores one customer; see the module documentation.
pub fn churn_score(inputs: &ChurnInputs, config: &ChurnConfig) -> ChurnScore {
    let k = &config.coefficients;
    let mut parts: Vec<Contribution> = Vec::new();
    let mut add = |factor, contribution: f64, reason: String| {
        if contribution != 0.0 && contribution.is_finite() {
            parts.push(Contribution {
                factor,
                contribution,
                reason,
            });
        }
    };
    match inputs.days_since_last_purchase {
        None => add(
            ChurnFactor::NoPurchase,
            k.no_purchase,
            "no purchase on record".to_owned(),
        ),
        Some(days) => {
            let (usual, how) = match inputs.usual_interval_days {
                Some(usual) if usual > 0.0 => (usual, ""),
                _ => (
                    config.default_interval_days,
                    " (one purchase day only: assumed)",
                ),
            };
            let ratio = days.max(0) as f64 / usual;
            if ratio > 1.0 {
                add(
                    ChurnFactor::Overdue,
                    k.overdue * ratio.ln(),
                    format!("no purchase in {days} days vs usual {usual:.0}{how}"),
                );
            }
        }
    }
    if inputs.purchase_occasions > 0 {
        add(
            ChurnFactor::Frequency,
            k.frequency * f64::from(inputs.purchase_occasions).ln_1p(),
            plural(inputs.purchase_occasions, "purchase day", "purchase days"),
        );
    }
    if inputs.spend_before_minor > 0 && inputs.spend_recent_minor < inputs.spend_before_minor {
        let fall = 1.0 - inputs.spend_recent_minor.max(0) as f64 / inputs.spend_before_minor as f64;
        add(
            ChurnFactor::SpendTrend,
            k.spend_trend * fall,
            format!(
                "spend down {:.0} % in the last {} days against the {} days before",
                100.0 * fall,
                config.trend_window_days,
                config.trend_window_days
            ),
        );
    }
    let category = match inputs.category {
        CustomerCategory::Negative => k.negative,
        CustomerCategory::Neutral => 0.0,
        CustomerCategory::Advocate => k.advocate,
    };
    add(
        ChurnFactor::Category,
        category,
        format!(
            "{} ({})",
            category_text(inputs.category),
            inputs.category_explanation
        ),
    );
    let counted = |n: u32, cap: u32| f64::from(n.min(cap));
    add(
        ChurnFactor::OpenCases,
        k.open_case * counted(inputs.open_cases, 3),
        plural(
            inputs.open_cases,
            "unresolved support case",
            "unresolved support cases",
        ),
    );
    add(
        ChurnFactor::FailedPayments,
        k.failed_payment * counted(inputs.failed_payments, 3),
        format!(
            "{} in {} days",
            plural(inputs.failed_payments, "failed payment", "failed payments"),
            config.failed_payment_window_days
        ),
    );
    let window = config.event_window_days;
    add(
        ChurnFactor::Downgrades,
        k.downgrade * counted(inputs.downgrades, 2),
        format!(
            "{} in {window} days",
            plural(
                inputs.downgrades,
                "subscription downgrade",
                "subscription downgrades"
            )
        ),
    );
    add(
        ChurnFactor::Cancellations,
        k.cancellation * counted(inputs.cancellations, 2),
        format!(
            "{} in {window} days",
            plural(
                inputs.cancellations,
                "subscription cancellation",
                "subscription cancellations"
            )
        ),
    );
    add(
        ChurnFactor::LateDeliveries,
        k.late_delivery * counted(inputs.late_deliveries, 3),
        format!(
            "{} in {window} days",
            plural(
                inputs.late_deliveries,
                "late or failed delivery",
                "late or failed deliveries"
            )
        ),
    );
    add(
        ChurnFactor::Returns,
        k.r#return * counted(inputs.returns, 3),
        format!(
            "{} in {window} days",
            plural(inputs.returns, "return", "returns")
        ),
    );
    parts.sort_by(|a, b| {
        b.contribution
            .partial_cmp(&a.contribution)
            .unwrap_or(Ordering::Equal)
    });
    let logit = k.intercept + parts.iter().map(|c| c.contribution).sum::<f64>();
    let probability = 1.0 / (1.0 + (-logit).exp());
    ChurnScore {
        probability,
        band: config.band(probability),
        intercept: k.intercept,
        contributions: parts,
        inputs: inputs.clone(),
        model_version: CHURN_MODEL_VERSION.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use chrono::TimeZone;

    fn day(n: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 1, 12, 0, 0).single().unwrap() + Duration::days(n)
    }

    fn quiet() -> ChurnInputs {
        ChurnInputs {
            category_explanation: "no signal".into(),
            ..ChurnInputs::from_orders(&[], day(0), &ChurnConfig::default())
        }
    }

    #[test]
    fn a_customer_with_no_signal_scores_the_baseline_plus_no_purchase() {
        let s = churn_score(&quiet(), &ChurnConfig::default());
        // −2.0 + 0.5 = −1.5 → 1 / (1 + e^1.5) = 0.18243.
        assert!(
            (s.probability - 0.182_426).abs() < 1e-6,
            "{}",
            s.probability
        );
        assert_eq!(s.band, ChurnBand::Low);
        assert_eq!(s.top_reasons(3).count(), 1);
        assert_eq!(s.contributions[0].reason, "no purchase on record");
    }

    #[test]
    fn reasons_read_as_written_with_their_contributions() {
        // Purchases every 30 days from day 0 to day 90, then silence until day 210.
        let orders: Vec<(DateTime<Utc>, i64)> = (0..4).map(|i| (day(30 * i), 5_000)).collect();
        let config = ChurnConfig::default();
        let inputs = ChurnInputs {
            category: CustomerCategory::Negative,
            category_explanation: "detractor: NPS 3 on 2026-03-02".into(),
            failed_payments: 2,
            ..ChurnInputs::from_orders(&orders, day(210), &config)
        };
        assert_eq!(inputs.days_since_last_purchase, Some(120));
        assert_eq!(inputs.usual_interval_days, Some(30.0));
        assert_eq!(inputs.purchase_occasions, 4);
        // Days 60 and 90 are in the window before, (30, 120]; nothing in (120, 210].
        assert_eq!(
            (inputs.spend_recent_minor, inputs.spend_before_minor),
            (0, 10_000)
        );
        let s = churn_score(&inputs, &config);
        let reasons: Vec<(&str, f64)> = s
            .contributions
            .iter()
            .map(|c| (c.reason.as_str(), c.contribution))
            .collect();
        let ln4 = 4f64.ln();
        let expected = [
            ("2 failed payments in 30 days", 1.4),
            ("no purchase in 120 days vs usual 30", ln4),
            ("negative (detractor: NPS 3 on 2026-03-02)", 1.0),
            (
                "spend down 100 % in the last 90 days against the 90 days before",
                0.8,
            ),
            ("4 purchase days", -0.25 * 5f64.ln()),
        ];
        assert_eq!(reasons.len(), expected.len(), "{reasons:?}");
        for ((got, gv), (want, wv)) in reasons.iter().zip(expected) {
            assert_eq!(*got, want);
            assert!((gv - wv).abs() < 1e-12, "{got}: {gv} vs {wv}");
        }
        let logit = -2.0 + 1.4 + ln4 + 1.0 + 0.8 - 0.25 * 5f64.ln();
        assert!((s.probability - 1.0 / (1.0 + (-logit).exp())).abs() < 1e-12);
        assert_eq!(s.band, ChurnBand::High);
        let top: Vec<&str> = s.top_reasons(3).map(|c| c.reason.as_str()).collect();
        assert_eq!(
            top,
            [
                "2 failed payments in 30 days",
                "no purchase in 120 days vs usual 30",
                "negative (detractor: NPS 3 on 2026-03-02)"
            ]
        );
        assert_eq!(s.model_version, CHURN_MODEL_VERSION);
    }

    #[test]
    fn one_purchase_day_uses_the_default_interval_and_advocates_are_protected() {
        let config = ChurnConfig::default();
        let same_day = [(day(0), 1_000), (day(0) + Duration::hours(2), 500)];
        let inputs = ChurnInputs {
            category: CustomerCategory::Advocate,
            category_explanation: "promoter: NPS 10 on 2026-01-01".into(),
            ..ChurnInputs::from_orders(&same_day, day(120) + Duration::hours(2), &config)
        };
        assert_eq!(inputs.purchase_occasions, 1);
        assert_eq!(inputs.usual_interval_days, None);
        let s = churn_score(&inputs, &config);
        let overdue = s
            .contributions
            .iter()
            .find(|c| c.factor == ChurnFactor::Overdue)
            .unwrap();
        assert_eq!(
            overdue.reason,
            "no purchase in 120 days vs usual 60 (one purchase day only: assumed)"
        );
        assert!((overdue.contribution - 2f64.ln()).abs() < 1e-12);
        let last = s.contributions.last().unwrap();
        assert_eq!(last.factor, ChurnFactor::Category);
        assert!((last.contribution + 0.7).abs() < 1e-12);
        assert!(s.top_reasons(5).all(|c| c.contribution > 0.0));
    }

    #[test]
    fn feature_values_times_coefficients_are_the_contributions() {
        let config = ChurnConfig {
            coefficients: Coefficients::from_array([
                -1.1, 0.9, 0.4, -0.3, 0.7, 1.2, -0.5, 0.45, 0.8, 0.65, 1.4, 0.35, 0.2,
            ]),
            ..ChurnConfig::default()
        };
        let orders: Vec<(DateTime<Utc>, i64)> =
            (0..5).map(|i| (day(20 * i), 4_000 - 500 * i)).collect();
        let cases = [
            ChurnInputs::from_orders(&orders, day(200), &config),
            quiet(),
            ChurnInputs {
                category: CustomerCategory::Negative,
                open_cases: 5,
                failed_payments: 2,
                downgrades: 3,
                cancellations: 1,
                late_deliveries: 4,
                returns: 1,
                ..ChurnInputs::from_orders(&orders[..1], day(130), &config)
            },
            ChurnInputs {
                category: CustomerCategory::Advocate,
                ..ChurnInputs::from_orders(&orders, day(85), &config)
            },
        ];
        let k = config.coefficients.to_array();
        assert_eq!(Coefficients::from_array(k), config.coefficients);
        for inputs in &cases {
            let s = churn_score(inputs, &config);
            let x = feature_values(inputs, &config);
            let logit: f64 = k[0] + x.iter().zip(&k[1..]).map(|(x, k)| x * k).sum::<f64>();
            let from_parts =
                s.intercept + s.contributions.iter().map(|c| c.contribution).sum::<f64>();
            assert!(
                (logit - from_parts).abs() < 1e-12,
                "{inputs:?}: {logit} vs {from_parts}"
            );
            let nonzero = x.iter().filter(|v| **v != 0.0).count();
            assert_eq!(nonzero, s.contributions.len(), "{inputs:?}");
        }
    }

    #[test]
    fn counts_are_capped_and_bands_follow_the_thresholds() {
        let config = ChurnConfig::default();
        let many = ChurnInputs {
            failed_payments: 10,
            ..quiet()
        };
        let three = ChurnInputs {
            failed_payments: 3,
            ..quiet()
        };
        assert_eq!(
            churn_score(&many, &config).probability,
            churn_score(&three, &config).probability
        );
        assert_eq!(config.band(0.2999), ChurnBand::Low);
        assert_eq!(config.band(0.30), ChurnBand::Medium);
        assert_eq!(config.band(0.5999), ChurnBand::Medium);
        assert_eq!(config.band(0.60), ChurnBand::High);
    }

    #[test]
    fn stored_inputs_leave_out_empty_counts_and_the_category_explanation_and_read_old_rows() {
        let quiet = quiet();
        let json = serde_json::to_string(&quiet).unwrap();
        assert_eq!(
            json,
            r#"{"purchase_occasions":0,"spend_recent_minor":0,"spend_before_minor":0,"category":"Neutral"}"#
        );
        let back: ChurnInputs = serde_json::from_str(&json).unwrap();
        assert_eq!(
            back,
            ChurnInputs {
                category_explanation: String::new(),
                ..quiet.clone()
            }
        );
        // A row stored with every key, as before, reads as it was written.
        let old = r#"{"days_since_last_purchase":null,"usual_interval_days":null,"purchase_occasions":0,"spend_recent_minor":0,"spend_before_minor":0,"category":"Neutral","category_explanation":"no signal","open_cases":0,"failed_payments":0,"downgrades":0,"cancellations":0,"late_deliveries":0,"returns":0}"#;
        assert_eq!(serde_json::from_str::<ChurnInputs>(old).unwrap(), quiet);
        // Counts that are not zero are kept.
        let busy = ChurnInputs {
            failed_payments: 2,
            returns: 1,
            ..quiet
        };
        let json = serde_json::to_string(&busy).unwrap();
        assert!(
            json.contains(r#""failed_payments":2"#) && json.contains(r#""returns":1"#),
            "{json}"
        );
        assert_eq!(
            serde_json::from_str::<ChurnInputs>(&json)
                .unwrap()
                .failed_payments,
            2
        );
    }
}
