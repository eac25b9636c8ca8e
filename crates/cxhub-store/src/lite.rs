//! The hot SQLite reads run on the calling thread, through rusqlite, instead of on sqlx's
//! worker threads. [`LiteFile`] also opens the audit file's own connection (see
//! `privacy::write_audit`), which binds its values with [`bind_value`].
//!
//! sqlx runs every SQLite connection on a thread of its own: a statement is sent to that
//! thread, stepped there, and its rows are sent back, so each read costs two thread hand-offs
//! (a futex wake and a context switch each way on a 2-core machine) on top of the statement.
//! In a profile of `GetCustomer` ×16 (20,000 customers, auditing off) the worker threads took
//! 37 % of the CPU, about 69 µs a call, of which SQLite's own work was about a third, and the
//! scheduler's wake-ups another 9 % on the tokio side. Here the statement is stepped where the
//! RPC runs: `GetCustomer`, `LookupCustomer`, `SearchCustomers` and `GetCustomer360` are
//! single statements of tens to hundreds of microseconds over a warm page cache, shorter than
//! the hand-offs they replace.
//!
//! The connections are kept in a list: a read takes one (or opens one), steps its statement to
//! the end and puts it back. A statement cannot be abandoned halfway (nothing awaits while it
//! runs), so a connection is always idle when it comes back. At most as many are open as
//! threads read at once; no more than [`LiteReaders::new`]'s `keep` stay idle. A statement
//! still running after [`INLINE_FOR`] is interrupted and run again on a blocking thread, so a
//! long read does not hold up the runtime.
//!
//! Rows come back as [`Row`]s, which the row decoders of these reads share with rows read
//! through sea-orm (PostgreSQL, and transactions on either backend) by [`Cols`]; values are
//! bound and decoded as sqlx binds and decodes them, so a statement finds the same rows
//! either way (times as RFC 3339 text, booleans as 0 and 1).

use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, NaiveDateTime, SecondsFormat, TimeZone, Utc};
use cxhub_domain::{Error, Result};
use rusqlite::types::{Value as LiteValue, ValueRef};
use rusqlite::{Connection, OpenFlags};
use sea_orm::{
    ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbBackend, QueryResult, Statement,
    Value,
};

use crate::error::{DbResultExt, corrupt};

// ------------------------------------------------------------------------------------------------
// Rows

/// A row of a read: sea-orm's, or one read here.
#[derive(Debug)]
pub(crate) enum Row {
    Sea(QueryResult),
    Lite(LiteRow),
}

/// A row read here: the statement's column names (shared by its rows) and the row's values.
#[derive(Debug)]
pub(crate) struct LiteRow {
    columns: Arc<[String]>,
    values: Vec<LiteValue>,
}

/// Columns read by name, whichever driver read the row.
pub(crate) trait Cols {
    /// The value of `column` as a `T`; a missing column or a value of another type is corrupt
    /// data (an internal error, logged).
    fn col<T: Cell>(&self, column: &str) -> Result<T>;
}

impl Cols for QueryResult {
    fn col<T: Cell>(&self, column: &str) -> Result<T> {
        self.try_get("", column).map_err(corrupt)
    }
}

impl Cols for LiteRow {
    fn col<T: Cell>(&self, column: &str) -> Result<T> {
        let at = self
            .columns
            .iter()
            .position(|c| c == column)
            .ok_or_else(|| corrupt(format!("no column {column} in the row")))?;
        T::from_lite(ValueRef::from(&self.values[at]))
            .map_err(|why| corrupt(format!("column {column}: {why}")))
    }
}

impl Cols for Row {
    fn col<T: Cell>(&self, column: &str) -> Result<T> {
        match self {
            Row::Sea(row) => row.col(column),
            Row::Lite(row) => row.col(column),
        }
    }
}

