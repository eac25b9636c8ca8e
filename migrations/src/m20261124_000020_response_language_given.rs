//! `survey_responses.language_given`: whether the response named its language. `language` keeps
//! the survey's default for a response that named none (the language it is taken to be in);
//! this column keeps that it was not named, so the category rule scores the comment in the
//! language detected from its text, as `SubmitResponses` did when it answered the comment's
//! sentiment, instead of in the survey's default.
//!
//! Rows stored before default to `TRUE`: whether they named a language is not known, and they
//! keep being scored in their stored `language`, as before. Adding a column with a constant
//! default rewrites no row on PostgreSQL (11 and later) nor on SQLite.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::boolean;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum SurveyResponses {
    Table,
    LanguageGiven,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(SurveyResponses::Table)
                    .add_column(boolean(SurveyResponses::LanguageGiven).default(true))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(SurveyResponses::Table)
                    .drop_column(SurveyResponses::LanguageGiven)
                    .to_owned(),
            )
            .await
    }
}
