//! Survey responses as a feed record type: the customer resolved like any record's, the
//! response checked with the rules of SubmitResponses (REJECTED per record, with paths into the
//! record), versioned like any record, counted once when it also came through
//! SubmitResponses, visible in score reports and customer scores, and erased with its customer.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cxhub_proto::common::v1 as common;
use cxhub_proto::feeds::v1 as feeds;
use cxhub_proto::profile::v1 as profile;
use cxhub_proto::scoring::v1 as pb;
use cxhub_proto::scoring::v1::scoring_service_client::ScoringServiceClient;
use cxhub_testkit::TestHub;
use prost_types::Timestamp;
use tonic::transport::Channel as Transport;

use crate::rid;

type Scoring = ScoringServiceClient<Transport>;
type Privacy = profile::customer_privacy_service_client::CustomerPrivacyServiceClient<Transport>;

const DAY: i64 = 86_400;
const TELLER: &str = "branch.teller";
const DEPOSIT: &str = "branch.teller.cash-deposit";
const RECEPTION: &str = "branch.reception";
/// Asked at the teller and the cash deposit: NPS then CSAT, comments allowed.
const VISIT: &str = "branch.visit";
/// Asked at the reception: one NPS question, no comment.
const QUICK: &str = "branch.quick";

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

fn ts(seconds: i64) -> Option<Timestamp> {
    Some(Timestamp { seconds, nanos: 0 })
}

fn question(key: &str, kind: pb::QuestionKind) -> pb::Question {
    pb::Question {
        key: key.into(),
        kind: kind as i32,
        text: BTreeMap::from([
            ("pt-PT".to_owned(), format!("Pergunta {key}")),
            ("en".to_owned(), format!("Question {key}")),
        ]),
        ..Default::default()
    }
}

/// A hub over the demo registry with the surveys [`VISIT`] and [`QUICK`].
async fn hub_with_surveys() -> (TestHub, Scoring) {
    let hub = TestHub::builder().demo().start().await;
    let mut c = ScoringServiceClient::new(hub.channel().await);
    for (key, questions, touchpoints, allows_comment) in [
        (
            VISIT,
            vec![
                question("recommend", pb::QuestionKind::Nps),
                question("satisfied", pb::QuestionKind::Csat),
            ],
            vec![TELLER, DEPOSIT],
            true,
        ),
        (
            QUICK,
            vec![question("recommend", pb::QuestionKind::Nps)],
            vec![RECEPTION],
            false,
        ),
    ] {
        c.create_survey(pb::CreateSurveyRequest {
            survey: Some(pb::Survey {
                key: key.into(),
                name: format!("Survey {key}"),
                questions,
                allows_comment,
                languages: vec!["pt-PT".into(), "en".into()],
                touchpoint_keys: touchpoints.into_iter().map(str::to_owned).collect(),
                ..Default::default()
            }),
            request_id: rid(),
        })
        .await
        .expect("survey created");
    }
    (hub, c)
}

/// A survey response record of `source`, about source customer `customer`, version `version`.
fn response(
    source: &str,
    id: &str,
    customer: &str,
    version: i64,
    body: feeds::SurveyResponse,
) -> feeds::Record {
    feeds::Record {
        source: source.into(),
        record_id: id.into(),
        updated_at: ts(version),
        customer: Some(common::SourceCustomer {
            source_customer_id: customer.into(),
            emails: Vec::new(),
            phones: Vec::new(),
        }),
        body: Some(feeds::record::Body::SurveyResponse(body)),
    }
}

/// An answer to [`VISIT`] at `touchpoint`: `recommend` (NPS) and `satisfied` (CSAT).
fn visit(
    touchpoint: &str,
    recommend: i32,
    satisfied: i32,
    answered_at: i64,
) -> feeds::SurveyResponse {
    feeds::SurveyResponse {
        survey_key: VISIT.into(),
        touchpoint_key: touchpoint.into(),
        answers: vec![
            feeds::SurveyAnswer {
                question_key: "recommend".into(),
                value: recommend,
            },
            feeds::SurveyAnswer {
                question_key: "satisfied".into(),
                value: satisfied,
            },
        ],
        language: "pt-PT".into(),
        answered_at: ts(answered_at),
        ..Default::default()
    }
}

