//! `TouchpointRepo` over [`Store`]: every write is one transaction on the writer, recorded
//! under its request key; every read uses the reader pool.

use async_trait::async_trait;
use cxhub_domain::Result;
use cxhub_domain::feed::{IngestItem, IngestResult, Ingested};
use cxhub_domain::idempotency::RequestKey;
use cxhub_domain::identifier::CustomerId;
use cxhub_domain::journey::{Journey, JourneyFilter, JourneyId, JourneyPatch, NewJourney};
use cxhub_domain::page::{Page, PageRequest};
use cxhub_domain::repo::{
    CustomerRepo, CustomerView, IngestContext, Lookup, MergeView, SplitOutcome, StateChange,
    TouchpointRepo,
};
use cxhub_domain::resolution::MergeId;
use cxhub_domain::touchpoint::{
    NewTouchpoint, Touchpoint, TouchpointFilter, TouchpointId, TouchpointPatch,
};

use crate::idempotency::idempotent;
use crate::store::{Store, identity_write, snapshot};
use crate::{customers, journeys, touchpoints};

#[async_trait]
impl TouchpointRepo for Store {
    async fn create_touchpoints(
        &self,
        req: &RequestKey,
        items: Vec<NewTouchpoint>,
    ) -> Result<Vec<Touchpoint>> {
        idempotent!(self, req, |txn| touchpoints::create(&txn, items))
    }

    async fn get_touchpoint(&self, lookup: &Lookup<TouchpointId>) -> Result<Touchpoint> {
        snapshot!(self, |txn| touchpoints::get(&txn, lookup))
    }

    async fn list_touchpoints(
        &self,
        filter: &TouchpointFilter,
        page: &PageRequest,
    ) -> Result<Page<Touchpoint>> {
        snapshot!(self, |txn| touchpoints::list(&txn, filter, page))
    }

    async fn all_touchpoints(&self, include_archived: bool) -> Result<Vec<Touchpoint>> {
        snapshot!(self, |txn| touchpoints::all(&txn, include_archived))
    }

    async fn update_touchpoint(
        &self,
        req: &RequestKey,
        id: TouchpointId,
        etag: Option<&str>,
        patch: TouchpointPatch,
    ) -> Result<Touchpoint> {
        idempotent!(self, req, |txn| touchpoints::update(&txn, id, etag, patch))
    }

    async fn archive_touchpoint(
        &self,
        req: &RequestKey,
        id: TouchpointId,
        etag: Option<&str>,
        cascade: bool,
    ) -> Result<StateChange> {
        idempotent!(self, req, |txn| touchpoints::archive(
            &txn, id, etag, cascade
        ))
    }

    async fn restore_touchpoint(
        &self,
        req: &RequestKey,
        id: TouchpointId,
        etag: Option<&str>,
        cascade: bool,
    ) -> Result<StateChange> {
        idempotent!(self, req, |txn| touchpoints::restore(
            &txn, id, etag, cascade
        ))
    }

    async fn delete_touchpoint(
        &self,
        req: &RequestKey,
        id: TouchpointId,
        etag: Option<&str>,
    ) -> Result<()> {
        idempotent!(self, req, |txn| touchpoints::delete(&txn, id, etag))
    }

    async fn create_journey(&self, req: &RequestKey, journey: NewJourney) -> Result<Journey> {
        idempotent!(self, req, |txn| journeys::create(&txn, journey))
    }

    async fn get_journey(&self, lookup: &Lookup<JourneyId>) -> Result<Journey> {
        snapshot!(self, |txn| journeys::get(&txn, lookup))
    }

    async fn list_journeys(
        &self,
        filter: &JourneyFilter,
        page: &PageRequest,
    ) -> Result<Page<Journey>> {
        snapshot!(self, |txn| journeys::list(&txn, filter, page))
    }

    async fn update_journey(
        &self,
        req: &RequestKey,
        id: JourneyId,
        etag: Option<&str>,
        patch: JourneyPatch,
    ) -> Result<Journey> {
        idempotent!(self, req, |txn| journeys::update(&txn, id, etag, patch))
    }

    async fn archive_journey(
        &self,
        req: &RequestKey,
        id: JourneyId,
        etag: Option<&str>,
    ) -> Result<Journey> {
        idempotent!(self, req, |txn| journeys::archive(&txn, id, etag))
    }

