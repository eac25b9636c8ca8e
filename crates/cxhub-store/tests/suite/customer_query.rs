//! The reads of the profile service beyond one id: batch get, lookup by identifier, prefix
//! search with stable pages, the 360° view, and the interaction and transaction listings.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use cxhub_domain::Error;
use cxhub_domain::customer_query::{
    CustomerQueryRepo, RowKey, SearchBy, SearchFilter, TimeRange, search_key,
};
use cxhub_domain::feed::{
    CasePriority, CaseStatus, ContactFields, FeedRecord, FieldIdentifier, IngestItem, IngestResult,
    Invoice, InvoiceStatus, LifecycleStage, Order, OrderLine, OrderStatus, Payment, PaymentStatus,
    RecordBody, Refund, SourceCustomer, SubscriptionEvent, SubscriptionEventKind, SupportCase,
    TouchpointMap, derive,
};
use cxhub_domain::identifier::{CustomerId, Identifier, IdentifierKind};
use cxhub_domain::money::{Currency, Money};
use cxhub_domain::page::PageRequest;
use cxhub_domain::record::{ContentHash, RecordKey, StoredVersion};
use cxhub_domain::repo::{CustomerRepo, IngestContext};
use cxhub_domain::resolution::ResolutionRules;
use cxhub_domain::touchpoint::Channel;
use cxhub_store::Store;

fn at(seconds: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(1_750_000_000 + seconds, 0).expect("valid time")
}

fn day(n: i64) -> i64 {
    n * 86_400
}

fn eur(minor: i64) -> Money {
    Money::new(minor, Currency::parse("EUR").expect("EUR"))
}

/// A record as the feeds service hands it to the store, derived with the default touchpoints.
struct Rec {
    record: FeedRecord,
    emails: Vec<String>,
    phones: Vec<String>,
}

impl Rec {
    fn new(source: &str, id: &str, customer: &str, t: i64, body: RecordBody) -> Rec {
        Rec {
            record: FeedRecord {
                key: RecordKey {
                    source: source.into(),
                    record_type: body.record_type(),
                    record_id: id.into(),
                },
                updated_at: at(t),
                customer: SourceCustomer {
                    source_customer_id: customer.into(),
                    emails: Vec::new(),
                    phones: Vec::new(),
                },
                body,
            },
            emails: Vec::new(),
            phones: Vec::new(),
        }
    }

    fn contact(customer: &str, given: &str, family: &str, stage: Option<LifecycleStage>) -> Rec {
        Rec::new(
            "crm",
            &format!("{customer}-contact"),
            customer,
            1,
            RecordBody::Contact(ContactFields {
                given_name: given.into(),
                family_name: family.into(),
                lifecycle_stage: stage,
                ..ContactFields::default()
            }),
        )
    }

    fn email(mut self, e: &str) -> Rec {
        self.emails.push(e.into());
        self
    }

    fn phone(mut self, p: &str) -> Rec {
        self.phones.push(p.into());
        self
    }

    fn item(self, index: usize) -> IngestItem {
        let derived = derive(&self.record, &TouchpointMap::default());
        let key = self.record.key;
        let mut identifiers = Vec::new();
        for (i, e) in self.emails.into_iter().enumerate() {
            identifiers.push(FieldIdentifier {
                field: format!("customer.emails[{i}]"),
                identifier: Identifier::Email(e),
            });
        }
        for (i, p) in self.phones.into_iter().enumerate() {
            identifiers.push(FieldIdentifier {
                field: format!("customer.phones[{i}]"),
                identifier: Identifier::Phone(p),
            });
        }
        IngestItem {
            index,
            version: StoredVersion {
                updated_at: self.record.updated_at,
                hash: ContentHash::of(format!("{key:?}@{}", self.record.updated_at).as_bytes()),
            },
            anchor: Identifier::SourceId {
                source: key.source.clone(),
                id: self.record.customer.source_customer_id,
            },
            key,
            identifiers,
            ignored: Vec::new(),
            payload: Vec::new(),
            derived,
        }
    }
}

fn ctx() -> IngestContext {
    IngestContext {
        principal: "tester".into(),
        ..IngestContext::default()
    }
}

async fn ingest_with(store: &Store, recs: Vec<Rec>, ctx: &IngestContext) -> Vec<IngestResult> {
    let items = recs
        .into_iter()
        .enumerate()
        .map(|(i, r)| r.item(i))
        .collect();
    store.ingest(items, ctx).await.expect("ingest")
}

