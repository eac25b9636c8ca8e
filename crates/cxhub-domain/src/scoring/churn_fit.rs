//! Fitting the churn model on the hub's own history: the coefficients of the logistic model of
//! [`churn`](super::churn) estimated by maximum likelihood from customers whose outcome is known,
//! used only when they beat the documented defaults on held-out customers.
//!
//! # Examples: features at a reference time, the outcome after it
//!
//! The reference time is `T = as_of − horizon` (horizon 90 days by default). A customer is an
//! example when they had a placed order at or before `T` (a relationship to lose); their
//! features are the churn inputs the scorer computes as of `T` ([`churn_inputs_at`]: orders,
//! signals and survey answers up to `T`), their outcome what happened in `(T, T + horizon]`:
//!
//! - **churned**: a subscription cancelled (`SUBSCRIPTION_CANCELLED`) in the window, or no
//!   placed order in it although their usual interval between purchase days at `T` was at most
//!   [`ChurnFitConfig::lapse_interval_days`] (30: three purchases or more were due);
//! - **retained**: not churned, and a placed order in the window;
//! - otherwise unknown (no purchase and no cancellation, but no buying rhythm that makes the
//!   silence telling): left out.
//!
//! # The fit
//!
//! Maximum a posteriori by Newton–Raphson (IRLS) with a normal prior around the defaults: the
//! penalised log-likelihood `Σ log p(yᵢ | xᵢ, β) − ‖β − β₀‖² / (2σ²)`, `σ` =
//! [`ChurnFitConfig::prior_sd`] (1.0 log-odds for every coefficient, the intercept included).
//! A feature that never varies in the data keeps its default; separable or one-sided data
//! cannot push a coefficient to infinity.
//!
//! Every fourth customer (by a hash of the id) is held out. The fit needs at least
//! [`ChurnFitConfig::min_churned`] churned and [`ChurnFitConfig::min_retained`] retained
//! customers in the training part, and both outcomes among the held-out ones; the fitted
//! coefficients are used only when their log-loss on the held-out customers is lower than the
//! defaults'. Otherwise the defaults stay, with the reason.

use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use super::churn::{CHURN_MODEL_VERSION, COEFFICIENTS, ChurnInputs, Coefficients, feature_values};
use super::{CustomerFacts, CustomerScores, ScoreConfig, score_customer};
use crate::error::Result;
use crate::identifier::CustomerId;

/// How the churn model is fitted.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ChurnFitConfig {
    /// Days after the reference time in which the outcome is looked for (default 90).
    pub horizon_days: i64,
    /// A customer whose usual interval between purchase days is at most this (days) and who
    /// bought nothing in the horizon has churned (default 30).
    pub lapse_interval_days: f64,
    /// Churned customers needed in the training part (default 50).
    pub min_churned: usize,
    /// Retained customers needed in the training part (default 50).
    pub min_retained: usize,
    /// Standard deviation of the normal prior around each default coefficient, in log-odds
    /// (default 1.0).
    pub prior_sd: f64,
    /// One customer in this many is held out (default 4).
    pub holdout_every: u64,
}

impl Default for ChurnFitConfig {
    fn default() -> Self {
        Self {
            horizon_days: 90,
            lapse_interval_days: 30.0,
            min_churned: 50,
            min_retained: 50,
            prior_sd: 1.0,
            holdout_every: 4,
        }
    }
}

/// One labelled customer.
#[derive(Debug, Clone, PartialEq)]
pub struct Example {
    /// The customer.
    pub customer: CustomerId,
    /// The feature values at the reference time ([`feature_values`]).
    pub features: [f64; COEFFICIENTS - 1],
    /// Whether they churned in the horizon.
    pub churned: bool,
}

