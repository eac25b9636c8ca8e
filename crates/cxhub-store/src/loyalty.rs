//! `LoyaltyRepo` over [`Store`]: loyalty actions and their transitions, campaign budgets and
//! the points ledger.
//!
//! Concurrency, on both backends:
//! - On SQLite every write is one `BEGIN IMMEDIATE` transaction on the single writer: writes
//!   are serial, so every check sees every earlier write.
//! - On PostgreSQL (several replicas on one database) a write that decides from what one
//!   customer has (frequency caps, consent, the points balance) first takes a
//!   transaction-scoped advisory lock on that customer, so two proposals or two redemptions
//!   for one customer never both pass a check the other would have failed; a transition locks
//!   its action row (`FOR UPDATE`); a budget is reserved with one conditional
//!   `UPDATE … WHERE spent + reserved + value <= budget`, so approvals on any number of
//!   replicas never overspend it (and a CHECK constraint on the table says the same).
//!
//! Every action write is recorded under its request key (`idempotent!`); ledger entries are
//! idempotent by their own request id (unique in `loyalty_point_entries`) with a fingerprint
//! of the posting, so a retry gets the first result even from another caller.

use std::collections::{BTreeMap, BTreeSet};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use cxhub_domain::error::{Error, FieldViolation, Result};
use cxhub_domain::idempotency::RequestKey;
use cxhub_domain::identifier::CustomerId;
use cxhub_domain::loyalty::action::{
    self as act, ActionKind, ActionState, ContactChannel, Transition,
};
use cxhub_domain::loyalty::executor::{
    ActionEvent, EventFilter, EventSlice, EventWithAction, NewOutcome, Outcome, OutcomeKind,
    apply_outcome,
};
use cxhub_domain::loyalty::guard::{
    self, Budget, Candidate, ConsentSet, Eligibility, PrivacyStatus, consents_from_profile,
    eligibility,
};
use cxhub_domain::loyalty::points::{
    Entry, EntryKind, Ledger, PostOutcome, check_earning_rules, expiry_after_months, points_for,
};
use cxhub_domain::loyalty::repo::{
    Action, ActionFilter, ActionId, Campaign, CampaignId, DryRun, EventPass, ExpectedVersion,
    GuardConfig, LoyaltyRepo, NewAction, NewCampaign, PointsBalance, PointsOp, PointsPosting,
    PointsProgramme, Posted, RulePatch, RuleRef, StoredProgramme, SweepReport,
};
use cxhub_domain::loyalty::rule::{Rule, RuleSpec};
use cxhub_domain::money::{Currency, Money};
use cxhub_domain::page::{Page, PageRequest};
use cxhub_domain::repo::Lookup;
use cxhub_domain::touchpoint::{Key, check_etag};
use sea_orm::{ConnectionTrait, DatabaseTransaction, QueryResult};
use sha2::{Digest, Sha256};

use crate::IN_LIST_CHUNK;
use crate::error::{DbResultExt, corrupt};
use crate::idempotency::idempotent;
use crate::sql::{Sql, int, text, text_opt, time, time_opt};
use crate::store::{Backend, Store, rollback, snapshot};

const ACTION_COLUMNS: &str = "id, customer_id, kind, rule_id, rule_version, reason, channel, \
                              value_minor, value_currency, campaign_id, reserved_minor, due_at, \
                              assignee_team, state, revision, created_by, created_at, updated_at";

const ENTRY_COLUMNS: &str = "id, request_id, fingerprint, customer_id, kind, points, source_ref, \
                             expires_at, shortfall, balance_after, posted_at";

#[async_trait]
impl LoyaltyRepo for Store {
    async fn propose_action(
        &self,
        req: &RequestKey,
        action: NewAction,
        guard: &GuardConfig,
    ) -> Result<Action> {
        let backend = self.kind;
        idempotent!(self, req, lock = begin_loyalty, |txn| propose(
            &txn,
            backend,
            &req.principal,
            action,
            guard
        ))
    }

    async fn get_action(&self, id: ActionId) -> Result<Action> {
        snapshot!(self, |txn| get_action(&txn, id, false))
    }

    async fn list_actions(
        &self,
        filter: &ActionFilter,
        now: DateTime<Utc>,
        page: &PageRequest,
    ) -> Result<Page<Action>> {
        snapshot!(self, |txn| list_actions(&txn, filter, now, page))
    }

    async fn transition_action(
        &self,
        req: &RequestKey,
        id: ActionId,
        to: ActionState,
        etag: Option<&str>,
    ) -> Result<Action> {
        let backend = self.kind;
        idempotent!(self, req, lock = begin_loyalty, |txn| transition(
            &txn,
            backend,
            &req.principal,
            id,
            to,
            etag
        ))
    }

    async fn report_outcome(
        &self,
        req: &RequestKey,
        id: ActionId,
        outcome: NewOutcome,
    ) -> Result<Action> {
        let backend = self.kind;
        idempotent!(self, req, lock = begin_loyalty, |txn| report(
            &txn,
            backend,
            &req.principal,
            id,
            outcome
        ))
    }

    async fn read_action_events(
        &self,
        after: i64,
        filter: &EventFilter,
        limit: u32,
    ) -> Result<EventSlice> {
        snapshot!(self, |txn| read_events(&txn, after, filter, limit))
    }

    async fn prune_action_events(&self, before: DateTime<Utc>) -> Result<u64> {
        let txn = self.begin_loyalty().await?;
        match prune_events(&txn, before).await {
            Ok(pruned) => {
                txn.commit().await.db()?;
                Ok(pruned)
            }
            Err(err) => {
                rollback(txn).await;
                Err(err)
            }
        }
    }

    async fn create_campaign(&self, req: &RequestKey, campaign: NewCampaign) -> Result<Campaign> {
        idempotent!(self, req, lock = begin_loyalty, |txn| create_campaign(
            &txn, campaign
        ))
    }

    async fn get_campaign(&self, lookup: &Lookup<CampaignId>) -> Result<Campaign> {
        snapshot!(self, |txn| get_campaign(&txn, lookup))
    }

    async fn post_points(&self, posting: PointsPosting) -> Result<Posted> {
        let txn = self.begin_loyalty().await?;
        match post(&txn, self.kind, &posting).await {
            Ok(Some(posted)) => {
                txn.commit().await.db()?;
                Ok(posted)
            }
            Ok(None) => {
                // A concurrent posting with the same request id committed first.
                rollback(txn).await;
                let fingerprint = posting_fingerprint(&posting);
                match entry_by_request(&self.writer, &posting.request_id).await? {
                    Some((stored, posted)) => replayed(&posting, &fingerprint, &stored, posted),
                    None => Err(Error::aborted(
                        "CONCURRENT_UPDATE",
                        "the posting conflicted with a concurrent one: retry",
                    )),
                }
            }
            Err(err) => {
                rollback(txn).await;
                Err(err)
            }
        }
    }

    async fn set_programme(
        &self,
        req: &RequestKey,
        programme: PointsProgramme,
    ) -> Result<StoredProgramme> {
        idempotent!(self, req, lock = begin_loyalty, |txn| set_programme(
            &txn, programme
        ))
    }

    async fn get_programme(&self) -> Result<StoredProgramme> {
        snapshot!(self, |txn| async {
            get_programme(&txn)
                .await?
                .ok_or_else(|| Error::not_found("points programme", "in force"))
        })
    }

    async fn points_balance(&self, customer: CustomerId, recent: u32) -> Result<PointsBalance> {
        snapshot!(self, |txn| balance(&txn, customer, recent))
    }

    // Rules: see `loyalty_rules.rs`.

    async fn create_rule(&self, req: &RequestKey, id: Key, spec: RuleSpec) -> Result<Rule> {
        self.create_rule_impl(req, id, spec).await
    }

    async fn update_rule(
        &self,
        req: &RequestKey,
        id: Key,
        expected: ExpectedVersion,
        patch: RulePatch,
    ) -> Result<Rule> {
        self.update_rule_impl(req, id, expected, patch).await
    }

    async fn get_rule(&self, id: &Key, version: Option<i64>) -> Result<Rule> {
        self.get_rule_impl(id, version).await
    }

    async fn list_rules(&self, page: &PageRequest) -> Result<Page<Rule>> {
        self.list_rules_impl(page).await
    }

    async fn dry_run_rule(
        &self,
        rule: &Rule,
        guard: &GuardConfig,
        after: Option<CustomerId>,
        max: u32,
    ) -> Result<DryRun> {
        self.dry_run_rule_impl(rule, guard, after, max).await
    }

    async fn scheduled_rules(&self) -> Result<Vec<Rule>> {
        self.scheduled_rules_impl().await
    }

