//! What the loyalty service needs from storage: actions with their history, campaigns with
//! their budgets, and the points ledger. `cxhub-store` implements [`LoyaltyRepo`] over SQLite
//! and PostgreSQL; every write is one transaction that applies the guard rails of
//! [`crate::loyalty::guard`] and the ledger of [`crate::loyalty::points`] to what it read.

use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::id::uuid_id;
use crate::idempotency::RequestKey;
use crate::identifier::CustomerId;
use crate::loyalty::action::{ActionKind, ActionState, ContactChannel, Transition, sla_breached};
use crate::loyalty::executor::{EventFilter, EventSlice, NewOutcome, Outcome};
use crate::loyalty::guard::{Budget, FrequencyCap};
use crate::loyalty::points::{EarningRule, Entry, TierRule};
use crate::loyalty::rule::{
    ActionTemplate, Decision, Holdout, Rule, RuleLimits, RuleSpec, Trigger,
};
use crate::money::Money;
use crate::page::{Page, PageRequest};
use crate::repo::Lookup;
use crate::touchpoint::{Key, etag};

uuid_id!(
    /// The id of a loyalty action.
    ActionId
);

uuid_id!(
    /// The id of a campaign.
    CampaignId
);

/// Longest reason of an action.
pub const MAX_REASON_LEN: usize = 2000;
/// Longest assignee team name.
pub const MAX_TEAM_LEN: usize = 100;
/// Longest rule id.
pub const MAX_RULE_ID_LEN: usize = 128;
/// Longest campaign name.
pub const MAX_CAMPAIGN_NAME_LEN: usize = 200;
/// Most recent ledger entries a balance read returns.
pub const MAX_RECENT_ENTRIES: u32 = 100;

/// The rule (and its version) that proposed an action.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleRef {
    /// The rule's id.
    pub id: String,
    /// Its version, positive.
    pub version: i64,
}

/// An action as proposed (validated).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewAction {
    /// The customer named (a merged id is replaced by its survivor when stored).
    pub customer: CustomerId,
    /// The kind.
    pub kind: ActionKind,
    /// The rule that proposed it; `None` for a manual action.
    pub rule: Option<RuleRef>,
    /// Why.
    pub reason: String,
    /// How the customer is reached.
    pub channel: ContactChannel,
    /// What it is worth, if anything.
    pub value: Option<Money>,
    /// The campaign whose budget pays for it.
    pub campaign: Option<CampaignId>,
    /// The SLA: by when the company must have sent or performed it.
    pub due_at: DateTime<Utc>,
    /// The team that performs it.
    pub assignee_team: String,
}

/// An action as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Action {
    /// Its id (UUID v7: ids sort by creation time).
    pub id: ActionId,
    /// What was proposed; `customer` is the customer acted on (the survivor for a merged id).
    pub action: NewAction,
    /// The current state.
    pub state: ActionState,
    /// Bumped by every transition.
    pub revision: i64,
    /// Who proposed it.
    pub created_by: String,
    /// When it was proposed.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
    /// Every move, oldest first.
    pub history: Vec<Transition>,
    /// What its executors reported, oldest first.
    #[serde(default)]
    pub outcomes: Vec<Outcome>,
}

impl Action {
    /// The etag of the current revision.
    pub fn etag(&self) -> String {
        etag(self.revision)
    }

    /// Whether the SLA is missed at `now` (see [`sla_breached`]).
    pub fn sla_breached(&self, now: DateTime<Utc>) -> bool {
        sla_breached(self.state, self.action.due_at, now)
    }
}

/// Which actions to list. Every field narrows the list.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActionFilter {
    /// Actions of this customer and of the customers merged into it.
    pub customer: Option<CustomerId>,
    /// Actions in this state.
    pub state: Option<ActionState>,
    /// Actions of this kind.
    pub kind: Option<ActionKind>,
    /// Actions of this team.
    pub assignee_team: Option<String>,
    /// Only actions past their SLA at the time of the call.
    pub sla_breached_only: bool,
}

/// The guard rails that are configuration rather than data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuardConfig {
    /// Frequency caps per customer and kind.
    pub caps: Vec<FrequencyCap>,
}

impl Default for GuardConfig {
    /// One retention offer per customer per 90 days, one referral request per 30 days, one
    /// survey invitation per 7 days.
    fn default() -> Self {
        Self {
            caps: vec![
                FrequencyCap {
                    kind: ActionKind::RetentionOffer,
                    max: 1,
                    window: Duration::days(90),
                },
                FrequencyCap {
                    kind: ActionKind::ReferralRequest,
                    max: 1,
                    window: Duration::days(30),
                },
                FrequencyCap {
                    kind: ActionKind::SurveyInvitation,
                    max: 1,
                    window: Duration::days(7),
                },
            ],
        }
    }
}

