//! `CustomerScoreRepo` over [`Store`]: the facts scores are computed from, the scores
//! themselves (`customer_scores`), the fitted models (`scoring_models`) and the position of the
//! incremental recompute (`score_position`).
//!
//! Facts are read per batch of customers in a handful of statements whatever the batch size
//! (live customers, placed orders, signal interactions, the customers merged into them, their
//! NPS/CSAT answers), each an `IN` list over the `(customer_id, …)` index of its table. On
//! SQLite the live ids and the orders come back aggregated into JSON arrays (one row per batch,
//! one per customer): there a row costs more to hand over than to find.
//! Scores are written per batch in upserts (built on a blocking thread while the batch's stored
//! bands are read; multi-row `VALUES` on SQLite, one `unnest` of column arrays on PostgreSQL),
//! then the rows of customers that are no longer live (merged away or erased while the batch
//! was computed; looked up in `customers`) are deleted, in one transaction. Listings read only
//! live customers and page with a keyset on (churn probability or CLV, customer id), which the
//! indexes of the `customer_scores` table serve.

use std::collections::{BTreeMap, BTreeSet};

use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};
use cxhub_domain::change::{self, NewChange};
use cxhub_domain::error::{Error, Result};
use cxhub_domain::identifier::CustomerId;
use cxhub_domain::money::{Currency, Money};
use cxhub_domain::page::{Page, PageRequest};
use cxhub_domain::scoring::category::{DatedAnswer, category_text};
use cxhub_domain::scoring::churn_fit::{ChurnModel, ChurnModelRepo};
use cxhub_domain::scoring::{
    CustomerFacts, CustomerScoreRepo, CustomerScores, FittedModels, LedgerOrder,
    OPEN_CASE_OUTCOMES, SIGNAL_OUTCOMES, ScoreFilter, ScoreOrder, ScorePosition, Signal,
    SurveyComment, segment_text,
};
use sea_orm::{ConnectionTrait, DatabaseTransaction, QueryResult, TransactionTrait, Value};

use crate::customer_query::{Cells, json_rows};
use crate::error::{DbResultExt, corrupt};
use crate::sql::{Sql, array, int, text, texts, time};
use crate::store::{Store, snapshot};
use crate::{IN_LIST_CHUNK, now};

/// Scores per upsert statement (22 columns each: under SQLite's parameter limit).
const SCORES_PER_STATEMENT: usize = 500;

const SCORE_COLUMNS: &str = "s.customer_id, s.as_of, s.model_version, s.category_json, \
                             s.churn_json, s.clv_json, s.rfm_json";

#[async_trait]
impl CustomerScoreRepo for Store {
    async fn live_customers(
        &self,
        after: Option<CustomerId>,
        limit: u32,
    ) -> Result<Vec<CustomerId>> {
        snapshot!(self, |txn| live_customers(&txn, after, limit))
    }

    async fn customer_facts(
        &self,
        customers: &[CustomerId],
        as_of: DateTime<Utc>,
        signal_days: i64,
    ) -> Result<Vec<CustomerFacts>> {
        snapshot!(self, |txn| facts(&txn, customers, as_of, signal_days))
    }

    async fn save_models(&self, models: &[FittedModels], position: ScorePosition) -> Result<()> {
        let txn = self.begin_scores_write().await?;
        match save_models(&txn, models, position).await {
            Ok(()) => txn.commit().await.db(),
            Err(err) => {
                crate::store::rollback(txn).await;
                Err(err)
            }
        }
    }

    async fn fitted_models(&self) -> Result<Vec<FittedModels>> {
        snapshot!(self, |txn| fitted_models(&txn))
    }

    async fn save_scores(&self, scores: Vec<CustomerScores>) -> Result<u64> {
        if scores.is_empty() {
            return Ok(0);
        }
        // The rows are built while the writer is awaited (another batch may hold it).
        let building = build_scores(self.writer.get_database_backend(), scores);
        let txn = self.begin_scores_write().await?;
        match save_scores(&txn, building).await {
            Ok(n) => txn.commit().await.db().map(|()| n),
            Err(err) => {
                crate::store::rollback(txn).await;
                Err(err)
            }
        }
    }

    async fn delete_scores(&self, customers: &[CustomerId]) -> Result<u64> {
        let mut deleted = 0;
        for chunk in customers.chunks(IN_LIST_CHUNK) {
            let mut sql = Sql::new(
                self.writer.get_database_backend(),
                "DELETE FROM customer_scores WHERE customer_id",
            );
            sql.in_texts(chunk.iter().map(ToString::to_string));
            deleted += self
                .writer
                .execute_raw(sql.build())
                .await
                .db()?
                .rows_affected();
        }
        Ok(deleted)
    }

    async fn delete_scores_before(&self, before: DateTime<Utc>) -> Result<u64> {
        let mut sql = Sql::new(
            self.writer.get_database_backend(),
            "DELETE FROM customer_scores WHERE computed_at < ",
        );
        sql.bind(time(before));
        Ok(self
            .writer
            .execute_raw(sql.build())
            .await
            .db()?
            .rows_affected())
    }

    async fn pause_score_indexes(&self) -> Result<()> {
        let txn = self.writer.begin().await.db()?;
        let dropped = async {
            lock_score_indexes(&txn).await?;
            for (name, _) in cxhub_migrations::SCORE_INDEXES {
                txn.execute_unprepared(&format!("DROP INDEX IF EXISTS {name}"))
                    .await
                    .db()?;
            }
            Ok(())
        }
        .await;
        finish(txn, dropped).await
    }

    async fn restore_score_indexes(&self) -> Result<()> {
        let txn = self.writer.begin().await.db()?;
        let built = restore_score_indexes(&txn).await;
        finish(txn, built).await
    }

    async fn customer_scores(
        &self,
        customer: CustomerId,
    ) -> Result<(CustomerId, Option<CustomerScores>)> {
        snapshot!(self, |txn| customer_scores(&txn, customer))
    }

    async fn list_scores(
        &self,
        filter: &ScoreFilter,
        order: ScoreOrder,
        page: &PageRequest,
    ) -> Result<Page<CustomerScores>> {
        snapshot!(self, |txn| list(&txn, filter, order, page))
    }

    async fn score_position(&self) -> Result<Option<ScorePosition>> {
        snapshot!(self, |txn| position(&txn))
    }

    async fn save_score_position(&self, position: ScorePosition) -> Result<()> {
        let mut sql = Sql::new(
            self.writer.get_database_backend(),
            "UPDATE score_position SET change_seq = ",
        );
        sql.bind(int(position.change_seq))
            .push(", responses_through = CASE WHEN responses_through < ")
            .bind(time(position.responses_through))
            .push(" THEN ")
            .bind(time(position.responses_through))
            .push(" ELSE responses_through END WHERE id = 1 AND change_seq <= ")
            .bind(int(position.change_seq));
        self.writer.execute_raw(sql.build()).await.db()?;
        Ok(())
    }

    async fn responding_customers(
        &self,
        after: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<Vec<CustomerId>> {
        snapshot!(self, |txn| responding(&txn, after, until))
    }
}

/// The churn model of the last full recompute: one row (`id = 1`) of `churn_models`.
#[async_trait]
impl ChurnModelRepo for Store {
    async fn save_churn_model(&self, model: &ChurnModel) -> Result<()> {
        let mut sql = Sql::new(
            self.writer.get_database_backend(),
            "INSERT INTO churn_models (id, version, decided_at, model_json) VALUES ",
        );
        sql.tuple([
            int(1),
            text(model.version.as_str()),
            time(model.decided_at),
            text(json(model)?),
        ])
        .push(
            " ON CONFLICT (id) DO UPDATE SET version = excluded.version, \
             decided_at = excluded.decided_at, model_json = excluded.model_json",
        );
        self.writer.execute_raw(sql.build()).await.db()?;
        Ok(())
    }

    async fn churn_model(&self) -> Result<Option<ChurnModel>> {
        let sql = Sql::new(
            self.reader.get_database_backend(),
            "SELECT model_json FROM churn_models WHERE id = 1",
        );
        self.reader
            .query_one_raw(sql.build())
            .await
            .db()?
            .map(|row| serde_json::from_str(&get::<String>(&row, "model_json")?).map_err(corrupt))
            .transpose()
    }
}

impl Store {
    /// A write transaction for scores. Changes of category or churn band go into the change
    /// log, whose writers hold the identity lock (one writer on SQLite; the advisory lock on
    /// PostgreSQL, so log positions follow commit order).
    async fn begin_scores_write(&self) -> Result<DatabaseTransaction> {
        self.begin_identity().await
    }
}

fn get<T: sea_orm::TryGetable>(row: &QueryResult, column: &str) -> Result<T> {
    row.try_get("", column).map_err(corrupt)
}

fn parse_id(s: &str) -> Result<CustomerId> {
    s.parse().map_err(corrupt)
}

fn ids(customers: &[CustomerId]) -> impl Iterator<Item = String> + '_ {
    customers.iter().map(ToString::to_string)
}

/// Commits `txn` when `outcome` is a success, else rolls it back; answers the outcome.
async fn finish(txn: DatabaseTransaction, outcome: Result<()>) -> Result<()> {
    match outcome {
        Ok(()) => txn.commit().await.db(),
        Err(err) => {
            crate::store::rollback(txn).await;
            Err(err)
        }
    }
}

/// On PostgreSQL, serialises the dropping and building of the score indexes across processes
/// (two `CREATE INDEX IF NOT EXISTS` of one name at once can fail on the catalogue's unique
/// key); SQLite's single writer does that already.
async fn lock_score_indexes(txn: &DatabaseTransaction) -> Result<()> {
    if txn.get_database_backend() == sea_orm::DbBackend::Postgres {
        txn.execute_unprepared(
            "SELECT pg_advisory_xact_lock(hashtext('cxhub.score_indexes.' || current_schema()))",
        )
        .await
        .db()?;
    }
    Ok(())
}

