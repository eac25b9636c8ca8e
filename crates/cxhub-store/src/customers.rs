//! Customers: ingestion of feed records with identity resolution, merges and their exact
//! undoing, and reads of the unified customer.
//!
//! One ingest batch is one transaction. It reads the stored versions of the batch's records and
//! the holders of the identifiers of the records that write (on SQLite grouped by source and
//! type and by identifier kind; on PostgreSQL all in one statement), resolves every record in
//! batch order in memory with [`cxhub_domain::resolution::resolve`], then writes new
//! customers, identities, records, interactions and transactions with multi-row upserts (on
//! PostgreSQL gathered into one statement, see [`crate::sql::Inserts`]). A record that merges customers
//! flushes what came before it, so the merge sees (and records) everything the absorbed
//! customers held; merges are rare, so the common batch is one flush. Profiles of customers
//! whose contacts changed are rebuilt at the end from the contacts they hold.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use chrono::{DateTime, Utc};
use cxhub_domain::change::{self, ChangeKind, NewChange};
use cxhub_domain::feed::{
    ContactFields, IgnoredIdentifier, IngestItem, IngestResult, Ingested, Profile, ProfileSource,
    RejectedRecord, build_profile,
};
use cxhub_domain::identifier::{CustomerId, Identifier, IdentifierKind};
use cxhub_domain::record::FieldGroup;
use cxhub_domain::record::{ContentHash, Provenance, RecordKey, RecordType, StoredVersion, decide};
use cxhub_domain::repo::{CustomerView, IngestContext, MergeView, SplitOutcome};
use cxhub_domain::resolution::{
    AbsorbedCustomer, Holdings, Merge, MergeId, MergeRecord, resolve, split_plan,
};
use cxhub_domain::{Error, Result};
use sea_orm::{ConnectionTrait, DatabaseTransaction, DbBackend, QueryResult};

use crate::IN_LIST_CHUNK;
use crate::changes as change_log;
use crate::error::{DbResultExt, corrupt};
use crate::sql::{
    Column, Inserts, Pg, Sql, bytes, col, int, nullable, text, text_opt, texts, time, time_opt,
};

/// Longest chain of merge redirects followed.
pub(crate) const MAX_REDIRECTS: usize = 64;

// ------------------------------------------------------------------------------------------------
// Ingest

/// What is known about a record key during a batch: its stored (or just written) version and
/// the customer it belongs to.
struct Known {
    version: StoredVersion,
    customer: Option<CustomerId>,
}

/// Writes accumulated since the last flush.
#[derive(Default)]
struct Pending {
    customers: Vec<CustomerId>,
    identities: Vec<(Identifier, CustomerId)>,
    /// (position in the batch, customer), in batch order.
    records: Vec<(usize, CustomerId)>,
    /// Customers whose profile must be rebuilt from their stored contacts at the end.
    rebuild: BTreeSet<CustomerId>,
    /// The checked survey responses of the batch's survey response records, by position
    /// (read when their records are written).
    responses: HashMap<usize, crate::scoring::FeedResponse>,
}

/// What [`load_batch_pg`] read for a batch: stored versions of its records, holders and
/// disputes of its identifiers.
pub(crate) struct Preloaded {
    known: HashMap<RecordKey, Known>,
    holders: HashMap<Identifier, BTreeSet<CustomerId>>,
    disputed: HashSet<Identifier>,
}

