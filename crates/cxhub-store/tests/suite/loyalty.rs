//! Loyalty actions, campaign budgets and the points ledger (`LoyaltyRepo`), on a fresh store:
//! guard rails decided in the write's transaction, transitions and their history, budgets that
//! concurrent approvals never overspend, and a ledger that concurrent redemptions never take
//! below zero.

use chrono::{Duration, Utc};
use cxhub_domain::error::Error;
use cxhub_domain::identifier::CustomerId;
use cxhub_domain::interaction::{CustomerRef, InteractionRepo, NewInteraction};
use cxhub_domain::loyalty::action::{ActionKind, ActionState, ContactChannel};
use cxhub_domain::loyalty::guard::FrequencyCap;
use cxhub_domain::loyalty::points::EntryKind;
use cxhub_domain::loyalty::repo::{
    ActionFilter, CampaignId, GuardConfig, LoyaltyRepo, NewAction, NewCampaign, PointsOp,
    PointsPosting,
};
use cxhub_domain::money::{Currency, Money};
use cxhub_domain::page::PageRequest;
use cxhub_domain::record::ContentHash;
use cxhub_domain::repo::{Lookup, TouchpointRepo};
use cxhub_store::Store;

use super::{create, key, reason, req, root};

fn eur(minor: i64) -> Money {
    Money::new(minor, Currency::parse("EUR").expect("EUR"))
}

/// Customers created by recording one visit each under a source id (no consents).
async fn customers(store: &Store, prefix: &str, n: usize) -> Vec<CustomerId> {
    if store
        .get_touchpoint(&Lookup::Key(key("shop")))
        .await
        .is_err()
    {
        create(store, vec![root("shop")]).await;
    }
    let items = (0..n)
        .map(|i| NewInteraction {
            index: i,
            source: "kiosk".into(),
            interaction_id: format!("{prefix}-v{i}"),
            customer: CustomerRef::Source {
                source: "crm".into(),
                id: format!("{prefix}-c{i}"),
            },
            touchpoint_key: key("shop"),
            occurred_at: Utc::now(),
            channel: None,
            outcome: "VISITED".into(),
            hash: ContentHash::of(format!("{prefix}-v{i}").as_bytes()),
        })
        .collect();
    store
        .record_interactions(items)
        .await
        .expect("visits")
        .into_iter()
        .map(|r| r.expect("recorded").1)
        .collect()
}

fn action(customer: CustomerId, kind: ActionKind) -> NewAction {
    NewAction {
        customer,
        kind,
        rule: None,
        reason: "a test".into(),
        channel: ContactChannel::Phone,
        value: None,
        campaign: None,
        due_at: Utc::now() + Duration::days(2),
        assignee_team: "care".into(),
    }
}

async fn campaign(store: &Store, k: &str, budget: i64) -> CampaignId {
    let new = NewCampaign {
        key: key(k),
        name: k.into(),
        budget: eur(budget),
    };
    store
        .create_campaign(&req(&new), new)
        .await
        .expect("campaign")
        .id
}

pub async fn loyalty_guard_rails_are_decided_in_the_write(store: Store) {
    let ids = customers(&store, "guard", 2).await;
    let guard = GuardConfig {
        caps: vec![FrequencyCap::new(ActionKind::FollowUpCall, 2, Duration::days(1)).expect("cap")],
    };
    // Two calls a day, the third refused with the cap named; marketing needs consent.
    let first = action(ids[0], ActionKind::FollowUpCall);
    let key1 = req(&first);
    let proposed = store
        .propose_action(&key1, first.clone(), &guard)
        .await
        .expect("first");
    assert_eq!(proposed.state, ActionState::Proposed);
    assert_eq!(
        store
            .propose_action(&key1, first.clone(), &guard)
            .await
            .expect("retry"),
        proposed,
        "a retry answers the first result and writes nothing"
    );
    let second = action(ids[0], ActionKind::FollowUpCall);
    store
        .propose_action(&req(&second), second, &guard)
        .await
        .expect("second");
    let third = action(ids[0], ActionKind::FollowUpCall);
    let err = store
        .propose_action(&req(&third), third, &guard)
        .await
        .expect_err("over the cap");
    assert_eq!(reason(&err), "NOT_ELIGIBLE");
    assert!(err.to_string().contains("FREQUENCY_CAP"), "{err}");
    // The cap is per customer.
    let other = action(ids[1], ActionKind::FollowUpCall);
    store
        .propose_action(&req(&other), other, &guard)
        .await
        .expect("another customer");
    let offer = action(ids[1], ActionKind::RetentionOffer);
    let err = store
        .propose_action(&req(&offer), offer, &guard)
        .await
        .expect_err("no consent");
    assert!(err.to_string().contains("CONSENT_MISSING"), "{err}");
    let ghost = action(CustomerId::generate(), ActionKind::Apology);
    let err = store
        .propose_action(&req(&ghost), ghost, &guard)
        .await
        .expect_err("unknown");
    assert!(matches!(err, Error::NotFound { .. }), "{err:?}");

    // Concurrent proposals for one customer never both pass the cap.
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let store = store.clone();
        let guard = guard.clone();
        let a = action(ids[1], ActionKind::FollowUpCall);
        tasks.spawn(async move { store.propose_action(&req(&a), a, &guard).await.is_ok() });
    }
    let mut passed = 0;
    while let Some(ok) = tasks.join_next().await {
        passed += usize::from(ok.expect("task"));
    }
    assert_eq!(passed, 1, "one call was already there; the cap is two");
    let listed = store
        .list_actions(
            &ActionFilter {
                customer: Some(ids[1]),
                kind: Some(ActionKind::FollowUpCall),
                ..Default::default()
            },
            Utc::now(),
            &PageRequest {
                size: 10,
                after: None,
            },
        )
        .await
        .expect("list");
    assert_eq!(listed.items.len(), 2);
}

