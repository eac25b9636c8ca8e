//! Reads of the unified customer beyond `GetCustomer` (see
//! [`cxhub_domain::customer_query::CustomerQueryRepo`]), each in one read snapshot, and the
//! two things ingestion maintains for them: the name keys of each profile
//! ([`index_names`], called where profiles are written) and the state of support cases and
//! subscription events ([`write_record_facts`], called where records are written).
//!
//! Every query is an index range scan (the indexes are named in `docs/data-model.md`):
//! - prefix search: `customer_name_keys` primary key (`key`, `customer_id`) for names and
//!   `customer_identities` primary key (`kind`, `value`, `customer_id`) for e-mails and phones,
//!   scanned from the prefix (or the page token) to [`prefix_upper_bound`], joined to
//!   `customers` by id; a customer matching under several keys is listed at its smallest only
//!   (checked on `customer_name_keys_customer_idx` / `customer_identities_customer_cover_idx`);
//! - stage-only search: `customers_lifecycle_idx` (`lifecycle_stage`, `id`);
//! - interactions and transactions: `interactions_customer_cover_idx` and
//!   `transactions_customer_cover_idx` (`customer_id`, `occurred_at`, `source`, `record_type`,
//!   `record_id`, then every other column read), newest first, keyset on (`occurred_at`,
//!   `source`, `record_type`, `record_id`);
//! - a customer's identities and records: `customer_identities_customer_cover_idx`
//!   (`customer_id`, `kind`, `value`) and `feed_records_customer_cover_idx` (`customer_id`,
//!   `record_type`, `source`, `record_id`, `source_customer_id`); cases and subscriptions then
//!   join the primary keys of `support_cases` and `subscription_events`.
//!
//! On SQLite the `*_customer_cover_idx` indexes hold every column these reads take of a row,
//! so a read by customer visits no table row but its own (see the 360's plan test). PostgreSQL
//! keeps the narrow `customer_identities_customer_idx`, `feed_records_customer_idx`,
//! `interactions_customer_time_idx` and `transactions_customer_time_idx` (migration
//! `m20261125_000021_customer_cover_indexes` says why).

use chrono::{DateTime, Duration, Utc};
use cxhub_domain::customer_query::{
    Customer360, CustomerQueryRepo, CustomerSummary, FAILED_PAYMENT_WINDOW_DAYS, InteractionView,
    LookupResult, RowKey, SearchBy, SearchFilter, SubscriptionEventRow, SupportCaseView,
    TimeCursor, TimeRange, TransactionGroup, TransactionSummary, TransactionView,
    active_subscriptions, decode_cursor, encode_cursor, group_by_source, name_keys,
    prefix_upper_bound,
};
use cxhub_domain::feed::{IngestItem, Profile};
use cxhub_domain::identifier::{CustomerId, Identifier};
use cxhub_domain::money::{Currency, Money};
use cxhub_domain::page::{Page, PageRequest};
use cxhub_domain::repo::{CustomerView, HeldIdentifier};
use cxhub_domain::scoring::category::category_text;
use cxhub_domain::{Error, Result};
use sea_orm::{ConnectionTrait, DatabaseTransaction, DbBackend};

use crate::IN_LIST_CHUNK;
use crate::Store;
use crate::customers::{MAX_REDIRECTS, live};
use crate::error::{DbResultExt, corrupt};
use crate::lite::{Cell, Cols, Read, Row};
use crate::sql::{Inserts, Pg, Sql, col, nullable, text, text_opt, time, time_opt};
use crate::store::snapshot;

// ------------------------------------------------------------------------------------------------
// Maintained at ingest

/// Rewrites the name keys of the customers whose profiles `rows` writes (see
/// [`name_keys`]). Called with every profile upsert, in its transaction; `fresh` says the
/// customers were created in it, so there are no old keys to delete.
pub(crate) async fn index_names(
    txn: &DatabaseTransaction,
    inserts: &mut Inserts<'_, DatabaseTransaction>,
    rows: &[(String, Profile)],
    fresh: bool,
) -> Result<()> {
    if rows.is_empty() {
        return Ok(());
    }
    let backend = txn.get_database_backend();
    for chunk in rows.chunks(IN_LIST_CHUNK).filter(|_| !fresh) {
        let mut sql = Sql::new(backend, "DELETE FROM customer_name_keys WHERE customer_id");
        sql.in_texts(chunk.iter().map(|(id, _)| id.clone()));
        txn.execute_raw(sql.build()).await.db()?;
    }
    let mut keys = Vec::new();
    for (id, profile) in rows {
        for key in name_keys(&profile.given_name, &profile.family_name) {
            keys.push(vec![text(key), text(id.as_str())]);
        }
    }
    inserts
        .add(
            "customer_name_keys",
            &[col("key", Pg::Text), col("customer_id", Pg::Text)],
            keys,
            "ON CONFLICT (key, customer_id) DO NOTHING",
        )
        .await
        .db()
}

