//! What the executors of loyalty actions (the services that call, mail or credit) see and say:
//! the ordered log of action events they stream (`WatchActions`), with resume tokens, and the
//! outcomes they report (`ReportActionOutcome`).
//!
//! The event log works like the customer change log ([`crate::change`]): one entry per move of
//! an action (its proposal included), written in the transaction of the move, numbered in
//! commit order; a resume token names the last position a consumer has seen; entries older
//! than the retention are pruned behind a recorded horizon, and a token from before the horizon
//! is refused (`OUT_OF_RANGE`) instead of silently skipping what was pruned.

use std::collections::BTreeSet;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result, Violations};
use crate::loyalty::action::{self, ActionKind, ActionState, ContactChannel};
use crate::loyalty::repo::{Action, ActionId};

/// Longest reason of an outcome.
pub const MAX_OUTCOME_REASON_LEN: usize = 500;
/// Longest external reference of an outcome.
pub const MAX_EXTERNAL_REF_LEN: usize = 256;
/// Longest note of an outcome.
pub const MAX_NOTE_LEN: usize = 2000;

/// One move of an action as the event log holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActionEvent {
    /// Its position in the log.
    pub seq: i64,
    /// The action that moved.
    pub action_id: ActionId,
    /// The state it moved from; `None` for its proposal.
    pub from: Option<ActionState>,
    /// The state it moved into.
    pub to: ActionState,
    /// Who moved it.
    pub principal: String,
    /// When the move was committed (the writer's clock).
    pub at: DateTime<Utc>,
}

/// An event with the action as it is when read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventWithAction {
    /// The event.
    pub event: ActionEvent,
    /// The action now (its state may be past the event's).
    pub action: Action,
}

/// Which events an executor wants. The team is required; every other field narrows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventFilter {
    /// The assignee team of the actions.
    pub team: String,
    /// Only actions of these kinds (and every custom kind with `any_custom`); all when both
    /// are empty.
    pub kinds: BTreeSet<ActionKind>,
    /// Every custom kind passes (the executor asked for ACTION_KIND_CUSTOM).
    pub any_custom: bool,
    /// Only actions on these channels; all when empty.
    pub channels: BTreeSet<ContactChannel>,
    /// Only moves into these states; never empty (APPROVED by default).
    pub states: BTreeSet<ActionState>,
}

impl EventFilter {
    /// A filter of `team`'s approvals: what is ready to be performed.
    pub fn approvals_of(team: &str) -> Self {
        Self {
            team: team.to_owned(),
            kinds: BTreeSet::new(),
            any_custom: false,
            channels: BTreeSet::new(),
            states: BTreeSet::from([ActionState::Approved]),
        }
    }

    /// Whether a move of an action of `team`, `kind` and `channel` into `to` passes.
    pub fn matches(
        &self,
        team: &str,
        kind: &ActionKind,
        channel: ContactChannel,
        to: ActionState,
    ) -> bool {
        team == self.team
            && self.states.contains(&to)
            && (self.channels.is_empty() || self.channels.contains(&channel))
            && ((self.kinds.is_empty() && !self.any_custom)
                || self.kinds.contains(kind)
                || (self.any_custom && matches!(kind, ActionKind::Custom(_))))
    }
}

/// A slice of the event log, as one filter sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventSlice {
    /// The events after the asked position that pass the filter, ascending.
    pub events: Vec<EventWithAction>,
    /// The position the reader has examined through: the last event returned when the slice
    /// is full, else the head (every event up to it was looked at).
    pub through: i64,
    /// Events up to this position were pruned (0 when nothing was).
    pub horizon: i64,
    /// The newest position in the log when read (0 when it is empty).
    pub head: i64,
}

const TOKEN_PREFIX: &str = "ae1.";

/// The resume token of position `seq` of the action event log.
pub fn event_token(seq: i64) -> String {
    URL_SAFE_NO_PAD.encode(format!("{TOKEN_PREFIX}{seq}"))
}

/// The position a resume token of the action event log names (field `resume_token`). Tokens
/// of the customer change feed are refused: the two logs count separately.
pub fn parse_event_token(token: &str) -> Result<i64> {
    let invalid = || {
        Error::invalid_field(
            "resume_token",
            "not a resume token of this hub's action stream (use one from an action event, or \
             leave it empty)",
        )
    };
    let bytes = URL_SAFE_NO_PAD.decode(token).map_err(|_| invalid())?;
    let text = String::from_utf8(bytes).map_err(|_| invalid())?;
    let seq: i64 = text
        .strip_prefix(TOKEN_PREFIX)
        .and_then(|s| s.parse().ok())
        .ok_or_else(invalid)?;
    if seq < 0 {
        return Err(invalid());
    }
    Ok(seq)
}

