//! Customer lifetime value from a customer's purchase history: the BG/NBD model for how many
//! purchases a customer will make and whether they are still "alive", and the Gamma-Gamma model
//! for how much they spend per purchase. Both are fitted by maximum likelihood.
//!
//! - BG/NBD: Fader, Hardie & Lee (2005), "Counting Your Customers the Easy Way: An Alternative to
//!   the Pareto/NBD Model", *Marketing Science* 24(2). While alive, a customer buys at a
//!   Poisson rate λ ~ Gamma(r, α); after every purchase they drop out with probability
//!   p ~ Beta(a, b). On the CDNOW 1/10 sample (2,357 customers, 39-week calibration) the paper
//!   reports r = 0.243, α = 4.414, a = 0.793, b = 2.426 and a log-likelihood of −9,582.4.
//! - Gamma-Gamma: Fader & Hardie (2013), "The Gamma-Gamma Model of Monetary Value". The value of
//!   each repeat purchase is Gamma(p, ν), and ν ~ Gamma(q, γ) across customers; the model is
//!   fitted on the customers with at least one repeat purchase, each described by the number of
//!   repeat purchases and their mean value (the first purchase is left out). On the 946 repeat
//!   customers of the same CDNOW sample the note reports p = 6.25, q = 3.74, γ = 15.44.
//!
//! Time is in any unit the caller chooses, used consistently (the papers, and the tests of this
//! module, use weeks). Everything here is plain numbers: the scoring service turns the
//! transactions ledger into [`CustomerSummary`] values with [`summarise`].
//!
//! Fitting maximises the log-likelihood with a Nelder–Mead simplex over the logarithms of the
//! parameters (so they stay positive without constraints), restarted from its own optimum until a
//! restart no longer improves it. Nelder–Mead needs no gradient, which keeps the likelihoods short
//! and easy to check against the papers; customers with the same (frequency, recency, age) are
//! evaluated once, and logarithms shared by many customers are computed once per evaluation,
//! so a fit on tens of thousands of customers takes well under a second.

use std::cell::Cell;
use std::cmp::Ordering;

use serde::{Deserialize, Serialize};
use statrs::function::gamma::ln_gamma;

/// What the models need to know about one customer, as of the end of a calibration period.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CustomerSummary {
    /// Number of repeat purchase occasions `x` (purchases after the first; several purchases at
    /// the same time are one occasion). A whole number.
    pub frequency: f64,
    /// `t_x`: time from the first purchase to the last one (0 when there is no repeat purchase).
    pub recency: f64,
    /// `T`: time from the first purchase to the end of the calibration period.
    pub age: f64,
    /// Mean value of the repeat purchase occasions (the first purchase is left out); 0 when there
    /// is no repeat purchase.
    pub monetary: f64,
}

/// Summarises one customer's purchases `(time, value)` as of `calibration_end`.
///
/// Purchases after `calibration_end`, or whose time is not finite, are ignored. Purchases at
/// exactly the same time are one purchase occasion whose value is their sum (the papers count
/// several transactions of one day as one occasion: pass day-resolution times). The first
/// occasion is not a repeat purchase, so it counts in neither `frequency` nor `monetary`.
/// `None` when no purchase is left.
pub fn summarise(purchases: &[(f64, f64)], calibration_end: f64) -> Option<CustomerSummary> {
    let mut kept: Vec<(f64, f64)> = purchases
        .iter()
        .copied()
        .filter(|&(t, _)| t.is_finite() && t <= calibration_end)
        .collect();
    kept.sort_by(|x, y| x.0.total_cmp(&y.0));
    let mut occasions: Vec<(f64, f64)> = Vec::with_capacity(kept.len());
    for (t, value) in kept {
        match occasions.last_mut() {
            Some(last) if last.0 == t => last.1 += value,
            _ => occasions.push((t, value)),
        }
    }
    let &(first, _) = occasions.first()?;
    let &(last, _) = occasions.last()?;
    let repeats = &occasions[1..];
    let monetary = if repeats.is_empty() {
        0.0
    } else {
        repeats.iter().map(|&(_, v)| v).sum::<f64>() / repeats.len() as f64
    };
    Some(CustomerSummary {
        frequency: repeats.len() as f64,
        recency: last - first,
        age: calibration_end - first,
        monetary,
    })
}

