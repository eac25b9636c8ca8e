//! Loyalty rules end to end: versions (create, update with a mask and an expected version,
//! old versions kept), the refusals (bad condition with its position, unknown fact, bad
//! control share, unknown rule, stale version), the shipped default rules, and dry runs that
//! show targets, holdouts and guard rails while writing nothing.

use std::collections::BTreeSet;

use cxhub_proto::feeds::v1 as feeds;
use cxhub_proto::loyalty::v1 as pb;
use cxhub_proto::loyalty::v1::loyalty_action_service_client::LoyaltyActionServiceClient;
use cxhub_testkit::{TestHub, with_token};
use prost_types::{FieldMask, Timestamp};
use tonic::Code;
use tonic::transport::Channel;
use tonic_types::StatusExt;

use crate::{fields, refused, rid};

type Client = LoyaltyActionServiceClient<Channel>;

/// The ids of the rules the migration ships.
const DEFAULT_RULES: [&str; 7] = [
    "advocate-referral",
    "detractor-follow-up",
    "failed-payment-apology",
    "late-delivery-apology",
    "post-delivery-survey",
    "retention-offer",
    "retention-offer-high-clv",
];

/// Ingests a CRM contact, with marketing consent on e-mail when `marketing`; answers the hub
/// customer id.
async fn customer(hub: &TestHub, id: &str, marketing: bool) -> String {
    let consents = if marketing {
        vec![feeds::Consent {
            purpose: feeds::ConsentPurpose::Marketing as i32,
            channel: feeds::ConsentChannel::Email as i32,
            status: feeds::ConsentStatus::Granted as i32,
            given_at: Some(Timestamp {
                seconds: 1_700_000_000,
                nanos: 0,
            }),
        }]
    } else {
        Vec::new()
    };
    let record = feeds::Record {
        source: "crm".into(),
        record_id: format!("contact-{id}"),
        updated_at: Some(Timestamp {
            seconds: 1_700_000_001,
            nanos: 0,
        }),
        customer: Some(cxhub_proto::common::v1::SourceCustomer {
            source_customer_id: id.to_owned(),
            emails: Vec::new(),
            phones: Vec::new(),
        }),
        body: Some(feeds::record::Body::Contact(feeds::Contact {
            given_name: "Ana".into(),
            family_name: "Silva".into(),
            consents,
            lifecycle_stage: feeds::LifecycleStage::Customer as i32,
            ..Default::default()
        })),
    };
    let results = hub
        .feeds()
        .await
        .ingest_records(feeds::IngestRecordsRequest {
            records: vec![record],
        })
        .await
        .expect("ingest")
        .into_inner()
        .results;
    assert!(!results[0].customer_id.is_empty(), "{results:?}");
    results[0].customer_id.clone()
}

/// A valid rule: a retention offer by e-mail to customers without an NPS answer.
fn rule(id: &str) -> pb::Rule {
    pb::Rule {
        id: id.to_owned(),
        name: format!("Rule {id}"),
        trigger: pb::RuleTrigger::DailySweep as i32,
        condition: "!has(nps.latest)".into(),
        action: Some(pb::ActionTemplate {
            kind: pb::ActionKind::RetentionOffer as i32,
            channel: pb::ContactChannel::Email as i32,
            due_in: Some(prost_types::Duration {
                seconds: 72 * 3600,
                nanos: 0,
            }),
            assignee_team: "retention".into(),
            reason_template: "Win back ({rule}): {explanation}".into(),
            ..Default::default()
        }),
        limits: Some(pb::RuleLimits {
            max_actions_per_run: 100,
            max_actions_per_day: 0,
        }),
        holdout: Some(pb::Holdout {
            control_share: 0.0,
            seed: 1,
        }),
        enabled: true,
        ..Default::default()
    }
}

async fn create(c: &mut Client, rule: pb::Rule) -> Result<pb::Rule, tonic::Status> {
    c.create_rule(pb::CreateRuleRequest {
        request_id: rid(),
        rule: Some(rule),
    })
    .await
    .map(|r| r.into_inner().rule.expect("rule"))
}

async fn get(c: &mut Client, id: &str, version: i64) -> Result<pb::Rule, tonic::Status> {
    c.get_rule(pb::GetRuleRequest {
        id: id.to_owned(),
        version,
    })
    .await
    .map(|r| r.into_inner().rule.expect("rule"))
}

/// Enables the shipped rule `id` (version 1) without a control group: every eligible customer
/// is treated.
pub(crate) async fn enable(c: &mut Client, id: &str) {
    c.update_rule(pb::UpdateRuleRequest {
        request_id: rid(),
        rule: Some(pb::Rule {
            id: id.into(),
            enabled: true,
            holdout: Some(pb::Holdout {
                control_share: 0.0,
                seed: 1,
            }),
            ..Default::default()
        }),
        update_mask: mask(&["enabled", "holdout"]),
        etag: String::new(),
        expected_version: 1,
    })
    .await
    .expect("enabled");
}

fn mask(paths: &[&str]) -> Option<FieldMask> {
    Some(FieldMask {
        paths: paths.iter().map(|p| (*p).to_owned()).collect(),
    })
}

async fn list_all(c: &mut Client, page_size: i32) -> Vec<pb::Rule> {
    let mut all = Vec::new();
    let mut token = String::new();
    loop {
        let page = c
            .list_rules(pb::ListRulesRequest {
                page_size,
                page_token: token,
            })
            .await
            .expect("list")
            .into_inner();
        all.extend(page.rules);
        if page.next_page_token.is_empty() {
            return all;
        }
        token = page.next_page_token;
    }
}

async fn dry_run(c: &mut Client, request: pb::DryRunRuleRequest) -> pb::DryRunRuleResponse {
    c.dry_run_rule(request).await.expect("dry run").into_inner()
}

fn inline(rule: pb::Rule, max_customers: i32) -> pb::DryRunRuleRequest {
    pb::DryRunRuleRequest {
        rule_source: Some(pb::dry_run_rule_request::RuleSource::Rule(rule)),
        max_customers,
        page_token: String::new(),
    }
}

