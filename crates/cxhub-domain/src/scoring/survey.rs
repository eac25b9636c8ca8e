//! Surveys and their responses: definitions (one or two questions, each NPS, CSAT, CES or a
//! custom scale, asked in one or more languages at the touchpoints they are attached to), the
//! validation of a response against its survey, the groups of a score report and their
//! aggregation, and the repository the store implements.
//!
//! Scores are never computed here from raw rows one by one: the store returns the number of
//! answers per (group parts, kind, value), a `GROUP BY` away from the table, and
//! [`aggregate`] merges those counts into the accumulators of [`super::metrics`] per group.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use async_trait::async_trait;
use chrono::{DateTime, Datelike, NaiveDate, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

use super::metrics::{
    CesStats, CsatCounts, CustomerCategory, MetricOptions, NpsCategory, NpsCounts, SurveyKind,
};
use crate::error::{FieldViolation, Result, Violations};
use crate::idempotency::RequestKey;
use crate::identifier::CustomerId;
use crate::page::{Page, PageRequest};
use crate::record::ContentHash;
use crate::touchpoint::{Channel, Key, Stage, Touchpoint, TouchpointId};

crate::id::uuid_id!(
    /// The id of a survey.
    SurveyId
);

/// Most questions in a survey: the point of a survey after an interaction is brevity.
pub const MAX_QUESTIONS: usize = 2;
/// Most languages of a survey.
pub const MAX_LANGUAGES: usize = 20;
/// Most touchpoints a survey is attached to.
pub const MAX_SURVEY_TOUCHPOINTS: usize = 100;
/// Longest question text.
pub const MAX_QUESTION_TEXT: usize = 500;
/// Longest comment.
pub const MAX_COMMENT: usize = 2_000;
/// Longest question key.
pub const MAX_QUESTION_KEY: usize = 64;
/// Longest interaction id.
pub const MAX_INTERACTION_ID: usize = 200;
/// Longest response id.
pub const MAX_RESPONSE_ID: usize = 128;
/// Most responses in one `SubmitResponses` call.
pub const MAX_RESPONSES: usize = 1_000;
/// Most groups in one report.
pub const MAX_GROUPS: usize = 10_000;
/// Longest report range, in days.
pub const MAX_RANGE_DAYS: i64 = 3_660;

/// Whether a survey accepts responses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum SurveyState {
    /// Accepts responses.
    Active,
    /// Keeps its responses, accepts no new ones.
    Retired,
}

impl SurveyState {
    /// The text stored in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            SurveyState::Active => "active",
            SurveyState::Retired => "retired",
        }
    }

    /// Parses the stored text.
    pub fn parse(s: &str) -> std::result::Result<Self, String> {
        match s {
            "active" => Ok(SurveyState::Active),
            "retired" => Ok(SurveyState::Retired),
            other => Err(format!("unknown survey state `{other}`")),
        }
    }
}

/// One question of a survey.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Question {
    /// Its key within the survey, as answers name it.
    pub key: String,
    /// Its kind, which fixes the answer scale.
    pub kind: SurveyKind,
    /// Its text per language tag.
    pub text: BTreeMap<String, String>,
}

/// What a survey asks and how; stored as one JSON document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SurveyDefinition {
    /// One or two questions, in the order asked.
    pub questions: Vec<Question>,
    /// Whether a free-text comment may accompany the answers.
    pub allows_comment: bool,
    /// The languages it is asked in.
    pub languages: Vec<String>,
    /// The language of a response that names none.
    pub default_language: String,
}

/// A validated survey to create.
#[derive(Debug, Clone, PartialEq)]
pub struct NewSurvey {
    /// Unique key.
    pub key: Key,
    /// Display name.
    pub name: String,
    /// Questions, languages, comment.
    pub definition: SurveyDefinition,
    /// The touchpoints it is attached to, by key (checked by the store).
    pub touchpoint_keys: Vec<Key>,
}

/// A stored survey.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Survey {
    /// Its id.
    pub id: SurveyId,
    /// Unique key.
    pub key: Key,
    /// Display name.
    pub name: String,
    /// Questions, languages, comment.
    pub definition: SurveyDefinition,
    /// The touchpoints it is attached to, by key, in the order given at creation.
    pub touchpoint_keys: Vec<Key>,
    /// Active or retired.
    pub state: SurveyState,
    /// Creation time.
    pub create_time: DateTime<Utc>,
    /// Last change.
    pub update_time: DateTime<Utc>,
    /// When it was retired.
    pub retire_time: Option<DateTime<Utc>>,
    /// Incremented by every change.
    pub revision: i64,
}

impl Survey {
    /// The opaque etag of this revision.
    pub fn etag(&self) -> String {
        crate::touchpoint::etag(self.revision)
    }
}

/// Filters of `ListSurveys`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct SurveyFilter {
    /// Only this state.
    pub state: Option<SurveyState>,
    /// Only surveys attached to this touchpoint.
    pub touchpoint_key: Option<Key>,
}

