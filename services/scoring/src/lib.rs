//! `cxhub.scoring.v1.ScoringService`: survey definitions, survey responses, and the scores
//! measured from them — grouped reports, experience gaps against each touchpoint's intended
//! experience, and the change between two periods. Handlers are thin: [`convert`] validates,
//! the store counts answers per group, the domain (`cxhub_domain::scoring`) does the math.

pub mod convert;
pub mod scores;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use cxhub_domain::batch::validate_then_write;
use cxhub_domain::idempotency::check_request_id;
use cxhub_domain::identifier::CustomerId;
use cxhub_domain::money::check_money;
use cxhub_domain::page::{filter_fingerprint, next_page_token, page_request};
use cxhub_domain::repo::{Lookup, TouchpointRepo};
use cxhub_domain::scoring::metrics::{self, Estimate, Gap, Metric, MetricOptions};
use cxhub_domain::scoring::survey::{
    self as sv, Dimension, GroupKey, Report, ReportQuery, ResponseOutcome, SurveyFilter, SurveyId,
    SurveyRepo, Tally, TimeBucket, TouchpointIndex,
};
use cxhub_domain::scoring::{ScoreFilter, ScoreOrder};
use cxhub_domain::touchpoint::{Key, LifecycleState};
use cxhub_domain::{Error, FieldViolation, Violations};
use cxhub_proto::scoring::v1 as pb;
use cxhub_proto::scoring::v1::scoring_service_server::{
    SERVICE_NAME, ScoringService, ScoringServiceServer,
};
use cxhub_server::{
    Access, Limits, MethodAccess, ServiceRegistration, request_key, to_status, validated,
};
pub use scores::Scores;
use tonic::{Request, Response, Status};

const READ: Access = Access::Scope("scores:read");
const WRITE: Access = Access::Scope("scores:write");
const ADMIN: Access = Access::Scope("admin");

/// Every RPC of the service and the scope it needs.
pub const METHODS: &[MethodAccess] = &[
    MethodAccess {
        method: "CreateSurvey",
        access: WRITE,
    },
    MethodAccess {
        method: "GetSurvey",
        access: READ,
    },
    MethodAccess {
        method: "ListSurveys",
        access: READ,
    },
    MethodAccess {
        method: "RetireSurvey",
        access: WRITE,
    },
    MethodAccess {
        method: "SubmitResponses",
        access: WRITE,
    },
    MethodAccess {
        method: "GetScoreReport",
        access: READ,
    },
    MethodAccess {
        method: "GetExperienceGaps",
        access: READ,
    },
    MethodAccess {
        method: "CompareScorePeriods",
        access: READ,
    },
    MethodAccess {
        method: "GetCustomerScores",
        access: READ,
    },
    MethodAccess {
        method: "ListCustomersByScore",
        access: READ,
    },
    MethodAccess {
        method: "RecomputeScores",
        access: ADMIN,
    },
];

/// The service's name on the `--services` flag.
pub const SHORT_NAME: &str = "scoring";

/// The registration the hub serves: surveys and responses in `surveys`, the touchpoint
/// registry (for roll-ups, channels, stages, departments and targets) in `touchpoints`, and
/// customer scores in `scores`.
pub fn registration(
    surveys: Arc<dyn SurveyRepo>,
    touchpoints: Arc<dyn TouchpointRepo>,
    scores: Scores,
) -> ServiceRegistration {
    ServiceRegistration {
        short_name: SHORT_NAME,
        grpc_name: SERVICE_NAME,
        methods: METHODS,
        add: Box::new(move |routes, limits: &Limits| {
            routes.add_service(
                ScoringServiceServer::new(Scoring {
                    surveys,
                    touchpoints,
                    scores,
                })
                .max_decoding_message_size(limits.max_message_bytes)
                .max_encoding_message_size(limits.max_message_bytes),
            );
        }),
    }
}

