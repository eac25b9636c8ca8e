//! Ingestion, identity resolution, merges and splits, on a fresh store.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use cxhub_domain::feed::{
    ContactFields, Derived, FieldIdentifier, IngestItem, IngestResult, Interaction, Transaction,
    TransactionKind,
};
use cxhub_domain::idempotency::RequestKey;
use cxhub_domain::identifier::{CustomerId, Identifier, IdentifierKind};
use cxhub_domain::money::{Currency, Money};
use cxhub_domain::record::{ContentHash, IngestOutcome, RecordKey, RecordType, StoredVersion};
use cxhub_domain::repo::{CustomerRepo, CustomerView, IngestContext};
use cxhub_domain::resolution::ResolutionRules;
use cxhub_domain::touchpoint::Channel;
use cxhub_store::Store;

use super::reason;

fn at(seconds: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(1_750_000_000 + seconds, 0).expect("valid time")
}

fn ctx() -> IngestContext {
    IngestContext {
        principal: "tester".into(),
        ..IngestContext::default()
    }
}

/// A record of `source`/`record_type`/`id` about source customer `customer`, version `t`,
/// content `content`, carrying `emails`.
struct Rec {
    item: IngestItem,
}

impl Rec {
    fn new(source: &str, record_type: RecordType, id: &str, customer: &str, t: i64) -> Rec {
        let derived = match record_type {
            RecordType::Contact => Derived {
                contact: Some(ContactFields {
                    given_name: format!("{id} v{t}"),
                    ..ContactFields::default()
                }),
                ..Derived::default()
            },
            RecordType::Order => Derived {
                interaction: Some(Interaction {
                    touchpoint_key: "commerce.checkout".into(),
                    channel: Channel::Web,
                    occurred_at: at(t),
                    outcome: "ORDER_PLACED".into(),
                }),
                transaction: Some(Transaction {
                    kind: TransactionKind::Order,
                    amount: Money::new(1999, Currency::parse("EUR").expect("EUR")),
                    occurred_at: at(t),
                    status: "placed".into(),
                    due_at: None,
                }),
                ..Derived::default()
            },
            _ => Derived::default(),
        };
        Rec {
            item: IngestItem {
                index: 0,
                key: RecordKey {
                    source: source.into(),
                    record_type,
                    record_id: id.into(),
                },
                version: StoredVersion {
                    updated_at: at(t),
                    hash: ContentHash::of(format!("{id}@{t}").as_bytes()),
                },
                anchor: Identifier::SourceId {
                    source: source.into(),
                    id: customer.into(),
                },
                identifiers: Vec::new(),
                ignored: Vec::new(),
                payload: format!("{id}@{t}").into_bytes(),
                derived,
            },
        }
    }

    fn contact(source: &str, customer: &str, t: i64) -> Rec {
        Rec::new(
            source,
            RecordType::Contact,
            &format!("{customer}-contact"),
            customer,
            t,
        )
    }

    fn email(mut self, e: &str) -> Rec {
        let i = self.item.identifiers.len();
        self.item.identifiers.push(FieldIdentifier {
            field: format!("customer.emails[{i}]"),
            identifier: Identifier::Email(e.into()),
        });
        self
    }

    fn phone(mut self, p: &str) -> Rec {
        let i = self.item.identifiers.len();
        self.item.identifiers.push(FieldIdentifier {
            field: format!("customer.phones[{i}]"),
            identifier: Identifier::Phone(p.into()),
        });
        self
    }

    /// Same version, other content.
    fn altered(mut self) -> Rec {
        self.item.version.hash = ContentHash::of(b"something else");
        self
    }
}

async fn ingest(store: &Store, recs: Vec<Rec>) -> Vec<IngestResult> {
    ingest_with(store, recs, &ctx()).await
}

async fn ingest_with(store: &Store, recs: Vec<Rec>, ctx: &IngestContext) -> Vec<IngestResult> {
    let items: Vec<IngestItem> = recs
        .into_iter()
        .enumerate()
        .map(|(i, mut r)| {
            r.item.index = i;
            r.item
        })
        .collect();
    let n = items.len();
    let results = store.ingest(items, ctx).await.expect("ingest");
    assert_eq!(results.len(), n, "one result per record");
    for (i, r) in results.iter().enumerate() {
        assert_eq!(r.index, i, "results in batch order");
    }
    results
}

