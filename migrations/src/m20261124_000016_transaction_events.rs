//! Transaction events (`transaction_events`): what an ingested feed record says happened to an
//! order, a payment, a support case or a subscription (delivered, failed, paid, refunded; a
//! case resolved or closed; a subscription downgraded or cancelled), written in the
//! transaction that ingests the record, and how far each of their readers has got
//! (`transaction_event_positions`, one row per reader: `loyalty_rules`, `points`).
//!
//! `seq` is the order: every writer of events ingests feed records, under the identity lock on
//! PostgreSQL (SQLite has one writer), so sequence numbers are taken in commit order and a
//! reader that has seen `seq = n` has seen everything before. The unique key (record, kind)
//! makes an event happen once: a record re-sent, or updated without a new status, adds none.
//!
//! The customer is not stored: readers find it through the record in `feed_records`, which
//! merges and splits keep current and erasure deletes, so an erased customer's events lead to
//! no one. Nothing personal is kept: record ids, amounts, times and derived facts
//! (`company_at_fault` as 1 or 0, NULL when unknown).

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::{
    big_integer, big_integer_null, big_pk_auto, text, text_null, timestamp_with_time_zone,
};

use crate::m20261123_000001_touchpoints::byte_ordered;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// Table and columns of `transaction_events`.
#[derive(DeriveIden)]
enum TransactionEvents {
    Table,
    Seq,
    Source,
    RecordType,
    RecordId,
    Kind,
    OccurredAt,
    RelatedRecordId,
    AmountMinor,
    CurrencyCode,
    DelayDays,
    CompanyAtFault,
    RecordedAt,
}

/// Table and columns of `transaction_event_positions`.
#[derive(DeriveIden)]
enum TransactionEventPositions {
    Table,
    Reader,
    Seq,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(TransactionEvents::Table)
                    .col(big_pk_auto(TransactionEvents::Seq))
                    .col(byte_ordered(manager, text(TransactionEvents::Source)))
                    .col(byte_ordered(manager, text(TransactionEvents::RecordType)))
                    .col(byte_ordered(manager, text(TransactionEvents::RecordId)))
                    .col(text(TransactionEvents::Kind))
                    .col(timestamp_with_time_zone(TransactionEvents::OccurredAt))
                    .col(text_null(TransactionEvents::RelatedRecordId))
                    .col(big_integer_null(TransactionEvents::AmountMinor))
                    .col(text_null(TransactionEvents::CurrencyCode))
                    .col(big_integer_null(TransactionEvents::DelayDays))
                    .col(big_integer_null(TransactionEvents::CompanyAtFault))
                    .col(timestamp_with_time_zone(TransactionEvents::RecordedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("transaction_events_record_kind_idx")
                    .table(TransactionEvents::Table)
                    .col(TransactionEvents::Source)
                    .col(TransactionEvents::RecordType)
                    .col(TransactionEvents::RecordId)
                    .col(TransactionEvents::Kind)
                    .unique()
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(TransactionEventPositions::Table)
                    .col(text(TransactionEventPositions::Reader).primary_key())
                    .col(big_integer(TransactionEventPositions::Seq))
                    .to_owned(),
            )
            .await?;
        let insert = Query::insert()
            .into_table(TransactionEventPositions::Table)
            .columns([
                TransactionEventPositions::Reader,
                TransactionEventPositions::Seq,
            ])
            .values_panic(["loyalty_rules".into(), 0i64.into()])
            .values_panic(["points".into(), 0i64.into()])
            .to_owned();
        manager.exec_stmt(insert).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            TransactionEventPositions::Table.into_iden(),
            TransactionEvents::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}
