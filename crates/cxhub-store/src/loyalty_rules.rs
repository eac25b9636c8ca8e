//! Loyalty rules over [`Store`]: versions in `loyalty_rules` (one row per version, the
//! current one is the highest), and dry runs that read the facts of a batch of customers and
//! apply the domain's decision ([`cxhub_domain::loyalty::rule::decide`]) without writing.
//!
//! Concurrency: a rule write holds the write lock on SQLite (`BEGIN IMMEDIATE`); on PostgreSQL
//! it takes a transaction-scoped advisory lock on the rule id before reading the current
//! version, so two updates expecting the same version cannot both write the next one (and the
//! primary key on (id, version) would refuse the second anyway).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use cxhub_domain::error::{Error, Result};
use cxhub_domain::idempotency::RequestKey;
use cxhub_domain::identifier::CustomerId;
use cxhub_domain::loyalty::action::{ConsentPurpose, ContactChannel};
use cxhub_domain::loyalty::condition::Condition;
use cxhub_domain::loyalty::condition::Facts;
use cxhub_domain::loyalty::guard::{
    Candidate, ConsentSet, Eligibility, PrivacyStatus, consents_from_profile, eligibility,
};
use cxhub_domain::loyalty::repo::{
    DryRun, DryRunTarget, EventPass, ExpectedVersion, GuardConfig, RulePatch, SweepReport,
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
use crate::loyalty::{
    cap_history, check_value_currency, get, get_campaign, holds_suppressed_identifier, propose,
};
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

/// One live customer of a batch: the facts its condition reads, and its consents as the guard
/// rails read them.
pub(crate) struct CustomerFacts {
    pub(crate) customer: CustomerId,
    pub(crate) facts: Facts,
    pub(crate) consents: ConsentSet,
    pub(crate) erased: bool,
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
        out.push(CustomerFacts {
            customer,
            facts,
            consents,
            erased: false,
        });
    }
    let customers: Vec<CustomerId> = out.iter().map(|c| c.customer).collect();
    for chunk in customers.chunks(IN_LIST_CHUNK) {
        let mut sql = Sql::new(
            backend,
            "SELECT customer_id FROM customer_erasures WHERE customer_id",
        );
        sql.in_texts(ids(chunk));
        for row in conn.query_all_raw(sql.build()).await.db()? {
            if let Some(c) = lookup(&mut out, &index, &row)? {
                c.erased = true;
            }
        }

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

/// What the guard rails say about proposing `rule`'s action to `c` now.
pub(crate) async fn guard_rails(
    txn: &DatabaseTransaction,
    spec: &RuleSpec,
    c: &CustomerFacts,
    guard: &GuardConfig,
    now: DateTime<Utc>,
) -> Result<Eligibility> {
    let kind = &spec.action.kind;
    let (suppressed, history) = if c.erased {
        (true, Vec::new())
    } else {
        (
            holds_suppressed_identifier(txn, c.customer).await?,
            cap_history(txn, c.customer, kind, guard, now).await?,
        )
    };
    Ok(eligibility(&Candidate {
        kind,
        channel: spec.action.channel,
        privacy: PrivacyStatus {
            erased: c.erased,
            suppressed,
        },
        consents: &c.consents,
        caps: &guard.caps,
        history: &history,
        now,
    }))
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
    let reference = rule.reference();
    // One more than asked, to know whether customers remain.
    let mut batch = customer_facts(txn, after, max.saturating_add(1), now).await?;
    let more = batch.len() > max as usize;
    batch.truncate(max as usize);
    let mut targets = Vec::new();
    for c in &batch {
        let evaluation = condition.evaluate(&c.facts);
        if !evaluation.matched {
            continue;
        }
        // The holdout draw needs no I/O; the guard rails only run for the others.
        let decision = if cxhub_domain::loyalty::guard::in_holdout(
            rule.id.as_str(),
            c.customer,
            rule.spec.holdout.control_share,
            rule.spec.holdout.seed,
        ) {
            Decision::HeldOut
        } else {
            let eligibility = guard_rails(txn, &rule.spec, c, guard, now).await?;
            rule::decide(
                rule.id.as_str(),
                rule.spec.holdout,
                c.customer,
                &evaluation,
                || eligibility,
            )
        };
        let explanation = evaluation.explain();
        targets.push(DryRunTarget {
            customer: c.customer,
            action: rule::action_for(&reference, &rule.spec, c.customer, &explanation, now),
            decision,
            explanation,
        });
    }
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

/// The customers of `batch` this rule version already handled on `day`.
async fn handled_on(
    txn: &DatabaseTransaction,
    rule: &Rule,
    day: &str,
    batch: &[CustomerId],
) -> Result<std::collections::BTreeSet<CustomerId>> {
    let mut done = std::collections::BTreeSet::new();
    for chunk in batch.chunks(IN_LIST_CHUNK) {
        let mut sql = Sql::new(
            txn.get_database_backend(),
            "SELECT customer_id FROM loyalty_rule_targets WHERE rule_id = ",
        );
        sql.bind(text(rule.id.as_str()))
            .push(" AND rule_version = ")
            .bind(int(rule.version))
            .push(" AND run = ")
            .bind(text(day))
            .push(" AND customer_id")
            .in_texts(ids(chunk));
        for row in txn.query_all_raw(sql.build()).await.db()? {
            let id: String = get(&row, "customer_id")?;
            done.insert(id.parse().map_err(corrupt)?);
        }
    }
    Ok(done)
}

/// What a sweep did for one customer, as recorded.
struct TargetRow {
    customer: CustomerId,
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
    let ids: Vec<CustomerId> = customers.iter().map(|c| c.customer).collect();
    let done = handled_on(txn, rule, day, &ids).await?;
    let limit = match (rule.spec.limits.max_per_run, rule.spec.limits.max_per_day) {
        (None, None) => None,
        (per_run, per_day) => {
            let run_left = per_run.map(|n| u64::from(n).saturating_sub(report.proposed));
            let day_left = match per_day {
                Some(n) => {
                    Some(u64::from(n).saturating_sub(proposed_on(txn, &rule.id, now).await?))
                }
                None => None,
            };
            run_left.into_iter().chain(day_left).min()
        }
    };
    let mut proposed_here = 0u64;
    let reference = rule.reference();
    let mut rows = Vec::new();
    for c in &customers {
        let evaluation = condition.evaluate(&c.facts);
        if !evaluation.matched {
            continue;
        }
        report.matched += 1;
        if done.contains(&c.customer) {
            report.already_done += 1;
            continue;
        }
        if cxhub_domain::loyalty::guard::in_holdout(
            rule.id.as_str(),
            c.customer,
            rule.spec.holdout.control_share,
            rule.spec.holdout.seed,
        ) {
            report.held_out += 1;
            rows.push(TargetRow {
                customer: c.customer,
                outcome: "held_out",
                action: None,
                reason: None,
            });
            continue;
        }
        if limit.is_some_and(|left| proposed_here >= left) {
            // Not recorded: a later run (another day, or after the limit is raised) may act.
            report.over_limit += 1;
            continue;
        }
        let explanation = evaluation.explain();
        let action = rule::action_for(&reference, &rule.spec, c.customer, &explanation, now);
        match propose(txn, backend, SWEEP_PRINCIPAL, action, guard).await {
            Ok(action) => {
                proposed_here += 1;
                report.proposed += 1;
                rows.push(TargetRow {
                    customer: c.customer,
                    outcome: "proposed",
                    action: Some(action.id.to_string()),
                    reason: None,
                });
            }
            Err(Error::FailedPrecondition {
                reason: "NOT_ELIGIBLE",
                message,
            }) => {
                report.blocked += 1;
                rows.push(TargetRow {
                    customer: c.customer,
                    outcome: "blocked",
                    action: None,
                    reason: Some(message),
                });
            }
            Err(err) => return Err(err),
        }
    }
    record_targets(txn, rule, day, now, &rows).await?;
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

    // Deliveries and failed payments, from the transaction events of feed ingestion.
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
        for event in &events {
            let Some(c) = facts.get(&event.customer) else {
                continue;
            };
            for rule in rules.iter().filter(|r| r.spec.trigger == event.trigger) {
                pass.events += 1;
                act_on_event(txn, backend, rule, c, event, guard, now, &mut pass).await?;
            }
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

/// Applies `rule` to the customer of `event`: once per rule version and event; held out,
/// proposed within the daily limit, or blocked by a guard rail; recorded.
#[allow(clippy::too_many_arguments)]
async fn act_on_event(
    txn: &DatabaseTransaction,
    backend: Backend,
    rule: &Rule,
    c: &CustomerFacts,
    event: &Event,
    guard: &GuardConfig,
    now: DateTime<Utc>,
    pass: &mut EventPass,
) -> Result<()> {
    let condition =
        rule::compile_condition(&rule.spec.condition, "rule.condition").map_err(Error::invalid)?;
    let evaluation = match &event.detail {
        Some(detail) => {
            let mut facts = c.facts.clone();
            detail.add_facts(&mut facts);
            condition.evaluate(&facts)
        }
        None => condition.evaluate(&c.facts),
    };
    if !evaluation.matched {
        return Ok(());
    }
    lock_rule(txn, backend, &rule.id).await?;
    if !handled_on(txn, rule, &event.run, &[c.customer])
        .await?
        .is_empty()
    {
        return Ok(());
    }
    let row = if cxhub_domain::loyalty::guard::in_holdout(
        rule.id.as_str(),
        c.customer,
        rule.spec.holdout.control_share,
        rule.spec.holdout.seed,
    ) {
        pass.held_out += 1;
        TargetRow {
            customer: c.customer,
            outcome: "held_out",
            action: None,
            reason: None,
        }
    } else {
        if let Some(per_day) = rule.spec.limits.max_per_day
            && proposed_on(txn, &rule.id, now).await? >= u64::from(per_day)
        {
            return Ok(());
        }
        let explanation = evaluation.explain();
        let action = rule::action_for(&rule.reference(), &rule.spec, c.customer, &explanation, now);
        match propose(txn, backend, EVENT_PRINCIPAL, action, guard).await {
            Ok(action) => {
                pass.proposed += 1;
                TargetRow {
                    customer: c.customer,
                    outcome: "proposed",
                    action: Some(action.id.to_string()),
                    reason: None,
                }
            }
            Err(Error::FailedPrecondition {
                reason: "NOT_ELIGIBLE",
                message,
            }) => {
                pass.blocked += 1;
                TargetRow {
                    customer: c.customer,
                    outcome: "blocked",
                    action: None,
                    reason: Some(message),
                }
            }
            Err(err) => return Err(err),
        }
    };
    record_targets(txn, rule, &event.run, now, &[row]).await
}

/// Records what a run did for some customers.
async fn record_targets(
    txn: &DatabaseTransaction,
    rule: &Rule,
    day: &str,
    now: DateTime<Utc>,
    rows: &[TargetRow],
) -> Result<()> {
    for chunk in rows.chunks(crate::rows_per_statement(8)) {
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
                text(day),
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
