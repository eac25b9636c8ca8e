//! Interactions reported directly by event sources (`RecordInteractions`): rows of the
//! `interactions` table with `record_type = 'interaction'`, idempotent by (source,
//! interaction id) through their content hash.
//!
//! A call is one transaction of a handful of statements whatever its size: the touchpoints it
//! names, the interactions it re-sends (one lookup per source), the holders of the source
//! customer ids it names, the live customers behind every customer id involved (one lookup per
//! step of merge redirects, usually one), and one multi-row insert. Only a source customer id
//! that nobody holds yet costs statements of its own: its customer is created as a feed record
//! would create it ([`customer_for_source`]).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use cxhub_domain::FieldViolation;
use cxhub_domain::Result;
use cxhub_domain::change::NewChange;
use cxhub_domain::identifier::{CustomerId, Identifier};
use cxhub_domain::interaction::{CustomerRef, NewInteraction, RecordOutcome, Recorded};
use cxhub_domain::touchpoint::Channel;
use sea_orm::{ConnectionTrait, DatabaseTransaction};

use crate::IN_LIST_CHUNK;
use crate::customers::customer_for_source;
use crate::error::{DbResultExt, corrupt};
use crate::sql::{Pg, Sql, bytes, col, insert_rows, text, time};

/// The record type of directly reported interactions.
const RECORD_TYPE: &str = "interaction";

/// Longest chain of merge redirects followed (as [`crate::customers::live`] does).
const MAX_REDIRECTS: usize = 64;

fn violation(field: &str, description: impl Into<String>) -> Vec<FieldViolation> {
    vec![FieldViolation {
        field: field.to_owned(),
        description: description.into(),
    }]
}

/// The value a source customer id is stored under in `customer_identities`.
fn source_id_value(source: &str, id: &str) -> String {
    Identifier::SourceId {
        source: source.to_owned(),
        id: id.to_owned(),
    }
    .value()
}

