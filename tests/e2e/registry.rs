//! The touchpoint registry, end to end: happy paths and every refusal.

use std::collections::{BTreeMap, BTreeSet};

use cxhub_proto::touchpoint::v1 as pb;
use cxhub_testkit::TestHub;
use prost_types::FieldMask;
use tonic::Code;

use crate::{child, fields, refused, rid, touchpoint};

type Client = pb::touchpoint_registry_service_client::TouchpointRegistryServiceClient<
    tonic::transport::Channel,
>;

async fn create(c: &mut Client, t: pb::Touchpoint) -> pb::Touchpoint {
    c.create_touchpoint(pb::CreateTouchpointRequest {
        touchpoint: Some(t),
        request_id: rid(),
    })
    .await
    .expect("create succeeds")
    .into_inner()
    .touchpoint
    .expect("touchpoint returned")
}

async fn get_key(c: &mut Client, key: &str) -> Result<pb::Touchpoint, tonic::Status> {
    c.get_touchpoint(pb::GetTouchpointRequest {
        lookup: Some(pb::get_touchpoint_request::Lookup::Key(key.into())),
    })
    .await
    .map(|r| r.into_inner().touchpoint.expect("touchpoint returned"))
}

fn mask(paths: &[&str]) -> Option<FieldMask> {
    Some(FieldMask {
        paths: paths.iter().map(|p| (*p).to_owned()).collect(),
    })
}

async fn list_all(
    c: &mut Client,
    filter: pb::ListTouchpointsRequest,
    page_size: i32,
) -> Vec<pb::Touchpoint> {
    let mut out = Vec::new();
    let mut token = String::new();
    loop {
        let page = c
            .list_touchpoints(pb::ListTouchpointsRequest {
                page_size,
                page_token: token.clone(),
                ..filter.clone()
            })
            .await
            .expect("list succeeds")
            .into_inner();
        assert!(page.touchpoints.len() <= page_size as usize);
        out.extend(page.touchpoints);
        if page.next_page_token.is_empty() {
            return out;
        }
        token = page.next_page_token;
    }
}

#[tokio::test]
async fn a_created_touchpoint_reads_back_by_id_and_by_key() {
    let hub = TestHub::start().await;
    let mut c = hub.touchpoints().await;
    let parent = create(&mut c, touchpoint("store")).await;
    let mut input = child("store.checkout", "store");
    input.intended_experience = Some(pb::IntendedExperience {
        target_nps: Some(40),
        target_csat: Some(85.5),
        target_ces: None,
    });
    input.labels = BTreeMap::from([("segment".to_owned(), "retail".to_owned())]);
    let created = create(&mut c, input).await;

    assert_eq!(created.parent_id, parent.id);
    assert_eq!(created.parent_key, "store");
    assert_eq!(created.state, pb::LifecycleState::Active as i32);
    assert!(!created.etag.is_empty() && created.create_time.is_some());
    assert_eq!(
        created.intended_experience.and_then(|i| i.target_nps),
        Some(40)
    );

    let by_key = get_key(&mut c, "store.checkout")
        .await
        .expect("found by key");
    assert_eq!(
        by_key, created,
        "a read returns exactly what the create returned"
    );
    let by_id = c
        .get_touchpoint(pb::GetTouchpointRequest {
            lookup: Some(pb::get_touchpoint_request::Lookup::Id(created.id.clone())),
        })
        .await
        .expect("found by id")
        .into_inner()
        .touchpoint;
    assert_eq!(by_id, Some(created));
}