/// A type a column is read as: from sea-orm's rows (`TryGetable`) and from SQLite's values
/// here, decoded as sqlx decodes it.
pub(crate) trait Cell: sea_orm::TryGetable {
    fn from_lite(value: ValueRef<'_>) -> std::result::Result<Self, String>;
}

fn unexpected(what: &str, value: ValueRef<'_>) -> String {
    format!("expected {what}, found {:?}", value.data_type())
}

impl Cell for String {
    fn from_lite(value: ValueRef<'_>) -> std::result::Result<Self, String> {
        match value {
            ValueRef::Text(t) => String::from_utf8(t.to_vec()).map_err(|e| e.to_string()),
            other => Err(unexpected("text", other)),
        }
    }
}

impl Cell for i64 {
    fn from_lite(value: ValueRef<'_>) -> std::result::Result<Self, String> {
        match value {
            ValueRef::Integer(n) => Ok(n),
            other => Err(unexpected("an integer", other)),
        }
    }
}

impl Cell for i32 {
    fn from_lite(value: ValueRef<'_>) -> std::result::Result<Self, String> {
        let n = i64::from_lite(value)?;
        i32::try_from(n).map_err(|_| format!("{n} out of range"))
    }
}

impl Cell for f64 {
    fn from_lite(value: ValueRef<'_>) -> std::result::Result<Self, String> {
        match value {
            ValueRef::Real(x) => Ok(x),
            // A REAL column holding a whole number keeps it as an integer.
            #[allow(clippy::cast_precision_loss)]
            ValueRef::Integer(n) => Ok(n as f64),
            other => Err(unexpected("a number", other)),
        }
    }
}

impl Cell for bool {
    fn from_lite(value: ValueRef<'_>) -> std::result::Result<Self, String> {
        Ok(i64::from_lite(value)? != 0)
    }
}

impl Cell for DateTime<Utc> {
    fn from_lite(value: ValueRef<'_>) -> std::result::Result<Self, String> {
        match value {
            ValueRef::Text(t) => {
                let text = std::str::from_utf8(t).map_err(|e| e.to_string())?;
                time_from_text(text).ok_or_else(|| format!("not a time: {text}"))
            }
            ValueRef::Integer(seconds) => Utc
                .timestamp_opt(seconds, 0)
                .single()
                .ok_or_else(|| format!("not a time: {seconds}")),
            other => Err(unexpected("a time", other)),
        }
    }
}

/// A stored time: RFC 3339 (how sqlx writes a `DateTime<Utc>`), or SQLite's own
/// `YYYY-MM-DD HH:MM:SS[.fff]` in UTC (`datetime()`, `CURRENT_TIMESTAMP`).
fn time_from_text(text: &str) -> Option<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Some(t.with_timezone(&Utc));
    }
    NaiveDateTime::parse_from_str(text, "%F %T%.f")
        .ok()
        .map(|t| t.and_utc())
}

impl<T: Cell> Cell for Option<T> {
    fn from_lite(value: ValueRef<'_>) -> std::result::Result<Self, String> {
        match value {
            ValueRef::Null => Ok(None),
            other => T::from_lite(other).map(Some),
        }
    }
}

// ------------------------------------------------------------------------------------------------
// Where reads run

/// A connection (or transaction, or reader) a read statement runs on.
pub(crate) trait Read: Sync {
    fn backend(&self) -> DbBackend;
    /// Every row of `stmt`.
    fn all(&self, stmt: Statement) -> impl Future<Output = Result<Vec<Row>>> + Send;
    /// The first row of `stmt`, if any.
    fn one(&self, stmt: Statement) -> impl Future<Output = Result<Option<Row>>> + Send;
}

/// Every row of `stmt` read through sea-orm.
pub(crate) async fn sea_all(conn: &impl ConnectionTrait, stmt: Statement) -> Result<Vec<Row>> {
    let rows = conn.query_all_raw(stmt).await.db()?;
    Ok(rows.into_iter().map(Row::Sea).collect())
}

/// The first row of `stmt` read through sea-orm, if any.
pub(crate) async fn sea_one(conn: &impl ConnectionTrait, stmt: Statement) -> Result<Option<Row>> {
    Ok(conn.query_one_raw(stmt).await.db()?.map(Row::Sea))
}