fn outcomes(results: &[IngestResult]) -> Vec<IngestOutcome> {
    results.iter().map(|r| r.outcome).collect()
}

async fn customer(store: &Store, id: CustomerId) -> CustomerView {
    store.get_customer(id).await.expect("customer")
}

fn identity_values(view: &CustomerView) -> BTreeSet<String> {
    view.identifiers
        .iter()
        .map(|h| h.identifier.value())
        .collect()
}

pub async fn every_ingest_outcome_and_nothing_overwritten(store: Store) {
    let first = ingest(&store, vec![Rec::contact("crm", "c1", 10)]).await;
    assert_eq!(outcomes(&first), [IngestOutcome::Created]);
    let c = first[0].customer;
    assert_eq!(
        customer(&store, c).await.profile.given_name,
        "c1-contact v10"
    );

    // Re-sent: unchanged. Newer: updated. Older after newer: stale. Same version, other
    // content: conflict. Only the update changes the profile.
    let again = ingest(
        &store,
        vec![
            Rec::contact("crm", "c1", 10),
            Rec::contact("crm", "c1", 20),
            Rec::contact("crm", "c1", 15),
            Rec::contact("crm", "c1", 20).altered(),
        ],
    )
    .await;
    assert_eq!(
        outcomes(&again),
        [
            IngestOutcome::Unchanged,
            IngestOutcome::Updated,
            IngestOutcome::Stale,
            IngestOutcome::Conflict
        ]
    );
    assert!(again.iter().all(|r| r.customer == c), "{again:?}");
    let view = customer(&store, c).await;
    assert_eq!(view.profile.given_name, "c1-contact v20");
    assert_eq!(view.record_count, 1);
    let provenance = &view.profile.provenance[&cxhub_domain::record::FieldGroup::Name];
    assert_eq!(
        (provenance.source.as_str(), provenance.updated_at),
        ("crm", at(20))
    );
}

pub async fn out_of_order_versions_end_as_in_order(store: Store) {
    // v2 first, then v1: v1 is stale and the profile keeps v2.
    let r = ingest(&store, vec![Rec::contact("crm", "c1", 20)]).await;
    let late = ingest(&store, vec![Rec::contact("crm", "c1", 10)]).await;
    assert_eq!(outcomes(&late), [IngestOutcome::Stale]);
    assert_eq!(
        customer(&store, r[0].customer).await.profile.given_name,
        "c1-contact v20"
    );
}

pub async fn the_same_source_customer_is_always_one_customer(store: Store) {
    let a = ingest(
        &store,
        vec![
            Rec::contact("crm", "c1", 1),
            Rec::new("erp", RecordType::Order, "o1", "e1", 2),
        ],
    )
    .await;
    let b = ingest(
        &store,
        vec![
            Rec::new("crm", RecordType::Order, "o2", "c1", 3),
            Rec::new("erp", RecordType::Order, "o3", "e1", 4),
        ],
    )
    .await;
    assert_eq!(b[0].customer, a[0].customer);
    assert_eq!(b[1].customer, a[1].customer);
    assert_ne!(
        a[0].customer, a[1].customer,
        "no shared identifier: two customers"
    );
    assert_eq!(customer(&store, a[0].customer).await.record_count, 2);
}

pub async fn emails_and_phones_link_records_across_sources(store: Store) {
    let r = ingest(
        &store,
        vec![
            Rec::contact("crm", "c1", 1).email("ana@example.pt"),
            Rec::contact("billing", "b7", 2)
                .email("ana@example.pt")
                .phone("+351912345678"),
            Rec::new("shop", RecordType::Order, "o1", "s3", 3).phone("+351912345678"),
        ],
    )
    .await;
    assert!(r.iter().all(|x| x.customer == r[0].customer), "{r:?}");
    assert!(
        r.iter().all(|x| x.merged.is_empty()),
        "linking is not merging"
    );
    let view = customer(&store, r[0].customer).await;
    assert_eq!(
        identity_values(&view),
        BTreeSet::from([
            "+351912345678".to_owned(),
            "ana@example.pt".to_owned(),
            "billing:b7".to_owned(),
            "crm:c1".to_owned(),
            "shop:s3".to_owned(),
        ])
    );
    assert!(view.identifiers.iter().all(|h| h.linking));
    assert_eq!(view.record_count, 3);
}

