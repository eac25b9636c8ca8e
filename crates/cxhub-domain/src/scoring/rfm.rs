//! RFM: recency, frequency and monetary quintile scores over a population of customers, and the
//! usual named segments of the recency × frequency grid.
//!
//! Each dimension is scored 1 to 5 by the customer's rank in the population: 5 is the best fifth
//! (most recent, most frequent, highest spend). Customers with equal values always get equal
//! scores, so a quintile boundary never splits a tie; with many ties some scores stay unused
//! (if 60 % of customers bought once, they all get F 1 and F 2–3 may be empty).
//!
//! The scores are defined by thresholds computed from the population ([`RfmModel::fit`]); the
//! same thresholds score any other customer ([`RfmModel::score`]), so one changed customer can be
//! rescored without refitting, and every score can be explained by the thresholds it crossed.
//!
//! Spend in different currencies is not comparable: fit one population per currency, or convert
//! first.

use std::cmp::Ordering;

use serde::{Deserialize, Serialize};

/// One customer's purchase history, summarised.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RfmInput {
    /// Days since the last purchase (0 = today).
    pub recency_days: u32,
    /// Number of purchase occasions.
    pub frequency: u64,
    /// Total (or mean) spend, in one currency. A NaN counts as the lowest possible spend.
    pub monetary: f64,
}

/// The RFM scores of one customer, each 1..=5 (5 best), and the segment of its R/F cell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RfmScore {
    /// Recency score: 5 for the most recent fifth of the population.
    pub recency: u8,
    /// Frequency score: 5 for the most frequent fifth.
    pub frequency: u8,
    /// Monetary score: 5 for the highest-spending fifth.
    pub monetary: u8,
    /// The named segment of the (recency, frequency) cell; see [`RfmSegment::of`].
    pub segment: RfmSegment,
}

impl RfmScore {
    /// The conventional three-digit code, recency first: `"543"`.
    pub fn code(&self) -> String {
        format!("{}{}{}", self.recency, self.frequency, self.monetary)
    }
}

/// The named RFM segments of the recency × frequency grid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum RfmSegment {
    /// Bought recently and often.
    Champions,
    /// Buy often and fairly recently.
    Loyal,
    /// Recent customers with a few purchases: could become loyal.
    PotentialLoyalist,
    /// Bought very recently, for the first time (or rarely).
    NewCustomers,
    /// Recent, but rare buyers.
    Promising,
    /// Middling recency and frequency.
    NeedAttention,
    /// Middling recency, few purchases: slipping away.
    AboutToSleep,
    /// Used to buy often, not lately.
    AtRisk,
    /// Were among the most frequent buyers, not lately.
    CantLoseThem,
    /// Neither recent nor frequent.
    Hibernating,
    /// Least recent and least frequent.
    Lost,
}

impl RfmSegment {
    /// Every segment, best first.
    pub const ALL: [RfmSegment; 11] = [
        RfmSegment::Champions,
        RfmSegment::Loyal,
        RfmSegment::PotentialLoyalist,
        RfmSegment::NewCustomers,
        RfmSegment::Promising,
        RfmSegment::NeedAttention,
        RfmSegment::AboutToSleep,
        RfmSegment::AtRisk,
        RfmSegment::CantLoseThem,
        RfmSegment::Hibernating,
        RfmSegment::Lost,
    ];