/// Why a model could not be fitted.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FitError {
    /// There is nothing to fit: no customers (for Gamma-Gamma: no repeat customer with a
    /// positive mean spend).
    #[error("no customers to fit the model on")]
    NoCustomers,
    /// A customer summary is not usable.
    #[error("customer {index}: {reason}")]
    InvalidCustomer {
        /// Position of the customer in the input.
        index: usize,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The data cannot determine the parameters (e.g. nobody ever bought twice).
    #[error("the model is not identifiable from these customers: {0}")]
    NotIdentifiable(&'static str),
    /// The optimiser did not settle on a maximum within its budget of evaluations.
    #[error("maximum likelihood did not converge after {evaluations} evaluations")]
    NotConverged {
        /// Likelihood evaluations spent.
        evaluations: usize,
    },
}

impl From<FitError> for crate::Error {
    fn from(e: FitError) -> Self {
        crate::Error::precondition("CLV_FIT_FAILED", e.to_string())
    }
}

/// The Gaussian hypergeometric function ₂F₁(a, b; c; z) for real arguments and z < 1.
///
/// Sums the power series Σ (a)ₙ(b)ₙ / ((c)ₙ n!) zⁿ. For 0 ≤ z < 1 it first applies Euler's
/// transformation ₂F₁(a, b; c; z) = (1 − z)^(c−a−b) ₂F₁(c − a, c − b; c; z) when c − a − b < 0, so
/// the terms decay at least like n^(−1) zⁿ; for z < 0 it applies Pfaff's transformation
/// ₂F₁(a, b; c; z) = (1 − z)^(−a) ₂F₁(a, c − b; c; z / (z − 1)), which maps z to [0, 1). The sum
/// stops when a geometric bound on the remaining terms is below the rounding error of the sum.
/// The series converges like zⁿ, so arguments very close to 1 are slow (z = 0.999 needs some
/// 40,000 terms); past 10⁶ terms, at z ≥ 1, at non-finite arguments, or when c is a pole
/// (0, −1, −2, …), the result is NaN.
pub fn hyp2f1(a: f64, b: f64, c: f64, z: f64) -> f64 {
    if !(a.is_finite() && b.is_finite() && c.is_finite() && z.is_finite()) || z >= 1.0 {
        return f64::NAN;
    }
    if c <= 0.0 && c == c.floor() {
        return f64::NAN;
    }
    if z < 0.0 {
        let w = z / (z - 1.0);
        return (1.0 - z).powf(-a) * hyp2f1_unit(a, c - b, c, w);
    }
    hyp2f1_unit(a, b, c, z)
}

/// ₂F₁ for 0 ≤ z < 1.
fn hyp2f1_unit(a: f64, b: f64, c: f64, z: f64) -> f64 {
    let excess = c - a - b;
    if excess < 0.0 {
        (1.0 - z).powf(excess) * hyp2f1_series(c - a, c - b, c, z)
    } else {
        hyp2f1_series(a, b, c, z)
    }
}

/// The plain power series of ₂F₁, for 0 ≤ z < 1.
fn hyp2f1_series(a: f64, b: f64, c: f64, z: f64) -> f64 {
    const MAX_TERMS: u32 = 1_000_000;
    let settled = a.abs() + b.abs() + c.abs() + 1.0;
    let mut sum = 1.0_f64;
    let mut term = 1.0_f64;
    for n in 0..MAX_TERMS {
        let n = f64::from(n);
        let ratio = (a + n) * (b + n) / ((c + n) * (n + 1.0)) * z;
        term *= ratio;
        sum += term;
        if term == 0.0 {
            return sum;
        }
        // Past the parameters the ratio of consecutive terms moves monotonically towards z, so
        // every later ratio is at most max(|ratio|, z): the rest is below a geometric series.
        if n > settled {
            let bound = ratio.abs().max(z);
            if bound < 1.0 && term.abs() * bound / (1.0 - bound) <= 0.5 * f64::EPSILON * sum.abs() {
                return sum;
            }
        }
    }
    f64::NAN
}

/// ₂F₁(a, b; c; z) at every point of `zs`, each in [0, 1): the values of [`hyp2f1`], for a
/// fraction of its work when there are many points. The series coefficients depend on a, b and
/// c only, so they are computed once, up to the term where the series has converged at the
/// largest z (which bounds the rest at every smaller z), and each point is then a polynomial
/// evaluation (Horner's rule: one multiply-add per term, no division). Points outside [0, 1) and
/// series that would need more than 10⁶ terms are left to [`hyp2f1`].
pub fn hyp2f1_many(a: f64, b: f64, c: f64, zs: &[f64]) -> Vec<f64> {
    const MAX_TERMS: usize = 1_000_000;
    let in_range = |z: f64| (0.0..1.0).contains(&z);
    let z_max = zs.iter().copied().fold(0.0_f64, f64::max);
    if !(a.is_finite() && b.is_finite() && c.is_finite())
        || (c <= 0.0 && c == c.floor())
        || !zs.iter().all(|&z| in_range(z))
    {
        return zs.iter().map(|&z| hyp2f1(a, b, c, z)).collect();
    }
    // Euler's transformation when c − a − b < 0, as in `hyp2f1_unit`.
    let excess = c - a - b;
    let (sa, sb) = if excess < 0.0 { (c - a, c - b) } else { (a, b) };
    let settled = sa.abs() + sb.abs() + c.abs() + 1.0;
    let mut coefficients = vec![1.0_f64];
    let (mut coefficient, mut power, mut sum) = (1.0_f64, 1.0_f64, 1.0_f64);
    loop {
        let n = coefficients.len() - 1;
        if n >= MAX_TERMS {
            return zs.iter().map(|&z| hyp2f1(a, b, c, z)).collect();
        }
        #[allow(clippy::cast_precision_loss)]
        let nf = n as f64;
        let ratio = (sa + nf) * (sb + nf) / ((c + nf) * (nf + 1.0));
        coefficient *= ratio;
        power *= z_max;
        coefficients.push(coefficient);
        let term = coefficient * power;
        sum += term;
        if coefficient == 0.0 || term == 0.0 {
            break;
        }
        if nf > settled {
            let bound = (ratio * z_max).abs().max(z_max);
            if bound < 1.0 && term.abs() * bound / (1.0 - bound) <= 0.5 * f64::EPSILON * sum.abs() {
                break;
            }
        }
    }
    // Horner's rule at every point at once: the inner loop runs across the points, which the
    // compiler vectorises (`mul_add` would be a library call per step without FMA enabled).
    let mut series = vec![0.0_f64; zs.len()];
    for &k in coefficients.iter().rev() {
        for (s, &z) in series.iter_mut().zip(zs) {
            *s = *s * z + k;
        }
    }
    if excess < 0.0 {
        for (s, &z) in series.iter_mut().zip(zs) {
            *s *= (1.0 - z).powf(excess);
        }
    }
    series
}

/// A fitted BG/NBD model of purchase counts and dropout (Fader, Hardie & Lee 2005).
///
/// On the CDNOW 1/10 sample the paper reports r = 0.243, α = 4.414, a = 0.793, b = 2.426.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BgNbd {
    /// Shape of the Gamma distribution of purchase rates λ across customers.
    pub r: f64,
    /// Scale (rate parameter) of the Gamma distribution of purchase rates, in units of time.
    pub alpha: f64,
    /// First shape of the Beta distribution of dropout probabilities p.
    pub a: f64,
    /// Second shape of the Beta distribution of dropout probabilities p.
    pub b: f64,
}

