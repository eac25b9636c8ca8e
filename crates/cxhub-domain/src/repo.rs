//! The repository traits: what the services need from storage. `cxhub-store` implements them
//! over sea-orm (SQLite and PostgreSQL); every mutating method is one database transaction that
//! also records its result under its [`RequestKey`].

use async_trait::async_trait;

use crate::error::Result;
use crate::idempotency::RequestKey;
use crate::journey::{Journey, JourneyFilter, JourneyId, JourneyPatch, NewJourney};
use crate::page::{Page, PageRequest};
use crate::touchpoint::{
    Key, NewTouchpoint, Touchpoint, TouchpointFilter, TouchpointId, TouchpointPatch,
};

/// How a caller names a resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup<Id> {
    /// By id.
    Id(Id),
    /// By key.
    Key(Key),
}

/// What an archive or restore changed.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct StateChange {
    /// The touchpoint named in the request, after the change.
    pub touchpoint: Touchpoint,
    /// Every touchpoint whose state changed, the named one first.
    pub changed: Vec<TouchpointId>,
}

/// Storage of touchpoints and journeys.
#[async_trait]
pub trait TouchpointRepo: Send + Sync {
    /// Creates touchpoints, all or nothing, in one transaction. Parents given by key may be in
    /// the same batch, in any order. Errors: `AlreadyExists` (reason `TOUCHPOINT_KEY_TAKEN`,
    /// field `touchpoints[i].key`) for a key in use or repeated in the batch; `InvalidArgument`
    /// listing unknown parents (`touchpoints[i].parent_id` / `.parent_key`);
    /// `FailedPrecondition` for hierarchy rule violations.
    async fn create_touchpoints(
        &self,
        req: &RequestKey,
        items: Vec<NewTouchpoint>,
    ) -> Result<Vec<Touchpoint>>;

    /// Reads one touchpoint.
    async fn get_touchpoint(&self, lookup: &Lookup<TouchpointId>) -> Result<Touchpoint>;

    /// Lists touchpoints ordered by key, after `page.after` (a key).
    async fn list_touchpoints(
        &self,
        filter: &TouchpointFilter,
        page: &PageRequest,
    ) -> Result<Page<Touchpoint>>;

    /// Every touchpoint (archived ones only if asked), for building trees.
    async fn all_touchpoints(&self, include_archived: bool) -> Result<Vec<Touchpoint>>;

    /// Applies a patch after checking the etag, the state (archived: `FailedPrecondition`
    /// `TOUCHPOINT_ARCHIVED`) and the hierarchy rules.
    async fn update_touchpoint(
        &self,
        req: &RequestKey,
        id: TouchpointId,
        etag: Option<&str>,
        patch: TouchpointPatch,
    ) -> Result<Touchpoint>;

    /// Archives a touchpoint (and with `cascade` its active subtree). Without `cascade`, active
    /// children refuse it (`FailedPrecondition` `ACTIVE_CHILDREN`).
    async fn archive_touchpoint(
        &self,
        req: &RequestKey,
        id: TouchpointId,
        etag: Option<&str>,
        cascade: bool,
    ) -> Result<StateChange>;

    /// Restores a touchpoint (and with `cascade` its archived subtree); an archived parent
    /// refuses it (`FailedPrecondition` `PARENT_ARCHIVED`).
    async fn restore_touchpoint(
        &self,
        req: &RequestKey,
        id: TouchpointId,
        etag: Option<&str>,
        cascade: bool,
    ) -> Result<StateChange>;

    /// Deletes a touchpoint nothing references (`FailedPrecondition` `TOUCHPOINT_REFERENCED`).
    async fn delete_touchpoint(
        &self,
        req: &RequestKey,
        id: TouchpointId,
        etag: Option<&str>,
    ) -> Result<()>;

    /// Creates a journey over existing active touchpoints (`InvalidArgument` listing unknown
    /// keys as `journey.stages[i].touchpoint_keys[j]`; `FailedPrecondition`
    /// `TOUCHPOINT_ARCHIVED` for archived ones; `AlreadyExists` `JOURNEY_KEY_TAKEN`).
    async fn create_journey(&self, req: &RequestKey, journey: NewJourney) -> Result<Journey>;

    /// Reads one journey.
    async fn get_journey(&self, lookup: &Lookup<JourneyId>) -> Result<Journey>;

    /// Lists journeys ordered by key, after `page.after` (a key).
    async fn list_journeys(
        &self,
        filter: &JourneyFilter,
        page: &PageRequest,
    ) -> Result<Page<Journey>>;

    /// Applies a patch (etag, state and touchpoint checks as on create).
    async fn update_journey(
        &self,
        req: &RequestKey,
        id: JourneyId,
        etag: Option<&str>,
        patch: JourneyPatch,
    ) -> Result<Journey>;

