//! Transaction events (`transaction_events`, see [`cxhub_domain::feed::RecordEvent`]) and
//! their readers: the loyalty rule follower (`ORDER_DELIVERED`, `PAYMENT_FAILED`,
//! `CASE_CLOSED`, `SUBSCRIPTION_DOWNGRADED`, `SUBSCRIPTION_CANCELLED`), the points
//! accrual (payments earn, refunds and failures reverse) and the scheduled points expiry.
//!
//! Writing: [`gather`] adds the events of the records an ingest batch writes to its inserts, in
//! the ingest transaction, under the identity lock (so `seq` is commit order).
//! `ON CONFLICT (source, record_type, record_id, kind) DO NOTHING` makes each event happen
//! once per record: a re-sent record writes nothing at all (UNCHANGED), a stale one neither,
//! and a new version with the same status adds no second event.
//!
//! Reading: each reader keeps its position in `transaction_event_positions` and moves it in the
//! transaction of what it does with the events it read, so a restart neither loses nor repeats
//! one. The customer of an event is the customer its record belongs to now (`feed_records`,
//! kept current by merges and splits); an erased customer's records are deleted, so their
//! events reach no one and are passed over.

use chrono::{DateTime, Utc};
use cxhub_domain::error::{Error, Result};
use cxhub_domain::feed::{IngestItem, RecordEvent, RecordEventKind, ingested_transaction_id};
use cxhub_domain::identifier::CustomerId;
use cxhub_domain::loyalty::points::{EntryKind, Refund, reversal_points};
use cxhub_domain::loyalty::repo::{EventPass, PointsOp, PointsPosting};
use cxhub_domain::loyalty::rule::Trigger;
use cxhub_domain::money::{Currency, Money};
use sea_orm::{ConnectionTrait, DatabaseTransaction, QueryResult};

use crate::error::{DbResultExt, corrupt};
use crate::sql::{Inserts, Pg, Sql, col, int, nullable, text, text_opt, time};
use crate::store::{Backend, Store};

/// The reader position of the loyalty rule follower.
const RULES: &str = "loyalty_rules";
/// The reader position of the points accrual.
const POINTS: &str = "points";

// ------------------------------------------------------------------------------------------------
// Writing

/// Adds the events of the records written (`records`: positions in `items` and their
/// customers, the last write of each key) to `inserts`.
pub(crate) async fn gather(
    inserts: &mut Inserts<'_, DatabaseTransaction>,
    items: &[IngestItem],
    records: &[(usize, CustomerId)],
    now: DateTime<Utc>,
) -> Result<()> {
    let rows: Vec<_> = records
        .iter()
        .filter_map(|(pos, _)| {
            let item = items.get(*pos)?;
            let e = item.derived.event.as_ref()?;
            Some(vec![
                text(item.key.source.as_str()),
                text(item.key.record_type.as_str()),
                text(item.key.record_id.as_str()),
                text(e.kind.as_str()),
                time(e.occurred_at),
                text_opt(e.related_record_id.clone()),
                int_opt(e.amount.map(|m| m.amount_minor)),
                text_opt(e.amount.map(|m| m.currency.code().to_owned())),
                int_opt(e.delay_days),
                int_opt(e.company_at_fault.map(i64::from)),
                time(now),
            ])
        })
        .collect();
    inserts
        .add(
            "transaction_events",
            &[
                col("source", Pg::Text),
                col("record_type", Pg::Text),
                col("record_id", Pg::Text),
                col("kind", Pg::Text),
                col("occurred_at", Pg::Time),
                nullable("related_record_id", Pg::Text),
                nullable("amount_minor", Pg::Int),
                nullable("currency_code", Pg::Text),
                nullable("delay_days", Pg::Int),
                nullable("company_at_fault", Pg::Int),
                col("recorded_at", Pg::Time),
            ],
            rows,
            "ON CONFLICT (source, record_type, record_id, kind) DO NOTHING",
        )
        .await
        .db()
}

