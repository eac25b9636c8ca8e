//! The `cxhub` binary as an operator runs it: a real process, killed with SIGKILL or stopped
//! with SIGTERM (SQLite; PostgreSQL's own durability is PostgreSQL's job), and several
//! replicas over one PostgreSQL database.

use std::collections::{BTreeSet, HashMap};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cxhub_proto::common::v1 as common;
use cxhub_proto::feeds::v1 as feeds;
use cxhub_proto::profile::v1 as profile;
use cxhub_proto::touchpoint::v1 as pb;
use feeds::RecordOutcome::{Created, Unchanged};
use feeds::feed_service_client::FeedServiceClient;
use pb::touchpoint_registry_service_client::TouchpointRegistryServiceClient;
use profile::customer_profile_service_client::CustomerProfileServiceClient;
// tonic re-exports tokio-stream (this crate does not depend on it) for client streams.
use tonic::codegen::tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

fn start(db: &Path, port: u16) -> Child {
    start_on(&format!("sqlite://{}", db.display()), port)
}

fn start_on(database_url: &str, port: u16) -> Child {
    Command::new(env!("CARGO_BIN_EXE_cxhub"))
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .args(["--database-url", database_url])
        .args(["--drain-timeout", "2s"])
        .env_remove("CXHUB_CONFIG")
        .env_remove("CXHUB_AUTH_TOKENS")
        .env_remove("CXHUB_SERVICES")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("cxhub starts")
}

/// Waits until the hub answers its health check as SERVING.
async fn connect(port: u16) -> Channel {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(channel) = Channel::from_shared(format!("http://127.0.0.1:{port}"))
            .expect("uri")
            .connect()
            .await
        {
            let health = HealthClient::new(channel.clone())
                .check(HealthCheckRequest {
                    service: String::new(),
                })
                .await;
            if health.is_ok_and(|r| r.into_inner().status == ServingStatus::Serving as i32) {
                return channel;
            }
        }
        assert!(
            Instant::now() < deadline,
            "the hub did not become healthy within 30 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn touchpoint(i: usize) -> pb::Touchpoint {
    pb::Touchpoint {
        key: format!("durable.t{i:04}"),
        name: format!("Durable {i}"),
        channel: pb::Channel::Web as i32,
        stage: pb::JourneyStage::Usage as i32,
        department: "digital".into(),
        main: true,
        ..Default::default()
    }
}

#[tokio::test]
async fn acknowledged_writes_survive_kill_9() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("hub.db");
    let port = free_port();
    let mut hub = start(&db, port);
    let mut client = TouchpointRegistryServiceClient::new(connect(port).await);

    // Acknowledged one by one, then the process dies without any chance to flush.
    let mut acknowledged = Vec::new();
    for i in 0..200 {
        let created = client
            .create_touchpoint(pb::CreateTouchpointRequest {
                touchpoint: Some(touchpoint(i)),
                request_id: format!("durable-{i}"),
            })
            .await
            .expect("create acknowledged")
            .into_inner()
            .touchpoint
            .expect("touchpoint");
        acknowledged.push(created);
    }
    hub.kill().expect("SIGKILL");
    hub.wait().expect("reaped");

    let port = free_port();
    let mut hub = start(&db, port);
    let mut client = TouchpointRegistryServiceClient::new(connect(port).await);
    for before in &acknowledged {
        let after = client
            .get_touchpoint(pb::GetTouchpointRequest {
                lookup: Some(pb::get_touchpoint_request::Lookup::Key(before.key.clone())),
            })
            .await
            .unwrap_or_else(|status| panic!("{} lost after kill -9: {status:?}", before.key))
            .into_inner()
            .touchpoint;
        assert_eq!(after.as_ref(), Some(before));
    }
    // A retry of an acknowledged request after the crash answers the first result.
    let retry = client
        .create_touchpoint(pb::CreateTouchpointRequest {
            touchpoint: Some(touchpoint(7)),
            request_id: "durable-7".into(),
        })
        .await
        .expect("retry after restart")
        .into_inner()
        .touchpoint;
    assert_eq!(retry.as_ref(), Some(&acknowledged[7]));
    hub.kill().expect("SIGKILL");
    hub.wait().expect("reaped");
}