#[tokio::test]
async fn rules_are_versioned_and_old_versions_are_kept() {
    let hub = TestHub::start().await;
    let mut c = LoyaltyActionServiceClient::new(hub.channel().await);

    let request = pb::CreateRuleRequest {
        request_id: rid(),
        rule: Some(pb::Rule {
            condition: "churn.band == 'high'".replace('\'', "\"") + " and clv.value >= 200",
            ..rule("winback")
        }),
    };
    let v1 = c
        .create_rule(request.clone())
        .await
        .expect("created")
        .into_inner()
        .rule
        .expect("rule");
    assert_eq!(v1.version, 1);
    assert_eq!(v1.id, "winback");
    // Kept in canonical form.
    assert_eq!(v1.condition, "churn.band == \"high\" && clv.value >= 200");
    assert!(!v1.etag.is_empty());
    // A retry answers the first result; the same id with another payload is refused.
    let again = c.create_rule(request.clone()).await.expect("retry");
    assert_eq!(again.into_inner().rule, Some(v1.clone()));
    let mut reused = request.clone();
    if let Some(r) = reused.rule.as_mut() {
        r.name = "Other".into();
    }
    refused(
        c.create_rule(reused).await,
        Code::InvalidArgument,
        "REQUEST_ID_REUSED",
    );
    // The id is taken.
    refused(
        create(&mut c, rule("winback")).await,
        Code::AlreadyExists,
        "RULE_ID_TAKEN",
    );

    // An update of the condition only, expecting version 1.
    let update = pb::UpdateRuleRequest {
        request_id: rid(),
        rule: Some(pb::Rule {
            id: "winback".into(),
            condition: "churn.band == \"high\"".into(),
            ..Default::default()
        }),
        update_mask: mask(&["condition"]),
        etag: String::new(),
        expected_version: 1,
    };
    let v2 = c
        .update_rule(update.clone())
        .await
        .expect("updated")
        .into_inner()
        .rule
        .expect("rule");
    assert_eq!(v2.version, 2);
    assert_eq!(v2.condition, "churn.band == \"high\"");
    assert_eq!(v2.name, v1.name, "fields outside the mask are kept");
    assert_eq!(v2.action, v1.action);
    assert_ne!(v2.etag, v1.etag);
    // A retry of the update answers the same version, not a stale-version refusal.
    let retried = c.update_rule(update).await.expect("retry").into_inner();
    assert_eq!(retried.rule.map(|r| r.version), Some(2));

    // Old versions are kept; 0 reads the current one.
    assert_eq!(get(&mut c, "winback", 1).await.expect("v1"), v1);
    assert_eq!(get(&mut c, "winback", 0).await.expect("current"), v2);

    // Stale version or etag.
    let stale = |expected_version: i64, etag: &str| pb::UpdateRuleRequest {
        request_id: rid(),
        rule: Some(pb::Rule {
            id: "winback".into(),
            enabled: false,
            ..Default::default()
        }),
        update_mask: mask(&["enabled"]),
        etag: etag.to_owned(),
        expected_version,
    };
    refused(
        c.update_rule(stale(1, "")).await,
        Code::Aborted,
        "ETAG_MISMATCH",
    );
    refused(
        c.update_rule(stale(0, &v1.etag)).await,
        Code::Aborted,
        "ETAG_MISMATCH",
    );
    let v3 = c
        .update_rule(stale(2, &v2.etag))
        .await
        .expect("current etag")
        .into_inner()
        .rule
        .expect("rule");
    assert_eq!(v3.version, 3);
    assert!(!v3.enabled);
    assert_eq!(v3.condition, v2.condition);

    // Unknown rule, unknown version.
    refused(
        get(&mut c, "nope", 0).await,
        Code::NotFound,
        "RULE_NOT_FOUND",
    );
    refused(
        get(&mut c, "winback", 9).await,
        Code::NotFound,
        "RULE_NOT_FOUND",
    );
    refused(
        c.update_rule(pb::UpdateRuleRequest {
            rule: Some(pb::Rule {
                id: "nope".into(),
                ..Default::default()
            }),
            ..stale(0, "")
        })
        .await,
        Code::NotFound,
        "RULE_NOT_FOUND",
    );

    // Lists show current versions, in id order, across pages.
    create(&mut c, rule("another")).await.expect("created");
    let listed = list_all(&mut c, 2).await;
    let ids: Vec<&str> = listed.iter().map(|r| r.id.as_str()).collect();
    let mut sorted = ids.clone();
    sorted.sort_unstable();
    assert_eq!(ids, sorted);
    assert_eq!(ids.len(), DEFAULT_RULES.len() + 2, "{ids:?}");
    let winback = listed.iter().find(|r| r.id == "winback").expect("listed");
    assert_eq!(winback.version, 3);
}

