//! Wire types to the domain and back. Validation lives here, once: every function collects
//! every field violation of its part of the request (at its path) instead of stopping at the
//! first.

use chrono::{DateTime, Duration, Utc};
use cxhub_domain::Violations;
use cxhub_domain::identifier::CustomerId;
use cxhub_domain::loyalty::action::{ActionKind, ActionState, ContactChannel, CustomKind};
use cxhub_domain::loyalty::guard;
use cxhub_domain::loyalty::points::{Entry, EntryKind, MAX_ENTRY_POINTS};
use cxhub_domain::loyalty::repo::{
    Action, Campaign, DryRunTarget, MAX_CAMPAIGN_NAME_LEN, MAX_REASON_LEN, MAX_RULE_ID_LEN,
    MAX_TEAM_LEN, NewAction, NewCampaign, RulePatch, RuleRef, SweepReport,
};
use cxhub_domain::loyalty::rule::{
    self, ActionTemplate, Decision, Holdout, MAX_DUE_IN, MAX_RULE_NAME_LEN, MIN_DUE_IN, Rule,
    RuleLimits, RuleSpec, Trigger,
};
use cxhub_domain::money::{Currency, Money};
use cxhub_domain::touchpoint::Key;
use cxhub_proto::common::v1 as common;
use cxhub_proto::loyalty::v1 as pb;
use prost_types::Timestamp;

/// A customer id (required).
pub fn customer(id: &str, field: &str, v: &mut Violations) -> Option<CustomerId> {
    v.check(field, id.parse::<CustomerId>())
}

/// A kind from the enum and the custom name; `None` for unspecified when `required` is false.
pub fn kind(
    value: i32,
    custom: &str,
    field: &str,
    custom_field: &str,
    required: bool,
    v: &mut Violations,
) -> Option<Option<ActionKind>> {
    use pb::ActionKind as K;
    let kind = match K::try_from(value) {
        Ok(K::Unspecified) if !required && custom.is_empty() => return Some(None),
        Ok(K::Unspecified) => {
            v.add(field, "required: the kind of action");
            return None;
        }
        Ok(K::FollowUpCall) => ActionKind::FollowUpCall,
        Ok(K::Apology) => ActionKind::Apology,
        Ok(K::RetentionOffer) => ActionKind::RetentionOffer,
        Ok(K::GoodwillCredit) => ActionKind::GoodwillCredit,
        Ok(K::ReferralRequest) => ActionKind::ReferralRequest,
        Ok(K::SurveyInvitation) => ActionKind::SurveyInvitation,
        Ok(K::ServiceRecovery) => ActionKind::ServiceRecovery,
        Ok(K::TierUpgrade) => ActionKind::TierUpgrade,
        Ok(K::Custom) => {
            return v
                .check(custom_field, CustomKind::parse(custom))
                .map(|name| Some(ActionKind::Custom(name)));
        }
        Err(_) => {
            v.add(field, format!("unknown action kind {value}"));
            return None;
        }
    };
    if !custom.is_empty() {
        v.add(custom_field, "only for ACTION_KIND_CUSTOM");
        return None;
    }
    Some(Some(kind))
}

/// The wire kind and custom name of a kind.
pub fn kind_to_pb(kind: &ActionKind) -> (i32, String) {
    use pb::ActionKind as K;
    let k = match kind {
        ActionKind::FollowUpCall => K::FollowUpCall,
        ActionKind::Apology => K::Apology,
        ActionKind::RetentionOffer => K::RetentionOffer,
        ActionKind::GoodwillCredit => K::GoodwillCredit,
        ActionKind::ReferralRequest => K::ReferralRequest,
        ActionKind::SurveyInvitation => K::SurveyInvitation,
        ActionKind::ServiceRecovery => K::ServiceRecovery,
        ActionKind::TierUpgrade => K::TierUpgrade,
        ActionKind::Custom(name) => return (K::Custom as i32, name.as_str().to_owned()),
    };
    (k as i32, String::new())
}