#[tokio::test]
async fn an_invalid_touchpoint_is_refused_with_every_bad_field() {
    let hub = TestHub::start().await;
    let mut c = hub.touchpoints().await;
    let bad = pb::Touchpoint {
        key: "Store Checkout".into(),
        name: String::new(),
        channel: 0,
        stage: 99,
        department: String::new(),
        intended_experience: Some(pb::IntendedExperience {
            target_nps: Some(-101),
            target_csat: Some(100.5),
            target_ces: Some(8.0),
        }),
        labels: BTreeMap::from([("Bad Label".to_owned(), "x".to_owned())]),
        ..Default::default()
    };
    let status = refused(
        c.create_touchpoint(pb::CreateTouchpointRequest {
            touchpoint: Some(bad),
            request_id: String::new(),
        })
        .await,
        Code::InvalidArgument,
        "INVALID_FIELDS",
    );
    let got: BTreeSet<String> = fields(&status).into_iter().collect();
    for expected in [
        "request_id",
        "touchpoint.key",
        "touchpoint.name",
        "touchpoint.channel",
        "touchpoint.stage",
        "touchpoint.department",
        "touchpoint.intended_experience.target_nps",
        "touchpoint.intended_experience.target_csat",
        "touchpoint.intended_experience.target_ces",
        "touchpoint.labels[Bad Label]",
    ] {
        assert!(got.contains(expected), "missing {expected} in {got:?}");
    }

    let status = refused(
        c.create_touchpoint(pb::CreateTouchpointRequest {
            touchpoint: None,
            request_id: rid(),
        })
        .await,
        Code::InvalidArgument,
        "INVALID_FIELDS",
    );
    assert_eq!(fields(&status), ["touchpoint"]);
}

#[tokio::test]
async fn a_taken_key_is_already_exists() {
    let hub = TestHub::start().await;
    let mut c = hub.touchpoints().await;
    create(&mut c, touchpoint("web.home")).await;
    let status = refused(
        c.create_touchpoint(pb::CreateTouchpointRequest {
            touchpoint: Some(touchpoint("web.home")),
            request_id: rid(),
        })
        .await,
        Code::AlreadyExists,
        "TOUCHPOINT_KEY_TAKEN",
    );
    assert!(status.message().contains("web.home"), "{status:?}");
}

#[tokio::test]
async fn a_retry_returns_the_first_result_and_a_reused_id_is_refused() {
    let hub = TestHub::start().await;
    let mut c = hub.touchpoints().await;
    let request = pb::CreateTouchpointRequest {
        touchpoint: Some(touchpoint("phone.ivr")),
        request_id: "retry-me".into(),
    };
    let first = c
        .create_touchpoint(request.clone())
        .await
        .expect("first")
        .into_inner();
    let again = c
        .create_touchpoint(request.clone())
        .await
        .expect("retry")
        .into_inner();
    assert_eq!(first, again, "the retry answers the first result");
    let all = list_all(&mut c, Default::default(), 100).await;
    assert_eq!(all.len(), 1, "the retry created nothing");

    let mut other = request.clone();
    other.touchpoint = Some(touchpoint("phone.callback"));
    let status = refused(
        c.create_touchpoint(other).await,
        Code::InvalidArgument,
        "REQUEST_ID_REUSED",
    );
    assert_eq!(fields(&status), ["request_id"]);
    assert!(
        get_key(&mut c, "phone.callback").await.is_err(),
        "nothing written"
    );

    // A retried update answers the first result even after later changes.
    let tp = first.touchpoint.expect("touchpoint");
    let update = pb::UpdateTouchpointRequest {
        touchpoint: Some(pb::Touchpoint {
            name: "IVR menu".into(),
            ..tp.clone()
        }),
        update_mask: mask(&["name"]),
        request_id: rid(),
    };
    let updated = c
        .update_touchpoint(update.clone())
        .await
        .expect("update")
        .into_inner();
    let replay = c
        .update_touchpoint(update)
        .await
        .expect("update retry")
        .into_inner();
    assert_eq!(updated, replay);
    let current = get_key(&mut c, "phone.ivr").await.expect("found");
    assert_eq!(
        current.etag,
        updated.touchpoint.expect("tp").etag,
        "the retry did not bump the revision"
    );
}

