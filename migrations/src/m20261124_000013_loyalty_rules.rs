//! Loyalty rules, versioned: one row per version of a rule (`loyalty_rules`, keyed by rule id
//! and version; the current version is the highest), with the trigger and the enabled flag in
//! columns (what the sweeps and the event follower select by) and the whole definition as
//! JSON; what each run of a rule did per customer (`loyalty_rule_targets`: one row per rule,
//! version, customer and run, with the outcome: proposed with its action, held out as
//! control, or blocked by a guard rail; a run is a sweep's UTC day, `2026-11-24`, or the event
//! that triggered the rule, `change:42` or `response:<id>`), which makes a re-run propose
//! nothing twice and keeps the control group for the effect report; and how far the event
//! follower has read (`loyalty_rule_position`, one row). Also seeds the default rules
//! (disabled; see docs/loyalty.md).

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::{
    big_integer, boolean, integer, text, text_null, timestamp_with_time_zone,
    timestamp_with_time_zone_null,
};

use crate::m20261123_000001_touchpoints::byte_ordered;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// Table and columns of `loyalty_rules`.
#[derive(DeriveIden)]
enum LoyaltyRules {
    Table,
    Id,
    Version,
    Name,
    Trigger,
    Enabled,
    SpecJson,
    CreatedBy,
    CreatedAt,
}

/// Table and columns of `loyalty_rule_targets`.
#[derive(DeriveIden)]
enum LoyaltyRuleTargets {
    Table,
    RuleId,
    RuleVersion,
    CustomerId,
    Run,
    Outcome,
    ActionId,
    Reason,
    At,
}

/// Table and columns of `loyalty_rule_position`.
#[derive(DeriveIden)]
enum LoyaltyRulePosition {
    Table,
    Id,
    ChangeSeq,
    ResponsesAt,
    ResponsesId,
}

/// A default rule: id, name, trigger, condition (canonical form), action kind, channel,
/// value in EUR cents (if any), SLA in hours, team, reason template.
struct Default {
    id: &'static str,
    name: &'static str,
    trigger: &'static str,
    condition: &'static str,
    kind: &'static str,
    channel: &'static str,
    value_eur_cents: Option<i64>,
    due_in_hours: i64,
    team: &'static str,
    reason: &'static str,
}

/// The default rules. Their conditions must be in canonical form (what the hub prints), so
/// that reading them back gives the same text; the e2e tests compile and dry-run each.
const DEFAULTS: [Default; 7] = [
    Default {
        id: "detractor-follow-up",
        name: "Detractor follow-up call within 48 hours",
        trigger: "survey_nps_at_most_6",
        condition: "nps.latest <= 6",
        kind: "follow_up_call",
        channel: "PHONE",
        value_eur_cents: None,
        due_in_hours: 48,
        team: "customer-care",
        reason: "Close the loop with a detractor: {explanation}",
    },
    Default {
        id: "retention-offer-high-clv",
        name: "Retention offer for high churn risk, high lifetime value",
        trigger: "daily_sweep",
        condition: "churn.band == \"high\" && clv.value >= 1000 && consent(\"marketing\", \"email\")",
        kind: "retention_offer",
        channel: "EMAIL",
        value_eur_cents: Some(5000),
        due_in_hours: 72,
        team: "retention",
        reason: "Keep a valuable customer at risk: {explanation}",
    },
    Default {
        id: "retention-offer",
        name: "Retention offer for high churn risk",
        trigger: "daily_sweep",
        condition: "churn.band == \"high\" && clv.value >= 200 && clv.value < 1000 && consent(\"marketing\", \"email\")",
        kind: "retention_offer",
        channel: "EMAIL",
        value_eur_cents: Some(1500),
        due_in_hours: 72,
        team: "retention",
        reason: "Keep a customer at risk: {explanation}",
    },
    Default {
        id: "advocate-referral",
        name: "Referral request to advocates",
        trigger: "daily_sweep",
        condition: "category == \"advocate\" && nps.latest >= 9 && consent(\"marketing\", \"email\")",
        kind: "referral_request",
        channel: "EMAIL",
        value_eur_cents: None,
        due_in_hours: 168,
        team: "marketing",
        reason: "Ask an advocate to recommend us: {explanation}",
    },
    Default {
        id: "post-delivery-survey",
        name: "Survey invitation after delivery",
        trigger: "order_delivered",
        condition: "consent(\"surveys\", \"email\")",
        kind: "survey_invitation",
        channel: "EMAIL",
        value_eur_cents: None,
        due_in_hours: 24,
        team: "cx-research",
        reason: "Ask how the delivery went: {explanation}",
    },
    Default {
        id: "late-delivery-apology",
        name: "Apology and goodwill gesture after a late delivery",
        trigger: "order_delivered",
        condition: "event.delay_days >= 2 && event.company_at_fault",
        kind: "apology",
        channel: "EMAIL",
        value_eur_cents: None,
        due_in_hours: 24,
        team: "customer-care",
        reason: "Apologise, with a goodwill gesture, for a late delivery: {explanation}",
    },
    Default {
        id: "failed-payment-apology",
        name: "Apology and goodwill gesture after a failed payment that was our fault",
        trigger: "payment_failed",
        condition: "event.company_at_fault",
        kind: "apology",
        channel: "EMAIL",
        value_eur_cents: None,
        due_in_hours: 24,
        team: "customer-care",
        reason: "Apologise, with a goodwill gesture, for a payment we failed: {explanation}",
    },
];

