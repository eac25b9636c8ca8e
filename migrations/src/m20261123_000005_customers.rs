//! Customers and identity resolution: one row per hub customer (a merged one keeps its row as a
//! redirect, `merged_into`), the identifiers each customer holds, the merges made and undone,
//! and the identifiers a split showed not to identify one person.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::{
    big_integer, text, text_null, timestamp_with_time_zone, timestamp_with_time_zone_null,
};

use crate::m20261123_000001_touchpoints::byte_ordered;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// Table and columns of `customers`.
#[derive(DeriveIden)]
enum Customers {
    Table,
    Id,
    MergedInto,
    GivenName,
    FamilyName,
    AddressesJson,
    PreferredLanguage,
    ConsentsJson,
    AccountId,
    LifecycleStage,
    ProvenanceJson,
    Revision,
    CreatedAt,
    UpdatedAt,
}

/// Table and columns of `customer_identities`.
#[derive(DeriveIden)]
enum CustomerIdentities {
    Table,
    Kind,
    Value,
    CustomerId,
    CreatedAt,
}

/// Table and columns of `identity_disputes`.
#[derive(DeriveIden)]
enum IdentityDisputes {
    Table,
    Kind,
    Value,
    MergeId,
    CreatedAt,
}

/// Table and columns of `customer_merges`.
#[derive(DeriveIden)]
enum CustomerMerges {
    Table,
    Id,
    SurvivorId,
    Rule,
    RecordJson,
    MergedAt,
    MergedBy,
    SplitAt,
    SplitBy,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Customers::Table)
                    .col(text(Customers::Id).primary_key())
                    .col(text_null(Customers::MergedInto))
                    .col(text(Customers::GivenName))
                    .col(text(Customers::FamilyName))
                    .col(text(Customers::AddressesJson))
                    .col(text(Customers::PreferredLanguage))
                    .col(text(Customers::ConsentsJson))
                    .col(text(Customers::AccountId))
                    .col(text_null(Customers::LifecycleStage))
                    .col(text(Customers::ProvenanceJson))
                    .col(big_integer(Customers::Revision))
                    .col(timestamp_with_time_zone(Customers::CreatedAt))
                    .col(timestamp_with_time_zone(Customers::UpdatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("customers_merged_into_idx")
                    .table(Customers::Table)
                    .col(Customers::MergedInto)
                    .to_owned(),
            )
            .await?;

        // One row per (identifier, holder). An identifier normally has one holder; several
        // only when it is shared by more customers than identity resolution links (reported as
        // OVERSHARED) or disputed by a split.
        manager
            .create_table(
                Table::create()
                    .table(CustomerIdentities::Table)
                    .col(byte_ordered(manager, text(CustomerIdentities::Kind)))
                    .col(byte_ordered(manager, text(CustomerIdentities::Value)))
                    .col(text(CustomerIdentities::CustomerId))
                    .col(timestamp_with_time_zone(CustomerIdentities::CreatedAt))
                    .primary_key(
                        Index::create()
                            .col(CustomerIdentities::Kind)
                            .col(CustomerIdentities::Value)
                            .col(CustomerIdentities::CustomerId),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("customer_identities_customer_idx")
                    .table(CustomerIdentities::Table)
                    .col(CustomerIdentities::CustomerId)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(IdentityDisputes::Table)
                    .col(text(IdentityDisputes::Kind))
                    .col(text(IdentityDisputes::Value))
                    .col(text(IdentityDisputes::MergeId))
                    .col(timestamp_with_time_zone(IdentityDisputes::CreatedAt))
                    .primary_key(
                        Index::create()
                            .col(IdentityDisputes::Kind)
                            .col(IdentityDisputes::Value),
                    )
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(CustomerMerges::Table)
                    .col(text(CustomerMerges::Id).primary_key())
                    .col(text(CustomerMerges::SurvivorId))
                    .col(text(CustomerMerges::Rule))
                    .col(text(CustomerMerges::RecordJson))
                    .col(timestamp_with_time_zone(CustomerMerges::MergedAt))
                    .col(text(CustomerMerges::MergedBy))
                    .col(timestamp_with_time_zone_null(CustomerMerges::SplitAt))
                    .col(text_null(CustomerMerges::SplitBy))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("customer_merges_survivor_idx")
                    .table(CustomerMerges::Table)
                    .col(CustomerMerges::SurvivorId)
                    .col(CustomerMerges::MergedAt)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            CustomerMerges::Table.into_iden(),
            IdentityDisputes::Table.into_iden(),
            CustomerIdentities::Table.into_iden(),
            Customers::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}
