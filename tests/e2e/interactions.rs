//! `RecordInteractions`: interactions from event sources other than the feeds.

use cxhub_proto::common::v1::{CustomerRef, SourceRef, customer_ref::Ref};
use cxhub_proto::feeds::v1 as feeds;
use cxhub_proto::profile::v1 as profile;
use cxhub_proto::touchpoint::v1 as pb;
use cxhub_testkit::{TestHub, with_token};
use tonic::Code;

use crate::{fields, refused, rid, touchpoint};

fn by_source(source: &str, id: &str) -> Option<CustomerRef> {
    Some(CustomerRef {
        r#ref: Some(Ref::SourceRef(SourceRef {
            source: source.into(),
            id: id.into(),
        })),
    })
}

fn by_id(id: &str) -> Option<CustomerRef> {
    Some(CustomerRef {
        r#ref: Some(Ref::CustomerId(id.into())),
    })
}

fn visit(id: &str, customer: Option<CustomerRef>, key: &str) -> pb::InteractionInput {
    pb::InteractionInput {
        source: "web-analytics".into(),
        interaction_id: id.into(),
        customer,
        touchpoint_key: key.into(),
        occurred_at: Some(prost_types::Timestamp {
            seconds: 1_760_000_000,
            nanos: 0,
        }),
        channel: pb::Channel::Unspecified as i32,
        outcome: "VISITED".into(),
    }
}

async fn record(hub: &TestHub, items: Vec<pb::InteractionInput>) -> Vec<pb::InteractionResult> {
    hub.touchpoints()
        .await
        .record_interactions(pb::RecordInteractionsRequest {
            interactions: items,
        })
        .await
        .expect("record interactions")
        .into_inner()
        .results
}

fn outcomes(results: &[pb::InteractionResult]) -> Vec<pb::InteractionOutcome> {
    results
        .iter()
        .map(|r| pb::InteractionOutcome::try_from(r.outcome).expect("known outcome"))
        .collect()
}

#[tokio::test]
async fn interactions_are_recorded_once_and_conflicts_reported() {
    let hub = TestHub::start().await;
    let mut client = hub.touchpoints().await;
    client
        .create_touchpoint(pb::CreateTouchpointRequest {
            touchpoint: Some(touchpoint("web-home")),
            request_id: rid(),
        })
        .await
        .expect("touchpoint");

    let first = record(&hub, vec![visit("v1", by_source("crm", "c-1"), "web-home")]).await;
    assert_eq!(outcomes(&first), [pb::InteractionOutcome::Created]);
    let customer = first[0].customer_id.clone();
    assert!(!customer.is_empty());

    // The same again: unchanged; other content under the same id: conflict; the same
    // customer named by hub id or by source id.
    let mut changed = visit("v1", by_source("crm", "c-1"), "web-home");
    changed.outcome = "ABANDONED_CART".into();
    let again = record(
        &hub,
        vec![
            visit("v1", by_source("crm", "c-1"), "web-home"),
            changed,
            visit("v2", by_id(&customer), "web-home"),
            visit("v3", by_source("crm", "c-1"), "web-home"),
        ],
    )
    .await;
    assert_eq!(
        outcomes(&again),
        [
            pb::InteractionOutcome::Unchanged,
            pb::InteractionOutcome::Conflict,
            pb::InteractionOutcome::Created,
            pb::InteractionOutcome::Created,
        ]
    );
    assert!(again.iter().all(|r| r.customer_id == customer), "{again:?}");

    // The customer created for the source id is a real customer, holding that id.
    let got = hub
        .profiles()
        .await
        .get_customer(profile::GetCustomerRequest {
            customer_id: customer.clone(),
        })
        .await
        .expect("customer")
        .into_inner();
    let identities: Vec<String> = got
        .customer
        .expect("customer")
        .identities
        .into_iter()
        .map(|i| i.value)
        .collect();
    assert_eq!(identities, ["crm:c-1"]);

    // A feed record of that source customer lands on the same customer.
    let fed = hub
        .feeds()
        .await
        .ingest_records(feeds::IngestRecordsRequest {
            records: vec![feeds::Record {
                source: "crm".into(),
                record_id: "contact-1".into(),
                updated_at: Some(prost_types::Timestamp {
                    seconds: 1_760_000_000,
                    nanos: 0,
                }),
                customer: Some(cxhub_proto::common::v1::SourceCustomer {
                    source_customer_id: "c-1".into(),
                    ..Default::default()
                }),
                body: Some(feeds::record::Body::Contact(feeds::Contact {
                    given_name: "Ana".into(),
                    ..Default::default()
                })),
            }],
        })
        .await
        .expect("ingest")
        .into_inner();
    assert_eq!(fed.results[0].customer_id, customer);
}

