//! The repository tests, each a function of a freshly migrated, empty [`Store`].

use std::collections::{BTreeMap, BTreeSet};

use cxhub_domain::Error;
use cxhub_domain::idempotency::RequestKey;
use cxhub_domain::journey::{JourneyFilter, JourneyMapStage, JourneyPatch, NewJourney};
use cxhub_domain::page::PageRequest;
use cxhub_domain::repo::{Lookup, TouchpointRepo};
use cxhub_domain::touchpoint::{
    Channel, IntendedExperience, Key, LifecycleState, MAX_DEPTH, NewTouchpoint, ParentRef, Stage,
    Touchpoint, TouchpointFilter, TouchpointId, TouchpointPatch,
};
use cxhub_store::Store;
use serde::Serialize;

mod customer_query;
pub use customer_query::*;
mod customer_scores;
pub use customer_scores::*;
mod customers;
pub use customers::*;
mod interactions;
pub use interactions::*;
mod loyalty;
pub use loyalty::*;
mod privacy;
pub use privacy::*;
mod scoring;
pub use scoring::*;

// ---------------------------------------------------------------------------------------------
// Helpers

fn key(s: &str) -> Key {
    Key::parse(s).expect("valid key")
}

/// A fresh request key for `payload`.
fn req(payload: &impl Serialize) -> RequestKey {
    req_with_id(&uuid::Uuid::now_v7().to_string(), payload)
}

fn req_with_id(id: &str, payload: &impl Serialize) -> RequestKey {
    let bytes = serde_json::to_vec(payload).expect("serializable");
    RequestKey::new("tester", "test/Method", id, &bytes).expect("valid request key")
}

fn new_tp(k: &str, parent: ParentRef) -> NewTouchpoint {
    NewTouchpoint {
        key: key(k),
        name: format!("Touchpoint {k}"),
        description: String::new(),
        channel: Channel::Web,
        stage: Stage::Purchase,
        department: "digital".into(),
        main: true,
        parent,
        intended: IntendedExperience::default(),
        labels: BTreeMap::new(),
    }
}

fn root(k: &str) -> NewTouchpoint {
    new_tp(k, ParentRef::Root)
}

fn under(k: &str, parent: &str) -> NewTouchpoint {
    new_tp(k, ParentRef::Key(key(parent)))
}

async fn create(store: &Store, items: Vec<NewTouchpoint>) -> Vec<Touchpoint> {
    store
        .create_touchpoints(&req(&items), items)
        .await
        .expect("create touchpoints")
}

async fn get(store: &Store, k: &str) -> Touchpoint {
    store
        .get_touchpoint(&Lookup::Key(key(k)))
        .await
        .expect("get touchpoint")
}

async fn update(
    store: &Store,
    id: TouchpointId,
    patch: TouchpointPatch,
) -> cxhub_domain::Result<Touchpoint> {
    store
        .update_touchpoint(&req(&(id, &patch)), id, None, patch)
        .await
}

async fn count(store: &Store) -> usize {
    store
        .all_touchpoints(true)
        .await
        .expect("all touchpoints")
        .len()
}

/// The machine-readable reason of an error.
fn reason(err: &Error) -> &'static str {
    match err {
        Error::InvalidArgument { reason, .. }
        | Error::AlreadyExists { reason, .. }
        | Error::FailedPrecondition { reason, .. }
        | Error::Aborted { reason, .. }
        | Error::ResourceExhausted { reason, .. }
        | Error::OutOfRange { reason, .. } => reason,
        Error::NotFound { .. } => "NOT_FOUND",
        Error::Unavailable(_) => "UNAVAILABLE",
        Error::Internal(_) => "INTERNAL",
    }
}

fn fields(err: &Error) -> Vec<String> {
    match err {
        Error::InvalidArgument { violations, .. } => {
            violations.iter().map(|v| v.field.clone()).collect()
        }
        Error::AlreadyExists { field, .. } => vec![field.clone()],
        other => panic!("expected an error with fields, got {other:?}"),
    }
}

fn parent_key(tp: &Touchpoint) -> Option<&str> {
    tp.parent.as_ref().map(|(_, k)| k.as_str())
}

fn stage(name: &str, keys: &[&str]) -> JourneyMapStage {
    JourneyMapStage {
        name: name.into(),
        stage: Stage::Purchase,
        touchpoint_keys: keys.iter().map(|k| key(k)).collect(),
    }
}

