//! Loyalty rules over [`Store`]: versions in `loyalty_rules` (one row per version, the
//! current one is the highest), and dry runs that read the facts of a batch of customers and
//! apply the domain's decision ([`cxhub_domain::loyalty::rule::decide`]) without writing.
//!
//! Concurrency: a rule write holds the write lock on SQLite (`BEGIN IMMEDIATE`); on PostgreSQL
//! it takes a transaction-scoped advisory lock on the rule id before reading the current
//! version, so two updates expecting the same version cannot both write the next one (and the
//! primary key on (id, version) would refuse the second anyway).

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use cxhub_domain::error::{Error, Result};
use cxhub_domain::idempotency::RequestKey;
use cxhub_domain::identifier::CustomerId;
use cxhub_domain::loyalty::action::{ConsentPurpose, ContactChannel};
use cxhub_domain::loyalty::condition::Condition;
use cxhub_domain::loyalty::condition::Facts;
use cxhub_domain::loyalty::guard::{Eligibility, Ineligibility, RuleQuota, consents_from_profile};
use cxhub_domain::loyalty::repo::{
    ActionId, DryRun, DryRunTarget, EventPass, ExpectedVersion, GuardConfig, NewAction, RulePatch,
    SweepReport,
};
use cxhub_domain::loyalty::rule::{self, Decision, Rule, RuleSpec, Trigger};
use cxhub_domain::money::Currency;
use cxhub_domain::page::{Page, PageRequest};
use cxhub_domain::repo::Lookup;
use cxhub_domain::touchpoint::{Key, check_etag};
use sea_orm::{ConnectionTrait, DatabaseTransaction, QueryResult};

use crate::IN_LIST_CHUNK;
use crate::error::{DbResultExt, corrupt};
use crate::idempotency::idempotent;
use crate::loyalty::{Proposals, check_value_currency, get, get_campaign};
use crate::sql::{Sql, int, text, time};
use crate::store::{Backend, Store, snapshot};

const RULE_COLUMNS: &str = "id, version, spec_json, created_by, created_at";

impl Store {
    pub(crate) async fn create_rule_impl(
        &self,
        req: &RequestKey,
        id: Key,
        spec: RuleSpec,
    ) -> Result<Rule> {
        let backend = self.kind;
        idempotent!(self, req, lock = begin_loyalty, |txn| create(
            &txn,
            backend,
            &req.principal,
            id,
            spec
        ))
    }

    pub(crate) async fn update_rule_impl(
        &self,
        req: &RequestKey,
        id: Key,
        expected: ExpectedVersion,
        patch: RulePatch,
    ) -> Result<Rule> {
        let backend = self.kind;
        idempotent!(self, req, lock = begin_loyalty, |txn| update(
            &txn,
            backend,
            &req.principal,
            id,
            expected,
            patch
        ))
    }

    pub(crate) async fn get_rule_impl(&self, id: &Key, version: Option<i64>) -> Result<Rule> {
        snapshot!(self, |txn| read_rule(&txn, id, version))
    }

    pub(crate) async fn list_rules_impl(&self, page: &PageRequest) -> Result<Page<Rule>> {
        snapshot!(self, |txn| list(&txn, page))
    }

    pub(crate) async fn scheduled_rules_impl(&self) -> Result<Vec<Rule>> {
        snapshot!(self, |txn| scheduled(&txn))
    }

    /// See [`cxhub_domain::loyalty::repo::LoyaltyRepo::run_sweep`]. One transaction per batch:
    /// on PostgreSQL it holds the rule's advisory lock, so two sweeps of one rule (two
    /// replicas) take turns batch by batch and the second sees what the first recorded.
    pub(crate) async fn run_sweep_impl(
        &self,
        rule: &Rule,
        guard: &GuardConfig,
        now: DateTime<Utc>,
        batch: u32,
    ) -> Result<SweepReport> {
        let condition = rule::compile_condition(&rule.spec.condition, "rule.condition")
            .map_err(Error::invalid)?;
        let day = now.date_naive().to_string();
        let mut report = SweepReport {
            rule_id: rule.id.as_str().to_owned(),
            rule_version: rule.version,
            run_day: day.clone(),
            ..SweepReport::default()
        };
        let mut after = None;
        let batch = batch.max(1);
        loop {
            let txn = self.begin_loyalty().await?;
            match sweep_batch(
                &txn,
                self.kind,
                rule,
                &condition,
                guard,
                now,
                &day,
                after,
                batch,
                &mut report,
            )
            .await
            {
                Ok(last) => {
                    txn.commit().await.db()?;
                    match last {
                        Some(last) => after = Some(last),
                        None => break,
                    }
                }
                Err(err) => {
                    crate::store::rollback(txn).await;
                    return Err(err);
                }
            }
        }
        tracing::info!(
            rule_id = %rule.id,
            version = rule.version,
            scanned = report.scanned,
            proposed = report.proposed,
            held_out = report.held_out,
            blocked = report.blocked,
            "rule swept"
        );
        Ok(report)
    }

    /// See [`cxhub_domain::loyalty::repo::LoyaltyRepo::follow_rule_events`].
    pub(crate) async fn follow_rule_events_impl(
        &self,
        guard: &GuardConfig,
        max: u32,
    ) -> Result<EventPass> {
        let txn = self.begin_loyalty().await?;
        match follow_events(&txn, self.kind, guard, max.max(1)).await {
            Ok(pass) => {
                txn.commit().await.db()?;
                if pass.events > 0 {
                    tracing::info!(
                        events = pass.events,
                        proposed = pass.proposed,
                        held_out = pass.held_out,
                        blocked = pass.blocked,
                        "rule events followed"
                    );
                }
                Ok(pass)
            }
            Err(err) => {
                crate::store::rollback(txn).await;
                Err(err)
            }
        }
    }