/// The gRPC handlers over a [`SurveyRepo`], a [`TouchpointRepo`] and customer [`Scores`].
pub struct Scoring {
    surveys: Arc<dyn SurveyRepo>,
    touchpoints: Arc<dyn TouchpointRepo>,
    scores: Scores,
}

fn ok<T>(value: T) -> Result<Response<T>, Status> {
    Ok(Response::new(value))
}

/// Refuses an empty call and one over [`sv::MAX_RESPONSES`] (reason `BATCH_TOO_LARGE`).
fn check_response_count(len: usize) -> Result<(), Error> {
    if len == 0 {
        return Err(Error::invalid_field(
            "responses",
            "at least one response is required",
        ));
    }
    if len > sv::MAX_RESPONSES {
        return Err(Error::InvalidArgument {
            reason: "BATCH_TOO_LARGE",
            violations: vec![FieldViolation {
                field: "responses".into(),
                description: format!(
                    "{len} responses in one call; at most {}: split the call",
                    sv::MAX_RESPONSES
                ),
            }],
        });
    }
    Ok(())
}

fn rejected(result: &mut pb::ResponseResult, violations: Vec<FieldViolation>) {
    result.outcome = pb::ResponseOutcome::Rejected as i32;
    result.violations = violations
        .into_iter()
        .map(|v| cxhub_proto::common::v1::FieldViolation {
            field: v.field,
            description: v.description,
        })
        .collect();
}

/// Sets the sentiment of the comment of every CREATED or UNCHANGED response that has one
/// (`results` in the order of `inputs`). Scored on a blocking thread: a full batch of
/// 2,000-character comments in no named language takes most of a second (detection reads the
/// whole text), too long for an async worker.
async fn comment_sentiments(
    inputs: &[pb::ResponseInput],
    results: &mut [pb::ResponseResult],
) -> Result<(), Status> {
    let stored = [
        pb::ResponseOutcome::Created as i32,
        pb::ResponseOutcome::Unchanged as i32,
    ];
    let comments: Vec<(usize, String, String, Option<prost_types::Timestamp>)> = results
        .iter()
        .zip(inputs)
        .enumerate()
        .filter(|(_, (result, input))| {
            stored.contains(&result.outcome) && !input.comment.is_empty()
        })
        .map(|(i, (_, input))| {
            (
                i,
                input.comment.clone(),
                input.language.clone(),
                input.answered_at,
            )
        })
        .collect();
    if comments.is_empty() {
        return Ok(());
    }
    let scored = tokio::task::spawn_blocking(move || {
        comments
            .into_iter()
            .map(|(i, comment, language, at)| {
                (i, convert::comment_sentiment(&comment, &language, at))
            })
            .collect::<Vec<_>>()
    })
    .await
    .map_err(|e| to_status(Error::internal(format!("comment sentiment: {e}"))))?;
    for (i, sentiment) in scored {
        if let Some(result) = results.get_mut(i) {
            result.comment_sentiment = Some(sentiment);
        }
    }
    Ok(())
}

/// What a report needs besides its query: the registry, indexed, and the touchpoint names.
struct Resolved {
    index: TouchpointIndex,
    names: BTreeMap<Key, String>,
}