    async fn run_sweep(
        &self,
        rule: &Rule,
        guard: &GuardConfig,
        now: DateTime<Utc>,
        batch: u32,
    ) -> Result<SweepReport> {
        self.run_sweep_impl(rule, guard, now, batch).await
    }

    async fn follow_rule_events(&self, guard: &GuardConfig, max: u32) -> Result<EventPass> {
        self.follow_rule_events_impl(guard, max).await
    }

    async fn rule_effect_data(
        &self,
        id: &Key,
        version: Option<i64>,
        as_of: DateTime<Utc>,
    ) -> Result<cxhub_domain::loyalty::effect::EffectData> {
        self.rule_effect_data_impl(id, version, as_of).await
    }
}

impl Store {
    /// Begins a loyalty write: `BEGIN IMMEDIATE` on SQLite; a plain transaction on PostgreSQL,
    /// where the writes lock what they decide from (see the module documentation) instead of
    /// taking the registry's lock.
    pub(crate) async fn begin_loyalty(&self) -> Result<DatabaseTransaction> {
        match self.kind {
            Backend::Sqlite => self.begin_write().await,
            Backend::Postgres => sea_orm::TransactionTrait::begin(&self.writer).await.db(),
        }
    }
}

// ------------------------------------------------------------------------------------------------
// Customers: who is targeted

/// The customer a request names, as the guard rails see it.
pub(crate) struct Target {
    /// The live customer (the survivor for a merged id; the id named for an erased one).
    pub(crate) customer: CustomerId,
    pub(crate) privacy: PrivacyStatus,
    pub(crate) consents: ConsentSet,
}

/// Resolves `requested` for targeting (see [`targets`]).
async fn target(conn: &impl ConnectionTrait, requested: CustomerId) -> Result<Target> {
    targets(conn, &[requested])
        .await?
        .into_iter()
        .next()
        .flatten()
        .ok_or_else(|| Error::not_found("customer", requested.to_string()))
}

/// Resolves each of `requested` for targeting, in order, with a few set-based statements per
/// [`IN_LIST_CHUNK`] customers: an erased customer (kept in `customer_erasures`) is returned
/// as erased (and suppressed: erasure suppresses their identifiers); an unknown one is `None`;
/// a merged one is its survivor, with the survivor's consents; a live one holding
/// an identifier an erasure suppressed is suppressed.
pub(crate) async fn targets(
    conn: &impl ConnectionTrait,
    requested: &[CustomerId],
) -> Result<Vec<Option<Target>>> {
    let backend = conn.get_database_backend();
    let mut erased = BTreeSet::new();
    for chunk in requested.chunks(IN_LIST_CHUNK) {
        let mut sql = Sql::new(
            backend,
            "SELECT customer_id FROM customer_erasures WHERE customer_id",
        );
        sql.in_texts(chunk.iter().map(ToString::to_string));
        for row in conn.query_all_raw(sql.build()).await.db()? {
            let id: String = get(&row, "customer_id")?;
            erased.insert(id.parse::<CustomerId>().map_err(corrupt)?);
        }
    }
    // The customers' rows, hop by hop along their merges, for the whole batch at once.
    let mut rows: BTreeMap<CustomerId, (Option<CustomerId>, String)> = BTreeMap::new();
    let mut asked: BTreeSet<CustomerId> = BTreeSet::new();
    let mut wanted: Vec<CustomerId> = requested
        .iter()
        .filter(|c| !erased.contains(*c))
        .copied()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    for _ in 0..crate::customers::MAX_REDIRECTS {
        if wanted.is_empty() {
            break;
        }
        asked.extend(wanted.iter().copied());
        for chunk in wanted.chunks(IN_LIST_CHUNK) {
            let mut sql = Sql::new(
                backend,
                "SELECT id, merged_into, consents_json FROM customers WHERE id",
            );
            sql.in_texts(chunk.iter().map(ToString::to_string));
            for row in conn.query_all_raw(sql.build()).await.db()? {
                let id: String = get(&row, "id")?;
                let merged_into: Option<String> = get(&row, "merged_into")?;
                rows.insert(
                    id.parse().map_err(corrupt)?,
                    (
                        merged_into
                            .map(|m| m.parse())
                            .transpose()
                            .map_err(corrupt)?,
                        get(&row, "consents_json")?,
                    ),
                );
            }
        }
        wanted = rows
            .values()
            .filter_map(|(next, _)| *next)
            .filter(|next| !asked.contains(next))
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
    }
    let live = |requested: CustomerId| -> Result<Option<CustomerId>> {
        let mut current = requested;
        for _ in 0..crate::customers::MAX_REDIRECTS {
            match rows.get(&current) {
                None => return Ok(None),
                Some((None, _)) => return Ok(Some(current)),
                Some((Some(next), _)) => current = *next,
            }
        }
        Err(corrupt(format!(
            "redirect chain from customer {requested} too long"
        )))
    };
    let lives: Vec<Option<CustomerId>> = requested
        .iter()
        .map(|c| {
            if erased.contains(c) {
                Ok(None)
            } else {
                live(*c)
            }
        })
        .collect::<Result<_>>()?;
    let alive: Vec<CustomerId> = lives
        .iter()
        .flatten()
        .copied()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let suppressed = suppressed_among(conn, &alive).await?;
    let mut out = Vec::with_capacity(requested.len());
    for (requested, live) in requested.iter().zip(lives) {
        if erased.contains(requested) {
            out.push(Some(Target {
                customer: *requested,
                privacy: PrivacyStatus {
                    erased: true,
                    suppressed: true,
                },
                consents: ConsentSet::new(),
            }));
            continue;
        }
        let Some(customer) = live else {
            out.push(None);
            continue;
        };
        let json = rows
            .get(&customer)
            .map(|(_, json)| json.as_str())
            .ok_or_else(|| corrupt("a live customer's row was not read"))?;
        let consents: Vec<cxhub_domain::feed::Consent> =
            serde_json::from_str(json).map_err(corrupt)?;
        out.push(Some(Target {
            customer,
            privacy: PrivacyStatus {
                erased: false,
                suppressed: suppressed.contains(&customer),
            },
            consents: consents_from_profile(&consents),
        }));
    }
    Ok(out)
}

/// The live customers among `customers` who hold an identifier an erasure suppressed (one they
/// shared with the erased customer without being merged with them, e.g. after a split):
/// contacting them over it would reach the erased person. Suppressed identifiers are kept as
/// keyed hashes only, so the customers' identifiers are hashed with the same key (see
/// [`cxhub_domain::privacy::suppression_hash`]); before the first erasure there is no key and
/// nothing is suppressed.
pub(crate) async fn suppressed_among(
    conn: &impl ConnectionTrait,
    customers: &[CustomerId],
) -> Result<BTreeSet<CustomerId>> {
    let mut out = BTreeSet::new();
    if customers.is_empty() {
        return Ok(out);
    }
    let backend = conn.get_database_backend();
    let mut sql = Sql::new(backend, "SELECT secret FROM privacy_keys WHERE name = ");
    sql.bind(text("suppression"));
    let Some(row) = conn.query_one_raw(sql.build()).await.db()? else {
        return Ok(out);
    };
    let secret: String = get(&row, "secret")?;
    let key = unhex(&secret)?;
    let mut holders: BTreeMap<String, Vec<CustomerId>> = BTreeMap::new();
    for chunk in customers.chunks(IN_LIST_CHUNK) {
        let mut sql = Sql::new(
            backend,
            "SELECT customer_id, kind, value FROM customer_identities WHERE customer_id",
        );
        sql.in_texts(chunk.iter().map(ToString::to_string));
        for row in conn.query_all_raw(sql.build()).await.db()? {
            let customer: String = get(&row, "customer_id")?;
            let kind: String = get(&row, "kind")?;
            let value: String = get(&row, "value")?;
            if let Some(id) = cxhub_domain::identifier::Identifier::from_stored(&kind, &value) {
                holders
                    .entry(cxhub_domain::privacy::suppression_hash(&key, &id))
                    .or_default()
                    .push(customer.parse().map_err(corrupt)?);
            }
        }
    }
    let hashes: Vec<String> = holders.keys().cloned().collect();
    for chunk in hashes.chunks(IN_LIST_CHUNK) {
        let mut sql = Sql::new(
            backend,
            "SELECT hash FROM suppressed_identifiers WHERE hash",
        );
        sql.in_texts(chunk.iter().cloned());
        for row in conn.query_all_raw(sql.build()).await.db()? {
            let hash: String = get(&row, "hash")?;
            out.extend(holders.get(&hash).into_iter().flatten().copied());
        }
    }
    Ok(out)
}

fn unhex(s: &str) -> Result<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return Err(corrupt("a key that is not hex"));
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).map_err(corrupt))
        .collect()
}

