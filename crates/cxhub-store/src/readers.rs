//! Single-statement reads through connections the store holds itself, not through sqlx's pool.
//!
//! sqlx 0.9's pool pings every connection when it goes back to the pool (`return_to_pool` in
//! sqlx-core's `pool/connection.rs`, whatever `test_before_acquire` says), to find connections
//! that a cancelled query left in an unknown state. On SQLite the ping is one more hand-off to
//! the connection's worker thread and back after every statement; on PostgreSQL a round trip
//! to the server (a `Sync` and its `ReadyForQuery`), with the server's CPU on the same machine.
//! The connection cannot serve the next read until it is done. Here a connection goes straight
//! back to the idle list when its statement ran to the end, is pinged (then returned, or
//! dropped) only when the caller gave up on it midway, and is closed when an error says it is
//! broken (the next read opens a new one). A connection idle for longer than the store's idle
//! timeout is closed by a background task, as sqlx's pool closes its own, so a hub that served
//! a burst of reads does not keep every connection of the burst open.
//!
//! The hot reads (`GetCustomer`, `LookupCustomer`, `SearchCustomers`, `GetCustomer360`, score
//! reads) use these through [`Reader`] on PostgreSQL; on a SQLite file the profile's reads go
//! through [`Read`] to the `lite` module's connections instead (stepped on the calling thread),
//! and only the score reads come here. Transactions, pings and everything else keep sqlx's
//! pool, opened with the same options.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sea_orm::sqlx::postgres::PgConnection;
use sea_orm::sqlx::sqlite::SqliteConnection;
use sea_orm::sqlx::{self, Connection};
use sea_orm::{
    ConnAcquireErr, ConnectionTrait, DatabaseConnection, DbBackend, DbErr, ExecResult, QueryResult,
    RuntimeErr, Statement,
};
use sea_query_sqlx::SqlxValues;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::lite::{LiteReaders, Read, Row, sea_all, sea_one};

/// A connection the store can run one read on, whatever the database.
pub(crate) trait ReadConnection: Connection + Sized + 'static {
    /// Every row of `stmt`.
    fn rows(
        &mut self,
        stmt: &mut Statement,
    ) -> impl Future<Output = Result<Vec<QueryResult>, sqlx::Error>> + Send;
    /// The first row of `stmt`, if any.
    fn first_row(
        &mut self,
        stmt: &mut Statement,
    ) -> impl Future<Output = Result<Option<QueryResult>, sqlx::Error>> + Send;
}

/// The statement's text and values, bound as sea-orm binds them (its values taken, not copied).
macro_rules! bound {
    ($stmt:expr) => {{
        let values = $stmt.values.take().unwrap_or(sea_orm::Values(Vec::new()));
        sqlx::query_with(sqlx::AssertSqlSafe($stmt.sql.as_str()), SqlxValues(values))
    }};
}

/// The same two reads for each driver (sqlx's executors are per database type).
macro_rules! read_connection {
    ($($conn:ty),*) => {$(
        impl ReadConnection for $conn {
            async fn rows(&mut self, stmt: &mut Statement) -> Result<Vec<QueryResult>, sqlx::Error> {
                let rows = bound!(stmt).fetch_all(self).await?;
                Ok(rows.into_iter().map(QueryResult::from).collect())
            }

            async fn first_row(
                &mut self,
                stmt: &mut Statement,
            ) -> Result<Option<QueryResult>, sqlx::Error> {
                Ok(bound!(stmt).fetch_optional(self).await?.map(QueryResult::from))
            }
        }
    )*};
}
read_connection!(SqliteConnection, PgConnection);

/// Up to `size` connections to one database, opened when first needed.
pub(crate) struct OwnReaders<C: ReadConnection>(Arc<Inner<C>>);

impl<C: ReadConnection> Clone for OwnReaders<C> {
    fn clone(&self) -> Self {
        OwnReaders(self.0.clone())
    }
}

