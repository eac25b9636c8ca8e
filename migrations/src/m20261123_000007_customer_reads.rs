//! What the reads of the customer profile need beyond the tables they read: the name keys
//! searched by prefix, the lifecycle stage index, and the current state of support cases and
//! subscription events (which ingestion fills from the typed records, so that reads never
//! parse payloads).
//!
//! Support cases and subscription events carry no customer id: they are joined to
//! `feed_records` on their key, whose `customer_id` merges and splits keep current.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::{
    big_integer_null, text, text_null, timestamp_with_time_zone, timestamp_with_time_zone_null,
};

use crate::m20261123_000001_touchpoints::byte_ordered;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// Table and columns of `customer_name_keys`.
#[derive(DeriveIden)]
enum CustomerNameKeys {
    Table,
    Key,
    CustomerId,
}

/// The columns of `customers` indexed here.
#[derive(DeriveIden)]
enum Customers {
    Table,
    LifecycleStage,
    Id,
}

/// Table and columns of `support_cases`.
#[derive(DeriveIden)]
enum SupportCases {
    Table,
    Source,
    RecordId,
    Status,
    Priority,
    Category,
    Channel,
    OpenedAt,
    ClosedAt,
}

/// Table and columns of `subscription_events`.
#[derive(DeriveIden)]
enum SubscriptionEvents {
    Table,
    Source,
    RecordId,
    SubscriptionId,
    Kind,
    OccurredAt,
    Plan,
    AmountMinor,
    CurrencyCode,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // One row per (folded name key, customer): a name prefix is a range scan of the
        // primary key; the second index finds a customer's keys (rewritten with its profile,
        // and checked so a customer matching under two keys is listed once).
        manager
            .create_table(
                Table::create()
                    .table(CustomerNameKeys::Table)
                    .col(byte_ordered(manager, text(CustomerNameKeys::Key)))
                    .col(text(CustomerNameKeys::CustomerId))
                    .primary_key(
                        Index::create()
                            .col(CustomerNameKeys::Key)
                            .col(CustomerNameKeys::CustomerId),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("customer_name_keys_customer_idx")
                    .table(CustomerNameKeys::Table)
                    .col(CustomerNameKeys::CustomerId)
                    .col(CustomerNameKeys::Key)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("customers_lifecycle_idx")
                    .table(Customers::Table)
                    .col(Customers::LifecycleStage)
                    .col(Customers::Id)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(SupportCases::Table)
                    .col(byte_ordered(manager, text(SupportCases::Source)))
                    .col(byte_ordered(manager, text(SupportCases::RecordId)))
                    .col(text(SupportCases::Status))
                    .col(text(SupportCases::Priority))
                    .col(text(SupportCases::Category))
                    .col(text(SupportCases::Channel))
                    .col(timestamp_with_time_zone(SupportCases::OpenedAt))
                    .col(timestamp_with_time_zone_null(SupportCases::ClosedAt))
                    .primary_key(
                        Index::create()
                            .col(SupportCases::Source)
                            .col(SupportCases::RecordId),
                    )
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(SubscriptionEvents::Table)
                    .col(byte_ordered(manager, text(SubscriptionEvents::Source)))
                    .col(byte_ordered(manager, text(SubscriptionEvents::RecordId)))
                    .col(text(SubscriptionEvents::SubscriptionId))
                    .col(text(SubscriptionEvents::Kind))
                    .col(timestamp_with_time_zone(SubscriptionEvents::OccurredAt))
                    .col(text(SubscriptionEvents::Plan))
                    .col(big_integer_null(SubscriptionEvents::AmountMinor))
                    .col(text_null(SubscriptionEvents::CurrencyCode))
                    .primary_key(
                        Index::create()
                            .col(SubscriptionEvents::Source)
                            .col(SubscriptionEvents::RecordId),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(
                Index::drop()
                    .name("customers_lifecycle_idx")
                    .table(Customers::Table)
                    .to_owned(),
            )
            .await?;
        for table in [
            SubscriptionEvents::Table.into_iden(),
            SupportCases::Table.into_iden(),
            CustomerNameKeys::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}
