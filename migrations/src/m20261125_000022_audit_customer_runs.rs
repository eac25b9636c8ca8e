//! Audit events by customer, indexed in bulk (SQLite only).
//!
//! `audit_events_customer_idx` (`customer_id`, `id`) put every audit row on a different leaf
//! page of a B-tree keyed by customer, and every commit writes each page it dirtied into the
//! WAL as a whole frame, which the checkpointer then copies into the file: most of what a read
//! of personal data cost (see "What auditing costs on SQLite" in `docs/data-model.md`). This
//! migration replaces it on SQLite with runs: `audit_customer_runs` holds (`run`, `customer_id`,
//! `id`) for the events appended before the rowid `audit_runs.through_rowid` of the newest run;
//! the audit writer adds a run, sorted by customer, each time a few thousand events have
//! accumulated past it (`cxhub_store::privacy`), so a run is written as a few sequential pages.
//! The events of one customer are those of its entries in every run plus the events after the
//! newest run, found by scanning them.
//!
//! The events already held become run 1. PostgreSQL keeps the index: a random index insert
//! there costs a tuple, not a page per commit.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() != sea_orm::DbBackend::Sqlite {
            return Ok(());
        }
        let db = manager.get_connection();
        db.execute_unprepared(
            "CREATE TABLE audit_customer_runs (\
             run INTEGER NOT NULL, customer_id TEXT NOT NULL, id TEXT NOT NULL, \
             PRIMARY KEY (run, customer_id, id)) WITHOUT ROWID",
        )
        .await?;
        db.execute_unprepared(
            "CREATE TABLE audit_runs (run INTEGER PRIMARY KEY, through_rowid INTEGER NOT NULL)",
        )
        .await?;
        db.execute_unprepared(
            "INSERT INTO audit_customer_runs (run, customer_id, id) \
             SELECT 1, customer_id, id FROM audit_events ORDER BY customer_id, id",
        )
        .await?;
        db.execute_unprepared(
            "INSERT INTO audit_runs (run, through_rowid) \
             SELECT 1, MAX(rowid) FROM audit_events HAVING COUNT(*) > 0",
        )
        .await?;
        db.execute_unprepared("DROP INDEX IF EXISTS audit_events_customer_idx")
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() != sea_orm::DbBackend::Sqlite {
            return Ok(());
        }
        let db = manager.get_connection();
        db.execute_unprepared(
            "CREATE INDEX IF NOT EXISTS audit_events_customer_idx ON audit_events (customer_id, id)",
        )
        .await?;
        db.execute_unprepared("DROP TABLE IF EXISTS audit_customer_runs")
            .await?;
        db.execute_unprepared("DROP TABLE IF EXISTS audit_runs")
            .await?;
        Ok(())
    }
}
