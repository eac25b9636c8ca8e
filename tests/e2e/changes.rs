//! The customer change feed over gRPC: what ingestion writes arrives on the stream in order,
//! a reconnect with the last token delivers every later change exactly once, filters select
//! customers and kinds, and bad requests are refused with their fields.

use std::time::Duration;

use cxhub_proto::common::v1 as common;
use cxhub_proto::feeds::v1 as pb;
use cxhub_proto::profile::v1 as profile;
use cxhub_testkit::TestHub;
use profile::CustomerChangeKind as Kind;
use prost_types::Timestamp;
use tonic::{Code, Streaming};

use crate::{fields, refused};

fn contact(source: &str, customer: &str, email: &str, given: &str, version: i64) -> pb::Record {
    pb::Record {
        source: source.to_owned(),
        record_id: format!("{customer}-contact"),
        updated_at: Some(Timestamp {
            seconds: version,
            nanos: 0,
        }),
        customer: Some(common::SourceCustomer {
            source_customer_id: customer.to_owned(),
            emails: vec![email.to_owned()],
            phones: Vec::new(),
        }),
        body: Some(pb::record::Body::Contact(pb::Contact {
            given_name: given.to_owned(),
            family_name: "Moreira".into(),
            preferred_language: "pt-PT".into(),
            lifecycle_stage: pb::LifecycleStage::Customer as i32,
            ..Default::default()
        })),
    }
}

const T0: i64 = 1_700_000_000;

async fn ingest(hub: &TestHub, records: Vec<pb::Record>) -> Vec<String> {
    hub.feeds()
        .await
        .ingest_records(pb::IngestRecordsRequest { records })
        .await
        .expect("ingest")
        .into_inner()
        .results
        .into_iter()
        .map(|r| r.customer_id)
        .collect()
}

async fn watch(
    hub: &TestHub,
    req: profile::WatchCustomerChangesRequest,
) -> Streaming<profile::WatchCustomerChangesResponse> {
    hub.profiles()
        .await
        .watch_customer_changes(req)
        .await
        .expect("watch accepted")
        .into_inner()
}

/// Reads responses until `n` changes arrived (within 10 s), returning them with the token of
/// the last response read.
async fn take(
    stream: &mut Streaming<profile::WatchCustomerChangesResponse>,
    n: usize,
) -> (Vec<profile::CustomerChange>, String) {
    let mut changes = Vec::new();
    let mut token = String::new();
    while changes.len() < n {
        let next = tokio::time::timeout(Duration::from_secs(10), stream.message())
            .await
            .unwrap_or_else(|_| {
                panic!("only {} of {n} changes arrived: {changes:?}", changes.len())
            })
            .expect("stream healthy")
            .expect("stream open");
        changes.extend(next.changes);
        token = next.resume_token;
    }
    (changes, token)
}

/// Asserts nothing more arrives within a short while.
async fn quiet(stream: &mut Streaming<profile::WatchCustomerChangesResponse>) {
    if let Ok(next) = tokio::time::timeout(Duration::from_millis(700), stream.message()).await {
        let next = next.expect("stream healthy").expect("stream open");
        assert!(next.changes.is_empty(), "unexpected changes: {next:?}");
    }
}

fn kinds(changes: &[profile::CustomerChange]) -> Vec<(String, Kind)> {
    changes
        .iter()
        .map(|c| (c.customer_id.clone(), c.kind()))
        .collect()
}

