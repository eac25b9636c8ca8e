//! Covering indexes for a customer's reads: the four indexes by `customer_id` on
//! `customer_identities`, `feed_records`, `interactions` and `transactions` are replaced by
//! indexes that lead with the same columns and then carry every other column the per-customer
//! reads take from the row, so those reads never visit the table.
//!
//! `GetCustomer360` reads, in one statement, a customer's identities, its records grouped by
//! source, its latest interactions, its ledger grouped by (kind, status, currency), its last
//! purchase and its cases and subscriptions (see `cxhub_store::customer_query`). On SQLite each
//! index entry found was followed by a lookup of its table row by rowid (a second B-tree
//! descent), about 65 of them for a customer with 21 records; the latest interactions were also
//! all fetched and sorted to keep 10, because the order (`occurred_at`, `source`,
//! `record_type`, `record_id`) went past the index. With these indexes the statement costs
//! 71–77 µs instead of 114–116 µs of SQLite time on a customer of the profile benchmark
//! (10,000 customers × 21 records), and `GetCustomer` (identities and record count) reads no
//! table row but the customer's.
//!
//! SQLite only. On PostgreSQL the same indexes give index-only scans once the tables are
//! vacuumed (pgbench of the statement: +13 %), but in the profile benchmark, which reads right
//! after seeding, `GetCustomer360` was 842–869 calls/s against 951–1130 without them and seeding
//! 13,100–13,900 records/s against 16,000–16,400: PostgreSQL keeps the narrow indexes.
//!
//! Each new index keeps its predecessor's leading columns, so every other query on those
//! (merges and splits moving a customer's rows, the keyset pages of `ListCustomerInteractions`
//! and `ListCustomerTransactions`, which now need no sort either) is served as before, and
//! ingestion still maintains one index per table, only a wider one.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum CustomerIdentities {
    Table,
    CustomerId,
    Kind,
    Value,
}

#[derive(DeriveIden)]
enum FeedRecords {
    Table,
    CustomerId,
    RecordType,
    Source,
    RecordId,
    SourceCustomerId,
}

#[derive(DeriveIden)]
enum Interactions {
    Table,
    CustomerId,
    OccurredAt,
    Source,
    RecordType,
    RecordId,
    TouchpointKey,
    Channel,
    Outcome,
}

#[derive(DeriveIden)]
enum Transactions {
    Table,
    CustomerId,
    OccurredAt,
    Source,
    RecordType,
    RecordId,
    Kind,
    Status,
    CurrencyCode,
    AmountMinor,
    DueAt,
}

/// One index replaced by a wider one on the same table that starts with the same columns.
struct Replacement {
    table: DynIden,
    /// The index replaced: its name, and how many of `columns` it has.
    old: (&'static str, usize),
    /// Its covering successor, with all of `columns`.
    new: &'static str,
    columns: Vec<DynIden>,
}

impl Replacement {
    fn create(&self, name: &'static str, columns: usize) -> IndexCreateStatement {
        let mut index = Index::create();
        index.name(name).table(self.table.clone());
        for column in &self.columns[..columns] {
            index.col(column.clone());
        }
        index.to_owned()
    }

    fn create_old(&self) -> IndexCreateStatement {
        self.create(self.old.0, self.old.1)
    }

    fn create_new(&self) -> IndexCreateStatement {
        self.create(self.new, self.columns.len())
    }

    fn drop(&self, name: &'static str) -> IndexDropStatement {
        Index::drop()
            .name(name)
            .table(self.table.clone())
            .to_owned()
    }
}

/// The four replacements.
fn replacements() -> Vec<Replacement> {
    vec![
        // The identities of a customer with their kind and value, which the holder and
        // dispute counts are then looked up by.
        Replacement {
            table: CustomerIdentities::Table.into_iden(),
            old: ("customer_identities_customer_idx", 1),
            new: "customer_identities_customer_cover_idx",
            columns: vec![
                CustomerIdentities::CustomerId.into_iden(),
                CustomerIdentities::Kind.into_iden(),
                CustomerIdentities::Value.into_iden(),
            ],
        },
        // The record counts per source customer id, and the keys of the customer's cases and
        // subscription events to join to their state.
        Replacement {
            table: FeedRecords::Table.into_iden(),
            old: ("feed_records_customer_idx", 2),
            new: "feed_records_customer_cover_idx",
            columns: vec![
                FeedRecords::CustomerId.into_iden(),
                FeedRecords::RecordType.into_iden(),
                FeedRecords::Source.into_iden(),
                FeedRecords::RecordId.into_iden(),
                FeedRecords::SourceCustomerId.into_iden(),
            ],
        },
        // A customer's timeline in its full order, and every column of an interaction but its
        // content hash.
        Replacement {
            table: Interactions::Table.into_iden(),
            old: ("interactions_customer_time_idx", 2),
            new: "interactions_customer_cover_idx",
            columns: vec![
                Interactions::CustomerId.into_iden(),
                Interactions::OccurredAt.into_iden(),
                Interactions::Source.into_iden(),
                Interactions::RecordType.into_iden(),
                Interactions::RecordId.into_iden(),
                Interactions::TouchpointKey.into_iden(),
                Interactions::Channel.into_iden(),
                Interactions::Outcome.into_iden(),
            ],
        },
        // A customer's ledger in its full order, and every column of a transaction. One index
        // ordered by time serves both the pages and the grouped summary (which sorts a
        // customer's few entries); a second one ordered by (kind, status, currency) saved that
        // sort but measured no faster on the whole statement, and would be one more index for
        // ingestion to write.
        Replacement {
            table: Transactions::Table.into_iden(),
            old: ("transactions_customer_time_idx", 2),
            new: "transactions_customer_cover_idx",
            columns: vec![
                Transactions::CustomerId.into_iden(),
                Transactions::OccurredAt.into_iden(),
                Transactions::Source.into_iden(),
                Transactions::RecordType.into_iden(),
                Transactions::RecordId.into_iden(),
                Transactions::Kind.into_iden(),
                Transactions::Status.into_iden(),
                Transactions::CurrencyCode.into_iden(),
                Transactions::AmountMinor.into_iden(),
                Transactions::DueAt.into_iden(),
            ],
        },
    ]
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() != sea_orm::DbBackend::Sqlite {
            return Ok(());
        }
        for index in replacements() {
            manager.create_index(index.create_new()).await?;
            manager.drop_index(index.drop(index.old.0)).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() != sea_orm::DbBackend::Sqlite {
            return Ok(());
        }
        for index in replacements() {
            manager.create_index(index.create_old()).await?;
            manager.drop_index(index.drop(index.new)).await?;
        }
        Ok(())
    }
}