/// Stores the state of the support cases and subscription events among the records written
/// (`records`: positions in `items`, the last write of each key). Called where records are
/// written, in the same transaction.
pub(crate) async fn write_record_facts(
    inserts: &mut Inserts<'_, DatabaseTransaction>,
    items: &[IngestItem],
    records: &[(usize, CustomerId)],
) -> Result<()> {
    let mut cases = Vec::new();
    let mut events = Vec::new();
    for (pos, _) in records {
        let Some(item) = items.get(*pos) else {
            continue;
        };
        let key = &item.key;
        if let Some(c) = &item.derived.support_case {
            cases.push(vec![
                text(key.source.as_str()),
                text(key.record_id.as_str()),
                text(c.status.as_str()),
                text(c.priority.as_str()),
                text(c.category.as_str()),
                text(c.channel.as_str()),
                time(c.opened_at),
                time_opt(c.closed_at),
            ]);
        }
        if let Some(e) = &item.derived.subscription {
            events.push(vec![
                text(key.source.as_str()),
                text(key.record_id.as_str()),
                text(e.subscription_id.as_str()),
                text(e.kind.as_str()),
                time(e.occurred_at),
                text(e.plan.as_str()),
                sea_orm::Value::BigInt(e.recurring_amount.map(|m| m.amount_minor)),
                text_opt(e.recurring_amount.map(|m| m.currency.code())),
            ]);
        }
    }
    inserts
        .add(
            "support_cases",
            &[
                col("source", Pg::Text),
                col("record_id", Pg::Text),
                col("status", Pg::Text),
                col("priority", Pg::Text),
                col("category", Pg::Text),
                col("channel", Pg::Text),
                col("opened_at", Pg::Time),
                nullable("closed_at", Pg::Time),
            ],
            cases,
            "ON CONFLICT (source, record_id) DO UPDATE SET status = excluded.status, \
         priority = excluded.priority, category = excluded.category, \
         channel = excluded.channel, opened_at = excluded.opened_at, \
         closed_at = excluded.closed_at",
        )
        .await
        .db()?;
    inserts
        .add(
            "subscription_events",
            &[
                col("source", Pg::Text),
                col("record_id", Pg::Text),
                col("subscription_id", Pg::Text),
                col("kind", Pg::Text),
                col("occurred_at", Pg::Time),
                col("plan", Pg::Text),
                nullable("amount_minor", Pg::Int),
                nullable("currency_code", Pg::Text),
            ],
            events,
            "ON CONFLICT (source, record_id) DO UPDATE SET \
         subscription_id = excluded.subscription_id, kind = excluded.kind, \
         occurred_at = excluded.occurred_at, plan = excluded.plan, \
         amount_minor = excluded.amount_minor, currency_code = excluded.currency_code",
        )
        .await
        .db()
}

// ------------------------------------------------------------------------------------------------
// Batch get and lookup

/// Each id read (following redirects), `None` for an unknown one.
pub(crate) async fn batch_get(
    conn: &impl Read,
    ids: &[CustomerId],
) -> Result<Vec<Option<CustomerView>>> {
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        match read_view(conn, *id).await {
            Ok(view) => out.push(Some(view)),
            Err(Error::NotFound { .. }) => out.push(None),
            Err(err) => return Err(err),
        }
    }
    Ok(out)
}

/// The live customers holding `identifier`, in one statement: each holder's row with its
/// record count and identities, and how many hold the identifier or dispute it.
pub(crate) async fn lookup(conn: &impl Read, identifier: &Identifier) -> Result<LookupResult> {
    let backend = conn.backend();
    let mut sql = Sql::new(
        backend,
        "SELECT (SELECT COUNT(*) FROM identity_disputes d WHERE d.kind = h.kind AND d.value = h.value) \
         AS lookup_disputes, ",
    );
    customer_columns(&mut sql, backend);
    sql.push(
        " FROM customer_identities h JOIN customers c ON c.id = h.customer_id WHERE h.kind = ",
    )
    .bind(text(identifier.kind().as_str()))
    .push(" AND h.value = ")
    .bind(text(identifier.value()))
    .push(" ORDER BY c.id");
    let rows = conn.all(sql.build()).await?;
    if rows.is_empty() {
        let what = match identifier {
            Identifier::SourceId { .. } => "holding that source customer id",
            Identifier::Email(_) => "holding that e-mail address",
            Identifier::Phone(_) => "holding that phone number",
        };
        return Err(Error::not_found("customer", what));
    }
    let mut disputed = false;
    let mut customers: Vec<CustomerView> = Vec::with_capacity(rows.len());
    for row in &rows {
        let disputes: i64 = get(row, "lookup_disputes")?;
        disputed |= disputes > 0;
        let id = parse_customer(&get::<String>(row, "id")?)?;
        let merged_into: Option<String> = get(row, "merged_into")?;
        // Merges move identities to the survivor, so holders are live; follow a redirect all
        // the same rather than answer a merged profile.
        let view = match merged_into {
            None => customer_view(row, id, id)?,
            Some(_) => read_view(conn, id).await?,
        };
        if !customers.iter().any(|c| c.id == view.id) {
            customers.push(view);
        }
    }
    customers.sort_by_key(|c| c.id);
    Ok(LookupResult {
        identifier: identifier.clone(),
        linking: rows.len() <= 1 && !disputed,
        customers,
    })
}

// ------------------------------------------------------------------------------------------------
// One statement per read
//
// A read of one customer is one statement whose lists (identities, sources, interactions,
// cases…) come back as JSON arrays built by correlated subqueries. On SQLite every statement
// is a round trip to the connection's worker thread (two thread hand-offs, plus one per row
// returned), on PostgreSQL one to the server; a statement is also its own consistent snapshot
// on both, so these reads need no transaction either.

