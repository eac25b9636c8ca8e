//! Wire types ↔ domain types of the scoring service. Validation collects every violation,
//! with field paths as the caller wrote them.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use cxhub_domain::identifier::CustomerId;
use cxhub_domain::record::{ContentHash, check_unix_timestamp};
use cxhub_domain::scoring::category::DatedComment;
use cxhub_domain::scoring::metrics::CustomerCategory;
use cxhub_domain::scoring::metrics::{
    CesScore, Change, ChangeTest, CsatScore, Estimate, MetricOptions, NpsScore, SurveyKind,
};
use cxhub_domain::scoring::sentiment::{
    self, Driver, Language, LanguageSource, SENTIMENT_MODEL_VERSION, Sentiment, SentimentLabel,
};
use cxhub_domain::scoring::survey::{
    self as sv, Dimension, GroupKey, NewResponse, NewSurvey, Question, ReportCategory, Survey,
    SurveyDefinition, SurveyState, Tally, TimeBucket, TimeRange,
};
use cxhub_domain::touchpoint::{Key, check_name};
use cxhub_domain::{FieldViolation, Violations};
use cxhub_proto::scoring::v1 as pb;
use cxhub_touchpoint_registry::convert::{channel_to_pb, stage_to_pb, timestamp};
use prost::Message;

/// A question kind and scale from the wire.
fn kind_from_pb(q: &pb::Question) -> Result<SurveyKind, String> {
    match pb::QuestionKind::try_from(q.kind) {
        Ok(pb::QuestionKind::Nps) => Ok(SurveyKind::Nps),
        Ok(pb::QuestionKind::Csat) => Ok(SurveyKind::Csat),
        Ok(pb::QuestionKind::Ces) => Ok(SurveyKind::Ces),
        Ok(pb::QuestionKind::Custom) => Ok(SurveyKind::Custom {
            min: q.scale_min,
            max: q.scale_max,
        }),
        Ok(pb::QuestionKind::Unspecified) | Err(_) => {
            Err("required: QUESTION_KIND_NPS, _CSAT, _CES or _CUSTOM".into())
        }
    }
}

fn kind_to_pb(kind: SurveyKind) -> pb::QuestionKind {
    match kind {
        SurveyKind::Nps => pb::QuestionKind::Nps,
        SurveyKind::Csat => pb::QuestionKind::Csat,
        SurveyKind::Ces => pb::QuestionKind::Ces,
        SurveyKind::Custom { .. } => pb::QuestionKind::Custom,
    }
}

/// A survey to create, from `survey` (paths below `prefix`).
pub fn new_survey(survey: &pb::Survey, prefix: &str, v: &mut Violations) -> Option<NewSurvey> {
    let key = v.check(format!("{prefix}.key"), Key::parse(&survey.key));
    let name = v.check(format!("{prefix}.name"), check_name(&survey.name));
    let mut questions = Vec::with_capacity(survey.questions.len());
    let mut kinds_ok = true;
    for (i, q) in survey.questions.iter().enumerate() {
        match kind_from_pb(q) {
            Ok(kind) => questions.push(Question {
                key: q.key.clone(),
                kind,
                text: q.text.clone(),
            }),
            Err(description) => {
                v.add(format!("{prefix}.questions[{i}].kind"), description);
                kinds_ok = false;
                // A stand-in keeps the positions of the other questions' violations.
                questions.push(Question {
                    key: q.key.clone(),
                    kind: SurveyKind::Nps,
                    text: q.text.clone(),
                });
            }
        }
    }
    let default_language = if survey.default_language.is_empty() {
        survey.languages.first().cloned().unwrap_or_default()
    } else {
        survey.default_language.clone()
    };
    let definition = SurveyDefinition {
        questions,
        allows_comment: survey.allows_comment,
        languages: survey.languages.clone(),
        default_language,
    };
    sv::check_definition(&definition, prefix, v);
    let touchpoint_keys = sv::check_touchpoint_keys(&survey.touchpoint_keys, prefix, v);
    Some(NewSurvey {
        key: key?,
        name: name?,
        definition,
        touchpoint_keys,
    })
    .filter(|_| kinds_ok)
}

