//! The effect of a rule: the customers it acted on against its holdout control group, over an
//! observation window after each customer's first targeting. Pure computation over what the
//! store read ([`EffectData`]); see docs/loyalty.md for the definitions.
//!
//! Groups (a customer belongs to the group of their *first* target record of the rule, or of
//! the rule version asked for; records of customers only ever blocked still count, in the
//! treatment arm):
//! - **control**: held out.
//! - **intent to treat**: assigned to treatment, i.e. proposed (whatever became of the action)
//!   or stopped by a guard rail. The holdout draw happens before the guard rails, so this is
//!   the group the random draw made comparable to the control group: the unbiased estimate.
//! - **treated** (per protocol): proposed, and the action was not cancelled. Easier to read,
//!   but biased when the guard rails or the cancellations pick particular customers.
//!
//! Outcomes, for a customer first targeted at `t`, over the window `(t, t + window]`:
//! - **retained**: at least one placed order in the window.
//! - **NPS change**: the latest NPS answer in the window minus the latest at or before `t`
//!   (customers with both only); the NPS category (detractor, passive, promoter) of the same
//!   two answers gives the category moves.
//! - **revenue**: the sum of the placed orders in the window, per currency.
//!
//! Intervals are at 95 %: Wilson for a proportion, Newcombe's hybrid score interval for a
//! difference of proportions, Student's t for a mean and Welch's t for a difference of means
//! (the helpers of [`crate::scoring::metrics`]). Small groups are flagged, never hidden.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use statrs::distribution::ContinuousCDF;

use crate::identifier::CustomerId;
use crate::loyalty::action::ActionState;
use crate::money::{Currency, Money};
use crate::scoring::metrics::{NpsCategory, Sample, students_t, welch, wilson};

/// Default observation window: 90 days.
pub const DEFAULT_WINDOW: Duration = Duration::days(90);
/// Shortest observation window.
pub const MIN_WINDOW: Duration = Duration::days(1);
/// Longest observation window.
pub const MAX_WINDOW: Duration = Duration::days(730);

/// What a run of a rule did for a customer, as recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TargetOutcome {
    /// The rule's action was proposed.
    Proposed,
    /// Held out: the control group.
    HeldOut,
    /// A guard rail stopped the action.
    Blocked,
}

impl TargetOutcome {
    /// The stored text (`proposed`, `held_out`, `blocked`).
    pub fn parse(text: &str) -> Result<Self, String> {
        match text {
            "proposed" => Ok(Self::Proposed),
            "held_out" => Ok(Self::HeldOut),
            "blocked" => Ok(Self::Blocked),
            other => Err(format!("unknown target outcome `{other}`")),
        }
    }
}

/// The action a target record names, as it is now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetAction {
    /// Its current state.
    pub state: ActionState,
    /// What it is worth, if anything.
    pub value: Option<Money>,
}

/// One target record of a rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetRecord {
    /// The customer.
    pub customer: CustomerId,
    /// What the run did.
    pub outcome: TargetOutcome,
    /// When.
    pub at: DateTime<Utc>,
    /// The run (`2026-11-24`, `change:42`…): orders records recorded at one instant.
    pub run: String,
    /// The action proposed, for [`TargetOutcome::Proposed`] (`None` if it is gone).
    pub action: Option<TargetAction>,
}

/// One dated NPS answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatedNps {
    /// When it was answered.
    pub at: DateTime<Utc>,
    /// The answer, 0..=10.
    pub value: i32,
}

/// One placed order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatedOrder {
    /// When it was placed.
    pub at: DateTime<Utc>,
    /// Its amount.
    pub amount: Money,
}

/// What the store reads for an effect report: the target records up to `as_of`, and for the
/// customers they name the placed orders and NPS answers (answers ordered by time, ties by
/// response id), and who was erased since.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EffectData {
    /// Target records, any order.
    pub targets: Vec<TargetRecord>,
    /// Placed orders per customer.
    pub orders: BTreeMap<CustomerId, Vec<DatedOrder>>,
    /// NPS answers per customer, oldest first.
    pub nps: BTreeMap<CustomerId, Vec<DatedNps>>,
    /// Customers erased since.
    pub erased: BTreeSet<CustomerId>,
}