fn int_opt(i: Option<i64>) -> sea_orm::Value {
    sea_orm::Value::BigInt(i)
}

// ------------------------------------------------------------------------------------------------
// Reading

/// One stored event, with the customer its record belongs to now (`None`: the record is gone,
/// its customer erased).
pub(crate) struct StoredEvent {
    pub(crate) seq: i64,
    pub(crate) source: String,
    pub(crate) record_id: String,
    pub(crate) customer: Option<CustomerId>,
    pub(crate) event: RecordEvent,
}

/// On PostgreSQL, one reader pass at a time across replicas; then the reader's position.
async fn position(txn: &DatabaseTransaction, backend: Backend, reader: &str) -> Result<i64> {
    if backend == Backend::Postgres {
        let mut sql = Sql::new(
            sea_orm::DbBackend::Postgres,
            "SELECT pg_advisory_xact_lock(hashtext('cxhub.transaction-events.' || ",
        );
        sql.bind(text(reader)).push("))");
        txn.execute_raw(sql.build()).await.db()?;
    }
    let mut sql = Sql::new(
        txn.get_database_backend(),
        "SELECT seq FROM transaction_event_positions WHERE reader = ",
    );
    sql.bind(text(reader));
    let row = txn
        .query_one_raw(sql.build())
        .await
        .db()?
        .ok_or_else(|| corrupt(format!("the transaction event reader {reader} has no row")))?;
    get(&row, "seq")
}

async fn set_position(txn: &DatabaseTransaction, reader: &str, seq: i64) -> Result<()> {
    let mut sql = Sql::new(
        txn.get_database_backend(),
        "UPDATE transaction_event_positions SET seq = ",
    );
    sql.bind(int(seq))
        .push(" WHERE reader = ")
        .bind(text(reader));
    txn.execute_raw(sql.build()).await.db()?;
    Ok(())
}

/// Up to `max` events after `after`, in order, with their customers now.
async fn read_after(conn: &impl ConnectionTrait, after: i64, max: u32) -> Result<Vec<StoredEvent>> {
    let mut sql = Sql::new(
        conn.get_database_backend(),
        "SELECT e.seq, e.source, e.record_type, e.record_id, e.kind, e.occurred_at, \
         e.related_record_id, e.amount_minor, e.currency_code, e.delay_days, \
         e.company_at_fault, f.customer_id FROM transaction_events e \
         LEFT JOIN feed_records f ON f.source = e.source AND f.record_type = e.record_type \
         AND f.record_id = e.record_id WHERE e.seq > ",
    );
    sql.bind(int(after))
        .push(" ORDER BY e.seq")
        .limit(u64::from(max));
    conn.query_all_raw(sql.build())
        .await
        .db()?
        .iter()
        .map(stored_event)
        .collect()
}

fn stored_event(row: &QueryResult) -> Result<StoredEvent> {
    let kind: String = get(row, "kind")?;
    let amount_minor: Option<i64> = get(row, "amount_minor")?;
    let currency: Option<String> = get(row, "currency_code")?;
    let amount = match (amount_minor, currency) {
        (Some(minor), Some(code)) => {
            Some(Money::new(minor, Currency::parse(&code).map_err(corrupt)?))
        }
        _ => None,
    };
    let fault: Option<i64> = get(row, "company_at_fault")?;
    let customer: Option<String> = get(row, "customer_id")?;
    Ok(StoredEvent {
        seq: get(row, "seq")?,
        source: get(row, "source")?,
        record_id: get(row, "record_id")?,
        customer: customer.map(|c| c.parse().map_err(corrupt)).transpose()?,
        event: RecordEvent {
            kind: kind.parse::<RecordEventKind>().map_err(corrupt)?,
            occurred_at: get(row, "occurred_at")?,
            related_record_id: get(row, "related_record_id")?,
            amount,
            delay_days: get(row, "delay_days")?,
            company_at_fault: fault.map(|f| f != 0),
        },
    })
}

// ------------------------------------------------------------------------------------------------
// The rule follower's part

