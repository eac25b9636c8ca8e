//! `cxhub.profile.v1.CustomerPrivacyService`: consents and their history, erasure with
//! suppression, export as a streamed JSON document, and the audit trail (with
//! [`audit_read`], the helper every read of personal data calls).

use std::collections::BTreeSet;
use std::sync::Arc;

use chrono::{DateTime, SubsecRound, Utc};
use cxhub_domain::feed::{Consent, ConsentChannel, ConsentPurpose, ConsentStatus};
use cxhub_domain::idempotency::RequestKey;
use cxhub_domain::identifier::CustomerId;
use cxhub_domain::page::{filter_fingerprint, next_page_token, page_request};
use cxhub_domain::privacy::{
    AuditEvent, AuditFilter, AuditLog, CONSENT_SOURCE, ConsentChange, ConsentUpdate,
    CustomerExport, Erasure, MAX_CONSENTS_PER_UPDATE, PrivacyRepo, StoredRecord,
    check_consent_source,
};
use cxhub_domain::{Error, Violations};
use cxhub_feeds::convert::{
    consent_channel_to_pb, consent_purpose_to_pb, consent_to_pb, record_from_pb, timestamp,
};
use cxhub_proto::feeds::v1 as feeds;
use cxhub_proto::profile::v1 as pb;
use cxhub_proto::profile::v1::customer_privacy_service_server::{
    CustomerPrivacyService, CustomerPrivacyServiceServer, SERVICE_NAME,
};
use cxhub_server::{Access, Limits, MethodAccess, ServiceRegistration, principal, to_status};
use prost::Message;
use serde_json::{Value, json};
use tonic::{Request, Response, Status};

/// The media type of the export document.
pub const EXPORT_CONTENT_TYPE: &str = "application/json";
/// The format name written at the top of every export document.
pub const EXPORT_FORMAT: &str = "cxhub.customer-export.v1";
/// Largest chunk of an export stream.
pub const EXPORT_CHUNK_BYTES: usize = 64 * 1024;
/// How far in the future a consent's `given_at` may be (clock skew between systems).
const CLOCK_SKEW: chrono::Duration = chrono::Duration::minutes(5);

/// Every RPC of the service and the scope it needs.
pub const METHODS: &[MethodAccess] = &[
    MethodAccess {
        method: "UpdateConsents",
        access: Access::Scope("customers:write"),
    },
    MethodAccess {
        method: "ListConsentHistory",
        access: Access::Scope("customers:read"),
    },
    MethodAccess {
        method: "EraseCustomer",
        access: Access::Scope("customers:erase"),
    },
    MethodAccess {
        method: "ExportCustomer",
        access: Access::Scope("customers:export"),
    },
    MethodAccess {
        method: "ListAuditEvents",
        access: Access::Scope("audit:read"),
    },
];

/// The registration the hub serves (under the `profile` service name).
pub fn privacy_registration(
    repo: Arc<dyn PrivacyRepo>,
    audit: Arc<dyn AuditLog>,
) -> ServiceRegistration {
    ServiceRegistration {
        short_name: crate::SHORT_NAME,
        grpc_name: SERVICE_NAME,
        methods: METHODS,
        add: Box::new(move |routes, limits: &Limits| {
            routes.add_service(
                CustomerPrivacyServiceServer::new(Privacy { repo, audit })
                    .max_decoding_message_size(limits.max_message_bytes)
                    .max_encoding_message_size(limits.max_message_bytes),
            );
        }),
    }
}

/// Records that the caller of `req` read the personal data of `customers` through `rpc`. A
/// read whose audit event cannot be written is refused (the error is returned).
pub async fn audit_read<T>(
    audit: &dyn AuditLog,
    req: &Request<T>,
    rpc: &str,
    customers: &[CustomerId],
) -> Result<(), Status> {
    audit
        .record(&principal(req).name, rpc, customers)
        .await
        .map_err(to_status)
}

/// The gRPC handlers.
pub struct Privacy {
    repo: Arc<dyn PrivacyRepo>,
    audit: Arc<dyn AuditLog>,
}

