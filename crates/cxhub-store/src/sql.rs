//! Hand-built statements for the hot paths: multi-row upserts and `IN` lookups, with the
//! placeholders of each backend (`?` on SQLite, `$n` on PostgreSQL). The ORM's query builder
//! costs more per row than the database does here; these statements are plain text plus bound
//! values, still executed through sea-orm.

use std::fmt::Write as _;

use sea_orm::{DbBackend, Statement, Value};

/// A statement being written: SQL text and the values bound to its placeholders.
pub(crate) struct Sql {
    backend: DbBackend,
    text: String,
    values: Vec<Value>,
}

impl Sql {
    /// Starts a statement with `text`.
    pub(crate) fn new(backend: DbBackend, text: &str) -> Self {
        Self {
            backend,
            text: text.to_owned(),
            values: Vec::new(),
        }
    }

    /// The database the statement is written for.
    pub(crate) fn backend(&self) -> DbBackend {
        self.backend
    }

    /// Appends SQL text.
    pub(crate) fn push(&mut self, text: &str) -> &mut Self {
        self.text.push_str(text);
        self
    }

    /// Appends a placeholder bound to `value`.
    pub(crate) fn bind(&mut self, value: impl Into<Value>) -> &mut Self {
        self.values.push(value.into());
        match self.backend {
            DbBackend::Postgres => {
                let _ = write!(self.text, "${}", self.values.len());
            }
            _ => self.text.push('?'),
        }
        self
    }

    /// Appends ` LIMIT n` with `n` written into the text, not bound. SQLite (3.51) reads a
    /// bound `LIMIT ?` while planning, so binding another value to it expires the prepared
    /// statement and every call re-parses and re-plans it (a quarter of the hub's time in a
    /// `GetCustomer360` profile); with the number in the text, each page size is its own
    /// cached statement. `n` is a number, so nothing of a caller's text reaches the SQL.
    pub(crate) fn limit(&mut self, n: u64) -> &mut Self {
        let _ = write!(self.text, " LIMIT {n}");
        self
    }

    /// Appends `(v1, v2, …)`.
    pub(crate) fn tuple<const N: usize>(&mut self, values: [Value; N]) -> &mut Self {
        self.text.push('(');
        for (i, value) in values.into_iter().enumerate() {
            if i > 0 {
                self.text.push_str(", ");
            }
            self.bind(value);
        }
        self.text.push(')');
        self
    }

    /// Appends `(?, ?, …)` for a list of values (an `IN` list); the list must not be empty.
    pub(crate) fn list<V: Into<Value>>(
        &mut self,
        values: impl IntoIterator<Item = V>,
    ) -> &mut Self {
        self.text.push('(');
        for (i, value) in values.into_iter().enumerate() {
            if i > 0 {
                self.text.push_str(", ");
            }
            self.bind(value);
        }
        self.text.push(')');
        self
    }

    /// Appends a membership test of the preceding expression in `values`: ` IN (?, …)` on
    /// SQLite, ` = ANY($n)` with one `text[]` parameter on PostgreSQL (one statement text
    /// whatever the number of values, so one prepared statement and one plan shape). The list
    /// must not be empty.
    pub(crate) fn in_texts(&mut self, values: impl IntoIterator<Item = String>) -> &mut Self {
        match self.backend {
            DbBackend::Postgres => {
                self.push(" = ANY(");
                self.bind(texts(values));
                self.push(")")
            }
            _ => {
                self.push(" IN ");
                self.list(values.into_iter().map(text))
            }
        }
    }

    /// The finished statement.
    pub(crate) fn build(self) -> Statement {
        Statement::from_sql_and_values(self.backend, self.text, self.values)
    }
}

/// A text value.
pub(crate) fn text(s: impl Into<String>) -> Value {
    Value::String(Some(s.into()))
}

/// A nullable text value.
pub(crate) fn text_opt(s: Option<impl Into<String>>) -> Value {
    Value::String(s.map(Into::into))
}

/// A timestamp value.
pub(crate) fn time(t: chrono::DateTime<chrono::Utc>) -> Value {
    Value::ChronoDateTimeUtc(Some(t))
}

/// A nullable timestamp value.
pub(crate) fn time_opt(t: Option<chrono::DateTime<chrono::Utc>>) -> Value {
    Value::ChronoDateTimeUtc(t)
}

/// A bytes value.
pub(crate) fn bytes(b: Vec<u8>) -> Value {
    Value::Bytes(Some(b))
}