#[tokio::test]
async fn a_batch_is_all_or_nothing_and_reports_every_bad_item() {
    let hub = TestHub::start().await;
    let mut c = hub.touchpoints().await;
    // Children before their parents: the batch resolves keys in any order.
    let good = vec![
        child("branch.teller.cash", "branch.teller"),
        child("branch.teller", "branch"),
        touchpoint("branch"),
    ];
    let created = c
        .batch_create_touchpoints(pb::BatchCreateTouchpointsRequest {
            touchpoints: good,
            request_id: rid(),
        })
        .await
        .expect("batch succeeds")
        .into_inner()
        .touchpoints;
    assert_eq!(
        created.iter().map(|t| t.key.as_str()).collect::<Vec<_>>(),
        ["branch.teller.cash", "branch.teller", "branch"],
        "answered in request order"
    );
    assert_eq!(created[0].parent_id, created[1].id);

    let mut bad_key = touchpoint("atm.deposit");
    bad_key.key = "ATM".into();
    let mut no_department = touchpoint("atm.withdraw");
    no_department.department.clear();
    let batch = vec![
        touchpoint("atm"),
        child("atm.balance", "atm"),
        bad_key,
        no_department,
    ];
    let status = refused(
        c.batch_create_touchpoints(pb::BatchCreateTouchpointsRequest {
            touchpoints: batch,
            request_id: rid(),
        })
        .await,
        Code::InvalidArgument,
        "INVALID_FIELDS",
    );
    assert_eq!(
        fields(&status),
        ["touchpoints[2].key", "touchpoints[3].department"]
    );
    assert!(
        get_key(&mut c, "atm").await.is_err(),
        "no valid item of a refused batch is written"
    );

    // Unknown parent and a key repeated inside the batch: nothing written either.
    let status = refused(
        c.batch_create_touchpoints(pb::BatchCreateTouchpointsRequest {
            touchpoints: vec![touchpoint("kiosk"), child("kiosk.print", "nowhere")],
            request_id: rid(),
        })
        .await,
        Code::InvalidArgument,
        "INVALID_FIELDS",
    );
    assert_eq!(fields(&status), ["touchpoints[1].parent_key"]);
    refused(
        c.batch_create_touchpoints(pb::BatchCreateTouchpointsRequest {
            touchpoints: vec![touchpoint("kiosk"), touchpoint("kiosk")],
            request_id: rid(),
        })
        .await,
        Code::AlreadyExists,
        "TOUCHPOINT_KEY_TAKEN",
    );
    assert!(get_key(&mut c, "kiosk").await.is_err());

    let too_many: Vec<_> = (0..1001)
        .map(|i| touchpoint(&format!("bulk.t{i}")))
        .collect();
    let status = refused(
        c.batch_create_touchpoints(pb::BatchCreateTouchpointsRequest {
            touchpoints: too_many,
            request_id: rid(),
        })
        .await,
        Code::InvalidArgument,
        "INVALID_FIELDS",
    );
    assert_eq!(fields(&status), ["touchpoints"]);
}

#[tokio::test]
async fn the_hierarchy_refuses_cycles_main_below_sub_and_archived_parents() {
    let hub = TestHub::start().await;
    let mut c = hub.touchpoints().await;
    let a = create(&mut c, touchpoint("app")).await;
    let b = create(&mut c, child("app.login", "app")).await;
    let _ = create(&mut c, child("app.login.otp", "app.login")).await;

    // Moving `app` below its own grandchild is a cycle.
    let status = refused(
        c.update_touchpoint(pb::UpdateTouchpointRequest {
            touchpoint: Some(pb::Touchpoint {
                parent_key: "app.login.otp".into(),
                ..a.clone()
            }),
            update_mask: mask(&["parent_key"]),
            request_id: rid(),
        })
        .await,
        Code::FailedPrecondition,
        "HIERARCHY_CYCLE",
    );
    assert!(status.message().contains("app"), "{status:?}");

    // A main touchpoint below a sub-touchpoint.
    let mut main_child = child("app.login.biometric", "app.login");
    main_child.main = true;
    refused(
        c.create_touchpoint(pb::CreateTouchpointRequest {
            touchpoint: Some(main_child),
            request_id: rid(),
        })
        .await,
        Code::FailedPrecondition,
        "MAIN_BELOW_SUB",
    );

    // A parent in another lifecycle state.
    c.archive_touchpoint(pb::ArchiveTouchpointRequest {
        id: b.id.clone(),
        cascade: true,
        request_id: rid(),
        ..Default::default()
    })
    .await
    .expect("archive with cascade");
    refused(
        c.create_touchpoint(pb::CreateTouchpointRequest {
            touchpoint: Some(child("app.login.sms", "app.login")),
            request_id: rid(),
        })
        .await,
        Code::FailedPrecondition,
        "PARENT_ARCHIVED",
    );
}