/// A state; `None` for unspecified when `required` is false.
pub fn state(
    value: i32,
    field: &str,
    required: bool,
    v: &mut Violations,
) -> Option<Option<ActionState>> {
    use pb::ActionState as S;
    let state = match S::try_from(value) {
        Ok(S::Unspecified) if !required => return Some(None),
        Ok(S::Unspecified) => {
            v.add(field, "required: the state to move to");
            return None;
        }
        Ok(S::Proposed) => ActionState::Proposed,
        Ok(S::Approved) => ActionState::Approved,
        Ok(S::Sent) => ActionState::Sent,
        Ok(S::Accepted) => ActionState::Accepted,
        Ok(S::Declined) => ActionState::Declined,
        Ok(S::Expired) => ActionState::Expired,
        Ok(S::Redeemed) => ActionState::Redeemed,
        Ok(S::Cancelled) => ActionState::Cancelled,
        Err(_) => {
            v.add(field, format!("unknown action state {value}"));
            return None;
        }
    };
    Some(Some(state))
}

/// The wire state.
pub fn state_to_pb(state: ActionState) -> pb::ActionState {
    use pb::ActionState as S;
    match state {
        ActionState::Proposed => S::Proposed,
        ActionState::Approved => S::Approved,
        ActionState::Sent => S::Sent,
        ActionState::Accepted => S::Accepted,
        ActionState::Declined => S::Declined,
        ActionState::Expired => S::Expired,
        ActionState::Redeemed => S::Redeemed,
        ActionState::Cancelled => S::Cancelled,
    }
}

/// A contact channel (required).
pub fn channel(value: i32, field: &str, v: &mut Violations) -> Option<ContactChannel> {
    use pb::ContactChannel as C;
    match C::try_from(value) {
        Ok(C::Email) => Some(ContactChannel::Email),
        Ok(C::Sms) => Some(ContactChannel::Sms),
        Ok(C::Phone) => Some(ContactChannel::Phone),
        Ok(C::Letter) => Some(ContactChannel::Letter),
        Ok(C::Push) => Some(ContactChannel::Push),
        Ok(C::InApp) => Some(ContactChannel::InApp),
        Ok(C::Unspecified) => {
            v.add(field, "required: how the customer is reached");
            None
        }
        Err(_) => {
            v.add(field, format!("unknown contact channel {value}"));
            None
        }
    }
}

/// The wire channel.
pub fn channel_to_pb(channel: ContactChannel) -> pb::ContactChannel {
    use pb::ContactChannel as C;
    match channel {
        ContactChannel::Email => C::Email,
        ContactChannel::Sms => C::Sms,
        ContactChannel::Phone => C::Phone,
        ContactChannel::Letter => C::Letter,
        ContactChannel::Push => C::Push,
        ContactChannel::InApp => C::InApp,
    }
}

/// A timestamp (required when `required`).
pub fn time(
    t: Option<&Timestamp>,
    field: &str,
    required: bool,
    v: &mut Violations,
) -> Option<Option<DateTime<Utc>>> {
    match t {
        None if required => {
            v.add(field, "required");
            None
        }
        None => Some(None),
        Some(t) => match u32::try_from(t.nanos)
            .ok()
            .and_then(|n| DateTime::from_timestamp(t.seconds, n))
        {
            Some(t) => Some(Some(t)),
            None => {
                v.add(field, "not a valid timestamp");
                None
            }
        },
    }
}

/// A wire timestamp.
pub fn ts(t: DateTime<Utc>) -> Timestamp {
    Timestamp {
        seconds: t.timestamp(),
        nanos: i32::try_from(t.timestamp_subsec_nanos()).unwrap_or(0),
    }
}

/// A non-negative amount of money in a known currency.
pub fn money(m: &common::Money, field: &str, v: &mut Violations) -> Option<Money> {
    let currency = v.check(
        format!("{field}.currency_code"),
        Currency::parse(&m.currency_code),
    );
    if m.amount_minor < 0 {
        v.add(
            format!("{field}.amount_minor"),
            format!("must not be negative (got {})", m.amount_minor),
        );
        return None;
    }
    currency.map(|c| Money::new(m.amount_minor, c))
}

