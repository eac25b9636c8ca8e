//! Journeys (experience maps): the journey, its ordered stages and the ordered touchpoints of
//! each stage.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::{big_integer, integer, text, timestamp_with_time_zone};

use crate::m20261123_000001_touchpoints::{Touchpoints, byte_ordered};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Journeys {
    Table,
    Id,
    Key,
    Name,
    Description,
    State,
    Revision,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum JourneyStages {
    Table,
    JourneyId,
    Position,
    Name,
    Stage,
}

#[derive(DeriveIden)]
enum JourneyStageTouchpoints {
    Table,
    JourneyId,
    Position,
    Ordinal,
    TouchpointId,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Journeys::Table)
                    .col(text(Journeys::Id).primary_key())
                    .col(byte_ordered(manager, text(Journeys::Key)))
                    .col(text(Journeys::Name))
                    .col(text(Journeys::Description))
                    .col(text(Journeys::State))
                    .col(big_integer(Journeys::Revision))
                    .col(timestamp_with_time_zone(Journeys::CreatedAt))
                    .col(timestamp_with_time_zone(Journeys::UpdatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("journeys_key_uq")
                    .table(Journeys::Table)
                    .col(Journeys::Key)
                    .unique()
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("journeys_state_idx")
                    .table(Journeys::Table)
                    .col(Journeys::State)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(JourneyStages::Table)
                    .col(text(JourneyStages::JourneyId))
                    .col(integer(JourneyStages::Position))
                    .col(text(JourneyStages::Name))
                    .col(text(JourneyStages::Stage))
                    .primary_key(
                        Index::create()
                            .col(JourneyStages::JourneyId)
                            .col(JourneyStages::Position),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("journey_stages_journey_fk")
                            .from(JourneyStages::Table, JourneyStages::JourneyId)
                            .to(Journeys::Table, Journeys::Id)
                            .on_delete(ForeignKeyAction::Cascade)
                            .on_update(ForeignKeyAction::Restrict),
                    )
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(JourneyStageTouchpoints::Table)
                    .col(text(JourneyStageTouchpoints::JourneyId))
                    .col(integer(JourneyStageTouchpoints::Position))
                    .col(integer(JourneyStageTouchpoints::Ordinal))
                    .col(text(JourneyStageTouchpoints::TouchpointId))
                    .primary_key(
                        Index::create()
                            .col(JourneyStageTouchpoints::JourneyId)
                            .col(JourneyStageTouchpoints::Position)
                            .col(JourneyStageTouchpoints::Ordinal),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("journey_stage_touchpoints_stage_fk")
                            .from_tbl(JourneyStageTouchpoints::Table)
                            .from_col(JourneyStageTouchpoints::JourneyId)
                            .from_col(JourneyStageTouchpoints::Position)
                            .to_tbl(JourneyStages::Table)
                            .to_col(JourneyStages::JourneyId)
                            .to_col(JourneyStages::Position)
                            .on_delete(ForeignKeyAction::Cascade)
                            .on_update(ForeignKeyAction::Restrict),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("journey_stage_touchpoints_touchpoint_fk")
                            .from(
                                JourneyStageTouchpoints::Table,
                                JourneyStageTouchpoints::TouchpointId,
                            )
                            .to(Touchpoints::Table, Touchpoints::Id)
                            .on_delete(ForeignKeyAction::Restrict)
                            .on_update(ForeignKeyAction::Restrict),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("journey_stage_touchpoints_touchpoint_idx")
                    .table(JourneyStageTouchpoints::Table)
                    .col(JourneyStageTouchpoints::TouchpointId)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            JourneyStageTouchpoints::Table.into_iden(),
            JourneyStages::Table.into_iden(),
            Journeys::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}
