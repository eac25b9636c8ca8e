//! The customer profile category (negative / neutral / advocate) of one customer, with the rule
//! that decided it and the inputs it looked at.
//!
//! Rules, first match wins (the windows are [`CategoryConfig`]):
//!
//! 1. **Latest NPS** answered within `nps_window_days` of the as-of time: 0–6 (detractor) is
//!    negative, 7–8 (passive) neutral, 9–10 (promoter) advocate.
//! 2. **Latest CSAT** within `csat_window_days`: 1–2 negative, 3 neutral, 4–5 advocate.
//! 3. **Comment sentiment**: the latest survey comment within `comment_window_days`, analysed
//!    ([`super::sentiment`]) in the language its response named, or else in the language
//!    detected from its text (as `SubmitResponses` answers it, never in the survey's default):
//!    a negative comment is negative, a positive one advocate; a neutral comment decides
//!    nothing and the next rule looks.
//! 4. **Complaints**: a support case still open or pending, or at least
//!    `complaints_for_negative` cases opened within `complaint_window_days`: negative.
//! 5. **No signal**: neutral (every customer has a category; the rule says it is a default).
//!
//! A recent NPS outranks a more recent CSAT on purpose: NPS asks about the relationship, CSAT
//! about one interaction. A score the customer chose outranks what a lexicon reads into their
//! words, and words they wrote outrank the mere existence of support cases.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use super::metrics::{CustomerCategory, NpsCategory};
use super::sentiment::{Driver, Language, LanguageSource, SentimentLabel};
use crate::text_enum::text_enum;

text_enum!(
    /// Which rule decided a category.
    CategoryRule {
        /// The latest NPS answer within the window.
        LatestNps = "latest_nps",
        /// The latest CSAT answer within the window (no recent NPS).
        LatestCsat = "latest_csat",
        /// The sentiment of the latest survey comment within the window (no recent NPS or
        /// CSAT).
        CommentSentiment = "comment_sentiment",
        /// Open or recent support cases (no recent survey answer).
        Complaints = "complaints",
        /// Nothing to go by: neutral by default.
        NoSignal = "no_signal",
    }
);

/// The text of a category, as stored and listed: `negative`, `neutral`, `advocate`.
pub fn category_text(category: CustomerCategory) -> &'static str {
    match category {
        CustomerCategory::Negative => "negative",
        CustomerCategory::Neutral => "neutral",
        CustomerCategory::Advocate => "advocate",
    }
}

/// The category of a text written by [`category_text`].
pub fn parse_category(text: &str) -> Option<CustomerCategory> {
    match text {
        "negative" => Some(CustomerCategory::Negative),
        "neutral" => Some(CustomerCategory::Neutral),
        "advocate" => Some(CustomerCategory::Advocate),
        _ => None,
    }
}

/// A survey answer and when it was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatedAnswer {
    /// The answer on the survey's scale.
    pub value: i32,
    /// When it was given.
    pub answered_at: DateTime<Utc>,
}

/// The sentiment of a survey comment and when it was written.
///
/// The fields after `answered_at` explain the score; they are absent from scores stored before
/// they were kept, which read back with them empty until the customer is rescored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DatedComment {
    /// The sentiment score in thousandths, −1000 to 1000.
    pub score_milli: i32,
    /// The label of the score.
    pub label: SentimentLabel,
    /// When the comment was written (the response's answer time).
    pub answered_at: DateTime<Utc>,
    /// The language whose lexicon scored it.
    #[serde(default)]
    pub language: Option<Language>,
    /// How that language was settled.
    #[serde(default)]
    pub language_source: Option<LanguageSource>,
    /// The phrases that drove the score, strongest first.
    #[serde(default)]
    pub drivers: Vec<Driver>,
    /// The analyzer's version ([`super::sentiment::SENTIMENT_MODEL_VERSION`] when scored).
    #[serde(default)]
    pub model_version: String,
}