/// Checks a question key: 1 to 64 characters of `a-z`, `0-9`, `_`, `-`, starting with a letter.
pub fn check_question_key(key: &str) -> std::result::Result<String, String> {
    let ok = !key.is_empty()
        && key.len() <= MAX_QUESTION_KEY
        && key.starts_with(|c: char| c.is_ascii_lowercase())
        && key
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
    if ok {
        Ok(key.to_owned())
    } else {
        Err(format!(
            "1 to {MAX_QUESTION_KEY} characters of a-z, 0-9, `_` and `-`, starting with a letter (got `{key}`)"
        ))
    }
}

/// Checks a language tag in the shape of BCP 47: 2 or 3 letters, then `-` subtags of 1 to 8
/// letters or digits (`en`, `pt-PT`, `zh-Hant-TW`); at most 35 characters.
pub fn check_language(tag: &str) -> std::result::Result<String, String> {
    let mut parts = tag.split('-');
    let primary_ok = parts
        .next()
        .is_some_and(|p| (2..=3).contains(&p.len()) && p.chars().all(|c| c.is_ascii_alphabetic()));
    let rest_ok =
        parts.all(|p| (1..=8).contains(&p.len()) && p.chars().all(|c| c.is_ascii_alphanumeric()));
    if primary_ok && rest_ok && tag.len() <= 35 {
        Ok(tag.to_owned())
    } else {
        Err(format!(
            "a BCP 47 language tag such as `en` or `pt-PT` (got `{tag}`)"
        ))
    }
}

/// Checks the shape of a survey definition into `v`, with field paths below `prefix`
/// (`survey`): one or two questions with unique keys and valid scales, 1 to 20 distinct
/// languages, the default among them, and a text of 1 to 500 characters in every language for
/// every question (and none in another language).
pub fn check_definition(definition: &SurveyDefinition, prefix: &str, v: &mut Violations) {
    let n = definition.questions.len();
    if n == 0 || n > MAX_QUESTIONS {
        v.add(
            format!("{prefix}.questions"),
            format!(
                "a survey has 1 or {MAX_QUESTIONS} questions (got {n}): keep it short, ask the rest elsewhere"
            ),
        );
    }
    let languages = &definition.languages;
    if languages.is_empty() || languages.len() > MAX_LANGUAGES {
        v.add(
            format!("{prefix}.languages"),
            format!("give 1 to {MAX_LANGUAGES} languages"),
        );
    }
    let mut seen = BTreeSet::new();
    for (i, language) in languages.iter().enumerate() {
        if v.check(format!("{prefix}.languages[{i}]"), check_language(language))
            .is_some()
            && !seen.insert(language.as_str())
        {
            v.add(
                format!("{prefix}.languages[{i}]"),
                format!("`{language}` is listed twice"),
            );
        }
    }
    if !languages.is_empty() && !seen.contains(definition.default_language.as_str()) {
        v.add(
            format!("{prefix}.default_language"),
            format!(
                "`{}` is not one of the survey's languages",
                definition.default_language
            ),
        );
    }
    let mut keys = BTreeSet::new();
    for (i, question) in definition.questions.iter().enumerate() {
        let path = format!("{prefix}.questions[{i}]");
        if v.check(format!("{path}.key"), check_question_key(&question.key))
            .is_some()
            && !keys.insert(question.key.as_str())
        {
            v.add(
                format!("{path}.key"),
                format!("`{}` is used by another question", question.key),
            );
        }
        v.check(format!("{path}.kind"), question.kind.validate());
        for language in &seen {
            match question.text.get(*language) {
                None => v.add(
                    format!("{path}.text"),
                    format!("no text in `{language}`, one of the survey's languages"),
                ),
                Some(text)
                    if text.trim().is_empty() || text.chars().count() > MAX_QUESTION_TEXT =>
                {
                    v.add(
                        format!("{path}.text[{language}]"),
                        format!("1 to {MAX_QUESTION_TEXT} characters"),
                    )
                }
                Some(_) => {}
            }
        }
        for language in question.text.keys() {
            if !seen.contains(language.as_str()) {
                v.add(
                    format!("{path}.text[{language}]"),
                    format!("`{language}` is not one of the survey's languages"),
                );
            }
        }
    }
}

/// Checks the touchpoint keys of a survey into `v`: 1 to 100, each once.
pub fn check_touchpoint_keys(keys: &[String], prefix: &str, v: &mut Violations) -> Vec<Key> {
    if keys.is_empty() || keys.len() > MAX_SURVEY_TOUCHPOINTS {
        v.add(
            format!("{prefix}.touchpoint_keys"),
            format!("attach the survey to 1 to {MAX_SURVEY_TOUCHPOINTS} touchpoints"),
        );
    }
    let mut seen = BTreeSet::new();
    let mut out = Vec::with_capacity(keys.len());
    for (i, key) in keys.iter().enumerate() {
        let field = format!("{prefix}.touchpoint_keys[{i}]");
        if let Some(key) = v.check(field.clone(), Key::parse(key)) {
            if seen.insert(key.clone()) {
                out.push(key);
            } else {
                v.add(field, format!("`{key}` is listed twice"));
            }
        }
    }
    out
}

