//! The customer change log (`customer_changes`) and its pruning horizon
//! (`change_log_horizon`).
//!
//! `seq` is the one surrogate key of the schema: it is the log's order. Every writer of the
//! log holds the identity lock on PostgreSQL (and SQLite has one writer), so sequence numbers
//! are taken in commit order and a reader that has seen `seq = n` has seen everything before.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::{
    big_integer, big_pk_auto, integer, text, text_null, timestamp_with_time_zone,
};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum CustomerChanges {
    Table,
    Seq,
    CustomerId,
    Kind,
    FieldsJson,
    RelatedJson,
    MergeId,
    OccurredAt,
}

#[derive(DeriveIden)]
enum ChangeLogHorizon {
    Table,
    Id,
    PrunedThrough,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(CustomerChanges::Table)
                    .col(big_pk_auto(CustomerChanges::Seq))
                    .col(text(CustomerChanges::CustomerId))
                    .col(text(CustomerChanges::Kind))
                    .col(text(CustomerChanges::FieldsJson))
                    .col(text(CustomerChanges::RelatedJson))
                    .col(text_null(CustomerChanges::MergeId))
                    .col(timestamp_with_time_zone(CustomerChanges::OccurredAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("customer_changes_occurred_at_idx")
                    .table(CustomerChanges::Table)
                    .col(CustomerChanges::OccurredAt)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(ChangeLogHorizon::Table)
                    .col(integer(ChangeLogHorizon::Id).primary_key())
                    .col(big_integer(ChangeLogHorizon::PrunedThrough))
                    .to_owned(),
            )
            .await?;
        let insert = Query::insert()
            .into_table(ChangeLogHorizon::Table)
            .columns([ChangeLogHorizon::Id, ChangeLogHorizon::PrunedThrough])
            .values_panic([1.into(), 0i64.into()])
            .to_owned();
        manager.exec_stmt(insert).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(ChangeLogHorizon::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(CustomerChanges::Table).to_owned())
            .await
    }
}
