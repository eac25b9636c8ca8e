//! The touchpoint registry: one row per touchpoint, in a main/sub hierarchy (`parent_id`).

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::{
    big_integer, boolean, double_null, integer_null, text, text_null, timestamp_with_time_zone,
};

#[derive(DeriveMigrationName)]
pub struct Migration;

/// Table and columns of `touchpoints`.
#[derive(DeriveIden)]
pub enum Touchpoints {
    Table,
    Id,
    Key,
    Name,
    Description,
    Channel,
    Stage,
    Department,
    IsMain,
    ParentId,
    TargetNps,
    TargetCsat,
    TargetCes,
    LabelsJson,
    State,
    Revision,
    CreatedAt,
    UpdatedAt,
}

/// Makes a key column sort by bytes on PostgreSQL too (SQLite's default `BINARY` collation
/// already does), so listings ordered by key come out in the same order on both backends,
/// whatever the collation of the database.
pub fn byte_ordered(manager: &SchemaManager, mut column: ColumnDef) -> ColumnDef {
    if manager.get_database_backend() == sea_orm::DbBackend::Postgres {
        column.extra("COLLATE \"C\"");
    }
    column
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Touchpoints::Table)
                    .col(text(Touchpoints::Id).primary_key())
                    .col(byte_ordered(manager, text(Touchpoints::Key)))
                    .col(text(Touchpoints::Name))
                    .col(text(Touchpoints::Description))
                    .col(text(Touchpoints::Channel))
                    .col(text(Touchpoints::Stage))
                    .col(text(Touchpoints::Department))
                    .col(boolean(Touchpoints::IsMain))
                    .col(text_null(Touchpoints::ParentId))
                    .col(integer_null(Touchpoints::TargetNps))
                    .col(double_null(Touchpoints::TargetCsat))
                    .col(double_null(Touchpoints::TargetCes))
                    .col(text(Touchpoints::LabelsJson))
                    .col(text(Touchpoints::State))
                    .col(big_integer(Touchpoints::Revision))
                    .col(timestamp_with_time_zone(Touchpoints::CreatedAt))
                    .col(timestamp_with_time_zone(Touchpoints::UpdatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .name("touchpoints_parent_fk")
                            .from(Touchpoints::Table, Touchpoints::ParentId)
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
                    .name("touchpoints_key_uq")
                    .table(Touchpoints::Table)
                    .col(Touchpoints::Key)
                    .unique()
                    .to_owned(),
            )
            .await?;
        for (name, column) in [
            ("touchpoints_parent_id_idx", Touchpoints::ParentId),
            ("touchpoints_channel_idx", Touchpoints::Channel),
            ("touchpoints_stage_idx", Touchpoints::Stage),
            ("touchpoints_department_idx", Touchpoints::Department),
            ("touchpoints_state_idx", Touchpoints::State),
        ] {
            manager
                .create_index(
                    Index::create()
                        .name(name)
                        .table(Touchpoints::Table)
                        .col(column)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Touchpoints::Table).to_owned())
            .await
    }
}
