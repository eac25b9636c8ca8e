//! Loyalty rules: a trigger, a condition in the rule language ([`crate::loyalty::condition`]),
//! the action proposed for each customer it targets, limits and a holdout (control) group.
//! Rules are versioned: every update writes a new version and keeps the old ones, because
//! actions name the rule version that proposed them.
//!
//! What a rule decides for one customer is [`decide`]: the condition's evaluation, then the
//! holdout draw ([`crate::loyalty::guard::in_holdout`]), then the guard rails
//! ([`crate::loyalty::guard::eligibility`]). The store supplies the facts and what the guard
//! rails need; a dry run reports the decision, a sweep acts on it.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use crate::error::{FieldViolation, Violations};
use crate::loyalty::action::{ActionKind, ContactChannel};
use crate::loyalty::condition::{self, Condition, Evaluation, FactSchema};
use crate::loyalty::guard::{self, Eligibility};
use crate::loyalty::repo::{CampaignId, NewAction, RuleRef};
use crate::money::Money;
use crate::text_enum::text_enum;
use crate::touchpoint::{Key, etag};

/// Longest rule name.
pub const MAX_RULE_NAME_LEN: usize = 200;
/// Longest reason template.
pub const MAX_REASON_TEMPLATE_LEN: usize = 1000;
/// Shortest SLA of a template.
pub const MIN_DUE_IN: Duration = Duration::minutes(1);
/// Longest SLA of a template.
pub const MAX_DUE_IN: Duration = Duration::days(365);
/// The reason template used when a rule gives none.
pub const DEFAULT_REASON_TEMPLATE: &str = "`{rule}` ({trigger}): {explanation}";
/// The placeholders a reason template may use.
pub const PLACEHOLDERS: [&str; 3] = ["rule", "trigger", "explanation"];

text_enum!(
    /// What makes a rule act.
    Trigger {
        /// Once a day, over every live customer.
        DailySweep = "daily_sweep",
        /// The customer's category became negative.
        CategoryBecameNegative = "category_became_negative",
        /// The customer's category became advocate.
        CategoryBecameAdvocate = "category_became_advocate",
        /// The customer's churn band became high.
        ChurnBandBecameHigh = "churn_band_became_high",
        /// The customer answered a survey with an NPS of 6 or less.
        SurveyNpsAtMost6 = "survey_nps_at_most_6",
        /// An order of the customer was delivered.
        OrderDelivered = "order_delivered",
        /// A payment of the customer failed.
        PaymentFailed = "payment_failed",
        /// A support case of the customer was resolved or closed.
        CaseClosed = "case_closed",
        /// A subscription of the customer moved to a cheaper plan.
        SubscriptionDowngraded = "subscription_downgraded",
        /// A subscription of the customer was cancelled.
        SubscriptionCancelled = "subscription_cancelled",
    }
);

impl Trigger {
    /// Whether the trigger is a schedule (a sweep over all customers) rather than an event.
    pub fn is_scheduled(self) -> bool {
        self == Trigger::DailySweep
    }
}

/// The action a rule proposes for each customer it targets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActionTemplate {
    /// The kind.
    pub kind: ActionKind,
    /// How the customer is reached.
    pub channel: ContactChannel,
    /// What each action is worth.
    pub value: Option<Money>,
    /// The campaign that pays.
    pub campaign: Option<CampaignId>,
    /// Each action is due this many seconds after it is proposed.
    pub due_in_seconds: i64,
    /// Who performs the actions.
    pub assignee_team: String,
    /// The reason written on each action (see [`render_reason`]).
    pub reason_template: String,
}

/// How many actions a rule may propose; `None`: no limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleLimits {
    /// Per run (a sweep, or one event).
    pub max_per_run: Option<u32>,
    /// Per UTC day.
    pub max_per_day: Option<u32>,
}

/// The control group of a rule.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Holdout {
    /// The share kept untreated, 0 to [`guard::MAX_CONTROL_SHARE`].
    pub control_share: f64,
    /// The seed of the draw.
    pub seed: u64,
}

/// What a rule is, as written (validated; the condition compiled against
/// [`FactSchema::customer`] and kept in canonical form).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RuleSpec {
    /// A display name.
    pub name: String,
    /// When it acts.
    pub trigger: Trigger,
    /// The condition, canonical.
    pub condition: String,
    /// The action it proposes.
    pub action: ActionTemplate,
    /// How many.
    pub limits: RuleLimits,
    /// Whom it leaves untreated.
    pub holdout: Holdout,
    /// Whether it acts.
    pub enabled: bool,
}