struct Inner<C: ReadConnection> {
    options: C::Options,
    /// Run on every new connection (PostgreSQL: `TCP_NODELAY`).
    after_connect: Box<dyn Fn() + Send + Sync>,
    /// One permit per connection, open or not: at most `size` statements at a time.
    permits: Arc<Semaphore>,
    /// Connections not in use, with when each came back. A connection is in at most one
    /// place: here or in a [`Lease`].
    idle: Mutex<Vec<(C, Instant)>>,
    acquire_timeout: Duration,
    /// A connection idle longer than this is pinged before use (a server may have closed it);
    /// one that does not answer is closed and another opened.
    ping_if_idle_for: Option<Duration>,
}

/// How the store's own reader connections are kept.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ReaderLimits {
    /// At most this many connections, and statements at a time.
    pub(crate) size: u32,
    /// How long a read waits for a free connection.
    pub(crate) acquire_timeout: Duration,
    /// See [`Inner::ping_if_idle_for`].
    pub(crate) ping_if_idle_for: Option<Duration>,
    /// A connection idle for longer than this is closed.
    pub(crate) close_if_idle_for: Duration,
}

impl<C: ReadConnection> Inner<C> {
    fn put_back(&self, conn: C) {
        self.idle
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((conn, Instant::now()));
    }

    /// Takes out the connections idle for longer than `limit`. The list is in the order the
    /// connections came back (a lease takes the last), so they are at its front.
    fn take_idle_for(&self, limit: Duration) -> Vec<C> {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let stale = idle
            .iter()
            .take_while(|(_, since)| since.elapsed() > limit)
            .count();
        idle.drain(..stale).map(|(conn, _)| conn).collect()
    }
}

/// Closes the connections of `readers` idle for longer than `limit`, checking every half of
/// it, until the readers are dropped.
async fn close_idle<C: ReadConnection>(readers: std::sync::Weak<Inner<C>>, limit: Duration) {
    let mut every = tokio::time::interval(limit / 2);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        let Some(inner) = readers.upgrade() else {
            return;
        };
        let stale = inner.take_idle_for(limit);
        drop(inner);
        for conn in stale {
            // Closing tells a server goodbye; an error leaves nothing to do (the connection
            // is gone either way).
            let _ = conn.close().await;
        }
    }
}

impl<C: ReadConnection> OwnReaders<C> {
    /// Readers opening connections with `options` (then `after_connect`). Called from within
    /// the runtime, where the task closing idle connections is spawned.
    pub(crate) fn new(
        options: C::Options,
        after_connect: impl Fn() + Send + Sync + 'static,
        limits: ReaderLimits,
    ) -> Self {
        let size = limits.size.max(1) as usize;
        let inner = Arc::new(Inner {
            options,
            after_connect: Box::new(after_connect),
            permits: Arc::new(Semaphore::new(size)),
            idle: Mutex::new(Vec::with_capacity(size)),
            acquire_timeout: limits.acquire_timeout,
            ping_if_idle_for: limits.ping_if_idle_for,
        });
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(close_idle(
                Arc::downgrade(&inner),
                limits.close_if_idle_for.max(Duration::from_millis(2)),
            ));
        }
        OwnReaders(inner)
    }

    /// A connection for one statement: an idle one, or a new one if none is idle. Waits at
    /// most the acquire timeout for a free slot (then `ConnectionAcquire(Timeout)`, which the
    /// store reports as `Unavailable`, as it does for its pools).
    async fn lease(&self) -> Result<Lease<C>, DbErr> {
        let permit = tokio::time::timeout(
            self.0.acquire_timeout,
            self.0.permits.clone().acquire_owned(),
        )
        .await
        .map_err(|_| DbErr::ConnectionAcquire(ConnAcquireErr::Timeout))?
        .map_err(|_| DbErr::ConnectionAcquire(ConnAcquireErr::ConnectionClosed))?;
        let idle = self.0.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let idle = match (idle, self.0.ping_if_idle_for) {
            (Some((mut conn, since)), Some(limit)) if since.elapsed() > limit => {
                conn.ping().await.ok().map(|()| conn)
            }
            (idle, _) => idle.map(|(conn, _)| conn),
        };
        let conn = match idle {
            Some(conn) => conn,
            None => {
                let conn = C::connect_with(&self.0.options)
                    .await
                    .map_err(|err| DbErr::Conn(RuntimeErr::SqlxError(Arc::new(err))))?;
                (self.0.after_connect)();
                conn
            }
        };
        Ok(Lease {
            conn: Some(conn),
            finished: false,
            permit: Some(permit),
            readers: self.0.clone(),
        })
    }

    async fn query_all(&self, mut stmt: Statement) -> Result<Vec<QueryResult>, DbErr> {
        let mut lease = self.lease().await?;
        let rows = lease.conn()?.rows(&mut stmt).await;
        lease.finish(rows.as_ref().err());
        rows.map_err(query_err)
    }

    async fn query_one(&self, mut stmt: Statement) -> Result<Option<QueryResult>, DbErr> {
        let mut lease = self.lease().await?;
        let row = lease.conn()?.first_row(&mut stmt).await;
        lease.finish(row.as_ref().err());
        row.map_err(query_err)
    }
}