pub async fn loyalty_concurrent_approvals_never_overspend(store: Store) {
    let ids = customers(&store, "budget", 12).await;
    let promo = campaign(&store, "budget.test", 4_000).await;
    let guard = GuardConfig::default();
    let mut actions = Vec::new();
    for id in &ids {
        let mut a = action(*id, ActionKind::GoodwillCredit);
        a.value = Some(eur(1_000));
        a.campaign = Some(promo);
        actions.push(
            store
                .propose_action(&req(&a), a, &guard)
                .await
                .expect("proposed")
                .id,
        );
    }
    let mut tasks = tokio::task::JoinSet::new();
    for id in actions.clone() {
        let store = store.clone();
        tasks.spawn(async move {
            let key = req(&id.to_string());
            store
                .transition_action(&key, id, ActionState::Approved, None)
                .await
        });
    }
    let mut approved = Vec::new();
    while let Some(result) = tasks.join_next().await {
        match result.expect("task") {
            Ok(a) => approved.push(a),
            Err(err) => assert_eq!(reason(&err), "BUDGET_EXHAUSTED", "{err:?}"),
        }
    }
    assert_eq!(approved.len(), 4);
    let budget = store
        .get_campaign(&Lookup::Id(promo))
        .await
        .expect("campaign")
        .budget;
    assert_eq!((budget.reserved, budget.spent), (eur(4_000), eur(0)));
    // Declining one gives its reservation back; redeeming one spends it.
    let (a, b) = (approved[0].id, approved[1].id);
    for (id, to) in [
        (a, ActionState::Sent),
        (a, ActionState::Declined),
        (b, ActionState::Sent),
        (b, ActionState::Accepted),
        (b, ActionState::Redeemed),
    ] {
        let key = req(&(id.to_string(), to.as_str()));
        store
            .transition_action(&key, id, to, None)
            .await
            .expect("moved");
    }
    let budget = store
        .get_campaign(&Lookup::Id(promo))
        .await
        .expect("campaign")
        .budget;
    assert_eq!((budget.reserved, budget.spent), (eur(2_000), eur(1_000)));
    let history = store.get_action(b).await.expect("action").history;
    assert_eq!(history.len(), 4);
    assert!(history.iter().all(|t| t.principal == "tester"));
}

pub async fn loyalty_ledger_is_idempotent_and_never_negative_under_concurrency(store: Store) {
    let ana = customers(&store, "ledger", 1).await[0];
    let accrue = PointsPosting {
        request_id: "acc-1".into(),
        customer: ana,
        op: PointsOp::Accrue {
            points: 100,
            source_ref: "order-1".into(),
            expires_at: None,
        },
    };
    let first = store.post_points(accrue.clone()).await.expect("accrued");
    assert_eq!(first.balance, 100);
    assert_eq!(
        store.post_points(accrue.clone()).await.expect("retry"),
        first
    );
    let mut other = accrue.clone();
    other.op = PointsOp::Redeem {
        points: 1,
        source_ref: None,
    };
    let err = store.post_points(other).await.expect_err("reused");
    assert_eq!(reason(&err), "REQUEST_ID_REUSED");

    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..25 {
        let store = store.clone();
        tasks.spawn(async move {
            store
                .post_points(PointsPosting {
                    request_id: format!("red-{i}"),
                    customer: ana,
                    op: PointsOp::Redeem {
                        points: 10,
                        source_ref: None,
                    },
                })
                .await
        });
    }
    let mut passed = 0;
    while let Some(result) = tasks.join_next().await {
        match result.expect("task") {
            Ok(posted) => {
                assert!(posted.balance >= 0);
                passed += 1;
            }
            Err(err) => assert_eq!(reason(&err), "INSUFFICIENT_POINTS", "{err:?}"),
        }
    }
    assert_eq!(passed, 10);
    let balance = store.points_balance(ana, 100).await.expect("balance");
    assert_eq!(balance.balance, 0);
    assert_eq!(balance.recent.len(), 11);
    assert_eq!(
        balance.recent.last().map(|e| e.kind),
        Some(EntryKind::Accrual)
    );
    let sum: i64 = balance.recent.iter().map(|e| e.points).sum();
    assert_eq!(sum, 0, "the customer's legs sum to the balance");
}

pub async fn loyalty_erasure_keeps_actions_without_their_reasons(store: Store) {
    use cxhub_domain::privacy::PrivacyRepo;
    let ids = customers(&store, "erase", 1).await;
    let canary = format!("canary-{}", uuid::Uuid::now_v7().simple());
    let mut call = action(ids[0], ActionKind::FollowUpCall);
    call.reason = format!("called about {canary}");
    let proposed = store
        .propose_action(&req(&call), call, &GuardConfig::default())
        .await
        .expect("proposed");
    assert!(!store.locate_text(&canary).await.expect("scan").is_empty());

    let erase = cxhub_domain::idempotency::RequestKey::new(
        "tester",
        "test/Erase",
        "erase-1",
        ids[0].to_string().as_bytes(),
    )
    .expect("valid key");
    cxhub_store::PrivacyStore::new(store.clone(), cxhub_domain::record::SourcePriority::new())
        .erase_customer(&erase, ids[0], "dpo")
        .await
        .expect("erased");
    assert_eq!(
        store.locate_text(&canary).await.expect("scan"),
        Vec::<String>::new(),
        "the reason is gone"
    );
    assert!(
        store
            .locate_text(&proposed.id.to_string())
            .await
            .expect("scan")
            .iter()
            .any(|place| place.starts_with("loyalty_actions.")),
        "the action itself stays"
    );
}
