//! Loyalty actions: what the company does for a customer (a follow-up call, an apology, a
//! retention offer…), which consent each kind needs, and the lifecycle every action goes through:
//!
//! ```text
//! PROPOSED → APPROVED → SENT → ACCEPTED → REDEEMED
//!                           ↘ DECLINED
//!                           ↘ EXPIRED
//! PROPOSED | APPROVED | SENT → CANCELLED
//! ```
//!
//! Plus the two clocks of an action: its SLA (`due_at`, by when the company must have sent or
//! performed it) and, once sent, the expiry of the offer.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Violations};
use crate::text_enum::text_enum;

/// Longest name of a custom action kind.
pub const MAX_CUSTOM_KIND_LEN: usize = 64;

/// The name of a custom action kind: 1 to 64 characters of `a-z`, `0-9` and `_`, starting with a
/// letter, e.g. `birthday_gift`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CustomKind(String);

impl CustomKind {
    /// Checks and wraps a custom kind name; the error is a sentence for a field violation.
    pub fn parse(name: &str) -> Result<Self, String> {
        if name.is_empty() {
            return Err(
                "required: the name of the custom action kind, e.g. `birthday_gift`".into(),
            );
        }
        if name.len() > MAX_CUSTOM_KIND_LEN {
            return Err(format!("at most {MAX_CUSTOM_KIND_LEN} characters"));
        }
        if !name.starts_with(|c: char| c.is_ascii_lowercase()) {
            return Err(format!(
                "`{name}` must start with a lowercase letter, e.g. `birthday_gift`"
            ));
        }
        if let Some(bad) = name
            .chars()
            .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_'))
        {
            return Err(format!(
                "only lowercase letters, digits and `_` are allowed, e.g. `birthday_gift` (found `{bad}`)"
            ));
        }
        Ok(Self(name.to_owned()))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// What kind of action the company takes.
///
/// Stored and serialised as stable text: `follow_up_call`, `apology`, `retention_offer`,
/// `goodwill_credit`, `referral_request`, `survey_invitation`, `service_recovery`,
/// `tier_upgrade`, and `custom:<name>` for a custom kind.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum ActionKind {
    /// A call to the customer, typically a detractor, to close the loop.
    FollowUpCall,
    /// An apology for something the company got wrong.
    Apology,
    /// An offer (discount, bonus, gift) to keep a customer at risk of leaving.
    RetentionOffer,
    /// A gift or goodwill credit after a failure that was the company's fault.
    GoodwillCredit,
    /// A request to an advocate to recommend the company.
    ReferralRequest,
    /// An invitation to answer a short survey.
    SurveyInvitation,
    /// After-sales service: warranty, repair, installation, replacement.
    ServiceRecovery,
    /// An upgrade of the customer's tier in the loyalty programme.
    TierUpgrade,
    /// A kind the company defines itself.
    Custom(CustomKind),
}

impl ActionKind {
    /// Every built-in kind, in declaration order.
    pub const BUILT_IN: &'static [ActionKind] = &[
        ActionKind::FollowUpCall,
        ActionKind::Apology,
        ActionKind::RetentionOffer,
        ActionKind::GoodwillCredit,
        ActionKind::ReferralRequest,
        ActionKind::SurveyInvitation,
        ActionKind::ServiceRecovery,
        ActionKind::TierUpgrade,
    ];

    /// The stable text of a built-in kind, or the name of a custom kind (without `custom:`).
    pub fn as_str(&self) -> &str {
        match self {
            ActionKind::FollowUpCall => "follow_up_call",
            ActionKind::Apology => "apology",
            ActionKind::RetentionOffer => "retention_offer",
            ActionKind::GoodwillCredit => "goodwill_credit",
            ActionKind::ReferralRequest => "referral_request",
            ActionKind::SurveyInvitation => "survey_invitation",
            ActionKind::ServiceRecovery => "service_recovery",
            ActionKind::TierUpgrade => "tier_upgrade",
            ActionKind::Custom(name) => name.as_str(),
        }
    }