fn new_journey(k: &str, stages: Vec<JourneyMapStage>) -> NewJourney {
    NewJourney {
        key: key(k),
        name: format!("Journey {k}"),
        description: "from first look to checkout".into(),
        stages,
    }
}

fn page(size: u32, after: Option<String>) -> PageRequest {
    PageRequest { size, after }
}

// ---------------------------------------------------------------------------------------------
// Touchpoints: creation

pub async fn batch_create_resolves_in_batch_parents_in_any_order(store: Store) {
    let store_root = create(&store, vec![root("store")]).await.remove(0);
    // children before their parents, and a parent by id from the database
    let mut by_id = new_tp("store.checkout", ParentRef::Id(store_root.id));
    by_id.main = false;
    let items = vec![
        under("web.checkout.pay", "web.checkout"),
        under("web.checkout", "web"),
        by_id,
        root("web"),
        under("web.login", "web"),
    ];
    let created = create(&store, items).await;
    let keys: Vec<_> = created.iter().map(|t| t.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "web.checkout.pay",
            "web.checkout",
            "store.checkout",
            "web",
            "web.login"
        ]
    );
    let id_of = |k: &str| created.iter().find(|t| t.key.as_str() == k).map(|t| t.id);
    assert_eq!(
        created[0].parent,
        Some((id_of("web.checkout").unwrap(), key("web.checkout")))
    );
    assert_eq!(created[1].parent, Some((id_of("web").unwrap(), key("web"))));
    assert_eq!(created[2].parent, Some((store_root.id, key("store"))));
    assert_eq!(created[3].parent, None);
    assert!(
        created
            .iter()
            .all(|t| t.state == LifecycleState::Active && t.revision == 1)
    );
    assert_eq!(created[0].etag(), "r1");
    assert_eq!(count(&store).await, 6);
    assert_eq!(
        parent_key(&get(&store, "web.checkout.pay").await),
        Some("web.checkout")
    );
}

pub async fn created_touchpoints_read_back_identically(store: Store) {
    let mut item = root("branch.teller");
    item.description = "cash desk\nin every branch".into();
    item.channel = Channel::Store;
    item.stage = Stage::Support;
    item.intended = IntendedExperience {
        target_nps: Some(-12),
        target_csat: Some(87.3),
        target_ces: Some(2.1),
    };
    item.labels = BTreeMap::from([
        ("segment".into(), "retail".into()),
        ("region".into(), "north".into()),
    ]);
    let mut child = under("branch.teller.cash", "branch.teller");
    child.main = false;
    let created = create(&store, vec![item, child]).await;
    for tp in &created {
        let by_key = get(&store, tp.key.as_str()).await;
        assert_eq!(&by_key, tp, "create and get differ");
        let by_id = store.get_touchpoint(&Lookup::Id(tp.id)).await.unwrap();
        assert_eq!(&by_id, tp);
    }
    let err = store
        .get_touchpoint(&Lookup::Key(key("nowhere")))
        .await
        .unwrap_err();
    assert_eq!(reason(&err), "NOT_FOUND");
}

pub async fn keys_in_use_or_repeated_are_refused(store: Store) {
    create(&store, vec![root("web")]).await;
    let err = store
        .create_touchpoints(&req(&1), vec![root("app"), root("web")])
        .await
        .unwrap_err();
    assert_eq!(reason(&err), "TOUCHPOINT_KEY_TAKEN");
    assert_eq!(fields(&err), ["touchpoints[1].key"]);

    let err = store
        .create_touchpoints(&req(&2), vec![root("app"), root("mail"), root("app")])
        .await
        .unwrap_err();
    assert_eq!(reason(&err), "TOUCHPOINT_KEY_TAKEN");
    assert_eq!(fields(&err), ["touchpoints[2].key"]);
    assert_eq!(count(&store).await, 1, "a refused batch writes nothing");
}

pub async fn unknown_parents_are_all_listed(store: Store) {
    create(&store, vec![root("web")]).await;
    let items = vec![
        under("web.a", "nowhere"),
        under("web.b", "web"),
        new_tp("web.c", ParentRef::Id(TouchpointId::generate())),
        under("web.d", "web.b"),
    ];
    let err = store.create_touchpoints(&req(&3), items).await.unwrap_err();
    assert_eq!(reason(&err), "INVALID_FIELDS");
    assert_eq!(
        fields(&err),
        ["touchpoints[0].parent_key", "touchpoints[2].parent_id"]
    );
    assert_eq!(count(&store).await, 1);
}

