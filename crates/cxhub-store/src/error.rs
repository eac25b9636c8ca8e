//! The one place where database errors become domain errors.

use cxhub_domain::Error;
use sea_orm::{DbErr, RuntimeErr, SqlErr};

/// Maps a sea-orm error to the domain error a caller can act on.
///
/// A unique violation on a key becomes `AlreadyExists` (`TOUCHPOINT_KEY_TAKEN`,
/// `JOURNEY_KEY_TAKEN`); a foreign key violation `FailedPrecondition`; a lost connection, a
/// pool timeout or a busy database `Unavailable`; a PostgreSQL serialization failure or
/// deadlock `Aborted`; anything else `Internal`, logged here with its detail and returned
/// without it.
pub(crate) fn db_err(err: DbErr) -> Error {
    if let DbErr::RecordNotFound(what) = &err {
        return Error::not_found("record", what.clone());
    }
    match err.sql_err() {
        Some(SqlErr::UniqueConstraintViolation(message)) => return unique_violation(&message),
        Some(SqlErr::ForeignKeyConstraintViolation(message)) => {
            tracing::debug!(%message, "foreign key violation");
            return Error::precondition(
                "REFERENCE_VIOLATION",
                "the change would break a reference between resources (one was added or removed concurrently): read again and retry",
            );
        }
        _ => {}
    }
    if is_unavailable(&err) {
        tracing::warn!(error = %err, "database unavailable");
        return Error::Unavailable("the database is unavailable: retry later".into());
    }
    if let Some(code) = database_code(&err)
        && (code == "40001" || code == "40P01")
    {
        return Error::aborted(
            "CONCURRENT_UPDATE",
            "the change conflicted with a concurrent one: retry",
        );
    }
    tracing::error!(error = %err, "database error");
    Error::internal("database error")
}

fn unique_violation(message: &str) -> Error {
    // SQLite names the column (`touchpoints.key`), PostgreSQL the index (`touchpoints_key_uq`).
    if message.contains("touchpoints.key") || message.contains("touchpoints_key_uq") {
        Error::AlreadyExists {
            reason: "TOUCHPOINT_KEY_TAKEN",
            field: "touchpoint.key".into(),
            message: "a touchpoint with this key exists already".into(),
        }
    } else if message.contains("journeys.key") || message.contains("journeys_key_uq") {
        Error::AlreadyExists {
            reason: "JOURNEY_KEY_TAKEN",
            field: "journey.key".into(),
            message: "a journey with this key exists already".into(),
        }
    } else {
        tracing::error!(%message, "unexpected unique violation");
        Error::internal("database error")
    }
}

fn sqlx_error(err: &DbErr) -> Option<&sea_orm::sqlx::Error> {
    match err {
        DbErr::Conn(RuntimeErr::SqlxError(e))
        | DbErr::Exec(RuntimeErr::SqlxError(e))
        | DbErr::Query(RuntimeErr::SqlxError(e)) => Some(e.as_ref()),
        _ => None,
    }
}

fn database_code(err: &DbErr) -> Option<String> {
    match sqlx_error(err)? {
        sea_orm::sqlx::Error::Database(db) => db.code().map(|c| c.into_owned()),
        _ => None,
    }
}

fn is_unavailable(err: &DbErr) -> bool {
    use sea_orm::sqlx::Error as Sqlx;
    if matches!(err, DbErr::ConnectionAcquire(_) | DbErr::Conn(_)) {
        return true;
    }
    match sqlx_error(err) {
        Some(
            Sqlx::Io(_)
            | Sqlx::Tls(_)
            | Sqlx::Protocol(_)
            | Sqlx::PoolTimedOut
            | Sqlx::PoolClosed
            | Sqlx::WorkerCrashed,
        ) => true,
        Some(Sqlx::Database(db)) => {
            let code = db.code().unwrap_or_default();
            if db
                .try_downcast_ref::<sea_orm::sqlx::sqlite::SqliteError>()
                .is_some()
            {
                // SQLITE_BUSY (5) and SQLITE_LOCKED (6), with their extended codes.
                code.parse::<u32>().is_ok_and(|n| matches!(n & 0xff, 5 | 6))
            } else {
                // PostgreSQL: connection exceptions (class 08), shutdowns, too many connections.
                code.starts_with("08") || matches!(&*code, "57P01" | "57P02" | "57P03" | "53300")
            }
        }
        _ => false,
    }
}

/// Extension to map a sea-orm result with [`db_err`].
pub(crate) trait DbResultExt<T> {
    /// The value, or the domain error of the database error.
    fn db(self) -> Result<T, Error>;
}

impl<T> DbResultExt<T> for Result<T, DbErr> {
    fn db(self) -> Result<T, Error> {
        self.map_err(db_err)
    }
}

/// An internal error (a bug or corrupt data), logged with its detail.
pub(crate) fn corrupt(what: impl std::fmt::Display) -> Error {
    tracing::error!(detail = %what, "unexpected data in the database");
    Error::internal("unexpected data in the database")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_violations_name_the_resource() {
        assert!(matches!(
            unique_violation("UNIQUE constraint failed: touchpoints.key"),
            Error::AlreadyExists {
                reason: "TOUCHPOINT_KEY_TAKEN",
                ..
            }
        ));
        assert!(matches!(
            unique_violation("duplicate key value violates unique constraint \"journeys_key_uq\""),
            Error::AlreadyExists {
                reason: "JOURNEY_KEY_TAKEN",
                ..
            }
        ));
        assert!(matches!(
            unique_violation("something else"),
            Error::Internal(_)
        ));
    }
}
