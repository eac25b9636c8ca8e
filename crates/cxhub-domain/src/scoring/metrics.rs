//! Survey metrics: answer validation, NPS categories, mergeable accumulators for NPS, CSAT and
//! CES with 95 % confidence intervals, trend tests between two periods, and the experience gap
//! between a touchpoint's intended and measured experience.
//!
//! Every accumulator ([`NpsCounts`], [`CsatCounts`], [`CesStats`]) is a handful of integer counts
//! that merge by addition, so a report grouped by touchpoint, channel or month can be computed in
//! one pass over responses, or assembled from partial counts a SQL `GROUP BY` returned, or rolled
//! up from sub-touchpoints into main ones, and always gives the same result (merging is exact,
//! associative and commutative).
//!
//! Conventions:
//! - NPS is in points, −100..=100; CSAT is the percentage of satisfied answers (4 or 5 of 5),
//!   0..=100; CES is the mean answer on 1..=7, where 7 means "very easy" (CES 2.0 wording, as the
//!   touchpoint contract defines it). Higher is better for all three.
//! - Intervals are at 95 % confidence; trend tests are two-sided at α = 0.05.
//! - No result ever holds NaN or an infinity: an empty group gives `None`, and degenerate cases
//!   (zero variance, a single answer) are spelled out on the function that meets them.
//! - Small groups are flagged (`small_sample`), never hidden; the threshold is
//!   [`MetricOptions::small_sample_below`].
//!
//! Normal and Student-t quantiles and tail probabilities come from the `statrs` crate.

use std::cmp::Ordering;
use std::iter::Sum;
use std::ops::{Add, AddAssign};

use serde::{Deserialize, Serialize};
use statrs::distribution::{ContinuousCDF, Normal, StudentsT};

/// Significance level of the trend tests ([`nps_change`], [`csat_change`], [`ces_change`]).
pub const ALPHA: f64 = 0.05;

/// Groups with fewer responses than this are flagged as small by default.
pub const DEFAULT_SMALL_SAMPLE_BELOW: u64 = 30;

// ---------------------------------------------------------------------------------------------
// Survey kinds and answers
// ---------------------------------------------------------------------------------------------

/// The kind of a survey question, which fixes its answer scale.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SurveyKind {
    /// Net Promoter Score: "how likely are you to recommend us", 0..=10.
    Nps,
    /// Customer satisfaction, 1..=5 (4 and 5 count as satisfied).
    Csat,
    /// Customer effort score, 1..=7 (7 = very easy).
    Ces,
    /// A custom integer scale from `min` to `max`, both included; `min` must be below `max`.
    Custom {
        /// Lowest allowed answer.
        min: i32,
        /// Highest allowed answer.
        max: i32,
    },
}

impl SurveyKind {
    /// The inclusive answer scale `(min, max)`.
    pub fn scale(self) -> (i32, i32) {
        match self {
            SurveyKind::Nps => (0, 10),
            SurveyKind::Csat => (1, 5),
            SurveyKind::Ces => (1, 7),
            SurveyKind::Custom { min, max } => (min, max),
        }
    }

    /// Short name used in messages: `NPS`, `CSAT`, `CES` or `custom`.
    pub fn name(self) -> &'static str {
        match self {
            SurveyKind::Nps => "NPS",
            SurveyKind::Csat => "CSAT",
            SurveyKind::Ces => "CES",
            SurveyKind::Custom { .. } => "custom",
        }
    }

    /// Checks the kind itself: a custom scale needs `min < max` (a one-point scale measures
    /// nothing). The error is a sentence for a field violation.
    pub fn validate(self) -> Result<(), String> {
        match self {
            SurveyKind::Custom { min, max } if min >= max => Err(format!(
                "custom scale {min}–{max} is empty: min must be below max"
            )),
            _ => Ok(()),
        }
    }

    /// Checks one answer against the scale and returns it. The error is a sentence for a field
    /// violation, naming the scale; an invalid custom scale refuses every answer.
    pub fn check_answer(self, answer: i32) -> Result<i32, String> {
        self.validate()?;
        let (min, max) = self.scale();
        if (min..=max).contains(&answer) {
            Ok(answer)
        } else {
            Err(format!(
                "answer {answer} is outside the {} scale {min}–{max}",
                self.name()
            ))
        }
    }
}

/// Where an NPS answer puts the respondent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum NpsCategory {
    /// Answered 0 to 6.
    Detractor,
    /// Answered 7 or 8.
    Passive,
    /// Answered 9 or 10.
    Promoter,
}

impl NpsCategory {
    /// The category of an NPS answer, or `None` when it is outside 0..=10.
    pub fn of(answer: i32) -> Option<Self> {
        match answer {
            0..=6 => Some(NpsCategory::Detractor),
            7 | 8 => Some(NpsCategory::Passive),
            9 | 10 => Some(NpsCategory::Promoter),
            _ => None,
        }
    }

    /// The customer profile category this NPS category maps to.
    pub fn customer_category(self) -> CustomerCategory {
        match self {
            NpsCategory::Detractor => CustomerCategory::Negative,
            NpsCategory::Passive => CustomerCategory::Neutral,
            NpsCategory::Promoter => CustomerCategory::Advocate,
        }
    }
}

/// The customer profile category of customer-experience management: detractors are negative,
/// passives neutral, promoters advocates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum CustomerCategory {
    /// Had a negative experience (an NPS detractor).
    Negative,
    /// Neither negative nor an advocate (an NPS passive).
    Neutral,
    /// Recommends the company (an NPS promoter).
    Advocate,
}

impl From<NpsCategory> for CustomerCategory {
    fn from(category: NpsCategory) -> Self {
        category.customer_category()
    }
}

// ---------------------------------------------------------------------------------------------
// Results shared by the three metrics
// ---------------------------------------------------------------------------------------------

/// Options of a score computation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetricOptions {
    /// A result with fewer responses than this is flagged `small_sample` (default 30).
    pub small_sample_below: u64,
}

impl Default for MetricOptions {
    fn default() -> Self {
        Self {
            small_sample_below: DEFAULT_SMALL_SAMPLE_BELOW,
        }
    }
}

/// Which metric an [`Estimate`] measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Metric {
    /// Net Promoter Score, in points (−100..=100).
    Nps,
    /// Percentage of satisfied CSAT answers (0..=100).
    Csat,
    /// Mean CES answer (1..=7).
    Ces,
}

/// A measured value with its 95 % confidence interval, whatever the metric: the common shape
/// that [`gap`] and the reports use. Made from [`NpsScore`], [`CsatScore`] or [`CesScore`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Estimate {
    /// The metric measured.
    pub metric: Metric,
    /// The point estimate, in the metric's unit.
    pub value: f64,
    /// Number of responses.
    pub n: u64,
    /// Half-width of the interval before it is clipped to the scale (for CSAT's asymmetric
    /// Wilson interval: half its width).
    pub margin_of_error_95: f64,
    /// Lower end of the 95 % interval.
    pub ci_low: f64,
    /// Upper end of the 95 % interval.
    pub ci_high: f64,
    /// Whether `n` is below the small-sample threshold: shown, but to be read with care.
    pub small_sample: bool,
}

fn z_975() -> f64 {
    Normal::standard().inverse_cdf(0.975)
}

fn two_sided_normal_p(z: f64) -> f64 {
    (2.0 * Normal::standard().sf(z.abs())).min(1.0)
}

pub(crate) fn students_t(df: f64) -> Option<StudentsT> {
    StudentsT::new(0.0, 1.0, df).ok()
}

fn ratio(count: u64, n: u64) -> f64 {
    count as f64 / n as f64
}

// ---------------------------------------------------------------------------------------------
// NPS
// ---------------------------------------------------------------------------------------------

/// Counts of NPS answers by category: a mergeable accumulator (add two with `+`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct NpsCounts {
    /// Answers 9–10.
    pub promoters: u64,
    /// Answers 7–8.
    pub passives: u64,
    /// Answers 0–6.
    pub detractors: u64,
}

impl NpsCounts {
    /// No answers yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Counts from the number of answers for each value 0..=10 (`counts[a]` answered `a`).
    pub fn from_answer_counts(counts: &[u64; 11]) -> Self {
        let sum = |r: std::ops::RangeInclusive<usize>| {
            counts[r].iter().fold(0u64, |a, &c| a.saturating_add(c))
        };
        Self {
            detractors: sum(0..=6),
            passives: sum(7..=8),
            promoters: sum(9..=10),
        }
    }