/// `customer` and every customer merged into it (directly or through others).
async fn merged_family(
    conn: &impl ConnectionTrait,
    customer: CustomerId,
) -> Result<Vec<CustomerId>> {
    Ok(merged_families(conn, &[customer])
        .await?
        .into_iter()
        .map(|(member, _)| member)
        .collect())
}

/// Each of `customers` and every customer merged into it (directly or through others), as
/// (member, the customer of `customers` it belongs to), the customers themselves first: one
/// statement per merge depth and [`IN_LIST_CHUNK`] customers.
async fn merged_families(
    conn: &impl ConnectionTrait,
    customers: &[CustomerId],
) -> Result<Vec<(CustomerId, CustomerId)>> {
    let mut family: Vec<(CustomerId, CustomerId)> = Vec::new();
    let mut root: BTreeMap<CustomerId, CustomerId> = BTreeMap::new();
    for c in customers {
        if root.insert(*c, *c).is_none() {
            family.push((*c, *c));
        }
    }
    let mut frontier: Vec<CustomerId> = root.keys().copied().collect();
    while !frontier.is_empty() {
        let mut next = Vec::new();
        for chunk in frontier.chunks(IN_LIST_CHUNK) {
            let mut sql = Sql::new(
                conn.get_database_backend(),
                "SELECT id, merged_into FROM customers WHERE merged_into",
            );
            sql.in_texts(chunk.iter().map(ToString::to_string));
            for row in conn.query_all_raw(sql.build()).await.db()? {
                let id: String = get(&row, "id")?;
                let into: String = get(&row, "merged_into")?;
                let id: CustomerId = id.parse().map_err(corrupt)?;
                let into: CustomerId = into.parse().map_err(corrupt)?;
                let Some(top) = root.get(&into).copied() else {
                    continue;
                };
                if let std::collections::btree_map::Entry::Vacant(slot) = root.entry(id) {
                    slot.insert(top);
                    family.push((id, top));
                    next.push(id);
                }
            }
        }
        frontier = next;
    }
    Ok(family)
}

/// On PostgreSQL, serialises the writes that decide from what each of `customers` has, across
/// replicas, until the transaction ends: one statement taking the customers' locks in id order
/// (so two batches never wait for each other crosswise). (SQLite writes are serial already.)
pub(crate) async fn lock_customers(
    txn: &DatabaseTransaction,
    backend: Backend,
    customers: &[CustomerId],
) -> Result<()> {
    if backend == Backend::Postgres && !customers.is_empty() {
        let ids: BTreeSet<String> = customers.iter().map(ToString::to_string).collect();
        let mut sql = Sql::new(
            sea_orm::DbBackend::Postgres,
            "SELECT pg_advisory_xact_lock(hashtext('cxhub.loyalty.customer.' || c)) FROM unnest(",
        );
        sql.bind(crate::sql::texts(ids)).push(") AS t(c)");
        txn.execute_raw(sql.build()).await.db()?;
    }
    Ok(())
}

// ------------------------------------------------------------------------------------------------
// Actions

/// Proposes one action (`ProposeAction`): a batch of one (see [`Proposals`]).
pub(crate) async fn propose(
    txn: &DatabaseTransaction,
    backend: Backend,
    principal: &str,
    action: NewAction,
    guard: &GuardConfig,
) -> Result<Action> {
    let now = crate::now();
    let mut batch = Proposals::read(txn, Some(backend), &[&action], guard, now).await?;
    batch.check(&action)?.into_result()?;
    batch.accept(action)?;
    batch
        .write(txn, principal)
        .await?
        .pop()
        .ok_or_else(|| corrupt("an accepted proposal was not written"))
}

/// A batch of proposals: the guard-rail state of its customers, read with a few set-based
/// statements for the whole batch ([`targets`], the cap histories of every (customer, kind),
/// the campaigns), decided in memory one action after another ([`Proposals::check`], the
/// domain's [`eligibility`]; an accepted action counts in the frequency caps of the next ones,
/// so a batch decides exactly as the same proposals one by one would), and written with
/// multi-row statements ([`Proposals::write`]). On PostgreSQL the customers are locked (in id
/// order) before their cap histories are read, as a single proposal locks its customer.
pub(crate) struct Proposals {
    targets: BTreeMap<CustomerId, Option<Target>>,
    histories: BTreeMap<(CustomerId, ActionKind), CapHistory>,
    campaigns: BTreeMap<CampaignId, Campaign>,
    caps: Vec<guard::FrequencyCap>,
    now: DateTime<Utc>,
    accepted: Vec<(ActionId, NewAction)>,
}

impl Proposals {
    /// Reads the guard-rail state of `actions`' customers; `lock`: the backend whose locks to
    /// take (`None` for a read that decides nothing, e.g. a dry run).
    pub(crate) async fn read(
        txn: &DatabaseTransaction,
        lock: Option<Backend>,
        actions: &[&NewAction],
        guard: &GuardConfig,
        now: DateTime<Utc>,
    ) -> Result<Self> {
        let requested: Vec<CustomerId> = actions
            .iter()
            .map(|a| a.customer)
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let resolved = targets(txn, &requested).await?;
        let targets: BTreeMap<CustomerId, Option<Target>> =
            requested.iter().copied().zip(resolved).collect();
        if let Some(backend) = lock {
            let live: Vec<CustomerId> = targets.values().flatten().map(|t| t.customer).collect();
            lock_customers(txn, backend, &live).await?;
        }
        let mut campaigns = BTreeMap::new();
        for id in actions.iter().filter_map(|a| a.campaign) {
            if let std::collections::btree_map::Entry::Vacant(slot) = campaigns.entry(id) {
                slot.insert(get_campaign(txn, &Lookup::Id(id)).await?);
            }
        }
        let mut histories = BTreeMap::new();
        let kinds: BTreeSet<&ActionKind> = actions.iter().map(|a| &a.kind).collect();
        for kind in kinds {
            // Erased customers have no history that matters: they are never targeted.
            let customers: Vec<CustomerId> = actions
                .iter()
                .filter(|a| a.kind == *kind)
                .filter_map(|a| targets.get(&a.customer)?.as_ref())
                .filter(|t| !t.privacy.erased)
                .map(|t| t.customer)
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect();
            for (customer, history) in cap_histories(txn, &customers, kind, guard, now).await? {
                histories.insert((customer, kind.clone()), history);
            }
        }
        Ok(Self {
            targets,
            histories,
            campaigns,
            caps: guard.caps.clone(),
            now,
            accepted: Vec::new(),
        })
    }

    /// What the guard rails say about `action` (one of those the batch was read for) now,
    /// after the actions accepted so far. `Err`: the customer is unknown, or the value does not
    /// fit the campaign (`INVALID_ARGUMENT`).
    pub(crate) fn check(&self, action: &NewAction) -> Result<Eligibility> {
        let target = self.target(action)?;
        if let Some(campaign) = action.campaign {
            let campaign = self
                .campaigns
                .get(&campaign)
                .ok_or_else(|| corrupt("a proposal's campaign was not read"))?;
            check_value_currency(&campaign.budget, action.value)?;
        }
        let history = self
            .histories
            .get(&(target.customer, action.kind.clone()))
            .map_or(&[][..], Vec::as_slice);
        Ok(eligibility(&Candidate {
            kind: &action.kind,
            channel: action.channel,
            privacy: target.privacy,
            consents: &target.consents,
            caps: &self.caps,
            history,
            now: self.now,
        }))
    }

    fn target(&self, action: &NewAction) -> Result<&Target> {
        match self.targets.get(&action.customer) {
            Some(Some(target)) => Ok(target),
            Some(None) => Err(Error::not_found("customer", action.customer.to_string())),
            None => Err(corrupt("a proposal's customer was not read")),
        }
    }

    /// Accepts `action` (which [`Proposals::check`] found eligible) for its live customer: it is
    /// written by [`Proposals::write`] under the id returned, and counts in the caps of the
    /// actions checked after it.
    pub(crate) fn accept(&mut self, mut action: NewAction) -> Result<ActionId> {
        action.customer = self.target(&action)?.customer;
        if let Some(history) = self
            .histories
            .get_mut(&(action.customer, action.kind.clone()))
        {
            history.push((action.kind.clone(), self.now, ActionState::Proposed));
        } else if self.caps.iter().any(|c| c.kind == action.kind) {
            self.histories.insert(
                (action.customer, action.kind.clone()),
                vec![(action.kind.clone(), self.now, ActionState::Proposed)],
            );
        }
        let id = ActionId::generate();
        self.accepted.push((id, action));
        Ok(id)
    }

    /// How many actions were accepted.
    pub(crate) fn accepted(&self) -> usize {
        self.accepted.len()
    }

