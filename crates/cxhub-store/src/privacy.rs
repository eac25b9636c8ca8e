//! Privacy: consent answers given to the hub (stored as a contact record of
//! [`CONSENT_SOURCE`], so the profile combines them with the feeds' like any other source),
//! their history, erasure with suppression of the erased identifiers, export, and the audit
//! trail.
//!
//! Suppression keeps only [`suppression_hash`]es of the erased identifiers, keyed with a secret
//! created on the first erasure (table `privacy_keys`). Ingest screens every batch against them
//! first ([`ingest_screened`]): a record whose source customer id, e-mail or phone is suppressed
//! is answered SUPPRESSED and not written.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use cxhub_domain::Result;
use cxhub_domain::feed::{
    Consent, ConsentChannel, ConsentPurpose, ConsentStatus, ContactFields, IngestItem,
    IngestResult, Ingested,
};
use cxhub_domain::idempotency::RequestKey;
use cxhub_domain::identifier::{CustomerId, Identifier};
use cxhub_domain::page::{Page, PageRequest};
use cxhub_domain::privacy::{
    AuditEvent, AuditFilter, AuditLog, CONSENT_SOURCE, ConsentChange, ConsentUpdate,
    ConsentsUpdated, CustomerExport, Erasure, PrivacyRepo, StoredInteraction, StoredRecord,
    StoredTransaction, erased, suppression_hash,
};
use cxhub_domain::record::{ContentHash, IngestOutcome, SourcePriority};
use cxhub_domain::repo::IngestContext;
use cxhub_domain::resolution::MergeRecord;
use sea_orm::{ConnectionTrait, DatabaseTransaction, DbBackend, QueryResult, TransactionTrait};
use sha2::{Digest, Sha256};

use crate::IN_LIST_CHUNK;
use crate::error::{DbResultExt, corrupt};
use crate::idempotency::idempotent;
use crate::sql::{Column, Pg, Sql, bytes, col, insert_rows, nullable, text, text_opt, time};
use crate::store::{Store, snapshot};

/// The name of the suppression key in `privacy_keys`.
const SUPPRESSION_KEY: &str = "suppression";

/// Records dropped as SUPPRESSED by this process since it started (the metric; the feeds
/// service also logs it per batch as `suppressed`).
static SUPPRESSED_RECORDS: AtomicU64 = AtomicU64::new(0);

/// How many feed records this process dropped because they were about an erased customer.
pub fn suppressed_records_total() -> u64 {
    SUPPRESSED_RECORDS.load(Ordering::Relaxed)
}

// ------------------------------------------------------------------------------------------------
// Ingest screening

/// Ingests a batch after setting aside the records about erased customers: those are answered
/// SUPPRESSED (with the erased customer's former id) and nothing of them is written; the others
/// go through [`crate::customers::ingest`]. Results in batch order.
///
/// On PostgreSQL the suppression key comes with the batch's lookup of versions and identifier
/// holders ([`crate::customers::load_batch_pg`]): one round trip for both, and none more until
/// an erasure has created the key. (Caching the key in the process would save no round trip
/// there, and on SQLite its read costs microseconds.)
pub(crate) async fn ingest_screened(
    txn: &DatabaseTransaction,
    items: &[IngestItem],
    ctx: &IngestContext,
) -> Result<Vec<Ingested>> {
    let (key, preloaded) = if txn.get_database_backend() == DbBackend::Postgres {
        let (key, loaded) =
            crate::customers::load_batch_pg(txn, items, Some(SUPPRESSION_KEY)).await?;
        (key.map(|k| unhex(&k)).transpose()?, Some(loaded))
    } else {
        (suppression_key(txn, false).await?, None)
    };
    let suppressed = match key {
        None => HashMap::new(),
        Some(key) => screen(txn, &key, items).await?,
    };
    if suppressed.is_empty() {
        return crate::customers::ingest(txn, items, ctx, preloaded).await;
    }
    let kept: Vec<IngestItem> = items
        .iter()
        .filter(|item| !suppressed.contains_key(&item.index))
        .cloned()
        .collect();
    let mut results = if kept.is_empty() {
        Vec::new()
    } else {
        // What was read for the whole batch covers the records kept.
        crate::customers::ingest(txn, &kept, ctx, preloaded).await?
    };
    for item in items {
        if let Some(customer) = suppressed.get(&item.index) {
            results.push(Ok(IngestResult {
                index: item.index,
                outcome: IngestOutcome::Suppressed,
                customer: *customer,
                merged: Vec::new(),
                ignored: item.ignored.clone(),
            }));
        }
    }
    results.sort_by_key(|r| match r {
        Ok(result) => result.index,
        Err(rejected) => rejected.index,
    });
    let n = suppressed.len() as u64;
    SUPPRESSED_RECORDS.fetch_add(n, Ordering::Relaxed);
    tracing::info!(
        suppressed = n,
        suppressed_total = suppressed_records_total(),
        "records about erased customers dropped"
    );
    Ok(results)
}

/// The batch positions of the records carrying a suppressed identifier, with the erased
/// customer each is about.
async fn screen(
    txn: &DatabaseTransaction,
    key: &[u8],
    items: &[IngestItem],
) -> Result<HashMap<usize, CustomerId>> {
    let mut by_hash: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for item in items {
        let ids =
            std::iter::once(&item.anchor).chain(item.identifiers.iter().map(|f| &f.identifier));
        for id in ids {
            by_hash
                .entry(suppression_hash(key, id))
                .or_default()
                .push(item.index);
        }
    }
    let hashes: Vec<String> = by_hash.keys().cloned().collect();
    let mut out = HashMap::new();
    for chunk in hashes.chunks(IN_LIST_CHUNK) {
        let mut sql = Sql::new(
            txn.get_database_backend(),
            "SELECT hash, customer_id FROM suppressed_identifiers WHERE hash",
        );
        sql.in_texts(chunk.iter().cloned());
        for row in txn.query_all_raw(sql.build()).await.db()? {
            let hash: String = get(&row, "hash")?;
            let customer = customer_id(&get::<String>(&row, "customer_id")?)?;
            for index in by_hash.get(&hash).into_iter().flatten() {
                out.insert(*index, customer);
            }
        }
    }
    Ok(out)
}

/// The suppression key, created (when `create`) on first use.
async fn suppression_key(conn: &impl ConnectionTrait, create: bool) -> Result<Option<Vec<u8>>> {
    let read = || {
        let mut sql = Sql::new(
            conn.get_database_backend(),
            "SELECT secret FROM privacy_keys WHERE name = ",
        );
        sql.bind(text(SUPPRESSION_KEY));
        sql.build()
    };
    if let Some(row) = conn.query_one_raw(read()).await.db()? {
        let secret: String = get(&row, "secret")?;
        return Ok(Some(unhex(&secret)?));
    }
    if !create {
        return Ok(None);
    }
    // 32 bytes from the random bits of four UUIDs (v7: 74 random bits each).
    let mut seed = Sha256::new();
    for _ in 0..4 {
        seed.update(uuid::Uuid::now_v7().as_bytes());
    }
    let secret: String = seed.finalize().iter().map(|b| format!("{b:02x}")).collect();
    let mut sql = Sql::new(
        conn.get_database_backend(),
        "INSERT INTO privacy_keys (name, secret, created_at) VALUES ",
    );
    sql.tuple([text(SUPPRESSION_KEY), text(secret), time(crate::now())])
        .push(" ON CONFLICT (name) DO NOTHING");
    conn.execute_raw(sql.build()).await.db()?;
    let row = conn
        .query_one_raw(read())
        .await
        .db()?
        .ok_or_else(|| corrupt("the suppression key was not stored"))?;
    let secret: String = get(&row, "secret")?;
    Ok(Some(unhex(&secret)?))
}

// ------------------------------------------------------------------------------------------------
// Consents