/// How to compute a report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EffectParams {
    /// The observation window after each customer's first targeting.
    pub window: Duration,
    /// Records after it are ignored; windows not closed by then are not counted.
    pub as_of: DateTime<Utc>,
    /// Revenue only in this currency; `None`: every currency ordered in.
    pub currency: Option<Currency>,
    /// Groups with fewer customers are flagged small.
    pub small_sample_below: u64,
}

/// A proportion with its 95 % Wilson interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Proportion {
    /// Customers with the outcome.
    pub successes: u64,
    /// Customers counted (at least 1).
    pub n: u64,
    /// `successes / n`.
    pub rate: f64,
    /// Lower end of the Wilson interval.
    pub ci_low: f64,
    /// Upper end of the Wilson interval.
    pub ci_high: f64,
    /// Whether `n` is below the small-sample threshold.
    pub small_sample: bool,
}

impl Proportion {
    /// `successes` of `n` with the Wilson score interval; `None` when `n` is 0.
    pub fn of(successes: u64, n: u64, small_sample_below: u64) -> Option<Self> {
        if n == 0 {
            return None;
        }
        let (ci_low, ci_high) = wilson(successes.min(n), n);
        Some(Self {
            successes,
            n,
            rate: successes.min(n) as f64 / n as f64,
            ci_low,
            ci_high,
            small_sample: n < small_sample_below,
        })
    }
}

/// A mean with its 95 % Student-t interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Mean {
    /// Values behind it (at least 1).
    pub n: u64,
    /// The mean.
    pub mean: f64,
    /// The sample standard deviation (divisor n − 1); `None` with one value.
    pub std_dev: Option<f64>,
    /// The 95 % interval `mean ± t(0.975, n − 1) · s / sqrt(n)`; `None` with one value.
    pub ci: Option<(f64, f64)>,
    /// Whether `n` is below the small-sample threshold.
    pub small_sample: bool,
}

impl Mean {
    /// The mean of `values` with its t interval; `None` when there are none.
    pub fn of(values: &[f64], small_sample_below: u64) -> Option<Self> {
        let sample = sample(values)?;
        let std_dev = (sample.n >= 2).then(|| sample.var.sqrt());
        let ci = match std_dev {
            Some(sd) => {
                let t = students_t((sample.n - 1) as f64)?.inverse_cdf(0.975);
                let margin = t * sd / (sample.n as f64).sqrt();
                Some((sample.mean - margin, sample.mean + margin))
            }
            None => None,
        };
        Some(Self {
            n: sample.n,
            mean: sample.mean,
            std_dev,
            ci,
            small_sample: sample.n < small_sample_below,
        })
    }
}

/// Mean and sample variance (0 for a single value) of `values`; `None` when empty.
fn sample(values: &[f64]) -> Option<Sample> {
    if values.is_empty() {
        return None;
    }
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    let var = if values.len() >= 2 {
        values.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0)
    } else {
        0.0
    };
    Some(Sample {
        mean,
        var,
        n: values.len() as u64,
    })
}

/// How a [`Difference`]'s interval was computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum DifferenceMethod {
    /// Difference of proportions: Newcombe's hybrid score interval from two Wilson intervals.
    NewcombeWilson,
    /// Difference of means: Welch's t with the Welch–Satterthwaite degrees of freedom.
    WelchT,
}

impl DifferenceMethod {
    /// The stable text: `newcombe-wilson`, `welch-t`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NewcombeWilson => "newcombe-wilson",
            Self::WelchT => "welch-t",
        }
    }
}

/// A difference between two groups (first minus second) with its 95 % interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Difference {
    /// The point estimate.
    pub estimate: f64,
    /// Lower end of the interval.
    pub ci_low: f64,
    /// Upper end of the interval.
    pub ci_high: f64,
    /// How the interval was computed.
    pub method: DifferenceMethod,
}

impl Difference {
    /// Whether the interval excludes 0.
    pub fn significant(&self) -> bool {
        self.ci_low > 0.0 || self.ci_high < 0.0
    }
}

