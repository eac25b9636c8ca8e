//! Interactions reported directly by event sources (`RecordInteractions`): rows of the
//! `interactions` table with `record_type = 'interaction'`, idempotent by (source,
//! interaction id) through their content hash.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use cxhub_domain::identifier::CustomerId;
use cxhub_domain::interaction::{CustomerRef, NewInteraction, RecordOutcome, Recorded};
use cxhub_domain::touchpoint::Channel;
use cxhub_domain::{Error, FieldViolation, Result};
use sea_orm::{ConnectionTrait, DatabaseTransaction};

use crate::customers::{customer_for_source, live};
use crate::error::{DbResultExt, corrupt};
use crate::sql::{Pg, Sql, bytes, col, insert_rows, text, time};

/// The record type of directly reported interactions.
const RECORD_TYPE: &str = "interaction";

fn violation(field: &str, description: impl Into<String>) -> Vec<FieldViolation> {
    vec![FieldViolation {
        field: field.to_owned(),
        description: description.into(),
    }]
}

/// Records `items` in `txn` (begun with the identity lock: unknown source ids create
/// customers).
pub(crate) async fn record(
    txn: &DatabaseTransaction,
    items: &[NewInteraction],
) -> Result<Vec<Recorded>> {
    let backend = txn.get_database_backend();

    // Touchpoints named, with their channel and state.
    let keys: BTreeSet<String> = items
        .iter()
        .map(|i| i.touchpoint_key.as_str().to_owned())
        .collect();
    let mut touchpoints: HashMap<String, (String, String)> = HashMap::new();
    if !keys.is_empty() {
        let mut sql = Sql::new(
            backend,
            "SELECT key, channel, state FROM touchpoints WHERE key",
        );
        sql.in_texts(keys);
        for row in txn.query_all_raw(sql.build()).await.db()? {
            let key: String = row.try_get("", "key").map_err(corrupt)?;
            let channel: String = row.try_get("", "channel").map_err(corrupt)?;
            let state: String = row.try_get("", "state").map_err(corrupt)?;
            touchpoints.insert(key, (channel, state));
        }
    }

    // What is recorded already, per source.
    let mut by_source: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    for item in items {
        by_source
            .entry(item.source.as_str())
            .or_default()
            .insert(item.interaction_id.clone());
    }
    let mut stored: HashMap<(String, String), (Vec<u8>, CustomerId)> = HashMap::new();
    for (source, ids) in by_source {
        let mut sql = Sql::new(
            backend,
            "SELECT record_id, content_hash, customer_id FROM interactions WHERE record_type = 'interaction' AND source = ",
        );
        sql.bind(text(source)).push(" AND record_id");
        sql.in_texts(ids);
        for row in txn.query_all_raw(sql.build()).await.db()? {
            let id: String = row.try_get("", "record_id").map_err(corrupt)?;
            let hash: Vec<u8> = row.try_get("", "content_hash").map_err(corrupt)?;
            let customer: String = row.try_get("", "customer_id").map_err(corrupt)?;
            let customer = customer.parse().map_err(corrupt)?;
            stored.insert((source.to_owned(), id), (hash, customer));
        }
    }

    let mut results = Vec::with_capacity(items.len());
    let mut rows = Vec::new();
    for item in items {
        let key = (item.source.clone(), item.interaction_id.clone());
        if let Some((hash, customer)) = stored.get(&key) {
            let outcome = if hash.as_slice() == item.hash.as_bytes() {
                RecordOutcome::Unchanged
            } else {
                RecordOutcome::Conflict
            };
            results.push(Ok((outcome, live(txn, *customer).await?)));
            continue;
        }
        let channel = match touchpoints.get(item.touchpoint_key.as_str()) {
            None => {
                results.push(Err(violation(
                    "touchpoint_key",
                    format!(
                        "no touchpoint has the key `{}`",
                        item.touchpoint_key.as_str()
                    ),
                )));
                continue;
            }
            Some((_, state)) if state != "active" => {
                results.push(Err(violation(
                    "touchpoint_key",
                    format!(
                        "touchpoint `{}` is archived: restore it first",
                        item.touchpoint_key.as_str()
                    ),
                )));
                continue;
            }
            Some((channel, _)) => match item.channel {
                Some(c) => c,
                None => channel.parse::<Channel>().map_err(corrupt)?,
            },
        };
        let customer = match &item.customer {
            CustomerRef::Id(id) => match live(txn, *id).await {
                Ok(c) => c,
                Err(Error::NotFound { .. }) => {
                    results.push(Err(violation(
                        "customer.customer_id",
                        format!("no customer has the id {id}"),
                    )));
                    continue;
                }
                Err(err) => return Err(err),
            },
            CustomerRef::Source { source, id } => customer_for_source(txn, source, id).await?,
        };
        stored.insert(key, (item.hash.as_bytes().to_vec(), customer));
        rows.push(vec![
            text(item.source.as_str()),
            text(RECORD_TYPE),
            text(item.interaction_id.as_str()),
            text(customer.to_string()),
            text(item.touchpoint_key.as_str()),
            text(channel.as_str()),
            time(item.occurred_at),
            text(item.outcome.as_str()),
            bytes(item.hash.as_bytes().to_vec()),
        ]);
        results.push(Ok((RecordOutcome::Created, customer)));
    }
    insert_rows(
        txn,
        "interactions",
        &[
            col("source", Pg::Text),
            col("record_type", Pg::Text),
            col("record_id", Pg::Text),
            col("customer_id", Pg::Text),
            col("touchpoint_key", Pg::Text),
            col("channel", Pg::Text),
            col("occurred_at", Pg::Time),
            col("outcome", Pg::Text),
            col("content_hash", Pg::Bytes),
        ],
        rows,
        "ON CONFLICT (source, record_type, record_id) DO NOTHING",
    )
    .await
    .db()?;
    Ok(results)
}
