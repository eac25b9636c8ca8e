//! `cxhub.touchpoint.v1.TouchpointRegistryService`: touchpoints, their main/sub hierarchy and
//! journeys. Handlers are thin: validate the request into domain types ([`convert`]), call the
//! repository, map the result back.

pub mod convert;
pub mod demo;

use std::sync::Arc;

use cxhub_domain::batch::validate_then_write;
use cxhub_domain::idempotency::RequestKey;
use cxhub_domain::identifier::JunkPolicy;
use cxhub_domain::interaction::{InteractionRepo, MAX_INTERACTIONS, RecordOutcome};
use cxhub_domain::journey::{JourneyFilter, JourneyId};
use cxhub_domain::page::{PageRequest, filter_fingerprint, next_page_token, page_request};
use cxhub_domain::repo::{Lookup, TouchpointRepo};
use cxhub_domain::touchpoint::{self as tp, Key, TouchpointFilter};
use cxhub_domain::{Error, Violations};
use cxhub_proto::touchpoint::v1 as pb;
use cxhub_proto::touchpoint::v1::touchpoint_registry_service_server::{
    SERVICE_NAME, TouchpointRegistryService, TouchpointRegistryServiceServer,
};
use cxhub_server::{
    Access, Limits, MethodAccess, ServiceRegistration, request_key, to_status, validated,
};
use prost::Message;
use tonic::{Request, Response, Status};

const READ: Access = Access::Scope("touchpoints:read");
const WRITE: Access = Access::Scope("touchpoints:write");

/// Every RPC of the service and the scope it needs.
pub const METHODS: &[MethodAccess] = &[
    MethodAccess {
        method: "CreateTouchpoint",
        access: WRITE,
    },
    MethodAccess {
        method: "BatchCreateTouchpoints",
        access: WRITE,
    },
    MethodAccess {
        method: "GetTouchpoint",
        access: READ,
    },
    MethodAccess {
        method: "ListTouchpoints",
        access: READ,
    },
    MethodAccess {
        method: "GetTouchpointTree",
        access: READ,
    },
    MethodAccess {
        method: "UpdateTouchpoint",
        access: WRITE,
    },
    MethodAccess {
        method: "ArchiveTouchpoint",
        access: WRITE,
    },
    MethodAccess {
        method: "RestoreTouchpoint",
        access: WRITE,
    },
    MethodAccess {
        method: "DeleteTouchpoint",
        access: WRITE,
    },
    MethodAccess {
        method: "CreateJourney",
        access: WRITE,
    },
    MethodAccess {
        method: "GetJourney",
        access: READ,
    },
    MethodAccess {
        method: "ListJourneys",
        access: READ,
    },
    MethodAccess {
        method: "UpdateJourney",
        access: WRITE,
    },
    MethodAccess {
        method: "ArchiveJourney",
        access: WRITE,
    },
    MethodAccess {
        method: "RestoreJourney",
        access: WRITE,
    },
    MethodAccess {
        method: "DeleteJourney",
        access: WRITE,
    },
    MethodAccess {
        method: "RecordInteractions",
        access: WRITE,
    },
];

/// The service's name on the `--services` flag.
pub const SHORT_NAME: &str = "touchpoints";

/// The registration the hub serves: touchpoints and journeys in `repo`, interactions in
/// `interactions`, source customer ids of interactions judged junk by `junk` (the feeds' policy,
/// so that an id a feed record may not use is refused here too).
pub fn registration(
    repo: Arc<dyn TouchpointRepo>,
    interactions: Arc<dyn InteractionRepo>,
    junk: JunkPolicy,
) -> ServiceRegistration {
    ServiceRegistration {
        short_name: SHORT_NAME,
        grpc_name: SERVICE_NAME,
        methods: METHODS,
        add: Box::new(move |routes, limits: &Limits| {
            routes.add_service(
                TouchpointRegistryServiceServer::new(TouchpointRegistry::new(
                    repo,
                    interactions,
                    junk,
                ))
                .max_decoding_message_size(limits.max_message_bytes)
                .max_encoding_message_size(limits.max_message_bytes),
            );
        }),
    }
}

/// The gRPC handlers over a [`TouchpointRepo`] and an [`InteractionRepo`].
pub struct TouchpointRegistry {
    repo: Arc<dyn TouchpointRepo>,
    interactions: Arc<dyn InteractionRepo>,
    junk: JunkPolicy,
}