fn query_err(err: sqlx::Error) -> DbErr {
    DbErr::Query(RuntimeErr::SqlxError(Arc::new(err)))
}

/// One connection lent out for one statement, with its slot.
struct Lease<C: ReadConnection> {
    conn: Option<C>,
    /// Whether the statement ran to its end (successfully or with an error from SQLite), so
    /// the connection is idle again and needs no check.
    finished: bool,
    permit: Option<OwnedSemaphorePermit>,
    readers: Arc<Inner<C>>,
}

impl<C: ReadConnection> Lease<C> {
    /// The connection; only a lease that [`Lease::finish`] found broken has none.
    fn conn(&mut self) -> Result<&mut C, DbErr> {
        self.conn
            .as_mut()
            .ok_or(DbErr::ConnectionAcquire(ConnAcquireErr::ConnectionClosed))
    }

    /// Marks the statement as run to its end. An error that is not SQLite's own (the worker
    /// thread gone, an I/O error) means the connection is broken: it is closed, not returned.
    fn finish(&mut self, error: Option<&sqlx::Error>) {
        match error {
            None | Some(sqlx::Error::Database(_)) | Some(sqlx::Error::RowNotFound) => {
                self.finished = true;
            }
            Some(_) => drop(self.conn.take()),
        }
    }
}

impl<C: ReadConnection> Drop for Lease<C> {
    fn drop(&mut self) {
        let Some(mut conn) = self.conn.take() else {
            return;
        };
        if self.finished {
            self.readers.put_back(conn);
            return;
        }
        // The caller gave up while the statement ran (a cancelled RPC): the worker may still
        // be stepping it. A ping queues behind it; once it answers, the connection is idle.
        // The slot stays taken until then.
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let readers = self.readers.clone();
        let permit = self.permit.take();
        runtime.spawn(async move {
            if conn.ping().await.is_ok() {
                readers.put_back(conn);
            }
            drop(permit);
        });
    }
}

/// The store's own reader connections, per database.
#[derive(Clone)]
pub(crate) enum Own {
    Sqlite(OwnReaders<SqliteConnection>),
    Postgres(OwnReaders<PgConnection>),
}

/// Where the store's reads run: its reader pool, and the store's own reader connections for
/// single statements ([`OwnReaders`]) except on an in-memory SQLite database (one
/// connection in all). Statements that change something are refused: this is the read side.
#[derive(Clone)]
pub(crate) struct Reader {
    /// For transactions and pings (and every statement where `own` is absent).
    pub(crate) pool: DatabaseConnection,
    own: Option<Own>,
    /// SQLite files: the reads through [`Read`] (the profile's hot reads), stepped on the
    /// calling thread (see the `lite` module).
    lite: Option<LiteReaders>,
}

impl Reader {
    pub(crate) fn pooled(pool: DatabaseConnection) -> Self {
        Reader {
            pool,
            own: None,
            lite: None,
        }
    }

    pub(crate) fn with_own(pool: DatabaseConnection, own: Own) -> Self {
        Reader {
            pool,
            own: Some(own),
            lite: None,
        }
    }