impl BgNbd {
    /// Fits the model to `customers` by maximum likelihood.
    ///
    /// Refuses an empty input, an invalid summary (negative or non-finite numbers, a frequency
    /// that is not a whole number, a recency beyond the age) and an input where nobody made a
    /// repeat purchase (the dropout process is then not identifiable).
    pub fn fit(customers: &[CustomerSummary]) -> Result<BgNbd, FitError> {
        let data = BgData::new(customers)?;
        // Start: a unit-shape Gamma with the pooled purchase rate, a Beta with mean 1/3.
        let rate = data.total_repeats / data.total_age.max(f64::MIN_POSITIVE);
        let alpha0 = (1.0 / rate).clamp(1e-3, 1e6);
        let start = [0.0, alpha0.ln(), 0.0, 2.0_f64.ln()];
        let best = maximise(|th| data.log_likelihood(th.map(f64::exp)), start)?;
        let [r, alpha, a, b] = best.map(f64::exp);
        Ok(BgNbd { r, alpha, a, b })
    }

    /// Sum of the log-likelihoods of `customers` (FHL 2005, eq. 6), without any term that does
    /// not depend on the parameters. −∞ or NaN for parameters or summaries outside the domain.
    pub fn log_likelihood(&self, customers: &[CustomerSummary]) -> f64 {
        let BgNbd { r, alpha, a, b } = *self;
        let shared = r * alpha.ln() + ln_gamma(a + b) - ln_gamma(b) - ln_gamma(r);
        customers
            .iter()
            .map(|c| {
                let x = c.frequency;
                let head = shared + ln_gamma(r + x) + ln_gamma(b + x) - ln_gamma(a + b + x);
                let stays = -(r + x) * (alpha + c.age).ln();
                if x > 0.0 {
                    let drops = (a / (b + x - 1.0)).ln() - (r + x) * (alpha + c.recency).ln();
                    head + log_add_exp(stays, drops)
                } else {
                    head + stays
                }
            })
            .sum()
    }

    /// Expected number of purchases in a period of length `t` of a customer picked at random
    /// when their first purchase opens the period (FHL 2005, eq. 9).
    pub fn expected_purchases(&self, t: f64) -> f64 {
        self.alive_expectation(0.0, 0.0, t)
    }

    /// Probability that customer `c` is still alive at the end of the calibration period
    /// (FHL 2005, eq. 13). A customer without a repeat purchase has not had a chance to drop out
    /// (dropout happens right after a purchase), so their probability is 1.
    pub fn p_alive(&self, c: &CustomerSummary) -> f64 {
        let x = c.frequency;
        if x <= 0.0 {
            return 1.0;
        }
        let odds = (self.a / (self.b + x - 1.0)).ln()
            + (self.r + x) * ((self.alpha + c.age).ln() - (self.alpha + c.recency).ln());
        1.0 / (1.0 + odds.exp())
    }

    /// Expected number of purchases of customer `c` in the period of length `t` right after the
    /// calibration period (FHL 2005, eq. 10): P(alive) times what an alive customer is expected
    /// to buy.
    pub fn conditional_expected_purchases(&self, c: &CustomerSummary, t: f64) -> f64 {
        self.p_alive(c) * self.alive_expectation(c.frequency, c.age, t)
    }