/// The difference `a − b` of two proportions with Newcombe's hybrid score interval (method 10
/// of Newcombe, "Interval estimation for the difference between independent proportions",
/// Statistics in Medicine 17:873–890, 1998): with Wilson intervals `(l₁, u₁)` and `(l₂, u₂)`,
/// `d − sqrt((p₁ − l₁)² + (u₂ − p₂)²)` to `d + sqrt((u₁ − p₁)² + (p₂ − l₂)²)`.
pub fn proportion_difference(a: &Proportion, b: &Proportion) -> Difference {
    let estimate = a.rate - b.rate;
    let low = estimate - ((a.rate - a.ci_low).powi(2) + (b.ci_high - b.rate).powi(2)).sqrt();
    let high = estimate + ((a.ci_high - a.rate).powi(2) + (b.rate - b.ci_low).powi(2)).sqrt();
    Difference {
        estimate,
        ci_low: low.max(-1.0),
        ci_high: high.min(1.0),
        method: DifferenceMethod::NewcombeWilson,
    }
}

/// The difference of the means of `a` and `b` (`mean(a) − mean(b)`) with Welch's t interval;
/// `None` unless each has at least two values. When both variances are zero and the means
/// differ, the variance of both samples pooled is used (as [`crate::scoring::metrics`] does).
pub fn mean_difference(a: &[f64], b: &[f64]) -> Option<Difference> {
    let (sa, sb) = (sample(a)?, sample(b)?);
    let all: Vec<f64> = a.iter().chain(b).copied().collect();
    let pooled = sample(&all)?.var;
    // welch() measures `after − before`.
    let (delta, _, _, margin, _) = welch(&sb, &sa, pooled)?;
    Some(Difference {
        estimate: delta,
        ci_low: delta - margin,
        ci_high: delta + margin,
        method: DifferenceMethod::WelchT,
    })
}

/// How the NPS category moved between the answer before and the answer in the window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct CategoryMoves {
    /// Customers with both answers.
    pub n: u64,
    /// Moved up.
    pub improved: u64,
    /// Stayed.
    pub unchanged: u64,
    /// Moved down.
    pub worsened: u64,
    /// The share that improved; `None` when `n` is 0.
    pub improved_share: Option<Proportion>,
    /// Among detractors before: the share no longer detractors; `None` with none.
    pub detractors_recovered: Option<Proportion>,
}

/// Revenue per customer of a group in one currency.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Revenue {
    /// The currency.
    pub currency: Currency,
    /// Total in minor units.
    pub total_minor: i64,
    /// Per customer (every customer of the group), in minor units.
    pub per_customer: Mean,
}

/// The outcome of one group.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GroupEffect {
    /// Customers in the group.
    pub customers: u64,
    /// Whether `customers` is below the small-sample threshold.
    pub small_sample: bool,
    /// Share retained; `None` for an empty group.
    pub retention: Option<Proportion>,
    /// Mean NPS change over the customers with both answers; `None` with none.
    pub nps_change: Option<Mean>,
    /// NPS category moves.
    pub category_moves: CategoryMoves,
    /// Revenue per currency, by code.
    pub revenue: Vec<Revenue>,
}

/// The differences between two groups.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    /// Retention rates.
    pub retention: Option<Difference>,
    /// Mean NPS changes.
    pub nps_change: Option<Difference>,
    /// Shares whose category improved.
    pub category_improved: Option<Difference>,
    /// Revenue per customer, per currency (by code); `None` when a group has fewer than two.
    pub revenue_per_customer: Vec<(Currency, Option<Difference>)>,
}

/// Who a report counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Population {
    /// Target records up to `as_of`.
    pub target_records: u64,
    /// Distinct customers among them.
    pub customers: u64,
    /// Customers counted.
    pub counted: u64,
    /// Left out: window not closed by `as_of`.
    pub still_observing: u64,
    /// Left out: erased.
    pub erased: u64,
    /// Counted in control, later assigned to treatment.
    pub crossed_over: u64,
}

/// What the actions of the counted customers cost.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cost {
    /// Actions proposed for the counted customers (their first assignment).
    pub actions: u64,
    /// Of those, cancelled.
    pub cancelled: u64,
    /// Of those, redeemed.
    pub redeemed: u64,
    /// Value of those SENT, ACCEPTED or REDEEMED, per currency.
    pub committed: Vec<Money>,
    /// Value of those REDEEMED, per currency.
    pub spent: Vec<Money>,
    /// `spent` per extra retained customer, per currency; empty unless the intent-to-treat
    /// retention difference is positive.
    pub spent_per_extra_retained: Vec<Money>,
}