/// Checks that a consumer resuming after `after` misses nothing: `OutOfRange` (`EVENTS_PRUNED`,
/// with the oldest usable token as metadata `oldest_token`) when events after it were pruned,
/// and `InvalidArgument` when the position is ahead of the log (a token of another hub).
pub fn check_event_resume(after: i64, horizon: i64, head: i64) -> Result<()> {
    if after < horizon {
        return Err(Error::OutOfRange {
            reason: "EVENTS_PRUNED",
            message: format!(
                "action events after this token were pruned (retention); resume from the oldest \
                 available token {} and reconcile with ListActions",
                event_token(horizon)
            ),
            metadata: vec![("oldest_token".to_owned(), event_token(horizon))],
        });
    }
    if after > head {
        return Err(Error::invalid_field(
            "resume_token",
            "this token is ahead of the action event log: it comes from another hub or database",
        ));
    }
    Ok(())
}

/// What an executor reports about an action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum OutcomeKind {
    /// Sent or performed: APPROVED → SENT.
    Sent,
    /// Accepted by the customer: SENT → ACCEPTED.
    Accepted,
    /// Declined by the customer: SENT → DECLINED.
    Declined,
    /// Not answered in time: SENT → EXPIRED.
    Expired,
    /// Used by the customer: ACCEPTED → REDEEMED.
    Redeemed,
    /// Could not be delivered; the action stays APPROVED.
    FailedToDeliver,
}

impl OutcomeKind {
    /// Every kind.
    pub const ALL: &'static [OutcomeKind] = &[
        OutcomeKind::Sent,
        OutcomeKind::Accepted,
        OutcomeKind::Declined,
        OutcomeKind::Expired,
        OutcomeKind::Redeemed,
        OutcomeKind::FailedToDeliver,
    ];

    /// The stable text, e.g. `FAILED_TO_DELIVER`.
    pub fn as_str(self) -> &'static str {
        match self {
            OutcomeKind::Sent => "SENT",
            OutcomeKind::Accepted => "ACCEPTED",
            OutcomeKind::Declined => "DECLINED",
            OutcomeKind::Expired => "EXPIRED",
            OutcomeKind::Redeemed => "REDEEMED",
            OutcomeKind::FailedToDeliver => "FAILED_TO_DELIVER",
        }
    }

    /// Parses the stable text.
    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|k| k.as_str() == text)
    }

    /// The state the report moves the action into; `None` for a failed delivery, which
    /// leaves it where it is.
    pub fn target_state(self) -> Option<ActionState> {
        match self {
            OutcomeKind::Sent => Some(ActionState::Sent),
            OutcomeKind::Accepted => Some(ActionState::Accepted),
            OutcomeKind::Declined => Some(ActionState::Declined),
            OutcomeKind::Expired => Some(ActionState::Expired),
            OutcomeKind::Redeemed => Some(ActionState::Redeemed),
            OutcomeKind::FailedToDeliver => None,
        }
    }
}

/// Checks that an action in `state` may take a report of `kind`, and answers the state it
/// moves into (`None`: it stays). A failed delivery is legal only while APPROVED (nothing was
/// sent yet); every other report is the lifecycle move of [`action::transition`]. Refusals are
/// `FAILED_PRECONDITION` / `ILLEGAL_TRANSITION`.
pub fn apply_outcome(state: ActionState, kind: OutcomeKind) -> Result<Option<ActionState>> {
    match kind.target_state() {
        Some(to) => action::transition(state, to).map(|()| Some(to)),
        None if state == ActionState::Approved => Ok(None),
        None => Err(Error::precondition(
            "ILLEGAL_TRANSITION",
            format!(
                "a failed delivery can only be reported while the action is APPROVED; it is \
                 {state}"
            ),
        )),
    }
}

/// An outcome as reported (validated).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewOutcome {
    /// What happened.
    pub kind: OutcomeKind,
    /// Why (required for a failed delivery).
    pub reason: Option<String>,
    /// The executor's reference.
    pub external_ref: Option<String>,
    /// A free note.
    pub note: Option<String>,
}

impl NewOutcome {
    /// Checks the texts of a report (fields `reason`, `external_ref`, `note`), reporting every
    /// problem.
    pub fn check(
        kind: OutcomeKind,
        reason: &str,
        external_ref: &str,
        note: &str,
        v: &mut Violations,
    ) -> Option<Self> {
        let mut mine = Violations::new();
        if kind == OutcomeKind::FailedToDeliver && reason.trim().is_empty() {
            mine.add(
                "reason",
                "required for a failed delivery: why it failed, e.g. `mailbox full`",
            );
        }
        for (field, value, max) in [
            ("reason", reason, MAX_OUTCOME_REASON_LEN),
            ("external_ref", external_ref, MAX_EXTERNAL_REF_LEN),
            ("note", note, MAX_NOTE_LEN),
        ] {
            if value.chars().count() > max {
                mine.add(field, format!("at most {max} characters"));
            }
        }
        let opt = |s: &str| (!s.is_empty()).then(|| s.to_owned());
        let ok = mine.is_empty();
        for f in mine.into_vec() {
            v.add(f.field, f.description);
        }
        ok.then(|| Self {
            kind,
            reason: opt(reason),
            external_ref: opt(external_ref),
            note: opt(note),
        })
    }
}