pub async fn overshared_identifiers_link_no_one_and_are_reported(store: Store) {
    // Six customers hold one e-mail (it did not merge while e-mails were not mergeable).
    let no_email = IngestContext {
        rules: ResolutionRules {
            mergeable: BTreeSet::from([IdentifierKind::SourceId]),
            max_customers_per_identifier: 5,
        },
        ..ctx()
    };
    let recs = (0..6)
        .map(|i| Rec::contact("crm", &format!("c{i}"), 1).email("info@shop.pt"))
        .collect();
    let six = ingest_with(&store, recs, &no_email).await;
    let distinct: BTreeSet<_> = six.iter().map(|r| r.customer).collect();
    assert_eq!(distinct.len(), 6);

    // With e-mails mergeable again, the shared address is held by more than 5: it links no
    // one, and the record says so.
    let r = ingest(
        &store,
        vec![Rec::contact("web", "w1", 2).email("info@shop.pt")],
    )
    .await;
    assert!(!distinct.contains(&r[0].customer), "a new customer");
    assert!(r[0].merged.is_empty());
    let ignored: Vec<_> = r[0]
        .ignored
        .iter()
        .map(|i| (i.field.as_str(), i.reason.as_str()))
        .collect();
    assert_eq!(ignored, [("customer.emails[0]", "OVERSHARED")]);
    let view = customer(&store, r[0].customer).await;
    assert!(
        view.identifiers
            .iter()
            .any(|h| h.identifier.value() == "info@shop.pt" && !h.linking)
    );
}

/// Three customers, then a record that shows they are one.
async fn three_then_merge(store: &Store) -> (Vec<CustomerView>, IngestResult) {
    let r = ingest(
        store,
        vec![
            Rec::contact("crm", "c1", 1).email("ana@example.pt"),
            Rec::contact("billing", "b1", 2).phone("+351912345678"),
            Rec::new("erp", RecordType::Order, "o1", "e1", 3),
        ],
    )
    .await;
    let mut before = Vec::new();
    for x in &r {
        before.push(customer(store, x.customer).await);
    }
    let merge = ingest(
        store,
        vec![
            Rec::contact("shop", "s1", 4)
                .email("ana@example.pt")
                .phone("+351912345678"),
        ],
    )
    .await
    .remove(0);
    (before, merge)
}

pub async fn a_record_linking_customers_merges_them_with_a_redirect(store: Store) {
    let (before, merge) = three_then_merge(&store).await;
    let (c1, c2, c3) = (before[0].id, before[1].id, before[2].id);
    assert_eq!(merge.customer, c1, "the oldest customer survives");
    assert_eq!(merge.merged, [c2]);
    let redirected = customer(&store, c2).await;
    assert_eq!((redirected.id, redirected.requested), (c1, c2));
    let survivor = customer(&store, c1).await;
    assert_eq!(survivor.record_count, 3);
    assert_eq!(customer(&store, c3).await.record_count, 1, "untouched");
    let merges = store.list_merges(c2).await.expect("merges via redirect");
    assert_eq!(merges.len(), 1);
    let m = &merges[0];
    assert_eq!(m.record.survivor, c1);
    assert_eq!(m.record.rule.as_str(), "SAME_EMAIL");
    assert_eq!(m.merged_by, "tester");
    assert_eq!(
        m.record.trigger.as_ref().map(|k| k.record_id.as_str()),
        Some("s1-contact")
    );
    assert_eq!(m.record.absorbed.len(), 1);
    assert_eq!(m.record.absorbed[0].held.records.len(), 1);
}

