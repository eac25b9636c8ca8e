//! Feed records and what they become: the ledger of every record version stored (the unit of
//! exactly-once ingestion), the interactions at touchpoints, and the transactions ledger.
//! Each is keyed by the record's (source, record type, record id) and carries the customer it
//! belongs to now (moved by merges and splits).

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::{
    big_integer, blob, text, text_null, timestamp_with_time_zone, timestamp_with_time_zone_null,
};

use crate::m20261123_000001_touchpoints::byte_ordered;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum FeedRecords {
    Table,
    Source,
    RecordType,
    RecordId,
    UpdatedAt,
    ContentHash,
    CustomerId,
    SourceCustomerId,
    Payload,
    ContactJson,
    IngestedAt,
}

#[derive(DeriveIden)]
enum Interactions {
    Table,
    Source,
    RecordType,
    RecordId,
    CustomerId,
    TouchpointKey,
    Channel,
    OccurredAt,
    Outcome,
    ContentHash,
}

#[derive(DeriveIden)]
enum Transactions {
    Table,
    Source,
    RecordType,
    RecordId,
    CustomerId,
    Kind,
    AmountMinor,
    CurrencyCode,
    OccurredAt,
    Status,
    DueAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(FeedRecords::Table)
                    .col(byte_ordered(manager, text(FeedRecords::Source)))
                    .col(byte_ordered(manager, text(FeedRecords::RecordType)))
                    .col(byte_ordered(manager, text(FeedRecords::RecordId)))
                    .col(timestamp_with_time_zone(FeedRecords::UpdatedAt))
                    .col(blob(FeedRecords::ContentHash))
                    .col(text(FeedRecords::CustomerId))
                    .col(text(FeedRecords::SourceCustomerId))
                    .col(blob(FeedRecords::Payload))
                    .col(text_null(FeedRecords::ContactJson))
                    .col(timestamp_with_time_zone(FeedRecords::IngestedAt))
                    .primary_key(
                        Index::create()
                            .col(FeedRecords::Source)
                            .col(FeedRecords::RecordType)
                            .col(FeedRecords::RecordId),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("feed_records_customer_idx")
                    .table(FeedRecords::Table)
                    .col(FeedRecords::CustomerId)
                    .col(FeedRecords::RecordType)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Interactions::Table)
                    .col(byte_ordered(manager, text(Interactions::Source)))
                    .col(byte_ordered(manager, text(Interactions::RecordType)))
                    .col(byte_ordered(manager, text(Interactions::RecordId)))
                    .col(text(Interactions::CustomerId))
                    .col(text(Interactions::TouchpointKey))
                    .col(text(Interactions::Channel))
                    .col(timestamp_with_time_zone(Interactions::OccurredAt))
                    .col(text(Interactions::Outcome))
                    .col(blob(Interactions::ContentHash))
                    .primary_key(
                        Index::create()
                            .col(Interactions::Source)
                            .col(Interactions::RecordType)
                            .col(Interactions::RecordId),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("interactions_customer_time_idx")
                    .table(Interactions::Table)
                    .col(Interactions::CustomerId)
                    .col(Interactions::OccurredAt)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Transactions::Table)
                    .col(byte_ordered(manager, text(Transactions::Source)))
                    .col(byte_ordered(manager, text(Transactions::RecordType)))
                    .col(byte_ordered(manager, text(Transactions::RecordId)))
                    .col(text(Transactions::CustomerId))
                    .col(text(Transactions::Kind))
                    .col(big_integer(Transactions::AmountMinor))
                    .col(text(Transactions::CurrencyCode))
                    .col(timestamp_with_time_zone(Transactions::OccurredAt))
                    .col(text(Transactions::Status))
                    .col(timestamp_with_time_zone_null(Transactions::DueAt))
                    .primary_key(
                        Index::create()
                            .col(Transactions::Source)
                            .col(Transactions::RecordType)
                            .col(Transactions::RecordId),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("transactions_customer_time_idx")
                    .table(Transactions::Table)
                    .col(Transactions::CustomerId)
                    .col(Transactions::OccurredAt)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            Transactions::Table.into_iden(),
            Interactions::Table.into_iden(),
            FeedRecords::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}