/// [`Read`] through sea-orm, for its connections and transactions.
macro_rules! read_through_sea_orm {
    ($($conn:ty),*) => {$(
        impl Read for $conn {
            fn backend(&self) -> DbBackend {
                self.get_database_backend()
            }

            async fn all(&self, stmt: Statement) -> Result<Vec<Row>> {
                sea_all(self, stmt).await
            }

            async fn one(&self, stmt: Statement) -> Result<Option<Row>> {
                sea_one(self, stmt).await
            }
        }
    )*};
}
read_through_sea_orm!(DatabaseConnection, DatabaseTransaction);

// ------------------------------------------------------------------------------------------------
// The connections

/// How long a statement is stepped on the calling thread (a runtime worker, whose other tasks
/// wait meanwhile) before it is interrupted and run again, from the start, on a blocking thread.
/// The profile's reads take tens to hundreds of microseconds; a search whose filter matches few
/// of a long prefix's candidates, or the 360 of a customer with an outsized history, can take
/// far longer, and would otherwise hold up every RPC queued behind it.
const INLINE_FOR: Duration = Duration::from_millis(2);
/// SQLite virtual-machine steps between checks of [`INLINE_FOR`] (a check reads the clock).
const PROGRESS_OPS: std::os::raw::c_int = 1000;

/// Prepared statements kept per connection (rusqlite's default is 16; the search alone has a
/// statement per filter shape and page size).
const STATEMENT_CACHE: usize = 64;

/// How to open connections to one SQLite file with the store's settings.
pub(crate) struct LiteFile {
    path: PathBuf,
    /// `PRAGMA`s run on each new connection (`name = value; …`).
    pragmas: String,
    busy_timeout: Duration,
}

impl LiteFile {
    /// The file at `path` (which must exist), each connection set up with `pragmas`
    /// (`(name, value)` pairs, from the store's own options) and `busy_timeout`.
    pub(crate) fn new(
        path: impl Into<PathBuf>,
        pragmas: &[(&str, &str)],
        busy_timeout: Duration,
    ) -> Self {
        let pragmas = pragmas
            .iter()
            .map(|(name, value)| format!("PRAGMA {name} = {value};"))
            .collect::<Vec<_>>()
            .join(" ");
        LiteFile {
            path: path.into(),
            pragmas,
            busy_timeout,
        }
    }

    /// How long its connections wait for a lock.
    pub(crate) fn busy_timeout(&self) -> Duration {
        self.busy_timeout
    }

    /// A new connection, set up, with `more` SQL run after the `PRAGMA`s.
    pub(crate) fn open(&self, more: &str) -> rusqlite::Result<Connection> {
        let conn = Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX
                | OpenFlags::SQLITE_OPEN_URI,
        )?;
        conn.busy_timeout(self.busy_timeout)?;
        conn.execute_batch(&format!("{} {more}", self.pragmas))?;
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        Ok(conn)
    }
}

/// Connections to one SQLite file, for reads run on the calling thread.
#[derive(Clone)]
pub(crate) struct LiteReaders(Arc<Inner>);

struct Inner {
    file: LiteFile,
    idle: Mutex<Vec<Connection>>,
    keep: usize,
}

impl LiteReaders {
    /// Readers of `file`. At most `keep` connections stay open while idle.
    pub(crate) fn new(file: LiteFile, keep: usize) -> Self {
        LiteReaders(Arc::new(Inner {
            file,
            idle: Mutex::new(Vec::new()),
            keep: keep.max(1),
        }))
    }

    fn open(&self) -> rusqlite::Result<Connection> {
        // Reads only: a statement that would change the file fails.
        self.0.file.open("PRAGMA query_only = 1;")
    }

