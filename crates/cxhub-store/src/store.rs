//! Connecting to SQLite or PostgreSQL, migrating, and the write transaction every mutation
//! runs in.

use std::str::FromStr;
use std::time::Duration;

use cxhub_domain::{Error, Result};
use cxhub_migrations::MigratorTrait;
use sea_orm::sqlx::ConnectOptions as _;
use sea_orm::sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous,
};
use sea_orm::{
    AccessMode, ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DatabaseTransaction,
    DbBackend, IsolationLevel, SqliteTransactionMode, SqlxSqliteConnector, Statement,
    TransactionOptions, TransactionTrait,
};

use crate::error::DbResultExt;
use crate::lite::{LiteFile, LiteReaders};
use crate::readers::{Own, OwnReaders, Reader, ReaderLimits};

/// Readers of a SQLite file database when [`StoreOptions::max_connections`] is not given.
const SQLITE_READERS: u32 = 4;
/// Connections to PostgreSQL when [`StoreOptions::max_connections`] is not given.
const POSTGRES_CONNECTIONS: u32 = 10;
/// How long a SQLite connection waits for a lock before giving up.
const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// SQLite page cache per connection, as `PRAGMA cache_size` (negative: KiB): 64 MiB.
const SQLITE_CACHE_PAGES: &str = "-65536";
/// How much of a SQLite database file the writer (and the audit file's writer) maps into
/// memory, as `PRAGMA mmap_size` (bytes): SQLite's largest on Linux, 2 GiB. A read of a mapped
/// page needs no `pread` into the connection's own cache. Writes still go through the WAL.
///
/// The readers map nothing ([`SQLITE_READER_MMAP_BYTES`]): when a reader starts a read after
/// another connection committed, SQLite drops its page cache and unmaps the whole file
/// (`pagerBeginReadTransaction`), so under a stream of writes every read paid an `munmap` of
/// the pages touched since and page faults to map them again (20 % of the CPU in a profile).
/// Profile bench, SQLite, 16 in flight, alternating runs: at 100,000 customers (the issue's
/// size, measured while the hub still accrued the seeded payments in the background)
/// `GetCustomer360` 5,210–5,807 → 6,130–6,646 calls/s with p99 15.1–17.2 → 6.5–7.8 ms, and
/// `GetCustomer` 8,361–9,107 → 9,481–10,094 with p99 10.0–10.6 → 4.7–5.3 ms. At 10,000
/// customers mapped readers served the 360 faster (9,325–9,814 against 8,158–8,656 calls/s;
/// `GetCustomer` and `LookupCustomer` the same within noise): there the whole file stays
/// mapped between the few writes. A hub whose purpose is ingesting serves its reads beside
/// writes, on files larger than that.
const SQLITE_MMAP_BYTES: &str = "2147418112";
/// `PRAGMA mmap_size` of the reader connections: none (see [`SQLITE_MMAP_BYTES`]).
const SQLITE_READER_MMAP_BYTES: &str = "0";
/// Rows a SQLite connection's worker thread may hand over ahead of the task reading them
/// (sqlx's default is 50): a large read runs with fewer thread switches.
const SQLITE_ROW_BUFFER: usize = 1024;
/// The audit events of a SQLite file database live in a database of their own, the file's
/// name plus this suffix (`cxhub.db` → `cxhub.db-audit`, migrated with the same migrations,
/// only its `audit_events` table used). Every read of personal data writes audit rows; in WAL
/// mode any commit to a file makes every reader of that file drop its page cache before its
/// next read, so audit rows in the main file made every read start cold (half the time of a
/// `GetCustomer`, seven-eighths of a `SearchCustomers` at 16 in flight). Its commits run at
/// `synchronous = NORMAL`: in the WAL, in the operating system's cache, when they return — they
/// survive `kill -9`, not a power failure (see `docs/data-model.md`).
pub const AUDIT_FILE_SUFFIX: &str = "-audit";
/// How long a caller waits for a pooled connection.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long opening a PostgreSQL connection may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// A pooled PostgreSQL connection idle for this long is pinged before it is handed out (one
/// that was not is used as it is). sqlx's default pings on every acquire: a round trip more
/// per statement outside a transaction, the whole cost of a `GetCustomer`'s query again.
const POSTGRES_PING_IF_IDLE: Duration = Duration::from_secs(30);
/// The store's own reader connections idle for longer than this are closed, as sqlx's pool
/// closes its own (its default `idle_timeout`, 10 minutes).
const READER_IDLE_TIMEOUT: Duration = Duration::from_secs(600);