impl Scoring {
    /// Loads the registry and resolves the filter keys of `query` (unknown ones are
    /// violations at `filter.survey_keys[i]`, `filter.touchpoint_keys[i]`), then counts and
    /// aggregates every query in `queries` (which share those filters).
    async fn reports(&self, queries: &[&ReportQuery]) -> Result<(Vec<Report>, Resolved), Status> {
        let Some(first) = queries.first() else {
            return Err(to_status(Error::internal("no report asked")));
        };
        let all = self
            .touchpoints
            .all_touchpoints(true)
            .await
            .map_err(to_status)?;
        let names = all
            .iter()
            .map(|t| (t.key.clone(), t.name.clone()))
            .collect();
        let index = TouchpointIndex::new(all);
        let mut v = Violations::new();
        let touchpoint_ids = first
            .touchpoints
            .as_ref()
            .map(|keys| index.subtrees(keys, "filter.touchpoint_keys", &mut v));
        let survey_ids = match &first.surveys {
            None => None,
            Some(keys) => {
                let found = self
                    .surveys
                    .surveys_by_keys(keys)
                    .await
                    .map_err(to_status)?;
                for (i, key) in keys.iter().enumerate() {
                    if !found.iter().any(|s| &s.key == key) {
                        v.add(
                            format!("filter.survey_keys[{i}]"),
                            format!("no survey has the key `{key}`"),
                        );
                    }
                }
                Some(found.into_iter().map(|s| s.id).collect::<Vec<SurveyId>>())
            }
        };
        v.into_result().map_err(to_status)?;
        let mut reports = Vec::with_capacity(queries.len());
        for query in queries {
            let counts = self
                .surveys
                .count_answers(&sv::answer_query(
                    query,
                    survey_ids.clone(),
                    touchpoint_ids.clone(),
                ))
                .await
                .map_err(to_status)?;
            reports.push(sv::aggregate(query, &index, &counts).map_err(to_status)?);
        }
        Ok((reports, Resolved { index, names }))
    }
}

/// The estimate of `metric` in a tally.
fn estimate(tally: &Tally, metric: Metric, options: &MetricOptions) -> Option<Estimate> {
    match metric {
        Metric::Nps => tally.nps.score_with(options).map(Into::into),
        Metric::Csat => tally.csat.score_with(options).map(Into::into),
        Metric::Ces => tally.ces.score_with(options).map(Into::into),
    }
}

#[tonic::async_trait]
impl ScoringService for Scoring {
    async fn create_survey(
        &self,
        req: Request<pb::CreateSurveyRequest>,
    ) -> Result<Response<pb::CreateSurveyResponse>, Status> {
        let mut v = Violations::new();
        let key = request_key(
            &req,
            SERVICE_NAME,
            "CreateSurvey",
            &req.get_ref().request_id,
            |m| m.request_id.clear(),
            &mut v,
        );
        let survey = v.required(req.get_ref().survey.as_ref(), "survey", |s, v| {
            convert::new_survey(s, "survey", v)
        });
        let (key, survey) = validated(v, key.zip(survey))?;
        let created = self
            .surveys
            .create_survey(&key, survey)
            .await
            .map_err(to_status)?;
        ok(pb::CreateSurveyResponse {
            survey: Some(convert::survey_to_pb(created)),
        })
    }

    async fn get_survey(
        &self,
        req: Request<pb::GetSurveyRequest>,
    ) -> Result<Response<pb::GetSurveyResponse>, Status> {
        use pb::get_survey_request::Lookup as L;
        let mut v = Violations::new();
        let lookup = match &req.get_ref().lookup {
            Some(L::Id(id)) => v.check("id", id.parse::<SurveyId>()).map(Lookup::Id),
            Some(L::Key(key)) => v.check("key", Key::parse(key)).map(Lookup::Key),
            None => {
                v.add("lookup", "give exactly one of id or key");
                None
            }
        };
        let lookup = validated(v, lookup)?;
        let survey = self.surveys.get_survey(&lookup).await.map_err(to_status)?;
        ok(pb::GetSurveyResponse {
            survey: Some(convert::survey_to_pb(survey)),
        })
    }