    /// Adds one answer; refuses (and leaves the counts unchanged) an answer outside 0..=10.
    pub fn add_answer(&mut self, answer: i32) -> Result<(), String> {
        let answer = SurveyKind::Nps.check_answer(answer)?;
        if let Some(category) = NpsCategory::of(answer) {
            self.add_category(category);
        }
        Ok(())
    }

    /// Adds one respondent of the given category.
    pub fn add_category(&mut self, category: NpsCategory) {
        let slot = match category {
            NpsCategory::Promoter => &mut self.promoters,
            NpsCategory::Passive => &mut self.passives,
            NpsCategory::Detractor => &mut self.detractors,
        };
        *slot = slot.saturating_add(1);
    }

    /// Adds another accumulator's counts to this one.
    pub fn merge(&mut self, other: &Self) {
        self.promoters = self.promoters.saturating_add(other.promoters);
        self.passives = self.passives.saturating_add(other.passives);
        self.detractors = self.detractors.saturating_add(other.detractors);
    }

    /// Number of answers.
    pub fn n(&self) -> u64 {
        self.promoters
            .saturating_add(self.passives)
            .saturating_add(self.detractors)
    }

    /// The variance of one answer's promoter-minus-detractor indicator (+1 promoter, 0 passive,
    /// −1 detractor), `p_P + p_D − (p_P − p_D)²`, computed from exact integer counts so that a
    /// group of a single category has exactly zero variance. `None` when empty.
    fn indicator_variance(&self) -> Option<f64> {
        let n = u128::from(self.n());
        if n == 0 {
            return None;
        }
        let p = i128::from(self.promoters);
        let d = i128::from(self.detractors);
        // n² · var = (P + D)·n − (P − D)², never negative.
        let scaled = (p + d) * n as i128 - (p - d) * (p - d);
        Some(scaled.max(0) as f64 / (n * n) as f64)
    }

    /// The NPS with its 95 % interval and the default small-sample threshold; `None` when there
    /// are no answers.
    pub fn score(&self) -> Option<NpsScore> {
        self.score_with(&MetricOptions::default())
    }

    /// The NPS with its 95 % interval; `None` when there are no answers.
    ///
    /// NPS = 100 · (p_P − p_D). It is the mean of an indicator worth +1 for a promoter, 0 for a
    /// passive and −1 for a detractor, whose variance is `p_P + p_D − (p_P − p_D)²`; the
    /// standard error is `sqrt(var / n)` and the interval `NPS ± 1.96 · 100 · SE` (a Wald
    /// interval for the mean of a three-valued outcome, the Wald interval studied by Rocks,
    /// "Interval estimation for the 'Net Promoter Score'", The American Statistician 70(4), 2016).
    /// The ends are clipped to −100..=100; `margin_of_error_95` is the unclipped half-width.
    ///
    /// When every answer falls in one category (all promoters, say) the variance is zero and the
    /// interval degenerates to the single point `[score, score]` with a zero margin: the data
    /// show no spread, not certainty. With few answers this is common, which is what
    /// `small_sample` warns about (a single answer always gives such a point).
    pub fn score_with(&self, options: &MetricOptions) -> Option<NpsScore> {
        let n = self.n();
        let var = self.indicator_variance()?;
        let score = 100.0 * (ratio(self.promoters, n) - ratio(self.detractors, n));
        let margin = 100.0 * z_975() * (var / n as f64).sqrt();
        Some(NpsScore {
            score,
            n,
            promoters_pct: 100.0 * ratio(self.promoters, n),
            passives_pct: 100.0 * ratio(self.passives, n),
            detractors_pct: 100.0 * ratio(self.detractors, n),
            margin_of_error_95: margin,
            ci_low: (score - margin).clamp(-100.0, 100.0),
            ci_high: (score + margin).clamp(-100.0, 100.0),
            small_sample: n < options.small_sample_below,
        })
    }
}

impl AddAssign for NpsCounts {
    fn add_assign(&mut self, other: Self) {
        self.merge(&other);
    }
}

impl Add for NpsCounts {
    type Output = Self;
    fn add(mut self, other: Self) -> Self {
        self.merge(&other);
        self
    }
}

impl Sum for NpsCounts {
    fn sum<I: Iterator<Item = Self>>(iter: I) -> Self {
        iter.fold(Self::new(), Add::add)
    }
}

impl FromIterator<NpsCategory> for NpsCounts {
    fn from_iter<I: IntoIterator<Item = NpsCategory>>(iter: I) -> Self {
        let mut counts = Self::new();
        for category in iter {
            counts.add_category(category);
        }
        counts
    }
}

/// A Net Promoter Score with its 95 % confidence interval; see [`NpsCounts::score_with`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct NpsScore {
    /// % promoters − % detractors, −100..=100.
    pub score: f64,
    /// Number of answers (at least 1).
    pub n: u64,
    /// Percentage of promoters.
    pub promoters_pct: f64,
    /// Percentage of passives.
    pub passives_pct: f64,
    /// Percentage of detractors.
    pub detractors_pct: f64,
    /// Half-width of the 95 % interval, in NPS points, before clipping.
    pub margin_of_error_95: f64,
    /// Lower end of the 95 % interval, at least −100.
    pub ci_low: f64,
    /// Upper end of the 95 % interval, at most 100.
    pub ci_high: f64,
    /// Whether `n` is below the small-sample threshold.
    pub small_sample: bool,
}

impl NpsScore {
    /// The score as a generic [`Estimate`].
    pub fn estimate(&self) -> Estimate {
        Estimate {
            metric: Metric::Nps,
            value: self.score,
            n: self.n,
            margin_of_error_95: self.margin_of_error_95,
            ci_low: self.ci_low,
            ci_high: self.ci_high,
            small_sample: self.small_sample,
        }
    }
}

impl From<NpsScore> for Estimate {
    fn from(score: NpsScore) -> Self {
        score.estimate()
    }
}

// ---------------------------------------------------------------------------------------------
// CSAT
// ---------------------------------------------------------------------------------------------

/// Counts of CSAT answers per value: a mergeable accumulator (add two with `+`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct CsatCounts {
    /// `counts[a - 1]` is the number of answers `a`, for `a` in 1..=5.
    pub counts: [u64; 5],
}

/// Bounds of the Wilson score interval for `successes` out of `n > 0`, as proportions.
///
/// Centre `(p̂ + z²/2n) / (1 + z²/n)`, half-width `z / (1 + z²/n) · sqrt(p̂(1 − p̂)/n + z²/4n²)`
/// (Wilson, "Probable inference, the law of succession, and statistical inference", JASA 1927;
/// recommended by Newcombe, Statistics in Medicine 17:857–872, 1998, and by Brown, Cai &
/// DasGupta, Statistical Science 16:101–133, 2001).
pub(crate) fn wilson(successes: u64, n: u64) -> (f64, f64) {
    let nf = n as f64;
    let p = ratio(successes, n);
    let z = z_975();
    let z2 = z * z;
    let denominator = 1.0 + z2 / nf;
    let centre = (p + z2 / (2.0 * nf)) / denominator;
    let half = z / denominator * (p * (1.0 - p) / nf + z2 / (4.0 * nf * nf)).sqrt();
    // At 0 and n successes the bound is exactly 0 (or 1); rounding would leave a hair above it.
    let low = if successes == 0 {
        0.0
    } else {
        (centre - half).max(0.0)
    };
    let high = if successes >= n {
        1.0
    } else {
        (centre + half).min(1.0)
    };
    (low, high)
}

impl CsatCounts {
    /// No answers yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one answer; refuses (and leaves the counts unchanged) an answer outside 1..=5.
    pub fn add_answer(&mut self, answer: i32) -> Result<(), String> {
        let answer = SurveyKind::Csat.check_answer(answer)?;
        if let Some(slot) = usize::try_from(answer - 1)
            .ok()
            .and_then(|i| self.counts.get_mut(i))
        {
            *slot = slot.saturating_add(1);
        }
        Ok(())
    }

    /// Adds another accumulator's counts to this one.
    pub fn merge(&mut self, other: &Self) {
        for (mine, theirs) in self.counts.iter_mut().zip(other.counts) {
            *mine = mine.saturating_add(theirs);
        }
    }

    /// Number of answers.
    pub fn n(&self) -> u64 {
        self.counts.iter().fold(0u64, |a, &c| a.saturating_add(c))
    }

    /// Number of satisfied answers (4 or 5).
    pub fn satisfied(&self) -> u64 {
        self.counts[3].saturating_add(self.counts[4])
    }