/// Opens a correlated subquery giving the rows of the derived table that follows (a `SELECT`
/// of `columns`) as one JSON array of arrays, `[]` when there are none; closed by
/// [`close_json_rows`].
fn open_json_rows(sql: &mut Sql, backend: DbBackend, columns: &str) {
    if backend == DbBackend::Postgres {
        sql.push("(SELECT COALESCE(json_agg(json_build_array(")
            .push(columns)
            .push(")), '[]')::text FROM (");
    } else {
        sql.push("(SELECT COALESCE(json_group_array(json_array(")
            .push(columns)
            .push(")), '[]') FROM (");
    }
}

fn close_json_rows(sql: &mut Sql, name: &str) {
    sql.push(") AS t) AS ").push(name);
}

/// The columns of a customer read over `customers c`: the row, its record count and its
/// identities with how many customers hold and dispute each.
fn customer_columns(sql: &mut Sql, backend: DbBackend) {
    sql.push(
        "c.*, (SELECT COUNT(*) FROM feed_records f WHERE f.customer_id = c.id) AS record_count, ",
    );
    open_json_rows(sql, backend, "kind, value, holders, disputes");
    sql.push(
        "SELECT i.kind, i.value, \
         (SELECT COUNT(*) FROM customer_identities o WHERE o.kind = i.kind AND o.value = i.value) AS holders, \
         (SELECT COUNT(*) FROM identity_disputes d WHERE d.kind = i.kind AND d.value = i.value) AS disputes \
         FROM customer_identities i WHERE i.customer_id = c.id",
    );
    close_json_rows(sql, "identities_json");
}

/// Runs `statement` (one row of `customers c` for the id it is given) for `requested`, then for
/// whatever that was merged into, until a live customer answers. Most ids are live: one
/// statement; each hop sees one consistent state.
async fn live_row(
    conn: &impl Read,
    requested: CustomerId,
    statement: impl Fn(&str) -> Sql,
) -> Result<(CustomerId, Row)> {
    let mut current = requested;
    for _ in 0..MAX_REDIRECTS {
        let row = conn
            .one(statement(&current.to_string()).build())
            .await?
            .ok_or_else(|| Error::not_found("customer", requested.to_string()))?;
        let merged_into: Option<String> = get(&row, "merged_into")?;
        match merged_into {
            None => return Ok((current, row)),
            Some(next) => current = parse_customer(&next)?,
        }
    }
    Err(corrupt(format!(
        "redirect chain from customer {requested} too long"
    )))
}

/// Reads a customer, following redirects: one statement per hop.
pub(crate) async fn read_view(conn: &impl Read, requested: CustomerId) -> Result<CustomerView> {
    let backend = conn.backend();
    let (id, row) = live_row(conn, requested, |id| {
        let mut sql = Sql::new(backend, "SELECT ");
        customer_columns(&mut sql, backend);
        sql.push(" FROM customers c WHERE c.id = ").bind(text(id));
        sql
    })
    .await?;
    customer_view(&row, id, requested)
}

/// The view of a row selected with [`customer_columns`].
fn customer_view(row: &impl Cols, id: CustomerId, requested: CustomerId) -> Result<CustomerView> {
    let addresses: String = get(row, "addresses_json")?;
    let consents: String = get(row, "consents_json")?;
    let provenance: String = get(row, "provenance_json")?;
    let lifecycle: Option<String> = get(row, "lifecycle_stage")?;
    let profile = Profile {
        given_name: get(row, "given_name")?,
        family_name: get(row, "family_name")?,
        addresses: serde_json::from_str(&addresses).map_err(corrupt)?,
        preferred_language: get(row, "preferred_language")?,
        consents: serde_json::from_str(&consents).map_err(corrupt)?,
        account_id: get(row, "account_id")?,
        lifecycle_stage: lifecycle.map(|s| s.parse()).transpose().map_err(corrupt)?,
        provenance: serde_json::from_str(&provenance).map_err(corrupt)?,
    };
    let mut identifiers = Vec::new();
    for cells in json_rows(row, "identities_json")? {
        let mut c = Cells::new(cells, 4)?;
        let kind = c.text()?;
        let value = c.text()?;
        let holders = c.int()?;
        let disputes = c.int()?;
        identifiers.push(HeldIdentifier {
            identifier: Identifier::from_stored(&kind, &value)
                .ok_or_else(|| corrupt(format!("stored identifier {kind} {value}")))?,
            linking: holders <= 1 && disputes == 0,
        });
    }
    identifiers.sort_by(|a, b| a.identifier.cmp(&b.identifier));
    Ok(CustomerView {
        id,
        requested,
        created_at: get(row, "created_at")?,
        updated_at: get(row, "updated_at")?,
        profile,
        identifiers,
        record_count: get(row, "record_count")?,
    })
}

/// The JSON array of arrays in `column` (see [`open_json_rows`]).
pub(crate) fn json_rows(row: &impl Cols, column: &str) -> Result<Vec<Vec<serde_json::Value>>> {
    let text: String = get(row, column)?;
    serde_json::from_str(&text).map_err(corrupt)
}

/// The cells of one JSON row, read in order.
pub(crate) struct Cells(std::vec::IntoIter<serde_json::Value>);

impl Cells {
    pub(crate) fn new(cells: Vec<serde_json::Value>, width: usize) -> Result<Self> {
        if cells.len() != width {
            return Err(corrupt(format!(
                "a JSON row of {} cells where {width} were selected",
                cells.len()
            )));
        }
        Ok(Cells(cells.into_iter()))
    }

    fn next(&mut self) -> serde_json::Value {
        self.0.next().unwrap_or(serde_json::Value::Null)
    }