/// One version of a stored rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rule {
    /// The rule's id.
    pub id: Key,
    /// The version, from 1.
    pub version: i64,
    /// The definition.
    pub spec: RuleSpec,
    /// Who wrote this version.
    pub created_by: String,
    /// When.
    pub created_at: DateTime<Utc>,
}

impl Rule {
    /// The etag of this version.
    pub fn etag(&self) -> String {
        etag(self.version)
    }

    /// The reference actions carry.
    pub fn reference(&self) -> RuleRef {
        RuleRef {
            id: self.id.as_str().to_owned(),
            version: self.version,
        }
    }
}

/// Compiles a condition for a rule: the canonical source, or every error as a violation of
/// `field` (each description starts with `line:column`).
pub fn compile_condition(source: &str, field: &str) -> Result<Condition, Vec<FieldViolation>> {
    condition::compile_all(source, &FactSchema::customer())
        .map_err(|errors| errors.iter().map(|e| e.violation(field)).collect())
}

/// Checks a reason template: at most [`MAX_REASON_TEMPLATE_LEN`] characters, braces only around
/// a known placeholder. Empty means [`DEFAULT_REASON_TEMPLATE`].
pub fn check_reason_template(template: &str) -> Result<(), String> {
    if template.chars().count() > MAX_REASON_TEMPLATE_LEN {
        return Err(format!("at most {MAX_REASON_TEMPLATE_LEN} characters"));
    }
    let mut rest = template;
    while let Some(open) = rest.find(['{', '}']) {
        if rest[open..].starts_with('}') {
            return Err("a `}` without its `{`".into());
        }
        let after = &rest[open + 1..];
        let Some(close) = after.find('}') else {
            return Err("a `{` that is never closed".into());
        };
        let name = &after[..close];
        if !PLACEHOLDERS.contains(&name) {
            return Err(format!(
                "unknown placeholder `{{{name}}}` (known: {{rule}}, {{trigger}}, {{explanation}})"
            ));
        }
        rest = &after[close + 1..];
    }
    Ok(())
}

/// The reason of an action a rule proposes: the template (or the default) with its
/// placeholders filled in, cut to the longest reason an action may have.
pub fn render_reason(
    rule: &RuleRef,
    trigger: Trigger,
    template: &str,
    explanation: &str,
) -> String {
    let template = if template.is_empty() {
        DEFAULT_REASON_TEMPLATE
    } else {
        template
    };
    let text = template
        .replace("{rule}", &format!("{}@v{}", rule.id, rule.version))
        .replace("{trigger}", trigger.as_str())
        .replace("{explanation}", explanation);
    text.chars()
        .take(crate::loyalty::repo::MAX_REASON_LEN)
        .collect()
}

/// Checks the parts of a rule that are numbers: the SLA and the control share (violations at
/// `field.action.due_in` and `field.holdout.control_share`).
pub fn check_numbers(spec_due_in: Duration, control_share: f64, field: &str, v: &mut Violations) {
    if spec_due_in < MIN_DUE_IN || spec_due_in > MAX_DUE_IN {
        v.add(
            format!("{field}.action.due_in"),
            "must be from 1 minute to 365 days",
        );
    }
    if let Err(why) = guard::check_control_share(control_share) {
        v.add(format!("{field}.holdout.control_share"), why);
    }
}

/// What a rule does for one customer whose facts were evaluated.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// The condition is false: nothing.
    NotMatched,
    /// Matched, and held out: recorded as control, no action.
    HeldOut,
    /// Matched, and a guard rail refuses the action.
    Blocked(Eligibility),
    /// Matched: propose the action.
    Treat,
}

/// Decides for one customer: the condition first, then the holdout draw (so the control group
/// is drawn among the customers the rule targets, whatever the guard rails say later), then
/// the guard rails.
pub fn decide(
    rule_id: &str,
    holdout: Holdout,
    customer: crate::identifier::CustomerId,
    evaluation: &Evaluation,
    eligibility: impl FnOnce() -> Eligibility,
) -> Decision {
    if !evaluation.matched {
        return Decision::NotMatched;
    }
    if guard::in_holdout(rule_id, customer, holdout.control_share, holdout.seed) {
        return Decision::HeldOut;
    }
    let eligibility = eligibility();
    if eligibility.is_eligible() {
        Decision::Treat
    } else {
        Decision::Blocked(eligibility)
    }
}