/// Records consent answers (see [`cxhub_domain::privacy::PrivacyRepo::update_consents`]).
pub(crate) async fn update_consents(
    txn: &DatabaseTransaction,
    requested: CustomerId,
    update: &ConsentUpdate,
    principal: &str,
    priority: &SourcePriority,
) -> Result<ConsentsUpdated> {
    let backend = txn.get_database_backend();
    if erasure_of(txn, requested).await?.is_some() {
        return Err(erased(requested));
    }
    let now = crate::now();
    let customer = crate::customers::live(txn, requested).await?;
    let before = crate::customers::read(txn, customer)
        .await?
        .profile
        .consents;
    let record_id = customer.to_string();

    let mut sql = Sql::new(
        backend,
        "SELECT contact_json FROM feed_records WHERE source = ",
    );
    sql.bind(text(CONSENT_SOURCE))
        .push(" AND record_type = 'contact' AND record_id = ")
        .bind(text(record_id.as_str()));
    let mut fields: ContactFields = match txn.query_one_raw(sql.build()).await.db()? {
        Some(row) => match get::<Option<String>>(&row, "contact_json")? {
            Some(json) => serde_json::from_str(&json).map_err(corrupt)?,
            None => ContactFields::default(),
        },
        None => ContactFields::default(),
    };
    for answer in &update.consents {
        match fields
            .consents
            .iter_mut()
            .find(|c| c.purpose == answer.purpose && c.channel == answer.channel)
        {
            Some(kept) if kept.given_at > answer.given_at => {}
            Some(kept) => *kept = answer.clone(),
            None => fields.consents.push(answer.clone()),
        }
    }
    fields.consents.sort_by_key(|c| (c.purpose, c.channel));
    let json = serde_json::to_string(&fields).map_err(corrupt)?;
    insert_rows(
        txn,
        "feed_records",
        &[
            col("source", Pg::Text),
            col("record_type", Pg::Text),
            col("record_id", Pg::Text),
            col("updated_at", Pg::Time),
            col("content_hash", Pg::Bytes),
            col("customer_id", Pg::Text),
            col("source_customer_id", Pg::Text),
            col("payload", Pg::Bytes),
            nullable("contact_json", Pg::Text),
            col("ingested_at", Pg::Time),
        ],
        vec![vec![
            text(CONSENT_SOURCE),
            text("contact"),
            text(record_id.as_str()),
            time(now),
            bytes(ContentHash::of(json.as_bytes()).as_bytes().to_vec()),
            text(record_id.as_str()),
            text(record_id.as_str()),
            bytes(json.clone().into_bytes()),
            text_opt(Some(json)),
            time(now),
        ]],
        "ON CONFLICT (source, record_type, record_id) DO UPDATE SET \
         updated_at = excluded.updated_at, content_hash = excluded.content_hash, \
         customer_id = excluded.customer_id, payload = excluded.payload, \
         contact_json = excluded.contact_json, ingested_at = excluded.ingested_at",
    )
    .await
    .db()?;
    let rebuilt =
        crate::customers::rebuild_profiles(txn, &BTreeSet::from([customer]), priority, now).await?;
    let changed: Vec<cxhub_domain::change::NewChange> = rebuilt
        .into_iter()
        .filter(|(_, fields)| !fields.is_empty())
        .map(|(c, fields)| cxhub_domain::change::NewChange::updated(c, fields))
        .collect();
    crate::changes::append(txn, &changed, now).await?;
    let after = crate::customers::read(txn, customer)
        .await?
        .profile
        .consents;

    let slot = |list: &[Consent], c: &Consent| {
        list.iter()
            .find(|x| x.purpose == c.purpose && x.channel == c.channel)
            .cloned()
    };
    let mut changes = Vec::with_capacity(update.consents.len());
    let mut rows = Vec::with_capacity(update.consents.len());
    for answer in &update.consents {
        let change = ConsentChange {
            id: uuid::Uuid::now_v7().to_string(),
            customer,
            purpose: answer.purpose,
            channel: answer.channel,
            previous: slot(&before, answer).map(|c| c.status),
            status: answer.status,
            given_at: answer.given_at,
            effective: slot(&after, answer).as_ref() == Some(answer),
            source: update.source.clone(),
            recorded_by: principal.to_owned(),
            recorded_at: now,
        };
        rows.push(vec![
            text(change.customer.to_string()),
            text(change.id.as_str()),
            text(change.purpose.as_str()),
            text(change.channel.as_str()),
            text_opt(change.previous.map(|s| s.as_str())),
            text(change.status.as_str()),
            time(change.given_at),
            text(if change.effective { "true" } else { "false" }),
            text(change.source.as_str()),
            text(change.recorded_by.as_str()),
            time(change.recorded_at),
        ]);
        changes.push(change);
    }
    insert_rows(
        txn,
        "consent_history",
        &[
            col("customer_id", Pg::Text),
            col("id", Pg::Text),
            col("purpose", Pg::Text),
            col("channel", Pg::Text),
            nullable("previous_status", Pg::Text),
            col("status", Pg::Text),
            col("given_at", Pg::Time),
            col("effective", Pg::Text),
            col("source", Pg::Text),
            col("recorded_by", Pg::Text),
            col("recorded_at", Pg::Time),
        ],
        rows,
        "",
    )
    .await
    .db()?;
    tracing::info!(customer_id = %customer, answers = changes.len(), "consents updated");
    Ok(ConsentsUpdated {
        customer,
        consents: after,
        changes,
    })
}

/// The consent history of a customer and of the customers merged into it, newest first.
pub(crate) async fn consent_history(
    conn: &impl ConnectionTrait,
    requested: CustomerId,
    page: &PageRequest,
) -> Result<Page<ConsentChange>> {
    if erasure_of(conn, requested).await?.is_some() {
        return Err(erased(requested));
    }
    let customer = crate::customers::live(conn, requested).await?;
    let ids = merged_set(conn, customer).await?;
    let mut sql = Sql::new(
        conn.get_database_backend(),
        "SELECT * FROM consent_history WHERE customer_id",
    );
    sql.in_texts(ids.iter().map(ToString::to_string));
    if let Some(after) = &page.after {
        sql.push(" AND id < ").bind(text(after.as_str()));
    }
    sql.push(" ORDER BY id DESC LIMIT ")
        .push(&(u64::from(page.size) + 1).to_string());
    let rows = conn.query_all_raw(sql.build()).await.db()?;
    let mut items = rows
        .iter()
        .map(consent_change)
        .collect::<Result<Vec<_>>>()?;
    Ok(paged(&mut items, page.size, |c| c.id.clone()))
}

fn consent_change(row: &QueryResult) -> Result<ConsentChange> {
    let purpose: String = get(row, "purpose")?;
    let channel: String = get(row, "channel")?;
    let previous: Option<String> = get(row, "previous_status")?;
    let status: String = get(row, "status")?;
    let effective: String = get(row, "effective")?;
    Ok(ConsentChange {
        id: get(row, "id")?,
        customer: customer_id(&get::<String>(row, "customer_id")?)?,
        purpose: purpose.parse::<ConsentPurpose>().map_err(corrupt)?,
        channel: channel.parse::<ConsentChannel>().map_err(corrupt)?,
        previous: previous
            .map(|s| s.parse::<ConsentStatus>())
            .transpose()
            .map_err(corrupt)?,
        status: status.parse::<ConsentStatus>().map_err(corrupt)?,
        given_at: get(row, "given_at")?,
        effective: effective == "true",
        source: get(row, "source")?,
        recorded_by: get(row, "recorded_by")?,
        recorded_at: get(row, "recorded_at")?,
    })
}

// ------------------------------------------------------------------------------------------------
// Erasure

