//! Feeds and customer profiles, end to end: every ingest outcome, validation with field paths,
//! batch limits, identity resolution (junk, e-mail links, merges and their undoing), the sync
//! stream and the scopes.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{SystemTime, UNIX_EPOCH};

use cxhub_proto::common::v1 as common;
use cxhub_proto::feeds::v1 as pb;
use cxhub_proto::profile::v1 as profile;
use cxhub_proto::touchpoint::v1::Channel;
use cxhub_testkit::{TestHub, with_token};
use pb::RecordOutcome::{Conflict, Created, Rejected, Stale, Unchanged, Updated};
use prost_types::Timestamp;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Code;
use tonic::transport::Channel as Transport;

use crate::{fields, refused, rid};

type Feeds = pb::feed_service_client::FeedServiceClient<Transport>;
type Profiles = profile::customer_profile_service_client::CustomerProfileServiceClient<Transport>;

/// 2023-11-14T22:13:20Z: a version in the past, well after 1900.
const T0: i64 = 1_700_000_000;
/// 1900-01-01T00:00:00Z, the earliest timestamp a record may carry.
const Y1900: i64 = -2_208_988_800;
const DAY: i64 = 86_400;

fn ts(seconds: i64) -> Option<Timestamp> {
    Some(Timestamp { seconds, nanos: 0 })
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

fn who(id: &str, emails: &[&str]) -> Option<common::SourceCustomer> {
    Some(common::SourceCustomer {
        source_customer_id: id.to_owned(),
        emails: emails.iter().map(|e| (*e).to_owned()).collect(),
        phones: Vec::new(),
    })
}

fn money(amount_minor: i64, currency: &str) -> Option<common::Money> {
    Some(common::Money {
        amount_minor,
        currency_code: currency.to_owned(),
    })
}

fn line(sku: &str, quantity: i64, unit_price: Option<common::Money>) -> pb::OrderLine {
    pb::OrderLine {
        sku: sku.to_owned(),
        quantity,
        unit_price,
    }
}

/// A valid order of `quantity` units at 12.50 EUR, placed and versioned at `version`.
fn order(source: &str, id: &str, customer: &str, version: i64, quantity: i64) -> pb::Record {
    pb::Record {
        source: source.to_owned(),
        record_id: id.to_owned(),
        updated_at: ts(version),
        customer: who(customer, &[]),
        body: Some(pb::record::Body::Order(pb::Order {
            ordered_at: ts(version),
            lines: vec![line("SKU-1", quantity, money(1250, "EUR"))],
            channel: Channel::Web as i32,
            store_id: String::new(),
            status: pb::OrderStatus::Placed as i32,
        })),
    }
}

/// A valid CRM contact.
fn contact(
    source: &str,
    id: &str,
    customer: Option<common::SourceCustomer>,
    given: &str,
    family: &str,
    version: i64,
) -> pb::Record {
    pb::Record {
        source: source.to_owned(),
        record_id: id.to_owned(),
        updated_at: ts(version),
        customer,
        body: Some(pb::record::Body::Contact(pb::Contact {
            given_name: given.to_owned(),
            family_name: family.to_owned(),
            addresses: vec![pb::PostalAddress {
                lines: vec!["Rua Garrett 12".into()],
                locality: "Lisboa".into(),
                region: String::new(),
                postal_code: "1200-204".into(),
                country_code: "PT".into(),
            }],
            preferred_language: "pt-PT".into(),
            consents: Vec::new(),
            account_id: String::new(),
            lifecycle_stage: pb::LifecycleStage::Customer as i32,
        })),
    }
}

/// A valid open invoice for `amount`.
fn invoice(id: &str, customer: &str, version: i64, amount: Option<common::Money>) -> pb::Record {
    pb::Record {
        source: "stripe".into(),
        record_id: id.to_owned(),
        updated_at: ts(version),
        customer: who(customer, &[]),
        body: Some(pb::record::Body::Invoice(pb::Invoice {
            issued_at: ts(version),
            due_at: ts(version + 30 * DAY),
            amount,
            status: pb::InvoiceStatus::Open as i32,
        })),
    }
}

/// A valid succeeded payment of `amount`.
fn payment(id: &str, customer: &str, version: i64, amount: Option<common::Money>) -> pb::Record {
    pb::Record {
        source: "stripe".into(),
        record_id: id.to_owned(),
        updated_at: ts(version),
        customer: who(customer, &[]),
        body: Some(pb::record::Body::Payment(pb::Payment {
            attempted_at: ts(version),
            amount,
            status: pb::PaymentStatus::Succeeded as i32,
            failure_reason: String::new(),
            invoice_id: String::new(),
        })),
    }
}

fn with_emails(mut record: pb::Record, emails: &[&str]) -> pb::Record {
    if let Some(customer) = record.customer.as_mut() {
        customer.emails = emails.iter().map(|e| (*e).to_owned()).collect();
    }
    record
}

fn order_body(record: &mut pb::Record) -> &mut pb::Order {
    match record.body.as_mut() {
        Some(pb::record::Body::Order(order)) => order,
        other => panic!("not an order: {other:?}"),
    }
}

async fn ingest(c: &mut Feeds, records: Vec<pb::Record>) -> Vec<pb::RecordResult> {
    let n = records.len();
    let results = c
        .ingest_records(pb::IngestRecordsRequest { records })
        .await
        .expect("batch accepted")
        .into_inner()
        .results;
    assert_eq!(results.len(), n, "one result per record");
    for (i, r) in results.iter().enumerate() {
        assert_eq!(r.index, i32::try_from(i).expect("index"), "request order");
    }
    results
}

fn outcomes(results: &[pb::RecordResult]) -> Vec<pb::RecordOutcome> {
    results.iter().map(pb::RecordResult::outcome).collect()
}

fn violation_fields(result: &pb::RecordResult) -> BTreeSet<String> {
    result.violations.iter().map(|v| v.field.clone()).collect()
}

async fn get(p: &mut Profiles, id: &str) -> profile::GetCustomerResponse {
    p.get_customer(profile::GetCustomerRequest {
        customer_id: id.to_owned(),
    })
    .await
    .unwrap_or_else(|status| panic!("customer {id}: {status:?}"))
    .into_inner()
}

async fn customer(p: &mut Profiles, id: &str) -> profile::Customer {
    get(p, id).await.customer.expect("customer returned")
}

/// A customer as it is compared before a merge and after its undoing: everything but the
/// time of the last change and whether each identifier links (a split disputes the linking
/// e-mails, checked on its own).
fn comparable(mut c: profile::Customer) -> profile::Customer {
    c.updated_at = None;
    for identity in &mut c.identities {
        identity.linking = false;
    }
    c
}

fn identity_values(c: &profile::Customer) -> BTreeSet<(i32, String)> {
    c.identities
        .iter()
        .map(|i| (i.kind, i.value.clone()))
        .collect()
}

// ------------------------------------------------------------------------------------------------
// Outcomes and validation

#[tokio::test]
async fn every_outcome_is_reported_in_request_order() {
    let hub = TestHub::start().await;
    let mut feeds = hub.feeds().await;
    let mut profiles = hub.profiles().await;

    let v1 = order("sap-erp", "SO-1", "c-1", T0, 1);
    let first = ingest(&mut feeds, vec![v1.clone()]).await;
    assert_eq!(outcomes(&first), [Created]);
    let owner = first[0].customer_id.clone();
    assert!(!owner.is_empty(), "a created record names its customer");

    let v2 = order("sap-erp", "SO-1", "c-1", T0 + 60, 2);
    let second = ingest(&mut feeds, vec![v2.clone()]).await;
    assert_eq!(outcomes(&second), [Updated]);
    assert_eq!(second[0].customer_id, owner);

    let same_version_other_content = order("sap-erp", "SO-1", "c-1", T0 + 60, 3);
    let mut invalid = order("sap-erp", "SO-2", "c-1", T0, 1);
    order_body(&mut invalid).lines[0].quantity = 0;
    let mixed = ingest(
        &mut feeds,
        vec![
            v2.clone(),
            v1.clone(),
            same_version_other_content,
            invalid,
            order("sap-erp", "SO-3", "c-1", T0, 1),
        ],
    )
    .await;
    assert_eq!(
        outcomes(&mixed),
        [Unchanged, Stale, Conflict, Rejected, Created]
    );
    for (i, r) in mixed.iter().enumerate() {
        if r.outcome() == Rejected {
            assert!(
                r.customer_id.is_empty(),
                "a rejected record has no customer"
            );
            assert_eq!(
                violation_fields(r),
                ["order.lines[0].quantity".to_owned()].into()
            );
        } else {
            assert_eq!(r.customer_id, owner, "result {i}");
            assert!(r.violations.is_empty(), "result {i}: {r:?}");
        }
    }

    // Neither the stale nor the conflicting record overwrote version 2.
    assert_eq!(outcomes(&ingest(&mut feeds, vec![v2]).await), [Unchanged]);
    let c = customer(&mut profiles, &owner).await;
    assert_eq!(c.record_count, 2, "SO-1 and SO-3: {c:?}");
    assert_eq!(c.identities.len(), 1, "{c:?}");
    assert_eq!(c.identities[0].value, "sap-erp:c-1");
    assert_eq!(c.identities[0].kind, profile::IdentityKind::SourceId as i32);

    // The same for a contact: the profile keeps what version 2 says, whatever comes later.
    let named = |given: &str, version: i64| {
        contact(
            "salesforce-eu",
            "CT-1",
            who("0001", &[]),
            given,
            "Costa",
            version,
        )
    };
    let results = ingest(&mut feeds, vec![named("Rui", T0 + 60)]).await;
    assert_eq!(outcomes(&results), [Created]);
    let contact_owner = results[0].customer_id.clone();
    let results = ingest(
        &mut feeds,
        vec![named("Ruy", T0), named("Rui Jr.", T0 + 60)],
    )
    .await;
    assert_eq!(outcomes(&results), [Stale, Conflict]);
    let c = customer(&mut profiles, &contact_owner).await;
    assert_eq!(c.given_name, "Rui", "{c:?}");
    assert_eq!(c.record_count, 1);
    let name = c
        .provenance
        .iter()
        .find(|p| p.field_group == "name")
        .expect("the name's provenance");
    assert_eq!(
        (
            name.source.as_str(),
            name.record_id.as_str(),
            name.updated_at
        ),
        ("salesforce-eu", "CT-1", ts(T0 + 60))
    );
}

#[tokio::test]
async fn a_rejected_record_lists_every_violation_with_its_path() {
    let hub = TestHub::start().await;
    let mut feeds = hub.feeds().await;
    let bad = pb::Record {
        source: "SAP ERP".into(),
        record_id: String::new(),
        updated_at: None,
        customer: who("", &[]),
        body: Some(pb::record::Body::Order(pb::Order {
            ordered_at: None,
            lines: vec![line("", 0, money(100, "eur"))],
            channel: Channel::Unspecified as i32,
            store_id: String::new(),
            status: pb::OrderStatus::Unspecified as i32,
        })),
    };
    let results = ingest(&mut feeds, vec![bad]).await;
    assert_eq!(outcomes(&results), [Rejected]);
    let expected: BTreeSet<String> = [
        "source",
        "record_id",
        "updated_at",
        "customer.source_customer_id",
        "order.ordered_at",
        "order.lines[0].sku",
        "order.lines[0].quantity",
        "order.lines[0].unit_price.currency_code",
        "order.channel",
        "order.status",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect();
    assert_eq!(violation_fields(&results[0]), expected, "{:?}", results[0]);
    for v in &results[0].violations {
        assert!(!v.description.is_empty(), "{v:?} says why");
    }

    let mut no_body = order("sap-erp", "SO-1", "c-1", T0, 1);
    no_body.body = None;
    let results = ingest(&mut feeds, vec![no_body]).await;
    assert_eq!(outcomes(&results), [Rejected]);
    assert_eq!(violation_fields(&results[0]), ["body".to_owned()].into());
}

#[tokio::test]
async fn invalid_money_and_timestamps_are_refused_with_their_fields() {
    let hub = TestHub::start().await;
    let mut feeds = hub.feeds().await;
    let now = now();
    let priced = |id: &str, lines: Vec<pb::OrderLine>| {
        let mut record = order("sap-erp", id, "c-1", T0, 1);
        order_body(&mut record).lines = lines;
        record
    };
    // Ordered at T0, versioned at `version`.
    let versioned = |id: &str, version: i64| pb::Record {
        updated_at: ts(version),
        ..order("sap-erp", id, "c-1", T0, 1)
    };
    let mut ordered_before_1900 = order("sap-erp", "SO-ordered-1899", "c-1", T0, 1);
    order_body(&mut ordered_before_1900).ordered_at = ts(Y1900 - 1);
    let mut due_before_issue = invoice("in-due", "c-1", T0, money(100, "EUR"));
    if let Some(pb::record::Body::Invoice(i)) = due_before_issue.body.as_mut() {
        i.due_at = ts(T0 - DAY);
    }

    // (record, the field of its one violation; None when it is valid). A field ending in `*`
    // is a prefix: the contract names the money field, not which of its parts is at fault.
    let cases: Vec<(pb::Record, Option<&str>)> = vec![
        (
            priced("SO-euro", vec![line("A", 1, money(100, "EURO"))]),
            Some("order.lines[0].unit_price.currency_code"),
        ),
        (
            priced("SO-lower", vec![line("A", 1, money(100, "eur"))]),
            Some("order.lines[0].unit_price.currency_code"),
        ),
        (
            priced(
                "SO-second",
                vec![
                    line("A", 1, money(100, "EUR")),
                    line("B", 1, money(5, "ZZZ")),
                ],
            ),
            Some("order.lines[1].unit_price.currency_code"),
        ),
        (
            priced("SO-negative", vec![line("A", 1, money(-1, "EUR"))]),
            Some("order.lines[0].unit_price*"),
        ),
        (
            priced(
                "SO-two-currencies",
                vec![
                    line("A", 1, money(100, "EUR")),
                    line("B", 1, money(100, "USD")),
                ],
            ),
            Some("order.lines*"),
        ),
        (
            invoice("in-abc", "c-1", T0, money(100, "ABC")),
            Some("invoice.amount.currency_code"),
        ),
        (
            invoice("in-empty", "c-1", T0, money(100, "")),
            Some("invoice.amount.currency_code"),
        ),
        (
            payment("py-zero", "c-1", T0, money(0, "EUR")),
            Some("payment.amount*"),
        ),
        (due_before_issue, Some("invoice.due_at")),
        (versioned("SO-1899", Y1900 - 1), Some("updated_at")),
        (versioned("SO-future", now + 2 * DAY), Some("updated_at")),
        (ordered_before_1900, Some("order.ordered_at")),
        // The limits themselves are allowed.
        (order("sap-erp", "SO-1900", "c-1", Y1900, 1), None),
        (versioned("SO-tomorrow", now + DAY - 3600), None),
        (
            priced("SO-yen", vec![line("A", 3, money(1500, "JPY"))]),
            None,
        ),
        (payment("py-ok", "c-1", T0, money(999, "USD")), None),
    ];
    let (records, expected): (Vec<_>, Vec<_>) = cases.into_iter().unzip();
    let ids: Vec<String> = records.iter().map(|r| r.record_id.clone()).collect();
    let results = ingest(&mut feeds, records).await;
    for ((result, expected), id) in results.iter().zip(&expected).zip(&ids) {
        match expected {
            None => assert_eq!(result.outcome(), Created, "{id}: {result:?}"),
            Some(field) => {
                assert_eq!(result.outcome(), Rejected, "{id}: {result:?}");
                assert_eq!(result.violations.len(), 1, "{id}: {result:?}");
                let got = &result.violations[0].field;
                match field.strip_suffix('*') {
                    Some(prefix) => assert!(got.starts_with(prefix), "{id}: {got}"),
                    None => assert_eq!(got, field, "{id}"),
                }
            }
        }
    }
}

#[tokio::test]
async fn valid_records_are_committed_and_nothing_of_a_rejected_one_is_written() {
    let hub = TestHub::start().await;
    let mut feeds = hub.feeds().await;
    let mut profiles = hub.profiles().await;

    let mut bad_order = with_emails(
        order("sap-erp", "SO-bad", "c-1", T0, 1),
        &["c1.extra@mail.pt"],
    );
    order_body(&mut bad_order).lines[0].unit_price = money(100, "EURO");
    let mut bad_contact = contact(
        "salesforce-eu",
        "CT-9",
        who("c-9", &["nine@mail.pt"]),
        "Nine",
        "Bad",
        T0,
    );
    bad_contact.updated_at = ts(Y1900 - DAY);
    let results = ingest(
        &mut feeds,
        vec![
            order("sap-erp", "SO-1", "c-1", T0, 1),
            bad_order.clone(),
            contact(
                "sap-erp",
                "CT-1",
                who("c-1", &["c1@mail.pt"]),
                "Rui",
                "Costa",
                T0,
            ),
            bad_contact.clone(),
        ],
    )
    .await;
    assert_eq!(outcomes(&results), [Created, Rejected, Created, Rejected]);
    let owner = results[0].customer_id.clone();
    assert_eq!(results[2].customer_id, owner);

    let c = customer(&mut profiles, &owner).await;
    assert_eq!(c.record_count, 2, "the two valid records: {c:?}");
    assert_eq!(c.emails, ["c1@mail.pt"], "nothing of the rejected order");
    assert_eq!(
        (c.given_name.as_str(), c.family_name.as_str()),
        ("Rui", "Costa")
    );

    // The rejected contact left no customer behind its e-mail or its source id, and sending
    // it again, fixed, creates it.
    let probe = ingest(
        &mut feeds,
        vec![with_emails(
            order("webshop", "W-1", "u-1", T0, 1),
            &["nine@mail.pt"],
        )],
    )
    .await;
    assert_eq!(outcomes(&probe), [Created]);
    assert!(probe[0].merged_customer_ids.is_empty());
    let probed = customer(&mut profiles, &probe[0].customer_id).await;
    assert_eq!(probed.record_count, 1, "{probed:?}");
    assert!(
        !identity_values(&probed)
            .iter()
            .any(|(_, v)| v == "salesforce-eu:c-9"),
        "{probed:?}"
    );
    bad_contact.updated_at = ts(T0);
    bad_order.body = order("sap-erp", "SO-bad", "c-1", T0, 1).body;
    let fixed = ingest(&mut feeds, vec![bad_contact, bad_order]).await;
    assert_eq!(
        outcomes(&fixed),
        [Created, Created],
        "no version of a rejected record was stored"
    );
}

#[tokio::test]
async fn empty_and_oversized_batches_are_refused_whole() {
    let hub = TestHub::builder().max_batch(3).start().await;
    let mut feeds = hub.feeds().await;

    let status = refused(
        feeds
            .ingest_records(pb::IngestRecordsRequest { records: vec![] })
            .await,
        Code::InvalidArgument,
        "INVALID_FIELDS",
    );
    assert_eq!(fields(&status), ["records"]);

    let four: Vec<pb::Record> = (0..4)
        .map(|i| order("sap-erp", &format!("SO-{i}"), "c-1", T0, 1))
        .collect();
    let status = refused(
        feeds
            .ingest_records(pb::IngestRecordsRequest {
                records: four.clone(),
            })
            .await,
        Code::InvalidArgument,
        "BATCH_TOO_LARGE",
    );
    assert_eq!(fields(&status), ["records"]);
    assert!(status.message().contains('3'), "says the limit: {status:?}");

    // The same over a sync stream: the stream ends with the refusal.
    let mut responses = feeds
        .sync_records(tokio_stream::iter(vec![pb::SyncRecordsRequest {
            batch_number: 1,
            records: four.clone(),
        }]))
        .await
        .expect("stream opens")
        .into_inner();
    refused(
        responses.message().await,
        Code::InvalidArgument,
        "BATCH_TOO_LARGE",
    );

    // Nothing of the refused batches was written.
    let results = ingest(&mut feeds, four[..3].to_vec()).await;
    assert_eq!(outcomes(&results), [Created, Created, Created]);
}

// ------------------------------------------------------------------------------------------------
// Identity resolution

#[tokio::test]
async fn junk_emails_are_ignored_with_a_reason_and_never_merge_anyone() {
    let hub = TestHub::start().await;
    let mut feeds = hub.feeds().await;
    let mut profiles = hub.profiles().await;
    let junk = ["unknown", "test@example.com"];

    let results = ingest(
        &mut feeds,
        vec![
            with_emails(order("sap-erp", "SO-1", "c-1", T0, 1), &junk),
            contact(
                "salesforce-eu",
                "CT-2",
                who("0002", &["Unknown", "jo.real@mail.pt", "TEST@example.com"]),
                "Jo",
                "Real",
                T0,
            ),
        ],
    )
    .await;
    assert_eq!(
        outcomes(&results),
        [Created, Created],
        "ingested all the same"
    );
    let ignored = |r: &pb::RecordResult| -> BTreeMap<String, String> {
        r.ignored_identifiers
            .iter()
            .map(|i| {
                assert!(!i.description.is_empty(), "{i:?}");
                (i.field.clone(), i.reason.clone())
            })
            .collect()
    };
    assert_eq!(
        ignored(&results[0]),
        BTreeMap::from([
            ("customer.emails[0]".to_owned(), "PLACEHOLDER".to_owned()),
            (
                "customer.emails[1]".to_owned(),
                "PLACEHOLDER_DOMAIN".to_owned()
            ),
        ])
    );
    assert_eq!(
        ignored(&results[1]),
        BTreeMap::from([
            ("customer.emails[0]".to_owned(), "PLACEHOLDER".to_owned()),
            (
                "customer.emails[2]".to_owned(),
                "PLACEHOLDER_DOMAIN".to_owned()
            ),
        ])
    );
    assert_ne!(
        results[0].customer_id, results[1].customer_id,
        "shared junk links no one"
    );
    assert!(results.iter().all(|r| r.merged_customer_ids.is_empty()));

    // A third source with the same junk: a third customer, still no merge.
    let third = ingest(
        &mut feeds,
        vec![with_emails(order("webshop", "W-1", "u-3", T0, 1), &junk)],
    )
    .await;
    assert!(third[0].merged_customer_ids.is_empty(), "{third:?}");
    let ids: BTreeSet<&str> = results
        .iter()
        .chain(&third)
        .map(|r| r.customer_id.as_str())
        .collect();
    assert_eq!(ids.len(), 3, "three customers");
    for id in ids {
        let c = customer(&mut profiles, id).await;
        assert!(
            !c.identities
                .iter()
                .any(|i| i.linking && (i.value == "unknown" || i.value.ends_with("@example.com"))),
            "{c:?}"
        );
        assert!(
            c.emails.iter().all(|e| e == "jo.real@mail.pt"),
            "junk is no customer e-mail: {c:?}"
        );
    }
}

#[tokio::test]
async fn an_email_links_records_of_different_sources_to_one_customer() {
    let hub = TestHub::start().await;
    let mut feeds = hub.feeds().await;
    let mut profiles = hub.profiles().await;

    let crm = ingest(
        &mut feeds,
        vec![contact(
            "salesforce-eu",
            "CT-100",
            who("0100", &[" Maria.Santos@Mail.PT "]),
            "Maria",
            "Santos",
            T0,
        )],
    )
    .await;
    let erp = ingest(
        &mut feeds,
        vec![with_emails(
            order("sap-erp", "SO-555", "k-555", T0 + 60, 2),
            &["maria.santos@mail.pt"],
        )],
    )
    .await;
    let billing = ingest(
        &mut feeds,
        vec![with_emails(
            invoice("in-7", "cus_7", T0 + 120, money(2500, "EUR")),
            &["MARIA.SANTOS@mail.pt"],
        )],
    )
    .await;
    assert_eq!(outcomes(&crm), [Created]);
    assert_eq!(outcomes(&erp), [Created]);
    assert_eq!(outcomes(&billing), [Created]);
    let id = crm[0].customer_id.clone();
    assert_eq!(erp[0].customer_id, id, "linked by the e-mail");
    assert_eq!(billing[0].customer_id, id, "linked by the e-mail");
    assert!(erp[0].merged_customer_ids.is_empty() && billing[0].merged_customer_ids.is_empty());

    let got = get(&mut profiles, &id).await;
    assert!(!got.redirected);
    let c = got.customer.expect("customer");
    assert_eq!(c.record_count, 3);
    assert_eq!(c.emails, ["maria.santos@mail.pt"]);
    assert_eq!(
        (c.given_name.as_str(), c.family_name.as_str()),
        ("Maria", "Santos")
    );
    let sources: BTreeSet<&str> = c
        .identities
        .iter()
        .filter(|i| i.kind == profile::IdentityKind::SourceId as i32)
        .map(|i| i.value.as_str())
        .collect();
    assert_eq!(
        sources,
        BTreeSet::from(["salesforce-eu:0100", "sap-erp:k-555", "stripe:cus_7"])
    );
    assert!(c.identities.iter().all(|i| i.linking), "{c:?}");
}

#[tokio::test]
async fn a_merge_redirects_and_its_split_restores_the_absorbed_customer() {
    let hub = TestHub::start().await;
    let mut feeds = hub.feeds().await;
    let mut profiles = hub.profiles().await;

    // Two customers, each known to one source under its own e-mail.
    let crm = ingest(
        &mut feeds,
        vec![contact(
            "salesforce-eu",
            "CT-1",
            who("0031", &["ana.silva@mail.pt"]),
            "Ana",
            "Silva",
            T0,
        )],
    )
    .await;
    let shop = ingest(
        &mut feeds,
        vec![
            contact(
                "webshop",
                "P-9",
                who("u-77", &["a.silva@work.pt"]),
                "Ana",
                "S.",
                T0,
            ),
            with_emails(
                order("webshop", "SO-1", "u-77", T0, 1),
                &["a.silva@work.pt"],
            ),
        ],
    )
    .await;
    let (a, b) = (crm[0].customer_id.clone(), shop[0].customer_id.clone());
    assert_ne!(a, b);
    assert_eq!(shop[1].customer_id, b);
    let before: BTreeMap<String, profile::Customer> = BTreeMap::from([
        (a.clone(), customer(&mut profiles, &a).await),
        (b.clone(), customer(&mut profiles, &b).await),
    ]);

    // A webshop order carrying both addresses shows they are one person.
    let linking = with_emails(
        order("webshop", "SO-2", "u-77", T0 + 60, 1),
        &["a.silva@work.pt", "ana.silva@mail.pt"],
    );
    let merged = ingest(&mut feeds, vec![linking.clone()]).await;
    assert_eq!(outcomes(&merged), [Created]);
    let survivor = merged[0].customer_id.clone();
    assert_eq!(merged[0].merged_customer_ids.len(), 1, "{merged:?}");
    let absorbed = merged[0].merged_customer_ids[0].clone();
    assert_eq!(
        BTreeSet::from([survivor.clone(), absorbed.clone()]),
        BTreeSet::from([a.clone(), b.clone()])
    );

    // The absorbed id answers the survivor.
    let redirect = get(&mut profiles, &absorbed).await;
    assert!(redirect.redirected);
    assert_eq!(redirect.requested_id, absorbed);
    let unified = redirect.customer.expect("customer");
    assert_eq!(unified.customer_id, survivor);
    assert_eq!(unified.emails, ["a.silva@work.pt", "ana.silva@mail.pt"]);
    assert_eq!(unified.record_count, 4);
    assert!(!get(&mut profiles, &survivor).await.redirected);

    // The merge is listed, by the survivor and through the absorbed id.
    let merges = profiles
        .list_customer_merges(profile::ListCustomerMergesRequest {
            customer_id: survivor.clone(),
        })
        .await
        .expect("list merges")
        .into_inner()
        .merges;
    assert_eq!(merges.len(), 1, "{merges:?}");
    let merge = &merges[0];
    assert_eq!(merge.survivor_id, survivor);
    assert_eq!(merge.absorbed_ids, std::slice::from_ref(&absorbed));
    assert_eq!(merge.rule, "SAME_EMAIL");
    assert_eq!(
        merge
            .because
            .iter()
            .map(String::as_str)
            .collect::<BTreeSet<_>>(),
        BTreeSet::from([
            "email:a.silva@work.pt",
            "email:ana.silva@mail.pt",
            "source_id:webshop:u-77",
        ])
    );
    assert_eq!(merge.trigger_record, "webshop/order/SO-2");
    assert_eq!(merge.merged_by, "anonymous");
    assert!(merge.merged_at.is_some() && merge.split_at.is_none());
    let through_absorbed = profiles
        .list_customer_merges(profile::ListCustomerMergesRequest {
            customer_id: absorbed.clone(),
        })
        .await
        .expect("list merges")
        .into_inner()
        .merges;
    assert_eq!(&through_absorbed, &merges);

    // The split restores the absorbed customer exactly.
    let split_request = profile::SplitCustomerRequest {
        request_id: rid(),
        merge_id: merge.merge_id.clone(),
    };
    let split = profiles
        .split_customer(split_request.clone())
        .await
        .expect("split")
        .into_inner();
    let undone = split.merge.clone().expect("merge");
    assert_eq!(undone.merge_id, merge.merge_id);
    assert!(undone.split_at.is_some());
    assert_eq!(undone.split_by, "anonymous");
    assert_eq!(
        split
            .customers
            .iter()
            .map(|c| c.customer_id.clone())
            .collect::<BTreeSet<_>>(),
        BTreeSet::from([a.clone(), b.clone()])
    );

    let restored = get(&mut profiles, &absorbed).await;
    assert!(!restored.redirected, "the absorbed id is itself again");
    let restored = restored.customer.expect("customer");
    assert_eq!(restored.customer_id, absorbed);
    assert_eq!(
        comparable(restored.clone()),
        comparable(before[&absorbed].clone())
    );
    let kept = customer(&mut profiles, &survivor).await;
    assert_eq!(
        identity_values(&kept),
        identity_values(&before[&survivor]),
        "the survivor gives back what it gained by the merge"
    );
    assert_eq!(
        kept.record_count + restored.record_count,
        4,
        "every record with one of them"
    );
    // The e-mails that linked them are disputed now: they link no one.
    for c in [&kept, &restored] {
        for identity in &c.identities {
            let disputed = identity.kind == profile::IdentityKind::Email as i32;
            assert_eq!(identity.linking, !disputed, "{identity:?} of {c:?}");
        }
    }
    // What the split answered is what a read answers.
    for c in &split.customers {
        let read = customer(&mut profiles, &c.customer_id).await;
        assert_eq!(c, &read);
    }

    // A retry answers the first result; a new request cannot undo it again.
    let retry = profiles
        .split_customer(split_request.clone())
        .await
        .expect("retry")
        .into_inner();
    assert_eq!(retry, split);
    let status = refused(
        profiles
            .split_customer(profile::SplitCustomerRequest {
                merge_id: "01900000-0000-7000-8000-000000000000".into(),
                ..split_request.clone()
            })
            .await,
        Code::InvalidArgument,
        "REQUEST_ID_REUSED",
    );
    assert_eq!(fields(&status), ["request_id"]);
    refused(
        profiles
            .split_customer(profile::SplitCustomerRequest {
                request_id: rid(),
                merge_id: merge.merge_id.clone(),
            })
            .await,
        Code::FailedPrecondition,
        "MERGE_ALREADY_UNDONE",
    );
    let listed = profiles
        .list_customer_merges(profile::ListCustomerMergesRequest {
            customer_id: survivor.clone(),
        })
        .await
        .expect("list merges")
        .into_inner()
        .merges;
    assert_eq!(listed, [undone], "an undone merge is still listed");

    // Re-sending the linking record changes nothing; a new record with both addresses merges
    // no one again.
    let resent = ingest(&mut feeds, vec![linking]).await;
    assert_eq!(outcomes(&resent), [Unchanged]);
    assert!(resent[0].merged_customer_ids.is_empty());
    let again = ingest(
        &mut feeds,
        vec![with_emails(
            payment("py-1", "cus_1", T0 + 120, money(1250, "EUR")),
            &["ana.silva@mail.pt", "a.silva@work.pt"],
        )],
    )
    .await;
    assert_eq!(outcomes(&again), [Created]);
    assert!(again[0].merged_customer_ids.is_empty(), "{again:?}");
    let reasons: BTreeMap<&str, &str> = again[0]
        .ignored_identifiers
        .iter()
        .map(|i| (i.field.as_str(), i.reason.as_str()))
        .collect();
    assert_eq!(
        reasons,
        BTreeMap::from([
            ("customer.emails[0]", "DISPUTED"),
            ("customer.emails[1]", "DISPUTED"),
        ])
    );
    assert!(
        !get(&mut profiles, &absorbed).await.redirected,
        "the split stands"
    );
}

#[tokio::test]
async fn unknown_and_malformed_ids_are_refused() {
    let hub = TestHub::start().await;
    let mut profiles = hub.profiles().await;
    let unknown = "01900000-0000-7000-8000-000000000000";

    refused(
        profiles
            .get_customer(profile::GetCustomerRequest {
                customer_id: unknown.into(),
            })
            .await,
        Code::NotFound,
        "CUSTOMER_NOT_FOUND",
    );
    for malformed in ["", "not-a-uuid", "42"] {
        let status = refused(
            profiles
                .get_customer(profile::GetCustomerRequest {
                    customer_id: malformed.into(),
                })
                .await,
            Code::InvalidArgument,
            "INVALID_FIELDS",
        );
        assert_eq!(fields(&status), ["customer_id"], "{malformed:?}");
    }
    refused(
        profiles
            .list_customer_merges(profile::ListCustomerMergesRequest {
                customer_id: unknown.into(),
            })
            .await,
        Code::NotFound,
        "CUSTOMER_NOT_FOUND",
    );
    let status = refused(
        profiles
            .list_customer_merges(profile::ListCustomerMergesRequest {
                customer_id: "nope".into(),
            })
            .await,
        Code::InvalidArgument,
        "INVALID_FIELDS",
    );
    assert_eq!(fields(&status), ["customer_id"]);

    refused(
        profiles
            .split_customer(profile::SplitCustomerRequest {
                request_id: rid(),
                merge_id: unknown.into(),
            })
            .await,
        Code::NotFound,
        "MERGE_NOT_FOUND",
    );
    let status = refused(
        profiles
            .split_customer(profile::SplitCustomerRequest {
                request_id: String::new(),
                merge_id: "nope".into(),
            })
            .await,
        Code::InvalidArgument,
        "INVALID_FIELDS",
    );
    assert_eq!(
        fields(&status).into_iter().collect::<BTreeSet<_>>(),
        BTreeSet::from(["merge_id".to_owned(), "request_id".to_owned()])
    );
}

// ------------------------------------------------------------------------------------------------
// The sync stream

fn sync_batch(number: u64, from: usize, to: usize) -> pb::SyncRecordsRequest {
    pb::SyncRecordsRequest {
        batch_number: number,
        records: (from..to)
            .map(|i| {
                order(
                    "sap-erp",
                    &format!("SO-{i}"),
                    &format!("c-{}", i % 7),
                    T0,
                    1,
                )
            })
            .collect(),
    }
}

#[tokio::test]
async fn sync_answers_every_batch_in_order_once_committed() {
    let hub = TestHub::start().await;
    let mut feeds = hub.feeds().await;
    let mut profiles = hub.profiles().await;

    // Gaps in the numbering are allowed; one record of batch 5 is invalid.
    let mut batches = vec![
        sync_batch(1, 0, 10),
        sync_batch(2, 10, 30),
        sync_batch(5, 30, 31),
        sync_batch(9, 31, 60),
        sync_batch(10, 60, 70),
    ];
    batches[2].records.push(pb::Record {
        source: "Bad Source".into(),
        ..order("sap-erp", "SO-bad", "c-1", T0, 1)
    });
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    let mut responses = feeds
        .sync_records(ReceiverStream::new(rx))
        .await
        .expect("stream opens")
        .into_inner();
    // One batch at a time: each is answered before the next is sent.
    let mut customers = BTreeSet::new();
    for batch in &batches {
        tx.send(batch.clone()).await.expect("send");
        let answer = responses
            .message()
            .await
            .expect("answer")
            .expect("one per batch");
        assert_eq!(answer.batch_number, batch.batch_number);
        assert_eq!(answer.results.len(), batch.records.len());
        for (i, (result, record)) in answer.results.iter().zip(&batch.records).enumerate() {
            assert_eq!(result.index, i32::try_from(i).expect("index"));
            if record.source == "Bad Source" {
                assert_eq!(result.outcome(), Rejected);
                assert_eq!(violation_fields(result), ["source".to_owned()].into());
            } else {
                assert_eq!(result.outcome(), Created, "{result:?}");
                customers.insert(result.customer_id.clone());
            }
        }
    }
    drop(tx);
    assert!(
        responses.message().await.expect("clean end").is_none(),
        "the stream ends when the client's does"
    );
    assert_eq!(customers.len(), 7, "one customer per source customer");
    let mut total = 0;
    for id in &customers {
        total += customer(&mut profiles, id).await.record_count;
    }
    assert_eq!(total, 70, "every valid record committed once");

    // Sent all at once on a new stream (as a client resuming would), the same batches answer
    // UNCHANGED, in order.
    let mut responses = feeds
        .sync_records(tokio_stream::iter(batches.clone()))
        .await
        .expect("stream opens")
        .into_inner();
    for batch in &batches {
        let answer = responses.message().await.expect("answer").expect("message");
        assert_eq!(answer.batch_number, batch.batch_number);
        for (result, record) in answer.results.iter().zip(&batch.records) {
            let expected = if record.source == "Bad Source" {
                Rejected
            } else {
                Unchanged
            };
            assert_eq!(result.outcome(), expected);
        }
    }
    assert!(responses.message().await.expect("clean end").is_none());
}

#[tokio::test]
async fn sync_refuses_a_batch_number_that_does_not_increase() {
    let hub = TestHub::start().await;
    let mut feeds = hub.feeds().await;
    for repeated in [3, 2] {
        let mut responses = feeds
            .sync_records(tokio_stream::iter(vec![
                sync_batch(3, 0, 5),
                sync_batch(repeated, 5, 10),
                sync_batch(4, 10, 15),
            ]))
            .await
            .expect("stream opens")
            .into_inner();
        let first = responses.message().await.expect("answer").expect("message");
        assert_eq!(first.batch_number, 3);
        let status = refused(
            responses.message().await,
            Code::InvalidArgument,
            "BATCH_NUMBER_NOT_INCREASING",
        );
        assert_eq!(fields(&status), ["batch_number"]);
        assert!(
            !matches!(responses.message().await, Ok(Some(_))),
            "nothing is answered after the refusal"
        );
    }
    // The refused batch and the one after it were not ingested.
    let results = ingest(&mut feeds, sync_batch(0, 5, 15).records).await;
    assert!(
        results.iter().all(|r| r.outcome() == Created),
        "{results:?}"
    );
}

// ------------------------------------------------------------------------------------------------
// Scopes

#[tokio::test]
async fn feeds_and_profiles_enforce_their_scopes() {
    let hub = TestHub::builder()
        .token("dashboard:customers:read:read-secret")
        .token("crm-sync:feeds:write:feed-secret")
        .token("ops:customers:read+customers:write:ops-secret")
        .start()
        .await;
    let mut feeds = hub.feeds().await;
    let mut profiles = hub.profiles().await;
    let batch = || pb::IngestRecordsRequest {
        records: vec![order("sap-erp", "SO-1", "c-1", T0, 1)],
    };

    refused(
        feeds.ingest_records(batch()).await,
        Code::Unauthenticated,
        "MISSING_TOKEN",
    );
    for token in ["read-secret", "ops-secret"] {
        let status = refused(
            feeds.ingest_records(with_token(batch(), token)).await,
            Code::PermissionDenied,
            "MISSING_SCOPE",
        );
        assert!(status.message().contains("feeds:write"), "{status:?}");
        let status = refused(
            feeds
                .sync_records(with_token(
                    tokio_stream::iter(vec![sync_batch(1, 0, 1)]),
                    token,
                ))
                .await,
            Code::PermissionDenied,
            "MISSING_SCOPE",
        );
        assert!(status.message().contains("feeds:write"), "{status:?}");
    }
    let created = feeds
        .ingest_records(with_token(batch(), "feed-secret"))
        .await
        .expect("the feed writer ingests")
        .into_inner()
        .results;
    assert_eq!(outcomes(&created), [Created], "nothing was written before");
    let id = created[0].customer_id.clone();

    let read = || profile::GetCustomerRequest {
        customer_id: id.clone(),
    };
    let status = refused(
        profiles
            .get_customer(with_token(read(), "feed-secret"))
            .await,
        Code::PermissionDenied,
        "MISSING_SCOPE",
    );
    assert!(status.message().contains("customers:read"), "{status:?}");
    profiles
        .get_customer(with_token(read(), "read-secret"))
        .await
        .expect("the reader reads");
    let split = || profile::SplitCustomerRequest {
        request_id: rid(),
        merge_id: "01900000-0000-7000-8000-000000000000".into(),
    };
    let status = refused(
        profiles
            .split_customer(with_token(split(), "read-secret"))
            .await,
        Code::PermissionDenied,
        "MISSING_SCOPE",
    );
    assert!(status.message().contains("customers:write"), "{status:?}");
    refused(
        profiles
            .split_customer(with_token(split(), "ops-secret"))
            .await,
        Code::NotFound,
        "MERGE_NOT_FOUND",
    );
}