/// Creates the secondary indexes of `customer_scores` that are missing (see
/// `CustomerScoreRepo::pause_score_indexes`), in `txn`.
pub(crate) async fn restore_score_indexes(txn: &DatabaseTransaction) -> Result<()> {
    lock_score_indexes(txn).await?;
    for (name, columns) in cxhub_migrations::SCORE_INDEXES {
        txn.execute_unprepared(&format!(
            "CREATE INDEX IF NOT EXISTS {name} ON customer_scores ({})",
            columns.join(", ")
        ))
        .await
        .db()?;
    }
    Ok(())
}

async fn live_customers(
    conn: &impl ConnectionTrait,
    after: Option<CustomerId>,
    limit: u32,
) -> Result<Vec<CustomerId>> {
    let mut sql = select_live(conn);
    if let Some(after) = after {
        sql.push(" AND id > ").bind(text(after.to_string()));
    }
    sql.push(" ORDER BY id").limit(u64::from(limit));
    read_live(conn, sql).await
}

/// `SELECT id FROM customers WHERE merged_into IS NULL`, for [`read_live`] to finish and run.
/// On SQLite it is wrapped in `SELECT json_group_array(id) FROM (…)`: the ids come back as one
/// row instead of one row per id (see [`placed_orders`] on what a row costs there).
fn select_live(conn: &impl ConnectionTrait) -> Sql {
    let backend = conn.get_database_backend();
    let select = "SELECT id FROM customers WHERE merged_into IS NULL";
    if backend == sea_orm::DbBackend::Postgres {
        Sql::new(backend, select)
    } else {
        Sql::new(
            backend,
            &format!("SELECT json_group_array(id) AS ids FROM ({select}"),
        )
    }
}

/// Runs a statement begun by [`select_live`]; answers its ids in text order.
async fn read_live(conn: &impl ConnectionTrait, mut sql: Sql) -> Result<Vec<CustomerId>> {
    let mut ids: Vec<String> = Vec::new();
    if conn.get_database_backend() == sea_orm::DbBackend::Postgres {
        for row in conn.query_all_raw(sql.build()).await.db()? {
            ids.push(get(&row, "id")?);
        }
    } else {
        sql.push(")");
        for row in conn.query_all_raw(sql.build()).await.db()? {
            let list: String = get(&row, "ids")?;
            ids.extend(serde_json::from_str::<Vec<String>>(&list).map_err(corrupt)?);
        }
        // The aggregate keeps the subquery's order in practice; SQL does not promise it.
        ids.sort_unstable();
    }
    ids.iter().map(|id| parse_id(id)).collect()
}

async fn facts(
    conn: &impl ConnectionTrait,
    customers: &[CustomerId],
    as_of: DateTime<Utc>,
    signal_days: i64,
) -> Result<Vec<CustomerFacts>> {
    let backend = conn.get_database_backend();
    let mut by_id: BTreeMap<CustomerId, CustomerFacts> = live_among(conn, customers)
        .await?
        .into_iter()
        .map(|id| {
            let facts = CustomerFacts {
                customer: id,
                orders: Vec::new(),
                latest_nps: None,
                latest_csat: None,
                latest_comment: None,
                signals: Vec::new(),
            };
            (id, facts)
        })
        .collect();
    let live: Vec<CustomerId> = by_id.keys().copied().collect();
    for chunk in live.chunks(IN_LIST_CHUNK) {
        for (id, order) in placed_orders(conn, chunk, as_of).await? {
            if let Some(f) = by_id.get_mut(&id) {
                f.orders.push(order);
            }
        }

        let statement = rows_of(
            backend,
            "interactions",
            "outcome, occurred_at",
            ids(chunk),
            |sql| {
                sql.push(" AND occurred_at <= ")
                    .bind(time(as_of))
                    .push(" AND (outcome IN ")
                    .list(OPEN_CASE_OUTCOMES.iter().map(|o| text(*o)))
                    .push(" OR (occurred_at >= ")
                    .bind(time(as_of - Duration::days(signal_days)))
                    .push(" AND outcome IN ")
                    .list(SIGNAL_OUTCOMES.iter().map(|o| text(*o)))
                    .push("))");
            },
        );
        for row in conn.query_all_raw(statement).await.db()? {
            let id = parse_id(&get::<String>(&row, "customer_id")?)?;
            if let Some(f) = by_id.get_mut(&id) {
                f.signals.push(Signal {
                    outcome: get(&row, "outcome")?,
                    at: get(&row, "occurred_at")?,
                });
            }
        }
    }

    // The latest NPS and CSAT answer of each, including the answers given under the ids of
    // customers merged into it (merges move interactions and transactions, not answers); ties
    // at the same time: the latest response id.
    let owners = merged_owners(conn, &live).await?;
    let owned: Vec<String> = owners.keys().cloned().collect();
    let mut latest: BTreeMap<(CustomerId, String), (DateTime<Utc>, String, i32)> = BTreeMap::new();
    for chunk in owned.chunks(IN_LIST_CHUNK) {
        let statement = rows_of(
            backend,
            "survey_answers",
            "kind, value, answered_at, response_id",
            chunk.iter().cloned(),
            |sql| {
                sql.push(" AND kind IN ('nps', 'csat') AND answered_at <= ")
                    .bind(time(as_of));
            },
        );
        for row in conn.query_all_raw(statement).await.db()? {
            let holder: String = get(&row, "customer_id")?;
            let Some(&id) = owners.get(&holder) else {
                continue;
            };
            let kind: String = get(&row, "kind")?;
            let at: DateTime<Utc> = get(&row, "answered_at")?;
            let response: String = get(&row, "response_id")?;
            let value: i32 = get(&row, "value")?;
            let slot = latest
                .entry((id, kind))
                .or_insert_with(|| (at, response.clone(), value));
            if (at, &response) > (slot.0, &slot.1) {
                *slot = (at, response, value);
            }
        }
    }
    for ((id, kind), (answered_at, _, value)) in latest {
        if let Some(f) = by_id.get_mut(&id) {
            let answer = Some(DatedAnswer { value, answered_at });
            if kind == "nps" {
                f.latest_nps = answer;
            } else {
                f.latest_csat = answer;
            }
        }
    }
    // The latest comment of each, under the same ids; ties: the latest response id. A response
    // that named no language hands the rule none (an empty tag), not its survey's default: the
    // language is detected from the text, as `SubmitResponses` did when it answered.
    let mut comments: BTreeMap<CustomerId, (DateTime<Utc>, String, SurveyComment)> =
        BTreeMap::new();
    for chunk in owned.chunks(IN_LIST_CHUNK) {
        let statement = rows_of(
            backend,
            "survey_responses",
            "response_id, comment, language, language_given, answered_at",
            chunk.iter().cloned(),
            |sql| {
                sql.push(" AND comment <> '' AND answered_at <= ")
                    .bind(time(as_of));
            },
        );
        for row in conn.query_all_raw(statement).await.db()? {
            let holder: String = get(&row, "customer_id")?;
            let Some(&id) = owners.get(&holder) else {
                continue;
            };
            let at: DateTime<Utc> = get(&row, "answered_at")?;
            let response: String = get(&row, "response_id")?;
            let newer = comments
                .get(&id)
                .is_none_or(|(t, r, _)| (at, &response) > (*t, r));
            if newer {
                let given: bool = get(&row, "language_given")?;
                let comment = SurveyComment {
                    text: get(&row, "comment")?,
                    language: if given {
                        get(&row, "language")?
                    } else {
                        String::new()
                    },
                    answered_at: at,
                };
                comments.insert(id, (at, response, comment));
            }
        }
    }
    for (id, (_, _, comment)) in comments {
        if let Some(f) = by_id.get_mut(&id) {
            f.latest_comment = Some(comment);
        }
    }
    let mut out: Vec<CustomerFacts> = by_id.into_values().collect();
    for f in &mut out {
        f.orders.sort_by_key(|o| o.at);
        f.signals
            .sort_by(|a, b| (a.at, &a.outcome).cmp(&(b.at, &b.outcome)));
    }
    Ok(out)
}

/// The placed orders of `customers` at or before `as_of`. SQLite: one row per customer, its
/// orders as one JSON array (`json_group_array` over the covering `(customer_id, …)` index):
/// sqlx hands every SQLite row from its worker thread to the caller's task, about 2 µs a row,
/// so a 100,000-customer recompute reads 100,000 rows instead of its 300,000 orders.
/// PostgreSQL: one row per order ([`rows_of`]).
async fn placed_orders(
    conn: &impl ConnectionTrait,
    customers: &[CustomerId],
    as_of: DateTime<Utc>,
) -> Result<Vec<(CustomerId, LedgerOrder)>> {
    let backend = conn.get_database_backend();
    let order = |at: DateTime<Utc>, minor: i64, code: &str| -> Result<LedgerOrder> {
        Ok(LedgerOrder {
            at,
            amount: Money::new(minor, Currency::parse(code).map_err(corrupt)?),
        })
    };
    let mut out = Vec::new();
    if backend == sea_orm::DbBackend::Postgres {
        let statement = rows_of(
            backend,
            "transactions",
            "occurred_at, amount_minor, currency_code",
            ids(customers),
            |sql| {
                sql.push(" AND kind = 'order' AND status = 'placed' AND occurred_at <= ")
                    .bind(time(as_of));
            },
        );
        for row in conn.query_all_raw(statement).await.db()? {
            let id = parse_id(&get::<String>(&row, "customer_id")?)?;
            let code: String = get(&row, "currency_code")?;
            out.push((
                id,
                order(get(&row, "occurred_at")?, get(&row, "amount_minor")?, &code)?,
            ));
        }
        return Ok(out);
    }
    let mut sql = Sql::new(
        backend,
        "SELECT customer_id, json_group_array(json_array(occurred_at, amount_minor, \
         currency_code)) AS orders FROM transactions WHERE customer_id",
    );
    sql.in_texts(ids(customers));
    sql.push(" AND kind = 'order' AND status = 'placed' AND occurred_at <= ")
        .bind(time(as_of))
        .push(" GROUP BY customer_id");
    for row in conn.query_all_raw(sql.build()).await.db()? {
        let id = parse_id(&get::<String>(&row, "customer_id")?)?;
        for cells in json_rows(&row, "orders")? {
            let mut cells = Cells::new(cells, 3)?;
            let (at, minor) = (cells.time()?, cells.int()?);
            out.push((id, order(at, minor, &cells.text()?)?));
        }
    }
    Ok(out)
}