fn request_key<T: Message + Clone>(
    v: &mut Violations,
    caller: &str,
    method: &str,
    request_id: &str,
    message: &T,
    clear: impl FnOnce(&mut T),
) -> Option<RequestKey> {
    let mut payload = message.clone();
    clear(&mut payload);
    v.check(
        "request_id",
        RequestKey::new(
            caller,
            &format!("{SERVICE_NAME}/{method}"),
            request_id,
            &payload.encode_to_vec(),
        )
        .map_err(|err| {
            Vec::from(err)
                .into_iter()
                .map(|f| f.description)
                .collect::<Vec<_>>()
                .join("; ")
        }),
    )
}

fn customer(v: &mut Violations, field: &str, value: &str) -> Option<CustomerId> {
    v.check(field, value.parse::<CustomerId>())
}

fn time_of(t: &prost_types::Timestamp) -> Result<DateTime<Utc>, String> {
    let nanos = u32::try_from(t.nanos).map_err(|_| "nanos out of range".to_owned())?;
    DateTime::from_timestamp(t.seconds, nanos)
        .map(|t| t.trunc_subsecs(6))
        .ok_or_else(|| "not a valid time".to_owned())
}

fn validation_gap() -> Status {
    to_status(Error::internal(
        "validation produced no value and no violation",
    ))
}

/// Validates the consents of an update: every violation, with paths `consents[i].…`.
fn consents_from_pb(
    v: &mut Violations,
    consents: &[feeds::Consent],
    now: DateTime<Utc>,
) -> Vec<Consent> {
    if consents.is_empty() {
        v.add("consents", "at least one consent answer is required");
    }
    if consents.len() > MAX_CONSENTS_PER_UPDATE {
        v.add(
            "consents",
            format!("at most {MAX_CONSENTS_PER_UPDATE} answers in one update"),
        );
    }
    let mut seen = BTreeSet::new();
    let mut out = Vec::with_capacity(consents.len());
    for (i, c) in consents.iter().enumerate() {
        let purpose = v.check(
            format!("consents[{i}].purpose"),
            match feeds::ConsentPurpose::try_from(c.purpose) {
                Ok(feeds::ConsentPurpose::Unspecified) => {
                    Err("required: marketing, analytics, surveys or profiling".to_owned())
                }
                Ok(feeds::ConsentPurpose::Marketing) => Ok(ConsentPurpose::Marketing),
                Ok(feeds::ConsentPurpose::Analytics) => Ok(ConsentPurpose::Analytics),
                Ok(feeds::ConsentPurpose::Surveys) => Ok(ConsentPurpose::Surveys),
                Ok(feeds::ConsentPurpose::Profiling) => Ok(ConsentPurpose::Profiling),
                Err(_) => Err(format!("unknown consent purpose {}", c.purpose)),
            },
        );
        let channel = v.check(
            format!("consents[{i}].channel"),
            match feeds::ConsentChannel::try_from(c.channel) {
                Ok(feeds::ConsentChannel::Unspecified) => Ok(ConsentChannel::Any),
                Ok(feeds::ConsentChannel::Email) => Ok(ConsentChannel::Email),
                Ok(feeds::ConsentChannel::Sms) => Ok(ConsentChannel::Sms),
                Ok(feeds::ConsentChannel::Phone) => Ok(ConsentChannel::Phone),
                Ok(feeds::ConsentChannel::Post) => Ok(ConsentChannel::Post),
                Ok(feeds::ConsentChannel::Push) => Ok(ConsentChannel::Push),
                Err(_) => Err(format!("unknown consent channel {}", c.channel)),
            },
        );
        let status = v.check(
            format!("consents[{i}].status"),
            match feeds::ConsentStatus::try_from(c.status) {
                Ok(feeds::ConsentStatus::Unspecified) => {
                    Err("required: granted or denied".to_owned())
                }
                Ok(feeds::ConsentStatus::Granted) => Ok(ConsentStatus::Granted),
                Ok(feeds::ConsentStatus::Denied) => Ok(ConsentStatus::Denied),
                Err(_) => Err(format!("unknown consent status {}", c.status)),
            },
        );
        let given_at = v.check(
            format!("consents[{i}].given_at"),
            match &c.given_at {
                None => Err("required: when the customer gave the answer".to_owned()),
                Some(t) => time_of(t).and_then(|t| {
                    if t > now + CLOCK_SKEW {
                        Err("in the future: when the customer gave the answer".to_owned())
                    } else {
                        Ok(t)
                    }
                }),
            },
        );
        if let (Some(purpose), Some(channel)) = (purpose, channel)
            && !seen.insert((purpose, channel))
        {
            v.add(
                format!("consents[{i}]"),
                "a second answer for the same purpose and channel: send one",
            );
        }
        if let (Some(purpose), Some(channel), Some(status), Some(given_at)) =
            (purpose, channel, status, given_at)
        {
            out.push(Consent {
                purpose,
                channel,
                status,
                given_at,
            });
        }
    }
    out
}