    pub(crate) async fn dry_run_rule_impl(
        &self,
        rule: &Rule,
        guard: &GuardConfig,
        after: Option<CustomerId>,
        max: u32,
    ) -> Result<DryRun> {
        snapshot!(self, |txn| dry_run(&txn, rule, guard, after, max))
    }
}

// ------------------------------------------------------------------------------------------------
// Versions

/// On PostgreSQL, serialises the writes of one rule across replicas until the transaction ends.
async fn lock_rule(txn: &DatabaseTransaction, backend: Backend, id: &Key) -> Result<()> {
    if backend == Backend::Postgres {
        let mut sql = Sql::new(
            sea_orm::DbBackend::Postgres,
            "SELECT pg_advisory_xact_lock(hashtext('cxhub.loyalty.rule.' || ",
        );
        sql.bind(text(id.as_str())).push("))");
        txn.execute_raw(sql.build()).await.db()?;
    }
    Ok(())
}

/// The template's campaign must exist, and the value be in its budget's currency.
async fn check_campaign(txn: &DatabaseTransaction, spec: &RuleSpec) -> Result<()> {
    if let Some(campaign) = spec.action.campaign {
        let campaign = get_campaign(txn, &Lookup::Id(campaign)).await?;
        check_value_currency(&campaign.budget, spec.action.value).map_err(|err| match err {
            Error::InvalidArgument { reason, violations } => Error::InvalidArgument {
                reason,
                violations: violations
                    .into_iter()
                    .map(|mut v| {
                        v.field = v.field.replacen("action.", "rule.action.", 1);
                        v
                    })
                    .collect(),
            },
            other => other,
        })?;
    }
    Ok(())
}

async fn create(
    txn: &DatabaseTransaction,
    backend: Backend,
    principal: &str,
    id: Key,
    spec: RuleSpec,
) -> Result<Rule> {
    lock_rule(txn, backend, &id).await?;
    if current_version(txn, &id).await?.is_some() {
        return Err(Error::AlreadyExists {
            reason: "RULE_ID_TAKEN",
            field: "rule.id".into(),
            message: format!("a rule with id `{id}` exists already: update it instead"),
        });
    }
    check_campaign(txn, &spec).await?;
    let rule = Rule {
        id,
        version: 1,
        spec,
        created_by: principal.to_owned(),
        created_at: crate::now(),
    };
    insert(txn, &rule).await?;
    tracing::info!(rule_id = %rule.id, version = rule.version, "rule created");
    Ok(rule)
}

async fn update(
    txn: &DatabaseTransaction,
    backend: Backend,
    principal: &str,
    id: Key,
    expected: ExpectedVersion,
    patch: RulePatch,
) -> Result<Rule> {
    lock_rule(txn, backend, &id).await?;
    let current = read_rule(txn, &id, None).await?;
    check_etag(expected.etag.as_deref(), current.version, "rule")?;
    if let Some(version) = expected.version
        && version != current.version
    {
        return Err(Error::aborted(
            "ETAG_MISMATCH",
            format!(
                "the rule is at version {}, not {version}: read it again and retry",
                current.version
            ),
        ));
    }
    let spec = patch.apply(&current.spec);
    check_campaign(txn, &spec).await?;
    let rule = Rule {
        id,
        version: current.version + 1,
        spec,
        created_by: principal.to_owned(),
        created_at: crate::now(),
    };
    insert(txn, &rule).await?;
    tracing::info!(rule_id = %rule.id, version = rule.version, "rule updated");
    Ok(rule)
}

async fn insert(txn: &DatabaseTransaction, rule: &Rule) -> Result<()> {
    let json = serde_json::to_string(&rule.spec).map_err(corrupt)?;
    let mut sql = Sql::new(
        txn.get_database_backend(),
        "INSERT INTO loyalty_rules (id, version, name, trigger, enabled, spec_json, created_by, \
         created_at) VALUES ",
    );
    sql.tuple([
        text(rule.id.as_str()),
        int(rule.version),
        text(rule.spec.name.as_str()),
        text(rule.spec.trigger.as_str()),
        sea_orm::Value::Bool(Some(rule.spec.enabled)),
        text(json),
        text(rule.created_by.as_str()),
        time(rule.created_at),
    ]);
    txn.execute_raw(sql.build()).await.db()?;
    Ok(())
}

async fn current_version(conn: &impl ConnectionTrait, id: &Key) -> Result<Option<i64>> {
    let mut sql = Sql::new(
        conn.get_database_backend(),
        "SELECT MAX(version) AS version FROM loyalty_rules WHERE id = ",
    );
    sql.bind(text(id.as_str()));
    match conn.query_one_raw(sql.build()).await.db()? {
        Some(row) => get::<Option<i64>>(&row, "version"),
        None => Ok(None),
    }
}

fn rule_row(row: &QueryResult) -> Result<Rule> {
    let id: String = get(row, "id")?;
    let json: String = get(row, "spec_json")?;
    Ok(Rule {
        id: Key::parse(&id).map_err(corrupt)?,
        version: get(row, "version")?,
        spec: serde_json::from_str(&json).map_err(corrupt)?,
        created_by: get(row, "created_by")?,
        created_at: get(row, "created_at")?,
    })
}

async fn read_rule(conn: &impl ConnectionTrait, id: &Key, version: Option<i64>) -> Result<Rule> {
    let version = match version {
        Some(v) => Some(v),
        None => current_version(conn, id).await?,
    };
    let not_found = || match version {
        Some(v) => Error::not_found("rule", format!("{id} version {v}")),
        None => Error::not_found("rule", id.to_string()),
    };
    let Some(version) = version else {
        return Err(not_found());
    };
    let mut sql = Sql::new(
        conn.get_database_backend(),
        &format!("SELECT {RULE_COLUMNS} FROM loyalty_rules WHERE id = "),
    );
    sql.bind(text(id.as_str()))
        .push(" AND version = ")
        .bind(int(version));
    let row = conn
        .query_one_raw(sql.build())
        .await
        .db()?
        .ok_or_else(not_found)?;
    rule_row(&row)
}

