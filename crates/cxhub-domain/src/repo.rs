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