#[tokio::test]
async fn bad_rules_are_refused_with_every_field() {
    let hub = TestHub::start().await;
    let mut c = LoyaltyActionServiceClient::new(hub.channel().await);

    // A syntax error names its position.
    let status = refused(
        create(
            &mut c,
            pb::Rule {
                condition: "nps.latest <= 6 &&\n  (category == \"negative\"".into(),
                ..rule("bad")
            },
        )
        .await,
        Code::InvalidArgument,
        "INVALID_FIELDS",
    );
    let violations = status
        .get_details_bad_request()
        .expect("bad request")
        .field_violations;
    assert_eq!(violations.len(), 1, "{violations:?}");
    assert_eq!(violations[0].field, "rule.condition");
    assert!(
        violations[0].description.starts_with("2:"),
        "{violations:?}"
    );

    // An unknown fact, with a suggestion; a bad share; and every other bad field at once.
    let status = refused(
        create(
            &mut c,
            pb::Rule {
                id: "Not A Key".into(),
                name: String::new(),
                trigger: 0,
                condition: "nps.lates <= 6".into(),
                action: Some(pb::ActionTemplate {
                    kind: 0,
                    channel: 0,
                    due_in: Some(prost_types::Duration {
                        seconds: 5,
                        nanos: 0,
                    }),
                    assignee_team: String::new(),
                    reason_template: "hello {name}".into(),
                    ..Default::default()
                }),
                limits: Some(pb::RuleLimits {
                    max_actions_per_run: -1,
                    max_actions_per_day: 0,
                }),
                holdout: Some(pb::Holdout {
                    control_share: 0.7,
                    seed: 0,
                }),
                ..Default::default()
            },
        )
        .await,
        Code::InvalidArgument,
        "INVALID_FIELDS",
    );
    assert_eq!(
        fields(&status),
        [
            "rule.id",
            "rule.name",
            "rule.trigger",
            "rule.condition",
            "rule.action.kind",
            "rule.action.channel",
            "rule.action.due_in",
            "rule.action.assignee_team",
            "rule.action.reason_template",
            "rule.limits.max_actions_per_run",
            "rule.holdout.control_share",
        ]
    );
    let unknown_fact = status
        .get_details_bad_request()
        .expect("bad request")
        .field_violations
        .into_iter()
        .find(|v| v.field == "rule.condition")
        .expect("condition");
    assert!(
        unknown_fact.description.starts_with("1:1:")
            && unknown_fact.description.contains("nps.latest"),
        "{unknown_fact:?}"
    );

    // Updates: an unknown mask path, a bad share in the mask, a bad expected version.
    let status = refused(
        c.update_rule(pb::UpdateRuleRequest {
            request_id: rid(),
            rule: Some(pb::Rule {
                id: "detractor-follow-up".into(),
                holdout: Some(pb::Holdout {
                    control_share: -0.1,
                    seed: 0,
                }),
                ..Default::default()
            }),
            update_mask: mask(&["holdout", "colour"]),
            etag: String::new(),
            expected_version: -1,
        })
        .await,
        Code::InvalidArgument,
        "INVALID_FIELDS",
    );
    assert_eq!(
        fields(&status),
        [
            "rule.holdout.control_share",
            "update_mask",
            "expected_version"
        ]
    );

    // Reads and dry runs validate too.
    let status = refused(
        get(&mut c, "", -2).await,
        Code::InvalidArgument,
        "INVALID_FIELDS",
    );
    assert_eq!(fields(&status), ["id", "version"]);
    let status = refused(
        c.dry_run_rule(pb::DryRunRuleRequest {
            rule_source: None,
            max_customers: 10_001,
            page_token: String::new(),
        })
        .await,
        Code::InvalidArgument,
        "INVALID_FIELDS",
    );
    assert_eq!(fields(&status), ["max_customers", "rule_source"]);
    refused(
        c.dry_run_rule(pb::DryRunRuleRequest {
            rule_source: Some(pb::dry_run_rule_request::RuleSource::Stored(
                pb::RuleVersionRef {
                    id: "nope".into(),
                    version: 0,
                },
            )),
            max_customers: 0,
            page_token: String::new(),
        })
        .await,
        Code::NotFound,
        "RULE_NOT_FOUND",
    );
    // Nothing was created by the refusals.
    assert_eq!(list_all(&mut c, 100).await.len(), DEFAULT_RULES.len());
}

