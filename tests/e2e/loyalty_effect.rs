//! `GetRuleEffectReport` end to end: a rule with a 50 % control group acted on 40 customers
//! 100 days ago; the treated customers kept buying and their NPS rose, the control group
//! mostly stopped buying; the report's groups, rates, means, differences and cost match the
//! seeded data exactly, and the intervals contain the effect the data was generated with.
//! Windows still open are left out, a currency filter narrows the revenue, and every
//! refusal names its field.

use chrono::{Duration, Utc};
use cxhub_domain::loyalty::repo::{GuardConfig, LoyaltyRepo};
use cxhub_domain::touchpoint::Key;
use cxhub_proto::common::v1 as common;
use cxhub_proto::feeds::v1 as feeds;
use cxhub_proto::loyalty::v1 as pb;
use cxhub_proto::loyalty::v1::loyalty_action_service_client::LoyaltyActionServiceClient;
use cxhub_proto::scoring::v1 as scoring;
use cxhub_testkit::{TestHub, with_token};
use prost_types::Timestamp;
use tonic::Code;
use tonic::transport::Channel;

use crate::{fields, refused, rid};

type Client = LoyaltyActionServiceClient<Channel>;

const CUSTOMERS: usize = 40;
const RULE: &str = "goodwill-effect";

fn ts(t: chrono::DateTime<Utc>) -> Option<Timestamp> {
    Some(Timestamp {
        seconds: t.timestamp(),
        nanos: 0,
    })
}

fn eur(minor: i64) -> Option<common::Money> {
    Some(common::Money {
        amount_minor: minor,
        currency_code: "EUR".into(),
    })
}

fn record(source_id: &str, record_id: String, body: feeds::record::Body) -> feeds::Record {
    feeds::Record {
        source: "crm".into(),
        record_id,
        updated_at: Some(Timestamp {
            seconds: 1_700_000_000,
            nanos: 0,
        }),
        customer: Some(common::SourceCustomer {
            source_customer_id: source_id.to_owned(),
            emails: Vec::new(),
            phones: Vec::new(),
        }),
        body: Some(body),
    }
}

fn order(at: chrono::DateTime<Utc>, minor: i64) -> feeds::record::Body {
    feeds::record::Body::Order(feeds::Order {
        ordered_at: ts(at),
        lines: vec![feeds::OrderLine {
            sku: "SKU-1".into(),
            quantity: 1,
            unit_price: eur(minor),
        }],
        channel: cxhub_proto::touchpoint::v1::Channel::Web as i32,
        store_id: String::new(),
        status: feeds::OrderStatus::Placed as i32,
    })
}

async fn ingest(hub: &TestHub, records: Vec<feeds::Record>) -> Vec<String> {
    let results = hub
        .feeds()
        .await
        .ingest_records(feeds::IngestRecordsRequest { records })
        .await
        .expect("ingested")
        .into_inner()
        .results;
    for r in &results {
        assert!(!r.customer_id.is_empty(), "{r:?}");
    }
    results.into_iter().map(|r| r.customer_id).collect()
}

/// Submits NPS answers `(customer, answered at, value)` to the demo teller survey.
async fn answers(hub: &TestHub, answers: Vec<(String, chrono::DateTime<Utc>, i32)>) {
    let mut s = scoring::scoring_service_client::ScoringServiceClient::new(hub.channel().await);
    s.create_survey(scoring::CreateSurveyRequest {
        survey: Some(scoring::Survey {
            key: "branch.after-teller".into(),
            name: "After the teller".into(),
            questions: vec![scoring::Question {
                key: "recommend".into(),
                kind: scoring::QuestionKind::Nps as i32,
                text: std::collections::BTreeMap::from([(
                    "en".to_owned(),
                    "Recommend us?".to_owned(),
                )]),
                ..Default::default()
            }],
            languages: vec!["en".into()],
            touchpoint_keys: vec!["branch.teller".into()],
            ..Default::default()
        }),
        request_id: "create-teller-survey".into(),
    })
    .await
    .expect("survey");
    let responses = answers
        .into_iter()
        .enumerate()
        .map(|(i, (customer, at, value))| scoring::ResponseInput {
            response_id: format!("r-{i}"),
            customer_id: customer,
            survey_key: "branch.after-teller".into(),
            touchpoint_key: "branch.teller".into(),
            answers: vec![scoring::Answer {
                question_key: "recommend".into(),
                value,
            }],
            answered_at: ts(at),
            ..Default::default()
        })
        .collect();
    let results = s
        .submit_responses(scoring::SubmitResponsesRequest { responses })
        .await
        .expect("submitted")
        .into_inner()
        .results;
    for r in &results {
        assert_eq!(r.outcome, scoring::ResponseOutcome::Created as i32, "{r:?}");
    }
}