impl TouchpointRegistry {
    /// Handlers over `repo` (touchpoints and journeys) and `interactions`, refusing the source
    /// customer ids of interactions that `junk` calls junk.
    pub fn new(
        repo: Arc<dyn TouchpointRepo>,
        interactions: Arc<dyn InteractionRepo>,
        junk: JunkPolicy,
    ) -> Self {
        Self {
            repo,
            interactions,
            junk,
        }
    }
}

/// Validates a mutating request that names one resource by id (archive, restore, delete):
/// its idempotency key and the id, every violation at once.
fn id_request<M: Message + Clone, Id: std::str::FromStr<Err = String>>(
    req: &Request<M>,
    method: &str,
    request_id: &str,
    id: &str,
    clear_id: impl FnOnce(&mut M),
) -> Result<(RequestKey, Id), Status> {
    let mut v = Violations::new();
    let key = request_key(req, SERVICE_NAME, method, request_id, clear_id, &mut v);
    let id = v.check("id", id.parse::<Id>());
    validated(v, key.zip(id))
}

/// Validates `page_size` and `page_token` (bound to the filter `fingerprint`) into `v`.
fn page(
    v: &mut Violations,
    page_size: i32,
    page_token: &str,
    fingerprint: &str,
) -> Option<PageRequest> {
    match page_request(page_size, page_token, fingerprint) {
        Ok(page) => Some(page),
        Err(err) => {
            for violation in Vec::from(err) {
                v.add(violation.field, violation.description);
            }
            None
        }
    }
}

fn optional_etag(etag: &str) -> Option<&str> {
    (!etag.is_empty()).then_some(etag)
}

fn lookup<Id: std::str::FromStr<Err = String>>(
    id: &str,
    key: &str,
    v: &mut Violations,
) -> Option<Lookup<Id>> {
    match (id.is_empty(), key.is_empty()) {
        (false, true) => v.check("id", id.parse()).map(Lookup::Id),
        (true, false) => v.check("key", Key::parse(key)).map(Lookup::Key),
        _ => {
            v.add("lookup", "give exactly one of id or key");
            None
        }
    }
}

fn ok<T>(value: T) -> Result<Response<T>, Status> {
    Ok(Response::new(value))
}

#[tonic::async_trait]
impl TouchpointRegistryService for TouchpointRegistry {
    async fn create_touchpoint(
        &self,
        req: Request<pb::CreateTouchpointRequest>,
    ) -> Result<Response<pb::CreateTouchpointResponse>, Status> {
        let mut v = Violations::new();
        let key = request_key(
            &req,
            SERVICE_NAME,
            "CreateTouchpoint",
            &req.get_ref().request_id,
            |m| m.request_id.clear(),
            &mut v,
        );
        let item = v.required(req.get_ref().touchpoint.as_ref(), "touchpoint", |t, v| {
            convert::new_touchpoint(t, "touchpoint", v)
        });
        let (key, item) = validated(v, key.zip(item))?;
        let created = self
            .repo
            .create_touchpoints(&key, vec![item])
            .await
            .map_err(to_status)?;
        ok(pb::CreateTouchpointResponse {
            touchpoint: created.into_iter().next().map(convert::touchpoint_to_pb),
        })
    }

    async fn batch_create_touchpoints(
        &self,
        req: Request<pb::BatchCreateTouchpointsRequest>,
    ) -> Result<Response<pb::BatchCreateTouchpointsResponse>, Status> {
        let mut v = Violations::new();
        let key = request_key(
            &req,
            SERVICE_NAME,
            "BatchCreateTouchpoints",
            &req.get_ref().request_id,
            |m| m.request_id.clear(),
            &mut v,
        );
        let given = &req.get_ref().touchpoints;
        if given.is_empty() || given.len() > tp::MAX_BATCH {
            v.add(
                "touchpoints",
                format!("give 1 to {} touchpoints", tp::MAX_BATCH),
            );
        }
        // Validate every item (no short-circuit) so every bad one is reported.
        let items: Vec<_> = given
            .iter()
            .enumerate()
            .map(|(i, t)| convert::new_touchpoint(t, &format!("touchpoints[{i}]"), &mut v))
            .collect();
        let items: Option<Vec<_>> = items.into_iter().collect();
        let (key, items) = validated(v, key.zip(items))?;
        let created = self
            .repo
            .create_touchpoints(&key, items)
            .await
            .map_err(to_status)?;
        ok(pb::BatchCreateTouchpointsResponse {
            touchpoints: created.into_iter().map(convert::touchpoint_to_pb).collect(),
        })
    }