    /// The segment of a recency score `r` and frequency score `f` (each clamped to 1..=5), by
    /// this table (rows R, columns F):
    ///
    /// | R \ F | 1 | 2 | 3 | 4 | 5 |
    /// |---|---|---|---|---|---|
    /// | **5** | New customers | Potential loyalist | Potential loyalist | Champions | Champions |
    /// | **4** | Promising | Potential loyalist | Potential loyalist | Loyal | Loyal |
    /// | **3** | About to sleep | About to sleep | Need attention | Loyal | Loyal |
    /// | **2** | Hibernating | Hibernating | At risk | At risk | Can't lose them |
    /// | **1** | Lost | Lost | At risk | At risk | Can't lose them |
    ///
    /// The names are the common eleven RFM segments (as listed by Putler, among others); the
    /// cells are the widely used 5 × 5 R/F grid, whose bottom-left "Hibernating" block is split
    /// here so that the least recent row (R 1, F 1–2) is "Lost".
    pub fn of(r: u8, f: u8) -> RfmSegment {
        use RfmSegment::*;
        // One arm per row of the table, top row first; `_` is the highest score of the row.
        match (r.clamp(1, 5), f.clamp(1, 5)) {
            (5, f) => match f {
                1 => NewCustomers,
                2 | 3 => PotentialLoyalist,
                _ => Champions,
            },
            (4, f) => match f {
                1 => Promising,
                2 | 3 => PotentialLoyalist,
                _ => Loyal,
            },
            (3, f) => match f {
                1 | 2 => AboutToSleep,
                3 => NeedAttention,
                _ => Loyal,
            },
            (2, f) => match f {
                1 | 2 => Hibernating,
                3 | 4 => AtRisk,
                _ => CantLoseThem,
            },
            (_, f) => match f {
                1 | 2 => Lost,
                3 | 4 => AtRisk,
                _ => CantLoseThem,
            },
        }
    }

    /// The display name: "Champions", "Can't lose them", …
    pub fn name(self) -> &'static str {
        match self {
            RfmSegment::Champions => "Champions",
            RfmSegment::Loyal => "Loyal",
            RfmSegment::PotentialLoyalist => "Potential loyalist",
            RfmSegment::NewCustomers => "New customers",
            RfmSegment::Promising => "Promising",
            RfmSegment::NeedAttention => "Need attention",
            RfmSegment::AboutToSleep => "About to sleep",
            RfmSegment::AtRisk => "At risk",
            RfmSegment::CantLoseThem => "Can't lose them",
            RfmSegment::Hibernating => "Hibernating",
            RfmSegment::Lost => "Lost",
        }
    }

    /// The cells of the grid that make up this segment, as a rule a person can read.
    pub fn rule(self) -> &'static str {
        match self {
            RfmSegment::Champions => "R 5 and F 4–5",
            RfmSegment::Loyal => "R 3–4 and F 4–5",
            RfmSegment::PotentialLoyalist => "R 4–5 and F 2–3",
            RfmSegment::NewCustomers => "R 5 and F 1",
            RfmSegment::Promising => "R 4 and F 1",
            RfmSegment::NeedAttention => "R 3 and F 3",
            RfmSegment::AboutToSleep => "R 3 and F 1–2",
            RfmSegment::AtRisk => "R 1–2 and F 3–4",
            RfmSegment::CantLoseThem => "R 1–2 and F 5",
            RfmSegment::Hibernating => "R 2 and F 1–2",
            RfmSegment::Lost => "R 1 and F 1–2",
        }
    }
}

/// The quintile thresholds of a population. For each dimension, `[t1, t2, t3, t4]` in order of
/// increasing score: a score is 1 plus the number of thresholds the value passes. For frequency
/// and monetary a value passes `t` when it is strictly greater; for recency when the number of
/// days is strictly smaller (more recent). So F 5 means "frequency above `frequency[3]`", R 5
/// means "last purchase fewer than `recency_days[3]` days ago", and R 1 "at least
/// `recency_days[0]` days ago".
///
/// With the population sorted from worst to best, `t_k` is the value at 1-based position
/// `⌈k·N/5⌉`; equivalently a member's score is `1 + ⌊5·b/N⌋` where `b` is the number of members
/// strictly worse than it (so tied members get equal scores, and the worst value always scores 1).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RfmThresholds {
    /// Number of customers the thresholds were computed over.
    pub population: usize,
    /// Recency thresholds in days, non-increasing.
    pub recency_days: [u32; 4],
    /// Frequency thresholds, non-decreasing.
    pub frequency: [u64; 4],
    /// Monetary thresholds, non-decreasing.
    pub monetary: [f64; 4],
}

