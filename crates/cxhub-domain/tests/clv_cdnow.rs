//! The CLV models against the CDNOW 1/10 sample and the published results: Fader, Hardie & Lee
//! (2005) for BG/NBD, Fader & Hardie (2013) for Gamma-Gamma. Data conventions of the papers:
//! time in weeks; calibration from 1997-01-01 to 1997-09-30 (T counts the days from the first
//! purchase to 1997-09-30, divided by 7), holdout the next 39 weeks to 1998-06-30; several
//! transactions of a customer on one day are one purchase occasion; the first purchase is not a
//! repeat purchase; monetary value is the mean of the repeat occasions of the calibration period.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;

use chrono::NaiveDate;
use cxhub_domain::scoring::clv::{
    BgNbd, CustomerSummary, FitError, GammaGamma, clv, hyp2f1, summarise,
};

const SAMPLE: &str = include_str!("data/CDNOW_sample.txt");
/// 1997-09-30, in days since 1997-01-01.
const CALIBRATION_END_DAY: i64 = 272;
/// 1998-06-30, in days since 1997-01-01.
const HOLDOUT_END_DAY: i64 = 545;
const HOLDOUT_WEEKS: f64 = 39.0;

/// Published by Fader, Hardie & Lee (2005) for this sample.
const FHL: BgNbd = BgNbd {
    r: 0.243,
    alpha: 4.414,
    a: 0.793,
    b: 2.426,
};
/// Published by Fader & Hardie (2013) for the repeat customers of this sample.
const FH: GammaGamma = GammaGamma {
    p: 6.25,
    q: 3.74,
    gamma: 15.44,
};

struct Customer {
    summary: CustomerSummary,
    /// Purchase occasions (distinct days) in the holdout period.
    holdout_purchases: usize,
}

/// Transactions `(day since 1997-01-01, dollars)` per sample customer id.
fn transactions() -> BTreeMap<u32, Vec<(i64, f64)>> {
    let epoch = NaiveDate::from_ymd_opt(1997, 1, 1).unwrap();
    let mut by_customer: BTreeMap<u32, Vec<(i64, f64)>> = BTreeMap::new();
    for line in SAMPLE.lines().filter(|l| !l.trim().is_empty()) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(fields.len(), 5, "bad line {line:?}");
        let id: u32 = fields[1].parse().unwrap();
        let date = NaiveDate::parse_from_str(fields[2], "%Y%m%d").unwrap();
        let dollars: f64 = fields[4].parse().unwrap();
        by_customer
            .entry(id)
            .or_default()
            .push(((date - epoch).num_days(), dollars));
    }
    by_customer
}

fn customers() -> Vec<Customer> {
    transactions()
        .into_values()
        .map(|tx| {
            let purchases: Vec<(f64, f64)> =
                tx.iter().map(|&(day, v)| (day as f64 / 7.0, v)).collect();
            let summary = summarise(&purchases, CALIBRATION_END_DAY as f64 / 7.0)
                .expect("every customer bought in the first quarter");
            let mut holdout_days: Vec<i64> = tx
                .iter()
                .map(|&(day, _)| day)
                .filter(|&d| d > CALIBRATION_END_DAY && d <= HOLDOUT_END_DAY)
                .collect();
            holdout_days.sort_unstable();
            holdout_days.dedup();
            Customer {
                summary,
                holdout_purchases: holdout_days.len(),
            }
        })
        .collect()
}

fn summaries(customers: &[Customer]) -> Vec<CustomerSummary> {
    customers.iter().map(|c| c.summary).collect()
}

fn assert_close(name: &str, got: f64, want: f64, tolerance: f64) {
    assert!(
        (got - want).abs() <= tolerance,
        "{name}: got {got}, want {want} ± {tolerance}"
    );
}

#[test]
fn the_sample_has_the_papers_counts() {
    let customers = customers();
    assert_eq!(customers.len(), 2357);
    let repeaters = customers
        .iter()
        .filter(|c| c.summary.frequency > 0.0)
        .count();
    assert_eq!(
        repeaters, 946,
        "Fader & Hardie (2013) fit on 946 repeat customers"
    );
    // The first customer of the sample: x = 2, t_x = 30.43, T = 38.86.
    let first = customers[0].summary;
    assert_eq!(first.frequency, 2.0);
    assert_close("t_x", first.recency, 30.43, 0.005);
    assert_close("T", first.age, 38.86, 0.005);
}