/// Ingests one batch in `txn` (see the module docs). `preloaded`: what [`load_batch_pg`] read
/// for these items or for a batch containing them (PostgreSQL; read here when absent).
///
/// A survey response record that would write is first checked against its stored survey
/// ([`crate::scoring::check_feed_responses`]); one that does not fit is refused, before its
/// customer is resolved, so nothing of it is written (not even a new customer).
pub(crate) async fn ingest(
    txn: &DatabaseTransaction,
    items: &[IngestItem],
    ctx: &IngestContext,
    preloaded: Option<Preloaded>,
) -> Result<Vec<Ingested>> {
    let backend = txn.get_database_backend();
    let now = crate::now();

    // 1. Outcomes, in batch order, against the stored versions and earlier items of the batch.
    // On PostgreSQL the holders of every identifier of the batch come in the same round trip.
    let preloaded = match preloaded {
        Some(loaded) => Some(loaded),
        None if backend == DbBackend::Postgres => Some(load_batch_pg(txn, items, None).await?.1),
        None => None,
    };
    let (mut known, mut preloaded) = match preloaded {
        Some(p) => (p.known, Some((p.holders, p.disputed))),
        None => (load_versions(txn, items).await?, None),
    };
    let mut checked = crate::scoring::check_feed_responses(txn, items).await?;
    let mut refused: HashMap<usize, Vec<cxhub_domain::FieldViolation>> = HashMap::new();
    let mut responses = HashMap::new();
    let mut outcomes = Vec::with_capacity(items.len());
    for (pos, item) in items.iter().enumerate() {
        let stored = known.get(&item.key).map(|k| &k.version);
        let outcome = decide(stored, &item.version);
        // Only a version that writes is checked: a re-sent or older response stays what it
        // was, even if its survey was retired since.
        match checked.remove(&pos) {
            Some(Err(violations)) if outcome.writes() => {
                refused.insert(pos, violations);
                outcomes.push(outcome);
                continue;
            }
            Some(Ok(response)) if outcome.writes() => {
                responses.insert(pos, response);
            }
            _ => {}
        }
        if outcome.writes() {
            let customer = known.get(&item.key).and_then(|k| k.customer);
            known.insert(
                item.key.clone(),
                Known {
                    version: item.version,
                    customer,
                },
            );
        }
        outcomes.push(outcome);
    }

    // 2. Who holds the identifiers of the records that write.
    let mut wanted: BTreeSet<&Identifier> = BTreeSet::new();
    for (pos, (item, outcome)) in items.iter().zip(&outcomes).enumerate() {
        if outcome.writes() && !refused.contains_key(&pos) {
            wanted.insert(&item.anchor);
            wanted.extend(item.identifiers.iter().map(|f| &f.identifier));
        }
    }
    let (mut holders, disputed) = match preloaded.take() {
        Some(loaded) => loaded,
        None => (
            load_holders(txn, &wanted).await?,
            load_disputes(txn, &wanted).await?,
        ),
    };

    // 3. Resolve in batch order; flush before each merge.
    let mut pending = Pending {
        responses,
        ..Pending::default()
    };
    let mut redirect: HashMap<CustomerId, CustomerId> = HashMap::new();
    let mut results: Vec<Ingested> = Vec::with_capacity(items.len());
    // The customer of each key as the batch goes (writers set it when they resolve).
    let mut owner: HashMap<&RecordKey, CustomerId> = HashMap::new();
    // What to tell the change log.
    let mut created: Vec<CustomerId> = Vec::new();
    let mut merges: Vec<NewChange> = Vec::new();
    let mut touched: BTreeMap<CustomerId, BTreeSet<&'static str>> = BTreeMap::new();

    for (pos, (item, outcome)) in items.iter().zip(&outcomes).enumerate() {
        if let Some(violations) = refused.remove(&pos) {
            results.push(Err(RejectedRecord {
                index: item.index,
                violations,
            }));
            continue;
        }
        let mut ignored = item.ignored.clone();
        if !outcome.writes() {
            let customer = match owner.get(&item.key) {
                Some(c) => *c,
                None => stored_customer(&known, &item.key)?,
            };
            results.push(Ok(IngestResult {
                index: item.index,
                outcome: *outcome,
                customer,
                merged: Vec::new(),
                ignored,
            }));
            continue;
        }

        let mut ids: Vec<Identifier> = Vec::with_capacity(1 + item.identifiers.len());
        ids.push(item.anchor.clone());
        for f in &item.identifiers {
            if disputed.contains(&f.identifier) {
                ignored.push(IgnoredIdentifier {
                    field: f.field.clone(),
                    reason: "DISPUTED".into(),
                    description:
                        "an operator undid a merge this identifier caused: it links no one".into(),
                });
            } else {
                ids.push(f.identifier.clone());
            }
        }
        let local: BTreeMap<Identifier, BTreeSet<CustomerId>> = ids
            .iter()
            .filter_map(|id| holders.get(id).map(|h| (id.clone(), h.clone())))
            .collect();
        let resolution = resolve(&ids, &local, &ctx.rules);
        for (id, reason) in &resolution.ignored {
            ignored.push(IgnoredIdentifier {
                field: field_of(item, id),
                reason: reason.as_str().into(),
                description: match reason {
                    cxhub_domain::resolution::IgnoreReason::Overshared => format!(
                        "held by more than {} customers: it links no one",
                        ctx.rules.max_customers_per_identifier
                    ),
                    cxhub_domain::resolution::IgnoreReason::NotMergeable => {
                        "the hub's rules do not merge customers on this kind of identifier".into()
                    }
                },
            });
        }

        let customer = match resolution.customer {
            cxhub_domain::resolution::Target::New => {
                let c = CustomerId::generate();
                pending.customers.push(c);
                created.push(c);
                c
            }
            cxhub_domain::resolution::Target::Existing(c) => c,
        };
        let mut merged = Vec::new();
        if let Some(merge) = &resolution.merge {
            flush(txn, items, &mut pending, &ctx.priority, now).await?;
            let merge_id = absorb(txn, backend, merge, &item.key, ctx, now).await?;
            merges.push(NewChange {
                related: merge.absorbed.clone(),
                merge: Some(merge_id),
                ..NewChange::new(merge.survivor, ChangeKind::Merged)
            });
            tracing::info!(
                customer_id = %merge.survivor,
                merged = merge.absorbed.len(),
                rule = %merge.rule,
                "customers merged"
            );
            for a in &merge.absorbed {
                for held in holders.values_mut() {
                    if held.remove(a) {
                        held.insert(merge.survivor);
                    }
                }
                for target in redirect.values_mut() {
                    if target == a {
                        *target = merge.survivor;
                    }
                }
                redirect.insert(*a, merge.survivor);
                for c in owner.values_mut() {
                    if c == a {
                        *c = merge.survivor;
                    }
                }
                pending.rebuild.remove(a);
            }
            pending.rebuild.insert(merge.survivor);
            merged.clone_from(&merge.absorbed);
        }
        for id in ids {
            let held = holders.entry(id.clone()).or_default();
            if held.insert(customer) {
                touched
                    .entry(customer)
                    .or_default()
                    .insert(match id.kind() {
                        IdentifierKind::Email => FieldGroup::Email.as_str(),
                        IdentifierKind::Phone => FieldGroup::Phone.as_str(),
                        IdentifierKind::SourceId => change::SOURCE_IDS,
                    });
                pending.identities.push((id, customer));
            }
        }
        pending.records.push((pos, customer));
        owner.insert(&item.key, customer);
        let fields = touched.entry(customer).or_default();
        if item.derived.interaction.is_some() {
            fields.insert(change::INTERACTIONS);
        }
        if item.derived.transaction.is_some() {
            fields.insert(change::TRANSACTIONS);
        }
        if item.derived.contact.is_some() {
            pending.rebuild.insert(customer);
        }
        results.push(Ok(IngestResult {
            index: item.index,
            outcome: *outcome,
            customer,
            merged,
            ignored,
        }));
    }
    // 4. The last writes, then the profiles of customers whose contacts changed (read back
    // from the contacts they hold, so after the writes). When no profile needs rebuilding,
    // the change log goes with the writes: one statement on PostgreSQL instead of two.
    let mut last = Inserts::new(txn);
    flush_into(txn, &mut last, items, &mut pending, &ctx.priority, now).await?;
    if !pending.rebuild.is_empty() {
        last.run().await.db()?;
        last = Inserts::new(txn);
    }
    let rebuilt =
        rebuild_profiles_into(txn, &mut last, &pending.rebuild, &ctx.priority, now).await?;
    for result in results.iter_mut().flatten() {
        if let Some(survivor) = redirect.get(&result.customer) {
            result.customer = *survivor;
        }
    }

    // 5. The change log: customers created, merges in order, then one update per customer.
    let live = |c: &CustomerId| *redirect.get(c).unwrap_or(c);
    let mut log: Vec<NewChange> = created
        .iter()
        .filter(|c| !redirect.contains_key(c))
        .map(|c| NewChange::new(*c, ChangeKind::Created))
        .collect();
    log.extend(merges);
    let mut updates: BTreeMap<CustomerId, BTreeSet<&'static str>> = BTreeMap::new();
    for (customer, fields) in touched.into_iter().chain(rebuilt) {
        updates.entry(live(&customer)).or_default().extend(fields);
    }
    let fresh: HashSet<CustomerId> = created.iter().copied().collect();
    log.extend(
        updates
            .into_iter()
            .filter(|(c, fields)| !fields.is_empty() && !fresh.contains(c))
            .map(|(c, fields)| NewChange::updated(c, fields)),
    );
    change_log::gather(&mut last, &log, now).await?;
    last.run().await.db()?;
    Ok(results)
}

fn stored_customer(known: &HashMap<RecordKey, Known>, key: &RecordKey) -> Result<CustomerId> {
    known
        .get(key)
        .and_then(|k| k.customer)
        .ok_or_else(|| corrupt(format!("record {key:?} has no customer")))
}

fn field_of(item: &IngestItem, id: &Identifier) -> String {
    item.identifiers
        .iter()
        .find(|f| &f.identifier == id)
        .map_or_else(
            || "customer.source_customer_id".to_owned(),
            |f| f.field.clone(),
        )
}