#[tokio::test]
async fn changes_stream_in_order_and_resume_exactly_once() {
    let hub = TestHub::start().await;
    // Before anything: a watcher from now on, and one from the oldest change.
    let mut live = watch(&hub, profile::WatchCustomerChangesRequest::default()).await;

    let ids = ingest(
        &hub,
        vec![
            contact("crm", "c1", "ana@mail.pt", "Ana", T0),
            contact("billing", "b1", "bea@mail.pt", "Bea", T0),
        ],
    )
    .await;
    let (a, b) = (ids[0].clone(), ids[1].clone());
    let (first, _) = take(&mut live, 2).await;
    assert_eq!(
        kinds(&first),
        [(a.clone(), Kind::Created), (b.clone(), Kind::Created)]
    );
    assert!(first[0].sequence < first[1].sequence);
    assert!(first.iter().all(|c| c.occurred_at.is_some()));

    // A renamed contact is an update naming the field group, never the value.
    ingest(
        &hub,
        vec![contact("crm", "c1", "ana@mail.pt", "Ana Rita", T0 + 1)],
    )
    .await;
    let (renamed, _) = take(&mut live, 1).await;
    assert_eq!(kinds(&renamed), [(a.clone(), Kind::Updated)]);
    assert_eq!(renamed[0].changed_fields, ["name"]);
    let encoded = format!("{renamed:?}");
    assert!(!encoded.contains("Rita"), "no personal data: {encoded}");
    let resume_from = renamed[0].resume_token.clone();
    drop(live);

    // While nobody listens: a contact linking both e-mails merges B into A.
    ingest(
        &hub,
        vec![pb::Record {
            customer: Some(common::SourceCustomer {
                source_customer_id: "s1".into(),
                emails: vec!["ana@mail.pt".into(), "bea@mail.pt".into()],
                phones: Vec::new(),
            }),
            ..contact("shop", "s1", "ana@mail.pt", "Ana", T0 + 2)
        }],
    )
    .await;

    // Resuming delivers exactly what came after the token: the merge and A's update.
    let mut resumed = watch(
        &hub,
        profile::WatchCustomerChangesRequest {
            resume_token: resume_from,
            ..Default::default()
        },
    )
    .await;
    let (later, _) = take(&mut resumed, 2).await;
    assert_eq!(
        kinds(&later),
        [(a.clone(), Kind::Merged), (a.clone(), Kind::Updated)]
    );
    assert_eq!(later[0].related_customer_ids, std::slice::from_ref(&b));
    assert!(!later[0].merge_id.is_empty());
    assert!(later[1].changed_fields.contains(&"source_ids".to_owned()));
    quiet(&mut resumed).await;

    // From the oldest: all five, in order; filtered by B: B's creation and the merge that
    // absorbed it; filtered by kind: only the merge.
    let mut all = watch(
        &hub,
        profile::WatchCustomerChangesRequest {
            from_oldest: true,
            ..Default::default()
        },
    )
    .await;
    let (everything, _) = take(&mut all, 5).await;
    let seqs: Vec<i64> = everything.iter().map(|c| c.sequence).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    let mut only_b = watch(
        &hub,
        profile::WatchCustomerChangesRequest {
            from_oldest: true,
            customer_ids: vec![b.clone()],
            ..Default::default()
        },
    )
    .await;
    let (of_b, token) = take(&mut only_b, 2).await;
    assert_eq!(
        kinds(&of_b),
        [(b.clone(), Kind::Created), (a.clone(), Kind::Merged)]
    );
    assert!(!token.is_empty());
    let mut merges = watch(
        &hub,
        profile::WatchCustomerChangesRequest {
            from_oldest: true,
            kinds: vec![Kind::Merged as i32],
            ..Default::default()
        },
    )
    .await;
    let (only_merges, _) = take(&mut merges, 1).await;
    assert_eq!(kinds(&only_merges), [(a, Kind::Merged)]);
    quiet(&mut merges).await;
}

#[tokio::test]
async fn bad_watch_requests_are_refused_with_their_fields() {
    let hub = TestHub::start().await;
    let mut p = hub.profiles().await;
    let status = refused(
        p.watch_customer_changes(profile::WatchCustomerChangesRequest {
            resume_token: "not-a-token".into(),
            from_oldest: true,
            customer_ids: vec!["nope".into()],
            kinds: vec![Kind::Unspecified as i32, 99],
        })
        .await,
        Code::InvalidArgument,
        "INVALID_FIELDS",
    );
    let mut got = fields(&status);
    got.sort();
    assert_eq!(
        got,
        [
            "customer_ids[0]",
            "from_oldest",
            "kinds[0]",
            "kinds[1]",
            "resume_token"
        ]
    );
    // A well-formed token the log never issued (ahead of its head).
    let ahead = cxhub_domain::change::resume_token(1_000_000);
    let status = refused(
        p.watch_customer_changes(profile::WatchCustomerChangesRequest {
            resume_token: ahead,
            ..Default::default()
        })
        .await,
        Code::InvalidArgument,
        "INVALID_FIELDS",
    );
    assert_eq!(fields(&status), ["resume_token"]);
}
