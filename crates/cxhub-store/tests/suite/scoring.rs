//! Surveys and survey responses (`SurveyRepo`), on a fresh store: what is stored, the answer
//! counts reports are built from, and writes that happen at once.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, TimeZone, Utc};
use cxhub_domain::identifier::CustomerId;
use cxhub_domain::interaction::{CustomerRef, InteractionRepo, NewInteraction};
use cxhub_domain::record::ContentHash;
use cxhub_domain::repo::Lookup;
use cxhub_domain::scoring::metrics::SurveyKind;
use cxhub_domain::scoring::survey::{
    AnswerCount, AnswerQuery, NewResponse, NewSurvey, Question, ResponseOutcome, SurveyDefinition,
    SurveyRepo, SurveyState, TimeBucket, TimeRange,
};
use cxhub_store::Store;

use super::{create, key, reason, req, root, under};

fn day(month: u32, d: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, month, d, 12, 0, 0)
        .single()
        .expect("valid date")
}

/// Customers created by recording one visit each under a source id.
async fn customers(store: &Store, n: usize) -> Vec<CustomerId> {
    let items = (0..n)
        .map(|i| NewInteraction {
            index: i,
            source: "kiosk".into(),
            interaction_id: format!("v{i}"),
            customer: CustomerRef::Source {
                source: "crm".into(),
                id: format!("c{i}"),
            },
            touchpoint_key: key("shop"),
            occurred_at: day(9, 1),
            channel: None,
            outcome: "VISITED".into(),
            hash: ContentHash::of(format!("v{i}").as_bytes()),
        })
        .collect();
    store
        .record_interactions(items)
        .await
        .expect("visits")
        .into_iter()
        .map(|r| r.expect("recorded").1)
        .collect()
}

pub(super) fn new_survey(k: &str) -> NewSurvey {
    NewSurvey {
        key: key(k),
        name: format!("Survey {k}"),
        definition: SurveyDefinition {
            questions: vec![
                Question {
                    key: "recommend".into(),
                    kind: SurveyKind::Nps,
                    text: BTreeMap::from([("en".into(), "Recommend us?".into())]),
                },
                Question {
                    key: "effort".into(),
                    kind: SurveyKind::Ces,
                    text: BTreeMap::from([("en".into(), "Was it easy?".into())]),
                },
            ],
            allows_comment: false,
            languages: vec!["en".into()],
            default_language: "en".into(),
        },
        touchpoint_keys: vec![key("shop"), key("shop.till")],
    }
}

pub(super) fn answer(
    id: &str,
    customer: CustomerId,
    touchpoint: &str,
    nps: i32,
    ces: i32,
    at: DateTime<Utc>,
) -> NewResponse {
    NewResponse {
        index: 0,
        response_id: id.into(),
        customer,
        survey_key: key("shop.after"),
        touchpoint_key: key(touchpoint),
        interaction_id: None,
        answers: vec![("recommend".into(), nps), ("effort".into(), ces)],
        comment: None,
        language: None,
        answered_at: at,
        hash: ContentHash::of(format!("{id}|{customer}|{touchpoint}|{nps}|{ces}|{at}").as_bytes()),
    }
}

fn outcomes(results: &[cxhub_domain::scoring::survey::Submitted]) -> Vec<Option<ResponseOutcome>> {
    results
        .iter()
        .map(|r| r.as_ref().ok().map(|(o, _)| *o))
        .collect()
}

/// The counts of `query` as (touchpoint key?, bucket?, latest NPS?, kind, value) → answers,
/// and the number of responses they cover.
async fn counts(
    store: &Store,
    query: &AnswerQuery,
    keys: &BTreeMap<String, String>,
) -> (
    BTreeMap<(Option<String>, Option<i64>, Option<i32>, String, i32), u64>,
    u64,
) {
    let counts = store.count_answers(query).await.expect("counts");
    let responses = counts.iter().map(|c| c.responses).sum();
    let answers = counts
        .into_iter()
        .filter(|c| c.answers > 0)
        .map(|c: AnswerCount| {
            (
                (
                    c.touchpoint.map(|t| keys[&t.to_string()].clone()),
                    c.bucket,
                    c.latest_nps,
                    c.kind,
                    c.value,
                ),
                c.answers,
            )
        })
        .collect();
    (answers, responses)
}