/// Checks a response id: 1 to 128 printable ASCII characters without spaces.
pub fn check_response_id(id: &str) -> std::result::Result<String, String> {
    if id.is_empty() || id.len() > MAX_RESPONSE_ID || !id.bytes().all(|b| b.is_ascii_graphic()) {
        Err(format!(
            "1 to {MAX_RESPONSE_ID} printable ASCII characters without spaces"
        ))
    } else {
        Ok(id.to_owned())
    }
}

/// Checks an optional interaction id (empty: none): 1 to 200 characters, not blank.
pub fn check_interaction_id(id: &str) -> std::result::Result<Option<String>, String> {
    if id.is_empty() {
        Ok(None)
    } else if id.chars().count() > MAX_INTERACTION_ID || id.trim().is_empty() {
        Err(format!("1 to {MAX_INTERACTION_ID} characters, not blank"))
    } else {
        Ok(Some(id.to_owned()))
    }
}

/// Checks an optional comment (empty: none): at most 2,000 characters.
pub fn check_comment(comment: &str) -> std::result::Result<Option<String>, String> {
    if comment.is_empty() {
        Ok(None)
    } else if comment.chars().count() > MAX_COMMENT {
        Err(format!("at most {MAX_COMMENT} characters"))
    } else {
        Ok(Some(comment.to_owned()))
    }
}

/// A response whose fields are well-formed; whether it fits its survey is checked against the
/// stored survey by [`check_response`].
#[derive(Debug, Clone, PartialEq)]
pub struct NewResponse {
    /// Position in the request.
    pub index: usize,
    /// The caller's id of the response.
    pub response_id: String,
    /// The respondent as named (a merged id is replaced by its survivor when stored).
    pub customer: CustomerId,
    /// The survey.
    pub survey_key: Key,
    /// The touchpoint.
    pub touchpoint_key: Key,
    /// The interaction the survey followed, as its source knows it.
    pub interaction_id: Option<String>,
    /// `(question key, value)`, in the order given.
    pub answers: Vec<(String, i32)>,
    /// The comment.
    pub comment: Option<String>,
    /// The language; `None` means the survey's default (stored as the response's language,
    /// with the fact that it named none: its comment's language is then detected).
    pub language: Option<String>,
    /// When the customer answered.
    pub answered_at: DateTime<Utc>,
    /// Hash of the response's canonical encoding: a re-send has the same.
    pub hash: ContentHash,
}

/// One answer as stored: the question's position and key, its kind and the value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckedAnswer {
    /// Position of the question in the survey, from 0.
    pub position: usize,
    /// The question's key.
    pub question_key: String,
    /// The question's kind.
    pub kind: SurveyKind,
    /// The answer.
    pub value: i32,
}

/// Checks a response against its stored survey, collecting every violation (paths from the
/// response): the survey is active, the touchpoint is one the survey is attached to, every
/// question is answered exactly once within its scale and no unknown question is, the
/// language is the survey's, and a comment only where the survey allows one. On success, the
/// answers in question order and the language.
pub fn check_response(
    survey: &Survey,
    response: &NewResponse,
) -> std::result::Result<(Vec<CheckedAnswer>, String), Vec<FieldViolation>> {
    check_answers(
        survey,
        &response.touchpoint_key,
        &response.answers,
        response.comment.as_deref(),
        response.language.as_deref(),
    )
}