async fn load_versions(
    txn: &DatabaseTransaction,
    items: &[IngestItem],
) -> Result<HashMap<RecordKey, Known>> {
    let backend = txn.get_database_backend();
    let mut groups: BTreeMap<(&str, RecordType), BTreeSet<&str>> = BTreeMap::new();
    for item in items {
        groups
            .entry((item.key.source.as_str(), item.key.record_type))
            .or_default()
            .insert(item.key.record_id.as_str());
    }
    let mut known = HashMap::with_capacity(items.len());
    for ((source, record_type), ids) in groups {
        let ids: Vec<&str> = ids.into_iter().collect();
        for chunk in ids.chunks(IN_LIST_CHUNK) {
            let mut sql = Sql::new(
                backend,
                "SELECT record_id, updated_at, content_hash, customer_id FROM feed_records WHERE source = ",
            );
            sql.bind(text(source))
                .push(" AND record_type = ")
                .bind(text(record_type.as_str()))
                .push(" AND record_id")
                .in_texts(chunk.iter().map(|id| (*id).to_owned()));
            for row in txn.query_all_raw(sql.build()).await.db()? {
                let record_id: String = get_col(&row, "record_id")?;
                let updated_at: DateTime<Utc> = get_col(&row, "updated_at")?;
                let hash: Vec<u8> = get_col(&row, "content_hash")?;
                let customer: String = get_col(&row, "customer_id")?;
                known.insert(
                    RecordKey {
                        source: source.to_owned(),
                        record_type,
                        record_id,
                    },
                    Known {
                        version: StoredVersion {
                            updated_at,
                            hash: ContentHash::from_slice(&hash).map_err(corrupt)?,
                        },
                        customer: Some(parse_customer(&customer)?),
                    },
                );
            }
        }
    }
    Ok(known)
}

/// What a batch looks up, on PostgreSQL in one statement: the stored version of each record
/// (its key joined as three arrays to the primary key), and the holders and disputes of every
/// identifier of the batch (those of records that turn out not to write are not used), and
/// with `secret` named, that secret of `privacy_keys` (the suppression key, which the caller
/// needs before it knows which records of the batch to ingest).
/// Round trips, not rows, are what a batch pays for there.
pub(crate) async fn load_batch_pg(
    txn: &DatabaseTransaction,
    items: &[IngestItem],
    secret: Option<&str>,
) -> Result<(Option<String>, Preloaded)> {
    let mut known = HashMap::with_capacity(items.len());
    let mut holders: HashMap<Identifier, BTreeSet<CustomerId>> = HashMap::new();
    let mut disputed = HashSet::new();
    let mut key = None;
    if items.is_empty() {
        let loaded = Preloaded {
            known,
            holders,
            disputed,
        };
        return Ok((key, loaded));
    }
    let keys: BTreeSet<&RecordKey> = items.iter().map(|i| &i.key).collect();
    let ids: BTreeSet<&Identifier> = items
        .iter()
        .flat_map(|i| std::iter::once(&i.anchor).chain(i.identifiers.iter().map(|f| &f.identifier)))
        .collect();
    let mut sql = Sql::new(
        DbBackend::Postgres,
        "SELECT 'v' AS what, f.source AS a, f.record_type AS b, f.record_id AS c, \
         f.updated_at, f.content_hash, f.customer_id, false AS disputed FROM UNNEST(",
    );
    sql.bind(texts(keys.iter().map(|k| k.source.clone())))
        .push("::text[], ")
        .bind(texts(
            keys.iter().map(|k| k.record_type.as_str().to_owned()),
        ))
        .push("::text[], ")
        .bind(texts(keys.iter().map(|k| k.record_id.clone())))
        .push(
            "::text[]) AS k(source, record_type, record_id) JOIN feed_records f \
             ON f.source = k.source COLLATE \"C\" AND f.record_type = k.record_type COLLATE \"C\" \
             AND f.record_id = k.record_id COLLATE \"C\" \
             UNION ALL SELECT 'i', k.kind, k.value, NULL, NULL::timestamptz, NULL::bytea, \
             c.customer_id, d.kind IS NOT NULL FROM UNNEST(",
        )
        .bind(texts(ids.iter().map(|id| id.kind().as_str().to_owned())))
        .push("::text[], ")
        .bind(texts(ids.iter().map(|id| id.value())))
        .push(
            "::text[]) AS k(kind, value) \
             LEFT JOIN customer_identities c \
             ON c.kind = k.kind COLLATE \"C\" AND c.value = k.value COLLATE \"C\" \
             LEFT JOIN identity_disputes d ON d.kind = k.kind AND d.value = k.value",
        );
    // set_config is parallel-unsafe, so the statement never plans parallel workers: on a
    // busy 2-core machine the leader waited up to 90 ms for workers to start on a lookup
    // that takes 5 ms alone (PostgreSQL's auto_explain during the ingest bench). It runs
    // only on the key's row (none unless `secret` is named), making the rest of the
    // transaction serial too (`SET LOCAL`), which its statements are anyway.
    sql.push(
        " UNION ALL SELECT 'k', secret, NULL, NULL, NULL::timestamptz, NULL::bytea, NULL, \
         false FROM privacy_keys WHERE name = ",
    )
    .bind(text_opt(secret))
    .push(" AND set_config('max_parallel_workers_per_gather', '0', true) = '0'");
    for row in txn.query_all_raw(sql.build()).await.db()? {
        let what: String = get_col(&row, "what")?;
        if what == "k" {
            key = Some(get_col(&row, "a")?);
            continue;
        }
        let customer: Option<String> = get_col(&row, "customer_id")?;
        if what == "v" {
            let record_type: String = get_col(&row, "b")?;
            let hash: Vec<u8> = get_col(&row, "content_hash")?;
            let customer = customer.ok_or_else(|| corrupt("a record without a customer"))?;
            known.insert(
                RecordKey {
                    source: get_col(&row, "a")?,
                    record_type: record_type.parse().map_err(corrupt)?,
                    record_id: get_col(&row, "c")?,
                },
                Known {
                    version: StoredVersion {
                        updated_at: get_col(&row, "updated_at")?,
                        hash: ContentHash::from_slice(&hash).map_err(corrupt)?,
                    },
                    customer: Some(parse_customer(&customer)?),
                },
            );
            continue;
        }
        let kind: String = get_col(&row, "a")?;
        let value: String = get_col(&row, "b")?;
        let id = identifier(parse_kind(&kind)?, &value)?;
        let is_disputed: bool = get_col(&row, "disputed")?;
        if is_disputed && id.kind() != IdentifierKind::SourceId {
            disputed.insert(id.clone());
        }
        if let Some(customer) = customer {
            holders
                .entry(id)
                .or_default()
                .insert(parse_customer(&customer)?);
        }
    }
    let loaded = Preloaded {
        known,
        holders,
        disputed,
    };
    Ok((key, loaded))
}