#[tokio::test]
async fn a_dry_run_shows_targets_holdouts_and_guard_rails_and_writes_nothing() {
    let hub = TestHub::start().await;
    let mut c = LoyaltyActionServiceClient::new(hub.channel().await);
    let ana = customer(&hub, "ana", true).await;
    let bea = customer(&hub, "bea", false).await;

    // Everyone matches `!has(nps.latest)`; only ana consented to marketing e-mail.
    let run = dry_run(&mut c, inline(rule("winback"), 0)).await;
    assert_eq!(run.scanned, 2);
    assert!(run.next_page_token.is_empty());
    assert_eq!(run.rule.as_ref().map(|r| r.version), Some(0));
    let by_customer = |id: &str| {
        run.targets
            .iter()
            .find(|t| t.customer_id == id)
            .cloned()
            .expect("target")
    };
    let a = by_customer(&ana);
    assert_eq!(a.outcome, pb::DryRunOutcome::Treated as i32);
    assert!(a.blocked_by.is_empty());
    assert_eq!(
        a.explanation,
        "has(nps.latest) [has(nps.latest) = false]: false"
    );
    let action = a.action.expect("action");
    assert_eq!(action.kind, pb::ActionKind::RetentionOffer as i32);
    assert_eq!(action.rule_id, "winback");
    assert_eq!(action.assignee_team, "retention");
    assert!(
        action
            .reason
            .starts_with("Win back (winback@v0): has(nps.latest)"),
        "{}",
        action.reason
    );
    let b = by_customer(&bea);
    assert_eq!(b.outcome, pb::DryRunOutcome::Blocked as i32);
    assert_eq!(b.blocked_by, ["CONSENT_MISSING"]);
    assert!(!b.blocked_message.is_empty());

    // A condition nobody meets targets nobody.
    let none = dry_run(
        &mut c,
        inline(
            pb::Rule {
                condition: "has(nps.latest)".into(),
                ..rule("winback")
            },
            0,
        ),
    )
    .await;
    assert_eq!(none.scanned, 2);
    assert!(none.targets.is_empty());

    // A service contact needs no consent: both treated.
    let mut call = rule("call-everyone");
    if let Some(a) = call.action.as_mut() {
        a.kind = pb::ActionKind::FollowUpCall as i32;
        a.channel = pb::ContactChannel::Phone as i32;
    }
    let calls = dry_run(&mut c, inline(call, 0)).await;
    assert!(
        calls
            .targets
            .iter()
            .all(|t| t.outcome == pb::DryRunOutcome::Treated as i32),
        "{calls:?}"
    );

    // Holdout: with the largest share, some of 24 customers are held out, reproducibly, and
    // paging one customer at a time gives the same answers.
    for i in 0..22 {
        customer(&hub, &format!("c{i}"), true).await;
    }
    let mut held = rule("held");
    held.holdout = Some(pb::Holdout {
        control_share: 0.5,
        seed: 42,
    });
    let whole = dry_run(&mut c, inline(held.clone(), 0)).await;
    assert_eq!(whole.scanned, 24);
    let outcomes = |targets: &[pb::DryRunTarget]| -> Vec<(String, i32)> {
        targets
            .iter()
            .map(|t| (t.customer_id.clone(), t.outcome))
            .collect()
    };
    let held_out = whole
        .targets
        .iter()
        .filter(|t| t.outcome == pb::DryRunOutcome::HeldOut as i32)
        .count();
    assert!((1..24).contains(&held_out), "{held_out} held out");
    assert_eq!(
        outcomes(&dry_run(&mut c, inline(held.clone(), 0)).await.targets),
        outcomes(&whole.targets)
    );
    let mut paged = Vec::new();
    let mut token = String::new();
    let mut calls = 0;
    loop {
        let page = dry_run(
            &mut c,
            pb::DryRunRuleRequest {
                page_token: token,
                ..inline(held.clone(), 5)
            },
        )
        .await;
        assert!(page.scanned <= 5);
        calls += 1;
        paged.extend(page.targets);
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(calls, 5);
    assert_eq!(outcomes(&paged), outcomes(&whole.targets));
    // A token of one rule cannot continue another's run.
    let first = dry_run(&mut c, inline(held.clone(), 5)).await;
    refused(
        c.dry_run_rule(pb::DryRunRuleRequest {
            page_token: first.next_page_token,
            ..inline(rule("other"), 5)
        })
        .await,
        Code::InvalidArgument,
        "INVALID_FIELDS",
    );

    // Nothing was written: no action, no rule.
    let actions = c
        .list_actions(pb::ListActionsRequest::default())
        .await
        .expect("list")
        .into_inner()
        .actions;
    assert!(actions.is_empty(), "{actions:?}");
    refused(
        get(&mut c, "winback", 0).await,
        Code::NotFound,
        "RULE_NOT_FOUND",
    );
    assert_eq!(list_all(&mut c, 100).await.len(), DEFAULT_RULES.len());

    // A stored rule dry-runs at the version asked for.
    create(&mut c, rule("stored")).await.expect("created");
    c.update_rule(pb::UpdateRuleRequest {
        request_id: rid(),
        rule: Some(pb::Rule {
            id: "stored".into(),
            condition: "has(nps.latest)".into(),
            ..Default::default()
        }),
        update_mask: mask(&["condition"]),
        etag: String::new(),
        expected_version: 0,
    })
    .await
    .expect("updated");
    let stored = |version: i64| pb::DryRunRuleRequest {
        rule_source: Some(pb::dry_run_rule_request::RuleSource::Stored(
            pb::RuleVersionRef {
                id: "stored".into(),
                version,
            },
        )),
        max_customers: 0,
        page_token: String::new(),
    };
    let v1 = dry_run(&mut c, stored(1)).await;
    assert_eq!(v1.targets.len(), 24);
    assert!(
        v1.targets
            .iter()
            .all(|t| t.action.as_ref().map(|a| a.rule_version) == Some(1))
    );
    let current = dry_run(&mut c, stored(0)).await;
    assert_eq!(current.rule.map(|r| r.version), Some(2));
    assert!(current.targets.is_empty());
}

#[tokio::test]
async fn default_rules_are_shipped_disabled_and_dry_run() {
    let hub = TestHub::start().await;
    let mut c = LoyaltyActionServiceClient::new(hub.channel().await);
    customer(&hub, "ana", true).await;
    let listed = list_all(&mut c, 0).await;
    let ids: BTreeSet<&str> = listed.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, DEFAULT_RULES.into_iter().collect());
    for r in &listed {
        assert_eq!(r.version, 1, "{r:?}");
        assert!(!r.enabled, "{r:?}");
        assert_eq!(r.created_by, "system:defaults");
        // Every default dry-runs.
        let run = dry_run(
            &mut c,
            pb::DryRunRuleRequest {
                rule_source: Some(pb::dry_run_rule_request::RuleSource::Stored(
                    pb::RuleVersionRef {
                        id: r.id.clone(),
                        version: 0,
                    },
                )),
                max_customers: 0,
                page_token: String::new(),
            },
        )
        .await;
        assert_eq!(run.scanned, 1, "{}", r.id);
        // Its condition is in canonical form: writing it back keeps the text.
        let rewritten = c
            .update_rule(pb::UpdateRuleRequest {
                request_id: rid(),
                rule: Some(r.clone()),
                update_mask: mask(&["condition"]),
                etag: r.etag.clone(),
                expected_version: 0,
            })
            .await
            .expect("rewritten")
            .into_inner()
            .rule
            .expect("rule");
        assert_eq!(rewritten.condition, r.condition);
        assert_eq!(rewritten.version, 2);
    }
    let detractor = listed
        .iter()
        .find(|r| r.id == "detractor-follow-up")
        .expect("detractor rule");
    assert_eq!(detractor.trigger, pb::RuleTrigger::SurveyNpsAtMost6 as i32);
    let template = detractor.action.as_ref().expect("template");
    assert_eq!(template.kind, pb::ActionKind::FollowUpCall as i32);
    assert_eq!(template.due_in.map(|d| d.seconds), Some(48 * 3600));
}

#[tokio::test]
async fn rule_scopes_guard_reads_and_writes() {
    let hub = TestHub::builder()
        .token("dash:loyalty:read:read-secret")
        .token("exec:loyalty:read+loyalty:write:write-secret")
        .start()
        .await;
    let mut c = LoyaltyActionServiceClient::new(hub.channel().await);
    let create_request = || pb::CreateRuleRequest {
        request_id: "scoped-rule".into(),
        rule: Some(rule("scoped")),
    };
    let denied = c
        .create_rule(with_token(create_request(), "read-secret"))
        .await;
    assert_eq!(
        denied.expect_err("read scope cannot write").code(),
        Code::PermissionDenied
    );
    let created = c
        .create_rule(with_token(create_request(), "write-secret"))
        .await
        .expect("write scope");
    assert_eq!(created.into_inner().rule.map(|r| r.version), Some(1));
    // Reads and dry runs need the read scope only.
    let read = c
        .get_rule(with_token(
            pb::GetRuleRequest {
                id: "scoped".into(),
                version: 0,
            },
            "read-secret",
        ))
        .await;
    assert!(read.is_ok(), "{read:?}");
    let run = c
        .dry_run_rule(with_token(inline(rule("scoped"), 0), "read-secret"))
        .await;
    assert!(run.is_ok(), "{run:?}");
    let no_token = c.list_rules(pb::ListRulesRequest::default()).await;
    assert_eq!(
        no_token.expect_err("no token").code(),
        Code::Unauthenticated
    );
    let methods: BTreeSet<&str> = cxhub_loyalty::METHODS.iter().map(|m| m.method).collect();
    for m in [
        "CreateRule",
        "UpdateRule",
        "GetRule",
        "ListRules",
        "DryRunRule",
    ] {
        assert!(methods.contains(m), "{m}");
    }
}