async fn ingest(hub: &TestHub, records: Vec<feeds::Record>) -> Vec<feeds::RecordResult> {
    let n = records.len();
    let results = hub
        .feeds()
        .await
        .ingest_records(feeds::IngestRecordsRequest { records })
        .await
        .expect("ingest")
        .into_inner()
        .results;
    assert_eq!(results.len(), n);
    results
}

fn outcomes(results: &[feeds::RecordResult]) -> Vec<feeds::RecordOutcome> {
    results
        .iter()
        .map(|r| feeds::RecordOutcome::try_from(r.outcome).expect("known outcome"))
        .collect()
}

fn violation_fields(result: &feeds::RecordResult) -> Vec<&str> {
    result.violations.iter().map(|v| v.field.as_str()).collect()
}

/// The total of a report over the 30 days before now (answers are given in that window),
/// restricted to `survey`.
async fn total(c: &mut Scoring, survey: &str) -> pb::Scores {
    let t = now();
    c.get_score_report(pb::GetScoreReportRequest {
        range: Some(pb::TimeRange {
            from: ts(t - 30 * DAY),
            to: ts(t + DAY),
        }),
        filter: Some(pb::ScoreFilter {
            survey_keys: vec![survey.into()],
            touchpoint_keys: Vec::new(),
        }),
        ..Default::default()
    })
    .await
    .expect("report")
    .into_inner()
    .total
    .expect("total")
}

fn nps(s: &pb::Scores) -> f64 {
    s.nps
        .as_ref()
        .and_then(|n| n.score.as_ref())
        .expect("nps")
        .value
}

fn csat(s: &pb::Scores) -> f64 {
    s.csat
        .as_ref()
        .and_then(|n| n.score.as_ref())
        .expect("csat")
        .value
}

