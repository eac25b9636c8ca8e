//! Idempotent writes: the first result of a request is stored with the change, in the same
//! transaction, and handed back to retries.

use cxhub_domain::Result;
use cxhub_domain::idempotency::RequestKey;
use sea_orm::{ActiveValue::Set, ConnectionTrait, DatabaseTransaction, EntityTrait, SqlErr};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::entity::idempotency_key;
use crate::error::{DbResultExt, corrupt, db_err};
use crate::store::{Store, rollback};

/// Runs `$work` (an expression that may use the transaction `$txn`, evaluating to a future of
/// `Result<T>`) as an idempotent write of `$req`: a request served before gets its stored
/// result (or `REQUEST_ID_REUSED` if its payload differs); otherwise the work runs and its
/// result is stored with it, in one transaction.
/// The transaction is begun with `Store::begin_write` (the registry's lock), or with the
/// `begin` method named after `lock =`.
macro_rules! idempotent {
    ($store:expr, $req:expr, |$txn:ident| $work:expr) => {
        $crate::idempotency::idempotent!($store, $req, lock = begin_write, |$txn| $work)
    };
    ($store:expr, $req:expr, lock = $begin:ident, |$txn:ident| $work:expr) => {{
        let store: &$crate::store::Store = $store;
        let req: &::cxhub_domain::idempotency::RequestKey = $req;
        let $txn = store.$begin().await?;
        match $crate::idempotency::replay(&$txn, req).await {
            Err(err) => {
                $crate::store::rollback($txn).await;
                Err(err)
            }
            Ok(Some(done)) => {
                $crate::store::rollback($txn).await;
                done
            }
            Ok(None) => match $work.await {
                Err(err) => {
                    $crate::store::rollback($txn).await;
                    Err(err)
                }
                Ok(value) => $crate::idempotency::commit(store, $txn, req, value).await,
            },
        }
    }};
}
pub(crate) use idempotent;

/// The stored outcome of `req`, if it was served before: its result when the payload is the
/// same, `REQUEST_ID_REUSED` when it is not.
pub(crate) async fn replay<T, C>(conn: &C, req: &RequestKey) -> Result<Option<Result<T>>>
where
    T: DeserializeOwned,
    C: ConnectionTrait,
{
    let row = idempotency_key::Entity::find_by_id((
        req.principal.clone(),
        req.method.clone(),
        req.request_id.clone(),
    ))
    .one(conn)
    .await
    .db()?;
    Ok(row.map(|row| {
        if row.fingerprint == req.fingerprint {
            serde_json::from_str(&row.response).map_err(corrupt)
        } else {
            Err(req.reused())
        }
    }))
}

/// Records `value` as the result of `req` and commits. If a concurrent duplicate of the
/// request committed first, rolls back and answers as that one did.
pub(crate) async fn commit<T>(
    store: &Store,
    txn: DatabaseTransaction,
    req: &RequestKey,
    value: T,
) -> Result<T>
where
    T: Serialize + DeserializeOwned,
{
    let response = match serde_json::to_string(&value) {
        Ok(json) => json,
        Err(err) => {
            rollback(txn).await;
            return Err(corrupt(err));
        }
    };
    let row = idempotency_key::ActiveModel {
        principal: Set(req.principal.clone()),
        method: Set(req.method.clone()),
        request_id: Set(req.request_id.clone()),
        fingerprint: Set(req.fingerprint.clone()),
        response: Set(response),
        created_at: Set(crate::now()),
    };
    match idempotency_key::Entity::insert(row)
        .exec_without_returning(&txn)
        .await
    {
        Ok(_) => {}
        Err(err) if matches!(err.sql_err(), Some(SqlErr::UniqueConstraintViolation(_))) => {
            rollback(txn).await;
            tracing::info!(request_id = %req.request_id, "concurrent duplicate request");
            return match replay(&store.writer, req).await? {
                Some(done) => done,
                None => Err(db_err(err)),
            };
        }
        Err(err) => {
            rollback(txn).await;
            return Err(db_err(err));
        }
    }
    txn.commit().await.db()?;
    Ok(value)
}

#[async_trait::async_trait]
impl cxhub_domain::idempotency::AnswerLog for Store {
    async fn stored_answer(&self, req: &RequestKey) -> Result<Option<String>> {
        replay::<serde_json::Value, _>(&self.writer, req)
            .await?
            .map(|answer| answer.map(|json| json.to_string()))
            .transpose()
    }

    async fn store_answer(&self, req: &RequestKey, answer: String) -> Result<String> {
        let value: serde_json::Value = serde_json::from_str(&answer).map_err(corrupt)?;
        use sea_orm::TransactionTrait;
        let txn = self.writer.begin().await.db()?;
        commit(self, txn, req, value)
            .await
            .map(|json| json.to_string())
    }
}