    async fn get_touchpoint(
        &self,
        req: Request<pb::GetTouchpointRequest>,
    ) -> Result<Response<pb::GetTouchpointResponse>, Status> {
        use pb::get_touchpoint_request::Lookup as L;
        let mut v = Violations::new();
        let by = match &req.get_ref().lookup {
            Some(L::Id(id)) => lookup(id, "", &mut v),
            Some(L::Key(key)) => lookup("", key, &mut v),
            None => lookup("", "", &mut v),
        };
        let by = validated(v, by)?;
        let found = self.repo.get_touchpoint(&by).await.map_err(to_status)?;
        ok(pb::GetTouchpointResponse {
            touchpoint: Some(convert::touchpoint_to_pb(found)),
        })
    }

    async fn list_touchpoints(
        &self,
        req: Request<pb::ListTouchpointsRequest>,
    ) -> Result<Response<pb::ListTouchpointsResponse>, Status> {
        let r = req.get_ref();
        let mut v = Violations::new();
        let channel = v.check("channel", convert::channel_from_pb(r.channel));
        let stage = v.check("stage", convert::stage_from_pb(r.stage));
        let state = v.check("state", convert::state_from_pb(r.state));
        let parent_id = if r.parent_id.is_empty() {
            None
        } else {
            v.check("parent_id", r.parent_id.parse())
                .map(Some)
                .unwrap_or(None)
        };
        if r.roots_only && !r.parent_id.is_empty() {
            v.add("roots_only", "cannot be combined with parent_id");
        }
        let filter = TouchpointFilter {
            channel: channel.flatten(),
            stage: stage.flatten(),
            department: (!r.department.is_empty()).then(|| r.department.clone()),
            parent_id,
            roots_only: r.roots_only,
            state: state.flatten(),
            labels: r.labels.clone(),
            main_only: r.main_only,
        };
        let fingerprint = filter_fingerprint(&filter);
        let page = page(&mut v, r.page_size, &r.page_token, &fingerprint);
        let page = validated(v, page)?;
        let found = self
            .repo
            .list_touchpoints(&filter, &page)
            .await
            .map_err(to_status)?;
        ok(pb::ListTouchpointsResponse {
            next_page_token: next_page_token(found.next_after.as_deref(), &fingerprint),
            touchpoints: found
                .items
                .into_iter()
                .map(convert::touchpoint_to_pb)
                .collect(),
        })
    }

    async fn get_touchpoint_tree(
        &self,
        req: Request<pb::GetTouchpointTreeRequest>,
    ) -> Result<Response<pb::GetTouchpointTreeResponse>, Status> {
        let r = req.get_ref();
        let mut v = Violations::new();
        let root = if r.root_id.is_empty() && r.root_key.is_empty() {
            Some(None)
        } else {
            lookup::<tp::TouchpointId>(&r.root_id, &r.root_key, &mut v).map(Some)
        };
        let depth = usize::try_from(r.max_depth).ok().filter(|d| *d <= 32);
        if depth.is_none() {
            v.add("max_depth", "must be between 0 and 32");
        }
        let (root, depth) = validated(v, root.zip(depth))?;
        let root_id = match root {
            Some(by) => Some(self.repo.get_touchpoint(&by).await.map_err(to_status)?.id),
            None => None,
        };
        let all = self
            .repo
            .all_touchpoints(r.include_archived)
            .await
            .map_err(to_status)?;
        ok(pb::GetTouchpointTreeResponse {
            roots: tp::build_tree(all, root_id, depth)
                .into_iter()
                .map(convert::tree_to_pb)
                .collect(),
        })
    }