    async fn list_surveys(
        &self,
        req: Request<pb::ListSurveysRequest>,
    ) -> Result<Response<pb::ListSurveysResponse>, Status> {
        let r = req.get_ref();
        let mut v = Violations::new();
        let state = v.check("state", convert::state_from_pb(r.state)).flatten();
        let touchpoint_key = if r.touchpoint_key.is_empty() {
            None
        } else {
            v.check("touchpoint_key", Key::parse(&r.touchpoint_key))
        };
        let filter = SurveyFilter {
            state,
            touchpoint_key,
        };
        let fingerprint = filter_fingerprint(&filter);
        let page = match page_request(r.page_size, &r.page_token, &fingerprint) {
            Ok(page) => Some(page),
            Err(err) => {
                for violation in Vec::from(err) {
                    v.add(violation.field, violation.description);
                }
                None
            }
        };
        let page = validated(v, page)?;
        let found = self
            .surveys
            .list_surveys(&filter, &page)
            .await
            .map_err(to_status)?;
        ok(pb::ListSurveysResponse {
            surveys: found.items.into_iter().map(convert::survey_to_pb).collect(),
            next_page_token: next_page_token(found.next_after.as_deref(), &fingerprint),
        })
    }

    async fn retire_survey(
        &self,
        req: Request<pb::RetireSurveyRequest>,
    ) -> Result<Response<pb::RetireSurveyResponse>, Status> {
        let mut v = Violations::new();
        let key = request_key(
            &req,
            SERVICE_NAME,
            "RetireSurvey",
            &req.get_ref().request_id,
            |m| m.request_id.clear(),
            &mut v,
        );
        let id = v.check("id", req.get_ref().id.parse::<SurveyId>());
        let (key, id) = validated(v, key.zip(id))?;
        let etag = Some(req.get_ref().etag.as_str()).filter(|e| !e.is_empty());
        let survey = self
            .surveys
            .retire_survey(&key, id, etag)
            .await
            .map_err(to_status)?;
        ok(pb::RetireSurveyResponse {
            survey: Some(convert::survey_to_pb(survey)),
        })
    }

    async fn submit_responses(
        &self,
        req: Request<pb::SubmitResponsesRequest>,
    ) -> Result<Response<pb::SubmitResponsesResponse>, Status> {
        let inputs = &req.get_ref().responses;
        check_response_count(inputs.len()).map_err(to_status)?;
        let now = chrono::Utc::now();
        let outcomes = validate_then_write(
            inputs,
            |index, input| convert::new_response(input, index, now),
            |valid| self.surveys.submit_responses(valid),
        )
        .await
        .map_err(to_status)?;
        let mut results: Vec<pb::ResponseResult> = outcomes
            .into_iter()
            .enumerate()
            .map(|(index, outcome)| {
                let mut result = pb::ResponseResult {
                    index: i32::try_from(index).unwrap_or(i32::MAX),
                    ..Default::default()
                };
                match outcome {
                    Ok((outcome, customer)) => {
                        result.outcome = match outcome {
                            ResponseOutcome::Created => pb::ResponseOutcome::Created,
                            ResponseOutcome::Unchanged => pb::ResponseOutcome::Unchanged,
                            ResponseOutcome::Conflict => pb::ResponseOutcome::Conflict,
                        } as i32;
                        result.customer_id = customer.to_string();
                    }
                    Err(violations) => rejected(&mut result, violations),
                }
                result
            })
            .collect();
        comment_sentiments(inputs, &mut results).await?;
        let count =
            |o: pb::ResponseOutcome| results.iter().filter(|r| r.outcome == o as i32).count();
        tracing::info!(
            responses = results.len(),
            created = count(pb::ResponseOutcome::Created),
            unchanged = count(pb::ResponseOutcome::Unchanged),
            conflict = count(pb::ResponseOutcome::Conflict),
            rejected = count(pb::ResponseOutcome::Rejected),
            "survey responses submitted"
        );
        ok(pb::SubmitResponsesResponse { results })
    }

