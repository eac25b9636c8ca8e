//! Privacy end to end: consents and their history, export, erasure with suppression of later
//! records, the audit trail, the scopes, and logs that never hold personal data (a canary).

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};

use cxhub_proto::common::v1 as common;
use cxhub_proto::feeds::v1 as feeds;
use cxhub_proto::profile::v1 as pb;
use cxhub_testkit::{TestHub, with_token};
use prost_types::Timestamp;
use tokio_stream::StreamExt;
use tonic::Code;
use tonic::transport::Channel as Transport;

use crate::{fields, refused, rid};

type Privacy = pb::customer_privacy_service_client::CustomerPrivacyServiceClient<Transport>;

const T0: i64 = 1_700_000_000;

fn ts(seconds: i64) -> Option<Timestamp> {
    Some(Timestamp { seconds, nanos: 0 })
}

/// What every test of this binary logged, from the first call of [`captured_logs`] on.
fn captured_logs() -> Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buffer = Arc::new(Mutex::new(Vec::new()));
        let sink = Sink(buffer.clone());
        let subscriber = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new("trace"))
            .with_writer(move || sink.clone())
            .with_ansi(false)
            .finish();
        // Another test may have installed one first: then the check below that the erasure's
        // own message was captured fails, rather than passing on an empty log.
        let _ = tracing::subscriber::set_global_default(subscriber);
        buffer
    })
    .clone()
}