    async fn restore_journey(
        &self,
        req: &RequestKey,
        id: JourneyId,
        etag: Option<&str>,
    ) -> Result<Journey> {
        idempotent!(self, req, |txn| journeys::restore(&txn, id, etag))
    }

    async fn delete_journey(
        &self,
        req: &RequestKey,
        id: JourneyId,
        etag: Option<&str>,
    ) -> Result<()> {
        idempotent!(self, req, |txn| journeys::delete(&txn, id, etag))
    }
}

#[async_trait]
impl CustomerRepo for Store {
    async fn ingest(
        &self,
        items: Vec<IngestItem>,
        ctx: &IngestContext,
    ) -> Result<Vec<IngestResult>> {
        // A refused record fails the batch, so the transaction rolls back and nothing is written.
        let results = identity_write!(self, |txn| async {
            let checked = crate::privacy::ingest_screened(&txn, &items, ctx).await?;
            let mut results = Vec::with_capacity(checked.len());
            let mut violations = Vec::new();
            for result in checked {
                match result {
                    Ok(result) => results.push(result),
                    Err(refused) => violations.extend(refused.violations.into_iter().map(|v| {
                        cxhub_domain::FieldViolation {
                            field: format!("records[{}].{}", refused.index, v.field),
                            description: v.description,
                        }
                    })),
                }
            }
            if violations.is_empty() {
                Ok(results)
            } else {
                Err(cxhub_domain::Error::invalid(violations))
            }
        })?;
        let written = results.iter().filter(|r| r.outcome.writes()).count();
        self.note_growth(u64::try_from(written).unwrap_or(u64::MAX));
        Ok(results)
    }

    async fn ingest_checked(
        &self,
        items: Vec<IngestItem>,
        ctx: &IngestContext,
    ) -> Result<Vec<Ingested>> {
        let results = identity_write!(self, |txn| crate::privacy::ingest_screened(
            &txn, &items, ctx
        ))?;
        let written = results
            .iter()
            .flatten()
            .filter(|r| r.outcome.writes())
            .count();
        self.note_growth(u64::try_from(written).unwrap_or(u64::MAX));
        Ok(results)
    }

    async fn get_customer(&self, id: CustomerId) -> Result<CustomerView> {
        crate::customer_query::read_view(&self.reader, id).await
    }

    async fn list_merges(&self, survivor: CustomerId) -> Result<Vec<MergeView>> {
        snapshot!(self, |txn| customers::merges(&txn, survivor))
    }

    async fn split(
        &self,
        req: &RequestKey,
        merge: MergeId,
        ctx: &IngestContext,
    ) -> Result<SplitOutcome> {
        idempotent!(self, req, lock = begin_identity, |txn| customers::split(
            &txn, merge, ctx
        ))
    }
}

#[async_trait]
impl cxhub_domain::interaction::InteractionRepo for Store {
    /// One transaction under the identity lock (an unknown source customer id creates its
    /// customer); see the `interactions` module.
    async fn record_interactions(
        &self,
        items: Vec<cxhub_domain::interaction::NewInteraction>,
    ) -> Result<Vec<cxhub_domain::interaction::Recorded>> {
        let results = identity_write!(self, |txn| crate::interactions::record(&txn, &items))?;
        let created = results
            .iter()
            .filter(|r| {
                matches!(
                    r,
                    Ok((cxhub_domain::interaction::RecordOutcome::Created, _))
                )
            })
            .count();
        self.note_growth(u64::try_from(created).unwrap_or(u64::MAX));
        Ok(results)
    }
}

#[async_trait]
impl cxhub_domain::change::ChangeLogRepo for Store {
    async fn read_changes(
        &self,
        after: i64,
        limit: u32,
    ) -> Result<cxhub_domain::change::ChangeSlice> {
        snapshot!(self, |txn| crate::changes::read(&txn, after, limit))
    }

    /// Under the identity lock, like every writer of the log.
    async fn prune_changes(&self, before: chrono::DateTime<chrono::Utc>) -> Result<u64> {
        identity_write!(self, |txn| crate::changes::prune(&txn, before))
    }
}
