//! `survey_answers_report_idx`: every column a score report reads of an answer, in the order a
//! report by month and touchpoint groups them, so a report reads this index alone, never the
//! table, and on SQLite counts the groups as it reads them instead of sorting every answer.
//!
//! A report counts the answers of a time range per time bucket, touchpoint, kind and value
//! (see `cxhub_store::scoring`), restricting `answered_month` to the months of the range so
//! that the range is a prefix of this index. Through `survey_answers_time_idx` alone, SQLite
//! looked up every answer's table row by rowid in `answered_at` order, all over the table, and
//! sorted them all for the `GROUP BY`; over 1,000,000 NPS answers by touchpoint and month that
//! was 1.3–2.1 s on a 2-core machine; through this index it is a few hundred milliseconds (see
//! docs/scoring-models.md, "Score reports: performance"). PostgreSQL reads a year of answers
//! with a sequential scan either way.
//!
//! `survey_answers_time_idx` stays: it serves any query by `answered_at` alone. Reports
//! filtered by survey or grouped by customer category still read the table rows of the range
//! (`survey_id` and `customer_id` would widen this index by half for every answer).

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum SurveyAnswers {
    Table,
    AnsweredMonth,
    TouchpointId,
    Kind,
    Value,
    AnsweredAt,
    Position,
    AnsweredDay,
}

const INDEX: &str = "survey_answers_report_idx";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_index(
                Index::create()
                    .name(INDEX)
                    .table(SurveyAnswers::Table)
                    .col(SurveyAnswers::AnsweredMonth)
                    .col(SurveyAnswers::TouchpointId)
                    .col(SurveyAnswers::Kind)
                    .col(SurveyAnswers::Value)
                    .col(SurveyAnswers::AnsweredAt)
                    .col(SurveyAnswers::Position)
                    .col(SurveyAnswers::AnsweredDay)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(
                Index::drop()
                    .name(INDEX)
                    .table(SurveyAnswers::Table)
                    .to_owned(),
            )
            .await
    }
}
