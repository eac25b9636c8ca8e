//! What executors of loyalty actions need: the ordered log of action events they stream
//! (`loyalty_action_events`, with its head and pruning horizon in `loyalty_action_event_log`),
//! and the outcomes they report (`loyalty_action_outcomes`); and the points programme in force
//! (`loyalty_programme`, one row, as JSON).
//!
//! `seq` of an event is taken from the one row of `loyalty_action_event_log` (`head = head + 1`)
//! in the transaction that writes the event: the row stays locked until that transaction ends,
//! so on PostgreSQL numbers are handed out in commit order, without gaps, across replicas (and
//! SQLite has one writer). A reader that has seen `head = n` has seen every event up to `n`.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::{big_integer, integer, text, text_null, timestamp_with_time_zone};

#[derive(DeriveMigrationName)]
pub struct Migration;

/// Table and columns of `loyalty_action_events`.
#[derive(DeriveIden)]
enum LoyaltyActionEvents {
    Table,
    Seq,
    ActionId,
    AssigneeTeam,
    Kind,
    Channel,
    FromState,
    ToState,
    Principal,
    OccurredAt,
}

/// Table and columns of `loyalty_action_event_log`.
#[derive(DeriveIden)]
enum LoyaltyActionEventLog {
    Table,
    Id,
    Head,
    PrunedThrough,
}

/// Table and columns of `loyalty_action_outcomes`.
#[derive(DeriveIden)]
enum LoyaltyActionOutcomes {
    Table,
    ActionId,
    Seq,
    Outcome,
    Reason,
    ExternalRef,
    Note,
    Principal,
    ReportedAt,
}

/// Table and columns of `loyalty_programme`.
#[derive(DeriveIden)]
enum LoyaltyProgramme {
    Table,
    Id,
    Version,
    ProgrammeJson,
    UpdatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(LoyaltyActionEvents::Table)
                    .col(big_integer(LoyaltyActionEvents::Seq).primary_key())
                    .col(text(LoyaltyActionEvents::ActionId))
                    .col(text(LoyaltyActionEvents::AssigneeTeam))
                    .col(text(LoyaltyActionEvents::Kind))
                    .col(text(LoyaltyActionEvents::Channel))
                    .col(text_null(LoyaltyActionEvents::FromState))
                    .col(text(LoyaltyActionEvents::ToState))
                    .col(text(LoyaltyActionEvents::Principal))
                    .col(timestamp_with_time_zone(LoyaltyActionEvents::OccurredAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("loyalty_action_events_team_idx")
                    .table(LoyaltyActionEvents::Table)
                    .col(LoyaltyActionEvents::AssigneeTeam)
                    .col(LoyaltyActionEvents::Seq)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("loyalty_action_events_occurred_at_idx")
                    .table(LoyaltyActionEvents::Table)
                    .col(LoyaltyActionEvents::OccurredAt)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(LoyaltyActionEventLog::Table)
                    .col(integer(LoyaltyActionEventLog::Id).primary_key())
                    .col(big_integer(LoyaltyActionEventLog::Head))
                    .col(big_integer(LoyaltyActionEventLog::PrunedThrough))
                    .to_owned(),
            )
            .await?;
        let insert = Query::insert()
            .into_table(LoyaltyActionEventLog::Table)
            .columns([
                LoyaltyActionEventLog::Id,
                LoyaltyActionEventLog::Head,
                LoyaltyActionEventLog::PrunedThrough,
            ])
            .values_panic([1.into(), 0i64.into(), 0i64.into()])
            .to_owned();
        manager.exec_stmt(insert).await?;
        manager
            .create_table(
                Table::create()
                    .table(LoyaltyActionOutcomes::Table)
                    .col(text(LoyaltyActionOutcomes::ActionId))
                    .col(integer(LoyaltyActionOutcomes::Seq))
                    .col(text(LoyaltyActionOutcomes::Outcome))
                    .col(text_null(LoyaltyActionOutcomes::Reason))
                    .col(text_null(LoyaltyActionOutcomes::ExternalRef))
                    .col(text_null(LoyaltyActionOutcomes::Note))
                    .col(text(LoyaltyActionOutcomes::Principal))
                    .col(timestamp_with_time_zone(LoyaltyActionOutcomes::ReportedAt))
                    .primary_key(
                        Index::create()
                            .col(LoyaltyActionOutcomes::ActionId)
                            .col(LoyaltyActionOutcomes::Seq),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("loyalty_action_outcomes_action_fk")
                            .from(
                                LoyaltyActionOutcomes::Table,
                                LoyaltyActionOutcomes::ActionId,
                            )
                            .to(Alias::new("loyalty_actions"), Alias::new("id"))
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(LoyaltyProgramme::Table)
                    .col(integer(LoyaltyProgramme::Id).primary_key())
                    .col(big_integer(LoyaltyProgramme::Version))
                    .col(text(LoyaltyProgramme::ProgrammeJson))
                    .col(timestamp_with_time_zone(LoyaltyProgramme::UpdatedAt))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            LoyaltyProgramme::Table.into_iden(),
            LoyaltyActionOutcomes::Table.into_iden(),
            LoyaltyActionEventLog::Table.into_iden(),
            LoyaltyActionEvents::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}
