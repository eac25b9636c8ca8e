//! Surveys and their responses: survey definitions (questions and languages as one JSON
//! document), the touchpoints each is attached to, the responses (idempotent by response id)
//! and their answers, one row per answer, with the columns score reports scan and group by.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::{
    big_integer, blob, integer, text, text_null, timestamp_with_time_zone,
    timestamp_with_time_zone_null,
};

use crate::m20261123_000001_touchpoints::byte_ordered;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Surveys {
    Table,
    Id,
    Key,
    Name,
    DefinitionJson,
    State,
    Revision,
    CreatedAt,
    UpdatedAt,
    RetiredAt,
}

#[derive(DeriveIden)]
enum SurveyTouchpoints {
    Table,
    SurveyId,
    TouchpointId,
    Position,
}

#[derive(DeriveIden)]
enum SurveyResponses {
    Table,
    ResponseId,
    SurveyId,
    CustomerId,
    TouchpointId,
    InteractionId,
    Language,
    Comment,
    AnsweredAt,
    ReceivedAt,
    ContentHash,
}

#[derive(DeriveIden)]
enum SurveyAnswers {
    Table,
    ResponseId,
    Position,
    QuestionKey,
    Kind,
    Value,
    SurveyId,
    TouchpointId,
    CustomerId,
    AnsweredAt,
    AnsweredDay,
    AnsweredMonth,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Surveys::Table)
                    .col(text(Surveys::Id).primary_key())
                    .col(byte_ordered(manager, text(Surveys::Key)))
                    .col(text(Surveys::Name))
                    .col(text(Surveys::DefinitionJson))
                    .col(text(Surveys::State))
                    .col(big_integer(Surveys::Revision))
                    .col(timestamp_with_time_zone(Surveys::CreatedAt))
                    .col(timestamp_with_time_zone(Surveys::UpdatedAt))
                    .col(timestamp_with_time_zone_null(Surveys::RetiredAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("surveys_key_uq")
                    .table(Surveys::Table)
                    .col(Surveys::Key)
                    .unique()
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(SurveyTouchpoints::Table)
                    .col(text(SurveyTouchpoints::SurveyId))
                    .col(text(SurveyTouchpoints::TouchpointId))
                    .col(integer(SurveyTouchpoints::Position))
                    .primary_key(
                        Index::create()
                            .col(SurveyTouchpoints::SurveyId)
                            .col(SurveyTouchpoints::TouchpointId),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("survey_touchpoints_survey_fk")
                            .from(SurveyTouchpoints::Table, SurveyTouchpoints::SurveyId)
                            .to(Surveys::Table, Surveys::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("survey_touchpoints_touchpoint_idx")
                    .table(SurveyTouchpoints::Table)
                    .col(SurveyTouchpoints::TouchpointId)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(SurveyResponses::Table)
                    .col(text(SurveyResponses::ResponseId).primary_key())
                    .col(text(SurveyResponses::SurveyId))
                    .col(text(SurveyResponses::CustomerId))
                    .col(text(SurveyResponses::TouchpointId))
                    .col(text_null(SurveyResponses::InteractionId))
                    .col(text(SurveyResponses::Language))
                    .col(text_null(SurveyResponses::Comment))
                    .col(timestamp_with_time_zone(SurveyResponses::AnsweredAt))
                    .col(timestamp_with_time_zone(SurveyResponses::ReceivedAt))
                    .col(blob(SurveyResponses::ContentHash))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("survey_responses_customer_time_idx")
                    .table(SurveyResponses::Table)
                    .col(SurveyResponses::CustomerId)
                    .col(SurveyResponses::AnsweredAt)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(SurveyAnswers::Table)
                    .col(text(SurveyAnswers::ResponseId))
                    .col(integer(SurveyAnswers::Position))
                    .col(text(SurveyAnswers::QuestionKey))
                    .col(text(SurveyAnswers::Kind))
                    .col(integer(SurveyAnswers::Value))
                    .col(text(SurveyAnswers::SurveyId))
                    .col(text(SurveyAnswers::TouchpointId))
                    .col(text(SurveyAnswers::CustomerId))
                    .col(timestamp_with_time_zone(SurveyAnswers::AnsweredAt))
                    .col(big_integer(SurveyAnswers::AnsweredDay))
                    .col(big_integer(SurveyAnswers::AnsweredMonth))
                    .primary_key(
                        Index::create()
                            .col(SurveyAnswers::ResponseId)
                            .col(SurveyAnswers::Position),
                    )
                    .to_owned(),
            )
            .await?;
        // Reports scan a range of answer times; the category of a respondent is their latest
        // NPS answer before a time.
        manager
            .create_index(
                Index::create()
                    .name("survey_answers_time_idx")
                    .table(SurveyAnswers::Table)
                    .col(SurveyAnswers::AnsweredAt)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("survey_answers_customer_kind_time_idx")
                    .table(SurveyAnswers::Table)
                    .col(SurveyAnswers::CustomerId)
                    .col(SurveyAnswers::Kind)
                    .col(SurveyAnswers::AnsweredAt)
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            SurveyAnswers::Table.into_iden(),
            SurveyResponses::Table.into_iden(),
            SurveyTouchpoints::Table.into_iden(),
            Surveys::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}