    /// Runs `read` on an idle connection (or a new one), then puts the connection back (an
    /// error from SQLite leaves it usable). The outer error is from opening one.
    fn with<T>(
        &self,
        read: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> Result<rusqlite::Result<T>> {
        let idle = self.0.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let conn = match idle {
            Some(conn) => conn,
            None => self.open().map_err(lite_err)?,
        };
        let result = read(&conn);
        let mut idle = self.0.idle.lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() < self.0.keep {
            idle.push(conn);
        }
        Ok(result)
    }

    /// Up to `limit` rows of `stmt`: stepped on the calling thread for at most
    /// [`INLINE_FOR`], then, if it is not done, run again from the start on a blocking thread
    /// (see [`INLINE_FOR`]).
    async fn read(&self, stmt: Statement, limit: usize) -> Result<Vec<Row>> {
        let inline = self.with(|conn| {
            let started = std::time::Instant::now();
            conn.progress_handler(PROGRESS_OPS, Some(move || started.elapsed() >= INLINE_FOR))?;
            rows(conn, &stmt, limit)
        })?;
        match inline {
            Err(rusqlite::Error::SqliteFailure(failure, _))
                if failure.code == rusqlite::ErrorCode::OperationInterrupted =>
            {
                let readers = self.clone();
                tokio::task::spawn_blocking(move || {
                    readers.with(|conn| {
                        conn.progress_handler(PROGRESS_OPS, None::<fn() -> bool>)?;
                        rows(conn, &stmt, limit)
                    })
                })
                .await
                .map_err(|err| Error::internal(format!("a read's thread failed: {err}")))??
                .map_err(lite_err)
            }
            other => other.map_err(lite_err),
        }
    }

    /// Every row of `stmt`.
    pub(crate) async fn all(&self, stmt: Statement) -> Result<Vec<Row>> {
        self.read(stmt, usize::MAX).await
    }

    /// The first row of `stmt`, if any.
    pub(crate) async fn one(&self, stmt: Statement) -> Result<Option<Row>> {
        Ok(self.read(stmt, 1).await?.into_iter().next())
    }

    #[cfg(test)]
    fn idle(&self) -> usize {
        self.0.idle.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

/// Up to `limit` rows of `stmt` on `conn` (the statement is reset when dropped).
fn rows(conn: &Connection, stmt: &Statement, limit: usize) -> rusqlite::Result<Vec<Row>> {
    let mut prepared = conn.prepare_cached(&stmt.sql)?;
    if let Some(values) = &stmt.values {
        for (at, value) in values.0.iter().enumerate() {
            prepared.raw_bind_parameter(at + 1, bind_value(value)?)?;
        }
    }
    let columns: Arc<[String]> = prepared
        .column_names()
        .into_iter()
        .map(str::to_owned)
        .collect();
    let width = columns.len();
    let mut out = Vec::new();
    let mut stepped = prepared.raw_query();
    while out.len() < limit {
        let Some(row) = stepped.next()? else {
            break;
        };
        let mut values = Vec::with_capacity(width);
        for at in 0..width {
            values.push(row.get::<_, LiteValue>(at)?);
        }
        out.push(Row::Lite(LiteRow {
            columns: columns.clone(),
            values,
        }));
    }
    Ok(out)
}

/// A bound value as sqlx binds it on SQLite: times as RFC 3339 text (`+00:00`, as many
/// fractional digits as needed), booleans as 0 and 1, JSON as its text. Reads and the audit
/// writer bind nothing else; any other kind is refused rather than bound differently.
pub(crate) fn bind_value(value: &Value) -> rusqlite::Result<LiteValue> {
    let bound = match value {
        Value::Bool(b) => b.map(|b| LiteValue::Integer(i64::from(b))),
        Value::TinyInt(n) => n.map(|n| LiteValue::Integer(i64::from(n))),
        Value::SmallInt(n) => n.map(|n| LiteValue::Integer(i64::from(n))),
        Value::Int(n) => n.map(|n| LiteValue::Integer(i64::from(n))),
        Value::BigInt(n) => n.map(LiteValue::Integer),
        Value::TinyUnsigned(n) => n.map(|n| LiteValue::Integer(i64::from(n))),
        Value::SmallUnsigned(n) => n.map(|n| LiteValue::Integer(i64::from(n))),
        Value::Unsigned(n) => n.map(|n| LiteValue::Integer(i64::from(n))),
        Value::Float(x) => x.map(|x| LiteValue::Real(f64::from(x))),
        Value::Double(x) => x.map(LiteValue::Real),
        Value::String(s) => s.as_ref().map(|s| LiteValue::Text(s.clone())),
        Value::Char(c) => c.map(|c| LiteValue::Text(c.to_string())),
        Value::Bytes(b) => b.as_ref().map(|b| LiteValue::Blob(b.clone())),
        Value::Json(j) => j.as_ref().map(|j| LiteValue::Text(j.to_string())),
        Value::ChronoDateTimeUtc(t) => t.map(|t| LiteValue::Text(time_text(t))),
        other => {
            return Err(rusqlite::Error::ToSqlConversionFailure(
                format!("rusqlite connections here do not bind {other:?}").into(),
            ));
        }
    };
    Ok(bound.unwrap_or(LiteValue::Null))
}

/// A time as sqlx binds it on SQLite: RFC 3339 text, `+00:00`, as many fractional digits as
/// needed.
fn time_text(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::AutoSi, false)
}

/// A SQLite error as the store reports it: a busy or locked database, or one that cannot be
/// opened, is `Unavailable` (as from sqlx); anything else is internal, logged with its detail.
fn lite_err(err: rusqlite::Error) -> Error {
    use rusqlite::ErrorCode;
    if let rusqlite::Error::SqliteFailure(failure, _) = &err
        && matches!(
            failure.code,
            ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked | ErrorCode::CannotOpen
        )
    {
        tracing::warn!(error = %err, "database unavailable");
        return Error::Unavailable("the database is unavailable: retry later".into());
    }
    tracing::error!(error = %err, "database error");
    Error::internal("database error")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use sea_orm::sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode};
    use sea_orm::sqlx::{self, Connection as _, SqliteConnection};

    /// A file with one table written through sqlx, as the store writes, and readers of it.
    async fn file() -> (tempfile::TempDir, LiteReaders) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.db");
        let options = SqliteConnectOptions::new()
            .filename(&path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal);
        let mut setup = SqliteConnection::connect_with(&options).await.unwrap();
        sqlx::query(
            "CREATE TABLE t (n INTEGER, s TEXT, at TEXT, flag BOOLEAN, x REAL, b BLOB, j TEXT)",
        )
        .execute(&mut setup)
        .await
        .unwrap();
        let at = Utc.with_ymd_and_hms(2026, 11, 25, 3, 4, 5).unwrap()
            + chrono::Duration::microseconds(123_456);
        for n in 1..=3_i64 {
            sqlx::query("INSERT INTO t VALUES (?, ?, ?, ?, ?, ?, ?)")
                .bind(n)
                .bind(format!("s{n}"))
                .bind(at + chrono::Duration::seconds(n))
                .bind(n % 2 == 0)
                .bind(n as f64 / 2.0)
                .bind(vec![n as u8; 3])
                .bind(serde_json::json!({ "n": n }))
                .execute(&mut setup)
                .await
                .unwrap();
        }
        sqlx::query("INSERT INTO t (n) VALUES (4)")
            .execute(&mut setup)
            .await
            .unwrap();
        setup.close().await.unwrap();
        let readers = LiteReaders::new(
            LiteFile::new(path, &[("cache_size", "-2048")], Duration::from_millis(200)),
            2,
        );
        (dir, readers)
    }