/// The wire money.
pub fn money_to_pb(m: Money) -> common::Money {
    common::Money {
        amount_minor: m.amount_minor,
        currency_code: m.currency.code().to_owned(),
    }
}

fn text(
    value: &str,
    field: &str,
    max: usize,
    required: bool,
    v: &mut Violations,
) -> Option<String> {
    let trimmed = value.trim();
    if required && trimmed.is_empty() {
        v.add(field, "required");
        return None;
    }
    if value.chars().count() > max {
        v.add(field, format!("at most {max} characters"));
        return None;
    }
    Some(trimmed.to_owned())
}

/// A proposed action; violations at `field.<name>`.
pub fn new_action(a: &pb::ActionInput, field: &str, v: &mut Violations) -> Option<NewAction> {
    let f = |name: &str| format!("{field}.{name}");
    let customer = customer(&a.customer_id, &f("customer_id"), v);
    let kind = kind(
        a.kind,
        &a.custom_kind,
        &f("kind"),
        &f("custom_kind"),
        true,
        v,
    )
    .flatten();
    let rule = match (a.rule_id.is_empty(), a.rule_version) {
        (true, 0) => Some(None),
        (true, _) => {
            v.add(f("rule_version"), "only with a rule_id");
            None
        }
        (false, version) if version <= 0 => {
            v.add(
                f("rule_version"),
                "required with a rule_id: a positive version",
            );
            None
        }
        (false, version) => text(&a.rule_id, &f("rule_id"), MAX_RULE_ID_LEN, true, v)
            .map(|id| Some(RuleRef { id, version })),
    };
    let reason = text(&a.reason, &f("reason"), MAX_REASON_LEN, true, v);
    let channel = channel(a.channel, &f("channel"), v);
    let value = match &a.value {
        None => Some(None),
        Some(m) => money(m, &f("value"), v).map(Some),
    };
    let campaign = if a.campaign_id.is_empty() {
        Some(None)
    } else {
        v.check(f("campaign_id"), a.campaign_id.parse()).map(Some)
    };
    let due_at = time(a.due_at.as_ref(), &f("due_at"), true, v).flatten();
    let team = text(&a.assignee_team, &f("assignee_team"), MAX_TEAM_LEN, true, v);
    Some(NewAction {
        customer: customer?,
        kind: kind?,
        rule: rule?,
        reason: reason?,
        channel: channel?,
        value: value?,
        campaign: campaign?,
        due_at: due_at?,
        assignee_team: team?,
    })
}

/// The wire action, with its SLA judged at `now`.
pub fn action_to_pb(a: Action, now: DateTime<Utc>) -> pb::Action {
    let sla_breached = a.sla_breached(now);
    let etag = a.etag();
    let n = a.action;
    let (kind, custom_kind) = kind_to_pb(&n.kind);
    pb::Action {
        id: a.id.to_string(),
        action: Some(pb::ActionInput {
            customer_id: n.customer.to_string(),
            kind,
            custom_kind,
            rule_id: n.rule.as_ref().map(|r| r.id.clone()).unwrap_or_default(),
            rule_version: n.rule.as_ref().map_or(0, |r| r.version),
            reason: n.reason,
            channel: channel_to_pb(n.channel) as i32,
            value: n.value.map(money_to_pb),
            campaign_id: n.campaign.map(|c| c.to_string()).unwrap_or_default(),
            due_at: Some(ts(n.due_at)),
            assignee_team: n.assignee_team,
        }),
        state: state_to_pb(a.state) as i32,
        sla_breached,
        etag,
        created_at: Some(ts(a.created_at)),
        updated_at: Some(ts(a.updated_at)),
        created_by: a.created_by,
        history: a
            .history
            .into_iter()
            .map(|t| pb::ActionTransition {
                from_state: state_to_pb(t.from) as i32,
                to_state: state_to_pb(t.to) as i32,
                principal: t.principal,
                at: Some(ts(t.at)),
            })
            .collect(),
        outcomes: a
            .outcomes
            .into_iter()
            .map(crate::executor::outcome_to_pb)
            .collect(),
    }
}