/// What the category rules look at.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CategoryInputs {
    /// The customer's latest NPS answer (0–10) at or before the as-of time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latest_nps: Option<DatedAnswer>,
    /// The customer's latest CSAT answer (1–5) at or before the as-of time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latest_csat: Option<DatedAnswer>,
    /// The sentiment of the customer's latest survey comment at or before the as-of time
    /// (absent in scores stored before comments were read).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latest_comment: Option<DatedComment>,
    /// Support cases open or pending now.
    #[serde(default, skip_serializing_if = "super::is_zero")]
    pub open_cases: u32,
    /// Support cases opened within the complaint window.
    #[serde(default, skip_serializing_if = "super::is_zero")]
    pub recent_cases: u32,
}

/// The windows of the category rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CategoryConfig {
    /// An NPS answer older than this many days no longer decides (default 180).
    pub nps_window_days: i64,
    /// A CSAT answer older than this many days no longer decides (default 90).
    pub csat_window_days: i64,
    /// A comment older than this many days no longer decides (default 90).
    pub comment_window_days: i64,
    /// Cases opened within this many days count as recent complaints (default 90).
    pub complaint_window_days: i64,
    /// Recent cases that make a customer negative without any open case (default 2).
    pub complaints_for_negative: u32,
}

impl Default for CategoryConfig {
    fn default() -> Self {
        Self {
            nps_window_days: 180,
            csat_window_days: 90,
            comment_window_days: 90,
            complaint_window_days: 90,
            complaints_for_negative: 2,
        }
    }
}

/// A category, the rule that decided it, its inputs, and the decision in words.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CategoryDecision {
    /// The category.
    pub category: CustomerCategory,
    /// The rule that decided it.
    pub rule: CategoryRule,
    /// What the rules looked at.
    pub inputs: CategoryInputs,
    /// The decision in words, e.g. "detractor: NPS 3 on 2026-03-02".
    pub explanation: String,
}

/// The CSAT category: 1–2 negative, 3 neutral, 4–5 advocate; `None` off the scale.
pub fn csat_category(value: i32) -> Option<CustomerCategory> {
    match value {
        1 | 2 => Some(CustomerCategory::Negative),
        3 => Some(CustomerCategory::Neutral),
        4 | 5 => Some(CustomerCategory::Advocate),
        _ => None,
    }
}

fn within(answer: &DatedAnswer, as_of: DateTime<Utc>, days: i64) -> bool {
    answer.answered_at <= as_of && as_of - answer.answered_at <= Duration::days(days)
}