    /// The CSAT with its 95 % interval and the default small-sample threshold; `None` when there
    /// are no answers.
    pub fn score(&self) -> Option<CsatScore> {
        self.score_with(&MetricOptions::default())
    }

    /// The percentage of satisfied answers (4 or 5 of 5) with a 95 % Wilson score interval;
    /// `None` when there are no answers.
    ///
    /// Unlike the textbook `p ± 1.96·sqrt(p(1 − p)/n)`, the Wilson interval stays within 0..=100
    /// and does not collapse when every answer is satisfied (30 of 30 gives about 88.6–100), so
    /// a small all-satisfied group still shows how little it proves. The interval is asymmetric;
    /// `margin_of_error_95` is half its width.
    pub fn score_with(&self, options: &MetricOptions) -> Option<CsatScore> {
        let n = self.n();
        if n == 0 {
            return None;
        }
        let satisfied = self.satisfied();
        let (low, high) = wilson(satisfied, n);
        Some(CsatScore {
            percent_satisfied: 100.0 * ratio(satisfied, n),
            satisfied,
            n,
            margin_of_error_95: 100.0 * (high - low) / 2.0,
            ci_low: 100.0 * low,
            ci_high: 100.0 * high,
            small_sample: n < options.small_sample_below,
        })
    }
}

impl AddAssign for CsatCounts {
    fn add_assign(&mut self, other: Self) {
        self.merge(&other);
    }
}

impl Add for CsatCounts {
    type Output = Self;
    fn add(mut self, other: Self) -> Self {
        self.merge(&other);
        self
    }
}

impl Sum for CsatCounts {
    fn sum<I: Iterator<Item = Self>>(iter: I) -> Self {
        iter.fold(Self::new(), Add::add)
    }
}

/// A CSAT result: percentage of satisfied answers with its 95 % Wilson interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CsatScore {
    /// Percentage of answers that are 4 or 5, 0..=100.
    pub percent_satisfied: f64,
    /// Number of answers that are 4 or 5.
    pub satisfied: u64,
    /// Number of answers (at least 1).
    pub n: u64,
    /// Half the width of the 95 % interval, in percentage points.
    pub margin_of_error_95: f64,
    /// Lower end of the 95 % Wilson interval, in percent.
    pub ci_low: f64,
    /// Upper end of the 95 % Wilson interval, in percent.
    pub ci_high: f64,
    /// Whether `n` is below the small-sample threshold.
    pub small_sample: bool,
}

impl CsatScore {
    /// The score as a generic [`Estimate`].
    pub fn estimate(&self) -> Estimate {
        Estimate {
            metric: Metric::Csat,
            value: self.percent_satisfied,
            n: self.n,
            margin_of_error_95: self.margin_of_error_95,
            ci_low: self.ci_low,
            ci_high: self.ci_high,
            small_sample: self.small_sample,
        }
    }
}

impl From<CsatScore> for Estimate {
    fn from(score: CsatScore) -> Self {
        score.estimate()
    }
}

// ---------------------------------------------------------------------------------------------
// CES
// ---------------------------------------------------------------------------------------------

const CES_MIN: u64 = 1;
const CES_MAX: u64 = 7;

/// Running sums of CES answers (1..=7): count, sum and sum of squares, all exact integers, so
/// merging is exact. A mergeable accumulator (add two with `+`); build it from answers, from
/// per-answer counts, or from the `COUNT(x)`, `SUM(x)`, `SUM(x*x)` of a SQL query.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct CesStats {
    n: u64,
    sum: u64,
    sum_sq: u64,
}

impl CesStats {
    /// No answers yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sums from `n` answers whose sum is `sum` and sum of squares `sum_sq`. Refuses sums that no
    /// set of `n` answers in 1..=7 can have (out of range, or a negative variance).
    pub fn from_sums(n: u64, sum: u64, sum_sq: u64) -> Result<Self, String> {
        let (n128, s, q) = (u128::from(n), u128::from(sum), u128::from(sum_sq));
        let (lo, hi) = (u128::from(CES_MIN), u128::from(CES_MAX));
        if s < lo * n128 || s > hi * n128 || q < lo * lo * n128 || q > hi * hi * n128 {
            return Err(format!(
                "CES sums n={n}, sum={sum}, sum of squares={sum_sq} are impossible for answers 1–7"
            ));
        }
        if n128 * q < s * s {
            return Err(format!(
                "CES sums n={n}, sum={sum}, sum of squares={sum_sq} imply a negative variance"
            ));
        }
        Ok(Self { n, sum, sum_sq })
    }

    /// Sums from the number of answers for each value (`counts[a - 1]` answered `a`, 1..=7).
    pub fn from_counts(counts: &[u64; 7]) -> Self {
        let mut stats = Self::new();
        for (value, &count) in (CES_MIN..).zip(counts) {
            stats.n = stats.n.saturating_add(count);
            stats.sum = stats.sum.saturating_add(value.saturating_mul(count));
            stats.sum_sq = stats
                .sum_sq
                .saturating_add((value * value).saturating_mul(count));
        }
        stats
    }

    /// Adds one answer; refuses (and leaves the sums unchanged) an answer outside 1..=7.
    pub fn add_answer(&mut self, answer: i32) -> Result<(), String> {
        let answer = SurveyKind::Ces.check_answer(answer)?;
        let value = u64::from(answer.unsigned_abs());
        self.n = self.n.saturating_add(1);
        self.sum = self.sum.saturating_add(value);
        self.sum_sq = self.sum_sq.saturating_add(value * value);
        Ok(())
    }

    /// Adds another accumulator's sums to this one.
    pub fn merge(&mut self, other: &Self) {
        self.n = self.n.saturating_add(other.n);
        self.sum = self.sum.saturating_add(other.sum);
        self.sum_sq = self.sum_sq.saturating_add(other.sum_sq);
    }

    /// Number of answers.
    pub fn n(&self) -> u64 {
        self.n
    }

    /// Sum of the answers.
    pub fn sum(&self) -> u64 {
        self.sum
    }

    /// Sum of the squared answers.
    pub fn sum_sq(&self) -> u64 {
        self.sum_sq
    }

    /// Mean answer; `None` when empty.
    pub fn mean(&self) -> Option<f64> {
        (self.n > 0).then(|| ratio(self.sum, self.n))
    }

    /// Sample variance (divisor n − 1), from exact integers: `(n·Σx² − (Σx)²) / (n(n − 1))`.
    /// `None` with fewer than two answers.
    pub fn variance(&self) -> Option<f64> {
        if self.n < 2 {
            return None;
        }
        let n = u128::from(self.n);
        let s = u128::from(self.sum);
        let numerator = (n * u128::from(self.sum_sq)).saturating_sub(s * s);
        Some(numerator as f64 / (n * (n - 1)) as f64)
    }

    /// The mean CES with its 95 % interval and the default small-sample threshold; `None` when
    /// there are no answers.
    pub fn score(&self) -> Option<CesScore> {
        self.score_with(&MetricOptions::default())
    }

    /// The mean answer with a 95 % Student-t interval `mean ± t(0.975, n − 1) · s / sqrt(n)`,
    /// clipped to the scale 1..=7; `None` when there are no answers.
    ///
    /// With a single answer the spread is unknown: `std_dev` is `None`, the interval is the
    /// whole scale 1..=7 and `margin_of_error_95` is 6 (the scale's width). When all answers are
    /// equal (n ≥ 2) the interval degenerates to the mean itself with a zero margin.
    pub fn score_with(&self, options: &MetricOptions) -> Option<CesScore> {
        let mean = self.mean()?;
        let small_sample = self.n < options.small_sample_below;
        let (lo, hi) = (CES_MIN as f64, CES_MAX as f64);
        let Some(var) = self.variance() else {
            return Some(CesScore {
                mean,
                std_dev: None,
                n: self.n,
                margin_of_error_95: hi - lo,
                ci_low: lo,
                ci_high: hi,
                small_sample,
            });
        };
        let se = (var / self.n as f64).sqrt();
        let t = students_t((self.n - 1) as f64)?.inverse_cdf(0.975);
        let margin = t * se;
        Some(CesScore {
            mean,
            std_dev: Some(var.sqrt()),
            n: self.n,
            margin_of_error_95: margin,
            ci_low: (mean - margin).clamp(lo, hi),
            ci_high: (mean + margin).clamp(lo, hi),
            small_sample,
        })
    }
}

impl AddAssign for CesStats {
    fn add_assign(&mut self, other: Self) {
        self.merge(&other);
    }
}