/// Erases a customer and everything merged into it (see
/// [`cxhub_domain::privacy::PrivacyRepo::erase_customer`]).
pub(crate) async fn erase(
    txn: &DatabaseTransaction,
    requested: CustomerId,
    principal: &str,
) -> Result<Erasure> {
    if let Some(mut done) = erasure_of(txn, requested).await? {
        done.already_erased = true;
        return Ok(done);
    }
    let backend = txn.get_database_backend();
    let now = crate::now();
    let survivor = crate::customers::live(txn, requested).await?;
    let set = merged_set(txn, survivor).await?;
    let set_texts: Vec<String> = set.iter().map(ToString::to_string).collect();
    let in_set = |sql: &mut Sql| {
        sql.in_texts(set_texts.iter().cloned());
    };

    // The identifiers the customers hold, and those their merge records say they held.
    let mut identifiers: BTreeSet<Identifier> = BTreeSet::new();
    let mut sql = Sql::new(
        backend,
        "SELECT kind, value FROM customer_identities WHERE customer_id",
    );
    in_set(&mut sql);
    for row in txn.query_all_raw(sql.build()).await.db()? {
        identifiers.insert(identifier(
            &get::<String>(&row, "kind")?,
            &get::<String>(&row, "value")?,
        )?);
    }
    let mut merges: BTreeMap<String, MergeRecord> = BTreeMap::new();
    let mut sql = Sql::new(
        backend,
        "SELECT id, record_json FROM customer_merges WHERE survivor_id",
    );
    in_set(&mut sql);
    for id in &set_texts {
        sql.push(" OR ");
        contains(&mut sql, backend, "record_json", id);
    }
    for row in txn.query_all_raw(sql.build()).await.db()? {
        let json: String = get(&row, "record_json")?;
        let record: MergeRecord = serde_json::from_str(&json).map_err(corrupt)?;
        for a in record.absorbed.iter().filter(|a| set.contains(&a.customer)) {
            identifiers.extend(a.held.identifiers.iter().cloned());
        }
        merges.insert(get(&row, "id")?, record);
    }

    // Suppress them (keyed hashes only).
    let key = suppression_key(txn, true)
        .await?
        .ok_or_else(|| corrupt("no suppression key"))?;
    let rows = identifiers
        .iter()
        .map(|id| {
            vec![
                text(suppression_hash(&key, id)),
                text(survivor.to_string()),
                time(now),
            ]
        })
        .collect();
    insert_rows(
        txn,
        "suppressed_identifiers",
        &[
            col("hash", Pg::Text),
            col("customer_id", Pg::Text),
            col("created_at", Pg::Time),
        ],
        rows,
        "ON CONFLICT (hash) DO NOTHING",
    )
    .await
    .db()?;

    // Identities, disputes, source records, consent history, scores, the customers themselves.
    for table in [
        "customer_identities",
        "consent_history",
        "customer_name_keys",
        "customer_scores",
    ] {
        let mut sql = Sql::new(backend, &format!("DELETE FROM {table} WHERE customer_id"));
        in_set(&mut sql);
        txn.execute_raw(sql.build()).await.db()?;
    }
    let mut by_kind: BTreeMap<&'static str, Vec<String>> = BTreeMap::new();
    for id in &identifiers {
        by_kind
            .entry(id.kind().as_str())
            .or_default()
            .push(id.value());
    }
    for (kind, values) in by_kind {
        let mut sql = Sql::new(backend, "DELETE FROM identity_disputes WHERE kind = ");
        sql.bind(text(kind)).push(" AND value").in_texts(values);
        txn.execute_raw(sql.build()).await.db()?;
    }
    // The case and subscription state kept for reads, keyed by the records about to go.
    for (table, record_type) in [
        ("support_cases", "support_case"),
        ("subscription_events", "subscription_event"),
    ] {
        let mut sql = Sql::new(
            backend,
            &format!(
                "DELETE FROM {table} WHERE EXISTS (SELECT 1 FROM feed_records f \
                 WHERE f.source = {table}.source AND f.record_id = {table}.record_id \
                 AND f.record_type = '{record_type}' AND f.customer_id"
            ),
        );
        in_set(&mut sql);
        sql.push(")");
        txn.execute_raw(sql.build()).await.db()?;
    }
    let mut sql = Sql::new(backend, "DELETE FROM feed_records WHERE customer_id");
    in_set(&mut sql);
    let records_removed = affected(txn.execute_raw(sql.build()).await.db()?.rows_affected());
    let mut sql = Sql::new(backend, "DELETE FROM customers WHERE id");
    in_set(&mut sql);
    txn.execute_raw(sql.build()).await.db()?;

    // Interactions and transactions stay for aggregates, under an id that links to no one.
    let anonymous = CustomerId::generate().to_string();
    let mut counts = [0i64; 2];
    for (i, table) in ["interactions", "transactions"].into_iter().enumerate() {
        let mut sql = Sql::new(backend, &format!("UPDATE {table} SET customer_id = "));
        sql.bind(text(anonymous.as_str()))
            .push(" WHERE customer_id");
        in_set(&mut sql);
        counts[i] = affected(txn.execute_raw(sql.build()).await.db()?.rows_affected());
    }
    // Survey answers stay for score reports, under the same anonymous id; the comments (free
    // text) and the responses' content hashes (a hash of the answers and the comment) go.
    let mut sql = Sql::new(
        backend,
        "UPDATE survey_responses SET comment = NULL, content_hash = ",
    );
    sql.bind(bytes(Vec::new()))
        .push(", customer_id = ")
        .bind(text(anonymous.as_str()))
        .push(" WHERE customer_id");
    in_set(&mut sql);
    txn.execute_raw(sql.build()).await.db()?;
    let mut sql = Sql::new(backend, "UPDATE survey_answers SET customer_id = ");
    sql.bind(text(anonymous.as_str()))
        .push(" WHERE customer_id");
    in_set(&mut sql);
    txn.execute_raw(sql.build()).await.db()?;

    // Merge records keep their shape but lose the erased identifiers.
    for (id, mut record) in merges {
        record.because.retain(|i| !identifiers.contains(i));
        record.survivor_shared.retain(|i| !identifiers.contains(i));
        for a in &mut record.absorbed {
            a.held.identifiers.retain(|i| !identifiers.contains(i));
        }
        let mut sql = Sql::new(backend, "UPDATE customer_merges SET record_json = ");
        sql.bind(text(serde_json::to_string(&record).map_err(corrupt)?))
            .push(" WHERE id = ")
            .bind(text(id));
        txn.execute_raw(sql.build()).await.db()?;
    }

    // Loyalty actions stay (campaign budgets account for their values) without their free-text
    // reason, which may describe the customer.
    let mut sql = Sql::new(
        backend,
        "UPDATE loyalty_actions SET reason = '' WHERE customer_id",
    );
    in_set(&mut sql);
    txn.execute_raw(sql.build()).await.db()?;
    // Executors' reports on them keep what happened, not their free-text reason and note.
    let mut sql = Sql::new(
        backend,
        "UPDATE loyalty_action_outcomes SET reason = NULL, note = NULL WHERE action_id IN \
         (SELECT id FROM loyalty_actions WHERE customer_id",
    );
    in_set(&mut sql);
    sql.push(")");
    txn.execute_raw(sql.build()).await.db()?;

    // Stored answers of earlier requests that hold the customers' ids or identifiers.
    let mut needles: Vec<String> = set_texts.clone();
    needles.extend(
        identifiers
            .iter()
            .filter(|i| !matches!(i, Identifier::SourceId { .. }))
            .map(Identifier::value),
    );
    let mut request_records_removed = 0;
    for needle in &needles {
        let mut sql = Sql::new(backend, "DELETE FROM idempotency_keys WHERE ");
        contains(&mut sql, backend, "response", needle);
        sql.push(" OR ");
        contains(&mut sql, backend, "request_id", needle);
        request_records_removed +=
            affected(txn.execute_raw(sql.build()).await.db()?.rows_affected());
    }

    let mut customers: Vec<CustomerId> = vec![survivor];
    customers.extend(set.iter().copied().filter(|c| *c != survivor));
    let erasure = Erasure {
        id: uuid::Uuid::now_v7().to_string(),
        customers,
        erased_at: now,
        erased_by: principal.to_owned(),
        identifiers_suppressed: affected(identifiers.len() as u64),
        records_removed,
        interactions_anonymised: counts[0],
        transactions_anonymised: counts[1],
        request_records_removed,
        already_erased: false,
    };
    let json = serde_json::to_string(&erasure).map_err(corrupt)?;
    let rows = erasure
        .customers
        .iter()
        .map(|c| {
            vec![
                text(c.to_string()),
                text(erasure.id.as_str()),
                time(now),
                text(principal),
                text(json.as_str()),
            ]
        })
        .collect();
    insert_rows(
        txn,
        "customer_erasures",
        &[
            col("customer_id", Pg::Text),
            col("erasure_id", Pg::Text),
            col("erased_at", Pg::Time),
            col("erased_by", Pg::Text),
            col("result_json", Pg::Text),
        ],
        rows,
        "",
    )
    .await
    .db()?;
    crate::changes::append(
        txn,
        &[cxhub_domain::change::NewChange::new(
            survivor,
            cxhub_domain::change::ChangeKind::Erased,
        )],
        now,
    )
    .await?;
    tracing::info!(
        customer_id = %survivor,
        customers = erasure.customers.len(),
        identifiers = erasure.identifiers_suppressed,
        records = records_removed,
        "customer erased"
    );
    Ok(erasure)
}

/// The erasure of `customer`, if it was erased.
async fn erasure_of(conn: &impl ConnectionTrait, customer: CustomerId) -> Result<Option<Erasure>> {
    let mut sql = Sql::new(
        conn.get_database_backend(),
        "SELECT result_json FROM customer_erasures WHERE customer_id = ",
    );
    sql.bind(text(customer.to_string()));
    match conn.query_one_raw(sql.build()).await.db()? {
        None => Ok(None),
        Some(row) => {
            let json: String = get(&row, "result_json")?;
            Ok(Some(serde_json::from_str(&json).map_err(corrupt)?))
        }
    }
}

/// `survivor` and every customer merged into it (directly or through others).
async fn merged_set(
    conn: &impl ConnectionTrait,
    survivor: CustomerId,
) -> Result<BTreeSet<CustomerId>> {
    let mut set = BTreeSet::from([survivor]);
    let mut frontier = vec![survivor.to_string()];
    while !frontier.is_empty() {
        let mut sql = Sql::new(
            conn.get_database_backend(),
            "SELECT id FROM customers WHERE merged_into",
        );
        sql.in_texts(frontier.drain(..));
        for row in conn.query_all_raw(sql.build()).await.db()? {
            let id = customer_id(&get::<String>(&row, "id")?)?;
            if set.insert(id) {
                frontier.push(id.to_string());
            }
        }
    }
    Ok(set)
}

/// Appends "`column` contains `needle`" (a plain substring test on both backends).
fn contains(sql: &mut Sql, backend: DbBackend, column: &str, needle: &str) {
    match backend {
        DbBackend::Postgres => sql.push(&format!("strpos({column}, ")),
        _ => sql.push(&format!("instr({column}, ")),
    };
    sql.bind(text(needle)).push(") > 0");
}

// ------------------------------------------------------------------------------------------------
// Export

/// Everything held about a customer, read in the snapshot of `conn`.
pub(crate) async fn export(
    conn: &(impl ConnectionTrait + crate::lite::Read),
    requested: CustomerId,
) -> Result<CustomerExport> {
    if erasure_of(conn, requested).await?.is_some() {
        return Err(erased(requested));
    }
    let backend = conn.get_database_backend();
    let customer = crate::customers::read(conn, requested).await?;
    let set = merged_set(conn, customer.id).await?;
    let mut ids = vec![customer.id];
    ids.extend(set.iter().copied().filter(|c| *c != customer.id));
    let merges = crate::customers::merges(conn, customer.id).await?;
    let live = customer.id.to_string();

    let records = rows_of(
        conn,
        "SELECT source, record_type, record_id, updated_at, ingested_at, payload FROM feed_records",
        &live,
        "source, record_type, record_id",
        |row| {
            Ok(StoredRecord {
                source: get(row, "source")?,
                record_type: get(row, "record_type")?,
                record_id: get(row, "record_id")?,
                updated_at: get(row, "updated_at")?,
                ingested_at: get(row, "ingested_at")?,
                payload: get(row, "payload")?,
            })
        },
    )
    .await?;
    let interactions = rows_of(
        conn,
        "SELECT source, record_type, record_id, touchpoint_key, channel, occurred_at, outcome \
         FROM interactions",
        &live,
        "occurred_at, source, record_type, record_id",
        |row| {
            Ok(StoredInteraction {
                source: get(row, "source")?,
                record_type: get(row, "record_type")?,
                record_id: get(row, "record_id")?,
                touchpoint_key: get(row, "touchpoint_key")?,
                channel: get(row, "channel")?,
                occurred_at: get(row, "occurred_at")?,
                outcome: get(row, "outcome")?,
            })
        },
    )
    .await?;
    let transactions = rows_of(
        conn,
        "SELECT source, record_type, record_id, kind, amount_minor, currency_code, occurred_at, \
         status, due_at FROM transactions",
        &live,
        "occurred_at, source, record_type, record_id",
        |row| {
            Ok(StoredTransaction {
                source: get(row, "source")?,
                record_type: get(row, "record_type")?,
                record_id: get(row, "record_id")?,
                kind: get(row, "kind")?,
                amount_minor: get(row, "amount_minor")?,
                currency_code: get(row, "currency_code")?,
                occurred_at: get(row, "occurred_at")?,
                status: get(row, "status")?,
                due_at: get(row, "due_at")?,
            })
        },
    )
    .await?;

    let id_texts: Vec<String> = ids.iter().map(ToString::to_string).collect();
    let mut sql = Sql::new(backend, "SELECT * FROM consent_history WHERE customer_id");
    sql.in_texts(id_texts.iter().cloned())
        .push(" ORDER BY id DESC");
    let consent_history = conn
        .query_all_raw(sql.build())
        .await
        .db()?
        .iter()
        .map(consent_change)
        .collect::<Result<Vec<_>>>()?;
    Ok(CustomerExport {
        customer,
        ids,
        merges,
        records,
        interactions,
        transactions,
        consent_history,
        // Read from the audit database by `export_customer`.
        audit_events: Vec::new(),
    })
}

