//! The repository test suite, written once and instantiated for SQLite (always) and for
//! PostgreSQL (ignored unless run with `--include-ignored` and `CXHUB_TEST_POSTGRES_URL`; a fresh
//! schema per test, dropped after).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use cxhub_store::{Store, StoreOptions};

mod suite;

/// A store over a fresh database, cleaned up by [`Fixture::finish`].
struct Fixture {
    store: Store,
    _dir: Option<tempfile::TempDir>,
    postgres: Option<(String, String)>,
}

impl Fixture {
    async fn sqlite() -> Fixture {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}", dir.path().join("cxhub.db").display());
        let store = Store::connect(&url, StoreOptions::default())
            .await
            .expect("connect sqlite");
        store.migrate().await.expect("migrate sqlite");
        Fixture {
            store,
            _dir: Some(dir),
            postgres: None,
        }
    }

    async fn postgres() -> Option<Fixture> {
        let url = std::env::var("CXHUB_TEST_POSTGRES_URL").ok()?;
        let schema = format!("cxhub_test_{}", uuid::Uuid::now_v7().simple());
        let options = StoreOptions {
            schema: Some(schema.clone()),
            max_connections: Some(4),
        };
        let store = Store::connect(&url, options)
            .await
            .expect("connect postgres");
        store.migrate().await.expect("migrate postgres");
        Some(Fixture {
            store,
            _dir: None,
            postgres: Some((url, schema)),
        })
    }

    /// Runs `test` on the store, cleans up, then reports the outcome of the test.
    async fn run<F, Fut>(self, test: F)
    where
        F: FnOnce(Store) -> Fut,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        let outcome = tokio::spawn(test(self.store.clone())).await;
        if let Some((url, schema)) = &self.postgres {
            cxhub_store::drop_postgres_schema(url, schema)
                .await
                .expect("drop test schema");
        }
        if let Err(err) = outcome {
            std::panic::resume_unwind(err.into_panic());
        }
    }
}

macro_rules! repo_test_suite {
    ($($test:ident),+ $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $test() {
                    super::Fixture::sqlite().await.run(super::suite::$test).await;
                }
            )+
        }

        mod postgres {
            $(
                #[tokio::test]
                #[ignore = "needs PostgreSQL: set CXHUB_TEST_POSTGRES_URL and pass --include-ignored"]
                async fn $test() {
                    let Some(fixture) = super::Fixture::postgres().await else {
                        panic!("CXHUB_TEST_POSTGRES_URL is not set: this test needs a PostgreSQL database");
                    };
                    fixture.run(super::suite::$test).await;
                }
            )+
        }
    };
}

repo_test_suite!(
    batch_create_resolves_in_batch_parents_in_any_order,
    created_touchpoints_read_back_identically,
    keys_in_use_or_repeated_are_refused,
    unknown_parents_are_all_listed,
    cycles_are_refused,
    hierarchy_depth_and_main_rules_hold,
    retries_return_the_first_result_and_write_nothing,
    concurrent_duplicates_write_once,
    reused_request_ids_are_refused,
    stale_etags_abort,
    update_moves_subtrees_and_replaces_labels,
    archive_needs_cascade_for_active_children,
    restore_is_refused_under_an_archived_parent,
    delete_is_refused_while_referenced,
    pagination_neither_loses_nor_repeats,
    filters_select_by_labels_and_fields,
    journeys_refuse_unknown_and_archived_touchpoints,
    journeys_update_archive_restore_delete,
    journey_listing_filters_by_touchpoint,
    every_ingest_outcome_and_nothing_overwritten,
    out_of_order_versions_end_as_in_order,
    the_same_source_customer_is_always_one_customer,
    emails_and_phones_link_records_across_sources,
    overshared_identifiers_link_no_one_and_are_reported,
    a_record_linking_customers_merges_them_with_a_redirect,
    a_split_restores_exactly_and_the_merge_does_not_come_back,
    a_merge_inside_one_batch_equals_one_across_batches,
    a_merge_of_several_customers_sharing_an_identifier_splits_back_exactly,
    absorbed_customers_sharing_an_identifier_merge_and_split_back,
    unknown_customers_and_merges_are_not_found,
    concurrent_batches_never_duplicate_a_customer,
    direct_interactions_follow_merges_and_splits,
    search_finds_name_email_and_phone_prefixes_once_each,
    search_pages_neither_lose_nor_repeat_while_customers_are_written,
    lookups_answer_every_holder_and_batch_gets_every_id,
    the_360_view_summarises_ledger_cases_and_subscriptions,
    interactions_and_transactions_page_newest_first_within_a_range,
    the_change_log_holds_every_change_in_commit_order,
    interactions_are_recorded_once_and_conflicts_overwrite_nothing,
    interaction_customers_are_found_by_hub_id_or_source_id,
    interactions_of_a_merged_customer_land_on_the_survivor,
    unknown_customers_and_touchpoints_are_rejected_and_write_nothing,
    concurrent_calls_record_each_interaction_and_customer_once,
    consents_combine_with_feed_contacts_and_keep_their_history,
    erasure_leaves_no_trace_and_suppresses_later_records,
    feed_survey_responses_stand_or_fall_with_their_survey,
    exports_hold_everything_and_audit_events_page_by_filter,
    surveys_store_once_and_answers_count_per_group,
    concurrent_submissions_store_each_response_once,
    scores_are_computed_from_the_ledger_answers_and_interactions,
    score_listings_filter_order_and_page_stably_and_follow_merges,
    fitted_models_and_the_incremental_position_are_kept,
    scores_of_absorbed_and_erased_customers_are_deleted,
    new_categories_and_churn_bands_are_change_log_entries,
    loyalty_guard_rails_are_decided_in_the_write,
    loyalty_concurrent_approvals_never_overspend,
    loyalty_ledger_is_idempotent_and_never_negative_under_concurrency,
    loyalty_erasure_keeps_actions_without_their_reasons,
);