fn goodwill_rule() -> pb::Rule {
    pb::Rule {
        id: RULE.into(),
        name: "Goodwill credit".into(),
        trigger: pb::RuleTrigger::DailySweep as i32,
        condition: "!has(nps.latest)".into(),
        action: Some(pb::ActionTemplate {
            kind: pb::ActionKind::GoodwillCredit as i32,
            channel: pb::ContactChannel::Email as i32,
            value: eur(10_00),
            due_in: Some(prost_types::Duration {
                seconds: 72 * 3600,
                nanos: 0,
            }),
            assignee_team: "care".into(),
            reason_template: "Goodwill ({rule}): {explanation}".into(),
            ..Default::default()
        }),
        limits: Some(pb::RuleLimits {
            max_actions_per_run: 0,
            max_actions_per_day: 0,
        }),
        holdout: Some(pb::Holdout {
            control_share: 0.5,
            seed: 7,
        }),
        enabled: true,
        ..Default::default()
    }
}

async fn move_to(c: &mut Client, id: &str, states: &[pb::ActionState]) {
    for to in states {
        c.transition_action(pb::TransitionActionRequest {
            request_id: rid(),
            action_id: id.to_owned(),
            to_state: *to as i32,
            etag: String::new(),
        })
        .await
        .expect("moved");
    }
}

fn request(window_days: i64) -> pb::GetRuleEffectReportRequest {
    pb::GetRuleEffectReportRequest {
        rule_id: RULE.into(),
        window: Some(prost_types::Duration {
            seconds: window_days * 86_400,
            nanos: 0,
        }),
        ..Default::default()
    }
}

async fn report(
    c: &mut Client,
    req: pb::GetRuleEffectReportRequest,
) -> Result<pb::GetRuleEffectReportResponse, tonic::Status> {
    c.get_rule_effect_report(req).await.map(|r| r.into_inner())
}

#[track_caller]
fn contains(d: &Option<pb::EffectDifference>, truth: f64) -> pb::EffectDifference {
    let d = d.clone().expect("difference");
    assert!(
        d.ci_low <= truth && truth <= d.ci_high,
        "{truth} not in {d:?}"
    );
    d
}