    fn stmt(sql: &str, values: Vec<Value>) -> Statement {
        Statement::from_sql_and_values(DbBackend::Sqlite, sql, values)
    }

    async fn ns(readers: &LiteReaders, sql: &str, value: Value) -> Vec<i64> {
        readers
            .all(stmt(sql, vec![value]))
            .await
            .unwrap()
            .iter()
            .map(|r| r.col::<i64>("n").unwrap())
            .collect()
    }

    #[tokio::test]
    async fn values_bound_as_sqlx_binds_them_find_the_rows_sqlx_wrote() {
        let (_dir, r) = file().await;
        let at = Utc.with_ymd_and_hms(2026, 11, 25, 3, 4, 7).unwrap()
            + chrono::Duration::microseconds(123_456);
        let by = |column: &str| format!("SELECT n FROM t WHERE {column} = ?");
        assert_eq!(ns(&r, &by("at"), Value::from(at)).await, [2]);
        assert_eq!(ns(&r, &by("flag"), Value::from(true)).await, [2]);
        assert_eq!(ns(&r, &by("s"), Value::from("s3")).await, [3]);
        assert_eq!(ns(&r, &by("x"), Value::from(0.5_f64)).await, [1]);
        assert_eq!(ns(&r, &by("n"), Value::from(3_i32)).await, [3]);
        assert_eq!(ns(&r, &by("b"), Value::from(vec![1_u8; 3])).await, [1]);
        let json = Value::from(serde_json::json!({ "n": 2 }));
        assert_eq!(ns(&r, &by("j"), json).await, [2]);
        let null = Value::String(None);
        assert_eq!(ns(&r, "SELECT n FROM t WHERE s IS ?", null).await, [4]);
        let refused = r.all(stmt(&by("n"), vec![Value::ChronoDate(None)])).await;
        assert!(matches!(refused, Err(Error::Internal(_))), "{refused:?}");
    }

