//! Loyalty actions and the points ledger: campaigns with their budgets (a CHECK keeps what is
//! spent plus what is reserved within the budget), actions with their current state and the
//! budget they hold reserved, every transition of an action, and the ledger in double entry
//! (one row per entry, idempotent by request id, and one row per leg).

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::{
    big_integer, big_integer_null, integer, text, text_null, timestamp_with_time_zone,
    timestamp_with_time_zone_null,
};

use crate::m20261123_000001_touchpoints::byte_ordered;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// Table and columns of `loyalty_campaigns`.
#[derive(DeriveIden)]
enum LoyaltyCampaigns {
    Table,
    Id,
    Key,
    Name,
    Currency,
    BudgetMinor,
    SpentMinor,
    ReservedMinor,
    CreatedAt,
}

/// Table and columns of `loyalty_actions`.
#[derive(DeriveIden)]
enum LoyaltyActions {
    Table,
    Id,
    CustomerId,
    Kind,
    RuleId,
    RuleVersion,
    Reason,
    Channel,
    ValueMinor,
    ValueCurrency,
    CampaignId,
    ReservedMinor,
    DueAt,
    AssigneeTeam,
    State,
    Revision,
    CreatedBy,
    CreatedAt,
    UpdatedAt,
}

/// Table and columns of `loyalty_action_transitions`.
#[derive(DeriveIden)]
enum LoyaltyActionTransitions {
    Table,
    ActionId,
    Seq,
    FromState,
    ToState,
    Principal,
    At,
}

/// Table and columns of `loyalty_point_entries`.
#[derive(DeriveIden)]
enum LoyaltyPointEntries {
    Table,
    Id,
    RequestId,
    Fingerprint,
    CustomerId,
    Kind,
    Points,
    SourceRef,
    ExpiresAt,
    Shortfall,
    BalanceAfter,
    PostedAt,
}

