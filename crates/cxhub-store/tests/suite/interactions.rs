//! Interactions reported directly by event sources (`RecordInteractions`), on a fresh store.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use cxhub_domain::FieldViolation;
use cxhub_domain::feed::{ContactFields, Derived, FieldIdentifier, IngestItem, IngestResult};
use cxhub_domain::identifier::{CustomerId, Identifier};
use cxhub_domain::interaction::{
    CustomerRef, InteractionRepo, NewInteraction, RecordOutcome, Recorded,
};
use cxhub_domain::record::{ContentHash, RecordKey, RecordType, StoredVersion};
use cxhub_domain::repo::{CustomerRepo, IngestContext, TouchpointRepo};
use cxhub_domain::touchpoint::{Channel, Key};
use cxhub_store::Store;

use super::{create, get, req, root};

fn at(seconds: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(1_760_000_000 + seconds, 0).expect("valid time")
}

fn by_source(source: &str, id: &str) -> CustomerRef {
    CustomerRef::Source {
        source: source.into(),
        id: id.into(),
    }
}

/// A visit of `customer` to touchpoint `touchpoint`, reported by `web-analytics` as `id`;
/// its content hash stands for everything but the position.
fn visit(id: &str, customer: CustomerRef, touchpoint: &str) -> NewInteraction {
    let mut item = NewInteraction {
        index: 0,
        source: "web-analytics".into(),
        interaction_id: id.into(),
        customer,
        touchpoint_key: Key::parse(touchpoint).expect("valid key"),
        occurred_at: at(0),
        channel: None,
        outcome: "VISITED".into(),
        hash: ContentHash::of(b""),
    };
    rehash(&mut item);
    item
}

/// Recomputes the content hash after a change.
fn rehash(item: &mut NewInteraction) {
    let content = format!(
        "{}|{}|{:?}|{}|{}|{:?}|{}",
        item.source,
        item.interaction_id,
        item.customer,
        item.touchpoint_key.as_str(),
        item.occurred_at,
        item.channel,
        item.outcome
    );
    item.hash = ContentHash::of(content.as_bytes());
}

/// Records `items` (positioned in order), checking there is one result per item.
async fn record(store: &Store, items: Vec<NewInteraction>) -> Vec<Recorded> {
    let n = items.len();
    let items = items
        .into_iter()
        .enumerate()
        .map(|(i, mut item)| {
            item.index = i;
            item
        })
        .collect();
    let results = store
        .record_interactions(items)
        .await
        .expect("record interactions");
    assert_eq!(results.len(), n, "one result per interaction");
    results
}

fn ok(result: &Recorded) -> (RecordOutcome, CustomerId) {
    match result {
        Ok(done) => *done,
        Err(violations) => panic!("expected a recorded interaction, got {violations:?}"),
    }
}

fn rejected(result: &Recorded) -> Vec<String> {
    match result {
        Ok(done) => panic!("expected a rejection, got {done:?}"),
        Err(violations) => violations
            .iter()
            .map(|v: &FieldViolation| v.field.clone())
            .collect(),
    }
}

fn outcomes(results: &[Recorded]) -> Vec<Result<RecordOutcome, Vec<String>>> {
    results
        .iter()
        .map(|r| match r {
            Ok((outcome, _)) => Ok(*outcome),
            Err(_) => Err(rejected(r)),
        })
        .collect()
}

/// The demo-like touchpoints the tests record at: `web`, `web.home`, `branch` (a store).
async fn touchpoints(store: &Store) {
    let mut branch = root("branch");
    branch.channel = Channel::Store;
    let mut home = super::under("web.home", "web");
    home.main = false;
    create(store, vec![root("web"), home, branch]).await;
}