async fn load_holders(
    txn: &DatabaseTransaction,
    wanted: &BTreeSet<&Identifier>,
) -> Result<HashMap<Identifier, BTreeSet<CustomerId>>> {
    let mut holders: HashMap<Identifier, BTreeSet<CustomerId>> = HashMap::new();
    for (kind, values) in by_kind(wanted) {
        for chunk in values.chunks(IN_LIST_CHUNK) {
            let mut sql = Sql::new(
                txn.get_database_backend(),
                "SELECT value, customer_id FROM customer_identities WHERE kind = ",
            );
            sql.bind(text(kind.as_str()))
                .push(" AND value")
                .in_texts(chunk.iter().cloned());
            for row in txn.query_all_raw(sql.build()).await.db()? {
                let value: String = get_col(&row, "value")?;
                let customer: String = get_col(&row, "customer_id")?;
                holders
                    .entry(identifier(kind, &value)?)
                    .or_default()
                    .insert(parse_customer(&customer)?);
            }
        }
    }
    Ok(holders)
}

async fn load_disputes(
    txn: &DatabaseTransaction,
    wanted: &BTreeSet<&Identifier>,
) -> Result<HashSet<Identifier>> {
    let mut disputed = HashSet::new();
    for (kind, values) in by_kind(wanted) {
        if kind == IdentifierKind::SourceId {
            continue;
        }
        for chunk in values.chunks(IN_LIST_CHUNK) {
            let mut sql = Sql::new(
                txn.get_database_backend(),
                "SELECT value FROM identity_disputes WHERE kind = ",
            );
            sql.bind(text(kind.as_str()))
                .push(" AND value")
                .in_texts(chunk.iter().cloned());
            for row in txn.query_all_raw(sql.build()).await.db()? {
                let value: String = get_col(&row, "value")?;
                disputed.insert(identifier(kind, &value)?);
            }
        }
    }
    Ok(disputed)
}

fn by_kind<'a>(
    ids: impl IntoIterator<Item = &'a &'a Identifier>,
) -> BTreeMap<IdentifierKind, Vec<String>> {
    let mut groups: BTreeMap<IdentifierKind, Vec<String>> = BTreeMap::new();
    for id in ids {
        groups.entry(id.kind()).or_default().push(id.value());
    }
    groups
}

/// Inserts the customers created since the last flush, with their profiles built from the
/// contacts of this batch (a customer created in this batch holds no other record, and one
/// involved in a merge was flushed before it), and removes them from `pending.rebuild`.
async fn write_new_customers(
    txn: &DatabaseTransaction,
    inserts: &mut Inserts<'_, DatabaseTransaction>,
    items: &[IngestItem],
    pending: &mut Pending,
    priority: &cxhub_domain::record::SourcePriority,
    now: DateTime<Utc>,
) -> Result<()> {
    let customers = std::mem::take(&mut pending.customers);
    if customers.is_empty() {
        return Ok(());
    }
    let fresh: HashSet<CustomerId> = customers.iter().copied().collect();
    let mut contacts: HashMap<CustomerId, Vec<ProfileSource>> = HashMap::new();
    for (pos, customer) in last_writes(items, pending.records.clone()) {
        let item = &items[pos];
        if let (true, Some(fields)) = (fresh.contains(&customer), &item.derived.contact) {
            contacts.entry(customer).or_default().push(ProfileSource {
                provenance: Provenance {
                    source: item.key.source.clone(),
                    updated_at: item.version.updated_at,
                    record_id: item.key.record_id.clone(),
                },
                fields: fields.clone(),
            });
        }
    }
    let rows: Vec<(String, Profile)> = customers
        .iter()
        .map(|c| {
            pending.rebuild.remove(c);
            let profile = contacts
                .get(c)
                .map(|list| build_profile(list, priority))
                .unwrap_or_default();
            (c.to_string(), profile)
        })
        .collect();
    upsert_customers(txn, inserts, &rows, true, now).await
}

/// Writes what is pending: new customers, identities, records, interactions, transactions.
async fn flush(
    txn: &DatabaseTransaction,
    items: &[IngestItem],
    pending: &mut Pending,
    priority: &cxhub_domain::record::SourcePriority,
    now: DateTime<Utc>,
) -> Result<()> {
    let mut inserts = Inserts::new(txn);
    flush_into(txn, &mut inserts, items, pending, priority, now).await?;
    inserts.run().await.db()
}

/// [`flush`] among `inserts` (written when they run; on SQLite at once).
async fn flush_into(
    txn: &DatabaseTransaction,
    inserts: &mut Inserts<'_, DatabaseTransaction>,
    items: &[IngestItem],
    pending: &mut Pending,
    priority: &cxhub_domain::record::SourcePriority,
    now: DateTime<Utc>,
) -> Result<()> {
    write_new_customers(txn, inserts, items, pending, priority, now).await?;

    let identities = std::mem::take(&mut pending.identities);
    let rows = identities
        .into_iter()
        .map(|(id, c)| {
            vec![
                text(id.kind().as_str()),
                text(id.value()),
                text(c.to_string()),
                time(now),
            ]
        })
        .collect();
    inserts
        .add(
            "customer_identities",
            &[
                col("kind", Pg::Text),
                col("value", Pg::Text),
                col("customer_id", Pg::Text),
                col("created_at", Pg::Time),
            ],
            rows,
            "ON CONFLICT (kind, value, customer_id) DO NOTHING",
        )
        .await
        .db()?;

    let records = last_writes(items, std::mem::take(&mut pending.records));
    crate::customer_query::write_record_facts(inserts, items, &records).await?;
    let responses = records
        .iter()
        .filter_map(|(pos, customer)| {
            pending
                .responses
                .get(pos)
                .map(|response| (&items[*pos], response, *customer))
        })
        .collect();
    crate::scoring::write_feed_responses(txn, inserts, responses, now).await?;
    let mut rows = Vec::with_capacity(records.len());
    let mut interactions = Vec::new();
    let mut transactions = Vec::new();
    for (pos, customer) in &records {
        let item = &items[*pos];
        let contact_json = match &item.derived.contact {
            Some(c) => Some(serde_json::to_string(c).map_err(corrupt)?),
            None => None,
        };
        let key = || {
            [
                text(item.key.source.as_str()),
                text(item.key.record_type.as_str()),
                text(item.key.record_id.as_str()),
            ]
        };
        rows.push(
            key()
                .into_iter()
                .chain([
                    time(item.version.updated_at),
                    bytes(item.version.hash.as_bytes().to_vec()),
                    text(customer.to_string()),
                    text(source_customer_id(item)),
                    bytes(item.payload.clone()),
                    text_opt(contact_json),
                    time(now),
                ])
                .collect(),
        );
        if let Some(x) = &item.derived.interaction {
            interactions.push(
                key()
                    .into_iter()
                    .chain([
                        text(customer.to_string()),
                        text(x.touchpoint_key.as_str()),
                        text(x.channel.as_str()),
                        time(x.occurred_at),
                        text(x.outcome.as_str()),
                        bytes(item.version.hash.as_bytes().to_vec()),
                    ])
                    .collect(),
            );
        }
        if let Some(t) = &item.derived.transaction {
            transactions.push(
                key()
                    .into_iter()
                    .chain([
                        text(customer.to_string()),
                        text(t.kind.as_str()),
                        int(t.amount.amount_minor),
                        text(t.amount.currency.code()),
                        time(t.occurred_at),
                        text(t.status.as_str()),
                        time_opt(t.due_at),
                    ])
                    .collect(),
            );
        }
    }
    let key_columns = [
        col("source", Pg::Text),
        col("record_type", Pg::Text),
        col("record_id", Pg::Text),
    ];
    let with_key =
        |rest: &[Column]| -> Vec<Column> { key_columns.iter().chain(rest).copied().collect() };
    inserts
        .add(
            "feed_records",
            &with_key(&[
                col("updated_at", Pg::Time),
                col("content_hash", Pg::Bytes),
                col("customer_id", Pg::Text),
                col("source_customer_id", Pg::Text),
                col("payload", Pg::Bytes),
                nullable("contact_json", Pg::Text),
                col("ingested_at", Pg::Time),
            ]),
            rows,
            "ON CONFLICT (source, record_type, record_id) DO UPDATE SET \
         updated_at = excluded.updated_at, content_hash = excluded.content_hash, \
         customer_id = excluded.customer_id, source_customer_id = excluded.source_customer_id, \
         payload = excluded.payload, contact_json = excluded.contact_json, \
         ingested_at = excluded.ingested_at",
        )
        .await
        .db()?;
    inserts
        .add(
            "interactions",
            &with_key(&[
                col("customer_id", Pg::Text),
                col("touchpoint_key", Pg::Text),
                col("channel", Pg::Text),
                col("occurred_at", Pg::Time),
                col("outcome", Pg::Text),
                col("content_hash", Pg::Bytes),
            ]),
            interactions,
            "ON CONFLICT (source, record_type, record_id) DO UPDATE SET \
         customer_id = excluded.customer_id, touchpoint_key = excluded.touchpoint_key, \
         channel = excluded.channel, occurred_at = excluded.occurred_at, \
         outcome = excluded.outcome, content_hash = excluded.content_hash",
        )
        .await
        .db()?;
    inserts
        .add(
            "transactions",
            &with_key(&[
                col("customer_id", Pg::Text),
                col("kind", Pg::Text),
                col("amount_minor", Pg::Int),
                col("currency_code", Pg::Text),
                col("occurred_at", Pg::Time),
                col("status", Pg::Text),
                nullable("due_at", Pg::Time),
            ]),
            transactions,
            "ON CONFLICT (source, record_type, record_id) DO UPDATE SET \
         customer_id = excluded.customer_id, kind = excluded.kind, \
         amount_minor = excluded.amount_minor, currency_code = excluded.currency_code, \
         occurred_at = excluded.occurred_at, status = excluded.status, due_at = excluded.due_at",
        )
        .await
        .db()?;
    crate::loyalty_events::gather(inserts, items, &records, now).await
}