/// A follow-up call by phone (a service contact: no consent needed) to customers without an NPS
/// answer, two per run and three per day.
fn limited_calls(id: &str) -> pb::Rule {
    let mut limited = rule(id);
    if let Some(a) = limited.action.as_mut() {
        a.kind = pb::ActionKind::FollowUpCall as i32;
        a.channel = pb::ContactChannel::Phone as i32;
    }
    limited.limits = Some(pb::RuleLimits {
        max_actions_per_run: 2,
        max_actions_per_day: 3,
    });
    limited
}

async fn sweep(c: &mut Client, rule_id: &str) -> Result<Vec<pb::RuleSweepResult>, tonic::Status> {
    sweep_as(c, &rid(), rule_id).await
}

async fn sweep_as(
    c: &mut Client,
    request_id: &str,
    rule_id: &str,
) -> Result<Vec<pb::RuleSweepResult>, tonic::Status> {
    c.run_rule_sweep(pb::RunRuleSweepRequest {
        rule_id: rule_id.to_owned(),
        request_id: request_id.to_owned(),
    })
    .await
    .map(|r| r.into_inner().results)
}

#[tokio::test]
async fn a_retried_sweep_answers_its_first_results() {
    let hub = TestHub::start().await;
    let mut c = LoyaltyActionServiceClient::new(hub.channel().await);
    for i in 0..4 {
        customer(&hub, &format!("r{i}"), true).await;
    }
    create(&mut c, rule("winback")).await.expect("created");

    let first = sweep_as(&mut c, "sweep-1", "winback").await.expect("swept");
    assert_eq!((first[0].proposed, first[0].already_done), (4, 0));
    // The retry answers what the first run did; a new request sweeps again and finds the
    // customers done for the day.
    let retried = sweep_as(&mut c, "sweep-1", "winback")
        .await
        .expect("retried");
    assert_eq!(retried, first);
    let again = sweep_as(&mut c, "sweep-2", "winback")
        .await
        .expect("swept again");
    assert_eq!((again[0].proposed, again[0].already_done), (0, 4));

    // The same id for another sweep, and no id at all, are refused.
    let status = refused(
        sweep_as(&mut c, "sweep-1", "").await,
        Code::InvalidArgument,
        "REQUEST_ID_REUSED",
    );
    assert_eq!(fields(&status), ["request_id"]);
    let status = refused(
        sweep_as(&mut c, "", "Not A Key").await,
        Code::InvalidArgument,
        "INVALID_FIELDS",
    );
    assert_eq!(fields(&status), ["request_id", "rule_id"]);
}