/// `SELECT customer_id, <columns> FROM <table>` for the rows of the customers `keys` (their
/// `customer_id`) that meet what `conditions` appends (` AND …`). SQLite: `customer_id IN
/// (…)`. PostgreSQL: each key of an array looked up on its own (`unnest` of the keys, a
/// `LATERAL` subquery per key over the table's `(customer_id, …)` index; `OFFSET 0` keeps the
/// planner from flattening it into a join). With `customer_id = ANY(array)` the planner
/// estimated the selectivity of every one of the 500 keys at each call (custom plans): planning
/// took longer than running (the transactions and interactions of a 100,000-customer recompute:
/// 0.8 s of planning, 0.5 s of running).
fn rows_of(
    backend: sea_orm::DbBackend,
    table: &str,
    columns: &str,
    keys: impl IntoIterator<Item = String>,
    conditions: impl FnOnce(&mut Sql),
) -> sea_orm::Statement {
    let mut sql;
    if backend == sea_orm::DbBackend::Postgres {
        sql = Sql::new(backend, "SELECT u.customer_id, r.* FROM unnest(");
        sql.bind(texts(keys)).push(&format!(
            "::text[]) AS u(customer_id) CROSS JOIN LATERAL (SELECT {columns} FROM {table} \
             WHERE customer_id = u.customer_id"
        ));
        conditions(&mut sql);
        sql.push(" OFFSET 0) AS r");
    } else {
        sql = Sql::new(
            backend,
            &format!("SELECT customer_id, {columns} FROM {table} WHERE customer_id"),
        );
        sql.in_texts(keys);
        conditions(&mut sql);
    }
    sql.build()
}

fn parse_json<T: serde::de::DeserializeOwned>(v: Option<String>) -> Result<Option<T>> {
    v.map(|s| serde_json::from_str(&s).map_err(corrupt))
        .transpose()
}

/// Every customer id whose records belong to one of `live`: the live ids themselves and the
/// ids merged into them, directly or through a chain of merges, each mapped to its live id.
async fn merged_owners(
    conn: &impl ConnectionTrait,
    live: &[CustomerId],
) -> Result<BTreeMap<String, CustomerId>> {
    let mut owners: BTreeMap<String, CustomerId> =
        live.iter().map(|id| (id.to_string(), *id)).collect();
    let mut frontier: Vec<String> = owners.keys().cloned().collect();
    for _ in 0..crate::customers::MAX_REDIRECTS {
        if frontier.is_empty() {
            break;
        }
        let mut next = Vec::new();
        for chunk in frontier.chunks(IN_LIST_CHUNK) {
            let mut sql = Sql::new(
                conn.get_database_backend(),
                "SELECT id, merged_into FROM customers WHERE merged_into",
            );
            sql.in_texts(chunk.iter().cloned());
            for row in conn.query_all_raw(sql.build()).await.db()? {
                let id: String = get(&row, "id")?;
                let into: String = get(&row, "merged_into")?;
                if let Some(&root) = owners.get(&into)
                    && !owners.contains_key(&id)
                {
                    owners.insert(id.clone(), root);
                    next.push(id);
                }
            }
        }
        frontier = next;
    }
    Ok(owners)
}

fn json<T: serde::Serialize>(value: &T) -> Result<String> {
    serde_json::to_string(value).map_err(corrupt)
}

async fn save_models(
    txn: &DatabaseTransaction,
    models: &[FittedModels],
    position: ScorePosition,
) -> Result<()> {
    let backend = txn.get_database_backend();
    txn.execute_raw(Sql::new(backend, "DELETE FROM scoring_models").build())
        .await
        .db()?;
    for m in models {
        let opt = |v: Option<String>| Value::String(v);
        let mut sql = Sql::new(
            backend,
            "INSERT INTO scoring_models (currency, version, fitted_at, customers, \
             repeat_customers, bg_nbd_json, gamma_gamma_json, rfm_json, notes_json) VALUES ",
        );
        sql.tuple([
            text(m.currency.code()),
            int(m.version),
            time(m.fitted_at),
            int(i64::try_from(m.customers).unwrap_or(i64::MAX)),
            int(i64::try_from(m.repeat_customers).unwrap_or(i64::MAX)),
            opt(m.bg_nbd.as_ref().map(json).transpose()?),
            opt(m.gamma_gamma.as_ref().map(json).transpose()?),
            opt(m.rfm.as_ref().map(json).transpose()?),
            text(json(&m.notes)?),
        ]);
        txn.execute_raw(sql.build()).await.db()?;
    }
    let mut sql = Sql::new(
        backend,
        "INSERT INTO score_position (id, change_seq, responses_through) VALUES (1, ",
    );
    sql.bind(int(position.change_seq))
        .push(", ")
        .bind(time(position.responses_through))
        .push(
            ") ON CONFLICT (id) DO UPDATE SET change_seq = excluded.change_seq, \
             responses_through = excluded.responses_through",
        );
    txn.execute_raw(sql.build()).await.db()?;
    Ok(())
}

async fn fitted_models(conn: &impl ConnectionTrait) -> Result<Vec<FittedModels>> {
    let sql = Sql::new(
        conn.get_database_backend(),
        "SELECT currency, version, fitted_at, customers, repeat_customers, bg_nbd_json, \
         gamma_gamma_json, rfm_json, notes_json FROM scoring_models ORDER BY currency",
    );
    let mut out = Vec::new();
    for row in conn.query_all_raw(sql.build()).await.db()? {
        let code: String = get(&row, "currency")?;
        let customers: i64 = get(&row, "customers")?;
        let repeat: i64 = get(&row, "repeat_customers")?;
        let notes: String = get(&row, "notes_json")?;
        out.push(FittedModels {
            currency: Currency::parse(&code).map_err(corrupt)?,
            version: get(&row, "version")?,
            fitted_at: get(&row, "fitted_at")?,
            customers: u64::try_from(customers).map_err(corrupt)?,
            repeat_customers: u64::try_from(repeat).map_err(corrupt)?,
            bg_nbd: parse_json(get(&row, "bg_nbd_json")?)?,
            gamma_gamma: parse_json(get(&row, "gamma_gamma_json")?)?,
            rfm: parse_json(get(&row, "rfm_json")?)?,
            notes: serde_json::from_str(&notes).map_err(corrupt)?,
        });
    }
    Ok(out)
}

/// The values of one `customer_scores` row, in the order of [`SCORE_COLUMNS_WRITTEN`].
fn score_row(s: &CustomerScores, computed_at: DateTime<Utc>) -> Result<Vec<Value>> {
    let clv = s.clv.as_ref();
    let rfm = s.rfm.as_ref();
    Ok(vec![
        text(s.customer.to_string()),
        time(s.as_of),
        time(computed_at),
        text(s.model_version.as_str()),
        text(category_text(s.category.category)),
        text(s.category.rule.as_str()),
        text(compact::category(&s.category)?),
        Value::Double(Some(s.churn.probability)),
        text(s.churn.band.as_str()),
        text(compact::churn(&s.churn)?),
        Value::String(clv.map(|c| c.currency.code().to_owned())),
        Value::BigInt(clv.map(|c| c.value_minor)),
        Value::Double(clv.map(|c| c.expected_purchases)),
        Value::Double(clv.map(|c| c.p_alive)),
        Value::BigInt(clv.map(|c| c.expected_spend_minor)),
        Value::String(clv.map(compact::clv).transpose()?),
        Value::Int(rfm.map(|r| i32::from(r.r))),
        Value::Int(rfm.map(|r| i32::from(r.f))),
        Value::Int(rfm.map(|r| i32::from(r.m))),
        Value::String(rfm.map(|r| segment_text(r.segment).to_owned())),
        Value::String(rfm.map(compact::rfm).transpose()?),
    ])
}

/// The explanation columns of `customer_scores` (`category_json`, `churn_json`, `clv_json`,
/// `rfm_json`) as written: JSON arrays, each field at a fixed position (no field names; about
/// half the bytes of the objects). Rows written before are JSON objects (the serde form of the
/// domain types); both read back, told apart by their first character.
mod compact {
    use cxhub_domain::error::Result;
    use cxhub_domain::money::Currency;
    use cxhub_domain::scoring::category::{CategoryDecision, CategoryInputs, CategoryRule};
    use cxhub_domain::scoring::churn::{
        ChurnBand, ChurnFactor, ChurnInputs, ChurnScore, Contribution,
    };
    use cxhub_domain::scoring::clv::CustomerSummary;
    use cxhub_domain::scoring::metrics::CustomerCategory;
    use cxhub_domain::scoring::rfm::{RfmInput, RfmSegment};
    use cxhub_domain::scoring::{ClvPart, RfmPart};
    use serde::de::DeserializeOwned;

    use crate::error::corrupt;

    fn write<T: serde::Serialize>(value: &T) -> Result<String> {
        serde_json::to_string(value).map_err(corrupt)
    }

    /// `stored` in either form: `compact` reads an array, `object` the serde form.
    fn read<C: DeserializeOwned, T: DeserializeOwned>(
        stored: &str,
        compact: impl FnOnce(C) -> T,
    ) -> Result<T> {
        if stored.trim_start().starts_with('[') {
            serde_json::from_str(stored).map(compact).map_err(corrupt)
        } else {
            serde_json::from_str(stored).map_err(corrupt)
        }
    }

    /// `[category, rule, inputs, explanation]`; the inputs as an object (mostly `{}`).
    pub(super) fn category(c: &CategoryDecision) -> Result<String> {
        write(&(c.category, c.rule, &c.inputs, &c.explanation))
    }

    pub(super) fn read_category(stored: &str) -> Result<CategoryDecision> {
        type Row = (CustomerCategory, CategoryRule, CategoryInputs, String);
        read(stored, |(category, rule, inputs, explanation): Row| {
            CategoryDecision {
                category,
                rule,
                inputs,
                explanation,
            }
        })
    }