pub async fn cycles_are_refused(store: Store) {
    let created = create(
        &store,
        vec![root("a"), under("a.b", "a"), under("a.b.c", "a.b")],
    )
    .await;
    let a = created[0].id;
    let err = update(
        &store,
        a,
        TouchpointPatch {
            parent: Some(ParentRef::Key(key("a.b.c"))),
            ..Default::default()
        },
    )
    .await
    .unwrap_err();
    assert_eq!(reason(&err), "HIERARCHY_CYCLE");
    let err = update(
        &store,
        a,
        TouchpointPatch {
            parent: Some(ParentRef::Id(a)),
            ..Default::default()
        },
    )
    .await
    .unwrap_err();
    assert_eq!(reason(&err), "HIERARCHY_CYCLE");
    assert_eq!(
        get(&store, "a").await.revision,
        1,
        "a refused update changes nothing"
    );

    // a cycle inside one batch
    let err = store
        .create_touchpoints(&req(&4), vec![under("x", "y"), under("y", "x")])
        .await
        .unwrap_err();
    assert_eq!(reason(&err), "HIERARCHY_CYCLE");
    let err = store
        .create_touchpoints(&req(&5), vec![under("z", "z")])
        .await
        .unwrap_err();
    assert_eq!(reason(&err), "HIERARCHY_CYCLE");
}

pub async fn hierarchy_depth_and_main_rules_hold(store: Store) {
    // a chain exactly MAX_DEPTH deep is fine, one more level is not
    let keys: Vec<String> = (0..MAX_DEPTH).map(|i| format!("d{i}")).collect();
    let items: Vec<_> = keys
        .iter()
        .enumerate()
        .map(|(i, k)| {
            if i == 0 {
                root(k)
            } else {
                under(k, &keys[i - 1])
            }
        })
        .collect();
    create(&store, items).await;
    let err = store
        .create_touchpoints(&req(&6), vec![under("too.deep", &keys[MAX_DEPTH - 1])])
        .await
        .unwrap_err();
    assert_eq!(reason(&err), "HIERARCHY_TOO_DEEP");
    // moving a subtree of height 2 below level MAX_DEPTH - 1 is too deep as well
    let sub = create(&store, vec![root("m"), under("m.n", "m")]).await;
    let err = update(
        &store,
        sub[0].id,
        TouchpointPatch {
            parent: Some(ParentRef::Key(key(&keys[MAX_DEPTH - 2]))),
            ..Default::default()
        },
    )
    .await
    .unwrap_err();
    assert_eq!(reason(&err), "HIERARCHY_TOO_DEEP");
    update(
        &store,
        sub[0].id,
        TouchpointPatch {
            parent: Some(ParentRef::Key(key(&keys[MAX_DEPTH - 3]))),
            ..Default::default()
        },
    )
    .await
    .expect("fits exactly");

    // a main touchpoint cannot sit below a sub-touchpoint
    let mut sub_parent = root("s");
    sub_parent.main = false;
    create(&store, vec![sub_parent]).await;
    let err = store
        .create_touchpoints(&req(&7), vec![under("s.main", "s")])
        .await
        .unwrap_err();
    assert_eq!(reason(&err), "MAIN_BELOW_SUB");
    // nor can a touchpoint with main children become a sub-touchpoint
    let err = update(
        &store,
        get(&store, "m").await.id,
        TouchpointPatch {
            main: Some(false),
            ..Default::default()
        },
    )
    .await
    .unwrap_err();
    assert_eq!(reason(&err), "MAIN_BELOW_SUB");
}

// ---------------------------------------------------------------------------------------------
// Idempotency and concurrency

pub async fn retries_return_the_first_result_and_write_nothing(store: Store) {
    let items = vec![root("web"), under("web.login", "web")];
    let request = req(&items);
    let first = store
        .create_touchpoints(&request, items.clone())
        .await
        .unwrap();
    let again = store.create_touchpoints(&request, items).await.unwrap();
    assert_eq!(first, again, "a retry returns the first result");
    assert_eq!(count(&store).await, 2, "a retry writes nothing");

    let login = first[1].id;
    let patch = TouchpointPatch {
        name: Some("Log in".into()),
        ..Default::default()
    };
    let request = req(&(login, &patch));
    let updated = store
        .update_touchpoint(&request, login, Some("r1"), patch.clone())
        .await
        .unwrap();
    assert_eq!(updated.revision, 2);
    // the retry is answered from the record, even though its etag is now stale
    let again = store
        .update_touchpoint(&request, login, Some("r1"), patch)
        .await
        .unwrap();
    assert_eq!(updated, again);
    assert_eq!(get(&store, "web.login").await.revision, 2);

    let request = req(&("delete", login));
    store
        .delete_touchpoint(&request, login, None)
        .await
        .unwrap();
    store
        .delete_touchpoint(&request, login, None)
        .await
        .expect("a retried delete succeeds");
    assert_eq!(count(&store).await, 1);
}