/// The last pending write of each key, in batch order (a batch may carry two versions of one
/// record; the later one is what is stored).
fn last_writes(
    items: &[IngestItem],
    records: Vec<(usize, CustomerId)>,
) -> Vec<(usize, CustomerId)> {
    let mut records = records;
    let mut seen: HashSet<&RecordKey> = HashSet::with_capacity(records.len());
    records.reverse();
    records.retain(|(pos, _)| seen.insert(&items[*pos].key));
    records.reverse();
    records
}

fn source_customer_id(item: &IngestItem) -> String {
    match &item.anchor {
        Identifier::SourceId { id, .. } => id.clone(),
        other => other.value(),
    }
}

/// Folds the absorbed customers of `merge` into its survivor and records the merge: one read
/// of what they all hold, then one statement per table for all of them (whatever the number
/// of customers absorbed or of identifiers they share with the survivor).
async fn absorb(
    txn: &DatabaseTransaction,
    backend: DbBackend,
    merge: &Merge,
    trigger: &RecordKey,
    ctx: &IngestContext,
    now: DateTime<Utc>,
) -> Result<MergeId> {
    let survivor = merge.survivor.to_string();
    let gone: Vec<String> = merge.absorbed.iter().map(ToString::to_string).collect();
    let mut holdings = holdings_of(txn, &merge.survivor, &merge.absorbed).await?;
    let survivor_holds = holdings
        .remove(&merge.survivor)
        .map(|h| h.identifiers)
        .unwrap_or_default();
    let mut absorbed = Vec::with_capacity(merge.absorbed.len());
    let mut survivor_shared = BTreeSet::new();
    let mut doomed = Vec::new();
    // Identifiers an earlier absorbed customer moves to the survivor: a later one holding the
    // same drops its row instead (the survivor can hold an identifier once), and the split
    // gives it back to each of them from the merge record.
    let mut moved: HashSet<Identifier> = HashSet::new();
    for (a, a_text) in merge.absorbed.iter().zip(&gone) {
        let held = holdings.remove(a).unwrap_or_default();
        for id in &held.identifiers {
            if survivor_holds.contains(id) {
                survivor_shared.insert(id.clone());
            } else if moved.insert(id.clone()) {
                continue;
            }
            doomed.push([
                text(a_text.as_str()),
                text(id.kind().as_str()),
                text(id.value()),
            ]);
        }
        absorbed.push(AbsorbedCustomer { customer: *a, held });
    }
    // The absorbed customers' rows of identifiers the survivor holds already (or gets from
    // another of them) go; the rest of what they hold moves to the survivor.
    for chunk in doomed.chunks(crate::MAX_BIND_PARAMS / 3) {
        let mut sql = Sql::new(
            backend,
            "DELETE FROM customer_identities WHERE (customer_id, kind, value) IN (VALUES ",
        );
        for (i, row) in chunk.iter().enumerate() {
            if i > 0 {
                sql.push(", ");
            }
            sql.tuple(row.clone());
        }
        sql.push(")");
        txn.execute_raw(sql.build()).await.db()?;
    }
    for table in [
        "customer_identities",
        "feed_records",
        "interactions",
        "transactions",
    ] {
        let mut sql = Sql::new(backend, &format!("UPDATE {table} SET customer_id = "));
        sql.bind(text(survivor.as_str()))
            .push(" WHERE customer_id")
            .in_texts(gone.iter().cloned());
        txn.execute_raw(sql.build()).await.db()?;
    }
    // The absorbed customers' scores describe customers that no longer stand alone; the
    // survivor is rescored from the merge's change-log entry.
    let mut sql = Sql::new(backend, "DELETE FROM customer_scores WHERE customer_id");
    sql.in_texts(gone.iter().cloned());
    txn.execute_raw(sql.build()).await.db()?;
    let mut sql = Sql::new(backend, "UPDATE customers SET merged_into = ");
    sql.bind(text(survivor.as_str()))
        .push(", updated_at = ")
        .bind(time(now))
        .push(", revision = revision + 1 WHERE id")
        .in_texts(gone);
    txn.execute_raw(sql.build()).await.db()?;
    let record = MergeRecord {
        survivor: merge.survivor,
        absorbed,
        rule: merge.rule,
        because: merge.because.clone(),
        trigger: Some(trigger.clone()),
        survivor_shared,
    };
    let mut sql = Sql::new(
        backend,
        "INSERT INTO customer_merges (id, survivor_id, rule, record_json, merged_at, merged_by) VALUES ",
    );
    let id = MergeId::generate();
    sql.tuple([
        text(id.to_string()),
        text(survivor),
        text(merge.rule.as_str()),
        text(serde_json::to_string(&record).map_err(corrupt)?),
        time(now),
        text(ctx.principal.as_str()),
    ]);
    txn.execute_raw(sql.build()).await.db()?;
    Ok(id)
}