    pub(crate) fn text_opt(&mut self) -> Result<Option<String>> {
        match self.next() {
            serde_json::Value::Null => Ok(None),
            serde_json::Value::String(s) => Ok(Some(s)),
            other => Err(corrupt(format!("expected text, found {other}"))),
        }
    }

    pub(crate) fn text(&mut self) -> Result<String> {
        self.text_opt()?
            .ok_or_else(|| corrupt("expected text, found null"))
    }

    fn int_opt(&mut self) -> Result<Option<i64>> {
        match self.next() {
            serde_json::Value::Null => Ok(None),
            serde_json::Value::Number(n) => n
                .as_i64()
                .map(Some)
                .ok_or_else(|| corrupt(format!("expected an integer, found {n}"))),
            other => Err(corrupt(format!("expected an integer, found {other}"))),
        }
    }

    pub(crate) fn int(&mut self) -> Result<i64> {
        self.int_opt()?
            .ok_or_else(|| corrupt("expected an integer, found null"))
    }

    /// A time: RFC 3339 text on both backends (how sqlx stores times in SQLite, how
    /// PostgreSQL writes a `timestamptz` in JSON).
    pub(crate) fn time(&mut self) -> Result<DateTime<Utc>> {
        let text = self.text()?;
        DateTime::parse_from_rfc3339(&text)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|err| corrupt(format!("stored time {text}: {err}")))
    }

    fn parsed<T: std::str::FromStr>(&mut self) -> Result<T>
    where
        T::Err: std::fmt::Display,
    {
        self.text()?.parse().map_err(corrupt)
    }
}

// ------------------------------------------------------------------------------------------------
// Search

/// Live customers matching `filter`, after `page.after` (JSON `[key, customer id]`).
pub(crate) async fn search(
    conn: &impl Read,
    filter: &SearchFilter,
    page: &PageRequest,
) -> Result<Page<CustomerSummary>> {
    let after: Option<(String, String)> = match &page.after {
        None => None,
        Some(a) => Some(serde_json::from_str(a).map_err(|_| {
            Error::invalid_field("page_token", "not a token issued by this service")
        })?),
    };
    let sql = search_statement(conn.backend(), filter, after, page.size);
    let rows = conn.all(sql.build()).await?;
    let mut items = Vec::with_capacity(rows.len());
    for row in &rows {
        let id: String = get(row, "customer_id")?;
        let stage: Option<String> = get(row, "lifecycle_stage")?;
        items.push(CustomerSummary {
            id: parse_customer(&id)?,
            given_name: get(row, "given_name")?,
            family_name: get(row, "family_name")?,
            lifecycle_stage: stage.map(|s| s.parse()).transpose().map_err(corrupt)?,
            matched: get(row, "matched")?,
            updated_at: get(row, "updated_at")?,
        });
    }
    Ok(finish_page(items, page.size, |last| {
        serde_json::to_string(&(&last.matched, last.id.to_string())).unwrap_or_default()
    }))
}

/// The statement of one search page (`size + 1` rows, to know whether more follow).
fn search_statement(
    backend: sea_orm::DbBackend,
    filter: &SearchFilter,
    after: Option<(String, String)>,
    size: u32,
) -> Sql {
    const COLUMNS: &str =
        "c.id AS customer_id, c.given_name, c.family_name, c.lifecycle_stage, c.updated_at";
    let (table, key, kind, prefix) = match &filter.by {
        SearchBy::Name(p) => ("customer_name_keys", "key", None, p),
        SearchBy::Email(p) => ("customer_identities", "value", Some("email"), p),
        SearchBy::Phone(p) => ("customer_identities", "value", Some("phone"), p),
        SearchBy::Any => {
            let mut sql = Sql::new(
                backend,
                &format!(
                    "SELECT '' AS matched, {COLUMNS} FROM customers c WHERE c.merged_into IS NULL"
                ),
            );
            if let Some(stage) = filter.lifecycle_stage {
                sql.push(" AND c.lifecycle_stage = ")
                    .bind(text(stage.as_str()));
            }
            score_filter(&mut sql, filter);
            if let Some((_, id)) = after {
                sql.push(" AND c.id > ").bind(text(id));
            }
            sql.push(" ORDER BY c.id").limit(u64::from(size) + 1);
            return sql;
        }
    };
    // CROSS JOIN keeps the key table as the outer loop on SQLite (PostgreSQL plans it as an
    // inner join): the scan follows the key index in order and stops at the limit.
    let mut sql = Sql::new(
        backend,
        &format!(
            "SELECT k.{key} AS matched, {COLUMNS} FROM {table} k CROSS JOIN customers c \
             WHERE c.id = k.customer_id AND c.merged_into IS NULL"
        ),
    );
    if let Some(kind) = kind {
        sql.push(" AND k.kind = ").bind(text(kind));
    }
    let lower = after.as_ref().map_or(prefix.as_str(), |(k, _)| k.as_str());
    sql.push(&format!(" AND k.{key} >= ")).bind(text(lower));
    if let Some(upper) = prefix_upper_bound(prefix) {
        sql.push(&format!(" AND k.{key} < ")).bind(text(upper));
    }
    if let Some((after_key, after_id)) = &after {
        sql.push(&format!(" AND (k.{key} > "))
            .bind(text(after_key.as_str()))
            .push(" OR k.customer_id > ")
            .bind(text(after_id.as_str()))
            .push(")");
    }
    if let Some(stage) = filter.lifecycle_stage {
        sql.push(" AND c.lifecycle_stage = ")
            .bind(text(stage.as_str()));
    }
    score_filter(&mut sql, filter);
    // Listed once: at the smallest of its keys within the prefix.
    sql.push(&format!(
        " AND NOT EXISTS (SELECT 1 FROM {table} o WHERE o.customer_id = k.customer_id"
    ));
    if kind.is_some() {
        sql.push(" AND o.kind = k.kind");
    }
    sql.push(&format!(" AND o.{key} >= "))
        .bind(text(prefix.as_str()))
        .push(&format!(" AND o.{key} < k.{key})"));
    sql.push(&format!(" ORDER BY k.{key}, k.customer_id"))
        .limit(u64::from(size) + 1);
    sql
}