#[tokio::test]
async fn sigterm_stops_the_hub_cleanly() {
    let dir = tempfile::tempdir().expect("temp dir");
    let port = free_port();
    let mut hub = start(&dir.path().join("hub.db"), port);
    connect(port).await;
    let sent = Command::new("kill")
        .args(["-TERM", &hub.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(sent.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = hub.try_wait().expect("wait") {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "the hub did not exit within 10 s of SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "exit status {status:?}");
}

#[test]
fn a_public_address_without_tokens_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let output = Command::new(env!("CARGO_BIN_EXE_cxhub"))
        .args(["serve", "--listen", "0.0.0.0:0"])
        .args([
            "--database-url",
            &format!("sqlite://{}", dir.path().join("hub.db").display()),
        ])
        .env_remove("CXHUB_AUTH_TOKENS")
        .env_remove("CXHUB_ALLOW_UNAUTHENTICATED")
        .env_remove("CXHUB_CONFIG")
        .output()
        .expect("cxhub runs");
    assert!(!output.status.success(), "it must refuse to start");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("allow-unauthenticated"),
        "the refusal says how to proceed: {stderr}"
    );
}

#[test]
fn serve_help_documents_every_setting() {
    let output = Command::new(env!("CARGO_BIN_EXE_cxhub"))
        .args(["serve", "--help"])
        .output()
        .expect("cxhub runs");
    let help = String::from_utf8_lossy(&output.stdout);
    for flag in [
        "--listen",
        "--database-url",
        "--services",
        "--config",
        "--demo",
        "--log-format",
        "--max-message-bytes",
        "--max-concurrent-requests",
        "--request-timeout",
        "--drain-timeout",
        "--auth-token",
        "--allow-unauthenticated",
        "CXHUB_LISTEN",
        "CXHUB_DATABASE_URL",
    ] {
        assert!(
            help.contains(flag),
            "{flag} missing from serve --help:\n{help}"
        );
    }
}

// ------------------------------------------------------------------------------------------------
// Feeds: a sync stream cut by kill -9 and resumed; replicas ingesting at once.

/// Source customers of the stream.
const CUSTOMERS: usize = 10_000;
/// Records of the stream: orders, ten per source customer.
const RECORDS: usize = 100_000;
/// Records per batch (the hub's default limit).
const BATCH: usize = 1_000;
const BATCHES: usize = RECORDS / BATCH;
/// Acknowledged batches after which the client stops reading answers.
const KILL_AFTER: usize = 30;
/// Batches committed but not acknowledged when the hub is killed (at least).
const UNACKED: usize = 3;
/// 2023-11-14T22:13:20Z: versions of the records count up from here.
const T0: i64 = 1_700_000_000;

/// A hub process, killed (SIGKILL) when dropped so that a failing test leaves none behind.
struct Running(Child);

impl Running {
    fn kill_9(&mut self) {
        self.0.kill().expect("SIGKILL");
        self.0.wait().expect("reaped");
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn source_customer(i: usize) -> String {
    format!("c-{:05}", i % CUSTOMERS)
}

/// Record `i` of the stream: always the same content, so a re-send is UNCHANGED.
fn stream_order(i: usize) -> feeds::Record {
    let n = i64::try_from(i).expect("small");
    let mut order = feeds::Order {
        lines: vec![feeds::OrderLine {
            sku: format!("SKU-{}", i % 97),
            quantity: 1 + n % 5,
            unit_price: Some(common::Money {
                amount_minor: 100 + n % 1_000,
                currency_code: "EUR".into(),
            }),
        }],
        channel: pb::Channel::Web as i32,
        status: feeds::OrderStatus::Placed as i32,
        ..Default::default()
    };
    order.ordered_at.get_or_insert_default().seconds = T0 + n;
    let mut record = feeds::Record {
        source: "sap-erp".into(),
        record_id: format!("SO-{i:06}"),
        customer: Some(common::SourceCustomer {
            source_customer_id: source_customer(i),
            ..Default::default()
        }),
        body: Some(feeds::record::Body::Order(order)),
        ..Default::default()
    };
    record.updated_at.get_or_insert_default().seconds = T0 + n;
    record
}

/// Batch `b` of the stream, numbered `b`.
fn stream_batch(b: usize) -> feeds::SyncRecordsRequest {
    feeds::SyncRecordsRequest {
        batch_number: u64::try_from(b).expect("small"),
        records: (b * BATCH..(b + 1) * BATCH).map(stream_order).collect(),
    }
}

/// Checks the answer to batch `b`: in order, one result per record, each outcome one of
/// `allowed`, and every record of a source customer with the same hub customer (`owners`).
fn check_answer(
    answer: &feeds::SyncRecordsResponse,
    b: usize,
    allowed: &[feeds::RecordOutcome],
    owners: &mut HashMap<String, String>,
) {
    assert_eq!(
        answer.batch_number,
        u64::try_from(b).expect("small"),
        "batches are answered in order"
    );
    assert_eq!(answer.results.len(), BATCH, "batch {b}");
    for (k, result) in answer.results.iter().enumerate() {
        let i = b * BATCH + k;
        assert!(
            allowed.contains(&result.outcome()),
            "record {i}: {result:?}, expected one of {allowed:?}"
        );
        let owner = owners
            .entry(source_customer(i))
            .or_insert_with(|| result.customer_id.clone());
        assert_eq!(
            owner, &result.customer_id,
            "record {i}: one hub customer per source customer"
        );
    }
}

/// Sends the stream's batches `numbers` on one new SyncRecords stream and returns every answer.
async fn sync_all(
    client: &mut FeedServiceClient<Channel>,
    numbers: &[usize],
) -> Vec<feeds::SyncRecordsResponse> {
    let (tx, rx) = tokio::sync::mpsc::channel(2);
    let to_send = numbers.to_vec();
    let sender = tokio::spawn(async move {
        for b in to_send {
            if tx.send(stream_batch(b)).await.is_err() {
                return;
            }
        }
    });
    let mut answers = client
        .sync_records(ReceiverStream::new(rx))
        .await
        .expect("the stream opens")
        .into_inner();
    let mut out = Vec::with_capacity(numbers.len());
    while let Some(answer) = answers.message().await.expect("an answer") {
        out.push(answer);
    }
    sender.await.expect("sender");
    assert_eq!(out.len(), numbers.len(), "every batch is answered");
    out
}

/// Reads every customer of `owners` (source customer → hub id); returns the sum of their
/// record counts. Each must be live, hold its source id alone (linking: no other customer
/// holds it) and ten records.
async fn read_stream_customers(channel: Channel, owners: &HashMap<String, String>) -> i64 {
    let pairs: Vec<(String, String)> = owners.iter().map(|(s, c)| (s.clone(), c.clone())).collect();
    let mut readers = tokio::task::JoinSet::new();
    for chunk in pairs.chunks(pairs.len().div_ceil(8).max(1)) {
        let chunk = chunk.to_vec();
        let mut client = CustomerProfileServiceClient::new(channel.clone());
        readers.spawn(async move {
            let mut total = 0;
            for (source_id, id) in chunk {
                let got = client
                    .get_customer(profile::GetCustomerRequest {
                        customer_id: id.clone(),
                    })
                    .await
                    .unwrap_or_else(|status| panic!("customer {id}: {status:?}"))
                    .into_inner();
                assert!(!got.redirected, "{id} was merged into another customer");
                let c = got.customer.expect("customer");
                assert_eq!(
                    c.identities,
                    [profile::Identity {
                        kind: profile::IdentityKind::SourceId as i32,
                        value: format!("sap-erp:{source_id}"),
                        linking: true,
                    }],
                    "customer {id}"
                );
                assert_eq!(c.record_count, 10, "customer {id} of {source_id}");
                total += c.record_count;
            }
            total
        });
    }
    let mut total = 0;
    while let Some(part) = readers.join_next().await {
        total += part.expect("reader");
    }
    total
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_stream_cut_by_kill_9_resumes_exactly_once() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("hub.db");
    let port = free_port();
    let mut hub = Running(start(&db, port));
    let mut client = FeedServiceClient::new(connect(port).await);
    let mut owners: HashMap<String, String> = HashMap::new();

    // Stream every batch and read the first KILL_AFTER answers.
    let (tx, rx) = tokio::sync::mpsc::channel(2);
    let sender = tokio::spawn(async move {
        for b in 0..BATCHES {
            if tx.send(stream_batch(b)).await.is_err() {
                return;
            }
        }
    });
    let mut answers = client
        .sync_records(ReceiverStream::new(rx))
        .await
        .expect("the stream opens")
        .into_inner();
    for b in 0..KILL_AFTER {
        let answer = answers
            .message()
            .await
            .expect("an answer")
            .expect("the stream is open");
        check_answer(&answer, b, &[Created], &mut owners);
    }
    // Then stop reading: the hub goes on committing the batches it received, their answers
    // wait in buffers. Once it committed UNACKED more, kill it, with batches still in flight.
    let committed = KILL_AFTER + UNACKED - 1;
    let probe = owners[&source_customer(committed * BATCH)].clone();
    let expected = i64::try_from(committed / (CUSTOMERS / BATCH) + 1).expect("small");
    let mut profiles = CustomerProfileServiceClient::new(connect(port).await);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let count = profiles
            .get_customer(profile::GetCustomerRequest {
                customer_id: probe.clone(),
            })
            .await
            .expect("read")
            .into_inner()
            .customer
            .expect("customer")
            .record_count;
        if count >= expected {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "batch {committed} was not committed within 30 s"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    hub.kill_9();
    drop(answers);
    sender.abort();

    // Restart on the same file and resume: every batch not answered, plus a few answered ones
    // to show that those were kept exactly once.
    let port = free_port();
    let _hub = Running(start(&db, port));
    let channel = connect(port).await;
    let mut client = FeedServiceClient::new(channel.clone());
    let resend: Vec<usize> = [0, KILL_AFTER / 2, KILL_AFTER - 1]
        .into_iter()
        .chain(KILL_AFTER..BATCHES)
        .collect();
    let answers = sync_all(&mut client, &resend).await;
    for (answer, &b) in answers.iter().zip(&resend) {
        let allowed: &[_] = if b <= committed {
            // Acknowledged, or committed and never acknowledged.
            &[Unchanged]
        } else {
            // Perhaps committed just before the kill (UNCHANGED), perhaps not (CREATED).
            &[Created, Unchanged]
        };
        check_answer(answer, b, allowed, &mut owners);
    }

    // Every record is there once: all of them again answer UNCHANGED, under the same customers.
    let everything: Vec<usize> = (0..BATCHES).collect();
    for (answer, &b) in sync_all(&mut client, &everything)
        .await
        .iter()
        .zip(&everything)
    {
        check_answer(answer, b, &[Unchanged], &mut owners);
    }
    assert_eq!(owners.len(), CUSTOMERS);
    let distinct: BTreeSet<&String> = owners.values().collect();
    assert_eq!(
        distinct.len(),
        CUSTOMERS,
        "one hub customer per source customer"
    );
    let total = read_stream_customers(channel, &owners).await;
    assert_eq!(
        total,
        i64::try_from(RECORDS).expect("small"),
        "every record stored exactly once"
    );
}

/// People both replicas ingest records about.
const PEOPLE: usize = 120;
/// Concurrent IngestRecords calls per replica.
const CALLS_PER_HUB: usize = 6;

fn email(k: usize) -> String {
    format!("person{k:03}@mail.pt")
}

fn alt_email(k: usize) -> String {
    format!("p{k:03}.alt@work.pt")
}

fn record(
    source: &str,
    id: String,
    customer: String,
    mail: String,
    body: feeds::record::Body,
) -> feeds::Record {
    let mut record = feeds::Record {
        source: source.into(),
        record_id: id,
        customer: Some(common::SourceCustomer {
            source_customer_id: customer,
            emails: vec![mail],
            phones: Vec::new(),
        }),
        body: Some(body),
        ..Default::default()
    };
    record.updated_at.get_or_insert_default().seconds = T0;
    record
}

/// Replica 0's records about person `k`: a CRM contact under the e-mail, a billing invoice
/// under the other address.
fn replica_0_records(k: usize) -> [feeds::Record; 2] {
    let mut invoice = feeds::Invoice {
        amount: Some(common::Money {
            amount_minor: 4_900,
            currency_code: "EUR".into(),
        }),
        status: feeds::InvoiceStatus::Open as i32,
        ..Default::default()
    };
    invoice.issued_at.get_or_insert_default().seconds = T0;
    invoice.due_at.get_or_insert_default().seconds = T0 + 86_400;
    [
        record(
            "salesforce-eu",
            format!("CT-{k}"),
            format!("crm-{k:03}"),
            email(k),
            feeds::record::Body::Contact(feeds::Contact {
                given_name: format!("Person {k}"),
                family_name: "Replica".into(),
                ..Default::default()
            }),
        ),
        record(
            "stripe",
            format!("in-{k}"),
            format!("cus-{k:03}"),
            alt_email(k),
            feeds::record::Body::Invoice(invoice),
        ),
    ]
}

/// Replica 1's records about person `k`: a webshop order under the other address, a billing
/// payment (same billing customer as the invoice) under the e-mail.
fn replica_1_records(k: usize) -> [feeds::Record; 2] {
    let mut order = feeds::Order {
        lines: vec![feeds::OrderLine {
            sku: "SKU-1".into(),
            quantity: 1,
            unit_price: Some(common::Money {
                amount_minor: 4_900,
                currency_code: "EUR".into(),
            }),
        }],
        channel: pb::Channel::Web as i32,
        status: feeds::OrderStatus::Placed as i32,
        ..Default::default()
    };
    order.ordered_at.get_or_insert_default().seconds = T0;
    let mut payment = feeds::Payment {
        amount: Some(common::Money {
            amount_minor: 4_900,
            currency_code: "EUR".into(),
        }),
        status: feeds::PaymentStatus::Succeeded as i32,
        ..Default::default()
    };
    payment.attempted_at.get_or_insert_default().seconds = T0;
    [
        record(
            "webshop",
            format!("SO-{k}"),
            format!("u-{k:03}"),
            alt_email(k),
            feeds::record::Body::Order(order),
        ),
        record(
            "stripe",
            format!("py-{k}"),
            format!("cus-{k:03}"),
            email(k),
            feeds::record::Body::Payment(payment),
        ),
    ]
}

/// A fresh PostgreSQL schema for the replicas, dropped (with everything in it) when dropped.
struct Schema {
    url: String,
    name: String,
}

impl Schema {
    async fn create(url: &str) -> Schema {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let name = format!("replicas_{nanos}");
        // Connecting with a schema creates it.
        cxhub_store::Store::connect(
            url,
            cxhub_store::StoreOptions {
                schema: Some(name.clone()),
                ..Default::default()
            },
        )
        .await
        .expect("the test schema is created");
        Schema {
            url: url.to_owned(),
            name,
        }
    }

    /// The database URL of the schema, as a replica takes it: libpq's `options` parameter
    /// sets the `search_path` of every connection.
    fn database_url(&self) -> String {
        let separator = if self.url.contains('?') { '&' } else { '?' };
        format!(
            "{}{separator}options=-csearch_path%3D{}",
            self.url, self.name
        )
    }
}

impl Drop for Schema {
    fn drop(&mut self) {
        let (url, name) = (self.url.clone(), self.name.clone());
        // Drop is synchronous: drop the schema from a thread with its own runtime.
        let cleanup = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build();
            if let Ok(runtime) = runtime {
                let _ = runtime.block_on(cxhub_store::drop_postgres_schema(&url, &name));
            }
        });
        let _ = cleanup.join();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL: set CXHUB_TEST_POSTGRES_URL and run with --include-ignored"]
async fn two_replicas_on_one_postgres_make_one_customer_per_email() {
    let url = std::env::var("CXHUB_TEST_POSTGRES_URL")
        .ok()
        .filter(|u| !u.is_empty())
        .expect("CXHUB_TEST_POSTGRES_URL names a PostgreSQL database");
    let schema = Schema::create(&url).await;
    let database_url = schema.database_url();
    // Two replicas of the hub over the one schema, started together (they migrate once).
    let listeners: Vec<TcpListener> = (0..2)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind"))
        .collect();
    let ports: Vec<u16> = listeners
        .iter()
        .map(|l| l.local_addr().expect("addr").port())
        .collect();
    drop(listeners);
    let _replicas: Vec<Running> = ports
        .iter()
        .map(|port| Running(start_on(&database_url, *port)))
        .collect();
    let mut channels = Vec::new();
    for port in &ports {
        channels.push(connect(*port).await);
    }

    // Each replica gets its records in CALLS_PER_HUB batches sent at once: replica 0 takes the
    // people in ascending order, replica 1 in descending order, so they meet on every person
    // while both are busy.
    let mut calls = tokio::task::JoinSet::new();
    for (replica, channel) in channels.iter().enumerate() {
        for call in 0..CALLS_PER_HUB {
            let mut records = Vec::new();
            for k in (0..PEOPLE).filter(|k| k % CALLS_PER_HUB == call) {
                if replica == 0 {
                    records.extend(replica_0_records(k).into_iter().map(|r| (k, r)));
                } else {
                    let k = PEOPLE - 1 - k;
                    records.extend(replica_1_records(k).into_iter().map(|r| (k, r)));
                }
            }
            let mut client = FeedServiceClient::new(channel.clone());
            calls.spawn(async move {
                let (people, records): (Vec<usize>, Vec<feeds::Record>) =
                    records.into_iter().unzip();
                let results = client
                    .ingest_records(feeds::IngestRecordsRequest { records })
                    .await
                    .unwrap_or_else(|status| panic!("replica {replica} call {call}: {status:?}"))
                    .into_inner()
                    .results;
                assert_eq!(results.len(), people.len());
                for r in &results {
                    assert_eq!(r.outcome(), Created, "{r:?}");
                }
                people
                    .into_iter()
                    .zip(results.into_iter().map(|r| r.customer_id))
                    .collect::<Vec<_>>()
            });
        }
    }
    let mut answered: HashMap<usize, BTreeSet<String>> = HashMap::new();
    while let Some(done) = calls.join_next().await {
        for (k, customer) in done.expect("call") {
            answered.entry(k).or_default().insert(customer);
        }
    }
    assert_eq!(answered.len(), PEOPLE);

    // Every customer id any answer named now leads to one live customer per person, whichever
    // replica is asked, holding everything known about that person.
    let mut live_ids = BTreeSet::new();
    for (k, ids) in &answered {
        let mut live = BTreeSet::new();
        for (i, id) in ids.iter().enumerate() {
            let mut profiles = CustomerProfileServiceClient::new(channels[i % 2].clone());
            let c = profiles
                .get_customer(profile::GetCustomerRequest {
                    customer_id: id.clone(),
                })
                .await
                .unwrap_or_else(|status| panic!("customer {id}: {status:?}"))
                .into_inner()
                .customer
                .expect("customer");
            live.insert(c.customer_id.clone());
            assert_eq!(c.emails, [alt_email(*k), email(*k)], "person {k}: {c:?}");
            assert_eq!(c.record_count, 4, "person {k}: {c:?}");
            let values: BTreeSet<&str> = c.identities.iter().map(|i| i.value.as_str()).collect();
            let crm = format!("salesforce-eu:crm-{k:03}");
            let shop = format!("webshop:u-{k:03}");
            let billing = format!("stripe:cus-{k:03}");
            let (e, a) = (email(*k), alt_email(*k));
            assert_eq!(
                values,
                BTreeSet::from([
                    crm.as_str(),
                    shop.as_str(),
                    billing.as_str(),
                    e.as_str(),
                    a.as_str()
                ]),
                "person {k}"
            );
            assert!(
                c.identities.iter().all(|i| i.linking),
                "no identifier of person {k} is held by a second customer: {c:?}"
            );
        }
        assert_eq!(live.len(), 1, "person {k} is one customer: {live:?}");
        live_ids.extend(live);
    }
    assert_eq!(live_ids.len(), PEOPLE, "no two people share a customer");
}

// ------------------------------------------------------------------------------------------------
// The change feed across restarts and replicas

fn person(source: &str, id: &str) -> feeds::Record {
    let mut record = feeds::Record {
        source: source.into(),
        record_id: format!("{id}-contact"),
        customer: Some(common::SourceCustomer {
            source_customer_id: id.into(),
            emails: vec![format!("{id}@mail.pt")],
            ..Default::default()
        }),
        body: Some(feeds::record::Body::Contact(feeds::Contact {
            given_name: format!("Person {id}"),
            ..Default::default()
        })),
        ..Default::default()
    };
    record.updated_at.get_or_insert_default().seconds = T0;
    record
}

async fn ingest_people(channel: Channel, source: &str, ids: &[String]) {
    let results = FeedServiceClient::new(channel)
        .ingest_records(feeds::IngestRecordsRequest {
            records: ids.iter().map(|id| person(source, id)).collect(),
        })
        .await
        .expect("ingest")
        .into_inner()
        .results;
    assert!(
        results.iter().all(|r| r.outcome() == Created),
        "{results:?}"
    );
}

/// Reads the change stream until `n` changes arrived (30 s at most).
async fn take_changes(
    stream: &mut tonic::Streaming<profile::WatchCustomerChangesResponse>,
    n: usize,
) -> Vec<profile::CustomerChange> {
    let mut changes = Vec::new();
    while changes.len() < n {
        let next = tokio::time::timeout(Duration::from_secs(30), stream.message())
            .await
            .unwrap_or_else(|_| panic!("{} of {n} changes arrived", changes.len()))
            .expect("stream healthy")
            .expect("stream open");
        changes.extend(next.changes);
    }
    changes
}

async fn watch_from(
    channel: Channel,
    req: profile::WatchCustomerChangesRequest,
) -> tonic::Streaming<profile::WatchCustomerChangesResponse> {
    CustomerProfileServiceClient::new(channel)
        .watch_customer_changes(req)
        .await
        .expect("watch")
        .into_inner()
}

#[tokio::test]
async fn the_change_feed_resumes_after_kill_9_exactly_once() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("hub.db");
    let port = free_port();
    let mut hub = Running(start(&db, port));
    let channel = connect(port).await;
    let first: Vec<String> = (0..3).map(|i| format!("k{i}")).collect();
    ingest_people(channel.clone(), "crm", &first).await;
    let mut stream = watch_from(
        channel,
        profile::WatchCustomerChangesRequest {
            from_oldest: true,
            ..Default::default()
        },
    )
    .await;
    let seen = take_changes(&mut stream, 3).await;
    let token = seen[2].resume_token.clone();
    hub.kill_9();

    // Restarted on the same file: more changes, then a resume from the token of the third.
    let port = free_port();
    let _hub = Running(start(&db, port));
    let channel = connect(port).await;
    let second: Vec<String> = (3..5).map(|i| format!("k{i}")).collect();
    ingest_people(channel.clone(), "crm", &second).await;
    let mut resumed = watch_from(
        channel,
        profile::WatchCustomerChangesRequest {
            resume_token: token,
            ..Default::default()
        },
    )
    .await;
    let after = take_changes(&mut resumed, 2).await;
    assert!(
        after
            .iter()
            .all(|c| c.kind() == profile::CustomerChangeKind::Created),
        "{after:?}"
    );
    assert_eq!(
        after.iter().map(|c| c.sequence).collect::<Vec<_>>(),
        [seen[2].sequence + 1, seen[2].sequence + 2],
        "exactly the changes after the token"
    );
    // Nothing else follows.
    if let Ok(next) = tokio::time::timeout(Duration::from_millis(700), resumed.message()).await {
        let next = next.expect("healthy").expect("open");
        assert!(next.changes.is_empty(), "{next:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL: set CXHUB_TEST_POSTGRES_URL and run with --include-ignored"]
async fn a_replica_streams_every_change_of_both_replicas_in_commit_order() {
    let url = std::env::var("CXHUB_TEST_POSTGRES_URL")
        .ok()
        .filter(|u| !u.is_empty())
        .expect("CXHUB_TEST_POSTGRES_URL names a PostgreSQL database");
    let schema = Schema::create(&url).await;
    let database_url = schema.database_url();
    let ports = [free_port(), free_port()];
    let _replicas: Vec<Running> = ports
        .iter()
        .map(|port| Running(start_on(&database_url, *port)))
        .collect();
    let a = connect(ports[0]).await;
    let b = connect(ports[1]).await;
    // A watcher on replica B, from now on.
    let mut stream = watch_from(b.clone(), profile::WatchCustomerChangesRequest::default()).await;
    // Both replicas ingest different people at once, 10 batches of 5 each.
    let writers: Vec<_> = [("a", a), ("b", b)]
        .into_iter()
        .map(|(name, channel)| {
            tokio::spawn(async move {
                for batch in 0..10 {
                    let ids: Vec<String> = (0..5).map(|i| format!("{name}-{batch}-{i}")).collect();
                    ingest_people(channel.clone(), "crm", &ids).await;
                }
            })
        })
        .collect();
    for w in writers {
        w.await.expect("writer");
    }
    let changes = take_changes(&mut stream, 100).await;
    assert_eq!(changes.len(), 100);
    let sequences: Vec<i64> = changes.iter().map(|c| c.sequence).collect();
    assert!(
        sequences.windows(2).all(|w| w[1] == w[0] + 1),
        "gapless and ascending: {sequences:?}"
    );
    let customers: BTreeSet<&str> = changes.iter().map(|c| c.customer_id.as_str()).collect();
    assert_eq!(customers.len(), 100, "one creation per person");
    drop(schema);
}

// ------------------------------------------------------------------------------------------------
// Loyalty: budgets and the points ledger under two hub processes on one PostgreSQL database.

/// The `google.rpc.ErrorInfo` reason of a refusal.
fn reason(status: &tonic::Status) -> String {
    use tonic_types::StatusExt;
    status
        .get_details_error_info()
        .map(|i| i.reason)
        .unwrap_or_default()
}

fn eur(minor: i64) -> Option<common::Money> {
    Some(common::Money {
        amount_minor: minor,
        currency_code: "EUR".into(),
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL: set CXHUB_TEST_POSTGRES_URL and run with --include-ignored"]
async fn two_hub_processes_on_one_postgres_never_overspend_a_budget_nor_overdraw_points() {
    use cxhub_proto::loyalty::v1 as loyalty;
    use loyalty::loyalty_action_service_client::LoyaltyActionServiceClient;

    let url = std::env::var("CXHUB_TEST_POSTGRES_URL")
        .ok()
        .filter(|u| !u.is_empty())
        .expect("CXHUB_TEST_POSTGRES_URL names a PostgreSQL database");
    let schema = Schema::create(&url).await;
    let database_url = schema.database_url();
    let ports = [free_port(), free_port()];
    let _hubs: Vec<Running> = ports
        .iter()
        .map(|port| Running(start_on(&database_url, *port)))
        .collect();
    let mut channels = Vec::new();
    for port in &ports {
        channels.push(connect(*port).await);
    }
    let mut a = LoyaltyActionServiceClient::new(channels[0].clone());
    let b = LoyaltyActionServiceClient::new(channels[1].clone());

    // Twelve customers, through the first process's feed.
    let ids: Vec<String> = (0..12).map(|i| format!("budget-{i}")).collect();
    let results = FeedServiceClient::new(channels[0].clone())
        .ingest_records(feeds::IngestRecordsRequest {
            records: ids.iter().map(|id| person("crm", id)).collect(),
        })
        .await
        .expect("ingest")
        .into_inner()
        .results;
    let customers: Vec<String> = results.into_iter().map(|r| r.customer_id).collect();
    assert!(customers.iter().all(|c| !c.is_empty()), "{customers:?}");

    // A budget of 30.00 EUR and ten goodwill credits of 10.00 EUR, proposed through both.
    let promo = a
        .create_campaign(loyalty::CreateCampaignRequest {
            request_id: "campaign-1".into(),
            campaign: Some(loyalty::Campaign {
                key: "two.processes".into(),
                name: "Two processes".into(),
                budget: eur(3_000),
                ..Default::default()
            }),
        })
        .await
        .expect("campaign")
        .into_inner()
        .campaign
        .expect("campaign");
    let mut actions = Vec::new();
    for (i, customer) in customers.iter().take(10).enumerate() {
        let mut client = if i % 2 == 0 { a.clone() } else { b.clone() };
        let mut credit = loyalty::ActionInput {
            customer_id: customer.clone(),
            kind: loyalty::ActionKind::GoodwillCredit as i32,
            reason: "late delivery".into(),
            channel: loyalty::ContactChannel::Email as i32,
            assignee_team: "care".into(),
            value: eur(1_000),
            campaign_id: promo.id.clone(),
            ..Default::default()
        };
        credit.due_at.get_or_insert_default().seconds = 4_102_444_800; // 2100-01-01
        let action = client
            .propose_action(loyalty::ProposeActionRequest {
                request_id: format!("propose-{i}"),
                action: Some(credit),
            })
            .await
            .expect("proposed")
            .into_inner()
            .action
            .expect("action");
        actions.push(action.id);
    }
    // All ten approved at once, alternating between the processes: exactly three fit.
    let mut approvals = tokio::task::JoinSet::new();
    for (i, id) in actions.into_iter().enumerate() {
        let mut client = if i % 2 == 0 { a.clone() } else { b.clone() };
        approvals.spawn(async move {
            client
                .transition_action(loyalty::TransitionActionRequest {
                    request_id: format!("approve-{i}"),
                    action_id: id,
                    to_state: loyalty::ActionState::Approved as i32,
                    etag: String::new(),
                })
                .await
        });
    }
    let mut approved = 0;
    while let Some(result) = approvals.join_next().await {
        match result.expect("task") {
            Ok(_) => approved += 1,
            Err(status) => assert_eq!(reason(&status), "BUDGET_EXHAUSTED", "{status:?}"),
        }
    }
    assert_eq!(approved, 3);
    let mut b_reader = b.clone();
    let campaign = b_reader
        .get_campaign(loyalty::GetCampaignRequest {
            lookup: Some(loyalty::get_campaign_request::Lookup::Id(promo.id.clone())),
        })
        .await
        .expect("campaign")
        .into_inner()
        .campaign
        .expect("campaign");
    assert_eq!(
        campaign.reserved.map(|m| m.amount_minor),
        Some(3_000),
        "reserved by both processes together"
    );

    // Points: 100 earned; 20 redemptions of 10 through both processes at once: exactly 10 pass,
    // and a redemption retried with its request id is answered, not applied twice.
    let ana = customers[10].clone();
    a.accrue_points(loyalty::AccruePointsRequest {
        request_id: "accrue-1".into(),
        customer_id: ana.clone(),
        points: 100,
        source_ref: "order-1".into(),
        expires_at: None,
    })
    .await
    .expect("accrued");
    let mut redemptions = tokio::task::JoinSet::new();
    for i in 0..20 {
        let mut client = if i % 2 == 0 { a.clone() } else { b.clone() };
        let ana = ana.clone();
        redemptions.spawn(async move {
            let request = loyalty::RedeemPointsRequest {
                request_id: format!("redeem-{i}"),
                customer_id: ana,
                points: 10,
                source_ref: String::new(),
            };
            let first = client.redeem_points(request.clone()).await;
            let retried = client.redeem_points(request).await;
            (first, retried)
        });
    }
    let mut passed = 0;
    while let Some(result) = redemptions.join_next().await {
        let (first, retried) = result.expect("task");
        match first {
            Ok(answer) => {
                passed += 1;
                let retried = retried.expect("a retry of a redemption that passed");
                assert_eq!(
                    retried.into_inner(),
                    answer.into_inner(),
                    "the first answer"
                );
            }
            Err(status) => assert_eq!(reason(&status), "INSUFFICIENT_POINTS", "{status:?}"),
        }
    }
    assert_eq!(passed, 10);
    let balance = b_reader
        .get_points_balance(loyalty::GetPointsBalanceRequest {
            customer_id: ana,
            recent_entries: 100,
        })
        .await
        .expect("balance")
        .into_inner();
    assert_eq!((balance.balance, balance.entries.len()), (0, 11));
}