/// Table and columns of `loyalty_point_legs`.
#[derive(DeriveIden)]
enum LoyaltyPointLegs {
    Table,
    EntryId,
    Account,
    Points,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(LoyaltyCampaigns::Table)
                    .col(text(LoyaltyCampaigns::Id).primary_key())
                    .col(byte_ordered(manager, text(LoyaltyCampaigns::Key)))
                    .col(text(LoyaltyCampaigns::Name))
                    .col(text(LoyaltyCampaigns::Currency))
                    .col(big_integer(LoyaltyCampaigns::BudgetMinor))
                    .col(big_integer(LoyaltyCampaigns::SpentMinor))
                    .col(big_integer(LoyaltyCampaigns::ReservedMinor))
                    .col(timestamp_with_time_zone(LoyaltyCampaigns::CreatedAt))
                    .check(Expr::cust(
                        "spent_minor >= 0 AND reserved_minor >= 0 \
                         AND spent_minor + reserved_minor <= budget_minor",
                    ))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("loyalty_campaigns_key_uq")
                    .table(LoyaltyCampaigns::Table)
                    .col(LoyaltyCampaigns::Key)
                    .unique()
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(LoyaltyActions::Table)
                    .col(text(LoyaltyActions::Id).primary_key())
                    .col(text(LoyaltyActions::CustomerId))
                    .col(text(LoyaltyActions::Kind))
                    .col(text_null(LoyaltyActions::RuleId))
                    .col(big_integer_null(LoyaltyActions::RuleVersion))
                    .col(text(LoyaltyActions::Reason))
                    .col(text(LoyaltyActions::Channel))
                    .col(big_integer_null(LoyaltyActions::ValueMinor))
                    .col(text_null(LoyaltyActions::ValueCurrency))
                    .col(text_null(LoyaltyActions::CampaignId))
                    .col(big_integer(LoyaltyActions::ReservedMinor))
                    .col(timestamp_with_time_zone(LoyaltyActions::DueAt))
                    .col(text(LoyaltyActions::AssigneeTeam))
                    .col(text(LoyaltyActions::State))
                    .col(big_integer(LoyaltyActions::Revision))
                    .col(text(LoyaltyActions::CreatedBy))
                    .col(timestamp_with_time_zone(LoyaltyActions::CreatedAt))
                    .col(timestamp_with_time_zone(LoyaltyActions::UpdatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .name("loyalty_actions_campaign_fk")
                            .from(LoyaltyActions::Table, LoyaltyActions::CampaignId)
                            .to(LoyaltyCampaigns::Table, LoyaltyCampaigns::Id),
                    )
                    .to_owned(),
            )
            .await?;
        // Frequency caps count a customer's actions of a kind since a time.
        manager
            .create_index(
                Index::create()
                    .name("loyalty_actions_customer_kind_idx")
                    .table(LoyaltyActions::Table)
                    .col(LoyaltyActions::CustomerId)
                    .col(LoyaltyActions::Kind)
                    .col(LoyaltyActions::CreatedAt)
                    .to_owned(),
            )
            .await?;
        // Work lists: a state's actions by SLA.
        manager
            .create_index(
                Index::create()
                    .name("loyalty_actions_state_due_idx")
                    .table(LoyaltyActions::Table)
                    .col(LoyaltyActions::State)
                    .col(LoyaltyActions::DueAt)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(LoyaltyActionTransitions::Table)
                    .col(text(LoyaltyActionTransitions::ActionId))
                    .col(integer(LoyaltyActionTransitions::Seq))
                    .col(text(LoyaltyActionTransitions::FromState))
                    .col(text(LoyaltyActionTransitions::ToState))
                    .col(text(LoyaltyActionTransitions::Principal))
                    .col(timestamp_with_time_zone(LoyaltyActionTransitions::At))
                    .primary_key(
                        Index::create()
                            .col(LoyaltyActionTransitions::ActionId)
                            .col(LoyaltyActionTransitions::Seq),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("loyalty_action_transitions_action_fk")
                            .from(
                                LoyaltyActionTransitions::Table,
                                LoyaltyActionTransitions::ActionId,
                            )
                            .to(LoyaltyActions::Table, LoyaltyActions::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(LoyaltyPointEntries::Table)
                    .col(text(LoyaltyPointEntries::Id).primary_key())
                    .col(text(LoyaltyPointEntries::RequestId))
                    .col(text(LoyaltyPointEntries::Fingerprint))
                    .col(text(LoyaltyPointEntries::CustomerId))
                    .col(text(LoyaltyPointEntries::Kind))
                    .col(big_integer(LoyaltyPointEntries::Points))
                    .col(text_null(LoyaltyPointEntries::SourceRef))
                    .col(timestamp_with_time_zone_null(
                        LoyaltyPointEntries::ExpiresAt,
                    ))
                    .col(big_integer(LoyaltyPointEntries::Shortfall))
                    .col(big_integer(LoyaltyPointEntries::BalanceAfter))
                    .col(timestamp_with_time_zone(LoyaltyPointEntries::PostedAt))
                    .check(Expr::cust("balance_after >= 0"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("loyalty_point_entries_request_uq")
                    .table(LoyaltyPointEntries::Table)
                    .col(LoyaltyPointEntries::RequestId)
                    .unique()
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("loyalty_point_entries_customer_idx")
                    .table(LoyaltyPointEntries::Table)
                    .col(LoyaltyPointEntries::CustomerId)
                    .col(LoyaltyPointEntries::Id)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(LoyaltyPointLegs::Table)
                    .col(text(LoyaltyPointLegs::EntryId))
                    .col(text(LoyaltyPointLegs::Account))
                    .col(big_integer(LoyaltyPointLegs::Points))
                    .primary_key(
                        Index::create()
                            .col(LoyaltyPointLegs::EntryId)
                            .col(LoyaltyPointLegs::Account),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("loyalty_point_legs_entry_fk")
                            .from(LoyaltyPointLegs::Table, LoyaltyPointLegs::EntryId)
                            .to(LoyaltyPointEntries::Table, LoyaltyPointEntries::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            LoyaltyPointLegs::Table.into_iden(),
            LoyaltyPointEntries::Table.into_iden(),
            LoyaltyActionTransitions::Table.into_iden(),
            LoyaltyActions::Table.into_iden(),
            LoyaltyCampaigns::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}