/// A feed contact of source customer `source:id`, holding `email`.
fn contact(source: &str, id: &str, email: &str) -> IngestItem {
    IngestItem {
        index: 0,
        key: RecordKey {
            source: source.into(),
            record_type: RecordType::Contact,
            record_id: format!("{id}-contact"),
        },
        version: StoredVersion {
            updated_at: at(0),
            hash: ContentHash::of(format!("{source}/{id}/{email}").as_bytes()),
        },
        anchor: Identifier::SourceId {
            source: source.into(),
            id: id.into(),
        },
        identifiers: vec![FieldIdentifier {
            field: "customer.emails[0]".into(),
            identifier: Identifier::Email(email.into()),
        }],
        ignored: Vec::new(),
        payload: Vec::new(),
        derived: Derived {
            contact: Some(ContactFields {
                given_name: id.into(),
                ..ContactFields::default()
            }),
            ..Derived::default()
        },
    }
}

async fn ingest(store: &Store, items: Vec<IngestItem>) -> Vec<IngestResult> {
    let items = items
        .into_iter()
        .enumerate()
        .map(|(i, mut item)| {
            item.index = i;
            item
        })
        .collect();
    let ctx = IngestContext {
        principal: "tester".into(),
        ..IngestContext::default()
    };
    store.ingest(items, &ctx).await.expect("ingest")
}

async fn identity_values(store: &Store, customer: CustomerId) -> BTreeSet<String> {
    store
        .get_customer(customer)
        .await
        .expect("customer")
        .identifiers
        .iter()
        .map(|h| h.identifier.value())
        .collect()
}

// ---------------------------------------------------------------------------------------------

pub async fn interactions_are_recorded_once_and_conflicts_overwrite_nothing(store: Store) {
    touchpoints(&store).await;
    let first = record(
        &store,
        vec![visit("v1", by_source("crm", "c1"), "web.home")],
    )
    .await;
    let (outcome, customer) = ok(&first[0]);
    assert_eq!(outcome, RecordOutcome::Created);

    // Re-sent: unchanged; other content under the same id: conflict, on the stored customer
    // even when the conflicting one names someone else; and the original, sent once more, is
    // still unchanged, so the conflict overwrote nothing.
    let mut other = visit("v1", by_source("crm", "c2"), "web.home");
    other.outcome = "ABANDONED_CART".into();
    rehash(&mut other);
    let again = record(
        &store,
        vec![
            visit("v1", by_source("crm", "c1"), "web.home"),
            other,
            visit("v1", by_source("crm", "c1"), "web.home"),
        ],
    )
    .await;
    assert_eq!(
        outcomes(&again),
        [
            Ok(RecordOutcome::Unchanged),
            Ok(RecordOutcome::Conflict),
            Ok(RecordOutcome::Unchanged)
        ]
    );
    assert!(again.iter().all(|r| ok(r).1 == customer), "{again:?}");

    // The same id from another source is another interaction.
    let mut elsewhere = visit("v1", by_source("crm", "c1"), "web.home");
    elsewhere.source = "store-footfall".into();
    rehash(&mut elsewhere);
    assert_eq!(
        ok(&record(&store, vec![elsewhere]).await[0]),
        (RecordOutcome::Created, customer)
    );

    // Twice in one call: the second sees the first.
    let mut changed = visit("v3", by_source("crm", "c1"), "web.home");
    changed.occurred_at = at(60);
    rehash(&mut changed);
    let twice = record(
        &store,
        vec![
            visit("v2", by_source("crm", "c1"), "web.home"),
            visit("v2", by_source("crm", "c1"), "web.home"),
            visit("v3", by_source("crm", "c1"), "web.home"),
            changed,
        ],
    )
    .await;
    assert_eq!(
        outcomes(&twice),
        [
            Ok(RecordOutcome::Created),
            Ok(RecordOutcome::Unchanged),
            Ok(RecordOutcome::Created),
            Ok(RecordOutcome::Conflict)
        ]
    );

    // A re-send is answered as before even once its touchpoint is archived.
    let web = get(&store, "web").await;
    store
        .archive_touchpoint(&req(&"archive web"), web.id, None, true)
        .await
        .expect("archive");
    assert_eq!(
        ok(&record(
            &store,
            vec![visit("v2", by_source("crm", "c1"), "web.home")]
        )
        .await[0]),
        (RecordOutcome::Unchanged, customer)
    );
}