/// The wire form of a survey.
pub fn survey_to_pb(s: Survey) -> pb::Survey {
    let etag = s.etag();
    pb::Survey {
        id: s.id.to_string(),
        key: s.key.to_string(),
        name: s.name,
        questions: s
            .definition
            .questions
            .into_iter()
            .map(|q| {
                let (scale_min, scale_max) = q.kind.scale();
                pb::Question {
                    key: q.key,
                    kind: kind_to_pb(q.kind) as i32,
                    scale_min,
                    scale_max,
                    text: q.text,
                }
            })
            .collect(),
        allows_comment: s.definition.allows_comment,
        languages: s.definition.languages,
        default_language: s.definition.default_language,
        touchpoint_keys: s.touchpoint_keys.iter().map(Key::to_string).collect(),
        state: match s.state {
            SurveyState::Active => pb::SurveyState::Active,
            SurveyState::Retired => pb::SurveyState::Retired,
        } as i32,
        create_time: Some(timestamp(s.create_time)),
        update_time: Some(timestamp(s.update_time)),
        retire_time: s.retire_time.map(timestamp),
        etag,
    }
}

/// A survey state filter (`None`: any).
pub fn state_from_pb(v: i32) -> Result<Option<SurveyState>, String> {
    match pb::SurveyState::try_from(v) {
        Ok(pb::SurveyState::Unspecified) => Ok(None),
        Ok(pb::SurveyState::Active) => Ok(Some(SurveyState::Active)),
        Ok(pb::SurveyState::Retired) => Ok(Some(SurveyState::Retired)),
        Err(_) => Err(format!("unknown survey state {v}")),
    }
}

/// A well-formed response, or every violation of its fields (paths from the response).
pub fn new_response(
    input: &pb::ResponseInput,
    index: usize,
    now: DateTime<Utc>,
) -> Result<NewResponse, Vec<FieldViolation>> {
    let mut v = Violations::new();
    let response_id = v.check("response_id", sv::check_response_id(&input.response_id));
    let customer = v.check("customer_id", input.customer_id.parse::<CustomerId>());
    let survey_key = v.check("survey_key", Key::parse(&input.survey_key));
    let touchpoint_key = v.check("touchpoint_key", Key::parse(&input.touchpoint_key));
    let interaction_id = if input.interaction_id.is_empty() {
        None
    } else if input.interaction_id.chars().count() > sv::MAX_INTERACTION_ID
        || input.interaction_id.trim().is_empty()
    {
        v.add(
            "interaction_id",
            format!("1 to {} characters, not blank", sv::MAX_INTERACTION_ID),
        );
        None
    } else {
        Some(input.interaction_id.clone())
    };
    if input.answers.is_empty() {
        v.add("answers", "at least one answer is required");
    }
    let answers = input
        .answers
        .iter()
        .map(|a| (a.question_key.clone(), a.value))
        .collect();
    let comment = if input.comment.is_empty() {
        None
    } else {
        if input.comment.chars().count() > sv::MAX_COMMENT {
            v.add("comment", format!("at most {} characters", sv::MAX_COMMENT));
        }
        Some(input.comment.clone())
    };
    let language = if input.language.is_empty() {
        None
    } else {
        v.check("language", sv::check_language(&input.language))
    };
    let answered_at = match &input.answered_at {
        None => {
            v.add("answered_at", "required");
            None
        }
        Some(t) => check_unix_timestamp(t.seconds, t.nanos, "answered_at", now, &mut v),
    };
    if !v.is_empty() {
        return Err(v.into_vec());
    }
    match (
        response_id,
        customer,
        survey_key,
        touchpoint_key,
        answered_at,
    ) {
        (Some(response_id), Some(customer), Some(survey_key), Some(touchpoint_key), Some(at)) => {
            Ok(NewResponse {
                index,
                response_id,
                customer,
                survey_key,
                touchpoint_key,
                interaction_id,
                answers,
                comment,
                language,
                answered_at: at,
                hash: ContentHash::of(&input.encode_to_vec()),
            })
        }
        _ => Err(vec![FieldViolation {
            field: "response".into(),
            description: "incomplete".into(),
        }]),
    }
}

/// A time range; violations at `field`.
pub fn time_range(
    range: Option<&pb::TimeRange>,
    field: &str,
    v: &mut Violations,
) -> Option<TimeRange> {
    let Some(range) = range else {
        v.add(field, "required: from and to");
        return None;
    };
    let mut at = |t: &Option<prost_types::Timestamp>, name: &str| -> Option<DateTime<Utc>> {
        match t {
            None => {
                v.add(format!("{field}.{name}"), "required");
                None
            }
            Some(t) => match u32::try_from(t.nanos)
                .ok()
                .and_then(|n| DateTime::from_timestamp(t.seconds, n))
            {
                Some(t) => Some(t),
                None => {
                    v.add(format!("{field}.{name}"), "not a valid timestamp");
                    None
                }
            },
        }
    };
    let from = at(&range.from, "from");
    let to = at(&range.to, "to");
    TimeRange::check(from?, to?, field, v)
}