/// The effect report of a rule.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EffectReport {
    /// Who was counted.
    pub population: Population,
    /// Proposed, action not cancelled.
    pub treated: GroupEffect,
    /// Assigned to treatment.
    pub intent_to_treat: GroupEffect,
    /// Held out.
    pub control: GroupEffect,
    /// Treated − control.
    pub treated_vs_control: Comparison,
    /// Intent to treat − control.
    pub intent_to_treat_vs_control: Comparison,
    /// Cost of the intent-to-treat group's actions.
    pub cost: Cost,
}

/// One counted customer's outcomes.
#[derive(Debug, Clone, Default)]
struct CustomerOutcome {
    retained: bool,
    /// `(before, after)` NPS answers.
    nps: Option<(i32, i32)>,
    revenue: BTreeMap<Currency, i64>,
}

/// The latest answer in `answers` (oldest first) satisfying `keep`.
fn latest(answers: &[DatedNps], keep: impl Fn(&DatedNps) -> bool) -> Option<i32> {
    answers.iter().rev().find(|a| keep(a)).map(|a| a.value)
}

fn outcome(
    data: &EffectData,
    customer: CustomerId,
    t: DateTime<Utc>,
    end: DateTime<Utc>,
) -> CustomerOutcome {
    let mut out = CustomerOutcome::default();
    for order in data.orders.get(&customer).into_iter().flatten() {
        if order.at > t && order.at <= end {
            out.retained = true;
            let total = out.revenue.entry(order.amount.currency).or_insert(0);
            *total = total.saturating_add(order.amount.amount_minor);
        }
    }
    if let Some(answers) = data.nps.get(&customer) {
        let before = latest(answers, |a| a.at <= t);
        let after = latest(answers, |a| a.at > t && a.at <= end);
        out.nps = before.zip(after);
    }
    out
}

fn group_effect(
    outcomes: &[&CustomerOutcome],
    currencies: &BTreeSet<Currency>,
    small: u64,
) -> GroupEffect {
    let n = outcomes.len() as u64;
    let retained = outcomes.iter().filter(|o| o.retained).count() as u64;
    let changes: Vec<f64> = outcomes
        .iter()
        .filter_map(|o| o.nps.map(|(b, a)| f64::from(a - b)))
        .collect();
    let mut moves = CategoryMoves::default();
    let (mut detractors, mut recovered) = (0u64, 0u64);
    for (before, after) in outcomes.iter().filter_map(|o| o.nps) {
        let (Some(b), Some(a)) = (NpsCategory::of(before), NpsCategory::of(after)) else {
            continue;
        };
        moves.n += 1;
        match a.cmp(&b) {
            std::cmp::Ordering::Greater => moves.improved += 1,
            std::cmp::Ordering::Equal => moves.unchanged += 1,
            std::cmp::Ordering::Less => moves.worsened += 1,
        }
        if b == NpsCategory::Detractor {
            detractors += 1;
            if a != NpsCategory::Detractor {
                recovered += 1;
            }
        }
    }
    moves.improved_share = Proportion::of(moves.improved, moves.n, small);
    moves.detractors_recovered = Proportion::of(recovered, detractors, small);
    let revenue = currencies
        .iter()
        .filter_map(|c| {
            let values = revenue_values(outcomes, *c);
            Some(Revenue {
                currency: *c,
                total_minor: outcomes
                    .iter()
                    .map(|o| o.revenue.get(c).copied().unwrap_or(0))
                    .fold(0i64, i64::saturating_add),
                per_customer: Mean::of(&values, small)?,
            })
        })
        .collect();
    GroupEffect {
        customers: n,
        small_sample: n < small,
        retention: Proportion::of(retained, n, small),
        nps_change: Mean::of(&changes, small),
        category_moves: moves,
        revenue,
    }
}

fn revenue_values(outcomes: &[&CustomerOutcome], currency: Currency) -> Vec<f64> {
    outcomes
        .iter()
        .map(|o| o.revenue.get(&currency).copied().unwrap_or(0) as f64)
        .collect()
}