    async fn update_touchpoint(
        &self,
        req: Request<pb::UpdateTouchpointRequest>,
    ) -> Result<Response<pb::UpdateTouchpointResponse>, Status> {
        let mut v = Violations::new();
        let key = request_key(
            &req,
            SERVICE_NAME,
            "UpdateTouchpoint",
            &req.get_ref().request_id,
            |m| m.request_id.clear(),
            &mut v,
        );
        let r = req.get_ref();
        let given = r.touchpoint.clone().unwrap_or_default();
        if r.touchpoint.is_none() {
            v.add("touchpoint", "required");
        }
        let id = v.check("touchpoint.id", given.id.parse::<tp::TouchpointId>());
        let patch = convert::touchpoint_patch(&given, r.update_mask.as_ref(), &mut v);
        let (key, id) = validated(v, key.zip(id))?;
        let updated = self
            .repo
            .update_touchpoint(&key, id, optional_etag(&given.etag), patch)
            .await
            .map_err(to_status)?;
        ok(pb::UpdateTouchpointResponse {
            touchpoint: Some(convert::touchpoint_to_pb(updated)),
        })
    }

    async fn archive_touchpoint(
        &self,
        req: Request<pb::ArchiveTouchpointRequest>,
    ) -> Result<Response<pb::ArchiveTouchpointResponse>, Status> {
        let r = req.get_ref();
        let (key, id) = id_request::<_, tp::TouchpointId>(
            &req,
            "ArchiveTouchpoint",
            &r.request_id,
            &r.id,
            |m| m.request_id.clear(),
        )?;
        let change = self
            .repo
            .archive_touchpoint(&key, id, optional_etag(&r.etag), r.cascade)
            .await
            .map_err(to_status)?;
        ok(pb::ArchiveTouchpointResponse {
            archived_ids: change.changed.iter().map(ToString::to_string).collect(),
            touchpoint: Some(convert::touchpoint_to_pb(change.touchpoint)),
        })
    }

    async fn restore_touchpoint(
        &self,
        req: Request<pb::RestoreTouchpointRequest>,
    ) -> Result<Response<pb::RestoreTouchpointResponse>, Status> {
        let r = req.get_ref();
        let (key, id) = id_request::<_, tp::TouchpointId>(
            &req,
            "RestoreTouchpoint",
            &r.request_id,
            &r.id,
            |m| m.request_id.clear(),
        )?;
        let change = self
            .repo
            .restore_touchpoint(&key, id, optional_etag(&r.etag), r.cascade)
            .await
            .map_err(to_status)?;
        ok(pb::RestoreTouchpointResponse {
            restored_ids: change.changed.iter().map(ToString::to_string).collect(),
            touchpoint: Some(convert::touchpoint_to_pb(change.touchpoint)),
        })
    }

    async fn delete_touchpoint(
        &self,
        req: Request<pb::DeleteTouchpointRequest>,
    ) -> Result<Response<pb::DeleteTouchpointResponse>, Status> {
        let r = req.get_ref();
        let (key, id) = id_request::<_, tp::TouchpointId>(
            &req,
            "DeleteTouchpoint",
            &r.request_id,
            &r.id,
            |m| m.request_id.clear(),
        )?;
        self.repo
            .delete_touchpoint(&key, id, optional_etag(&r.etag))
            .await
            .map_err(to_status)?;
        ok(pb::DeleteTouchpointResponse {})
    }

    async fn create_journey(
        &self,
        req: Request<pb::CreateJourneyRequest>,
    ) -> Result<Response<pb::CreateJourneyResponse>, Status> {
        let mut v = Violations::new();
        let key = request_key(
            &req,
            SERVICE_NAME,
            "CreateJourney",
            &req.get_ref().request_id,
            |m| m.request_id.clear(),
            &mut v,
        );
        let item = v.required(req.get_ref().journey.as_ref(), "journey", |j, v| {
            convert::new_journey(j, "journey", v)
        });
        let (key, item) = validated(v, key.zip(item))?;
        let created = self
            .repo
            .create_journey(&key, item)
            .await
            .map_err(to_status)?;
        ok(pb::CreateJourneyResponse {
            journey: Some(convert::journey_to_pb(created)),
        })
    }

    async fn get_journey(
        &self,
        req: Request<pb::GetJourneyRequest>,
    ) -> Result<Response<pb::GetJourneyResponse>, Status> {
        use pb::get_journey_request::Lookup as L;
        let mut v = Violations::new();
        let by = match &req.get_ref().lookup {
            Some(L::Id(id)) => lookup(id, "", &mut v),
            Some(L::Key(key)) => lookup("", key, &mut v),
            None => lookup("", "", &mut v),
        };
        let by = validated(v, by)?;
        let found = self.repo.get_journey(&by).await.map_err(to_status)?;
        ok(pb::GetJourneyResponse {
            journey: Some(convert::journey_to_pb(found)),
        })
    }

