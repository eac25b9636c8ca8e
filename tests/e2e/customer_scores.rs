//! Customer scores end to end: records and survey responses in, a full recompute, the scores of
//! one customer worked out by hand, the background recompute picking up a new failed payment and
//! a new survey answer, merges and erasure, listings, every refusal and the scopes.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chrono::DateTime;
use cxhub_proto::common::v1 as common;
use cxhub_proto::feeds::v1 as feeds;
use cxhub_proto::profile::v1 as profile;
use cxhub_proto::scoring::v1 as pb;
use cxhub_proto::scoring::v1::scoring_service_client::ScoringServiceClient;
use cxhub_proto::touchpoint::v1::Channel;
use cxhub_testkit::{TestHub, with_token};
use prost_types::Timestamp;
use tonic::Code;
use tonic::transport::Channel as Transport;

use crate::{fields, refused, rid};

type Client = ScoringServiceClient<Transport>;
type Privacy = profile::customer_privacy_service_client::CustomerPrivacyServiceClient<Transport>;

const DAY: i64 = 86_400;
const TELLER: &str = "branch.teller";
const SURVEY: &str = "branch.after-teller";

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

fn ts(seconds: i64) -> Option<Timestamp> {
    Some(Timestamp { seconds, nanos: 0 })
}

fn day_text(seconds: i64) -> String {
    DateTime::from_timestamp(seconds, 0)
        .expect("valid time")
        .format("%Y-%m-%d")
        .to_string()
}

fn eur(amount_minor: i64) -> Option<common::Money> {
    Some(common::Money {
        amount_minor,
        currency_code: "EUR".into(),
    })
}

fn record(
    source: &str,
    id: &str,
    customer: &str,
    t: i64,
    emails: &[&str],
    body: feeds::record::Body,
) -> feeds::Record {
    feeds::Record {
        source: source.into(),
        record_id: id.into(),
        updated_at: ts(t),
        customer: Some(common::SourceCustomer {
            source_customer_id: customer.into(),
            emails: emails.iter().map(|e| (*e).to_owned()).collect(),
            phones: Vec::new(),
        }),
        body: Some(body),
    }
}

fn contact(given: &str) -> feeds::record::Body {
    feeds::record::Body::Contact(feeds::Contact {
        given_name: given.into(),
        ..Default::default()
    })
}

fn order(t: i64, amount: i64) -> feeds::record::Body {
    feeds::record::Body::Order(feeds::Order {
        ordered_at: ts(t),
        lines: vec![feeds::OrderLine {
            sku: "SKU-1".into(),
            quantity: 1,
            unit_price: eur(amount),
        }],
        channel: Channel::Web as i32,
        store_id: String::new(),
        status: feeds::OrderStatus::Placed as i32,
    })
}

fn failed_payment(t: i64) -> feeds::record::Body {
    feeds::record::Body::Payment(feeds::Payment {
        attempted_at: ts(t),
        amount: eur(10_00),
        status: feeds::PaymentStatus::Failed as i32,
        failure_reason: "card_declined".into(),
        invoice_id: String::new(),
    })
}

async fn ingest(hub: &TestHub, records: Vec<feeds::Record>) -> Vec<String> {
    ingest_as(hub, records, None).await
}

async fn ingest_as(hub: &TestHub, records: Vec<feeds::Record>, token: Option<&str>) -> Vec<String> {
    let request = feeds::IngestRecordsRequest { records };
    let request = match token {
        Some(token) => with_token(request, token),
        None => tonic::Request::new(request),
    };
    let results = hub
        .feeds()
        .await
        .ingest_records(request)
        .await
        .expect("batch accepted")
        .into_inner()
        .results;
    for r in &results {
        assert!(r.violations.is_empty(), "{r:?}");
    }
    results.into_iter().map(|r| r.customer_id).collect()
}

async fn create_survey(c: &mut Client) {
    c.create_survey(pb::CreateSurveyRequest {
        survey: Some(pb::Survey {
            key: SURVEY.into(),
            name: "After the teller".into(),
            questions: vec![pb::Question {
                key: "recommend".into(),
                kind: pb::QuestionKind::Nps as i32,
                text: BTreeMap::from([("en".to_owned(), "Recommend us?".to_owned())]),
                ..Default::default()
            }],
            languages: vec!["en".into()],
            touchpoint_keys: vec![TELLER.into()],
            ..Default::default()
        }),
        request_id: rid(),
    })
    .await
    .expect("survey created");
}

