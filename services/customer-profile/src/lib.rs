//! `cxhub.profile.v1.CustomerProfileService`: the unified customer (following merge redirects),
//! the merges identity resolution made, and their exact undoing.

use std::sync::Arc;

use cxhub_domain::idempotency::RequestKey;
use cxhub_domain::identifier::{CustomerId, Identifier};
use cxhub_domain::record::SourcePriority;
use cxhub_domain::repo::{CustomerRepo, CustomerView, IngestContext, MergeView};
use cxhub_domain::resolution::{MergeId, ResolutionRules};
use cxhub_domain::{Error, Violations};
use cxhub_feeds::convert::{consent_to_pb, lifecycle_stage_to_pb, postal_address_to_pb};
use cxhub_proto::profile::v1 as pb;
use cxhub_proto::profile::v1::customer_profile_service_server::{
    CustomerProfileService, CustomerProfileServiceServer, SERVICE_NAME,
};
use cxhub_server::{Access, Limits, MethodAccess, ServiceRegistration, principal, to_status};
use prost::Message;
use tonic::{Request, Response, Status};

const READ: Access = Access::Scope("customers:read");
const WRITE: Access = Access::Scope("customers:write");

/// Every RPC of the service and the scope it needs.
pub const METHODS: &[MethodAccess] = &[
    MethodAccess {
        method: "GetCustomer",
        access: READ,
    },
    MethodAccess {
        method: "ListCustomerMerges",
        access: READ,
    },
    MethodAccess {
        method: "SplitCustomer",
        access: WRITE,
    },
];

/// The service's name on the `--services` flag.
pub const SHORT_NAME: &str = "profile";

/// The registration the hub serves. `priority` is the source priority profiles are rebuilt
/// with after a split (the same as the feeds use).
pub fn registration(
    repo: Arc<dyn CustomerRepo>,
    rules: ResolutionRules,
    priority: SourcePriority,
) -> ServiceRegistration {
    ServiceRegistration {
        short_name: SHORT_NAME,
        grpc_name: SERVICE_NAME,
        methods: METHODS,
        add: Box::new(move |routes, limits: &Limits| {
            routes.add_service(
                CustomerProfileServiceServer::new(Profiles {
                    repo,
                    rules,
                    priority,
                })
                .max_decoding_message_size(limits.max_message_bytes)
                .max_encoding_message_size(limits.max_message_bytes),
            );
        }),
    }
}

/// The gRPC handlers over a [`CustomerRepo`].
pub struct Profiles {
    repo: Arc<dyn CustomerRepo>,
    rules: ResolutionRules,
    priority: SourcePriority,
}

fn customer_id(field: &str, value: &str) -> Result<CustomerId, Status> {
    value
        .parse::<CustomerId>()
        .map_err(|description| to_status(Error::invalid_field(field, description)))
}

fn timestamp(t: chrono::DateTime<chrono::Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: t.timestamp(),
        nanos: i32::try_from(t.timestamp_subsec_nanos()).unwrap_or(0),
    }
}

/// The wire form of a customer.
pub fn customer_to_pb(view: CustomerView) -> pb::Customer {
    let p = view.profile;
    let mut emails = Vec::new();
    let mut phones = Vec::new();
    let mut identities = Vec::with_capacity(view.identifiers.len());
    for held in view.identifiers {
        let kind = match &held.identifier {
            Identifier::SourceId { .. } => pb::IdentityKind::SourceId,
            Identifier::Email(e) => {
                emails.push(e.clone());
                pb::IdentityKind::Email
            }
            Identifier::Phone(n) => {
                phones.push(n.clone());
                pb::IdentityKind::Phone
            }
        };
        identities.push(pb::Identity {
            kind: kind as i32,
            value: held.identifier.value(),
            linking: held.linking,
        });
    }
    pb::Customer {
        customer_id: view.id.to_string(),
        created_at: Some(timestamp(view.created_at)),
        updated_at: Some(timestamp(view.updated_at)),
        given_name: p.given_name,
        family_name: p.family_name,
        emails,
        phones,
        addresses: p.addresses.iter().map(postal_address_to_pb).collect(),
        preferred_language: p.preferred_language,
        consents: p.consents.iter().map(consent_to_pb).collect(),
        account_id: p.account_id,
        lifecycle_stage: lifecycle_stage_to_pb(p.lifecycle_stage) as i32,
        provenance: p
            .provenance
            .into_iter()
            .map(|(group, from)| pb::FieldProvenance {
                field_group: group.as_str().to_owned(),
                source: from.source,
                record_id: from.record_id,
                updated_at: Some(timestamp(from.updated_at)),
            })
            .collect(),
        identities,
        record_count: view.record_count,
    }
}

