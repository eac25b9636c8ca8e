//! Dropping a test schema on PostgreSQL never waits forever on a session left idle inside a
//! transaction (as happens when a test's hub is dropped while one of its pool's tasks is between
//! `BEGIN` and `COMMIT`: the synchronous drop blocks the runtime that task needs to finish).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use cxhub_store::{Store, StoreOptions};
use sea_orm::{ConnectionTrait, Database, TransactionTrait};

#[tokio::test]
#[ignore = "needs PostgreSQL: set CXHUB_TEST_POSTGRES_URL and pass --include-ignored"]
async fn a_schema_with_an_idle_transaction_on_its_tables_is_still_dropped() {
    let Ok(url) = std::env::var("CXHUB_TEST_POSTGRES_URL") else {
        panic!("CXHUB_TEST_POSTGRES_URL is not set: this test needs a PostgreSQL database");
    };
    let schema = format!("cxhub_test_{}", uuid::Uuid::now_v7().simple());
    let store = Store::connect(
        &url,
        StoreOptions {
            schema: Some(schema.clone()),
            max_connections: Some(2),
        },
    )
    .await
    .expect("connect postgres");
    store.migrate().await.expect("migrate postgres");

    // Another session reads a table of the schema inside a transaction and then goes quiet.
    let other = Database::connect(url.as_str()).await.expect("connect");
    let txn = other.begin().await.expect("begin");
    txn.execute_unprepared(&format!("SELECT count(*) FROM \"{schema}\".customers"))
        .await
        .expect("read inside the transaction");

    let dropped = tokio::time::timeout(
        Duration::from_secs(60),
        cxhub_store::drop_postgres_schema(&url, &schema),
    )
    .await
    .expect("the drop does not wait on the idle transaction");
    dropped.expect("schema dropped");

    let left = Database::connect(url.as_str()).await.expect("connect");
    let row = left
        .query_one_raw(sea_orm::Statement::from_string(
            sea_orm::DatabaseBackend::Postgres,
            format!("SELECT count(*) AS n FROM pg_namespace WHERE nspname = '{schema}'"),
        ))
        .await
        .expect("query")
        .expect("a row");
    let n: i64 = row.try_get("", "n").expect("count");
    assert_eq!(n, 0, "schema {schema} still exists");
    drop(txn);
    drop(store);
}
