//! Wire types to the domain and back. Validation lives here, once: every function collects
//! every field violation of its part of the request (at its path) instead of stopping at the
//! first.

use chrono::{DateTime, Utc};
use cxhub_domain::Violations;
use cxhub_domain::identifier::CustomerId;
use cxhub_domain::loyalty::action::{ActionKind, ActionState, ContactChannel, CustomKind};
use cxhub_domain::loyalty::points::{Entry, EntryKind, MAX_ENTRY_POINTS};
use cxhub_domain::loyalty::repo::{
    Action, Campaign, MAX_CAMPAIGN_NAME_LEN, MAX_REASON_LEN, MAX_RULE_ID_LEN, MAX_TEAM_LEN,
    NewAction, NewCampaign, RuleRef,
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