/// [`check_response`] for a response that is not (yet) a [`NewResponse`], such as a feed
/// record's whose customer is resolved later: the same rules and paths, from the parts of a
/// response the survey constrains.
pub fn check_answers(
    survey: &Survey,
    touchpoint_key: &Key,
    answers: &[(String, i32)],
    comment: Option<&str>,
    language: Option<&str>,
) -> std::result::Result<(Vec<CheckedAnswer>, String), Vec<FieldViolation>> {
    let mut v = Violations::new();
    if survey.state == SurveyState::Retired {
        v.add(
            "survey_key",
            format!(
                "survey `{}` is retired and accepts no new responses",
                survey.key
            ),
        );
    }
    if !survey.touchpoint_keys.contains(touchpoint_key) {
        v.add(
            "touchpoint_key",
            format!(
                "survey `{}` is not attached to touchpoint `{touchpoint_key}`",
                survey.key
            ),
        );
    }
    let definition = &survey.definition;
    let mut by_key: HashMap<&str, usize> = HashMap::new();
    let mut checked = Vec::with_capacity(answers.len());
    for (i, (key, value)) in answers.iter().enumerate() {
        let Some((position, question)) = definition
            .questions
            .iter()
            .enumerate()
            .find(|(_, q)| &q.key == key)
        else {
            v.add(
                format!("answers[{i}].question_key"),
                format!("survey `{}` has no question `{key}`", survey.key),
            );
            continue;
        };
        if by_key.insert(key.as_str(), i).is_some() {
            v.add(
                format!("answers[{i}].question_key"),
                format!("question `{key}` is answered twice"),
            );
            continue;
        }
        if let Some(value) = v.check(
            format!("answers[{i}].value"),
            question.kind.check_answer(*value),
        ) {
            checked.push(CheckedAnswer {
                position,
                question_key: key.clone(),
                kind: question.kind,
                value,
            });
        }
    }
    for question in &definition.questions {
        if !by_key.contains_key(question.key.as_str()) {
            v.add(
                "answers",
                format!("question `{}` is not answered", question.key),
            );
        }
    }
    let language = match language {
        None => definition.default_language.clone(),
        Some(language) if definition.languages.iter().any(|l| l == language) => language.to_owned(),
        Some(language) => {
            v.add(
                "language",
                format!(
                    "survey `{}` is not asked in `{language}` (it is in: {})",
                    survey.key,
                    definition.languages.join(", ")
                ),
            );
            String::new()
        }
    };
    if comment.is_some() && !definition.allows_comment {
        v.add(
            "comment",
            format!("survey `{}` takes no comment", survey.key),
        );
    }
    if v.is_empty() {
        checked.sort_by_key(|a| a.position);
        Ok((checked, language))
    } else {
        Err(v.into_vec())
    }
}

/// What submitting one response did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ResponseOutcome {
    /// Stored.
    Created,
    /// Stored before with the same content.
    Unchanged,
    /// Stored before with other content: nothing overwritten.
    Conflict,
}

/// The result of one well-formed response: what happened and whose it is, or why the store
/// refused it.
pub type Submitted = std::result::Result<(ResponseOutcome, CustomerId), Vec<FieldViolation>>;

/// The text of a question kind in the database: `nps`, `csat`, `ces` or `custom`.
pub fn kind_text(kind: SurveyKind) -> &'static str {
    match kind {
        SurveyKind::Nps => "nps",
        SurveyKind::Csat => "csat",
        SurveyKind::Ces => "ces",
        SurveyKind::Custom { .. } => "custom",
    }
}

// ---------------------------------------------------------------------------------------------
// Reports
// ---------------------------------------------------------------------------------------------

/// A dimension of a report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum Dimension {
    /// The touchpoint (its main touchpoint when rolled up).
    Touchpoint,
    /// The touchpoint's channel.
    Channel,
    /// The touchpoint's journey stage.
    Stage,
    /// The touchpoint's department.
    Department,
    /// The respondent's category as of the end of the range.
    Category,
    /// The time bucket of the answer.
    Time,
}

/// A time bucket in UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum TimeBucket {
    /// A calendar day.
    Day,
    /// An ISO week, from Monday.
    Week,
    /// A calendar month.
    Month,
}

/// Days since 1970-01-01 of a time (UTC).
pub fn epoch_day(t: DateTime<Utc>) -> i64 {
    t.timestamp().div_euclid(86_400)
}

/// Months since January 1970 of a time (UTC).
pub fn epoch_month(t: DateTime<Utc>) -> i64 {
    i64::from(t.year() - 1970) * 12 + i64::from(t.month0())
}

impl TimeBucket {
    /// The start (UTC) of bucket number `n`, as the store numbers them: days since 1970-01-01,
    /// weeks `(day + 3) / 7` (1970-01-01 was a Thursday, so week 0 starts Monday 1969-12-29),
    /// months since January 1970.
    pub fn start(self, n: i64) -> Option<DateTime<Utc>> {
        let epoch = NaiveDate::from_ymd_opt(1970, 1, 1)?;
        let date = match self {
            TimeBucket::Day => epoch.checked_add_signed(TimeDelta::try_days(n)?)?,
            TimeBucket::Week => epoch.checked_add_signed(TimeDelta::try_days(n * 7 - 3)?)?,
            TimeBucket::Month => {
                let year = i32::try_from(1970 + n.div_euclid(12)).ok()?;
                let month = u32::try_from(n.rem_euclid(12) + 1).ok()?;
                NaiveDate::from_ymd_opt(year, month, 1)?
            }
        };
        Some(date.and_hms_opt(0, 0, 0)?.and_utc())
    }
}

/// The category a report groups a respondent by: from the latest NPS answer before the end of
/// the range, `Unknown` without one (CSAT has no category rule in [`super::metrics`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum ReportCategory {
    /// No NPS answer before the end of the range.
    Unknown,
    /// The category of the latest NPS answer.
    Known(CustomerCategory),
}

impl ReportCategory {
    /// The category of a latest NPS answer (`None`: there is none).
    pub fn of_latest_nps(latest: Option<i32>) -> Self {
        match latest.and_then(NpsCategory::of) {
            Some(category) => ReportCategory::Known(category.customer_category()),
            None => ReportCategory::Unknown,
        }
    }
}