    /// Writes the accepted actions (PROPOSED by `principal`) and their events, in the order
    /// they were accepted, with multi-row statements.
    pub(crate) async fn write(
        self,
        txn: &DatabaseTransaction,
        principal: &str,
    ) -> Result<Vec<Action>> {
        let now = self.now;
        let stored: Vec<Action> = self
            .accepted
            .into_iter()
            .map(|(id, action)| Action {
                id,
                action,
                state: ActionState::Proposed,
                revision: 1,
                created_by: principal.to_owned(),
                created_at: now,
                updated_at: now,
                history: Vec::new(),
                outcomes: Vec::new(),
            })
            .collect();
        insert_actions(txn, &stored).await?;
        let moves: Vec<(&Action, Option<ActionState>)> = stored.iter().map(|a| (a, None)).collect();
        append_events(txn, &moves, ActionState::Proposed, principal, now).await?;
        match stored.as_slice() {
            [] => {}
            [one] => {
                tracing::info!(action_id = %one.id, customer_id = %one.action.customer, kind = %one.action.kind, "action proposed");
            }
            many => tracing::info!(actions = many.len(), "actions proposed"),
        }
        Ok(stored)
    }
}

/// A campaign's actions must be worth something, in the budget's currency.
pub(crate) fn check_value_currency(budget: &Budget, value: Option<Money>) -> Result<()> {
    let Some(value) = value else {
        return Err(Error::invalid_field(
            "action.value",
            "required for an action of a campaign: what it costs the campaign's budget",
        ));
    };
    if value.currency != budget.limit.currency {
        return Err(Error::InvalidArgument {
            reason: "CURRENCY_MISMATCH",
            violations: vec![FieldViolation {
                field: "action.value.currency_code".into(),
                description: format!(
                    "the campaign's budget is in {}, the value in {}",
                    budget.limit.currency, value.currency
                ),
            }],
        });
    }
    Ok(())
}

/// A customer's actions as the frequency caps count them: kind, created, current state.
type CapHistory = Vec<(ActionKind, DateTime<Utc>, ActionState)>;

/// For each of `customers` (live) with any: its actions of `kind` (and those of everyone merged
/// into it) within the longest cap window of `kind`, in a few statements for all of them.
async fn cap_histories(
    conn: &impl ConnectionTrait,
    customers: &[CustomerId],
    kind: &ActionKind,
    guard: &GuardConfig,
    now: DateTime<Utc>,
) -> Result<BTreeMap<CustomerId, CapHistory>> {
    let mut out: BTreeMap<CustomerId, CapHistory> = BTreeMap::new();
    let Some(window) = guard
        .caps
        .iter()
        .filter(|c| c.kind == *kind)
        .map(|c| c.window)
        .max()
    else {
        return Ok(out);
    };
    let family = merged_families(conn, customers).await?;
    let root: BTreeMap<String, CustomerId> = family
        .iter()
        .map(|(member, top)| (member.to_string(), *top))
        .collect();
    let members: Vec<String> = root.keys().cloned().collect();
    for chunk in members.chunks(IN_LIST_CHUNK) {
        let mut sql = Sql::new(
            conn.get_database_backend(),
            "SELECT customer_id, kind, created_at, state FROM loyalty_actions WHERE customer_id",
        );
        sql.in_texts(chunk.iter().cloned())
            .push(" AND kind = ")
            .bind(text(kind.to_string()))
            .push(" AND created_at > ")
            .bind(time(now - window));
        for row in conn.query_all_raw(sql.build()).await.db()? {
            let customer: String = get(&row, "customer_id")?;
            let kind: String = get(&row, "kind")?;
            let state: String = get(&row, "state")?;
            let Some(top) = root.get(&customer) else {
                continue;
            };
            out.entry(*top).or_default().push((
                ActionKind::parse(&kind).map_err(corrupt)?,
                get(&row, "created_at")?,
                state.parse().map_err(corrupt)?,
            ));
        }
    }
    Ok(out)
}

/// `rows` cut into pieces of at most `columns`' statement size whose lengths are powers of two
/// (450 rows: 256, 128, 64 and 2), so that the multi-row statements of batches of any size
/// repeat a few texts, each prepared once per connection and reused (a statement of a new
/// length costs a parse and plan of thousands of placeholders on either backend).
pub(crate) fn statement_chunks<T>(rows: &[T], columns: usize) -> Vec<&[T]> {
    let most = crate::rows_per_statement(columns).max(1);
    let most = 1usize << most.ilog2();
    let mut out = Vec::new();
    let mut rest = rows;
    while !rest.is_empty() {
        let n = most.min(1usize << rest.len().ilog2());
        let (head, tail) = rest.split_at(n);
        out.push(head);
        rest = tail;
    }
    out
}

/// Inserts `actions` with multi-row statements.
async fn insert_actions(txn: &DatabaseTransaction, actions: &[Action]) -> Result<()> {
    for chunk in statement_chunks(actions, 18) {
        let mut sql = Sql::new(
            txn.get_database_backend(),
            &format!("INSERT INTO loyalty_actions ({ACTION_COLUMNS}) VALUES "),
        );
        for (i, a) in chunk.iter().enumerate() {
            if i > 0 {
                sql.push(", ");
            }
            let n = &a.action;
            sql.tuple([
                text(a.id.to_string()),
                text(n.customer.to_string()),
                text(n.kind.to_string()),
                text_opt(n.rule.as_ref().map(|r| r.id.clone())),
                sea_orm::Value::BigInt(n.rule.as_ref().map(|r| r.version)),
                text(n.reason.as_str()),
                text(n.channel.as_str()),
                sea_orm::Value::BigInt(n.value.map(|v| v.amount_minor)),
                text_opt(n.value.map(|v| v.currency.code())),
                text_opt(n.campaign.map(|c| c.to_string())),
                int(0),
                time(n.due_at),
                text(n.assignee_team.as_str()),
                text(a.state.as_str()),
                int(a.revision),
                text(a.created_by.as_str()),
                time(a.created_at),
                time(a.updated_at),
            ]);
        }
        txn.execute_raw(sql.build()).await.db()?;
    }
    Ok(())
}

/// One action row and what it holds reserved.
struct ActionRow {
    action: Action,
    reserved_minor: i64,
}

fn action_row(row: &QueryResult) -> Result<ActionRow> {
    let id: String = get(row, "id")?;
    let customer: String = get(row, "customer_id")?;
    let kind: String = get(row, "kind")?;
    let rule_id: Option<String> = get(row, "rule_id")?;
    let rule_version: Option<i64> = get(row, "rule_version")?;
    let channel: String = get(row, "channel")?;
    let value_minor: Option<i64> = get(row, "value_minor")?;
    let value_currency: Option<String> = get(row, "value_currency")?;
    let campaign: Option<String> = get(row, "campaign_id")?;
    let state: String = get(row, "state")?;
    let value = match (value_minor, value_currency) {
        (Some(minor), Some(code)) => {
            Some(Money::new(minor, Currency::parse(&code).map_err(corrupt)?))
        }
        _ => None,
    };
    Ok(ActionRow {
        action: Action {
            id: id.parse().map_err(corrupt)?,
            action: NewAction {
                customer: customer.parse().map_err(corrupt)?,
                kind: ActionKind::parse(&kind).map_err(corrupt)?,
                rule: rule_id.map(|id| RuleRef {
                    id,
                    version: rule_version.unwrap_or(0),
                }),
                reason: get(row, "reason")?,
                channel: parse_channel(&channel)?,
                value,
                campaign: campaign.map(|c| c.parse()).transpose().map_err(corrupt)?,
                due_at: get(row, "due_at")?,
                assignee_team: get(row, "assignee_team")?,
            },
            state: state.parse().map_err(corrupt)?,
            revision: get(row, "revision")?,
            created_by: get(row, "created_by")?,
            created_at: get(row, "created_at")?,
            updated_at: get(row, "updated_at")?,
            history: Vec::new(),
            outcomes: Vec::new(),
        },
        reserved_minor: get(row, "reserved_minor")?,
    })
}

fn parse_channel(s: &str) -> Result<ContactChannel> {
    [
        ContactChannel::Email,
        ContactChannel::Sms,
        ContactChannel::Phone,
        ContactChannel::Letter,
        ContactChannel::Push,
        ContactChannel::InApp,
    ]
    .into_iter()
    .find(|c| c.as_str() == s)
    .ok_or_else(|| corrupt(format!("unknown contact channel {s}")))
}