#[tokio::test]
async fn feed_responses_are_checked_versioned_and_reported() {
    let (hub, mut c) = hub_with_surveys().await;
    let t = now() - 5 * DAY;

    // Accepted: the customer is resolved from the source customer, as for any record.
    let first = response("kiosk", "r-1", "K-1", t, visit(TELLER, 10, 5, t));
    let created = ingest(&hub, vec![first.clone()]).await;
    assert_eq!(outcomes(&created), [feeds::RecordOutcome::Created]);
    let customer = created[0].customer_id.clone();
    assert!(!customer.is_empty());
    let s = total(&mut c, VISIT).await;
    assert_eq!(s.response_count, 1);
    assert!((nps(&s) - 100.0).abs() < 1e-9, "{s:?}");

    // A re-send changes nothing; an older version is stale and changes nothing either.
    let again = ingest(&hub, vec![first.clone()]).await;
    assert_eq!(outcomes(&again), [feeds::RecordOutcome::Unchanged]);
    assert_eq!(again[0].customer_id, customer);
    let older = ingest(
        &hub,
        vec![response(
            "kiosk",
            "r-1",
            "K-1",
            t - 60,
            visit(TELLER, 0, 1, t),
        )],
    )
    .await;
    assert_eq!(outcomes(&older), [feeds::RecordOutcome::Stale]);
    let s = total(&mut c, VISIT).await;
    assert_eq!(s.response_count, 1);
    assert!((nps(&s) - 100.0).abs() < 1e-9, "{s:?}");

    // A newer version replaces the response: still one response, now a detractor's.
    let newer = ingest(
        &hub,
        vec![response(
            "kiosk",
            "r-1",
            "K-1",
            t + 60,
            visit(DEPOSIT, 3, 2, t),
        )],
    )
    .await;
    assert_eq!(outcomes(&newer), [feeds::RecordOutcome::Updated]);
    assert_eq!(newer[0].customer_id, customer);
    let s = total(&mut c, VISIT).await;
    assert_eq!(s.response_count, 1);
    assert!((nps(&s) + 100.0).abs() < 1e-9, "{s:?}");
    assert!(csat(&s).abs() < 1e-9, "{s:?}");

    // One batch: a valid response goes in, each invalid one is refused on its own, with the
    // path of each field from the record, and nothing of it is written.
    let mut bad_scale = visit(TELLER, 11, 0, t);
    bad_scale.comment = "canary-bad-scale".into();
    let mut unknown_survey = visit(TELLER, 9, 4, t);
    unknown_survey.survey_key = "branch.no-such-survey".into();
    let not_attached = visit(RECEPTION, 9, 4, t);
    let mut no_comment_here = feeds::SurveyResponse {
        survey_key: QUICK.into(),
        touchpoint_key: RECEPTION.into(),
        answers: vec![feeds::SurveyAnswer {
            question_key: "recommend".into(),
            value: 9,
        }],
        answered_at: ts(t),
        ..Default::default()
    };
    no_comment_here.comment = "muito bom".into();
    no_comment_here.language = "fr".into();
    let malformed = feeds::SurveyResponse {
        survey_key: "Not A Key".into(),
        touchpoint_key: TELLER.into(),
        answers: Vec::new(),
        language: "portuguese!".into(),
        answered_at: None,
        ..Default::default()
    };
    let batch = ingest(
        &hub,
        vec![
            response("kiosk", "r-2", "K-2", t, visit(DEPOSIT, 9, 4, t)),
            response("kiosk", "r-3", "K-ghost-1", t, bad_scale),
            response("kiosk", "r-4", "K-ghost-2", t, unknown_survey),
            response("kiosk", "r-5", "K-ghost-3", t, not_attached),
            response("kiosk", "r-6", "K-ghost-4", t, no_comment_here),
            response("kiosk", "r-7", "K-ghost-5", t, malformed),
        ],
    )
    .await;
    assert_eq!(
        outcomes(&batch),
        [
            feeds::RecordOutcome::Created,
            feeds::RecordOutcome::Rejected,
            feeds::RecordOutcome::Rejected,
            feeds::RecordOutcome::Rejected,
            feeds::RecordOutcome::Rejected,
            feeds::RecordOutcome::Rejected,
        ],
        "{batch:?}"
    );
    assert_eq!(
        violation_fields(&batch[1]),
        [
            "survey_response.answers[0].value",
            "survey_response.answers[1].value"
        ]
    );
    assert_eq!(violation_fields(&batch[2]), ["survey_response.survey_key"]);
    assert_eq!(
        violation_fields(&batch[3]),
        ["survey_response.touchpoint_key"]
    );
    assert_eq!(
        violation_fields(&batch[4]),
        ["survey_response.language", "survey_response.comment"]
    );
    assert_eq!(
        violation_fields(&batch[5]),
        [
            "survey_response.survey_key",
            "survey_response.answers",
            "survey_response.language",
            "survey_response.answered_at"
        ]
    );
    for (i, result) in batch.iter().enumerate() {
        assert_eq!(usize::try_from(result.index), Ok(i));
        assert_eq!(result.customer_id.is_empty(), i > 0, "{result:?}");
    }
    for ghost in ["K-ghost-1", "K-ghost-3", "canary-bad-scale"] {
        assert_eq!(
            hub.store.locate_text(ghost).await.expect("scan"),
            Vec::<String>::new(),
            "nothing of a rejected record is written: {ghost}"
        );
    }
    let s = total(&mut c, VISIT).await;
    assert_eq!(s.response_count, 2);

    // Retired survey: a re-send of what it accepted is still UNCHANGED, a new version is refused.
    let quick = |version: i64, value: i32| {
        response(
            "kiosk",
            "r-8",
            "K-2",
            version,
            feeds::SurveyResponse {
                survey_key: QUICK.into(),
                touchpoint_key: RECEPTION.into(),
                answers: vec![feeds::SurveyAnswer {
                    question_key: "recommend".into(),
                    value,
                }],
                answered_at: ts(t),
                ..Default::default()
            },
        )
    };
    let accepted = ingest(&hub, vec![quick(t, 8)]).await;
    assert_eq!(outcomes(&accepted), [feeds::RecordOutcome::Created]);
    assert_eq!(accepted[0].customer_id, batch[0].customer_id);
    let survey = c
        .get_survey(pb::GetSurveyRequest {
            lookup: Some(pb::get_survey_request::Lookup::Key(QUICK.into())),
        })
        .await
        .expect("survey")
        .into_inner()
        .survey
        .expect("survey");
    c.retire_survey(pb::RetireSurveyRequest {
        id: survey.id,
        etag: String::new(),
        request_id: rid(),
    })
    .await
    .expect("retired");
    let resent = ingest(&hub, vec![quick(t, 8)]).await;
    assert_eq!(outcomes(&resent), [feeds::RecordOutcome::Unchanged]);
    let refused = ingest(&hub, vec![quick(t + 1, 10)]).await;
    assert_eq!(outcomes(&refused), [feeds::RecordOutcome::Rejected]);
    assert_eq!(
        violation_fields(&refused[0]),
        ["survey_response.survey_key"]
    );
    assert!(
        refused[0].violations[0].description.contains("retired"),
        "{refused:?}"
    );
    let s = total(&mut c, QUICK).await;
    assert_eq!(s.response_count, 1);
    assert!((nps(&s)).abs() < 1e-9, "the passive's 8 stays: {s:?}");
}