#[tokio::test]
async fn invalid_interactions_are_rejected_with_every_field_and_write_nothing() {
    let hub = TestHub::start().await;
    let mut client = hub.touchpoints().await;
    client
        .create_touchpoint(pb::CreateTouchpointRequest {
            touchpoint: Some(touchpoint("web-home")),
            request_id: rid(),
        })
        .await
        .expect("touchpoint");

    let mut bad = visit("", None, "Not A Key");
    bad.source = "Web Analytics".into();
    bad.outcome = "visited".into();
    bad.occurred_at = Some(prost_types::Timestamp {
        seconds: -3_000_000_000,
        nanos: 0,
    });
    let unknown_touchpoint = visit("v2", by_source("crm", "c-9"), "no-such-touchpoint");
    let unknown_customer = visit(
        "v3",
        by_id("01890a5d-ac96-774b-bcce-b302099a8057"),
        "web-home",
    );
    let good = visit("v4", by_source("crm", "c-1"), "web-home");
    let results = record(&hub, vec![bad, unknown_touchpoint, unknown_customer, good]).await;
    assert_eq!(
        outcomes(&results),
        [
            pb::InteractionOutcome::Rejected,
            pb::InteractionOutcome::Rejected,
            pb::InteractionOutcome::Rejected,
            pb::InteractionOutcome::Created,
        ]
    );
    let mut fields: Vec<&str> = results[0]
        .violations
        .iter()
        .map(|v| v.field.as_str())
        .collect();
    fields.sort_unstable();
    assert_eq!(
        fields,
        [
            "customer",
            "interaction_id",
            "occurred_at",
            "outcome",
            "source",
            "touchpoint_key"
        ]
    );
    assert_eq!(results[1].violations[0].field, "touchpoint_key");
    assert_eq!(results[2].violations[0].field, "customer.customer_id");
    assert!(results[..3].iter().all(|r| r.customer_id.is_empty()));

    // Nothing of the rejected ones was written: recording the unknown-touchpoint one again
    // with a valid touchpoint creates it (and its customer) now.
    let retried = record(&hub, vec![visit("v2", by_source("crm", "c-9"), "web-home")]).await;
    assert_eq!(outcomes(&retried), [pb::InteractionOutcome::Created]);
}

#[tokio::test]
async fn empty_and_oversized_calls_are_refused() {
    let hub = TestHub::start().await;
    let mut client = hub.touchpoints().await;
    refused(
        client
            .record_interactions(pb::RecordInteractionsRequest::default())
            .await,
        Code::InvalidArgument,
        "INVALID_FIELDS",
    );
    let many = (0..1_001)
        .map(|i| visit(&format!("v{i}"), by_source("crm", "c"), "web-home"))
        .collect();
    let status = refused(
        client
            .record_interactions(pb::RecordInteractionsRequest { interactions: many })
            .await,
        Code::InvalidArgument,
        "BATCH_TOO_LARGE",
    );
    assert_eq!(fields(&status), ["interactions"]);
}