/// The wire form of a merge.
pub fn merge_to_pb(merge: MergeView) -> pb::CustomerMerge {
    pb::CustomerMerge {
        merge_id: merge.id.to_string(),
        survivor_id: merge.record.survivor.to_string(),
        absorbed_ids: merge
            .record
            .absorbed
            .iter()
            .map(|a| a.customer.to_string())
            .collect(),
        rule: merge.record.rule.as_str().to_owned(),
        because: merge
            .record
            .because
            .iter()
            .map(|id| format!("{}:{}", id.kind().as_str(), id.value()))
            .collect(),
        trigger_record: merge
            .record
            .trigger
            .as_ref()
            .map(|k| format!("{}/{}/{}", k.source, k.record_type, k.record_id))
            .unwrap_or_default(),
        merged_at: Some(timestamp(merge.merged_at)),
        merged_by: merge.merged_by,
        split_at: merge.split_at.map(timestamp),
        split_by: merge.split_by.unwrap_or_default(),
    }
}

#[tonic::async_trait]
impl CustomerProfileService for Profiles {
    async fn get_customer(
        &self,
        req: Request<pb::GetCustomerRequest>,
    ) -> Result<Response<pb::GetCustomerResponse>, Status> {
        let id = customer_id("customer_id", &req.get_ref().customer_id)?;
        let view = self.repo.get_customer(id).await.map_err(to_status)?;
        let redirected = view.id != view.requested;
        Ok(Response::new(pb::GetCustomerResponse {
            requested_id: id.to_string(),
            redirected,
            customer: Some(customer_to_pb(view)),
        }))
    }

    async fn list_customer_merges(
        &self,
        req: Request<pb::ListCustomerMergesRequest>,
    ) -> Result<Response<pb::ListCustomerMergesResponse>, Status> {
        let id = customer_id("customer_id", &req.get_ref().customer_id)?;
        let merges = self.repo.list_merges(id).await.map_err(to_status)?;
        Ok(Response::new(pb::ListCustomerMergesResponse {
            merges: merges.into_iter().map(merge_to_pb).collect(),
        }))
    }

    async fn split_customer(
        &self,
        req: Request<pb::SplitCustomerRequest>,
    ) -> Result<Response<pb::SplitCustomerResponse>, Status> {
        let caller = principal(&req);
        let mut v = Violations::new();
        let mut payload = req.get_ref().clone();
        payload.request_id.clear();
        let key = v.check(
            "request_id",
            RequestKey::new(
                &caller.name,
                &format!("{SERVICE_NAME}/SplitCustomer"),
                &req.get_ref().request_id,
                &payload.encode_to_vec(),
            )
            .map_err(|err| {
                Vec::from(err)
                    .into_iter()
                    .map(|f| f.description)
                    .collect::<Vec<_>>()
                    .join("; ")
            }),
        );
        let merge = v.check("merge_id", req.get_ref().merge_id.parse::<MergeId>());
        v.into_result().map_err(to_status)?;
        let (Some(key), Some(merge)) = (key, merge) else {
            return Err(to_status(Error::internal(
                "validation produced no value and no violation",
            )));
        };
        let ctx = IngestContext {
            principal: caller.name,
            rules: self.rules.clone(),
            priority: self.priority.clone(),
        };
        let outcome = self
            .repo
            .split(&key, merge, &ctx)
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::SplitCustomerResponse {
            merge: Some(merge_to_pb(outcome.merge)),
            customers: outcome.customers.into_iter().map(customer_to_pb).collect(),
        }))
    }
}