    /// Expected purchases in the next `t` of a customer known to be alive after `x` repeat
    /// purchases and an age `age`:
    /// (a+b+x−1)/(a−1) · [1 − ((α+T)/(α+T+t))^(r+x) ₂F₁(r+x, b+x; a+b+x−1; z)], z = t/(α+T+t),
    /// computed as (a+b+x−1)/(a−1) · [1 − (1−z)^(a−1) ₂F₁(a+b−1−r, a−1; a+b+x−1; z)] after Euler's
    /// transformation, whose series converges fast because its first two parameters do not grow
    /// with x. The expression is smooth in a with a removable singularity at a = 1, where the
    /// mean of the two sides is taken.
    fn alive_expectation(&self, x: f64, age: f64, t: f64) -> f64 {
        if t <= 0.0 {
            return 0.0;
        }
        const NEAR_ONE: f64 = 1e-4;
        if (self.a - 1.0).abs() < NEAR_ONE {
            let below = self.alive_expectation_at(1.0 - NEAR_ONE, x, age, t);
            let above = self.alive_expectation_at(1.0 + NEAR_ONE, x, age, t);
            return 0.5 * (below + above);
        }
        self.alive_expectation_at(self.a, x, age, t)
    }

    /// [`BgNbd::alive_expectation`] at every time of `ts` (all positive), sharing the series.
    fn alive_expectations(&self, x: f64, age: f64, ts: &[f64]) -> Vec<f64> {
        const NEAR_ONE: f64 = 1e-4;
        if (self.a - 1.0).abs() < NEAR_ONE {
            let below = self.alive_expectations_at(1.0 - NEAR_ONE, x, age, ts);
            let above = self.alive_expectations_at(1.0 + NEAR_ONE, x, age, ts);
            return below
                .iter()
                .zip(above)
                .map(|(lo, hi)| 0.5 * (lo + hi))
                .collect();
        }
        self.alive_expectations_at(self.a, x, age, ts)
    }

    /// [`BgNbd::alive_expectations`] with `a` in place of `self.a`, for a ≠ 1.
    fn alive_expectations_at(&self, a: f64, x: f64, age: f64, ts: &[f64]) -> Vec<f64> {
        let BgNbd { r, alpha, b, .. } = *self;
        let zs: Vec<f64> = ts.iter().map(|t| t / (alpha + age + t)).collect();
        let fs = hyp2f1_many(a + b - 1.0 - r, a - 1.0, a + b + x - 1.0, &zs);
        zs.iter()
            .zip(fs)
            .map(|(z, f)| {
                let bracket = 1.0 - ((a - 1.0) * (-z).ln_1p()).exp() * f;
                (a + b + x - 1.0) / (a - 1.0) * bracket
            })
            .collect()
    }

    /// [`BgNbd::alive_expectation`] with `a` in place of `self.a`, for a ≠ 1.
    fn alive_expectation_at(&self, a: f64, x: f64, age: f64, t: f64) -> f64 {
        let BgNbd { r, alpha, b, .. } = *self;
        let z = t / (alpha + age + t);
        let f = hyp2f1(a + b - 1.0 - r, a - 1.0, a + b + x - 1.0, z);
        let bracket = 1.0 - ((a - 1.0) * (-z).ln_1p()).exp() * f;
        (a + b + x - 1.0) / (a - 1.0) * bracket
    }
}

/// A fitted Gamma-Gamma model of spend per purchase (Fader & Hardie 2013).
///
/// On the 946 repeat customers of the CDNOW 1/10 sample the note reports p = 6.25, q = 3.74,
/// γ = 15.44.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct GammaGamma {
    /// Shape of the Gamma distribution of one purchase's value around a customer's mean.
    pub p: f64,
    /// Shape of the Gamma distribution of the customers' rate parameters ν.
    pub q: f64,
    /// Scale of the Gamma distribution of the customers' rate parameters ν, in money.
    pub gamma: f64,
}

impl GammaGamma {
    /// Fits the model by maximum likelihood on the customers of `customers` with at least one
    /// repeat purchase, from their frequency and mean repeat spend.
    ///
    /// Repeat customers whose mean spend is not positive (free orders) are left out: a Gamma
    /// model of value cannot describe them. Refuses an input without any usable repeat customer,
    /// invalid summaries (non-finite, or a frequency that is not a whole number), and a fit whose
    /// q ≤ 1, for which the mean spend per purchase would be infinite.
    pub fn fit(customers: &[CustomerSummary]) -> Result<GammaGamma, FitError> {
        let data = GgData::new(customers)?;
        // Start: p = 1, q = 2, and γ so that the population mean spend pγ/(q−1) is the sample's.
        let start = [0.0, 2.0_f64.ln(), data.mean_monetary.ln()];
        let best = maximise(|th| data.log_likelihood(th.map(f64::exp)), start)?;
        let [p, q, gamma] = best.map(f64::exp);
        if q <= 1.0 {
            return Err(FitError::NotIdentifiable(
                "q ≤ 1: the mean spend per purchase would be infinite",
            ));
        }
        Ok(GammaGamma { p, q, gamma })
    }

