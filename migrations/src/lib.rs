//! The schema of cxhub as sea-orm migrations. The same migrations run on SQLite and on
//! PostgreSQL: every table is built with sea-query schema builders, never with
//! backend-specific SQL.
//!
//! Layout rules, so that tables can later be partitioned on PostgreSQL: every primary key is a
//! natural key, and every child table leads its primary key with the id of its parent row
//! (`touchpoint_id`, `journey_id`), so hashing on that column keeps a resource and its rows
//! together. Ids are UUIDs stored as text; timestamps are stored in UTC.

use sea_orm_migration::prelude::*;

/// Re-exported so callers can run [`Migrator`] without depending on sea-orm-migration.
pub use m20261123_000011_customer_scores::SCORE_INDEXES;
pub use sea_orm_migration::MigratorTrait;

mod m20261123_000001_touchpoints;
mod m20261123_000002_touchpoint_labels;
mod m20261123_000003_journeys;
mod m20261123_000004_idempotency_keys;
mod m20261123_000005_customers;
mod m20261123_000006_feed_records;
mod m20261123_000007_customer_reads;
mod m20261123_000008_privacy;
mod m20261123_000009_change_log;
mod m20261123_000010_surveys;
mod m20261123_000011_customer_scores;
mod m20261123_000012_loyalty;
mod m20261124_000013_loyalty_rules;
mod m20261124_000014_action_events;
mod m20261124_000015_merged_into_partial_index;
mod m20261124_000016_transaction_events;
mod m20261124_000018_survey_answers_report_idx;
mod m20261124_000019_churn_models;
mod m20261124_000020_response_language_given;
mod m20261125_000021_customer_cover_indexes;
mod m20261125_000022_audit_customer_runs;

/// Every migration of cxhub, in the order they apply.
#[derive(Debug)]
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261123_000001_touchpoints::Migration),
            Box::new(m20261123_000002_touchpoint_labels::Migration),
            Box::new(m20261123_000003_journeys::Migration),
            Box::new(m20261123_000004_idempotency_keys::Migration),
            Box::new(m20261123_000005_customers::Migration),
            Box::new(m20261123_000006_feed_records::Migration),
            Box::new(m20261123_000007_customer_reads::Migration),
            Box::new(m20261123_000008_privacy::Migration),
            Box::new(m20261123_000009_change_log::Migration),
            Box::new(m20261123_000010_surveys::Migration),
            Box::new(m20261123_000011_customer_scores::Migration),
            Box::new(m20261123_000012_loyalty::Migration),
            Box::new(m20261124_000013_loyalty_rules::Migration),
            Box::new(m20261124_000014_action_events::Migration),
            Box::new(m20261124_000015_merged_into_partial_index::Migration),
            Box::new(m20261124_000016_transaction_events::Migration),
            Box::new(m20261124_000018_survey_answers_report_idx::Migration),
            Box::new(m20261124_000019_churn_models::Migration),
            Box::new(m20261124_000020_response_language_given::Migration),
            Box::new(m20261125_000021_customer_cover_indexes::Migration),
            Box::new(m20261125_000022_audit_customer_runs::Migration),
        ]
    }
}