pub async fn concurrent_duplicates_write_once(store: Store) {
    let items: Vec<_> = (0..20).map(|i| root(&format!("c{i:02}"))).collect();
    let request = req(&items);
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let (store, request, items) = (store.clone(), request.clone(), items.clone());
        tasks.push(tokio::spawn(async move {
            store.create_touchpoints(&request, items).await
        }));
    }
    let mut results = Vec::new();
    for task in tasks {
        results.push(task.await.unwrap().expect("every duplicate succeeds"));
    }
    assert!(
        results.windows(2).all(|w| w[0] == w[1]),
        "every duplicate gets the same result"
    );
    assert_eq!(count(&store).await, 20);
}

pub async fn reused_request_ids_are_refused(store: Store) {
    let request = req_with_id("req-1", &vec![root("web")]);
    store
        .create_touchpoints(&request, vec![root("web")])
        .await
        .unwrap();
    let other = req_with_id("req-1", &vec![root("app")]);
    let err = store
        .create_touchpoints(&other, vec![root("app")])
        .await
        .unwrap_err();
    assert_eq!(reason(&err), "REQUEST_ID_REUSED");
    assert_eq!(fields(&err), ["request_id"]);
    assert_eq!(count(&store).await, 1);
}

pub async fn stale_etags_abort(store: Store) {
    let tp = create(&store, vec![root("web")]).await.remove(0);
    let patch = TouchpointPatch {
        description: Some("the website".into()),
        ..Default::default()
    };
    let updated = store
        .update_touchpoint(&req(&1), tp.id, Some(&tp.etag()), patch.clone())
        .await
        .unwrap();
    assert_eq!(updated.etag(), "r2");
    let err = store
        .update_touchpoint(&req(&2), tp.id, Some(&tp.etag()), patch)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Aborted {
                reason: "ETAG_MISMATCH",
                ..
            }
        ),
        "{err:?}"
    );
    let err = store
        .archive_touchpoint(&req(&3), tp.id, Some("r1"), false)
        .await
        .unwrap_err();
    assert_eq!(reason(&err), "ETAG_MISMATCH");
    let err = store
        .delete_touchpoint(&req(&4), tp.id, Some("r1"))
        .await
        .unwrap_err();
    assert_eq!(reason(&err), "ETAG_MISMATCH");
    assert_eq!(get(&store, "web").await, updated);
}

// ---------------------------------------------------------------------------------------------
// Updates, states, deletes