/// What the customers of a merge hold, in one statement: the identifiers of `survivor` and
/// of each of `absorbed`, and the records and direct interactions (record type
/// `interaction`) of each of `absorbed`.
async fn holdings_of(
    conn: &impl ConnectionTrait,
    survivor: &CustomerId,
    absorbed: &[CustomerId],
) -> Result<HashMap<CustomerId, Holdings>> {
    let gone = || absorbed.iter().map(ToString::to_string);
    let mut sql = Sql::new(
        conn.get_database_backend(),
        "SELECT 'i' AS what, customer_id, kind AS a, value AS b, '' AS c \
         FROM customer_identities WHERE customer_id",
    );
    sql.in_texts(std::iter::once(survivor.to_string()).chain(gone()))
        .push(
            " UNION ALL SELECT 'r', customer_id, source, record_type, record_id \
             FROM feed_records WHERE customer_id",
        )
        .in_texts(gone())
        .push(
            " UNION ALL SELECT 'x', customer_id, source, record_id, '' FROM interactions \
             WHERE record_type = 'interaction' AND customer_id",
        )
        .in_texts(gone());
    let mut out: HashMap<CustomerId, Holdings> = HashMap::new();
    for row in conn.query_all_raw(sql.build()).await.db()? {
        let what: String = get_col(&row, "what")?;
        let customer: String = get_col(&row, "customer_id")?;
        let held = out.entry(parse_customer(&customer)?).or_default();
        let a: String = get_col(&row, "a")?;
        let b: String = get_col(&row, "b")?;
        match what.as_str() {
            "i" => {
                held.identifiers.insert(identifier(parse_kind(&a)?, &b)?);
            }
            "r" => {
                let record_id: String = get_col(&row, "c")?;
                held.records.insert(RecordKey {
                    source: a,
                    record_type: b.parse().map_err(corrupt)?,
                    record_id,
                });
            }
            _ => {
                held.interactions.insert((a, b));
            }
        }
    }
    Ok(out)
}

/// The live customer holding the source customer id (`source`, `id`), created (with that
/// identifier) when no one holds it. Call within [`crate::Store::begin_identity`]'s
/// transaction, so that concurrent callers never create two.
pub(crate) async fn customer_for_source(
    txn: &DatabaseTransaction,
    source: &str,
    id: &str,
) -> Result<CustomerId> {
    let backend = txn.get_database_backend();
    let value = Identifier::SourceId {
        source: source.to_owned(),
        id: id.to_owned(),
    }
    .value();
    let mut sql = Sql::new(
        backend,
        "SELECT customer_id FROM customer_identities WHERE kind = 'source_id' AND value = ",
    );
    sql.bind(text(value.as_str())).push(" ORDER BY customer_id");
    if let Some(row) = txn.query_one_raw(sql.build()).await.db()? {
        let customer: String = get_col(&row, "customer_id")?;
        return live(txn, parse_customer(&customer)?).await;
    }
    let customer = CustomerId::generate();
    let anchor = Identifier::SourceId {
        source: source.to_owned(),
        id: id.to_owned(),
    };
    let mut pending = Pending {
        customers: vec![customer],
        identities: vec![(anchor, customer)],
        ..Pending::default()
    };
    let now = crate::now();
    flush(
        txn,
        &[],
        &mut pending,
        &cxhub_domain::record::SourcePriority::new(),
        now,
    )
    .await?;
    change_log::append(txn, &[NewChange::new(customer, ChangeKind::Created)], now).await?;
    Ok(customer)
}

/// Rebuilds the profile of each customer from the contacts it holds.
pub(crate) async fn rebuild_profiles(
    txn: &DatabaseTransaction,
    customers: &BTreeSet<CustomerId>,
    priority: &cxhub_domain::record::SourcePriority,
    now: DateTime<Utc>,
) -> Result<Vec<(CustomerId, BTreeSet<&'static str>)>> {
    let mut inserts = Inserts::new(txn);
    let changed = rebuild_profiles_into(txn, &mut inserts, customers, priority, now).await?;
    inserts.run().await.db()?;
    Ok(changed)
}

/// [`rebuild_profiles`] with the profile writes among `inserts` (written when they run); the
/// changed field groups are known before.
async fn rebuild_profiles_into(
    txn: &DatabaseTransaction,
    inserts: &mut Inserts<'_, DatabaseTransaction>,
    customers: &BTreeSet<CustomerId>,
    priority: &cxhub_domain::record::SourcePriority,
    now: DateTime<Utc>,
) -> Result<Vec<(CustomerId, BTreeSet<&'static str>)>> {
    if customers.is_empty() {
        return Ok(Vec::new());
    }
    let backend = txn.get_database_backend();
    let ids: Vec<String> = customers.iter().map(ToString::to_string).collect();
    let before = stored_profiles(txn, &ids).await?;
    let mut contacts: BTreeMap<String, Vec<ProfileSource>> = BTreeMap::new();
    for chunk in ids.chunks(IN_LIST_CHUNK) {
        let mut sql = Sql::new(
            backend,
            "SELECT customer_id, source, record_id, updated_at, contact_json FROM feed_records \
             WHERE record_type = 'contact' AND customer_id IN ",
        );
        sql.list(chunk.iter().map(|c| text(c.as_str())));
        for row in txn.query_all_raw(sql.build()).await.db()? {
            let customer: String = get_col(&row, "customer_id")?;
            let json: Option<String> = get_col(&row, "contact_json")?;
            let fields: ContactFields = match json {
                Some(json) => serde_json::from_str(&json).map_err(corrupt)?,
                None => continue,
            };
            contacts.entry(customer).or_default().push(ProfileSource {
                provenance: Provenance {
                    source: get_col(&row, "source")?,
                    updated_at: get_col(&row, "updated_at")?,
                    record_id: get_col(&row, "record_id")?,
                },
                fields,
            });
        }
    }
    let empty = Vec::new();
    let rows: Vec<(String, Profile)> = ids
        .into_iter()
        .map(|id| {
            let profile = build_profile(contacts.get(&id).unwrap_or(&empty), priority);
            (id, profile)
        })
        .collect();
    upsert_customers(txn, inserts, &rows, false, now).await?;
    let mut changed = Vec::with_capacity(rows.len());
    for ((id, profile), customer) in rows.iter().zip(customers) {
        let groups = match before.get(id) {
            Some(old) => change::changed_groups(old, profile),
            None => Vec::new(),
        };
        changed.push((*customer, groups.into_iter().collect()));
    }
    Ok(changed)
}