pub async fn a_split_restores_exactly_and_the_merge_does_not_come_back(store: Store) {
    let (before, merge) = three_then_merge(&store).await;
    let (c1, c2) = (before[0].id, before[1].id);
    let m = store.list_merges(c1).await.expect("merges").remove(0);
    let req = RequestKey::new("tester", "test/Split", "split-1", b"x").expect("key");
    let out = store.split(&req, m.id, &ctx()).await.expect("split");
    assert!(out.merge.split_at.is_some());
    assert_eq!(out.customers.len(), 2);

    // The absorbed customer is back exactly as it was.
    let restored = customer(&store, c2).await;
    assert_eq!(restored.id, c2, "no longer a redirect");
    assert_eq!(restored.profile, before[1].profile);
    assert_eq!(identity_values(&restored), identity_values(&before[1]));
    assert_eq!(restored.record_count, before[1].record_count);
    // The survivor keeps what it had plus the record that caused the merge.
    let survivor = customer(&store, c1).await;
    let mut expected = identity_values(&before[0]);
    expected.insert("shop:s1".into());
    assert_eq!(identity_values(&survivor), expected);
    assert_eq!(survivor.record_count, before[0].record_count + 1);
    assert_eq!(merge.customer, c1);

    // The identifiers that linked them are disputed: the same record again changes nothing,
    // and a new record with both does not merge them again.
    let again = ingest(
        &store,
        vec![
            Rec::contact("shop", "s1", 4)
                .email("ana@example.pt")
                .phone("+351912345678"),
            Rec::contact("web", "w9", 5)
                .email("ana@example.pt")
                .phone("+351912345678"),
        ],
    )
    .await;
    assert_eq!(
        outcomes(&again),
        [IngestOutcome::Unchanged, IngestOutcome::Created]
    );
    assert!(again[1].merged.is_empty());
    let reasons: BTreeSet<_> = again[1].ignored.iter().map(|i| i.reason.as_str()).collect();
    assert_eq!(reasons, BTreeSet::from(["DISPUTED"]));
    assert_eq!(customer(&store, c2).await.id, c2);

    // Retrying the split answers the same; splitting again is refused.
    let retry = store.split(&req, m.id, &ctx()).await.expect("retry");
    assert_eq!(retry.merge, out.merge);
    let req2 = RequestKey::new("tester", "test/Split", "split-2", b"x").expect("key");
    let err = store.split(&req2, m.id, &ctx()).await.unwrap_err();
    assert_eq!(reason(&err), "MERGE_ALREADY_UNDONE");
}

/// One record links three customers, two of which already share an e-mail (held by both
/// while e-mails did not merge): both are absorbed at once, the survivor keeps one row of the
/// shared e-mail, and the split gives each customer back exactly what it held.
pub async fn a_merge_of_several_customers_sharing_an_identifier_splits_back_exactly(store: Store) {
    let no_email = IngestContext {
        rules: ResolutionRules {
            mergeable: BTreeSet::from([IdentifierKind::SourceId, IdentifierKind::Phone]),
            ..ResolutionRules::default()
        },
        ..ctx()
    };
    let r = ingest_with(
        &store,
        vec![
            Rec::contact("crm", "c1", 1).email("rui@mail.pt"),
            Rec::contact("billing", "b1", 2)
                .email("rui@mail.pt")
                .phone("+351912345678"),
            Rec::contact("shop", "s1", 3).phone("+351963827415"),
            Rec::new("shop", RecordType::Order, "o1", "s1", 4),
        ],
        &no_email,
    )
    .await;
    let (a, b, c) = (r[0].customer, r[1].customer, r[2].customer);
    assert_eq!(BTreeSet::from([a, b, c]).len(), 3, "three customers: {r:?}");
    let before = [
        customer(&store, a).await,
        customer(&store, b).await,
        customer(&store, c).await,
    ];
    assert!(identity_values(&before[1]).contains("rui@mail.pt"));

    let merge = ingest(
        &store,
        vec![
            Rec::contact("web", "w1", 5)
                .email("rui@mail.pt")
                .phone("+351963827415"),
        ],
    )
    .await
    .remove(0);
    assert_eq!(merge.customer, a, "the oldest customer survives");
    assert_eq!(
        BTreeSet::from_iter(merge.merged.clone()),
        BTreeSet::from([b, c])
    );
    let survivor = customer(&store, a).await;
    assert_eq!(survivor.record_count, 5);
    let held: Vec<String> = survivor
        .identifiers
        .iter()
        .map(|h| h.identifier.value())
        .collect();
    assert_eq!(
        held.iter().filter(|v| *v == "rui@mail.pt").count(),
        1,
        "one row of the shared e-mail: {held:?}"
    );
    for id in [b, c] {
        assert_eq!(customer(&store, id).await.id, a, "redirected");
    }
    let m = store.list_merges(a).await.expect("merges").remove(0);
    assert_eq!(m.record.absorbed.len(), 2);
    assert_eq!(
        m.record
            .survivor_shared
            .iter()
            .map(Identifier::value)
            .collect::<Vec<_>>(),
        ["rui@mail.pt"]
    );

    let req = RequestKey::new("tester", "test/Split", "split-many", b"x").expect("key");
    store.split(&req, m.id, &ctx()).await.expect("split");
    for (id, was) in [b, c].into_iter().zip(&before[1..]) {
        let now = customer(&store, id).await;
        assert_eq!(now.id, id, "no longer a redirect");
        assert_eq!(identity_values(&now), identity_values(was));
        assert_eq!(now.record_count, was.record_count);
        assert_eq!(now.profile, was.profile);
    }
    let survivor = customer(&store, a).await;
    let mut expected = identity_values(&before[0]);
    expected.insert("web:w1".into());
    assert_eq!(identity_values(&survivor), expected);
    assert_eq!(survivor.record_count, before[0].record_count + 1);
}