pub async fn update_moves_subtrees_and_replaces_labels(store: Store) {
    let mut web = root("web");
    web.labels = BTreeMap::from([("team".into(), "growth".into())]);
    let created = create(
        &store,
        vec![
            web,
            root("app"),
            under("web.login", "web"),
            under("web.login.sso", "web.login"),
        ],
    )
    .await;
    let login = created[2].id;
    let patch = TouchpointPatch {
        parent: Some(ParentRef::Key(key("app"))),
        channel: Some(Channel::MobileApp),
        target_nps: Some(Some(40)),
        labels: Some(BTreeMap::from([("team".into(), "identity".into())])),
        ..Default::default()
    };
    let moved = update(&store, login, patch).await.unwrap();
    assert_eq!(parent_key(&moved), Some("app"));
    assert_eq!(moved.channel, Channel::MobileApp);
    assert_eq!(moved.intended.target_nps, Some(40));
    assert_eq!(moved.revision, 2);
    assert!(moved.update_time >= moved.create_time);
    assert_eq!(get(&store, "web.login").await, moved);
    assert_eq!(
        parent_key(&get(&store, "web.login.sso").await),
        Some("web.login")
    );

    let by_label = |team: &str| TouchpointFilter {
        labels: BTreeMap::from([("team".into(), team.into())]),
        ..Default::default()
    };
    let page_of = |f: TouchpointFilter| {
        let store = store.clone();
        async move {
            store
                .list_touchpoints(&f, &page(100, None))
                .await
                .unwrap()
                .items
        }
    };
    let identity: Vec<_> = page_of(by_label("identity"))
        .await
        .into_iter()
        .map(|t| t.key.to_string())
        .collect();
    assert_eq!(identity, ["web.login"]);
    let growth: Vec<_> = page_of(by_label("growth"))
        .await
        .into_iter()
        .map(|t| t.key.to_string())
        .collect();
    assert_eq!(growth, ["web"], "old labels are gone");

    // clearing a target and making a root
    let cleared = update(
        &store,
        login,
        TouchpointPatch {
            target_nps: Some(None),
            parent: Some(ParentRef::Root),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(cleared.intended.target_nps, None);
    assert_eq!(cleared.parent, None);
    let err = update(
        &store,
        login,
        TouchpointPatch {
            parent: Some(ParentRef::Key(key("nowhere"))),
            ..Default::default()
        },
    )
    .await
    .unwrap_err();
    assert_eq!(fields(&err), ["touchpoint.parent_key"]);
    let err = update(
        &store,
        TouchpointId::generate(),
        TouchpointPatch {
            name: Some("x".into()),
            ..Default::default()
        },
    )
    .await
    .unwrap_err();
    assert_eq!(reason(&err), "NOT_FOUND");
}

pub async fn archive_needs_cascade_for_active_children(store: Store) {
    let created = create(
        &store,
        vec![
            root("r"),
            under("r.c", "r"),
            under("r.c.g", "r.c"),
            under("r.d", "r"),
        ],
    )
    .await;
    let (r, c, g, d) = (created[0].id, created[1].id, created[2].id, created[3].id);
    let err = store
        .archive_touchpoint(&req(&1), r, None, false)
        .await
        .unwrap_err();
    assert_eq!(reason(&err), "ACTIVE_CHILDREN");
    assert_eq!(get(&store, "r").await.state, LifecycleState::Active);

    let change = store
        .archive_touchpoint(&req(&2), r, Some("r1"), true)
        .await
        .unwrap();
    assert_eq!(change.changed[0], r, "the named touchpoint comes first");
    assert_eq!(
        change.changed.iter().copied().collect::<BTreeSet<_>>(),
        BTreeSet::from([r, c, g, d])
    );
    assert_eq!(change.touchpoint.state, LifecycleState::Archived);
    assert_eq!(change.touchpoint.revision, 2);
    assert_eq!(change.touchpoint, get(&store, "r").await);
    for k in ["r.c", "r.c.g", "r.d"] {
        let tp = get(&store, k).await;
        assert_eq!(
            (tp.state, tp.revision),
            (LifecycleState::Archived, 2),
            "{k}"
        );
    }
    assert_eq!(store.all_touchpoints(false).await.unwrap().len(), 0);
    assert_eq!(store.all_touchpoints(true).await.unwrap().len(), 4);

    let err = update(
        &store,
        c,
        TouchpointPatch {
            name: Some("x".into()),
            ..Default::default()
        },
    )
    .await
    .unwrap_err();
    assert_eq!(reason(&err), "TOUCHPOINT_ARCHIVED");
    // a leaf archives without cascade; archiving again changes nothing
    let leaf = create(&store, vec![root("leaf")]).await.remove(0);
    let change = store
        .archive_touchpoint(&req(&3), leaf.id, None, false)
        .await
        .unwrap();
    assert_eq!(change.changed, [leaf.id]);
    let change = store
        .archive_touchpoint(&req(&4), leaf.id, None, false)
        .await
        .unwrap();
    assert!(change.changed.is_empty());
    assert_eq!(change.touchpoint.revision, 2);
}

pub async fn restore_is_refused_under_an_archived_parent(store: Store) {
    let created = create(
        &store,
        vec![root("r"), under("r.c", "r"), under("r.c.g", "r.c")],
    )
    .await;
    let (r, c, g) = (created[0].id, created[1].id, created[2].id);
    store
        .archive_touchpoint(&req(&1), r, None, true)
        .await
        .unwrap();
    let err = store
        .restore_touchpoint(&req(&2), c, None, false)
        .await
        .unwrap_err();
    assert_eq!(reason(&err), "PARENT_ARCHIVED");

    let change = store
        .restore_touchpoint(&req(&3), r, None, false)
        .await
        .unwrap();
    assert_eq!(change.changed, [r]);
    assert_eq!(get(&store, "r.c").await.state, LifecycleState::Archived);
    let change = store
        .restore_touchpoint(&req(&4), c, None, true)
        .await
        .unwrap();
    assert_eq!(change.changed, [c, g]);
    assert_eq!(get(&store, "r.c.g").await.state, LifecycleState::Active);
    assert_eq!(get(&store, "r.c.g").await.revision, 3);
    // a new child of an archived parent is refused as well
    store
        .archive_touchpoint(&req(&5), g, None, false)
        .await
        .unwrap();
    let err = store
        .create_touchpoints(&req(&6), vec![under("r.c.g.x", "r.c.g")])
        .await
        .unwrap_err();
    assert_eq!(reason(&err), "PARENT_ARCHIVED");
}

pub async fn delete_is_refused_while_referenced(store: Store) {
    let created = create(
        &store,
        vec![root("web"), under("web.login", "web"), root("app")],
    )
    .await;
    let (web, login, app) = (created[0].id, created[1].id, created[2].id);
    let err = store
        .delete_touchpoint(&req(&1), web, None)
        .await
        .unwrap_err();
    assert_eq!(reason(&err), "TOUCHPOINT_REFERENCED");
    assert!(err.to_string().contains("1 child:"), "{err}");

    let journey = new_journey("onboarding", vec![stage("start", &["app"])]);
    store.create_journey(&req(&journey), journey).await.unwrap();
    let err = store
        .delete_touchpoint(&req(&2), app, None)
        .await
        .unwrap_err();
    assert_eq!(reason(&err), "TOUCHPOINT_REFERENCED");
    assert!(err.to_string().contains("onboarding"), "{err}");

    store
        .delete_touchpoint(&req(&3), login, Some("r1"))
        .await
        .unwrap();
    let err = store.get_touchpoint(&Lookup::Id(login)).await.unwrap_err();
    assert_eq!(reason(&err), "NOT_FOUND");
    store
        .delete_touchpoint(&req(&4), web, None)
        .await
        .expect("no children left");
    let err = store
        .delete_touchpoint(&req(&5), web, None)
        .await
        .unwrap_err();
    assert_eq!(reason(&err), "NOT_FOUND");
    assert_eq!(count(&store).await, 1);
}

// ---------------------------------------------------------------------------------------------
// Listings

pub async fn pagination_neither_loses_nor_repeats(store: Store) {
    let items: Vec<_> = (0..350)
        .map(|i| root(&format!("p.k{:04}", i * 2)))
        .collect();
    create(&store, items).await;
    let filter = TouchpointFilter::default();
    let mut seen: Vec<String> = Vec::new();
    let mut after = None;
    let mut pages = 0;
    loop {
        let page = store
            .list_touchpoints(&filter, &page(37, after.clone()))
            .await
            .unwrap();
        assert!(page.items.len() <= 37);
        seen.extend(page.items.iter().map(|t| t.key.to_string()));
        pages += 1;
        // insert between pages: one before the cursor, one after it
        let before = format!("p.k{:04}", pages * 26 - 1);
        let behind = format!("p.k{:04}", 699 - pages * 2);
        create(&store, vec![root(&before), root(&behind)]).await;
        match page.next_after {
            Some(next) => after = Some(next),
            None => break,
        }
        assert!(pages < 100, "pagination does not end");
    }
    let unique: BTreeSet<_> = seen.iter().cloned().collect();
    assert_eq!(unique.len(), seen.len(), "no item is repeated");
    assert!(
        seen.windows(2).all(|w| w[0] < w[1]),
        "items come in key order"
    );
    for i in 0..350 {
        assert!(
            unique.contains(&format!("p.k{:04}", i * 2)),
            "item {i} was lost"
        );
    }
    assert!(pages >= 10);
}

pub async fn filters_select_by_labels_and_fields(store: Store) {
    let labelled = |k: &str, labels: &[(&str, &str)], channel: Channel| {
        let mut tp = root(k);
        tp.channel = channel;
        tp.labels = labels
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        tp
    };
    let mut items = vec![
        labelled(
            "a",
            &[("segment", "retail"), ("region", "north")],
            Channel::Web,
        ),
        labelled(
            "b",
            &[("segment", "retail"), ("region", "south")],
            Channel::Store,
        ),
        labelled("c", &[("segment", "business")], Channel::Web),
        labelled("d", &[], Channel::Phone),
    ];
    let mut child = under("a.sub", "a");
    child.main = false;
    child.department = "branches".into();
    items.push(child);
    let created = create(&store, items).await;
    let keys = |filter: TouchpointFilter| {
        let store = store.clone();
        async move {
            let page = store
                .list_touchpoints(&filter, &page(100, None))
                .await
                .unwrap();
            page.items
                .into_iter()
                .map(|t| t.key.to_string())
                .collect::<Vec<_>>()
        }
    };
    let labels = |pairs: &[(&str, &str)]| {
        pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    };
    assert_eq!(
        keys(TouchpointFilter {
            labels: labels(&[("segment", "retail")]),
            ..Default::default()
        })
        .await,
        ["a", "b"]
    );
    assert_eq!(
        keys(TouchpointFilter {
            labels: labels(&[("segment", "retail"), ("region", "south")]),
            ..Default::default()
        })
        .await,
        ["b"]
    );
    assert!(
        keys(TouchpointFilter {
            labels: labels(&[("segment", "none")]),
            ..Default::default()
        })
        .await
        .is_empty()
    );
    assert_eq!(
        keys(TouchpointFilter {
            channel: Some(Channel::Web),
            labels: labels(&[("segment", "retail")]),
            ..Default::default()
        })
        .await,
        ["a"]
    );
    assert_eq!(
        keys(TouchpointFilter {
            roots_only: true,
            ..Default::default()
        })
        .await,
        ["a", "b", "c", "d"]
    );
    assert_eq!(
        keys(TouchpointFilter {
            parent_id: Some(created[0].id),
            ..Default::default()
        })
        .await,
        ["a.sub"]
    );
    assert_eq!(
        keys(TouchpointFilter {
            department: Some("branches".into()),
            ..Default::default()
        })
        .await,
        ["a.sub"]
    );
    assert_eq!(
        keys(TouchpointFilter {
            main_only: true,
            channel: Some(Channel::Web),
            ..Default::default()
        })
        .await,
        ["a", "c"]
    );
    store
        .archive_touchpoint(&req(&1), created[3].id, None, false)
        .await
        .unwrap();
    assert_eq!(
        keys(TouchpointFilter {
            state: Some(LifecycleState::Archived),
            ..Default::default()
        })
        .await,
        ["d"]
    );
    // parent keys are filled in on listings
    let page = store
        .list_touchpoints(&TouchpointFilter::default(), &page(2, Some("a".into())))
        .await
        .unwrap();
    assert_eq!(page.items[0].key.as_str(), "a.sub");
    assert_eq!(parent_key(&page.items[0]), Some("a"));
    assert_eq!(page.next_after.as_deref(), Some("b"));
}

// ---------------------------------------------------------------------------------------------
// Journeys

pub async fn journeys_refuse_unknown_and_archived_touchpoints(store: Store) {
    let created = create(&store, vec![root("web"), root("app"), root("old")]).await;
    store
        .archive_touchpoint(&req(&1), created[2].id, None, false)
        .await
        .unwrap();

    let unknown = new_journey(
        "j",
        vec![
            stage("look", &["web", "nope"]),
            stage("buy", &["gone", "app"]),
        ],
    );
    let err = store
        .create_journey(&req(&unknown), unknown)
        .await
        .unwrap_err();
    assert_eq!(reason(&err), "INVALID_FIELDS");
    assert_eq!(
        fields(&err),
        [
            "journey.stages[0].touchpoint_keys[1]",
            "journey.stages[1].touchpoint_keys[0]"
        ]
    );

    let archived = new_journey("j", vec![stage("look", &["web", "old"])]);
    let err = store
        .create_journey(&req(&archived), archived)
        .await
        .unwrap_err();
    assert_eq!(reason(&err), "TOUCHPOINT_ARCHIVED");
    assert!(err.to_string().contains("old"));

    let good = new_journey(
        "j",
        vec![stage("look", &["web", "app"]), stage("buy", &["app"])],
    );
    let journey = store
        .create_journey(&req(&good), good.clone())
        .await
        .unwrap();
    assert_eq!(journey.stages, good.stages);
    assert_eq!(journey.revision, 1);
    let read = store.get_journey(&Lookup::Key(key("j"))).await.unwrap();
    assert_eq!(read, journey, "create and get differ");
    assert_eq!(
        store.get_journey(&Lookup::Id(journey.id)).await.unwrap(),
        journey
    );

    let again = new_journey("j", vec![stage("look", &["web"])]);
    let err = store.create_journey(&req(&again), again).await.unwrap_err();
    assert_eq!(reason(&err), "JOURNEY_KEY_TAKEN");
    assert_eq!(fields(&err), ["journey.key"]);
}

pub async fn journeys_update_archive_restore_delete(store: Store) {
    let created = create(&store, vec![root("web"), root("app"), root("mail")]).await;
    let new = new_journey("j", vec![stage("look", &["web"])]);
    let journey = store.create_journey(&req(&new), new).await.unwrap();

    let patch = JourneyPatch {
        name: Some("Renamed".into()),
        stages: Some(vec![
            stage("look", &["app", "web"]),
            stage("mail", &["mail"]),
        ]),
        ..Default::default()
    };
    let request = req(&patch);
    let updated = store
        .update_journey(&request, journey.id, Some("r1"), patch.clone())
        .await
        .unwrap();
    assert_eq!(updated.name, "Renamed");
    assert_eq!(updated.revision, 2);
    assert_eq!(updated.stages, patch.stages.clone().unwrap());
    assert_eq!(
        store.get_journey(&Lookup::Id(journey.id)).await.unwrap(),
        updated
    );
    assert_eq!(
        store
            .update_journey(&request, journey.id, Some("r1"), patch)
            .await
            .unwrap(),
        updated
    );
    let err = store
        .update_journey(
            &req(&2),
            journey.id,
            Some("r1"),
            JourneyPatch {
                name: Some("x".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert_eq!(reason(&err), "ETAG_MISMATCH");
    let bad = JourneyPatch {
        stages: Some(vec![stage("look", &["nope"])]),
        ..Default::default()
    };
    let err = store
        .update_journey(&req(&bad), journey.id, None, bad)
        .await
        .unwrap_err();
    assert_eq!(fields(&err), ["journey.stages[0].touchpoint_keys[0]"]);

    let archived = store
        .archive_journey(&req(&3), journey.id, Some("r2"))
        .await
        .unwrap();
    assert_eq!(
        (archived.state, archived.revision),
        (LifecycleState::Archived, 3)
    );
    let err = store
        .update_journey(
            &req(&4),
            journey.id,
            None,
            JourneyPatch {
                name: Some("x".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert_eq!(reason(&err), "JOURNEY_ARCHIVED");

    // restoring needs every touchpoint active
    store
        .archive_touchpoint(&req(&5), created[2].id, None, false)
        .await
        .unwrap();
    let err = store
        .restore_journey(&req(&6), journey.id, None)
        .await
        .unwrap_err();
    assert_eq!(reason(&err), "TOUCHPOINT_ARCHIVED");
    assert!(err.to_string().contains("mail"), "{err}");
    store
        .restore_touchpoint(&req(&7), created[2].id, None, false)
        .await
        .unwrap();
    let restored = store
        .restore_journey(&req(&8), journey.id, None)
        .await
        .unwrap();
    assert_eq!(
        (restored.state, restored.revision),
        (LifecycleState::Active, 4)
    );

    let request = req(&9);
    store
        .delete_journey(&request, journey.id, Some("r4"))
        .await
        .unwrap();
    store
        .delete_journey(&request, journey.id, Some("r4"))
        .await
        .expect("retried delete");
    let err = store
        .get_journey(&Lookup::Id(journey.id))
        .await
        .unwrap_err();
    assert_eq!(reason(&err), "NOT_FOUND");
    // the touchpoints are free again
    store
        .delete_touchpoint(&req(&10), created[2].id, None)
        .await
        .unwrap();
}

pub async fn journey_listing_filters_by_touchpoint(store: Store) {
    create(&store, vec![root("web"), root("app")]).await;
    for i in 0..7 {
        let touchpoint = if i % 2 == 0 { "web" } else { "app" };
        let new = new_journey(&format!("j{i}"), vec![stage("only", &[touchpoint])]);
        store.create_journey(&req(&new), new).await.unwrap();
    }
    let mut keys = Vec::new();
    let mut after = None;
    let filter = JourneyFilter {
        touchpoint_key: Some(key("web")),
        ..Default::default()
    };
    loop {
        let page = store.list_journeys(&filter, &page(3, after)).await.unwrap();
        keys.extend(page.items.iter().map(|j| j.key.to_string()));
        assert!(
            page.items
                .iter()
                .all(|j| j.stages[0].touchpoint_keys == [key("web")])
        );
        match page.next_after {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    assert_eq!(keys, ["j0", "j2", "j4", "j6"]);
    let j1 = store.get_journey(&Lookup::Key(key("j1"))).await.unwrap();
    store.archive_journey(&req(&1), j1.id, None).await.unwrap();
    let archived = store
        .list_journeys(
            &JourneyFilter {
                state: Some(LifecycleState::Archived),
                ..Default::default()
            },
            &page(10, None),
        )
        .await
        .unwrap();
    assert_eq!(archived.items.len(), 1);
    assert_eq!(archived.items[0].key.as_str(), "j1");
    assert_eq!(archived.next_after, None);
}