impl Add for CesStats {
    type Output = Self;
    fn add(mut self, other: Self) -> Self {
        self.merge(&other);
        self
    }
}

impl Sum for CesStats {
    fn sum<I: Iterator<Item = Self>>(iter: I) -> Self {
        iter.fold(Self::new(), Add::add)
    }
}

/// A CES result: the mean answer with its 95 % t-interval; see [`CesStats::score_with`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CesScore {
    /// Mean answer, 1..=7.
    pub mean: f64,
    /// Sample standard deviation; `None` with a single answer.
    pub std_dev: Option<f64>,
    /// Number of answers (at least 1).
    pub n: u64,
    /// Half-width of the 95 % interval before clipping (6 with a single answer).
    pub margin_of_error_95: f64,
    /// Lower end of the 95 % interval, at least 1.
    pub ci_low: f64,
    /// Upper end of the 95 % interval, at most 7.
    pub ci_high: f64,
    /// Whether `n` is below the small-sample threshold.
    pub small_sample: bool,
}

impl CesScore {
    /// The score as a generic [`Estimate`].
    pub fn estimate(&self) -> Estimate {
        Estimate {
            metric: Metric::Ces,
            value: self.mean,
            n: self.n,
            margin_of_error_95: self.margin_of_error_95,
            ci_low: self.ci_low,
            ci_high: self.ci_high,
            small_sample: self.small_sample,
        }
    }
}

impl From<CesScore> for Estimate {
    fn from(score: CesScore) -> Self {
        score.estimate()
    }
}

// ---------------------------------------------------------------------------------------------
// Trend between two periods
// ---------------------------------------------------------------------------------------------

/// The test behind a [`Change`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum ChangeTest {
    /// z-test on the difference of two independent NPS estimates.
    NpsZ,
    /// Two-proportion z-test with the pooled proportion (CSAT).
    TwoProportionZ,
    /// Welch's unequal-variances t-test (CES), with its Welch–Satterthwaite degrees of freedom.
    WelchT {
        /// Degrees of freedom of the t distribution used.
        df: f64,
    },
}

/// The change of a metric between two independent periods, `after − before`, with its 95 %
/// interval and a two-sided test of "no change".
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Change {
    /// The metric in the earlier period.
    pub before: f64,
    /// The metric in the later period.
    pub after: f64,
    /// `after − before`, in the metric's unit (NPS points, CSAT percentage points, CES points).
    pub delta: f64,
    /// Lower end of the 95 % interval for `delta`.
    pub ci_low: f64,
    /// Upper end of the 95 % interval for `delta`.
    pub ci_high: f64,
    /// The test statistic: z for NPS and CSAT, Welch's t for CES.
    pub statistic: f64,
    /// Two-sided p-value of "no change".
    pub p_value: f64,
    /// Whether `p_value < ALPHA` (0.05).
    pub significant: bool,
    /// Which test produced `statistic` and `p_value`.
    pub test: ChangeTest,
    /// Responses in the earlier period.
    pub n_before: u64,
    /// Responses in the later period.
    pub n_after: u64,
}

impl Change {
    /// Whether the change is significant at another level than [`ALPHA`].
    pub fn significant_at(&self, alpha: f64) -> bool {
        self.p_value < alpha
    }
}

/// The change of NPS between two periods; `None` when either period has no answers.
///
/// The two scores are independent estimates, so the standard error of their difference is
/// `sqrt(var_b/n_b + var_a/n_a)` with each variance that of the promoter-minus-detractor
/// indicator (see [`NpsCounts::score_with`]); `z = delta / SE`, the p-value is two-sided
/// normal, and the interval `delta ± 1.96 · SE` (clipped to −200..=200), so `significant` agrees
/// with "the interval excludes 0".
///
/// Degenerate case: when each period falls in a single category (say all promoters before, all
/// detractors after), both variances are zero. If the scores are equal there is no change
/// (z = 0, p = 1); otherwise the standard error under the null hypothesis is used, from the
/// variance of both periods pooled, which is then positive.
pub fn nps_change(before: &NpsCounts, after: &NpsCounts) -> Option<Change> {
    let (b, a) = (before.score()?, after.score()?);
    let (vb, va) = (before.indicator_variance()?, after.indicator_variance()?);
    let (nb, na) = (before.n() as f64, after.n() as f64);
    // In proportion units (NPS / 100).
    let delta = (a.score - b.score) / 100.0;
    let mut se = (vb / nb + va / na).sqrt();
    if se == 0.0 && delta != 0.0 {
        let pooled = (*before + *after).indicator_variance()?;
        se = (pooled * (1.0 / nb + 1.0 / na)).sqrt();
    }
    let (statistic, p_value, margin) = if se > 0.0 {
        let z = delta / se;
        (z, two_sided_normal_p(z), z_975() * se)
    } else {
        (0.0, 1.0, 0.0)
    };
    Some(Change {
        before: b.score,
        after: a.score,
        delta: 100.0 * delta,
        ci_low: (100.0 * (delta - margin)).clamp(-200.0, 200.0),
        ci_high: (100.0 * (delta + margin)).clamp(-200.0, 200.0),
        statistic,
        p_value,
        significant: p_value < ALPHA,
        test: ChangeTest::NpsZ,
        n_before: b.n,
        n_after: a.n,
    })
}

/// The change of CSAT (% satisfied) between two periods; `None` when either has no answers.
///
/// Test: the standard two-proportion z-test with the pooled proportion p̄ under "no change",
/// `z = (p_a − p_b) / sqrt(p̄(1 − p̄)(1/n_b + 1/n_a))` (equivalent to Pearson's chi-squared test
/// of the 2 × 2 table without continuity correction); when p̄ is 0 or 1 both periods agree
/// exactly, and z = 0, p = 1.
///
/// Interval: Newcombe's hybrid score interval for a difference of proportions (method 10 of
/// Newcombe, Statistics in Medicine 17:873–890, 1998), built from the two Wilson intervals; it
/// stays sensible near 0 % and 100 %, where the simple Wald interval fails. Because test and
/// interval are different constructions, a change right at the boundary can be significant
/// while the interval touches 0, or the reverse; `significant` follows the test.
pub fn csat_change(before: &CsatCounts, after: &CsatCounts) -> Option<Change> {
    let (b, a) = (before.score()?, after.score()?);
    let (nb, na) = (b.n, a.n);
    let (pb, pa) = (ratio(b.satisfied, nb), ratio(a.satisfied, na));
    let pooled = ratio(
        b.satisfied.saturating_add(a.satisfied),
        nb.saturating_add(na),
    );
    let se0 = (pooled * (1.0 - pooled) * (1.0 / nb as f64 + 1.0 / na as f64)).sqrt();
    let delta = pa - pb;
    let (statistic, p_value) = if se0 > 0.0 {
        let z = delta / se0;
        (z, two_sided_normal_p(z))
    } else {
        (0.0, 1.0)
    };
    let (lb, ub) = wilson(b.satisfied, nb);
    let (la, ua) = wilson(a.satisfied, na);
    let low = delta - ((pa - la).powi(2) + (ub - pb).powi(2)).sqrt();
    let high = delta + ((ua - pa).powi(2) + (pb - lb).powi(2)).sqrt();
    Some(Change {
        before: b.percent_satisfied,
        after: a.percent_satisfied,
        delta: 100.0 * delta,
        ci_low: 100.0 * low,
        ci_high: 100.0 * high,
        statistic,
        p_value,
        significant: p_value < ALPHA,
        test: ChangeTest::TwoProportionZ,
        n_before: nb,
        n_after: na,
    })
}

/// One sample as Welch's test needs it: mean, sample variance (divisor n − 1) and size.
pub(crate) struct Sample {
    pub(crate) mean: f64,
    pub(crate) var: f64,
    pub(crate) n: u64,
}

/// Welch's t-test of `after − before` (each n ≥ 2): `(delta, t, p, margin, df)`, where `margin`
/// is the half-width of the 95 % interval. `pooled_var` is used when both variances are zero but
/// the means differ.
pub(crate) fn welch(
    before: &Sample,
    after: &Sample,
    pooled_var: f64,
) -> Option<(f64, f64, f64, f64, f64)> {
    if before.n < 2 || after.n < 2 {
        return None;
    }
    let (nb, na) = (before.n as f64, after.n as f64);
    let delta = after.mean - before.mean;
    let (vb, va) = (before.var / nb, after.var / na);
    let mut se = (vb + va).sqrt();
    let mut df = if se > 0.0 {
        (vb + va).powi(2) / (vb * vb / (nb - 1.0) + va * va / (na - 1.0))
    } else {
        nb + na - 2.0
    };
    if se == 0.0 {
        if delta == 0.0 {
            return Some((delta, 0.0, 1.0, 0.0, df));
        }
        se = (pooled_var * (1.0 / nb + 1.0 / na)).sqrt();
        df = nb + na - 2.0;
        if se <= 0.0 {
            return None;
        }
    }
    let dist = students_t(df)?;
    let t = delta / se;
    let p = (2.0 * dist.sf(t.abs())).min(1.0);
    let margin = dist.inverse_cdf(0.975) * se;
    Some((delta, t, p, margin, df))
}