/// Two customers sharing an e-mail the survivor does not hold are absorbed by one record:
/// the survivor holds the e-mail once, and the split gives it back to both.
pub async fn absorbed_customers_sharing_an_identifier_merge_and_split_back(store: Store) {
    let no_email = IngestContext {
        rules: ResolutionRules {
            mergeable: BTreeSet::from([IdentifierKind::SourceId, IdentifierKind::Phone]),
            ..ResolutionRules::default()
        },
        ..ctx()
    };
    let r = ingest_with(
        &store,
        vec![
            Rec::contact("shop", "s1", 1).phone("+351963827415"),
            Rec::contact("crm", "c1", 2).email("ines@mail.pt"),
            Rec::contact("billing", "b1", 3)
                .email("ines@mail.pt")
                .phone("+351912345678"),
        ],
        &no_email,
    )
    .await;
    let (s, a, b) = (r[0].customer, r[1].customer, r[2].customer);
    assert_eq!(BTreeSet::from([s, a, b]).len(), 3, "three customers: {r:?}");
    let before = [customer(&store, a).await, customer(&store, b).await];

    // The CRM source id links `a`, the phones link `s` and `b`.
    let merge = ingest(
        &store,
        vec![
            Rec::new("crm", RecordType::Contact, "c1-contact", "c1", 4)
                .phone("+351963827415")
                .phone("+351912345678"),
        ],
    )
    .await
    .remove(0);
    assert_eq!(merge.customer, s, "the oldest customer survives");
    assert_eq!(
        BTreeSet::from_iter(merge.merged.clone()),
        BTreeSet::from([a, b])
    );
    let survivor = customer(&store, s).await;
    let emails: Vec<String> = survivor
        .identifiers
        .iter()
        .map(|h| h.identifier.value())
        .filter(|v| v == "ines@mail.pt")
        .collect();
    assert_eq!(emails.len(), 1, "the survivor holds the e-mail once");
    let m = store.list_merges(s).await.expect("merges").remove(0);
    assert!(m.record.survivor_shared.is_empty());

    let req = RequestKey::new("tester", "test/Split", "split-shared", b"x").expect("key");
    store.split(&req, m.id, &ctx()).await.expect("split");
    for (id, was) in [a, b].into_iter().zip(&before) {
        let now = customer(&store, id).await;
        assert_eq!(now.id, id, "no longer a redirect");
        assert_eq!(identity_values(&now), identity_values(was));
        assert_eq!(now.record_count, was.record_count);
    }
    let survivor = customer(&store, s).await;
    assert!(
        !identity_values(&survivor).contains("ines@mail.pt"),
        "the survivor never held the e-mail"
    );
}

pub async fn a_merge_inside_one_batch_equals_one_across_batches(store: Store) {
    let r = ingest(
        &store,
        vec![
            Rec::contact("crm", "c1", 1).email("ana@example.pt"),
            Rec::contact("billing", "b1", 2).phone("+351912345678"),
            Rec::new("billing", RecordType::Order, "o1", "b1", 3),
            Rec::contact("shop", "s1", 4)
                .email("ana@example.pt")
                .phone("+351912345678"),
        ],
    )
    .await;
    let survivor = r[0].customer;
    assert!(
        r.iter().all(|x| x.customer == survivor),
        "every result names the survivor: {r:?}"
    );
    assert_eq!(r[3].merged.len(), 1);
    let view = customer(&store, survivor).await;
    assert_eq!(view.record_count, 4);
    let merges = store.list_merges(survivor).await.expect("merges");
    assert_eq!(
        merges[0].record.absorbed[0].held.records.len(),
        2,
        "contact and order"
    );
}