async fn list(conn: &impl ConnectionTrait, page: &PageRequest) -> Result<Page<Rule>> {
    let size = page.size.max(1) as usize;
    let mut sql = Sql::new(
        conn.get_database_backend(),
        &format!(
            "SELECT {RULE_COLUMNS} FROM loyalty_rules r WHERE r.version = \
             (SELECT MAX(v.version) FROM loyalty_rules v WHERE v.id = r.id)"
        ),
    );
    if let Some(after) = &page.after {
        sql.push(" AND r.id > ").bind(text(after.as_str()));
    }
    sql.push(" ORDER BY r.id")
        .limit(u64::try_from(size + 1).unwrap_or(u64::MAX));
    let mut rules = conn
        .query_all_raw(sql.build())
        .await
        .db()?
        .iter()
        .map(rule_row)
        .collect::<Result<Vec<_>>>()?;
    let more = rules.len() > size;
    rules.truncate(size);
    let next_after = if more {
        rules.last().map(|r| r.id.as_str().to_owned())
    } else {
        None
    };
    Ok(Page {
        items: rules,
        next_after,
    })
}

// ------------------------------------------------------------------------------------------------
// Facts and dry runs

/// One live customer of a batch and the facts its condition reads (the guard rails read their
/// own state: see [`Proposals`]).
pub(crate) struct CustomerFacts {
    pub(crate) customer: CustomerId,
    pub(crate) facts: Facts,
}

fn ids(customers: &[CustomerId]) -> impl Iterator<Item = String> + '_ {
    customers.iter().map(ToString::to_string)
}

/// The next at most `max` live (not merged-away) customers after `after`, in id order, with
/// their facts: category, churn band and probability, CLV (major units), RFM segment, latest
/// NPS and CSAT answer, days since the last order, and consents. The `event.*` facts are left
/// out (a sweep or a dry run has no event); `tags` and `attributes.*` are not kept by the hub
/// yet, so they are always missing.
pub(crate) async fn customer_facts(
    conn: &impl ConnectionTrait,
    after: Option<CustomerId>,
    max: u32,
    now: DateTime<Utc>,
) -> Result<Vec<CustomerFacts>> {
    let mut sql = Sql::new(
        conn.get_database_backend(),
        "SELECT id, consents_json FROM customers WHERE merged_into IS NULL",
    );
    if let Some(after) = after {
        sql.push(" AND id > ").bind(text(after.to_string()));
    }
    sql.push(" ORDER BY id").limit(u64::from(max));
    facts_of(conn, sql, now).await
}

/// The facts of the live customers among `customers` (at most [`IN_LIST_CHUNK`]), in id order.
pub(crate) async fn facts_of_customers(
    conn: &impl ConnectionTrait,
    customers: &[CustomerId],
    now: DateTime<Utc>,
) -> Result<Vec<CustomerFacts>> {
    if customers.is_empty() {
        return Ok(Vec::new());
    }
    let mut sql = Sql::new(
        conn.get_database_backend(),
        "SELECT id, consents_json FROM customers WHERE merged_into IS NULL AND id",
    );
    sql.in_texts(ids(customers)).push(" ORDER BY id");
    facts_of(conn, sql, now).await
}