    async fn list_journeys(
        &self,
        req: Request<pb::ListJourneysRequest>,
    ) -> Result<Response<pb::ListJourneysResponse>, Status> {
        let r = req.get_ref();
        let mut v = Violations::new();
        let state = v.check("state", convert::state_from_pb(r.state));
        let touchpoint_key = if r.touchpoint_key.is_empty() {
            Some(None)
        } else {
            v.check("touchpoint_key", Key::parse(&r.touchpoint_key))
                .map(Some)
        };
        let filter = JourneyFilter {
            state: state.flatten(),
            touchpoint_key: touchpoint_key.flatten(),
        };
        let fingerprint = filter_fingerprint(&filter);
        let page = page(&mut v, r.page_size, &r.page_token, &fingerprint);
        let page = validated(v, page)?;
        let found = self
            .repo
            .list_journeys(&filter, &page)
            .await
            .map_err(to_status)?;
        ok(pb::ListJourneysResponse {
            next_page_token: next_page_token(found.next_after.as_deref(), &fingerprint),
            journeys: found
                .items
                .into_iter()
                .map(convert::journey_to_pb)
                .collect(),
        })
    }

    async fn update_journey(
        &self,
        req: Request<pb::UpdateJourneyRequest>,
    ) -> Result<Response<pb::UpdateJourneyResponse>, Status> {
        let mut v = Violations::new();
        let key = request_key(
            &req,
            SERVICE_NAME,
            "UpdateJourney",
            &req.get_ref().request_id,
            |m| m.request_id.clear(),
            &mut v,
        );
        let r = req.get_ref();
        let given = r.journey.clone().unwrap_or_default();
        if r.journey.is_none() {
            v.add("journey", "required");
        }
        let id = v.check("journey.id", given.id.parse());
        let patch = convert::journey_patch(&given, r.update_mask.as_ref(), &mut v);
        let (key, id) = validated(v, key.zip(id))?;
        let updated = self
            .repo
            .update_journey(&key, id, optional_etag(&given.etag), patch)
            .await
            .map_err(to_status)?;
        ok(pb::UpdateJourneyResponse {
            journey: Some(convert::journey_to_pb(updated)),
        })
    }

    async fn archive_journey(
        &self,
        req: Request<pb::ArchiveJourneyRequest>,
    ) -> Result<Response<pb::ArchiveJourneyResponse>, Status> {
        let r = req.get_ref();
        let (key, id) =
            id_request::<_, JourneyId>(&req, "ArchiveJourney", &r.request_id, &r.id, |m| {
                m.request_id.clear()
            })?;
        let journey = self
            .repo
            .archive_journey(&key, id, optional_etag(&r.etag))
            .await
            .map_err(to_status)?;
        ok(pb::ArchiveJourneyResponse {
            journey: Some(convert::journey_to_pb(journey)),
        })
    }

    async fn restore_journey(
        &self,
        req: Request<pb::RestoreJourneyRequest>,
    ) -> Result<Response<pb::RestoreJourneyResponse>, Status> {
        let r = req.get_ref();
        let (key, id) =
            id_request::<_, JourneyId>(&req, "RestoreJourney", &r.request_id, &r.id, |m| {
                m.request_id.clear()
            })?;
        let journey = self
            .repo
            .restore_journey(&key, id, optional_etag(&r.etag))
            .await
            .map_err(to_status)?;
        ok(pb::RestoreJourneyResponse {
            journey: Some(convert::journey_to_pb(journey)),
        })
    }

    async fn delete_journey(
        &self,
        req: Request<pb::DeleteJourneyRequest>,
    ) -> Result<Response<pb::DeleteJourneyResponse>, Status> {
        let r = req.get_ref();
        let (key, id) =
            id_request::<_, JourneyId>(&req, "DeleteJourney", &r.request_id, &r.id, |m| {
                m.request_id.clear()
            })?;
        self.repo
            .delete_journey(&key, id, optional_etag(&r.etag))
            .await
            .map_err(to_status)?;
        ok(pb::DeleteJourneyResponse {})
    }

