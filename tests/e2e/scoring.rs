//! The scoring service: surveys on demo touchpoints, responses, score reports whose values are
//! worked out by hand here, roll-ups, groupings, experience gaps, trends, and every refusal.

use std::collections::BTreeMap;

use chrono::{TimeZone, Utc};
use cxhub_proto::common::v1 as common;
use cxhub_proto::feeds::v1 as feeds;
use cxhub_proto::scoring::v1 as pb;
use cxhub_proto::scoring::v1::scoring_service_client::ScoringServiceClient;
use cxhub_testkit::{TestHub, with_token};
use prost_types::Timestamp;
use tonic::Code;
use tonic::transport::Channel;

use crate::{fields, refused, rid};

type Client = ScoringServiceClient<Channel>;

async fn client(hub: &TestHub) -> Client {
    ScoringServiceClient::new(hub.channel().await)
}

/// 2026-`month`-`day` at `hour`:00 UTC.
fn at(month: u32, day: u32, hour: u32) -> Option<Timestamp> {
    let t = Utc
        .with_ymd_and_hms(2026, month, day, hour, 0, 0)
        .single()
        .expect("valid date");
    Some(Timestamp {
        seconds: t.timestamp(),
        nanos: 0,
    })
}

fn range(from: Option<Timestamp>, to: Option<Timestamp>) -> Option<pb::TimeRange> {
    Some(pb::TimeRange { from, to })
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

fn survey(key: &str, questions: Vec<pb::Question>, touchpoints: &[&str]) -> pb::Survey {
    pb::Survey {
        key: key.into(),
        name: format!("Survey {key}"),
        questions,
        allows_comment: true,
        languages: vec!["pt-PT".into(), "en".into()],
        touchpoint_keys: touchpoints.iter().map(|t| (*t).to_owned()).collect(),
        ..Default::default()
    }
}

async fn create(c: &mut Client, s: pb::Survey) -> pb::Survey {
    c.create_survey(pb::CreateSurveyRequest {
        survey: Some(s),
        request_id: rid(),
    })
    .await
    .expect("survey created")
    .into_inner()
    .survey
    .expect("survey")
}

fn response(
    id: &str,
    customer: &str,
    survey: &str,
    touchpoint: &str,
    answers: &[(&str, i32)],
    answered_at: Option<Timestamp>,
) -> pb::ResponseInput {
    pb::ResponseInput {
        response_id: id.into(),
        customer_id: customer.into(),
        survey_key: survey.into(),
        touchpoint_key: touchpoint.into(),
        answers: answers
            .iter()
            .map(|(k, v)| pb::Answer {
                question_key: (*k).into(),
                value: *v,
            })
            .collect(),
        answered_at,
        ..Default::default()
    }
}

async fn submit(c: &mut Client, responses: Vec<pb::ResponseInput>) -> Vec<pb::ResponseResult> {
    let n = responses.len();
    let results = c
        .submit_responses(pb::SubmitResponsesRequest { responses })
        .await
        .expect("submitted")
        .into_inner()
        .results;
    assert_eq!(results.len(), n);
    results
}

fn outcomes(results: &[pb::ResponseResult]) -> Vec<pb::ResponseOutcome> {
    results
        .iter()
        .map(|r| pb::ResponseOutcome::try_from(r.outcome).expect("known outcome"))
        .collect()
}

fn violations(result: &pb::ResponseResult) -> Vec<&str> {
    result.violations.iter().map(|v| v.field.as_str()).collect()
}

/// Creates `n` customers through the feeds; their hub ids.
async fn customers(hub: &TestHub, n: usize) -> Vec<String> {
    let records = (0..n)
        .map(|i| feeds::Record {
            source: "crm".into(),
            record_id: format!("c-{i}"),
            updated_at: at(10, 1, 0),
            customer: Some(common::SourceCustomer {
                source_customer_id: format!("c-{i}"),
                emails: vec![format!("cliente{i}@correio.pt")],
                phones: Vec::new(),
            }),
            body: Some(feeds::record::Body::Contact(feeds::Contact {
                given_name: format!("Cliente {i}"),
                ..Default::default()
            })),
        })
        .collect();
    hub.feeds()
        .await
        .ingest_records(feeds::IngestRecordsRequest { records })
        .await
        .expect("customers ingested")
        .into_inner()
        .results
        .into_iter()
        .map(|r| {
            assert!(!r.customer_id.is_empty(), "{r:?}");
            r.customer_id
        })
        .collect()
}

async fn report(c: &mut Client, request: pb::GetScoreReportRequest) -> pb::GetScoreReportResponse {
    c.get_score_report(request)
        .await
        .expect("report")
        .into_inner()
}

#[track_caller]
fn close(actual: f64, expected: f64) {
    assert!(
        (actual - expected).abs() < 1e-9,
        "got {actual}, expected {expected}"
    );
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

fn ces(s: &pb::Scores) -> f64 {
    s.ces
        .as_ref()
        .and_then(|n| n.score.as_ref())
        .expect("ces")
        .value
}

/// The NPS 95 % half-width by hand: 1.959964 · 100 · sqrt((pP + pD − (pP − pD)²) / n).
fn nps_margin(promoters: f64, passives: f64, detractors: f64) -> f64 {
    let n = promoters + passives + detractors;
    let (p, d) = (promoters / n, detractors / n);
    1.959_963_984_540_054 * 100.0 * ((p + d - (p - d) * (p - d)) / n).sqrt()
}

const TELLER: &str = "branch.teller";
const DEPOSIT: &str = "branch.teller.cash-deposit";
const WITHDRAWAL: &str = "branch.teller.cash-withdrawal";
const RECEPTION: &str = "branch.reception";
const VISIT: &str = "branch.after-visit";
const EFFORT: &str = "branch.effort";

/// Two surveys on demo branch touchpoints and the November responses of six customers:
///
/// | response | customer | survey | touchpoint | NPS | CSAT | CES |
/// | r1 | c0 | visit | teller | 10 | 5 | |
/// | r2 | c1 | visit | teller | 9 | 4 | |
/// | r3 | c2 | visit | cash-deposit | 3 | 2 | |
/// | r4 | c3 | visit | cash-deposit | 7 | 5 | |
/// | r5 | c4 | visit | reception | 0 | 1 | |
/// | r6 | c0 | effort | cash-deposit | | | 7 |
/// | r7 | c1 | effort | cash-deposit | | | 5 |
/// | r8 | c2 | effort | reception | | | 2 |
/// | r9 | c5 | effort | reception | | | 6 |
///
/// and in October c0 answered NPS 2 at the teller (so c0 was negative until November 2).
async fn november(hub: &TestHub) -> (Client, Vec<String>) {
    let mut c = client(hub).await;
    let ids = customers(hub, 6).await;
    create(
        &mut c,
        survey(
            VISIT,
            vec![
                question("recommend", pb::QuestionKind::Nps),
                question("satisfied", pb::QuestionKind::Csat),
            ],
            &[TELLER, DEPOSIT, WITHDRAWAL, RECEPTION],
        ),
    )
    .await;
    create(
        &mut c,
        survey(
            EFFORT,
            vec![question("effort", pb::QuestionKind::Ces)],
            &[DEPOSIT, RECEPTION],
        ),
    )
    .await;
    let v = |id: &str, who: usize, tp: &str, n: i32, s: i32, day: u32| {
        response(
            id,
            &ids[who],
            VISIT,
            tp,
            &[("recommend", n), ("satisfied", s)],
            at(11, day, 10),
        )
    };
    let e = |id: &str, who: usize, tp: &str, x: i32, day: u32| {
        response(id, &ids[who], EFFORT, tp, &[("effort", x)], at(11, day, 10))
    };
    let results = submit(
        &mut c,
        vec![
            v("r1", 0, TELLER, 10, 5, 2),
            v("r2", 1, TELLER, 9, 4, 3),
            v("r3", 2, DEPOSIT, 3, 2, 4),
            v("r4", 3, DEPOSIT, 7, 5, 5),
            v("r5", 4, RECEPTION, 0, 1, 6),
            e("r6", 0, DEPOSIT, 7, 7),
            e("r7", 1, DEPOSIT, 5, 8),
            e("r8", 2, RECEPTION, 2, 9),
            e("r9", 5, RECEPTION, 6, 10),
            response(
                "r0",
                &ids[0],
                VISIT,
                TELLER,
                &[("recommend", 2), ("satisfied", 3)],
                at(10, 20, 10),
            ),
        ],
    )
    .await;
    assert_eq!(
        outcomes(&results),
        [pb::ResponseOutcome::Created; 10],
        "{results:?}"
    );
    (c, ids)
}

fn november_range() -> Option<pb::TimeRange> {
    range(at(11, 1, 0), at(12, 1, 0))
}

#[tokio::test]
async fn reports_give_hand_computed_scores_with_roll_ups_and_categories() {
    let hub = TestHub::builder().demo().start().await;
    let (mut c, _) = november(&hub).await;

    // Everything in November: NPS answers 10, 9, 3, 7, 0 → 2 promoters, 1 passive, 2
    // detractors → NPS 0; CSAT 5, 4, 2, 5, 1 → 3 of 5 satisfied → 60 %; CES 7, 5, 2, 6 →
    // mean 5; nine responses, so every group is a small sample.
    let all = report(
        &mut c,
        pb::GetScoreReportRequest {
            range: november_range(),
            ..Default::default()
        },
    )
    .await;
    assert!(all.groups.is_empty(), "no grouping: only the total");
    let total = all.total.expect("total");
    assert_eq!(total.response_count, 9);
    assert!(total.small_sample);
    close(nps(&total), 0.0);
    let n = total
        .nps
        .as_ref()
        .and_then(|n| n.score.as_ref())
        .expect("nps");
    close(n.margin_of_error, nps_margin(2.0, 1.0, 2.0));
    close(n.ci_low, -n.margin_of_error);
    assert_eq!(n.answer_count, 5);
    close(csat(&total), 60.0);
    close(ces(&total), 5.0);
    // CES: s² = (Σx² − (Σx)²/n)/(n − 1) = (49 + 25 + 4 + 36 − 400/4)/3 = 14/3; t(0.975, 3) =
    // 3.182446305284263.
    let ces_score = total
        .ces
        .as_ref()
        .and_then(|c| c.score.as_ref())
        .expect("ces");
    close(
        ces_score.margin_of_error,
        3.182_446_305_284_263 * (14.0_f64 / 3.0 / 4.0).sqrt(),
    );

    // By touchpoint: the sub-touchpoint on its own, then rolled up into the teller counter.
    let by_tp = |roll_up| pb::GetScoreReportRequest {
        range: november_range(),
        group_by: vec![pb::GroupBy::Touchpoint as i32],
        roll_up_sub_touchpoints: roll_up,
        ..Default::default()
    };
    let own = report(&mut c, by_tp(false)).await;
    let keys: Vec<&str> = own
        .groups
        .iter()
        .map(|g| g.key.as_ref().expect("key").touchpoint_key.as_str())
        .collect();
    assert_eq!(keys, [RECEPTION, TELLER, DEPOSIT], "ordered by key");
    let scores = |r: &pb::GetScoreReportResponse, i: usize| r.groups[i].scores.expect("scores");
    close(nps(&scores(&own, 1)), 100.0);
    close(csat(&scores(&own, 1)), 100.0);
    assert!(
        scores(&own, 1).ces.is_none(),
        "no CES answer at the counter itself"
    );
    assert_eq!(scores(&own, 2).response_count, 4);
    close(nps(&scores(&own, 2)), -50.0);
    close(csat(&scores(&own, 2)), 50.0);
    close(ces(&scores(&own, 2)), 6.0);
    close(nps(&scores(&own, 0)), -100.0);
    close(ces(&scores(&own, 0)), 4.0);
    assert_eq!(
        own.groups[1].key.as_ref().expect("key").touchpoint_name,
        "Teller counter"
    );

    // Rolled up: the counter holds 10, 9, 3, 7 → NPS (2 − 1)/4 = 25; CSAT 3 of 4 = 75 %.
    let rolled = report(&mut c, by_tp(true)).await;
    let keys: Vec<&str> = rolled
        .groups
        .iter()
        .map(|g| g.key.as_ref().expect("key").touchpoint_key.as_str())
        .collect();
    assert_eq!(keys, [RECEPTION, TELLER]);
    let teller = scores(&rolled, 1);
    assert_eq!(teller.response_count, 6);
    close(nps(&teller), 25.0);
    close(
        teller
            .nps
            .as_ref()
            .and_then(|n| n.score.as_ref())
            .expect("nps")
            .margin_of_error,
        nps_margin(2.0, 1.0, 1.0),
    );
    close(csat(&teller), 75.0);
    close(ces(&teller), 6.0);

    // By channel and stage: every one of these is a store touchpoint in the usage stage.
    let by_channel = report(
        &mut c,
        pb::GetScoreReportRequest {
            range: november_range(),
            group_by: vec![
                pb::GroupBy::Channel as i32,
                pb::GroupBy::JourneyStage as i32,
            ],
            ..Default::default()
        },
    )
    .await;
    assert_eq!(by_channel.groups.len(), 1);
    let key = by_channel.groups[0].key.clone().expect("key");
    assert_eq!(
        key.channel,
        cxhub_proto::touchpoint::v1::Channel::Store as i32
    );
    assert_eq!(
        key.stage,
        cxhub_proto::touchpoint::v1::JourneyStage::Usage as i32
    );
    assert!(key.touchpoint_key.is_empty(), "not grouped by touchpoint");

    // By customer category as of the end of November: c0, c1 advocates (10, 9), c2, c4
    // negative (3, 0), c3 neutral (7), c5 unknown (no NPS answer).
    let by_category = report(
        &mut c,
        pb::GetScoreReportRequest {
            range: november_range(),
            group_by: vec![pb::GroupBy::CustomerCategory as i32],
            ..Default::default()
        },
    )
    .await;
    let category = |g: &pb::ScoreGroup| g.key.as_ref().expect("key").customer_category;
    let got: Vec<(i32, u64)> = by_category
        .groups
        .iter()
        .map(|g| {
            (
                category(g),
                g.scores.as_ref().expect("scores").response_count,
            )
        })
        .collect();
    use pb::CustomerCategory as K;
    assert_eq!(
        got,
        [
            (K::Unknown as i32, 1),
            (K::Negative as i32, 3),
            (K::Neutral as i32, 1),
            (K::Advocate as i32, 4),
        ]
    );
    let advocates = by_category.groups[3].scores.expect("scores");
    close(nps(&advocates), 100.0);
    close(ces(&advocates), 6.0);
    let negative = by_category.groups[1].scores.expect("scores");
    close(nps(&negative), -100.0);
    close(csat(&negative), 0.0);
    close(ces(&negative), 2.0);

    // As of the end of a range that closes before c0's November answer, c0's October
    // detractor answer decides: the October response and nothing else is negative.
    let october = report(
        &mut c,
        pb::GetScoreReportRequest {
            range: range(at(10, 1, 0), at(11, 2, 0)),
            group_by: vec![pb::GroupBy::CustomerCategory as i32],
            ..Default::default()
        },
    )
    .await;
    assert_eq!(october.groups.len(), 1);
    assert_eq!(category(&october.groups[0]), K::Negative as i32);
    close(
        nps(october.groups[0].scores.as_ref().expect("scores")),
        -100.0,
    );

    // By month over October and November: October holds r0 only.
    let monthly = report(
        &mut c,
        pb::GetScoreReportRequest {
            range: range(at(10, 1, 0), at(12, 1, 0)),
            group_by: vec![pb::GroupBy::TimeBucket as i32],
            time_bucket: pb::TimeBucket::Month as i32,
            ..Default::default()
        },
    )
    .await;
    let months: Vec<(i64, u64)> = monthly
        .groups
        .iter()
        .map(|g| {
            (
                g.key
                    .as_ref()
                    .and_then(|k| k.bucket_start)
                    .expect("bucket")
                    .seconds,
                g.scores.as_ref().expect("scores").response_count,
            )
        })
        .collect();
    let month_start = |m| at(m, 1, 0).expect("time").seconds;
    assert_eq!(months, [(month_start(10), 1), (month_start(11), 9)]);
    close(
        nps(monthly.groups[0].scores.as_ref().expect("scores")),
        -100.0,
    );
    assert_eq!(monthly.total.expect("total").response_count, 10);

    // Weeks start on Monday: November 2, 2026 is a Monday.
    let weekly = report(
        &mut c,
        pb::GetScoreReportRequest {
            range: november_range(),
            group_by: vec![pb::GroupBy::TimeBucket as i32],
            time_bucket: pb::TimeBucket::Week as i32,
            ..Default::default()
        },
    )
    .await;
    let weeks: Vec<(i64, u64)> = weekly
        .groups
        .iter()
        .map(|g| {
            (
                g.key
                    .as_ref()
                    .and_then(|k| k.bucket_start)
                    .expect("bucket")
                    .seconds,
                g.scores.as_ref().expect("scores").response_count,
            )
        })
        .collect();
    assert_eq!(
        weeks,
        [
            (at(11, 2, 0).expect("time").seconds, 7),
            (at(11, 9, 0).expect("time").seconds, 2),
        ]
    );

    // Filters: one survey, and a main touchpoint with what is below it.
    let filtered = report(
        &mut c,
        pb::GetScoreReportRequest {
            range: november_range(),
            filter: Some(pb::ScoreFilter {
                survey_keys: vec![EFFORT.into()],
                touchpoint_keys: vec![TELLER.into()],
            }),
            ..Default::default()
        },
    )
    .await
    .total
    .expect("total");
    assert_eq!(filtered.response_count, 2, "r6 and r7 at the cash deposit");
    close(ces(&filtered), 6.0);
    assert!(filtered.nps.is_none());
}

#[tokio::test]
async fn gaps_rank_the_worst_shortfall_first_and_trends_test_significance() {
    let hub = TestHub::builder().demo().start().await;
    let (mut c, ids) = november(&hub).await;

    // CSAT targets of the demo: teller counter 88, reception 85. Rolled up, the counter
    // measures 75 % (gap −13) and reception 0 % (gap −85): reception first.
    let gaps = c
        .get_experience_gaps(pb::GetExperienceGapsRequest {
            metric: pb::Metric::Csat as i32,
            range: november_range(),
            roll_up_sub_touchpoints: true,
            ..Default::default()
        })
        .await
        .expect("gaps")
        .into_inner();
    let got: Vec<(&str, f64)> = gaps
        .gaps
        .iter()
        .map(|g| (g.touchpoint_key.as_str(), g.gap))
        .collect();
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(got[0].0, RECEPTION);
    close(got[0].1, -85.0);
    assert_eq!(got[1].0, TELLER);
    close(got[1].1, -13.0);
    assert!(
        gaps.gaps[0].clearly_below_target,
        "0 of 1 is below 85 % with 95 % confidence"
    );
    close(gaps.gaps[0].target, 85.0);
    assert!(
        gaps.unmeasured_touchpoint_keys
            .contains(&"branch.advice".to_owned()),
        "a target and no answer: listed as unmeasured"
    );
    assert!(
        !gaps
            .unmeasured_touchpoint_keys
            .iter()
            .any(|k| k == TELLER || k == DEPOSIT),
        "measured ones and sub-touchpoints are not"
    );

    // NPS: the demo gives neither the counter nor reception an NPS target.
    let nps_gaps = c
        .get_experience_gaps(pb::GetExperienceGapsRequest {
            metric: pb::Metric::Nps as i32,
            range: november_range(),
            ..Default::default()
        })
        .await
        .expect("gaps")
        .into_inner();
    assert!(nps_gaps.gaps.is_empty(), "{:?}", nps_gaps.gaps);

    // The trend at the teller counter. Before (October): 10 detractors, 10 promoters and c0's
    // r0 (NPS 2, CSAT 3), so NPS 100 · (10 − 11)/21 and 10 of 21 satisfied. After (November
    // 11–20): 18 promoters and 2 detractors (NPS 80), 11 of 20 satisfied. NPS: z ≈ 0.85 /
    // sqrt(0.998/21 + 0.36/20) ≈ 3.3, significant; CSAT: z ≈ 0.074 / sqrt(0.512 · 0.488 ·
    // (1/21 + 1/20)) ≈ 0.47, not significant.
    let mut batch = Vec::new();
    for i in 0..20u32 {
        let before_nps = if i < 10 { 0 } else { 10 };
        let before_csat = if i < 10 { 5 } else { 1 };
        batch.push(response(
            &format!("b{i}"),
            &ids[i as usize % 6],
            VISIT,
            TELLER,
            &[("recommend", before_nps), ("satisfied", before_csat)],
            at(10, 1 + i, 9),
        ));
        let after_nps = if i < 18 { 9 } else { 6 };
        let after_csat = if i < 11 { 4 } else { 2 };
        batch.push(response(
            &format!("a{i}"),
            &ids[i as usize % 6],
            VISIT,
            TELLER,
            &[("recommend", after_nps), ("satisfied", after_csat)],
            at(11, 11 + i / 2, 9),
        ));
    }
    let results = submit(&mut c, batch).await;
    assert!(
        outcomes(&results)
            .iter()
            .all(|o| *o == pb::ResponseOutcome::Created)
    );
    let trend = c
        .compare_score_periods(pb::CompareScorePeriodsRequest {
            before: range(at(10, 1, 0), at(10, 31, 0)),
            after: range(at(11, 11, 0), at(11, 21, 0)),
            group_by: vec![pb::GroupBy::Touchpoint as i32],
            filter: Some(pb::ScoreFilter {
                survey_keys: vec![VISIT.into()],
                touchpoint_keys: vec![TELLER.into()],
            }),
            roll_up_sub_touchpoints: false,
        })
        .await
        .expect("trend")
        .into_inner();
    let total = trend.total.expect("total");
    // Before: the 20 October answers plus c0's r0 (NPS 2, CSAT 3) on October 20.
    assert_eq!(total.responses_before, 21);
    assert_eq!(total.responses_after, 20);
    let nps_change = total.nps.expect("nps change");
    assert!(nps_change.significant, "{nps_change:?}");
    assert!(nps_change.p_value < 0.05);
    assert!(nps_change.ci_low > 0.0);
    let expected_before = 100.0 * (10.0 - 11.0) / 21.0;
    close(nps_change.before, expected_before);
    close(nps_change.after, 80.0);
    close(nps_change.delta, 80.0 - expected_before);
    let csat_change = total.csat.expect("csat change");
    assert!(!csat_change.significant, "{csat_change:?}");
    assert!(csat_change.p_value > 0.05);
    close(csat_change.before, 100.0 * 10.0 / 21.0);
    close(csat_change.after, 55.0);
    assert!(csat_change.ci_low < 0.0 && csat_change.ci_high > 0.0);
    assert!(total.ces.is_none(), "no CES answers in either period");
    assert_eq!(trend.groups.len(), 1);
    assert_eq!(
        trend.groups[0].key.as_ref().expect("key").touchpoint_key,
        TELLER
    );
}

#[tokio::test]
async fn every_refusal_is_explained_and_resubmission_is_idempotent() {
    let hub = TestHub::builder().demo().start().await;
    let (mut c, ids) = november(&hub).await;

    // Survey definitions: three questions, an unknown touchpoint, a bad scale, a text
    // missing in a language — all in one BadRequest.
    let mut bad = survey(
        "branch.too-long",
        vec![
            question("a", pb::QuestionKind::Nps),
            question("b", pb::QuestionKind::Csat),
            pb::Question {
                scale_min: 5,
                scale_max: 5,
                ..question("c", pb::QuestionKind::Custom)
            },
        ],
        &[TELLER, "branch.nowhere"],
    );
    bad.questions[1].text.remove("en");
    let status = refused(
        c.create_survey(pb::CreateSurveyRequest {
            survey: Some(bad),
            request_id: rid(),
        })
        .await,
        Code::InvalidArgument,
        "INVALID_FIELDS",
    );
    let got = fields(&status);
    for field in [
        "survey.questions",
        "survey.questions[1].text",
        "survey.questions[2].kind",
    ] {
        assert!(
            got.contains(&field.to_owned()),
            "{field} missing from {got:?}"
        );
    }
    // The touchpoint is checked once the shape is valid.
    let status = refused(
        c.create_survey(pb::CreateSurveyRequest {
            survey: Some(survey(
                "branch.nowhere",
                vec![question("a", pb::QuestionKind::Nps)],
                &[TELLER, "branch.nowhere"],
            )),
            request_id: rid(),
        })
        .await,
        Code::InvalidArgument,
        "INVALID_FIELDS",
    );
    assert_eq!(fields(&status), ["survey.touchpoint_keys[1]"]);
    refused(
        c.create_survey(pb::CreateSurveyRequest {
            survey: Some(survey(
                VISIT,
                vec![question("a", pb::QuestionKind::Nps)],
                &[TELLER],
            )),
            request_id: rid(),
        })
        .await,
        Code::AlreadyExists,
        "SURVEY_KEY_TAKEN",
    );

    // Request ids: the same request twice is one survey; the id with another payload is
    // refused.
    let id = rid();
    let quick = |key: &str| pb::CreateSurveyRequest {
        survey: Some(survey(
            key,
            vec![question("q", pb::QuestionKind::Ces)],
            &[WITHDRAWAL],
        )),
        request_id: id.clone(),
    };
    let first = c
        .create_survey(quick("branch.quick"))
        .await
        .expect("created")
        .into_inner();
    let again = c
        .create_survey(quick("branch.quick"))
        .await
        .expect("replayed")
        .into_inner();
    assert_eq!(first, again);
    refused(
        c.create_survey(quick("branch.other")).await,
        Code::InvalidArgument,
        "REQUEST_ID_REUSED",
    );
    let quick_survey = first.survey.expect("survey");
    assert_eq!(quick_survey.default_language, "pt-PT", "the first language");
    let got = c
        .get_survey(pb::GetSurveyRequest {
            lookup: Some(pb::get_survey_request::Lookup::Key("branch.quick".into())),
        })
        .await
        .expect("get")
        .into_inner()
        .survey
        .expect("survey");
    assert_eq!(got, quick_survey);
    assert_eq!(got.questions[0].scale_min, 1);
    assert_eq!(got.questions[0].scale_max, 7);

    // Listing: three surveys by key, one attached to the withdrawal counter.
    let listed = c
        .list_surveys(pb::ListSurveysRequest {
            page_size: 2,
            ..Default::default()
        })
        .await
        .expect("list")
        .into_inner();
    let keys: Vec<&str> = listed.surveys.iter().map(|s| s.key.as_str()).collect();
    assert_eq!(keys, [VISIT, EFFORT]);
    let rest = c
        .list_surveys(pb::ListSurveysRequest {
            page_size: 2,
            page_token: listed.next_page_token,
            ..Default::default()
        })
        .await
        .expect("list")
        .into_inner();
    assert_eq!(rest.surveys.len(), 1);
    assert!(rest.next_page_token.is_empty());
    let at_withdrawal = c
        .list_surveys(pb::ListSurveysRequest {
            touchpoint_key: WITHDRAWAL.into(),
            ..Default::default()
        })
        .await
        .expect("list")
        .into_inner();
    let keys: Vec<&str> = at_withdrawal
        .surveys
        .iter()
        .map(|s| s.key.as_str())
        .collect();
    assert_eq!(keys, [VISIT, "branch.quick"]);

    // Retire: a stale etag is refused, then it is retired and refuses responses.
    refused(
        c.retire_survey(pb::RetireSurveyRequest {
            id: quick_survey.id.clone(),
            etag: "r99".into(),
            request_id: rid(),
        })
        .await,
        Code::Aborted,
        "ETAG_MISMATCH",
    );
    let retired = c
        .retire_survey(pb::RetireSurveyRequest {
            id: quick_survey.id.clone(),
            etag: quick_survey.etag.clone(),
            request_id: rid(),
        })
        .await
        .expect("retired")
        .into_inner()
        .survey
        .expect("survey");
    assert_eq!(retired.state, pb::SurveyState::Retired as i32);
    assert!(retired.retire_time.is_some());
    assert_ne!(retired.etag, quick_survey.etag);

    // A merged customer: a billing contact with the e-mail of one and the phone of another
    // merges them; the absorbed id's response is stored under the survivor.
    let record = |source: &str, id: &str, emails: Vec<String>, day: u32| feeds::Record {
        source: source.into(),
        record_id: id.into(),
        updated_at: at(10, day, 0),
        customer: Some(common::SourceCustomer {
            source_customer_id: id.into(),
            emails,
            phones: vec!["+351 936 204 817".into()],
        }),
        body: Some(feeds::record::Body::Contact(feeds::Contact::default())),
    };
    let mut feeds_client = hub.feeds().await;
    let mut merged = Vec::new();
    for r in [
        record("shop", "s-1", Vec::new(), 2),
        record("billing", "b-1", vec!["cliente0@correio.pt".into()], 3),
    ] {
        merged.extend(
            feeds_client
                .ingest_records(feeds::IngestRecordsRequest { records: vec![r] })
                .await
                .expect("ingested")
                .into_inner()
                .results,
        );
    }
    let absorbed = merged[0].customer_id.clone();
    let survivor = merged[1].customer_id.clone();
    assert_ne!(absorbed, survivor, "{merged:?}");
    assert_eq!(survivor, ids[0], "the older customer survives");

    // One batch: valid responses beside every kind of refusal. The valid ones are stored.
    let ok =
        |id: &str, who: &str| response(id, who, EFFORT, RECEPTION, &[("effort", 4)], at(11, 15, 8));
    let mut with_comment = ok("x-comment", &ids[1]);
    with_comment.comment = "Atendimento rápido".into();
    with_comment.language = "en".into();
    with_comment.interaction_id = "visit-778".into();
    let mut bad_language = ok("x-language", &ids[1]);
    bad_language.language = "de".into();
    let unknown_customer = "0193a3b4-0000-7000-8000-000000000000";
    let batch = vec![
        ok("x-ok", &ids[2]),
        ok("x-merged", &absorbed),
        response(
            "x-scale",
            &ids[1],
            VISIT,
            TELLER,
            &[("recommend", 11), ("satisfied", 0)],
            at(11, 15, 8),
        ),
        response(
            "x-tp",
            &ids[1],
            EFFORT,
            "branch.nowhere",
            &[("effort", 4)],
            at(11, 15, 8),
        ),
        response(
            "x-attached",
            &ids[1],
            EFFORT,
            TELLER,
            &[("effort", 4)],
            at(11, 15, 8),
        ),
        response(
            "x-survey",
            &ids[1],
            "branch.unknown",
            TELLER,
            &[("effort", 4)],
            at(11, 15, 8),
        ),
        response(
            "x-retired",
            &ids[1],
            "branch.quick",
            WITHDRAWAL,
            &[("q", 4)],
            at(11, 15, 8),
        ),
        ok("x-customer", unknown_customer),
        response(
            "x-missing",
            &ids[1],
            VISIT,
            TELLER,
            &[("recommend", 5)],
            None,
        ),
        bad_language,
        with_comment,
    ];
    let results = submit(&mut c, batch.clone()).await;
    use pb::ResponseOutcome as O;
    assert_eq!(
        outcomes(&results),
        [
            O::Created,
            O::Created,
            O::Rejected,
            O::Rejected,
            O::Rejected,
            O::Rejected,
            O::Rejected,
            O::Rejected,
            O::Rejected,
            O::Rejected,
            O::Created,
        ],
        "{results:?}"
    );
    assert_eq!(
        results[1].customer_id, survivor,
        "merged ids follow the redirect"
    );
    assert_eq!(
        violations(&results[2]),
        ["answers[0].value", "answers[1].value"]
    );
    assert_eq!(violations(&results[3]), ["touchpoint_key"]);
    assert_eq!(violations(&results[4]), ["touchpoint_key"]);
    assert!(
        results[4].violations[0]
            .description
            .contains("not attached")
    );
    assert_eq!(violations(&results[5]), ["survey_key"]);
    assert_eq!(violations(&results[6]), ["survey_key"]);
    assert!(results[6].violations[0].description.contains("retired"));
    assert_eq!(violations(&results[7]), ["customer_id"]);
    assert_eq!(violations(&results[8]), ["answered_at"]);
    assert_eq!(violations(&results[9]), ["language"]);

    // The same batch again: the stored ones are unchanged; other content under a stored id
    // is a conflict; nothing is written twice.
    let again = submit(&mut c, batch.clone()).await;
    assert_eq!(outcomes(&again)[0], O::Unchanged);
    assert_eq!(outcomes(&again)[1], O::Unchanged);
    assert_eq!(again[1].customer_id, survivor);
    assert_eq!(outcomes(&again)[10], O::Unchanged);
    let mut changed = batch[0].clone();
    changed.answers[0].value = 1;
    assert_eq!(
        outcomes(&submit(&mut c, vec![changed]).await),
        [O::Conflict]
    );
    let total = report(
        &mut c,
        pb::GetScoreReportRequest {
            range: range(at(11, 15, 0), at(11, 16, 0)),
            ..Default::default()
        },
    )
    .await
    .total
    .expect("total");
    assert_eq!(total.response_count, 3, "three stored once each");
    close(ces(&total), 4.0);

    // Batch limits.
    refused(
        c.submit_responses(pb::SubmitResponsesRequest {
            responses: (0..1001)
                .map(|i| ok(&format!("big-{i}"), &ids[1]))
                .collect(),
        })
        .await,
        Code::InvalidArgument,
        "BATCH_TOO_LARGE",
    );
    refused(
        c.submit_responses(pb::SubmitResponsesRequest {
            responses: Vec::new(),
        })
        .await,
        Code::InvalidArgument,
        "INVALID_FIELDS",
    );

    // Reports: an empty range, a repeated dimension, an unknown filter key; overlapping
    // periods and a time bucket in a comparison.
    let status = refused(
        c.get_score_report(pb::GetScoreReportRequest {
            range: range(at(11, 2, 0), at(11, 1, 0)),
            group_by: vec![pb::GroupBy::Channel as i32, pb::GroupBy::Channel as i32],
            ..Default::default()
        })
        .await,
        Code::InvalidArgument,
        "INVALID_FIELDS",
    );
    assert_eq!(fields(&status), ["range", "group_by[1]"]);
    let status = refused(
        c.get_score_report(pb::GetScoreReportRequest {
            range: november_range(),
            filter: Some(pb::ScoreFilter {
                survey_keys: vec!["branch.unknown".into()],
                touchpoint_keys: vec!["branch.nowhere".into()],
            }),
            ..Default::default()
        })
        .await,
        Code::InvalidArgument,
        "INVALID_FIELDS",
    );
    assert_eq!(
        fields(&status),
        ["filter.touchpoint_keys[0]", "filter.survey_keys[0]"]
    );
    let status = refused(
        c.compare_score_periods(pb::CompareScorePeriodsRequest {
            before: november_range(),
            after: range(at(11, 20, 0), at(12, 1, 0)),
            group_by: vec![pb::GroupBy::TimeBucket as i32],
            ..Default::default()
        })
        .await,
        Code::InvalidArgument,
        "INVALID_FIELDS",
    );
    assert_eq!(fields(&status), ["after.from", "group_by[0]"]);
    refused(
        c.get_experience_gaps(pb::GetExperienceGapsRequest {
            range: november_range(),
            ..Default::default()
        })
        .await,
        Code::InvalidArgument,
        "INVALID_FIELDS",
    );
    // Touchpoint × day over most of a year: one group per pair with answers (r0–r9 on ten
    // (touchpoint, day) pairs, and the three responses stored above at reception on Nov 15).
    let wide = report(
        &mut c,
        pb::GetScoreReportRequest {
            range: range(at(1, 1, 0), at(11, 22, 0)),
            group_by: vec![
                pb::GroupBy::Touchpoint as i32,
                pb::GroupBy::TimeBucket as i32,
            ],
            ..Default::default()
        },
    )
    .await;
    assert_eq!(wide.groups.len(), 11);
}

#[tokio::test]
async fn scopes_guard_reads_and_writes() {
    let hub = TestHub::builder()
        .demo()
        .token("dashboards:scores:read:read-secret")
        .token("surveys:scores:read+scores:write:write-secret")
        .start()
        .await;
    let mut c = client(&hub).await;
    let create_request = || pb::CreateSurveyRequest {
        survey: Some(survey(
            "branch.scoped",
            vec![question("q", pb::QuestionKind::Nps)],
            &[TELLER],
        )),
        request_id: "scoped-1".into(),
    };
    refused(
        c.create_survey(with_token(create_request(), "read-secret"))
            .await,
        Code::PermissionDenied,
        "MISSING_SCOPE",
    );
    refused(
        c.submit_responses(with_token(
            pb::SubmitResponsesRequest {
                responses: vec![response(
                    "s1",
                    "x",
                    "branch.scoped",
                    TELLER,
                    &[("q", 1)],
                    at(11, 2, 0),
                )],
            },
            "read-secret",
        ))
        .await,
        Code::PermissionDenied,
        "MISSING_SCOPE",
    );
    refused(
        c.get_score_report(pb::GetScoreReportRequest {
            range: november_range(),
            ..Default::default()
        })
        .await,
        Code::Unauthenticated,
        "MISSING_TOKEN",
    );
    c.create_survey(with_token(create_request(), "write-secret"))
        .await
        .expect("a writer creates");
    let total = c
        .get_score_report(with_token(
            pb::GetScoreReportRequest {
                range: november_range(),
                ..Default::default()
            },
            "read-secret",
        ))
        .await
        .expect("a reader reads")
        .into_inner()
        .total
        .expect("total");
    assert_eq!(total.response_count, 0);
    assert!(total.nps.is_none(), "no answers: no score, not a zero");
}

/// The phrases of a sentiment's drivers, in order.
fn phrases(s: &pb::CommentSentiment) -> Vec<&str> {
    s.drivers.iter().map(|d| d.phrase.as_str()).collect()
}

/// The weight of the driver with `phrase`.
#[track_caller]
fn weight(s: &pb::CommentSentiment, phrase: &str) -> f64 {
    s.drivers
        .iter()
        .find(|d| d.phrase == phrase)
        .unwrap_or_else(|| panic!("no driver `{phrase}` in {s:?}"))
        .weight
}

#[tokio::test]
async fn every_stored_comment_answers_its_sentiment_with_its_language_and_drivers() {
    let hub = TestHub::builder().demo().start().await;
    let mut c = client(&hub).await;
    let ids = customers(&hub, 4).await;
    // Asked in pt-PT (the default) and en.
    create(
        &mut c,
        survey(
            VISIT,
            vec![question("recommend", pb::QuestionKind::Nps)],
            &[TELLER],
        ),
    )
    .await;
    let with = |id: &str, who: usize, nps: i32, comment: &str, language: &str| pb::ResponseInput {
        comment: comment.into(),
        language: language.into(),
        ..response(
            id,
            &ids[who],
            VISIT,
            TELLER,
            &[("recommend", nps)],
            at(11, 2, 10),
        )
    };
    let english = with("cs-en", 0, 6, "not very friendly staff", "en");
    let portuguese = with("cs-pt", 1, 6, "não gostei do atendimento", "");
    let praise = with("cs-praise", 3, 9, "Atendimento excelente!", "pt-PT");
    let results = submit(
        &mut c,
        vec![
            english.clone(),
            portuguese.clone(),
            with("cs-none", 2, 8, "", ""),
            praise,
            // Out of the NPS scale: rejected, so its comment is not scored.
            with("cs-bad", 2, 11, "Excellent, thank you!", "en"),
        ],
    )
    .await;
    use pb::ResponseOutcome::{Conflict, Created, Rejected, Unchanged};
    assert_eq!(
        outcomes(&results),
        [Created, Created, Created, Created, Rejected],
        "{results:?}"
    );
    let sentiment = |i: usize| {
        results[i]
            .comment_sentiment
            .clone()
            .unwrap_or_else(|| panic!("response {i} has a comment: {:?}", results[i]))
    };
    let version = cxhub_domain::scoring::sentiment::SENTIMENT_MODEL_VERSION;

    // English, as the response says: the negated, intensified word drives it.
    let en = sentiment(0);
    assert_eq!(en.label, pb::SentimentLabel::Negative as i32, "{en:?}");
    assert!(en.score < 0.0 && en.score >= -1.0, "{en:?}");
    assert_eq!(en.language, "en");
    assert_eq!(
        en.language_source,
        pb::SentimentLanguageSource::Given as i32
    );
    assert_eq!(en.language_confidence, 0.0);
    assert_eq!(phrases(&en), ["not very friendly"], "{en:?}");
    assert!(weight(&en, "not very friendly") < 0.0, "{en:?}");
    assert_eq!(en.model_version, version);
    assert_eq!(en.answer_time, at(11, 2, 10));

    // Portuguese, detected (the response names no language).
    let pt = sentiment(1);
    assert_eq!(pt.label, pb::SentimentLabel::Negative as i32, "{pt:?}");
    assert!(pt.score < 0.0, "{pt:?}");
    assert_eq!(pt.language, "pt", "{pt:?}");
    assert_eq!(
        pt.language_source,
        pb::SentimentLanguageSource::Detected as i32
    );
    assert!(
        pt.language_confidence > 0.0 && pt.language_confidence <= 1.0,
        "{pt:?}"
    );
    assert_eq!(phrases(&pt), ["não gostei"], "{pt:?}");
    assert!(weight(&pt, "não gostei") < 0.0, "{pt:?}");
    assert_eq!(pt.model_version, version);

    // No comment, no sentiment; a regional tag is scored with its language's lexicon.
    assert_eq!(results[2].comment_sentiment, None, "{:?}", results[2]);
    let praised = sentiment(3);
    assert_eq!(praised.label, pb::SentimentLabel::Positive as i32);
    assert!(praised.score > 0.0, "{praised:?}");
    assert_eq!(
        (praised.language.as_str(), praised.language_source),
        ("pt", pb::SentimentLanguageSource::Given as i32)
    );
    assert!(weight(&praised, "excelente") > 0.0, "{praised:?}");
    // Rejected: nothing stored, nothing scored.
    assert_eq!(results[4].comment_sentiment, None, "{:?}", results[4]);

    // Sent again: unchanged answers the same sentiment; a conflict answers none.
    let again = submit(
        &mut c,
        vec![
            portuguese,
            pb::ResponseInput {
                comment: "Very friendly staff".into(),
                ..english
            },
        ],
    )
    .await;
    assert_eq!(outcomes(&again), [Unchanged, Conflict], "{again:?}");
    assert_eq!(again[0].comment_sentiment, Some(pt.clone()));
    assert_eq!(again[1].comment_sentiment, None, "{:?}", again[1]);

    // The category inputs carry the same explanation of the latest comment, the language
    // settled the same way: a response that named no language is detected there too.
    c.recompute_scores(pb::RecomputeScoresRequest { request_id: rid() })
        .await
        .expect("recomputed");
    let mut latest = async |who: usize| {
        category_of(&mut c, &ids[who])
            .await
            .latest_comment
            .unwrap_or_else(|| panic!("customer {who} has a latest comment"))
    };
    let stored_en = latest(0).await;
    assert_eq!(stored_en.drivers, en.drivers);
    assert_eq!(
        (stored_en.label, stored_en.language.as_str()),
        (en.label, "en")
    );
    assert!(
        (stored_en.score - en.score).abs() <= 0.0005,
        "{stored_en:?}"
    );
    assert_eq!(
        stored_en.language_source,
        pb::SentimentLanguageSource::Given as i32
    );
    assert_eq!(stored_en.model_version, version);
    let stored_pt = latest(1).await;
    assert_same_sentiment(&stored_pt, &pt);
    assert_eq!(phrases(&stored_pt), ["não gostei"], "{stored_pt:?}");
    assert_eq!(stored_pt.language, "pt");
    assert_eq!(
        stored_pt.language_source,
        pb::SentimentLanguageSource::Detected as i32
    );
}

/// The category decision of `customer`'s scores (GetCustomerScores); panics without one.
async fn category_of(c: &mut Client, customer: &str) -> pb::CategoryScore {
    c.get_customer_scores(pb::GetCustomerScoresRequest {
        customer_id: customer.to_owned(),
    })
    .await
    .expect("scores")
    .into_inner()
    .scores
    .and_then(|s| s.category)
    .unwrap_or_else(|| panic!("customer {customer} has a category"))
}

/// Asserts that the sentiment the category rules kept (`stored`, score in thousandths) is the
/// one `SubmitResponses` answered (`answered`): language and how it was settled, drivers,
/// label, score, model version.
#[track_caller]
fn assert_same_sentiment(stored: &pb::CommentSentiment, answered: &pb::CommentSentiment) {
    assert_eq!(
        (
            stored.language.as_str(),
            stored.language_source,
            stored.language_confidence
        ),
        (
            answered.language.as_str(),
            answered.language_source,
            answered.language_confidence
        ),
        "stored {stored:?}, answered {answered:?}"
    );
    assert_eq!(stored.drivers, answered.drivers, "{stored:?}");
    assert_eq!(stored.label, answered.label, "{stored:?}");
    assert!(
        (stored.score - answered.score).abs() <= 0.0005,
        "stored {stored:?}, answered {answered:?}"
    );
    assert_eq!(stored.model_version, answered.model_version);
    assert_eq!(stored.answer_time, answered.answer_time);
}

/// A comment whose response names no language is scored in the language detected from its
/// text twice alike: when `SubmitResponses` answers, and when the category rule reads it back
/// at a full recompute (not in the survey's default language, English here) — sent through
/// `SubmitResponses` or as a survey response feed record. A replay is still UNCHANGED.
#[tokio::test]
async fn a_comment_in_no_named_language_is_detected_alike_when_submitted_and_categorised() {
    let hub = TestHub::builder().demo().start().await;
    let mut c = client(&hub).await;
    let ids = customers(&hub, 3).await;
    // Asked in en (the default) and pt-PT; effort only, so the comment decides the category.
    create(
        &mut c,
        pb::Survey {
            default_language: "en".into(),
            ..survey(
                VISIT,
                vec![question("effort", pb::QuestionKind::Ces)],
                &[TELLER],
            )
        },
    )
    .await;
    let comment = "não gostei do atendimento";
    // The English lexicon finds nothing in it: the survey's default would make it neutral.
    let in_english = cxhub_domain::scoring::sentiment::analyze(
        comment,
        Some(cxhub_domain::scoring::sentiment::Language::English),
    );
    assert!(in_english.drivers.is_empty(), "{in_english:?}");
    // An hour ago, well within the comment window of the recompute.
    let answered = Utc::now() - chrono::Duration::hours(1);
    let answered = Some(Timestamp {
        seconds: answered.timestamp(),
        nanos: 0,
    });
    let input = pb::ResponseInput {
        comment: comment.into(),
        ..response(
            "nolang-pt",
            &ids[0],
            VISIT,
            TELLER,
            &[("effort", 4)],
            answered,
        )
    };
    let named = pb::ResponseInput {
        response_id: "named-en".into(),
        customer_id: ids[2].clone(),
        language: "en".into(),
        ..input.clone()
    };
    let results = submit(&mut c, vec![input.clone(), named]).await;
    use pb::ResponseOutcome::{Created, Unchanged};
    assert_eq!(outcomes(&results), [Created, Created], "{results:?}");
    let submitted = results[0].comment_sentiment.clone().expect("a sentiment");
    assert_eq!(
        (submitted.language.as_str(), submitted.language_source),
        ("pt", pb::SentimentLanguageSource::Detected as i32),
        "{submitted:?}"
    );
    assert_eq!(submitted.label, pb::SentimentLabel::Negative as i32);
    assert_eq!(phrases(&submitted), ["não gostei"], "{submitted:?}");
    // Named English: English it is, and nothing polar in it.
    let given = results[1].comment_sentiment.clone().expect("a sentiment");
    assert_eq!(
        (given.language.as_str(), given.language_source, given.label),
        (
            "en",
            pb::SentimentLanguageSource::Given as i32,
            pb::SentimentLabel::Neutral as i32
        ),
        "{given:?}"
    );
    // Sent again naming no language: the stored response is the same one.
    let again = submit(&mut c, vec![input]).await;
    assert_eq!(outcomes(&again), [Unchanged], "{again:?}");
    assert_eq!(again[0].comment_sentiment.as_ref(), Some(&submitted));

    // The same comment as a feed record of the second customer, naming no language either.
    let fed = hub
        .feeds()
        .await
        .ingest_records(feeds::IngestRecordsRequest {
            records: vec![feeds::Record {
                source: "crm".into(),
                record_id: "survey-nolang".into(),
                updated_at: answered,
                customer: Some(common::SourceCustomer {
                    source_customer_id: "c-1".into(),
                    emails: Vec::new(),
                    phones: Vec::new(),
                }),
                body: Some(feeds::record::Body::SurveyResponse(feeds::SurveyResponse {
                    survey_key: VISIT.into(),
                    touchpoint_key: TELLER.into(),
                    answers: vec![feeds::SurveyAnswer {
                        question_key: "effort".into(),
                        value: 4,
                    }],
                    comment: comment.into(),
                    answered_at: answered,
                    ..Default::default()
                })),
            }],
        })
        .await
        .expect("ingested")
        .into_inner()
        .results;
    assert_eq!(fed[0].customer_id, ids[1], "{fed:?}");

    c.recompute_scores(pb::RecomputeScoresRequest { request_id: rid() })
        .await
        .expect("recomputed");
    for who in [0, 1] {
        let scored = category_of(&mut c, &ids[who]).await;
        let stored = scored
            .latest_comment
            .clone()
            .unwrap_or_else(|| panic!("customer {who} has a latest comment: {scored:?}"));
        assert_same_sentiment(&stored, &submitted);
        assert_eq!(
            (scored.rule, scored.category),
            (
                pb::CategoryRule::CommentSentiment as i32,
                pb::CustomerCategory::Negative as i32
            ),
            "customer {who}: {scored:?}"
        );
    }
    // The response that named English is still read in English: nothing decides.
    let scored = category_of(&mut c, &ids[2]).await;
    let stored = scored.latest_comment.clone().expect("a latest comment");
    assert_same_sentiment(&stored, &given);
    assert_eq!(
        (scored.rule, scored.category),
        (
            pb::CategoryRule::NoSignal as i32,
            pb::CustomerCategory::Neutral as i32
        ),
        "{scored:?}"
    );
}