/// Decides the category of a customer as of `as_of`; see the module documentation.
pub fn categorise(
    inputs: &CategoryInputs,
    as_of: DateTime<Utc>,
    config: &CategoryConfig,
) -> CategoryDecision {
    let decided = |category, rule, explanation: String| CategoryDecision {
        category,
        rule,
        inputs: inputs.clone(),
        explanation,
    };
    if let Some(nps) = inputs
        .latest_nps
        .filter(|a| within(a, as_of, config.nps_window_days))
        && let Some(nps_category) = NpsCategory::of(nps.value)
    {
        let name = match nps_category {
            NpsCategory::Detractor => "detractor",
            NpsCategory::Passive => "passive",
            NpsCategory::Promoter => "promoter",
        };
        return decided(
            nps_category.customer_category(),
            CategoryRule::LatestNps,
            format!(
                "{name}: NPS {} on {}",
                nps.value,
                nps.answered_at.format("%Y-%m-%d")
            ),
        );
    }
    if let Some(csat) = inputs
        .latest_csat
        .filter(|a| within(a, as_of, config.csat_window_days))
        && let Some(category) = csat_category(csat.value)
    {
        return decided(
            category,
            CategoryRule::LatestCsat,
            format!(
                "no NPS in {} days; CSAT {} on {}",
                config.nps_window_days,
                csat.value,
                csat.answered_at.format("%Y-%m-%d")
            ),
        );
    }
    if let Some(comment) = inputs.latest_comment.as_ref().filter(|c| {
        c.answered_at <= as_of
            && as_of - c.answered_at <= Duration::days(config.comment_window_days)
    }) {
        let category = match comment.label {
            SentimentLabel::Negative => Some(CustomerCategory::Negative),
            SentimentLabel::Positive => Some(CustomerCategory::Advocate),
            SentimentLabel::Neutral => None,
        };
        if let Some(category) = category {
            return decided(
                category,
                CategoryRule::CommentSentiment,
                format!(
                    "no NPS in {} days, no CSAT in {} days; {} comment (sentiment {:+.2}) on {}",
                    config.nps_window_days,
                    config.csat_window_days,
                    comment.label.as_str(),
                    f64::from(comment.score_milli) / 1000.0,
                    comment.answered_at.format("%Y-%m-%d")
                ),
            );
        }
    }
    if inputs.open_cases > 0 || inputs.recent_cases >= config.complaints_for_negative {
        return decided(
            CustomerCategory::Negative,
            CategoryRule::Complaints,
            format!(
                "no recent survey answer; {} open support case(s), {} opened in {} days",
                inputs.open_cases, inputs.recent_cases, config.complaint_window_days
            ),
        );
    }
    decided(
        CustomerCategory::Neutral,
        CategoryRule::NoSignal,
        format!(
            "no NPS in {} days, no CSAT in {} days and no complaint: neutral by default",
            config.nps_window_days, config.csat_window_days
        ),
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use chrono::TimeZone;

    fn day(d: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 6, d, 12, 0, 0).single().unwrap()
    }

    fn comment(score_milli: i32, d: u32) -> Option<DatedComment> {
        Some(DatedComment {
            score_milli,
            label: SentimentLabel::of(f64::from(score_milli) / 1000.0),
            answered_at: day(d),
            language: None,
            language_source: None,
            drivers: Vec::new(),
            model_version: String::new(),
        })
    }

    #[test]
    fn a_comment_stored_before_its_drivers_were_kept_reads_back_without_them() {
        let stored =
            r#"{"score_milli":-600,"label":"Negative","answered_at":"2026-06-25T12:00:00Z"}"#;
        let read: DatedComment = serde_json::from_str(stored).unwrap();
        assert_eq!(read, comment(-600, 25).unwrap());
    }

    #[test]
    fn a_comment_decides_after_the_survey_scores_and_before_the_complaints() {
        let as_of = day(28);
        let config = CategoryConfig::default();
        // A recent CSAT outranks a comment.
        let with_csat = CategoryInputs {
            latest_csat: answer(5, 20),
            latest_comment: comment(-900, 25),
            ..CategoryInputs::default()
        };
        assert_eq!(
            categorise(&with_csat, as_of, &config).rule,
            CategoryRule::LatestCsat
        );
        // Without one, a negative comment is negative, before the complaint rule looks.
        let angry = CategoryInputs {
            latest_comment: comment(-600, 25),
            ..CategoryInputs::default()
        };
        let d = categorise(&angry, as_of, &config);
        assert_eq!(
            (d.category, d.rule),
            (CustomerCategory::Negative, CategoryRule::CommentSentiment)
        );
        assert!(
            d.explanation
                .contains("negative comment (sentiment -0.60) on 2026-06-25"),
            "{}",
            d.explanation
        );
        let happy = CategoryInputs {
            latest_comment: comment(700, 25),
            open_cases: 1,
            ..CategoryInputs::default()
        };
        let d = categorise(&happy, as_of, &config);
        assert_eq!(
            (d.category, d.rule),
            (CustomerCategory::Advocate, CategoryRule::CommentSentiment)
        );
        // A neutral comment decides nothing: the open case does.
        let flat = CategoryInputs {
            latest_comment: comment(0, 25),
            open_cases: 1,
            ..CategoryInputs::default()
        };
        assert_eq!(
            categorise(&flat, as_of, &config).rule,
            CategoryRule::Complaints
        );
        // Outside the window a comment no longer counts.
        let old = CategoryInputs {
            latest_comment: comment(-900, 1),
            ..CategoryInputs::default()
        };
        let short = CategoryConfig {
            comment_window_days: 10,
            ..config
        };
        assert_eq!(categorise(&old, as_of, &short).rule, CategoryRule::NoSignal);
    }

    fn answer(value: i32, d: u32) -> Option<DatedAnswer> {
        Some(DatedAnswer {
            value,
            answered_at: day(d),
        })
    }

    #[test]
    fn nps_decides_first_then_csat_then_complaints() {
        let config = CategoryConfig::default();
        let as_of = day(30);
        for (nps, want) in [
            (0, CustomerCategory::Negative),
            (6, CustomerCategory::Negative),
            (7, CustomerCategory::Neutral),
            (8, CustomerCategory::Neutral),
            (9, CustomerCategory::Advocate),
            (10, CustomerCategory::Advocate),
        ] {
            let inputs = CategoryInputs {
                latest_nps: answer(nps, 2),
                latest_csat: answer(5, 20),
                latest_comment: comment(-800, 25),
                open_cases: 3,
                recent_cases: 3,
            };
            let d = categorise(&inputs, as_of, &config);
            assert_eq!((d.category, d.rule), (want, CategoryRule::LatestNps));
        }
        let detractor = categorise(
            &CategoryInputs {
                latest_nps: answer(3, 2),
                ..CategoryInputs::default()
            },
            as_of,
            &config,
        );
        assert_eq!(detractor.explanation, "detractor: NPS 3 on 2026-06-02");

        for (csat, want) in [
            (1, CustomerCategory::Negative),
            (2, CustomerCategory::Negative),
            (3, CustomerCategory::Neutral),
            (4, CustomerCategory::Advocate),
            (5, CustomerCategory::Advocate),
        ] {
            let inputs = CategoryInputs {
                latest_csat: answer(csat, 20),
                open_cases: 1,
                ..CategoryInputs::default()
            };
            let d = categorise(&inputs, as_of, &config);
            assert_eq!((d.category, d.rule), (want, CategoryRule::LatestCsat));
        }

        let open = CategoryInputs {
            open_cases: 1,
            ..CategoryInputs::default()
        };
        let d = categorise(&open, as_of, &config);
        assert_eq!(
            (d.category, d.rule),
            (CustomerCategory::Negative, CategoryRule::Complaints)
        );
        let one_closed = CategoryInputs {
            recent_cases: 1,
            ..CategoryInputs::default()
        };
        let d = categorise(&one_closed, as_of, &config);
        assert_eq!(
            (d.category, d.rule),
            (CustomerCategory::Neutral, CategoryRule::NoSignal)
        );
        let two_closed = CategoryInputs {
            recent_cases: 2,
            ..CategoryInputs::default()
        };
        assert_eq!(
            categorise(&two_closed, as_of, &config).rule,
            CategoryRule::Complaints
        );
    }

    #[test]
    fn answers_outside_their_window_or_after_the_as_of_time_do_not_decide() {
        let config = CategoryConfig {
            nps_window_days: 10,
            csat_window_days: 5,
            ..CategoryConfig::default()
        };
        let inputs = CategoryInputs {
            latest_nps: answer(10, 1),
            latest_csat: answer(1, 22),
            ..CategoryInputs::default()
        };
        // NPS 29 days old: out; CSAT 8 days old: out.
        let d = categorise(&inputs, day(30), &config);
        assert_eq!(d.rule, CategoryRule::NoSignal);
        // On day 25 the CSAT is 3 days old: in.
        let d = categorise(&inputs, day(25), &config);
        assert_eq!(
            (d.category, d.rule),
            (CustomerCategory::Negative, CategoryRule::LatestCsat)
        );
        // Before the CSAT was given, only the NPS (then 9 days old) counts.
        let d = categorise(&inputs, day(10), &config);
        assert_eq!(
            (d.category, d.rule),
            (CustomerCategory::Advocate, CategoryRule::LatestNps)
        );
    }

    #[test]
    fn category_texts_round_trip() {
        for c in [
            CustomerCategory::Negative,
            CustomerCategory::Neutral,
            CustomerCategory::Advocate,
        ] {
            assert_eq!(parse_category(category_text(c)), Some(c));
        }
        assert_eq!(parse_category("happy"), None);
    }
}