#[tokio::test]
async fn updates_follow_the_mask_and_refuse_stale_etags() {
    let hub = TestHub::start().await;
    let mut c = hub.touchpoints().await;
    let tp = create(&mut c, touchpoint("email.receipt")).await;

    let updated = c
        .update_touchpoint(pb::UpdateTouchpointRequest {
            touchpoint: Some(pb::Touchpoint {
                name: "Order receipt".into(),
                description: "ignored: not in the mask".into(),
                channel: pb::Channel::Email as i32,
                labels: BTreeMap::from([("lang".to_owned(), "en".to_owned())]),
                ..tp.clone()
            }),
            update_mask: mask(&["name", "channel", "labels"]),
            request_id: rid(),
        })
        .await
        .expect("update")
        .into_inner()
        .touchpoint
        .expect("touchpoint");
    assert_eq!(updated.name, "Order receipt");
    assert_eq!(
        updated.description, tp.description,
        "fields outside the mask stay"
    );
    assert_eq!(updated.channel, pb::Channel::Email as i32);
    assert_eq!(updated.labels.get("lang").map(String::as_str), Some("en"));
    assert_ne!(updated.etag, tp.etag);

    // The old etag is stale now.
    refused(
        c.update_touchpoint(pb::UpdateTouchpointRequest {
            touchpoint: Some(pb::Touchpoint {
                name: "Lost update".into(),
                ..tp.clone()
            }),
            update_mask: mask(&["name"]),
            request_id: rid(),
        })
        .await,
        Code::Aborted,
        "ETAG_MISMATCH",
    );
    assert_eq!(
        get_key(&mut c, "email.receipt").await.expect("found").name,
        "Order receipt"
    );

    // Immutable, unknown and empty masks.
    let status = refused(
        c.update_touchpoint(pb::UpdateTouchpointRequest {
            touchpoint: Some(pb::Touchpoint {
                key: "email.other".into(),
                ..updated.clone()
            }),
            update_mask: mask(&["key", "colour"]),
            request_id: rid(),
        })
        .await,
        Code::InvalidArgument,
        "INVALID_FIELDS",
    );
    assert_eq!(fields(&status), ["touchpoint.key", "update_mask"]);
    let status = refused(
        c.update_touchpoint(pb::UpdateTouchpointRequest {
            touchpoint: Some(updated.clone()),
            update_mask: None,
            request_id: rid(),
        })
        .await,
        Code::InvalidArgument,
        "INVALID_FIELDS",
    );
    assert_eq!(fields(&status), ["update_mask"]);

    // An archived touchpoint must be restored before it changes.
    c.archive_touchpoint(pb::ArchiveTouchpointRequest {
        id: updated.id.clone(),
        request_id: rid(),
        ..Default::default()
    })
    .await
    .expect("archive");
    refused(
        c.update_touchpoint(pb::UpdateTouchpointRequest {
            touchpoint: Some(pb::Touchpoint {
                etag: String::new(),
                ..updated.clone()
            }),
            update_mask: mask(&["name"]),
            request_id: rid(),
        })
        .await,
        Code::FailedPrecondition,
        "TOUCHPOINT_ARCHIVED",
    );
}