/// A JSON string literal.
fn json_text(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The definition as the store reads it (`cxhub_domain::loyalty::rule::RuleSpec` as JSON).
fn spec_json(d: &Default) -> String {
    let value = match d.value_eur_cents {
        Some(cents) => format!("{{\"amount_minor\":{cents},\"currency\":\"EUR\"}}"),
        None => "null".to_owned(),
    };
    format!(
        "{{\"name\":{},\"trigger\":{},\"condition\":{},\"action\":{{\"kind\":{},\"channel\":{},\
         \"value\":{value},\"campaign\":null,\"due_in_seconds\":{},\"assignee_team\":{},\
         \"reason_template\":{}}},\"limits\":{{\"max_per_run\":null,\"max_per_day\":null}},\
         \"holdout\":{{\"control_share\":0.1,\"seed\":1}},\"enabled\":false}}",
        json_text(d.name),
        json_text(d.trigger),
        json_text(d.condition),
        json_text(d.kind),
        json_text(d.channel),
        d.due_in_hours * 3600,
        json_text(d.team),
        json_text(d.reason),
    )
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(LoyaltyRules::Table)
                    .col(byte_ordered(manager, text(LoyaltyRules::Id)))
                    .col(big_integer(LoyaltyRules::Version))
                    .col(text(LoyaltyRules::Name))
                    .col(text(LoyaltyRules::Trigger))
                    .col(boolean(LoyaltyRules::Enabled))
                    .col(text(LoyaltyRules::SpecJson))
                    .col(text(LoyaltyRules::CreatedBy))
                    .col(timestamp_with_time_zone(LoyaltyRules::CreatedAt))
                    .primary_key(
                        Index::create()
                            .col(LoyaltyRules::Id)
                            .col(LoyaltyRules::Version),
                    )
                    .check(Expr::cust("version >= 1"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("loyalty_rules_trigger_idx")
                    .table(LoyaltyRules::Table)
                    .col(LoyaltyRules::Trigger)
                    .col(LoyaltyRules::Id)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(LoyaltyRuleTargets::Table)
                    .col(byte_ordered(manager, text(LoyaltyRuleTargets::RuleId)))
                    .col(big_integer(LoyaltyRuleTargets::RuleVersion))
                    .col(byte_ordered(manager, text(LoyaltyRuleTargets::CustomerId)))
                    .col(text(LoyaltyRuleTargets::Run))
                    .col(text(LoyaltyRuleTargets::Outcome))
                    .col(text_null(LoyaltyRuleTargets::ActionId))
                    .col(text_null(LoyaltyRuleTargets::Reason))
                    .col(timestamp_with_time_zone(LoyaltyRuleTargets::At))
                    .primary_key(
                        Index::create()
                            .col(LoyaltyRuleTargets::RuleId)
                            .col(LoyaltyRuleTargets::RuleVersion)
                            .col(LoyaltyRuleTargets::CustomerId)
                            .col(LoyaltyRuleTargets::Run),
                    )
                    .check(Expr::cust("outcome IN ('proposed', 'held_out', 'blocked')"))
                    .to_owned(),
            )
            .await?;
        // Per-day limits count what a rule (any version) proposed on a day.
        manager
            .create_index(
                Index::create()
                    .name("loyalty_rule_targets_day_idx")
                    .table(LoyaltyRuleTargets::Table)
                    .col(LoyaltyRuleTargets::RuleId)
                    .col(LoyaltyRuleTargets::Run)
                    .col(LoyaltyRuleTargets::Outcome)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(LoyaltyRulePosition::Table)
                    .col(integer(LoyaltyRulePosition::Id).primary_key())
                    .col(big_integer(LoyaltyRulePosition::ChangeSeq))
                    .col(timestamp_with_time_zone_null(
                        LoyaltyRulePosition::ResponsesAt,
                    ))
                    .col(text_null(LoyaltyRulePosition::ResponsesId))
                    .to_owned(),
            )
            .await?;
        // The follower starts at the end of what exists: rules act on events from now on,
        // not on the history of a hub that ran before rules existed.
        manager
            .get_connection()
            .execute_unprepared(
                "INSERT INTO loyalty_rule_position (id, change_seq, responses_at, responses_id) \
                 SELECT 1, (SELECT COALESCE(MAX(seq), 0) FROM customer_changes), \
                 (SELECT MAX(received_at) FROM survey_responses), \
                 (SELECT MAX(response_id) FROM survey_responses WHERE received_at = \
                 (SELECT MAX(received_at) FROM survey_responses))",
            )
            .await?;

        let mut insert = Query::insert();
        insert.into_table(LoyaltyRules::Table).columns([
            LoyaltyRules::Id,
            LoyaltyRules::Version,
            LoyaltyRules::Name,
            LoyaltyRules::Trigger,
            LoyaltyRules::Enabled,
            LoyaltyRules::SpecJson,
            LoyaltyRules::CreatedBy,
            LoyaltyRules::CreatedAt,
        ]);
        let now = sea_orm_migration::sea_orm::prelude::ChronoUtc::now();
        for d in &DEFAULTS {
            insert.values_panic([
                d.id.into(),
                1i64.into(),
                d.name.into(),
                d.trigger.into(),
                false.into(),
                spec_json(d).into(),
                "system:defaults".into(),
                Value::ChronoDateTimeUtc(Some(now)).into(),
            ]);
        }
        manager.exec_stmt(insert).await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(LoyaltyRuleTargets::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(LoyaltyRulePosition::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(LoyaltyRules::Table).to_owned())
            .await
    }
}