#[tokio::test]
async fn a_response_sent_both_ways_counts_once() {
    let (hub, mut c) = hub_with_surveys().await;
    let t = now() - 3 * DAY;

    // Through the feed first: SubmitResponses under `<source>:<record_id>` is the same
    // response, stored already with other content (CONFLICT), not a second one.
    let fed = ingest(
        &hub,
        vec![response("kiosk", "r-1", "K-1", t, visit(TELLER, 10, 5, t))],
    )
    .await;
    assert_eq!(outcomes(&fed), [feeds::RecordOutcome::Created]);
    let customer = fed[0].customer_id.clone();
    let submit = |id: &str, recommend: i32| pb::ResponseInput {
        response_id: id.into(),
        customer_id: customer.clone(),
        survey_key: VISIT.into(),
        touchpoint_key: TELLER.into(),
        answers: vec![
            pb::Answer {
                question_key: "recommend".into(),
                value: recommend,
            },
            pb::Answer {
                question_key: "satisfied".into(),
                value: 5,
            },
        ],
        answered_at: ts(t),
        ..Default::default()
    };
    let submitted = c
        .submit_responses(pb::SubmitResponsesRequest {
            responses: vec![submit("kiosk:r-1", 10)],
        })
        .await
        .expect("submitted")
        .into_inner()
        .results;
    assert_eq!(
        submitted[0].outcome,
        pb::ResponseOutcome::Conflict as i32,
        "{submitted:?}"
    );
    assert_eq!(total(&mut c, VISIT).await.response_count, 1);

    // Through SubmitResponses first: the feed record of the same id replaces it.
    let submitted = c
        .submit_responses(pb::SubmitResponsesRequest {
            responses: vec![submit("kiosk:r-2", 0)],
        })
        .await
        .expect("submitted")
        .into_inner()
        .results;
    assert_eq!(
        submitted[0].outcome,
        pb::ResponseOutcome::Created as i32,
        "{submitted:?}"
    );
    let s = total(&mut c, VISIT).await;
    assert_eq!(s.response_count, 2);
    assert!(nps(&s).abs() < 1e-9, "one promoter, one detractor: {s:?}");
    let fed = ingest(
        &hub,
        vec![response("kiosk", "r-2", "K-1", t, visit(TELLER, 9, 5, t))],
    )
    .await;
    assert_eq!(outcomes(&fed), [feeds::RecordOutcome::Created]);
    let s = total(&mut c, VISIT).await;
    assert_eq!(s.response_count, 2);
    assert!((nps(&s) - 100.0).abs() < 1e-9, "two promoters: {s:?}");

    // Another source's record of the same id is another response.
    let other = ingest(
        &hub,
        vec![response("app", "r-2", "A-1", t, visit(TELLER, 9, 5, t))],
    )
    .await;
    assert_eq!(outcomes(&other), [feeds::RecordOutcome::Created]);
    assert_eq!(total(&mut c, VISIT).await.response_count, 3);
}

