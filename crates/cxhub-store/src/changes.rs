//! The customer change log (see [`cxhub_domain::change`]): appended in the transaction of each
//! change, read in position order, pruned by age behind a recorded horizon.

use chrono::{DateTime, Utc};
use cxhub_domain::Result;
use cxhub_domain::change::{Change, ChangeKind, ChangeSlice, NewChange};
use cxhub_domain::identifier::CustomerId;
use cxhub_domain::resolution::MergeId;
use sea_orm::{ConnectionTrait, DatabaseTransaction, QueryResult};

use crate::error::{DbResultExt, corrupt};
use crate::sql::{Inserts, Pg, Sql, col, int, nullable, text, text_opt, time};

/// Appends `changes`, in order, committed with `txn`. The caller holds the identity lock.
pub(crate) async fn append(
    txn: &DatabaseTransaction,
    changes: &[NewChange],
    now: DateTime<Utc>,
) -> Result<()> {
    let mut inserts = Inserts::new(txn);
    gather(&mut inserts, changes, now).await?;
    inserts.run().await.db()
}

/// [`append`] as one of `inserts` (written when they run).
pub(crate) async fn gather(
    inserts: &mut Inserts<'_, DatabaseTransaction>,
    changes: &[NewChange],
    now: DateTime<Utc>,
) -> Result<()> {
    let mut rows = Vec::with_capacity(changes.len());
    for c in changes {
        let related: Vec<String> = c.related.iter().map(ToString::to_string).collect();
        rows.push(vec![
            text(c.customer.to_string()),
            text(c.kind.as_str()),
            text(serde_json::to_string(&c.fields).map_err(corrupt)?),
            text(serde_json::to_string(&related).map_err(corrupt)?),
            text_opt(c.merge.map(|m| m.to_string())),
            time(now),
        ]);
    }
    inserts
        .add(
            "customer_changes",
            &[
                col("customer_id", Pg::Text),
                col("kind", Pg::Text),
                col("fields_json", Pg::Text),
                col("related_json", Pg::Text),
                nullable("merge_id", Pg::Text),
                col("occurred_at", Pg::Time),
            ],
            rows,
            "",
        )
        .await
        .db()
}

/// Up to `limit` entries after `after`, with the horizon and head, from one snapshot.
pub(crate) async fn read(
    conn: &impl ConnectionTrait,
    after: i64,
    limit: u32,
) -> Result<ChangeSlice> {
    let backend = conn.get_database_backend();
    let bounds = conn
        .query_one_raw(
            Sql::new(
                backend,
                "SELECT (SELECT pruned_through FROM change_log_horizon WHERE id = 1) AS horizon, \
             (SELECT MAX(seq) FROM customer_changes) AS head",
            )
            .build(),
        )
        .await
        .db()?
        .ok_or_else(|| corrupt("change_log_horizon has no row"))?;
    let horizon: i64 = get(&bounds, "horizon")?;
    let head: Option<i64> = get(&bounds, "head")?;
    let mut sql = Sql::new(
        backend,
        "SELECT seq, customer_id, kind, fields_json, related_json, merge_id, occurred_at \
         FROM customer_changes WHERE seq > ",
    );
    sql.bind(int(after))
        .push(" ORDER BY seq")
        .limit(u64::from(limit));
    let mut changes = Vec::new();
    for row in conn.query_all_raw(sql.build()).await.db()? {
        changes.push(change(&row)?);
    }
    Ok(ChangeSlice {
        changes,
        horizon,
        head: head.unwrap_or(0).max(horizon),
    })
}

/// Deletes the entries committed before `before` and moves the horizon past them.
pub(crate) async fn prune(txn: &DatabaseTransaction, before: DateTime<Utc>) -> Result<u64> {
    let backend = txn.get_database_backend();
    let mut sql = Sql::new(
        backend,
        "SELECT MAX(seq) AS last FROM customer_changes WHERE occurred_at < ",
    );
    sql.bind(time(before));
    let last: Option<i64> = match txn.query_one_raw(sql.build()).await.db()? {
        Some(row) => get(&row, "last")?,
        None => None,
    };
    let Some(last) = last else {
        return Ok(0);
    };
    let mut sql = Sql::new(backend, "DELETE FROM customer_changes WHERE seq <= ");
    sql.bind(int(last));
    let deleted = txn.execute_raw(sql.build()).await.db()?.rows_affected();
    let mut sql = Sql::new(backend, "UPDATE change_log_horizon SET pruned_through = ");
    sql.bind(int(last))
        .push(" WHERE id = 1 AND pruned_through < ")
        .bind(int(last));
    txn.execute_raw(sql.build()).await.db()?;
    Ok(deleted)
}

fn change(row: &QueryResult) -> Result<Change> {
    let kind: String = get(row, "kind")?;
    let customer: String = get(row, "customer_id")?;
    let fields: String = get(row, "fields_json")?;
    let related: String = get(row, "related_json")?;
    let related: Vec<String> = serde_json::from_str(&related).map_err(corrupt)?;
    let merge: Option<String> = get(row, "merge_id")?;
    Ok(Change {
        seq: get(row, "seq")?,
        change: NewChange {
            customer: parse_id(&customer)?,
            kind: kind.parse::<ChangeKind>().map_err(corrupt)?,
            fields: serde_json::from_str(&fields).map_err(corrupt)?,
            related: related.iter().map(|r| parse_id(r)).collect::<Result<_>>()?,
            merge: merge
                .map(|m| m.parse::<MergeId>().map_err(corrupt))
                .transpose()?,
        },
        at: get(row, "occurred_at")?,
    })
}

fn parse_id(s: &str) -> Result<CustomerId> {
    s.parse().map_err(corrupt)
}

fn get<T: sea_orm::TryGetable>(row: &QueryResult, column: &str) -> Result<T> {
    row.try_get("", column).map_err(corrupt)
}