/// The profiles stored for `ids` (those that exist), by id.
async fn stored_profiles(
    txn: &DatabaseTransaction,
    ids: &[String],
) -> Result<HashMap<String, Profile>> {
    let backend = txn.get_database_backend();
    let mut profiles = HashMap::with_capacity(ids.len());
    for chunk in ids.chunks(IN_LIST_CHUNK) {
        let mut sql = Sql::new(
            backend,
            "SELECT id, given_name, family_name, addresses_json, preferred_language, \
             consents_json, account_id, lifecycle_stage FROM customers WHERE id",
        );
        sql.in_texts(chunk.iter().cloned());
        for row in txn.query_all_raw(sql.build()).await.db()? {
            let addresses: String = get_col(&row, "addresses_json")?;
            let consents: String = get_col(&row, "consents_json")?;
            let stage: Option<String> = get_col(&row, "lifecycle_stage")?;
            profiles.insert(
                get_col::<String>(&row, "id")?,
                Profile {
                    given_name: get_col(&row, "given_name")?,
                    family_name: get_col(&row, "family_name")?,
                    addresses: serde_json::from_str(&addresses).map_err(corrupt)?,
                    preferred_language: get_col(&row, "preferred_language")?,
                    consents: serde_json::from_str(&consents).map_err(corrupt)?,
                    account_id: get_col(&row, "account_id")?,
                    lifecycle_stage: stage.map(|s| s.parse().map_err(corrupt)).transpose()?,
                    provenance: BTreeMap::new(),
                },
            );
        }
    }
    Ok(profiles)
}

/// Writes customers with their profiles: new ones are inserted, existing ones get the profile
/// (and a new revision). `fresh`: every row is a customer created in this transaction (so it
/// has no name keys to replace yet).
async fn upsert_customers(
    txn: &DatabaseTransaction,
    inserts: &mut Inserts<'_, DatabaseTransaction>,
    rows: &[(String, Profile)],
    fresh: bool,
    now: DateTime<Utc>,
) -> Result<()> {
    crate::customer_query::index_names(txn, inserts, rows, fresh).await?;
    let mut values = Vec::with_capacity(rows.len());
    for (id, p) in rows {
        values.push(vec![
            text(id.as_str()),
            text_opt(None::<String>),
            text(p.given_name.as_str()),
            text(p.family_name.as_str()),
            text(serde_json::to_string(&p.addresses).map_err(corrupt)?),
            text(p.preferred_language.as_str()),
            text(serde_json::to_string(&p.consents).map_err(corrupt)?),
            text(p.account_id.as_str()),
            text_opt(p.lifecycle_stage.map(|s| s.as_str())),
            text(serde_json::to_string(&p.provenance).map_err(corrupt)?),
            int(0),
            time(now),
            time(now),
        ]);
    }
    inserts
        .add(
            "customers",
            &[
                col("id", Pg::Text),
                nullable("merged_into", Pg::Text),
                col("given_name", Pg::Text),
                col("family_name", Pg::Text),
                col("addresses_json", Pg::Text),
                col("preferred_language", Pg::Text),
                col("consents_json", Pg::Text),
                col("account_id", Pg::Text),
                nullable("lifecycle_stage", Pg::Text),
                col("provenance_json", Pg::Text),
                col("revision", Pg::Int),
                col("created_at", Pg::Time),
                col("updated_at", Pg::Time),
            ],
            values,
            "ON CONFLICT (id) DO UPDATE SET given_name = excluded.given_name, \
         family_name = excluded.family_name, addresses_json = excluded.addresses_json, \
         preferred_language = excluded.preferred_language, consents_json = excluded.consents_json, \
         account_id = excluded.account_id, lifecycle_stage = excluded.lifecycle_stage, \
         provenance_json = excluded.provenance_json, revision = customers.revision + 1, \
         updated_at = excluded.updated_at",
        )
        .await
        .db()
}

// ------------------------------------------------------------------------------------------------
// Reads

/// The live customer `id` redirects to (itself when not merged). `NotFound` if unknown.
pub(crate) async fn live(conn: &impl ConnectionTrait, id: CustomerId) -> Result<CustomerId> {
    let mut current = id;
    for _ in 0..MAX_REDIRECTS {
        let mut sql = Sql::new(
            conn.get_database_backend(),
            "SELECT merged_into FROM customers WHERE id = ",
        );
        sql.bind(text(current.to_string()));
        let Some(row) = conn.query_one_raw(sql.build()).await.db()? else {
            return Err(Error::not_found("customer", id.to_string()));
        };
        let merged_into: Option<String> = get_col(&row, "merged_into")?;
        match merged_into {
            None => return Ok(current),
            Some(next) => current = parse_customer(&next)?,
        }
    }
    Err(corrupt(format!(
        "redirect chain from customer {id} too long"
    )))
}

/// Reads a customer, following redirects (one statement per hop; see
/// [`crate::customer_query::read_view`]).
pub(crate) async fn read(
    conn: &impl crate::lite::Read,
    requested: CustomerId,
) -> Result<CustomerView> {
    crate::customer_query::read_view(conn, requested).await
}

/// The merges `customer` (after redirects) survived, newest first.
pub(crate) async fn merges(
    conn: &impl ConnectionTrait,
    customer: CustomerId,
) -> Result<Vec<MergeView>> {
    let id = live(conn, customer).await?;
    let mut sql = Sql::new(
        conn.get_database_backend(),
        "SELECT * FROM customer_merges WHERE survivor_id = ",
    );
    sql.bind(text(id.to_string()))
        .push(" ORDER BY merged_at DESC, id DESC");
    conn.query_all_raw(sql.build())
        .await
        .db()?
        .iter()
        .map(merge_view)
        .collect()
}

fn merge_view(row: &QueryResult) -> Result<MergeView> {
    let id: String = get_col(row, "id")?;
    let json: String = get_col(row, "record_json")?;
    Ok(MergeView {
        id: id.parse().map_err(corrupt)?,
        record: serde_json::from_str(&json).map_err(corrupt)?,
        merged_at: get_col(row, "merged_at")?,
        merged_by: get_col(row, "merged_by")?,
        split_at: get_col(row, "split_at")?,
        split_by: get_col(row, "split_by")?,
    })
}

// ------------------------------------------------------------------------------------------------
// Split