/// One transaction event that fires a rule trigger for a live customer.
pub(crate) struct TriggeredEvent {
    pub(crate) trigger: Trigger,
    pub(crate) customer: CustomerId,
    /// The run key of the rules it fires: `transaction-event:<seq>`.
    pub(crate) run: String,
    pub(crate) event: RecordEvent,
}

/// Reads up to `max` transaction events after the rule follower's position (counted in
/// `pass.read`) and moves the position past them, in `txn` (the follower's transaction, which
/// also records what the rules do with them); answers those that fire a trigger for a
/// customer who still has the record.
pub(crate) async fn rule_events(
    txn: &DatabaseTransaction,
    backend: Backend,
    max: u32,
    pass: &mut EventPass,
) -> Result<Vec<TriggeredEvent>> {
    let after = position(txn, backend, RULES).await?;
    let events = read_after(txn, after, max).await?;
    let Some(last) = events.last().map(|e| e.seq) else {
        return Ok(Vec::new());
    };
    pass.read += events.len() as u64;
    set_position(txn, RULES, last).await?;
    Ok(events
        .into_iter()
        .filter_map(|e| {
            Some(TriggeredEvent {
                trigger: e.event.kind.trigger()?,
                customer: e.customer?,
                run: format!("transaction-event:{}", e.seq),
                event: e.event,
            })
        })
        .collect())
}

// ------------------------------------------------------------------------------------------------
// Points

/// What one accrual pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AccrualPass {
    /// Transaction events read.
    pub read: u64,
    /// Accruals posted (succeeded payments).
    pub earned: u64,
    /// Reversals posted (refunds, payments that failed after succeeding).
    pub reversed: u64,
    /// Events that moved no points: nothing to earn (no programme, no rule for the currency,
    /// less than a point), already counted (an `EarnPoints` of the same transaction), nothing
    /// to reverse, or no customer (erased).
    pub skipped: u64,
}

/// The reasons a posting is passed over rather than retried: what the programme or the
/// ledger says cannot be posted, now or ever.
const SKIPPED: [&str; 6] = [
    "NO_EARNING_RULE",
    "NO_POINTS_EARNED",
    "CUSTOMER_ERASED",
    "REVERSAL_EXCEEDS_ACCRUAL",
    "INSUFFICIENT_POINTS",
    "POINTS_OVERFLOW",
];