/// An outcome as stored on its action.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outcome {
    /// What was reported.
    pub outcome: NewOutcome,
    /// Who reported it.
    pub principal: String,
    /// When.
    pub at: DateTime<Utc>,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn tokens_round_trip_and_other_feeds_tokens_are_refused() {
        for seq in [0, 1, 42, i64::MAX] {
            assert_eq!(parse_event_token(&event_token(seq)).ok(), Some(seq));
        }
        let change_token = crate::change::resume_token(5);
        for bad in ["", "nope", "YWUxLi0x", change_token.as_str()] {
            assert!(parse_event_token(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn resuming_before_the_horizon_is_out_of_range_with_the_oldest_token() {
        assert!(check_event_resume(10, 10, 20).is_ok());
        assert!(check_event_resume(20, 10, 20).is_ok());
        match check_event_resume(9, 10, 20) {
            Err(Error::OutOfRange {
                reason, metadata, ..
            }) => {
                assert_eq!(reason, "EVENTS_PRUNED");
                assert_eq!(metadata, vec![("oldest_token".into(), event_token(10))]);
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            check_event_resume(21, 10, 20),
            Err(Error::InvalidArgument { .. })
        ));
    }

    #[test]
    fn outcomes_follow_the_lifecycle_and_failures_keep_the_action_approved() {
        use ActionState::*;
        assert_eq!(
            apply_outcome(Approved, OutcomeKind::Sent).unwrap(),
            Some(Sent)
        );
        assert_eq!(
            apply_outcome(Sent, OutcomeKind::Accepted).unwrap(),
            Some(Accepted)
        );
        assert_eq!(
            apply_outcome(Accepted, OutcomeKind::Redeemed).unwrap(),
            Some(Redeemed)
        );
        assert_eq!(
            apply_outcome(Approved, OutcomeKind::FailedToDeliver).unwrap(),
            None
        );
        for (state, kind) in [
            (Proposed, OutcomeKind::Sent),
            (Approved, OutcomeKind::Accepted),
            (Sent, OutcomeKind::Redeemed),
            (Sent, OutcomeKind::FailedToDeliver),
            (Cancelled, OutcomeKind::Sent),
        ] {
            match apply_outcome(state, kind) {
                Err(Error::FailedPrecondition { reason, .. }) => {
                    assert_eq!(reason, "ILLEGAL_TRANSITION");
                }
                other => panic!("{state} {kind:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn a_failed_delivery_needs_a_reason_and_texts_are_bounded() {
        let mut v = Violations::new();
        assert!(NewOutcome::check(OutcomeKind::FailedToDeliver, " ", "", "", &mut v).is_none());
        let long = "x".repeat(MAX_NOTE_LEN + 1);
        assert!(NewOutcome::check(OutcomeKind::Sent, "", &long, &long, &mut v).is_none());
        let fields: Vec<_> = v.into_vec().into_iter().map(|f| f.field).collect();
        assert_eq!(fields, ["reason", "external_ref", "note"]);
        let mut v = Violations::new();
        let ok = NewOutcome::check(OutcomeKind::Sent, "", "msg-1", "", &mut v).unwrap();
        assert_eq!(ok.external_ref.as_deref(), Some("msg-1"));
        assert_eq!(ok.reason, None);
    }

    #[test]
    fn filters_select_team_states_kinds_and_channels() {
        let custom = ActionKind::parse("custom:birthday_gift").unwrap();
        let mut f = EventFilter::approvals_of("care");
        assert!(f.matches(
            "care",
            &ActionKind::Apology,
            ContactChannel::Phone,
            ActionState::Approved
        ));
        assert!(!f.matches(
            "sales",
            &ActionKind::Apology,
            ContactChannel::Phone,
            ActionState::Approved
        ));
        assert!(!f.matches(
            "care",
            &ActionKind::Apology,
            ContactChannel::Phone,
            ActionState::Sent
        ));
        f.any_custom = true;
        assert!(f.matches(
            "care",
            &custom,
            ContactChannel::Phone,
            ActionState::Approved
        ));
        assert!(!f.matches(
            "care",
            &ActionKind::Apology,
            ContactChannel::Phone,
            ActionState::Approved
        ));
        f.channels.insert(ContactChannel::Email);
        assert!(!f.matches(
            "care",
            &custom,
            ContactChannel::Phone,
            ActionState::Approved
        ));
    }
}