    /// Sum of the log-likelihoods of the mean repeat spend of the repeat customers among
    /// `customers` (Fader & Hardie 2013, eq. 3); others are skipped as in [`GammaGamma::fit`].
    pub fn log_likelihood(&self, customers: &[CustomerSummary]) -> f64 {
        let GammaGamma { p, q, gamma } = *self;
        let shared = q * gamma.ln() - ln_gamma(q);
        customers
            .iter()
            .filter(|c| c.frequency > 0.0 && c.monetary > 0.0)
            .map(|c| {
                let (x, m) = (c.frequency, c.monetary);
                shared + ln_gamma(p * x + q) - ln_gamma(p * x)
                    + (p * x - 1.0) * m.ln()
                    + p * x * x.ln()
                    - (p * x + q) * (gamma + x * m).ln()
            })
            .sum()
    }

    /// Expected value of a future purchase of a customer with `frequency` repeat purchases of
    /// mean value `monetary` (Fader & Hardie 2013, eq. 5): p(γ + x·m)/(p·x + q − 1), a weighted
    /// mean of the population mean pγ/(q − 1) and the customer's own mean. With no repeat
    /// purchase it is the population mean. Infinite when p·x + q ≤ 1.
    pub fn conditional_expected_spend(&self, frequency: f64, monetary: f64) -> f64 {
        let x = frequency.max(0.0);
        let m = if x > 0.0 { monetary } else { 0.0 };
        let denominator = self.p * x + self.q - 1.0;
        if denominator <= 0.0 {
            return f64::INFINITY;
        }
        self.p * (self.gamma + x * m) / denominator
    }
}

/// A customer's lifetime value over a horizon, with the figures it is made of.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ClvEstimate {
    /// Probability that the customer is still alive (BG/NBD).
    pub p_alive: f64,
    /// Expected purchases over the horizon, undiscounted (BG/NBD).
    pub expected_purchases: f64,
    /// Expected purchases over the horizon, each discounted to today.
    pub discounted_purchases: f64,
    /// Expected value of one purchase (Gamma-Gamma).
    pub expected_spend: f64,
    /// Discounted expected value: `discounted_purchases × expected_spend`.
    pub value: f64,
}

/// Discounted expected value of customer `c` over the next `horizon_weeks` after the calibration
/// period (revenue; multiply by a margin for profit).
///
/// Discretisation: the horizon is cut into weeks; the purchases expected in week k (the
/// difference of the BG/NBD conditional expectations at k and k − 1 weeks, the last week possibly
/// partial) are discounted by (1 + `weekly_discount_rate`)^k, as if paid at the end of their week,
/// and valued at the Gamma-Gamma expected spend (the papers assume spend independent of the
/// purchase process). Time must be in weeks in both models. A horizon that is not positive gives
/// a value of 0; the rate must be above −1.
pub fn clv(
    bg: &BgNbd,
    gg: &GammaGamma,
    c: &CustomerSummary,
    horizon_weeks: f64,
    weekly_discount_rate: f64,
) -> ClvEstimate {
    let p_alive = bg.p_alive(c);
    let expected_spend = gg.conditional_expected_spend(c.frequency, c.monetary);
    let mut expected = 0.0;
    let mut discounted = 0.0;
    if horizon_weeks > 0.0 {
        let weeks = horizon_weeks.ceil() as u64;
        let step = 1.0 + weekly_discount_rate;
        let times: Vec<f64> = (1..=weeks).map(|k| (k as f64).min(horizon_weeks)).collect();
        let cumulative = bg.alive_expectations(c.frequency, c.age, &times);
        // stepᵗ as a running product over the whole weeks (one `powf` for a fractional last
        // week, not one per week).
        let mut whole = 1.0;
        for (k, (t, cumulative)) in times.into_iter().zip(cumulative).enumerate() {
            whole *= step;
            let factor = if t == (k + 1) as f64 {
                whole
            } else {
                step.powf(t)
            };
            discounted += (cumulative - expected) / factor;
            expected = cumulative;
        }
    }
    let expected_purchases = p_alive * expected;
    let discounted_purchases = p_alive * discounted;
    ClvEstimate {
        p_alive,
        expected_purchases,
        discounted_purchases,
        expected_spend,
        value: discounted_purchases * expected_spend,
    }
}

/// ln(eᵘ + eᵛ) without overflow.
fn log_add_exp(u: f64, v: f64) -> f64 {
    let (hi, lo) = if u >= v { (u, v) } else { (v, u) };
    if hi == f64::NEG_INFINITY {
        return hi;
    }
    hi + (lo - hi).exp().ln_1p()
}

fn check_customer(index: usize, c: &CustomerSummary) -> Result<(), FitError> {
    let invalid = |reason| Err(FitError::InvalidCustomer { index, reason });
    if !(c.frequency.is_finite() && c.recency.is_finite() && c.age.is_finite()) {
        return invalid("frequency, recency and age must be finite");
    }
    if c.frequency < 0.0 || c.frequency.fract() != 0.0 {
        return invalid("frequency must be a whole number of repeat purchases");
    }
    if c.recency < 0.0 || c.age < c.recency {
        return invalid("recency must be between 0 and the age");
    }
    Ok(())
}

/// Index of `value` in the sorted, deduplicated `values`.
fn position(values: &[f64], value: f64) -> usize {
    values.partition_point(|v| v.total_cmp(&value) == Ordering::Less)
}