/// How well the fitted and the default coefficients predict the held-out customers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChurnFitReport {
    /// The reference time: features as of it, outcomes in the horizon after it.
    pub reference_time: DateTime<Utc>,
    /// The horizon, days.
    pub horizon_days: i64,
    /// Customers with a known outcome.
    pub labelled: u64,
    /// Customers with an order by the reference time whose outcome is unknown (left out).
    pub unlabelled: u64,
    /// Training customers that churned.
    pub train_churned: u64,
    /// Training customers retained.
    pub train_retained: u64,
    /// Held-out customers that churned.
    pub holdout_churned: u64,
    /// Held-out customers retained.
    pub holdout_retained: u64,
    /// Mean log-loss of the fitted coefficients on the held-out customers; `None` when not
    /// fitted.
    pub fitted_log_loss: Option<f64>,
    /// Mean log-loss of the default coefficients on the same customers.
    pub default_log_loss: Option<f64>,
    /// AUC of the fitted coefficients on the held-out customers.
    pub fitted_auc: Option<f64>,
    /// AUC of the default coefficients on the same customers.
    pub default_auc: Option<f64>,
    /// Newton iterations of the fit.
    pub iterations: u32,
}

/// The churn model the scores are computed with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChurnModel {
    /// `churn-logit-default-1`, or `churn-logit-fit-<recompute>-<date>` when fitted.
    pub version: String,
    /// Whether the coefficients were fitted on the hub's history (else the defaults).
    pub fitted: bool,
    /// The coefficients in use.
    pub coefficients: Coefficients,
    /// The coefficients the fit found, used or not; `None` when no fit was made.
    pub candidate: Option<Coefficients>,
    /// When it was decided (the full recompute's as-of time).
    pub decided_at: DateTime<Utc>,
    /// The fit and its held-out check; `None` when no example could be built.
    pub report: Option<ChurnFitReport>,
    /// Why the defaults are used, or how the fit won, in words.
    pub note: String,
}

impl ChurnModel {
    /// The default model, with `note` saying why.
    pub fn default_model(decided_at: DateTime<Utc>, note: impl Into<String>) -> ChurnModel {
        ChurnModel {
            version: CHURN_MODEL_VERSION.to_owned(),
            fitted: false,
            coefficients: Coefficients::DEFAULT,
            candidate: None,
            decided_at,
            report: None,
            note: note.into(),
        }
    }

    /// The score config with this model's coefficients.
    pub fn config(&self, config: &ScoreConfig) -> ScoreConfig {
        let mut config = *config;
        config.churn.coefficients = self.coefficients;
        config
    }

    /// Marks `scores` (computed with [`ChurnModel::config`]) as this model's: the churn
    /// score's version and the churn part of the scores' version.
    pub fn stamp(&self, scores: &mut CustomerScores) {
        if self.version != CHURN_MODEL_VERSION {
            scores.churn.model_version.clone_from(&self.version);
            scores.model_version =
                scores
                    .model_version
                    .replacen(CHURN_MODEL_VERSION, &self.version, 1);
        }
    }
}

/// Storage of the churn model decided by the last full recompute.
#[async_trait]
pub trait ChurnModelRepo: Send + Sync {
    /// Replaces the stored churn model.
    async fn save_churn_model(&self, model: &ChurnModel) -> Result<()>;

    /// The stored churn model; `None` before the first full recompute.
    async fn churn_model(&self) -> Result<Option<ChurnModel>>;
}

/// `facts` as they stood at `at`: orders, signals and survey answers after it are dropped. An
/// NPS or CSAT answer or a comment given after `at` hides the one before it (facts hold only
/// the latest), so such a customer counts as having none at `at`.
fn facts_at(facts: &CustomerFacts, at: DateTime<Utc>) -> CustomerFacts {
    CustomerFacts {
        customer: facts.customer,
        orders: facts
            .orders
            .iter()
            .filter(|o| o.at <= at)
            .copied()
            .collect(),
        latest_nps: facts.latest_nps.filter(|a| a.answered_at <= at),
        latest_csat: facts.latest_csat.filter(|a| a.answered_at <= at),
        latest_comment: facts.latest_comment.clone().filter(|c| c.answered_at <= at),
        signals: facts
            .signals
            .iter()
            .filter(|s| s.at <= at)
            .cloned()
            .collect(),
    }
}