/// The category and churn-band conditions of a search, on the customer's `customer_scores` row
/// (looked up by its primary key per candidate).
fn score_filter(sql: &mut Sql, filter: &SearchFilter) {
    if filter.category.is_none() && filter.churn_band.is_none() {
        return;
    }
    sql.push(" AND EXISTS (SELECT 1 FROM customer_scores s WHERE s.customer_id = c.id");
    if let Some(category) = filter.category {
        sql.push(" AND s.category = ")
            .bind(text(category_text(category)));
    }
    if let Some(band) = filter.churn_band {
        sql.push(" AND s.churn_band = ").bind(text(band.as_str()));
    }
    sql.push(")");
}

/// The first `size` of `items` (fetched `size + 1`) and the cursor after the last, if more.
fn finish_page<T>(mut items: Vec<T>, size: u32, cursor: impl Fn(&T) -> String) -> Page<T> {
    let size = usize::try_from(size).unwrap_or(usize::MAX);
    let more = items.len() > size;
    items.truncate(size);
    let next_after = if more { items.last().map(cursor) } else { None };
    Page { items, next_after }
}

// ------------------------------------------------------------------------------------------------
// Interactions and transactions

/// Appends the time range and the keyset condition (rows strictly older than the cursor, in
/// the order `occurred_at DESC, source DESC, record_type DESC, record_id DESC`) and the order.
fn newest_first(sql: &mut Sql, range: &TimeRange, after: Option<&TimeCursor>, size: u32) {
    if let Some(from) = range.from {
        sql.push(" AND occurred_at >= ").bind(time(from));
    }
    if let Some(to) = range.to {
        sql.push(" AND occurred_at < ").bind(time(to));
    }
    if let Some(c) = after {
        let k = &c.key;
        sql.push(" AND occurred_at <= ")
            .bind(time(c.at))
            .push(" AND (occurred_at < ")
            .bind(time(c.at))
            .push(" OR source < ")
            .bind(text(k.source.as_str()))
            .push(" OR (source = ")
            .bind(text(k.source.as_str()))
            .push(" AND (record_type < ")
            .bind(text(k.record_type.as_str()))
            .push(" OR (record_type = ")
            .bind(text(k.record_type.as_str()))
            .push(" AND record_id < ")
            .bind(text(k.record_id.as_str()))
            .push("))))");
    }
    sql.push(" ORDER BY occurred_at DESC, source DESC, record_type DESC, record_id DESC")
        .limit(u64::from(size) + 1);
}

fn row_key(row: &impl Cols) -> Result<RowKey> {
    Ok(RowKey {
        source: get(row, "source")?,
        record_type: get(row, "record_type")?,
        record_id: get(row, "record_id")?,
    })
}

fn cursor_of(at: DateTime<Utc>, key: &RowKey) -> String {
    encode_cursor(&TimeCursor {
        at,
        key: key.clone(),
    })
}

/// A page of the interactions of the live customer `customer`.
async fn interactions_of(
    conn: &(impl ConnectionTrait + Read),
    customer: CustomerId,
    range: &TimeRange,
    page: &PageRequest,
) -> Result<Page<InteractionView>> {
    let after = page.after.as_deref().map(decode_cursor).transpose()?;
    let mut sql = Sql::new(
        conn.get_database_backend(),
        "SELECT source, record_type, record_id, touchpoint_key, channel, occurred_at, outcome \
         FROM interactions WHERE customer_id = ",
    );
    sql.bind(text(customer.to_string()));
    newest_first(&mut sql, range, after.as_ref(), page.size);
    let mut items = Vec::new();
    for row in conn.all(sql.build()).await? {
        let channel: String = get(&row, "channel")?;
        items.push(InteractionView {
            key: row_key(&row)?,
            touchpoint_key: get(&row, "touchpoint_key")?,
            channel: channel.parse().map_err(corrupt)?,
            occurred_at: get(&row, "occurred_at")?,
            outcome: get(&row, "outcome")?,
        });
    }
    Ok(finish_page(items, page.size, |last| {
        cursor_of(last.occurred_at, &last.key)
    }))
}

/// A customer's interactions (following redirects).
pub(crate) async fn interactions(
    conn: &(impl ConnectionTrait + Read),
    id: CustomerId,
    range: &TimeRange,
    page: &PageRequest,
) -> Result<(CustomerId, Page<InteractionView>)> {
    let customer = live(conn, id).await?;
    Ok((
        customer,
        interactions_of(conn, customer, range, page).await?,
    ))
}

