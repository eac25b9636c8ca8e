//! `churn_models`: the churn model decided by the last full recompute (one row, `id = 1`): its
//! version, whether it was fitted on the hub's history, the coefficients in use, the fit's
//! held-out report and the note saying why (`model_json`, a
//! `cxhub_domain::scoring::churn_fit::ChurnModel`). The incremental recompute scores with it.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::{integer, text, timestamp_with_time_zone};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum ChurnModels {
    Table,
    Id,
    Version,
    DecidedAt,
    ModelJson,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(ChurnModels::Table)
                    .col(integer(ChurnModels::Id).primary_key())
                    .col(text(ChurnModels::Version))
                    .col(timestamp_with_time_zone(ChurnModels::DecidedAt))
                    .col(text(ChurnModels::ModelJson))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(ChurnModels::Table).to_owned())
            .await
    }
}