    async fn get_score_report(
        &self,
        req: Request<pb::GetScoreReportRequest>,
    ) -> Result<Response<pb::GetScoreReportResponse>, Status> {
        let r = req.get_ref();
        let mut v = Violations::new();
        let range = convert::time_range(r.range.as_ref(), "range", &mut v);
        let group_by = convert::group_by(&r.group_by, true, &mut v);
        let bucket = convert::time_bucket(r.time_bucket, &mut v);
        let (surveys, touchpoints) = convert::filter_keys(r.filter.as_ref(), &mut v);
        let options = convert::options(r.small_sample_below);
        let query = validated(
            v,
            range.map(|range| ReportQuery {
                range,
                group_by,
                bucket,
                roll_up: r.roll_up_sub_touchpoints,
                surveys,
                touchpoints,
                options,
            }),
        )?;
        let (reports, resolved) = self.reports(&[&query]).await?;
        let Some(report) = reports.into_iter().next() else {
            return Err(to_status(Error::internal("no report computed")));
        };
        ok(pb::GetScoreReportResponse {
            groups: report
                .groups
                .iter()
                .map(|(key, tally)| pb::ScoreGroup {
                    key: Some(convert::group_key_to_pb(key, &resolved.names)),
                    scores: Some(convert::scores_to_pb(tally, &options)),
                })
                .collect(),
            total: Some(convert::scores_to_pb(&report.total, &options)),
        })
    }

    async fn get_experience_gaps(
        &self,
        req: Request<pb::GetExperienceGapsRequest>,
    ) -> Result<Response<pb::GetExperienceGapsResponse>, Status> {
        let r = req.get_ref();
        let mut v = Violations::new();
        let metric = match pb::Metric::try_from(r.metric) {
            Ok(pb::Metric::Nps) => Some(Metric::Nps),
            Ok(pb::Metric::Csat) => Some(Metric::Csat),
            Ok(pb::Metric::Ces) => Some(Metric::Ces),
            Ok(pb::Metric::Unspecified) | Err(_) => {
                v.add("metric", "required: METRIC_NPS, METRIC_CSAT or METRIC_CES");
                None
            }
        };
        let range = convert::time_range(r.range.as_ref(), "range", &mut v);
        let (surveys, touchpoints) = convert::filter_keys(r.filter.as_ref(), &mut v);
        let options = convert::options(r.small_sample_below);
        let (metric, query) = validated(
            v,
            metric.zip(range.map(|range| ReportQuery {
                range,
                group_by: vec![Dimension::Touchpoint],
                bucket: TimeBucket::Day,
                roll_up: r.roll_up_sub_touchpoints,
                surveys,
                touchpoints,
                options,
            })),
        )?;
        let (reports, resolved) = self.reports(&[&query]).await?;
        let Some(report) = reports.into_iter().next() else {
            return Err(to_status(Error::internal("no report computed")));
        };
        let target_of = |key: &Key| -> Option<f64> {
            let intended = resolved.index.by_key(key)?.intended;
            match metric {
                Metric::Nps => intended.target_nps.map(f64::from),
                Metric::Csat => intended.target_csat,
                Metric::Ces => intended.target_ces,
            }
        };
        let mut gaps: Vec<(Key, Gap)> = report
            .groups
            .iter()
            .filter_map(|(key, tally)| {
                let tp = key.touchpoint.clone()?;
                let target = target_of(&tp)?;
                let measured = estimate(tally, metric, &options)?;
                metrics::gap(target, &measured).map(|g| (tp, g))
            })
            .collect();
        metrics::rank_gaps(&mut gaps);
        // Touchpoints with a target that nothing measured: active, within the filter, and (when
        // rolling up) their own roll-up target.
        let measured: BTreeSet<&Key> = gaps.iter().map(|(k, _)| k).collect();
        let mut scope = Violations::new();
        let in_filter: Option<BTreeSet<_>> = query.touchpoints.as_ref().map(|keys| {
            resolved
                .index
                .subtrees(keys, "filter", &mut scope)
                .into_iter()
                .collect()
        });
        let mut unmeasured: Vec<String> = resolved
            .names
            .keys()
            .filter(|key| !measured.contains(key) && target_of(key).is_some())
            .filter_map(|key| resolved.index.by_key(key))
            .filter(|t| t.state == LifecycleState::Active)
            .filter(|t| in_filter.as_ref().is_none_or(|set| set.contains(&t.id)))
            .filter(|t| !query.roll_up || resolved.index.roll_up(t.id) == t.id)
            .map(|t| t.key.to_string())
            .collect();
        unmeasured.sort();
        ok(pb::GetExperienceGapsResponse {
            gaps: gaps
                .into_iter()
                .map(|(key, g)| {
                    let measured = report
                        .groups
                        .iter()
                        .find(|(k, _)| k.touchpoint.as_ref() == Some(&key))
                        .and_then(|(_, tally)| estimate(tally, metric, &options));
                    pb::ExperienceGap {
                        touchpoint_name: resolved.names.get(&key).cloned().unwrap_or_default(),
                        touchpoint_key: key.to_string(),
                        target: g.target,
                        measured: measured.as_ref().map(convert::estimate_to_pb),
                        gap: g.gap,
                        gap_ci_low: g.ci_low,
                        gap_ci_high: g.ci_high,
                        clearly_below_target: g.clearly_below_target,
                    }
                })
                .collect(),
            unmeasured_touchpoint_keys: unmeasured,
        })
    }