    /// Parses the stable text (see [`ActionKind`]); the error is a sentence for a field violation.
    pub fn parse(text: &str) -> Result<Self, String> {
        if let Some(name) = text.strip_prefix("custom:") {
            return CustomKind::parse(name).map(ActionKind::Custom);
        }
        ActionKind::BUILT_IN
            .iter()
            .find(|k| k.as_str() == text)
            .cloned()
            .ok_or_else(|| {
                format!(
                    "unknown action kind `{text}`: expected one of {} or `custom:<name>`",
                    ActionKind::BUILT_IN
                        .iter()
                        .map(|k| format!("`{}`", k.as_str()))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            })
    }

    /// The consent the customer must have given before the company takes this action, or `None`
    /// when the action is a service to the customer rather than marketing.
    ///
    /// | kind | consent |
    /// | --- | --- |
    /// | follow-up call, apology, service recovery | none: closing the loop after a complaint and after-sales service are service contacts, not marketing |
    /// | goodwill credit | none: compensation for the company's own failure is service recovery |
    /// | retention offer, referral request | [`ConsentPurpose::Marketing`]: they promote the company |
    /// | tier upgrade | [`ConsentPurpose::Marketing`]: an upgrade granted as an action is a promotional incentive (the upgrade a customer earns by points needs no action) |
    /// | survey invitation | [`ConsentPurpose::Surveys`] |
    /// | custom | [`ConsentPurpose::Marketing`]: a kind the hub does not know is treated as marketing, the safe side |
    pub fn required_consent(&self) -> Option<ConsentPurpose> {
        required_consent(self)
    }

    /// Whether this kind is marketing, i.e. needs marketing consent.
    pub fn is_marketing(&self) -> bool {
        self.required_consent() == Some(ConsentPurpose::Marketing)
    }
}

/// The consent `kind` needs; see [`ActionKind::required_consent`] for the mapping and why.
pub fn required_consent(kind: &ActionKind) -> Option<ConsentPurpose> {
    match kind {
        ActionKind::FollowUpCall
        | ActionKind::Apology
        | ActionKind::ServiceRecovery
        | ActionKind::GoodwillCredit => None,
        ActionKind::RetentionOffer
        | ActionKind::ReferralRequest
        | ActionKind::TierUpgrade
        | ActionKind::Custom(_) => Some(ConsentPurpose::Marketing),
        ActionKind::SurveyInvitation => Some(ConsentPurpose::Surveys),
    }
}

impl fmt::Display for ActionKind {
    /// The stable text: `retention_offer`, `custom:birthday_gift`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let ActionKind::Custom(name) = self {
            write!(f, "custom:{}", name.as_str())
        } else {
            f.write_str(self.as_str())
        }
    }
}

impl FromStr for ActionKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Self::parse(s)
    }
}

impl TryFrom<String> for ActionKind {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        Self::parse(&s)
    }
}

impl From<ActionKind> for String {
    fn from(kind: ActionKind) -> String {
        kind.to_string()
    }
}

text_enum!(
    /// What a customer can consent to (or refuse), per contact channel.
    ConsentPurpose {
        /// Being sent offers and promotions.
        Marketing = "MARKETING",
        /// Having their behaviour analysed in aggregate.
        Analytics = "ANALYTICS",
        /// Being invited to surveys.
        Surveys = "SURVEYS",
        /// Being profiled individually (scores, segments used to target them).
        Profiling = "PROFILING",
    }
);

/// How the company reaches the customer with an action. Distinct from the touchpoint
/// [`Channel`](crate::touchpoint::Channel) (where customer and company meet): consent is given per
/// outbound channel, and SMS and push notifications are channels of their own there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ContactChannel {
    /// E-mail.
    Email,
    /// Text message.
    Sms,
    /// A phone call.
    Phone,
    /// A letter.
    Letter,
    /// A push notification of the mobile app.
    Push,
    /// A message inside the app or the website, seen when the customer logs in.
    InApp,
}

impl ContactChannel {
    /// The stable text, e.g. `EMAIL`.
    pub fn as_str(self) -> &'static str {
        match self {
            ContactChannel::Email => "EMAIL",
            ContactChannel::Sms => "SMS",
            ContactChannel::Phone => "PHONE",
            ContactChannel::Letter => "LETTER",
            ContactChannel::Push => "PUSH",
            ContactChannel::InApp => "IN_APP",
        }
    }
}

impl fmt::Display for ContactChannel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where an action is in its lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ActionState {
    /// A rule (or a person) proposed it; nothing was done yet.
    Proposed,
    /// Approved (by a person or automatically); waiting to be sent or performed.
    Approved,
    /// Sent to the customer (or performed, for a call); waiting for the customer.
    Sent,
    /// The customer accepted the offer.
    Accepted,
    /// The customer declined.
    Declined,
    /// The customer did not answer before the offer expired.
    Expired,
    /// The customer used what they accepted (the voucher, the credit).
    Redeemed,
    /// Withdrawn by the company before the customer answered.
    Cancelled,
}