pub async fn surveys_store_once_and_answers_count_per_group(store: Store) {
    let tps = create(&store, vec![root("shop"), under("shop.till", "shop")]).await;
    let keys: BTreeMap<String, String> = tps
        .iter()
        .map(|t| (t.id.to_string(), t.key.to_string()))
        .collect();
    let ids = customers(&store, 3).await;

    // Created once; a retry returns the first result; the key cannot be taken twice.
    let s = new_survey("shop.after");
    let request = req(&"shop.after");
    let created = store
        .create_survey(&request, s.clone())
        .await
        .expect("created");
    let retried = store
        .create_survey(&request, s.clone())
        .await
        .expect("retried");
    assert_eq!(created, retried);
    assert_eq!(created.touchpoint_keys, [key("shop"), key("shop.till")]);
    let taken = store
        .create_survey(&req(&"again"), s)
        .await
        .expect_err("key taken");
    assert_eq!(reason(&taken), "SURVEY_KEY_TAKEN");
    let read = store
        .get_survey(&Lookup::Key(key("shop.after")))
        .await
        .expect("read");
    assert_eq!(read, created);

    // Answers: c0 answers twice (NPS 3 on Sep 30, NPS 10 on Oct 5), c1 once, c2 once.
    let results = store
        .submit_responses(vec![
            answer("r1", ids[0], "shop", 3, 2, day(9, 30)),
            answer("r2", ids[0], "shop.till", 10, 7, day(10, 5)),
            answer("r3", ids[1], "shop.till", 8, 7, day(10, 6)),
            answer("r4", ids[2], "shop", 10, 5, day(10, 12)),
            answer("r1", ids[0], "shop", 3, 2, day(9, 30)),
        ])
        .await
        .expect("submitted");
    use ResponseOutcome::{Created, Unchanged};
    assert_eq!(
        outcomes(&results),
        [
            Some(Created),
            Some(Created),
            Some(Created),
            Some(Created),
            Some(Unchanged)
        ],
        "a response repeated within a call is stored once"
    );

    let october = TimeRange {
        from: day(10, 1),
        to: day(11, 1),
    };
    let plain = AnswerQuery {
        range: october,
        survey_ids: None,
        touchpoint_ids: None,
        by_touchpoint: false,
        bucket: None,
        by_latest_nps: false,
    };
    let (got, responses) = counts(&store, &plain, &keys).await;
    let k = |kind: &str, value| (None, None, None, kind.to_owned(), value);
    assert_eq!(
        got,
        BTreeMap::from([
            (k("nps", 10), 2),
            (k("nps", 8), 1),
            (k("ces", 7), 2),
            (k("ces", 5), 1),
        ]),
        "September's r1 is outside the range"
    );
    assert_eq!(responses, 3, "responses count once, not once per answer");

    // By touchpoint and week: Oct 5 and 6 are one week (from Monday Oct 5), Oct 12 the next.
    let by_week = AnswerQuery {
        by_touchpoint: true,
        bucket: Some(TimeBucket::Week),
        ..plain.clone()
    };
    let (got, responses) = counts(&store, &by_week, &keys).await;
    assert_eq!(responses, 3);
    let week = |d| (day(10, d).timestamp().div_euclid(86_400) + 3).div_euclid(7);
    let till = Some("shop.till".to_owned());
    let shop = Some("shop".to_owned());
    assert_eq!(
        got[&(till.clone(), Some(week(5)), None, "nps".into(), 10)],
        1
    );
    assert_eq!(
        got[&(till.clone(), Some(week(5)), None, "nps".into(), 8)],
        1
    );
    assert_eq!(
        got[&(shop.clone(), Some(week(12)), None, "nps".into(), 10)],
        1
    );
    assert_eq!(got.len(), 5);
    assert_eq!(
        TimeBucket::Week.start(week(5)),
        Some(day(10, 5) - chrono::TimeDelta::hours(12))
    );

    // By latest NPS as of the end of the range: c0's is 10 (Oct 5, not Sep 30's 3).
    let by_latest = AnswerQuery {
        by_latest_nps: true,
        ..plain.clone()
    };
    let (got, _) = counts(&store, &by_latest, &keys).await;
    assert_eq!(got[&(None, None, Some(10), "nps".into(), 10)], 2);
    assert_eq!(got[&(None, None, Some(8), "nps".into(), 8)], 1);
    // As of Oct 1, c0's latest NPS is Sep 30's 3.
    let september = AnswerQuery {
        range: TimeRange {
            from: day(9, 1),
            to: day(10, 1),
        },
        by_latest_nps: true,
        bucket: Some(TimeBucket::Month),
        ..plain.clone()
    };
    let (got, responses) = counts(&store, &september, &keys).await;
    assert_eq!(responses, 1);
    let month = (2026 - 1970) * 12 + 8;
    assert_eq!(
        got.keys().cloned().collect::<BTreeSet<_>>(),
        BTreeSet::from([
            (None, Some(month), Some(3), "nps".into(), 3),
            (None, Some(month), Some(3), "ces".into(), 2),
        ])
    );

    // Filters: one touchpoint only.
    let till_id = tps
        .iter()
        .find(|t| t.key.as_str() == "shop.till")
        .map(|t| t.id);
    let only_till = AnswerQuery {
        touchpoint_ids: till_id.map(|id| vec![id]),
        survey_ids: Some(vec![created.id]),
        ..plain.clone()
    };
    let (_, responses) = counts(&store, &only_till, &keys).await;
    assert_eq!(responses, 2);

    // Retired: the state changes once; later responses are rejected on `survey_key`.
    let retired = store
        .retire_survey(&req(&"retire"), created.id, Some(&created.etag()))
        .await
        .expect("retired");
    assert_eq!(retired.state, SurveyState::Retired);
    let again = store
        .retire_survey(&req(&"retire again"), created.id, None)
        .await
        .expect("retired again");
    assert_eq!(
        again.revision, retired.revision,
        "retiring twice changes nothing"
    );
    let late = store
        .submit_responses(vec![answer("r9", ids[1], "shop", 9, 6, day(10, 20))])
        .await
        .expect("submitted");
    let Err(violations) = &late[0] else {
        panic!("a retired survey took a response: {late:?}");
    };
    assert_eq!(violations[0].field, "survey_key");
}