#[tokio::test]
async fn archive_restore_and_delete_respect_the_hierarchy() {
    let hub = TestHub::start().await;
    let mut c = hub.touchpoints().await;
    let root = create(&mut c, touchpoint("support")).await;
    let mid = create(&mut c, child("support.chat", "support")).await;
    let leaf = create(&mut c, child("support.chat.bot", "support.chat")).await;

    refused(
        c.archive_touchpoint(pb::ArchiveTouchpointRequest {
            id: root.id.clone(),
            request_id: rid(),
            ..Default::default()
        })
        .await,
        Code::FailedPrecondition,
        "ACTIVE_CHILDREN",
    );
    let archived = c
        .archive_touchpoint(pb::ArchiveTouchpointRequest {
            id: root.id.clone(),
            cascade: true,
            request_id: rid(),
            ..Default::default()
        })
        .await
        .expect("cascade archive")
        .into_inner();
    assert_eq!(
        archived.archived_ids.first(),
        Some(&root.id),
        "the named touchpoint first"
    );
    assert_eq!(
        archived.archived_ids.iter().collect::<BTreeSet<_>>(),
        [&root.id, &mid.id, &leaf.id].into_iter().collect()
    );
    assert_eq!(
        get_key(&mut c, "support.chat.bot")
            .await
            .expect("found")
            .state,
        pb::LifecycleState::Archived as i32
    );

    refused(
        c.restore_touchpoint(pb::RestoreTouchpointRequest {
            id: leaf.id.clone(),
            request_id: rid(),
            ..Default::default()
        })
        .await,
        Code::FailedPrecondition,
        "PARENT_ARCHIVED",
    );
    let restored = c
        .restore_touchpoint(pb::RestoreTouchpointRequest {
            id: root.id.clone(),
            cascade: true,
            request_id: rid(),
            ..Default::default()
        })
        .await
        .expect("cascade restore")
        .into_inner();
    assert_eq!(restored.restored_ids.len(), 3);

    // Delete: refused while anything references the touchpoint.
    refused(
        c.delete_touchpoint(pb::DeleteTouchpointRequest {
            id: mid.id.clone(),
            request_id: rid(),
            ..Default::default()
        })
        .await,
        Code::FailedPrecondition,
        "TOUCHPOINT_REFERENCED",
    );
    c.create_journey(pb::CreateJourneyRequest {
        journey: Some(pb::Journey {
            key: "get-help".into(),
            name: "Get help".into(),
            stages: vec![pb::JourneyMapStage {
                name: "Ask".into(),
                stage: pb::JourneyStage::Support as i32,
                touchpoint_keys: vec!["support.chat.bot".into()],
            }],
            ..Default::default()
        }),
        request_id: rid(),
    })
    .await
    .expect("journey");
    let status = refused(
        c.delete_touchpoint(pb::DeleteTouchpointRequest {
            id: leaf.id.clone(),
            request_id: rid(),
            ..Default::default()
        })
        .await,
        Code::FailedPrecondition,
        "TOUCHPOINT_REFERENCED",
    );
    assert!(
        status.message().contains("get-help") || status.message().contains("journey"),
        "{status:?}"
    );

    // A stale etag refuses a delete; the current one allows it.
    let lone = create(&mut c, touchpoint("letter")).await;
    refused(
        c.delete_touchpoint(pb::DeleteTouchpointRequest {
            id: lone.id.clone(),
            etag: "r999".into(),
            request_id: rid(),
        })
        .await,
        Code::Aborted,
        "ETAG_MISMATCH",
    );
    let delete = pb::DeleteTouchpointRequest {
        id: lone.id.clone(),
        etag: lone.etag.clone(),
        request_id: rid(),
    };
    c.delete_touchpoint(delete.clone()).await.expect("delete");
    c.delete_touchpoint(delete)
        .await
        .expect("a retried delete answers its first result");
    refused(
        get_key(&mut c, "letter").await,
        Code::NotFound,
        "TOUCHPOINT_NOT_FOUND",
    );
}

#[tokio::test]
async fn lookups_are_validated() {
    let hub = TestHub::start().await;
    let mut c = hub.touchpoints().await;
    let status = refused(
        c.get_touchpoint(pb::GetTouchpointRequest { lookup: None })
            .await,
        Code::InvalidArgument,
        "INVALID_FIELDS",
    );
    assert_eq!(fields(&status), ["lookup"]);
    let status = refused(
        c.get_touchpoint(pb::GetTouchpointRequest {
            lookup: Some(pb::get_touchpoint_request::Lookup::Id("42".into())),
        })
        .await,
        Code::InvalidArgument,
        "INVALID_FIELDS",
    );
    assert_eq!(fields(&status), ["id"]);
    refused(
        c.get_touchpoint(pb::GetTouchpointRequest {
            lookup: Some(pb::get_touchpoint_request::Lookup::Id(
                "0190b4c4-0000-7000-8000-000000000000".into(),
            )),
        })
        .await,
        Code::NotFound,
        "TOUCHPOINT_NOT_FOUND",
    );
}