#[tokio::test]
async fn scores_follow_feed_responses_and_erasure_takes_their_comments() {
    let (hub, mut c) = hub_with_surveys().await;
    let t = now() - 2 * DAY;
    let canary = format!("canary-comment-{}", rid());
    let mut body = visit(TELLER, 0, 1, t);
    body.comment = canary.clone();
    let fed = ingest(&hub, vec![response("kiosk", "r-1", "K-1", t, body.clone())]).await;
    assert_eq!(outcomes(&fed), [feeds::RecordOutcome::Created]);
    let customer = fed[0].customer_id.clone();
    assert!(
        !hub.store
            .locate_text(&canary)
            .await
            .expect("scan")
            .is_empty(),
        "the comment is stored"
    );
    c.recompute_scores(pb::RecomputeScoresRequest { request_id: rid() })
        .await
        .expect("recomputed");
    let category = |scores: &pb::CustomerScores| scores.category.as_ref().map(|k| k.category);
    let first = c
        .get_customer_scores(pb::GetCustomerScoresRequest {
            customer_id: customer.clone(),
        })
        .await
        .expect("scores")
        .into_inner()
        .scores
        .expect("scores set");
    assert_eq!(
        category(&first),
        Some(pb::CustomerCategory::Negative as i32),
        "a detractor's answer: {first:?}"
    );

    // A newer version of the record, a promoter's answer, writes nothing to the change log:
    // the scoring follower picks the response up by its receive time, and the customer
    // becomes an advocate.
    body.answers[0].value = 10;
    let updated = ingest(&hub, vec![response("kiosk", "r-1", "K-1", t + 1, body)]).await;
    assert_eq!(outcomes(&updated), [feeds::RecordOutcome::Updated]);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let scores = c
            .get_customer_scores(pb::GetCustomerScoresRequest {
                customer_id: customer.clone(),
            })
            .await
            .expect("scores")
            .into_inner()
            .scores
            .expect("scores set");
        if category(&scores) == Some(pb::CustomerCategory::Advocate as i32) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the background recompute did not get there: {scores:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Erasure: the comment goes from every table (the response row and the stored record),
    // the answers stay for the reports.
    let mut privacy = Privacy::new(hub.channel().await);
    privacy
        .erase_customer(profile::EraseCustomerRequest {
            request_id: rid(),
            customer_id: customer,
        })
        .await
        .expect("erased");
    assert_eq!(
        hub.store.locate_text(&canary).await.expect("scan"),
        Vec::<String>::new()
    );
    let s = total(&mut c, VISIT).await;
    assert_eq!(s.response_count, 1);

    // A later record about the erased customer is suppressed, its response not stored.
    let later = ingest(
        &hub,
        vec![response(
            "kiosk",
            "r-2",
            "K-1",
            t + 1,
            visit(TELLER, 0, 1, t),
        )],
    )
    .await;
    assert_eq!(outcomes(&later), [feeds::RecordOutcome::Suppressed]);
    assert_eq!(total(&mut c, VISIT).await.response_count, 1);
}