    async fn compare_score_periods(
        &self,
        req: Request<pb::CompareScorePeriodsRequest>,
    ) -> Result<Response<pb::CompareScorePeriodsResponse>, Status> {
        let r = req.get_ref();
        let mut v = Violations::new();
        let before = convert::time_range(r.before.as_ref(), "before", &mut v);
        let after = convert::time_range(r.after.as_ref(), "after", &mut v);
        if let (Some(b), Some(a)) = (before, after)
            && a.from < b.to
        {
            v.add(
                "after.from",
                "the periods overlap: `after` must start at or after the end of `before` (the tests assume independent samples)",
            );
        }
        let group_by = convert::group_by(&r.group_by, false, &mut v);
        let (surveys, touchpoints) = convert::filter_keys(r.filter.as_ref(), &mut v);
        let query = |range| ReportQuery {
            range,
            group_by: group_by.clone(),
            bucket: TimeBucket::Day,
            roll_up: r.roll_up_sub_touchpoints,
            surveys: surveys.clone(),
            touchpoints: touchpoints.clone(),
            options: MetricOptions::default(),
        };
        let (before, after) = validated(v, before.map(query).zip(after.map(query)))?;
        let (reports, resolved) = self.reports(&[&before, &after]).await?;
        let [b, a] = <[Report; 2]>::try_from(reports)
            .map_err(|_| to_status(Error::internal("two reports expected")))?;
        let before_groups: BTreeMap<GroupKey, Tally> = b.groups.into_iter().collect();
        let after_groups: BTreeMap<GroupKey, Tally> = a.groups.into_iter().collect();
        let keys: BTreeSet<&GroupKey> = before_groups.keys().chain(after_groups.keys()).collect();
        let empty = Tally::default();
        let compare = |key: pb::GroupKey, b: &Tally, a: &Tally| pb::PeriodComparison {
            key: Some(key),
            nps: metrics::nps_change(&b.nps, &a.nps).map(convert::change_to_pb),
            csat: metrics::csat_change(&b.csat, &a.csat).map(convert::change_to_pb),
            ces: metrics::ces_change(&b.ces, &a.ces).map(convert::change_to_pb),
            responses_before: b.responses,
            responses_after: a.responses,
        };
        ok(pb::CompareScorePeriodsResponse {
            groups: keys
                .into_iter()
                .map(|key| {
                    compare(
                        convert::group_key_to_pb(key, &resolved.names),
                        before_groups.get(key).unwrap_or(&empty),
                        after_groups.get(key).unwrap_or(&empty),
                    )
                })
                .collect(),
            total: Some(compare(pb::GroupKey::default(), &b.total, &a.total)),
        })
    }