    #[tokio::test]
    async fn columns_decode_as_sqlx_decodes_them() {
        let (_dir, readers) = file().await;
        let rows = readers
            .all(stmt("SELECT * FROM t ORDER BY n", vec![]))
            .await
            .unwrap();
        assert_eq!(rows.len(), 4);
        let first = &rows[0];
        assert_eq!(first.col::<String>("s").unwrap(), "s1");
        assert_eq!(
            first.col::<DateTime<Utc>>("at").unwrap(),
            Utc.with_ymd_and_hms(2026, 11, 25, 3, 4, 6).unwrap()
                + chrono::Duration::microseconds(123_456)
        );
        assert!(!first.col::<bool>("flag").unwrap());
        assert!(rows[1].col::<bool>("flag").unwrap());
        assert_eq!(first.col::<f64>("x").unwrap(), 0.5);
        assert_eq!(rows[1].col::<f64>("x").unwrap(), 1.0, "a whole REAL");
        assert_eq!(first.col::<i32>("n").unwrap(), 1);
        let last = &rows[3];
        assert_eq!(last.col::<Option<String>>("s").unwrap(), None);
        assert_eq!(last.col::<Option<DateTime<Utc>>>("at").unwrap(), None);
        // A null where a value is required, a column of another type, a missing column.
        assert!(last.col::<String>("s").is_err());
        assert!(first.col::<i64>("s").is_err());
        assert!(first.col::<String>("nope").is_err());
        // SQLite's own time text, and seconds.
        let row = readers
            .one(stmt(
                "SELECT '2026-11-25 03:04:05.5' AS a, '2026-11-25 03:04:05' AS b, 5 AS c",
                vec![],
            ))
            .await
            .unwrap()
            .unwrap();
        let base = Utc.with_ymd_and_hms(2026, 11, 25, 3, 4, 5).unwrap();
        assert_eq!(
            row.col::<DateTime<Utc>>("a").unwrap(),
            base + chrono::Duration::milliseconds(500)
        );
        assert_eq!(row.col::<DateTime<Utc>>("b").unwrap(), base);
        assert_eq!(
            row.col::<DateTime<Utc>>("c").unwrap(),
            Utc.timestamp_opt(5, 0).unwrap()
        );
    }

    async fn count(readers: &LiteReaders) -> i64 {
        readers
            .one(stmt("SELECT COUNT(*) AS c FROM t", vec![]))
            .await
            .unwrap()
            .unwrap()
            .col::<i64>("c")
            .unwrap()
    }