fn consent_status_pb(s: Option<ConsentStatus>) -> i32 {
    match s {
        None => feeds::ConsentStatus::Unspecified as i32,
        Some(ConsentStatus::Granted) => feeds::ConsentStatus::Granted as i32,
        Some(ConsentStatus::Denied) => feeds::ConsentStatus::Denied as i32,
    }
}

fn change_to_pb(c: ConsentChange) -> pb::ConsentChange {
    pb::ConsentChange {
        change_id: c.id,
        customer_id: c.customer.to_string(),
        purpose: consent_purpose_to_pb(c.purpose) as i32,
        channel: consent_channel_to_pb(c.channel) as i32,
        previous_status: consent_status_pb(c.previous),
        status: consent_status_pb(Some(c.status)),
        given_at: Some(timestamp(c.given_at)),
        effective: c.effective,
        source: c.source,
        recorded_by: c.recorded_by,
        recorded_at: Some(timestamp(c.recorded_at)),
    }
}

fn erasure_to_pb(e: Erasure) -> pb::EraseCustomerResponse {
    pb::EraseCustomerResponse {
        erasure_id: e.id,
        erased_customer_ids: e.customers.iter().map(ToString::to_string).collect(),
        erased_at: Some(timestamp(e.erased_at)),
        erased_by: e.erased_by,
        identifiers_suppressed: e.identifiers_suppressed,
        records_removed: e.records_removed,
        interactions_anonymised: e.interactions_anonymised,
        transactions_anonymised: e.transactions_anonymised,
        request_records_removed: e.request_records_removed,
        already_erased: e.already_erased,
    }
}

fn audit_to_pb(e: AuditEvent) -> pb::AuditEvent {
    pb::AuditEvent {
        event_id: e.id,
        principal: e.principal,
        rpc: e.rpc,
        customer_id: e.customer.to_string(),
        occurred_at: Some(timestamp(e.occurred_at)),
    }
}

/// A stored record's content: the feed record decoded (as the hub validated it), the consent
/// answers of [`CONSENT_SOURCE`] as stored, or the raw bytes in hex if neither reads.
fn record_content(record: &StoredRecord, now: DateTime<Utc>) -> Value {
    if record.source == CONSENT_SOURCE
        && let Ok(value) = serde_json::from_slice::<Value>(&record.payload)
    {
        return value;
    }
    if let Ok(wire) = feeds::Record::decode(record.payload.as_slice())
        && let Ok(decoded) = record_from_pb(&wire, now)
    {
        return json!({ "customer": decoded.customer, "body": decoded.body });
    }
    let hex: String = record.payload.iter().map(|b| format!("{b:02x}")).collect();
    json!({ "payload_hex": hex })
}

/// The export document (see docs/data-model.md, "Export document").
pub fn export_document(export: CustomerExport, now: DateTime<Utc>) -> Value {
    let records: Vec<Value> = export
        .records
        .iter()
        .map(|r| {
            json!({
                "source": r.source,
                "record_type": r.record_type,
                "record_id": r.record_id,
                "updated_at": r.updated_at,
                "ingested_at": r.ingested_at,
                "content": record_content(r, now),
            })
        })
        .collect();
    json!({
        "format": EXPORT_FORMAT,
        "exported_at": now,
        "customer_id": export.customer.id,
        "customer_ids": export.ids,
        "customer": export.customer,
        "merges": export.merges,
        "records": records,
        "interactions": export.interactions,
        "transactions": export.transactions,
        "consent_history": export.consent_history,
        "audit_events": export.audit_events,
    })
}

/// The chunks of an encoded document.
pub fn export_chunks(document: &[u8]) -> Vec<pb::ExportCustomerResponse> {
    let count = document.len().div_ceil(EXPORT_CHUNK_BYTES).max(1);
    (0..count)
        .map(|i| {
            let start = i * EXPORT_CHUNK_BYTES;
            let end = (start + EXPORT_CHUNK_BYTES).min(document.len());
            pb::ExportCustomerResponse {
                content_type: EXPORT_CONTENT_TYPE.to_owned(),
                data: document[start..end].to_vec(),
                offset: i64::try_from(start).unwrap_or(i64::MAX),
                last: i + 1 == count,
            }
        })
        .collect()
}