/// The audit events about `ids`, newest first.
async fn audit_events_of(
    audit_db: &impl ConnectionTrait,
    ids: &[CustomerId],
) -> Result<Vec<AuditEvent>> {
    let mut sql = Sql::new(
        audit_db.get_database_backend(),
        "SELECT * FROM audit_events e WHERE ",
    );
    events_of(&mut sql, ids.iter().map(ToString::to_string).collect());
    sql.push(" ORDER BY e.id DESC");
    audit_db
        .query_all_raw(sql.build())
        .await
        .db()?
        .iter()
        .map(audit_event)
        .collect()
}

/// The rows of `select` (a `SELECT … FROM table`) whose `customer_id` is `customer`, ordered by
/// `order`, each mapped by `map`.
async fn rows_of<T>(
    conn: &impl ConnectionTrait,
    select: &str,
    customer: &str,
    order: &str,
    map: impl Fn(&sea_orm::QueryResult) -> Result<T>,
) -> Result<Vec<T>> {
    let mut sql = Sql::new(conn.get_database_backend(), select);
    sql.push(" WHERE customer_id = ")
        .bind(text(customer))
        .push(" ORDER BY ")
        .push(order);
    conn.query_all_raw(sql.build())
        .await
        .db()?
        .iter()
        .map(map)
        .collect()
}

// ------------------------------------------------------------------------------------------------
// Audit

/// Most audit requests waiting for the writer before reads are refused.
const AUDIT_BACKLOG: usize = 4096;
/// Most requests written by one statement.
const AUDIT_GROUP: usize = 512;
/// Times the writer lets the tasks beside it run, while they keep queueing events, before it
/// writes a group: more events per commit (at 16 reads in flight, about 7 instead of 3).
const AUDIT_YIELDS: usize = 2;

/// One read's events, and who to tell once they are durable.
struct AuditJob {
    rows: Vec<AuditRow>,
    done: tokio::sync::oneshot::Sender<std::result::Result<(), String>>,
}

/// Group commit of audit events: every read of personal data waits until its events are
/// committed (a read that cannot be audited is refused; see [`write_group`] for how durable
/// that commit is), but the events of the reads in flight together are written at once, so
/// auditing costs one commit per group instead of one per read. The writer starts with the
/// first event and ends with the last clone of the store.
#[derive(Default)]
pub(crate) struct AuditQueue {
    sender: std::sync::OnceLock<tokio::sync::mpsc::Sender<AuditJob>>,
    /// The audit file, written through a connection of the writer's own.
    file: Option<std::sync::Arc<crate::lite::LiteFile>>,
    /// How many times the checkpointer beside the writer held it for the checkpoint after
    /// which the WAL restarts (see [`checkpoint_beside`]).
    held_checkpoints: std::sync::Arc<std::sync::atomic::AtomicU64>,
    /// Groups written through the audit file's own connection (see [`write_audit`]).
    pub(crate) lite_groups: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl AuditQueue {
    /// The queue of a SQLite file database, whose audit events are written to `file`.
    pub(crate) fn on_file(file: crate::lite::LiteFile) -> Self {
        AuditQueue {
            file: Some(std::sync::Arc::new(file)),
            ..Default::default()
        }
    }

    async fn record(
        &self,
        writer: &sea_orm::DatabaseConnection,
        rows: Vec<AuditRow>,
    ) -> Result<()> {
        let sender = self.sender.get_or_init(|| {
            let (tx, rx) = tokio::sync::mpsc::channel(AUDIT_BACKLOG);
            tokio::spawn(write_audit(
                writer.clone(),
                rx,
                self.file.clone(),
                self.held_checkpoints.clone(),
                self.lite_groups.clone(),
            ));
            tx
        });
        let (done, written) = tokio::sync::oneshot::channel();
        sender
            .try_send(AuditJob { rows, done })
            .map_err(|err| match err {
                tokio::sync::mpsc::error::TrySendError::Full(_) => {
                    cxhub_domain::Error::ResourceExhausted {
                        reason: "AUDIT_BACKLOG",
                        message:
                            "too many reads are waiting for their audit events to be written; \
                              retry shortly"
                                .into(),
                        retry_after: Some(std::time::Duration::from_millis(200)),
                    }
                }
                tokio::sync::mpsc::error::TrySendError::Closed(_) => {
                    cxhub_domain::Error::Unavailable("the audit writer stopped".into())
                }
            })?;
        match written.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(detail)) => Err(cxhub_domain::Error::Unavailable(detail)),
            Err(_) => Err(cxhub_domain::Error::Unavailable(
                "the audit writer stopped".into(),
            )),
        }
    }
}

/// The writer: sets up the checkpointer beside it and counts the events past the customer
/// runs, then writes groups. With an audit `file` (a SQLite file database) it writes through
/// a rusqlite connection of its own, stepped right here: a group's commit (tens of
/// microseconds, no `fsync` at `synchronous = NORMAL`) costs less than the hand-off to sqlx's
/// worker thread for the connection and back, which with sea-orm's statement building made
/// the audit about a fifth of the CPU of `GetCustomer` ×16. Nothing else writes the audit
/// file and its checkpoints run beside the writer, so a commit does not wait for a lock.
/// Elsewhere (PostgreSQL, an in-memory database) it writes through sea-orm.
async fn write_audit(
    writer: sea_orm::DatabaseConnection,
    mut jobs: tokio::sync::mpsc::Receiver<AuditJob>,
    file: Option<std::sync::Arc<crate::lite::LiteFile>>,
    held_checkpoints: std::sync::Arc<std::sync::atomic::AtomicU64>,
    lite_groups: std::sync::Arc<std::sync::atomic::AtomicU64>,
) {
    let beside = checkpoint_beside(&writer, held_checkpoints).await;
    let mut unindexed = events_after_runs(&writer).await;
    let mut lite = file.and_then(|file| AuditFile::open(&file));
    while let Some(first) = jobs.recv().await {
        let mut group = vec![first];
        let mut yields = 0;
        while group.len() < AUDIT_GROUP {
            match jobs.try_recv() {
                Ok(job) => group.push(job),
                Err(_) if yields < AUDIT_YIELDS => {
                    yields += 1;
                    tokio::task::yield_now().await;
                }
                Err(_) => break,
            }
        }
        let mut rows = Vec::new();
        let mut waiting = Vec::with_capacity(group.len());
        for job in group {
            rows.extend(job.rows);
            waiting.push(job.done);
        }
        let outcome = {
            let _turn = match &beside {
                Some(beside) => Some(beside.turn.lock().await),
                None => None,
            };
            let written = match lite.as_mut() {
                Some(file) => {
                    lite_groups.fetch_add(1, Ordering::Relaxed);
                    file.insert(&rows).await
                }
                None => write_group(&writer, &rows)
                    .await
                    .map_err(|err| err.to_string()),
            };
            lite.take_if(|file| file.conn.is_none());
            written.map_err(|err| format!("writing audit events failed: {err}"))
        };
        if outcome.is_ok()
            && let Some(beside) = &beside
        {
            // One signal waiting is enough: the checkpoint copies every commit before it.
            let _ = beside.written.try_send(());
        }
        for done in waiting {
            let _ = done.send(outcome.clone());
        }
        // After the reads of the group have their answer: the next group waits for the run.
        if outcome.is_ok()
            && let Some(count) = unindexed.as_mut()
        {
            *count += rows.len() as u64;
            if *count >= AUDIT_RUN_ROWS {
                let _turn = match &beside {
                    Some(beside) => Some(beside.turn.lock().await),
                    None => None,
                };
                let started = std::time::Instant::now();
                let added = match lite.as_mut() {
                    // A few milliseconds: off the runtime's threads.
                    Some(file) => file
                        .off_runtime(add_run_on)
                        .await
                        .map_err(cxhub_domain::Error::internal),
                    None => add_run(&writer).await,
                };
                lite.take_if(|file| file.conn.is_none());
                tracing::debug!(
                    events = *count,
                    ms = started.elapsed().as_millis() as u64,
                    "audit events indexed by customer"
                );
                if let Err(err) = added {
                    // The events stay found by scanning; the next run takes them.
                    tracing::warn!(error = %err, "indexing audit events by customer failed");
                }
                *count = 0;
            }
        }
    }
}

/// The audit file's own connection (see [`write_audit`]). Its statements are stepped on the
/// runtime's thread without waiting for a lock: nothing else writes the file while the hub
/// runs. One that finds it locked all the same (another process writing it) runs again on a
/// blocking thread, which waits for the lock up to the store's busy timeout, as do the
/// customer runs.
struct AuditFile {
    /// `None` once lost (a blocking thread that failed, a busy timeout that could not be
    /// reset); then sea-orm writes.
    conn: Option<rusqlite::Connection>,
    busy_timeout: std::time::Duration,
}