/// A half-open time range `[from, to)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct TimeRange {
    /// Included.
    pub from: DateTime<Utc>,
    /// Excluded.
    pub to: DateTime<Utc>,
}

impl TimeRange {
    /// Checks `from < to` and the longest range, into `v` (field `field`).
    pub fn check(
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        field: &str,
        v: &mut Violations,
    ) -> Option<Self> {
        if from >= to {
            v.add(field, "`to` must be after `from`");
            return None;
        }
        if to - from > TimeDelta::days(MAX_RANGE_DAYS) {
            v.add(field, format!("at most {MAX_RANGE_DAYS} days"));
            return None;
        }
        Some(TimeRange { from, to })
    }
}

/// What a report asks for, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct ReportQuery {
    /// The responses answered in this range.
    pub range: TimeRange,
    /// The dimensions, in order, each once.
    pub group_by: Vec<Dimension>,
    /// The bucket of [`Dimension::Time`].
    pub bucket: TimeBucket,
    /// Count sub-touchpoints towards their main touchpoint.
    pub roll_up: bool,
    /// Only these surveys (`None`: all).
    pub surveys: Option<Vec<Key>>,
    /// Only these touchpoints and those below them (`None`: all).
    pub touchpoints: Option<Vec<Key>>,
    /// The small-sample threshold.
    pub options: MetricOptions,
}

/// What the store must count for a report: answers answered in `range`, optionally only of
/// some surveys and at some touchpoints, per (touchpoint?, bucket?, latest NPS?, kind, value).
#[derive(Debug, Clone, PartialEq)]
pub struct AnswerQuery {
    /// The range of `answered_at`.
    pub range: TimeRange,
    /// Only answers to these surveys.
    pub survey_ids: Option<Vec<SurveyId>>,
    /// Only answers at these touchpoints.
    pub touchpoint_ids: Option<Vec<TouchpointId>>,
    /// Split the counts by touchpoint.
    pub by_touchpoint: bool,
    /// Split the counts by this time bucket.
    pub bucket: Option<TimeBucket>,
    /// Split the counts by the respondent's latest NPS answer before `range.to`.
    pub by_latest_nps: bool,
}

/// One count the store returns for an [`AnswerQuery`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnswerCount {
    /// The touchpoint, when split by touchpoint.
    pub touchpoint: Option<TouchpointId>,
    /// The bucket number, when split by time.
    pub bucket: Option<i64>,
    /// The respondent's latest NPS answer, when split by it (`None` also when there is none).
    pub latest_nps: Option<i32>,
    /// `nps`, `csat`, `ces` or `custom`.
    pub kind: String,
    /// The answer.
    pub value: i32,
    /// How many answers.
    pub answers: u64,
    /// How many of them are the first answer of their response (so, how many responses).
    pub responses: u64,
}

/// The key of a report group: the parts of the requested dimensions.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GroupKey {
    /// [`Dimension::Touchpoint`]: the touchpoint's key.
    pub touchpoint: Option<Key>,
    /// [`Dimension::Channel`].
    pub channel: Option<Channel>,
    /// [`Dimension::Stage`].
    pub stage: Option<Stage>,
    /// [`Dimension::Department`].
    pub department: Option<String>,
    /// [`Dimension::Category`].
    pub category: Option<ReportCategory>,
    /// [`Dimension::Time`]: the bucket's start.
    pub bucket_start: Option<DateTime<Utc>>,
}

/// The accumulators of one group: responses and the three metrics' counts, all mergeable.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    /// Responses.
    pub responses: u64,
    /// NPS answers.
    pub nps: NpsCounts,
    /// CSAT answers.
    pub csat: CsatCounts,
    /// CES answers.
    pub ces: CesStats,
}

impl Tally {
    /// Adds `count` answers of `kind` with `value` (and their `responses`); answers outside
    /// their scale (impossible in stored rows) and custom-scale answers feed no metric.
    pub fn add(&mut self, kind: &str, value: i32, count: u64, responses: u64) {
        self.responses = self.responses.saturating_add(responses);
        match kind {
            "nps" => {
                let mut counts = [0u64; 11];
                if let Some(slot) = usize::try_from(value).ok().and_then(|i| counts.get_mut(i)) {
                    *slot = count;
                }
                self.nps += NpsCounts::from_answer_counts(&counts);
            }
            "csat" => {
                if let Some(slot) = usize::try_from(value - 1)
                    .ok()
                    .and_then(|i| self.csat.counts.get_mut(i))
                {
                    *slot = slot.saturating_add(count);
                }
            }
            "ces" => {
                let mut counts = [0u64; 7];
                if let Some(slot) = usize::try_from(value - 1)
                    .ok()
                    .and_then(|i| counts.get_mut(i))
                {
                    *slot = count;
                }
                self.ces += CesStats::from_counts(&counts);
            }
            _ => {}
        }
    }