/// The change of mean CES between two periods; `None` when either period has fewer than two
/// answers (a variance is needed on both sides).
///
/// Welch's t-test (Welch, Biometrika 34:28–35, 1947): `t = delta / sqrt(s_b²/n_b + s_a²/n_a)`
/// with the Welch–Satterthwaite degrees of freedom
/// `(s_b²/n_b + s_a²/n_a)² / ((s_b²/n_b)²/(n_b − 1) + (s_a²/n_a)²/(n_a − 1))`; the p-value is
/// two-sided and the interval `delta ± t(0.975, df) · SE`, so `significant` agrees with "the
/// interval excludes 0".
///
/// Degenerate case: when all answers within each period are equal, both variances are zero.
/// If the means are equal there is no change (t = 0, p = 1); otherwise the variance of both
/// periods pooled into one sample is used with `n_b + n_a − 2` degrees of freedom.
pub fn ces_change(before: &CesStats, after: &CesStats) -> Option<Change> {
    let sample = |s: &CesStats| -> Option<Sample> {
        Some(Sample {
            mean: s.mean()?,
            var: s.variance()?,
            n: s.n(),
        })
    };
    let (b, a) = (sample(before)?, sample(after)?);
    let pooled_var = (*before + *after).variance()?;
    let (delta, statistic, p_value, margin, df) = welch(&b, &a, pooled_var)?;
    Some(Change {
        before: b.mean,
        after: a.mean,
        delta,
        ci_low: delta - margin,
        ci_high: delta + margin,
        statistic,
        p_value,
        significant: p_value < ALPHA,
        test: ChangeTest::WelchT { df },
        n_before: b.n,
        n_after: a.n,
    })
}

// ---------------------------------------------------------------------------------------------
// Experience gap
// ---------------------------------------------------------------------------------------------

/// The gap between the experience intended at a touchpoint and the one measured there.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Gap {
    /// The metric compared.
    pub metric: Metric,
    /// The intended value.
    pub target: f64,
    /// The measured value.
    pub measured: f64,
    /// `measured − target`: negative when the touchpoint falls short of its target.
    pub gap: f64,
    /// Lower end of the 95 % interval of the gap (`measured.ci_low − target`).
    pub ci_low: f64,
    /// Upper end of the 95 % interval of the gap (`measured.ci_high − target`).
    pub ci_high: f64,
    /// Responses behind the measurement.
    pub n: u64,
    /// Whether the measurement is flagged as a small sample.
    pub small_sample: bool,
    /// Whether the whole interval lies below the target (`ci_high < 0`): the shortfall is not
    /// explained by sampling noise.
    pub clearly_below_target: bool,
}

/// The gap between `target` and a measured [`Estimate`] (higher is better for every metric);
/// `None` when `target` is not a finite number. The target is taken as exact: the interval of
/// the gap is the measurement's interval shifted by the target.
pub fn gap(target: f64, measured: &Estimate) -> Option<Gap> {
    if !target.is_finite() {
        return None;
    }
    let ci_high = measured.ci_high - target;
    Some(Gap {
        metric: measured.metric,
        target,
        measured: measured.value,
        gap: measured.value - target,
        ci_low: measured.ci_low - target,
        ci_high,
        n: measured.n,
        small_sample: measured.small_sample,
        clearly_below_target: ci_high < 0.0,
    })
}

/// The order of [`rank_gaps`]: the larger shortfall (smaller `gap`) first; on equal gaps, the
/// one with more responses first (the better-evidenced shortfall).
pub fn compare_gaps(a: &Gap, b: &Gap) -> Ordering {
    a.gap.total_cmp(&b.gap).then_with(|| b.n.cmp(&a.n))
}