impl AuditFile {
    fn open(file: &crate::lite::LiteFile) -> Option<Self> {
        let opened = file
            .open("")
            .and_then(|conn| conn.busy_timeout(std::time::Duration::ZERO).map(|()| conn));
        match opened {
            Ok(conn) => Some(AuditFile {
                conn: Some(conn),
                busy_timeout: file.busy_timeout(),
            }),
            Err(err) => {
                tracing::warn!(error = %err, "no connection of its own for the audit writer; writing through sqlx");
                None
            }
        }
    }

    /// Writes `rows` in one transaction (see [`insert_on`]).
    async fn insert(&mut self, rows: &[AuditRow]) -> std::result::Result<(), String> {
        let Some(conn) = self.conn.as_mut() else {
            return Err("the audit file's connection was lost".into());
        };
        match insert_on(conn, rows) {
            Err(rusqlite::Error::SqliteFailure(failure, _))
                if failure.code == rusqlite::ErrorCode::DatabaseBusy =>
            {
                let rows: Vec<AuditRow> = rows.to_vec();
                self.off_runtime(move |conn| insert_on(conn, &rows)).await
            }
            other => other.map_err(|err| err.to_string()),
        }
    }

    /// Runs `work` on a blocking thread, waiting for locks up to the busy timeout.
    async fn off_runtime(
        &mut self,
        work: impl FnOnce(&mut rusqlite::Connection) -> rusqlite::Result<()> + Send + 'static,
    ) -> std::result::Result<(), String> {
        let Some(mut conn) = self.conn.take() else {
            return Err("the audit file's connection was lost".into());
        };
        let busy_timeout = self.busy_timeout;
        let ran = tokio::task::spawn_blocking(move || {
            let done = conn
                .busy_timeout(busy_timeout)
                .and_then(|()| work(&mut conn));
            // Back to no waiting whether or not `work` succeeded.
            let reset = conn.busy_timeout(std::time::Duration::ZERO);
            (conn, done, reset)
        })
        .await;
        match ran {
            Ok((conn, done, reset)) => {
                match reset {
                    Ok(()) => self.conn = Some(conn),
                    Err(err) => {
                        tracing::warn!(error = %err, "the audit file's connection could not stop waiting for locks; writing through sqlx");
                    }
                }
                done.map_err(|err| err.to_string())
            }
            Err(err) => Err(format!("the audit writer's blocking thread failed: {err}")),
        }
    }
}

/// Events appended after the newest customer run before one is added (see
/// [`add_run`]): a run holds a few sequential pages; the events past the newest run are
/// scanned by queries about a customer, so a run of about this many takes a few milliseconds
/// and a scan of the rest about one.
const AUDIT_RUN_ROWS: u64 = 5_000;

/// SQLite: how many events come after the newest customer run (migration
/// `m20261125_000022_audit_customer_runs`). `None` on PostgreSQL, which indexes events by
/// customer as they are written, or when the count fails (then no run is added).
async fn events_after_runs(audit_db: &sea_orm::DatabaseConnection) -> Option<u64> {
    if audit_db.get_database_backend() != DbBackend::Sqlite {
        return None;
    }
    let counted = audit_db
        .query_one_raw(sea_orm::Statement::from_string(
            DbBackend::Sqlite,
            "SELECT COUNT(*) AS n FROM audit_events \
             WHERE rowid > (SELECT COALESCE(MAX(through_rowid), 0) FROM audit_runs)",
        ))
        .await;
    match counted {
        Ok(Some(row)) => row.try_get::<i64>("", "n").ok().map(|n| n.max(0) as u64),
        Ok(None) => None,
        Err(err) => {
            tracing::warn!(error = %err, "counting the audit events past the customer runs failed");
            None
        }
    }
}

/// The newest customer run and the last event it holds (0 and 0 before the first).
const RUN_BOUNDS: &str = "SELECT COALESCE(MAX(run), 0) AS run, COALESCE(MAX(through_rowid), 0) \
     AS through FROM audit_runs";
/// Adds run `?1`: the events after rowid `?2`, by (customer, id).
const RUN_ENTRIES: &str = "INSERT INTO audit_customer_runs (run, customer_id, id) \
     SELECT ?1, customer_id, id FROM audit_events WHERE rowid > ?2 ORDER BY customer_id, id";
/// Records run `?1` as holding the events after rowid `?2`, if there are any.
const RUN_MARK: &str = "INSERT INTO audit_runs (run, through_rowid) \
     SELECT ?1, MAX(rowid) FROM audit_events WHERE rowid > ?2 HAVING COUNT(*) > 0";

/// SQLite: adds a customer run holding every event after the newest one, sorted by
/// (customer, id), so its entries are appended to `audit_customer_runs` as a few sequential
/// pages instead of one random page each. One transaction: until it commits, queries find the
/// events by scanning them. The bounds are read first and bound as values: a bound from a
/// joined subquery was not used to start the scan at that rowid (the whole table was read).
async fn add_run(audit_db: &sea_orm::DatabaseConnection) -> Result<()> {
    let txn = audit_db.begin().await.db()?;
    let added = async {
        let newest = txn
            .query_one_raw(sea_orm::Statement::from_string(
                DbBackend::Sqlite,
                RUN_BOUNDS,
            ))
            .await
            .db()?
            .ok_or_else(|| cxhub_domain::Error::internal("no row from an aggregate"))?;
        let run: i64 = get(&newest, "run")?;
        let through: i64 = get(&newest, "through")?;
        for sql in [RUN_ENTRIES, RUN_MARK] {
            txn.execute_raw(sea_orm::Statement::from_sql_and_values(
                DbBackend::Sqlite,
                sql,
                [(run + 1).into(), through.into()],
            ))
            .await
            .db()?;
        }
        Ok(())
    }
    .await;
    match added {
        Ok(()) => txn.commit().await.db(),
        Err(err) => {
            crate::store::rollback(txn).await;
            Err(err)
        }
    }
}

/// [`add_run`] on the audit file's own connection.
fn add_run_on(conn: &mut rusqlite::Connection) -> rusqlite::Result<()> {
    let txn = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let (run, through): (i64, i64) =
        txn.query_row(RUN_BOUNDS, [], |row| Ok((row.get(0)?, row.get(1)?)))?;
    for sql in [RUN_ENTRIES, RUN_MARK] {
        txn.execute(sql, [run + 1, through])?;
    }
    txn.commit()
}

/// How often the audit file's WAL is checkpointed beside the writer.
const AUDIT_CHECKPOINT_EVERY: std::time::Duration = std::time::Duration::from_millis(25);
/// WAL frames (4 KiB pages) from which the checkpointer beside the writer lets the WAL restart
/// (see [`checkpoint_beside`]): about 40 MiB. At 4,000, restarts (each a short hold of the
/// writer and an `fsync` of the WAL's header on the next commit) came 2.5 times as often and
/// cost `GetCustomer` ×16 a tenth of its rate.
const AUDIT_RESTART_FRAMES: i64 = 10_000;
/// Frames written during a checkpoint few enough to copy with the writer held.
const AUDIT_HELD_FRAMES: i64 = 300;
/// Most checkpoints beside the running writer, each copying what was written during the one
/// before, before the one that holds it.
const AUDIT_CATCH_UP_PASSES: usize = 3;
/// WAL frames after which the audit writer checkpoints the rest itself (its
/// `wal_autocheckpoint`, set in the audit connection's options, so a reopened connection keeps
/// it): only a bound on the WAL (80 MiB) in case the checkpointer beside it cannot restart it.
pub(crate) const AUDIT_WAL_FRAMES: u32 = 20_000;

/// What the audit writer shares with the checkpointer beside it.
struct Beside {
    /// Signalled after each commit.
    written: tokio::sync::mpsc::Sender<()>,
    /// Held by the writer while it writes a group, and by the checkpointer for the checkpoint
    /// after which the WAL restarts.
    turn: std::sync::Arc<tokio::sync::Mutex<()>>,
}