/// A customer's ledger entries (following redirects).
pub(crate) async fn transactions(
    conn: &(impl ConnectionTrait + Read),
    id: CustomerId,
    range: &TimeRange,
    page: &PageRequest,
) -> Result<(CustomerId, Page<TransactionView>)> {
    let customer = live(conn, id).await?;
    let after = page.after.as_deref().map(decode_cursor).transpose()?;
    let mut sql = Sql::new(
        conn.get_database_backend(),
        "SELECT source, record_type, record_id, kind, amount_minor, currency_code, occurred_at, \
         status, due_at FROM transactions WHERE customer_id = ",
    );
    sql.bind(text(customer.to_string()));
    newest_first(&mut sql, range, after.as_ref(), page.size);
    let mut items = Vec::new();
    for row in conn.all(sql.build()).await? {
        let kind: String = get(&row, "kind")?;
        items.push(TransactionView {
            key: row_key(&row)?,
            kind: kind.parse().map_err(corrupt)?,
            amount: Money::new(get(&row, "amount_minor")?, currency(&row)?),
            occurred_at: get(&row, "occurred_at")?,
            status: get(&row, "status")?,
            due_at: get(&row, "due_at")?,
        });
    }
    let page = finish_page(items, page.size, |last| {
        cursor_of(last.occurred_at, &last.key)
    });
    Ok((customer, page))
}

fn currency(row: &impl Cols) -> Result<Currency> {
    let code: String = get(row, "currency_code")?;
    Currency::parse(&code).map_err(corrupt)
}

// ------------------------------------------------------------------------------------------------
// 360

/// The statement of [`customer_360`] for one hop: the row of `customer` (a `customers c` row)
/// with every list of the view as JSON rows. On SQLite every list but the cases' and
/// subscriptions' state is read from a covering index by `customer_id` (migration
/// `m20261125_000021_customer_cover_indexes`): no table row is visited but the customer's.
fn statement_360(backend: DbBackend, customer: &str, recent: u32, now: DateTime<Utc>) -> Sql {
    let since = now - Duration::days(FAILED_PAYMENT_WINDOW_DAYS);
    let mut sql = Sql::new(backend, "SELECT ");
    customer_columns(&mut sql, backend);
    sql.push(", ");
    open_json_rows(&mut sql, backend, "source, source_customer_id, n");
    sql.push(
        "SELECT source, source_customer_id, COUNT(*) AS n FROM feed_records \
         WHERE customer_id = c.id GROUP BY source, source_customer_id",
    );
    close_json_rows(&mut sql, "sources_json");
    sql.push(", ");
    open_json_rows(
        &mut sql,
        backend,
        "source, record_type, record_id, touchpoint_key, channel, occurred_at, outcome",
    );
    sql.push(
        "SELECT source, record_type, record_id, touchpoint_key, channel, occurred_at, outcome \
         FROM interactions WHERE customer_id = c.id \
         ORDER BY occurred_at DESC, source DESC, record_type DESC, record_id DESC",
    )
    .limit(u64::from(recent));
    close_json_rows(&mut sql, "interactions_json");
    sql.push(", ");
    // SUM of int8 is numeric on PostgreSQL: cast back.
    open_json_rows(
        &mut sql,
        backend,
        "kind, status, currency_code, n, total, overdue_n, overdue_total, recent_n",
    );
    sql.push(
        "SELECT kind, status, currency_code, COUNT(*) AS n, \
         CAST(COALESCE(SUM(amount_minor), 0) AS BIGINT) AS total, \
         CAST(COALESCE(SUM(CASE WHEN due_at < ",
    )
    .bind(time(now))
    .push(" THEN 1 ELSE 0 END), 0) AS BIGINT) AS overdue_n, CAST(COALESCE(SUM(CASE WHEN due_at < ")
    .bind(time(now))
    .push(" THEN amount_minor ELSE 0 END), 0) AS BIGINT) AS overdue_total, CAST(COALESCE(SUM(CASE WHEN occurred_at >= ")
    .bind(time(since))
    .push(
        " THEN 1 ELSE 0 END), 0) AS BIGINT) AS recent_n FROM transactions \
         WHERE customer_id = c.id GROUP BY kind, status, currency_code",
    );
    close_json_rows(&mut sql, "ledger_json");
    sql.push(
        ", (SELECT MAX(occurred_at) FROM transactions \
         WHERE customer_id = c.id AND kind = 'order' AND status = 'placed') AS last_purchase_at, ",
    );
    open_json_rows(
        &mut sql,
        backend,
        "source, record_id, status, priority, category, channel, opened_at",
    );
    sql.push(
        "SELECT s.source, s.record_id, s.status, s.priority, s.category, s.channel, s.opened_at \
         FROM feed_records f CROSS JOIN support_cases s \
         WHERE f.customer_id = c.id AND f.record_type = 'support_case' \
         AND s.source = f.source AND s.record_id = f.record_id AND s.status IN ('open', 'pending')",
    );
    close_json_rows(&mut sql, "cases_json");
    sql.push(", ");
    open_json_rows(
        &mut sql,
        backend,
        "source, record_id, subscription_id, kind, occurred_at, plan, amount_minor, currency_code",
    );
    sql.push(
        "SELECT s.source, s.record_id, s.subscription_id, s.kind, s.occurred_at, s.plan, \
         s.amount_minor, s.currency_code \
         FROM feed_records f CROSS JOIN subscription_events s \
         WHERE f.customer_id = c.id AND f.record_type = 'subscription_event' \
         AND s.source = f.source AND s.record_id = f.record_id",
    );
    close_json_rows(&mut sql, "subscriptions_json");
    sql.push(", ");
    open_json_rows(
        &mut sql,
        backend,
        "customer_id, as_of, model_version, category_json, churn_json, clv_json, rfm_json",
    );
    sql.push(
        "SELECT customer_id, as_of, model_version, category_json, churn_json, clv_json, \
         rfm_json FROM customer_scores WHERE customer_id = c.id",
    );
    close_json_rows(&mut sql, "scores_json");
    sql.push(" FROM customers c WHERE c.id = ")
        .bind(text(customer));
    sql
}