    /// Merges another tally into this one.
    pub fn merge(&mut self, other: &Tally) {
        self.responses = self.responses.saturating_add(other.responses);
        self.nps += other.nps;
        self.csat += other.csat;
        self.ces += other.ces;
    }
}

/// A report: per group (ordered by key) and in total.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// The groups, ordered by key.
    pub groups: Vec<(GroupKey, Tally)>,
    /// Everything together.
    pub total: Tally,
}

/// The touchpoints of the registry, indexed for reports: by id, by key, the roll-up target of
/// each (the nearest main touchpoint at or above it), and the subtree below each.
#[derive(Debug, Clone, Default)]
pub struct TouchpointIndex {
    by_id: HashMap<TouchpointId, Touchpoint>,
    by_key: HashMap<Key, TouchpointId>,
    children: HashMap<TouchpointId, Vec<TouchpointId>>,
}

impl TouchpointIndex {
    /// Indexes `touchpoints` (archived ones included: old responses may be at them).
    pub fn new(touchpoints: Vec<Touchpoint>) -> Self {
        let mut index = TouchpointIndex::default();
        for t in touchpoints {
            if let Some((parent, _)) = &t.parent {
                index.children.entry(*parent).or_default().push(t.id);
            }
            index.by_key.insert(t.key.clone(), t.id);
            index.by_id.insert(t.id, t);
        }
        index
    }

    /// The touchpoint with this id.
    pub fn get(&self, id: TouchpointId) -> Option<&Touchpoint> {
        self.by_id.get(&id)
    }

    /// The touchpoint with this key.
    pub fn by_key(&self, key: &Key) -> Option<&Touchpoint> {
        self.by_key.get(key).and_then(|id| self.by_id.get(id))
    }

    /// Where a response at `id` counts when sub-touchpoints roll up: the nearest main
    /// touchpoint at or above it, or itself when there is none.
    pub fn roll_up(&self, id: TouchpointId) -> TouchpointId {
        let mut at = id;
        for _ in 0..=crate::touchpoint::MAX_DEPTH {
            let Some(t) = self.by_id.get(&at) else {
                return id;
            };
            if t.main {
                return at;
            }
            match &t.parent {
                Some((parent, _)) => at = *parent,
                None => return id,
            }
        }
        id
    }

    /// The ids of the touchpoints named by `keys` and of every touchpoint below them; the keys
    /// no touchpoint has are recorded in `v` as `field[i]`.
    pub fn subtrees(&self, keys: &[Key], field: &str, v: &mut Violations) -> Vec<TouchpointId> {
        let mut out = BTreeSet::new();
        for (i, key) in keys.iter().enumerate() {
            let Some(root) = self.by_key.get(key) else {
                v.add(
                    format!("{field}[{i}]"),
                    format!("no touchpoint has the key `{key}`"),
                );
                continue;
            };
            let mut stack = vec![*root];
            while let Some(id) = stack.pop() {
                if out.insert(id) {
                    stack.extend(self.children.get(&id).into_iter().flatten().copied());
                }
            }
        }
        out.into_iter().collect()
    }
}

/// What the store must count for `query`.
pub fn answer_query(
    query: &ReportQuery,
    survey_ids: Option<Vec<SurveyId>>,
    touchpoint_ids: Option<Vec<TouchpointId>>,
) -> AnswerQuery {
    let by = |d: Dimension| query.group_by.contains(&d);
    AnswerQuery {
        range: query.range,
        survey_ids,
        touchpoint_ids,
        by_touchpoint: by(Dimension::Touchpoint)
            || by(Dimension::Channel)
            || by(Dimension::Stage)
            || by(Dimension::Department),
        bucket: by(Dimension::Time).then_some(query.bucket),
        by_latest_nps: by(Dimension::Category),
    }
}

/// Merges the counts of the store into the groups of `query` and the total, with the
/// accumulators of [`super::metrics`]. Counts at a touchpoint the registry no longer has are
/// kept in the total and grouped under no touchpoint. Fails (reason `REPORT_TOO_LARGE`) past
/// [`MAX_GROUPS`] groups.
pub fn aggregate(
    query: &ReportQuery,
    touchpoints: &TouchpointIndex,
    counts: &[AnswerCount],
) -> Result<Report> {
    let mut groups: BTreeMap<GroupKey, Tally> = BTreeMap::new();
    let mut total = Tally::default();
    for count in counts {
        let mut key = GroupKey::default();
        let at = count
            .touchpoint
            .map(|id| {
                if query.roll_up {
                    touchpoints.roll_up(id)
                } else {
                    id
                }
            })
            .and_then(|id| touchpoints.get(id));
        for dimension in &query.group_by {
            match dimension {
                Dimension::Touchpoint => key.touchpoint = at.map(|t| t.key.clone()),
                Dimension::Channel => key.channel = at.map(|t| t.channel),
                Dimension::Stage => key.stage = at.map(|t| t.stage),
                Dimension::Department => key.department = at.map(|t| t.department.clone()),
                Dimension::Category => {
                    key.category = Some(ReportCategory::of_latest_nps(count.latest_nps))
                }
                Dimension::Time => {
                    key.bucket_start = count.bucket.and_then(|n| query.bucket.start(n))
                }
            }
        }
        let mut tally = Tally::default();
        tally.add(&count.kind, count.value, count.answers, count.responses);
        total.merge(&tally);
        if !query.group_by.is_empty() {
            groups.entry(key).or_default().merge(&tally);
            if groups.len() > MAX_GROUPS {
                return Err(too_large());
            }
        }
    }
    Ok(Report {
        groups: groups.into_iter().collect(),
        total,
    })
}