    /// SQLite: with reads through [`Read`] run by `lite`.
    pub(crate) fn with_lite(mut self, lite: LiteReaders) -> Self {
        self.lite = Some(lite);
        self
    }
}

impl Read for Reader {
    fn backend(&self) -> DbBackend {
        self.pool.get_database_backend()
    }

    async fn all(&self, stmt: Statement) -> cxhub_domain::Result<Vec<Row>> {
        match &self.lite {
            Some(lite) => lite.all(stmt).await,
            None => sea_all(self, stmt).await,
        }
    }

    async fn one(&self, stmt: Statement) -> cxhub_domain::Result<Option<Row>> {
        match &self.lite {
            Some(lite) => lite.one(stmt).await,
            None => sea_one(self, stmt).await,
        }
    }
}

#[async_trait::async_trait]
impl ConnectionTrait for Reader {
    fn get_database_backend(&self) -> DbBackend {
        self.pool.get_database_backend()
    }

    async fn execute_raw(&self, stmt: Statement) -> Result<ExecResult, DbErr> {
        Err(read_only(&stmt.sql))
    }

    async fn execute_unprepared(&self, sql: &str) -> Result<ExecResult, DbErr> {
        Err(read_only(sql))
    }

    async fn query_one_raw(&self, stmt: Statement) -> Result<Option<QueryResult>, DbErr> {
        match &self.own {
            Some(Own::Sqlite(own)) => own.query_one(stmt).await,
            Some(Own::Postgres(own)) => own.query_one(stmt).await,
            None => self.pool.query_one_raw(stmt).await,
        }
    }

    async fn query_all_raw(&self, stmt: Statement) -> Result<Vec<QueryResult>, DbErr> {
        match &self.own {
            Some(Own::Sqlite(own)) => own.query_all(stmt).await,
            Some(Own::Postgres(own)) => own.query_all(stmt).await,
            None => self.pool.query_all_raw(stmt).await,
        }
    }
}