pub async fn concurrent_submissions_store_each_response_once(store: Store) {
    create(&store, vec![root("shop"), under("shop.till", "shop")]).await;
    let ids = customers(&store, 2).await;
    store
        .create_survey(&req(&"s"), new_survey("shop.after"))
        .await
        .expect("survey");
    let batch: Vec<NewResponse> = (0..200)
        .map(|i| {
            answer(
                &format!("r{i}"),
                ids[i % 2],
                "shop.till",
                9,
                6,
                day(10, 1 + (i % 28) as u32),
            )
        })
        .collect();
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let store = store.clone();
        let batch = batch.clone();
        tasks.push(tokio::spawn(async move {
            store.submit_responses(batch).await.expect("submitted")
        }));
    }
    let mut created = 0;
    for task in tasks {
        created += task
            .await
            .expect("task")
            .iter()
            .filter(|r| matches!(r, Ok((ResponseOutcome::Created, _))))
            .count();
    }
    assert_eq!(created, 200, "each response created by exactly one call");
    let total: u64 = store
        .count_answers(&AnswerQuery {
            range: TimeRange {
                from: day(10, 1),
                to: day(11, 1),
            },
            survey_ids: None,
            touchpoint_ids: None,
            by_touchpoint: false,
            bucket: None,
            by_latest_nps: false,
        })
        .await
        .expect("counts")
        .iter()
        .map(|c| c.answers)
        .sum();
    assert_eq!(total, 400, "two answers per response, none twice");
}