/// Sorts gaps (each with the caller's key, e.g. a touchpoint id) worst first, by
/// [`compare_gaps`]; the sort is stable, so fully tied gaps keep their input order.
pub fn rank_gaps<K>(gaps: &mut [(K, Gap)]) {
    gaps.sort_by(|(_, a), (_, b)| compare_gaps(a, b));
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use proptest::prelude::*;

    fn close(actual: f64, expected: f64, tolerance: f64) -> bool {
        (actual - expected).abs() <= tolerance
    }

    macro_rules! assert_close {
        ($actual:expr, $expected:expr, $tol:expr) => {{
            let (a, e) = ($actual, $expected);
            assert!(
                close(a, e, $tol),
                "{} = {a}, expected {e} ± {}",
                stringify!($actual),
                $tol
            );
        }};
    }

    fn nps(promoters: u64, passives: u64, detractors: u64) -> NpsCounts {
        NpsCounts {
            promoters,
            passives,
            detractors,
        }
    }

    fn csat(satisfied: u64, n: u64) -> CsatCounts {
        CsatCounts {
            counts: [n - satisfied, 0, 0, 0, satisfied],
        }
    }

    fn ces(answers: &[i32]) -> CesStats {
        let mut stats = CesStats::new();
        for &a in answers {
            stats.add_answer(a).unwrap();
        }
        stats
    }

    // ---- answers and categories ----

    #[test]
    fn answers_outside_each_scale_are_refused_with_the_scale_named() {
        assert_eq!(SurveyKind::Nps.check_answer(0), Ok(0));
        assert_eq!(SurveyKind::Nps.check_answer(10), Ok(10));
        let err = SurveyKind::Nps.check_answer(11).unwrap_err();
        assert!(err.contains("NPS scale 0–10"), "{err}");
        assert!(SurveyKind::Nps.check_answer(-1).is_err());
        assert!(SurveyKind::Csat.check_answer(0).is_err());
        assert_eq!(SurveyKind::Csat.check_answer(5), Ok(5));
        assert!(SurveyKind::Csat.check_answer(6).is_err());
        assert!(SurveyKind::Ces.check_answer(0).is_err());
        assert_eq!(SurveyKind::Ces.check_answer(7), Ok(7));
        assert!(SurveyKind::Ces.check_answer(8).is_err());
        let custom = SurveyKind::Custom { min: -2, max: 2 };
        assert_eq!(custom.check_answer(-2), Ok(-2));
        assert!(custom.check_answer(3).is_err());
    }

    #[test]
    fn an_empty_custom_scale_is_refused_and_accepts_nothing() {
        let bad = SurveyKind::Custom { min: 5, max: 5 };
        assert!(
            bad.validate()
                .unwrap_err()
                .contains("min must be below max")
        );
        assert!(bad.check_answer(5).is_err());
        assert!(SurveyKind::Custom { min: 1, max: 10 }.validate().is_ok());
    }

    #[test]
    fn nps_answers_map_to_categories_and_customer_categories() {
        let expected = [
            (0, NpsCategory::Detractor),
            (6, NpsCategory::Detractor),
            (7, NpsCategory::Passive),
            (8, NpsCategory::Passive),
            (9, NpsCategory::Promoter),
            (10, NpsCategory::Promoter),
        ];
        for (answer, category) in expected {
            assert_eq!(NpsCategory::of(answer), Some(category), "answer {answer}");
        }
        assert_eq!(NpsCategory::of(11), None);
        assert_eq!(NpsCategory::of(-1), None);
        assert_eq!(
            CustomerCategory::from(NpsCategory::Detractor),
            CustomerCategory::Negative
        );
        assert_eq!(
            NpsCategory::Passive.customer_category(),
            CustomerCategory::Neutral
        );
        assert_eq!(
            NpsCategory::Promoter.customer_category(),
            CustomerCategory::Advocate
        );
    }

    #[test]
    fn a_refused_answer_leaves_the_counts_unchanged() {
        let mut n = nps(1, 0, 0);
        assert!(n.add_answer(11).is_err());
        assert_eq!(n, nps(1, 0, 0));
        let mut c = CsatCounts::new();
        assert!(c.add_answer(0).is_err());
        assert_eq!(c.n(), 0);
        let mut e = CesStats::new();
        assert!(e.add_answer(8).is_err());
        assert_eq!(e.n(), 0);
    }

    // ---- NPS ----

    #[test]
    fn nps_worked_example_50_30_20() {
        // p_P = .5, p_D = .2: NPS 30; var = .5 + .2 − .3² = .61; SE = sqrt(.61/100) = .078102;
        // MoE = 1.959964 · .078102 · 100 = 15.308 (not 16.1).
        let mut counts = NpsCounts::new();
        for (answer, times) in [(10, 30), (9, 20), (8, 15), (7, 15), (6, 10), (0, 10)] {
            for _ in 0..times {
                counts.add_answer(answer).unwrap();
            }
        }
        assert_eq!(counts, nps(50, 30, 20));
        let s = counts.score().unwrap();
        assert_close!(s.score, 30.0, 1e-12);
        assert_eq!(s.n, 100);
        assert_close!(s.margin_of_error_95, 15.3078, 1e-3);
        assert_close!(s.ci_low, 14.692, 1e-3);
        assert_close!(s.ci_high, 45.308, 1e-3);
        assert_close!(s.promoters_pct, 50.0, 1e-12);
        assert_close!(s.passives_pct, 30.0, 1e-12);
        assert_close!(s.detractors_pct, 20.0, 1e-12);
        assert!(!s.small_sample);
    }

    #[test]
    fn nps_with_no_answers_is_none_not_nan() {
        assert_eq!(NpsCounts::new().score(), None);
    }

    #[test]
    fn nps_of_one_answer_is_a_flagged_point() {
        let s = nps(0, 0, 1).score().unwrap();
        assert_eq!((s.score, s.ci_low, s.ci_high), (-100.0, -100.0, -100.0));
        assert_eq!(s.margin_of_error_95, 0.0);
        assert!(s.small_sample);
    }

    #[test]
    fn all_promoters_degenerates_to_a_point_at_100() {
        let s = nps(250, 0, 0).score().unwrap();
        assert_eq!(s.score, 100.0);
        assert_eq!(s.margin_of_error_95, 0.0);
        assert_eq!((s.ci_low, s.ci_high), (100.0, 100.0));
    }

    #[test]
    fn nps_interval_is_clipped_to_the_scale_but_margin_is_not() {
        // 9 promoters, 1 detractor: NPS 80, var = 1 − .64 = .36, MoE = 1.96·sqrt(.036)·100 = 37.19.
        let s = nps(9, 0, 1).score().unwrap();
        assert_close!(s.score, 80.0, 1e-12);
        assert_close!(s.margin_of_error_95, 37.188, 1e-3);
        assert_eq!(s.ci_high, 100.0);
        assert_close!(s.ci_low, 42.812, 1e-3);
    }

    #[test]
    fn small_sample_threshold_is_configurable() {
        let counts = nps(10, 5, 5);
        assert!(counts.score().unwrap().small_sample);
        let relaxed = MetricOptions {
            small_sample_below: 20,
        };
        assert!(!counts.score_with(&relaxed).unwrap().small_sample);
        assert!(nps(15, 10, 5).score().is_some_and(|s| !s.small_sample));
        assert!(nps(15, 10, 4).score().is_some_and(|s| s.small_sample));
    }

    #[test]
    fn nps_from_per_answer_counts_matches_categories() {
        let mut per_answer = [0u64; 11];
        per_answer[0] = 2;
        per_answer[6] = 3;
        per_answer[7] = 4;
        per_answer[8] = 1;
        per_answer[9] = 6;
        per_answer[10] = 7;
        assert_eq!(NpsCounts::from_answer_counts(&per_answer), nps(13, 5, 5));
    }

    // ---- CSAT ----

    #[test]
    fn wilson_interval_matches_newcombe_1998_examples() {
        // Newcombe (1998), Statistics in Medicine 17:857–872, table I, method 3 (score, no
        // continuity correction).
        for (x, n, low, high) in [
            (81, 263, 0.2553, 0.3662),
            (15, 148, 0.0624, 0.1605),
            (0, 20, 0.0, 0.1611),
            (1, 29, 0.0061, 0.1718),
        ] {
            let s = csat(x, n).score().unwrap();
            assert_close!(s.ci_low, 100.0 * low, 0.006);
            assert_close!(s.ci_high, 100.0 * high, 0.006);
        }
    }

    #[test]
    fn csat_counts_only_4_and_5_as_satisfied() {
        let mut c = CsatCounts::new();
        for answer in [1, 2, 3, 3, 4, 4, 5, 5, 5, 5] {
            c.add_answer(answer).unwrap();
        }
        let s = c.score().unwrap();
        assert_eq!((s.satisfied, s.n), (6, 10));
        assert_close!(s.percent_satisfied, 60.0, 1e-12);
        // Wilson 6/10: 31.27 % – 83.18 %.
        assert_close!(s.ci_low, 31.27, 0.01);
        assert_close!(s.ci_high, 83.18, 0.01);
        assert_close!(s.margin_of_error_95, (83.18 - 31.27) / 2.0, 0.01);
        assert!(s.small_sample);
    }

    #[test]
    fn all_satisfied_csat_keeps_an_honest_interval() {
        // 30 of 30: Wilson lower bound 30/(30 + z²) = 88.65 %.
        let s = csat(30, 30).score().unwrap();
        assert_eq!(s.percent_satisfied, 100.0);
        assert_close!(s.ci_low, 88.65, 0.01);
        assert_close!(s.ci_high, 100.0, 1e-9);
        assert_eq!(CsatCounts::new().score(), None);
        // None satisfied: the interval starts at exactly 0, not a rounding hair above it.
        let none = csat(0, 5).score().unwrap();
        assert_eq!((none.percent_satisfied, none.ci_low), (0.0, 0.0));
        assert_close!(none.ci_high, 43.448, 1e-3);
        let one = csat(1, 1).score().unwrap();
        assert!(one.ci_low > 0.0 && one.ci_low < 25.0 && one.small_sample);
    }

    // ---- CES ----

    #[test]
    fn ces_mean_and_t_interval_by_hand() {
        // Answers 2, 4, 4, 5, 7: mean 4.4, s² = (5.76 + .16 + .16 + .36 + 6.76)/4 = 3.3,
        // SE = sqrt(3.3/5) = .81240, t(.975, 4) = 2.776445, MoE = 2.25559.
        let s = ces(&[2, 4, 4, 5, 7]).score().unwrap();
        assert_close!(s.mean, 4.4, 1e-12);
        assert_close!(s.std_dev.unwrap(), 3.3f64.sqrt(), 1e-12);
        assert_close!(s.margin_of_error_95, 2.25559, 1e-4);
        assert_close!(s.ci_low, 2.14441, 1e-4);
        assert_close!(s.ci_high, 6.65559, 1e-4);
    }

    #[test]
    fn ces_with_none_one_or_identical_answers() {
        assert_eq!(CesStats::new().score(), None);
        let one = ces(&[6]).score().unwrap();
        assert_eq!(one.mean, 6.0);
        assert_eq!(one.std_dev, None);
        assert_eq!(
            (one.ci_low, one.ci_high, one.margin_of_error_95),
            (1.0, 7.0, 6.0)
        );
        assert!(one.small_sample);
        let same = ces(&[5, 5, 5]).score().unwrap();
        assert_eq!(
            (same.ci_low, same.ci_high, same.margin_of_error_95),
            (5.0, 5.0, 0.0)
        );
    }

    #[test]
    fn ces_interval_is_clipped_to_the_scale() {
        let s = ces(&[7, 7, 6]).score().unwrap();
        assert_eq!(s.ci_high, 7.0);
        assert!(s.margin_of_error_95 > 1.0);
    }

    #[test]
    fn ces_sums_from_sql_are_checked() {
        let direct = ces(&[2, 4, 4, 5, 7]);
        assert_eq!(CesStats::from_sums(5, 22, 110), Ok(direct));
        assert_eq!(CesStats::from_counts(&[0, 1, 0, 2, 1, 0, 1]), direct);
        assert!(CesStats::from_sums(2, 20, 200).is_err(), "mean above 7");
        assert!(CesStats::from_sums(2, 8, 31).is_err(), "n·Σx² < (Σx)²");
        assert!(CesStats::from_sums(0, 1, 1).is_err());
        assert_eq!(CesStats::from_sums(0, 0, 0), Ok(CesStats::new()));
    }

    // ---- trends ----

    #[test]
    fn nps_change_by_hand() {
        // Before 50/30/20 (NPS 30, var .61), after 60/25/15 (NPS 45, var .75 − .2025 = .5475),
        // n = 100 each: SE = sqrt(.0061 + .005475) = .107587, z = .15/.107587 = 1.39422,
        // p = .16326, not significant; interval 15 ± 21.087.
        let c = nps_change(&nps(50, 30, 20), &nps(60, 25, 15)).unwrap();
        assert_close!(c.delta, 15.0, 1e-9);
        assert_close!(c.statistic, 1.39422, 1e-4);
        assert_close!(c.p_value, 0.16326, 1e-4);
        assert!(!c.significant);
        assert_close!(c.ci_low, 15.0 - 21.0866, 1e-3);
        assert_close!(c.ci_high, 15.0 + 21.0866, 1e-3);
        assert_eq!(
            (c.n_before, c.n_after, c.test),
            (100, 100, ChangeTest::NpsZ)
        );
    }

    #[test]
    fn nps_change_significance_turns_on_with_more_answers() {
        // The same shift with 2× the answers: SE = .076075, z = 1.97174, p = .04864 < .05.
        let c = nps_change(&nps(100, 60, 40), &nps(120, 50, 30)).unwrap();
        assert_close!(c.statistic, 1.97174, 1e-4);
        assert!(c.p_value < ALPHA && c.p_value > 0.045, "{}", c.p_value);
        assert!(c.significant);
        assert!(c.ci_low > 0.0, "interval excludes 0 when significant");
        // And 1.9× the answers stays just short of it: z = 1.95976, p = .050024.
        let c = nps_change(&nps(95, 57, 38), &nps(114, 48, 28)).unwrap();
        assert_close!(c.p_value, 0.050024, 1e-5);
        assert!(!c.significant);
        assert!(c.ci_low < 0.0);
    }

    #[test]
    fn nps_change_with_empty_or_degenerate_periods() {
        assert_eq!(nps_change(&NpsCounts::new(), &nps(1, 0, 0)), None);
        assert_eq!(nps_change(&nps(1, 0, 0), &NpsCounts::new()), None);
        let same = nps_change(&nps(40, 0, 0), &nps(50, 0, 0)).unwrap();
        assert_eq!((same.delta, same.statistic, same.p_value), (0.0, 0.0, 1.0));
        assert!(!same.significant);
        // All promoters, then all detractors: both variances are zero, the pooled one is 1.
        // SE = sqrt(1 · (1/40 + 1/40)) = .22361, z = −2/.22361 = −8.944.
        let flip = nps_change(&nps(40, 0, 0), &nps(0, 0, 40)).unwrap();
        assert_eq!(flip.delta, -200.0);
        assert_close!(flip.statistic, -8.9443, 1e-3);
        assert!(flip.significant && flip.p_value.is_finite());
        assert!(flip.ci_low >= -200.0 && flip.ci_high < 0.0);
    }

    #[test]
    fn csat_change_two_proportion_z_test_by_hand() {
        // 56/70 then 48/80 (a fall): p̄ = 104/150, SE0 = sqrt(p̄(1 − p̄)(1/70 + 1/80)) = .075467,
        // z = −.2/.075467 = −2.65017, p = .00805.
        let c = csat_change(&csat(56, 70), &csat(48, 80)).unwrap();
        assert_close!(c.delta, -20.0, 1e-9);
        assert_close!(c.statistic, -2.65017, 1e-4);
        assert_close!(c.p_value, 0.00805, 1e-4);
        assert!(c.significant);
        // Newcombe (1998), Statistics in Medicine 17:873–890, table II example (a), method 10:
        // 56/70 − 48/80 = .2 with interval .0524 to .3339 (signs flip for after − before).
        assert_close!(c.ci_low, -33.39, 0.01);
        assert_close!(c.ci_high, -5.24, 0.01);
        assert_eq!(c.test, ChangeTest::TwoProportionZ);
    }

    #[test]
    fn csat_change_newcombe_interval_near_the_boundary() {
        // Newcombe (1998) table II example (d): 5/56 − 0/29 → −.0381 to .1926.
        let c = csat_change(&csat(0, 29), &csat(5, 56)).unwrap();
        assert_close!(c.ci_low, -3.81, 0.01);
        assert_close!(c.ci_high, 19.26, 0.01);
        // Identical all-satisfied periods: no change, and nothing undefined.
        let c = csat_change(&csat(10, 10), &csat(20, 20)).unwrap();
        assert_eq!((c.delta, c.statistic, c.p_value), (0.0, 0.0, 1.0));
        assert!(!c.significant);
        assert_eq!(csat_change(&CsatCounts::new(), &csat(1, 1)), None);
    }

    #[test]
    fn csat_change_significance_around_the_boundary() {
        // 80 % → 88 % with n = 200 each: p̄ = .84, SE0 = .036661, z = 2.18218, p = .0291.
        let on = csat_change(&csat(160, 200), &csat(176, 200)).unwrap();
        assert_close!(on.statistic, 2.18218, 1e-4);
        assert!(on.significant);
        // 80 % → 86 %: p̄ = .83, z = 1.59730, p = .1102.
        let off = csat_change(&csat(160, 200), &csat(172, 200)).unwrap();
        assert_close!(off.statistic, 1.59730, 1e-4);
        assert_close!(off.p_value, 0.1102, 1e-4);
        assert!(!off.significant);
    }

    #[test]
    fn welch_matches_the_textbook_example() {
        // The third worked example of Wikipedia's "Welch's t-test" article (unequal variances and
        // sizes); the published values were re-derived independently with mpmath.
        // A1 = 19.8 20.4 19.6 17.8 18.5 18.9 18.3 18.9 19.5 22.0 (n 10),
        // A2 = 28.2 26.6 20.1 23.3 25.2 22.1 17.7 27.6 20.6 13.7 23.2 17.5 20.6 18.0 23.9 21.6
        //      24.3 20.4 24.0 13.2 (n 20); published Welch t = −2.22, df = 24.5, p = 0.036
        // for A1 − A2, i.e. t = +2.22 for A2 − A1.
        let moments = |xs: &[f64]| {
            let n = xs.len() as f64;
            let mean = xs.iter().sum::<f64>() / n;
            let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0);
            Sample {
                mean,
                var,
                n: xs.len() as u64,
            }
        };
        let a1 = moments(&[19.8, 20.4, 19.6, 17.8, 18.5, 18.9, 18.3, 18.9, 19.5, 22.0]);
        let a2 = moments(&[
            28.2, 26.6, 20.1, 23.3, 25.2, 22.1, 17.7, 27.6, 20.6, 13.7, 23.2, 17.5, 20.6, 18.0,
            23.9, 21.6, 24.3, 20.4, 24.0, 13.2,
        ]);
        let (delta, t, p, margin, df) = welch(&a1, &a2, 1.0).unwrap();
        assert_close!(t, 2.22, 0.005);
        assert_close!(df, 24.5, 0.05);
        assert_close!(p, 0.036, 0.0005);
        assert!(
            delta - margin > 0.0,
            "significant, so the interval excludes 0"
        );
    }

    #[test]
    fn ces_change_by_hand() {
        // Before 3,4,4,5 (mean 4, s² 2/3), after 5,6,6,7 (mean 6, s² 2/3): SE = sqrt(1/3),
        // t = 2/.57735 = 3.4641, df = 6, p = .01340.
        let c = ces_change(&ces(&[3, 4, 4, 5]), &ces(&[5, 6, 6, 7])).unwrap();
        assert_close!(c.delta, 2.0, 1e-12);
        assert_close!(c.statistic, 3.4641, 1e-4);
        assert_close!(c.p_value, 0.01340, 1e-4);
        assert!(c.significant);
        match c.test {
            ChangeTest::WelchT { df } => assert_close!(df, 6.0, 1e-9),
            other => panic!("expected Welch, got {other:?}"),
        }
        // t(.975, 6) = 2.446912: interval 2 ± 1.41273.
        assert_close!(c.ci_low, 0.58727, 1e-4);
        assert_close!(c.ci_high, 3.41273, 1e-4);
    }

    #[test]
    fn ces_change_needs_two_answers_each_and_handles_constant_periods() {
        assert_eq!(ces_change(&ces(&[4]), &ces(&[5, 6])), None);
        assert_eq!(ces_change(&ces(&[4, 5]), &CesStats::new()), None);
        let same = ces_change(&ces(&[5, 5, 5]), &ces(&[5, 5])).unwrap();
        assert_eq!((same.delta, same.statistic, same.p_value), (0.0, 0.0, 1.0));
        // All 2s then all 5s (30 each): union variance 2.25·60/59, df 58.
        let jump = ces_change(&ces(&[2; 30]), &ces(&[5; 30])).unwrap();
        assert_eq!(jump.delta, 3.0);
        assert!(jump.significant && jump.statistic.is_finite() && jump.statistic > 7.0);
        assert_eq!(jump.test, ChangeTest::WelchT { df: 58.0 });
    }

    // ---- gaps ----

    #[test]
    fn gap_is_clear_only_when_the_whole_interval_is_below_target() {
        let measured = nps(50, 30, 20).score().unwrap().estimate(); // 30, 14.69..45.31
        let g = gap(50.0, &measured).unwrap();
        assert_close!(g.gap, -20.0, 1e-12);
        assert_close!(g.ci_high, -4.692, 1e-3);
        assert!(g.clearly_below_target);
        let g = gap(40.0, &measured).unwrap();
        assert!(!g.clearly_below_target, "40 is inside the interval");
        assert!(gap(f64::NAN, &measured).is_none());
        assert!(gap(f64::INFINITY, &measured).is_none());
    }

    #[test]
    fn gaps_rank_worst_first_then_by_more_answers() {
        let target = 40.0;
        let mk = |counts: NpsCounts| gap(target, &counts.score().unwrap().into()).unwrap();
        let mut gaps = vec![
            ("checkout", mk(nps(60, 20, 20))),  // NPS 40, gap 0
            ("delivery", mk(nps(20, 40, 40))),  // NPS −20, gap −60
            ("support-a", mk(nps(3, 4, 3))),    // NPS 0, gap −40, n 10
            ("support-b", mk(nps(30, 40, 30))), // NPS 0, gap −40, n 100
            ("web", mk(nps(70, 20, 10))),       // NPS 60, gap +20
        ];
        rank_gaps(&mut gaps);
        let order: Vec<_> = gaps.iter().map(|(k, _)| *k).collect();
        assert_eq!(
            order,
            ["delivery", "support-b", "support-a", "checkout", "web"]
        );
    }

    #[test]
    fn every_metric_feeds_a_gap() {
        let csat_gap = gap(90.0, &csat(150, 200).score().unwrap().into()).unwrap();
        assert_eq!(csat_gap.metric, Metric::Csat);
        assert_close!(csat_gap.gap, -15.0, 1e-9);
        assert!(csat_gap.clearly_below_target);
        let ces_gap = gap(5.0, &ces(&[5, 6, 6, 7]).score().unwrap().into()).unwrap();
        assert_eq!(ces_gap.metric, Metric::Ces);
        assert!(ces_gap.gap > 0.0 && !ces_gap.clearly_below_target);
    }

    // ---- merging ----

    fn partitioned(len: usize) -> impl Strategy<Value = (Vec<i32>, Vec<usize>, Vec<usize>)> {
        (
            prop::collection::vec(0i32..=10, 0..len),
            prop::collection::vec(0usize..len, 0..6),
            prop::collection::vec(any::<prop::sample::Index>(), 0..len),
        )
            .prop_map(|(answers, cuts, swaps)| {
                let swaps = swaps
                    .iter()
                    .map(|i| i.index(answers.len().max(1)))
                    .collect();
                (answers, cuts, swaps)
            })
    }

    /// Splits `answers` into parts at `cuts` and returns the parts in reverse order.
    fn parts(answers: &[i32], cuts: &[usize]) -> Vec<Vec<i32>> {
        let mut cuts: Vec<usize> = cuts.iter().map(|&c| c.min(answers.len())).collect();
        cuts.push(0);
        cuts.push(answers.len());
        cuts.sort_unstable();
        let mut parts: Vec<Vec<i32>> = cuts
            .windows(2)
            .map(|w| answers[w[0]..w[1]].to_vec())
            .collect();
        parts.reverse();
        parts
    }

    /// A permutation of `answers`: swaps position `i` with `swaps[i]` in turn.
    fn shuffled(answers: &[i32], swaps: &[usize]) -> Vec<i32> {
        let mut out = answers.to_vec();
        let len = out.len();
        for (i, &j) in swaps.iter().enumerate().take(len) {
            out.swap(i, j % len);
        }
        out
    }

    fn accumulate<T: Default>(answers: &[i32], add: impl Fn(&mut T, i32)) -> T {
        let mut acc = T::default();
        for &a in answers {
            add(&mut acc, a);
        }
        acc
    }

    proptest! {
        #[test]
        fn merging_partial_counts_equals_counting_the_union(
            (answers, cuts, swaps) in partitioned(200)
        ) {
            let add_nps = |c: &mut NpsCounts, a: i32| c.add_answer(a).unwrap();
            let add_csat = |c: &mut CsatCounts, a: i32| c.add_answer(1 + a % 5).unwrap();
            let add_ces = |c: &mut CesStats, a: i32| c.add_answer(1 + a % 7).unwrap();

            let whole_nps: NpsCounts = accumulate(&answers, add_nps);
            let whole_csat: CsatCounts = accumulate(&answers, add_csat);
            let whole_ces: CesStats = accumulate(&answers, add_ces);

            let pieces = parts(&answers, &cuts);
            let merged_nps: NpsCounts = pieces.iter().map(|p| accumulate(p, add_nps)).sum();
            let merged_csat: CsatCounts = pieces.iter().map(|p| accumulate(p, add_csat)).sum();
            let merged_ces: CesStats = pieces.iter().map(|p| accumulate(p, add_ces)).sum();
            prop_assert_eq!(merged_nps, whole_nps);
            prop_assert_eq!(merged_csat, whole_csat);
            prop_assert_eq!(merged_ces, whole_ces);
            prop_assert_eq!(merged_nps.score(), whole_nps.score());
            prop_assert_eq!(merged_csat.score(), whole_csat.score());
            prop_assert_eq!(merged_ces.score(), whole_ces.score());

            let order = shuffled(&answers, &swaps);
            prop_assert_eq!(accumulate::<NpsCounts>(&order, add_nps), whole_nps);
            prop_assert_eq!(accumulate::<CsatCounts>(&order, add_csat), whole_csat);
            prop_assert_eq!(accumulate::<CesStats>(&order, add_ces), whole_ces);
            prop_assert_eq!(whole_nps.n(), answers.len() as u64);
        }

        #[test]
        fn results_never_hold_nan_and_intervals_contain_the_estimate(
            answers in prop::collection::vec(0i32..=10, 0..60)
        ) {
            let n: NpsCounts = accumulate(&answers, |c: &mut NpsCounts, a| c.add_answer(a).unwrap());
            let c: CsatCounts = accumulate(&answers, |c: &mut CsatCounts, a| c.add_answer(1 + a % 5).unwrap());
            let e: CesStats = accumulate(&answers, |c: &mut CesStats, a| c.add_answer(1 + a % 7).unwrap());
            let estimates: Vec<Estimate> = [
                n.score().map(Estimate::from),
                c.score().map(Estimate::from),
                e.score().map(Estimate::from),
            ].into_iter().flatten().collect();
            prop_assert_eq!(estimates.len(), if answers.is_empty() { 0 } else { 3 });
            for est in estimates {
                prop_assert!(est.value.is_finite() && est.margin_of_error_95.is_finite());
                prop_assert!(est.ci_low <= est.value && est.value <= est.ci_high, "{:?}", est);
            }
            let half = answers.len() / 2;
            let (a, b) = answers.split_at(half);
            let na: NpsCounts = accumulate(a, |c: &mut NpsCounts, x| c.add_answer(x).unwrap());
            let nb: NpsCounts = accumulate(b, |c: &mut NpsCounts, x| c.add_answer(x).unwrap());
            if let Some(ch) = nps_change(&na, &nb) {
                prop_assert!(ch.statistic.is_finite() && ch.p_value.is_finite());
                prop_assert!((0.0..=1.0).contains(&ch.p_value));
                prop_assert!(ch.ci_low <= ch.delta && ch.delta <= ch.ci_high);
            }
            let ea: CesStats = accumulate(a, |c: &mut CesStats, x| c.add_answer(1 + x % 7).unwrap());
            let eb: CesStats = accumulate(b, |c: &mut CesStats, x| c.add_answer(1 + x % 7).unwrap());
            if let Some(ch) = ces_change(&ea, &eb) {
                prop_assert!(ch.statistic.is_finite() && ch.p_value.is_finite());
                prop_assert!(ch.ci_low <= ch.delta && ch.delta <= ch.ci_high);
            }
        }
    }
}