/// The dimensions of a report (each at most once; time only if `allow_time`).
pub fn group_by(values: &[i32], allow_time: bool, v: &mut Violations) -> Vec<Dimension> {
    let mut out = Vec::with_capacity(values.len());
    for (i, value) in values.iter().enumerate() {
        let field = format!("group_by[{i}]");
        let dimension = match pb::GroupBy::try_from(*value) {
            Ok(pb::GroupBy::Touchpoint) => Dimension::Touchpoint,
            Ok(pb::GroupBy::Channel) => Dimension::Channel,
            Ok(pb::GroupBy::JourneyStage) => Dimension::Stage,
            Ok(pb::GroupBy::Department) => Dimension::Department,
            Ok(pb::GroupBy::CustomerCategory) => Dimension::Category,
            Ok(pb::GroupBy::TimeBucket) if allow_time => Dimension::Time,
            Ok(pb::GroupBy::TimeBucket) => {
                v.add(
                    field,
                    "periods are compared as wholes: compare two buckets as the two periods instead",
                );
                continue;
            }
            Ok(pb::GroupBy::Unspecified) | Err(_) => {
                v.add(field, format!("not a dimension ({value})"));
                continue;
            }
        };
        if out.contains(&dimension) {
            v.add(field, "listed twice");
        } else {
            out.push(dimension);
        }
    }
    out
}

/// The bucket of a report.
pub fn time_bucket(value: i32, v: &mut Violations) -> TimeBucket {
    match pb::TimeBucket::try_from(value) {
        Ok(pb::TimeBucket::Unspecified) | Ok(pb::TimeBucket::Day) => TimeBucket::Day,
        Ok(pb::TimeBucket::Week) => TimeBucket::Week,
        Ok(pb::TimeBucket::Month) => TimeBucket::Month,
        Err(_) => {
            v.add("time_bucket", format!("unknown time bucket {value}"));
            TimeBucket::Day
        }
    }
}

/// The survey and touchpoint keys of a filter (`None` when a list is empty).
pub fn filter_keys(
    filter: Option<&pb::ScoreFilter>,
    v: &mut Violations,
) -> (Option<Vec<Key>>, Option<Vec<Key>>) {
    let Some(filter) = filter else {
        return (None, None);
    };
    let mut keys = |list: &[String], field: &str| -> Option<Vec<Key>> {
        if list.is_empty() {
            return None;
        }
        Some(
            list.iter()
                .enumerate()
                .filter_map(|(i, k)| v.check(format!("{field}[{i}]"), Key::parse(k)))
                .collect(),
        )
    };
    let surveys = keys(&filter.survey_keys, "filter.survey_keys");
    let touchpoints = keys(&filter.touchpoint_keys, "filter.touchpoint_keys");
    (surveys, touchpoints)
}

/// Metric options from a request's threshold (0: the default).
pub fn options(small_sample_below: u32) -> MetricOptions {
    if small_sample_below == 0 {
        MetricOptions::default()
    } else {
        MetricOptions {
            small_sample_below: u64::from(small_sample_below),
        }
    }
}

/// The wire form of an estimate.
pub fn estimate_to_pb(e: &Estimate) -> pb::Estimate {
    pb::Estimate {
        value: e.value,
        answer_count: e.n,
        margin_of_error: e.margin_of_error_95,
        ci_low: e.ci_low,
        ci_high: e.ci_high,
        small_sample: e.small_sample,
    }
}

fn nps_to_pb(s: NpsScore) -> pb::NpsResult {
    pb::NpsResult {
        score: Some(estimate_to_pb(&s.estimate())),
        promoters_percent: s.promoters_pct,
        passives_percent: s.passives_pct,
        detractors_percent: s.detractors_pct,
    }
}

fn csat_to_pb(s: CsatScore) -> pb::CsatResult {
    pb::CsatResult {
        score: Some(estimate_to_pb(&s.estimate())),
        satisfied_count: s.satisfied,
    }
}

fn ces_to_pb(s: CesScore) -> pb::CesResult {
    pb::CesResult {
        score: Some(estimate_to_pb(&s.estimate())),
        std_dev: s.std_dev.unwrap_or(0.0),
    }
}

/// The scores of a tally.
pub fn scores_to_pb(t: &Tally, options: &MetricOptions) -> pb::Scores {
    pb::Scores {
        response_count: t.responses,
        small_sample: t.responses < options.small_sample_below,
        nps: t.nps.score_with(options).map(nps_to_pb),
        csat: t.csat.score_with(options).map(csat_to_pb),
        ces: t.ces.score_with(options).map(ces_to_pb),
    }
}

fn category_to_pb(c: ReportCategory) -> pb::CustomerCategory {
    match c {
        ReportCategory::Unknown => pb::CustomerCategory::Unknown,
        ReportCategory::Known(CustomerCategory::Negative) => pb::CustomerCategory::Negative,
        ReportCategory::Known(CustomerCategory::Neutral) => pb::CustomerCategory::Neutral,
        ReportCategory::Known(CustomerCategory::Advocate) => pb::CustomerCategory::Advocate,
    }
}