#[tokio::test]
async fn a_sweep_proposes_once_a_day_records_its_control_group_and_keeps_to_its_limits() {
    let hub = TestHub::start().await;
    let mut c = LoyaltyActionServiceClient::new(hub.channel().await);
    let bea = customer(&hub, "bea", false).await;
    for i in 0..11 {
        customer(&hub, &format!("c{i}"), true).await;
    }
    let mut winback = rule("winback");
    winback.holdout = Some(pb::Holdout {
        control_share: 0.5,
        seed: 3,
    });
    create(&mut c, winback.clone()).await.expect("created");

    // The dry run foretells what the sweep does.
    let foretold = dry_run(&mut c, inline(winback.clone(), 0)).await;
    let count = |o: pb::DryRunOutcome| {
        foretold
            .targets
            .iter()
            .filter(|t| t.outcome == o as i32)
            .count() as i64
    };
    let results = sweep(&mut c, "winback").await.expect("swept");
    assert_eq!(results.len(), 1);
    let first = &results[0];
    assert_eq!((first.rule_id.as_str(), first.rule_version), ("winback", 1));
    assert_eq!(first.run_day, chrono::Utc::now().date_naive().to_string());
    assert_eq!((first.scanned, first.matched), (12, 12));
    assert_eq!(first.proposed, count(pb::DryRunOutcome::Treated));
    assert_eq!(first.held_out, count(pb::DryRunOutcome::HeldOut));
    assert_eq!(first.blocked, count(pb::DryRunOutcome::Blocked));
    assert!(first.held_out > 0 && first.proposed > 0, "{first:?}");
    assert_eq!(first.proposed + first.held_out + first.blocked, 12);

    // The actions went through ProposeAction's path, naming the rule version.
    let actions = c
        .list_actions(pb::ListActionsRequest::default())
        .await
        .expect("list")
        .into_inner()
        .actions;
    assert_eq!(actions.len() as i64, first.proposed);
    for a in &actions {
        assert_eq!(a.state, pb::ActionState::Proposed as i32);
        assert_eq!(a.created_by, "system:rule-sweep");
        let input = a.action.as_ref().expect("input");
        assert_eq!((input.rule_id.as_str(), input.rule_version), ("winback", 1));
        assert!(
            input.reason.starts_with("Win back (winback@v1)"),
            "{}",
            input.reason
        );
    }

    // A re-run the same day proposes nothing twice; held-out and blocked customers were
    // recorded too, so they count as done.
    let again = sweep(&mut c, "winback").await.expect("swept again");
    assert_eq!(again[0].proposed, 0);
    assert_eq!(again[0].already_done, 12);
    let listed = c
        .list_actions(pb::ListActionsRequest::default())
        .await
        .expect("list")
        .into_inner()
        .actions;
    assert_eq!(listed.len(), actions.len());

    // Limits: two per run, three per day; a service call needs no consent.
    create(&mut c, limited_calls("limited"))
        .await
        .expect("created");
    let runs: Vec<(i64, i64, i64)> = {
        let mut runs = Vec::new();
        for _ in 0..3 {
            let r = sweep(&mut c, "limited").await.expect("swept");
            runs.push((r[0].proposed, r[0].already_done, r[0].over_limit));
        }
        runs
    };
    assert_eq!(runs, [(2, 0, 10), (1, 2, 9), (0, 3, 9)]);

    // All scheduled rules: only the enabled daily sweeps run (the defaults are disabled or
    // event-triggered), by id.
    let all = sweep(&mut c, "").await.expect("swept all");
    let ids: Vec<&str> = all.iter().map(|r| r.rule_id.as_str()).collect();
    assert_eq!(ids, ["limited", "winback"]);

    // Refusals.
    refused(
        sweep(&mut c, "nope").await,
        Code::NotFound,
        "RULE_NOT_FOUND",
    );
    refused(
        sweep(&mut c, "detractor-follow-up").await,
        Code::FailedPrecondition,
        "NOT_SCHEDULED",
    );
    refused(
        sweep(&mut c, "retention-offer").await,
        Code::FailedPrecondition,
        "RULE_DISABLED",
    );
    let status = refused(
        sweep(&mut c, "Not A Key").await,
        Code::InvalidArgument,
        "INVALID_FIELDS",
    );
    assert_eq!(fields(&status), ["rule_id"]);

    // A new version is a new rule for the day: it acts on the customers the old one did not
    // reach only through the caps (one retention offer per 90 days).
    c.update_rule(pb::UpdateRuleRequest {
        request_id: rid(),
        rule: Some(pb::Rule {
            id: "winback".into(),
            holdout: Some(pb::Holdout {
                control_share: 0.0,
                seed: 3,
            }),
            ..Default::default()
        }),
        update_mask: mask(&["holdout"]),
        etag: String::new(),
        expected_version: 1,
    })
    .await
    .expect("updated");
    let v2 = sweep(&mut c, "winback").await.expect("swept v2");
    assert_eq!(v2[0].rule_version, 2);
    assert_eq!(v2[0].already_done, 0);
    // The customers v1 held out get their offer now (but bea, who has no consent); those v1
    // treated are capped.
    let bea_held_out = foretold
        .targets
        .iter()
        .any(|t| t.customer_id == bea && t.outcome == pb::DryRunOutcome::HeldOut as i32);
    let expected = first.held_out - i64::from(bea_held_out);
    assert_eq!(v2[0].proposed, expected);
    assert_eq!(v2[0].blocked, 12 - expected);
}

/// Answers the demo teller survey (created on first use) with an NPS `value`.
async fn answer_nps(hub: &TestHub, response_id: &str, customer: &str, value: i32) {
    use cxhub_proto::scoring::v1 as scoring;
    let mut s = scoring::scoring_service_client::ScoringServiceClient::new(hub.channel().await);
    let survey = scoring::CreateSurveyRequest {
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
    };
    s.create_survey(survey).await.expect("survey");
    let results = s
        .submit_responses(scoring::SubmitResponsesRequest {
            responses: vec![scoring::ResponseInput {
                response_id: response_id.into(),
                customer_id: customer.into(),
                survey_key: "branch.after-teller".into(),
                touchpoint_key: "branch.teller".into(),
                answers: vec![scoring::Answer {
                    question_key: "recommend".into(),
                    value,
                }],
                answered_at: Some(Timestamp {
                    seconds: chrono::Utc::now().timestamp() - 60,
                    nanos: 0,
                }),
                ..Default::default()
            }],
        })
        .await
        .expect("submitted")
        .into_inner()
        .results;
    assert_eq!(
        results[0].outcome,
        scoring::ResponseOutcome::Created as i32,
        "{results:?}"
    );
}

/// A hub with the demo registry whose rule follower stays off: the test drives it pass by pass.
async fn follower_hub() -> (TestHub, Client) {
    let hub = TestHub::builder()
        .demo()
        .loyalty_rule_tasks(false)
        .start()
        .await;
    let c = LoyaltyActionServiceClient::new(hub.channel().await);
    (hub, c)
}

/// One pass of the rule follower with the default guard rails.
async fn follow(hub: &TestHub) -> cxhub_domain::loyalty::repo::EventPass {
    use cxhub_domain::loyalty::repo::{GuardConfig, LoyaltyRepo};
    hub.store
        .follow_rule_events(&GuardConfig::default(), 1000)
        .await
        .expect("followed")
}

#[tokio::test]
async fn a_detractor_answer_triggers_the_follow_up_rule_once() {
    // This test drives the follower pass by pass: the hub's own follower stays off.
    let (hub, mut c) = follower_hub().await;
    let ana = customer(&hub, "ana", false).await;
    let bob = customer(&hub, "bob", false).await;

    // Nothing to follow yet; a disabled rule does not act.
    answer_nps(&hub, "r-ana-1", &ana, 3).await;
    let pass = follow(&hub).await;
    assert_eq!((pass.events, pass.proposed), (0, 0), "{pass:?}");

    // Enabled, without a control group: the next detractor answer proposes a call.
    enable(&mut c, "detractor-follow-up").await;
    answer_nps(&hub, "r-ana-2", &ana, 2).await;
    answer_nps(&hub, "r-bob-1", &bob, 9).await;
    let pass = follow(&hub).await;
    assert_eq!(pass.read, 2, "{pass:?}");
    assert_eq!((pass.events, pass.proposed), (1, 1), "{pass:?}");
    let actions = c
        .list_actions(pb::ListActionsRequest {
            customer_id: ana.clone(),
            ..Default::default()
        })
        .await
        .expect("list")
        .into_inner()
        .actions;
    assert_eq!(actions.len(), 1, "{actions:?}");
    let call = &actions[0];
    assert_eq!(call.created_by, "system:rule-events");
    let input = call.action.as_ref().expect("input");
    assert_eq!(input.kind, pb::ActionKind::FollowUpCall as i32);
    assert_eq!(input.channel, pb::ContactChannel::Phone as i32);
    assert_eq!(
        (input.rule_id.as_str(), input.rule_version),
        ("detractor-follow-up", 2)
    );
    assert!(input.reason.contains("nps.latest = 2"), "{}", input.reason);
    let due = input.due_at.map(|t| t.seconds).unwrap_or_default()
        - call.created_at.map(|t| t.seconds).unwrap_or_default();
    assert!((48 * 3600 - 2..=48 * 3600).contains(&due), "{due}");

    // The position is stored: a second pass reads nothing and proposes nothing.
    let pass = follow(&hub).await;
    assert_eq!(pass.read, 0, "{pass:?}");
    let again = c
        .list_actions(pb::ListActionsRequest::default())
        .await
        .expect("list")
        .into_inner()
        .actions;
    assert_eq!(again.len(), 1);
}