impl Store {
    /// Posts the points of the transaction events after the accrual's position, up to `max`,
    /// in one transaction that also moves the position:
    ///
    /// - a succeeded payment earns what the programme says (`EarnPoints` of the transaction
    ///   [`ingested_transaction_id`] for its customer and amount: the same request id
    ///   `earn:<transaction>`, so an `EarnPoints` call for the same payment and this never both
    ///   count);
    /// - a refund naming a payment that earned reverses its share of those points
    ///   ([`reversal_points`], cumulative over the payment's refunds, never more than the
    ///   balance: the rest is the shortfall), request id `rev:<refund transaction>`;
    /// - a payment that fails after it earned reverses what is left of its points, request id
    ///   `void:<transaction>`.
    ///
    /// Events with nothing to post are passed over (see [`AccrualPass::skipped`]).
    pub async fn accrue_points(&self, max: u32) -> Result<AccrualPass> {
        let txn = self.begin_loyalty().await?;
        match accrue(&txn, self.kind, max.max(1)).await {
            Ok(pass) => {
                txn.commit().await.db()?;
                if pass.earned + pass.reversed > 0 {
                    tracing::info!(
                        read = pass.read,
                        earned = pass.earned,
                        reversed = pass.reversed,
                        skipped = pass.skipped,
                        "points accrued from transactions"
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

    /// Posts the expiry of every lot expired at `now` and not yet posted as expired: one
    /// `EXPIRY` entry per customer (request id `expiry:<uuid>`, to breakage), in transactions
    /// of at most `batch` customers. Answers the number of entries posted. Erased customers are
    /// passed over (their points are gone with them).
    pub async fn expire_points(&self, now: DateTime<Utc>, batch: u32) -> Result<u64> {
        let now = chrono::SubsecRound::trunc_subsecs(now, 6);
        let candidates = {
            let txn = self.begin_read().await?;
            let found = expiry_candidates(&txn, now).await;
            crate::store::rollback(txn).await;
            found?
        };
        let mut posted = 0;
        for chunk in candidates.chunks(batch.max(1) as usize) {
            let txn = self.begin_loyalty().await?;
            match expire_chunk(&txn, self.kind, chunk, now).await {
                Ok(n) => {
                    txn.commit().await.db()?;
                    posted += n;
                }
                Err(err) => {
                    crate::store::rollback(txn).await;
                    return Err(err);
                }
            }
        }
        if posted > 0 {
            tracing::info!(customers = posted, "expired points posted");
        }
        Ok(posted)
    }
}

async fn accrue(txn: &DatabaseTransaction, backend: Backend, max: u32) -> Result<AccrualPass> {
    let after = position(txn, backend, POINTS).await?;
    let events = read_after(txn, after, max).await?;
    let mut pass = AccrualPass {
        read: events.len() as u64,
        ..AccrualPass::default()
    };
    let Some(last) = events.last().map(|e| e.seq) else {
        return Ok(pass);
    };
    // Every customer of the pass locked at once, in id order, as the rule follower does: two
    // tasks taking the same customers one by one in different orders could deadlock.
    let customers: Vec<CustomerId> = events.iter().filter_map(|e| e.customer).collect();
    crate::loyalty::lock_customers(txn, backend, &customers).await?;
    // Without a programme no payment earns: each is passed over here, as `post` would refuse
    // it (`NO_EARNING_RULE`) after reading the customer and their ledger — five queries a
    // payment, most of a catch-up over a bulk load. (A programme once set is never removed,
    // so there are no accrued lots whose expiry `post` would have posted first.)
    let programme_set = crate::loyalty::get_programme(txn).await?.is_some();
    for e in &events {
        let posting = match posting_for(txn, e).await? {
            Some(p) if programme_set || !matches!(p.op, PointsOp::Earn { .. }) => p,
            _ => {
                pass.skipped += 1;
                continue;
            }
        };
        // Already posted under this request id (by `EarnPoints`, or before): counted once.
        if crate::loyalty::entry_by_request(txn, &posting.request_id)
            .await?
            .is_some()
        {
            pass.skipped += 1;
            continue;
        }
        let kind = match &posting.op {
            PointsOp::Earn { .. } => EntryKind::Accrual,
            _ => EntryKind::Reversal,
        };
        match crate::loyalty::post(txn, backend, &posting).await {
            Ok(Some(_)) if kind == EntryKind::Accrual => pass.earned += 1,
            Ok(Some(_)) => pass.reversed += 1,
            Ok(None) => pass.skipped += 1,
            Err(Error::FailedPrecondition { reason, message }) if SKIPPED.contains(&reason) => {
                tracing::debug!(seq = e.seq, reason, message, "transaction earns no points");
                pass.skipped += 1;
            }
            Err(err) => return Err(err),
        }
    }
    set_position(txn, POINTS, last).await?;
    Ok(pass)
}

/// The posting an event makes, if any.
async fn posting_for(txn: &DatabaseTransaction, e: &StoredEvent) -> Result<Option<PointsPosting>> {
    let Some(customer) = e.customer else {
        return Ok(None);
    };
    let transaction = ingested_transaction_id(&e.source, &e.record_id);
    match e.event.kind {
        RecordEventKind::PaymentSucceeded => {
            Ok(e.event
                .amount
                .filter(|a| a.amount_minor > 0)
                .map(|amount| PointsPosting {
                    request_id: format!("earn:{transaction}"),
                    customer,
                    op: PointsOp::Earn {
                        transaction,
                        amount,
                    },
                }))
        }
        RecordEventKind::PaymentFailed => {
            let Some(open) = open_points(txn, &transaction).await? else {
                return Ok(None);
            };
            Ok((open > 0).then(|| PointsPosting {
                request_id: format!("void:{transaction}"),
                customer,
                op: PointsOp::Reverse {
                    source_ref: transaction,
                    points: open,
                },
            }))
        }
        RecordEventKind::RefundIssued => {
            let (Some(payment_id), Some(refunded_now)) =
                (e.event.related_record_id.as_deref(), e.event.amount)
            else {
                return Ok(None);
            };
            let paid = ingested_transaction_id(&e.source, payment_id);
            let Some(accrued) = accrued_points(txn, &paid).await? else {
                return Ok(None);
            };
            let Some(payment_amount) = payment_amount(txn, &e.source, payment_id).await? else {
                return Ok(None);
            };
            let refunded_before = refunded_before(txn, e, payment_id, payment_amount.currency)
                .await?
                .min(payment_amount.amount_minor);
            let refund = Refund {
                transaction_amount: payment_amount,
                refunded_before: Money::new(refunded_before, payment_amount.currency),
                refunded_now: Money::new(
                    refunded_now
                        .amount_minor
                        .min(payment_amount.amount_minor - refunded_before),
                    refunded_now.currency,
                ),
            };
            let wanted = match reversal_points(accrued, &refund) {
                Ok(points) => points,
                Err(err) => {
                    tracing::debug!(seq = e.seq, error = %err, "a refund reverses no points");
                    return Ok(None);
                }
            };
            let Some(open) = open_points(txn, &paid).await? else {
                return Ok(None);
            };
            let points = wanted.min(open);
            Ok((points > 0).then(|| PointsPosting {
                request_id: format!("rev:{transaction}"),
                customer,
                op: PointsOp::Reverse {
                    source_ref: paid,
                    points,
                },
            }))
        }
        RecordEventKind::OrderDelivered
        | RecordEventKind::CaseResolved
        | RecordEventKind::CaseClosed
        | RecordEventKind::SubscriptionDowngraded
        | RecordEventKind::SubscriptionCancelled => Ok(None),
    }
}

/// Points the transaction's accrual (request id `earn:<transaction>`) earned, if it earned.
async fn accrued_points(txn: &DatabaseTransaction, transaction: &str) -> Result<Option<i64>> {
    Ok(
        crate::loyalty::entry_by_request(txn, &format!("earn:{transaction}"))
            .await?
            .filter(|(_, p)| p.entry.kind == EntryKind::Accrual)
            .map(|(_, p)| p.entry.points),
    )
}

/// Points of the transaction not reversed yet (clawed back or recorded as shortfall); `None`
/// when it earned nothing.
async fn open_points(txn: &DatabaseTransaction, transaction: &str) -> Result<Option<i64>> {
    let Some(accrued) = accrued_points(txn, transaction).await? else {
        return Ok(None);
    };
    let mut sql = Sql::new(
        txn.get_database_backend(),
        "SELECT CAST(COALESCE(SUM(shortfall - points), 0) AS BIGINT) AS reversed FROM loyalty_point_entries \
         WHERE kind = 'REVERSAL' AND source_ref = ",
    );
    sql.bind(text(transaction));
    let reversed: i64 = match txn.query_one_raw(sql.build()).await.db()? {
        Some(row) => get(&row, "reversed")?,
        None => 0,
    };
    Ok(Some(accrued - reversed))
}

/// The amount of the payment's succeeded event.
async fn payment_amount(
    txn: &DatabaseTransaction,
    source: &str,
    payment_id: &str,
) -> Result<Option<Money>> {
    let mut sql = Sql::new(
        txn.get_database_backend(),
        "SELECT amount_minor, currency_code FROM transaction_events WHERE source = ",
    );
    sql.bind(text(source))
        .push(" AND record_type = 'payment' AND record_id = ")
        .bind(text(payment_id))
        .push(" AND kind = ")
        .bind(text(RecordEventKind::PaymentSucceeded.as_str()));
    let Some(row) = txn.query_one_raw(sql.build()).await.db()? else {
        return Ok(None);
    };
    let minor: Option<i64> = get(&row, "amount_minor")?;
    let code: Option<String> = get(&row, "currency_code")?;
    match (minor, code) {
        (Some(minor), Some(code)) => Ok(Some(Money::new(
            minor,
            Currency::parse(&code).map_err(corrupt)?,
        ))),
        _ => Ok(None),
    }
}

/// What refunds before `e` gave back on the payment, in its currency.
async fn refunded_before(
    txn: &DatabaseTransaction,
    e: &StoredEvent,
    payment_id: &str,
    currency: Currency,
) -> Result<i64> {
    let mut sql = Sql::new(
        txn.get_database_backend(),
        "SELECT CAST(COALESCE(SUM(amount_minor), 0) AS BIGINT) AS total FROM transaction_events WHERE source = ",
    );
    sql.bind(text(e.source.as_str()))
        .push(" AND kind = ")
        .bind(text(RecordEventKind::RefundIssued.as_str()))
        .push(" AND related_record_id = ")
        .bind(text(payment_id))
        .push(" AND currency_code = ")
        .bind(text(currency.code()))
        .push(" AND seq < ")
        .bind(int(e.seq));
    match txn.query_one_raw(sql.build()).await.db()? {
        Some(row) => get(&row, "total"),
        None => Ok(0),
    }
}

/// Customers with an entry whose points expired at `now` after the last expiry posted for
/// them (a customer whose expired lots were all spent comes back with nothing to expire).
async fn expiry_candidates(
    conn: &impl ConnectionTrait,
    now: DateTime<Utc>,
) -> Result<Vec<CustomerId>> {
    let mut sql = Sql::new(
        conn.get_database_backend(),
        "SELECT DISTINCT e.customer_id FROM loyalty_point_entries e WHERE e.expires_at <= ",
    );
    sql.bind(time(now)).push(
        " AND NOT EXISTS (SELECT 1 FROM loyalty_point_entries x WHERE \
         x.customer_id = e.customer_id AND x.kind = 'EXPIRY' AND x.posted_at >= e.expires_at) \
         ORDER BY e.customer_id",
    );
    conn.query_all_raw(sql.build())
        .await
        .db()?
        .iter()
        .map(|row| {
            let id: String = get(row, "customer_id")?;
            id.parse().map_err(corrupt)
        })
        .collect()
}

/// Posts the expiries of `customers` (ids as stored: a merged one expires with its survivor).
async fn expire_chunk(
    txn: &DatabaseTransaction,
    backend: Backend,
    customers: &[CustomerId],
    now: DateTime<Utc>,
) -> Result<u64> {
    let mut live = std::collections::BTreeSet::new();
    for stored in customers {
        match crate::customers::live(txn, *stored).await {
            Ok(c) => live.insert(c),
            Err(Error::NotFound { .. }) => continue, // erased
            Err(err) => return Err(err),
        };
    }
    // All at once, in id order (see `accrue`).
    let live: Vec<CustomerId> = live.into_iter().collect();
    crate::loyalty::lock_customers(txn, backend, &live).await?;
    let mut posted = 0;
    for customer in live {
        let (mut ledger, _) = crate::loyalty::ledger_of(txn, customer).await?;
        let request_id = format!("expiry:{}", uuid::Uuid::now_v7());
        let Some(expiry) = ledger.plan_expiry(&request_id, customer, now) else {
            continue;
        };
        ledger.post(expiry.clone())?;
        if crate::loyalty::insert_entry(txn, &expiry, "expiry", ledger.balance(customer)).await? {
            tracing::info!(customer_id = %customer, points = expiry.points, "points expired");
            posted += 1;
        }
    }
    Ok(posted)
}

fn get<T: sea_orm::TryGetable>(row: &QueryResult, column: &str) -> Result<T> {
    row.try_get("", column).map_err(corrupt)
}