/// A campaign as created (validated).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewCampaign {
    /// Its unique key.
    pub key: Key,
    /// Its display name.
    pub name: String,
    /// The most it may spend.
    pub budget: Money,
}

/// A campaign as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Campaign {
    /// Its id.
    pub id: CampaignId,
    /// Its unique key.
    pub key: Key,
    /// Its display name.
    pub name: String,
    /// Limit, spent and reserved.
    pub budget: Budget,
    /// When it was created.
    pub created_at: DateTime<Utc>,
}

/// What a points posting asks for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum PointsOp {
    /// Credit `points` earned by transaction `source_ref`.
    Accrue {
        /// Points earned, positive.
        points: i64,
        /// The transaction.
        source_ref: String,
        /// When they expire.
        expires_at: Option<DateTime<Utc>>,
    },
    /// Debit `points` spent.
    Redeem {
        /// Points spent, positive.
        points: i64,
        /// What they were spent on.
        source_ref: Option<String>,
    },
    /// Credit what transaction `transaction` worth `amount` earns under the points programme
    /// (the customer's tier multiplier included), expiring after the programme's months.
    Earn {
        /// The transaction (the entry's source).
        transaction: String,
        /// What it was worth, positive.
        amount: Money,
    },
    /// Claw back up to `points` of transaction `source_ref` (no more than the balance; the
    /// rest is the shortfall).
    Reverse {
        /// The refunded transaction.
        source_ref: String,
        /// Points to reverse, positive.
        points: i64,
    },
}

/// One idempotent posting to the points ledger.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PointsPosting {
    /// The caller's idempotency key of the entry (global over the ledger).
    pub request_id: String,
    /// The customer named (a merged id posts to the survivor).
    pub customer: CustomerId,
    /// What to do.
    pub op: PointsOp,
}

/// A posted entry and the balance it left.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Posted {
    /// The entry (its `customer` is the survivor).
    pub entry: Entry,
    /// The customer's balance right after it.
    pub balance: i64,
}

/// A customer's balance and recent entries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PointsBalance {
    /// The customer (the survivor for a merged id).
    pub customer: CustomerId,
    /// The balance.
    pub balance: i64,
    /// The most recent entries, newest first.
    pub recent: Vec<Entry>,
    /// The customer's tier now under the programme, if any.
    #[serde(default)]
    pub tier: Option<String>,
}

/// Longest tier name.
pub const MAX_TIER_NAME_LEN: usize = 64;
/// Most months before earned points expire.
pub const MAX_EXPIRY_MONTHS: u32 = 120;

/// The points programme: how transactions earn points, when points expire, the tiers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PointsProgramme {
    /// One rule per currency.
    pub earning_rules: Vec<EarningRule>,
    /// Earned points expire this many calendar months later; 0: never.
    pub expiry_months: u32,
    /// The tiers.
    pub tiers: Vec<TierRule>,
}

/// The programme as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredProgramme {
    /// The programme.
    pub programme: PointsProgramme,
    /// Bumped by every change, from 1.
    pub version: i64,
    /// When it was last set.
    pub updated_at: DateTime<Utc>,
}

/// Most customers one dry run scans.
pub const MAX_DRY_RUN_CUSTOMERS: u32 = 10_000;

/// The fields of a rule an update changes; `None` keeps the current value.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RulePatch {
    /// A new name.
    pub name: Option<String>,
    /// A new trigger.
    pub trigger: Option<Trigger>,
    /// A new condition (canonical).
    pub condition: Option<String>,
    /// A new action template.
    pub action: Option<ActionTemplate>,
    /// New limits.
    pub limits: Option<RuleLimits>,
    /// A new holdout.
    pub holdout: Option<Holdout>,
    /// Enabled or not.
    pub enabled: Option<bool>,
}

impl RulePatch {
    /// `current` with the patch applied.
    pub fn apply(self, current: &RuleSpec) -> RuleSpec {
        RuleSpec {
            name: self.name.unwrap_or_else(|| current.name.clone()),
            trigger: self.trigger.unwrap_or(current.trigger),
            condition: self.condition.unwrap_or_else(|| current.condition.clone()),
            action: self.action.unwrap_or_else(|| current.action.clone()),
            limits: self.limits.unwrap_or(current.limits),
            holdout: self.holdout.unwrap_or(current.holdout),
            enabled: self.enabled.unwrap_or(current.enabled),
        }
    }
}

/// Which version of the current one an update expects; unset parts are not checked.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExpectedVersion {
    /// The current version's etag.
    pub etag: Option<String>,
    /// The current version's number.
    pub version: Option<i64>,
}