#[tokio::test]
async fn a_customer_rescored_negative_triggers_a_category_rule() {
    use cxhub_proto::scoring::v1 as scoring;
    // This test drives the follower pass by pass: the hub's own follower stays off.
    let (hub, mut c) = follower_hub().await;
    let ana = customer(&hub, "ana", false).await;
    let mut apology = rule("negative-apology");
    apology.trigger = pb::RuleTrigger::CategoryBecameNegative as i32;
    apology.condition = "category == \"negative\"".into();
    if let Some(a) = apology.action.as_mut() {
        a.kind = pb::ActionKind::Apology as i32;
    }
    create(&mut c, apology).await.expect("created");
    // A daily-sweep rule that targets the same customer is not the follower's business.
    create(&mut c, rule("sweep-only")).await.expect("created");

    answer_nps(&hub, "r-ana-1", &ana, 2).await;
    scoring::scoring_service_client::ScoringServiceClient::new(hub.channel().await)
        .recompute_scores(scoring::RecomputeScoresRequest { request_id: rid() })
        .await
        .expect("recomputed");
    let pass = follow(&hub).await;
    assert_eq!(pass.proposed, 1, "{pass:?}");
    let actions = c
        .list_actions(pb::ListActionsRequest::default())
        .await
        .expect("list")
        .into_inner()
        .actions;
    assert_eq!(actions.len(), 1, "{actions:?}");
    let input = actions[0].action.as_ref().expect("input");
    assert_eq!(input.customer_id, ana);
    assert_eq!(input.rule_id, "negative-apology");
    assert!(
        input.reason.contains("category = \"negative\""),
        "{}",
        input.reason
    );
}