/// On a SQLite file in WAL mode, moves checkpoints of the audit file off the writer's path:
/// a connection of its own copies the WAL into the file (a `PASSIVE` checkpoint, which never
/// blocks the writer) every [`AUDIT_CHECKPOINT_EVERY`] while events are written.
///
/// A checkpoint beside a busy writer never copies the whole WAL (commits arrive while it
/// copies), and SQLite restarts a WAL only when a commit finds it all copied, so the WAL grew
/// until the writer's own checkpoint at [`AUDIT_WAL_FRAMES`] — a copy and two `fsync`s on the
/// writer's path that held every read waiting for its events (profile bench, 10,000 customers:
/// 25–43 ms, 30 times in 5 s of `SearchCustomers` ×16, whose 20 rows per read fill the WAL
/// fastest; its p99 40 ms). So once the WAL holds [`AUDIT_RESTART_FRAMES`], the checkpointer
/// catches up beside the running writer (up to [`AUDIT_CATCH_UP_PASSES`] checkpoints, until
/// one finds at most [`AUDIT_HELD_FRAMES`] new frames), then holds the writer between two
/// commits for one more checkpoint of the little left, so the next commit restarts the WAL.
/// A checkpoint on the writer's path at SQLite's default of every 1,000 frames (about 110
/// groups of events) had held every read waiting for the copy and the `fsync` (the p99 of
/// `GetCustomer` 9 ms, and a fifth of its throughput).
///
/// Returns what the writer shares with the checkpointer (which sleeps until a commit is
/// signalled, so an idle hub does not wake it, and ends when the writer drops it), `None` when
/// nothing checkpoints beside it (PostgreSQL, an in-memory database, or no second connection).
async fn checkpoint_beside(
    writer: &sea_orm::DatabaseConnection,
    held_checkpoints: std::sync::Arc<std::sync::atomic::AtomicU64>,
) -> Option<Beside> {
    use sea_orm::sqlx::Connection as _;
    if writer.get_database_backend() != DbBackend::Sqlite {
        return None;
    }
    let mode = writer
        .query_one_raw(sea_orm::Statement::from_string(
            DbBackend::Sqlite,
            "PRAGMA journal_mode",
        ))
        .await
        .ok()
        .flatten()
        .and_then(|row| row.try_get_by_index::<String>(0).ok());
    if !mode.is_some_and(|m| m.eq_ignore_ascii_case("wal")) {
        return None;
    }
    let options = writer.get_sqlite_connection_pool().connect_options();
    let mut checkpointer = match sea_orm::sqlx::SqliteConnection::connect_with(&options).await {
        Ok(conn) => conn,
        Err(err) => {
            tracing::warn!(error = %err, "no connection to checkpoint the audit file beside its writer");
            return None;
        }
    };
    let (written, mut commits) = tokio::sync::mpsc::channel::<()>(1);
    let turn = std::sync::Arc::new(tokio::sync::Mutex::new(()));
    let writer_turn = turn.clone();
    tokio::spawn(async move {
        // A checkpoint at most every `AUDIT_CHECKPOINT_EVERY`, after commits arrived.
        while commits.recv().await.is_some() {
            tokio::time::sleep(AUDIT_CHECKPOINT_EVERY).await;
            let Some(mut frames) = checkpoint(&mut checkpointer).await else {
                continue;
            };
            if frames < AUDIT_RESTART_FRAMES {
                continue;
            }
            for _ in 0..AUDIT_CATCH_UP_PASSES {
                let Some(now) = checkpoint(&mut checkpointer).await else {
                    break;
                };
                let arrived = now - frames;
                frames = now;
                if arrived <= AUDIT_HELD_FRAMES {
                    break;
                }
            }
            let _held = writer_turn.lock().await;
            if checkpoint(&mut checkpointer).await.is_some() {
                held_checkpoints.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        }
        let _ = checkpointer.close().await;
    });
    Some(Beside { written, turn })
}

/// One `PASSIVE` checkpoint: the frames in the WAL when it began, `None` when it failed or
/// another checkpoint was running.
async fn checkpoint(conn: &mut sea_orm::sqlx::SqliteConnection) -> Option<i64> {
    use sea_orm::sqlx::Row as _;
    // Every row read, so the statement is done when it returns.
    let rows = match sea_orm::sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
        .fetch_all(&mut *conn)
        .await
    {
        Ok(rows) => rows,
        Err(err) => {
            tracing::warn!(error = %err, "checkpointing the audit file failed");
            return None;
        }
    };
    let row = rows.first()?;
    let busy: i64 = row.try_get(0).ok()?;
    let frames: i64 = row.try_get(1).ok()?;
    (busy == 0).then_some(frames)
}

/// One audit event: who read which customer through which RPC, and when.
#[derive(Clone)]
struct AuditRow {
    id: String,
    principal: String,
    rpc: String,
    customer: String,
    at: DateTime<Utc>,
}

/// One event per customer.
fn audit_rows(principal: &str, rpc: &str, customers: &[CustomerId]) -> Vec<AuditRow> {
    let now = crate::now();
    customers
        .iter()
        .map(|c| AuditRow {
            id: uuid::Uuid::now_v7().to_string(),
            principal: principal.to_owned(),
            rpc: rpc.to_owned(),
            customer: c.to_string(),
            at: now,
        })
        .collect()
}

/// Writes one group of audit events in one transaction.
///
/// Durability: the events are committed before any read of the group answers, so they survive
/// `kill -9` of the hub (and, on PostgreSQL, of any number of hubs), but the commit does not
/// wait for the disk: on SQLite the audit database runs at `synchronous = NORMAL` (in WAL mode
/// a commit is in the WAL, in the operating system's cache, when it returns), on PostgreSQL
/// the transaction sets `synchronous_commit = off` (the WAL writer flushes it within a
/// fraction of a second). A power failure can therefore lose the audit events of the last
/// moments before it — never an acknowledged write of a caller, whose commits stay fully
/// durable. Waiting for the disk made every read of personal data cost one disk flush.
async fn write_group(audit_db: &sea_orm::DatabaseConnection, rows: &[AuditRow]) -> Result<()> {
    if audit_db.get_database_backend() == DbBackend::Sqlite
        && rows.len() * AUDIT_COLUMNS.len() <= crate::MAX_BIND_PARAMS
    {
        // One statement is one transaction (all rows or none), with no BEGIN and COMMIT
        // round trips to the connection's worker thread; the audit file runs at
        // `synchronous = NORMAL` already.
        return insert_audit(audit_db, rows).await;
    }
    let txn = audit_db.begin().await.db()?;
    let written = async {
        if txn.get_database_backend() == DbBackend::Postgres {
            txn.execute_unprepared("SET LOCAL synchronous_commit TO OFF")
                .await
                .db()?;
        }
        insert_audit(&txn, rows).await
    }
    .await;
    match written {
        Ok(()) => txn.commit().await.db(),
        Err(err) => {
            crate::store::rollback(txn).await;
            Err(err)
        }
    }
}

/// The columns of an audit row, in the order of [`AuditRow::values`].
const AUDIT_COLUMNS: [Column; 5] = [
    col("id", Pg::Text),
    col("principal", Pg::Text),
    col("rpc", Pg::Text),
    col("customer_id", Pg::Text),
    col("occurred_at", Pg::Time),
];

impl AuditRow {
    fn values(&self) -> Vec<sea_orm::Value> {
        vec![
            text(self.id.as_str()),
            text(self.principal.as_str()),
            text(self.rpc.as_str()),
            text(self.customer.as_str()),
            time(self.at),
        ]
    }
}

async fn insert_audit(conn: &impl ConnectionTrait, rows: &[AuditRow]) -> Result<()> {
    insert_rows(
        conn,
        "audit_events",
        &AUDIT_COLUMNS,
        rows.iter().map(AuditRow::values).collect(),
        "",
    )
    .await
    .db()
}

/// Writes one group of audit events in one transaction on the audit file's own connection,
/// one prepared single-row insert per event (a multi-row statement's text would differ with
/// the size of the group). Durable as [`write_group`] says.
fn insert_on(conn: &mut rusqlite::Connection, rows: &[AuditRow]) -> rusqlite::Result<()> {
    static INSERT: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        let names: Vec<&str> = AUDIT_COLUMNS.iter().map(|c| c.name).collect();
        let marks: Vec<String> = (1..=names.len()).map(|at| format!("?{at}")).collect();
        format!(
            "INSERT INTO audit_events ({}) VALUES ({})",
            names.join(", "),
            marks.join(", ")
        )
    });
    let txn = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    {
        let mut insert = txn.prepare_cached(&INSERT)?;
        for row in rows {
            let values = row
                .values()
                .iter()
                .map(crate::lite::bind_value)
                .collect::<rusqlite::Result<Vec<_>>>()?;
            insert.execute(rusqlite::params_from_iter(values))?;
        }
    }
    txn.commit()
}

/// Lists audit events newest first.
pub(crate) async fn list_audit(
    conn: &impl ConnectionTrait,
    filter: &AuditFilter,
    page: &PageRequest,
) -> Result<Page<AuditEvent>> {
    let mut sql = Sql::new(
        conn.get_database_backend(),
        "SELECT * FROM audit_events e WHERE 1 = 1",
    );
    if let Some(c) = filter.customer {
        sql.push(" AND ");
        events_of(&mut sql, vec![c.to_string()]);
    }
    if let Some(p) = &filter.principal {
        sql.push(" AND e.principal = ").bind(text(p.as_str()));
    }
    if let Some(t) = filter.start {
        sql.push(" AND e.occurred_at >= ").bind(time(t));
    }
    if let Some(t) = filter.end {
        sql.push(" AND e.occurred_at < ").bind(time(t));
    }
    if let Some(after) = &page.after {
        sql.push(" AND e.id < ").bind(text(after.as_str()));
    }
    sql.push(" ORDER BY e.id DESC LIMIT ")
        .push(&(u64::from(page.size) + 1).to_string());
    let mut items = conn
        .query_all_raw(sql.build())
        .await
        .db()?
        .iter()
        .map(audit_event)
        .collect::<Result<Vec<_>>>()?;
    Ok(paged(&mut items, page.size, |e| e.id.clone()))
}

/// Appends the condition "event `e` is about one of `customers`". PostgreSQL: its
/// `customer_id`, through `audit_events_customer_idx`. SQLite: its id among those that the
/// customer runs hold for them and those of the events after the newest run (migration
/// `m20261125_000022_audit_customer_runs`), so each event found is looked up by id.
fn events_of(sql: &mut Sql, customers: Vec<String>) {
    if sql.backend() == DbBackend::Postgres {
        sql.push("e.customer_id").in_texts(customers);
        return;
    }
    sql.push(
        "e.id IN (SELECT id FROM audit_customer_runs \
         WHERE run IN (SELECT run FROM audit_runs) AND customer_id",
    )
    .in_texts(customers.iter().cloned())
    .push(
        " UNION ALL SELECT id FROM audit_events \
         WHERE rowid > (SELECT COALESCE(MAX(through_rowid), 0) FROM audit_runs) AND customer_id",
    )
    .in_texts(customers)
    .push(")");
}