    /// The churn inputs without the category explanation (read back from the category's):
    /// `[days since last purchase, usual interval, purchase occasions, spend recent, spend
    /// before, category, open cases, failed payments, downgrades, cancellations, late
    /// deliveries, returns]`.
    type Inputs = (
        Option<i64>,
        Option<f64>,
        u32,
        i64,
        i64,
        CustomerCategory,
        u32,
        u32,
        u32,
        u32,
        u32,
        u32,
    );

    /// `[probability, band, intercept, [[factor, contribution, reason], …], inputs, model
    /// version]`.
    pub(super) fn churn(c: &ChurnScore) -> Result<String> {
        let i = &c.inputs;
        let inputs: Inputs = (
            i.days_since_last_purchase,
            i.usual_interval_days,
            i.purchase_occasions,
            i.spend_recent_minor,
            i.spend_before_minor,
            i.category,
            i.open_cases,
            i.failed_payments,
            i.downgrades,
            i.cancellations,
            i.late_deliveries,
            i.returns,
        );
        let contributions: Vec<(ChurnFactor, f64, &str)> = c
            .contributions
            .iter()
            .map(|c| (c.factor, c.contribution, c.reason.as_str()))
            .collect();
        write(&(
            c.probability,
            c.band,
            c.intercept,
            contributions,
            inputs,
            &c.model_version,
        ))
    }

    pub(super) fn read_churn(stored: &str) -> Result<ChurnScore> {
        type Row = (
            f64,
            ChurnBand,
            f64,
            Vec<(ChurnFactor, f64, String)>,
            Inputs,
            String,
        );
        read(
            stored,
            |(probability, band, intercept, contributions, i, model_version): Row| ChurnScore {
                probability,
                band,
                intercept,
                contributions: contributions
                    .into_iter()
                    .map(|(factor, contribution, reason)| Contribution {
                        factor,
                        contribution,
                        reason,
                    })
                    .collect(),
                inputs: ChurnInputs {
                    days_since_last_purchase: i.0,
                    usual_interval_days: i.1,
                    purchase_occasions: i.2,
                    spend_recent_minor: i.3,
                    spend_before_minor: i.4,
                    category: i.5,
                    category_explanation: String::new(),
                    open_cases: i.6,
                    failed_payments: i.7,
                    downgrades: i.8,
                    cancellations: i.9,
                    late_deliveries: i.10,
                    returns: i.11,
                },
                model_version,
            },
        )
    }

    /// `[currency, horizon weeks, annual discount rate, fit version, [x, t_x, T, m], P(alive),
    /// expected purchases, expected spend, value]`.
    type Clv = (Currency, f64, f64, i64, [f64; 4], f64, f64, i64, i64);

    pub(super) fn clv(c: &ClvPart) -> Result<String> {
        let s = &c.summary;
        let row: Clv = (
            c.currency,
            c.horizon_weeks,
            c.annual_discount_rate,
            c.fit_version,
            [s.frequency, s.recency, s.age, s.monetary],
            c.p_alive,
            c.expected_purchases,
            c.expected_spend_minor,
            c.value_minor,
        );
        write(&row)
    }

    pub(super) fn read_clv(stored: &str) -> Result<ClvPart> {
        read(stored, |c: Clv| ClvPart {
            currency: c.0,
            horizon_weeks: c.1,
            annual_discount_rate: c.2,
            fit_version: c.3,
            summary: CustomerSummary {
                frequency: c.4[0],
                recency: c.4[1],
                age: c.4[2],
                monetary: c.4[3],
            },
            p_alive: c.5,
            expected_purchases: c.6,
            expected_spend_minor: c.7,
            value_minor: c.8,
        })
    }

    /// `[[recency days, frequency, monetary], R, F, M, segment, segment rule, reasons, fit
    /// version]`.
    pub(super) fn rfm(r: &RfmPart) -> Result<String> {
        let i = &r.input;
        write(&(
            (i.recency_days, i.frequency, i.monetary),
            r.r,
            r.f,
            r.m,
            r.segment,
            &r.segment_rule,
            &r.reasons,
            r.fit_version,
        ))
    }

    pub(super) fn read_rfm(stored: &str) -> Result<RfmPart> {
        type Row = (
            (u32, u64, f64),
            u8,
            u8,
            u8,
            RfmSegment,
            String,
            Vec<String>,
            i64,
        );
        read(
            stored,
            |(
                (recency_days, frequency, monetary),
                r,
                f,
                m,
                segment,
                segment_rule,
                reasons,
                fit_version,
            ): Row| {
                RfmPart {
                    input: RfmInput {
                        recency_days,
                        frequency,
                        monetary,
                    },
                    r,
                    f,
                    m,
                    segment,
                    segment_rule,
                    reasons,
                    fit_version,
                }
            },
        )
    }
}

/// The columns of `customer_scores` in the order of [`score_row`].
const SCORE_COLUMNS_WRITTEN: [&str; 21] = [
    "customer_id",
    "as_of",
    "computed_at",
    "model_version",
    "category",
    "category_rule",
    "category_json",
    "churn_probability",
    "churn_band",
    "churn_json",
    "clv_currency",
    "clv_minor",
    "expected_purchases",
    "p_alive",
    "expected_spend_minor",
    "clv_json",
    "rfm_r",
    "rfm_f",
    "rfm_m",
    "rfm_segment",
    "rfm_json",
];

/// The upserts that write `scores`: on SQLite multi-row `VALUES` (one per
/// [`SCORES_PER_STATEMENT`]), on PostgreSQL one [`unnest_upsert`]. CPU work (the explanations
/// rendered as JSON, the values bound), done on a blocking thread.
fn score_upserts(
    backend: sea_orm::DbBackend,
    scores: &[CustomerScores],
    computed_at: DateTime<Utc>,
) -> Result<Vec<sea_orm::Statement>> {
    let updates: Vec<String> = SCORE_COLUMNS_WRITTEN[1..]
        .iter()
        .map(|c| format!("{c} = excluded.{c}"))
        .collect();
    let head = format!(
        "INSERT INTO customer_scores ({}) ",
        SCORE_COLUMNS_WRITTEN.join(", ")
    );
    let tail = format!(
        " ON CONFLICT (customer_id) DO UPDATE SET {}",
        updates.join(", ")
    );
    if scores.is_empty() {
        return Ok(Vec::new());
    }
    if backend == sea_orm::DbBackend::Postgres {
        return Ok(vec![unnest_upsert(scores, computed_at, &head, &tail)?]);
    }
    scores
        .chunks(SCORES_PER_STATEMENT)
        .map(|chunk| {
            let mut sql = Sql::new(backend, &head);
            sql.push("VALUES ");
            for (i, s) in chunk.iter().enumerate() {
                if i > 0 {
                    sql.push(", ");
                }
                sql.list(score_row(s, computed_at)?);
            }
            sql.push(&tail);
            Ok(sql.build())
        })
        .collect()
}

/// One `INSERT … SELECT … FROM unnest(arrays) … ON CONFLICT` of all `scores` (PostgreSQL): one
/// array parameter per column (binary, so doubles and timestamps arrive exactly as single
/// values do), instead of 21 parameters per row. PostgreSQL plans each statement of the pool
/// with its parameters, and the 10,500 of a 500-row `VALUES` upsert were a tenth of its time in
/// a full recompute. The drivers bind no NULL inside an array: a NULL travels as a placeholder
/// (empty text, zero) with its bit set in the row's `nulls` mask, and the `SELECT` puts the NULL
/// back in the columns where a row of `scores` has one. `head` is `INSERT INTO … (columns) `,
/// `tail` the `ON CONFLICT` clause.
fn unnest_upsert(
    scores: &[CustomerScores],
    computed_at: DateTime<Utc>,
    head: &str,
    tail: &str,
) -> Result<sea_orm::Statement> {
    use sea_orm::sea_query::ArrayType;
    let mut columns: Vec<Vec<Value>> = (0..SCORE_COLUMNS_WRITTEN.len())
        .map(|_| Vec::with_capacity(scores.len()))
        .collect();
    // Column i of a row is NULL when bit i of its mask is set.
    let mut nulls: Vec<Value> = Vec::with_capacity(scores.len());
    let mut nullable: i32 = 0;
    // The array type of each column, from the variants of the values (a NULL keeps its type).
    let mut types: Vec<(ArrayType, &str)> = Vec::new();
    for s in scores {
        let row = score_row(s, computed_at)?;
        if types.is_empty() {
            types = row.iter().map(pg_array_type).collect::<Result<_>>()?;
        }
        let mut mask: i32 = 0;
        for (i, (value, column)) in row.into_iter().zip(columns.iter_mut()).enumerate() {
            let placeholder = match value {
                Value::String(None) => Value::String(Some(String::new())),
                Value::Double(None) => Value::Double(Some(0.0)),
                Value::BigInt(None) => Value::BigInt(Some(0)),
                Value::Int(None) => Value::Int(Some(0)),
                Value::ChronoDateTimeUtc(None) => {
                    Value::ChronoDateTimeUtc(Some(DateTime::UNIX_EPOCH))
                }
                value => {
                    column.push(value);
                    continue;
                }
            };
            mask |= 1 << i;
            column.push(placeholder);
        }
        nullable |= mask;
        nulls.push(Value::Int(Some(mask)));
    }
    let select: Vec<String> = (0..SCORE_COLUMNS_WRITTEN.len())
        .map(|i| {
            if nullable & (1 << i) == 0 {
                format!("u.c{i}")
            } else {
                format!("CASE WHEN (u.nulls & {}) = 0 THEN u.c{i} END", 1 << i)
            }
        })
        .collect();
    let mut sql = Sql::new(sea_orm::DbBackend::Postgres, head);
    sql.push("SELECT ")
        .push(&select.join(", "))
        .push(" FROM unnest(");
    for (values, (ty, cast)) in columns.into_iter().zip(types) {
        sql.bind(array(ty, values)).push("::").push(cast).push(", ");
    }
    sql.bind(array(ArrayType::Int, nulls))
        .push("::int4[]) AS u(");
    for i in 0..SCORE_COLUMNS_WRITTEN.len() {
        sql.push(&format!("c{i}, "));
    }
    sql.push("nulls)").push(tail);
    Ok(sql.build())
}