/// A campaign to create; violations at `campaign.<name>`.
pub fn new_campaign(c: &pb::Campaign, v: &mut Violations) -> Option<NewCampaign> {
    let key = v.check("campaign.key", Key::parse(&c.key));
    let name = text(&c.name, "campaign.name", MAX_CAMPAIGN_NAME_LEN, true, v);
    let budget = match &c.budget {
        None => {
            v.add(
                "campaign.budget",
                "required: the most the campaign may spend",
            );
            None
        }
        Some(m) => money(m, "campaign.budget", v),
    };
    Some(NewCampaign {
        key: key?,
        name: name?,
        budget: budget?,
    })
}

/// The wire campaign.
pub fn campaign_to_pb(c: Campaign) -> pb::Campaign {
    pb::Campaign {
        id: c.id.to_string(),
        key: c.key.as_str().to_owned(),
        name: c.name,
        budget: Some(money_to_pb(c.budget.limit)),
        spent: Some(money_to_pb(c.budget.spent)),
        reserved: Some(money_to_pb(c.budget.reserved)),
        created_at: Some(ts(c.created_at)),
    }
}

/// Points of one entry: 1 to [`MAX_ENTRY_POINTS`].
pub fn points(value: i64, v: &mut Violations) -> Option<i64> {
    if (1..=MAX_ENTRY_POINTS).contains(&value) {
        Some(value)
    } else {
        v.add(
            "points",
            format!("must be between 1 and {MAX_ENTRY_POINTS} (got {value})"),
        );
        None
    }
}

/// A transaction reference: 1 to 256 characters (required when `required`).
pub fn source_ref(value: &str, required: bool, v: &mut Violations) -> Option<Option<String>> {
    if value.is_empty() && !required {
        return Some(None);
    }
    if value.trim().is_empty() || value.len() > 256 {
        v.add(
            "source_ref",
            "required: 1 to 256 characters, the id of the transaction",
        );
        return None;
    }
    Some(Some(value.to_owned()))
}

/// The wire entry.
pub fn entry_to_pb(e: Entry) -> pb::PointsEntry {
    use pb::PointsEntryKind as K;
    let kind = match e.kind {
        EntryKind::Accrual => K::Accrual,
        EntryKind::Redemption => K::Redemption,
        EntryKind::Expiry => K::Expiry,
        EntryKind::Reversal => K::Reversal,
        EntryKind::Adjustment => K::Adjustment,
    };
    pb::PointsEntry {
        request_id: e.request_id,
        customer_id: e.customer.to_string(),
        kind: kind as i32,
        points: e.points,
        source_ref: e.source_ref.unwrap_or_default(),
        expires_at: e.expires_at.map(ts),
        shortfall: e.shortfall,
        posted_at: Some(ts(e.at)),
    }
}

// ------------------------------------------------------------------------------------------------
// Rules

/// A trigger (required).
pub fn trigger(value: i32, field: &str, v: &mut Violations) -> Option<Trigger> {
    use pb::RuleTrigger as T;
    match T::try_from(value) {
        Ok(T::DailySweep) => Some(Trigger::DailySweep),
        Ok(T::CategoryBecameNegative) => Some(Trigger::CategoryBecameNegative),
        Ok(T::CategoryBecameAdvocate) => Some(Trigger::CategoryBecameAdvocate),
        Ok(T::ChurnBandBecameHigh) => Some(Trigger::ChurnBandBecameHigh),
        Ok(T::SurveyNpsAtMost6) => Some(Trigger::SurveyNpsAtMost6),
        Ok(T::OrderDelivered) => Some(Trigger::OrderDelivered),
        Ok(T::PaymentFailed) => Some(Trigger::PaymentFailed),
        Ok(T::CaseClosed) => Some(Trigger::CaseClosed),
        Ok(T::SubscriptionDowngraded) => Some(Trigger::SubscriptionDowngraded),
        Ok(T::SubscriptionCancelled) => Some(Trigger::SubscriptionCancelled),
        Ok(T::Unspecified) => {
            v.add(field, "required: when the rule acts");
            None
        }
        Err(_) => {
            v.add(field, format!("unknown trigger {value}"));
            None
        }
    }
}