/// The 360° view (see [`Customer360`]) in one statement per redirect hop: the customer's
/// row, identities and record count ([`customer_columns`]) and, as JSON rows, its record
/// counts per source id, its latest interactions, its ledger per (kind, status, currency), its
/// open cases and its subscription events, plus its last purchase.
pub(crate) async fn customer_360(
    conn: &impl Read,
    id: CustomerId,
    recent: u32,
    now: DateTime<Utc>,
) -> Result<Customer360> {
    let backend = conn.backend();
    let (live_id, row) = live_row(conn, id, |customer| {
        statement_360(backend, customer, recent, now)
    })
    .await?;
    let customer = customer_view(&row, live_id, id)?;

    let mut counts = Vec::new();
    for cells in json_rows(&row, "sources_json")? {
        let mut c = Cells::new(cells, 3)?;
        counts.push((c.text()?, c.text()?, c.int()?));
    }
    let sources = group_by_source(&customer.identifiers, &counts);

    let mut recent_interactions = Vec::new();
    for cells in json_rows(&row, "interactions_json")? {
        let mut c = Cells::new(cells, 7)?;
        recent_interactions.push(InteractionView {
            key: RowKey {
                source: c.text()?,
                record_type: c.text()?,
                record_id: c.text()?,
            },
            touchpoint_key: c.text()?,
            channel: c.parsed()?,
            occurred_at: c.time()?,
            outcome: c.text()?,
        });
    }
    // Newest first, as the derived table was ordered (JSON aggregation keeps no order by
    // contract).
    recent_interactions.sort_by(|a, b| {
        (
            b.occurred_at,
            &b.key.source,
            &b.key.record_type,
            &b.key.record_id,
        )
            .cmp(&(
                a.occurred_at,
                &a.key.source,
                &a.key.record_type,
                &a.key.record_id,
            ))
    });

    let mut groups = Vec::new();
    for cells in json_rows(&row, "ledger_json")? {
        let mut c = Cells::new(cells, 8)?;
        let kind = c.parsed()?;
        let status = c.text()?;
        let code = c.text()?;
        groups.push(TransactionGroup {
            kind,
            status,
            currency: Currency::parse(&code).map_err(corrupt)?,
            count: c.int()?,
            total_minor: c.int()?,
            overdue_count: c.int()?,
            overdue_minor: c.int()?,
            recent_count: c.int()?,
        });
    }
    let last_purchase_at: Option<DateTime<Utc>> = get(&row, "last_purchase_at")?;
    let transactions = TransactionSummary::from_groups(&groups, last_purchase_at);

    let mut open_cases = Vec::new();
    for cells in json_rows(&row, "cases_json")? {
        let mut c = Cells::new(cells, 7)?;
        open_cases.push(SupportCaseView {
            source: c.text()?,
            record_id: c.text()?,
            status: c.parsed()?,
            priority: c.parsed()?,
            category: c.text()?,
            channel: c.parsed()?,
            opened_at: c.time()?,
        });
    }
    open_cases.sort_by(|a, b| {
        (b.opened_at, &a.source, &a.record_id).cmp(&(a.opened_at, &b.source, &b.record_id))
    });

    let mut events = Vec::new();
    for cells in json_rows(&row, "subscriptions_json")? {
        let mut c = Cells::new(cells, 8)?;
        let source = c.text()?;
        let record_id = c.text()?;
        let subscription_id = c.text()?;
        let kind = c.parsed()?;
        let occurred_at = c.time()?;
        let plan = c.text()?;
        let recurring_amount = match (c.int_opt()?, c.text_opt()?) {
            (Some(amount), Some(code)) => {
                Some(Money::new(amount, Currency::parse(&code).map_err(corrupt)?))
            }
            _ => None,
        };
        events.push(SubscriptionEventRow {
            source,
            record_id,
            subscription_id,
            kind,
            occurred_at,
            plan,
            recurring_amount,
        });
    }
    events.sort_by(|a, b| {
        (a.occurred_at, &a.source, &a.record_id).cmp(&(b.occurred_at, &b.source, &b.record_id))
    });
    let mut scores = None;
    for cells in json_rows(&row, "scores_json")? {
        let mut c = Cells::new(cells, 7)?;
        scores = Some(crate::customer_scores::scores_from_columns(
            crate::customer_scores::StoredScores {
                customer: c.text()?,
                as_of: c.time()?,
                model_version: c.text()?,
                category_json: c.text()?,
                churn_json: c.text()?,
                clv_json: c.text_opt()?,
                rfm_json: c.text_opt()?,
            },
        )?);
    }
    Ok(Customer360 {
        customer,
        sources,
        recent_interactions,
        transactions,
        open_cases,
        active_subscriptions: active_subscriptions(&events),
        scores,
    })
}

// ------------------------------------------------------------------------------------------------
// The repository

#[async_trait::async_trait]
impl CustomerQueryRepo for Store {
    async fn batch_get_customers(&self, ids: &[CustomerId]) -> Result<Vec<Option<CustomerView>>> {
        snapshot!(self, |txn| batch_get(&txn, ids))
    }

    async fn lookup_customers(&self, identifier: &Identifier) -> Result<LookupResult> {
        lookup(&self.reader, identifier).await
    }