impl ActionState {
    /// Every state, in lifecycle order.
    pub const ALL: &'static [ActionState] = &[
        ActionState::Proposed,
        ActionState::Approved,
        ActionState::Sent,
        ActionState::Accepted,
        ActionState::Declined,
        ActionState::Expired,
        ActionState::Redeemed,
        ActionState::Cancelled,
    ];

    /// The stable text, e.g. `PROPOSED`.
    pub fn as_str(self) -> &'static str {
        match self {
            ActionState::Proposed => "PROPOSED",
            ActionState::Approved => "APPROVED",
            ActionState::Sent => "SENT",
            ActionState::Accepted => "ACCEPTED",
            ActionState::Declined => "DECLINED",
            ActionState::Expired => "EXPIRED",
            ActionState::Redeemed => "REDEEMED",
            ActionState::Cancelled => "CANCELLED",
        }
    }

    /// The states an action in this state may move to (empty for a terminal state).
    pub fn next_states(self) -> &'static [ActionState] {
        use ActionState::*;
        match self {
            Proposed => &[Approved, Cancelled],
            Approved => &[Sent, Cancelled],
            Sent => &[Accepted, Declined, Expired, Cancelled],
            Accepted => &[Redeemed],
            Declined | Expired | Redeemed | Cancelled => &[],
        }
    }

    /// Whether no transition leaves this state: DECLINED, EXPIRED, REDEEMED, CANCELLED.
    /// (ACCEPTED is not terminal: what was accepted may still be redeemed.)
    pub fn is_terminal(self) -> bool {
        self.next_states().is_empty()
    }

    /// Whether the company still has to act: PROPOSED or APPROVED, i.e. not yet sent. The SLA
    /// runs in these states; once the action is SENT the customer has the next move.
    pub fn awaits_company(self) -> bool {
        matches!(self, ActionState::Proposed | ActionState::Approved)
    }
}

impl fmt::Display for ActionState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ActionState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        ActionState::ALL
            .iter()
            .copied()
            .find(|state| state.as_str() == s)
            .ok_or_else(|| format!("unknown action state `{s}`"))
    }
}

/// Checks that an action may move from `from` to `to`. An illegal move is refused with
/// `FAILED_PRECONDITION` and reason `ILLEGAL_TRANSITION`, naming both states and the legal next
/// states.
pub fn transition(from: ActionState, to: ActionState) -> Result<(), Error> {
    if from.next_states().contains(&to) {
        return Ok(());
    }
    Err(Error::precondition(
        "ILLEGAL_TRANSITION",
        illegal_transition_message(from, to),
    ))
}

fn illegal_transition_message(from: ActionState, to: ActionState) -> String {
    let next = from.next_states();
    if next.is_empty() {
        format!("an action cannot move from {from} to {to}: {from} is final, no state follows it")
    } else {
        let names: Vec<_> = next.iter().map(|s| s.as_str()).collect();
        format!(
            "an action cannot move from {from} to {to}: from {from} it can only move to {}",
            names.join(", ")
        )
    }
}

/// One recorded move of an action: from which state to which, by whom, when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transition {
    /// The state before.
    pub from: ActionState,
    /// The state after.
    pub to: ActionState,
    /// Who made the move (a user, a rule, an executor service).
    pub principal: String,
    /// When.
    pub at: DateTime<Utc>,
}