#[tonic::async_trait]
impl CustomerPrivacyService for Privacy {
    async fn update_consents(
        &self,
        req: Request<pb::UpdateConsentsRequest>,
    ) -> Result<Response<pb::UpdateConsentsResponse>, Status> {
        let caller = principal(&req);
        let r = req.get_ref();
        let mut v = Violations::new();
        let key = request_key(
            &mut v,
            &caller.name,
            "UpdateConsents",
            &r.request_id,
            r,
            |p| p.request_id.clear(),
        );
        let id = customer(&mut v, "customer_id", &r.customer_id);
        let consents = consents_from_pb(&mut v, &r.consents, Utc::now());
        v.check("source", check_consent_source(&r.source));
        v.into_result().map_err(to_status)?;
        let (Some(key), Some(id)) = (key, id) else {
            return Err(validation_gap());
        };
        let update = ConsentUpdate {
            consents,
            source: r.source.clone(),
        };
        let done = self
            .repo
            .update_consents(&key, id, update)
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::UpdateConsentsResponse {
            customer_id: done.customer.to_string(),
            consents: done.consents.iter().map(consent_to_pb).collect(),
            changes: done.changes.into_iter().map(change_to_pb).collect(),
        }))
    }

    async fn list_consent_history(
        &self,
        req: Request<pb::ListConsentHistoryRequest>,
    ) -> Result<Response<pb::ListConsentHistoryResponse>, Status> {
        let r = req.get_ref();
        let mut v = Violations::new();
        let id = customer(&mut v, "customer_id", &r.customer_id);
        let fingerprint = filter_fingerprint(&r.customer_id);
        let page = match page_request(r.page_size, &r.page_token, &fingerprint) {
            Ok(page) => Some(page),
            Err(err) => {
                for f in Vec::from(err) {
                    v.add(f.field, f.description);
                }
                None
            }
        };
        v.into_result().map_err(to_status)?;
        let (Some(id), Some(page)) = (id, page) else {
            return Err(validation_gap());
        };
        let found = self
            .repo
            .consent_history(id, &page)
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::ListConsentHistoryResponse {
            next_page_token: next_page_token(found.next_after.as_deref(), &fingerprint),
            changes: found.items.into_iter().map(change_to_pb).collect(),
        }))
    }

    async fn erase_customer(
        &self,
        req: Request<pb::EraseCustomerRequest>,
    ) -> Result<Response<pb::EraseCustomerResponse>, Status> {
        let caller = principal(&req);
        let r = req.get_ref();
        let mut v = Violations::new();
        let key = request_key(
            &mut v,
            &caller.name,
            "EraseCustomer",
            &r.request_id,
            r,
            |p| p.request_id.clear(),
        );
        let id = customer(&mut v, "customer_id", &r.customer_id);
        v.into_result().map_err(to_status)?;
        let (Some(key), Some(id)) = (key, id) else {
            return Err(validation_gap());
        };
        let erasure = self
            .repo
            .erase_customer(&key, id, &caller.name)
            .await
            .map_err(to_status)?;
        audit_read(&*self.audit, &req, "EraseCustomer", &erasure.customers).await?;
        Ok(Response::new(erasure_to_pb(erasure)))
    }

    type ExportCustomerStream =
        tokio_stream::Iter<std::vec::IntoIter<Result<pb::ExportCustomerResponse, Status>>>;

    async fn export_customer(
        &self,
        req: Request<pb::ExportCustomerRequest>,
    ) -> Result<Response<Self::ExportCustomerStream>, Status> {
        let mut v = Violations::new();
        let id = customer(&mut v, "customer_id", &req.get_ref().customer_id);
        v.into_result().map_err(to_status)?;
        let Some(id) = id else {
            return Err(validation_gap());
        };
        let export = self.repo.export_customer(id).await.map_err(to_status)?;
        audit_read(&*self.audit, &req, "ExportCustomer", &export.ids).await?;
        let records = export.records.len();
        let document = export_document(export, Utc::now());
        let bytes = serde_json::to_vec(&document)
            .map_err(|err| to_status(Error::internal(format!("export encoding: {err}"))))?;
        let chunks = export_chunks(&bytes);
        tracing::info!(customer_id = %id, records, bytes = bytes.len(), chunks = chunks.len(), "customer exported");
        Ok(Response::new(tokio_stream::iter(
            chunks.into_iter().map(Ok).collect::<Vec<_>>(),
        )))
    }

    async fn list_audit_events(
        &self,
        req: Request<pb::ListAuditEventsRequest>,
    ) -> Result<Response<pb::ListAuditEventsResponse>, Status> {
        let r = req.get_ref();
        let mut v = Violations::new();
        let mut filter = AuditFilter::default();
        if !r.customer_id.is_empty() {
            filter.customer = customer(&mut v, "customer_id", &r.customer_id);
        }
        if !r.principal.is_empty() {
            filter.principal = Some(r.principal.clone());
        }
        if let Some(t) = &r.start_time {
            filter.start = v.check("start_time", time_of(t));
        }
        if let Some(t) = &r.end_time {
            filter.end = v.check("end_time", time_of(t));
        }
        if let (Some(start), Some(end)) = (filter.start, filter.end)
            && end <= start
        {
            v.add("end_time", "must be after start_time");
        }
        let fingerprint = filter_fingerprint(&filter);
        let page = match page_request(r.page_size, &r.page_token, &fingerprint) {
            Ok(page) => Some(page),
            Err(err) => {
                for f in Vec::from(err) {
                    v.add(f.field, f.description);
                }
                None
            }
        };
        v.into_result().map_err(to_status)?;
        let Some(page) = page else {
            return Err(validation_gap());
        };
        let found = self
            .audit
            .list_audit_events(&filter, &page)
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::ListAuditEventsResponse {
            next_page_token: next_page_token(found.next_after.as_deref(), &fingerprint),
            events: found.items.into_iter().map(audit_to_pb).collect(),
        }))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn chunks_cover_the_document_in_order() {
        let doc: Vec<u8> = (0..(EXPORT_CHUNK_BYTES * 2 + 10))
            .map(|i| u8::try_from(i % 251).unwrap())
            .collect();
        let chunks = export_chunks(&doc);
        assert_eq!(chunks.len(), 3);
        assert!(chunks.iter().all(|c| c.content_type == EXPORT_CONTENT_TYPE));
        assert_eq!(
            chunks.iter().map(|c| c.last).collect::<Vec<_>>(),
            [false, false, true]
        );
        let joined: Vec<u8> = chunks.iter().flat_map(|c| c.data.clone()).collect();
        assert_eq!(joined, doc);
        assert_eq!(chunks[1].offset, i64::try_from(EXPORT_CHUNK_BYTES).unwrap());
        let empty = export_chunks(b"");
        assert_eq!(empty.len(), 1);
        assert!(empty[0].last);
    }

    #[test]
    fn every_bad_consent_field_is_reported() {
        let now = Utc::now();
        let mut v = Violations::new();
        let bad = vec![
            feeds::Consent {
                purpose: 0,
                channel: 99,
                status: 7,
                given_at: None,
            },
            feeds::Consent {
                purpose: feeds::ConsentPurpose::Marketing as i32,
                channel: 0,
                status: feeds::ConsentStatus::Granted as i32,
                given_at: Some(timestamp(now + chrono::Duration::days(1))),
            },
        ];
        let out = consents_from_pb(&mut v, &bad, now);
        assert!(out.is_empty());
        let fields: Vec<String> = v.into_vec().into_iter().map(|f| f.field).collect();
        assert_eq!(
            fields,
            [
                "consents[0].purpose",
                "consents[0].channel",
                "consents[0].status",
                "consents[0].given_at",
                "consents[1].given_at"
            ]
        );
        let mut v = Violations::new();
        let twice = feeds::Consent {
            purpose: feeds::ConsentPurpose::Surveys as i32,
            channel: feeds::ConsentChannel::Sms as i32,
            status: feeds::ConsentStatus::Denied as i32,
            given_at: Some(timestamp(now)),
        };
        assert_eq!(
            consents_from_pb(&mut v, &[twice, twice], now).len(),
            2,
            "both valid"
        );
        let fields: Vec<String> = v.into_vec().into_iter().map(|f| f.field).collect();
        assert_eq!(fields, ["consents[1]"]);
    }
}
