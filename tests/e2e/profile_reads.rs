//! The read RPCs of the customer profile, end to end: BatchGetCustomers, LookupCustomer,
//! SearchCustomers, GetCustomer360, ListCustomerInteractions and ListCustomerTransactions over
//! records ingested through the feeds, with merges, page tokens, every refusal and the scope.

use std::collections::BTreeSet;
use std::time::{SystemTime, UNIX_EPOCH};

use cxhub_proto::common::v1 as common;
use cxhub_proto::feeds::v1 as pb;
use cxhub_proto::profile::v1 as profile;
use cxhub_proto::touchpoint::v1::Channel;
use cxhub_testkit::{TestHub, with_token};
use prost_types::Timestamp;
use tonic::Code;
use tonic::transport::Channel as Transport;

use crate::{fields, refused};

type Feeds = pb::feed_service_client::FeedServiceClient<Transport>;
type Profiles = profile::customer_profile_service_client::CustomerProfileServiceClient<Transport>;

const DAY: i64 = 86_400;

/// 200 days ago, at midnight UTC: the same value for the seeding and the checks of a test
/// (a plain `now()` read twice can straddle a second and move the boundaries).
fn base() -> i64 {
    now() / DAY * DAY - 200 * DAY
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

fn ts(seconds: i64) -> Option<Timestamp> {
    Some(Timestamp { seconds, nanos: 0 })
}

fn eur(amount_minor: i64) -> Option<common::Money> {
    Some(common::Money {
        amount_minor,
        currency_code: "EUR".into(),
    })
}

fn record(
    source: &str,
    id: &str,
    customer: &str,
    t: i64,
    emails: &[&str],
    phones: &[&str],
    body: pb::record::Body,
) -> pb::Record {
    pb::Record {
        source: source.into(),
        record_id: id.into(),
        updated_at: ts(t),
        customer: Some(common::SourceCustomer {
            source_customer_id: customer.into(),
            emails: emails.iter().map(|e| (*e).to_owned()).collect(),
            phones: phones.iter().map(|p| (*p).to_owned()).collect(),
        }),
        body: Some(body),
    }
}

fn contact(given: &str, family: &str, stage: pb::LifecycleStage) -> pb::record::Body {
    pb::record::Body::Contact(pb::Contact {
        given_name: given.into(),
        family_name: family.into(),
        lifecycle_stage: stage as i32,
        ..Default::default()
    })
}

fn order(t: i64, amount: i64) -> pb::record::Body {
    pb::record::Body::Order(pb::Order {
        ordered_at: ts(t),
        lines: vec![pb::OrderLine {
            sku: "SKU-1".into(),
            quantity: 1,
            unit_price: eur(amount),
        }],
        channel: Channel::Web as i32,
        store_id: String::new(),
        status: pb::OrderStatus::Placed as i32,
    })
}

async fn ingest(feeds: &mut Feeds, records: Vec<pb::Record>) -> Vec<String> {
    let results = feeds
        .ingest_records(pb::IngestRecordsRequest { records })
        .await
        .expect("batch accepted")
        .into_inner()
        .results;
    for r in &results {
        assert!(r.violations.is_empty(), "{r:?}");
    }
    results.into_iter().map(|r| r.customer_id).collect()
}

/// Ana (CRM contact, an order and an open case in ERP/CRM, an open overdue invoice, an active
/// subscription) and Bruno (a contact); answers their ids.
async fn seed(feeds: &mut Feeds) -> (String, String) {
    let t = base();
    let ids = ingest(
        feeds,
        vec![
            record(
                "crm",
                "ana-contact",
                "ana",
                t,
                &["Ana.Garcia@Shop.PT"],
                &["917 604 233"],
                contact("Ana Sofía", "García", pb::LifecycleStage::Customer),
            ),
            record(
                "crm",
                "bruno-contact",
                "bruno",
                t,
                &["bruno@shop.pt"],
                &[],
                contact("Bruno", "Garcês", pb::LifecycleStage::Lead),
            ),
            record(
                "erp",
                "o-1",
                "E-ana",
                t + DAY,
                &["ana.garcia@shop.pt"],
                &[],
                order(t + DAY, 40_00),
            ),
            record(
                "erp",
                "o-2",
                "E-ana",
                t + 2 * DAY,
                &["ana.garcia@shop.pt"],
                &[],
                order(t + 2 * DAY, 25_00),
            ),
            record(
                "crm",
                "case-1",
                "ana",
                t + 3 * DAY,
                &[],
                &[],
                pb::record::Body::SupportCase(pb::SupportCase {
                    opened_at: ts(t + 3 * DAY),
                    closed_at: None,
                    status: pb::CaseStatus::Open as i32,
                    priority: pb::CasePriority::Urgent as i32,
                    category: "delivery".into(),
                    channel: Channel::Chat as i32,
                }),
            ),
            record(
                "stripe",
                "in-1",
                "cus_ana",
                t + 4 * DAY,
                &["ana.garcia@shop.pt"],
                &[],
                pb::record::Body::Invoice(pb::Invoice {
                    issued_at: ts(t + 4 * DAY),
                    due_at: ts(t + 34 * DAY),
                    amount: eur(25_00),
                    status: pb::InvoiceStatus::Open as i32,
                }),
            ),
            record(
                "stripe",
                "sub-ev-1",
                "cus_ana",
                t + 5 * DAY,
                &["ana.garcia@shop.pt"],
                &[],
                pb::record::Body::SubscriptionEvent(pb::SubscriptionEvent {
                    subscription_id: "sub_1".into(),
                    kind: pb::SubscriptionEventKind::Started as i32,
                    occurred_at: ts(t + 5 * DAY),
                    plan: "gold-monthly".into(),
                    recurring_amount: eur(9_99),
                }),
            ),
        ],
    )
    .await;
    assert!(
        ids[2..].iter().all(|id| *id == ids[0]),
        "ana's records are one customer: {ids:?}"
    );
    (ids[0].clone(), ids[1].clone())
}

async fn hub() -> (TestHub, Feeds, Profiles) {
    let hub = TestHub::builder().default_region("PT").start().await;
    let feeds = hub.feeds().await;
    let profiles = hub.profiles().await;
    (hub, feeds, profiles)
}

#[tokio::test]
async fn batch_get_answers_each_id_and_refuses_bad_ones_by_index() {
    let (_hub, mut feeds, mut profiles) = hub().await;
    let (ana, bruno) = seed(&mut feeds).await;
    let unknown = "01900000-0000-7000-8000-000000000000".to_owned();
    let results = profiles
        .batch_get_customers(profile::BatchGetCustomersRequest {
            customer_ids: vec![bruno.clone(), unknown.clone(), ana.clone()],
        })
        .await
        .expect("batch get")
        .into_inner()
        .results;
    let summary: Vec<(String, bool, bool, String)> = results
        .iter()
        .map(|r| {
            (
                r.requested_id.clone(),
                r.found,
                r.redirected,
                r.customer
                    .as_ref()
                    .map(|c| c.given_name.clone())
                    .unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            (bruno.clone(), true, false, "Bruno".to_owned()),
            (unknown, false, false, String::new()),
            (ana.clone(), true, false, "Ana Sofía".to_owned()),
        ]
    );

    let status = refused(
        profiles
            .batch_get_customers(profile::BatchGetCustomersRequest {
                customer_ids: vec![ana.clone(), "not-an-id".into(), bruno, String::new()],
            })
            .await,
        Code::InvalidArgument,
        "INVALID_FIELDS",
    );
    assert_eq!(fields(&status), ["customer_ids[1]", "customer_ids[3]"]);
    let status = refused(
        profiles
            .batch_get_customers(profile::BatchGetCustomersRequest {
                customer_ids: vec![ana; 101],
            })
            .await,
        Code::InvalidArgument,
        "INVALID_FIELDS",
    );
    assert_eq!(fields(&status), ["customer_ids"]);
    let status = refused(
        profiles
            .batch_get_customers(profile::BatchGetCustomersRequest::default())
            .await,
        Code::InvalidArgument,
        "INVALID_FIELDS",
    );
    assert_eq!(fields(&status), ["customer_ids"]);
}

#[tokio::test]
async fn lookups_normalise_as_ingest_does_and_answer_every_holder() {
    let (_hub, mut feeds, profiles) = hub().await;
    let (ana, bruno) = seed(&mut feeds).await;
    let lookup = |r: profile::LookupCustomerRequest| {
        let mut p = profiles.clone();
        async move { p.lookup_customer(r).await }
    };
    // A national number in the hub's region, an e-mail in another case, a source id.
    for request in [
        profile::LookupCustomerRequest {
            phone: "917-604-233".into(),
            ..Default::default()
        },
        profile::LookupCustomerRequest {
            email: "  ANA.GARCIA@shop.pt ".into(),
            ..Default::default()
        },
        profile::LookupCustomerRequest {
            source: "erp".into(),
            source_customer_id: "E-ana".into(),
            ..Default::default()
        },
    ] {
        let found = lookup(request.clone()).await.expect("found").into_inner();
        assert!(found.linking, "{request:?}");
        let ids: Vec<&str> = found
            .customers
            .iter()
            .map(|c| c.customer_id.as_str())
            .collect();
        assert_eq!(ids, [ana.as_str()], "{request:?}");
    }
    let found = lookup(profile::LookupCustomerRequest {
        phone: "+351 917 604 233".into(),
        ..Default::default()
    })
    .await
    .expect("found")
    .into_inner();
    let identity = found.identity.expect("identity");
    assert_eq!(identity.value, "+351917604233");
    assert_eq!(identity.kind, profile::IdentityKind::Phone as i32);

    refused(
        lookup(profile::LookupCustomerRequest {
            email: "nobody@shop.pt".into(),
            ..Default::default()
        })
        .await,
        Code::NotFound,
        "CUSTOMER_NOT_FOUND",
    );
    let status = refused(
        lookup(profile::LookupCustomerRequest {
            email: "bruno@shop.pt".into(),
            phone: "917604233".into(),
            ..Default::default()
        })
        .await,
        Code::InvalidArgument,
        "INVALID_FIELDS",
    );
    assert_eq!(fields(&status), ["email", "phone"]);
    for (request, field) in [
        (
            profile::LookupCustomerRequest {
                email: "no-at-sign".into(),
                ..Default::default()
            },
            "email",
        ),
        (
            profile::LookupCustomerRequest {
                phone: "12".into(),
                ..Default::default()
            },
            "phone",
        ),
        (
            profile::LookupCustomerRequest {
                source_customer_id: "E-ana".into(),
                ..Default::default()
            },
            "source",
        ),
        (
            profile::LookupCustomerRequest::default(),
            "source_customer_id",
        ),
    ] {
        let status = refused(
            lookup(request).await,
            Code::InvalidArgument,
            "INVALID_FIELDS",
        );
        assert_eq!(fields(&status), [field]);
    }

    // The same e-mail on a second customer merges them: the lookup then answers the survivor.
    let merged = ingest(
        &mut feeds,
        vec![record(
            "web",
            "w-1",
            "visitor-1",
            now() - DAY,
            &["bruno@shop.pt", "ana.garcia@shop.pt"],
            &[],
            contact("", "", pb::LifecycleStage::Unspecified),
        )],
    )
    .await;
    let found = lookup(profile::LookupCustomerRequest {
        source: "crm".into(),
        source_customer_id: "bruno".into(),
        ..Default::default()
    })
    .await
    .expect("found")
    .into_inner();
    assert_eq!(found.customers.len(), 1);
    assert_eq!(found.customers[0].customer_id, merged[0]);
    assert!([ana, bruno].contains(&merged[0]));
}

#[tokio::test]
async fn searches_page_with_tokens_bound_to_their_filters() {
    let (_hub, mut feeds, profiles) = hub().await;
    let (ana, bruno) = seed(&mut feeds).await;
    let search = |r: profile::SearchCustomersRequest| {
        let mut p = profiles.clone();
        async move { p.search_customers(r).await }
    };

    // "garc" finds García and Garcês (accents folded), one per page, then no more.
    let request = profile::SearchCustomersRequest {
        name_prefix: "GARC".into(),
        page_size: 1,
        ..Default::default()
    };
    let first = search(request.clone()).await.expect("page 1").into_inner();
    assert_eq!(first.customers.len(), 1);
    assert!(!first.next_page_token.is_empty());
    let second = search(profile::SearchCustomersRequest {
        page_token: first.next_page_token.clone(),
        ..request.clone()
    })
    .await
    .expect("page 2")
    .into_inner();
    assert_eq!(second.customers.len(), 1);
    assert!(second.next_page_token.is_empty(), "the last page says so");
    let found: BTreeSet<&str> = first
        .customers
        .iter()
        .chain(&second.customers)
        .map(|c| c.customer_id.as_str())
        .collect();
    assert_eq!(found, BTreeSet::from([ana.as_str(), bruno.as_str()]));
    // "garces" first (key order), with what matched.
    assert_eq!(first.customers[0].matched, "garces");
    assert_eq!(first.customers[0].given_name, "Bruno");

    let hit = |r: profile::SearchCustomersRequest| {
        let s = search;
        async move {
            s(r).await
                .expect("search")
                .into_inner()
                .customers
                .into_iter()
                .map(|c| c.customer_id)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(
        hit(profile::SearchCustomersRequest {
            name_prefix: "sofia".into(),
            ..Default::default()
        })
        .await,
        [ana.as_str()]
    );
    assert_eq!(
        hit(profile::SearchCustomersRequest {
            email_prefix: "ANA.".into(),
            ..Default::default()
        })
        .await,
        [ana.as_str()]
    );
    assert_eq!(
        hit(profile::SearchCustomersRequest {
            phone_prefix: "+351 91".into(),
            ..Default::default()
        })
        .await,
        [ana.as_str()]
    );
    assert_eq!(
        hit(profile::SearchCustomersRequest {
            name_prefix: "garc".into(),
            lifecycle_stage: pb::LifecycleStage::Lead as i32,
            ..Default::default()
        })
        .await,
        [bruno.as_str()]
    );
    assert_eq!(
        hit(profile::SearchCustomersRequest {
            lifecycle_stage: pb::LifecycleStage::Customer as i32,
            ..Default::default()
        })
        .await,
        [ana.as_str()]
    );

    // A token replayed with other filters, garbage, and bad filters: all refused by field.
    let status = refused(
        search(profile::SearchCustomersRequest {
            name_prefix: "bru".into(),
            page_token: first.next_page_token.clone(),
            ..Default::default()
        })
        .await,
        Code::InvalidArgument,
        "INVALID_FIELDS",
    );
    assert_eq!(fields(&status), ["page_token"]);
    let status = refused(
        search(profile::SearchCustomersRequest {
            name_prefix: "bru".into(),
            page_token: "garbage".into(),
            page_size: -1,
            ..Default::default()
        })
        .await,
        Code::InvalidArgument,
        "INVALID_FIELDS",
    );
    assert_eq!(fields(&status), ["page_size", "page_token"]);
    let status = refused(
        search(profile::SearchCustomersRequest {
            name_prefix: "bru".into(),
            email_prefix: "bru".into(),
            phone_prefix: "912".into(),
            ..Default::default()
        })
        .await,
        Code::InvalidArgument,
        "INVALID_FIELDS",
    );
    assert_eq!(
        fields(&status),
        ["name_prefix", "email_prefix", "phone_prefix"]
    );
    let status = refused(
        search(profile::SearchCustomersRequest::default()).await,
        Code::InvalidArgument,
        "INVALID_FIELDS",
    );
    assert_eq!(fields(&status), ["name_prefix"]);
    let status = refused(
        search(profile::SearchCustomersRequest {
            name_prefix: "--".into(),
            lifecycle_stage: 42,
            ..Default::default()
        })
        .await,
        Code::InvalidArgument,
        "INVALID_FIELDS",
    );
    assert_eq!(fields(&status), ["lifecycle_stage", "name_prefix"]);
}

#[tokio::test]
async fn the_360_view_and_the_listings_follow_merges() {
    let (_hub, mut feeds, mut profiles) = hub().await;
    let (ana, bruno) = seed(&mut feeds).await;

    let view = profiles
        .get_customer360(profile::GetCustomer360Request {
            customer_id: ana.clone(),
            interaction_count: 2,
        })
        .await
        .expect("360")
        .into_inner();
    let customer = view.customer.expect("customer");
    assert_eq!(customer.family_name, "García");
    assert!(
        customer
            .provenance
            .iter()
            .any(|p| p.field_group == "name" && p.source == "crm"),
        "{:?}",
        customer.provenance
    );
    let sources: Vec<(String, Vec<String>, i64)> = view
        .sources
        .iter()
        .map(|s| {
            (
                s.source.clone(),
                s.source_customer_ids.clone(),
                s.record_count,
            )
        })
        .collect();
    assert_eq!(
        sources,
        [
            ("crm".to_owned(), vec!["ana".to_owned()], 2),
            ("erp".to_owned(), vec!["E-ana".to_owned()], 2),
            ("stripe".to_owned(), vec!["cus_ana".to_owned()], 2),
        ]
    );
    let recent: Vec<&str> = view
        .recent_interactions
        .iter()
        .map(|i| i.outcome.as_str())
        .collect();
    assert_eq!(recent, ["SUBSCRIPTION_STARTED", "INVOICE_OPEN"]);
    let t = view.transactions.expect("summary");
    assert_eq!(t.lifetime_revenue, [eur(65_00).expect("money")]);
    assert_eq!(t.order_count, 2);
    let overdue = t.overdue_invoices.expect("overdue");
    assert_eq!(
        (overdue.count, overdue.amounts),
        (1, vec![eur(25_00).expect("money")])
    );
    assert_eq!(t.failed_payments_last_90_days, 0);
    assert_eq!(view.open_cases.len(), 1);
    assert_eq!(view.open_cases[0].priority, pb::CasePriority::Urgent as i32);
    assert_eq!(view.open_cases[0].channel, Channel::Chat as i32);
    assert_eq!(view.active_subscriptions.len(), 1);
    assert_eq!(view.active_subscriptions[0].plan, "gold-monthly");

    // Merge Bruno and Ana: either id answers the survivor, redirected or not.
    let survivor = ingest(
        &mut feeds,
        vec![record(
            "web",
            "w-1",
            "visitor-1",
            now() - DAY,
            &["bruno@shop.pt", "ana.garcia@shop.pt"],
            &[],
            contact("", "", pb::LifecycleStage::Unspecified),
        )],
    )
    .await
    .remove(0);
    let absorbed = if survivor == ana { bruno } else { ana };
    let view = profiles
        .get_customer360(profile::GetCustomer360Request {
            customer_id: absorbed.clone(),
            interaction_count: 0,
        })
        .await
        .expect("360")
        .into_inner();
    assert!(view.redirected);
    assert_eq!(view.requested_id, absorbed);
    assert_eq!(view.customer.expect("customer").customer_id, survivor);
    assert_eq!(
        view.recent_interactions.len(),
        5,
        "all five, under the default of 20"
    );

    // The listings page through every interaction and entry of the survivor, newest first.
    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let page = profiles
            .list_customer_interactions(profile::ListCustomerInteractionsRequest {
                customer_id: absorbed.clone(),
                page_size: 4,
                page_token: token.clone(),
                ..Default::default()
            })
            .await
            .expect("page")
            .into_inner();
        assert_eq!(page.customer_id, survivor);
        seen.extend(
            page.interactions
                .into_iter()
                .map(|i| i.occurred_at.expect("time").seconds),
        );
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(seen.len(), 5);
    assert!(
        seen.windows(2).all(|w| w[0] >= w[1]),
        "newest first: {seen:?}"
    );

    let t = base();
    let ledger = profiles
        .list_customer_transactions(profile::ListCustomerTransactionsRequest {
            customer_id: survivor.clone(),
            from: ts(t + DAY),
            to: ts(t + 4 * DAY),
            ..Default::default()
        })
        .await
        .expect("ledger")
        .into_inner();
    let entries: Vec<(String, i32)> = ledger
        .transactions
        .iter()
        .map(|e| (e.record.clone().expect("record").record_id, e.kind))
        .collect();
    assert_eq!(
        entries,
        [
            ("o-2".to_owned(), profile::TransactionKind::Order as i32),
            ("o-1".to_owned(), profile::TransactionKind::Order as i32),
        ],
        "[from, to): the invoice issued at `to` is out"
    );

    // Refusals: bad ids, counts, ranges and tokens, unknown customers.
    let status = refused(
        profiles
            .get_customer360(profile::GetCustomer360Request {
                customer_id: "x".into(),
                interaction_count: 101,
            })
            .await,
        Code::InvalidArgument,
        "INVALID_FIELDS",
    );
    assert_eq!(fields(&status), ["customer_id", "interaction_count"]);
    refused(
        profiles
            .get_customer360(profile::GetCustomer360Request {
                customer_id: "01900000-0000-7000-8000-000000000000".into(),
                interaction_count: 0,
            })
            .await,
        Code::NotFound,
        "CUSTOMER_NOT_FOUND",
    );
    let status = refused(
        profiles
            .list_customer_transactions(profile::ListCustomerTransactionsRequest {
                customer_id: survivor.clone(),
                from: ts(t),
                to: ts(t),
                page_token: "garbage".into(),
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
        "INVALID_FIELDS",
    );
    assert_eq!(fields(&status), ["to"]);
    let first = profiles
        .list_customer_interactions(profile::ListCustomerInteractionsRequest {
            customer_id: survivor.clone(),
            page_size: 1,
            ..Default::default()
        })
        .await
        .expect("page")
        .into_inner();
    let status = refused(
        profiles
            .list_customer_interactions(profile::ListCustomerInteractionsRequest {
                customer_id: survivor.clone(),
                page_size: 1,
                from: ts(t),
                page_token: first.next_page_token,
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
        "INVALID_FIELDS",
    );
    assert_eq!(
        fields(&status),
        ["page_token"],
        "a token is bound to its range"
    );
    refused(
        profiles
            .list_customer_interactions(profile::ListCustomerInteractionsRequest {
                customer_id: "01900000-0000-7000-8000-000000000000".into(),
                ..Default::default()
            })
            .await,
        Code::NotFound,
        "CUSTOMER_NOT_FOUND",
    );
}

#[tokio::test]
async fn the_reads_need_the_customers_read_scope() {
    let hub = TestHub::builder()
        .token("dashboard:customers:read:read-secret")
        .token("crm-sync:feeds:write:feed-secret")
        .start()
        .await;
    let mut profiles = hub.profiles().await;
    let id = "01900000-0000-7000-8000-000000000000".to_owned();
    let status = refused(
        profiles
            .search_customers(with_token(
                profile::SearchCustomersRequest {
                    name_prefix: "ana".into(),
                    ..Default::default()
                },
                "feed-secret",
            ))
            .await,
        Code::PermissionDenied,
        "MISSING_SCOPE",
    );
    assert!(status.message().contains("customers:read"), "{status:?}");
    refused(
        profiles
            .get_customer360(with_token(
                profile::GetCustomer360Request {
                    customer_id: id.clone(),
                    interaction_count: 0,
                },
                "feed-secret",
            ))
            .await,
        Code::PermissionDenied,
        "MISSING_SCOPE",
    );
    let hits = profiles
        .search_customers(with_token(
            profile::SearchCustomersRequest {
                name_prefix: "ana".into(),
                ..Default::default()
            },
            "read-secret",
        ))
        .await
        .expect("the reader searches")
        .into_inner();
    assert!(hits.customers.is_empty());
    refused(
        profiles
            .batch_get_customers(profile::BatchGetCustomersRequest {
                customer_ids: vec![id],
            })
            .await,
        Code::Unauthenticated,
        "MISSING_TOKEN",
    );
}