/// One customer whose condition holds in a dry run.
#[derive(Debug, Clone, PartialEq)]
pub struct DryRunTarget {
    /// The customer.
    pub customer: CustomerId,
    /// Held out, blocked (and why) or treated; never `NotMatched`.
    pub decision: Decision,
    /// The action the rule would propose.
    pub action: NewAction,
    /// The condition's explanation.
    pub explanation: String,
}

/// One call of a dry run.
#[derive(Debug, Clone, PartialEq)]
pub struct DryRun {
    /// The customers whose condition holds, in id order.
    pub targets: Vec<DryRunTarget>,
    /// How many customers were scanned.
    pub scanned: u32,
    /// The last customer scanned when more remain.
    pub next_after: Option<CustomerId>,
}

/// What one sweep of one rule did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SweepReport {
    /// The rule.
    pub rule_id: String,
    /// Its version.
    pub rule_version: i64,
    /// The UTC day of the run (`YYYY-MM-DD`): a customer is acted on at most once per rule
    /// version and day.
    pub run_day: String,
    /// Live customers evaluated.
    pub scanned: u64,
    /// Customers whose condition holds.
    pub matched: u64,
    /// Actions proposed.
    pub proposed: u64,
    /// Customers held out (control group), recorded.
    pub held_out: u64,
    /// Customers a guard rail stopped, recorded with the reasons.
    pub blocked: u64,
    /// Customers this rule version already handled on this day (a re-run).
    pub already_done: u64,
    /// Customers left untreated because the rule's limit per run or per day was reached.
    pub over_limit: u64,
}

/// What one pass of the event follower did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventPass {
    /// Change-log entries and NPS answers read (whether or not a rule acted on them).
    pub read: u64,
    /// Events that matched a trigger of an enabled rule.
    pub events: u64,
    /// Actions proposed.
    pub proposed: u64,
    /// Customers held out.
    pub held_out: u64,
    /// Customers a guard rail stopped.
    pub blocked: u64,
}

/// Storage of loyalty actions, campaigns and the points ledger.
#[async_trait]
pub trait LoyaltyRepo: Send + Sync {
    /// Proposes an action for the live customer behind `action.customer`, after checking every
    /// guard rail that concerns the customer (erased or suppressed: never; consent of the kind
    /// on the channel; the caps of `guard`) in the same transaction as the insert, so that two
    /// proposals at once never both pass a cap. Errors: `NotFound` (customer, campaign);
    /// `FailedPrecondition` `NOT_ELIGIBLE`; `InvalidArgument` `CURRENCY_MISMATCH`.
    async fn propose_action(
        &self,
        req: &RequestKey,
        action: NewAction,
        guard: &GuardConfig,
    ) -> Result<Action>;

    /// Reads one action with its history. `NotFound`.
    async fn get_action(&self, id: ActionId) -> Result<Action>;

    /// Lists actions by id (creation order) after `page.after` (an action id); `now` decides
    /// which are past their SLA.
    async fn list_actions(
        &self,
        filter: &ActionFilter,
        now: DateTime<Utc>,
        page: &PageRequest,
    ) -> Result<Page<Action>>;

    /// Moves an action to `to`, recording the move with `req.principal`. Approving re-checks
    /// the customer's eligibility (caps excepted: the action itself counts in them) and
    /// reserves the value from its campaign's budget; redeeming spends the reservation;
    /// cancelling, declining or expiring an approved action gives it back. Errors: `NotFound`;
    /// `Aborted` `ETAG_MISMATCH`; `FailedPrecondition` `ILLEGAL_TRANSITION` or `NOT_ELIGIBLE`;
    /// `ResourceExhausted` `BUDGET_EXHAUSTED`.
    async fn transition_action(
        &self,
        req: &RequestKey,
        id: ActionId,
        to: ActionState,
        etag: Option<&str>,
    ) -> Result<Action>;

    /// Records what an executor reports about an action and moves it accordingly (see
    /// [`crate::loyalty::executor::apply_outcome`]; the budget effects are those of
    /// [`LoyaltyRepo::transition_action`]), with `req.principal` as the reporter, in one
    /// transaction. Errors: `NotFound`; `FailedPrecondition` `ILLEGAL_TRANSITION`.
    async fn report_outcome(
        &self,
        req: &RequestKey,
        id: ActionId,
        outcome: NewOutcome,
    ) -> Result<Action>;

    /// Reads the action event log after position `after`: up to `limit` events that pass
    /// `filter`, each with its action as it is now, and how far the read looked (see
    /// [`EventSlice`]), from one snapshot.
    async fn read_action_events(
        &self,
        after: i64,
        filter: &EventFilter,
        limit: u32,
    ) -> Result<EventSlice>;