#[test]
fn bg_nbd_fit_matches_fader_hardie_lee_2005() {
    let customers = summaries(&customers());
    let fitted = BgNbd::fit(&customers).unwrap();
    println!("BG/NBD fitted {fitted:?}");
    assert_close("r", fitted.r, FHL.r, 0.0005);
    assert_close("alpha", fitted.alpha, FHL.alpha, 0.0005);
    assert_close("a", fitted.a, FHL.a, 0.0005);
    assert_close("b", fitted.b, FHL.b, 0.0005);

    let ours = fitted.log_likelihood(&customers);
    let published = FHL.log_likelihood(&customers);
    println!("log-likelihood: fitted {ours}, at the published parameters {published}");
    // The paper reports a log-likelihood of −9,582.4.
    assert_close(
        "log-likelihood at the published parameters",
        published,
        -9582.4,
        0.05,
    );
    assert!(ours >= published, "{ours} < {published}");
    assert!(
        ours - published < 0.01,
        "the published optimum is {ours} − {published} away"
    );
}

#[test]
fn gamma_gamma_fit_matches_fader_hardie_2013() {
    let customers = summaries(&customers());
    let fitted = GammaGamma::fit(&customers).unwrap();
    println!("Gamma-Gamma fitted {fitted:?}");
    assert_close("p", fitted.p, FH.p, 0.005);
    assert_close("q", fitted.q, FH.q, 0.005);
    assert_close("gamma", fitted.gamma, FH.gamma, 0.005);

    let ours = fitted.log_likelihood(&customers);
    let published = FH.log_likelihood(&customers);
    println!("log-likelihood: fitted {ours}, at the published parameters {published}");
    assert!(ours >= published && ours - published < 0.01);
}

#[test]
fn holdout_purchases_are_predicted() {
    let customers = customers();
    let bg = BgNbd::fit(&summaries(&customers)).unwrap();
    let predicted: f64 = customers
        .iter()
        .map(|c| bg.conditional_expected_purchases(&c.summary, HOLDOUT_WEEKS))
        .sum();
    let actual: usize = customers.iter().map(|c| c.holdout_purchases).sum();
    println!("holdout repeat purchases: predicted {predicted:.1}, actual {actual}");
    let unconditional: f64 = customers
        .iter()
        .map(|c| {
            bg.expected_purchases(c.summary.age + HOLDOUT_WEEKS)
                - bg.expected_purchases(c.summary.age)
        })
        .sum();
    println!("unconditional holdout forecast {unconditional:.1}");

    // Conditional expectations by number of calibration repeat purchases (the paper's figure
    // of holdout purchases per calibration frequency, 7+ pooled).
    let total = (predicted, actual);
    let mut groups = [(0usize, 0.0f64, 0usize); 8];
    for c in &customers {
        let g = &mut groups[(c.summary.frequency as usize).min(7)];
        g.0 += 1;
        g.1 += bg.conditional_expected_purchases(&c.summary, HOLDOUT_WEEKS);
        g.2 += c.holdout_purchases;
    }
    for (x, &(n, predicted, actual)) in groups.iter().enumerate() {
        let (predicted, actual) = (predicted / n as f64, actual as f64 / n as f64);
        println!("x = {x}: {n} customers, mean predicted {predicted:.3}, actual {actual:.3}");
    }
    let (predicted, actual) = total;
    let published: f64 = customers
        .iter()
        .map(|c| FHL.conditional_expected_purchases(&c.summary, HOLDOUT_WEEKS))
        .sum();
    println!("at the published parameters: predicted {published:.1}");
    // 1,882 repeat purchase occasions (distinct customer-days) fall in the holdout weeks.
    assert_eq!(actual, 1882);
    // The sum of the conditional expectations agrees with the model's own aggregate forecast
    // for the same weeks (a check of eq. 10 against eq. 9), and with the published parameters.
    assert!((predicted - unconditional).abs() <= 0.02 * unconditional);
    assert!((predicted - published).abs() <= 2.0);
    // BG/NBD under-forecasts this holdout by about 12 % (1,653 for 1,882), mostly among the
    // customers with one or two calibration repeats; a different miss means the model or the
    // data conventions changed.
    let miss = (predicted - actual as f64) / actual as f64;
    assert!(
        (-0.13..=-0.10).contains(&miss),
        "predicted {predicted} vs actual {actual}"
    );
    for (x, &(n, predicted, actual)) in groups.iter().enumerate() {
        let (predicted, actual) = (predicted / n as f64, actual as f64 / n as f64);
        assert!(
            (predicted - actual).abs() <= 0.1 + 0.2 * actual,
            "x = {x}: predicted {predicted}, actual {actual}"
        );
    }
}