fn compare(
    a: (&[&CustomerOutcome], &GroupEffect),
    b: (&[&CustomerOutcome], &GroupEffect),
    currencies: &BTreeSet<Currency>,
) -> Comparison {
    let nps = |o: &[&CustomerOutcome]| -> Vec<f64> {
        o.iter()
            .filter_map(|o| o.nps.map(|(b, a)| f64::from(a - b)))
            .collect()
    };
    Comparison {
        retention: a
            .1
            .retention
            .zip(b.1.retention)
            .map(|(x, y)| proportion_difference(&x, &y)),
        nps_change: mean_difference(&nps(a.0), &nps(b.0)),
        category_improved: a
            .1
            .category_moves
            .improved_share
            .zip(b.1.category_moves.improved_share)
            .map(|(x, y)| proportion_difference(&x, &y)),
        revenue_per_customer: currencies
            .iter()
            .map(|c| {
                (
                    *c,
                    mean_difference(&revenue_values(a.0, *c), &revenue_values(b.0, *c)),
                )
            })
            .collect(),
    }
}

fn totals(values: impl Iterator<Item = Money>) -> Vec<Money> {
    let mut by: BTreeMap<Currency, i64> = BTreeMap::new();
    for m in values {
        let total = by.entry(m.currency).or_insert(0);
        *total = total.saturating_add(m.amount_minor);
    }
    by.into_iter()
        .map(|(c, minor)| Money::new(minor, c))
        .collect()
}

/// The group a customer's first assignment puts them in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Arm {
    Control,
    /// Assigned to treatment; `treated` unless the action was cancelled or never proposed.
    Treatment {
        treated: bool,
    },
}

