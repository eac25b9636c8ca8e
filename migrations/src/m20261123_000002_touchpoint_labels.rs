//! Touchpoint labels as rows, so listings can filter on them (`touchpoints.labels_json` keeps
//! the map for reading back).

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::text;

use crate::m20261123_000001_touchpoints::Touchpoints;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum TouchpointLabels {
    Table,
    TouchpointId,
    Key,
    Value,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(TouchpointLabels::Table)
                    .col(text(TouchpointLabels::TouchpointId))
                    .col(text(TouchpointLabels::Key))
                    .col(text(TouchpointLabels::Value))
                    .primary_key(
                        Index::create()
                            .col(TouchpointLabels::TouchpointId)
                            .col(TouchpointLabels::Key),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("touchpoint_labels_touchpoint_fk")
                            .from(TouchpointLabels::Table, TouchpointLabels::TouchpointId)
                            .to(Touchpoints::Table, Touchpoints::Id)
                            .on_delete(ForeignKeyAction::Cascade)
                            .on_update(ForeignKeyAction::Restrict),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("touchpoint_labels_key_value_idx")
                    .table(TouchpointLabels::Table)
                    .col(TouchpointLabels::Key)
                    .col(TouchpointLabels::Value)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(TouchpointLabels::Table).to_owned())
            .await
    }
}