/// Checks a recorded history of an action (field `transitions`) and returns the state it leaves
/// the action in. An action is created PROPOSED, so the history must be a path from PROPOSED:
/// each move starts where the previous one ended, is legal, is made by a named principal, and is
/// not earlier than the previous one. Every problem is reported (`INVALID_ARGUMENT`), not just
/// the first. An empty history leaves the action PROPOSED.
pub fn check_history(transitions: &[Transition]) -> Result<ActionState, Error> {
    let mut v = Violations::new();
    let mut state = ActionState::Proposed;
    let mut last_at: Option<DateTime<Utc>> = None;
    for (i, t) in transitions.iter().enumerate() {
        if t.from != state {
            v.add(
                format!("transitions[{i}].from"),
                format!(
                    "the action was {state} at this point, but this move starts from {}",
                    t.from
                ),
            );
        }
        if !t.from.next_states().contains(&t.to) {
            v.add(
                format!("transitions[{i}].to"),
                illegal_transition_message(t.from, t.to),
            );
        }
        if t.principal.trim().is_empty() {
            v.add(
                format!("transitions[{i}].principal"),
                "required: who made the move",
            );
        }
        if let Some(last) = last_at
            && t.at < last
        {
            v.add(
                format!("transitions[{i}].at"),
                format!("{} is earlier than the previous move at {last}", t.at),
            );
        }
        last_at = Some(t.at);
        state = t.to;
    }
    v.into_result().map(|()| state)
}

/// Whether an action in `state` has missed its SLA at `now`: the company still has to act on it
/// (PROPOSED or APPROVED, see [`ActionState::awaits_company`]) and `now` is after `due_at`. An
/// action that is exactly due is not yet late.
pub fn sla_breached(state: ActionState, due_at: DateTime<Utc>, now: DateTime<Utc>) -> bool {
    state.awaits_company() && now > due_at
}