/// Scores customers against the thresholds of a population; see the module documentation.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RfmModel {
    thresholds: RfmThresholds,
}

/// Why a customer got its RFM score: its inputs, the thresholds used and the segment rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RfmExplanation {
    /// The customer's inputs.
    pub input: RfmInput,
    /// The resulting scores and segment.
    pub score: RfmScore,
    /// The thresholds of the population the customer was scored against.
    pub thresholds: RfmThresholds,
    /// The grid cells of the segment, e.g. `"R 5 and F 4–5"`.
    pub segment_rule: &'static str,
    /// One sentence per dimension, e.g. `"F 4: 6 purchases, above 4 and at most 7"`.
    pub reasons: Vec<String>,
}

/// Spend as an ordered key: NaN is the lowest value and −0 equals +0, so ties are exact.
fn money(value: f64) -> f64 {
    if value.is_nan() {
        f64::NEG_INFINITY
    } else {
        value + 0.0
    }
}

/// The four thresholds of `sorted` (worst first): the value at 1-based position ⌈k·N/5⌉.
fn cut_points<T: Copy>(sorted: &[T]) -> Option<[T; 4]> {
    let n = sorted.len();
    let at = |k: usize| sorted.get((k * n).div_ceil(5).saturating_sub(1)).copied();
    Some([at(1)?, at(2)?, at(3)?, at(4)?])
}

fn count_passed<T: Copy>(thresholds: &[T; 4], passes: impl Fn(T) -> bool) -> u8 {
    1 + thresholds.iter().filter(|&&t| passes(t)).count() as u8
}

/// A sentence for one dimension: the value, and the band of the score between thresholds.
fn band<T: std::fmt::Display + Copy>(
    label: &str,
    score: u8,
    value: String,
    thresholds: &[T; 4],
    better_is_larger: bool,
) -> String {
    let i = usize::from(score);
    // Scores 2..=5 passed thresholds[score − 2]; scores 1..=4 did not pass thresholds[score − 1].
    let passed = i.checked_sub(2).and_then(|k| thresholds.get(k));
    let not_passed = i.checked_sub(1).and_then(|k| thresholds.get(k));
    let (above, below) = if better_is_larger {
        ("above", "at most")
    } else {
        ("under", "at least")
    };
    let parts: Vec<String> = [
        passed.map(|t| format!("{above} {t}")),
        not_passed.map(|t| format!("{below} {t}")),
    ]
    .into_iter()
    .flatten()
    .collect();
    format!("{label} {score}: {value}, {}", parts.join(" and "))
}

impl RfmModel {
    /// Computes the thresholds of a population; `None` when it is empty. A population of fewer
    /// than five customers cannot fill five quintiles: its scores are coarse but still follow
    /// the rule above.
    pub fn fit(population: &[RfmInput]) -> Option<Self> {
        let mut recency: Vec<u32> = population.iter().map(|c| c.recency_days).collect();
        let mut frequency: Vec<u64> = population.iter().map(|c| c.frequency).collect();
        let mut monetary: Vec<f64> = population.iter().map(|c| money(c.monetary)).collect();
        // Worst first: least recent (most days), least frequent, lowest spend.
        recency.sort_unstable_by(|a, b| b.cmp(a));
        frequency.sort_unstable();
        monetary.sort_unstable_by(f64::total_cmp);
        Some(Self {
            thresholds: RfmThresholds {
                population: population.len(),
                recency_days: cut_points(&recency)?,
                frequency: cut_points(&frequency)?,
                monetary: cut_points(&monetary)?,
            },
        })
    }

    /// The model of given thresholds (e.g. stored from an earlier fit).
    pub fn from_thresholds(thresholds: RfmThresholds) -> Self {
        Self { thresholds }
    }

    /// The thresholds in use.
    pub fn thresholds(&self) -> &RfmThresholds {
        &self.thresholds
    }

