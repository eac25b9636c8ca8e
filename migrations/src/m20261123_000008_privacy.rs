//! Privacy: the history of consent answers given to the hub, the audit trail of reads and
//! changes of personal data, erasures, the identifiers they suppressed (as keyed hashes only)
//! and the key of those hashes.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::{text, text_null, timestamp_with_time_zone};

#[derive(DeriveMigrationName)]
pub struct Migration;

/// Table and columns of `consent_history`.
#[derive(DeriveIden)]
enum ConsentHistory {
    Table,
    Id,
    CustomerId,
    Purpose,
    Channel,
    PreviousStatus,
    Status,
    GivenAt,
    Effective,
    Source,
    RecordedBy,
    RecordedAt,
}

/// Table and columns of `audit_events`.
#[derive(DeriveIden)]
enum AuditEvents {
    Table,
    Id,
    Principal,
    Rpc,
    CustomerId,
    OccurredAt,
}

/// Table and columns of `customer_erasures`.
#[derive(DeriveIden)]
enum CustomerErasures {
    Table,
    CustomerId,
    ErasureId,
    ErasedAt,
    ErasedBy,
    ResultJson,
}

/// Table and columns of `suppressed_identifiers`.
#[derive(DeriveIden)]
enum SuppressedIdentifiers {
    Table,
    Hash,
    CustomerId,
    CreatedAt,
}

/// Table and columns of `privacy_keys`.
#[derive(DeriveIden)]
enum PrivacyKeys {
    Table,
    Name,
    Secret,
    CreatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(ConsentHistory::Table)
                    .col(text(ConsentHistory::CustomerId))
                    .col(text(ConsentHistory::Id))
                    .col(text(ConsentHistory::Purpose))
                    .col(text(ConsentHistory::Channel))
                    .col(text_null(ConsentHistory::PreviousStatus))
                    .col(text(ConsentHistory::Status))
                    .col(timestamp_with_time_zone(ConsentHistory::GivenAt))
                    .col(text(ConsentHistory::Effective))
                    .col(text(ConsentHistory::Source))
                    .col(text(ConsentHistory::RecordedBy))
                    .col(timestamp_with_time_zone(ConsentHistory::RecordedAt))
                    .primary_key(
                        Index::create()
                            .col(ConsentHistory::CustomerId)
                            .col(ConsentHistory::Id),
                    )
                    .to_owned(),
            )
            .await?;

        // One row per (event, customer); ids are UUID v7, so they order by time.
        manager
            .create_table(
                Table::create()
                    .table(AuditEvents::Table)
                    .col(text(AuditEvents::Id).primary_key())
                    .col(text(AuditEvents::Principal))
                    .col(text(AuditEvents::Rpc))
                    .col(text(AuditEvents::CustomerId))
                    .col(timestamp_with_time_zone(AuditEvents::OccurredAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("audit_events_customer_idx")
                    .table(AuditEvents::Table)
                    .col(AuditEvents::CustomerId)
                    .col(AuditEvents::Id)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("audit_events_principal_idx")
                    .table(AuditEvents::Table)
                    .col(AuditEvents::Principal)
                    .col(AuditEvents::Id)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(CustomerErasures::Table)
                    .col(text(CustomerErasures::CustomerId).primary_key())
                    .col(text(CustomerErasures::ErasureId))
                    .col(timestamp_with_time_zone(CustomerErasures::ErasedAt))
                    .col(text(CustomerErasures::ErasedBy))
                    .col(text(CustomerErasures::ResultJson))
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(SuppressedIdentifiers::Table)
                    .col(text(SuppressedIdentifiers::Hash).primary_key())
                    .col(text(SuppressedIdentifiers::CustomerId))
                    .col(timestamp_with_time_zone(SuppressedIdentifiers::CreatedAt))
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(PrivacyKeys::Table)
                    .col(text(PrivacyKeys::Name).primary_key())
                    .col(text(PrivacyKeys::Secret))
                    .col(timestamp_with_time_zone(PrivacyKeys::CreatedAt))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            PrivacyKeys::Table.into_iden(),
            SuppressedIdentifiers::Table.into_iden(),
            CustomerErasures::Table.into_iden(),
            AuditEvents::Table.into_iden(),
            ConsentHistory::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}