#[tokio::test]
async fn the_effect_report_measures_treated_against_control_with_intervals_and_cost() {
    let hub = TestHub::builder()
        .demo()
        .loyalty_rule_tasks(false)
        .start()
        .await;
    let mut c = LoyaltyActionServiceClient::new(hub.channel().await);
    let contacts = (0..CUSTOMERS)
        .map(|i| {
            record(
                &format!("e{i}"),
                format!("contact-e{i}"),
                feeds::record::Body::Contact(feeds::Contact {
                    given_name: format!("Customer {i}"),
                    ..Default::default()
                }),
            )
        })
        .collect();
    let ids = ingest(&hub, contacts).await;
    c.create_rule(pb::CreateRuleRequest {
        request_id: rid(),
        rule: Some(goodwill_rule()),
    })
    .await
    .expect("rule");

    // The sweep ran 100 days ago (the store takes the time; the API sweeps now).
    let now = Utc::now();
    let t0 = now - Duration::days(100);
    let rule = hub
        .store
        .get_rule(&Key::parse(RULE).expect("key"), None)
        .await
        .expect("rule");
    let swept = hub
        .store
        .run_sweep(&rule, &GuardConfig::default(), t0, 500)
        .await
        .expect("swept");
    assert_eq!(
        swept.proposed + swept.held_out,
        CUSTOMERS as u64,
        "{swept:?}"
    );
    let actions = c
        .list_actions(pb::ListActionsRequest {
            page_size: 1000,
            ..Default::default()
        })
        .await
        .expect("actions")
        .into_inner()
        .actions;
    let treated_of = |id: &str| {
        actions
            .iter()
            .find(|a| a.action.as_ref().is_some_and(|i| i.customer_id == id))
    };
    let (treated, control): (Vec<&String>, Vec<&String>) =
        ids.iter().partition(|id| treated_of(id).is_some());
    let (nt, nc) = (treated.len(), control.len());
    assert!(
        nt >= 10 && nc >= 10,
        "a 50 % draw: {nt} treated, {nc} control"
    );

    // The actions' fates: two redeemed, one sent, one cancelled, the others left proposed.
    use pb::ActionState as S;
    let action = |i: usize| treated_of(treated[i]).expect("action").id.clone();
    let redeemed = [S::Approved, S::Sent, S::Accepted, S::Redeemed];
    move_to(&mut c, &action(0), &redeemed).await;
    move_to(&mut c, &action(1), &redeemed).await;
    move_to(&mut c, &action(2), &[S::Approved, S::Sent]).await;
    move_to(&mut c, &action(3), &[S::Cancelled]).await;

    // Treated customers buy 50.00 at day 10, every other one 30.00 more at day 20; one control
    // customer in four buys 20.00 at day 30. Everyone bought 99.00 before the rule, and the
    // control customers buy 77.00 at day 95, outside the 90-day window.
    let at = |days: i64| t0 + Duration::days(days);
    let mut orders = Vec::new();
    let mut nps = Vec::new();
    let source_of = |id: &String| {
        format!(
            "e{}",
            ids.iter().position(|x| x == id).expect("known customer")
        )
    };
    for (i, id) in treated.iter().enumerate() {
        let s = source_of(id);
        orders.push(record(&s, format!("o-{s}-before"), order(at(-5), 99_00)));
        orders.push(record(&s, format!("o-{s}-1"), order(at(10), 50_00)));
        if i % 2 == 0 {
            orders.push(record(&s, format!("o-{s}-2"), order(at(20), 30_00)));
        }
        // Detractor (4) before, passive (8) or promoter (9) after: +4 or +5.
        nps.push(((*id).clone(), at(-10), 4));
        nps.push(((*id).clone(), at(30), if i % 2 == 0 { 8 } else { 9 }));
    }
    for (i, id) in control.iter().enumerate() {
        let s = source_of(id);
        orders.push(record(&s, format!("o-{s}-before"), order(at(-5), 99_00)));
        orders.push(record(&s, format!("o-{s}-late"), order(at(95), 77_00)));
        if i % 4 == 0 {
            orders.push(record(&s, format!("o-{s}-1"), order(at(30), 20_00)));
        }
        // Detractor before and after: +0 or +2.
        nps.push(((*id).clone(), at(-10), 4));
        nps.push(((*id).clone(), at(30), if i % 2 == 0 { 4 } else { 6 }));
    }
    ingest(&hub, orders).await;
    answers(&hub, nps).await;

    let r = report(&mut c, request(90)).await.expect("report");
    assert_eq!((r.rule_id.as_str(), r.rule_version), (RULE, 0));
    assert_eq!(r.window.as_ref().map(|w| w.seconds), Some(90 * 86_400));
    let population = r.population.expect("population");
    assert_eq!(population.target_records, CUSTOMERS as u64);
    assert_eq!(population.counted, CUSTOMERS as u64);
    assert_eq!(
        (
            population.still_observing,
            population.erased,
            population.crossed_over
        ),
        (0, 0, 0)
    );
    let itt = r.intent_to_treat.clone().expect("itt");
    let per_protocol = r.treated.clone().expect("treated");
    let ctl = r.control.clone().expect("control");
    assert_eq!(itt.customers, nt as u64);
    assert_eq!(per_protocol.customers, nt as u64 - 1, "the cancelled one");
    assert_eq!(ctl.customers, nc as u64);
    assert_eq!(ctl.small_sample, nc < 30);

    // Retention: every treated customer bought in the window, one control customer in four.
    let control_buyers = nc.div_ceil(4);
    let itt_retention = itt.retention.expect("retention");
    assert_eq!(
        (itt_retention.successes, itt_retention.customers),
        (nt as u64, nt as u64)
    );
    assert_eq!(itt_retention.ci_high, 1.0);
    assert!(itt_retention.ci_low > 0.7 && itt_retention.ci_low < 1.0);
    let ctl_retention = ctl.retention.expect("retention");
    assert_eq!(ctl_retention.successes, control_buyers as u64);
    let expected = control_buyers as f64 / nc as f64;
    assert!((ctl_retention.rate - expected).abs() < 1e-12);
    assert!(ctl_retention.ci_low < expected && expected < ctl_retention.ci_high);
    // The data was generated with an effect of 1 − 1/4 = 0.75.
    let cmp = r.intent_to_treat_vs_control.clone().expect("comparison");
    let d = contains(&cmp.retention, 0.75);
    assert!(d.significant && d.ci_low > 0.0, "{d:?}");
    assert_eq!(d.method, "newcombe-wilson");
    assert!((d.estimate - (1.0 - expected)).abs() < 1e-12);

    // NPS: +4/+5 against +0/+2; categories all improved against none.
    let change = itt.nps_change.expect("nps change");
    assert_eq!(change.customers, nt as u64);
    let mean =
        |n: usize, a: f64, b: f64| (n.div_ceil(2) as f64 * a + (n / 2) as f64 * b) / n as f64;
    assert!((change.mean - mean(nt, 4.0, 5.0)).abs() < 1e-9);
    assert!(change.has_interval && change.ci_low < change.mean && change.mean < change.ci_high);
    let ctl_change = ctl.nps_change.expect("nps change");
    assert!((ctl_change.mean - mean(nc, 0.0, 2.0)).abs() < 1e-9);
    let d = contains(&cmp.nps_change, 3.5);
    assert!(d.significant);
    assert_eq!(d.method, "welch-t");
    let moves = itt.category_moves.expect("moves");
    assert_eq!((moves.customers, moves.improved), (nt as u64, nt as u64));
    let recovered = moves.detractors_recovered.expect("recovered");
    assert_eq!(recovered.successes, nt as u64);
    let ctl_moves = ctl.category_moves.expect("moves");
    assert_eq!((ctl_moves.improved, ctl_moves.unchanged), (0, nc as u64));
    contains(&cmp.category_improved, 1.0);

    // Revenue in the window only: 50.00 (+30.00 every other) against 20.00 one in four.
    assert_eq!(itt.revenue.len(), 1);
    let rev = &itt.revenue[0];
    assert_eq!(rev.currency_code, "EUR");
    assert_eq!(
        rev.total_minor,
        nt as i64 * 50_00 + nt.div_ceil(2) as i64 * 30_00
    );
    let ctl_rev = &ctl.revenue[0];
    assert_eq!(ctl_rev.total_minor, control_buyers as i64 * 20_00);
    let per = ctl_rev.per_customer_minor.expect("per customer");
    assert!((per.mean - ctl_rev.total_minor as f64 / nc as f64).abs() < 1e-9);
    // Generated with 65.00 − 5.00 per customer.
    assert_eq!(cmp.revenue_per_customer.len(), 1);
    let d = contains(&cmp.revenue_per_customer[0].difference, 60_00.0);
    assert!(d.significant);

    // Cost: the actions of the customers counted; 10.00 each.
    let cost = r.cost.clone().expect("cost");
    assert_eq!(
        (cost.actions, cost.cancelled, cost.redeemed),
        (nt as u64, 1, 2)
    );
    assert_eq!(cost.committed, vec![eur(30_00).expect("money")]);
    assert_eq!(cost.spent, vec![eur(20_00).expect("money")]);
    let extra = (1.0 - expected) * nt as f64;
    assert_eq!(
        cost.spent_per_extra_retained,
        vec![eur((2000.0 / extra).round() as i64).expect("money")]
    );

    // The version asked for gives the same (one version); a currency nobody ordered in gives
    // zeros; an as_of or a window that leaves the windows open counts nobody.
    let v1 = report(
        &mut c,
        pb::GetRuleEffectReportRequest {
            rule_version: 1,
            ..request(90)
        },
    )
    .await
    .expect("v1");
    assert_eq!(v1.population, r.population);
    assert_eq!(v1.rule_version, 1);
    let usd = report(
        &mut c,
        pb::GetRuleEffectReportRequest {
            currency_code: "USD".into(),
            ..request(90)
        },
    )
    .await
    .expect("usd");
    let usd_rev = &usd.intent_to_treat.expect("itt").revenue;
    assert_eq!(
        (
            usd_rev.len(),
            usd_rev[0].currency_code.as_str(),
            usd_rev[0].total_minor
        ),
        (1, "USD", 0)
    );
    let open = report(&mut c, request(120)).await.expect("open windows");
    let p = open.population.expect("population");
    assert_eq!((p.counted, p.still_observing), (0, CUSTOMERS as u64));
    assert_eq!(open.control.and_then(|g| g.retention), None);
    let earlier = report(
        &mut c,
        pb::GetRuleEffectReportRequest {
            as_of: ts(now - Duration::days(50)),
            ..request(90)
        },
    )
    .await
    .expect("earlier");
    assert_eq!(
        earlier.population.map(|p| p.still_observing),
        Some(CUSTOMERS as u64)
    );
    // A shorter window: the day-30 control purchases fall out; treated ones stay.
    let short = report(&mut c, request(25)).await.expect("short");
    let short_ctl = short.control.and_then(|g| g.retention).expect("retention");
    assert_eq!(short_ctl.successes, 0);
    // Before the sweep nothing was recorded.
    let before = report(
        &mut c,
        pb::GetRuleEffectReportRequest {
            as_of: ts(t0 - Duration::days(1)),
            ..request(90)
        },
    )
    .await
    .expect("before");
    assert_eq!(before.population.map(|p| p.target_records), Some(0));
}