/// The churn inputs the scorer computes for `facts` as of `at` (which must be read with
/// signals since `at − ScoreConfig::signal_window_days()`).
pub fn churn_inputs_at(
    facts: &CustomerFacts,
    at: DateTime<Utc>,
    config: &ScoreConfig,
) -> ChurnInputs {
    score_customer(&facts_at(facts, at), &[], at, config)
        .churn
        .inputs
}

/// The example of one customer at `reference` (see the module documentation); `None` when
/// they had no order by then or their outcome is unknown. `facts` must hold the history up to
/// `reference + horizon` and signals since `reference − ScoreConfig::signal_window_days()`.
pub fn example(
    facts: &CustomerFacts,
    reference: DateTime<Utc>,
    config: &ScoreConfig,
    fit: &ChurnFitConfig,
) -> Option<Example> {
    if !facts.orders.iter().any(|o| o.at <= reference) {
        return None;
    }
    let end = reference + Duration::days(fit.horizon_days);
    let within = |t: DateTime<Utc>| t > reference && t <= end;
    let cancelled = facts
        .signals
        .iter()
        .any(|s| s.outcome == "SUBSCRIPTION_CANCELLED" && within(s.at));
    let bought = facts.orders.iter().any(|o| within(o.at));
    let inputs = churn_inputs_at(facts, reference, config);
    let habitual = inputs
        .usual_interval_days
        .is_some_and(|d| d <= fit.lapse_interval_days);
    let churned = cancelled || (habitual && !bought);
    if !churned && !bought {
        return None;
    }
    Some(Example {
        customer: facts.customer,
        features: feature_values(&inputs, &config.churn),
        churned,
    })
}

/// Whether a customer is held out: a stable hash (FNV-1a) of the id.
fn held_out(customer: CustomerId, every: u64) -> bool {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in customer.to_string().bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    every > 0 && h.is_multiple_of(every)
}

fn sigmoid(z: f64) -> f64 {
    1.0 / (1.0 + (-z).exp())
}

fn logit(beta: &[f64; COEFFICIENTS], x: &[f64; COEFFICIENTS - 1]) -> f64 {
    beta[0] + x.iter().zip(&beta[1..]).map(|(x, b)| x * b).sum::<f64>()
}

/// Mean log-loss of `beta` on `examples` (probabilities clamped to [1e-12, 1 − 1e-12]).
pub fn log_loss(beta: &Coefficients, examples: &[&Example]) -> f64 {
    let beta = beta.to_array();
    let total: f64 = examples
        .iter()
        .map(|e| {
            let p = sigmoid(logit(&beta, &e.features)).clamp(1e-12, 1.0 - 1e-12);
            if e.churned { -p.ln() } else { -(1.0 - p).ln() }
        })
        .sum();
    total / examples.len().max(1) as f64
}

/// The area under the ROC curve of `beta` on `examples`: the probability that a churned
/// customer scores above a retained one (ties count half); `None` without both outcomes.
pub fn auc(beta: &Coefficients, examples: &[&Example]) -> Option<f64> {
    let beta = beta.to_array();
    let mut scored: Vec<(f64, bool)> = examples
        .iter()
        .map(|e| (logit(&beta, &e.features), e.churned))
        .collect();
    scored.sort_by(|a, b| a.0.total_cmp(&b.0));
    let positives = scored.iter().filter(|s| s.1).count() as f64;
    let negatives = scored.len() as f64 - positives;
    if positives == 0.0 || negatives == 0.0 {
        return None;
    }
    // Mann–Whitney U from mid-ranks.
    let mut rank_sum = 0.0;
    let mut i = 0;
    while i < scored.len() {
        let mut j = i;
        while j < scored.len() && scored[j].0 == scored[i].0 {
            j += 1;
        }
        let mid = (i + j + 1) as f64 / 2.0;
        rank_sum += mid * scored[i..j].iter().filter(|s| s.1).count() as f64;
        i = j;
    }
    Some((rank_sum - positives * (positives + 1.0) / 2.0) / (positives * negatives))
}