fn audit_event(row: &QueryResult) -> Result<AuditEvent> {
    Ok(AuditEvent {
        id: get(row, "id")?,
        principal: get(row, "principal")?,
        rpc: get(row, "rpc")?,
        customer: customer_id(&get::<String>(row, "customer_id")?)?,
        occurred_at: get(row, "occurred_at")?,
    })
}

// ------------------------------------------------------------------------------------------------
// Helpers

/// A page from `size + 1` fetched items.
fn paged<T>(items: &mut Vec<T>, size: u32, key: impl Fn(&T) -> String) -> Page<T> {
    let size = usize::try_from(size).unwrap_or(usize::MAX);
    let more = items.len() > size;
    items.truncate(size);
    let next_after = if more { items.last().map(key) } else { None };
    Page {
        items: std::mem::take(items),
        next_after,
    }
}

fn get<T: sea_orm::TryGetable>(row: &QueryResult, column: &str) -> Result<T> {
    row.try_get("", column).map_err(corrupt)
}

fn customer_id(s: &str) -> Result<CustomerId> {
    s.parse().map_err(corrupt)
}

fn affected(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// The identifier stored as (`kind`, `value`).
fn identifier(kind: &str, value: &str) -> Result<Identifier> {
    Ok(match kind {
        "source_id" => {
            let (source, id) = value
                .split_once(':')
                .ok_or_else(|| corrupt("a source id without a source"))?;
            Identifier::SourceId {
                source: source.to_owned(),
                id: id.to_owned(),
            }
        }
        "email" => Identifier::Email(value.to_owned()),
        "phone" => Identifier::Phone(value.to_owned()),
        other => return Err(corrupt(format!("unknown identifier kind {other}"))),
    })
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

// ------------------------------------------------------------------------------------------------
// The repository traits over the store

/// [`PrivacyRepo`] with the source priority profiles are rebuilt with.
#[derive(Clone, Debug)]
pub struct PrivacyStore {
    store: Store,
    priority: SourcePriority,
}

impl PrivacyStore {
    /// Privacy over `store`; consent updates rebuild profiles with `priority` (the feeds').
    pub fn new(store: Store, priority: SourcePriority) -> Self {
        Self { store, priority }
    }
}

#[async_trait]
impl PrivacyRepo for PrivacyStore {
    async fn update_consents(
        &self,
        req: &RequestKey,
        customer: CustomerId,
        update: ConsentUpdate,
    ) -> Result<ConsentsUpdated> {
        let priority = &self.priority;
        idempotent!(&self.store, req, lock = begin_identity, |txn| {
            update_consents(&txn, customer, &update, &req.principal, priority)
        })
    }

    async fn consent_history(
        &self,
        customer: CustomerId,
        page: &PageRequest,
    ) -> Result<Page<ConsentChange>> {
        snapshot!(self.store, |txn| consent_history(&txn, customer, page))
    }

    async fn erase_customer(
        &self,
        req: &RequestKey,
        customer: CustomerId,
        principal: &str,
    ) -> Result<Erasure> {
        idempotent!(&self.store, req, lock = begin_identity, |txn| erase(
            &txn, customer, principal
        ))
    }

    async fn export_customer(&self, customer: CustomerId) -> Result<CustomerExport> {
        let mut export = snapshot!(self.store, |txn| export(&txn, customer))?;
        // Audit events live in their own database on SQLite: read after the snapshot, so an
        // export may list a read that happened while it was being made.
        export.audit_events = audit_events_of(&self.store.audit_db, &export.ids).await?;
        Ok(export)
    }
}

#[async_trait]
impl AuditLog for Store {
    async fn record(&self, principal: &str, rpc: &str, customers: &[CustomerId]) -> Result<()> {
        if customers.is_empty() {
            return Ok(());
        }
        self.audit
            .record(&self.audit_db, audit_rows(principal, rpc, customers))
            .await
    }

    async fn list_audit_events(
        &self,
        filter: &AuditFilter,
        page: &PageRequest,
    ) -> Result<Page<AuditEvent>> {
        // One statement: its own snapshot.
        list_audit(&self.audit_db, filter, page).await
    }
}

impl Store {
    /// Every `table.column` holding `needle` anywhere in its value (text, JSON or bytes), over
    /// every table of the database: the check that an erasure left nothing behind. It scans
    /// every column of every table: for operators and tests, not for a request path.
    pub async fn locate_text(&self, needle: &str) -> Result<Vec<String>> {
        let conn = &self.writer;
        let backend = conn.get_database_backend();
        let columns = match backend {
            DbBackend::Postgres => {
                "SELECT table_name AS t, column_name AS c, data_type AS ty \
                 FROM information_schema.columns WHERE table_schema = current_schema() \
                 ORDER BY table_name, ordinal_position"
            }
            _ => {
                "SELECT m.name AS t, p.name AS c, p.type AS ty FROM sqlite_master m \
                 JOIN pragma_table_info(m.name) p WHERE m.type = 'table' ORDER BY m.name, p.cid"
            }
        };
        let rows = conn
            .query_all_raw(Sql::new(backend, columns).build())
            .await
            .db()?;
        let mut found = Vec::new();
        for row in rows {
            let table: String = get(&row, "t")?;
            let column: String = get(&row, "c")?;
            let ty: String = get(&row, "ty")?;
            let test = match backend {
                DbBackend::Postgres => match ty.as_str() {
                    "text" | "character varying" | "json" | "jsonb" | "ARRAY" => {
                        format!("strpos(\"{column}\"::text, ")
                    }
                    "bytea" => "position(convert_to(".to_owned(),
                    _ => continue,
                },
                _ => format!("instr(CAST(\"{column}\" AS BLOB), CAST("),
            };
            let mut sql = Sql::new(
                backend,
                &format!("SELECT COUNT(*) AS n FROM \"{table}\" WHERE {test}"),
            );
            sql.bind(text(needle));
            match (backend, ty.as_str()) {
                (DbBackend::Postgres, "bytea") => {
                    sql.push(&format!(", 'UTF8') in \"{column}\") > 0"));
                }
                (DbBackend::Postgres, _) => {
                    sql.push(") > 0");
                }
                _ => {
                    sql.push(" AS BLOB)) > 0");
                }
            }
            let n: i64 = match conn.query_one_raw(sql.build()).await.db()? {
                Some(row) => get(&row, "n")?,
                None => 0,
            };
            if n > 0 {
                found.push(format!("{table}.{column}"));
            }
        }
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use cxhub_domain::identifier::CustomerId;
    use cxhub_domain::privacy::AuditLog;

    use super::{AUDIT_RESTART_FRAMES, AUDIT_RUN_ROWS, AUDIT_WAL_FRAMES};
    use crate::store::{Store, StoreOptions};

    async fn count(store: &Store, sql: &str) -> i64 {
        use sea_orm::ConnectionTrait;
        store
            .audit_db
            .query_one_raw(sea_orm::Statement::from_string(
                sea_orm::DbBackend::Sqlite,
                sql,
            ))
            .await
            .unwrap()
            .unwrap()
            .try_get_by_index::<i64>(0)
            .unwrap()
    }

    /// Makes every audit event about `customer` fail to be written (a trigger).
    async fn refuse_events_of(store: &Store, customer: CustomerId) {
        use sea_orm::ConnectionTrait;
        store
            .audit_db
            .execute_unprepared(&format!(
                "CREATE TRIGGER refuse_{n} BEFORE INSERT ON audit_events \
                 WHEN NEW.customer_id = '{customer}' BEGIN SELECT RAISE(ABORT, 'refused'); END",
                n = customer.to_string().replace('-', "_")
            ))
            .await
            .unwrap();
    }

    /// A read whose events cannot be written is refused with `UNAVAILABLE`, none of its
    /// events stays behind, and the reads after it are audited as before: on a SQLite file
    /// (the audit file's own connection) and in memory (sea-orm).
    #[tokio::test]
    async fn a_read_whose_events_cannot_be_written_is_refused_and_leaves_none() {
        let dir = tempfile::tempdir().unwrap();
        let file = format!("sqlite://{}", dir.path().join("cxhub.db").display());
        for url in [file.as_str(), "sqlite::memory:"] {
            let store = Store::connect(url, StoreOptions::default()).await.unwrap();
            store.migrate().await.unwrap();
            let (ana, bea) = (CustomerId::generate(), CustomerId::generate());
            refuse_events_of(&store, bea).await;
            let refused = store.record("eva", "BatchGetCustomers", &[ana, bea]).await;
            assert!(
                matches!(&refused, Err(cxhub_domain::Error::Unavailable(m)) if m.contains("audit")),
                "{url}: {refused:?}"
            );
            assert_eq!(
                count(&store, "SELECT COUNT(*) FROM audit_events").await,
                0,
                "{url}: ana's event went with bea's"
            );
            store.record("eva", "GetCustomer", &[ana]).await.unwrap();
            assert_eq!(count(&store, "SELECT COUNT(*) FROM audit_events").await, 1);
            let through_own = store
                .audit
                .lite_groups
                .load(std::sync::atomic::Ordering::Relaxed);
            assert_eq!(through_own > 0, url == file, "{url}");
        }
    }

    /// When another process holds the audit file's write lock, the writer waits for it on a
    /// blocking thread: the runtime's one thread keeps running other tasks meanwhile, and the
    /// read is audited once the lock is released. The writer goes back to not waiting after a
    /// wait whose write failed as after one that succeeded.
    #[tokio::test]
    async fn a_locked_audit_file_is_waited_for_off_the_runtime() {
        use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cxhub.db");
        let url = format!("sqlite://{}", path.display());
        let store = Store::connect(&url, StoreOptions::default()).await.unwrap();
        store.migrate().await.unwrap();
        let (ana, bea) = (CustomerId::generate(), CustomerId::generate());
        store.record("eva", "GetCustomer", &[ana]).await.unwrap();
        refuse_events_of(&store, bea).await;
        let mut audit = path.into_os_string();
        audit.push(crate::store::AUDIT_FILE_SUFFIX);

        // Each read audited while another connection holds the write lock for 300 ms.
        let hold = std::time::Duration::from_millis(300);
        for (customer, written) in [(ana, true), (bea, false), (ana, true)] {
            let other = rusqlite::Connection::open(&audit).unwrap();
            other.execute_batch("BEGIN IMMEDIATE").unwrap();
            let holder = std::thread::spawn(move || {
                std::thread::sleep(hold);
                other.execute_batch("COMMIT").unwrap();
            });
            let ticks = std::sync::Arc::new(AtomicU64::new(0));
            let ticker = tokio::spawn({
                let ticks = ticks.clone();
                async move {
                    loop {
                        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                        ticks.fetch_add(1, Relaxed);
                    }
                }
            });
            let started = std::time::Instant::now();
            let recorded = store.record("eva", "GetCustomer", &[customer]).await;
            let waited = started.elapsed();
            ticker.abort();
            holder.join().unwrap();
            assert_eq!(recorded.is_ok(), written, "{recorded:?}");
            assert!(waited >= hold / 2, "written while locked? {waited:?}");
            assert!(
                ticks.load(Relaxed) >= 10,
                "the runtime's thread was held: {} ticks in {waited:?}",
                ticks.load(Relaxed)
            );
        }
        assert_eq!(count(&store, "SELECT COUNT(*) FROM audit_events").await, 3);
    }

    /// Without an audit file of its own (an in-memory database) the runs are added through
    /// sea-orm, with the same statements.
    #[tokio::test]
    async fn runs_are_added_through_sea_orm_in_memory() {
        let store = Store::connect("sqlite::memory:", StoreOptions::default())
            .await
            .unwrap();
        store.migrate().await.unwrap();
        let many: Vec<CustomerId> = (0..AUDIT_RUN_ROWS)
            .map(|_| CustomerId::generate())
            .collect();
        store.record("eva", "SearchCustomers", &many).await.unwrap();
        let ana = CustomerId::generate();
        store.record("eva", "GetCustomer", &[ana]).await.unwrap();
        assert_eq!(count(&store, "SELECT COUNT(*) FROM audit_runs").await, 1);
        assert_eq!(
            count(&store, "SELECT COUNT(*) FROM audit_customer_runs").await,
            i64::try_from(AUDIT_RUN_ROWS).unwrap()
        );
        assert_eq!(
            count(&store, "SELECT MAX(through_rowid) FROM audit_runs").await,
            count(
                &store,
                "SELECT MAX(rowid) FROM audit_events WHERE rpc = 'SearchCustomers'"
            )
            .await
        );
        assert_eq!(
            store
                .audit
                .lite_groups
                .load(std::sync::atomic::Ordering::Relaxed),
            0
        );
    }

    /// On SQLite a customer's audit events are found both in the customer runs and among the
    /// events after the newest run, listed newest first and paged across the two; a run is
    /// added once enough events came after the newest, and a reopened store goes on counting
    /// from what is in the file.
    #[tokio::test]
    async fn a_customers_audit_events_are_found_in_the_runs_and_after_them() {
        use cxhub_domain::page::PageRequest;
        use cxhub_domain::privacy::AuditFilter;
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("cxhub.db").display());
        let store = Store::connect(&url, StoreOptions::default()).await.unwrap();
        store.migrate().await.unwrap();
        let ana = CustomerId::generate();
        let others: Vec<CustomerId> = (0..AUDIT_RUN_ROWS)
            .map(|_| CustomerId::generate())
            .collect();
        store.record("eva", "GetCustomer", &[ana]).await.unwrap();
        assert_eq!(count(&store, "SELECT COUNT(*) FROM audit_runs").await, 0);
        // Past the threshold: the next run holds the events so far.
        store
            .record("eva", "SearchCustomers", &others)
            .await
            .unwrap();
        store.record("rui", "GetCustomer", &[ana]).await.unwrap();
        assert_eq!(count(&store, "SELECT COUNT(*) FROM audit_runs").await, 1);
        assert_eq!(
            store
                .audit
                .lite_groups
                .load(std::sync::atomic::Ordering::Relaxed),
            3,
            "each group written through the audit file's own connection"
        );
        assert_eq!(
            count(&store, "SELECT COUNT(*) FROM audit_customer_runs").await,
            AUDIT_RUN_ROWS as i64 + 1
        );
        let filter = AuditFilter {
            customer: Some(ana),
            ..Default::default()
        };
        let first = store
            .list_audit_events(
                &filter,
                &PageRequest {
                    size: 1,
                    after: None,
                },
            )
            .await
            .unwrap();
        assert_eq!(first.items.len(), 1);
        assert_eq!(first.items[0].principal, "rui", "after the run, newest");
        let second = store
            .list_audit_events(
                &filter,
                &PageRequest {
                    size: 1,
                    after: first.next_after.clone(),
                },
            )
            .await
            .unwrap();
        assert_eq!(second.items.len(), 1);
        assert_eq!(second.items[0].principal, "eva", "in the run");
        assert_eq!(second.items[0].customer, ana);
        assert!(second.next_after.is_none());
        let by_eva = store
            .list_audit_events(
                &AuditFilter {
                    customer: Some(ana),
                    principal: Some("eva".into()),
                    ..Default::default()
                },
                &PageRequest {
                    size: 10,
                    after: None,
                },
            )
            .await
            .unwrap();
        assert_eq!(by_eva.items.len(), 1);
        assert_eq!(by_eva.items[0].rpc, "GetCustomer");
        // The export's query: several customers at once, from the run and after it.
        let of_two = super::audit_events_of(&store.audit_db, &[ana, others[7]])
            .await
            .unwrap();
        let rpcs: Vec<&str> = of_two.iter().map(|e| e.rpc.as_str()).collect();
        assert_eq!(rpcs, ["GetCustomer", "SearchCustomers", "GetCustomer"]);
        drop(store);

        // Reopened: the one event after the run is counted, and a run comes again once
        // enough have followed it.
        let store = Store::connect(&url, StoreOptions::default()).await.unwrap();
        store.migrate().await.unwrap();
        let more: Vec<CustomerId> = (0..AUDIT_RUN_ROWS - 1)
            .map(|_| CustomerId::generate())
            .collect();
        store.record("eva", "SearchCustomers", &more).await.unwrap();
        store.record("eva", "GetCustomer", &[ana]).await.unwrap();
        assert_eq!(count(&store, "SELECT COUNT(*) FROM audit_runs").await, 2);
        let all = store
            .list_audit_events(
                &filter,
                &PageRequest {
                    size: 10,
                    after: None,
                },
            )
            .await
            .unwrap();
        assert_eq!(all.items.len(), 3);
        assert!(
            all.items.windows(2).all(|w| w[0].id > w[1].id),
            "newest first"
        );
    }

    /// Reads of many customers at once fill the audit file's WAL fastest (rows, their
    /// principal index and the customer runs). Once it holds `AUDIT_RESTART_FRAMES`, the checkpointer beside
    /// the writer catches up and holds the writer for the checkpoint after which the WAL
    /// restarts. Whether it gets there before the writer's own bound is a matter of speed (a
    /// benchmark's question, not a test's); that it happens under a steady load is asserted
    /// here: the writers keep going until it did, or until they wrote ten times the bound.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_audit_wal_restarts_beside_a_busy_writer() {
        use std::sync::atomic::Ordering::Relaxed;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cxhub.db");
        let store = Store::connect(
            &format!("sqlite://{}", path.display()),
            StoreOptions::default(),
        )
        .await
        .unwrap();
        store.migrate().await.unwrap();
        let customers: std::sync::Arc<Vec<CustomerId>> =
            std::sync::Arc::new((0..5_000).map(|_| CustomerId::generate()).collect());
        // 16 readers of 20 customers each.
        let written = std::sync::Arc::new(std::sync::atomic::AtomicI64::new(0));
        let limit = 10 * i64::from(AUDIT_WAL_FRAMES);
        let mut readers = tokio::task::JoinSet::new();
        for reader in 0..16u64 {
            let (store, customers, written) = (store.clone(), customers.clone(), written.clone());
            readers.spawn(async move {
                let mut n = reader;
                while store.audit.held_checkpoints.load(Relaxed) == 0
                    && written.load(Relaxed) < limit
                {
                    n = n
                        .wrapping_mul(6_364_136_223_846_793_005)
                        .wrapping_add(1_442_695_040_888_963_407);
                    let picked: Vec<CustomerId> = (0..20)
                        .map(|k| customers[((n >> 20) as usize + k * 7_919) % customers.len()])
                        .collect();
                    store
                        .record("ana", "SearchCustomers", &picked)
                        .await
                        .unwrap();
                    written.fetch_add(20, Relaxed);
                }
            });
        }
        while let Some(reader) = readers.join_next().await {
            reader.unwrap();
        }
        assert!(
            store.audit.held_checkpoints.load(Relaxed) > 0,
            "the checkpointer never restarted the WAL in {} events",
            written.load(Relaxed)
        );
        // The WAL file keeps the largest size it reached: past the restart point.
        let mut wal = path.as_os_str().to_owned();
        wal.push(format!("{}-wal", crate::store::AUDIT_FILE_SUFFIX));
        let frames = std::fs::metadata(&wal).unwrap().len() / (4096 + 24);
        assert!(
            frames > AUDIT_RESTART_FRAMES as u64,
            "the WAL reached the restart point ({frames} frames)"
        );
    }
}