#[derive(Clone)]
struct Sink(Arc<Mutex<Vec<u8>>>);

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Ok(mut b) = self.0.lock() {
            b.extend_from_slice(buf);
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn contact(
    source: &str,
    id: &str,
    customer: &str,
    emails: &[&str],
    phones: &[&str],
    given: &str,
    version: i64,
) -> feeds::Record {
    feeds::Record {
        source: source.to_owned(),
        record_id: id.to_owned(),
        updated_at: ts(version),
        customer: Some(common::SourceCustomer {
            source_customer_id: customer.to_owned(),
            emails: emails.iter().map(|e| (*e).to_owned()).collect(),
            phones: phones.iter().map(|p| (*p).to_owned()).collect(),
        }),
        body: Some(feeds::record::Body::Contact(feeds::Contact {
            given_name: given.to_owned(),
            family_name: "Silva".into(),
            addresses: Vec::new(),
            preferred_language: "pt-PT".into(),
            consents: vec![feeds::Consent {
                purpose: feeds::ConsentPurpose::Marketing as i32,
                channel: feeds::ConsentChannel::Email as i32,
                status: feeds::ConsentStatus::Granted as i32,
                given_at: ts(version),
            }],
            account_id: String::new(),
            lifecycle_stage: feeds::LifecycleStage::Customer as i32,
        })),
    }
}

fn order(source: &str, id: &str, customer: &str, version: i64) -> feeds::Record {
    feeds::Record {
        source: source.to_owned(),
        record_id: id.to_owned(),
        updated_at: ts(version),
        customer: Some(common::SourceCustomer {
            source_customer_id: customer.to_owned(),
            emails: Vec::new(),
            phones: Vec::new(),
        }),
        body: Some(feeds::record::Body::Order(feeds::Order {
            ordered_at: ts(version),
            lines: vec![feeds::OrderLine {
                sku: "SKU-1".into(),
                quantity: 2,
                unit_price: Some(common::Money {
                    amount_minor: 1250,
                    currency_code: "EUR".into(),
                }),
            }],
            channel: cxhub_proto::touchpoint::v1::Channel::Web as i32,
            store_id: String::new(),
            status: feeds::OrderStatus::Placed as i32,
        })),
    }
}

async fn ingest(hub: &TestHub, records: Vec<feeds::Record>) -> Vec<feeds::RecordResult> {
    hub.feeds()
        .await
        .ingest_records(feeds::IngestRecordsRequest { records })
        .await
        .expect("ingest")
        .into_inner()
        .results
}

fn consent(purpose: feeds::ConsentPurpose, channel: i32, status: i32, at: i64) -> feeds::Consent {
    feeds::Consent {
        purpose: purpose as i32,
        channel,
        status,
        given_at: ts(at),
    }
}

async fn export(
    privacy: &mut Privacy,
    customer: &str,
) -> Result<Vec<pb::ExportCustomerResponse>, tonic::Status> {
    let mut stream = privacy
        .export_customer(pb::ExportCustomerRequest {
            customer_id: customer.to_owned(),
        })
        .await?
        .into_inner();
    let mut chunks = Vec::new();
    while let Some(chunk) = stream.next().await {
        chunks.push(chunk?);
    }
    Ok(chunks)
}

#[tokio::test]
async fn consents_export_erasure_and_audit_leave_no_personal_data_behind() {
    let logs = captured_logs();
    let hub = TestHub::start().await;
    let mut privacy = Privacy::new(hub.channel().await);
    let mut profiles = hub.profiles().await;

    let tag = rid().replace(|c: char| !c.is_ascii_alphanumeric(), "");
    let email = format!("canary-{tag}@mail.pt");
    let digits: String = format!(
        "{:08}",
        tag.bytes().map(u64::from).sum::<u64>() * 7919 % 100_000_000
    );
    let phone = format!("+35191{}", &digits[..7]);
    let name = format!("Canaryname{}", &tag[tag.len() - 6..]);

    // Seed: a CRM contact with the canaries and an order, a shop contact that merges in.
    let first = ingest(
        &hub,
        vec![
            contact("crm", "c-1", "C1", &[&email], &[&phone], &name, T0),
            order("crm", "o-1", "C1", T0 + 1),
        ],
    )
    .await;
    assert_eq!(
        first[0].outcome,
        feeds::RecordOutcome::Created as i32,
        "{first:?}"
    );
    assert!(
        first[0].ignored_identifiers.is_empty(),
        "the canaries are usable: {first:?}"
    );
    let a = first[0].customer_id.clone();
    let b = ingest(
        &hub,
        vec![contact("shop", "s-1", "S1", &[], &[], &name, T0 + 2)],
    )
    .await[0]
        .customer_id
        .clone();
    let linked = ingest(
        &hub,
        vec![contact("shop", "s-1", "S1", &[&email], &[], &name, T0 + 3)],
    )
    .await;
    assert_eq!(linked[0].merged_customer_ids, std::slice::from_ref(&b));
    assert_eq!(linked[0].customer_id, a);

    // Consents: refusals first, every bad field listed.
    let bad = privacy
        .update_consents(pb::UpdateConsentsRequest {
            request_id: String::new(),
            customer_id: "nope".into(),
            consents: vec![consent(feeds::ConsentPurpose::Unspecified, 42, 1, T0)],
            source: String::new(),
        })
        .await;
    let status = refused(bad, Code::InvalidArgument, "INVALID_FIELDS");
    assert_eq!(
        fields(&status),
        [
            "request_id",
            "customer_id",
            "consents[0].purpose",
            "consents[0].channel",
            "source"
        ]
    );
    let granted = feeds::ConsentStatus::Granted as i32;
    let denied = feeds::ConsentStatus::Denied as i32;
    let email_channel = feeds::ConsentChannel::Email as i32;
    let update = pb::UpdateConsentsRequest {
        request_id: rid(),
        customer_id: b.clone(),
        consents: vec![
            consent(
                feeds::ConsentPurpose::Marketing,
                email_channel,
                denied,
                T0 + 10,
            ),
            consent(feeds::ConsentPurpose::Profiling, 0, denied, T0 + 10),
        ],
        source: "preference-centre".into(),
    };
    let done = privacy
        .update_consents(update.clone())
        .await
        .expect("update consents")
        .into_inner();
    assert_eq!(done.customer_id, a, "a merged id applies to its survivor");
    assert_eq!(done.changes.len(), 2);
    assert_eq!(done.changes[0].previous_status, granted);
    assert!(
        done.changes
            .iter()
            .all(|c| c.effective && c.recorded_by == "anonymous")
    );
    let again = privacy
        .update_consents(update.clone())
        .await
        .expect("retry")
        .into_inner();
    assert_eq!(again, done);
    let mut reused = update.clone();
    reused.source = "call-centre".into();
    refused(
        privacy.update_consents(reused).await,
        Code::InvalidArgument,
        "REQUEST_ID_REUSED",
    );
    let history = privacy
        .list_consent_history(pb::ListConsentHistoryRequest {
            customer_id: a.clone(),
            page_size: 1,
            page_token: String::new(),
        })
        .await
        .expect("history")
        .into_inner();
    assert_eq!(history.changes.len(), 1);
    assert!(!history.next_page_token.is_empty());
    let customer = profiles
        .get_customer(pb::GetCustomerRequest {
            customer_id: a.clone(),
        })
        .await
        .expect("get")
        .into_inner()
        .customer
        .expect("customer");
    assert!(
        customer
            .consents
            .iter()
            .any(|c| c.purpose == feeds::ConsentPurpose::Marketing as i32
                && c.channel == email_channel
                && c.status == denied)
    );

    // Export: one JSON document in chunks, with the records decoded.
    let chunks = export(&mut privacy, &b).await.expect("export");
    assert!(chunks.iter().all(|c| c.content_type == "application/json"));
    assert!(chunks.last().is_some_and(|c| c.last));
    let bytes: Vec<u8> = chunks.iter().flat_map(|c| c.data.clone()).collect();
    let doc: serde_json::Value = serde_json::from_slice(&bytes).expect("one JSON document");
    assert_eq!(doc["format"], "cxhub.customer-export.v1");
    assert_eq!(doc["customer_id"], a.as_str());
    let records = doc["records"].as_array().expect("records");
    assert_eq!(
        records.len(),
        4,
        "two contacts, one order, the hub's consents: {doc}"
    );
    let text = doc.to_string();
    assert!(
        text.contains(&email) && text.contains(&name),
        "the export holds the data"
    );
    assert!(
        records
            .iter()
            .any(|r| r["content"]["body"]["order"]["lines"][0]["sku"] == "SKU-1"),
        "{doc}"
    );
    assert_eq!(doc["consent_history"].as_array().map(Vec::len), Some(2));

    // Erase (through the absorbed id), twice.
    let erase = pb::EraseCustomerRequest {
        request_id: rid(),
        customer_id: b.clone(),
    };
    refused(
        privacy
            .erase_customer(pb::EraseCustomerRequest {
                request_id: rid(),
                customer_id: String::new(),
            })
            .await,
        Code::InvalidArgument,
        "INVALID_FIELDS",
    );
    let erased = privacy
        .erase_customer(erase.clone())
        .await
        .expect("erase")
        .into_inner();
    assert_eq!(erased.erased_customer_ids, [a.clone(), b.clone()]);
    assert!(!erased.already_erased);
    assert_eq!(erased.erased_by, "anonymous");
    let retry = privacy
        .erase_customer(erase)
        .await
        .expect("retry")
        .into_inner();
    assert_eq!(retry, erased);
    let twice = privacy
        .erase_customer(pb::EraseCustomerRequest {
            request_id: rid(),
            customer_id: a.clone(),
        })
        .await
        .expect("erase again")
        .into_inner();
    assert!(twice.already_erased);
    assert_eq!(
        pb::EraseCustomerResponse {
            already_erased: false,
            ..twice
        },
        erased
    );
    for canary in [&email, &phone, &name] {
        assert_eq!(
            hub.store.locate_text(canary).await.expect("scan"),
            Vec::<String>::new(),
            "{canary} is gone from every table"
        );
    }
    refused(
        profiles
            .get_customer(pb::GetCustomerRequest {
                customer_id: a.clone(),
            })
            .await,
        Code::NotFound,
        "CUSTOMER_NOT_FOUND",
    );
    refused(
        export(&mut privacy, &a).await,
        Code::FailedPrecondition,
        "CUSTOMER_ERASED",
    );

    // A later record carrying the erased e-mail is dropped and counted.
    let later = ingest(
        &hub,
        vec![
            contact("web", "w-1", "W1", &[&email], &[], "Someone", T0 + 20),
            contact("web", "w-2", "W2", &[], &[], "Other", T0 + 20),
        ],
    )
    .await;
    assert_eq!(later[0].outcome, feeds::RecordOutcome::Suppressed as i32);
    assert_eq!(later[0].customer_id, a);
    assert_eq!(later[1].outcome, feeds::RecordOutcome::Created as i32);
    assert_eq!(
        hub.store.locate_text("w-1").await.expect("scan"),
        Vec::<String>::new()
    );

    // The audit trail: who read, exported and erased whom; no personal data.
    let events = privacy
        .list_audit_events(pb::ListAuditEventsRequest {
            customer_id: a.clone(),
            ..Default::default()
        })
        .await
        .expect("audit")
        .into_inner()
        .events;
    let rpcs: Vec<&str> = events.iter().map(|e| e.rpc.as_str()).collect();
    // Every erase call is audited, the retry and the repeat too.
    assert_eq!(
        rpcs,
        [
            "EraseCustomer",
            "EraseCustomer",
            "EraseCustomer",
            "ExportCustomer",
            "GetCustomer"
        ],
        "{events:?}"
    );
    assert!(
        events
            .iter()
            .all(|e| e.principal == "anonymous" && e.customer_id == a)
    );
    let dump = format!("{events:?}");
    assert!(!dump.contains(&email) && !dump.contains(&name));
    refused(
        privacy
            .list_audit_events(pb::ListAuditEventsRequest {
                start_time: ts(T0 + 10),
                end_time: ts(T0),
                page_token: "garbage".into(),
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
        "INVALID_FIELDS",
    );

    // The logs of all this hold none of the canaries (and did capture the run).
    let logs = String::from_utf8_lossy(&logs.lock().expect("logs")).into_owned();
    assert!(
        logs.contains("customer erased"),
        "the run's logs were captured"
    );
    for canary in [&email, &phone, &name] {
        assert!(!logs.contains(canary.as_str()), "a log line holds {canary}");
    }
}

#[tokio::test]
async fn privacy_rpcs_need_their_scopes() {
    let hub = TestHub::builder()
        .token("dashboard:customers:read:read-secret")
        .token("dpo:customers:erase+customers:export+audit:read:dpo-secret")
        .start()
        .await;
    let mut privacy = Privacy::new(hub.channel().await);
    let id = "01900000-0000-7000-8000-000000000000".to_owned();
    let erase = || pb::EraseCustomerRequest {
        request_id: rid(),
        customer_id: id.clone(),
    };
    refused(
        privacy
            .erase_customer(with_token(erase(), "read-secret"))
            .await,
        Code::PermissionDenied,
        "MISSING_SCOPE",
    );
    refused(
        privacy
            .list_audit_events(with_token(
                pb::ListAuditEventsRequest::default(),
                "read-secret",
            ))
            .await,
        Code::PermissionDenied,
        "MISSING_SCOPE",
    );
    refused(
        privacy
            .update_consents(with_token(
                pb::UpdateConsentsRequest::default(),
                "dpo-secret",
            ))
            .await,
        Code::PermissionDenied,
        "MISSING_SCOPE",
    );
    refused(
        privacy
            .erase_customer(with_token(erase(), "dpo-secret"))
            .await,
        Code::NotFound,
        "CUSTOMER_NOT_FOUND",
    );
    let events = privacy
        .list_audit_events(with_token(
            pb::ListAuditEventsRequest::default(),
            "dpo-secret",
        ))
        .await
        .expect("audit:read lists")
        .into_inner();
    assert!(events.events.is_empty());
}