/// The facts of the customers `select` reads (`id`, `consents_json`).
async fn facts_of(
    conn: &impl ConnectionTrait,
    select: Sql,
    now: DateTime<Utc>,
) -> Result<Vec<CustomerFacts>> {
    let backend = conn.get_database_backend();
    let sql = select;
    let mut out = Vec::new();
    let mut index = BTreeMap::new();
    for row in conn.query_all_raw(sql.build()).await.db()? {
        let id: String = get(&row, "id")?;
        let customer: CustomerId = id.parse().map_err(corrupt)?;
        let json: String = get(&row, "consents_json")?;
        let consents: Vec<cxhub_domain::feed::Consent> =
            serde_json::from_str(&json).map_err(corrupt)?;
        let consents = consents_from_profile(&consents);
        let mut facts = Facts::new();
        for purpose in ConsentPurpose::ALL {
            for channel in CHANNELS {
                if consents.is_granted(*purpose, channel) {
                    facts.grant(
                        purpose.as_str().to_ascii_lowercase(),
                        channel.as_str().to_ascii_lowercase(),
                    );
                }
            }
        }
        index.insert(customer, out.len());
        out.push(CustomerFacts { customer, facts });
    }
    let customers: Vec<CustomerId> = out.iter().map(|c| c.customer).collect();
    for chunk in customers.chunks(IN_LIST_CHUNK) {
        let mut sql = Sql::new(
            backend,
            "SELECT customer_id, category, churn_band, churn_probability, clv_currency, \
             clv_minor, rfm_segment FROM customer_scores WHERE customer_id",
        );
        sql.in_texts(ids(chunk));
        for row in conn.query_all_raw(sql.build()).await.db()? {
            let category: String = get(&row, "category")?;
            let band: String = get(&row, "churn_band")?;
            let probability: f64 = get(&row, "churn_probability")?;
            let clv_currency: Option<String> = get(&row, "clv_currency")?;
            let clv_minor: Option<i64> = get(&row, "clv_minor")?;
            let segment: Option<String> = get(&row, "rfm_segment")?;
            if let Some(c) = lookup(&mut out, &index, &row)? {
                c.facts.set("category", category);
                c.facts.set("churn.band", band);
                c.facts.set("churn.probability", probability);
                if let (Some(code), Some(minor)) = (clv_currency, clv_minor) {
                    let currency = Currency::parse(&code).map_err(corrupt)?;
                    #[allow(clippy::cast_precision_loss)]
                    let major = minor as f64 / 10f64.powi(i32::from(currency.exponent()));
                    c.facts.set("clv.value", major);
                }
                if let Some(segment) = segment {
                    c.facts.set("rfm.segment", segment);
                }
            }
        }

        // The latest NPS and CSAT answers; ties at one instant: the highest response id.
        let mut sql = Sql::new(
            backend,
            "SELECT customer_id, kind, value, answered_at, response_id FROM survey_answers \
             WHERE kind IN ('nps', 'csat') AND customer_id",
        );
        sql.in_texts(ids(chunk));
        let mut latest: BTreeMap<(String, String), (DateTime<Utc>, String, i32)> = BTreeMap::new();
        for row in conn.query_all_raw(sql.build()).await.db()? {
            let customer: String = get(&row, "customer_id")?;
            let kind: String = get(&row, "kind")?;
            let answer = (
                get::<DateTime<Utc>>(&row, "answered_at")?,
                get::<String>(&row, "response_id")?,
                get::<i32>(&row, "value")?,
            );
            let slot = latest.entry((customer, kind)).or_insert(answer.clone());
            if (&answer.0, &answer.1) > (&slot.0, &slot.1) {
                *slot = answer;
            }
        }
        for ((customer, kind), (_, _, value)) in latest {
            let id: CustomerId = customer.parse().map_err(corrupt)?;
            if let Some(c) = index.get(&id).and_then(|i| out.get_mut(*i)) {
                c.facts.set(format!("{kind}.latest"), value);
            }
        }

        let mut sql = Sql::new(
            backend,
            "SELECT customer_id, occurred_at FROM transactions WHERE kind = 'order' AND \
             customer_id",
        );
        sql.in_texts(ids(chunk));
        let mut last: BTreeMap<String, DateTime<Utc>> = BTreeMap::new();
        for row in conn.query_all_raw(sql.build()).await.db()? {
            let customer: String = get(&row, "customer_id")?;
            let at: DateTime<Utc> = get(&row, "occurred_at")?;
            let slot = last.entry(customer).or_insert(at);
            if at > *slot {
                *slot = at;
            }
        }
        for (customer, at) in last {
            let id: CustomerId = customer.parse().map_err(corrupt)?;
            if let Some(c) = index.get(&id).and_then(|i| out.get_mut(*i)) {
                #[allow(clippy::cast_precision_loss)]
                let days = (now - at).num_days().max(0) as f64;
                c.facts.set("days_since_last_purchase", days);
            }
        }
    }
    Ok(out)
}

const CHANNELS: [ContactChannel; 6] = [
    ContactChannel::Email,
    ContactChannel::Sms,
    ContactChannel::Phone,
    ContactChannel::Letter,
    ContactChannel::Push,
    ContactChannel::InApp,
];

fn lookup<'a>(
    out: &'a mut [CustomerFacts],
    index: &BTreeMap<CustomerId, usize>,
    row: &QueryResult,
) -> Result<Option<&'a mut CustomerFacts>> {
    let id: String = get(row, "customer_id")?;
    let id: CustomerId = id.parse().map_err(corrupt)?;
    Ok(index.get(&id).and_then(|i| out.get_mut(*i)))
}

async fn dry_run(
    txn: &DatabaseTransaction,
    rule: &Rule,
    guard: &GuardConfig,
    after: Option<CustomerId>,
    max: u32,
) -> Result<DryRun> {
    let condition =
        rule::compile_condition(&rule.spec.condition, "rule.condition").map_err(Error::invalid)?;
    let now = crate::now();
    // One more than asked, to know whether customers remain.
    let mut batch = customer_facts(txn, after, max.saturating_add(1), now).await?;
    let more = batch.len() > max as usize;
    batch.truncate(max as usize);
    // The per-run limit counts from this call's first customer; the per-day one counts what
    // the rule proposed today already.
    let items: Vec<Item<'_>> = batch
        .iter()
        .map(|facts| Item {
            facts,
            run: "dry-run",
        })
        .collect();
    let counts = Counts {
        in_run: 0,
        today: proposed_today(txn, rule, now).await?,
    };
    let plan = plan(
        txn,
        None,
        rule,
        &condition,
        &items,
        &BTreeSet::new(),
        counts,
        guard,
        now,
    )
    .await?;
    let targets = plan
        .planned
        .into_iter()
        .map(|p| DryRunTarget {
            customer: p.customer,
            action: p.action,
            decision: match p.verdict {
                Verdict::HeldOut => Decision::HeldOut,
                Verdict::OverLimit(limit) => Decision::Blocked(Eligibility {
                    reasons: vec![limit],
                }),
                Verdict::Blocked(eligibility) => Decision::Blocked(eligibility),
                Verdict::Proposed(_) => Decision::Treat,
            },
            explanation: p.explanation,
        })
        .collect();
    let scanned = u32::try_from(batch.len()).unwrap_or(u32::MAX);
    Ok(DryRun {
        targets,
        scanned,
        next_after: if more {
            batch.last().map(|c| c.customer)
        } else {
            None
        },
    })
}

// ------------------------------------------------------------------------------------------------
// Plans: what a run does for a batch of customers

/// What a run of a rule does for one customer whose condition holds.
enum Verdict {
    /// Kept untreated as control; recorded.
    HeldOut,
    /// Past the rule's per-run or per-day limit: neither proposed nor recorded (a later run
    /// may act).
    OverLimit(Ineligibility),
    /// A guard rail refuses the action; recorded with the reasons.
    Blocked(Eligibility),
    /// Proposed, under this id.
    Proposed(ActionId),
}

/// One customer a run considers, with the run: a sweep's day, or an event.
struct Item<'a> {
    facts: &'a CustomerFacts,
    run: &'a str,
}

