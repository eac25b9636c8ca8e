//! `cxhub.profile.v1.CustomerProfileService`: the unified customer (following merge redirects),
//! read by id, by identifier, by prefix search, as a 360° view and as timelines of interactions
//! and transactions ([`convert`] validates those requests); the merges identity resolution
//! made, and their exact undoing.

pub mod convert;
pub mod privacy;
pub mod watch;

use std::sync::Arc;

use cxhub_domain::customer_query::CustomerQueryRepo;
use cxhub_domain::idempotency::RequestKey;
use cxhub_domain::identifier::{CustomerId, Identifier};
use cxhub_domain::page::next_page_token;
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

pub use privacy::{audit_read, privacy_registration};

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
    MethodAccess {
        method: "WatchCustomerChanges",
        access: READ,
    },
    MethodAccess {
        method: "BatchGetCustomers",
        access: READ,
    },
    MethodAccess {
        method: "LookupCustomer",
        access: READ,
    },
    MethodAccess {
        method: "SearchCustomers",
        access: READ,
    },
    MethodAccess {
        method: "GetCustomer360",
        access: READ,
    },
    MethodAccess {
        method: "ListCustomerInteractions",
        access: READ,
    },
    MethodAccess {
        method: "ListCustomerTransactions",
        access: READ,
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
    audit: Arc<dyn cxhub_domain::privacy::AuditLog>,
    changes: watch::Watcher,
    reads: Reads,
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
                    audit,
                    changes,
                    queries: reads.repo,
                    default_region: reads.default_region,
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
    audit: Arc<dyn cxhub_domain::privacy::AuditLog>,
    changes: watch::Watcher,
    queries: Arc<dyn CustomerQueryRepo>,
    default_region: String,
}

/// What the read RPCs (BatchGetCustomers, LookupCustomer, SearchCustomers, GetCustomer360,
/// ListCustomerInteractions, ListCustomerTransactions) need.
pub struct Reads {
    /// The reads' storage.
    pub repo: Arc<dyn CustomerQueryRepo>,
    /// The region phones without a country code are read in (the feeds' `default_region`).
    pub default_region: String,
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
    type WatchCustomerChangesStream = watch::ChangeStream;

    async fn watch_customer_changes(
        &self,
        req: Request<pb::WatchCustomerChangesRequest>,
    ) -> Result<Response<Self::WatchCustomerChangesStream>, Status> {
        self.changes.watch(req.get_ref()).await.map(Response::new)
    }