async fn ingest(store: &Store, recs: Vec<Rec>) -> Vec<CustomerId> {
    ingest_with(store, recs, &ctx())
        .await
        .into_iter()
        .map(|r| r.customer)
        .collect()
}

async fn search(
    store: &Store,
    by: SearchBy,
    stage: Option<LifecycleStage>,
) -> Vec<(CustomerId, String)> {
    let page = store
        .search_customers(
            &SearchFilter {
                by,
                lifecycle_stage: stage,
                category: None,
                churn_band: None,
            },
            &PageRequest {
                size: 100,
                after: None,
            },
        )
        .await
        .expect("search");
    assert_eq!(page.next_after, None, "one page");
    page.items.into_iter().map(|c| (c.id, c.matched)).collect()
}

fn name(prefix: &str) -> SearchBy {
    SearchBy::Name(search_key(prefix))
}

pub async fn search_finds_name_email_and_phone_prefixes_once_each(store: Store) {
    let ids = ingest(
        &store,
        vec![
            Rec::contact("c1", "María José", "García", Some(LifecycleStage::Customer))
                .email("maria@shop.pt")
                .phone("+351912000001"),
            Rec::contact("c2", "Marco", "Polo", Some(LifecycleStage::Lead)).email("marco@shop.pt"),
            Rec::contact("c3", "Ann", "Annan", None)
                .email("ann@x.pt")
                .email("ann.annan@x.pt"),
            Rec::contact("c4", "Zoë", "Martins", Some(LifecycleStage::Customer)).email("zoe@y.pt"),
        ],
    )
    .await;
    let [c1, c2, c3, c4] = ids[..] else {
        panic!("four customers: {ids:?}")
    };

    // Each customer once, at its smallest matching key, in key order.
    assert_eq!(
        search(&store, name("MAR"), None).await,
        [
            (c2, "marco".to_owned()),
            (c1, "maria".to_owned()),
            (c4, "martins".to_owned())
        ]
    );
    assert_eq!(
        search(&store, name("ann"), None).await,
        [(c3, "ann".to_owned())]
    );
    // Accents and case are folded on both sides; any word and the full name match.
    assert_eq!(search(&store, name("GARCÍ"), None).await.len(), 1);
    assert_eq!(search(&store, name("josé"), None).await[0].0, c1);
    assert_eq!(search(&store, name("maria jose g"), None).await[0].0, c1);
    assert_eq!(search(&store, name("zoe m"), None).await[0].0, c4);
    assert!(search(&store, name("polo marco"), None).await.is_empty());
    // E-mail and phone prefixes, each customer once.
    assert_eq!(
        search(&store, SearchBy::Email("ann".into()), None).await,
        [(c3, "ann.annan@x.pt".to_owned())]
    );
    assert_eq!(
        search(&store, SearchBy::Email("ma".into()), None)
            .await
            .into_iter()
            .map(|(c, _)| c)
            .collect::<Vec<_>>(),
        [c2, c1]
    );
    assert_eq!(
        search(&store, SearchBy::Phone("+35191".into()), None).await,
        [(c1, "+351912000001".to_owned())]
    );
    assert!(
        search(&store, SearchBy::Phone("+44".into()), None)
            .await
            .is_empty()
    );
    // The stage filters, with or without a prefix.
    assert_eq!(
        search(&store, name("mar"), Some(LifecycleStage::Customer))
            .await
            .into_iter()
            .map(|(c, _)| c)
            .collect::<Vec<_>>(),
        [c1, c4]
    );
    let mut customers = vec![c1, c4];
    customers.sort();
    assert_eq!(
        search(&store, SearchBy::Any, Some(LifecycleStage::Customer))
            .await
            .into_iter()
            .map(|(c, _)| c)
            .collect::<Vec<_>>(),
        customers
    );

    // A renamed customer is found under its new name only.
    ingest(
        &store,
        vec![{
            let mut r = Rec::contact("c2", "Ricardo", "Polo", Some(LifecycleStage::Lead));
            r.record.updated_at = at(50);
            r
        }],
    )
    .await;
    assert!(
        !search(&store, name("mar"), None)
            .await
            .iter()
            .any(|(c, _)| *c == c2)
    );
    assert_eq!(search(&store, name("ricardo"), None).await[0].0, c2);

    // A merged customer is not listed; its survivor is, once.
    let merged = ingest(
        &store,
        vec![
            Rec::contact("w1", "", "", None)
                .email("maria@shop.pt")
                .email("zoe@y.pt"),
        ],
    )
    .await[0];
    let absorbed = if merged == c1 { c4 } else { c1 };
    for by in [name("m"), name("z"), SearchBy::Email("".into())] {
        let hits = search(&store, by.clone(), None).await;
        assert!(
            !hits.iter().any(|(c, _)| *c == absorbed),
            "{by:?}: {hits:?}"
        );
        let distinct: BTreeSet<_> = hits.iter().map(|(c, _)| c).collect();
        assert_eq!(distinct.len(), hits.len(), "each once: {hits:?}");
    }
    assert!(
        search(&store, SearchBy::Any, Some(LifecycleStage::Customer))
            .await
            .iter()
            .all(|(c, _)| *c != absorbed)
    );
}