/// How to connect.
#[derive(Clone, Debug, Default)]
pub struct StoreOptions {
    /// PostgreSQL only: the schema to work in (its `search_path`), created if absent. Tests use
    /// a fresh schema each; ignored on SQLite.
    pub schema: Option<String>,
    /// Most pooled connections: the reader pool on a SQLite file (4 by default; the writer
    /// always has exactly one), the one pool on PostgreSQL (10 by default). The store's own
    /// connections for single-statement reads (see `readers.rs`) are as many again, opened
    /// when first needed.
    pub max_connections: Option<u32>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Backend {
    Sqlite,
    Postgres,
}

/// The storage of cxhub over sea-orm: SQLite (one file, WAL) or PostgreSQL.
///
/// On SQLite, writes go through a pool of exactly one connection (SQLite has one writer at a
/// time; a single writer connection never meets `SQLITE_BUSY` when a transaction that read
/// first starts writing) and reads through a separate pool, which WAL lets run beside the
/// writer. An in-memory database has one connection for both. On PostgreSQL one pool serves
/// both, and every registry write takes a transaction-scoped advisory lock, so that the
/// hierarchy checks (cycles, depth, states) see no concurrent change, across replicas too.
///
/// A SQLite file database keeps its audit events in a second file beside it (see
/// [`AUDIT_FILE_SUFFIX`]).
///
/// Cloning is cheap: clones share the pools.
#[derive(Clone)]
pub struct Store {
    pub(crate) writer: DatabaseConnection,
    /// Single-statement reads; on a SQLite file through the store's own connections (see
    /// [`crate::readers`]).
    pub(crate) reader: crate::readers::Reader,
    /// Where audit events are written and read: on a SQLite file, a database of its own (see
    /// [`AUDIT_FILE_SUFFIX`]); otherwise the writer.
    pub(crate) audit_db: DatabaseConnection,
    /// Whether `audit_db` is a database of its own (to migrate as well).
    audit_apart: bool,
    pub(crate) kind: Backend,
    pub(crate) growth: std::sync::Arc<Growth>,
    pub(crate) audit: std::sync::Arc<crate::privacy::AuditQueue>,
}

/// Rows this process has ingested, to refresh PostgreSQL's statistics while tables grow fast.
///
/// Autovacuum analyzes a table at most once a minute; a bulk load from empty can grow it a
/// hundredfold in that time, and with the statistics of the empty table the planner reads the
/// ingest lookups (`record_id = ANY(…)`) as a filter over the whole (source, type) range
/// instead of as index conditions: 70 ms instead of 3 ms per 1,000 keys at 300,000 records.
#[derive(Debug, Default)]
pub(crate) struct Growth {
    written: std::sync::atomic::AtomicU64,
    analyzed_at: std::sync::atomic::AtomicU64,
}

/// Rows written before the first ANALYZE; each later one waits until the rows written have
/// doubled (a handful per bulk load: the planner scales statistics by the table's current
/// size, so they only need to describe its shape).
const ANALYZE_EVERY: u64 = 10_000;

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("backend", &self.backend())
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Connects to `url`: `sqlite://path/to/file.db` (created if missing), `sqlite::memory:`,
    /// or `postgres://…`.
    ///
    /// SQLite connections use WAL, `synchronous = FULL` (an acknowledged write survives a
    /// crash of the process or of the machine), foreign keys and a 5 s busy timeout.
    /// Errors: `InvalidArgument` (field `database_url`) for an unsupported URL or schema name,
    /// `Unavailable` when the database cannot be reached.
    pub async fn connect(url: &str, options: StoreOptions) -> Result<Store> {
        if url.starts_with("sqlite:") {
            connect_sqlite(url, &options).await
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            connect_postgres(url, &options).await
        } else {
            Err(Error::invalid_field(
                "database_url",
                "expected sqlite://<path>, sqlite::memory: or postgres://<host>/<database>",
            ))
        }
    }

    /// Moves audit events that a hub older than the audit file wrote into the main file over to
    /// the audit file, where they are read. Copied first (durably, ignoring ids already there),
    /// then deleted from the main file: a crash in between repeats the copy harmlessly.
    async fn move_audit_events_apart(&self) -> std::result::Result<(), sea_orm::DbErr> {
        let stray = self
            .writer
            .query_one_raw(Statement::from_string(
                DbBackend::Sqlite,
                "SELECT EXISTS (SELECT 1 FROM audit_events) AS stray",
            ))
            .await?
            .map(|row| row.try_get::<bool>("", "stray"))
            .transpose()?
            .unwrap_or(false);
        if !stray {
            return Ok(());
        }
        let main_file: String = self
            .writer
            .query_one_raw(Statement::from_string(
                DbBackend::Sqlite,
                "SELECT file FROM pragma_database_list WHERE name = 'main'",
            ))
            .await?
            .map(|row| row.try_get::<String>("", "file"))
            .transpose()?
            .unwrap_or_default();
        let audit = &self.audit_db;
        audit
            .execute_raw(Statement::from_sql_and_values(
                DbBackend::Sqlite,
                "ATTACH DATABASE ? AS hub_main",
                [main_file.into()],
            ))
            .await?;
        let moved = async {
            audit
                .execute_unprepared("PRAGMA synchronous = FULL")
                .await?;
            let copied = audit
                .execute_unprepared(
                    "INSERT OR IGNORE INTO main.audit_events \
                     (id, principal, rpc, customer_id, occurred_at) \
                     SELECT id, principal, rpc, customer_id, occurred_at \
                     FROM hub_main.audit_events",
                )
                .await?;
            audit
                .execute_unprepared("PRAGMA synchronous = NORMAL")
                .await?;
            audit
                .execute_unprepared("DELETE FROM hub_main.audit_events")
                .await?;
            tracing::info!(
                copied = copied.rows_affected(),
                "moved audit events from the main file to the audit file"
            );
            Ok(())
        }
        .await;
        let detached = audit.execute_unprepared("DETACH DATABASE hub_main").await;
        moved.and(detached.map(|_| ()))
    }