pub async fn unknown_customers_and_merges_are_not_found(store: Store) {
    let err = store
        .get_customer(CustomerId::generate())
        .await
        .unwrap_err();
    assert_eq!(reason(&err), "NOT_FOUND");
    let req = RequestKey::new("tester", "test/Split", "s", b"x").expect("key");
    let err = store
        .split(&req, cxhub_domain::resolution::MergeId::generate(), &ctx())
        .await
        .unwrap_err();
    assert_eq!(reason(&err), "NOT_FOUND");
}

pub async fn concurrent_batches_never_duplicate_a_customer(store: Store) {
    // Eight batches at once, each with the same 50 customers under other sources, linked by
    // e-mail: every e-mail ends with exactly one customer.
    let mut tasks = Vec::new();
    for b in 0..8 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let recs = (0..50)
                .map(|i| {
                    Rec::contact(&format!("src{b}"), &format!("k{i}"), 1)
                        .email(&format!("person{i}@example.pt"))
                })
                .collect();
            ingest(&store, recs).await
        }));
    }
    let mut per_email: Vec<BTreeSet<CustomerId>> = vec![BTreeSet::new(); 50];
    for task in tasks {
        for (i, r) in task.await.expect("task").iter().enumerate() {
            per_email[i].insert(customer(&store, r.customer).await.id);
        }
    }
    assert!(per_email.iter().all(|s| s.len() == 1), "{per_email:?}");
}

pub async fn direct_interactions_follow_merges_and_splits(store: Store) {
    use cxhub_domain::interaction::{CustomerRef, InteractionRepo, NewInteraction, RecordOutcome};
    use cxhub_domain::repo::TouchpointRepo;
    use cxhub_domain::touchpoint::{IntendedExperience, Key, NewTouchpoint, ParentRef, Stage};

    let tp = NewTouchpoint {
        key: Key::parse("web-home").expect("key"),
        name: "Home page".into(),
        description: String::new(),
        channel: Channel::Web,
        stage: Stage::Awareness,
        department: "digital".into(),
        main: true,
        parent: ParentRef::Root,
        intended: IntendedExperience::default(),
        labels: Default::default(),
    };
    let req = RequestKey::new("tester", "test/Create", "tp-1", b"x").expect("key");
    store
        .create_touchpoints(&req, vec![tp])
        .await
        .expect("touchpoint");
    let visit = || NewInteraction {
        index: 0,
        source: "web".into(),
        interaction_id: "visit-1".into(),
        customer: CustomerRef::Source {
            source: "billing".into(),
            id: "b1".into(),
        },
        touchpoint_key: Key::parse("web-home").expect("key"),
        occurred_at: at(1),
        channel: None,
        outcome: "VISITED".into(),
        hash: ContentHash::of(b"visit-1"),
    };

    let c1 = ingest(
        &store,
        vec![Rec::contact("crm", "c1", 1).email("ana@example.pt")],
    )
    .await[0]
        .customer;
    let first = store
        .record_interactions(vec![visit()])
        .await
        .expect("record");
    let (outcome, c2) = first[0].clone().expect("recorded");
    assert_eq!(outcome, RecordOutcome::Created);
    assert_ne!(c1, c2, "a new customer for an unknown source id");
    let merge = ingest(
        &store,
        vec![
            Rec::contact("billing", "b1", 2).phone("+351912345678"),
            Rec::contact("shop", "s1", 3)
                .email("ana@example.pt")
                .phone("+351912345678"),
        ],
    )
    .await;
    assert_eq!(merge[1].merged, [c2], "the shop contact links both");
    assert_eq!(merge[0].customer, c1, "results name the survivor");
    let again = store
        .record_interactions(vec![visit()])
        .await
        .expect("again");
    assert_eq!(
        again[0].clone().expect("recorded"),
        (RecordOutcome::Unchanged, c1)
    );

    let m = store.list_merges(c1).await.expect("merges").remove(0);
    assert_eq!(m.record.absorbed[0].held.interactions.len(), 1);
    let req = RequestKey::new("tester", "test/Split", "split-i", b"x").expect("key");
    store.split(&req, m.id, &ctx()).await.expect("split");
    let after = store
        .record_interactions(vec![visit()])
        .await
        .expect("after");
    assert_eq!(
        after[0].clone().expect("recorded"),
        (RecordOutcome::Unchanged, c2),
        "the interaction went back with its customer"
    );
}