/// A survey response feed record of source `kiosk` about source customer `K-1`.
fn feed_response(index: usize, id: &str, nps: i32, ces: i32) -> cxhub_domain::feed::IngestItem {
    use cxhub_domain::feed::{Derived, IngestItem, SurveyAnswer, SurveyResponse};
    use cxhub_domain::identifier::Identifier;
    use cxhub_domain::record::{RecordKey, RecordType, StoredVersion};
    IngestItem {
        index,
        key: RecordKey {
            source: "kiosk".into(),
            record_type: RecordType::SurveyResponse,
            record_id: id.into(),
        },
        version: StoredVersion {
            updated_at: day(10, 6),
            hash: ContentHash::of(format!("{id}|{nps}|{ces}").as_bytes()),
        },
        anchor: Identifier::SourceId {
            source: "kiosk".into(),
            id: "K-1".into(),
        },
        identifiers: Vec::new(),
        ignored: Vec::new(),
        payload: id.as_bytes().to_vec(),
        derived: Derived {
            survey_response: Some(SurveyResponse {
                survey_key: key("shop.after"),
                touchpoint_key: key("shop.till"),
                interaction_id: None,
                answers: vec![
                    SurveyAnswer {
                        question_key: "recommend".into(),
                        value: nps,
                    },
                    SurveyAnswer {
                        question_key: "effort".into(),
                        value: ces,
                    },
                ],
                comment: None,
                language: None,
                answered_at: day(10, 6),
            }),
            ..Derived::default()
        },
    }
}

pub async fn feed_survey_responses_stand_or_fall_with_their_survey(store: Store) {
    use cxhub_domain::record::IngestOutcome;
    use cxhub_domain::repo::{CustomerRepo, IngestContext};
    create(&store, vec![root("shop"), under("shop.till", "shop")]).await;
    store
        .create_survey(&req(&"shop.after"), new_survey("shop.after"))
        .await
        .expect("survey");
    let query = AnswerQuery {
        range: TimeRange {
            from: day(10, 1),
            to: day(11, 1),
        },
        survey_ids: None,
        touchpoint_ids: None,
        by_touchpoint: false,
        bucket: None,
        by_latest_nps: false,
    };
    let ctx = IngestContext::default();
    let batch = || vec![feed_response(0, "f-1", 9, 6), feed_response(1, "f-2", 9, 8)];

    // The plain ingest refuses the whole batch, with paths from the batch, and writes nothing.
    let refused = store.ingest(batch(), &ctx).await.expect_err("refused");
    let cxhub_domain::Error::InvalidArgument { violations, .. } = refused else {
        panic!("expected InvalidArgument, got {refused:?}");
    };
    let fields: Vec<&str> = violations.iter().map(|v| v.field.as_str()).collect();
    assert_eq!(fields, ["records[1].survey_response.answers[1].value"]);
    assert_eq!(store.count_answers(&query).await.expect("counts"), []);
    assert_eq!(
        store.locate_text("K-1").await.expect("scan"),
        Vec::<String>::new()
    );

    // The checked ingest refuses the bad record alone and stores the other as `kiosk:f-1`.
    let results = store.ingest_checked(batch(), &ctx).await.expect("ingested");
    let created = results[0].as_ref().expect("first created");
    assert_eq!(created.outcome, IngestOutcome::Created);
    let rejected = results[1].as_ref().expect_err("second refused");
    assert_eq!(rejected.index, 1);
    assert_eq!(
        rejected.violations[0].field,
        "survey_response.answers[1].value"
    );
    let (_, responses) = counts(&store, &query, &BTreeMap::new()).await;
    assert_eq!(responses, 1);
    assert_eq!(
        store.locate_text("kiosk:f-1").await.expect("scan"),
        ["survey_answers.response_id", "survey_responses.response_id"]
    );
}