    /// Scores one customer against the thresholds.
    pub fn score(&self, input: &RfmInput) -> RfmScore {
        let t = &self.thresholds;
        let recency = count_passed(&t.recency_days, |d| input.recency_days < d);
        let frequency = count_passed(&t.frequency, |f| input.frequency > f);
        let spend = money(input.monetary);
        let monetary = count_passed(&t.monetary, |m| spend.total_cmp(&m) == Ordering::Greater);
        RfmScore {
            recency,
            frequency,
            monetary,
            segment: RfmSegment::of(recency, frequency),
        }
    }

    /// Scores one customer and says why: inputs, thresholds, the band each value fell in and the
    /// segment rule.
    pub fn explain(&self, input: &RfmInput) -> RfmExplanation {
        let score = self.score(input);
        let t = &self.thresholds;
        let reasons = vec![
            band(
                "R",
                score.recency,
                format!("last purchase {} days ago", input.recency_days),
                &t.recency_days,
                false,
            ),
            band(
                "F",
                score.frequency,
                format!("{} purchases", input.frequency),
                &t.frequency,
                true,
            ),
            band(
                "M",
                score.monetary,
                format!("spend {}", input.monetary),
                &t.monetary,
                true,
            ),
        ];
        RfmExplanation {
            input: *input,
            score,
            thresholds: *t,
            segment_rule: score.segment.rule(),
            reasons,
        }
    }
}

/// Scores every customer of a population against the population's own quintiles, in input
/// order; empty for an empty population.
pub fn score(population: &[RfmInput]) -> Vec<RfmScore> {
    match RfmModel::fit(population) {
        Some(model) => population.iter().map(|c| model.score(c)).collect(),
        None => Vec::new(),
    }
}