/// The wire form of a group key; `names` gives touchpoint names by key.
pub fn group_key_to_pb(key: &GroupKey, names: &BTreeMap<Key, String>) -> pb::GroupKey {
    pb::GroupKey {
        touchpoint_key: key
            .touchpoint
            .as_ref()
            .map(Key::to_string)
            .unwrap_or_default(),
        touchpoint_name: key
            .touchpoint
            .as_ref()
            .and_then(|k| names.get(k).cloned())
            .unwrap_or_default(),
        channel: key.channel.map(|c| channel_to_pb(c) as i32).unwrap_or(0),
        stage: key.stage.map(|s| stage_to_pb(s) as i32).unwrap_or(0),
        department: key.department.clone().unwrap_or_default(),
        customer_category: key.category.map(|c| category_to_pb(c) as i32).unwrap_or(0),
        bucket_start: key.bucket_start.map(timestamp),
    }
}

/// The wire form of a change.
pub fn change_to_pb(c: Change) -> pb::MetricChange {
    pb::MetricChange {
        before: c.before,
        after: c.after,
        delta: c.delta,
        ci_low: c.ci_low,
        ci_high: c.ci_high,
        statistic: c.statistic,
        p_value: c.p_value,
        significant: c.significant,
        answers_before: c.n_before,
        answers_after: c.n_after,
        degrees_of_freedom: match c.test {
            ChangeTest::WelchT { df } => df,
            ChangeTest::NpsZ | ChangeTest::TwoProportionZ => 0.0,
        },
    }
}

fn label_to_pb(label: SentimentLabel) -> pb::SentimentLabel {
    match label {
        SentimentLabel::Negative => pb::SentimentLabel::Negative,
        SentimentLabel::Neutral => pb::SentimentLabel::Neutral,
        SentimentLabel::Positive => pb::SentimentLabel::Positive,
    }
}

/// The wire language source and detection confidence (0 unless detected).
fn language_source_to_pb(source: LanguageSource) -> (pb::SentimentLanguageSource, f64) {
    match source {
        LanguageSource::Given => (pb::SentimentLanguageSource::Given, 0.0),
        LanguageSource::Detected { confidence } => {
            (pb::SentimentLanguageSource::Detected, confidence)
        }
        LanguageSource::Default => (pb::SentimentLanguageSource::Default, 0.0),
    }
}

fn drivers_to_pb(drivers: &[Driver]) -> Vec<pb::SentimentDriver> {
    drivers
        .iter()
        .map(|d| pb::SentimentDriver {
            phrase: d.phrase.clone(),
            weight: d.weight,
        })
        .collect()
}

/// The sentiment of a submitted response's comment, written at `answer_time`: in the
/// response's `language` if it names one the analyzer knows, else in the detected language.
pub fn comment_sentiment(
    comment: &str,
    language: &str,
    answer_time: Option<prost_types::Timestamp>,
) -> pb::CommentSentiment {
    sentiment_to_pb(
        &sentiment::analyze(comment, Language::parse(language)),
        answer_time,
    )
}

/// The wire form of a comment's sentiment, written at `answer_time`.
pub fn sentiment_to_pb(
    s: &Sentiment,
    answer_time: Option<prost_types::Timestamp>,
) -> pb::CommentSentiment {
    let (source, confidence) = language_source_to_pb(s.language_source);
    pb::CommentSentiment {
        score: s.score,
        label: label_to_pb(s.label) as i32,
        answer_time,
        drivers: drivers_to_pb(&s.drivers),
        language: s.language.code().to_owned(),
        language_source: source as i32,
        language_confidence: confidence,
        model_version: SENTIMENT_MODEL_VERSION.to_owned(),
    }
}

/// The wire form of the sentiment the category rules stored (drivers, language and model
/// version empty when it was stored before they were kept).
pub fn dated_comment_to_pb(c: &DatedComment) -> pb::CommentSentiment {
    let (source, confidence) = c
        .language_source
        .map_or((pb::SentimentLanguageSource::Unspecified, 0.0), |s| {
            language_source_to_pb(s)
        });
    pb::CommentSentiment {
        score: f64::from(c.score_milli) / 1000.0,
        label: label_to_pb(c.label) as i32,
        answer_time: Some(timestamp(c.answered_at)),
        drivers: drivers_to_pb(&c.drivers),
        language: c.language.map(|l| l.code().to_owned()).unwrap_or_default(),
        language_source: source as i32,
        language_confidence: confidence,
        model_version: c.model_version.clone(),
    }
}