#[tokio::test]
async fn the_hub_follows_rule_events_by_itself() {
    let hub = TestHub::builder().demo().start().await;
    let mut c = LoyaltyActionServiceClient::new(hub.channel().await);
    let ana = customer(&hub, "ana", false).await;
    enable(&mut c, "detractor-follow-up").await;
    answer_nps(&hub, "r-ana-bg", &ana, 1).await;
    // No pass is driven here: the hub's follower proposes the call on its own.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    let actions = loop {
        let actions = c
            .list_actions(pb::ListActionsRequest {
                customer_id: ana.clone(),
                ..Default::default()
            })
            .await
            .expect("list")
            .into_inner()
            .actions;
        if !actions.is_empty() {
            break actions;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the hub's rule follower proposed nothing"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert_eq!(actions.len(), 1, "{actions:?}");
    assert_eq!(actions[0].created_by, "system:rule-events");
    let input = actions[0].action.as_ref().expect("input");
    assert_eq!(input.kind, pb::ActionKind::FollowUpCall as i32);
}

/// The outcome and the guard rails named for `customer` in a dry run.
fn outcome_of(run: &pb::DryRunRuleResponse, customer: &str) -> (i32, Vec<String>) {
    let t = run
        .targets
        .iter()
        .find(|t| t.customer_id == customer)
        .expect("target");
    (t.outcome, t.blocked_by.clone())
}

#[tokio::test]
async fn a_sweep_decides_every_customer_of_a_batch_by_their_own_guard_rails() {
    use cxhub_proto::profile::v1 as profile;
    let hub = TestHub::start().await;
    let mut c = LoyaltyActionServiceClient::new(hub.channel().await);
    // In one batch: consenting customers, one without consent, one who had a retention offer
    // a day ago (one per 90 days), one erased.
    let mut consenting = Vec::new();
    for i in 0..6 {
        consenting.push(customer(&hub, &format!("c{i}"), true).await);
    }
    let no_consent = customer(&hub, "bea", false).await;
    let capped = customer(&hub, "carl", true).await;
    let erased = customer(&hub, "dan", true).await;
    let earlier = c
        .propose_action(pb::ProposeActionRequest {
            request_id: rid(),
            action: Some(pb::ActionInput {
                customer_id: capped.clone(),
                kind: pb::ActionKind::RetentionOffer as i32,
                reason: "by hand".into(),
                channel: pb::ContactChannel::Email as i32,
                due_at: Some(Timestamp {
                    seconds: chrono::Utc::now().timestamp() + 86_400,
                    nanos: 0,
                }),
                assignee_team: "retention".into(),
                ..Default::default()
            }),
        })
        .await
        .expect("proposed by hand")
        .into_inner()
        .action
        .expect("action");
    profile::customer_privacy_service_client::CustomerPrivacyServiceClient::new(
        hub.channel().await,
    )
    .erase_customer(profile::EraseCustomerRequest {
        request_id: rid(),
        customer_id: erased.clone(),
    })
    .await
    .expect("erased");

    let mut winback = rule("batch-winback");
    winback.limits = None;
    let foretold = dry_run(&mut c, inline(winback.clone(), 0)).await;
    let treated = pb::DryRunOutcome::Treated as i32;
    let blocked = pb::DryRunOutcome::Blocked as i32;
    for id in &consenting {
        assert_eq!(outcome_of(&foretold, id), (treated, Vec::new()));
    }
    assert_eq!(
        outcome_of(&foretold, &no_consent),
        (blocked, vec!["CONSENT_MISSING".to_owned()])
    );
    assert_eq!(
        outcome_of(&foretold, &capped),
        (blocked, vec!["FREQUENCY_CAP".to_owned()])
    );
    if let Some(t) = foretold.targets.iter().find(|t| t.customer_id == erased) {
        assert_eq!(t.outcome, blocked);
        assert!(t.blocked_by.iter().any(|r| r == "CUSTOMER_ERASED"), "{t:?}");
    }

    create(&mut c, winback).await.expect("created");
    let swept = sweep(&mut c, "batch-winback").await.expect("swept");
    assert_eq!(swept[0].proposed, 6, "{swept:?}");
    assert_eq!(swept[0].held_out, 0);
    assert_eq!(swept[0].blocked, swept[0].matched - 6, "{swept:?}");

    // One offer to each consenting customer, none to the others (the capped one keeps the
    // offer made by hand).
    let actions = c
        .list_actions(pb::ListActionsRequest {
            page_size: 100,
            ..Default::default()
        })
        .await
        .expect("list")
        .into_inner()
        .actions;
    let mut targeted: Vec<String> = actions
        .iter()
        .filter(|a| a.id != earlier.id)
        .map(|a| {
            let input = a.action.as_ref().expect("input");
            assert_eq!(input.rule_id, "batch-winback");
            assert_eq!(input.rule_version, 1);
            assert_eq!(a.created_by, "system:rule-sweep");
            input.customer_id.clone()
        })
        .collect();
    targeted.sort();
    consenting.sort();
    assert_eq!(targeted, consenting);

    // The executors see every proposal on the action event stream, once each.
    let mut watch = c
        .watch_actions(pb::WatchActionsRequest {
            assignee_team: "retention".into(),
            from_oldest: true,
            states: vec![pb::ActionState::Proposed as i32],
            ..Default::default()
        })
        .await
        .expect("watch")
        .into_inner();
    let mut seen = BTreeSet::new();
    while seen.len() < 7 {
        let message = tokio::time::timeout(std::time::Duration::from_secs(10), watch.message())
            .await
            .expect("in time")
            .expect("stream")
            .expect("message");
        for event in message.events {
            assert_eq!(event.to_state, pb::ActionState::Proposed as i32);
            let action = event.action.expect("action");
            assert!(seen.insert(action.id), "an action seen twice");
        }
    }
    assert_eq!(seen.len(), 7);
}

#[tokio::test]
async fn a_dry_run_keeps_to_the_rules_limits_as_the_sweep_does() {
    let hub = TestHub::start().await;
    let mut c = LoyaltyActionServiceClient::new(hub.channel().await);
    for i in 0..5 {
        customer(&hub, &format!("c{i}"), false).await;
    }
    let limited = limited_calls("limited-calls");
    let count = |run: &pb::DryRunRuleResponse, outcome: pb::DryRunOutcome, by: &[&str]| {
        run.targets
            .iter()
            .filter(|t| t.outcome == outcome as i32 && t.blocked_by == by)
            .count()
    };

    // Before any run: two to treat, the rest past the per-run limit.
    let run = dry_run(&mut c, inline(limited.clone(), 0)).await;
    assert_eq!(count(&run, pb::DryRunOutcome::Treated, &[]), 2, "{run:?}");
    assert_eq!(
        count(&run, pb::DryRunOutcome::Blocked, &["RULE_LIMIT"]),
        3,
        "{run:?}"
    );
    let over = run
        .targets
        .iter()
        .find(|t| t.blocked_by == ["RULE_LIMIT"])
        .expect("over the limit");
    assert!(
        over.blocked_message.contains("2 action(s) per run"),
        "{}",
        over.blocked_message
    );

    // The sweep does what the dry run said.
    create(&mut c, limited.clone()).await.expect("created");
    let first = sweep(&mut c, "limited-calls").await.expect("swept");
    assert_eq!((first[0].proposed, first[0].over_limit), (2, 3));

    // One left for the day.
    let run = dry_run(&mut c, inline(limited.clone(), 0)).await;
    assert_eq!(count(&run, pb::DryRunOutcome::Treated, &[]), 1, "{run:?}");
    assert_eq!(count(&run, pb::DryRunOutcome::Blocked, &["RULE_LIMIT"]), 4);
    let second = sweep(&mut c, "limited-calls").await.expect("swept");
    assert_eq!((second[0].proposed, second[0].already_done), (1, 2));

    // The day's limit is used up: nobody to treat, and the message says which limit.
    let run = dry_run(&mut c, inline(limited, 0)).await;
    assert_eq!(count(&run, pb::DryRunOutcome::Treated, &[]), 0, "{run:?}");
    assert_eq!(count(&run, pb::DryRunOutcome::Blocked, &["RULE_LIMIT"]), 5);
    assert!(
        run.targets
            .iter()
            .all(|t| t.blocked_message.contains("3 action(s) per day")),
        "{run:?}"
    );
}

#[tokio::test]
async fn two_detractor_answers_in_one_pass_are_capped_as_two_proposals_would_be() {
    let (hub, mut c) = follower_hub().await;
    let ana = customer(&hub, "ana", true).await;
    // A retention offer (one per 90 days) by e-mail to every detractor.
    let mut offer = rule("detractor-offer");
    offer.trigger = pb::RuleTrigger::SurveyNpsAtMost6 as i32;
    offer.condition = "nps.latest <= 6".into();
    create(&mut c, offer).await.expect("created");
    answer_nps(&hub, "r-ana-1", &ana, 3).await;
    answer_nps(&hub, "r-ana-2", &ana, 2).await;
    let pass = follow(&hub).await;
    assert_eq!(
        (pass.events, pass.proposed, pass.blocked),
        (2, 1, 1),
        "{pass:?}"
    );
    let actions = c
        .list_actions(pb::ListActionsRequest {
            customer_id: ana,
            ..Default::default()
        })
        .await
        .expect("list")
        .into_inner()
        .actions;
    assert_eq!(actions.len(), 1, "{actions:?}");
}