fn distinct(mut values: Vec<f64>) -> Vec<f64> {
    values.sort_by(f64::total_cmp);
    values.dedup();
    values
}

/// Customers with the same (frequency, recency, age), counted once.
struct BgGroup {
    x: usize,
    recency: usize,
    age: usize,
    weight: f64,
}

/// The BG/NBD likelihood prepared for repeated evaluation: distinct frequencies, recencies and
/// ages are kept once so their logarithms and log-gamma terms are computed once per evaluation.
struct BgData {
    xs: Vec<f64>,
    x_weights: Vec<f64>,
    recencies: Vec<f64>,
    ages: Vec<f64>,
    groups: Vec<BgGroup>,
    customers: f64,
    total_repeats: f64,
    total_age: f64,
}

impl BgData {
    fn new(customers: &[CustomerSummary]) -> Result<Self, FitError> {
        if customers.is_empty() {
            return Err(FitError::NoCustomers);
        }
        for (i, c) in customers.iter().enumerate() {
            check_customer(i, c)?;
        }
        if customers.iter().all(|c| c.frequency == 0.0) {
            return Err(FitError::NotIdentifiable(
                "no customer made a repeat purchase",
            ));
        }
        // Recency carries no information without a repeat purchase: fold those customers.
        let recency_of = |c: &CustomerSummary| if c.frequency > 0.0 { c.recency } else { 0.0 };
        let xs = distinct(customers.iter().map(|c| c.frequency).collect());
        let recencies = distinct(customers.iter().map(recency_of).collect());
        let ages = distinct(customers.iter().map(|c| c.age).collect());
        let mut keys: Vec<(usize, usize, usize)> = customers
            .iter()
            .map(|c| {
                (
                    position(&xs, c.frequency),
                    position(&recencies, recency_of(c)),
                    position(&ages, c.age),
                )
            })
            .collect();
        keys.sort_unstable();
        let mut groups: Vec<BgGroup> = Vec::new();
        let mut x_weights = vec![0.0; xs.len()];
        for (x, recency, age) in keys {
            x_weights[x] += 1.0;
            match groups.last_mut() {
                Some(g) if (g.x, g.recency, g.age) == (x, recency, age) => g.weight += 1.0,
                _ => groups.push(BgGroup {
                    x,
                    recency,
                    age,
                    weight: 1.0,
                }),
            }
        }
        Ok(BgData {
            xs,
            x_weights,
            recencies,
            ages,
            groups,
            customers: customers.len() as f64,
            total_repeats: customers.iter().map(|c| c.frequency).sum(),
            total_age: customers.iter().map(|c| c.age).sum(),
        })
    }

    fn log_likelihood(&self, [r, alpha, a, b]: [f64; 4]) -> f64 {
        let mut total =
            self.customers * (r * alpha.ln() + ln_gamma(a + b) - ln_gamma(b) - ln_gamma(r));
        // Per distinct x: the log-gamma terms, and ln(a / (b + x − 1)) for the dropout branch.
        let mut drop_odds = Vec::with_capacity(self.xs.len());
        for (&x, &w) in self.xs.iter().zip(&self.x_weights) {
            total += w * (ln_gamma(r + x) + ln_gamma(b + x) - ln_gamma(a + b + x));
            drop_odds.push(if x > 0.0 {
                (a / (b + x - 1.0)).ln()
            } else {
                0.0
            });
        }
        let ln_recency: Vec<f64> = self.recencies.iter().map(|t| (alpha + t).ln()).collect();
        let ln_age: Vec<f64> = self.ages.iter().map(|t| (alpha + t).ln()).collect();
        for g in &self.groups {
            let x = self.xs[g.x];
            let stays = -(r + x) * ln_age[g.age];
            let term = if x > 0.0 {
                log_add_exp(stays, drop_odds[g.x] - (r + x) * ln_recency[g.recency])
            } else {
                stays
            };
            total += g.weight * term;
        }
        total
    }
}

/// The Gamma-Gamma likelihood prepared for repeated evaluation: the terms linear in p are summed
/// once, and the log-gamma terms are computed once per distinct frequency.
struct GgData {
    xs: Vec<f64>,
    x_weights: Vec<f64>,
    /// (x, m) of every usable repeat customer.
    customers: Vec<(f64, f64)>,
    /// Σ x (ln m + ln x), the coefficient of p.
    p_coefficient: f64,
    /// −Σ ln m.
    constant: f64,
    mean_monetary: f64,
}