/// Undoes a merge (see [`cxhub_domain::repo::CustomerRepo::split`]).
pub(crate) async fn split(
    txn: &DatabaseTransaction,
    merge_id: MergeId,
    ctx: &IngestContext,
) -> Result<SplitOutcome> {
    let backend = txn.get_database_backend();
    let now = crate::now();
    let mut sql = Sql::new(backend, "SELECT * FROM customer_merges WHERE id = ");
    sql.bind(text(merge_id.to_string()));
    let row = txn
        .query_one_raw(sql.build())
        .await
        .db()?
        .ok_or_else(|| Error::not_found("merge", merge_id.to_string()))?;
    let mut merge = merge_view(&row)?;
    if merge.split_at.is_some() {
        return Err(Error::precondition(
            "MERGE_ALREADY_UNDONE",
            format!("merge {merge_id} was undone already"),
        ));
    }
    let survivor = merge.record.survivor;
    let survivor_text = survivor.to_string();
    let mut sql = Sql::new(
        backend,
        "SELECT COUNT(*) AS n FROM customer_merges WHERE survivor_id = ",
    );
    sql.bind(text(survivor_text.as_str()))
        .push(" AND split_at IS NULL AND (merged_at > ")
        .bind(time(merge.merged_at))
        .push(" OR (merged_at = ")
        .bind(time(merge.merged_at))
        .push(" AND id > ")
        .bind(text(merge_id.to_string()))
        .push("))");
    let later: i64 = match txn.query_one_raw(sql.build()).await.db()? {
        Some(row) => get_col(&row, "n")?,
        None => 0,
    };
    if later > 0 || live(txn, survivor).await? != survivor {
        return Err(Error::precondition(
            "MERGE_NOT_LATEST",
            format!(
                "customer {survivor} was merged again after merge {merge_id}: undo the later merges first (ListCustomerMerges lists them newest first)"
            ),
        ));
    }

    let plan = split_plan(&merge.record);
    for id in &plan.survivor_loses_identifiers {
        let mut sql = Sql::new(
            backend,
            "DELETE FROM customer_identities WHERE customer_id = ",
        );
        sql.bind(text(survivor_text.as_str()))
            .push(" AND kind = ")
            .bind(text(id.kind().as_str()))
            .push(" AND value = ")
            .bind(text(id.value()));
        txn.execute_raw(sql.build()).await.db()?;
    }
    let mut customers = vec![survivor];
    for restored in &plan.restore {
        let a = restored.customer.to_string();
        customers.push(restored.customer);
        for id in &restored.held.identifiers {
            let mut sql = Sql::new(
                backend,
                "INSERT INTO customer_identities (kind, value, customer_id, created_at) VALUES ",
            );
            sql.tuple([
                text(id.kind().as_str()),
                text(id.value()),
                text(a.as_str()),
                time(now),
            ])
            .push(" ON CONFLICT (kind, value, customer_id) DO NOTHING");
            txn.execute_raw(sql.build()).await.db()?;
        }
        let mut by_group: BTreeMap<(&str, RecordType), Vec<&str>> = BTreeMap::new();
        for key in &restored.held.records {
            by_group
                .entry((key.source.as_str(), key.record_type))
                .or_default()
                .push(key.record_id.as_str());
        }
        for ((source, record_type), ids) in by_group {
            for chunk in ids.chunks(IN_LIST_CHUNK) {
                for table in ["feed_records", "interactions", "transactions"] {
                    let mut sql = Sql::new(backend, &format!("UPDATE {table} SET customer_id = "));
                    sql.bind(text(a.as_str()))
                        .push(" WHERE customer_id = ")
                        .bind(text(survivor_text.as_str()))
                        .push(" AND source = ")
                        .bind(text(source))
                        .push(" AND record_type = ")
                        .bind(text(record_type.as_str()))
                        .push(" AND record_id IN ")
                        .list(chunk.iter().map(|id| text(*id)));
                    txn.execute_raw(sql.build()).await.db()?;
                }
            }
        }
        for (source, id) in &restored.held.interactions {
            let mut sql = Sql::new(backend, "UPDATE interactions SET customer_id = ");
            sql.bind(text(a.as_str()))
                .push(" WHERE customer_id = ")
                .bind(text(survivor_text.as_str()))
                .push(" AND source = ")
                .bind(text(source.as_str()))
                .push(" AND record_type = 'interaction' AND record_id = ")
                .bind(text(id.as_str()));
            txn.execute_raw(sql.build()).await.db()?;
        }
        let mut sql = Sql::new(
            backend,
            "UPDATE customers SET merged_into = NULL, updated_at = ",
        );
        sql.bind(time(now))
            .push(", revision = revision + 1 WHERE id = ")
            .bind(text(a.as_str()));
        txn.execute_raw(sql.build()).await.db()?;
    }
    for id in merge
        .record
        .because
        .iter()
        .filter(|id| id.kind() != IdentifierKind::SourceId)
    {
        let mut sql = Sql::new(
            backend,
            "INSERT INTO identity_disputes (kind, value, merge_id, created_at) VALUES ",
        );
        sql.tuple([
            text(id.kind().as_str()),
            text(id.value()),
            text(merge_id.to_string()),
            time(now),
        ])
        .push(" ON CONFLICT (kind, value) DO NOTHING");
        txn.execute_raw(sql.build()).await.db()?;
    }
    let mut sql = Sql::new(backend, "UPDATE customer_merges SET split_at = ");
    sql.bind(time(now))
        .push(", split_by = ")
        .bind(text(ctx.principal.as_str()))
        .push(" WHERE id = ")
        .bind(text(merge_id.to_string()));
    txn.execute_raw(sql.build()).await.db()?;
    merge.split_at = Some(now);
    merge.split_by = Some(ctx.principal.clone());

    let set: BTreeSet<CustomerId> = customers.iter().copied().collect();
    rebuild_profiles(txn, &set, &ctx.priority, now).await?;
    change_log::append(
        txn,
        &[NewChange {
            related: customers
                .iter()
                .copied()
                .filter(|c| *c != survivor)
                .collect(),
            merge: Some(merge_id),
            ..NewChange::new(survivor, ChangeKind::Split)
        }],
        now,
    )
    .await?;
    let mut views = Vec::with_capacity(customers.len());
    for c in customers {
        views.push(read(txn, c).await?);
    }
    tracing::info!(merge_id = %merge_id, customer_id = %survivor, restored = plan.restore.len(), "merge undone");
    Ok(SplitOutcome {
        merge,
        customers: views,
    })
}

// ------------------------------------------------------------------------------------------------
// Row helpers

fn get_col<T: sea_orm::TryGetable>(row: &QueryResult, column: &str) -> Result<T> {
    row.try_get("", column).map_err(corrupt)
}

fn parse_customer(s: &str) -> Result<CustomerId> {
    s.parse().map_err(corrupt)
}

fn parse_kind(s: &str) -> Result<IdentifierKind> {
    match s {
        "source_id" => Ok(IdentifierKind::SourceId),
        "email" => Ok(IdentifierKind::Email),
        "phone" => Ok(IdentifierKind::Phone),
        other => Err(corrupt(format!("unknown identifier kind {other}"))),
    }
}

/// The identifier stored as (`kind`, `value`).
fn identifier(kind: IdentifierKind, value: &str) -> Result<Identifier> {
    Ok(match kind {
        IdentifierKind::SourceId => {
            let (source, id) = value
                .split_once(':')
                .ok_or_else(|| corrupt(format!("source id without a source: {value}")))?;
            Identifier::SourceId {
                source: source.to_owned(),
                id: id.to_owned(),
            }
        }
        IdentifierKind::Email => Identifier::Email(value.to_owned()),
        IdentifierKind::Phone => Identifier::Phone(value.to_owned()),
    })
}