    /// Applies the pending migrations of [`cxhub_migrations::Migrator`]. On PostgreSQL the
    /// migrations run under an advisory lock, so replicas starting together migrate once.
    pub async fn migrate(&self) -> Result<()> {
        let outcome = match self.kind {
            Backend::Sqlite => match cxhub_migrations::Migrator::up(&self.writer, None).await {
                Ok(()) if self.audit_apart => {
                    match cxhub_migrations::Migrator::up(&self.audit_db, None).await {
                        Ok(()) => self.move_audit_events_apart().await,
                        Err(err) => Err(err),
                    }
                }
                other => other,
            },
            Backend::Postgres => {
                let txn = self.writer.begin().await.db()?;
                txn.execute_unprepared(
                    "SELECT pg_advisory_xact_lock(hashtext('cxhub.migrate.' || current_schema()))",
                )
                .await
                .db()?;
                match cxhub_migrations::Migrator::up(&txn, None).await {
                    Ok(()) => txn.commit().await,
                    Err(err) => Err(err),
                }
            }
        };
        outcome.map_err(|err| {
            tracing::error!(error = %err, "migration failed");
            Error::internal("migration failed")
        })?;
        // A process stopped during a full recompute of the scores leaves their indexes dropped.
        cxhub_domain::scoring::CustomerScoreRepo::restore_score_indexes(self).await
    }

    /// `"sqlite"` or `"postgres"`.
    pub fn backend(&self) -> &'static str {
        match self.kind {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }

    /// Checks that the database answers (`Unavailable` if not).
    pub async fn ping(&self) -> Result<()> {
        self.writer.ping().await.db()?;
        self.reader.pool.ping().await.db()
    }

    /// Begins a read transaction on the reader pool: one snapshot for all its queries (a
    /// deferred transaction on SQLite; `REPEATABLE READ, READ ONLY` on PostgreSQL).
    pub(crate) async fn begin_read(&self) -> Result<DatabaseTransaction> {
        match self.kind {
            Backend::Sqlite => self.reader.pool.begin().await.db(),
            Backend::Postgres => self
                .reader
                .pool
                .begin_with_config(
                    Some(IsolationLevel::RepeatableRead),
                    Some(AccessMode::ReadOnly),
                )
                .await
                .db(),
        }
    }

    /// Begins a write transaction: `BEGIN IMMEDIATE` on SQLite; on PostgreSQL a transaction
    /// holding the registry's advisory lock.
    pub(crate) async fn begin_write(&self) -> Result<DatabaseTransaction> {
        match self.kind {
            Backend::Sqlite => self
                .writer
                .begin_with_options(TransactionOptions {
                    isolation_level: None,
                    access_mode: None,
                    sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
                })
                .await
                .db(),
            Backend::Postgres => {
                let txn = self.writer.begin().await.db()?;
                txn.execute_unprepared(
                    "SELECT pg_advisory_xact_lock(hashtext('cxhub.registry.' || current_schema()))",
                )
                .await
                .db()?;
                Ok(txn)
            }
        }
    }
}

impl Store {
    /// Records `rows` newly written by ingestion; on PostgreSQL, after the first 10,000 rows
    /// and each time the count doubles, refreshes the statistics of the tables ingestion looks
    /// up, in the background (ANALYZE does not block writers).
    pub(crate) fn note_growth(&self, rows: u64) {
        use std::sync::atomic::Ordering;
        if self.kind != Backend::Postgres || rows == 0 {
            return;
        }
        let written = self.growth.written.fetch_add(rows, Ordering::Relaxed) + rows;
        let last = self.growth.analyzed_at.load(Ordering::Relaxed);
        if written < ANALYZE_EVERY.max(last.saturating_mul(2)) {
            return;
        }
        if self
            .growth
            .analyzed_at
            .compare_exchange(last, written, Ordering::Relaxed, Ordering::Relaxed)
            .is_err()
        {
            return;
        }
        let db = self.writer.clone();
        tokio::spawn(async move {
            let started = std::time::Instant::now();
            match db
                .execute_unprepared(
                    "ANALYZE feed_records, customer_identities, customers, customer_name_keys, \
                     interactions, transactions",
                )
                .await
            {
                Ok(_) => {
                    tracing::debug!(rows = written, elapsed = ?started.elapsed(), "statistics refreshed")
                }
                Err(err) => tracing::warn!(error = %err, "refreshing statistics failed"),
            }
        });
    }

    /// Begins a write transaction of identity resolution (ingest, split): `BEGIN IMMEDIATE` on
    /// SQLite; on PostgreSQL a transaction holding the identity advisory lock, so that replicas
    /// resolving overlapping identifiers at once never create two customers for one identifier
    /// nor merge into a customer another batch is absorbing.
    pub(crate) async fn begin_identity(&self) -> Result<DatabaseTransaction> {
        match self.kind {
            Backend::Sqlite => self.begin_write().await,
            Backend::Postgres => {
                let txn = self.writer.begin().await.db()?;
                txn.execute_unprepared(
                    "SELECT pg_advisory_xact_lock(hashtext('cxhub.identity.' || current_schema()))",
                )
                .await
                .db()?;
                Ok(txn)
            }
        }
    }
}

/// Runs `$work` (an expression that may use the transaction `$txn`, evaluating to a future)
/// in a read transaction of the reader pool, so that its queries see one snapshot.
macro_rules! snapshot {
    ($store:expr, |$txn:ident| $work:expr) => {{
        let $txn = $store.begin_read().await?;
        let result = $work.await;
        $crate::store::rollback($txn).await;
        result
    }};
}
pub(crate) use snapshot;

/// Runs `$work` (an expression that may use the transaction `$txn`, evaluating to a future of
/// `Result<T>`) in a transaction begun with [`Store::begin_identity`], committed when it
/// succeeds and rolled back when it fails.
macro_rules! identity_write {
    ($store:expr, |$txn:ident| $work:expr) => {{
        let $txn = $store.begin_identity().await?;
        match $work.await {
            Ok(value) => {
                use $crate::error::DbResultExt as _;
                $txn.commit().await.db().map(|()| value)
            }
            Err(err) => {
                $crate::store::rollback($txn).await;
                Err(err)
            }
        }
    }};
}
pub(crate) use identity_write;