    async fn get_customer(
        &self,
        req: Request<pb::GetCustomerRequest>,
    ) -> Result<Response<pb::GetCustomerResponse>, Status> {
        let id = customer_id("customer_id", &req.get_ref().customer_id)?;
        let view = self.repo.get_customer(id).await.map_err(to_status)?;
        audit_read(&*self.audit, &req, "GetCustomer", &[view.id]).await?;
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

    async fn batch_get_customers(
        &self,
        req: Request<pb::BatchGetCustomersRequest>,
    ) -> Result<Response<pb::BatchGetCustomersResponse>, Status> {
        let ids = convert::batch_ids(&req.get_ref().customer_ids).map_err(to_status)?;
        let views = self
            .queries
            .batch_get_customers(&ids)
            .await
            .map_err(to_status)?;
        let found: Vec<CustomerId> = views.iter().flatten().map(|v| v.id).collect();
        audit_read(&*self.audit, &req, "BatchGetCustomers", &found).await?;
        Ok(Response::new(pb::BatchGetCustomersResponse {
            results: ids
                .into_iter()
                .zip(views)
                .map(|(id, view)| pb::BatchGetCustomerResult {
                    requested_id: id.to_string(),
                    found: view.is_some(),
                    redirected: view.as_ref().is_some_and(|v| v.id != id),
                    customer: view.map(customer_to_pb),
                })
                .collect(),
        }))
    }

    async fn lookup_customer(
        &self,
        req: Request<pb::LookupCustomerRequest>,
    ) -> Result<Response<pb::LookupCustomerResponse>, Status> {
        let identifier =
            convert::lookup_identifier(req.get_ref(), &self.default_region).map_err(to_status)?;
        let found = self
            .queries
            .lookup_customers(&identifier)
            .await
            .map_err(to_status)?;
        let ids: Vec<CustomerId> = found.customers.iter().map(|c| c.id).collect();
        audit_read(&*self.audit, &req, "LookupCustomer", &ids).await?;
        Ok(Response::new(pb::LookupCustomerResponse {
            identity: Some(convert::identity_to_pb(&found.identifier, found.linking)),
            customers: found.customers.into_iter().map(customer_to_pb).collect(),
            linking: found.linking,
        }))
    }

    async fn search_customers(
        &self,
        req: Request<pb::SearchCustomersRequest>,
    ) -> Result<Response<pb::SearchCustomersResponse>, Status> {
        let (filter, page, fingerprint) =
            convert::search_request(req.get_ref()).map_err(to_status)?;
        let hits = self
            .queries
            .search_customers(&filter, &page)
            .await
            .map_err(to_status)?;
        let ids: Vec<CustomerId> = hits.items.iter().map(|c| c.id).collect();
        audit_read(&*self.audit, &req, "SearchCustomers", &ids).await?;
        Ok(Response::new(pb::SearchCustomersResponse {
            next_page_token: next_page_token(hits.next_after.as_deref(), &fingerprint),
            customers: hits.items.into_iter().map(convert::summary_to_pb).collect(),
        }))
    }

    async fn get_customer360(
        &self,
        req: Request<pb::GetCustomer360Request>,
    ) -> Result<Response<pb::GetCustomer360Response>, Status> {
        let (id, recent) = convert::customer_360_request(req.get_ref()).map_err(to_status)?;
        let view = self
            .queries
            .customer_360(id, recent, chrono::Utc::now())
            .await
            .map_err(to_status)?;
        audit_read(&*self.audit, &req, "GetCustomer360", &[view.customer.id]).await?;
        Ok(Response::new(convert::customer_360_to_pb(id, view)))
    }

    async fn list_customer_interactions(
        &self,
        req: Request<pb::ListCustomerInteractionsRequest>,
    ) -> Result<Response<pb::ListCustomerInteractionsResponse>, Status> {
        let r = req.get_ref();
        let (id, range, page, fingerprint) = convert::history_request(
            &r.customer_id,
            r.from.as_ref(),
            r.to.as_ref(),
            r.page_size,
            &r.page_token,
        )
        .map_err(to_status)?;
        let (customer, found) = self
            .queries
            .list_interactions(id, &range, &page)
            .await
            .map_err(to_status)?;
        audit_read(&*self.audit, &req, "ListCustomerInteractions", &[customer]).await?;
        Ok(Response::new(pb::ListCustomerInteractionsResponse {
            customer_id: customer.to_string(),
            next_page_token: next_page_token(found.next_after.as_deref(), &fingerprint),
            interactions: found
                .items
                .into_iter()
                .map(convert::interaction_to_pb)
                .collect(),
        }))
    }

    async fn list_customer_transactions(
        &self,
        req: Request<pb::ListCustomerTransactionsRequest>,
    ) -> Result<Response<pb::ListCustomerTransactionsResponse>, Status> {
        let r = req.get_ref();
        let (id, range, page, fingerprint) = convert::history_request(
            &r.customer_id,
            r.from.as_ref(),
            r.to.as_ref(),
            r.page_size,
            &r.page_token,
        )
        .map_err(to_status)?;
        let (customer, found) = self
            .queries
            .list_transactions(id, &range, &page)
            .await
            .map_err(to_status)?;
        audit_read(&*self.audit, &req, "ListCustomerTransactions", &[customer]).await?;
        Ok(Response::new(pb::ListCustomerTransactionsResponse {
            customer_id: customer.to_string(),
            next_page_token: next_page_token(found.next_after.as_deref(), &fingerprint),
            transactions: found
                .items
                .into_iter()
                .map(convert::transaction_to_pb)
                .collect(),
        }))
    }
}