/// Explains the score of the customer at `index` of `population`; `None` when out of range.
pub fn explain(population: &[RfmInput], index: usize) -> Option<RfmExplanation> {
    let input = population.get(index)?;
    Some(RfmModel::fit(population)?.explain(input))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use proptest::prelude::*;

    fn c(recency_days: u32, frequency: u64, monetary: f64) -> RfmInput {
        RfmInput {
            recency_days,
            frequency,
            monetary,
        }
    }

    fn scores(population: &[RfmInput]) -> Vec<(u8, u8, u8)> {
        score(population)
            .iter()
            .map(|s| (s.recency, s.frequency, s.monetary))
            .collect()
    }

    #[test]
    fn ten_distinct_customers_fill_each_quintile_with_two() {
        // Recency 1..=10 days, frequency 10..=1, spend 100..=1000, in scrambled order.
        let order = [3usize, 7, 0, 9, 5, 1, 8, 2, 6, 4];
        let population: Vec<RfmInput> = order
            .iter()
            .map(|&i| c(i as u32 + 1, 10 - i as u64, 100.0 * (i as f64 + 1.0)))
            .collect();
        let got = scores(&population);
        // Customer i (0-based): days i+1 → R = 5 − i/2; frequency 10 − i → F = 5 − i/2;
        // spend 100(i+1) → M = 1 + i/2.
        let expected: Vec<(u8, u8, u8)> = order
            .iter()
            .map(|&i| (5 - i as u8 / 2, 5 - i as u8 / 2, 1 + i as u8 / 2))
            .collect();
        assert_eq!(got, expected);
        let model = RfmModel::fit(&population).unwrap();
        assert_eq!(model.thresholds().recency_days, [9, 7, 5, 3]);
        assert_eq!(model.thresholds().frequency, [2, 4, 6, 8]);
        assert_eq!(model.thresholds().monetary, [200.0, 400.0, 600.0, 800.0]);
    }

    #[test]
    fn a_hand_made_population_scores_as_computed_by_hand() {
        let population = [
            c(2, 12, 1500.0), // recent, frequent, big spender
            c(5, 8, 900.0),
            c(15, 6, 400.0),
            c(40, 3, 150.0),
            c(90, 1, 40.0), // one purchase long ago
        ];
        assert_eq!(
            scores(&population),
            [(5, 5, 5), (4, 4, 4), (3, 3, 3), (2, 2, 2), (1, 1, 1)]
        );
        let segments: Vec<RfmSegment> = score(&population).iter().map(|s| s.segment).collect();
        assert_eq!(
            segments,
            [
                RfmSegment::Champions,
                RfmSegment::Loyal,
                RfmSegment::NeedAttention,
                RfmSegment::Hibernating,
                RfmSegment::Lost,
            ]
        );
        assert_eq!(score(&population)[1].code(), "444");
    }

    #[test]
    fn equal_values_get_equal_scores_and_the_lowest_value_scores_1() {
        // Six of ten bought once: all of them F 1; the others rank above them.
        let freqs = [1, 1, 1, 1, 1, 1, 2, 3, 4, 5];
        let population: Vec<RfmInput> = freqs.iter().map(|&f| c(10, f, 50.0)).collect();
        let f: Vec<u8> = score(&population).iter().map(|s| s.frequency).collect();
        // b (members below) = 0 ×6, 6, 7, 8, 9 → F = 1 + ⌊5b/10⌋.
        assert_eq!(f, [1, 1, 1, 1, 1, 1, 4, 4, 5, 5]);
        // Everyone bought 10 days ago, spent 50: all tied, all score 1 on R and M.
        assert!(
            score(&population)
                .iter()
                .all(|s| s.recency == 1 && s.monetary == 1)
        );
    }

    #[test]
    fn ties_across_a_quintile_boundary_are_not_split() {
        // Positions 2 and 3 (0-based) would fall in different quintiles if ranked 1..=N.
        let population: Vec<RfmInput> = [10, 20, 30, 30, 50, 60, 70, 80, 90, 100]
            .iter()
            .map(|&days| c(days, 1, 0.0))
            .collect();
        let r: Vec<u8> = score(&population).iter().map(|s| s.recency).collect();
        assert_eq!(r[2], r[3]);
        assert_eq!(r, [5, 5, 4, 4, 3, 3, 2, 2, 1, 1]);
    }

    #[test]
    fn nan_and_negative_zero_spend_are_ordered_deterministically() {
        let population = [
            c(1, 1, f64::NAN),
            c(1, 1, -0.0),
            c(1, 1, 0.0),
            c(1, 1, 10.0),
            c(1, 1, 20.0),
        ];
        let m: Vec<u8> = score(&population).iter().map(|s| s.monetary).collect();
        assert_eq!(m, [1, 2, 2, 4, 5]);
    }

    #[test]
    fn the_segment_grid_is_the_documented_table() {
        use RfmSegment::*;
        let table = [
            [
                NewCustomers,
                PotentialLoyalist,
                PotentialLoyalist,
                Champions,
                Champions,
            ],
            [
                Promising,
                PotentialLoyalist,
                PotentialLoyalist,
                Loyal,
                Loyal,
            ],
            [AboutToSleep, AboutToSleep, NeedAttention, Loyal, Loyal],
            [Hibernating, Hibernating, AtRisk, AtRisk, CantLoseThem],
            [Lost, Lost, AtRisk, AtRisk, CantLoseThem],
        ];
        for (row, r) in table.iter().zip((1..=5u8).rev()) {
            for (&expected, f) in row.iter().zip(1..=5u8) {
                assert_eq!(RfmSegment::of(r, f), expected, "R {r} F {f}");
            }
        }
        // Every segment is used, and its rule names the cells it covers.
        for segment in RfmSegment::ALL {
            assert!(table.iter().flatten().any(|&s| s == segment), "{segment:?}");
        }
        assert_eq!(RfmSegment::of(1, 5).name(), "Can't lose them");
        assert_eq!(
            RfmSegment::of(9, 0),
            RfmSegment::of(5, 1),
            "out-of-range scores clamp"
        );
    }

    #[test]
    fn explain_returns_inputs_thresholds_and_readable_bands() {
        let population = [
            c(2, 12, 1500.0),
            c(5, 8, 900.0),
            c(15, 6, 400.0),
            c(40, 3, 150.0),
            c(90, 1, 40.0),
        ];
        let e = explain(&population, 2).unwrap();
        assert_eq!(e.input, population[2]);
        assert_eq!(e.score.code(), "333");
        assert_eq!(e.thresholds.population, 5);
        assert_eq!(e.thresholds.recency_days, [90, 40, 15, 5]);
        assert_eq!(e.thresholds.frequency, [1, 3, 6, 8]);
        assert_eq!(e.segment_rule, "R 3 and F 3");
        assert_eq!(
            e.reasons,
            [
                "R 3: last purchase 15 days ago, under 40 and at least 15",
                "F 3: 6 purchases, above 3 and at most 6",
                "M 3: spend 400, above 150 and at most 400",
            ]
        );
        let top = explain(&population, 0).unwrap();
        assert_eq!(top.reasons[1], "F 5: 12 purchases, above 8");
        let bottom = explain(&population, 4).unwrap();
        assert_eq!(
            bottom.reasons[0],
            "R 1: last purchase 90 days ago, at least 90"
        );
        assert!(explain(&population, 5).is_none());
        assert!(explain(&[], 0).is_none());
    }

    #[test]
    fn small_and_empty_populations() {
        assert!(score(&[]).is_empty());
        assert!(RfmModel::fit(&[]).is_none());
        assert_eq!(scores(&[c(3, 2, 10.0)]), [(1, 1, 1)]);
        // Two customers: the better one is ahead of half the population, ⌊5·1/2⌋ + 1 = 3.
        assert_eq!(
            scores(&[c(3, 2, 10.0), c(30, 1, 5.0)]),
            [(3, 3, 3), (1, 1, 1)]
        );
    }

    #[test]
    fn a_new_customer_is_scored_against_stored_thresholds() {
        let population: Vec<RfmInput> = (1..=10).map(|i| c(i * 10, i as u64, i as f64)).collect();
        let model = RfmModel::from_thresholds(*RfmModel::fit(&population).unwrap().thresholds());
        let newcomer = model.score(&c(0, 1, 1_000_000.0));
        assert_eq!(
            (newcomer.recency, newcomer.frequency, newcomer.monetary),
            (5, 1, 5)
        );
        assert_eq!(newcomer.segment, RfmSegment::NewCustomers);
    }

    fn population() -> impl Strategy<Value = Vec<RfmInput>> {
        prop::collection::vec(
            (0u32..40, 0u64..12, prop_oneof![Just(0.0), 0.0f64..500.0]),
            0..80,
        )
        .prop_map(|v| v.into_iter().map(|(r, f, m)| c(r, f, m)).collect())
    }

    proptest! {
        #[test]
        fn scores_follow_the_rank_rule_ties_and_order(population in population()) {
            let got = score(&population);
            prop_assert_eq!(got.len(), population.len());
            let n = population.len();
            let rank_score = |below: usize| 1 + (5 * below / n) as u8;
            for (x, s) in population.iter().zip(&got) {
                let r_below = population.iter().filter(|y| y.recency_days > x.recency_days).count();
                let f_below = population.iter().filter(|y| y.frequency < x.frequency).count();
                let m_below = population.iter().filter(|y| y.monetary < x.monetary).count();
                prop_assert_eq!(s.recency, rank_score(r_below));
                prop_assert_eq!(s.frequency, rank_score(f_below));
                prop_assert_eq!(s.monetary, rank_score(m_below));
                prop_assert_eq!(s.segment, RfmSegment::of(s.recency, s.frequency));
            }
            // Input order does not change anyone's score.
            let mut reversed = population.clone();
            reversed.reverse();
            let mut back = score(&reversed);
            back.reverse();
            prop_assert_eq!(back, got);
        }
    }
}