    /// Archives a journey.
    async fn archive_journey(
        &self,
        req: &RequestKey,
        id: JourneyId,
        etag: Option<&str>,
    ) -> Result<Journey>;

    /// Restores a journey; archived touchpoints refuse it (`FailedPrecondition` `TOUCHPOINT_ARCHIVED`).
    async fn restore_journey(
        &self,
        req: &RequestKey,
        id: JourneyId,
        etag: Option<&str>,
    ) -> Result<Journey>;

    /// Deletes a journey.
    async fn delete_journey(
        &self,
        req: &RequestKey,
        id: JourneyId,
        etag: Option<&str>,
    ) -> Result<()>;
}

/// What identity resolution and profile building need to know, besides the data.
#[derive(Debug, Clone, Default)]
pub struct IngestContext {
    /// The caller, recorded on every merge.
    pub principal: String,
    /// Which identifiers link customers.
    pub rules: crate::resolution::ResolutionRules,
    /// Which source wins each profile field group.
    pub priority: crate::record::SourcePriority,
}

/// An identifier a customer holds, and whether it links records to the customer.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct HeldIdentifier {
    /// The identifier.
    pub identifier: crate::identifier::Identifier,
    /// False when a split disputed it or more customers hold it than the rules allow.
    pub linking: bool,
}

/// A customer as the profile service shows it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CustomerView {
    /// The customer (the survivor, for a merged id).
    pub id: crate::identifier::CustomerId,
    /// The id asked for.
    pub requested: crate::identifier::CustomerId,
    /// When the hub first saw it.
    pub created_at: chrono::DateTime<chrono::Utc>,
    /// When its profile last changed.
    pub updated_at: chrono::DateTime<chrono::Utc>,
    /// The profile fields and their provenance.
    pub profile: crate::feed::Profile,
    /// Every identifier held, by kind then value.
    pub identifiers: Vec<HeldIdentifier>,
    /// How many source records it holds.
    pub record_count: i64,
}

/// A merge as stored.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MergeView {
    /// The merge's id.
    pub id: crate::resolution::MergeId,
    /// Who, what, why, and what each absorbed customer held.
    pub record: crate::resolution::MergeRecord,
    /// When.
    pub merged_at: chrono::DateTime<chrono::Utc>,
    /// The principal whose call caused it.
    pub merged_by: String,
    /// When it was undone, if it was.
    pub split_at: Option<chrono::DateTime<chrono::Utc>>,
    /// Who undid it.
    pub split_by: Option<String>,
}

/// A split: the merge undone and the customers as they are now.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SplitOutcome {
    /// The merge, now undone.
    pub merge: MergeView,
    /// The survivor then every restored customer.
    pub customers: Vec<CustomerView>,
}

/// Storage of customers: ingestion of feed records with identity resolution, merges and splits.
#[async_trait]
pub trait CustomerRepo: Send + Sync {
    /// Ingests a batch of valid records in one transaction: decides each record's outcome
    /// against the stored version, resolves the customer of each record that writes (creating
    /// and merging customers), stores records, interactions and transactions, and rebuilds the
    /// profile of every customer whose contacts changed. Results come back in batch order.
    async fn ingest(
        &self,
        items: Vec<crate::feed::IngestItem>,
        ctx: &IngestContext,
    ) -> Result<Vec<crate::feed::IngestResult>>;

    /// [`CustomerRepo::ingest`], except that a record failing a check only the store can make
    /// (a survey response that does not fit its stored survey) is refused on its own, with its
    /// violations, instead of failing the batch; nothing of it is written, the others are.
    /// (`ingest` answers such a batch with `InvalidArgument` and writes nothing.)
    async fn ingest_checked(
        &self,
        items: Vec<crate::feed::IngestItem>,
        ctx: &IngestContext,
    ) -> Result<Vec<crate::feed::Ingested>>;

    /// Reads a customer, following merge redirects. `NotFound` (reason `CUSTOMER_NOT_FOUND`).
    async fn get_customer(&self, id: crate::identifier::CustomerId) -> Result<CustomerView>;

    /// The merges a customer survived, newest first (following a redirect first).
    async fn list_merges(&self, survivor: crate::identifier::CustomerId) -> Result<Vec<MergeView>>;

    /// Undoes a merge exactly (see [`crate::resolution::split_plan`]) and disputes the
    /// identifiers that linked the customers. `NotFound` (reason `MERGE_NOT_FOUND`);
    /// `FailedPrecondition` (reason `MERGE_ALREADY_UNDONE`, or `MERGE_NOT_LATEST` while a later
    /// merge into the same survivor is in force).
    async fn split(
        &self,
        req: &RequestKey,
        merge: crate::resolution::MergeId,
        ctx: &IngestContext,
    ) -> Result<SplitOutcome>;
}