/// Rolls a transaction back; a failure is only logged (the connection drops the transaction
/// anyway).
pub(crate) async fn rollback(txn: DatabaseTransaction) {
    if let Err(err) = txn.rollback().await {
        tracing::warn!(error = %err, "rollback failed");
    }
}

/// A pool of SQLite connections. sqlx pings a pooled connection before each use by default; on
/// SQLite the ping is one more hand-off to the connection's worker thread and back (a quarter
/// of a `GetCustomer`), and a connection to a local file cannot go stale, so none is sent.
fn sqlite_pool() -> SqlitePoolOptions {
    SqlitePoolOptions::new().test_before_acquire(false)
}

async fn connect_sqlite(url: &str, options: &StoreOptions) -> Result<Store> {
    let base = SqliteConnectOptions::from_str(url)
        .map_err(|err| Error::invalid_field("database_url", format!("not a SQLite URL: {err}")))?
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Full)
        .foreign_keys(true)
        .busy_timeout(SQLITE_BUSY_TIMEOUT)
        // SQLite's default page cache is 2 MB; ingest lookups and upserts touch the indexes of
        // tables of hundreds of MB. 64 MiB per connection keeps their inner pages in memory.
        .pragma("cache_size", SQLITE_CACHE_PAGES)
        .pragma("mmap_size", SQLITE_MMAP_BYTES)
        .row_buffer_size(SQLITE_ROW_BUFFER)
        .disable_statement_logging();
    let in_memory = url.contains(":memory:") || url.contains("mode=memory");
    // The writer: exactly one connection, opened first so that it creates the file.
    // An in-memory database lives as long as its connection: never let the pool close it.
    let writer = sqlite_pool()
        .min_connections(1)
        .max_connections(1)
        .acquire_timeout(ACQUIRE_TIMEOUT)
        .idle_timeout(None)
        .max_lifetime(None)
        .connect_with(base.clone())
        .await
        .map_err(unavailable)?;
    let writer = SqlxSqliteConnector::from_sqlx_sqlite_pool(writer);
    let reader = if in_memory {
        Reader::pooled(writer.clone())
    } else {
        let readers = options.max_connections.unwrap_or(SQLITE_READERS).max(1);
        let reading = base.clone().pragma("mmap_size", SQLITE_READER_MMAP_BYTES);
        let pool = sqlite_pool()
            .max_connections(readers)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(reading.clone())
            .await
            .map_err(unavailable)?;
        let lite = LiteReaders::new(
            LiteFile::new(
                reading.get_filename(),
                &[
                    ("cache_size", SQLITE_CACHE_PAGES),
                    ("mmap_size", SQLITE_READER_MMAP_BYTES),
                ],
                SQLITE_BUSY_TIMEOUT,
            ),
            readers as usize,
        );
        Reader::with_own(
            SqlxSqliteConnector::from_sqlx_sqlite_pool(pool),
            Own::Sqlite(OwnReaders::new(
                reading,
                || (),
                ReaderLimits {
                    size: readers,
                    acquire_timeout: ACQUIRE_TIMEOUT,
                    ping_if_idle_for: None,
                    close_if_idle_for: READER_IDLE_TIMEOUT,
                },
            )),
        )
        .with_lite(lite)
    };
    let (audit_db, audit) = if in_memory {
        (writer.clone(), crate::privacy::AuditQueue::default())
    } else {
        let mut path = base.get_filename().as_os_str().to_owned();
        path.push(AUDIT_FILE_SUFFIX);
        let wal_frames = crate::privacy::AUDIT_WAL_FRAMES.to_string();
        // `synchronous = NORMAL` (see `privacy::write_group`); checkpoints run beside the
        // writer, its own only bounds the WAL.
        let settings = [
            ("synchronous", "NORMAL"),
            ("cache_size", "-2048"),
            ("mmap_size", SQLITE_MMAP_BYTES),
            ("wal_autocheckpoint", wal_frames.as_str()),
        ];
        let mut options = base.clone().filename(&path);
        for (name, value) in settings {
            options = options.pragma(name, value.to_owned());
        }
        let pool = sqlite_pool()
            .min_connections(1)
            .max_connections(1)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(options)
            .await
            .map_err(unavailable)?;
        (
            SqlxSqliteConnector::from_sqlx_sqlite_pool(pool),
            crate::privacy::AuditQueue::on_file(LiteFile::new(
                path,
                &settings,
                SQLITE_BUSY_TIMEOUT,
            )),
        )
    };
    tracing::info!(in_memory, "connected to sqlite");
    Ok(Store {
        writer,
        reader,
        audit_db,
        audit_apart: !in_memory,
        kind: Backend::Sqlite,
        growth: Default::default(),
        audit: std::sync::Arc::new(audit),
    })
}