#[tokio::test]
async fn bad_effect_requests_are_refused_with_their_fields() {
    let hub = TestHub::builder()
        .loyalty_rule_tasks(false)
        .token("dash:loyalty:read:read-secret")
        .token("exec:loyalty:read+loyalty:write:write-secret")
        .token("ops:profile:read:other-secret")
        .start()
        .await;
    let mut c = LoyaltyActionServiceClient::new(hub.channel().await);
    c.create_rule(with_token(
        pb::CreateRuleRequest {
            request_id: rid(),
            rule: Some(goodwill_rule()),
        },
        "write-secret",
    ))
    .await
    .expect("rule");

    let status = refused(
        c.get_rule_effect_report(with_token(
            pb::GetRuleEffectReportRequest {
                rule_id: "Not A Key".into(),
                rule_version: -1,
                window: Some(prost_types::Duration {
                    seconds: 731 * 86_400,
                    nanos: 0,
                }),
                as_of: ts(Utc::now() + Duration::days(2)),
                currency_code: "EURO".into(),
                small_sample_below: 0,
            },
            "read-secret",
        ))
        .await,
        Code::InvalidArgument,
        "INVALID_FIELDS",
    );
    assert_eq!(
        fields(&status),
        [
            "rule_id",
            "rule_version",
            "window",
            "as_of",
            "currency_code"
        ]
    );
    for window in [
        prost_types::Duration {
            seconds: 3600,
            nanos: 0,
        },
        prost_types::Duration {
            seconds: 86_400,
            nanos: 5,
        },
        prost_types::Duration {
            seconds: i64::MAX,
            nanos: 0,
        },
    ] {
        let status = refused(
            c.get_rule_effect_report(with_token(
                pb::GetRuleEffectReportRequest {
                    window: Some(window),
                    ..request(90)
                },
                "read-secret",
            ))
            .await,
            Code::InvalidArgument,
            "INVALID_FIELDS",
        );
        assert_eq!(fields(&status), ["window"]);
    }
    let status = refused(
        c.get_rule_effect_report(with_token(
            pb::GetRuleEffectReportRequest::default(),
            "read-secret",
        ))
        .await,
        Code::InvalidArgument,
        "INVALID_FIELDS",
    );
    assert_eq!(fields(&status), ["rule_id"]);

    // Unknown rule, unknown version.
    refused(
        c.get_rule_effect_report(with_token(
            pb::GetRuleEffectReportRequest {
                rule_id: "nope".into(),
                ..request(90)
            },
            "read-secret",
        ))
        .await,
        Code::NotFound,
        "RULE_NOT_FOUND",
    );
    refused(
        c.get_rule_effect_report(with_token(
            pb::GetRuleEffectReportRequest {
                rule_version: 2,
                ..request(90)
            },
            "read-secret",
        ))
        .await,
        Code::NotFound,
        "RULE_NOT_FOUND",
    );

    // The read scope suffices; another scope does not; no token is unauthenticated.
    let empty = c
        .get_rule_effect_report(with_token(request(90), "read-secret"))
        .await
        .expect("read scope")
        .into_inner();
    assert_eq!(empty.population.map(|p| p.target_records), Some(0));
    let denied = c
        .get_rule_effect_report(with_token(request(90), "other-secret"))
        .await;
    assert_eq!(
        denied.expect_err("profile scope").code(),
        Code::PermissionDenied
    );
    let anonymous = c.get_rule_effect_report(request(90)).await;
    assert_eq!(
        anonymous.expect_err("no token").code(),
        Code::Unauthenticated
    );
}