#[tokio::test]
async fn paging_over_the_demo_registry_loses_and_repeats_nothing() {
    let hub = TestHub::builder().demo().start().await;
    let mut c = hub.touchpoints().await;
    let all = list_all(&mut c, Default::default(), 1000).await;
    assert!(
        all.len() >= 280,
        "the demo registry is bank-sized: {}",
        all.len()
    );
    let keys: Vec<&str> = all.iter().map(|t| t.key.as_str()).collect();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(keys, sorted, "ordered by key");

    // Page by 37 while new touchpoints are inserted between pages.
    let mut seen = Vec::new();
    let mut token = String::new();
    let mut inserted = 0;
    loop {
        let page = c
            .list_touchpoints(pb::ListTouchpointsRequest {
                page_size: 37,
                page_token: token.clone(),
                ..Default::default()
            })
            .await
            .expect("page")
            .into_inner();
        seen.extend(page.touchpoints.into_iter().map(|t| t.key));
        if page.next_page_token.is_empty() {
            break;
        }
        // One key sorting before everything read so far, one after.
        create(&mut c, touchpoint(&format!("aaa.new{inserted}"))).await;
        create(&mut c, touchpoint(&format!("zzz.new{inserted}"))).await;
        inserted += 1;
        token = page.next_page_token;
    }
    let unique: BTreeSet<&String> = seen.iter().collect();
    assert_eq!(unique.len(), seen.len(), "no touchpoint repeated");
    for key in &keys {
        assert!(unique.contains(&key.to_string()), "{key} lost");
    }
    assert_eq!(
        seen.iter().filter(|k| k.starts_with("zzz.")).count(),
        inserted,
        "keys inserted ahead of the cursor are reached"
    );

    // A token is bound to its filters, and garbage is refused.
    let first = c
        .list_touchpoints(pb::ListTouchpointsRequest {
            page_size: 5,
            ..Default::default()
        })
        .await
        .expect("page")
        .into_inner();
    let status = refused(
        c.list_touchpoints(pb::ListTouchpointsRequest {
            page_size: 5,
            page_token: first.next_page_token,
            channel: pb::Channel::Web as i32,
            ..Default::default()
        })
        .await,
        Code::InvalidArgument,
        "INVALID_FIELDS",
    );
    assert_eq!(fields(&status), ["page_token"]);
    let status = refused(
        c.list_touchpoints(pb::ListTouchpointsRequest {
            page_size: 1001,
            page_token: "not-a-token".into(),
            ..Default::default()
        })
        .await,
        Code::InvalidArgument,
        "INVALID_FIELDS",
    );
    assert_eq!(fields(&status), ["page_size", "page_token"]);
}

/// Which touchpoints a filter should keep.
type Predicate = Box<dyn Fn(&pb::Touchpoint) -> bool>;

#[tokio::test]
async fn list_filters_match_a_scan_of_everything() {
    let hub = TestHub::builder().demo().start().await;
    let mut c = hub.touchpoints().await;
    let all = list_all(&mut c, Default::default(), 1000).await;
    let some_parent = all
        .iter()
        .find(|t| !t.parent_id.is_empty())
        .expect("demo has children");
    let some_label = all
        .iter()
        .find_map(|t| t.labels.iter().next().map(|(k, v)| (k.clone(), v.clone())))
        .expect("demo has labels");
    let department = all[all.len() / 2].department.clone();

    let cases: Vec<(pb::ListTouchpointsRequest, Predicate)> = vec![
        (
            pb::ListTouchpointsRequest {
                channel: pb::Channel::Phone as i32,
                ..Default::default()
            },
            Box::new(|t| t.channel == pb::Channel::Phone as i32),
        ),
        (
            pb::ListTouchpointsRequest {
                stage: pb::JourneyStage::Support as i32,
                ..Default::default()
            },
            Box::new(|t| t.stage == pb::JourneyStage::Support as i32),
        ),
        (
            pb::ListTouchpointsRequest {
                department: department.clone(),
                ..Default::default()
            },
            Box::new(move |t| t.department == department),
        ),
        (
            pb::ListTouchpointsRequest {
                parent_id: some_parent.parent_id.clone(),
                ..Default::default()
            },
            {
                let parent = some_parent.parent_id.clone();
                Box::new(move |t| t.parent_id == parent)
            },
        ),
        (
            pb::ListTouchpointsRequest {
                roots_only: true,
                ..Default::default()
            },
            Box::new(|t| t.parent_id.is_empty()),
        ),
        (
            pb::ListTouchpointsRequest {
                main_only: true,
                ..Default::default()
            },
            Box::new(|t| t.main),
        ),
        (
            pb::ListTouchpointsRequest {
                labels: BTreeMap::from([some_label.clone()]),
                ..Default::default()
            },
            Box::new(move |t| t.labels.get(&some_label.0) == Some(&some_label.1)),
        ),
        (
            pb::ListTouchpointsRequest {
                state: pb::LifecycleState::Archived as i32,
                ..Default::default()
            },
            Box::new(|t| t.state == pb::LifecycleState::Archived as i32),
        ),
    ];
    for (filter, predicate) in cases {
        let got: Vec<String> = list_all(&mut c, filter.clone(), 50)
            .await
            .into_iter()
            .map(|t| t.key)
            .collect();
        let expected: Vec<String> = all
            .iter()
            .filter(|t| predicate(t))
            .map(|t| t.key.clone())
            .collect();
        assert_eq!(got, expected, "filter {filter:?}");
    }

    let status = refused(
        c.list_touchpoints(pb::ListTouchpointsRequest {
            roots_only: true,
            parent_id: some_parent.parent_id.clone(),
            ..Default::default()
        })
        .await,
        Code::InvalidArgument,
        "INVALID_FIELDS",
    );
    assert_eq!(fields(&status), ["roots_only"]);
}