/// A 64-bit integer value.
pub(crate) fn int(i: i64) -> Value {
    Value::BigInt(Some(i))
}

/// A boolean value.
pub(crate) fn boolean(b: bool) -> Value {
    Value::Bool(Some(b))
}

/// A PostgreSQL `text[]` value.
pub(crate) fn texts(values: impl IntoIterator<Item = String>) -> Value {
    array(
        sea_orm::sea_query::ArrayType::String,
        values.into_iter().map(text),
    )
}

/// A PostgreSQL array value of `ty` (every element non-null).
pub(crate) fn array(
    ty: sea_orm::sea_query::ArrayType,
    values: impl IntoIterator<Item = Value>,
) -> Value {
    Value::Array(ty, Some(Box::new(values.into_iter().collect())))
}

/// The type of a column on PostgreSQL, for the arrays of an `UNNEST` insert.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Pg {
    /// `text`.
    Text,
    /// `timestamptz`.
    Time,
    /// `bytea`.
    Bytes,
    /// `int8`.
    Int,
    /// `boolean`.
    Bool,
}

/// A column of [`insert_rows`].
#[derive(Clone, Copy, Debug)]
pub(crate) struct Column {
    /// Its name.
    pub name: &'static str,
    /// Its type on PostgreSQL.
    pub pg: Pg,
    /// Whether rows may hold NULL in it.
    pub nullable: bool,
}

/// A non-null column.
pub(crate) const fn col(name: &'static str, pg: Pg) -> Column {
    Column {
        name,
        pg,
        nullable: false,
    }
}

/// A nullable column (text or timestamp).
pub(crate) const fn nullable(name: &'static str, pg: Pg) -> Column {
    Column {
        name,
        pg,
        nullable: true,
    }
}

/// Inserts `rows` (one value per column each) into `table`, followed by `tail` (an
/// `ON CONFLICT …` clause), in as few statements as each backend allows: multi-row `VALUES`
/// chunked under SQLite's parameter limit, or one `INSERT … SELECT FROM UNNEST(arrays)` on
/// PostgreSQL (one statement text and one parameter per column, whatever the number of rows).
/// A NULL in a nullable column travels as an empty text and comes back with `NULLIF`.
pub(crate) async fn insert_rows(
    conn: &impl sea_orm::ConnectionTrait,
    table: &str,
    columns: &[Column],
    rows: Vec<Vec<Value>>,
    tail: &str,
) -> Result<(), sea_orm::DbErr> {
    if rows.is_empty() {
        return Ok(());
    }
    let backend = conn.get_database_backend();
    if backend == DbBackend::Postgres {
        let mut sql = Sql::new(backend, "");
        push_unnest_insert(&mut sql, table, columns, rows, tail);
        conn.execute_raw(sql.build()).await?;
        return Ok(());
    }
    let names: Vec<&str> = columns.iter().map(|c| c.name).collect();
    let head = format!("INSERT INTO {table} ({}) ", names.join(", "));
    let per_statement = (crate::MAX_BIND_PARAMS / columns.len().max(1)).max(1);
    let mut rows = rows.into_iter().peekable();
    while rows.peek().is_some() {
        let mut sql = Sql::new(backend, &head);
        sql.push("VALUES ");
        for (i, row) in rows.by_ref().take(per_statement).enumerate() {
            if i > 0 {
                sql.push(", ");
            }
            sql.list(row);
        }
        sql.push(" ").push(tail);
        conn.execute_raw(sql.build()).await?;
    }
    Ok(())
}

/// Multi-row inserts of one step of a transaction. On SQLite each runs at once (through
/// [`insert_rows`]); on PostgreSQL they are gathered into one statement of data-modifying
/// `WITH` parts, run by [`Inserts::run`]: one round trip for all of them instead of one each.
///
/// The parts of one statement see the same snapshot and not each other's rows, so only
/// gather inserts into different tables whose rows do not depend on each other, and read
/// nothing they write before `run`. A `DELETE` meant to precede one of them simply runs first.
pub(crate) struct Inserts<'c, C> {
    conn: &'c C,
    gathered: Option<Sql>,
    parts: usize,
}

impl<'c, C: sea_orm::ConnectionTrait> Inserts<'c, C> {
    /// Inserts into `conn`.
    pub(crate) fn new(conn: &'c C) -> Self {
        Self {
            conn,
            gathered: None,
            parts: 0,
        }
    }