fn too_large() -> crate::Error {
    crate::Error::InvalidArgument {
        reason: "REPORT_TOO_LARGE",
        violations: vec![FieldViolation {
            field: "group_by".into(),
            description: format!(
                "the report would hold more than {MAX_GROUPS} groups: narrow the range or the filters, or group by a coarser time bucket"
            ),
        }],
    }
}

/// Storage of surveys and responses.
#[async_trait]
pub trait SurveyRepo: Send + Sync {
    /// Creates a survey (checking its touchpoints exist and are active: unknown or archived
    /// ones are `INVALID_ARGUMENT` on `survey.touchpoint_keys[i]`; a used key is
    /// `ALREADY_EXISTS`, reason `SURVEY_KEY_TAKEN`), idempotently under `req`.
    async fn create_survey(&self, req: &RequestKey, survey: NewSurvey) -> Result<Survey>;
    /// One survey by id or key (`NOT_FOUND` if none).
    async fn get_survey(&self, lookup: &crate::repo::Lookup<SurveyId>) -> Result<Survey>;
    /// Surveys ordered by key.
    async fn list_surveys(&self, filter: &SurveyFilter, page: &PageRequest)
    -> Result<Page<Survey>>;
    /// The surveys with these keys (absent keys are simply missing).
    async fn surveys_by_keys(&self, keys: &[Key]) -> Result<Vec<Survey>>;
    /// Retires a survey (a retired one is returned unchanged), idempotently under `req`.
    async fn retire_survey(
        &self,
        req: &RequestKey,
        id: SurveyId,
        etag: Option<&str>,
    ) -> Result<Survey>;
    /// Stores the responses in one transaction; one result per response, in order.
    async fn submit_responses(&self, items: Vec<NewResponse>) -> Result<Vec<Submitted>>;
    /// The answer counts of a report.
    async fn count_answers(&self, query: &AnswerQuery) -> Result<Vec<AnswerCount>>;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn question(key: &str, kind: SurveyKind) -> Question {
        Question {
            key: key.into(),
            kind,
            text: BTreeMap::from([("en".into(), "How was it?".into())]),
        }
    }

    fn survey(questions: Vec<Question>) -> std::result::Result<Survey, String> {
        let now = Utc::now();
        Ok(Survey {
            id: SurveyId::generate(),
            key: Key::parse("checkout.after")?,
            name: "After checkout".into(),
            definition: SurveyDefinition {
                questions,
                allows_comment: false,
                languages: vec!["en".into()],
                default_language: "en".into(),
            },
            touchpoint_keys: vec![Key::parse("checkout")?],
            state: SurveyState::Active,
            create_time: now,
            update_time: now,
            retire_time: None,
            revision: 1,
        })
    }