/// Computes the effect report of `data` (see the module documentation for the definitions).
pub fn effect_report(data: &EffectData, params: &EffectParams) -> EffectReport {
    let small = params.small_sample_below;
    let mut by_customer: BTreeMap<CustomerId, Vec<&TargetRecord>> = BTreeMap::new();
    let mut population = Population::default();
    for record in data.targets.iter().filter(|r| r.at <= params.as_of) {
        population.target_records += 1;
        by_customer.entry(record.customer).or_default().push(record);
    }
    population.customers = by_customer.len() as u64;

    let mut arms: Vec<(Arm, CustomerOutcome)> = Vec::new();
    let mut actions: Vec<TargetAction> = Vec::new();
    for (customer, mut records) in by_customer {
        records.sort_by(|a, b| (a.at, &a.run).cmp(&(b.at, &b.run)));
        let first = records[0];
        if data.erased.contains(&customer) {
            population.erased += 1;
            continue;
        }
        let end = first.at + params.window;
        if end > params.as_of {
            population.still_observing += 1;
            continue;
        }
        population.counted += 1;
        let arm = match first.outcome {
            TargetOutcome::HeldOut => {
                if records[1..]
                    .iter()
                    .any(|r| r.outcome != TargetOutcome::HeldOut)
                {
                    population.crossed_over += 1;
                }
                Arm::Control
            }
            TargetOutcome::Blocked => Arm::Treatment { treated: false },
            TargetOutcome::Proposed => {
                if let Some(action) = first.action {
                    actions.push(action);
                }
                Arm::Treatment {
                    treated: first
                        .action
                        .is_some_and(|a| a.state != ActionState::Cancelled),
                }
            }
        };
        arms.push((arm, outcome(data, customer, first.at, end)));
    }

    let currencies: BTreeSet<Currency> = match params.currency {
        Some(c) => BTreeSet::from([c]),
        None => arms
            .iter()
            .flat_map(|(_, o)| o.revenue.keys().copied())
            .collect(),
    };
    let pick = |keep: &dyn Fn(Arm) -> bool| -> Vec<&CustomerOutcome> {
        arms.iter()
            .filter(|(arm, _)| keep(*arm))
            .map(|(_, o)| o)
            .collect()
    };
    let control = pick(&|a| a == Arm::Control);
    let itt = pick(&|a| matches!(a, Arm::Treatment { .. }));
    let treated = pick(&|a| a == Arm::Treatment { treated: true });
    let control_effect = group_effect(&control, &currencies, small);
    let itt_effect = group_effect(&itt, &currencies, small);
    let treated_effect = group_effect(&treated, &currencies, small);
    let treated_vs_control = compare(
        (&treated, &treated_effect),
        (&control, &control_effect),
        &currencies,
    );
    let itt_vs_control = compare(
        (&itt, &itt_effect),
        (&control, &control_effect),
        &currencies,
    );

    let spent = totals(
        actions
            .iter()
            .filter(|a| a.state == ActionState::Redeemed)
            .filter_map(|a| a.value),
    );
    let extra_retained = itt_vs_control
        .retention
        .map(|d| d.estimate * itt_effect.customers as f64)
        .filter(|x| *x > 0.0);
    let spent_per_extra_retained = match extra_retained {
        Some(extra) => spent
            .iter()
            .map(|m| Money::new((m.amount_minor as f64 / extra).round() as i64, m.currency))
            .collect(),
        None => Vec::new(),
    };
    let cost = Cost {
        actions: actions.len() as u64,
        cancelled: actions
            .iter()
            .filter(|a| a.state == ActionState::Cancelled)
            .count() as u64,
        redeemed: actions
            .iter()
            .filter(|a| a.state == ActionState::Redeemed)
            .count() as u64,
        committed: totals(
            actions
                .iter()
                .filter(|a| {
                    matches!(
                        a.state,
                        ActionState::Sent | ActionState::Accepted | ActionState::Redeemed
                    )
                })
                .filter_map(|a| a.value),
        ),
        spent,
        spent_per_extra_retained,
    };
    EffectReport {
        population,
        treated: treated_effect,
        intent_to_treat: itt_effect,
        control: control_effect,
        treated_vs_control,
        intent_to_treat_vs_control: itt_vs_control,
        cost,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    macro_rules! assert_close {
        ($actual:expr, $expected:expr, $tol:expr) => {{
            let (a, e): (f64, f64) = ($actual, $expected);
            assert!((a - e).abs() <= $tol, "{a} is not within {} of {e}", $tol);
        }};
    }

    fn eur() -> Currency {
        Currency::parse("EUR").unwrap()
    }

    #[test]
    fn wilson_matches_newcombe() {
        // Newcombe 1998 (Statistics in Medicine 17:857), example 81/263: 0.2553 to 0.3662.
        let p = Proportion::of(81, 263, 30).unwrap();
        assert_close!(p.ci_low, 0.2553, 5e-5);
        assert_close!(p.ci_high, 0.3662, 5e-5);
        assert!(!p.small_sample);
        assert!(Proportion::of(3, 10, 30).unwrap().small_sample);
        assert_eq!(Proportion::of(0, 0, 30), None);
    }

    #[test]
    fn newcombe_difference_matches_the_published_examples() {
        // Newcombe 1998 (Statistics in Medicine 17:873), method 10: 56/70 − 48/80 = 0.2 gives
        // 0.0524 to 0.3339; 9/10 − 3/10 gives 0.1705 to 0.8090.
        let d = proportion_difference(
            &Proportion::of(56, 70, 30).unwrap(),
            &Proportion::of(48, 80, 30).unwrap(),
        );
        assert_close!(d.estimate, 0.2, 1e-12);
        assert_close!(d.ci_low, 0.0524, 5e-5);
        assert_close!(d.ci_high, 0.3339, 5e-5);
        assert!(d.significant());
        assert_eq!(d.method.as_str(), "newcombe-wilson");
        let d = proportion_difference(
            &Proportion::of(9, 10, 30).unwrap(),
            &Proportion::of(3, 10, 30).unwrap(),
        );
        assert_close!(d.ci_low, 0.1705, 5e-5);
        assert_close!(d.ci_high, 0.8090, 5e-5);
        // Equal proportions: the interval straddles 0.
        let d = proportion_difference(
            &Proportion::of(5, 10, 30).unwrap(),
            &Proportion::of(5, 10, 30).unwrap(),
        );
        assert!(!d.significant());
        assert_close!(d.ci_low, -d.ci_high, 1e-12);
    }

    #[test]
    fn mean_interval_and_welch_difference() {
        // Mean of 1..=5: 3, s = sqrt(2.5), t(0.975, 4) = 2.776445: margin 1.963243.
        let m = Mean::of(&[1.0, 2.0, 3.0, 4.0, 5.0], 30).unwrap();
        assert_close!(m.mean, 3.0, 1e-12);
        assert_close!(m.std_dev.unwrap(), 2.5f64.sqrt(), 1e-12);
        let (lo, hi) = m.ci.unwrap();
        assert_close!(lo, 3.0 - 1.963243, 1e-5);
        assert_close!(hi, 3.0 + 1.963243, 1e-5);
        let one = Mean::of(&[7.0], 30).unwrap();
        assert_eq!((one.std_dev, one.ci), (None, None));
        assert_eq!(Mean::of(&[], 30), None);

        // Welch's t itself is checked against a textbook example in scoring::metrics; here the
        // direction (a − b) and the degrees of freedom. a = {2, 4}, b = {0, 0}: var_a = 2,
        // var_b = 0, so SE = sqrt(2/2) = 1, df = 1, t(0.975, 1) = 12.706205.
        let d = mean_difference(&[2.0, 4.0], &[0.0, 0.0]).unwrap();
        assert_close!(d.estimate, 3.0, 1e-12);
        assert_close!(d.ci_low, 3.0 - 12.706205, 1e-5);
        assert_close!(d.ci_high, 3.0 + 12.706205, 1e-5);
        assert!(!d.significant());
        assert_eq!(d.method.as_str(), "welch-t");
        // Both constant and different: the pooled variance steps in and the difference is
        // significant.
        let d = mean_difference(&[10.0; 20], &[0.0; 20]).unwrap();
        assert_close!(d.estimate, 10.0, 1e-12);
        assert!(d.significant(), "{d:?}");
        assert_eq!(mean_difference(&[1.0], &[1.0, 2.0]), None);
    }

    fn at(day: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000, 0).unwrap() + Duration::days(day)
    }

    fn id(n: u128) -> CustomerId {
        CustomerId(uuid::Uuid::from_u128(n))
    }

    fn record(
        n: u128,
        outcome: TargetOutcome,
        day: i64,
        state: Option<ActionState>,
    ) -> TargetRecord {
        TargetRecord {
            customer: id(n),
            outcome,
            at: at(day),
            run: format!("day-{day}"),
            action: state.map(|state| TargetAction {
                state,
                value: Some(Money::new(1000, eur())),
            }),
        }
    }

    fn params(as_of_day: i64) -> EffectParams {
        EffectParams {
            window: Duration::days(30),
            as_of: at(as_of_day),
            currency: None,
            small_sample_below: 30,
        }
    }

    #[test]
    fn groups_windows_and_cost() {
        use ActionState as S;
        use TargetOutcome as T;
        // 1, 2: treated and buying; 3: cancelled (intent to treat only), buys; 4: blocked, no
        // purchase; 5, 6: control, 5 buys once; 7: control, later treated (crossed over);
        // 8: targeted too late for its window to close; 9: erased.
        let mut data = EffectData {
            targets: vec![
                record(1, T::Proposed, 0, Some(S::Redeemed)),
                record(2, T::Proposed, 0, Some(S::Sent)),
                record(3, T::Proposed, 0, Some(S::Cancelled)),
                record(4, T::Blocked, 0, None),
                record(5, T::HeldOut, 0, None),
                record(6, T::HeldOut, 0, None),
                record(7, T::HeldOut, 0, None),
                record(7, T::Proposed, 5, Some(S::Proposed)),
                record(8, T::Proposed, 50, Some(S::Proposed)),
                record(9, T::Proposed, 0, Some(S::Redeemed)),
                record(1, T::Proposed, 100, Some(S::Proposed)), // after as_of: ignored
            ],
            ..EffectData::default()
        };
        let order = |day: i64, minor: i64| DatedOrder {
            at: at(day),
            amount: Money::new(minor, eur()),
        };
        data.orders.insert(
            id(1),
            vec![order(1, 5000), order(29, 1000), order(31, 9999)],
        );
        data.orders
            .insert(id(2), vec![order(-1, 7777), order(10, 3000)]);
        data.orders.insert(id(3), vec![order(30, 2000)]);
        data.orders.insert(id(5), vec![order(0, 1), order(2, 500)]);
        let nps = |day: i64, value: i32| DatedNps { at: at(day), value };
        data.nps.insert(id(1), vec![nps(-3, 3), nps(10, 9)]);
        data.nps
            .insert(id(2), vec![nps(-3, 5), nps(5, 8), nps(20, 4)]);
        data.nps.insert(id(5), vec![nps(-3, 9), nps(10, 7)]);
        data.nps.insert(id(6), vec![nps(10, 7)]);
        data.erased.insert(id(9));

        let report = effect_report(&data, &params(60));
        assert_eq!(
            report.population,
            Population {
                target_records: 10,
                customers: 9,
                counted: 7,
                still_observing: 1,
                erased: 1,
                crossed_over: 1,
            }
        );
        assert_eq!(report.treated.customers, 2);
        assert_eq!(report.intent_to_treat.customers, 4);
        assert_eq!(report.control.customers, 3);
        assert!(report.control.small_sample);
        let retention = |g: &GroupEffect| g.retention.map(|p| (p.successes, p.n));
        assert_eq!(retention(&report.treated), Some((2, 2)));
        assert_eq!(retention(&report.intent_to_treat), Some((3, 4)));
        assert_eq!(retention(&report.control), Some((1, 3)));
        let d = report.intent_to_treat_vs_control.retention.unwrap();
        assert_close!(d.estimate, 0.75 - 1.0 / 3.0, 1e-12);

        // Revenue in the window only (day 31 and day −1 are outside).
        let rev = &report.treated.revenue[0];
        assert_eq!((rev.currency, rev.total_minor), (eur(), 9000));
        assert_close!(rev.per_customer.mean, 4500.0, 1e-9);
        assert_eq!(report.intent_to_treat.revenue[0].total_minor, 11000);
        assert_eq!(report.control.revenue[0].total_minor, 500);
        assert_close!(
            report.control.revenue[0].per_customer.mean,
            500.0 / 3.0,
            1e-9
        );

        // NPS: 1 went 3 → 9 (+6, detractor → promoter), 2 went 5 → 4 (the latest in the
        // window; −1, detractor stays); 5 went 9 → 7 (−2, worse); 6 has no answer before.
        let t = report.treated.nps_change.unwrap();
        assert_eq!(t.n, 2);
        assert_close!(t.mean, 2.5, 1e-12);
        let moves = report.treated.category_moves;
        assert_eq!(
            (moves.n, moves.improved, moves.unchanged, moves.worsened),
            (2, 1, 1, 0)
        );
        let rec = moves.detractors_recovered.unwrap();
        assert_eq!((rec.successes, rec.n), (1, 2));
        let c = report.control.category_moves;
        assert_eq!((c.n, c.worsened), (1, 1));
        assert_eq!(c.detractors_recovered, None);

        // Cost: the actions of the four counted customers assigned to treatment (1, 2, 3; 4
        // was blocked): 1 redeemed, 2 sent, 3 cancelled.
        let cost = &report.cost;
        assert_eq!((cost.actions, cost.cancelled, cost.redeemed), (3, 1, 1));
        assert_eq!(cost.committed, vec![Money::new(2000, eur())]);
        assert_eq!(cost.spent, vec![Money::new(1000, eur())]);
        // Extra retained: (3/4 − 1/3) · 4 = 5/3; 1000 / (5/3) = 600.
        assert_eq!(cost.spent_per_extra_retained, vec![Money::new(600, eur())]);

        // A currency filter keeps only that currency, even when nobody ordered in it.
        let usd = Currency::parse("USD").unwrap();
        let only_usd = effect_report(
            &data,
            &EffectParams {
                currency: Some(usd),
                ..params(60)
            },
        );
        assert_eq!(only_usd.treated.revenue.len(), 1);
        assert_eq!(only_usd.treated.revenue[0].total_minor, 0);
        assert_eq!(only_usd.treated_vs_control.revenue_per_customer[0].0, usd);

        // Earlier as_of: nobody's window has closed.
        let early = effect_report(&data, &params(20));
        assert_eq!(early.population.counted, 0);
        assert_eq!(early.population.still_observing, 7);
        assert_eq!(early.control.retention, None);
        assert_eq!(early.treated_vs_control.retention, None);
        assert!(early.cost.spent_per_extra_retained.is_empty());
    }
}