/// Solves `a · x = b` for a symmetric positive definite `a` (Cholesky); `None` when `a` is not
/// positive definite.
fn solve_spd(
    a: &[[f64; COEFFICIENTS]; COEFFICIENTS],
    b: &[f64; COEFFICIENTS],
) -> Option<[f64; COEFFICIENTS]> {
    let n = COEFFICIENTS;
    let mut l = [[0.0; COEFFICIENTS]; COEFFICIENTS];
    for i in 0..n {
        for j in 0..=i {
            let s: f64 = (0..j).map(|k| l[i][k] * l[j][k]).sum();
            if i == j {
                let d = a[i][i] - s;
                if !(d > 0.0 && d.is_finite()) {
                    return None;
                }
                l[i][i] = d.sqrt();
            } else {
                l[i][j] = (a[i][j] - s) / l[j][j];
            }
        }
    }
    let mut y = [0.0; COEFFICIENTS];
    for i in 0..n {
        let s: f64 = (0..i).map(|k| l[i][k] * y[k]).sum();
        y[i] = (b[i] - s) / l[i][i];
    }
    let mut x = [0.0; COEFFICIENTS];
    for i in (0..n).rev() {
        let s: f64 = (i + 1..n).map(|k| l[k][i] * x[k]).sum();
        x[i] = (y[i] - s) / l[i][i];
    }
    Some(x)
}

/// The penalised log-likelihood of `beta`.
fn objective(
    beta: &[f64; COEFFICIENTS],
    prior: &[f64; COEFFICIENTS],
    precision: f64,
    examples: &[&Example],
) -> f64 {
    let ll: f64 = examples
        .iter()
        .map(|e| {
            let z = logit(beta, &e.features);
            // log σ(z) = −ln(1 + e^−z), log(1 − σ(z)) = −ln(1 + e^z), computed stably.
            let softplus = |t: f64| {
                if t > 0.0 {
                    t + (-t).exp().ln_1p()
                } else {
                    t.exp().ln_1p()
                }
            };
            if e.churned {
                -softplus(-z)
            } else {
                -softplus(z)
            }
        })
        .sum();
    let penalty: f64 = beta.iter().zip(prior).map(|(b, p)| (b - p) * (b - p)).sum();
    ll - 0.5 * precision * penalty
}

/// The maximum a posteriori coefficients of the logistic model on `examples` with a normal
/// prior of standard deviation `prior_sd` around `prior`, by Newton–Raphson with step halving;
/// answers them and the iterations taken.
pub fn fit_logistic(
    examples: &[&Example],
    prior: &Coefficients,
    prior_sd: f64,
) -> std::result::Result<(Coefficients, u32), String> {
    if !(prior_sd.is_finite() && prior_sd > 0.0) {
        return Err(format!(
            "the prior's standard deviation must be positive, not {prior_sd}"
        ));
    }
    let precision = 1.0 / (prior_sd * prior_sd);
    let prior = prior.to_array();
    let mut beta = prior;
    let mut current = objective(&beta, &prior, precision, examples);
    for iteration in 1..=100u32 {
        let mut grad = [0.0; COEFFICIENTS];
        let mut hess = [[0.0; COEFFICIENTS]; COEFFICIENTS];
        for e in examples {
            let mut x = [1.0; COEFFICIENTS];
            x[1..].copy_from_slice(&e.features);
            let p = sigmoid(logit(&beta, &e.features));
            let y = if e.churned { 1.0 } else { 0.0 };
            let w = p * (1.0 - p);
            for i in 0..COEFFICIENTS {
                grad[i] += (y - p) * x[i];
                if x[i] == 0.0 {
                    continue;
                }
                for j in 0..=i {
                    hess[i][j] += w * x[i] * x[j];
                }
            }
        }
        for i in 0..COEFFICIENTS {
            grad[i] -= precision * (beta[i] - prior[i]);
            hess[i][i] += precision;
            let row = hess[i];
            for (j, v) in row.iter().enumerate().take(i) {
                hess[j][i] = *v;
            }
        }
        let step = solve_spd(&hess, &grad).ok_or("the Hessian is not positive definite")?;
        let mut scale = 1.0;
        let mut next = beta;
        let mut value = f64::NEG_INFINITY;
        for _ in 0..30 {
            for i in 0..COEFFICIENTS {
                next[i] = beta[i] + scale * step[i];
            }
            value = objective(&next, &prior, precision, examples);
            if value >= current - 1e-12 {
                break;
            }
            scale *= 0.5;
        }
        if !value.is_finite() || value < current - 1e-12 {
            return Err("no step improves the likelihood".to_owned());
        }
        let moved = next
            .iter()
            .zip(&beta)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f64::max);
        beta = next;
        current = value;
        if moved < 1e-9 {
            return Ok((Coefficients::from_array(beta), iteration));
        }
    }
    Ok((Coefficients::from_array(beta), 100))
}