/// Whether a SENT action whose offer expires at `expires_at` should move to EXPIRED at `now`:
/// it is still SENT and `now` is at or after the expiry. Actions in any other state, and offers
/// without an expiry, never expire.
pub fn offer_expired(
    state: ActionState,
    expires_at: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> bool {
    state == ActionState::Sent && expires_at.is_some_and(|expires_at| now >= expires_at)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use chrono::TimeZone;

    fn t(hour: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2025, 3, 1, hour, 0, 0).unwrap()
    }

    fn mv(from: ActionState, to: ActionState, hour: u32) -> Transition {
        Transition {
            from,
            to,
            principal: "rule:detractor-follow-up".into(),
            at: t(hour),
        }
    }

    #[test]
    fn legal_lifecycle_moves_are_accepted() {
        use ActionState::*;
        for (from, to) in [
            (Proposed, Approved),
            (Approved, Sent),
            (Sent, Accepted),
            (Sent, Declined),
            (Sent, Expired),
            (Accepted, Redeemed),
            (Proposed, Cancelled),
            (Approved, Cancelled),
            (Sent, Cancelled),
        ] {
            assert!(transition(from, to).is_ok(), "{from} → {to}");
        }
    }

    #[test]
    fn illegal_moves_are_refused_naming_both_states_and_the_legal_ones() {
        use ActionState::*;
        let mut refused = 0;
        for &from in ActionState::ALL {
            for &to in ActionState::ALL {
                if from.next_states().contains(&to) {
                    continue;
                }
                refused += 1;
                match transition(from, to) {
                    Err(Error::FailedPrecondition { reason, message }) => {
                        assert_eq!(reason, "ILLEGAL_TRANSITION");
                        assert!(message.contains(from.as_str()), "{message}");
                        assert!(message.contains(to.as_str()), "{message}");
                        for next in from.next_states() {
                            assert!(message.contains(next.as_str()), "{message}");
                        }
                    }
                    other => panic!("{from} → {to}: {other:?}"),
                }
            }
        }
        assert_eq!(refused, 64 - 9);
        let Err(Error::FailedPrecondition { message, .. }) = transition(Sent, Proposed) else {
            panic!("SENT → PROPOSED must be refused");
        };
        assert_eq!(
            message,
            "an action cannot move from SENT to PROPOSED: from SENT it can only move to ACCEPTED, DECLINED, EXPIRED, CANCELLED"
        );
        let Err(Error::FailedPrecondition { message, .. }) = transition(Redeemed, Cancelled) else {
            panic!("REDEEMED → CANCELLED must be refused");
        };
        assert!(message.contains("REDEEMED is final"), "{message}");
    }

    #[test]
    fn terminal_states_are_the_ones_nothing_leaves() {
        let terminal: Vec<_> = ActionState::ALL
            .iter()
            .filter(|s| s.is_terminal())
            .map(|s| s.as_str())
            .collect();
        assert_eq!(terminal, ["DECLINED", "EXPIRED", "REDEEMED", "CANCELLED"]);
        assert!(!ActionState::Accepted.is_terminal());
    }

    #[test]
    fn a_valid_history_ends_in_its_last_state() {
        use ActionState::*;
        assert_eq!(check_history(&[]).unwrap(), Proposed);
        let history = [
            mv(Proposed, Approved, 1),
            mv(Approved, Sent, 2),
            mv(Sent, Accepted, 2),
            mv(Accepted, Redeemed, 5),
        ];
        assert_eq!(check_history(&history).unwrap(), Redeemed);
    }

    #[test]
    fn a_broken_history_reports_every_problem() {
        use ActionState::*;
        let mut anonymous = mv(Sent, Declined, 3);
        anonymous.principal = " ".into();
        let history = [
            mv(Approved, Sent, 1), // does not start at PROPOSED
            mv(Sent, Redeemed, 2), // illegal
            anonymous,             // starts from SENT, but the action is REDEEMED; no principal
            mv(Declined, Sent, 0), // illegal and earlier than the previous move
        ];
        let Err(Error::InvalidArgument { violations, .. }) = check_history(&history) else {
            panic!("expected INVALID_ARGUMENT");
        };
        let fields: Vec<_> = violations.iter().map(|v| v.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "transitions[0].from",
                "transitions[1].to",
                "transitions[2].from",
                "transitions[2].principal",
                "transitions[3].to",
                "transitions[3].at",
            ]
        );
    }

    #[test]
    fn the_sla_runs_until_the_action_is_sent() {
        use ActionState::*;
        let due = t(10);
        assert!(!sla_breached(Proposed, due, t(10)));
        assert!(sla_breached(Proposed, due, t(11)));
        assert!(sla_breached(Approved, due, t(11)));
        for state in [Sent, Accepted, Declined, Expired, Redeemed, Cancelled] {
            assert!(!sla_breached(state, due, t(23)), "{state}");
        }
    }

    #[test]
    fn only_sent_offers_past_their_expiry_expire() {
        use ActionState::*;
        let expires = Some(t(12));
        assert!(!offer_expired(Sent, expires, t(11)));
        assert!(offer_expired(Sent, expires, t(12)));
        assert!(!offer_expired(Sent, None, t(23)));
        assert!(!offer_expired(Accepted, expires, t(23)));
        assert!(!offer_expired(Approved, expires, t(23)));
    }

    #[test]
    fn consent_mapping_keeps_service_contacts_free_of_marketing_consent() {
        use ActionKind::*;
        for kind in [FollowUpCall, Apology, ServiceRecovery, GoodwillCredit] {
            assert_eq!(kind.required_consent(), None, "{kind}");
            assert!(!kind.is_marketing());
        }
        for kind in [RetentionOffer, ReferralRequest, TierUpgrade] {
            assert_eq!(kind.required_consent(), Some(ConsentPurpose::Marketing));
            assert!(kind.is_marketing());
        }
        assert_eq!(
            SurveyInvitation.required_consent(),
            Some(ConsentPurpose::Surveys)
        );
        assert!(!SurveyInvitation.is_marketing());
        let custom = Custom(CustomKind::parse("birthday_gift").unwrap());
        assert!(custom.is_marketing());
    }

    #[test]
    fn kinds_round_trip_through_their_text() {
        for kind in ActionKind::BUILT_IN {
            assert_eq!(ActionKind::parse(&kind.to_string()).unwrap(), *kind);
        }
        let custom = ActionKind::parse("custom:birthday_gift").unwrap();
        assert_eq!(custom.to_string(), "custom:birthday_gift");
        let json = serde_json::to_string(&custom).unwrap();
        assert_eq!(json, r#""custom:birthday_gift""#);
        assert_eq!(serde_json::from_str::<ActionKind>(&json).unwrap(), custom);
        assert!(serde_json::from_str::<ActionKind>(r#""custom:Bad Name""#).is_err());
        for (text, says) in [
            ("gift", "unknown action kind"),
            ("custom:", "required"),
            ("custom:9lives", "must start with a lowercase letter"),
            ("custom:birthday-gift", "found `-`"),
        ] {
            let err = ActionKind::parse(text).unwrap_err();
            assert!(err.contains(says), "{text}: {err}");
        }
        assert!(ActionKind::parse(&format!("custom:{}", "a".repeat(65))).is_err());
    }

    #[test]
    fn states_round_trip_through_their_text() {
        for state in ActionState::ALL {
            assert_eq!(state.as_str().parse::<ActionState>().unwrap(), *state);
        }
        assert!("proposed".parse::<ActionState>().is_err());
    }
}