/// Loads the histories and outcomes of `actions`, in one statement each.
async fn with_history(conn: &impl ConnectionTrait, actions: &mut [Action]) -> Result<()> {
    if actions.is_empty() {
        return Ok(());
    }
    with_outcomes(conn, actions).await?;
    let mut sql = Sql::new(
        conn.get_database_backend(),
        "SELECT action_id, from_state, to_state, principal, at FROM loyalty_action_transitions \
         WHERE action_id",
    );
    sql.in_texts(actions.iter().map(|a| a.id.to_string()))
        .push(" ORDER BY action_id, seq");
    for row in conn.query_all_raw(sql.build()).await.db()? {
        let id: String = get(&row, "action_id")?;
        let from: String = get(&row, "from_state")?;
        let to: String = get(&row, "to_state")?;
        if let Some(a) = actions.iter_mut().find(|a| a.id.to_string() == id) {
            a.history.push(Transition {
                from: from.parse().map_err(corrupt)?,
                to: to.parse().map_err(corrupt)?,
                principal: get(&row, "principal")?,
                at: get(&row, "at")?,
            });
        }
    }
    Ok(())
}

async fn action_row_by_id(
    conn: &impl ConnectionTrait,
    id: ActionId,
    for_update: bool,
) -> Result<ActionRow> {
    let mut sql = Sql::new(
        conn.get_database_backend(),
        &format!("SELECT {ACTION_COLUMNS} FROM loyalty_actions WHERE id = "),
    );
    sql.bind(text(id.to_string()));
    if for_update && conn.get_database_backend() == sea_orm::DbBackend::Postgres {
        sql.push(" FOR UPDATE");
    }
    let row = conn
        .query_one_raw(sql.build())
        .await
        .db()?
        .ok_or_else(|| Error::not_found("action", id.to_string()))?;
    action_row(&row)
}

async fn get_action(conn: &impl ConnectionTrait, id: ActionId, for_update: bool) -> Result<Action> {
    let mut action = action_row_by_id(conn, id, for_update).await?.action;
    with_history(conn, std::slice::from_mut(&mut action)).await?;
    Ok(action)
}

async fn list_actions(
    conn: &impl ConnectionTrait,
    filter: &ActionFilter,
    now: DateTime<Utc>,
    page: &PageRequest,
) -> Result<Page<Action>> {
    let size = page.size.max(1) as usize;
    let mut sql = Sql::new(
        conn.get_database_backend(),
        &format!("SELECT {ACTION_COLUMNS} FROM loyalty_actions WHERE 1 = 1"),
    );
    if let Some(customer) = filter.customer {
        let live = crate::customers::live(conn, customer).await?;
        let family = merged_family(conn, live).await?;
        sql.push(" AND customer_id")
            .in_texts(family.iter().map(ToString::to_string));
    }
    if let Some(state) = filter.state {
        sql.push(" AND state = ").bind(text(state.as_str()));
    }
    if let Some(kind) = &filter.kind {
        sql.push(" AND kind = ").bind(text(kind.to_string()));
    }
    if let Some(team) = &filter.assignee_team {
        sql.push(" AND assignee_team = ").bind(text(team.as_str()));
    }
    if filter.sla_breached_only {
        sql.push(" AND state IN ('PROPOSED', 'APPROVED') AND due_at < ")
            .bind(time(now));
    }
    if let Some(after) = &page.after {
        sql.push(" AND id > ").bind(text(after.as_str()));
    }
    sql.push(" ORDER BY id")
        .limit(u64::try_from(size + 1).unwrap_or(u64::MAX));
    let mut actions = conn
        .query_all_raw(sql.build())
        .await
        .db()?
        .iter()
        .map(|row| action_row(row).map(|r| r.action))
        .collect::<Result<Vec<_>>>()?;
    let more = actions.len() > size;
    actions.truncate(size);
    with_history(conn, &mut actions).await?;
    let next_after = if more {
        actions.last().map(|a| a.id.to_string())
    } else {
        None
    };
    Ok(Page {
        items: actions,
        next_after,
    })
}

async fn transition(
    txn: &DatabaseTransaction,
    backend: Backend,
    principal: &str,
    id: ActionId,
    to: ActionState,
    etag: Option<&str>,
) -> Result<Action> {
    let ActionRow {
        mut action,
        reserved_minor,
    } = action_row_by_id(txn, id, true).await?;
    check_etag(etag, action.revision, "action")?;
    act::transition(action.state, to)?;
    let now = crate::now();
    let mut reserved_after = reserved_minor;
    if to == ActionState::Approved {
        // The customer may have been erased, merged or withdrawn consent since the proposal.
        let target = target(txn, action.action.customer).await?;
        lock_customers(txn, backend, &[target.customer]).await?;
        eligibility(&Candidate {
            kind: &action.action.kind,
            channel: action.action.channel,
            privacy: target.privacy,
            consents: &target.consents,
            caps: &[],
            history: &[],
            now,
        })
        .into_result()?;
        if let (Some(campaign), Some(value)) = (action.action.campaign, action.action.value) {
            reserve(txn, campaign, value).await?;
            reserved_after = value.amount_minor;
        }
    } else if reserved_minor > 0
        && let Some(campaign) = action.action.campaign
    {
        match to {
            ActionState::Redeemed => {
                settle(txn, campaign, reserved_minor, true).await?;
                reserved_after = 0;
            }
            ActionState::Cancelled | ActionState::Declined | ActionState::Expired => {
                settle(txn, campaign, reserved_minor, false).await?;
                reserved_after = 0;
            }
            _ => {}
        }
    }
    let backend_db = txn.get_database_backend();
    let mut sql = Sql::new(backend_db, "UPDATE loyalty_actions SET state = ");
    sql.bind(text(to.as_str()))
        .push(", revision = revision + 1, reserved_minor = ")
        .bind(int(reserved_after))
        .push(", updated_at = ")
        .bind(time(now))
        .push(" WHERE id = ")
        .bind(text(id.to_string()))
        .push(" AND revision = ")
        .bind(int(action.revision));
    if txn.execute_raw(sql.build()).await.db()?.rows_affected() != 1 {
        return Err(Error::aborted(
            "CONCURRENT_UPDATE",
            "the action changed while it was being moved: read it again and retry",
        ));
    }
    with_history(txn, std::slice::from_mut(&mut action)).await?;
    let seq = i64::try_from(action.history.len()).map_err(corrupt)? + 1;
    let mut sql = Sql::new(
        backend_db,
        "INSERT INTO loyalty_action_transitions (action_id, seq, from_state, to_state, principal, at) VALUES ",
    );
    sql.tuple([
        text(id.to_string()),
        int(seq),
        text(action.state.as_str()),
        text(to.as_str()),
        text(principal),
        time(now),
    ]);
    txn.execute_raw(sql.build()).await.db()?;
    append_events(txn, &[(&action, Some(action.state))], to, principal, now).await?;
    action.history.push(Transition {
        from: action.state,
        to,
        principal: principal.to_owned(),
        at: now,
    });
    action.state = to;
    action.revision += 1;
    action.updated_at = now;
    tracing::info!(action_id = %id, from = %action.history.last().map_or(to, |t| t.from), to = %to, "action moved");
    Ok(action)
}

/// Reserves `value` of the campaign's budget in one conditional statement: it changes the row
/// only if the budget still covers the value, whatever other replicas reserved meanwhile.
async fn reserve(txn: &DatabaseTransaction, campaign: CampaignId, value: Money) -> Result<()> {
    let mut sql = Sql::new(
        txn.get_database_backend(),
        "UPDATE loyalty_campaigns SET reserved_minor = reserved_minor + ",
    );
    sql.bind(int(value.amount_minor))
        .push(" WHERE id = ")
        .bind(text(campaign.to_string()))
        .push(" AND currency = ")
        .bind(text(value.currency.code()))
        .push(" AND spent_minor + reserved_minor + ")
        .bind(int(value.amount_minor))
        .push(" <= budget_minor");
    if txn.execute_raw(sql.build()).await.db()?.rows_affected() == 1 {
        return Ok(());
    }
    // Refused: say why, from the budget as it is now.
    let current = get_campaign(txn, &Lookup::Id(campaign)).await?;
    guard::reserve(&current.budget, value)?;
    Err(Error::aborted(
        "CONCURRENT_UPDATE",
        "the budget changed while the action was approved: retry",
    ))
}

/// Releases `amount` of the campaign's reservation, spending it when `spend`.
async fn settle(
    txn: &DatabaseTransaction,
    campaign: CampaignId,
    amount: i64,
    spend: bool,
) -> Result<()> {
    let mut sql = Sql::new(
        txn.get_database_backend(),
        "UPDATE loyalty_campaigns SET reserved_minor = reserved_minor - ",
    );
    sql.bind(int(amount));
    if spend {
        sql.push(", spent_minor = spent_minor + ").bind(int(amount));
    }
    sql.push(" WHERE id = ")
        .bind(text(campaign.to_string()))
        .push(" AND reserved_minor >= ")
        .bind(int(amount));
    if txn.execute_raw(sql.build()).await.db()?.rows_affected() != 1 {
        return Err(corrupt(format!(
            "campaign {campaign} holds less reserved than an action of it"
        )));
    }
    Ok(())
}