#[test]
fn published_model_gives_the_papers_worked_example() {
    // The first sample customer (x = 2, t_x = 30.43, T = 38.86) at the published parameters.
    let c = CustomerSummary {
        frequency: 2.0,
        recency: 30.43,
        age: 38.86,
        monetary: 0.0,
    };
    let expected = FHL.conditional_expected_purchases(&c, 39.0);
    let p_alive = FHL.p_alive(&c);
    println!("worked example: E[Y(39)] = {expected}, P(alive) = {p_alive}");
    assert_close("E[Y(39)]", expected, 1.226, 0.0005);
    assert_close("P(alive)", p_alive, 0.7266, 0.0001);
    // FHL 2005, eq. 10 written with the textbook ₂F₁ (not the transformed series the model uses).
    let (r, alpha, a, b, x, t_x, age, t) =
        (FHL.r, FHL.alpha, FHL.a, FHL.b, 2.0, 30.43, 38.86, 39.0);
    let z = t / (alpha + age + t);
    let f = hyp2f1(r + x, b + x, a + b + x - 1.0, z);
    let numerator =
        (a + b + x - 1.0) / (a - 1.0) * (1.0 - ((alpha + age) / (alpha + age + t)).powf(r + x) * f);
    let denominator = 1.0 + a / (b + x - 1.0) * ((alpha + age) / (alpha + t_x)).powf(r + x);
    assert_close("eq. 10", expected, numerator / denominator, 1e-10);
}

#[test]
fn expectations_behave() {
    let new_customer = |t| FHL.expected_purchases(t);
    assert_eq!(new_customer(0.0), 0.0);
    // Increasing and concave in t, and for small t close to the initial rate r/α.
    let small = new_customer(1e-3) / 1e-3;
    assert_close("initial rate", small, FHL.r / FHL.alpha, 1e-3);
    let (e1, e2, e3) = (new_customer(10.0), new_customer(20.0), new_customer(30.0));
    assert!(e1 < e2 && e2 < e3 && e2 - e1 > e3 - e2);
    // Smooth through a = 1, where the closed form has a removable singularity.
    let at = |a: f64| BgNbd { a, ..FHL }.expected_purchases(39.0);
    let (below, one, above) = (at(0.999), at(1.0), at(1.001));
    assert!(
        (one - 0.5 * (below + above)).abs() < 1e-6,
        "{below} {one} {above}"
    );
    // A customer who bought often and recently is more likely alive than one who stopped early.
    let recent = CustomerSummary {
        frequency: 5.0,
        recency: 38.0,
        age: 39.0,
        monetary: 30.0,
    };
    let lapsed = CustomerSummary {
        recency: 5.0,
        ..recent
    };
    assert!(FHL.p_alive(&recent) > 0.85 && FHL.p_alive(&lapsed) < 0.01);
}

#[test]
fn clv_discounts_expected_purchases_at_the_expected_spend() {
    let c = CustomerSummary {
        frequency: 3.0,
        recency: 30.0,
        age: 38.0,
        monetary: 40.0,
    };
    let undiscounted = clv(&FHL, &FH, &c, 52.0, 0.0);
    let expected = FHL.conditional_expected_purchases(&c, 52.0);
    assert_close("purchases", undiscounted.expected_purchases, expected, 1e-9);
    assert_close(
        "discounted",
        undiscounted.discounted_purchases,
        expected,
        1e-9,
    );
    let spend = FH.conditional_expected_spend(3.0, 40.0);
    assert_close("value", undiscounted.value, expected * spend, 1e-9);
    // The spend is pulled from the customer's own mean towards the population mean pγ/(q − 1).
    let population = FH.p * FH.gamma / (FH.q - 1.0);
    assert!(spend > population.min(40.0) && spend < population.max(40.0));
    assert_close(
        "x = 0",
        FH.conditional_expected_spend(0.0, 0.0),
        population,
        1e-9,
    );

    let discounted = clv(&FHL, &FH, &c, 52.0, 0.01);
    assert!(discounted.value < undiscounted.value);
    assert!(discounted.value > undiscounted.value / 1.01_f64.powi(52));
    assert_eq!(clv(&FHL, &FH, &c, 0.0, 0.01).value, 0.0);
}