#[tokio::test]
async fn the_tree_holds_every_touchpoint_once() {
    let hub = TestHub::builder().demo().start().await;
    let mut c = hub.touchpoints().await;
    let all = list_all(&mut c, Default::default(), 1000).await;
    let forest = c
        .get_touchpoint_tree(pb::GetTouchpointTreeRequest::default())
        .await
        .expect("tree")
        .into_inner()
        .roots;
    fn walk(nodes: &[pb::TouchpointNode], parent: &str, out: &mut Vec<String>) {
        for n in nodes {
            let t = n.touchpoint.as_ref().expect("touchpoint");
            assert_eq!(t.parent_id, parent, "{} sits below its parent", t.key);
            out.push(t.key.clone());
            walk(&n.children, &t.id, out);
        }
    }
    let mut keys = Vec::new();
    walk(&forest, "", &mut keys);
    keys.sort();
    let mut expected: Vec<String> = all.iter().map(|t| t.key.clone()).collect();
    expected.sort();
    assert_eq!(keys, expected);

    let root = forest
        .iter()
        .find(|n| !n.children.is_empty())
        .expect("a root with children");
    let key = root.touchpoint.as_ref().expect("tp").key.clone();
    let cut = c
        .get_touchpoint_tree(pb::GetTouchpointTreeRequest {
            root_key: key,
            max_depth: 1,
            ..Default::default()
        })
        .await
        .expect("subtree")
        .into_inner()
        .roots;
    assert_eq!(cut.len(), 1);
    assert_eq!(cut[0].children.len(), root.children.len());
    assert!(
        cut[0].children.iter().all(|n| n.children.is_empty()),
        "cut at depth 1"
    );

    refused(
        c.get_touchpoint_tree(pb::GetTouchpointTreeRequest {
            root_key: "no.such.key".into(),
            ..Default::default()
        })
        .await,
        Code::NotFound,
        "TOUCHPOINT_NOT_FOUND",
    );
    let status = refused(
        c.get_touchpoint_tree(pb::GetTouchpointTreeRequest {
            max_depth: 33,
            ..Default::default()
        })
        .await,
        Code::InvalidArgument,
        "INVALID_FIELDS",
    );
    assert_eq!(fields(&status), ["max_depth"]);
}