// ------------------------------------------------------------------------------------------------
// Executors: the action event log and reported outcomes

/// Appends the moves of `moves` (each action, from the state it leaves) into `to` to the event
/// log, in order, committed with `txn`. The positions are taken from the log's one head row
/// (one `UPDATE` for all of them), which stays locked until `txn` ends: on PostgreSQL positions
/// are thus handed out in commit order across replicas (the head row is the last lock a
/// loyalty write takes, so no lock cycle can form around it).
async fn append_events(
    txn: &DatabaseTransaction,
    moves: &[(&Action, Option<ActionState>)],
    to: ActionState,
    principal: &str,
    now: DateTime<Utc>,
) -> Result<()> {
    if moves.is_empty() {
        return Ok(());
    }
    let db = txn.get_database_backend();
    let n = i64::try_from(moves.len()).map_err(corrupt)?;
    let mut sql = Sql::new(db, "UPDATE loyalty_action_event_log SET head = head + ");
    sql.bind(int(n)).push(" WHERE id = 1 RETURNING head");
    let row = txn
        .query_one_raw(sql.build())
        .await
        .db()?
        .ok_or_else(|| corrupt("loyalty_action_event_log has no row"))?;
    let head: i64 = get(&row, "head")?;
    let mut seq = head - n;
    for chunk in statement_chunks(moves, 9) {
        let mut sql = Sql::new(
            db,
            "INSERT INTO loyalty_action_events (seq, action_id, assignee_team, kind, channel, \
             from_state, to_state, principal, occurred_at) VALUES ",
        );
        for (i, (action, from)) in chunk.iter().enumerate() {
            if i > 0 {
                sql.push(", ");
            }
            seq += 1;
            sql.tuple([
                int(seq),
                text(action.id.to_string()),
                text(action.action.assignee_team.as_str()),
                text(action.action.kind.to_string()),
                text(action.action.channel.as_str()),
                text_opt(from.map(ActionState::as_str)),
                text(to.as_str()),
                text(principal),
                time(now),
            ]);
        }
        txn.execute_raw(sql.build()).await.db()?;
    }
    Ok(())
}

/// Up to `limit` events after `after` that pass `filter`, with their actions, from one
/// snapshot.
async fn read_events(
    conn: &impl ConnectionTrait,
    after: i64,
    filter: &EventFilter,
    limit: u32,
) -> Result<EventSlice> {
    let db = conn.get_database_backend();
    let bounds = conn
        .query_one_raw(
            Sql::new(
                db,
                "SELECT head, pruned_through FROM loyalty_action_event_log WHERE id = 1",
            )
            .build(),
        )
        .await
        .db()?
        .ok_or_else(|| corrupt("loyalty_action_event_log has no row"))?;
    let head: i64 = get(&bounds, "head")?;
    let horizon: i64 = get(&bounds, "pruned_through")?;
    if limit == 0 || after >= head {
        return Ok(EventSlice {
            events: Vec::new(),
            through: after.max(horizon).min(head),
            horizon,
            head,
        });
    }
    let mut sql = Sql::new(
        db,
        "SELECT seq, action_id, from_state, to_state, principal, occurred_at \
         FROM loyalty_action_events WHERE seq > ",
    );
    sql.bind(int(after))
        .push(" AND seq <= ")
        .bind(int(head))
        .push(" AND assignee_team = ")
        .bind(text(filter.team.as_str()))
        .push(" AND to_state")
        .in_texts(filter.states.iter().map(|s| s.as_str().to_owned()));
    if !filter.channels.is_empty() {
        sql.push(" AND channel")
            .in_texts(filter.channels.iter().map(|c| c.as_str().to_owned()));
    }
    match (filter.kinds.is_empty(), filter.any_custom) {
        (true, false) => {}
        (true, true) => {
            sql.push(" AND kind LIKE 'custom:%'");
        }
        (false, any_custom) => {
            sql.push(" AND (kind")
                .in_texts(filter.kinds.iter().map(ToString::to_string));
            if any_custom {
                sql.push(" OR kind LIKE 'custom:%'");
            }
            sql.push(")");
        }
    }
    sql.push(" ORDER BY seq").limit(u64::from(limit));
    let mut events = Vec::new();
    for row in conn.query_all_raw(sql.build()).await.db()? {
        let id: String = get(&row, "action_id")?;
        let from: Option<String> = get(&row, "from_state")?;
        let to: String = get(&row, "to_state")?;
        events.push(ActionEvent {
            seq: get(&row, "seq")?,
            action_id: id.parse().map_err(corrupt)?,
            from: from.map(|f| f.parse()).transpose().map_err(corrupt)?,
            to: to.parse().map_err(corrupt)?,
            principal: get(&row, "principal")?,
            at: get(&row, "occurred_at")?,
        });
    }
    let through = if events.len() == limit as usize {
        events.last().map_or(head, |e| e.seq)
    } else {
        head
    };
    let mut actions = Vec::new();
    if !events.is_empty() {
        let ids: BTreeSet<String> = events.iter().map(|e| e.action_id.to_string()).collect();
        let mut sql = Sql::new(
            db,
            &format!("SELECT {ACTION_COLUMNS} FROM loyalty_actions WHERE id"),
        );
        sql.in_texts(ids);
        actions = conn
            .query_all_raw(sql.build())
            .await
            .db()?
            .iter()
            .map(|row| action_row(row).map(|r| r.action))
            .collect::<Result<Vec<_>>>()?;
        with_history(conn, &mut actions).await?;
    }
    let events = events
        .into_iter()
        .filter_map(|event| {
            let action = actions.iter().find(|a| a.id == event.action_id)?.clone();
            Some(EventWithAction { event, action })
        })
        .collect();
    Ok(EventSlice {
        events,
        through,
        horizon,
        head,
    })
}

/// Deletes the events committed before `before` and moves the horizon past them.
async fn prune_events(txn: &DatabaseTransaction, before: DateTime<Utc>) -> Result<u64> {
    let db = txn.get_database_backend();
    let mut sql = Sql::new(
        db,
        "SELECT MAX(seq) AS last FROM loyalty_action_events WHERE occurred_at < ",
    );
    sql.bind(time(before));
    let last: Option<i64> = match txn.query_one_raw(sql.build()).await.db()? {
        Some(row) => get(&row, "last")?,
        None => None,
    };
    let Some(last) = last else {
        return Ok(0);
    };
    let mut sql = Sql::new(db, "DELETE FROM loyalty_action_events WHERE seq <= ");
    sql.bind(int(last));
    let deleted = txn.execute_raw(sql.build()).await.db()?.rows_affected();
    let mut sql = Sql::new(db, "UPDATE loyalty_action_event_log SET pruned_through = ");
    sql.bind(int(last))
        .push(" WHERE id = 1 AND pruned_through < ")
        .bind(int(last));
    txn.execute_raw(sql.build()).await.db()?;
    Ok(deleted)
}

/// Records an executor's report on an action and makes the move it implies.
async fn report(
    txn: &DatabaseTransaction,
    backend: Backend,
    principal: &str,
    id: ActionId,
    outcome: NewOutcome,
) -> Result<Action> {
    let current = action_row_by_id(txn, id, true).await?.action;
    let to = apply_outcome(current.state, outcome.kind)?;
    let db = txn.get_database_backend();
    let mut sql = Sql::new(
        db,
        "SELECT COUNT(*) AS n FROM loyalty_action_outcomes WHERE action_id = ",
    );
    sql.bind(text(id.to_string()));
    let count: i64 = match txn.query_one_raw(sql.build()).await.db()? {
        Some(row) => get(&row, "n")?,
        None => 0,
    };
    let now = crate::now();
    let mut sql = Sql::new(
        db,
        "INSERT INTO loyalty_action_outcomes (action_id, seq, outcome, reason, external_ref, \
         note, principal, reported_at) VALUES ",
    );
    sql.tuple([
        text(id.to_string()),
        int(count + 1),
        text(outcome.kind.as_str()),
        text_opt(outcome.reason.clone()),
        text_opt(outcome.external_ref.clone()),
        text_opt(outcome.note.clone()),
        text(principal),
        time(now),
    ]);
    txn.execute_raw(sql.build()).await.db()?;
    tracing::info!(action_id = %id, outcome = outcome.kind.as_str(), "action outcome reported");
    match to {
        Some(to) => transition(txn, backend, principal, id, to, None).await,
        None => get_action(txn, id, false).await,
    }
}