#[test]
fn hyp2f1_matches_closed_forms() {
    let ln2 = std::f64::consts::LN_2;
    // ₂F₁(1, 1; 2; z) = −ln(1 − z)/z.
    assert_close("1,1;2;0.5", hyp2f1(1.0, 1.0, 2.0, 0.5), 2.0 * ln2, 1e-14);
    assert_close(
        "1,1;2;-0.5",
        hyp2f1(1.0, 1.0, 2.0, -0.5),
        1.5f64.ln() / 0.5,
        1e-14,
    );
    assert_close(
        "1,1;2;0.99",
        hyp2f1(1.0, 1.0, 2.0, 0.99),
        -(0.01f64.ln()) / 0.99,
        1e-12,
    );
    assert_close(
        "1,1;2;-20",
        hyp2f1(1.0, 1.0, 2.0, -20.0),
        21f64.ln() / 20.0,
        1e-12,
    );
    // ₂F₁(a, b; b; z) = (1 − z)^(−a).
    assert_close(
        "2.5,3;3;0.7",
        hyp2f1(2.5, 3.0, 3.0, 0.7),
        0.3f64.powf(-2.5),
        1e-10,
    );
    // ₂F₁(½, ½; 3/2; z²) = arcsin(z)/z.
    let pi = std::f64::consts::PI;
    assert_close("arcsin", hyp2f1(0.5, 0.5, 1.5, 0.25), pi / 3.0, 1e-14);
    // ₂F₁(½, 1; 3/2; −z²) = arctan(z)/z.
    assert_close("arctan", hyp2f1(0.5, 1.0, 1.5, -1.0), pi / 4.0, 1e-14);
    // A polynomial: ₂F₁(−2, b; c; z) = 1 − 2bz/c + b(b+1)z²/(c(c+1)).
    let (b, c, z) = (1.5, 2.5, 0.8);
    let poly = 1.0 - 2.0 * b * z / c + b * (b + 1.0) * z * z / (c * (c + 1.0));
    assert_close("polynomial", hyp2f1(-2.0, b, c, z), poly, 1e-14);
    // Outside the domain.
    assert!(hyp2f1(1.0, 1.0, 2.0, 1.0).is_nan());
    assert!(hyp2f1(1.0, 1.0, -1.0, 0.5).is_nan());
}

#[test]
fn hyp2f1_matches_the_plain_series_in_the_bg_nbd_range() {
    // Arguments of the BG/NBD expectation (a < 1, large x): the Euler-transformed sum must agree
    // with the naive series summed in long hand.
    for &(x, z) in &[(0.0, 0.3), (2.0, 0.5), (7.0, 0.6), (20.0, 0.45)] {
        let (a, b, c) = (FHL.r + x, FHL.b + x, FHL.a + FHL.b + x - 1.0);
        let mut term = 1.0;
        let mut sum = 1.0;
        for n in 0..20_000 {
            let n = f64::from(n);
            term *= (a + n) * (b + n) / ((c + n) * (n + 1.0)) * z;
            sum += term;
        }
        let got = hyp2f1(a, b, c, z);
        assert!(
            (got - sum).abs() <= 1e-12 * sum,
            "x = {x}, z = {z}: {got} vs {sum}"
        );
    }
}

