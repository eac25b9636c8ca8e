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