/// Loads the outcomes of `actions`, in one statement.
async fn with_outcomes(conn: &impl ConnectionTrait, actions: &mut [Action]) -> Result<()> {
    let mut sql = Sql::new(
        conn.get_database_backend(),
        "SELECT action_id, outcome, reason, external_ref, note, principal, reported_at \
         FROM loyalty_action_outcomes WHERE action_id",
    );
    sql.in_texts(actions.iter().map(|a| a.id.to_string()))
        .push(" ORDER BY action_id, seq");
    for row in conn.query_all_raw(sql.build()).await.db()? {
        let id: String = get(&row, "action_id")?;
        let kind: String = get(&row, "outcome")?;
        if let Some(a) = actions.iter_mut().find(|a| a.id.to_string() == id) {
            a.outcomes.push(Outcome {
                outcome: NewOutcome {
                    kind: OutcomeKind::parse(&kind)
                        .ok_or_else(|| corrupt(format!("unknown outcome {kind}")))?,
                    reason: get(&row, "reason")?,
                    external_ref: get(&row, "external_ref")?,
                    note: get(&row, "note")?,
                },
                principal: get(&row, "principal")?,
                at: get(&row, "reported_at")?,
            });
        }
    }
    Ok(())
}

// ------------------------------------------------------------------------------------------------
// Campaigns

const CAMPAIGN_COLUMNS: &str =
    "id, key, name, currency, budget_minor, spent_minor, reserved_minor, created_at";

async fn create_campaign(txn: &DatabaseTransaction, new: NewCampaign) -> Result<Campaign> {
    let budget = Budget::new(new.budget).map_err(|_| {
        Error::invalid_field("campaign.budget.amount_minor", "must not be negative")
    })?;
    let campaign = Campaign {
        id: CampaignId::generate(),
        key: new.key,
        name: new.name,
        budget,
        created_at: crate::now(),
    };
    let mut sql = Sql::new(
        txn.get_database_backend(),
        &format!("INSERT INTO loyalty_campaigns ({CAMPAIGN_COLUMNS}) VALUES "),
    );
    sql.tuple([
        text(campaign.id.to_string()),
        text(campaign.key.as_str()),
        text(campaign.name.as_str()),
        text(budget.limit.currency.code()),
        int(budget.limit.amount_minor),
        int(0),
        int(0),
        time(campaign.created_at),
    ])
    .push(" ON CONFLICT (key) DO NOTHING");
    if txn.execute_raw(sql.build()).await.db()?.rows_affected() != 1 {
        return Err(Error::AlreadyExists {
            reason: "CAMPAIGN_KEY_TAKEN",
            field: "campaign.key".into(),
            message: format!("a campaign with key {} exists already", campaign.key),
        });
    }
    Ok(campaign)
}

pub(crate) async fn get_campaign(
    conn: &impl ConnectionTrait,
    lookup: &Lookup<CampaignId>,
) -> Result<Campaign> {
    let (column, value) = match lookup {
        Lookup::Id(id) => ("id = ", id.to_string()),
        Lookup::Key(key) => ("key = ", key.as_str().to_owned()),
    };
    let mut sql = Sql::new(
        conn.get_database_backend(),
        &format!("SELECT {CAMPAIGN_COLUMNS} FROM loyalty_campaigns WHERE {column}"),
    );
    sql.bind(text(value.as_str()));
    let row = conn
        .query_one_raw(sql.build())
        .await
        .db()?
        .ok_or_else(|| Error::not_found("campaign", value.clone()))?;
    let id: String = get(&row, "id")?;
    let key: String = get(&row, "key")?;
    let currency: String = get(&row, "currency")?;
    let currency = Currency::parse(&currency).map_err(corrupt)?;
    let money = |column: &str| -> Result<Money> { Ok(Money::new(get(&row, column)?, currency)) };
    Ok(Campaign {
        id: id.parse().map_err(corrupt)?,
        key: Key::parse(&key).map_err(corrupt)?,
        name: get(&row, "name")?,
        budget: Budget {
            limit: money("budget_minor")?,
            spent: money("spent_minor")?,
            reserved: money("reserved_minor")?,
        },
        created_at: get(&row, "created_at")?,
    })
}

// ------------------------------------------------------------------------------------------------
// Points

/// A fingerprint of what a posting asks for, to tell a retry from a reused request id.
fn posting_fingerprint(posting: &PointsPosting) -> String {
    let json = serde_json::to_vec(&(&posting.customer, &posting.op)).unwrap_or_default();
    Sha256::digest(&json)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The first result of an earlier posting under the same request id, or `REQUEST_ID_REUSED`.
fn replayed(
    posting: &PointsPosting,
    fingerprint: &str,
    stored: &str,
    posted: Posted,
) -> Result<Posted> {
    if stored == fingerprint {
        Ok(posted)
    } else {
        Err(Error::InvalidArgument {
            reason: "REQUEST_ID_REUSED",
            violations: vec![FieldViolation {
                field: "request_id".into(),
                description: format!(
                    "request id {} was already used for a different entry: use a new id for a new entry",
                    posting.request_id
                ),
            }],
        })
    }
}

fn entry_kind_text(kind: EntryKind) -> &'static str {
    match kind {
        EntryKind::Accrual => "ACCRUAL",
        EntryKind::Redemption => "REDEMPTION",
        EntryKind::Expiry => "EXPIRY",
        EntryKind::Reversal => "REVERSAL",
        EntryKind::Adjustment => "ADJUSTMENT",
    }
}

fn parse_entry_kind(s: &str) -> Result<EntryKind> {
    [
        EntryKind::Accrual,
        EntryKind::Redemption,
        EntryKind::Expiry,
        EntryKind::Reversal,
        EntryKind::Adjustment,
    ]
    .into_iter()
    .find(|k| entry_kind_text(*k) == s)
    .ok_or_else(|| corrupt(format!("unknown entry kind {s}")))
}

/// An entry row: the fingerprint it was posted with and the entry with its balance after.
fn entry_row(row: &QueryResult) -> Result<(String, Posted)> {
    let customer: String = get(row, "customer_id")?;
    let kind: String = get(row, "kind")?;
    Ok((
        get(row, "fingerprint")?,
        Posted {
            entry: Entry {
                request_id: get(row, "request_id")?,
                customer: customer.parse().map_err(corrupt)?,
                kind: parse_entry_kind(&kind)?,
                points: get(row, "points")?,
                at: get(row, "posted_at")?,
                source_ref: get(row, "source_ref")?,
                expires_at: get(row, "expires_at")?,
                shortfall: get(row, "shortfall")?,
            },
            balance: get(row, "balance_after")?,
        },
    ))
}

pub(crate) async fn entry_by_request(
    conn: &impl ConnectionTrait,
    request_id: &str,
) -> Result<Option<(String, Posted)>> {
    let mut sql = Sql::new(
        conn.get_database_backend(),
        &format!("SELECT {ENTRY_COLUMNS} FROM loyalty_point_entries WHERE request_id = "),
    );
    sql.bind(text(request_id));
    conn.query_one_raw(sql.build())
        .await
        .db()?
        .map(|row| entry_row(&row))
        .transpose()
}

/// The entries of `family` (a customer and those merged into it), oldest first, as the
/// survivor's.
async fn entries_of(
    conn: &impl ConnectionTrait,
    family: &[CustomerId],
    survivor: CustomerId,
) -> Result<Vec<Entry>> {
    let mut sql = Sql::new(
        conn.get_database_backend(),
        &format!("SELECT {ENTRY_COLUMNS} FROM loyalty_point_entries WHERE customer_id"),
    );
    sql.in_texts(family.iter().map(ToString::to_string))
        .push(" ORDER BY id");
    conn.query_all_raw(sql.build())
        .await
        .db()?
        .iter()
        .map(|row| {
            entry_row(row).map(|(_, p)| Entry {
                customer: survivor,
                ..p.entry
            })
        })
        .collect()
}

/// The customer's ledger, replayed from their stored entries.
pub(crate) async fn ledger_of(
    conn: &impl ConnectionTrait,
    customer: CustomerId,
) -> Result<(Ledger, Vec<CustomerId>)> {
    let family = merged_family(conn, customer).await?;
    let mut ledger = Ledger::new();
    for entry in entries_of(conn, &family, customer).await? {
        let request_id = entry.request_id.clone();
        ledger
            .post(entry)
            .map_err(|err| corrupt(format!("stored entry {request_id} does not replay: {err}")))?;
    }
    Ok((ledger, family))
}