fn trigger_to_pb(trigger: Trigger) -> pb::RuleTrigger {
    use pb::RuleTrigger as T;
    match trigger {
        Trigger::DailySweep => T::DailySweep,
        Trigger::CategoryBecameNegative => T::CategoryBecameNegative,
        Trigger::CategoryBecameAdvocate => T::CategoryBecameAdvocate,
        Trigger::ChurnBandBecameHigh => T::ChurnBandBecameHigh,
        Trigger::SurveyNpsAtMost6 => T::SurveyNpsAtMost6,
        Trigger::OrderDelivered => T::OrderDelivered,
        Trigger::PaymentFailed => T::PaymentFailed,
        Trigger::CaseClosed => T::CaseClosed,
        Trigger::SubscriptionDowngraded => T::SubscriptionDowngraded,
        Trigger::SubscriptionCancelled => T::SubscriptionCancelled,
    }
}

/// A rule id (a key).
pub fn rule_id(id: &str, field: &str, v: &mut Violations) -> Option<Key> {
    if id.len() > MAX_RULE_ID_LEN {
        v.add(field, format!("at most {MAX_RULE_ID_LEN} characters"));
        return None;
    }
    v.check(field, Key::parse(id))
}

/// A rule's name (required).
pub fn rule_name(name: &str, field: &str, v: &mut Violations) -> Option<String> {
    text(name, field, MAX_RULE_NAME_LEN, true, v)
}

/// A condition, compiled against the customer facts; kept in canonical form.
pub fn condition(source: &str, field: &str, v: &mut Violations) -> Option<String> {
    if source.trim().is_empty() {
        v.add(field, "required: the condition in the rule language");
        return None;
    }
    match rule::compile_condition(source, field) {
        Ok(condition) => Some(condition.to_string()),
        Err(violations) => {
            for violation in violations {
                v.add(violation.field, violation.description);
            }
            None
        }
    }
}

/// An action template (required); violations at `field.<name>`.
pub fn template(
    t: Option<&pb::ActionTemplate>,
    field: &str,
    v: &mut Violations,
) -> Option<ActionTemplate> {
    let Some(t) = t else {
        v.add(field, "required: the action the rule proposes");
        return None;
    };
    let f = |name: &str| format!("{field}.{name}");
    let kind = kind(
        t.kind,
        &t.custom_kind,
        &f("kind"),
        &f("custom_kind"),
        true,
        v,
    )
    .flatten();
    let channel = channel(t.channel, &f("channel"), v);
    let value = match &t.value {
        None => Some(None),
        Some(m) => money(m, &f("value"), v).map(Some),
    };
    let campaign = if t.campaign_id.is_empty() {
        Some(None)
    } else {
        v.check(f("campaign_id"), t.campaign_id.parse()).map(Some)
    };
    let due_in = match &t.due_in {
        None => {
            v.add(
                f("due_in"),
                "required: how long after it is proposed each action is due",
            );
            None
        }
        Some(d) => {
            let seconds = Duration::seconds(d.seconds);
            if d.nanos != 0 || seconds < MIN_DUE_IN || seconds > MAX_DUE_IN {
                v.add(
                    f("due_in"),
                    "must be whole seconds, from 1 minute to 365 days",
                );
                None
            } else {
                Some(d.seconds)
            }
        }
    };
    let team = text(&t.assignee_team, &f("assignee_team"), MAX_TEAM_LEN, true, v);
    let reason = v
        .check(
            f("reason_template"),
            rule::check_reason_template(&t.reason_template),
        )
        .map(|()| t.reason_template.clone());
    Some(ActionTemplate {
        kind: kind?,
        channel: channel?,
        value: value?,
        campaign: campaign?,
        due_in_seconds: due_in?,
        assignee_team: team?,
        reason_template: reason?,
    })
}