    /// Inserts `rows` as [`insert_rows`] does: now on SQLite, at [`Inserts::run`] on PostgreSQL.
    pub(crate) async fn add(
        &mut self,
        table: &str,
        columns: &[Column],
        rows: Vec<Vec<Value>>,
        tail: &str,
    ) -> Result<(), sea_orm::DbErr> {
        if rows.is_empty() {
            return Ok(());
        }
        if self.conn.get_database_backend() != DbBackend::Postgres {
            return insert_rows(self.conn, table, columns, rows, tail).await;
        }
        let sql = self
            .gathered
            .get_or_insert_with(|| Sql::new(DbBackend::Postgres, "WITH "));
        if self.parts > 0 {
            sql.push(", ");
        }
        sql.push(&format!("w{} AS (", self.parts));
        push_unnest_insert(sql, table, columns, rows, tail);
        sql.push(")");
        self.parts += 1;
        Ok(())
    }

    /// Runs what was gathered (PostgreSQL; nothing to do on SQLite).
    pub(crate) async fn run(self) -> Result<(), sea_orm::DbErr> {
        if let Some(mut sql) = self.gathered {
            sql.push(" SELECT 1");
            self.conn.execute_raw(sql.build()).await?;
        }
        Ok(())
    }
}

/// Appends `INSERT INTO table (…) SELECT … FROM UNNEST(arrays) AS u(…) tail` to `sql`
/// (PostgreSQL): one parameter per column, whatever the number of rows.
fn push_unnest_insert(
    sql: &mut Sql,
    table: &str,
    columns: &[Column],
    rows: Vec<Vec<Value>>,
    tail: &str,
) {
    use sea_orm::sea_query::ArrayType;
    let names: Vec<&str> = columns.iter().map(|c| c.name).collect();
    let head = format!("INSERT INTO {table} ({}) ", names.join(", "));
    let mut arrays: Vec<Vec<Value>> = vec![Vec::with_capacity(rows.len()); columns.len()];
    for row in rows {
        for ((value, column), array) in row.into_iter().zip(columns).zip(arrays.iter_mut()) {
            array.push(if column.nullable {
                nullable_as_text(value)
            } else {
                value
            });
        }
    }
    let select: Vec<String> = columns
        .iter()
        .enumerate()
        .map(|(i, c)| match (c.nullable, c.pg) {
            (false, _) => format!("c{i}"),
            (true, Pg::Text) => format!("NULLIF(c{i}, '')"),
            (true, Pg::Time) => format!("NULLIF(c{i}, '')::timestamptz"),
            (true, Pg::Bytes) => format!("decode(NULLIF(c{i}, ''), 'hex')"),
            (true, Pg::Int) => format!("NULLIF(c{i}, '')::int8"),
            (true, Pg::Bool) => format!("NULLIF(c{i}, '')::boolean"),
        })
        .collect();
    sql.push(&head);
    sql.push(&format!("SELECT {} FROM UNNEST(", select.join(", ")));
    for (i, (column, values)) in columns.iter().zip(arrays).enumerate() {
        if i > 0 {
            sql.push(", ");
        }
        let (ty, cast) = match (column.nullable, column.pg) {
            (true, _) | (false, Pg::Text) => (ArrayType::String, "text[]"),
            (false, Pg::Time) => (ArrayType::ChronoDateTimeUtc, "timestamptz[]"),
            (false, Pg::Bytes) => (ArrayType::Bytes, "bytea[]"),
            (false, Pg::Int) => (ArrayType::BigInt, "int8[]"),
            (false, Pg::Bool) => (ArrayType::Bool, "boolean[]"),
        };
        sql.bind(array(ty, values)).push("::").push(cast);
    }
    let aliases: Vec<String> = (0..columns.len()).map(|i| format!("c{i}")).collect();
    sql.push(&format!(") AS u({}) ", aliases.join(", ")))
        .push(tail);
}

/// A value of a nullable column as the text PostgreSQL gets it in a `text[]` (NULL as empty).
fn nullable_as_text(value: Value) -> Value {
    text(match value {
        Value::String(s) => s.unwrap_or_default(),
        Value::ChronoDateTimeUtc(t) => t.map(|t| t.to_rfc3339()).unwrap_or_default(),
        Value::BigInt(i) => i.map(|i| i.to_string()).unwrap_or_default(),
        Value::Bytes(b) => b.map(hex).unwrap_or_default(),
        Value::Bool(b) => b.map(|b| b.to_string()).unwrap_or_default(),
        _ => String::new(),
    })
}

fn hex(bytes: Vec<u8>) -> String {
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}