impl GgData {
    fn new(customers: &[CustomerSummary]) -> Result<Self, FitError> {
        let mut kept = Vec::new();
        for (index, c) in customers.iter().enumerate() {
            if !(c.frequency.is_finite() && c.monetary.is_finite()) {
                return Err(FitError::InvalidCustomer {
                    index,
                    reason: "frequency and monetary value must be finite",
                });
            }
            if c.frequency < 0.0 || c.frequency.fract() != 0.0 {
                return Err(FitError::InvalidCustomer {
                    index,
                    reason: "frequency must be a whole number of repeat purchases",
                });
            }
            if c.frequency > 0.0 && c.monetary > 0.0 {
                kept.push((c.frequency, c.monetary));
            }
        }
        if kept.is_empty() {
            return Err(FitError::NoCustomers);
        }
        let xs = distinct(kept.iter().map(|&(x, _)| x).collect());
        let mut x_weights = vec![0.0; xs.len()];
        for &(x, _) in &kept {
            x_weights[position(&xs, x)] += 1.0;
        }
        Ok(GgData {
            x_weights,
            xs,
            p_coefficient: kept.iter().map(|&(x, m)| x * (m.ln() + x.ln())).sum(),
            constant: -kept.iter().map(|&(_, m)| m.ln()).sum::<f64>(),
            mean_monetary: kept.iter().map(|&(_, m)| m).sum::<f64>() / kept.len() as f64,
            customers: kept,
        })
    }

    fn log_likelihood(&self, [p, q, gamma]: [f64; 3]) -> f64 {
        let n = self.customers.len() as f64;
        let mut total = n * (q * gamma.ln() - ln_gamma(q)) + p * self.p_coefficient + self.constant;
        for (&x, &w) in self.xs.iter().zip(&self.x_weights) {
            total += w * (ln_gamma(p * x + q) - ln_gamma(p * x));
        }
        for &(x, m) in &self.customers {
            total -= (p * x + q) * (gamma + x * m).ln();
        }
        total
    }
}

/// Maximises `f` over ℝᴺ (log-parameters) with Nelder–Mead, restarting from the best point until
/// a restart gains nothing; fails when the evaluation budget runs out first.
fn maximise<const N: usize>(
    f: impl Fn([f64; N]) -> f64,
    start: [f64; N],
) -> Result<[f64; N], FitError> {
    const MAX_EVALUATIONS: usize = 20_000;
    const MAX_RESTARTS: usize = 20;
    // Minimise −f; anything undefined counts as infinitely bad.
    let cost = |x: [f64; N]| {
        let v = -f(x);
        if v.is_nan() { f64::INFINITY } else { v }
    };
    let evaluations = Cell::new(0);
    let mut best = start;
    let mut best_cost = cost(start);
    let mut step = 0.5;
    for _ in 0..MAX_RESTARTS {
        let (x, c) = nelder_mead(&cost, best, step, MAX_EVALUATIONS, &evaluations).ok_or(
            FitError::NotConverged {
                evaluations: evaluations.get(),
            },
        )?;
        let gain = best_cost - c;
        if c <= best_cost {
            best = x;
            best_cost = c;
        }
        if best_cost.is_finite() && gain.abs() <= 1e-9 * (1.0 + best_cost.abs()) {
            return Ok(best);
        }
        step = 0.1;
    }
    Err(FitError::NotConverged {
        evaluations: evaluations.get(),
    })
}