    /// Prunes the action events committed before `before`; answers how many went.
    async fn prune_action_events(&self, before: DateTime<Utc>) -> Result<u64>;

    /// Creates a campaign. `AlreadyExists` `CAMPAIGN_KEY_TAKEN`.
    async fn create_campaign(&self, req: &RequestKey, campaign: NewCampaign) -> Result<Campaign>;

    /// Reads a campaign. `NotFound`.
    async fn get_campaign(&self, lookup: &Lookup<CampaignId>) -> Result<Campaign>;

    /// Posts to the points ledger, idempotently by `posting.request_id`: the same posting
    /// again returns the first result; another posting under the same id is refused
    /// (`InvalidArgument` `REQUEST_ID_REUSED`). Postings of one customer are serialised, so
    /// concurrent redemptions never take a balance below zero (`FailedPrecondition`
    /// `INSUFFICIENT_POINTS`).
    async fn post_points(&self, posting: PointsPosting) -> Result<Posted>;

    /// Replaces the points programme. Idempotent by `req`.
    async fn set_programme(
        &self,
        req: &RequestKey,
        programme: PointsProgramme,
    ) -> Result<StoredProgramme>;

    /// The programme in force. `NotFound` before the first one is set.
    async fn get_programme(&self) -> Result<StoredProgramme>;

    /// A customer's balance and their `recent` latest entries. `NotFound` for an unknown
    /// customer.
    async fn points_balance(&self, customer: CustomerId, recent: u32) -> Result<PointsBalance>;

    /// Creates version 1 of rule `id`. `AlreadyExists` `RULE_ID_TAKEN`; `NotFound` for the
    /// template's campaign; `InvalidArgument` `CURRENCY_MISMATCH`.
    async fn create_rule(&self, req: &RequestKey, id: Key, spec: RuleSpec) -> Result<Rule>;

    /// Writes the next version of rule `id`: the current one with `patch` applied. `NotFound`;
    /// `Aborted` `ETAG_MISMATCH` when `expected` is not the current version.
    async fn update_rule(
        &self,
        req: &RequestKey,
        id: Key,
        expected: ExpectedVersion,
        patch: RulePatch,
    ) -> Result<Rule>;

    /// Reads rule `id` at `version` (the current one for `None`). `NotFound`.
    async fn get_rule(&self, id: &Key, version: Option<i64>) -> Result<Rule>;

    /// Lists the current versions of rules by id after `page.after` (a rule id).
    async fn list_rules(&self, page: &PageRequest) -> Result<Page<Rule>>;

    /// Evaluates `rule` over at most `max` live customers after `after` (in id order), with
    /// the guard rails of `guard`, writing nothing.
    async fn dry_run_rule(
        &self,
        rule: &Rule,
        guard: &GuardConfig,
        after: Option<CustomerId>,
        max: u32,
    ) -> Result<DryRun>;

    /// The current versions of the enabled rules with a daily-sweep trigger, by id.
    async fn scheduled_rules(&self) -> Result<Vec<Rule>>;

    /// Sweeps `rule` over every live customer in id order, `batch` customers per transaction:
    /// for each whose condition holds and that this version has not handled on the UTC day of
    /// `now`, records it as held out (control group), or proposes the rule's action with the
    /// guard rails of ProposeAction (recording a refusal as blocked), within the rule's limits.
    async fn run_sweep(
        &self,
        rule: &Rule,
        guard: &GuardConfig,
        now: DateTime<Utc>,
        batch: u32,
    ) -> Result<SweepReport>;

    /// Reads up to `max` change-log entries and up to `max` NPS answers after the follower's
    /// stored position, turns them into events (a `rescored` entry whose category is now
    /// negative or advocate, or whose churn band is now high; an NPS answer of 6 or less), and
    /// applies the enabled rules with those triggers to the customer, as a sweep would (one
    /// run per event: `change:<seq>`, `response:<id>`). The new position is written in the
    /// same transaction, so a restart neither loses nor repeats an event.
    async fn follow_rule_events(&self, guard: &GuardConfig, max: u32) -> Result<EventPass>;

    /// What the effect report of rule `id` reads (see [`crate::loyalty::effect`]): its target
    /// records (of `version`, or of every version) recorded up to `as_of`, with the current
    /// state and value of the actions they name; the placed orders and NPS answers of their
    /// customers up to `as_of`; and which of those customers were erased.
    async fn rule_effect_data(
        &self,
        id: &Key,
        version: Option<i64>,
        as_of: DateTime<Utc>,
    ) -> Result<crate::loyalty::effect::EffectData>;
}