    async fn record_interactions(
        &self,
        req: Request<pb::RecordInteractionsRequest>,
    ) -> Result<Response<pb::RecordInteractionsResponse>, Status> {
        let inputs = &req.get_ref().interactions;
        check_interaction_count(inputs.len()).map_err(to_status)?;
        let now = chrono::Utc::now();
        let outcomes = validate_then_write(
            inputs,
            |index, input| convert::new_interaction(input, index, now, &self.junk),
            |valid| self.interactions.record_interactions(valid),
        )
        .await
        .map_err(to_status)?;
        let results: Vec<pb::InteractionResult> = outcomes
            .into_iter()
            .enumerate()
            .map(|(index, outcome)| {
                let mut result = pb::InteractionResult {
                    index: i32::try_from(index).unwrap_or(i32::MAX),
                    ..Default::default()
                };
                match outcome {
                    Ok((outcome, customer)) => {
                        result.outcome = match outcome {
                            RecordOutcome::Created => pb::InteractionOutcome::Created,
                            RecordOutcome::Unchanged => pb::InteractionOutcome::Unchanged,
                            RecordOutcome::Conflict => pb::InteractionOutcome::Conflict,
                        } as i32;
                        result.customer_id = customer.to_string();
                    }
                    Err(violations) => rejected(&mut result, violations),
                }
                result
            })
            .collect();
        let count =
            |o: pb::InteractionOutcome| results.iter().filter(|r| r.outcome == o as i32).count();
        tracing::info!(
            interactions = results.len(),
            created = count(pb::InteractionOutcome::Created),
            unchanged = count(pb::InteractionOutcome::Unchanged),
            conflict = count(pb::InteractionOutcome::Conflict),
            rejected = count(pb::InteractionOutcome::Rejected),
            "interactions recorded"
        );
        ok(pb::RecordInteractionsResponse { results })
    }
}

/// Refuses an empty call and one over [`MAX_INTERACTIONS`] (reason `BATCH_TOO_LARGE`).
fn check_interaction_count(len: usize) -> Result<(), Error> {
    if len == 0 {
        return Err(Error::invalid_field(
            "interactions",
            "at least one interaction is required",
        ));
    }
    if len > MAX_INTERACTIONS {
        return Err(Error::InvalidArgument {
            reason: "BATCH_TOO_LARGE",
            violations: vec![cxhub_domain::FieldViolation {
                field: "interactions".into(),
                description: format!(
                    "{len} interactions in one call; at most {MAX_INTERACTIONS}: split the call"
                ),
            }],
        });
    }
    Ok(())
}

fn rejected(result: &mut pb::InteractionResult, violations: Vec<cxhub_domain::FieldViolation>) {
    result.outcome = pb::InteractionOutcome::Rejected as i32;
    result.violations = violations
        .into_iter()
        .map(|v| cxhub_proto::common::v1::FieldViolation {
            field: v.field,
            description: v.description,
        })
        .collect();
}

/// Loads the demo registry (about 350 touchpoints and a few journeys) through the repository,
/// as an idempotent batch: running it twice changes nothing. Returns how many touchpoints and
/// journeys were created (zero when the registry already holds touchpoints).
pub async fn seed_demo(repo: &dyn TouchpointRepo) -> cxhub_domain::Result<(usize, usize)> {
    if !repo.all_touchpoints(true).await?.is_empty() {
        return Ok((0, 0));
    }
    let mut v = Violations::new();
    let items: Vec<_> = demo::touchpoints()
        .iter()
        .enumerate()
        .map(|(i, t)| convert::new_touchpoint(t, &format!("touchpoints[{i}]"), &mut v))
        .collect();
    let journeys: Vec<_> = demo::journeys()
        .iter()
        .enumerate()
        .map(|(i, j)| convert::new_journey(j, &format!("journeys[{i}]"), &mut v))
        .collect();
    v.into_result()?;
    let items: Option<Vec<_>> = items.into_iter().collect();
    let journeys: Option<Vec<_>> = journeys.into_iter().collect();
    let (items, journeys) = items
        .zip(journeys)
        .ok_or_else(|| Error::internal("demo data did not validate"))?;
    let batch = RequestKey::new("system", "demo-seed/touchpoints", "demo-seed-v1", b"")?;
    let created = repo.create_touchpoints(&batch, items).await?;
    let journey_count = journeys.len();
    for (i, journey) in journeys.into_iter().enumerate() {
        let key = RequestKey::new(
            "system",
            "demo-seed/journeys",
            &format!("demo-seed-v1-{i}"),
            b"",
        )?;
        repo.create_journey(&key, journey).await?;
    }
    Ok((created.len(), journey_count))
}