/// A feed contact of source customer `crm`/`id` holding `emails`.
fn contact(id: &str, emails: &[&str]) -> feeds::Record {
    feeds::Record {
        source: "crm".into(),
        record_id: format!("{id}-contact"),
        updated_at: Some(prost_types::Timestamp {
            seconds: 1_760_000_000,
            nanos: 0,
        }),
        customer: Some(cxhub_proto::common::v1::SourceCustomer {
            source_customer_id: id.into(),
            emails: emails.iter().map(|e| (*e).to_owned()).collect(),
            ..Default::default()
        }),
        body: Some(feeds::record::Body::Contact(feeds::Contact {
            given_name: id.into(),
            ..Default::default()
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

#[tokio::test]
async fn the_demo_registry_takes_interactions_and_archived_touchpoints_refuse_them() {
    let hub = TestHub::builder().demo().start().await;
    let mut client = hub.touchpoints().await;

    // The README's example.
    let mut page_view = visit(
        "pv-88121",
        by_source("salesforce-eu", "003A1"),
        "website.products.credit-cards",
    );
    page_view.channel = pb::Channel::Web as i32;
    let results = record(&hub, vec![page_view.clone()]).await;
    assert_eq!(outcomes(&results), [pb::InteractionOutcome::Created]);
    assert_eq!(results[0].index, 0);

    let loans = client
        .get_touchpoint(pb::GetTouchpointRequest {
            lookup: Some(pb::get_touchpoint_request::Lookup::Key(
                "website.products.loans".into(),
            )),
        })
        .await
        .expect("demo touchpoint")
        .into_inner()
        .touchpoint
        .expect("touchpoint");
    client
        .archive_touchpoint(pb::ArchiveTouchpointRequest {
            id: loans.id,
            request_id: rid(),
            ..Default::default()
        })
        .await
        .expect("archive");
    let results = record(
        &hub,
        vec![
            visit(
                "pv-88122",
                by_source("salesforce-eu", "003A1"),
                "website.products.loans",
            ),
            visit(
                "pv-88123",
                by_source("salesforce-eu", "003A1"),
                "website.products.no-such-page",
            ),
            page_view,
        ],
    )
    .await;
    assert_eq!(
        outcomes(&results),
        [
            pb::InteractionOutcome::Rejected,
            pb::InteractionOutcome::Rejected,
            pb::InteractionOutcome::Unchanged,
        ]
    );
    let indexes: Vec<i32> = results.iter().map(|r| r.index).collect();
    assert_eq!(indexes, [0, 1, 2]);
    for r in &results[..2] {
        let paths: Vec<&str> = r.violations.iter().map(|v| v.field.as_str()).collect();
        assert_eq!(paths, ["touchpoint_key"], "{r:?}");
    }
    assert!(results[0].violations[0].description.contains("archived"));
}

#[tokio::test]
async fn a_merged_customer_id_names_its_survivor() {
    let hub = TestHub::builder().demo().start().await;
    let first = ingest(
        &hub,
        vec![
            contact("c-1", &["ana@mail.pt"]),
            contact("c-2", &["ana.silva@mail.pt"]),
        ],
    )
    .await;
    let linking = ingest(
        &hub,
        vec![contact("c-3", &["ana@mail.pt", "ana.silva@mail.pt"])],
    )
    .await;
    let survivor = linking[0].customer_id.clone();
    assert_eq!(linking[0].merged_customer_ids.len(), 1, "{linking:?}");
    let absorbed = linking[0].merged_customer_ids[0].clone();
    assert_ne!(absorbed, survivor);
    assert!(first.iter().any(|r| r.customer_id == absorbed));

    let results = record(
        &hub,
        vec![
            visit("v1", by_id(&absorbed), "branch.teller"),
            visit("v2", by_source("crm", "c-1"), "branch.teller"),
            visit("v3", by_source("crm", "c-2"), "branch.teller"),
        ],
    )
    .await;
    for r in &results {
        assert_eq!(
            (r.outcome, r.customer_id.as_str()),
            (pb::InteractionOutcome::Created as i32, survivor.as_str()),
            "{r:?}"
        );
    }
}

#[tokio::test]
async fn junk_source_customer_ids_are_rejected() {
    let hub = TestHub::builder().demo().start().await;
    let results = record(
        &hub,
        vec![
            visit("v1", by_source("web-analytics", "anonymous"), "website"),
            visit("v2", by_source("pos", "GUEST"), "branch.teller"),
            visit("v3", by_source("crm", "0"), "website"),
            visit("v4", by_source("crm", "c-1"), "website"),
        ],
    )
    .await;
    assert_eq!(
        outcomes(&results),
        [
            pb::InteractionOutcome::Rejected,
            pb::InteractionOutcome::Rejected,
            pb::InteractionOutcome::Rejected,
            pb::InteractionOutcome::Created,
        ]
    );
    for r in &results[..3] {
        assert_eq!(r.violations.len(), 1, "{r:?}");
        assert_eq!(r.violations[0].field, "customer.source_ref.id");
        assert!(r.violations[0].description.contains("PLACEHOLDER"), "{r:?}");
        assert!(r.customer_id.is_empty());
    }
}

#[tokio::test]
async fn recording_interactions_needs_the_write_scope() {
    let hub = TestHub::builder()
        .demo()
        .token("dashboard:touchpoints:read:read-secret")
        .token("web-analytics:touchpoints:write:write-secret")
        .start()
        .await;
    let mut client = hub.touchpoints().await;
    let request = || pb::RecordInteractionsRequest {
        interactions: vec![visit("v1", by_source("crm", "c-1"), "website")],
    };
    refused(
        client
            .record_interactions(with_token(request(), "read-secret"))
            .await,
        Code::PermissionDenied,
        "MISSING_SCOPE",
    );
    let results = client
        .record_interactions(with_token(request(), "write-secret"))
        .await
        .expect("recorded")
        .into_inner()
        .results;
    assert_eq!(outcomes(&results), [pb::InteractionOutcome::Created]);
}