/// What the rule proposed before a plan: in its run (a sweep's earlier batches) and on the
/// UTC day (every run of the rule).
struct Counts {
    in_run: u64,
    today: u64,
}

/// One customer of a plan.
struct Planned<'a> {
    customer: CustomerId,
    run: &'a str,
    /// The action the rule proposes (or would have).
    action: NewAction,
    explanation: String,
    verdict: Verdict,
}

/// A plan for a batch of customers, not yet written.
struct Plan<'a> {
    /// The customers whose condition holds and whom their run had not handled, in batch order.
    planned: Vec<Planned<'a>>,
    matched: u64,
    already_done: u64,
    /// The actions proposed, to be written.
    proposals: Proposals,
}

/// What the rule proposed on the UTC day of `now` (one statement, only when the rule has a
/// per-day limit).
async fn proposed_today(txn: &DatabaseTransaction, rule: &Rule, now: DateTime<Utc>) -> Result<u64> {
    match rule.spec.limits.max_per_day {
        Some(_) => proposed_on(txn, &rule.id, now).await,
        None => Ok(0),
    }
}

/// Decides what `rule` does for the customers of a batch: the one decision of a sweep, a dry
/// run and the event follower. For each customer whose condition holds and whom its run has
/// not handled (`done`: customer and run): the holdout draw, the rule's limits (a
/// [`RuleQuota`] from `counts` and what the plan proposed before), then the guard rails of the
/// action ([`rule::decide`] keeps that order), with the guard-rail state of the whole batch
/// read at once ([`Proposals`]; `lock`: see [`Proposals::read`]).
#[allow(clippy::too_many_arguments)]
async fn plan<'a>(
    txn: &DatabaseTransaction,
    lock: Option<Backend>,
    rule: &Rule,
    condition: &Condition,
    items: &[Item<'a>],
    done: &BTreeSet<(CustomerId, String)>,
    counts: Counts,
    guard: &GuardConfig,
    now: DateTime<Utc>,
) -> Result<Plan<'a>> {
    let reference = rule.reference();
    let limits = rule.spec.limits;
    let mut in_runs: BTreeMap<&str, u64> = BTreeMap::new();
    let mut today = counts.today;
    let quota = |in_runs: &BTreeMap<&str, u64>, today: u64, run: &str| {
        RuleQuota::new(
            limits.max_per_run,
            counts.in_run + in_runs.get(run).copied().unwrap_or(0),
            limits.max_per_day,
            today,
        )
    };
    let mut matched = 0;
    let mut already_done = 0;
    let mut candidates = Vec::new();
    for item in items {
        let c = item.facts;
        let evaluation = condition.evaluate(&c.facts);
        if !evaluation.matched {
            continue;
        }
        matched += 1;
        if done.contains(&(c.customer, item.run.to_owned())) {
            already_done += 1;
            continue;
        }
        let explanation = evaluation.explain();
        let action = rule::action_for(&reference, &rule.spec, c.customer, &explanation, now);
        candidates.push((c.customer, item.run, evaluation, explanation, action));
    }
    // The guard-rail state of those the holdout does not keep (none when the limits allow no
    // more actions).
    let treatable: Vec<&NewAction> = if quota(&in_runs, today, "").check().is_ok() {
        candidates
            .iter()
            .filter(|(customer, ..)| !in_holdout(rule, *customer))
            .map(|(.., action)| action)
            .collect()
    } else {
        Vec::new()
    };
    let mut proposals = Proposals::read(txn, lock, &treatable, guard, now).await?;
    let mut planned = Vec::with_capacity(candidates.len());
    for (customer, run, evaluation, explanation, action) in candidates {
        let mut failure = None;
        let decision = rule::decide(
            rule.id.as_str(),
            rule.spec.holdout,
            customer,
            &evaluation,
            || match quota(&in_runs, today, run).check() {
                Err(limit) => Eligibility {
                    reasons: vec![limit],
                },
                Ok(()) => proposals.check(&action).unwrap_or_else(|err| {
                    failure = Some(err);
                    Eligibility::default()
                }),
            },
        );
        if let Some(err) = failure {
            return Err(err);
        }
        let verdict = match decision {
            Decision::NotMatched => continue,
            Decision::HeldOut => Verdict::HeldOut,
            Decision::Blocked(mut eligibility) => match eligibility.reasons.as_slice() {
                [Ineligibility::RuleLimit { .. }] => {
                    Verdict::OverLimit(eligibility.reasons.remove(0))
                }
                _ => Verdict::Blocked(eligibility),
            },
            Decision::Treat => {
                *in_runs.entry(run).or_default() += 1;
                today += 1;
                Verdict::Proposed(proposals.accept(action.clone())?)
            }
        };
        planned.push(Planned {
            customer,
            run,
            action,
            explanation,
            verdict,
        });
    }
    Ok(Plan {
        planned,
        matched,
        already_done,
        proposals,
    })
}

fn in_holdout(rule: &Rule, customer: CustomerId) -> bool {
    cxhub_domain::loyalty::guard::in_holdout(
        rule.id.as_str(),
        customer,
        rule.spec.holdout.control_share,
        rule.spec.holdout.seed,
    )
}

/// What a run recorded.
#[derive(Default)]
struct Recorded {
    proposed: u64,
    held_out: u64,
    blocked: u64,
    over_limit: u64,
}