/// The PostgreSQL array type of a column holding values like `value`, and its cast.
fn pg_array_type(value: &Value) -> Result<(sea_orm::sea_query::ArrayType, &'static str)> {
    use sea_orm::sea_query::ArrayType;
    Ok(match value {
        Value::String(_) => (ArrayType::String, "text[]"),
        Value::Double(_) => (ArrayType::Double, "float8[]"),
        Value::BigInt(_) => (ArrayType::BigInt, "int8[]"),
        Value::Int(_) => (ArrayType::Int, "int4[]"),
        Value::ChronoDateTimeUtc(_) => (ArrayType::ChronoDateTimeUtc, "timestamptz[]"),
        other => {
            return Err(Error::internal(format!(
                "no array type for a score column of {other:?}"
            )));
        }
    })
}

/// Writes `scores` (the latest of each customer wins) in `txn`, except for customers no longer
/// live, and appends a change of every customer whose category or churn band changed.
///
/// The statements are built on a blocking thread while one query finds which customers are
/// still live and their stored category and band. The transaction holds the identity lock that
/// merges and erasures take, so none changes before it commits: the rows of customers merged
/// away or erased while their scores were computed (usually none) are deleted after the
/// upserts.
/// The upserts of a batch of scores being built on a blocking thread (see [`build_scores`]).
struct Building {
    /// The customers, each once, in id order.
    ids: Vec<CustomerId>,
    computed_at: DateTime<Utc>,
    statements: tokio::task::JoinHandle<Result<(Vec<sea_orm::Statement>, Vec<CustomerScores>)>>,
}

/// Starts building the upserts of `scores` on a blocking thread (the later scores of one
/// customer win), for [`save_scores`] to run.
fn build_scores(backend: sea_orm::DbBackend, scores: Vec<CustomerScores>) -> Building {
    let computed_at = now();
    let mut last: BTreeMap<CustomerId, CustomerScores> = BTreeMap::new();
    for s in scores {
        last.insert(s.customer, s);
    }
    let ids: Vec<CustomerId> = last.keys().copied().collect();
    let unique: Vec<CustomerScores> = last.into_values().collect();
    let statements = tokio::task::spawn_blocking(move || {
        score_upserts(backend, &unique, computed_at).map(|statements| (statements, unique))
    });
    Building {
        ids,
        computed_at,
        statements,
    }
}

async fn save_scores(txn: &DatabaseTransaction, building: Building) -> Result<u64> {
    let backend = txn.get_database_backend();
    let Building {
        ids,
        computed_at,
        statements,
    } = building;
    let before = live_with_bands(txn, &ids).await?;
    let (statements, unique) = statements
        .await
        .map_err(|err| Error::internal(format!("building the score upserts failed: {err}")))??;
    for statement in statements {
        txn.execute_raw(statement).await.db()?;
    }

    // Customers merged away or erased meanwhile keep no row (written above or not).
    let removed: Vec<CustomerId> = ids
        .iter()
        .filter(|id| !before.contains_key(id))
        .copied()
        .collect();
    if !removed.is_empty() {
        let mut sql = Sql::new(backend, "DELETE FROM customer_scores WHERE customer_id");
        sql.in_texts(removed.iter().map(ToString::to_string));
        txn.execute_raw(sql.build()).await.db()?;
    }
    // A new category or churn band is a change of the customer (rules react to it).
    let mut changes = Vec::new();
    for s in &unique {
        // Customers removed just above have no row left to compare.
        let Some(old) = before.get(&s.customer) else {
            continue;
        };
        let old = old.as_ref();
        let mut fields = Vec::new();
        if old.map(|(c, _)| c.as_str()) != Some(category_text(s.category.category)) {
            fields.push(change::CATEGORY);
        }
        if old.map(|(_, b)| b.as_str()) != Some(s.churn.band.as_str()) {
            fields.push(change::CHURN_BAND);
        }
        if !fields.is_empty() {
            changes.push(NewChange::rescored(s.customer, fields));
        }
    }
    if !changes.is_empty() {
        crate::changes::append(txn, &changes, computed_at).await?;
    }
    Ok((unique.len() - removed.len()) as u64)
}

/// Those of `customers` that are live (neither merged away nor erased), each with its stored
/// category and churn band (`None` without a score row): one query over `customers` and
/// `customer_scores` on SQLite. On PostgreSQL see [`live_in_range`] and [`probe_live`].
async fn live_with_bands(
    txn: &DatabaseTransaction,
    customers: &[CustomerId],
) -> Result<BTreeMap<CustomerId, Option<(String, String)>>> {
    let backend = txn.get_database_backend();
    let mut live = BTreeMap::new();
    for chunk in customers.chunks(IN_LIST_CHUNK) {
        if backend == sea_orm::DbBackend::Postgres {
            let unsettled = live_in_range(txn, chunk, &mut live).await?;
            if !unsettled.is_empty() {
                probe_live(txn, &unsettled, &mut live).await?;
            }
            continue;
        }
        // One row for the whole chunk (see `placed_orders` on what a row costs on SQLite).
        let mut sql = Sql::new(
            backend,
            "SELECT json_group_array(json_array(c.id, s.category, s.churn_band)) AS live \
             FROM customers c LEFT JOIN customer_scores s ON s.customer_id = c.id \
             WHERE c.merged_into IS NULL AND c.id",
        );
        sql.in_texts(ids(chunk));
        for row in txn.query_all_raw(sql.build()).await.db()? {
            for cells in json_rows(&row, "live")? {
                let mut cells = Cells::new(cells, 3)?;
                let id = parse_id(&cells.text()?)?;
                let stored = match (cells.text_opt()?, cells.text_opt()?) {
                    (Some(category), Some(band)) => Some((category, band)),
                    _ => None,
                };
                live.insert(id, stored);
            }
        }
    }
    Ok(live)
}

/// The stored category and churn band of a row (`None` without a score row).
fn bands(row: &QueryResult) -> Result<Option<(String, String)>> {
    Ok(
        match (
            get::<Option<String>>(row, "category")?,
            get::<Option<String>>(row, "churn_band")?,
        ) {
            (Some(category), Some(band)) => Some((category, band)),
            _ => None,
        },
    )
}

/// PostgreSQL: which of `customers` are live, with their bands, from two index range scans
/// between the least and the greatest id (the live customers, the score rows), each cut off at
/// twice as many rows as `customers` plus one. The batches of a full recompute are runs of
/// consecutive ids, and for 2,500 of them the two ranges took about 1 ms where a probe per id
/// took 6–12 ms (about 0.3 s of a 100,000-customer recompute). Adds what it settles to `live`
/// and answers the customers it leaves to [`probe_live`]: those not among the live customers
/// of the range (not live, or outside it under the database's collation, which orders
/// `customers.id`; `customer_scores.customer_id` is byte-ordered like the bounds, so its range
/// holds every customer's row), or all of them when a range was cut off (ids spread out).
async fn live_in_range(
    txn: &DatabaseTransaction,
    customers: &[CustomerId],
    live: &mut BTreeMap<CustomerId, Option<(String, String)>>,
) -> Result<Vec<CustomerId>> {
    let wanted: BTreeMap<String, CustomerId> =
        customers.iter().map(|c| (c.to_string(), *c)).collect();
    let (Some(first), Some(last)) = (wanted.keys().next(), wanted.keys().next_back()) else {
        return Ok(Vec::new());
    };
    let cap = 2 * wanted.len() as u64 + 1;
    let mut sql = Sql::new(
        sea_orm::DbBackend::Postgres,
        "(SELECT 'c' AS part, id, NULL AS category, NULL AS churn_band FROM customers \
         WHERE merged_into IS NULL AND id >= ",
    );
    sql.bind(text(first.as_str()))
        .push(" AND id <= ")
        .bind(text(last.as_str()))
        .limit(cap)
        .push(
            ") UNION ALL (SELECT 's', customer_id, category, churn_band FROM customer_scores \
             WHERE customer_id >= ",
        )
        .bind(text(first.as_str()))
        .push(" AND customer_id <= ")
        .bind(text(last.as_str()))
        .limit(cap)
        .push(")");
    let mut in_range = BTreeSet::new();
    let mut stored = BTreeMap::new();
    for row in txn.query_all_raw(sql.build()).await.db()? {
        let id = get::<String>(&row, "id")?;
        if get::<String>(&row, "part")? == "c" {
            in_range.insert(id);
        } else if let Some(bands) = bands(&row)? {
            stored.insert(id, bands);
        }
    }
    if in_range.len() as u64 >= cap || stored.len() as u64 >= cap {
        return Ok(customers.to_vec());
    }
    let mut unsettled = Vec::new();
    for (text, id) in wanted {
        if in_range.contains(&text) {
            live.insert(id, stored.remove(&text));
        } else {
            unsettled.push(id);
        }
    }
    Ok(unsettled)
}

/// PostgreSQL: which of `customers` are live, with their bands, by index probes per id: a
/// scalar subquery in `customers` and a `LATERAL` subquery (`OFFSET 0`, so it stays a probe
/// per id) in `customer_scores` for both the category and the band. For a batch of 2,500 ids
/// the planner answered `c.id = ANY(array)` with a (parallel) sequential scan of `customers`,
/// and a plain join with `unnest(array)` with a hash of every customer, 20–25 ms a batch
/// either way at 100,000 customers; one scalar subquery per column (three probes per id) took
/// 13–16 ms, the two probes 8–10 ms. Adds them to `live`.
async fn probe_live(
    txn: &DatabaseTransaction,
    customers: &[CustomerId],
    live: &mut BTreeMap<CustomerId, Option<(String, String)>>,
) -> Result<()> {
    let mut sql = Sql::new(
        sea_orm::DbBackend::Postgres,
        "SELECT u.id, s.category, s.churn_band FROM unnest(",
    );
    sql.bind(texts(ids(customers))).push(
        "::text[]) AS u(id) LEFT JOIN LATERAL (SELECT s.category, s.churn_band \
         FROM customer_scores s WHERE s.customer_id = u.id OFFSET 0) AS s ON true \
         WHERE (SELECT c.merged_into IS NULL FROM customers c WHERE c.id = u.id)",
    );
    for row in txn.query_all_raw(sql.build()).await.db()? {
        live.insert(parse_id(&get::<String>(&row, "id")?)?, bands(&row)?);
    }
    Ok(())
}