/// Fits the churn model on `examples` and decides whether to use it (see the module
/// documentation). `recompute` is the number of the full recompute (part of a fitted model's
/// version), `decided_at` its as-of time, `unlabelled` the customers left out for want of an
/// outcome.
pub fn fit_churn_model(
    examples: &[Example],
    unlabelled: u64,
    reference_time: DateTime<Utc>,
    recompute: i64,
    decided_at: DateTime<Utc>,
    fit: &ChurnFitConfig,
) -> ChurnModel {
    let (holdout, train): (Vec<&Example>, Vec<&Example>) = examples
        .iter()
        .partition(|e| held_out(e.customer, fit.holdout_every));
    let count =
        |set: &[&Example], churned: bool| set.iter().filter(|e| e.churned == churned).count();
    let (train_churned, train_retained) = (count(&train, true), count(&train, false));
    let (holdout_churned, holdout_retained) = (count(&holdout, true), count(&holdout, false));
    let mut report = ChurnFitReport {
        reference_time,
        horizon_days: fit.horizon_days,
        labelled: examples.len() as u64,
        unlabelled,
        train_churned: train_churned as u64,
        train_retained: train_retained as u64,
        holdout_churned: holdout_churned as u64,
        holdout_retained: holdout_retained as u64,
        fitted_log_loss: None,
        default_log_loss: None,
        fitted_auc: None,
        default_auc: None,
        iterations: 0,
    };
    let refuse = |report: ChurnFitReport, note: String| ChurnModel {
        report: Some(report),
        ..ChurnModel::default_model(decided_at, note)
    };
    if train_churned < fit.min_churned || train_retained < fit.min_retained {
        return refuse(
            report,
            format!(
                "not fitted: {train_churned} churned and {train_retained} retained customers \
                 in the training part, {} and {} needed",
                fit.min_churned, fit.min_retained
            ),
        );
    }
    if holdout_churned == 0 || holdout_retained == 0 {
        return refuse(
            report,
            format!(
                "not fitted: the held-out part needs both outcomes ({holdout_churned} churned, \
                 {holdout_retained} retained)"
            ),
        );
    }
    let (fitted, iterations) = match fit_logistic(&train, &Coefficients::DEFAULT, fit.prior_sd) {
        Ok(done) => done,
        Err(why) => return refuse(report, format!("not fitted: {why}")),
    };
    report.iterations = iterations;
    let fitted_ll = log_loss(&fitted, &holdout);
    let default_ll = log_loss(&Coefficients::DEFAULT, &holdout);
    report.fitted_log_loss = Some(fitted_ll);
    report.default_log_loss = Some(default_ll);
    report.fitted_auc = auc(&fitted, &holdout);
    report.default_auc = auc(&Coefficients::DEFAULT, &holdout);
    if fitted_ll < default_ll {
        ChurnModel {
            version: format!(
                "churn-logit-fit-{recompute}-{}",
                decided_at.date_naive().format("%Y-%m-%d")
            ),
            fitted: true,
            coefficients: fitted,
            candidate: Some(fitted),
            decided_at,
            report: Some(report),
            note: format!(
                "fitted on {} customers; held-out log-loss {fitted_ll:.4} against {default_ll:.4} \
                 for the defaults",
                train.len()
            ),
        }
    } else {
        ChurnModel {
            candidate: Some(fitted),
            ..refuse(
                report,
                format!(
                    "fitted coefficients not used: held-out log-loss {fitted_ll:.4}, no better \
                     than {default_ll:.4} for the defaults"
                ),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::money::{Currency, Money};
    use crate::scoring::{LedgerOrder, Signal};
    use chrono::TimeZone;

    /// SplitMix64: a small deterministic generator for simulated data.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        }
        fn uniform(&mut self) -> f64 {
            (self.next() >> 11) as f64 / (1u64 << 53) as f64
        }
        fn below(&mut self, n: u32) -> f64 {
            f64::from(u32::try_from(self.next() % u64::from(n)).unwrap())
        }
    }

    fn day(n: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 1, 12, 0, 0).single().unwrap() + Duration::days(n)
    }

    /// Simulated examples whose outcomes follow `truth`; features spread like a customer base.
    fn simulate(truth: &Coefficients, n: usize, seed: u64) -> Vec<Example> {
        let mut rng = Rng(seed);
        let beta = truth.to_array();
        (0..n)
            .map(|_| {
                let category = rng.below(3);
                let features = [
                    if rng.uniform() < 0.4 {
                        2.0 * rng.uniform()
                    } else {
                        0.0
                    },
                    if rng.uniform() < 0.1 { 1.0 } else { 0.0 },
                    (1.0 + rng.below(12)).ln(),
                    if rng.uniform() < 0.3 {
                        rng.uniform()
                    } else {
                        0.0
                    },
                    if category == 0.0 { 1.0 } else { 0.0 },
                    if category == 2.0 { 1.0 } else { 0.0 },
                    rng.below(4),
                    rng.below(4),
                    rng.below(3),
                    if rng.uniform() < 0.15 { 1.0 } else { 0.0 },
                    rng.below(4),
                    rng.below(4),
                ];
                let p = sigmoid(logit(&beta, &features));
                // Ids from the generator too, so the held-out split is the same every run.
                let id = (u128::from(rng.next()) << 64) | u128::from(rng.next());
                Example {
                    customer: CustomerId(uuid::Uuid::from_u128(id)),
                    features,
                    churned: rng.uniform() < p,
                }
            })
            .collect()
    }

    fn truth() -> Coefficients {
        Coefficients::from_array([
            -1.5, 1.4, 0.3, -0.5, 1.2, 0.6, -1.1, 0.2, 1.6, 0.9, 1.0, 0.5, 0.0,
        ])
    }

    #[test]
    fn recovers_known_coefficients_from_simulated_customers() {
        let examples = simulate(&truth(), 40_000, 7);
        let refs: Vec<&Example> = examples.iter().collect();
        let (fitted, iterations) = fit_logistic(&refs, &Coefficients::DEFAULT, 1.0).unwrap();
        assert!(iterations < 30, "{iterations}");
        for ((name, got), want) in super::super::churn::COEFFICIENT_NAMES
            .iter()
            .zip(fitted.to_array())
            .zip(truth().to_array())
        {
            assert!(
                (got - want).abs() < 0.12,
                "{name}: fitted {got}, true {want}"
            );
        }
    }

    #[test]
    fn a_model_that_beats_the_defaults_on_held_out_customers_is_used() {
        let examples = simulate(&truth(), 4_000, 11);
        let model = fit_churn_model(&examples, 5, day(0), 3, day(90), &ChurnFitConfig::default());
        assert!(model.fitted, "{model:?}");
        assert_eq!(model.version, "churn-logit-fit-3-2026-04-01");
        let r = model.report.as_ref().unwrap();
        assert!(r.fitted_log_loss.unwrap() < r.default_log_loss.unwrap());
        assert!(r.fitted_auc.unwrap() > r.default_auc.unwrap(), "{r:?}");
        assert_eq!(r.labelled, 4_000);
        assert_eq!(r.unlabelled, 5);
        let held = r.holdout_churned + r.holdout_retained;
        assert!((800..1_200).contains(&held), "{held}");
        assert!((model.coefficients.failed_payment - 1.6).abs() < 0.25);
    }

    #[test]
    fn too_few_outcomes_keep_the_defaults_and_say_why() {
        let mut examples = simulate(&truth(), 4_000, 3);
        // Keep only 30 churned customers.
        let mut churned = 0;
        examples.retain(|e| {
            if e.churned {
                churned += 1;
            }
            !e.churned || churned <= 30
        });
        let model = fit_churn_model(&examples, 0, day(0), 1, day(90), &ChurnFitConfig::default());
        assert!(!model.fitted);
        assert_eq!(model.version, CHURN_MODEL_VERSION);
        assert_eq!(model.coefficients, Coefficients::DEFAULT);
        assert!(model.candidate.is_none());
        assert!(model.note.starts_with("not fitted: "), "{}", model.note);
        assert!(model.note.contains("50 and 50 needed"), "{}", model.note);
        let empty = fit_churn_model(&[], 0, day(0), 1, day(90), &ChurnFitConfig::default());
        assert!(!empty.fitted);
    }

    #[test]
    fn a_fit_no_better_than_the_defaults_on_held_out_customers_is_not_used() {
        // Failed payments go with churn among the training customers and with staying among
        // the held-out ones: the fit learns what the held-out customers contradict.
        let mut rng = Rng(5);
        let examples: Vec<Example> = (0..800)
            .map(|i| {
                let id = (u128::from(rng.next()) << 64) | u128::from(rng.next());
                let customer = CustomerId(uuid::Uuid::from_u128(id));
                let failed = f64::from(i % 2);
                let mut features = [0.0; COEFFICIENTS - 1];
                features[7] = failed;
                let noise = rng.uniform() < 0.1;
                let follows = (failed > 0.0) != noise;
                Example {
                    customer,
                    features,
                    churned: if held_out(customer, 4) {
                        !follows
                    } else {
                        follows
                    },
                }
            })
            .collect();
        let model = fit_churn_model(&examples, 0, day(0), 2, day(90), &ChurnFitConfig::default());
        let r = model.report.as_ref().unwrap();
        assert!(!model.fitted, "{model:?}");
        assert_eq!(model.version, CHURN_MODEL_VERSION);
        assert_eq!(model.coefficients, Coefficients::DEFAULT);
        assert!(model.candidate.unwrap().failed_payment > 1.5, "{model:?}");
        assert!(r.fitted_log_loss.unwrap() >= r.default_log_loss.unwrap());
        assert!(
            model.note.starts_with("fitted coefficients not used"),
            "{}",
            model.note
        );
    }

    #[test]
    fn the_prior_holds_tiny_or_one_sided_data_near_the_defaults() {
        // Ten customers, all with two failed payments, all churned: separable data whose
        // unpenalised maximum is at infinity.
        let examples: Vec<Example> = (0..10)
            .map(|_| Example {
                customer: CustomerId::generate(),
                features: [
                    0.0,
                    0.0,
                    2f64.ln(),
                    0.0,
                    0.0,
                    0.0,
                    0.0,
                    2.0,
                    0.0,
                    0.0,
                    0.0,
                    0.0,
                ],
                churned: true,
            })
            .collect();
        let refs: Vec<&Example> = examples.iter().collect();
        let (fitted, _) = fit_logistic(&refs, &Coefficients::DEFAULT, 1.0).unwrap();
        let d = Coefficients::DEFAULT.to_array();
        for (i, (got, want)) in fitted.to_array().iter().zip(d).enumerate() {
            assert!(
                got.is_finite() && (got - want).abs() < 1.5,
                "{i}: {got} vs {want}"
            );
        }
        // It moves the way the data says, and features that never vary keep their default.
        assert!(fitted.failed_payment > 0.7 && fitted.intercept > -2.0);
        assert_eq!(fitted.cancellation, 1.5);
        assert_eq!(fitted.negative, 1.0);
        // A weaker prior lets the same data move further.
        let (loose, _) = fit_logistic(&refs, &Coefficients::DEFAULT, 3.0).unwrap();
        assert!(loose.failed_payment > fitted.failed_payment);
        assert!(fit_logistic(&refs, &Coefficients::DEFAULT, 0.0).is_err());
    }

    #[test]
    fn auc_and_log_loss_are_the_textbook_ones() {
        let ex = |x: f64, churned| Example {
            customer: CustomerId::generate(),
            features: [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, x, 0.0, 0.0, 0.0, 0.0],
            churned,
        };
        let set = [
            ex(3.0, true),
            ex(1.0, true),
            ex(2.0, false),
            ex(0.0, false),
            ex(1.0, false),
        ];
        let refs: Vec<&Example> = set.iter().collect();
        // Pairs (churned, retained): 3>2, 3>0, 3>1, 1<2, 1>0, 1=1 → (4 + 0.5) / 6.
        assert!((auc(&Coefficients::DEFAULT, &refs).unwrap() - 4.5 / 6.0).abs() < 1e-12);
        let zero = Coefficients::from_array([0.0; COEFFICIENTS]);
        assert!((log_loss(&zero, &refs) - 2f64.ln()).abs() < 1e-12);
        assert!(auc(&zero, &refs[..2]).is_none());
    }

    fn eur(minor: i64) -> Money {
        Money::new(minor, Currency::parse("EUR").unwrap())
    }

    fn customer(orders: &[i64], signals: &[(&str, i64)]) -> CustomerFacts {
        CustomerFacts {
            customer: CustomerId::generate(),
            orders: orders
                .iter()
                .map(|&d| LedgerOrder {
                    at: day(d),
                    amount: eur(1_000),
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
    fn outcomes_follow_the_documented_definition() {
        let config = ScoreConfig::default();
        let fit = ChurnFitConfig::default();
        let t = day(200);
        let weekly: Vec<i64> = (0..29).map(|i| 7 * i).collect();
        // A weekly buyer who stops at T: lapsed.
        let lapsed = example(&customer(&weekly, &[]), t, &config, &fit).unwrap();
        assert!(lapsed.churned);
        // The same buyer buying on after T: retained; the orders after T are not features.
        let mut on = weekly.clone();
        on.extend([210, 220]);
        let kept = example(&customer(&on, &[]), t, &config, &fit).unwrap();
        assert!(!kept.churned);
        assert_eq!(kept.features, lapsed.features);
        // Buying on but cancelling a subscription in the horizon: churned.
        let cancelled = example(
            &customer(&on, &[("SUBSCRIPTION_CANCELLED", 250)]),
            t,
            &config,
            &fit,
        )
        .unwrap();
        assert!(cancelled.churned);
        // A cancellation after the horizon is not this horizon's outcome.
        let later = example(
            &customer(&on, &[("SUBSCRIPTION_CANCELLED", 300)]),
            t,
            &config,
            &fit,
        )
        .unwrap();
        assert!(!later.churned);
        // A buyer every 60 days silent since T: no telling; a customer with no order by T: none.
        assert!(example(&customer(&[0, 60, 120, 180], &[]), t, &config, &fit).is_none());
        assert!(example(&customer(&[210], &[]), t, &config, &fit).is_none());
        // Failed payments before T are features; those after T are not.
        let failing = example(
            &customer(&on, &[("PAYMENT_FAILED", 190), ("PAYMENT_FAILED", 230)]),
            t,
            &config,
            &fit,
        )
        .unwrap();
        assert_eq!(failing.features[7], 1.0);
    }
}
