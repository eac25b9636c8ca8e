//! Customer scores: one row per scored customer (`customer_scores`: category, churn risk, CLV,
//! RFM, each with its explanation as JSON beside the columns that listings filter and order
//! by), the models fitted by the last full recompute (`scoring_models`, one row per currency),
//! and where the incremental recompute has got to (`score_position`, one row), plus an index
//! of `survey_responses` by the time responses were received.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::{
    big_integer, big_integer_null, double, double_null, integer, integer_null, text, text_null,
    timestamp_with_time_zone,
};

use crate::m20261123_000001_touchpoints::byte_ordered;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// The secondary indexes of `customer_scores`, by name and columns: the listings (highest churn
/// first, optionally within a band, category or segment; highest CLV first within a currency;
/// each ending with the id for a stable keyset) and `computed_at`, by which a full recompute
/// deletes what it did not rewrite (customers merged away or erased). A full recompute drops
/// and rebuilds them (the store's `pause_score_indexes`), which is why they are listed here
/// once. Never change an entry: this migration has run.
pub const SCORE_INDEXES: &[(&str, &[&str])] = &[
    (
        "customer_scores_churn_idx",
        &["churn_probability", "customer_id"],
    ),
    (
        "customer_scores_band_churn_idx",
        &["churn_band", "churn_probability", "customer_id"],
    ),
    (
        "customer_scores_category_churn_idx",
        &["category", "churn_probability", "customer_id"],
    ),
    (
        "customer_scores_segment_churn_idx",
        &["rfm_segment", "churn_probability", "customer_id"],
    ),
    (
        "customer_scores_clv_idx",
        &["clv_currency", "clv_minor", "customer_id"],
    ),
    ("customer_scores_computed_idx", &["computed_at"]),
];

#[derive(DeriveIden)]
enum CustomerScores {
    Table,
    CustomerId,
    AsOf,
    ComputedAt,
    ModelVersion,
    Category,
    CategoryRule,
    CategoryJson,
    ChurnProbability,
    ChurnBand,
    ChurnJson,
    ClvCurrency,
    ClvMinor,
    ExpectedPurchases,
    PAlive,
    ExpectedSpendMinor,
    ClvJson,
    RfmR,
    RfmF,
    RfmM,
    RfmSegment,
    RfmJson,
}

#[derive(DeriveIden)]
enum ScoringModels {
    Table,
    Currency,
    Version,
    FittedAt,
    Customers,
    RepeatCustomers,
    BgNbdJson,
    GammaGammaJson,
    RfmJson,
    NotesJson,
}

#[derive(DeriveIden)]
enum SurveyResponses {
    Table,
    ReceivedAt,
}

#[derive(DeriveIden)]
enum ScorePosition {
    Table,
    Id,
    ChangeSeq,
    ResponsesThrough,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(CustomerScores::Table)
                    .col(byte_ordered(manager, text(CustomerScores::CustomerId)).primary_key())
                    .col(timestamp_with_time_zone(CustomerScores::AsOf))
                    .col(timestamp_with_time_zone(CustomerScores::ComputedAt))
                    .col(text(CustomerScores::ModelVersion))
                    .col(text(CustomerScores::Category))
                    .col(text(CustomerScores::CategoryRule))
                    .col(text(CustomerScores::CategoryJson))
                    .col(double(CustomerScores::ChurnProbability))
                    .col(text(CustomerScores::ChurnBand))
                    .col(text(CustomerScores::ChurnJson))
                    .col(text_null(CustomerScores::ClvCurrency))
                    .col(big_integer_null(CustomerScores::ClvMinor))
                    .col(double_null(CustomerScores::ExpectedPurchases))
                    .col(double_null(CustomerScores::PAlive))
                    .col(big_integer_null(CustomerScores::ExpectedSpendMinor))
                    .col(text_null(CustomerScores::ClvJson))
                    .col(integer_null(CustomerScores::RfmR))
                    .col(integer_null(CustomerScores::RfmF))
                    .col(integer_null(CustomerScores::RfmM))
                    .col(text_null(CustomerScores::RfmSegment))
                    .col(text_null(CustomerScores::RfmJson))
                    .to_owned(),
            )
            .await?;
        // The listing indexes and the one a full recompute deletes by (see `SCORE_INDEXES`).
        for (name, columns) in SCORE_INDEXES {
            let mut index = Index::create();
            index.name(*name).table(CustomerScores::Table);
            for c in *columns {
                index.col(Alias::new(*c));
            }
            manager.create_index(index.to_owned()).await?;
        }

        manager
            .create_table(
                Table::create()
                    .table(ScoringModels::Table)
                    .col(text(ScoringModels::Currency).primary_key())
                    .col(big_integer(ScoringModels::Version))
                    .col(timestamp_with_time_zone(ScoringModels::FittedAt))
                    .col(big_integer(ScoringModels::Customers))
                    .col(big_integer(ScoringModels::RepeatCustomers))
                    .col(text_null(ScoringModels::BgNbdJson))
                    .col(text_null(ScoringModels::GammaGammaJson))
                    .col(text_null(ScoringModels::RfmJson))
                    .col(text(ScoringModels::NotesJson))
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(ScorePosition::Table)
                    .col(integer(ScorePosition::Id).primary_key())
                    .col(big_integer(ScorePosition::ChangeSeq))
                    .col(timestamp_with_time_zone(ScorePosition::ResponsesThrough))
                    .to_owned(),
            )
            .await?;
        // The incremental recompute looks for the responses received since its last pass.
        manager
            .create_index(
                Index::create()
                    .name("survey_responses_received_idx")
                    .table(SurveyResponses::Table)
                    .col(SurveyResponses::ReceivedAt)
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(
                Index::drop()
                    .name("survey_responses_received_idx")
                    .table(SurveyResponses::Table)
                    .to_owned(),
            )
            .await?;
        for table in [
            ScorePosition::Table.into_iden(),
            ScoringModels::Table.into_iden(),
            CustomerScores::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}