fn read_only(sql: &str) -> DbErr {
    DbErr::Custom(format!(
        "the reader runs queries only, not statements: {sql}"
    ))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use sea_orm::sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode};

    type SqliteReaders = OwnReaders<SqliteConnection>;

    async fn readers_closing_after(
        size: u32,
        close_if_idle_for: Duration,
    ) -> (tempfile::TempDir, SqliteReaders) {
        let dir = tempfile::tempdir().unwrap();
        let options = SqliteConnectOptions::new()
            .filename(dir.path().join("r.db"))
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal);
        let mut setup = SqliteConnection::connect_with(&options).await.unwrap();
        sqlx::query("CREATE TABLE t (n INTEGER)")
            .execute(&mut setup)
            .await
            .unwrap();
        sqlx::query(
            "WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c WHERE n < 100) \
             INSERT INTO t SELECT n FROM c",
        )
        .execute(&mut setup)
        .await
        .unwrap();
        setup.close().await.unwrap();
        let readers = SqliteReaders::new(
            options,
            || (),
            ReaderLimits {
                size,
                acquire_timeout: Duration::from_millis(300),
                ping_if_idle_for: None,
                close_if_idle_for,
            },
        );
        (dir, readers)
    }

    async fn readers(size: u32) -> (tempfile::TempDir, SqliteReaders) {
        readers_closing_after(size, Duration::from_secs(600)).await
    }

    fn idle(readers: &SqliteReaders) -> usize {
        readers.0.idle.lock().unwrap().len()
    }

    fn stmt(sql: &str, values: Vec<sea_orm::Value>) -> Statement {
        Statement::from_sql_and_values(DbBackend::Sqlite, sql, values)
    }

    #[tokio::test]
    async fn a_connection_is_opened_once_and_reused() {
        let (_dir, readers) = readers(2).await;
        for n in 1..=3_i64 {
            let row = readers
                .query_one(stmt("SELECT n FROM t WHERE n = ?", vec![n.into()]))
                .await
                .unwrap()
                .unwrap();
            assert_eq!(row.try_get::<i64>("", "n").unwrap(), n);
        }
        assert_eq!(idle(&readers), 1, "sequential reads share one connection");
        let none = readers
            .query_one(stmt("SELECT n FROM t WHERE n = ?", vec![0_i64.into()]))
            .await
            .unwrap();
        assert!(none.is_none());
        let all = readers
            .query_all(stmt("SELECT n FROM t WHERE n <= ?", vec![5_i64.into()]))
            .await
            .unwrap();
        assert_eq!(all.len(), 5);
    }

    #[tokio::test]
    async fn an_sqlite_error_keeps_the_connection() {
        let (_dir, readers) = readers(1).await;
        let err = readers
            .query_all(stmt("SELECT nope FROM t", vec![]))
            .await
            .unwrap_err();
        assert!(matches!(err, DbErr::Query(_)), "{err:?}");
        assert_eq!(idle(&readers), 1);
        readers
            .query_one(stmt("SELECT 1 AS one", vec![]))
            .await
            .unwrap()
            .unwrap();
    }

    #[tokio::test]
    async fn a_cancelled_read_returns_its_connection_once_it_is_idle() {
        let (_dir, readers) = readers(1).await;
        // A statement of a second or so holds the only connection; the caller gives up on it.
        let slow = stmt(
            "WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c WHERE n < 5000000) \
             SELECT COUNT(*) AS c FROM c",
            vec![],
        );
        let cancelled =
            tokio::time::timeout(Duration::from_millis(50), readers.query_one(slow)).await;
        assert!(cancelled.is_err(), "the slow read was cancelled");
        assert_eq!(
            idle(&readers),
            0,
            "a cancelled read's connection is not lent again before it is checked"
        );
        // Once the worker is done with the statement, the ping answers and the same
        // connection serves again (reads meanwhile time out waiting for the slot).
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            match readers.query_one(stmt("SELECT 2 AS two", vec![])).await {
                Ok(Some(row)) => {
                    assert_eq!(row.try_get::<i64>("", "two").unwrap(), 2);
                    break;
                }
                other => {
                    assert!(
                        matches!(
                            other,
                            Err(DbErr::ConnectionAcquire(ConnAcquireErr::Timeout))
                        ),
                        "{other:?}"
                    );
                    assert!(std::time::Instant::now() < deadline, "never came back");
                }
            }
        }
        assert_eq!(idle(&readers), 1, "one connection, reused after the check");
    }

    #[tokio::test]
    async fn idle_connections_are_closed_and_busy_ones_kept() {
        let (_dir, readers) = readers_closing_after(2, Duration::from_millis(200)).await;
        // Two reads at once open two connections.
        let one = stmt("SELECT 1 AS one", vec![]);
        let (a, b) = tokio::join!(
            readers.query_one(one.clone()),
            readers.query_one(one.clone())
        );
        a.unwrap().unwrap();
        b.unwrap().unwrap();
        assert_eq!(idle(&readers), 2);
        // A connection lent out past the limit is kept; the idle one goes.
        let mut busy = readers.lease().await.unwrap();
        tokio::time::sleep(Duration::from_millis(700)).await;
        assert_eq!(idle(&readers), 0, "the idle connection was closed");
        busy.finish(None);
        drop(busy);
        assert_eq!(idle(&readers), 1, "the busy one came back");
        tokio::time::sleep(Duration::from_millis(700)).await;
        assert_eq!(
            idle(&readers),
            0,
            "closed once idle for longer than the limit"
        );
        // The next read opens a connection again.
        readers.query_one(one).await.unwrap().unwrap();
        assert_eq!(idle(&readers), 1);
    }

    #[tokio::test]
    async fn the_reader_refuses_statements() {
        let (_dir, readers) = readers(1).await;
        let pool = sea_orm::Database::connect("sqlite::memory:").await.unwrap();
        let reader = Reader::with_own(pool, Own::Sqlite(readers));
        assert!(reader.execute_unprepared("DELETE FROM t").await.is_err());
        assert!(
            reader
                .execute_raw(stmt("DELETE FROM t", vec![]))
                .await
                .is_err()
        );
        let rows = reader
            .query_all_raw(stmt("SELECT n FROM t WHERE n < 4", vec![]))
            .await
            .unwrap();
        assert_eq!(rows.len(), 3);
    }
}