    fn response(answers: Vec<(&str, i32)>) -> std::result::Result<NewResponse, String> {
        Ok(NewResponse {
            index: 0,
            response_id: "r1".into(),
            customer: CustomerId::generate(),
            survey_key: Key::parse("checkout.after")?,
            touchpoint_key: Key::parse("checkout")?,
            interaction_id: None,
            answers: answers
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v))
                .collect(),
            comment: None,
            language: None,
            answered_at: Utc::now(),
            hash: ContentHash::of(b"r1"),
        })
    }

    fn fields(violations: &[FieldViolation]) -> Vec<&str> {
        violations.iter().map(|v| v.field.as_str()).collect()
    }

    #[test]
    fn three_questions_and_bad_languages_are_all_reported() {
        let definition = SurveyDefinition {
            questions: vec![
                question("a", SurveyKind::Nps),
                question("a", SurveyKind::Custom { min: 3, max: 3 }),
                question("c", SurveyKind::Ces),
            ],
            allows_comment: true,
            languages: vec!["en".into(), "not a tag".into()],
            default_language: "fr".into(),
        };
        let mut v = Violations::new();
        check_definition(&definition, "survey", &mut v);
        let violations = v.into_vec();
        let got = fields(&violations);
        for expected in [
            "survey.questions",
            "survey.languages[1]",
            "survey.default_language",
            "survey.questions[1].key",
            "survey.questions[1].kind",
        ] {
            assert!(got.contains(&expected), "{expected} missing from {got:?}");
        }
    }

    #[test]
    fn responses_are_checked_against_their_survey() -> std::result::Result<(), String> {
        let s = survey(vec![
            question("recommend", SurveyKind::Nps),
            question("effort", SurveyKind::Ces),
        ])?;
        let ok = check_response(&s, &response(vec![("effort", 7), ("recommend", 10)])?);
        assert!(matches!(&ok, Ok((answers, language))
            if answers.len() == 2 && answers[0].position == 0 && answers[0].value == 10 && language == "en"));

        let mut bad = response(vec![("recommend", 11), ("nope", 1)])?;
        bad.comment = Some("hi".into());
        bad.language = Some("de".into());
        bad.touchpoint_key = Key::parse("elsewhere")?;
        let mut retired = s.clone();
        retired.state = SurveyState::Retired;
        let Err(violations) = check_response(&retired, &bad) else {
            return Err("accepted".into());
        };
        let got = fields(&violations);
        for expected in [
            "survey_key",
            "touchpoint_key",
            "answers[0].value",
            "answers[1].question_key",
            "answers",
            "language",
            "comment",
        ] {
            assert!(got.contains(&expected), "{expected} missing from {got:?}");
        }
        Ok(())
    }

    #[test]
    fn buckets_start_on_utc_day_monday_and_first_of_month() -> std::result::Result<(), String> {
        let t = DateTime::parse_from_rfc3339("2026-11-19T15:30:00Z")
            .map_err(|e| e.to_string())?
            .with_timezone(&Utc);
        let day = epoch_day(t);
        let start = |b: TimeBucket, n: i64| b.start(n).map(|d| d.to_rfc3339());
        assert_eq!(
            start(TimeBucket::Day, day).as_deref(),
            Some("2026-11-19T00:00:00+00:00")
        );
        assert_eq!(
            start(TimeBucket::Week, (day + 3).div_euclid(7)).as_deref(),
            Some("2026-11-16T00:00:00+00:00"),
            "the Monday of that week"
        );
        assert_eq!(
            start(TimeBucket::Month, epoch_month(t)).as_deref(),
            Some("2026-11-01T00:00:00+00:00")
        );
        Ok(())
    }

    #[test]
    fn categories_follow_the_latest_nps_answer() {
        assert_eq!(ReportCategory::of_latest_nps(None), ReportCategory::Unknown);
        assert_eq!(
            ReportCategory::of_latest_nps(Some(6)),
            ReportCategory::Known(CustomerCategory::Negative)
        );
        assert_eq!(
            ReportCategory::of_latest_nps(Some(8)),
            ReportCategory::Known(CustomerCategory::Neutral)
        );
        assert_eq!(
            ReportCategory::of_latest_nps(Some(9)),
            ReportCategory::Known(CustomerCategory::Advocate)
        );
    }

    #[test]
    fn reports_past_the_group_limit_are_refused_not_truncated() -> std::result::Result<(), String> {
        let from = DateTime::parse_from_rfc3339("2020-01-01T00:00:00Z")
            .map_err(|e| e.to_string())?
            .with_timezone(&Utc);
        let query = ReportQuery {
            range: TimeRange {
                from,
                to: from + TimeDelta::days(MAX_RANGE_DAYS),
            },
            group_by: vec![Dimension::Time],
            bucket: TimeBucket::Day,
            roll_up: false,
            surveys: None,
            touchpoints: None,
            options: MetricOptions::default(),
        };
        let counts = |days: i64| -> Vec<AnswerCount> {
            (0..days)
                .map(|d| AnswerCount {
                    touchpoint: None,
                    bucket: Some(epoch_day(from) + d),
                    latest_nps: None,
                    kind: "nps".into(),
                    value: 9,
                    answers: 1,
                    responses: 1,
                })
                .collect()
        };
        let index = TouchpointIndex::default();
        let fits = aggregate(&query, &index, &counts(MAX_GROUPS as i64));
        assert!(
            matches!(&fits, Ok(r) if r.groups.len() == MAX_GROUPS && r.total.nps.promoters == MAX_GROUPS as u64)
        );
        let over = aggregate(&query, &index, &counts(MAX_GROUPS as i64 + 1));
        assert!(matches!(
            over,
            Err(crate::Error::InvalidArgument {
                reason: "REPORT_TOO_LARGE",
                ..
            })
        ));
        Ok(())
    }

    #[test]
    fn tallies_feed_the_metric_accumulators() {
        let mut t = Tally::default();
        t.add("nps", 10, 3, 3);
        t.add("nps", 0, 1, 1);
        t.add("csat", 5, 2, 0);
        t.add("csat", 1, 2, 0);
        t.add("ces", 7, 1, 0);
        t.add("ces", 5, 1, 0);
        t.add("custom", 3, 4, 4);
        assert_eq!(t.responses, 8);
        assert_eq!(t.nps.promoters, 3);
        assert_eq!(t.nps.detractors, 1);
        assert_eq!(t.csat.satisfied(), 2);
        assert_eq!(t.csat.n(), 4);
        assert_eq!(t.ces.mean(), Some(6.0));
    }
}