#[test]
fn summarise_merges_same_day_purchases_and_skips_the_first() {
    let week = |day: f64| day / 7.0;
    let purchases = [
        (week(10.0), 5.0),
        (week(0.0), 10.0),
        (week(0.0), 2.0),
        (week(10.0), 15.0),
        (week(21.0), 30.0),
        (week(400.0), 99.0), // after the calibration period
    ];
    let s = summarise(&purchases, week(35.0)).unwrap();
    assert_eq!(s.frequency, 2.0);
    assert_close("recency", s.recency, 3.0, 1e-12);
    assert_close("age", s.age, 5.0, 1e-12);
    assert_close("monetary", s.monetary, (20.0 + 30.0) / 2.0, 1e-12);

    let single = summarise(&[(1.0, 10.0), (1.0, 5.0)], 3.0).unwrap();
    assert_eq!(
        single,
        CustomerSummary {
            frequency: 0.0,
            recency: 0.0,
            age: 2.0,
            monetary: 0.0
        }
    );
    assert_eq!(summarise(&[(4.0, 1.0)], 3.0), None);
    assert_eq!(summarise(&[], 3.0), None);
}

#[test]
fn fits_refuse_degenerate_input() {
    assert_eq!(BgNbd::fit(&[]), Err(FitError::NoCustomers));
    assert_eq!(GammaGamma::fit(&[]), Err(FitError::NoCustomers));
    let one_timers = vec![
        CustomerSummary {
            frequency: 0.0,
            recency: 0.0,
            age: 10.0,
            monetary: 0.0,
        };
        5
    ];
    assert!(matches!(
        BgNbd::fit(&one_timers),
        Err(FitError::NotIdentifiable(_))
    ));
    assert_eq!(GammaGamma::fit(&one_timers), Err(FitError::NoCustomers));

    let bad = [
        CustomerSummary {
            frequency: 1.0,
            recency: 3.0,
            age: 10.0,
            monetary: 1.0,
        },
        CustomerSummary {
            frequency: 2.0,
            recency: 12.0,
            age: 10.0,
            monetary: 1.0,
        },
    ];
    assert!(matches!(
        BgNbd::fit(&bad),
        Err(FitError::InvalidCustomer { index: 1, .. })
    ));
    let fractional = [CustomerSummary {
        frequency: 1.5,
        ..bad[0]
    }];
    assert!(matches!(
        GammaGamma::fit(&fractional),
        Err(FitError::InvalidCustomer { index: 0, .. })
    ));
    let nan = [CustomerSummary {
        age: f64::NAN,
        ..bad[0]
    }];
    assert!(matches!(
        BgNbd::fit(&nan),
        Err(FitError::InvalidCustomer { index: 0, .. })
    ));
}

proptest::proptest! {
    /// Over a wide range of parameters and histories, the conditional expectation is a finite,
    /// non-negative, non-decreasing function of the horizon that agrees with FHL (2005) eq. 10
    /// written with the textbook ₂F₁, and P(alive) is a probability.
    #[test]
    fn conditional_expectation_agrees_with_eq_10(
        r in 0.05f64..5.0,
        alpha in 0.5f64..50.0,
        a in 0.1f64..5.0,
        b in 0.1f64..10.0,
        x in 0u32..30,
        recency_share in 0.0f64..=1.0,
        age in 0.1f64..100.0,
        t in 0.1f64..60.0,
    ) {
        proptest::prop_assume!((a - 1.0).abs() > 0.01);
        let bg = BgNbd { r, alpha, a, b };
        let x = f64::from(x);
        let t_x = if x > 0.0 { recency_share * age } else { 0.0 };
        let c = CustomerSummary { frequency: x, recency: t_x, age, monetary: 0.0 };
        let p_alive = bg.p_alive(&c);
        proptest::prop_assert!((0.0..=1.0).contains(&p_alive));
        let expected = bg.conditional_expected_purchases(&c, t);
        let later = bg.conditional_expected_purchases(&c, t + 1.0);
        proptest::prop_assert!(expected.is_finite() && expected >= 0.0, "{expected}");
        proptest::prop_assert!(later >= expected);

        let z = t / (alpha + age + t);
        let f = hyp2f1(r + x, b + x, a + b + x - 1.0, z);
        let textbook = p_alive * (a + b + x - 1.0) / (a - 1.0)
            * (1.0 - ((alpha + age) / (alpha + age + t)).powf(r + x) * f);
        proptest::prop_assert!(
            (expected - textbook).abs() <= 1e-8 * (1.0 + textbook.abs()),
            "{expected} vs {textbook}"
        );
    }
}