/// Writes a plan: its actions (by `principal`) with their events, and what each run did for
/// each customer into `loyalty_rule_targets`, all with multi-row statements.
async fn execute(
    txn: &DatabaseTransaction,
    rule: &Rule,
    principal: &str,
    plan: Plan<'_>,
    now: DateTime<Utc>,
) -> Result<Recorded> {
    let mut recorded = Recorded::default();
    if plan.proposals.accepted() > 0 {
        plan.proposals.write(txn, principal).await?;
    }
    let mut rows = Vec::with_capacity(plan.planned.len());
    for p in plan.planned {
        let (outcome, action, reason) = match p.verdict {
            Verdict::HeldOut => {
                recorded.held_out += 1;
                ("held_out", None, None)
            }
            Verdict::OverLimit(_) => {
                recorded.over_limit += 1;
                continue;
            }
            Verdict::Blocked(eligibility) => {
                recorded.blocked += 1;
                let message = match eligibility.into_result() {
                    Err(Error::FailedPrecondition { message, .. }) => message,
                    _ => String::new(),
                };
                ("blocked", None, Some(message))
            }
            Verdict::Proposed(id) => {
                recorded.proposed += 1;
                ("proposed", Some(id.to_string()), None)
            }
        };
        rows.push(TargetRow {
            customer: p.customer,
            run: p.run,
            outcome,
            action,
            reason,
        });
    }
    record_targets(txn, rule, now, &rows).await?;
    Ok(recorded)
}

// ------------------------------------------------------------------------------------------------
// Sweeps

/// The principal sweeps propose actions as.
const SWEEP_PRINCIPAL: &str = "system:rule-sweep";

async fn scheduled(conn: &impl ConnectionTrait) -> Result<Vec<Rule>> {
    let mut sql = Sql::new(
        conn.get_database_backend(),
        &format!(
            "SELECT {RULE_COLUMNS} FROM loyalty_rules r WHERE r.trigger = 'daily_sweep' AND \
             r.version = (SELECT MAX(v.version) FROM loyalty_rules v WHERE v.id = r.id)"
        ),
    );
    sql.push(" ORDER BY r.id");
    let rules = conn
        .query_all_raw(sql.build())
        .await
        .db()?
        .iter()
        .map(rule_row)
        .collect::<Result<Vec<_>>>()?;
    Ok(rules.into_iter().filter(|r| r.spec.enabled).collect())
}

/// How many actions `rule` (any version, any run) proposed on the UTC day of `now`.
async fn proposed_on(txn: &DatabaseTransaction, rule: &Key, now: DateTime<Utc>) -> Result<u64> {
    let midnight = now
        .date_naive()
        .and_hms_opt(0, 0, 0)
        .map_or(now, |t| t.and_utc());
    let mut sql = Sql::new(
        txn.get_database_backend(),
        "SELECT COUNT(*) AS n FROM loyalty_rule_targets WHERE outcome = 'proposed' AND rule_id = ",
    );
    sql.bind(text(rule.as_str()))
        .push(" AND at >= ")
        .bind(time(midnight));
    let n: i64 = match txn.query_one_raw(sql.build()).await.db()? {
        Some(row) => get(&row, "n")?,
        None => 0,
    };
    Ok(u64::try_from(n).unwrap_or(0))
}

/// The (customer, run) pairs of `items` this rule version already handled.
async fn handled(
    txn: &DatabaseTransaction,
    rule: &Rule,
    items: &[Item<'_>],
) -> Result<BTreeSet<(CustomerId, String)>> {
    let wanted: BTreeSet<(CustomerId, &str)> =
        items.iter().map(|i| (i.facts.customer, i.run)).collect();
    let runs: Vec<String> = items
        .iter()
        .map(|i| i.run)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .map(str::to_owned)
        .collect();
    let customers: Vec<CustomerId> = items
        .iter()
        .map(|i| i.facts.customer)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let mut done = BTreeSet::new();
    for runs in runs.chunks(IN_LIST_CHUNK) {
        for chunk in customers.chunks(IN_LIST_CHUNK) {
            let mut sql = Sql::new(
                txn.get_database_backend(),
                "SELECT customer_id, run FROM loyalty_rule_targets WHERE rule_id = ",
            );
            sql.bind(text(rule.id.as_str()))
                .push(" AND rule_version = ")
                .bind(int(rule.version))
                .push(" AND run")
                .in_texts(runs.iter().cloned())
                .push(" AND customer_id")
                .in_texts(ids(chunk));
            for row in txn.query_all_raw(sql.build()).await.db()? {
                let id: String = get(&row, "customer_id")?;
                let run: String = get(&row, "run")?;
                let customer: CustomerId = id.parse().map_err(corrupt)?;
                if wanted.contains(&(customer, run.as_str())) {
                    done.insert((customer, run));
                }
            }
        }
    }
    Ok(done)
}

/// What a run did for one customer, as recorded.
struct TargetRow<'a> {
    customer: CustomerId,
    run: &'a str,
    outcome: &'static str,
    action: Option<String>,
    reason: Option<String>,
}

/// Sweeps one batch of customers after `after`; answers the last customer scanned, or `None`
/// when no customer was left.
#[allow(clippy::too_many_arguments)]
async fn sweep_batch(
    txn: &DatabaseTransaction,
    backend: Backend,
    rule: &Rule,
    condition: &Condition,
    guard: &GuardConfig,
    now: DateTime<Utc>,
    day: &str,
    after: Option<CustomerId>,
    batch: u32,
    report: &mut SweepReport,
) -> Result<Option<CustomerId>> {
    lock_rule(txn, backend, &rule.id).await?;
    let customers = customer_facts(txn, after, batch, now).await?;
    let Some(last) = customers.last().map(|c| c.customer) else {
        return Ok(None);
    };
    report.scanned += customers.len() as u64;
    let items: Vec<Item<'_>> = customers
        .iter()
        .map(|facts| Item { facts, run: day })
        .collect();
    let done = handled(txn, rule, &items).await?;
    let counts = Counts {
        in_run: report.proposed,
        today: proposed_today(txn, rule, now).await?,
    };
    let plan = plan(
        txn,
        Some(backend),
        rule,
        condition,
        &items,
        &done,
        counts,
        guard,
        now,
    )
    .await?;
    report.matched += plan.matched;
    report.already_done += plan.already_done;
    let recorded = execute(txn, rule, SWEEP_PRINCIPAL, plan, now).await?;
    report.proposed += recorded.proposed;
    report.held_out += recorded.held_out;
    report.blocked += recorded.blocked;
    report.over_limit += recorded.over_limit;
    Ok(Some(last))
}

