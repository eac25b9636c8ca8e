//! What the effect report of a rule reads ([`cxhub_domain::loyalty::effect`]), in one read
//! snapshot: the rule's target records up to `as_of` with the current state and value of the
//! actions they name (one statement over the `loyalty_rule_targets` primary key, whose first
//! column is the rule id), then, per chunk of [`IN_LIST_CHUNK`] customers, their placed orders,
//! their NPS answers and their erasures (three statements over the `(customer_id, …)` indexes).
//! The report itself is computed in the domain.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use cxhub_domain::error::Result;
use cxhub_domain::identifier::CustomerId;
use cxhub_domain::loyalty::action::ActionState;
use cxhub_domain::loyalty::effect::{
    DatedNps, DatedOrder, EffectData, TargetAction, TargetOutcome, TargetRecord,
};
use cxhub_domain::money::{Currency, Money};
use cxhub_domain::touchpoint::Key;
use sea_orm::ConnectionTrait;

use crate::IN_LIST_CHUNK;
use crate::error::{DbResultExt, corrupt};
use crate::loyalty::get;
use crate::sql::{Sql, int, text, time};
use crate::store::{Store, snapshot};

impl Store {
    /// See [`cxhub_domain::loyalty::repo::LoyaltyRepo::rule_effect_data`].
    pub(crate) async fn rule_effect_data_impl(
        &self,
        id: &Key,
        version: Option<i64>,
        as_of: DateTime<Utc>,
    ) -> Result<EffectData> {
        snapshot!(self, |txn| read(&txn, id, version, as_of))
    }
}

async fn read(
    conn: &impl ConnectionTrait,
    id: &Key,
    version: Option<i64>,
    as_of: DateTime<Utc>,
) -> Result<EffectData> {
    let backend = conn.get_database_backend();
    let mut data = EffectData::default();
    let mut sql = Sql::new(
        backend,
        "SELECT t.customer_id, t.outcome, t.at, t.run, a.state, a.value_minor, \
         a.value_currency FROM loyalty_rule_targets t LEFT JOIN loyalty_actions a \
         ON a.id = t.action_id WHERE t.rule_id = ",
    );
    sql.bind(text(id.as_str()));
    if let Some(version) = version {
        sql.push(" AND t.rule_version = ").bind(int(version));
    }
    sql.push(" AND t.at <= ").bind(time(as_of));
    let mut customers = BTreeSet::new();
    let mut earliest: Option<DateTime<Utc>> = None;
    for row in conn.query_all_raw(sql.build()).await.db()? {
        let customer: CustomerId = get::<String>(&row, "customer_id")?
            .parse()
            .map_err(corrupt)?;
        let outcome = TargetOutcome::parse(&get::<String>(&row, "outcome")?).map_err(corrupt)?;
        let at: DateTime<Utc> = get(&row, "at")?;
        let state: Option<String> = get(&row, "state")?;
        let value_minor: Option<i64> = get(&row, "value_minor")?;
        let value_currency: Option<String> = get(&row, "value_currency")?;
        let action = match state {
            Some(state) => {
                let value = match (value_minor, value_currency) {
                    (Some(minor), Some(code)) => {
                        Some(Money::new(minor, Currency::parse(&code).map_err(corrupt)?))
                    }
                    _ => None,
                };
                Some(TargetAction {
                    state: state_of(&state)?,
                    value,
                })
            }
            None => None,
        };
        customers.insert(customer);
        earliest = Some(earliest.map_or(at, |e| e.min(at)));
        data.targets.push(TargetRecord {
            customer,
            outcome,
            at,
            run: get(&row, "run")?,
            action,
        });
    }
    let Some(earliest) = earliest else {
        return Ok(data);
    };
    let customers: Vec<CustomerId> = customers.into_iter().collect();
    for chunk in customers.chunks(IN_LIST_CHUNK) {
        let ids = || chunk.iter().map(ToString::to_string);

        let mut sql = Sql::new(
            backend,
            "SELECT customer_id, occurred_at, amount_minor, currency_code FROM transactions \
             WHERE kind = 'order' AND status = 'placed' AND occurred_at > ",
        );
        sql.bind(time(earliest))
            .push(" AND occurred_at <= ")
            .bind(time(as_of))
            .push(" AND customer_id")
            .in_texts(ids());
        for row in conn.query_all_raw(sql.build()).await.db()? {
            let customer: CustomerId = get::<String>(&row, "customer_id")?
                .parse()
                .map_err(corrupt)?;
            let code: String = get(&row, "currency_code")?;
            data.orders.entry(customer).or_default().push(DatedOrder {
                at: get(&row, "occurred_at")?,
                amount: Money::new(
                    get(&row, "amount_minor")?,
                    Currency::parse(&code).map_err(corrupt)?,
                ),
            });
        }

        // Every NPS answer up to as_of: the latest before a targeting may be old.
        let mut sql = Sql::new(
            backend,
            "SELECT customer_id, value, answered_at, response_id FROM survey_answers \
             WHERE kind = 'nps' AND answered_at <= ",
        );
        sql.bind(time(as_of))
            .push(" AND customer_id")
            .in_texts(ids());
        let mut answers: Vec<(CustomerId, DateTime<Utc>, String, i32)> = Vec::new();
        for row in conn.query_all_raw(sql.build()).await.db()? {
            answers.push((
                get::<String>(&row, "customer_id")?
                    .parse()
                    .map_err(corrupt)?,
                get(&row, "answered_at")?,
                get(&row, "response_id")?,
                get(&row, "value")?,
            ));
        }
        // Oldest first; ties at one instant: the highest response id is the latest.
        answers.sort();
        for (customer, at, _, value) in answers {
            data.nps
                .entry(customer)
                .or_default()
                .push(DatedNps { at, value });
        }

        let mut sql = Sql::new(
            backend,
            "SELECT customer_id FROM customer_erasures WHERE customer_id",
        );
        sql.in_texts(ids());
        for row in conn.query_all_raw(sql.build()).await.db()? {
            data.erased.insert(
                get::<String>(&row, "customer_id")?
                    .parse()
                    .map_err(corrupt)?,
            );
        }
    }
    Ok(data)
}

fn state_of(text: &str) -> Result<ActionState> {
    ActionState::ALL
        .iter()
        .copied()
        .find(|s| s.as_str() == text)
        .ok_or_else(|| corrupt(format!("unknown action state `{text}`")))
}