/// Limits; unset means none.
pub fn limits(l: Option<&pb::RuleLimits>, field: &str, v: &mut Violations) -> Option<RuleLimits> {
    let Some(l) = l else {
        return Some(RuleLimits::default());
    };
    let mut one = |value: i32, name: &str| match u32::try_from(value) {
        Ok(0) => Some(None),
        Ok(n) => Some(Some(n)),
        Err(_) => {
            v.add(
                format!("{field}.{name}"),
                "must not be negative (0: no limit)",
            );
            None
        }
    };
    let per_run = one(l.max_actions_per_run, "max_actions_per_run");
    let per_day = one(l.max_actions_per_day, "max_actions_per_day");
    Some(RuleLimits {
        max_per_run: per_run?,
        max_per_day: per_day?,
    })
}

/// A holdout; unset means nobody is held out.
pub fn holdout(h: Option<&pb::Holdout>, field: &str, v: &mut Violations) -> Option<Holdout> {
    let Some(h) = h else {
        return Some(Holdout::default());
    };
    v.check(
        format!("{field}.control_share"),
        guard::check_control_share(h.control_share),
    )
    .map(|()| Holdout {
        control_share: h.control_share,
        seed: h.seed,
    })
}

/// A whole rule definition; violations at `field.<name>`.
pub fn rule_spec(r: &pb::Rule, field: &str, v: &mut Violations) -> Option<RuleSpec> {
    let f = |name: &str| format!("{field}.{name}");
    let name = rule_name(&r.name, &f("name"), v);
    let trigger = trigger(r.trigger, &f("trigger"), v);
    let condition = condition(&r.condition, &f("condition"), v);
    let action = template(r.action.as_ref(), &f("action"), v);
    let limits = limits(r.limits.as_ref(), &f("limits"), v);
    let holdout = holdout(r.holdout.as_ref(), &f("holdout"), v);
    Some(RuleSpec {
        name: name?,
        trigger: trigger?,
        condition: condition?,
        action: action?,
        limits: limits?,
        holdout: holdout?,
        enabled: r.enabled,
    })
}

/// The fields of `r` named in `mask` (every field for an empty mask); violations at
/// `field.<name>`, unknown paths at `update_mask`.
pub fn rule_patch(
    r: &pb::Rule,
    mask: &[String],
    field: &str,
    v: &mut Violations,
) -> Option<RulePatch> {
    if mask.is_empty() {
        let spec = rule_spec(r, field, v)?;
        return Some(RulePatch {
            name: Some(spec.name),
            trigger: Some(spec.trigger),
            condition: Some(spec.condition),
            action: Some(spec.action),
            limits: Some(spec.limits),
            holdout: Some(spec.holdout),
            enabled: Some(spec.enabled),
        });
    }
    let f = |name: &str| format!("{field}.{name}");
    let mut patch = RulePatch::default();
    let mut ok = true;
    for path in mask {
        let good = match path.as_str() {
            "name" => rule_name(&r.name, &f("name"), v).map(|x| patch.name = Some(x)),
            "trigger" => trigger(r.trigger, &f("trigger"), v).map(|x| patch.trigger = Some(x)),
            "condition" => {
                condition(&r.condition, &f("condition"), v).map(|x| patch.condition = Some(x))
            }
            "action" => {
                template(r.action.as_ref(), &f("action"), v).map(|x| patch.action = Some(x))
            }
            "limits" => limits(r.limits.as_ref(), &f("limits"), v).map(|x| patch.limits = Some(x)),
            "holdout" => {
                holdout(r.holdout.as_ref(), &f("holdout"), v).map(|x| patch.holdout = Some(x))
            }
            "enabled" => {
                patch.enabled = Some(r.enabled);
                Some(())
            }
            other => {
                v.add(
                    "update_mask",
                    format!(
                        "unknown field `{other}` (known: name, trigger, condition, action, limits, holdout, enabled)"
                    ),
                );
                None
            }
        };
        ok &= good.is_some();
    }
    ok.then_some(patch)
}