async fn answer_nps(c: &mut Client, id: &str, customer: &str, value: i32, t: i64) {
    let results = c
        .submit_responses(pb::SubmitResponsesRequest {
            responses: vec![pb::ResponseInput {
                response_id: id.into(),
                customer_id: customer.into(),
                survey_key: SURVEY.into(),
                touchpoint_key: TELLER.into(),
                answers: vec![pb::Answer {
                    question_key: "recommend".into(),
                    value,
                }],
                answered_at: ts(t),
                ..Default::default()
            }],
        })
        .await
        .expect("submitted")
        .into_inner()
        .results;
    assert_eq!(
        results[0].outcome,
        pb::ResponseOutcome::Created as i32,
        "{results:?}"
    );
}

async fn scores(c: &mut Client, id: &str) -> pb::CustomerScores {
    c.get_customer_scores(pb::GetCustomerScoresRequest {
        customer_id: id.into(),
    })
    .await
    .expect("scores")
    .into_inner()
    .scores
    .expect("scores set")
}

/// Reads the scores of `id` until `done` holds (the background recompute runs every half
/// second); panics with the last scores after 30 s.
async fn eventually(
    c: &mut Client,
    id: &str,
    done: impl Fn(&pb::CustomerScores) -> bool,
) -> pb::CustomerScores {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let s = scores(c, id).await;
        if done(&s) {
            return s;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the background recompute did not get there: {s:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn list(c: &mut Client, request: pb::ListCustomersByScoreRequest) -> Vec<String> {
    let mut ids = Vec::new();
    let mut token = String::new();
    loop {
        let page = c
            .list_customers_by_score(pb::ListCustomersByScoreRequest {
                page_token: token.clone(),
                ..request.clone()
            })
            .await
            .expect("page")
            .into_inner();
        ids.extend(page.customers.into_iter().map(|s| s.customer_id));
        if page.next_page_token.is_empty() {
            return ids;
        }
        token = page.next_page_token;
    }
}

fn reasons(s: &pb::CustomerScores) -> Vec<String> {
    s.churn
        .as_ref()
        .expect("churn")
        .top_reasons
        .iter()
        .map(|r| r.reason.clone())
        .collect()
}

#[tokio::test]
async fn scores_are_explained_kept_current_and_follow_merges_and_erasure() {
    let hub = TestHub::builder().demo().start().await;
    let mut c = ScoringServiceClient::new(hub.channel().await);
    // `n` days and a minute before now: whole days before the as-of time of the scores.
    let base = now() - 60;
    let day = |n: i64| base - n * DAY;
    // Ana: orders 100, 70 and 40 days ago (100.00, 10.00, 10.00), a failed payment 5 days ago,
    // a case open since 300 days ago. Bruno: a contact. Carla: orders 30 and 15 days ago.
    let ids = ingest(
        &hub,
        vec![
            record(
                "erp",
                "o-1",
                "E-ana",
                day(100),
                &["ana@shop.pt"],
                order(day(100), 10_000),
            ),
            record(
                "erp",
                "o-2",
                "E-ana",
                day(70),
                &["ana@shop.pt"],
                order(day(70), 10_00),
            ),
            record(
                "erp",
                "o-3",
                "E-ana",
                day(40),
                &["ana@shop.pt"],
                order(day(40), 10_00),
            ),
            record(
                "stripe",
                "p-1",
                "cus_ana",
                day(5),
                &["ana@shop.pt"],
                failed_payment(day(5)),
            ),
            record(
                "crm",
                "case-1",
                "ana",
                day(300),
                &["ana@shop.pt"],
                feeds::record::Body::SupportCase(feeds::SupportCase {
                    opened_at: ts(day(300)),
                    closed_at: None,
                    status: feeds::CaseStatus::Open as i32,
                    priority: feeds::CasePriority::High as i32,
                    category: "billing".into(),
                    channel: Channel::Phone as i32,
                }),
            ),
            record(
                "crm",
                "bruno",
                "bruno",
                day(50),
                &["bruno@shop.pt"],
                contact("Bruno"),
            ),
        ],
    )
    .await;
    // Carla comes later, so she is the younger customer (the survivor of a merge is the oldest).
    let carla_ids = ingest(
        &hub,
        vec![
            record(
                "erp",
                "o-4",
                "E-carla",
                day(30),
                &["carla@shop.pt"],
                order(day(30), 50_00),
            ),
            record(
                "erp",
                "o-5",
                "E-carla",
                day(15),
                &["carla@shop.pt"],
                order(day(15), 70_00),
            ),
        ],
    )
    .await;
    let (ana, bruno, carla) = (ids[0].clone(), ids[5].clone(), carla_ids[0].clone());
    assert_eq!(carla_ids[1], carla);
    assert!(ids[..5].iter().all(|id| *id == ana), "{ids:?}");
    create_survey(&mut c).await;
    answer_nps(&mut c, "r-ana", &ana, 3, day(10)).await;

    // Nothing is scored before the first full recompute, and the 360° view has no scores.
    let mut profiles = hub.profiles().await;
    let view360 = |id: &str| profile::GetCustomer360Request {
        customer_id: id.to_owned(),
        ..Default::default()
    };
    let before = profiles
        .get_customer360(view360(&ana))
        .await
        .expect("360")
        .into_inner();
    assert_eq!(before.scores, None);
    refused(
        c.get_customer_scores(pb::GetCustomerScoresRequest {
            customer_id: ana.clone(),
        })
        .await,
        Code::FailedPrecondition,
        "SCORES_NOT_COMPUTED",
    );

    let done = c
        .recompute_scores(pb::RecomputeScoresRequest { request_id: rid() })
        .await
        .expect("recomputed")
        .into_inner();
    assert_eq!(done.customers_scored, 3);
    assert_eq!(done.scores_deleted, 0);
    assert_eq!(done.models.len(), 1, "{done:?}");
    let eur_models = &done.models[0];
    assert_eq!(
        (
            eur_models.currency_code.as_str(),
            eur_models.customers,
            eur_models.repeat_customers
        ),
        ("EUR", 2, 2)
    );
    let fitted = eur_models.bg_nbd.is_some() && eur_models.gamma_gamma.is_some();
    assert_eq!(
        done.customers_with_clv,
        if fitted { 2 } else { 0 },
        "{done:?}"
    );
    assert!(fitted || !eur_models.notes.is_empty(), "{done:?}");

    // Ana, by hand: NPS 3 ten days ago → negative by the latest-NPS rule. Churn log-odds:
    // −2.0; 40 days since the last purchase against a usual 30: ln(40/30); 3 purchase days:
    // −0.25·ln 4; spend 20.00 in the last 90 days against 100.00 before: +0.8·0.8; negative
    // +1.0; 1 open case +0.5; 1 failed payment in 30 days +0.7.
    let a = scores(&mut c, &ana).await;
    assert_eq!(a.customer_id, ana);
    assert!(
        a.model_version
            .starts_with("scores-1; churn-logit-default-1; fit 1 EUR"),
        "{a:?}"
    );
    let category = a.category.as_ref().expect("category");
    assert_eq!(category.category, pb::CustomerCategory::Negative as i32);
    assert_eq!(category.rule, pb::CategoryRule::LatestNps as i32);
    assert_eq!(
        category.explanation,
        format!("detractor: NPS 3 on {}", day_text(day(10)))
    );
    assert_eq!(category.latest_nps.as_ref().map(|n| n.value), Some(3));
    assert_eq!(category.open_cases, 1);
    let churn = a.churn.as_ref().expect("churn");
    let logit = -2.0 + (40f64 / 30.0).ln() - 0.25 * 4f64.ln() + 0.64 + 1.0 + 0.5 + 0.7;
    let p = 1.0 / (1.0 + (-logit).exp());
    assert!((churn.probability - p).abs() < 1e-9, "{churn:?} vs {p}");
    assert_eq!(churn.band, pb::ChurnBand::High as i32);
    assert_eq!(churn.days_since_last_purchase, Some(40));
    assert_eq!(churn.usual_interval_days, Some(30.0));
    assert_eq!(
        reasons(&a),
        [
            format!("negative (detractor: NPS 3 on {})", day_text(day(10))),
            "1 failed payment in 30 days".to_owned(),
            "spend down 80 % in the last 90 days against the 90 days before".to_owned(),
        ]
    );
    let rfm = a.rfm.as_ref().expect("rfm");
    assert_eq!((rfm.recency_days, rfm.purchase_days), (40, 3));
    assert_eq!(a.clv.is_some(), fitted);
    let b = scores(&mut c, &bruno).await;
    let category = b.category.as_ref().expect("category");
    assert_eq!(category.rule, pb::CategoryRule::NoSignal as i32);
    assert!(b.clv.is_none() && b.rfm.is_none(), "no purchase: {b:?}");

    // The 360° view carries the same scores; SearchCustomers filters on them.
    let with_scores = profiles
        .get_customer360(view360(&ana))
        .await
        .expect("360")
        .into_inner();
    // (The background pass may have rescored Ana in between: compare what does not move.)
    let in_view = with_scores.scores.expect("scores in the 360° view");
    assert_eq!(
        (&in_view.customer_id, &in_view.category, &in_view.rfm),
        (&a.customer_id, &a.category, &a.rfm)
    );
    assert_eq!(
        in_view.churn.as_ref().map(|c| (c.band, reasons(&in_view))),
        a.churn.as_ref().map(|c| (c.band, reasons(&a)))
    );
    let search = |req: profile::SearchCustomersRequest| {
        let mut profiles = profiles.clone();
        async move {
            let found = profiles
                .search_customers(req)
                .await
                .expect("search")
                .into_inner();
            found
                .customers
                .into_iter()
                .map(|s| s.customer_id)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(
        search(profile::SearchCustomersRequest {
            churn_band: pb::ChurnBand::High as i32,
            ..Default::default()
        })
        .await,
        std::slice::from_ref(&ana)
    );
    assert_eq!(
        search(profile::SearchCustomersRequest {
            category: pb::CustomerCategory::Negative as i32,
            churn_band: pb::ChurnBand::High as i32,
            ..Default::default()
        })
        .await,
        std::slice::from_ref(&ana)
    );
    let bruno_category = category.category;
    assert_eq!(
        search(profile::SearchCustomersRequest {
            name_prefix: "bru".into(),
            category: bruno_category,
            ..Default::default()
        })
        .await,
        std::slice::from_ref(&bruno)
    );
    assert!(
        search(profile::SearchCustomersRequest {
            name_prefix: "bru".into(),
            category: pb::CustomerCategory::Negative as i32,
            ..Default::default()
        })
        .await
        .is_empty()
    );
    let status = profiles
        .search_customers(profile::SearchCustomersRequest {
            category: pb::CustomerCategory::Unknown as i32,
            churn_band: 99,
            ..Default::default()
        })
        .await
        .expect_err("refused");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(fields(&status), ["category", "churn_band"]);

    // Listings: Ana is the riskiest, the only high one, the only negative one; pages of one
    // neither repeat nor skip.
    let all = list(
        &mut c,
        pb::ListCustomersByScoreRequest {
            page_size: 1,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(all.len(), 3);
    assert_eq!(all[0], ana);
    for filter in [
        pb::ListCustomersByScoreRequest {
            churn_band: pb::ChurnBand::High as i32,
            ..Default::default()
        },
        pb::ListCustomersByScoreRequest {
            category: pb::CustomerCategory::Negative as i32,
            ..Default::default()
        },
    ] {
        assert_eq!(list(&mut c, filter).await, std::slice::from_ref(&ana));
    }

    // A second failed payment: the background recompute rescores Ana.
    ingest(
        &hub,
        vec![record(
            "stripe",
            "p-2",
            "cus_ana",
            day(2),
            &["ana@shop.pt"],
            failed_payment(day(2)),
        )],
    )
    .await;
    let a = eventually(&mut c, &ana, |s| {
        reasons(s).contains(&"2 failed payments in 30 days".to_owned())
    })
    .await;
    assert!(a.churn.as_ref().expect("churn").probability > p);

    // A promoter's answer: Carla becomes an advocate.
    answer_nps(&mut c, "r-carla", &carla, 10, day(1)).await;
    eventually(&mut c, &carla, |s| {
        s.category.as_ref().is_some_and(|c| {
            c.category == pb::CustomerCategory::Advocate as i32
                && c.rule == pb::CategoryRule::LatestNps as i32
        })
    })
    .await;

    // A record holding both Bruno's and Carla's e-mails merges them: either id answers the
    // survivor's scores, which come to hold Carla's purchases and her answer (the survivor is
    // the older customer, Bruno: merges move purchases, and scores read the answers given
    // under the ids merged in).
    ingest(
        &hub,
        vec![record(
            "shop",
            "s-1",
            "S1",
            day(1),
            &["bruno@shop.pt", "carla@shop.pt"],
            contact("Bruno"),
        )],
    )
    .await;
    // The merge is committed when the ingest answers: Carla's id answers at once.
    let survivor = scores(&mut c, &carla).await.customer_id;
    assert_eq!(survivor, bruno, "the older customer survives");
    let absorbed = carla.clone();
    let merged = eventually(&mut c, &survivor, |s| {
        s.rfm.as_ref().is_some_and(|r| r.purchase_days == 2)
            && s.category
                .as_ref()
                .is_some_and(|c| c.category == pb::CustomerCategory::Advocate as i32)
    })
    .await;
    assert_eq!(scores(&mut c, &absorbed).await, merged);
    let listed = list(&mut c, pb::ListCustomersByScoreRequest::default()).await;
    assert_eq!(listed.len(), 2);
    assert!(listed.contains(&survivor) && !listed.contains(&absorbed));

    // Erasure: Ana's scores are gone.
    Privacy::new(hub.channel().await)
        .erase_customer(profile::EraseCustomerRequest {
            request_id: rid(),
            customer_id: ana.clone(),
        })
        .await
        .expect("erased");
    refused(
        c.get_customer_scores(pb::GetCustomerScoresRequest {
            customer_id: ana.clone(),
        })
        .await,
        Code::NotFound,
        "CUSTOMER_NOT_FOUND",
    );
    assert_eq!(
        list(&mut c, pb::ListCustomersByScoreRequest::default()).await,
        std::slice::from_ref(&survivor)
    );

    // A second full recompute deletes the rows of the absorbed and the erased customer (if the
    // background recompute has not already) and scores the one left.
    let again = c
        .recompute_scores(pb::RecomputeScoresRequest { request_id: rid() })
        .await
        .expect("recomputed")
        .into_inner();
    assert_eq!(again.customers_scored, 1);
    assert!(again.models.iter().all(|m| m.version == 2), "{again:?}");
}

#[tokio::test]
async fn every_refusal_names_its_field_and_scopes_guard_the_recompute() {
    let hub = TestHub::builder()
        .token("dashboards:scores:read:read-secret")
        .token("surveys:scores:read+scores:write:write-secret")
        .token("ops:admin:admin-secret")
        .start()
        .await;
    let mut c = ScoringServiceClient::new(hub.channel().await);

    let bad_id = refused(
        c.get_customer_scores(with_token(
            pb::GetCustomerScoresRequest {
                customer_id: "not-an-id".into(),
            },
            "read-secret",
        ))
        .await,
        Code::InvalidArgument,
        "INVALID_FIELDS",
    );
    assert_eq!(fields(&bad_id), ["customer_id"]);
    refused(
        c.get_customer_scores(with_token(
            pb::GetCustomerScoresRequest {
                customer_id: "01900000-0000-7000-8000-000000000000".into(),
            },
            "read-secret",
        ))
        .await,
        Code::NotFound,
        "CUSTOMER_NOT_FOUND",
    );

    let bad_filter = refused(
        c.list_customers_by_score(with_token(
            pb::ListCustomersByScoreRequest {
                category: pb::CustomerCategory::Unknown as i32,
                churn_band: 99,
                rfm_segment: 99,
                min_clv: Some(common::Money {
                    amount_minor: -5,
                    currency_code: "EURO".into(),
                }),
                order: 9,
                page_size: -1,
                page_token: String::new(),
            },
            "read-secret",
        ))
        .await,
        Code::InvalidArgument,
        "INVALID_FIELDS",
    );
    let mut got = fields(&bad_filter);
    got.sort();
    assert_eq!(
        got,
        [
            "category",
            "churn_band",
            "min_clv.amount_minor",
            "min_clv.currency_code",
            "order",
            "page_size",
            "rfm_segment",
        ]
    );
    let bad_token = refused(
        c.list_customers_by_score(with_token(
            pb::ListCustomersByScoreRequest {
                page_token: "nope".into(),
                ..Default::default()
            },
            "read-secret",
        ))
        .await,
        Code::InvalidArgument,
        "INVALID_FIELDS",
    );
    assert_eq!(fields(&bad_token), ["page_token"]);

    // A token issued for one filter is refused with another.
    ingest_as(
        &hub,
        (0..3)
            .map(|i| {
                record(
                    "crm",
                    &format!("c-{i}"),
                    &format!("c-{i}"),
                    now() - DAY,
                    &[],
                    contact("Zoe"),
                )
            })
            .collect(),
        Some("admin-secret"),
    )
    .await;
    c.recompute_scores(with_token(
        pb::RecomputeScoresRequest { request_id: rid() },
        "admin-secret",
    ))
    .await
    .expect("the admin recomputes");
    let first = c
        .list_customers_by_score(with_token(
            pb::ListCustomersByScoreRequest {
                page_size: 1,
                ..Default::default()
            },
            "read-secret",
        ))
        .await
        .expect("page")
        .into_inner();
    assert!(!first.next_page_token.is_empty());
    let other = refused(
        c.list_customers_by_score(with_token(
            pb::ListCustomersByScoreRequest {
                page_size: 1,
                churn_band: pb::ChurnBand::Low as i32,
                page_token: first.next_page_token,
                ..Default::default()
            },
            "read-secret",
        ))
        .await,
        Code::InvalidArgument,
        "INVALID_FIELDS",
    );
    assert_eq!(fields(&other), ["page_token"]);

    let no_id = refused(
        c.recompute_scores(with_token(
            pb::RecomputeScoresRequest {
                request_id: String::new(),
            },
            "admin-secret",
        ))
        .await,
        Code::InvalidArgument,
        "INVALID_FIELDS",
    );
    assert_eq!(fields(&no_id), ["request_id"]);
    for token in ["read-secret", "write-secret"] {
        refused(
            c.recompute_scores(with_token(
                pb::RecomputeScoresRequest { request_id: rid() },
                token,
            ))
            .await,
            Code::PermissionDenied,
            "MISSING_SCOPE",
        );
    }
    refused(
        c.list_customers_by_score(pb::ListCustomersByScoreRequest::default())
            .await,
        Code::Unauthenticated,
        "MISSING_TOKEN",
    );
}

#[tokio::test]
async fn the_background_task_refits_and_rescores_everyone_periodically() {
    let hub = TestHub::builder()
        .demo()
        .score_full_recompute_every(Duration::from_secs(1))
        .start()
        .await;
    let mut c = ScoringServiceClient::new(hub.channel().await);
    let base = now() - 60;
    let day = |n: i64| base - n * DAY;
    let ids = ingest(
        &hub,
        vec![
            record("erp", "p-1", "E-dora", day(60), &[], order(day(60), 5_000)),
            record("erp", "p-2", "E-dora", day(30), &[], order(day(30), 7_000)),
            record("erp", "p-3", "E-eli", day(20), &[], order(day(20), 2_000)),
        ],
    )
    .await;
    let dora = ids[0].clone();
    let first = c
        .recompute_scores(pb::RecomputeScoresRequest { request_id: rid() })
        .await
        .expect("recomputed")
        .into_inner();
    assert!(first.models.iter().all(|m| m.version == 1), "{first:?}");
    // Nothing changes in the ledger; the task still refits (fit version 2, then more) and
    // rescores Dora within seconds, because the models are older than the interval.
    let later = eventually(&mut c, &dora, |s| {
        s.rfm.as_ref().is_some_and(|rfm| rfm.fit_version >= 2)
    })
    .await;
    assert!(later.churn.is_some(), "{later:?}");

    // With the periodic recompute off, the fit stays where RecomputeScores left it.
    let quiet = TestHub::builder()
        .demo()
        .score_full_recompute_every(Duration::ZERO)
        .start()
        .await;
    let mut q = ScoringServiceClient::new(quiet.channel().await);
    let ids = ingest(
        &quiet,
        vec![
            record("erp", "p-1", "E-dora", day(60), &[], order(day(60), 5_000)),
            record("erp", "p-2", "E-dora", day(30), &[], order(day(30), 7_000)),
        ],
    )
    .await;
    q.recompute_scores(pb::RecomputeScoresRequest { request_id: rid() })
        .await
        .expect("recomputed");
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let still = scores(&mut q, &ids[0]).await;
    assert_eq!(
        still.rfm.as_ref().map(|r| r.fit_version),
        Some(1),
        "{still:?}"
    );
}

#[tokio::test]
async fn a_comment_decides_the_category_when_no_recent_nps_or_csat_does() {
    let hub = TestHub::builder().demo().start().await;
    let mut c = ScoringServiceClient::new(hub.channel().await);
    let base = now() - 60;
    let day = |n: i64| base - n * DAY;
    let ids = ingest(
        &hub,
        vec![
            record("erp", "c-1", "E-gil", day(40), &[], order(day(40), 3_000)),
            record("erp", "c-2", "E-hana", day(40), &[], order(day(40), 3_000)),
        ],
    )
    .await;
    let (gil, hana) = (ids[0].clone(), ids[1].clone());
    c.create_survey(pb::CreateSurveyRequest {
        survey: Some(pb::Survey {
            key: "effort".into(),
            name: "How easy was it?".into(),
            questions: vec![pb::Question {
                key: "ease".into(),
                kind: pb::QuestionKind::Ces as i32,
                text: BTreeMap::from([
                    ("pt".to_owned(), "Foi fácil?".to_owned()),
                    ("de".to_owned(), "War es einfach?".to_owned()),
                ]),
                ..Default::default()
            }],
            allows_comment: true,
            languages: vec!["pt".into(), "de".into()],
            touchpoint_keys: vec![TELLER.into()],
            ..Default::default()
        }),
        request_id: rid(),
    })
    .await
    .expect("survey created");
    // CES does not decide a category; the comments do, each in its language.
    let response = |id: &str, customer: &str, comment: &str, language: &str| pb::ResponseInput {
        response_id: id.into(),
        customer_id: customer.into(),
        survey_key: "effort".into(),
        touchpoint_key: TELLER.into(),
        answers: vec![pb::Answer {
            question_key: "ease".into(),
            value: 4,
        }],
        comment: comment.into(),
        language: language.into(),
        answered_at: ts(day(3)),
        ..Default::default()
    };
    let results = c
        .submit_responses(pb::SubmitResponsesRequest {
            responses: vec![
                response(
                    "cm-1",
                    &gil,
                    "Não gostei nada, o atendimento foi péssimo.",
                    "pt",
                ),
                response(
                    "cm-2",
                    &hana,
                    "Sehr freundlich und schnell, wirklich toll!",
                    "de",
                ),
            ],
        })
        .await
        .expect("submitted")
        .into_inner()
        .results;
    assert!(
        results
            .iter()
            .all(|r| r.outcome == pb::ResponseOutcome::Created as i32),
        "{results:?}"
    );
    c.recompute_scores(pb::RecomputeScoresRequest { request_id: rid() })
        .await
        .expect("recomputed");
    let category = |s: &pb::CustomerScores| s.category.clone().expect("category");
    let g = category(&scores(&mut c, &gil).await);
    assert_eq!(
        (g.category, g.rule),
        (
            pb::CustomerCategory::Negative as i32,
            pb::CategoryRule::CommentSentiment as i32
        ),
        "{g:?}"
    );
    let comment = g.latest_comment.clone().expect("comment sentiment");
    assert!(comment.score < 0.0, "{comment:?}");
    assert_eq!(comment.label, pb::SentimentLabel::Negative as i32);
    assert!(g.explanation.contains("negative comment"), "{g:?}");
    let h = category(&scores(&mut c, &hana).await);
    assert_eq!(
        (h.category, h.rule),
        (
            pb::CustomerCategory::Advocate as i32,
            pb::CategoryRule::CommentSentiment as i32
        ),
        "{h:?}"
    );
}