async fn all_changes(store: &Store, after: i64) -> Vec<cxhub_domain::change::Change> {
    use cxhub_domain::change::ChangeLogRepo;
    store
        .read_changes(after, 10_000)
        .await
        .expect("read changes")
        .changes
}

fn summary(
    changes: &[cxhub_domain::change::Change],
) -> Vec<(CustomerId, &'static str, Vec<String>)> {
    changes
        .iter()
        .map(|c| {
            (
                c.change.customer,
                c.change.kind.as_str(),
                c.change.fields.clone(),
            )
        })
        .collect()
}

pub async fn the_change_log_holds_every_change_in_commit_order(store: Store) {
    use cxhub_domain::change::{ChangeKind, ChangeLogRepo, check_resume};

    let empty = store.read_changes(0, 10).await.expect("empty log");
    assert_eq!((empty.head, empty.horizon), (0, 0));
    assert!(empty.changes.is_empty());

    let (before, merge) = three_then_merge(&store).await;
    let (c1, c2, c3) = (before[0].id, before[1].id, before[2].id);
    let log = all_changes(&store, 0).await;
    assert!(log.windows(2).all(|w| w[0].seq < w[1].seq), "{log:?}");
    let s = summary(&log);
    assert_eq!(
        s[..3],
        [
            (c1, "created", vec![]),
            (c2, "created", vec![]),
            (c3, "created", vec![]),
        ]
    );
    assert_eq!(s[3].0, c1);
    assert_eq!(s[3].1, "merged");
    assert_eq!(log[3].change.related, [c2]);
    let merges = store.list_merges(c1).await.expect("merges");
    assert_eq!(log[3].change.merge, Some(merges[0].id));
    assert_eq!(merge.merged, [c2]);
    // Then one update of the survivor: its new source id and the name the newer contact set.
    assert_eq!(s[4].0, c1);
    assert_eq!(s[4].1, "updated");
    assert!(s[4].2.contains(&"source_ids".to_owned()), "{s:?}");
    assert!(s[4].2.contains(&"name".to_owned()), "{s:?}");
    assert_eq!(log.len(), 5, "{s:?}");

    // An order adds an interaction and a transaction; a re-send adds nothing.
    let mark = log[4].seq;
    ingest(
        &store,
        vec![Rec::new("erp", RecordType::Order, "o2", "e1", 9)],
    )
    .await;
    ingest(
        &store,
        vec![Rec::new("erp", RecordType::Order, "o2", "e1", 9)],
    )
    .await;
    let after = all_changes(&store, mark).await;
    assert_eq!(
        summary(&after),
        [(
            c3,
            "updated",
            vec!["interactions".to_owned(), "transactions".to_owned()]
        )]
    );

    // A split is logged on the survivor with the restored customer.
    let req = RequestKey::new("tester", "test/Split", "split-log", b"x").expect("key");
    store
        .split(&req, merges[0].id, &ctx())
        .await
        .expect("split");
    let after = all_changes(&store, after[0].seq).await;
    assert_eq!(after.len(), 1, "{after:?}");
    assert_eq!(after[0].change.kind, ChangeKind::Split);
    assert_eq!(
        (after[0].change.customer, after[0].change.related.clone()),
        (c1, vec![c2])
    );
    // Retrying the split logs nothing more.
    store
        .split(&req, merges[0].id, &ctx())
        .await
        .expect("retry");
    let head = after[0].seq;
    assert!(all_changes(&store, head).await.is_empty());

    // Pruning moves the horizon: resuming from before it is out of range, from it is fine.
    let pruned = store
        .prune_changes(Utc::now() + chrono::Duration::seconds(5))
        .await
        .expect("prune");
    assert_eq!(pruned, 7);
    let slice = store.read_changes(0, 10).await.expect("read");
    assert_eq!((slice.horizon, slice.head), (head, head));
    assert_eq!(
        reason(&check_resume(0, &slice).unwrap_err()),
        "CHANGES_PRUNED"
    );
    check_resume(head, &slice).expect("resume at the horizon");
    // A second prune with nothing old finds nothing; new changes continue the numbering.
    assert_eq!(
        store
            .prune_changes(Utc::now() - chrono::Duration::days(1))
            .await
            .expect("prune nothing"),
        0
    );
    ingest(&store, vec![Rec::contact("crm", "c9", 1)]).await;
    let next = all_changes(&store, head).await;
    assert_eq!(next.len(), 1);
    assert!(next[0].seq > head);
}