fn template_to_pb(t: ActionTemplate) -> pb::ActionTemplate {
    let (kind, custom_kind) = kind_to_pb(&t.kind);
    pb::ActionTemplate {
        kind,
        custom_kind,
        channel: channel_to_pb(t.channel) as i32,
        value: t.value.map(money_to_pb),
        campaign_id: t.campaign.map(|c| c.to_string()).unwrap_or_default(),
        due_in: Some(prost_types::Duration {
            seconds: t.due_in_seconds,
            nanos: 0,
        }),
        assignee_team: t.assignee_team,
        reason_template: t.reason_template,
    }
}

fn limit_to_pb(limit: Option<u32>) -> i32 {
    limit.map_or(0, |n| i32::try_from(n).unwrap_or(i32::MAX))
}

/// The wire rule.
pub fn rule_to_pb(r: Rule) -> pb::Rule {
    let etag = r.etag();
    let s = r.spec;
    pb::Rule {
        id: r.id.as_str().to_owned(),
        version: r.version,
        name: s.name,
        trigger: trigger_to_pb(s.trigger) as i32,
        condition: s.condition,
        action: Some(template_to_pb(s.action)),
        limits: Some(pb::RuleLimits {
            max_actions_per_run: limit_to_pb(s.limits.max_per_run),
            max_actions_per_day: limit_to_pb(s.limits.max_per_day),
        }),
        holdout: Some(pb::Holdout {
            control_share: s.holdout.control_share,
            seed: s.holdout.seed,
        }),
        enabled: s.enabled,
        etag,
        created_by: r.created_by,
        created_at: Some(ts(r.created_at)),
    }
}

/// The wire dry-run target.
pub fn dry_run_target_to_pb(t: DryRunTarget) -> pb::DryRunTarget {
    use pb::DryRunOutcome as O;
    let (outcome, blocked_by, blocked_message) = match t.decision {
        Decision::Treat | Decision::NotMatched => (O::Treated, Vec::new(), String::new()),
        Decision::HeldOut => (O::HeldOut, Vec::new(), String::new()),
        Decision::Blocked(eligibility) => (
            O::Blocked,
            eligibility
                .reasons
                .iter()
                .map(|r| r.reason().to_owned())
                .collect(),
            eligibility
                .reasons
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; "),
        ),
    };
    let action = NewActionView(t.action).into_pb();
    pb::DryRunTarget {
        customer_id: t.customer.to_string(),
        outcome: outcome as i32,
        action: Some(action),
        explanation: t.explanation,
        blocked_by,
        blocked_message,
    }
}

/// A proposed action on the wire (the input part of an action).
struct NewActionView(NewAction);

impl NewActionView {
    fn into_pb(self) -> pb::ActionInput {
        let n = self.0;
        let (kind, custom_kind) = kind_to_pb(&n.kind);
        pb::ActionInput {
            customer_id: n.customer.to_string(),
            kind,
            custom_kind,
            rule_id: n.rule.as_ref().map(|r| r.id.clone()).unwrap_or_default(),
            rule_version: n.rule.as_ref().map_or(0, |r| r.version),
            reason: n.reason,
            channel: channel_to_pb(n.channel) as i32,
            value: n.value.map(money_to_pb),
            campaign_id: n.campaign.map(|c| c.to_string()).unwrap_or_default(),
            due_at: Some(ts(n.due_at)),
            assignee_team: n.assignee_team,
        }
    }
}

/// The wire sweep result.
pub fn sweep_to_pb(r: SweepReport) -> pb::RuleSweepResult {
    let n = |x: u64| i64::try_from(x).unwrap_or(i64::MAX);
    pb::RuleSweepResult {
        rule_id: r.rule_id,
        rule_version: r.rule_version,
        run_day: r.run_day,
        scanned: n(r.scanned),
        matched: n(r.matched),
        proposed: n(r.proposed),
        held_out: n(r.held_out),
        blocked: n(r.blocked),
        already_done: n(r.already_done),
        over_limit: n(r.over_limit),
    }
}