pub async fn interaction_customers_are_found_by_hub_id_or_source_id(store: Store) {
    touchpoints(&store).await;
    let ana = ingest(&store, vec![contact("crm", "c1", "ana@example.pt")]).await[0].customer;

    let results = record(
        &store,
        vec![
            // held by a feed customer
            visit("v1", by_source("crm", "c1"), "web"),
            // by hub id
            visit("v2", CustomerRef::Id(ana), "branch"),
            // nobody's yet: a new customer, once, however often the call names it
            visit("v3", by_source("loyalty-app", "m-7"), "web"),
            visit("v4", by_source("loyalty-app", "m-7"), "branch"),
        ],
    )
    .await;
    assert_eq!(ok(&results[0]), (RecordOutcome::Created, ana));
    assert_eq!(ok(&results[1]), (RecordOutcome::Created, ana));
    let (outcome, member) = ok(&results[2]);
    assert_eq!(outcome, RecordOutcome::Created);
    assert_ne!(member, ana);
    assert_eq!(ok(&results[3]), (RecordOutcome::Created, member));

    // The new customer is a real one, holding that source id, and later calls and feed
    // records of that source customer find it.
    assert_eq!(
        identity_values(&store, member).await,
        BTreeSet::from(["loyalty-app:m-7".to_owned()])
    );
    let later = record(
        &store,
        vec![
            visit("v5", by_source("loyalty-app", "m-7"), "web"),
            visit("v6", CustomerRef::Id(member), "web"),
        ],
    )
    .await;
    assert!(
        later
            .iter()
            .all(|r| ok(r) == (RecordOutcome::Created, member))
    );
    let fed = ingest(
        &store,
        vec![contact("loyalty-app", "m-7", "rui@example.pt")],
    )
    .await;
    assert_eq!(fed[0].customer, member);
    assert!(fed[0].merged.is_empty());
}

pub async fn interactions_of_a_merged_customer_land_on_the_survivor(store: Store) {
    touchpoints(&store).await;
    let first = ingest(
        &store,
        vec![
            contact("crm", "c1", "ana@example.pt"),
            contact("billing", "b1", "ana.silva@example.pt"),
        ],
    )
    .await;
    let (c1, b1) = (first[0].customer, first[1].customer);
    assert_ne!(c1, b1);
    // A record holding both e-mails merges them.
    let mut linking = contact("shop", "s1", "ana@example.pt");
    linking.identifiers.push(FieldIdentifier {
        field: "customer.emails[1]".into(),
        identifier: Identifier::Email("ana.silva@example.pt".into()),
    });
    let merge = ingest(&store, vec![linking]).await;
    let survivor = merge[0].customer;
    assert_eq!(merge[0].merged.len(), 1, "{merge:?}");
    let absorbed = merge[0].merged[0];
    assert!([c1, b1].contains(&survivor) && [c1, b1].contains(&absorbed));

    let results = record(
        &store,
        vec![
            visit("v1", CustomerRef::Id(absorbed), "web"),
            visit("v2", CustomerRef::Id(survivor), "web"),
            visit("v3", by_source("crm", "c1"), "web"),
            visit("v4", by_source("billing", "b1"), "web"),
        ],
    )
    .await;
    for r in &results {
        assert_eq!(ok(r), (RecordOutcome::Created, survivor));
    }
}