/// The action a rule proposes for `customer` at `now`.
pub fn action_for(
    rule: &RuleRef,
    spec: &RuleSpec,
    customer: crate::identifier::CustomerId,
    explanation: &str,
    now: DateTime<Utc>,
) -> NewAction {
    let t = &spec.action;
    NewAction {
        customer,
        kind: t.kind.clone(),
        rule: Some(rule.clone()),
        reason: render_reason(rule, spec.trigger, &t.reason_template, explanation),
        channel: t.channel,
        value: t.value,
        campaign: t.campaign,
        due_at: now + Duration::seconds(t.due_in_seconds),
        assignee_team: t.assignee_team.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loyalty::condition::Facts;

    #[test]
    fn reason_templates_accept_only_known_placeholders() {
        assert!(check_reason_template("").is_ok());
        assert!(check_reason_template("NPS follow-up: {explanation} ({rule})").is_ok());
        assert!(check_reason_template("{trigger}").is_ok());
        let unknown = check_reason_template("hi {name}").expect_err("unknown placeholder");
        assert!(unknown.contains("{name}"), "{unknown}");
        assert!(check_reason_template("open { never closed").is_err());
        assert!(check_reason_template("closed } first").is_err());
        assert!(check_reason_template(&"x".repeat(MAX_REASON_TEMPLATE_LEN + 1)).is_err());
    }

    #[test]
    fn reasons_fill_in_the_rule_trigger_and_explanation() {
        let rule = RuleRef {
            id: "detractor-follow-up".into(),
            version: 3,
        };
        assert_eq!(
            render_reason(
                &rule,
                Trigger::SurveyNpsAtMost6,
                "",
                "nps.latest <= 6: true"
            ),
            "`detractor-follow-up@v3` (survey_nps_at_most_6): nps.latest <= 6: true"
        );
        assert_eq!(
            render_reason(&rule, Trigger::DailySweep, "call {rule} {rule}", "x"),
            "call detractor-follow-up@v3 detractor-follow-up@v3"
        );
        let long = render_reason(
            &rule,
            Trigger::DailySweep,
            "{explanation}",
            &"y".repeat(5000),
        );
        assert_eq!(long.chars().count(), crate::loyalty::repo::MAX_REASON_LEN);
    }

    #[test]
    fn conditions_compile_against_the_customer_facts_with_positions() {
        let ok = compile_condition(
            "category == \"negative\" && nps.latest <= 6",
            "rule.condition",
        );
        assert!(ok.is_ok());
        let errors =
            compile_condition("nps.lates <= 6", "rule.condition").expect_err("unknown fact");
        assert_eq!(errors[0].field, "rule.condition");
        assert!(errors[0].description.starts_with("1:1:"), "{errors:?}");
        assert!(errors[0].description.contains("nps.latest"), "{errors:?}");
    }

    #[test]
    fn numbers_are_checked_at_their_paths() {
        let mut v = Violations::new();
        check_numbers(Duration::hours(48), 0.1, "rule", &mut v);
        assert!(v.is_empty());
        check_numbers(Duration::seconds(5), 0.7, "rule", &mut v);
        let fields: Vec<String> = v.into_vec().into_iter().map(|f| f.field).collect();
        assert_eq!(
            fields,
            vec!["rule.action.due_in", "rule.holdout.control_share"]
        );
    }

    #[test]
    fn decisions_draw_the_holdout_among_matching_customers_before_the_guard_rails() {
        let condition = compile_condition("nps.latest <= 6", "c").expect("compiles");
        let low = condition.evaluate(&Facts::new().with("nps.latest", 3));
        let high = condition.evaluate(&Facts::new().with("nps.latest", 9));
        let customers: Vec<_> = (0..400)
            .map(|_| crate::identifier::CustomerId::generate())
            .collect();
        let share = Holdout {
            control_share: 0.25,
            seed: 7,
        };
        let mut held = 0;
        for c in &customers {
            assert_eq!(
                decide("r", share, *c, &high, || unreachable!("not matched")),
                Decision::NotMatched
            );
            match decide("r", share, *c, &low, Eligibility::default) {
                Decision::HeldOut => held += 1,
                Decision::Treat => {}
                other => panic!("unexpected {other:?}"),
            }
        }
        // A quarter, give or take what 400 draws allow.
        assert!((60..=140).contains(&held), "{held}");
        let none = Holdout {
            control_share: 0.0,
            seed: 7,
        };
        assert!(
            customers
                .iter()
                .all(|c| decide("r", none, *c, &low, Eligibility::default) == Decision::Treat)
        );
    }
}