    async fn search_customers(
        &self,
        filter: &SearchFilter,
        page: &PageRequest,
    ) -> Result<Page<CustomerSummary>> {
        search(&self.reader, filter, page).await
    }

    async fn customer_360(
        &self,
        id: CustomerId,
        recent: u32,
        now: DateTime<Utc>,
    ) -> Result<Customer360> {
        customer_360(&self.reader, id, recent, now).await
    }

    async fn list_interactions(
        &self,
        id: CustomerId,
        range: &TimeRange,
        page: &PageRequest,
    ) -> Result<(CustomerId, Page<InteractionView>)> {
        snapshot!(self, |txn| interactions(&txn, id, range, page))
    }

    async fn list_transactions(
        &self,
        id: CustomerId,
        range: &TimeRange,
        page: &PageRequest,
    ) -> Result<(CustomerId, Page<TransactionView>)> {
        snapshot!(self, |txn| transactions(&txn, id, range, page))
    }
}

// ------------------------------------------------------------------------------------------------
// Row helpers

fn get<T: Cell>(row: &impl Cols, column: &str) -> Result<T> {
    row.col(column)
}

fn parse_customer(s: &str) -> Result<CustomerId> {
    s.parse().map_err(corrupt)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use cxhub_domain::feed::LifecycleStage;
    use sea_orm::ConnectionTrait;

    use super::*;
    use crate::StoreOptions;

    /// The SQLite plan of a statement, one line per step.
    async fn plan(store: &Store, sql: Sql) -> String {
        let stmt = sql.build();
        let explain = sea_orm::Statement::from_sql_and_values(
            stmt.db_backend,
            format!("EXPLAIN QUERY PLAN {}", stmt.sql),
            stmt.values.map(|v| v.0).unwrap_or_default(),
        );
        let rows = store.reader.query_all_raw(explain).await.unwrap();
        rows.iter()
            .map(|r| r.try_get::<String>("", "detail").unwrap())
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// A migrated in-memory SQLite store, for query plans.
    async fn migrated_memory_store() -> Store {
        let store = Store::connect("sqlite::memory:", StoreOptions::default())
            .await
            .unwrap();
        store.migrate().await.unwrap();
        store
    }

    #[tokio::test]
    async fn prefix_searches_are_index_range_scans_in_index_order() {
        let store = migrated_memory_store().await;
        let backend = store.reader.get_database_backend();
        for (by, index) in [
            (
                SearchBy::Name("mar".into()),
                "sqlite_autoindex_customer_name_keys_1",
            ),
            (
                SearchBy::Email("jo".into()),
                "sqlite_autoindex_customer_identities_1",
            ),
            (
                SearchBy::Phone("+351".into()),
                "sqlite_autoindex_customer_identities_1",
            ),
        ] {
            for stage in [None, Some(LifecycleStage::Customer)] {
                let filter = SearchFilter {
                    by: by.clone(),
                    lifecycle_stage: stage,
                    category: None,
                    churn_band: None,
                };
                for after in [None, Some(("mara".to_owned(), "x".to_owned()))] {
                    let plan = plan(&store, search_statement(backend, &filter, after, 20)).await;
                    let first = plan.lines().next().unwrap_or_default();
                    assert!(
                        first.starts_with("SEARCH k USING") && first.contains(index),
                        "{filter:?}: {plan}"
                    );
                    assert!(
                        !plan.contains("TEMP B-TREE"),
                        "no sort, the index order is the page order: {plan}"
                    );
                    assert!(
                        plan.lines()
                            .any(|l| l.starts_with("SEARCH c USING") && l.contains("id=?")),
                        "one customer looked up by id per key: {plan}"
                    );
                }
            }
        }
        let filter = SearchFilter {
            by: SearchBy::Any,
            lifecycle_stage: Some(LifecycleStage::Lead),
            category: None,
            churn_band: None,
        };
        let plan = plan(&store, search_statement(backend, &filter, None, 20)).await;
        assert!(plan.contains("customers_lifecycle_idx"), "{plan}");
        assert!(!plan.contains("TEMP B-TREE"), "{plan}");
    }

    /// The 360 (and `GetCustomer`, whose columns it includes) reads a customer's identities,
    /// records, interactions and ledger from the covering indexes alone: looking up a table row
    /// for every index entry was most of its SQLite work. Only the customer's row, the state of
    /// its cases and subscriptions and its scores are table reads.
    #[tokio::test]
    async fn the_360_reads_its_lists_from_covering_indexes() {
        let store = migrated_memory_store().await;
        let backend = store.reader.get_database_backend();
        let plan = plan(&store, statement_360(backend, "c1", 10, Utc::now())).await;
        for index in [
            "customer_identities_customer_cover_idx",
            "feed_records_customer_cover_idx",
            "interactions_customer_cover_idx",
            "transactions_customer_cover_idx",
        ] {
            assert!(
                plan.contains(&format!("USING COVERING INDEX {index}")),
                "{index}: {plan}"
            );
        }
        for line in plan
            .lines()
            .filter(|l| l.starts_with("SEARCH") && !l.contains("COVERING INDEX"))
        {
            assert!(
                ["SEARCH c ", "SEARCH s ", "SEARCH customer_scores "]
                    .iter()
                    .any(|table| line.starts_with(table)),
                "a table row looked up: {line}\n{plan}"
            );
        }
        assert!(
            !plan.contains("ORDER BY"),
            "the latest interactions come in index order, unsorted: {plan}"
        );
    }
}