    async fn get_customer_scores(
        &self,
        req: Request<pb::GetCustomerScoresRequest>,
    ) -> Result<Response<pb::GetCustomerScoresResponse>, Status> {
        let mut v = Violations::new();
        let id = v.check(
            "customer_id",
            req.get_ref().customer_id.parse::<CustomerId>(),
        );
        let id = validated(v, id)?;
        let (live, found) = self.scores.get(id).await.map_err(to_status)?;
        let Some(found) = found else {
            return Err(to_status(Error::precondition(
                "SCORES_NOT_COMPUTED",
                format!(
                    "customer {live} has no scores yet: run RecomputeScores, or wait for the \
                     background recompute to reach it"
                ),
            )));
        };
        ok(pb::GetCustomerScoresResponse {
            scores: Some(scores::scores_to_pb(&found)),
        })
    }

    async fn list_customers_by_score(
        &self,
        req: Request<pb::ListCustomersByScoreRequest>,
    ) -> Result<Response<pb::ListCustomersByScoreResponse>, Status> {
        let r = req.get_ref();
        let mut v = Violations::new();
        let category = v
            .check("category", scores::category_from_pb(r.category))
            .flatten();
        let churn_band = v
            .check("churn_band", scores::band_from_pb(r.churn_band))
            .flatten();
        let segment = v
            .check("rfm_segment", scores::segment_from_pb(r.rfm_segment))
            .flatten();
        let min_clv = r.min_clv.as_ref().and_then(|m| {
            if m.amount_minor < 0 {
                v.add("min_clv.amount_minor", "must be zero or more");
            }
            check_money(m.amount_minor, &m.currency_code, "min_clv", &mut v)
        });
        let order = match pb::ScoreOrder::try_from(r.order) {
            Ok(pb::ScoreOrder::Unspecified | pb::ScoreOrder::ChurnDesc) => {
                Some(ScoreOrder::ChurnDesc)
            }
            Ok(pb::ScoreOrder::ClvDesc) => Some(ScoreOrder::ClvDesc),
            Err(_) => {
                v.add("order", format!("unknown order {}", r.order));
                None
            }
        };
        let filter = ScoreFilter {
            category,
            churn_band,
            segment,
            min_clv,
        };
        let fingerprint = filter_fingerprint(&(&filter, order));
        let page = match page_request(r.page_size, &r.page_token, &fingerprint) {
            Ok(page) => Some(page),
            Err(err) => {
                for violation in Vec::from(err) {
                    v.add(violation.field, violation.description);
                }
                None
            }
        };
        let (order, page) = validated(v, order.zip(page))?;
        let found = self
            .scores
            .list(&filter, order, &page)
            .await
            .map_err(to_status)?;
        ok(pb::ListCustomersByScoreResponse {
            customers: found.items.iter().map(scores::scores_to_pb).collect(),
            next_page_token: next_page_token(found.next_after.as_deref(), &fingerprint),
        })
    }

    async fn recompute_scores(
        &self,
        req: Request<pb::RecomputeScoresRequest>,
    ) -> Result<Response<pb::RecomputeScoresResponse>, Status> {
        let mut v = Violations::new();
        let checked = v.check("request_id", check_request_id(&req.get_ref().request_id));
        validated(v, checked)?;
        tracing::info!(
            request_id = %req.get_ref().request_id,
            "full recompute of customer scores"
        );
        let done = self.scores.recompute_all().await.map_err(to_status)?;
        ok(pb::RecomputeScoresResponse {
            customers_scored: done.scored,
            customers_with_clv: done.with_clv,
            scores_deleted: done.deleted,
            models: done.models.iter().map(scores::models_to_pb).collect(),
            as_of: Some(cxhub_touchpoint_registry::convert::timestamp(done.as_of)),
        })
    }
}
