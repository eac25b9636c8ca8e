//! `survey_answers_report_idx` replaces `survey_answers_time_idx` (`answered_at`) with an index
//! that also holds every column a score report reads of an answer, so a report reads the index
//! alone and never the table.
//!
//! A report counts the answers of a time range per touchpoint, time bucket and kind (see
//! `cxhub_store::scoring`). Through the old index, SQLite looked up each answer's table row by
//! rowid, in `answered_at` order, all over the table: over 1,000,000 NPS answers by touchpoint
//! and month that is 4–6 s on a loaded 2-core machine, and 1.4–1.7 s through this index (the
//! hand-written `GROUP BY` of the same counts speeds up alike). PostgreSQL reads a year of
//! answers with a sequential scan either way; narrower ranges get an index-only scan. The new
//! index starts with `answered_at`, so it serves every query the old one served.
//!
//! Reports filtered by survey or grouped by customer category still read the table rows of
//! the range (`survey_id` and `customer_id` would widen the index by half for every answer).

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum SurveyAnswers {
    Table,
    AnsweredAt,
    Kind,
    TouchpointId,
    AnsweredMonth,
    AnsweredDay,
    Value,
    Position,
}

const OLD: &str = "survey_answers_time_idx";
const NEW: &str = "survey_answers_report_idx";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_index(
                Index::create()
                    .name(NEW)
                    .table(SurveyAnswers::Table)
                    .col(SurveyAnswers::AnsweredAt)
                    .col(SurveyAnswers::Kind)
                    .col(SurveyAnswers::TouchpointId)
                    .col(SurveyAnswers::AnsweredMonth)
                    .col(SurveyAnswers::AnsweredDay)
                    .col(SurveyAnswers::Value)
                    .col(SurveyAnswers::Position)
                    .to_owned(),
            )
            .await?;
        manager
            .drop_index(
                Index::drop()
                    .name(OLD)
                    .table(SurveyAnswers::Table)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_index(
                Index::create()
                    .name(OLD)
                    .table(SurveyAnswers::Table)
                    .col(SurveyAnswers::AnsweredAt)
                    .to_owned(),
            )
            .await?;
        manager
            .drop_index(
                Index::drop()
                    .name(NEW)
                    .table(SurveyAnswers::Table)
                    .to_owned(),
            )
            .await
    }
}