// ------------------------------------------------------------------------------------------------
// Event triggers

/// The principal event-triggered rules propose actions as.
const EVENT_PRINCIPAL: &str = "system:rule-events";

/// One event: a trigger that fired for a customer, and the run it makes.
struct Event {
    trigger: Trigger,
    customer: CustomerId,
    run: String,
    /// A transaction event's own facts (`event.*`, see `loyalty_events.rs`).
    detail: Option<cxhub_domain::feed::RecordEvent>,
}

/// The follower's position: the last change-log entry and the last NPS answer it read.
struct Position {
    change_seq: i64,
    responses_at: Option<DateTime<Utc>>,
    responses_id: Option<String>,
}

async fn position(txn: &DatabaseTransaction, backend: Backend) -> Result<Position> {
    if backend == Backend::Postgres {
        // One follower at a time across replicas; the others wait and then read on from
        // where it stopped.
        txn.execute_raw(sea_orm::Statement::from_string(
            sea_orm::DbBackend::Postgres,
            "SELECT pg_advisory_xact_lock(hashtext('cxhub.loyalty.rule-events'))",
        ))
        .await
        .db()?;
    }
    let row = txn
        .query_one_raw(sea_orm::Statement::from_string(
            txn.get_database_backend(),
            "SELECT change_seq, responses_at, responses_id FROM loyalty_rule_position WHERE id = 1",
        ))
        .await
        .db()?
        .ok_or_else(|| corrupt("the rule follower has no position row"))?;
    Ok(Position {
        change_seq: get(&row, "change_seq")?,
        responses_at: get(&row, "responses_at")?,
        responses_id: get(&row, "responses_id")?,
    })
}

async fn follow_events(
    txn: &DatabaseTransaction,
    backend: Backend,
    guard: &GuardConfig,
    max: u32,
) -> Result<EventPass> {
    let db = txn.get_database_backend();
    let mut at = position(txn, backend).await?;
    let mut pass = EventPass::default();
    let now = crate::now();
    let mut rescored: Vec<(i64, CustomerId, Vec<String>)> = Vec::new();

    let mut sql = Sql::new(
        db,
        "SELECT seq, customer_id, kind, fields_json FROM customer_changes WHERE seq > ",
    );
    sql.bind(int(at.change_seq))
        .push(" ORDER BY seq")
        .limit(u64::from(max));
    for row in txn.query_all_raw(sql.build()).await.db()? {
        pass.read += 1;
        let seq: i64 = get(&row, "seq")?;
        at.change_seq = seq;
        let kind: String = get(&row, "kind")?;
        if kind != "rescored" {
            continue;
        }
        let customer: String = get(&row, "customer_id")?;
        let fields: String = get(&row, "fields_json")?;
        let fields: Vec<String> = serde_json::from_str(&fields).map_err(corrupt)?;
        rescored.push((seq, customer.parse().map_err(corrupt)?, fields));
    }

    let mut nps: Vec<(String, CustomerId)> = Vec::new();
    let mut sql = Sql::new(
        db,
        "SELECT a.customer_id, a.value, r.received_at, r.response_id FROM survey_answers a \
         JOIN survey_responses r ON r.response_id = a.response_id WHERE a.kind = 'nps'",
    );
    if let Some(since) = at.responses_at {
        sql.push(" AND (r.received_at > ")
            .bind(time(since))
            .push(" OR (r.received_at = ")
            .bind(time(since))
            .push(" AND r.response_id > ")
            .bind(text(at.responses_id.clone().unwrap_or_default()))
            .push("))");
    }
    sql.push(" ORDER BY r.received_at, r.response_id")
        .limit(u64::from(max));
    for row in txn.query_all_raw(sql.build()).await.db()? {
        pass.read += 1;
        let customer: Option<String> = get(&row, "customer_id")?;
        let value: i32 = get(&row, "value")?;
        let response: String = get(&row, "response_id")?;
        at.responses_at = Some(get(&row, "received_at")?);
        at.responses_id = Some(response.clone());
        if value <= 6
            && let Some(customer) = customer
        {
            nps.push((response, customer.parse().map_err(corrupt)?));
        }
    }

    let mut events = Vec::new();
    // Rescored customers: the triggers follow from what changed and what it is now.
    let ids: Vec<CustomerId> = rescored.iter().map(|(_, c, _)| *c).collect();
    let mut now_facts = BTreeMap::new();
    for chunk in ids.chunks(IN_LIST_CHUNK) {
        for c in facts_of_customers(txn, chunk, now).await? {
            now_facts.insert(c.customer, c);
        }
    }
    for (seq, customer, fields) in &rescored {
        let Some(c) = now_facts.get(customer) else {
            continue; // merged away or erased since.
        };
        let text_fact = |name: &str| match c.facts.get(name) {
            Some(cxhub_domain::loyalty::condition::Value::Text(t)) => Some(t.as_str()),
            _ => None,
        };
        let mut fire = |trigger| {
            events.push(Event {
                trigger,
                customer: *customer,
                run: format!("change:{seq}"),
                detail: None,
            });
        };
        if fields.iter().any(|f| f == cxhub_domain::change::CATEGORY) {
            match text_fact("category") {
                Some("negative") => fire(Trigger::CategoryBecameNegative),
                Some("advocate") => fire(Trigger::CategoryBecameAdvocate),
                _ => {}
            }
        }
        if fields.iter().any(|f| f == cxhub_domain::change::CHURN_BAND)
            && text_fact("churn.band") == Some("high")
        {
            fire(Trigger::ChurnBandBecameHigh);
        }
    }
    // Detractors: the answer may have been given under an id merged away since.
    for (response, customer) in nps {
        match crate::customers::live(txn, customer).await {
            Ok(live) => events.push(Event {
                trigger: Trigger::SurveyNpsAtMost6,
                customer: live,
                run: format!("response:{response}"),
                detail: None,
            }),
            Err(Error::NotFound { .. }) => {}
            Err(err) => return Err(err),
        }
    }

    // Deliveries, failed payments, case ends, subscription downgrades and cancellations, from the
    // transaction events of feed ingestion.
    for e in crate::loyalty_events::rule_events(txn, backend, max, &mut pass).await? {
        events.push(Event {
            trigger: e.trigger,
            customer: e.customer,
            run: e.run,
            detail: Some(e.event),
        });
    }

    if !events.is_empty() {
        let rules = event_rules(txn).await?;
        let customers: Vec<CustomerId> = events.iter().map(|e| e.customer).collect();
        let mut facts = BTreeMap::new();
        for chunk in customers.chunks(IN_LIST_CHUNK) {
            for c in facts_of_customers(txn, chunk, now).await? {
                facts.insert(c.customer, c);
            }
        }
        // A transaction event's own facts (`event.*`) join its customer's.
        let own: Vec<Option<CustomerFacts>> = events
            .iter()
            .map(|e| {
                let detail = e.detail.as_ref()?;
                let c = facts.get(&e.customer)?;
                let mut with_event = c.facts.clone();
                detail.add_facts(&mut with_event);
                Some(CustomerFacts {
                    customer: c.customer,
                    facts: with_event,
                })
            })
            .collect();
        // Rule by rule, its events in order, decided and written together.
        for rule in &rules {
            let items: Vec<Item<'_>> = events
                .iter()
                .zip(&own)
                .filter(|(e, _)| e.trigger == rule.spec.trigger)
                .filter_map(|(e, own)| {
                    Some(Item {
                        facts: match own {
                            Some(c) => c,
                            None => facts.get(&e.customer)?,
                        },
                        run: &e.run,
                    })
                })
                .collect();
            pass.events += items.len() as u64;
            act_on_events(txn, backend, rule, &items, guard, now, &mut pass).await?;
        }
    }

    let mut sql = Sql::new(db, "UPDATE loyalty_rule_position SET change_seq = ");
    sql.bind(int(at.change_seq))
        .push(", responses_at = ")
        .bind(crate::sql::time_opt(at.responses_at))
        .push(", responses_id = ")
        .bind(crate::sql::text_opt(at.responses_id))
        .push(" WHERE id = 1");
    txn.execute_raw(sql.build()).await.db()?;
    Ok(pass)
}