async fn connect_postgres(url: &str, options: &StoreOptions) -> Result<Store> {
    if let Some(schema) = &options.schema {
        check_schema_name(schema)?;
        let admin = plain_postgres(url).await?;
        let created = admin
            .execute_unprepared(&format!("CREATE SCHEMA IF NOT EXISTS \"{schema}\""))
            .await;
        close(admin).await;
        if let Err(err) = created {
            // Two callers creating the same schema at once: the loser sees a unique violation.
            if err.sql_err().is_none() {
                return Err(crate::error::db_err(err));
            }
        }
    }
    let mut opts = ConnectOptions::new(url);
    opts.max_connections(
        options
            .max_connections
            .unwrap_or(POSTGRES_CONNECTIONS)
            .max(1),
    )
    .min_connections(0)
    .connect_timeout(CONNECT_TIMEOUT)
    .acquire_timeout(ACQUIRE_TIMEOUT)
    .test_before_acquire_if_idle_for(POSTGRES_PING_IF_IDLE)
    .sqlx_logging(false)
    // Startup options: see `postgres_startup`.
    .map_sqlx_postgres_opts({
        let schema = options.schema.clone();
        move |o| postgres_startup(o, schema.as_deref(), true)
    });
    let tcp_port = tcp_port(url);
    if let Some(port) = tcp_port {
        opts.map_sqlx_postgres_pool_opts(move |pool| {
            pool.after_connect(move |_, _| {
                Box::pin(async move {
                    set_tcp_nodelay(port);
                    Ok(())
                })
            })
        });
    }
    let db = Database::connect(opts).await.map_err(unavailable)?;
    let own = OwnReaders::new(
        postgres_startup(
            url.parse().map_err(|err| {
                Error::invalid_field("database_url", format!("not a PostgreSQL URL: {err}"))
            })?,
            options.schema.as_deref(),
            false,
        ),
        move || {
            if let Some(port) = tcp_port {
                set_tcp_nodelay(port);
            }
        },
        ReaderLimits {
            size: options
                .max_connections
                .unwrap_or(POSTGRES_CONNECTIONS)
                .max(1),
            acquire_timeout: ACQUIRE_TIMEOUT,
            ping_if_idle_for: Some(POSTGRES_PING_IF_IDLE),
            close_if_idle_for: READER_IDLE_TIMEOUT,
        },
    );
    tracing::info!(schema = options.schema.as_deref(), "connected to postgres");
    Ok(Store {
        writer: db.clone(),
        audit_db: db.clone(),
        audit_apart: false,
        reader: Reader::with_own(db, Own::Postgres(own)),
        kind: Backend::Postgres,
        growth: Default::default(),
        audit: Default::default(),
    })
}

/// The options every PostgreSQL connection of the hub starts with. sqlx prepares every
/// statement and PostgreSQL then switches to a generic plan after five runs; a generic plan
/// made while a table was small (a fresh database) keeps scanning it sequentially once it is
/// large (ingest lookups went from 1 ms to 1 s at 100k records). Batch statements are few and
/// large: planning each with its parameters costs little, so the pool's connections
/// (`custom_plans`) plan every statement. The store's own readers do not: their statements are
/// small and many, planning was 38 % of the server's CPU under `GetCustomer`, and `ANALYZE`
/// (which [`Growth`] runs as tables grow, and autovacuum) replaces cached plans. The schema (checked by
/// [`check_schema_name`]: `[a-z_][a-z0-9_]*`, nothing to quote) is a startup option too, not
/// sea-orm's `set_schema_search_path`: that one is an `after_connect` of the pool, which the
/// `TCP_NODELAY` hook would replace.
fn postgres_startup(
    options: sea_orm::sqlx::postgres::PgConnectOptions,
    schema: Option<&str>,
    custom_plans: bool,
) -> sea_orm::sqlx::postgres::PgConnectOptions {
    let mut startup = Vec::new();
    if custom_plans {
        startup.push(("plan_cache_mode", "force_custom_plan".to_owned()));
    }
    if let Some(schema) = schema {
        startup.push(("search_path", schema.to_owned()));
    }
    options.options(startup)
}

/// The PostgreSQL server's TCP port, or `None` when `url` names a Unix socket (or does not
/// parse; connecting reports that).
fn tcp_port(url: &str) -> Option<u16> {
    let options: sea_orm::sqlx::postgres::PgConnectOptions = url.parse().ok()?;
    options.get_socket().is_none().then(|| options.get_port())
}

/// Sets `TCP_NODELAY` on the connections to the database (see [`crate::tcp_nodelay`]); a
/// failure only costs speed, and is reported once.
fn set_tcp_nodelay(port: u16) {
    static WARNED: std::sync::Once = std::sync::Once::new();
    if let Err(err) = crate::tcp_nodelay::set_on_sockets_to(port) {
        WARNED.call_once(|| {
            tracing::warn!(
                error = %err,
                "could not set TCP_NODELAY on the PostgreSQL connections; statements larger \
                 than one TCP segment may wait about 40 ms each (use a Unix socket to avoid it)"
            );
        });
    }
}

/// Drops a PostgreSQL schema and everything in it (for tests that used
/// [`StoreOptions::schema`]).
///
/// Sessions still holding locks on the schema's tables are ended first: a test that drops its
/// hub from a synchronous `Drop` blocks the runtime its pool's tasks run on, so a connection
/// left idle inside a transaction there would otherwise make `DROP SCHEMA` wait forever. No
/// lock is waited for longer than a few seconds.
pub async fn drop_postgres_schema(url: &str, schema: &str) -> Result<()> {
    check_schema_name(schema)?;
    let admin = plain_postgres(url).await?;
    let dropped = drop_schema_on(&admin, schema).await;
    close(admin).await;
    dropped
}