/// One Nelder–Mead run (reflection 1, expansion 2, contraction ½, shrink ½) from a simplex of
/// side `step` at `start`, until the simplex is small in both position and value. `None` when
/// the shared budget `evaluations`/`max_evaluations` runs out.
fn nelder_mead<const N: usize>(
    cost: &impl Fn([f64; N]) -> f64,
    start: [f64; N],
    step: f64,
    max_evaluations: usize,
    evaluations: &Cell<usize>,
) -> Option<([f64; N], f64)> {
    const X_TOLERANCE: f64 = 1e-9;
    const F_TOLERANCE: f64 = 1e-12;
    let eval = |x: [f64; N]| {
        evaluations.set(evaluations.get() + 1);
        cost(x)
    };
    let mut simplex: Vec<([f64; N], f64)> = Vec::with_capacity(N + 1);
    simplex.push((start, eval(start)));
    for i in 0..N {
        let mut x = start;
        x[i] += step;
        simplex.push((x, eval(x)));
    }
    let along = |from: [f64; N], to: [f64; N], t: f64| -> [f64; N] {
        std::array::from_fn(|i| from[i] + t * (to[i] - from[i]))
    };
    loop {
        simplex.sort_by(|p, q| p.1.total_cmp(&q.1));
        let (best, best_cost) = simplex[0];
        let (worst, worst_cost) = simplex[N];
        let spread = simplex
            .iter()
            .flat_map(|(x, _)| x.iter().zip(&best).map(|(u, v)| (u - v).abs()))
            .fold(0.0_f64, f64::max);
        if best_cost.is_finite()
            && (worst_cost - best_cost) <= F_TOLERANCE * (1.0 + best_cost.abs())
            && spread <= X_TOLERANCE
        {
            return Some((best, best_cost));
        }
        if evaluations.get() >= max_evaluations {
            return None;
        }
        let centroid: [f64; N] =
            std::array::from_fn(|i| simplex[..N].iter().map(|(x, _)| x[i]).sum::<f64>() / N as f64);
        let reflected = along(centroid, worst, -1.0);
        let reflected_cost = eval(reflected);
        if reflected_cost < best_cost {
            let expanded = along(centroid, worst, -2.0);
            let expanded_cost = eval(expanded);
            simplex[N] = if expanded_cost < reflected_cost {
                (expanded, expanded_cost)
            } else {
                (reflected, reflected_cost)
            };
            continue;
        }
        if reflected_cost < simplex[N - 1].1 {
            simplex[N] = (reflected, reflected_cost);
            continue;
        }
        let (contracted, limit) = if reflected_cost < worst_cost {
            (along(centroid, reflected, 0.5), reflected_cost)
        } else {
            (along(centroid, worst, 0.5), worst_cost)
        };
        let contracted_cost = eval(contracted);
        if contracted_cost <= limit {
            simplex[N] = (contracted, contracted_cost);
            continue;
        }
        for vertex in simplex.iter_mut().skip(1) {
            let x = along(best, vertex.0, 0.5);
            *vertex = (x, eval(x));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hyp2f1_many_equals_hyp2f1_at_every_point() {
        let zs: Vec<f64> = (1..=52)
            .map(|k| f64::from(k) / (4.4 + 30.0 + f64::from(k)))
            .collect();
        for (a, b, c) in [
            (2.0, -0.2, 3.5),
            (0.4, 0.3, 2.2),
            (2.9, 1.8, 1.5),
            (-0.5, 0.7, 12.0),
            (1.25, -0.9, 0.3),
        ] {
            let many = hyp2f1_many(a, b, c, &zs);
            for (z, got) in zs.iter().zip(&many) {
                let want = hyp2f1(a, b, c, *z);
                assert!(
                    (got - want).abs() <= 1e-12 * want.abs().max(1.0),
                    "2F1({a}, {b}; {c}; {z}) = {want}, many gave {got}"
                );
            }
        }
        // Outside [0, 1) every point falls back to the single-point function.
        let odd = hyp2f1_many(0.5, 0.5, 1.5, &[-0.5, 0.25, 1.0]);
        assert!((odd[0] - hyp2f1(0.5, 0.5, 1.5, -0.5)).abs() < 1e-15);
        assert!((odd[1] - hyp2f1(0.5, 0.5, 1.5, 0.25)).abs() < 1e-15);
        assert!(odd[2].is_nan());
        assert!(hyp2f1_many(1.0, 1.0, -2.0, &[0.5])[0].is_nan());
    }

    #[test]
    fn alive_expectations_equal_one_point_at_a_time() {
        for a in [0.7929, 1.00005, 2.3] {
            let bg = BgNbd {
                r: 0.2426,
                alpha: 4.4136,
                a,
                b: 2.4259,
            };
            let ts: Vec<f64> = (1..=52).map(f64::from).chain([51.5]).collect();
            for (x, age) in [(0.0, 10.0), (3.0, 40.0), (14.0, 77.0)] {
                let many = bg.alive_expectations(x, age, &ts);
                for (t, got) in ts.iter().zip(&many) {
                    let want = bg.alive_expectation(x, age, *t);
                    // Near a = 1 both divide a difference of rounding size by a − 1 = ±10⁻⁴.
                    let tolerance = if (a - 1.0_f64).abs() < 1e-3 {
                        1e-8
                    } else {
                        1e-11
                    };
                    assert!(
                        (got - want).abs() <= tolerance * want.abs().max(1e-3),
                        "a={a} x={x} T={age} t={t}: {want} vs {got}"
                    );
                }
            }
        }
    }

    #[test]
    fn nelder_mead_finds_the_rosenbrock_minimum() {
        let rosenbrock = |[x, y]: [f64; 2]| -((1.0 - x).powi(2) + 100.0 * (y - x * x).powi(2));
        let best = maximise(rosenbrock, [-1.2, 1.0]);
        let Ok([x, y]) = best else {
            panic!("no convergence: {best:?}");
        };
        assert!((x - 1.0).abs() < 1e-6 && (y - 1.0).abs() < 1e-6, "{x} {y}");
    }

    #[test]
    fn grouped_likelihood_equals_the_plain_one() {
        let customers = [
            CustomerSummary {
                frequency: 2.0,
                recency: 30.43,
                age: 38.86,
                monetary: 20.0,
            },
            CustomerSummary {
                frequency: 0.0,
                recency: 0.0,
                age: 38.86,
                monetary: 0.0,
            },
            CustomerSummary {
                frequency: 2.0,
                recency: 30.43,
                age: 38.86,
                monetary: 40.0,
            },
            CustomerSummary {
                frequency: 5.0,
                recency: 10.0,
                age: 12.0,
                monetary: 7.5,
            },
        ];
        let bg = BgNbd {
            r: 0.243,
            alpha: 4.414,
            a: 0.793,
            b: 2.426,
        };
        let Ok(data) = BgData::new(&customers) else {
            panic!("valid input refused");
        };
        let grouped = data.log_likelihood([bg.r, bg.alpha, bg.a, bg.b]);
        assert!((grouped - bg.log_likelihood(&customers)).abs() < 1e-9);
        assert_eq!(data.groups.len(), 3);

        let gg = GammaGamma {
            p: 6.25,
            q: 3.74,
            gamma: 15.44,
        };
        let Ok(data) = GgData::new(&customers) else {
            panic!("valid input refused");
        };
        let grouped = data.log_likelihood([gg.p, gg.q, gg.gamma]);
        assert!((grouped - gg.log_likelihood(&customers)).abs() < 1e-9);
    }
}