/// Records `items` in `txn`, which must have been begun with
/// [`crate::Store::begin_identity`] (an unknown source customer id creates its customer, and
/// two callers must never create two). One result per item, in order; the rows of the
/// rejected items are not written, those of the others are.
pub(crate) async fn record(
    txn: &DatabaseTransaction,
    items: &[NewInteraction],
) -> Result<Vec<Recorded>> {
    if items.is_empty() {
        return Ok(Vec::new());
    }
    let touchpoints = load_touchpoints(txn, items).await?;
    let recorded = load_recorded(txn, items).await?;
    let holders = load_source_holders(txn, items).await?;

    // The live customer behind every customer id involved: recorded interactions (merges move
    // their rows, but follow redirects anyway), hub ids named, holders of source ids.
    let named: BTreeSet<CustomerId> = recorded
        .values()
        .map(|(_, c)| *c)
        .chain(holders.values().copied())
        .chain(items.iter().filter_map(|i| match &i.customer {
            CustomerRef::Id(id) => Some(*id),
            CustomerRef::Source { .. } => None,
        }))
        .collect();
    let live = live_customers(txn, named).await?;
    let live_of = |c: &CustomerId| {
        live.get(c)
            .copied()
            .ok_or_else(|| corrupt(format!("customer {c} is referenced but does not exist")))
    };
    let mut recorded = recorded
        .into_iter()
        .map(|(key, (hash, c))| Ok((key, (hash, live_of(&c)?))))
        .collect::<Result<HashMap<_, _>>>()?;
    let mut holders = holders
        .into_iter()
        .map(|(value, c)| Ok((value, live_of(&c)?)))
        .collect::<Result<HashMap<_, _>>>()?;

    let mut results = Vec::with_capacity(items.len());
    let mut rows = Vec::new();
    for item in items {
        let key = (item.source.clone(), item.interaction_id.clone());
        // Recorded before (or earlier in this call): the hash tells a re-send from a conflict.
        if let Some((hash, customer)) = recorded.get(&key) {
            let outcome = if hash.as_slice() == item.hash.as_bytes() {
                RecordOutcome::Unchanged
            } else {
                RecordOutcome::Conflict
            };
            results.push(Ok((outcome, *customer)));
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
            CustomerRef::Id(id) => match live.get(id) {
                Some(c) => *c,
                None => {
                    results.push(Err(violation(
                        "customer.customer_id",
                        format!("no customer has the id {id}"),
                    )));
                    continue;
                }
            },
            CustomerRef::Source { source, id } => {
                let value = source_id_value(source, id);
                match holders.get(&value) {
                    Some(c) => *c,
                    None => {
                        let c = customer_for_source(txn, source, id).await?;
                        holders.insert(value, c);
                        c
                    }
                }
            }
        };
        recorded.insert(key, (item.hash.as_bytes().to_vec(), customer));
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
    // Every (source, interaction id) written is new: the identity lock keeps other writers of
    // directly reported interactions out until this commits, and feed records never use the
    // record type `interaction`. DO NOTHING is a safety net, not a path.
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
    let updated: BTreeSet<CustomerId> = results
        .iter()
        .filter_map(|r| match r {
            Ok((RecordOutcome::Created, c)) => Some(*c),
            _ => None,
        })
        .collect();
    let changes: Vec<NewChange> = updated
        .into_iter()
        .map(|c| NewChange::updated(c, [cxhub_domain::change::INTERACTIONS]))
        .collect();
    crate::changes::append(txn, &changes, crate::now()).await?;
    Ok(results)
}

/// The channel and state of each touchpoint the items name, by key.
async fn load_touchpoints(
    txn: &DatabaseTransaction,
    items: &[NewInteraction],
) -> Result<HashMap<String, (String, String)>> {
    let keys: BTreeSet<String> = items
        .iter()
        .map(|i| i.touchpoint_key.as_str().to_owned())
        .collect();
    let keys: Vec<String> = keys.into_iter().collect();
    let mut out = HashMap::with_capacity(keys.len());
    for chunk in keys.chunks(IN_LIST_CHUNK) {
        let mut sql = Sql::new(
            txn.get_database_backend(),
            "SELECT key, channel, state FROM touchpoints WHERE key",
        );
        sql.in_texts(chunk.iter().cloned());
        for row in txn.query_all_raw(sql.build()).await.db()? {
            let key: String = row.try_get("", "key").map_err(corrupt)?;
            let channel: String = row.try_get("", "channel").map_err(corrupt)?;
            let state: String = row.try_get("", "state").map_err(corrupt)?;
            out.insert(key, (channel, state));
        }
    }
    Ok(out)
}

/// The interactions of `items` recorded already: content hash and (stored) customer by
/// (source, interaction id). One primary-key lookup per source.
async fn load_recorded(
    txn: &DatabaseTransaction,
    items: &[NewInteraction],
) -> Result<HashMap<(String, String), (Vec<u8>, CustomerId)>> {
    let mut by_source: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for item in items {
        by_source
            .entry(item.source.as_str())
            .or_default()
            .insert(item.interaction_id.as_str());
    }
    let mut out = HashMap::new();
    for (source, ids) in by_source {
        let ids: Vec<&str> = ids.into_iter().collect();
        for chunk in ids.chunks(IN_LIST_CHUNK) {
            let mut sql = Sql::new(
                txn.get_database_backend(),
                "SELECT record_id, content_hash, customer_id FROM interactions WHERE source = ",
            );
            sql.bind(text(source))
                .push(" AND record_type = ")
                .bind(text(RECORD_TYPE))
                .push(" AND record_id")
                .in_texts(chunk.iter().map(|id| (*id).to_owned()));
            for row in txn.query_all_raw(sql.build()).await.db()? {
                let id: String = row.try_get("", "record_id").map_err(corrupt)?;
                let hash: Vec<u8> = row.try_get("", "content_hash").map_err(corrupt)?;
                let customer: String = row.try_get("", "customer_id").map_err(corrupt)?;
                out.insert(
                    (source.to_owned(), id),
                    (hash, customer.parse().map_err(corrupt)?),
                );
            }
        }
    }
    Ok(out)
}

/// Who holds each source customer id the items name, by its stored value (`source:id`). An id
/// held by several customers gives the first by id, as [`customer_for_source`] does.
async fn load_source_holders(
    txn: &DatabaseTransaction,
    items: &[NewInteraction],
) -> Result<HashMap<String, CustomerId>> {
    let values: BTreeSet<String> = items
        .iter()
        .filter_map(|i| match &i.customer {
            CustomerRef::Source { source, id } => Some(source_id_value(source, id)),
            CustomerRef::Id(_) => None,
        })
        .collect();
    let values: Vec<String> = values.into_iter().collect();
    let mut first: HashMap<String, String> = HashMap::with_capacity(values.len());
    for chunk in values.chunks(IN_LIST_CHUNK) {
        let mut sql = Sql::new(
            txn.get_database_backend(),
            "SELECT value, customer_id FROM customer_identities WHERE kind = 'source_id' AND value",
        );
        sql.in_texts(chunk.iter().cloned());
        for row in txn.query_all_raw(sql.build()).await.db()? {
            let value: String = row.try_get("", "value").map_err(corrupt)?;
            let customer: String = row.try_get("", "customer_id").map_err(corrupt)?;
            let held = first.entry(value).or_insert_with(|| customer.clone());
            if customer < *held {
                *held = customer;
            }
        }
    }
    first
        .into_iter()
        .map(|(value, customer)| Ok((value, customer.parse().map_err(corrupt)?)))
        .collect()
}

/// The live customer behind each of `ids` (itself unless merged; a merged one's survivor,
/// following redirects). Unknown ids are absent.
pub(crate) async fn live_customers(
    txn: &DatabaseTransaction,
    ids: BTreeSet<CustomerId>,
) -> Result<HashMap<CustomerId, CustomerId>> {
    let mut live = HashMap::with_capacity(ids.len());
    // Each id not resolved yet, and where its redirects have led so far.
    let mut open: Vec<(CustomerId, CustomerId)> = ids.into_iter().map(|id| (id, id)).collect();
    for _ in 0..=MAX_REDIRECTS {
        if open.is_empty() {
            return Ok(live);
        }
        let wanted: BTreeSet<String> = open.iter().map(|(_, at)| at.to_string()).collect();
        let wanted: Vec<String> = wanted.into_iter().collect();
        let mut merged_into: HashMap<String, Option<String>> = HashMap::new();
        for chunk in wanted.chunks(IN_LIST_CHUNK) {
            let mut sql = Sql::new(
                txn.get_database_backend(),
                "SELECT id, merged_into FROM customers WHERE id",
            );
            sql.in_texts(chunk.iter().cloned());
            for row in txn.query_all_raw(sql.build()).await.db()? {
                let id: String = row.try_get("", "id").map_err(corrupt)?;
                let next: Option<String> = row.try_get("", "merged_into").map_err(corrupt)?;
                merged_into.insert(id, next);
            }
        }
        let mut still = Vec::new();
        for (origin, at) in open {
            match merged_into.get(&at.to_string()) {
                None => {}
                Some(None) => {
                    live.insert(origin, at);
                }
                Some(Some(next)) => still.push((origin, next.parse().map_err(corrupt)?)),
            }
        }
        open = still;
    }
    match open.first() {
        None => Ok(live),
        Some((origin, _)) => Err(corrupt(format!(
            "redirect chain from customer {origin} too long"
        ))),
    }
}

#[cfg(test)]
mod tests {
    //! What the rows hold, which no RPC reads back yet (the suite in `tests/` checks what
    //! callers see, on both backends).

    use chrono::{DateTime, Utc};
    use cxhub_domain::idempotency::RequestKey;
    use cxhub_domain::interaction::InteractionRepo;
    use cxhub_domain::record::ContentHash;
    use cxhub_domain::repo::TouchpointRepo;
    use cxhub_domain::touchpoint::{IntendedExperience, Key, NewTouchpoint, ParentRef, Stage};

    use super::*;
    use crate::{Store, StoreOptions};

    #[tokio::test]
    async fn rows_hold_the_interaction_with_the_touchpoints_channel_by_default() {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}", dir.path().join("t.db").display());
        let store = Store::connect(&url, StoreOptions::default())
            .await
            .expect("connect");
        store.migrate().await.expect("migrate");
        let branch = NewTouchpoint {
            key: Key::parse("branch").expect("key"),
            name: "Branch".into(),
            description: String::new(),
            channel: Channel::Store,
            stage: Stage::Usage,
            department: "retail".into(),
            main: true,
            parent: ParentRef::Root,
            intended: IntendedExperience::default(),
            labels: BTreeMap::new(),
        };
        let req = RequestKey::new("tester", "test/Create", "tp", b"x").expect("request key");
        store
            .create_touchpoints(&req, vec![branch])
            .await
            .expect("touchpoint");
        let at = DateTime::<Utc>::from_timestamp(1_760_000_000, 123_456_000).expect("time");
        let visit = |id: &str, channel: Option<Channel>| NewInteraction {
            index: 0,
            source: "footfall".into(),
            interaction_id: id.into(),
            customer: CustomerRef::Source {
                source: "crm".into(),
                id: "c-1".into(),
            },
            touchpoint_key: Key::parse("branch").expect("key"),
            occurred_at: at,
            channel,
            outcome: "VISITED".into(),
            hash: ContentHash::of(id.as_bytes()),
        };
        let results = store
            .record_interactions(vec![visit("v1", None), visit("v2", Some(Channel::Phone))])
            .await
            .expect("record");
        let customer = results[0].clone().expect("recorded").1;

        let rows = store
            .writer
            .query_all_raw(sea_orm::Statement::from_string(
                store.writer.get_database_backend(),
                "SELECT source, record_type, record_id, customer_id, touchpoint_key, channel, \
                 occurred_at, outcome, content_hash FROM interactions ORDER BY record_id",
            ))
            .await
            .expect("rows");
        let read =
            |i: usize, column: &str| -> String { rows[i].try_get("", column).expect(column) };
        assert_eq!(rows.len(), 2);
        for (i, (id, channel)) in [("v1", "store"), ("v2", "phone")].into_iter().enumerate() {
            assert_eq!(read(i, "source"), "footfall");
            assert_eq!(read(i, "record_type"), "interaction");
            assert_eq!(read(i, "record_id"), id);
            assert_eq!(read(i, "customer_id"), customer.to_string());
            assert_eq!(read(i, "touchpoint_key"), "branch");
            assert_eq!(read(i, "channel"), channel, "{id}");
            assert_eq!(read(i, "outcome"), "VISITED");
            let occurred: DateTime<Utc> = rows[i].try_get("", "occurred_at").expect("time");
            assert_eq!(occurred, at);
            let hash: Vec<u8> = rows[i].try_get("", "content_hash").expect("hash");
            assert_eq!(hash, ContentHash::of(id.as_bytes()).as_bytes());
        }
    }
}