    #[tokio::test]
    async fn one_row_or_none_and_the_connection_is_reused() {
        let (_dir, readers) = file().await;
        let one = readers
            .one(stmt("SELECT n FROM t ORDER BY n DESC", vec![]))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(one.col::<i64>("n").unwrap(), 4);
        let none = readers
            .one(stmt(
                "SELECT n FROM t WHERE n > ?",
                vec![Value::from(9_i64)],
            ))
            .await
            .unwrap();
        assert!(none.is_none());
        assert_eq!(readers.idle(), 1, "sequential reads share one connection");
        // An SQLite error keeps the connection.
        let err = readers.all(stmt("SELECT nope FROM t", vec![])).await;
        assert!(matches!(err, Err(Error::Internal(_))), "{err:?}");
        assert_eq!(readers.idle(), 1);
        assert_eq!(count(&readers).await, 4);
    }

    #[tokio::test]
    async fn a_reader_changes_nothing() {
        let (_dir, readers) = file().await;
        let err = readers.all(stmt("DELETE FROM t RETURNING n", vec![])).await;
        assert!(err.is_err(), "{:?}", err.map(|r| r.len()));
        assert_eq!(count(&readers).await, 4);
    }

    #[tokio::test]
    async fn a_missing_file_is_unavailable() {
        let dir = tempfile::tempdir().unwrap();
        let readers = LiteReaders::new(
            LiteFile::new(dir.path().join("none.db"), &[], Duration::ZERO),
            1,
        );
        let err = readers.all(stmt("SELECT 1 AS one", vec![])).await;
        assert!(matches!(err, Err(Error::Unavailable(_))), "{err:?}");
    }

    #[tokio::test]
    async fn a_read_beside_a_writer_sees_each_commit() {
        let (dir, readers) = file().await;
        let options = SqliteConnectOptions::new().filename(dir.path().join("r.db"));
        let mut writer = SqliteConnection::connect_with(&options).await.unwrap();
        assert_eq!(count(&readers).await, 4);
        sqlx::query("INSERT INTO t (n) VALUES (5)")
            .execute(&mut writer)
            .await
            .unwrap();
        assert_eq!(
            count(&readers).await,
            5,
            "the cached statement reads the new snapshot"
        );
    }

    /// One runtime thread: a statement stepped on it for its whole length would stop every
    /// other task on the runtime until it ends.
    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn a_long_read_moves_off_the_runtime_thread_and_still_answers() {
        let (_dir, readers) = file().await;
        let ticks = Arc::new(std::sync::atomic::AtomicU32::new(0));
        let ticker = tokio::spawn({
            let ticks = ticks.clone();
            async move {
                loop {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    ticks.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            }
        });
        // Let the ticker start.
        tokio::time::sleep(Duration::from_millis(20)).await;
        let at_start = ticks.load(std::sync::atomic::Ordering::Relaxed);
        // On the runtime's thread (the test's own body runs beside it, in `block_on`).
        let (slow, took) = tokio::spawn({
            let readers = readers.clone();
            async move {
                let started = std::time::Instant::now();
                let slow = readers
                    .one(stmt(
                        "WITH RECURSIVE c(n) AS \
                         (SELECT 1 UNION ALL SELECT n + 1 FROM c WHERE n < 3000000) \
                         SELECT COUNT(*) AS c FROM c",
                        vec![],
                    ))
                    .await
                    .unwrap()
                    .unwrap();
                (slow, started.elapsed())
            }
        })
        .await
        .unwrap();
        assert_eq!(slow.col::<i64>("c").unwrap(), 3_000_000, "the whole answer");
        let during = ticks.load(std::sync::atomic::Ordering::Relaxed) - at_start;
        ticker.abort();
        assert!(
            took > Duration::from_millis(200),
            "long enough to tell: {took:?}"
        );
        // A tick every 5 ms while the statement ran (a fifth of them is plenty on a loaded
        // machine), where none could come if it held the only runtime thread.
        let expected = (took.as_millis() / 25) as u32;
        assert!(during >= expected, "{during} ticks in {took:?}");
        // The connection was returned by the blocking thread and serves again.
        assert_eq!(count(&readers).await, 4);
        assert!(readers.idle() >= 1);
    }
}