async fn drop_schema_on(admin: &DatabaseConnection, schema: &str) -> Result<()> {
    admin
        .execute_unprepared("SET lock_timeout = '5s'")
        .await
        .db()?;
    let mut attempts = 0;
    loop {
        admin
            .execute_unprepared(&format!(
                "SELECT pg_terminate_backend(pid) FROM (SELECT DISTINCT l.pid FROM pg_locks l \
                 JOIN pg_class c ON c.oid = l.relation \
                 JOIN pg_namespace n ON n.oid = c.relnamespace \
                 WHERE n.nspname = '{schema}' AND l.pid <> pg_backend_pid()) holders"
            ))
            .await
            .db()?;
        match admin
            .execute_unprepared(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"))
            .await
        {
            Ok(_) => return Ok(()),
            Err(_) if attempts < 3 => {
                attempts += 1;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(err) => return Err(err).db(),
        }
    }
}

async fn plain_postgres(url: &str) -> Result<DatabaseConnection> {
    let mut opts = ConnectOptions::new(url);
    opts.max_connections(1)
        .connect_timeout(CONNECT_TIMEOUT)
        .sqlx_logging(false);
    Database::connect(opts).await.map_err(unavailable)
}

async fn close(db: DatabaseConnection) {
    if let Err(err) = db.close().await {
        tracing::debug!(error = %err, "closing a connection failed");
    }
}

/// Schema names are interpolated into SQL: only `[a-z_][a-z0-9_]{0,62}`.
fn check_schema_name(schema: &str) -> Result<()> {
    let ok = !schema.is_empty()
        && schema.len() <= 63
        && schema.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && schema
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(Error::invalid_field(
            "schema",
            "a schema name is 1 to 63 characters of `a-z`, `0-9` and `_`, not starting with a digit",
        ))
    }
}

fn unavailable(err: impl std::fmt::Display) -> Error {
    tracing::warn!(error = %err, "cannot connect to the database");
    Error::Unavailable(format!("cannot connect to the database: {err}"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use cxhub_domain::idempotency::RequestKey;
    use cxhub_domain::repo::{Lookup, TouchpointRepo};
    use cxhub_domain::touchpoint::{
        Channel, IntendedExperience, Key, NewTouchpoint, ParentRef, Stage,
    };
    use sea_orm::{ConnectionTrait, DatabaseConnection};

    use super::*;

    async fn pragma(db: &impl ConnectionTrait, name: &str) -> String {
        let row = db
            .query_one_raw(sea_orm::Statement::from_string(
                db.get_database_backend(),
                format!("PRAGMA {name}"),
            ))
            .await
            .unwrap()
            .unwrap();
        match row.try_get_by_index::<String>(0) {
            Ok(text) => text,
            Err(_) => row.try_get_by_index::<i64>(0).unwrap().to_string(),
        }
    }

    fn item(key: &str) -> NewTouchpoint {
        NewTouchpoint {
            key: Key::parse(key).unwrap(),
            name: key.into(),
            description: String::new(),
            channel: Channel::Store,
            stage: Stage::Purchase,
            department: "branches".into(),
            main: true,
            parent: ParentRef::Root,
            intended: IntendedExperience::default(),
            labels: Default::default(),
        }
    }

    /// The bundled SQLite is built with the options of `.cargo/config.toml`: no shared page
    /// cache group behind one mutex, no memory statistics (see docs/data-model.md, "SQLite
    /// build options"). A build without them still works, only slower with reads on several
    /// connections; this says so instead of leaving it to a profile.
    #[tokio::test]
    async fn sqlite_is_built_without_the_process_wide_cache_and_statistics_mutexes() {
        let store = Store::connect("sqlite::memory:", StoreOptions::default())
            .await
            .unwrap();
        let options: Vec<String> = store
            .writer
            .query_all_raw(sea_orm::Statement::from_string(
                DbBackend::Sqlite,
                "PRAGMA compile_options",
            ))
            .await
            .unwrap()
            .iter()
            .map(|row| row.try_get_by_index::<String>(0).unwrap())
            .collect();
        assert!(
            !options.iter().any(|o| o == "ENABLE_MEMORY_MANAGEMENT"),
            "{options:?}"
        );
        assert!(
            options.iter().any(|o| o == "DEFAULT_MEMSTATUS=0"),
            "{options:?}"
        );
    }

    #[tokio::test]
    async fn sqlite_files_are_durable_and_reopen_with_their_data() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("cxhub.db").display());
        let store = Store::connect(&url, StoreOptions::default()).await.unwrap();
        assert_eq!(store.backend(), "sqlite");
        store.migrate().await.unwrap();
        // The writer, the reader pool and the store's own reader connections alike.
        async fn durable(db: &impl ConnectionTrait, mmap: &str) {
            assert_eq!(pragma(db, "journal_mode").await, "wal");
            assert_eq!(pragma(db, "synchronous").await, "2", "synchronous = FULL");
            assert_eq!(pragma(db, "foreign_keys").await, "1");
            assert_eq!(pragma(db, "mmap_size").await, mmap);
        }
        durable(&store.writer, SQLITE_MMAP_BYTES).await;
        durable(&store.reader.pool, SQLITE_READER_MMAP_BYTES).await;
        durable(&store.reader, SQLITE_READER_MMAP_BYTES).await;
        // The profile's reads (the `lite` module's connections): the readers' cache and map,
        // in WAL mode, and nothing written through them.
        let lite = |name: &str| {
            let stmt = sea_orm::Statement::from_string(DbBackend::Sqlite, format!("PRAGMA {name}"));
            let reader = &store.reader;
            async move {
                crate::lite::Read::one(reader, stmt)
                    .await
                    .unwrap()
                    .expect("a row")
            }
        };
        use crate::lite::Cols;
        let cache: i64 = lite("cache_size").await.col("cache_size").unwrap();
        assert_eq!(cache.to_string(), SQLITE_CACHE_PAGES);
        let mmap: i64 = lite("mmap_size").await.col("mmap_size").unwrap();
        assert_eq!(mmap.to_string(), SQLITE_READER_MMAP_BYTES);
        let query_only: i64 = lite("query_only").await.col("query_only").unwrap();
        assert_eq!(query_only, 1);
        let mode: String = lite("journal_mode").await.col("journal_mode").unwrap();
        assert_eq!(mode, "wal");
        let req = RequestKey::new("t", "m", "r1", b"x").unwrap();
        let created = store
            .create_touchpoints(&req, vec![item("branch")])
            .await
            .unwrap();
        drop(store);

        let reopened = Store::connect(&url, StoreOptions::default()).await.unwrap();
        reopened
            .migrate()
            .await
            .expect("migrating again is a no-op");
        let read = reopened
            .get_touchpoint(&Lookup::Key(Key::parse("branch").unwrap()))
            .await
            .unwrap();
        assert_eq!(read, created[0]);
        let retried = reopened
            .create_touchpoints(&req, vec![item("branch")])
            .await
            .unwrap();
        assert_eq!(retried, created, "idempotency records survive a restart");
        reopened.ping().await.unwrap();
    }

    #[tokio::test]
    async fn sqlite_audit_events_have_a_file_of_their_own() {
        use cxhub_domain::identifier::CustomerId;
        use cxhub_domain::privacy::AuditLog;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cxhub.db");
        let url = format!("sqlite://{}", path.display());
        let store = Store::connect(&url, StoreOptions::default()).await.unwrap();
        store.migrate().await.unwrap();
        let customers: Vec<CustomerId> = (0..1_500).map(|_| CustomerId::generate()).collect();
        let before = crate::now();
        store
            .record("ana", "BatchGetCustomers", &customers)
            .await
            .unwrap();
        let mut reads = tokio::task::JoinSet::new();
        for c in customers[..20].iter().copied() {
            let store = store.clone();
            reads.spawn(async move { store.record("rui", "GetCustomer", &[c]).await });
        }
        while let Some(read) = reads.join_next().await {
            read.unwrap().unwrap();
        }
        let count = |db: DatabaseConnection| async move {
            let row = db
                .query_one_raw(sea_orm::Statement::from_string(
                    sea_orm::DbBackend::Sqlite,
                    "SELECT COUNT(*) AS n FROM audit_events",
                ))
                .await
                .unwrap()
                .unwrap();
            row.try_get::<i64>("", "n").unwrap()
        };
        assert_eq!(count(store.audit_db.clone()).await, 1_520);
        assert!(
            store
                .audit
                .lite_groups
                .load(std::sync::atomic::Ordering::Relaxed)
                >= 2,
            "written through the audit file's own connection, not sqlx's"
        );
        assert_eq!(
            count(store.writer.clone()).await,
            0,
            "nothing in the main file"
        );
        assert_eq!(pragma(&store.audit_db, "synchronous").await, "1", "NORMAL");
        assert_eq!(pragma(&store.audit_db, "journal_mode").await, "wal");
        assert_eq!(
            pragma(&store.audit_db, "wal_autocheckpoint").await,
            crate::privacy::AUDIT_WAL_FRAMES.to_string(),
            "checkpoints run beside the audit writer"
        );
        assert_eq!(pragma(&store.writer, "synchronous").await, "2", "FULL");
        assert!(dir.path().join("cxhub.db-audit").exists());
        drop(store);

        let reopened = Store::connect(&url, StoreOptions::default()).await.unwrap();
        let page = reopened
            .list_audit_events(
                &cxhub_domain::privacy::AuditFilter {
                    customer: Some(customers[0]),
                    ..Default::default()
                },
                &cxhub_domain::page::PageRequest {
                    size: 10,
                    after: None,
                },
            )
            .await
            .unwrap();
        let rpcs: Vec<&str> = page.items.iter().map(|e| e.rpc.as_str()).collect();
        assert_eq!(rpcs, ["GetCustomer", "BatchGetCustomers"]);
        let principals: Vec<&str> = page.items.iter().map(|e| e.principal.as_str()).collect();
        assert_eq!(principals, ["rui", "ana"]);
        for event in &page.items {
            assert_eq!(event.customer, customers[0]);
            // Written as text through rusqlite, read back as a time through sqlx.
            assert!(before <= event.occurred_at && event.occurred_at <= crate::now());
        }
        drop(reopened);

        // Events an older hub wrote into the main file move to the audit file at the next
        // migration, once.
        let store = Store::connect(&url, StoreOptions::default()).await.unwrap();
        store
            .writer
            .execute_unprepared(&format!(
                "INSERT INTO audit_events (id, principal, rpc, customer_id, occurred_at) \
                 VALUES ('old-1', 'eva', 'ExportCustomer', '{}', '2026-01-01T00:00:00Z')",
                customers[0]
            ))
            .await
            .unwrap();
        store.migrate().await.unwrap();
        store.migrate().await.unwrap();
        assert_eq!(count(store.writer.clone()).await, 0, "moved out");
        assert_eq!(count(store.audit_db.clone()).await, 1_521, "moved in, once");
        let attached = store
            .audit_db
            .query_all_raw(sea_orm::Statement::from_string(
                sea_orm::DbBackend::Sqlite,
                "SELECT name FROM pragma_database_list",
            ))
            .await
            .unwrap();
        assert_eq!(attached.len(), 1, "detached again");
    }

    #[tokio::test]
    async fn score_indexes_paused_for_a_recompute_come_back_and_a_restart_repairs_them() {
        use cxhub_domain::scoring::CustomerScoreRepo;
        async fn indexes(store: &Store) -> Vec<String> {
            let rows = store
                .reader
                .query_all_raw(sea_orm::Statement::from_string(
                    DbBackend::Sqlite,
                    "SELECT name FROM sqlite_master WHERE type = 'index' \
                     AND tbl_name = 'customer_scores' AND sql IS NOT NULL ORDER BY name",
                ))
                .await
                .unwrap();
            rows.iter()
                .map(|r| r.try_get_by_index::<String>(0).unwrap())
                .collect()
        }
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("cxhub.db").display());
        let store = Store::connect(&url, StoreOptions::default()).await.unwrap();
        store.migrate().await.unwrap();
        let mut all: Vec<String> = cxhub_migrations::SCORE_INDEXES
            .iter()
            .map(|(name, _)| (*name).to_owned())
            .collect();
        all.sort();
        assert_eq!(indexes(&store).await, all, "as the migration made them");
        store.pause_score_indexes().await.unwrap();
        assert!(indexes(&store).await.is_empty());
        store.restore_score_indexes().await.unwrap();
        store.restore_score_indexes().await.unwrap();
        assert_eq!(indexes(&store).await, all);
        // A process stopped between the two: the next start builds them.
        store.pause_score_indexes().await.unwrap();
        drop(store);
        let reopened = Store::connect(&url, StoreOptions::default()).await.unwrap();
        reopened.migrate().await.unwrap();
        assert_eq!(indexes(&reopened).await, all);
    }

    #[tokio::test]
    async fn in_memory_sqlite_shares_one_connection() {
        let store = Store::connect("sqlite::memory:", StoreOptions::default())
            .await
            .unwrap();
        store.migrate().await.unwrap();
        let req = RequestKey::new("t", "m", "r1", b"x").unwrap();
        store
            .create_touchpoints(&req, vec![item("kiosk")])
            .await
            .unwrap();
        assert_eq!(store.all_touchpoints(true).await.unwrap().len(), 1);
    }

    #[tokio::test]
    async fn bad_urls_and_schema_names_are_refused() {
        let err = Store::connect("mysql://x", StoreOptions::default())
            .await
            .unwrap_err();
        assert!(matches!(err, Error::InvalidArgument { .. }));
        assert!(check_schema_name("cxhub_test_1").is_ok());
        assert!(check_schema_name("x\"; drop").is_err());
        assert!(check_schema_name("1abc").is_err());
    }

    #[test]
    fn only_tcp_urls_have_a_port_to_fix() {
        assert_eq!(tcp_port("postgres://u@127.0.0.1:5433/db"), Some(5433));
        assert_eq!(tcp_port("postgres://u@localhost/db"), Some(5432));
        assert_eq!(
            tcp_port("postgres://u@localhost/db?host=/var/run/postgresql"),
            None
        );
    }

    /// Every connection to PostgreSQL over TCP, pooled or the store's own reader, has
    /// `TCP_NODELAY`, and the schema given as a startup option is the one its statements use.
    /// The pool plans every statement with its parameters; the own readers let PostgreSQL
    /// cache generic plans.
    #[cfg(target_os = "linux")]
    #[tokio::test]
    #[ignore = "needs PostgreSQL: set CXHUB_TEST_POSTGRES_URL and pass --include-ignored"]
    async fn postgres_connections_over_tcp_have_nodelay_and_the_schema() {
        let url = std::env::var("CXHUB_TEST_POSTGRES_URL")
            .expect("CXHUB_TEST_POSTGRES_URL is not set: this test needs a PostgreSQL database");
        let Some(port) = tcp_port(&url) else {
            return; // A Unix socket: no TCP to fix.
        };
        let schema = format!("cxhub_test_{}", uuid::Uuid::now_v7().simple());
        let store = Store::connect(
            &url,
            StoreOptions {
                schema: Some(schema.clone()),
                max_connections: Some(3),
            },
        )
        .await
        .unwrap();
        // Three transactions open at once: three connections.
        let mut open = Vec::new();
        for _ in 0..3 {
            let txn = store.writer.begin().await.unwrap();
            let row = txn
                .query_one_raw(Statement::from_string(
                    DbBackend::Postgres,
                    "SELECT current_schema() AS s",
                ))
                .await
                .unwrap()
                .unwrap();
            assert_eq!(row.try_get::<String>("", "s").unwrap(), schema);
            open.push(txn);
        }
        let settings = |conn: &'static str| {
            Statement::from_string(
                DbBackend::Postgres,
                format!(
                    "SELECT current_schema() AS s, current_setting('plan_cache_mode') AS plans, \
                     '{conn}' AS conn"
                ),
            )
        };
        let pooled = open[0]
            .query_one_raw(settings("pool"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            pooled.try_get::<String>("", "plans").unwrap(),
            "force_custom_plan"
        );
        let own = store
            .reader
            .query_one_raw(settings("own"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(own.try_get::<String>("", "s").unwrap(), schema);
        assert_eq!(own.try_get::<String>("", "plans").unwrap(), "auto");
        let sockets = crate::tcp_nodelay::sockets_to(port).unwrap();
        assert!(
            sockets.len() >= 4,
            "{} sockets to port {port}",
            sockets.len()
        );
        for socket in &sockets {
            assert!(socket2::SockRef::from(socket).tcp_nodelay().unwrap());
        }
        drop(open);
        drop(store);
        drop_postgres_schema(&url, &schema).await.unwrap();
    }
}