pub async fn unknown_customers_and_touchpoints_are_rejected_and_write_nothing(store: Store) {
    touchpoints(&store).await;
    let mut old = root("old-kiosk");
    old.channel = Channel::AtmKiosk;
    let old = create(&store, vec![old]).await.remove(0);
    store
        .archive_touchpoint(&req(&"archive old"), old.id, None, false)
        .await
        .expect("archive");
    let ana = ingest(&store, vec![contact("crm", "c1", "ana@example.pt")]).await[0].customer;

    let stranger = CustomerId::generate();
    let results = record(
        &store,
        vec![
            visit("v1", CustomerRef::Id(stranger), "web"),
            visit("v2", by_source("crm", "ghost"), "no-such-place"),
            visit("v3", by_source("crm", "ghost"), "old-kiosk"),
            visit("v4", by_source("crm", "c1"), "web"),
        ],
    )
    .await;
    assert_eq!(
        outcomes(&results),
        [
            Err(vec!["customer.customer_id".to_owned()]),
            Err(vec!["touchpoint_key".to_owned()]),
            Err(vec!["touchpoint_key".to_owned()]),
            Ok(RecordOutcome::Created),
        ]
    );
    let Err(why) = &results[2] else {
        unreachable!("checked above")
    };
    assert!(why[0].description.contains("archived"), "{why:?}");

    // The valid one was written; the rejected ones were not: sent again where they can be
    // recorded, they are created now (a stored one would answer unchanged or conflict)...
    let retried = record(
        &store,
        vec![
            visit("v4", by_source("crm", "c1"), "web"),
            visit("v1", CustomerRef::Id(ana), "web"),
            visit("v2", by_source("crm", "c1"), "web"),
            visit("v3", by_source("crm", "c1"), "web"),
        ],
    )
    .await;
    assert_eq!(
        outcomes(&retried),
        [
            Ok(RecordOutcome::Unchanged),
            Ok(RecordOutcome::Created),
            Ok(RecordOutcome::Created),
            Ok(RecordOutcome::Created),
        ]
    );
    // ... and no customer was created for `crm:ghost`: a feed record holding it and Ana's
    // e-mail joins Ana instead of merging her with someone.
    let mut ghost = contact("crm", "ghost", "ana@example.pt");
    ghost.key.record_id = "ghost-contact".into();
    let fed = ingest(&store, vec![ghost]).await;
    assert_eq!((fed[0].customer, fed[0].merged.clone()), (ana, Vec::new()));
}

pub async fn concurrent_calls_record_each_interaction_and_customer_once(store: Store) {
    touchpoints(&store).await;
    // Five callers send the same 40 interactions of 40 new source customers at once, each in
    // another order.
    let batch = |shift: usize| -> Vec<NewInteraction> {
        (0..40)
            .map(|i| (i + shift * 7) % 40)
            .map(|i| {
                visit(
                    &format!("v{i}"),
                    by_source("app", &format!("m-{i}")),
                    "web.home",
                )
            })
            .collect()
    };
    let mut tasks = Vec::new();
    for shift in 0..5 {
        let store = store.clone();
        let items = batch(shift);
        tasks.push(tokio::spawn(async move {
            let ids: Vec<String> = items.iter().map(|i| i.interaction_id.clone()).collect();
            let results = record(&store, items).await;
            ids.into_iter()
                .zip(results.iter().map(ok))
                .collect::<Vec<_>>()
        }));
    }
    let mut created: BTreeMap<String, usize> = BTreeMap::new();
    let mut customers: BTreeMap<String, BTreeSet<CustomerId>> = BTreeMap::new();
    for task in tasks {
        for (id, (outcome, customer)) in task.await.expect("task") {
            assert_ne!(outcome, RecordOutcome::Conflict, "{id}");
            if outcome == RecordOutcome::Created {
                *created.entry(id.clone()).or_default() += 1;
            }
            customers.entry(id).or_default().insert(customer);
        }
    }
    assert_eq!(created.len(), 40, "{created:?}");
    assert!(created.values().all(|n| *n == 1), "{created:?}");
    assert!(customers.values().all(|c| c.len() == 1), "{customers:?}");
    let distinct: BTreeSet<CustomerId> = customers.values().flatten().copied().collect();
    assert_eq!(distinct.len(), 40, "one customer per source customer");
}