/// The current versions of the enabled rules with an event trigger.
async fn event_rules(conn: &impl ConnectionTrait) -> Result<Vec<Rule>> {
    let sql = Sql::new(
        conn.get_database_backend(),
        &format!(
            "SELECT {RULE_COLUMNS} FROM loyalty_rules r WHERE r.trigger <> 'daily_sweep' AND \
             r.version = (SELECT MAX(v.version) FROM loyalty_rules v WHERE v.id = r.id) \
             ORDER BY r.id"
        ),
    );
    let rules = conn
        .query_all_raw(sql.build())
        .await
        .db()?
        .iter()
        .map(rule_row)
        .collect::<Result<Vec<_>>>()?;
    Ok(rules.into_iter().filter(|r| r.spec.enabled).collect())
}

/// Applies `rule` to the customers of its events (each event is a run of its own): once per
/// rule version and event; held out, proposed within the rule's limits, or blocked by a guard
/// rail; recorded.
async fn act_on_events(
    txn: &DatabaseTransaction,
    backend: Backend,
    rule: &Rule,
    items: &[Item<'_>],
    guard: &GuardConfig,
    now: DateTime<Utc>,
    pass: &mut EventPass,
) -> Result<()> {
    let condition =
        rule::compile_condition(&rule.spec.condition, "rule.condition").map_err(Error::invalid)?;
    if !items
        .iter()
        .any(|i| condition.evaluate(&i.facts.facts).matched)
    {
        return Ok(());
    }
    lock_rule(txn, backend, &rule.id).await?;
    let done = handled(txn, rule, items).await?;
    let counts = Counts {
        in_run: 0,
        today: proposed_today(txn, rule, now).await?,
    };
    let plan = plan(
        txn,
        Some(backend),
        rule,
        &condition,
        items,
        &done,
        counts,
        guard,
        now,
    )
    .await?;
    let recorded = execute(txn, rule, EVENT_PRINCIPAL, plan, now).await?;
    pass.proposed += recorded.proposed;
    pass.held_out += recorded.held_out;
    pass.blocked += recorded.blocked;
    Ok(())
}

/// Records what a run did for some customers.
async fn record_targets(
    txn: &DatabaseTransaction,
    rule: &Rule,
    now: DateTime<Utc>,
    rows: &[TargetRow<'_>],
) -> Result<()> {
    for chunk in crate::loyalty::statement_chunks(rows, 8) {
        let mut sql = Sql::new(
            txn.get_database_backend(),
            "INSERT INTO loyalty_rule_targets (rule_id, rule_version, customer_id, run, \
             outcome, action_id, reason, at) VALUES ",
        );
        for (i, row) in chunk.iter().enumerate() {
            if i > 0 {
                sql.push(", ");
            }
            sql.tuple([
                text(rule.id.as_str()),
                int(rule.version),
                text(row.customer.to_string()),
                text(row.run),
                text(row.outcome),
                crate::sql::text_opt(row.action.clone()),
                crate::sql::text_opt(row.reason.clone()),
                time(now),
            ]);
        }
        txn.execute_raw(sql.build()).await.db()?;
    }
    Ok(())
}