#[tokio::test]
async fn journeys_have_the_same_rules() {
    let hub = TestHub::start().await;
    let mut c = hub.touchpoints().await;
    create(&mut c, touchpoint("web")).await;
    create(&mut c, child("web.signup", "web")).await;
    let old = create(&mut c, child("web.legacy-form", "web")).await;
    c.archive_touchpoint(pb::ArchiveTouchpointRequest {
        id: old.id.clone(),
        request_id: rid(),
        ..Default::default()
    })
    .await
    .expect("archive");

    let stage = |keys: &[&str]| pb::JourneyMapStage {
        name: "Sign up".into(),
        stage: pb::JourneyStage::Onboarding as i32,
        touchpoint_keys: keys.iter().map(|k| (*k).to_owned()).collect(),
    };
    let journey = |stages| pb::Journey {
        key: "onboarding".into(),
        name: "Onboarding".into(),
        stages,
        ..Default::default()
    };

    let status = refused(
        c.create_journey(pb::CreateJourneyRequest {
            journey: Some(journey(vec![
                stage(&["web.signup", "web.nowhere"]),
                stage(&[]),
            ])),
            request_id: rid(),
        })
        .await,
        Code::InvalidArgument,
        "INVALID_FIELDS",
    );
    assert_eq!(fields(&status), ["journey.stages[1].touchpoint_keys"]);
    let status = refused(
        c.create_journey(pb::CreateJourneyRequest {
            journey: Some(journey(vec![stage(&["web.signup", "web.nowhere"])])),
            request_id: rid(),
        })
        .await,
        Code::InvalidArgument,
        "INVALID_FIELDS",
    );
    assert_eq!(fields(&status), ["journey.stages[0].touchpoint_keys[1]"]);
    refused(
        c.create_journey(pb::CreateJourneyRequest {
            journey: Some(journey(vec![stage(&["web.legacy-form"])])),
            request_id: rid(),
        })
        .await,
        Code::FailedPrecondition,
        "TOUCHPOINT_ARCHIVED",
    );

    let created = c
        .create_journey(pb::CreateJourneyRequest {
            journey: Some(journey(vec![stage(&["web", "web.signup"])])),
            request_id: rid(),
        })
        .await
        .expect("journey")
        .into_inner()
        .journey
        .expect("journey");
    assert_eq!(created.stages[0].touchpoint_keys, ["web", "web.signup"]);
    refused(
        c.create_journey(pb::CreateJourneyRequest {
            journey: Some(journey(vec![stage(&["web"])])),
            request_id: rid(),
        })
        .await,
        Code::AlreadyExists,
        "JOURNEY_KEY_TAKEN",
    );

    let updated = c
        .update_journey(pb::UpdateJourneyRequest {
            journey: Some(pb::Journey {
                stages: vec![
                    stage(&["web.signup"]),
                    pb::JourneyMapStage {
                        name: "First use".into(),
                        stage: pb::JourneyStage::Usage as i32,
                        touchpoint_keys: vec!["web".into()],
                    },
                ],
                ..created.clone()
            }),
            update_mask: mask(&["stages"]),
            request_id: rid(),
        })
        .await
        .expect("update")
        .into_inner()
        .journey
        .expect("journey");
    assert_eq!(updated.stages.len(), 2);
    refused(
        c.update_journey(pb::UpdateJourneyRequest {
            journey: Some(pb::Journey {
                name: "stale".into(),
                ..created.clone()
            }),
            update_mask: mask(&["name"]),
            request_id: rid(),
        })
        .await,
        Code::Aborted,
        "ETAG_MISMATCH",
    );

    let listed = c
        .list_journeys(pb::ListJourneysRequest {
            touchpoint_key: "web.signup".into(),
            ..Default::default()
        })
        .await
        .expect("list")
        .into_inner()
        .journeys;
    assert_eq!(
        listed.iter().map(|j| j.key.as_str()).collect::<Vec<_>>(),
        ["onboarding"]
    );
    let none = c
        .list_journeys(pb::ListJourneysRequest {
            touchpoint_key: "web.legacy-form".into(),
            ..Default::default()
        })
        .await
        .expect("list")
        .into_inner()
        .journeys;
    assert!(none.is_empty());

    let archived = c
        .archive_journey(pb::ArchiveJourneyRequest {
            id: created.id.clone(),
            request_id: rid(),
            ..Default::default()
        })
        .await
        .expect("archive")
        .into_inner()
        .journey
        .expect("journey");
    assert_eq!(archived.state, pb::LifecycleState::Archived as i32);
    refused(
        c.update_journey(pb::UpdateJourneyRequest {
            journey: Some(pb::Journey {
                name: "x".into(),
                etag: String::new(),
                ..archived.clone()
            }),
            update_mask: mask(&["name"]),
            request_id: rid(),
        })
        .await,
        Code::FailedPrecondition,
        "JOURNEY_ARCHIVED",
    );
    c.restore_journey(pb::RestoreJourneyRequest {
        id: created.id.clone(),
        request_id: rid(),
        ..Default::default()
    })
    .await
    .expect("restore");
    c.delete_journey(pb::DeleteJourneyRequest {
        id: created.id.clone(),
        request_id: rid(),
        ..Default::default()
    })
    .await
    .expect("delete");
    refused(
        c.get_journey(pb::GetJourneyRequest {
            lookup: Some(pb::get_journey_request::Lookup::Key("onboarding".into())),
        })
        .await,
        Code::NotFound,
        "JOURNEY_NOT_FOUND",
    );
}