/// Posts under the customer's lock. `Ok(None)`: a concurrent posting with the same request id
/// committed first (the caller replays it).
pub(crate) async fn post(
    txn: &DatabaseTransaction,
    backend: Backend,
    posting: &PointsPosting,
) -> Result<Option<Posted>> {
    let fingerprint = posting_fingerprint(posting);
    if let Some((stored, posted)) = entry_by_request(txn, &posting.request_id).await? {
        return replayed(posting, &fingerprint, &stored, posted).map(Some);
    }
    let target = target(txn, posting.customer).await?;
    if target.privacy.erased {
        return Err(Error::precondition(
            "CUSTOMER_ERASED",
            format!(
                "customer {} was erased: their points are gone",
                posting.customer
            ),
        ));
    }
    let customer = target.customer;
    lock_customers(txn, backend, &[customer]).await?;
    // A posting with the same request id may have committed while this one waited for the
    // lock (on PostgreSQL every statement sees what committed before it): answer as it did.
    if let Some((stored, posted)) = entry_by_request(txn, &posting.request_id).await? {
        return replayed(posting, &fingerprint, &stored, posted).map(Some);
    }
    let (mut ledger, _) = ledger_of(txn, customer).await?;
    let now = crate::now();
    // Points that expired leave first, so that nothing below spends them.
    let expiry_id = format!("expiry:{}", uuid::Uuid::now_v7());
    if let Some(expiry) = ledger.plan_expiry(&expiry_id, customer, now) {
        ledger.post(expiry.clone())?;
        insert_entry(txn, &expiry, "expiry", ledger.balance(customer)).await?;
        tracing::info!(customer_id = %customer, points = expiry.points, "points expired");
    }
    let entry = match &posting.op {
        PointsOp::Earn {
            transaction,
            amount,
        } => {
            let stored = get_programme(txn).await?.ok_or_else(|| {
                Error::precondition(
                    "NO_EARNING_RULE",
                    "no points programme is set: transactions earn no points",
                )
            })?;
            let programme = stored.programme;
            let tier = ledger
                .tier(&programme.tiers, customer, now)
                .map(|t| t.name.as_str());
            let points = points_for(&programme.earning_rules, *amount, tier)?;
            if points <= 0 {
                return Err(Error::precondition(
                    "NO_POINTS_EARNED",
                    format!("a transaction of {amount} earns less than one point"),
                ));
            }
            Entry {
                request_id: posting.request_id.clone(),
                customer,
                kind: EntryKind::Accrual,
                points,
                at: now,
                source_ref: Some(transaction.clone()),
                expires_at: expiry_after_months(now, programme.expiry_months),
                shortfall: 0,
            }
        }
        PointsOp::Accrue {
            points,
            source_ref,
            expires_at,
        } => Entry {
            request_id: posting.request_id.clone(),
            customer,
            kind: EntryKind::Accrual,
            points: *points,
            at: now,
            source_ref: Some(source_ref.clone()),
            expires_at: *expires_at,
            shortfall: 0,
        },
        PointsOp::Redeem { points, source_ref } => Entry {
            request_id: posting.request_id.clone(),
            customer,
            kind: EntryKind::Redemption,
            points: points.checked_neg().unwrap_or(i64::MIN),
            at: now,
            source_ref: source_ref.clone(),
            expires_at: None,
            shortfall: 0,
        },
        PointsOp::Reverse { source_ref, points } => ledger
            .plan_reversal_of_points(&posting.request_id, customer, source_ref, *points, now)?
            .entry
            .ok_or_else(|| Error::invalid_field("points", "must be positive"))?,
    };
    match ledger.post(entry.clone())? {
        PostOutcome::Posted => {}
        PostOutcome::Duplicate => return Err(corrupt("a new request id posted as a duplicate")),
    }
    let balance = ledger.balance(customer);
    if !insert_entry(txn, &entry, &fingerprint, balance).await? {
        return Ok(None);
    }
    tracing::info!(customer_id = %customer, kind = entry_kind_text(entry.kind), points = entry.points, balance, "points posted");
    Ok(Some(Posted { entry, balance }))
}

/// Writes `entry` with its legs and the balance after it. `false`: an entry with its request id
/// exists already (a concurrent posting committed first).
pub(crate) async fn insert_entry(
    txn: &DatabaseTransaction,
    entry: &Entry,
    fingerprint: &str,
    balance: i64,
) -> Result<bool> {
    let id = uuid::Uuid::now_v7().to_string();
    let db = txn.get_database_backend();
    let mut sql = Sql::new(
        db,
        &format!("INSERT INTO loyalty_point_entries ({ENTRY_COLUMNS}) VALUES "),
    );
    sql.tuple([
        text(id.as_str()),
        text(entry.request_id.as_str()),
        text(fingerprint),
        text(entry.customer.to_string()),
        text(entry_kind_text(entry.kind)),
        int(entry.points),
        text_opt(entry.source_ref.clone()),
        time_opt(entry.expires_at),
        int(entry.shortfall),
        int(balance),
        time(entry.at),
    ])
    .push(" ON CONFLICT (request_id) DO NOTHING");
    if txn.execute_raw(sql.build()).await.db()?.rows_affected() != 1 {
        return Ok(false);
    }
    let mut sql = Sql::new(
        db,
        "INSERT INTO loyalty_point_legs (entry_id, account, points) VALUES ",
    );
    for (i, leg) in entry.legs().iter().enumerate() {
        if i > 0 {
            sql.push(", ");
        }
        let account = match leg.account {
            cxhub_domain::loyalty::points::Account::Customer(c) => format!("customer:{c}"),
            cxhub_domain::loyalty::points::Account::Programme => "programme".to_owned(),
            cxhub_domain::loyalty::points::Account::Breakage => "breakage".to_owned(),
        };
        sql.tuple([text(id.as_str()), text(account), int(leg.points)]);
    }
    txn.execute_raw(sql.build()).await.db()?;
    Ok(true)
}

/// The programme in force, if one was set.
pub(crate) async fn get_programme(conn: &impl ConnectionTrait) -> Result<Option<StoredProgramme>> {
    let sql = Sql::new(
        conn.get_database_backend(),
        "SELECT version, programme_json, updated_at FROM loyalty_programme WHERE id = 1",
    );
    let Some(row) = conn.query_one_raw(sql.build()).await.db()? else {
        return Ok(None);
    };
    let json: String = get(&row, "programme_json")?;
    Ok(Some(StoredProgramme {
        programme: serde_json::from_str(&json).map_err(corrupt)?,
        version: get(&row, "version")?,
        updated_at: get(&row, "updated_at")?,
    }))
}

/// Replaces the programme (the one row of `loyalty_programme`), bumping its version.
async fn set_programme(
    txn: &DatabaseTransaction,
    programme: PointsProgramme,
) -> Result<StoredProgramme> {
    check_earning_rules(&programme.earning_rules)?;
    let db = txn.get_database_backend();
    let version = get_programme(txn).await?.map_or(0, |p| p.version) + 1;
    let now = crate::now();
    let json = serde_json::to_string(&programme).map_err(corrupt)?;
    let mut sql = Sql::new(
        db,
        "INSERT INTO loyalty_programme (id, version, programme_json, updated_at) VALUES ",
    );
    sql.tuple([int(1), int(version), text(json.as_str()), time(now)])
        .push(" ON CONFLICT (id) DO UPDATE SET version = ")
        .bind(int(version))
        .push(", programme_json = ")
        .bind(text(json.as_str()))
        .push(", updated_at = ")
        .bind(time(now))
        .push(" WHERE loyalty_programme.version = ")
        .bind(int(version - 1));
    if txn.execute_raw(sql.build()).await.db()?.rows_affected() != 1 {
        return Err(Error::aborted(
            "CONCURRENT_UPDATE",
            "the programme changed while it was being set: retry",
        ));
    }
    Ok(StoredProgramme {
        programme,
        version,
        updated_at: now,
    })
}

async fn balance(
    conn: &impl ConnectionTrait,
    requested: CustomerId,
    recent: u32,
) -> Result<PointsBalance> {
    let customer = crate::customers::live(conn, requested).await?;
    let (ledger, _) = ledger_of(conn, customer).await?;
    let recent: Vec<Entry> = ledger
        .entries()
        .iter()
        .rev()
        .take(recent as usize)
        .cloned()
        .collect();
    let now = crate::now();
    // Points expired but not yet posted as such (that happens at the next posting) are not
    // part of what the customer has.
    let expired = ledger
        .plan_expiry("", customer, now)
        .map_or(0, |e| e.points);
    let tier = match get_programme(conn).await? {
        Some(p) => ledger
            .tier(&p.programme.tiers, customer, now)
            .map(|t| t.name.clone()),
        None => None,
    };
    Ok(PointsBalance {
        customer,
        balance: ledger.balance(customer) + expired,
        recent,
        tier,
    })
}

pub(crate) fn get<T: sea_orm::TryGetable>(row: &QueryResult, column: &str) -> Result<T> {
    row.try_get("", column).map_err(corrupt)
}