/// Those of `customers` that are live (neither merged away nor erased).
async fn live_among(
    conn: &impl ConnectionTrait,
    customers: &[CustomerId],
) -> Result<BTreeSet<CustomerId>> {
    let mut live = BTreeSet::new();
    for chunk in customers.chunks(IN_LIST_CHUNK) {
        let mut sql = select_live(conn);
        sql.push(" AND id").in_texts(ids(chunk));
        live.extend(read_live(conn, sql).await?);
    }
    Ok(live)
}

fn scores_from_row(row: &QueryResult) -> Result<CustomerScores> {
    scores_from_columns(StoredScores {
        customer: get(row, "customer_id")?,
        as_of: get(row, "as_of")?,
        model_version: get(row, "model_version")?,
        category_json: get(row, "category_json")?,
        churn_json: get(row, "churn_json")?,
        clv_json: get(row, "clv_json")?,
        rfm_json: get(row, "rfm_json")?,
    })
}

/// The columns of a `customer_scores` row that make up its [`CustomerScores`].
pub(crate) struct StoredScores {
    pub customer: String,
    pub as_of: DateTime<Utc>,
    pub model_version: String,
    pub category_json: String,
    pub churn_json: String,
    pub clv_json: Option<String>,
    pub rfm_json: Option<String>,
}

/// The scores stored in `row`'s columns (read by [`scores_from_row`], and by the 360° view).
pub(crate) fn scores_from_columns(row: StoredScores) -> Result<CustomerScores> {
    let category = compact::read_category(&row.category_json)?;
    let mut churn = compact::read_churn(&row.churn_json)?;
    // Not stored twice: the churn inputs' category explanation is the category decision's.
    churn.inputs.category_explanation = category.explanation.clone();
    Ok(CustomerScores {
        customer: parse_id(&row.customer)?,
        as_of: row.as_of,
        model_version: row.model_version,
        category,
        churn,
        clv: row.clv_json.as_deref().map(compact::read_clv).transpose()?,
        rfm: row.rfm_json.as_deref().map(compact::read_rfm).transpose()?,
    })
}

async fn customer_scores(
    conn: &impl ConnectionTrait,
    customer: CustomerId,
) -> Result<(CustomerId, Option<CustomerScores>)> {
    let live = crate::customers::live(conn, customer).await?;
    let mut sql = Sql::new(
        conn.get_database_backend(),
        &format!("SELECT {SCORE_COLUMNS} FROM customer_scores s WHERE s.customer_id = "),
    );
    sql.bind(text(live.to_string()));
    let scores = conn
        .query_one_raw(sql.build())
        .await
        .db()?
        .map(|row| scores_from_row(&row))
        .transpose()?;
    Ok((live, scores))
}

/// The keyset position of a listing: the sort value (churn probability as its bits, or CLV in
/// minor units) and the customer id, as `value|id`.
fn encode_after(order: ScoreOrder, s: &CustomerScores) -> String {
    match order {
        ScoreOrder::ChurnDesc => format!("{:016x}|{}", s.churn.probability.to_bits(), s.customer),
        ScoreOrder::ClvDesc => format!(
            "{}|{}",
            s.clv.as_ref().map(|c| c.value_minor).unwrap_or_default(),
            s.customer
        ),
    }
}

fn bad_token() -> Error {
    Error::invalid_field("page_token", "not a page token of this listing")
}

async fn list(
    conn: &impl ConnectionTrait,
    filter: &ScoreFilter,
    order: ScoreOrder,
    page: &PageRequest,
) -> Result<Page<CustomerScores>> {
    let mut sql = Sql::new(
        conn.get_database_backend(),
        &format!(
            "SELECT {SCORE_COLUMNS} FROM customer_scores s WHERE EXISTS (SELECT 1 FROM \
             customers c WHERE c.id = s.customer_id AND c.merged_into IS NULL)"
        ),
    );
    if let Some(category) = filter.category {
        sql.push(" AND s.category = ")
            .bind(text(category_text(category)));
    }
    if let Some(band) = filter.churn_band {
        sql.push(" AND s.churn_band = ").bind(text(band.as_str()));
    }
    if let Some(segment) = filter.segment {
        sql.push(" AND s.rfm_segment = ")
            .bind(text(segment_text(segment)));
    }
    if let Some(min) = filter.min_clv {
        sql.push(" AND s.clv_currency = ")
            .bind(text(min.currency.code()))
            .push(" AND s.clv_minor >= ")
            .bind(int(min.amount_minor));
    }
    if order == ScoreOrder::ClvDesc {
        sql.push(" AND s.clv_minor IS NOT NULL");
    }
    if let Some(after) = &page.after {
        let (value, id) = after.split_once('|').ok_or_else(bad_token)?;
        let id = id.parse::<CustomerId>().map_err(|_| bad_token())?;
        match order {
            ScoreOrder::ChurnDesc => {
                let bits = u64::from_str_radix(value, 16).map_err(|_| bad_token())?;
                let p = Value::Double(Some(f64::from_bits(bits)));
                sql.push(" AND (s.churn_probability < ")
                    .bind(p.clone())
                    .push(" OR (s.churn_probability = ")
                    .bind(p)
                    .push(" AND s.customer_id > ")
                    .bind(text(id.to_string()))
                    .push("))");
            }
            ScoreOrder::ClvDesc => {
                let v: i64 = value.parse().map_err(|_| bad_token())?;
                sql.push(" AND (s.clv_minor < ")
                    .bind(int(v))
                    .push(" OR (s.clv_minor = ")
                    .bind(int(v))
                    .push(" AND s.customer_id > ")
                    .bind(text(id.to_string()))
                    .push("))");
            }
        }
    }
    sql.push(match order {
        ScoreOrder::ChurnDesc => " ORDER BY s.churn_probability DESC, s.customer_id",
        ScoreOrder::ClvDesc => " ORDER BY s.clv_minor DESC, s.customer_id",
    })
    .limit(u64::from(page.size) + 1);
    let mut items: Vec<CustomerScores> = conn
        .query_all_raw(sql.build())
        .await
        .db()?
        .iter()
        .map(scores_from_row)
        .collect::<Result<_>>()?;
    let more = items.len() > page.size as usize;
    items.truncate(page.size as usize);
    let next_after = if more {
        items.last().map(|s| encode_after(order, s))
    } else {
        None
    };
    Ok(Page { items, next_after })
}

async fn position(conn: &impl ConnectionTrait) -> Result<Option<ScorePosition>> {
    let sql = Sql::new(
        conn.get_database_backend(),
        "SELECT change_seq, responses_through FROM score_position WHERE id = 1",
    );
    conn.query_one_raw(sql.build())
        .await
        .db()?
        .map(|row| {
            Ok(ScorePosition {
                change_seq: get(&row, "change_seq")?,
                responses_through: get(&row, "responses_through")?,
            })
        })
        .transpose()
}