pub async fn search_pages_neither_lose_nor_repeat_while_customers_are_written(store: Store) {
    let first: Vec<CustomerId> = ingest(
        &store,
        (0..7)
            .map(|i| Rec::contact(&format!("lee{i}"), &format!("A{i}"), "Lee", None))
            .collect(),
    )
    .await;
    let filter = SearchFilter {
        by: name("lee"),
        lifecycle_stage: None,
        category: None,
        churn_band: None,
    };
    let mut seen = Vec::new();
    let mut after = None;
    let mut added: Option<Vec<CustomerId>> = None;
    loop {
        let page = store
            .search_customers(&filter, &PageRequest { size: 3, after })
            .await
            .expect("page");
        assert!(page.items.len() <= 3);
        seen.extend(page.items.iter().map(|c| c.id));
        if added.is_none() {
            // Written between pages: one sorts after the cursor (a newer id under the same
            // key), so a later page lists it; the other does not match.
            added = Some(
                ingest(
                    &store,
                    vec![
                        Rec::contact("lee-late", "B", "Lee", None),
                        Rec::contact("leda", "B", "Leda", None),
                    ],
                )
                .await,
            );
        }
        match page.next_after {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    let added = added.unwrap_or_default();
    let distinct: BTreeSet<_> = seen.iter().collect();
    assert_eq!(distinct.len(), seen.len(), "no repeats: {seen:?}");
    let mut expected = first.clone();
    expected.push(added[0]);
    expected.sort();
    assert_eq!(
        seen, expected,
        "every customer once, by id under the one key `lee`"
    );
}

pub async fn lookups_answer_every_holder_and_batch_gets_every_id(store: Store) {
    let ids = ingest(
        &store,
        vec![
            Rec::contact("c1", "Ana", "Silva", None).email("ana@shop.pt"),
            Rec::contact("c2", "Rui", "Costa", None).phone("+351912000002"),
        ],
    )
    .await;
    let (ana, rui) = (ids[0], ids[1]);
    let found = store
        .lookup_customers(&Identifier::Email("ana@shop.pt".into()))
        .await
        .expect("lookup");
    assert!(found.linking);
    assert_eq!(
        found.customers.iter().map(|c| c.id).collect::<Vec<_>>(),
        [ana]
    );
    let by_source = store
        .lookup_customers(&Identifier::SourceId {
            source: "crm".into(),
            id: "c2".into(),
        })
        .await
        .expect("lookup");
    assert_eq!(by_source.customers[0].id, rui);
    assert_eq!(
        store
            .lookup_customers(&Identifier::Phone("+351912000002".into()))
            .await
            .expect("lookup")
            .customers[0]
            .id,
        rui
    );
    let err = store
        .lookup_customers(&Identifier::Email("nobody@shop.pt".into()))
        .await
        .expect_err("unknown");
    assert!(matches!(err, Error::NotFound { .. }), "{err:?}");
    assert!(
        !err.to_string().contains("nobody"),
        "no personal data: {err}"
    );

    // An identifier several customers hold (it did not link them): all are answered.
    let no_email = IngestContext {
        rules: ResolutionRules {
            mergeable: BTreeSet::from([IdentifierKind::SourceId]),
            max_customers_per_identifier: 5,
        },
        ..ctx()
    };
    let shared: Vec<CustomerId> = ingest_with(
        &store,
        vec![
            Rec::contact("s1", "", "", None).email("info@shop.pt"),
            Rec::contact("s2", "", "", None).email("info@shop.pt"),
        ],
        &no_email,
    )
    .await
    .into_iter()
    .map(|r| r.customer)
    .collect();
    let found = store
        .lookup_customers(&Identifier::Email("info@shop.pt".into()))
        .await
        .expect("lookup");
    assert!(!found.linking);
    let mut expected = shared.clone();
    expected.sort();
    assert_eq!(
        found.customers.iter().map(|c| c.id).collect::<Vec<_>>(),
        expected
    );

    // Merge rui into ana (or ana into rui): the absorbed id answers the survivor everywhere.
    let survivor = ingest(
        &store,
        vec![
            Rec::contact("w1", "", "", None)
                .email("ana@shop.pt")
                .phone("+351912000002"),
        ],
    )
    .await[0];
    let absorbed = if survivor == ana { rui } else { ana };
    let unknown = CustomerId::generate();
    let batch = store
        .batch_get_customers(&[absorbed, unknown, survivor, absorbed])
        .await
        .expect("batch");
    assert_eq!(batch.len(), 4);
    let got: Vec<Option<(CustomerId, CustomerId)>> = batch
        .iter()
        .map(|v| v.as_ref().map(|v| (v.requested, v.id)))
        .collect();
    assert_eq!(
        got,
        [
            Some((absorbed, survivor)),
            None,
            Some((survivor, survivor)),
            Some((absorbed, survivor))
        ]
    );
    let by_old_source = store
        .lookup_customers(&Identifier::SourceId {
            source: "crm".into(),
            id: if absorbed == rui { "c2" } else { "c1" }.into(),
        })
        .await
        .expect("lookup");
    assert_eq!(by_old_source.customers.len(), 1);
    assert_eq!(by_old_source.customers[0].id, survivor);
}

fn order(id: &str, t: i64, minor: i64, status: OrderStatus) -> Rec {
    Rec::new(
        "erp",
        id,
        "E9",
        t,
        RecordBody::Order(Order {
            ordered_at: at(t),
            lines: vec![OrderLine {
                sku: "sku-1".into(),
                quantity: 1,
                unit_price: eur(minor),
            }],
            channel: Channel::Web,
            store_id: String::new(),
            status,
        }),
    )
    .email("nine@shop.pt")
}

fn invoice(id: &str, t: i64, due: i64, minor: i64, status: InvoiceStatus) -> Rec {
    Rec::new(
        "billing",
        id,
        "B9",
        t,
        RecordBody::Invoice(Invoice {
            issued_at: at(t),
            due_at: at(due),
            amount: eur(minor),
            status,
        }),
    )
    .email("nine@shop.pt")
}

fn payment(id: &str, t: i64, status: PaymentStatus) -> Rec {
    Rec::new(
        "billing",
        id,
        "B9",
        t,
        RecordBody::Payment(Payment {
            attempted_at: at(t),
            amount: eur(1000),
            status,
            failure_reason: if status == PaymentStatus::Failed {
                "card_declined".into()
            } else {
                String::new()
            },
            invoice_id: String::new(),
        }),
    )
    .email("nine@shop.pt")
}

fn case(id: &str, t: i64, status: CaseStatus) -> Rec {
    Rec::new(
        "crm",
        id,
        "C9",
        t,
        RecordBody::SupportCase(SupportCase {
            opened_at: at(t),
            closed_at: status.is_closed().then(|| at(t + 60)),
            status,
            priority: CasePriority::High,
            category: "billing".into(),
            channel: Channel::Phone,
        }),
    )
}

fn subscription(id: &str, sub: &str, t: i64, kind: SubscriptionEventKind, plan: &str) -> Rec {
    Rec::new(
        "billing",
        id,
        "B9",
        t,
        RecordBody::SubscriptionEvent(SubscriptionEvent {
            subscription_id: sub.into(),
            kind,
            occurred_at: at(t),
            plan: plan.into(),
            recurring_amount: (!plan.is_empty()).then(|| eur(1999)),
        }),
    )
    .email("nine@shop.pt")
}

pub async fn the_360_view_summarises_ledger_cases_and_subscriptions(store: Store) {
    let now = at(day(200));
    let results = ingest(
        &store,
        vec![
            Rec::contact("C9", "Nina", "Nove", Some(LifecycleStage::Customer))
                .email("nine@shop.pt"),
            order("o1", day(10), 50_00, OrderStatus::Placed),
            order("o2", day(20), 30_00, OrderStatus::Placed),
            order("o3", day(30), 99_00, OrderStatus::Cancelled),
            Rec::new(
                "billing",
                "r1",
                "B9",
                day(25),
                RecordBody::Refund(Refund {
                    refunded_at: at(day(25)),
                    amount: eur(10_00),
                    payment_id: String::new(),
                    reason: String::new(),
                }),
            )
            .email("nine@shop.pt"),
            invoice("i1", day(100), day(130), 40_00, InvoiceStatus::Open),
            invoice("i2", day(190), day(220), 15_00, InvoiceStatus::Open),
            invoice("i3", day(50), day(80), 70_00, InvoiceStatus::Paid),
            payment("p1", day(195), PaymentStatus::Failed),
            payment("p2", day(100), PaymentStatus::Failed),
            payment("p3", day(196), PaymentStatus::Succeeded),
            case("k1", day(150), CaseStatus::Open),
            case("k2", day(160), CaseStatus::Pending),
            case("k3", day(170), CaseStatus::Resolved),
            subscription("e1", "s1", day(10), SubscriptionEventKind::Started, ""),
            subscription(
                "e2",
                "s1",
                day(40),
                SubscriptionEventKind::Upgraded,
                "premium",
            ),
            subscription("e3", "s2", day(10), SubscriptionEventKind::Started, "basic"),
            subscription("e4", "s2", day(60), SubscriptionEventKind::Cancelled, ""),
        ],
    )
    .await;
    let customer = results[0];
    assert!(results.iter().all(|c| *c == customer), "one customer");

    // A case that closes later is no longer open.
    let view = store.customer_360(customer, 3, now).await.expect("360");
    assert_eq!(view.customer.id, customer);
    assert_eq!(view.customer.profile.given_name, "Nina");
    assert_eq!(view.customer.record_count, 18);
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
    let expected: Vec<(String, Vec<String>, i64)> =
        [("billing", "B9", 11), ("crm", "C9", 4), ("erp", "E9", 3)]
            .into_iter()
            .map(|(s, id, n)| (s.to_owned(), vec![id.to_owned()], n))
            .collect();
    assert_eq!(sources, expected);
    // Newest first across touchpoints: p3, p1, i2.
    let recent: Vec<&str> = view
        .recent_interactions
        .iter()
        .map(|i| i.key.record_id.as_str())
        .collect();
    assert_eq!(recent, ["p3", "p1", "i2"]);
    assert_eq!(view.recent_interactions[0].outcome, "PAYMENT_SUCCEEDED");

    let t = &view.transactions;
    assert_eq!(
        t.lifetime_revenue,
        [eur(70_00)],
        "two placed orders less a refund"
    );
    assert_eq!(t.order_count, 2);
    assert_eq!(t.last_purchase_at, Some(at(day(20))));
    assert_eq!(t.open_invoices.count, 2);
    assert_eq!(t.open_invoices.amounts, [eur(55_00)]);
    assert_eq!(t.overdue_invoices.count, 1);
    assert_eq!(t.overdue_invoices.amounts, [eur(40_00)]);
    assert_eq!(t.failed_payments_recent, 1, "p2 is older than 90 days");

    let cases: Vec<(&str, CaseStatus)> = view
        .open_cases
        .iter()
        .map(|c| (c.record_id.as_str(), c.status))
        .collect();
    assert_eq!(
        cases,
        [("k2", CaseStatus::Pending), ("k1", CaseStatus::Open)]
    );
    assert_eq!(view.open_cases[0].priority, CasePriority::High);
    assert_eq!(view.open_cases[0].channel, Channel::Phone);

    assert_eq!(view.active_subscriptions.len(), 1);
    let s = &view.active_subscriptions[0];
    assert_eq!(
        (s.subscription_id.as_str(), s.plan.as_str(), s.since),
        ("s1", "premium", at(day(10)))
    );
    assert_eq!(s.recurring_amount, Some(eur(1999)));

    // Records move on: the case closes, the subscription is cancelled.
    ingest(
        &store,
        vec![
            {
                let mut r = case("k1", day(150), CaseStatus::Resolved);
                r.record.updated_at = at(day(199));
                r
            },
            subscription("e5", "s1", day(198), SubscriptionEventKind::Cancelled, ""),
        ],
    )
    .await;
    let view = store.customer_360(customer, 0, now).await.expect("360");
    assert_eq!(view.open_cases.len(), 1);
    assert_eq!(view.open_cases[0].record_id, "k2");
    assert!(view.active_subscriptions.is_empty());
    assert!(view.recent_interactions.is_empty(), "0 asked, none given");

    let err = store
        .customer_360(CustomerId::generate(), 20, now)
        .await
        .expect_err("unknown");
    assert!(matches!(err, Error::NotFound { .. }));
}

pub async fn interactions_and_transactions_page_newest_first_within_a_range(store: Store) {
    // Seven orders, two pairs at the same time: ties are broken by record id, descending.
    let recs = [
        ("o1", 10),
        ("o2", 20),
        ("o3", 20),
        ("o4", 30),
        ("o5", 40),
        ("o6", 40),
        ("o7", 50),
    ]
    .into_iter()
    .map(|(id, t)| order(id, t, 10_00, OrderStatus::Placed))
    .collect();
    let customer = ingest(&store, recs).await[0];
    let expected = ["o7", "o6", "o5", "o4", "o3", "o2", "o1"];

    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let (live, page) = store
            .list_interactions(
                customer,
                &TimeRange::default(),
                &PageRequest { size: 2, after },
            )
            .await
            .expect("page");
        assert_eq!(live, customer);
        seen.extend(page.items.into_iter().map(|i| i.key.record_id));
        match page.next_after {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    assert_eq!(seen, expected);

    // The same for the ledger, within [20, 40): o4, o3, o2.
    let mut seen = Vec::new();
    let mut after = None;
    let range = TimeRange {
        from: Some(at(20)),
        to: Some(at(40)),
    };
    loop {
        let (_, page) = store
            .list_transactions(customer, &range, &PageRequest { size: 1, after })
            .await
            .expect("page");
        for t in &page.items {
            assert_eq!(t.amount, eur(10_00));
            assert_eq!(t.status, "placed");
        }
        seen.extend(page.items.into_iter().map(|t| t.key));
        match page.next_after {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    let ids: Vec<&str> = seen.iter().map(|k| k.record_id.as_str()).collect();
    assert_eq!(ids, ["o4", "o3", "o2"]);
    assert!(seen.iter().all(|k: &RowKey| k.record_type == "order"));

    // A new, older order written between pages appears in its place; a newer one does not
    // disturb the pages after the cursor.
    let (_, first) = store
        .list_interactions(
            customer,
            &TimeRange::default(),
            &PageRequest {
                size: 3,
                after: None,
            },
        )
        .await
        .expect("page");
    ingest(
        &store,
        vec![
            order("o0", 5, 10_00, OrderStatus::Placed),
            order("o9", 90, 10_00, OrderStatus::Placed),
        ],
    )
    .await;
    let (_, rest) = store
        .list_interactions(
            customer,
            &TimeRange::default(),
            &PageRequest {
                size: 100,
                after: first.next_after,
            },
        )
        .await
        .expect("page");
    let ids: Vec<String> = first
        .items
        .into_iter()
        .chain(rest.items)
        .map(|i| i.key.record_id)
        .collect();
    assert_eq!(ids, ["o7", "o6", "o5", "o4", "o3", "o2", "o1", "o0"]);

    // A merged id lists its survivor's; an unknown id is not found; a bad cursor is refused.
    let other = ingest(
        &store,
        vec![Rec::contact("x2", "", "", None).phone("+351912000009")],
    )
    .await[0];
    let survivor = ingest(
        &store,
        vec![
            Rec::contact("x1", "", "", None)
                .email("nine@shop.pt")
                .phone("+351912000009"),
        ],
    )
    .await[0];
    let absorbed = if survivor == customer {
        other
    } else {
        customer
    };
    let (live, page) = store
        .list_transactions(
            absorbed,
            &TimeRange::default(),
            &PageRequest {
                size: 100,
                after: None,
            },
        )
        .await
        .expect("page");
    assert_eq!(live, survivor);
    assert_eq!(page.items.len(), 9);
    let err = store
        .list_interactions(
            CustomerId::generate(),
            &TimeRange::default(),
            &PageRequest {
                size: 1,
                after: None,
            },
        )
        .await
        .expect_err("unknown");
    assert!(matches!(err, Error::NotFound { .. }));
    let err = store
        .list_interactions(
            customer,
            &TimeRange::default(),
            &PageRequest {
                size: 1,
                after: Some("garbage".into()),
            },
        )
        .await
        .expect_err("bad cursor");
    assert!(matches!(err, Error::InvalidArgument { .. }));
}