async fn responding(
    conn: &impl ConnectionTrait,
    after: DateTime<Utc>,
    until: DateTime<Utc>,
) -> Result<Vec<CustomerId>> {
    let mut sql = Sql::new(
        conn.get_database_backend(),
        "SELECT DISTINCT customer_id FROM survey_responses WHERE received_at > ",
    );
    sql.bind(time(after))
        .push(" AND received_at <= ")
        .bind(time(until));
    let found: BTreeSet<CustomerId> = conn
        .query_all_raw(sql.build())
        .await
        .db()?
        .iter()
        .map(|row| parse_id(&get::<String>(row, "customer_id")?))
        .collect::<Result<_>>()?;
    Ok(found.into_iter().collect())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use cxhub_domain::scoring::clv::{BgNbd, GammaGamma};
    use cxhub_domain::scoring::{ScoreConfig, fit_models, score_customer};

    use super::*;

    /// Scores of customers with every kind of input (orders in a fitted currency, answers, a
    /// comment, open cases, failed payments), as a recompute computes them.
    fn computed() -> Vec<CustomerScores> {
        let as_of: DateTime<Utc> = "2026-11-24T12:00:00Z".parse().unwrap();
        let days = |n: i64| as_of - Duration::days(n);
        let usd = Currency::parse("USD").unwrap();
        let facts: Vec<CustomerFacts> = (0..200)
            .map(|i: i64| CustomerFacts {
                customer: CustomerId::generate(),
                orders: (0..(i % 7))
                    .map(|k| LedgerOrder {
                        at: days(400 - (29 + i % 13) * k - i),
                        amount: Money::new(1_000 + (i * 7_919 + k * 104_729) % 9_000, usd),
                    })
                    .collect(),
                latest_nps: (i % 3 == 0).then(|| DatedAnswer {
                    value: i32::try_from(i % 11).unwrap(),
                    answered_at: days(i),
                }),
                latest_csat: (i % 4 == 1).then(|| DatedAnswer {
                    value: 2,
                    answered_at: days(2 * i),
                }),
                latest_comment: (i % 6 == 2).then(|| SurveyComment {
                    text: "não gostei, \"muito\" lento".to_owned(),
                    language: if i % 12 == 2 { "pt" } else { "" }.to_owned(),
                    answered_at: days(i),
                }),
                signals: (0..(i % 3))
                    .map(|k| Signal {
                        outcome: SIGNAL_OUTCOMES[usize::try_from(k).unwrap()].to_owned(),
                        at: days(k + 1),
                    })
                    .collect(),
            })
            .collect();
        // The thresholds of these customers, with the parameters published for CDNOW (a fit
        // over so few customers need not converge).
        let mut models = fit_models(&facts, as_of, 3);
        models[0].bg_nbd = Some(BgNbd {
            r: 0.243,
            alpha: 4.414,
            a: 0.793,
            b: 2.426,
        });
        models[0].gamma_gamma = Some(GammaGamma {
            p: 6.25,
            q: 3.74,
            gamma: 1_544.0,
        });
        facts
            .iter()
            .map(|f| score_customer(f, &models, as_of, &ScoreConfig::default()))
            .collect()
    }

    fn read_back(
        s: &CustomerScores,
        category: String,
        churn: String,
        clv: Option<String>,
        rfm: Option<String>,
    ) -> CustomerScores {
        scores_from_columns(StoredScores {
            customer: s.customer.to_string(),
            as_of: s.as_of,
            model_version: s.model_version.clone(),
            category_json: category,
            churn_json: churn,
            clv_json: clv,
            rfm_json: rfm,
        })
        .unwrap()
    }

    /// `store` with a live customer row for each of `customers`.
    async fn with_customers(store: &Store, customers: &[CustomerId]) {
        let backend = store.writer.get_database_backend();
        let at: DateTime<Utc> = "2026-11-01T00:00:00Z".parse().unwrap();
        for chunk in customers.chunks(500) {
            let mut sql = Sql::new(
                backend,
                "INSERT INTO customers (id, merged_into, given_name, family_name, \
                 addresses_json, preferred_language, consents_json, account_id, \
                 lifecycle_stage, provenance_json, revision, created_at, updated_at) VALUES ",
            );
            for (i, c) in chunk.iter().enumerate() {
                if i > 0 {
                    sql.push(", ");
                }
                sql.tuple([
                    text(c.to_string()),
                    Value::String(None),
                    text(""),
                    text(""),
                    text("[]"),
                    text(""),
                    text("[]"),
                    text(""),
                    Value::String(None),
                    text("{}"),
                    int(1),
                    time(at),
                    time(at),
                ]);
            }
            store.writer.execute_raw(sql.build()).await.unwrap();
        }
    }

    /// The stored `customer_scores` rows, by customer: each column as the type `score_row`
    /// binds it (timestamps as the stored text on SQLite), doubles as their bits.
    async fn stored_rows(store: &Store) -> BTreeMap<String, Vec<String>> {
        let backend = store.writer.get_database_backend();
        let rows = store
            .writer
            .query_all_raw(sea_orm::Statement::from_string(
                backend,
                format!(
                    "SELECT {} FROM customer_scores",
                    SCORE_COLUMNS_WRITTEN.join(", ")
                ),
            ))
            .await
            .unwrap();
        let computed = computed();
        let kinds = score_row(&computed[0], now()).unwrap();
        rows.iter()
            .map(|row| {
                let columns: Vec<String> = SCORE_COLUMNS_WRITTEN
                    .iter()
                    .zip(&kinds)
                    .map(|(c, kind)| match kind {
                        Value::Double(_) => format!(
                            "{:?}",
                            row.try_get::<Option<f64>>("", c).unwrap().map(f64::to_bits)
                        ),
                        Value::BigInt(_) => {
                            format!("{:?}", row.try_get::<Option<i64>>("", c).unwrap())
                        }
                        Value::Int(_) => {
                            format!("{:?}", row.try_get::<Option<i32>>("", c).unwrap())
                        }
                        Value::ChronoDateTimeUtc(_) if backend == sea_orm::DbBackend::Postgres => {
                            format!("{:?}", row.try_get::<Option<DateTime<Utc>>>("", c).unwrap())
                        }
                        _ => format!("{:?}", row.try_get::<Option<String>>("", c).unwrap()),
                    })
                    .collect();
                (columns[0].clone(), columns)
            })
            .collect()
    }

    /// The rows [`stored_rows`] reads after `scores` were written at `computed_at` (each value
    /// as bound to a single-row statement: the timestamps to the microsecond on PostgreSQL).
    fn expected_rows(
        backend: sea_orm::DbBackend,
        scores: &[CustomerScores],
        computed_at: DateTime<Utc>,
    ) -> BTreeMap<String, Vec<String>> {
        use chrono::SubsecRound;
        scores
            .iter()
            .map(|s| {
                let columns: Vec<String> = score_row(s, computed_at)
                    .unwrap()
                    .into_iter()
                    .map(|value| match value {
                        Value::Double(d) => format!("{:?}", d.map(f64::to_bits)),
                        Value::BigInt(i) => format!("{i:?}"),
                        Value::Int(i) => format!("{i:?}"),
                        Value::ChronoDateTimeUtc(t) if backend == sea_orm::DbBackend::Postgres => {
                            format!("{:?}", t.map(|t| t.trunc_subsecs(6)))
                        }
                        Value::ChronoDateTimeUtc(t) => format!(
                            "{:?}",
                            t.map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, false))
                        ),
                        Value::String(v) => format!("{v:?}"),
                        other => panic!("unexpected {other:?}"),
                    })
                    .collect();
                (columns[0].clone(), columns)
            })
            .collect()
    }

    /// Scores with and without CLV and RFM, with doubles that decimal text does not always
    /// bring back (subnormal, near 1, `0.1 + 0.2`) and an `as_of` with nanoseconds, written by
    /// `save_scores`, then written again with the CLV and RFM of every other customer gone
    /// and of the others back: every column reads back as the value bound for it, NULLs as
    /// NULL, doubles to the bit.
    async fn scores_read_back_column_by_column(store: Store) {
        use chrono::SubsecRound;
        let backend = store.writer.get_database_backend();
        let mut scores = computed();
        let doubles = [
            0.1 + 0.2,
            5e-324,
            2.225_073_858_507_201e-308,
            1.0 - f64::EPSILON / 2.0,
            0.953_938_788_629_862_5,
            1e-300,
            f64::MAX,
        ];
        let odd_as_of: DateTime<Utc> = "2026-11-24T12:00:00.123456789Z".parse().unwrap();
        for (i, s) in scores.iter_mut().enumerate() {
            s.churn.probability = doubles[i % doubles.len()];
            if let Some(clv) = s.clv.as_mut() {
                clv.p_alive = doubles[(i + 1) % doubles.len()];
                clv.expected_purchases = doubles[(i + 2) % doubles.len()];
            }
            if i % 5 == 0 {
                s.as_of = odd_as_of;
            }
        }
        assert!(scores.iter().any(|s| s.clv.is_none() && s.rfm.is_none()));
        assert!(scores.iter().any(|s| s.clv.is_some() && s.rfm.is_some()));
        let customers: Vec<CustomerId> = scores.iter().map(|s| s.customer).collect();
        with_customers(&store, &customers).await;

        let computed_at_of = |rows: &BTreeMap<String, Vec<String>>| -> DateTime<Utc> {
            let text = &rows.values().next().unwrap()[2];
            // `Some("…")` on SQLite, `Some(…)` on PostgreSQL.
            let inner = text
                .trim_start_matches("Some(")
                .trim_end_matches(')')
                .trim_matches('"');
            inner.parse().unwrap()
        };
        assert_eq!(store.save_scores(scores.clone()).await.unwrap(), 200);
        let stored = stored_rows(&store).await;
        let at = computed_at_of(&stored);
        assert_eq!(stored, expected_rows(backend, &scores, at));

        // Again: the CLV and RFM of every other customer gone, the others' back.
        let donor = scores
            .iter()
            .find(|s| s.clv.is_some() && s.rfm.is_some())
            .unwrap()
            .clone();
        for (i, s) in scores.iter_mut().enumerate() {
            if i % 2 == 0 {
                s.clv = None;
                s.rfm = None;
            } else {
                s.clv = s.clv.take().or(donor.clv.clone());
                s.rfm = s.rfm.take().or(donor.rfm.clone());
            }
            s.as_of = s.as_of.trunc_subsecs(3);
        }
        assert_eq!(store.save_scores(scores.clone()).await.unwrap(), 200);
        let stored = stored_rows(&store).await;
        let at = computed_at_of(&stored);
        assert_eq!(stored, expected_rows(backend, &scores, at));
        assert!(stored.values().any(|row| row[11] == "None"));
        assert!(stored.values().any(|row| row[11] != "None"));

        // One customer merged into another; then the first, the merged and the last customer
        // alone (ids spread over the others), then everyone (a run of consecutive ids): the
        // merged customer's row goes, the others are written.
        let mut by_id: Vec<&CustomerScores> = scores.iter().collect();
        by_id.sort_by_key(|s| s.customer.to_string());
        let (first, merged, last) = (by_id[0].clone(), by_id[100].clone(), by_id[199].clone());
        let mut sql = Sql::new(backend, "UPDATE customers SET merged_into = ");
        sql.bind(text(last.customer.to_string()))
            .push(" WHERE id = ")
            .bind(text(merged.customer.to_string()));
        store.writer.execute_raw(sql.build()).await.unwrap();
        let spread = vec![first.clone(), merged.clone(), last.clone()];
        assert_eq!(store.save_scores(spread.clone()).await.unwrap(), 2);
        let stored = stored_rows(&store).await;
        assert_eq!(stored.len(), 199);
        let at = computed_at_of(&BTreeMap::from([(
            String::new(),
            stored[&format!("{:?}", Some(first.customer.to_string()))].clone(),
        )]));
        let expected = expected_rows(backend, &[first, last], at);
        for (id, row) in expected {
            assert_eq!(stored[&id], row);
        }
        assert_eq!(store.save_scores(scores.clone()).await.unwrap(), 199);
        let stored = stored_rows(&store).await;
        let at = computed_at_of(&stored);
        let mut expected = expected_rows(backend, &scores, at);
        expected.remove(&format!("{:?}", Some(merged.customer.to_string())));
        assert_eq!(stored, expected);
    }

    /// Runs `test` on a migrated store in a fresh SQLite file.
    async fn on_sqlite<F: std::future::Future<Output = ()>>(test: impl FnOnce(Store) -> F) {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("scores.db").display());
        let store = Store::connect(&url, crate::StoreOptions::default())
            .await
            .unwrap();
        store.migrate().await.unwrap();
        test(store).await;
    }

    /// Runs `test` on a migrated store in a fresh schema of `CXHUB_TEST_POSTGRES_URL`, dropped
    /// afterwards whether the test passed or not.
    async fn on_postgres<F>(test: impl FnOnce(Store) -> F)
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        let url = std::env::var("CXHUB_TEST_POSTGRES_URL")
            .expect("CXHUB_TEST_POSTGRES_URL is not set: this test needs a PostgreSQL database");
        let schema = format!("cxhub_test_{}", uuid::Uuid::now_v7().simple());
        let store = Store::connect(
            &url,
            crate::StoreOptions {
                schema: Some(schema.clone()),
                max_connections: Some(2),
            },
        )
        .await
        .unwrap();
        store.migrate().await.unwrap();
        let outcome = tokio::spawn(test(store)).await;
        crate::drop_postgres_schema(&url, &schema).await.unwrap();
        if let Err(err) = outcome {
            std::panic::resume_unwind(err.into_panic());
        }
    }

    #[tokio::test]
    async fn scores_read_back_column_by_column_on_sqlite() {
        on_sqlite(scores_read_back_column_by_column).await;
    }

    #[tokio::test]
    #[ignore = "needs PostgreSQL: set CXHUB_TEST_POSTGRES_URL and pass --include-ignored"]
    async fn scores_read_back_column_by_column_on_postgres() {
        on_postgres(scores_read_back_column_by_column).await;
    }

    /// The facts read for a batch: only live customers of the batch, each with exactly its
    /// placed orders up to the as-of time (every currency, sub-second times kept, in time
    /// order), none for a customer without orders; and the pages of live customers.
    async fn facts_hold_the_live_customers_and_their_placed_orders(store: Store) {
        let mut ids: Vec<CustomerId> = (0..4).map(|_| CustomerId::generate()).collect();
        ids.sort();
        let (buyer, idle, absorbed, outside) = (ids[0], ids[1], ids[2], ids[3]);
        with_customers(&store, &ids).await;
        let backend = store.writer.get_database_backend();
        let mut merge = Sql::new(backend, "UPDATE customers SET merged_into = ");
        merge
            .bind(text(buyer.to_string()))
            .push(" WHERE id = ")
            .bind(text(absorbed.to_string()));
        store.writer.execute_raw(merge.build()).await.unwrap();
        let as_of: DateTime<Utc> = "2026-11-24T12:00:00Z".parse().unwrap();
        let at = |s: &str| -> DateTime<Utc> { s.parse().unwrap() };
        let (usd, eur) = (
            Currency::parse("USD").unwrap(),
            Currency::parse("EUR").unwrap(),
        );
        // (customer, record, kind, status, minor, currency, time)
        let rows = [
            (
                buyer,
                "o1",
                "order",
                "placed",
                1_250,
                "USD",
                "2026-03-01T10:00:00.123456Z",
            ),
            (
                buyer,
                "o2",
                "order",
                "placed",
                -7,
                "EUR",
                "2025-12-31T23:59:59Z",
            ),
            (
                buyer,
                "o3",
                "order",
                "placed",
                999,
                "USD",
                "2026-11-24T12:00:00Z",
            ),
            (
                buyer,
                "o4",
                "order",
                "placed",
                5,
                "USD",
                "2026-11-24T12:00:00.000001Z",
            ),
            (
                buyer,
                "o5",
                "order",
                "cancelled",
                5,
                "USD",
                "2026-01-01T00:00:00Z",
            ),
            (
                buyer,
                "r1",
                "refund",
                "placed",
                5,
                "USD",
                "2026-01-01T00:00:00Z",
            ),
            (
                absorbed,
                "o6",
                "order",
                "placed",
                5,
                "USD",
                "2026-01-01T00:00:00Z",
            ),
            (
                outside,
                "o7",
                "order",
                "placed",
                5,
                "USD",
                "2026-01-01T00:00:00Z",
            ),
        ];
        for (customer, record, kind, status, minor, currency, time_text) in rows {
            let mut sql = Sql::new(
                backend,
                "INSERT INTO transactions (source, record_type, record_id, customer_id, kind, \
                 amount_minor, currency_code, occurred_at, status, due_at) VALUES ",
            );
            sql.tuple([
                text("erp"),
                text("transaction"),
                text(record),
                text(customer.to_string()),
                text(kind),
                int(minor),
                text(currency),
                time(at(time_text)),
                text(status),
                Value::ChronoDateTimeUtc(None),
            ]);
            store.writer.execute_raw(sql.build()).await.unwrap();
        }

        let facts = facts(&store.writer, &[idle, absorbed, buyer], as_of, 30)
            .await
            .unwrap();
        let order = |time_text: &str, minor: i64, currency: Currency| LedgerOrder {
            at: at(time_text),
            amount: Money::new(minor, currency),
        };
        let read: Vec<(CustomerId, Vec<LedgerOrder>)> =
            facts.into_iter().map(|f| (f.customer, f.orders)).collect();
        assert_eq!(
            read,
            vec![
                (
                    buyer,
                    vec![
                        order("2025-12-31T23:59:59Z", -7, eur),
                        order("2026-03-01T10:00:00.123456Z", 1_250, usd),
                        order("2026-11-24T12:00:00Z", 999, usd),
                    ]
                ),
                (idle, Vec::new()),
            ]
        );

        let all = live_customers(&store.writer, None, 10).await.unwrap();
        assert_eq!(all, vec![buyer, idle, outside]);
        let second = live_customers(&store.writer, Some(buyer), 1).await.unwrap();
        assert_eq!(second, vec![idle]);
        assert!(
            live_customers(&store.writer, Some(outside), 10)
                .await
                .unwrap()
                .is_empty()
        );
        let live = live_among(&store.writer, &[outside, absorbed, idle])
            .await
            .unwrap();
        assert_eq!(live, BTreeSet::from([idle, outside]));
    }

    #[tokio::test]
    async fn facts_hold_the_live_customers_and_their_placed_orders_on_sqlite() {
        on_sqlite(facts_hold_the_live_customers_and_their_placed_orders).await;
    }

    #[tokio::test]
    #[ignore = "needs PostgreSQL: set CXHUB_TEST_POSTGRES_URL and pass --include-ignored"]
    async fn facts_hold_the_live_customers_and_their_placed_orders_on_postgres() {
        on_postgres(facts_hold_the_live_customers_and_their_placed_orders).await;
    }

    #[test]
    fn scores_read_back_from_the_compact_and_the_earlier_object_form() {
        let all = computed();
        assert!(all.iter().any(|s| s.clv.is_some() && s.rfm.is_some()));
        assert!(all.iter().any(|s| s.clv.is_none()));
        assert!(
            all.iter()
                .any(|s| s.category.inputs.latest_comment.is_some())
        );
        assert!(all.iter().any(|s| s.churn.contributions.len() > 2));
        for s in &all {
            let compact = read_back(
                s,
                compact::category(&s.category).unwrap(),
                compact::churn(&s.churn).unwrap(),
                s.clv.as_ref().map(|c| compact::clv(c).unwrap()),
                s.rfm.as_ref().map(|r| compact::rfm(r).unwrap()),
            );
            assert_eq!(&compact, s);
            // As a hub before the compact form wrote them: the serde objects.
            let object = read_back(
                s,
                json(&s.category).unwrap(),
                json(&s.churn).unwrap(),
                s.clv.as_ref().map(|c| json(c).unwrap()),
                s.rfm.as_ref().map(|r| json(r).unwrap()),
            );
            assert_eq!(&object, s);
        }
    }

    #[test]
    fn a_row_written_by_an_earlier_hub_reads_as_it_did() {
        // Copied from a `customer_scores` row written before the compact form.
        let s = read_back(
            &computed()[0],
            r#"{"category":"Neutral","rule":"no_signal","inputs":{},"explanation":"no NPS in 180 days, no CSAT in 90 days and no complaint: neutral by default"}"#.to_owned(),
            r#"{"probability":0.9539387886298625,"band":"high","intercept":-2.0,"contributions":[{"factor":"overdue","contribution":5.203915107791966,"reason":"no purchase in 10919 days vs usual 60 (one purchase day only: assumed)"},{"factor":"frequency","contribution":-0.17328679513998632,"reason":"1 purchase day"}],"inputs":{"days_since_last_purchase":10919,"purchase_occasions":1,"spend_recent_minor":0,"spend_before_minor":0,"category":"Neutral"},"model_version":"churn-logit-default-1"}"#.to_owned(),
            Some(r#"{"currency":"USD","horizon_weeks":52.0,"annual_discount_rate":0.1,"fit_version":2,"summary":{"frequency":0.0,"recency":0.0,"age":1559.857142857143,"monetary":0.0},"p_alive":1.0,"expected_purchases":0.003755991477716973,"expected_spend_minor":3613,"value_minor":13}"#.to_owned()),
            Some(r#"{"input":{"recency_days":10919,"frequency":1,"monetary":1177.0},"r":1,"f":1,"m":1,"segment":"Lost","segment_rule":"R 1 and F 1–2","reasons":["R 1: last purchase 10919 days ago, at least 10888","F 1: 1 purchases, at most 1","M 1: spend 1177, at most 1536"],"fit_version":2}"#.to_owned()),
        );
        assert_eq!(
            s.category.explanation,
            "no NPS in 180 days, no CSAT in 90 days and no complaint: neutral by default"
        );
        assert_eq!(s.churn.inputs.category_explanation, s.category.explanation);
        assert_eq!(s.churn.probability, 0.9539387886298625);
        assert_eq!(s.churn.contributions[1].contribution, -0.17328679513998632);
        assert_eq!(s.churn.inputs.days_since_last_purchase, Some(10919));
        assert_eq!(s.churn.inputs.usual_interval_days, None);
        let clv = s.clv.as_ref().unwrap();
        assert_eq!(
            (clv.fit_version, clv.summary.age, clv.value_minor),
            (2, 1559.857142857143, 13)
        );
        let rfm = s.rfm.as_ref().unwrap();
        assert_eq!(rfm.reasons[2], "M 1: spend 1177, at most 1536");
        // Written again in the compact form, it reads back the same, in fewer bytes.
        let churn = compact::churn(&s.churn).unwrap();
        assert!(
            churn.len() * 2 < json(&s.churn).unwrap().len() + 100,
            "{churn}"
        );
        let again = read_back(
            &s,
            compact::category(&s.category).unwrap(),
            churn,
            s.clv.as_ref().map(|c| compact::clv(c).unwrap()),
            s.rfm.as_ref().map(|r| compact::rfm(r).unwrap()),
        );
        assert_eq!(again, s);
    }
}
