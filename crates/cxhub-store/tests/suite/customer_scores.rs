//! Customer scores (`CustomerScoreRepo`), on a fresh store: the facts read from the ledger,
//! survey answers and interactions; scores written and read back, following merges; listings
//! with filters and pages that stay stable while scores are written; the fitted models and the
//! incremental position.

use chrono::{DateTime, Duration, SubsecRound, Utc};
use cxhub_domain::Error;
use cxhub_domain::change::ChangeLogRepo;
use cxhub_domain::feed::{
    CasePriority, CaseStatus, ContactFields, FeedRecord, IngestItem, Order, OrderLine, OrderStatus,
    Payment, PaymentStatus, RecordBody, SourceCustomer, SupportCase, TouchpointMap, derive,
};
use cxhub_domain::identifier::{CustomerId, Identifier};
use cxhub_domain::interaction::{CustomerRef, InteractionRepo, NewInteraction};
use cxhub_domain::money::{Currency, Money};
use cxhub_domain::page::PageRequest;
use cxhub_domain::record::{ContentHash, RecordKey, StoredVersion};
use cxhub_domain::repo::{CustomerRepo, IngestContext};
use cxhub_domain::scoring::category::CategoryRule;
use cxhub_domain::scoring::churn::ChurnBand;
use cxhub_domain::scoring::clv::{BgNbd, GammaGamma};
use cxhub_domain::scoring::metrics::CustomerCategory;
use cxhub_domain::scoring::survey::SurveyRepo;
use cxhub_domain::scoring::{
    ClvPart, CustomerFacts, CustomerScoreRepo, CustomerScores, FittedModels, ScoreConfig,
    ScoreFilter, ScoreOrder, ScorePosition, score_customer,
};
use cxhub_domain::touchpoint::Channel;
use cxhub_store::Store;

use super::scoring::{answer, new_survey};
use super::{create, key, req, root, under};

fn eur(minor: i64) -> Money {
    Money::new(minor, Currency::parse("EUR").expect("EUR"))
}

/// A record of `body` about source customer `customer` (with `email`, if any), as the feeds
/// service hands it to the store.
fn item(
    index: usize,
    id: &str,
    customer: &str,
    email: Option<&str>,
    at: DateTime<Utc>,
    body: RecordBody,
) -> IngestItem {
    let record = FeedRecord {
        key: RecordKey {
            source: "erp".into(),
            record_type: body.record_type(),
            record_id: id.into(),
        },
        updated_at: at,
        customer: SourceCustomer {
            source_customer_id: customer.into(),
            emails: Vec::new(),
            phones: Vec::new(),
        },
        body,
    };
    let derived = derive(&record, &TouchpointMap::default());
    IngestItem {
        index,
        version: StoredVersion {
            updated_at: at,
            hash: ContentHash::of(format!("{id}@{at}").as_bytes()),
        },
        anchor: Identifier::SourceId {
            source: "erp".into(),
            id: customer.into(),
        },
        identifiers: email
            .map(|e| {
                vec![cxhub_domain::feed::FieldIdentifier {
                    field: "customer.emails[0]".into(),
                    identifier: Identifier::Email(e.into()),
                }]
            })
            .unwrap_or_default(),
        key: record.key,
        ignored: Vec::new(),
        payload: Vec::new(),
        derived,
    }
}

fn order(at: DateTime<Utc>, minor: i64, status: OrderStatus) -> RecordBody {
    RecordBody::Order(Order {
        ordered_at: at,
        lines: vec![OrderLine {
            sku: "sku".into(),
            quantity: 1,
            unit_price: eur(minor),
        }],
        channel: Channel::Web,
        store_id: String::new(),
        status,
    })
}

fn contact(name: &str) -> RecordBody {
    RecordBody::Contact(ContactFields {
        given_name: name.into(),
        ..ContactFields::default()
    })
}

async fn ingest(store: &Store, items: Vec<IngestItem>) -> Vec<CustomerId> {
    let ctx = IngestContext {
        principal: "tester".into(),
        ..IngestContext::default()
    };
    store
        .ingest(items, &ctx)
        .await
        .expect("ingest")
        .into_iter()
        .map(|r| r.customer)
        .collect()
}

fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}

pub async fn scores_are_computed_from_the_ledger_answers_and_interactions(store: Store) {
    create(&store, vec![root("shop"), under("shop.till", "shop")]).await;
    store
        .create_survey(&req(&"shop.after"), new_survey("shop.after"))
        .await
        .expect("survey");
    let as_of = now();
    let days = |n: i64| as_of - Duration::days(n);
    let ids = ingest(
        &store,
        vec![
            item(
                0,
                "o-1",
                "E1",
                None,
                days(100),
                order(days(100), 10_000, OrderStatus::Placed),
            ),
            item(
                1,
                "o-2",
                "E1",
                None,
                days(70),
                order(days(70), 10_00, OrderStatus::Placed),
            ),
            item(
                2,
                "o-3",
                "E1",
                None,
                days(40),
                order(days(40), 10_00, OrderStatus::Placed),
            ),
            item(
                3,
                "o-4",
                "E1",
                None,
                days(20),
                order(days(20), 99_00, OrderStatus::Cancelled),
            ),
            item(
                4,
                "p-1",
                "E1",
                None,
                days(5),
                RecordBody::Payment(Payment {
                    attempted_at: days(5),
                    amount: eur(10_00),
                    status: PaymentStatus::Failed,
                    failure_reason: "card_declined".into(),
                    invoice_id: String::new(),
                }),
            ),
            item(
                5,
                "case-1",
                "E1",
                None,
                days(300),
                RecordBody::SupportCase(SupportCase {
                    opened_at: days(300),
                    closed_at: None,
                    status: CaseStatus::Open,
                    priority: CasePriority::High,
                    category: "billing".into(),
                    channel: Channel::Phone,
                }),
            ),
        ],
    )
    .await;
    let customer = ids[0];
    assert!(ids.iter().all(|id| *id == customer), "{ids:?}");
    let visit = |i: usize, outcome: &str, at: DateTime<Utc>| NewInteraction {
        index: i,
        source: "shop".into(),
        interaction_id: format!("v{i}"),
        customer: CustomerRef::Source {
            source: "erp".into(),
            id: "E1".into(),
        },
        touchpoint_key: key("shop"),
        occurred_at: at,
        channel: None,
        outcome: outcome.into(),
        hash: ContentHash::of(format!("v{i}").as_bytes()),
    };
    store
        .record_interactions(vec![
            visit(0, "DELIVERED_LATE", days(10)),
            visit(1, "DELIVERED_LATE", days(200)), // outside every window
            visit(2, "VISITED", days(1)),          // not a signal
        ])
        .await
        .expect("interactions");
    let mut old = answer("r-old", customer, "shop", 10, 7, days(400));
    old.index = 0;
    let mut recent = answer("r-new", customer, "shop.till", 3, 2, days(10));
    recent.index = 1;
    store
        .submit_responses(vec![old, recent])
        .await
        .expect("responses");

    let facts = store
        .customer_facts(&[customer, CustomerId::generate()], as_of, 90)
        .await
        .expect("facts");
    assert_eq!(facts.len(), 1, "unknown customers are left out");
    let f = &facts[0];
    let orders: Vec<(DateTime<Utc>, i64)> = f
        .orders
        .iter()
        .map(|o| (o.at, o.amount.amount_minor))
        .collect();
    assert_eq!(
        orders,
        [(days(100), 10_000), (days(70), 10_00), (days(40), 10_00)],
        "placed orders only, oldest first"
    );
    assert_eq!(
        f.latest_nps.map(|a| (a.value, a.answered_at)),
        Some((3, days(10)))
    );
    assert_eq!(f.latest_csat, None);
    let signals: Vec<(&str, DateTime<Utc>)> = f
        .signals
        .iter()
        .map(|s| (s.outcome.as_str(), s.at))
        .collect();
    assert_eq!(
        signals,
        [
            ("CASE_OPENED", days(300)),
            ("DELIVERED_LATE", days(10)),
            ("PAYMENT_FAILED", days(5)),
        ]
    );

    // Worked by hand: detractor (NPS 3, 10 days ago) → negative, rule latest NPS. Churn:
    // −2.0 intercept; last purchase 40 days ago against a usual 30 (median of 30 and 30):
    // ln(40/30); 3 purchase days: −0.25·ln 4; spend 20.00 in the last 90 days (days 70 and
    // 40) against 100.00 in the 90 before (day 100): fall 0.8 → 0.8·0.8;
    // negative +1.0; 1 open case +0.5; 1 failed payment +0.7; 1 late delivery +0.3.
    let scores = score_customer(f, &[], as_of, &ScoreConfig::default());
    assert_eq!(scores.category.category, CustomerCategory::Negative);
    assert_eq!(scores.category.rule, CategoryRule::LatestNps);
    let logit = -2.0 + (40.0f64 / 30.0).ln() - 0.25 * 4f64.ln() + 0.8 * 0.8 + 1.0 + 0.5 + 0.7 + 0.3;
    let p = 1.0 / (1.0 + (-logit).exp());
    assert!((scores.churn.probability - p).abs() < 1e-12, "{scores:?}");
    assert_eq!(scores.churn.band, ChurnBand::High);
    let top: Vec<&str> = scores
        .churn
        .top_reasons(3)
        .map(|c| c.reason.as_str())
        .collect();
    assert_eq!(
        top,
        [
            "negative (detractor: NPS 3 on ".to_owned()
                + &days(10).format("%Y-%m-%d").to_string()
                + ")",
            "1 failed payment in 30 days".to_owned(),
            "spend down 80 % in the last 90 days against the 90 days before".to_owned(),
        ]
    );

    // Written and read back as computed; a second write replaces the first.
    assert_eq!(
        store
            .save_scores(vec![scores.clone()])
            .await
            .expect("saved"),
        1
    );
    assert_eq!(
        store
            .save_scores(vec![scores.clone()])
            .await
            .expect("saved"),
        1
    );
    let (live, read) = store.customer_scores(customer).await.expect("read");
    assert_eq!(live, customer);
    assert_eq!(read, Some(scores));
    let unknown = store
        .customer_scores(CustomerId::generate())
        .await
        .expect_err("unknown");
    assert!(matches!(unknown, Error::NotFound { .. }), "{unknown:?}");
}

/// Scores of `facts` with a CLV of `clv` minor units (or none).
fn scored(facts: CustomerFacts, as_of: DateTime<Utc>, clv: Option<i64>) -> CustomerScores {
    let mut s = score_customer(&facts, &[], as_of, &ScoreConfig::default());
    s.clv = clv.map(|value_minor| ClvPart {
        currency: Currency::parse("EUR").expect("EUR"),
        horizon_weeks: 52.0,
        annual_discount_rate: 0.1,
        fit_version: 1,
        summary: cxhub_domain::scoring::clv::CustomerSummary {
            frequency: 1.0,
            recency: 1.0,
            age: 2.0,
            monetary: 10.0,
        },
        p_alive: 0.5,
        expected_purchases: 1.0,
        expected_spend_minor: 10,
        value_minor,
    });
    s
}

fn facts_of(customer: CustomerId, failed_payments: usize, as_of: DateTime<Utc>) -> CustomerFacts {
    CustomerFacts {
        customer,
        orders: Vec::new(),
        latest_nps: None,
        latest_csat: None,
        latest_comment: None,
        signals: (0..failed_payments)
            .map(|i| cxhub_domain::scoring::Signal {
                outcome: "PAYMENT_FAILED".into(),
                at: as_of - Duration::days(i as i64 + 1),
            })
            .collect(),
    }
}

async fn list_all(
    store: &Store,
    filter: &ScoreFilter,
    order: ScoreOrder,
    size: u32,
    between_pages: &mut (dyn FnMut(usize) -> Option<CustomerScores> + Send),
) -> Vec<CustomerId> {
    let mut seen = Vec::new();
    let mut after = None;
    for page_no in 0.. {
        let page = store
            .list_scores(filter, order, &PageRequest { size, after })
            .await
            .expect("page");
        seen.extend(page.items.iter().map(|s| s.customer));
        if let Some(extra) = between_pages(page_no) {
            store
                .save_scores(vec![extra])
                .await
                .expect("written between pages");
        }
        match page.next_after {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    seen
}

pub async fn score_listings_filter_order_and_page_stably_and_follow_merges(store: Store) {
    let as_of = now();
    let items: Vec<IngestItem> = (0..9)
        .map(|i| {
            item(
                i,
                &format!("c-{i}"),
                &format!("C{i}"),
                Some(&format!("c{i}@mail.pt")),
                as_of,
                contact(&format!("Name{i}")),
            )
        })
        .collect();
    let ids = ingest(&store, items).await;
    // Customer i has i % 4 failed payments (0–3) and a CLV of 100·i (none for i = 0).
    let scores: Vec<CustomerScores> = ids[..8]
        .iter()
        .enumerate()
        .map(|(i, id)| {
            scored(
                facts_of(*id, i % 4, as_of),
                as_of,
                (i > 0).then_some(100 * i as i64),
            )
        })
        .collect();
    assert_eq!(store.save_scores(scores.clone()).await.expect("saved"), 8);

    // Highest churn first, ties by id; a customer scored between pages, at a probability
    // already passed, is not listed and nothing repeats or goes missing.
    let mut expected: Vec<(f64, CustomerId)> = scores
        .iter()
        .map(|s| (s.churn.probability, s.customer))
        .collect();
    expected.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    let late = scored(facts_of(ids[8], 3, as_of), as_of, None);
    let mut extra = Some(late);
    let seen = list_all(
        &store,
        &ScoreFilter::default(),
        ScoreOrder::ChurnDesc,
        3,
        &mut |page| if page == 1 { extra.take() } else { None },
    )
    .await;
    let want: Vec<CustomerId> = expected.iter().map(|(_, id)| *id).collect();
    assert_eq!(seen, want);

    // Filters: a band, and a minimum CLV (ordered by CLV, customers without one left out).
    let high = list_all(
        &store,
        &ScoreFilter {
            churn_band: Some(ChurnBand::High),
            ..ScoreFilter::default()
        },
        ScoreOrder::ChurnDesc,
        2,
        &mut |_| None,
    )
    .await;
    // 3 failed payments: −2.0 + 0.5 (no purchase) + 2.1 → p = 0.646: high; 2: 0.475 medium.
    let mut want_high = vec![ids[3], ids[7], ids[8]];
    want_high.sort();
    assert_eq!(high, want_high);
    let by_clv = list_all(
        &store,
        &ScoreFilter {
            min_clv: Some(eur(300)),
            ..ScoreFilter::default()
        },
        ScoreOrder::ClvDesc,
        2,
        &mut |_| None,
    )
    .await;
    assert_eq!(by_clv, [ids[7], ids[6], ids[5], ids[4], ids[3]]);
    let negative = list_all(
        &store,
        &ScoreFilter {
            category: Some(CustomerCategory::Negative),
            ..ScoreFilter::default()
        },
        ScoreOrder::ChurnDesc,
        10,
        &mut |_| None,
    )
    .await;
    assert!(
        negative.is_empty(),
        "nobody has a signal of a negative category"
    );

    // A forged position is refused as a bad page token.
    let bad = store
        .list_scores(
            &ScoreFilter::default(),
            ScoreOrder::ChurnDesc,
            &PageRequest {
                size: 2,
                after: Some("zz|nope".into()),
            },
        )
        .await
        .expect_err("forged");
    assert!(
        matches!(&bad, Error::InvalidArgument { violations, .. } if violations[0].field == "page_token"),
        "{bad:?}"
    );

    // A record sharing customer 1's e-mail links customers 1 and 2: the absorbed one answers
    // the survivor's scores and is no longer listed.
    let linked = ingest(
        &store,
        vec![{
            let mut it = item(0, "link", "C2", Some("c1@mail.pt"), as_of, contact("Name2"));
            it.version.updated_at = as_of + Duration::seconds(1);
            it
        }],
    )
    .await;
    let survivor = linked[0];
    let absorbed = if survivor == ids[1] { ids[2] } else { ids[1] };
    assert!(
        survivor == ids[1] || survivor == ids[2],
        "{linked:?} {ids:?}"
    );
    let (live, read) = store.customer_scores(absorbed).await.expect("absorbed");
    assert_eq!(live, survivor);
    assert_eq!(read.map(|s| s.customer), Some(survivor));
    let all = list_all(
        &store,
        &ScoreFilter::default(),
        ScoreOrder::ChurnDesc,
        100,
        &mut |_| None,
    )
    .await;
    assert_eq!(all.len(), 8);
    assert!(!all.contains(&absorbed));
    // Writing scores for a merged-away customer keeps none, and logs no change of it.
    let head = store.read_changes(0, 0).await.expect("log").head;
    let stale = scored(facts_of(absorbed, 0, as_of), as_of, None);
    assert_eq!(store.save_scores(vec![stale]).await.expect("saved"), 0);
    assert_eq!(store.read_changes(0, 0).await.expect("log").head, head);

    // Deleting by id and by age.
    assert_eq!(store.delete_scores(&[ids[0]]).await.expect("deleted"), 1);
    assert_eq!(store.customer_scores(ids[0]).await.expect("read").1, None);
    assert_eq!(
        store
            .delete_scores_before(as_of - Duration::seconds(1))
            .await
            .expect("none older"),
        0
    );
    assert_eq!(
        store
            .delete_scores_before(now() + Duration::seconds(1))
            .await
            .expect("all older"),
        7,
        "nine scored, the absorbed customer's and customer 0's deleted"
    );
}

pub async fn fitted_models_and_the_incremental_position_are_kept(store: Store) {
    assert_eq!(store.score_position().await.expect("position"), None);
    assert!(store.fitted_models().await.expect("models").is_empty());
    let at = now();
    let models = vec![FittedModels {
        currency: Currency::parse("EUR").expect("EUR"),
        version: 3,
        fitted_at: at,
        customers: 2357,
        repeat_customers: 946,
        bg_nbd: Some(BgNbd {
            r: 0.243,
            alpha: 4.414,
            a: 0.793,
            b: 2.426,
        }),
        gamma_gamma: Some(GammaGamma {
            p: 6.25,
            q: 3.74,
            gamma: 15.44,
        }),
        rfm: None,
        notes: vec!["RFM: none".into()],
    }];
    let position = ScorePosition {
        change_seq: 7,
        responses_through: at,
    };
    store
        .save_models(&models, position)
        .await
        .expect("models saved");
    assert_eq!(store.fitted_models().await.expect("models"), models);
    assert_eq!(
        store.score_position().await.expect("position"),
        Some(position)
    );
    // The position never moves back; a later one is kept.
    store
        .save_score_position(ScorePosition {
            change_seq: 5,
            responses_through: at + Duration::seconds(5),
        })
        .await
        .expect("older position");
    assert_eq!(
        store.score_position().await.expect("position"),
        Some(position)
    );
    let later = ScorePosition {
        change_seq: 9,
        responses_through: at + Duration::seconds(5),
    };
    store.save_score_position(later).await.expect("later");
    assert_eq!(store.score_position().await.expect("position"), Some(later));
    // A new fit replaces every currency's models.
    store
        .save_models(&[], position)
        .await
        .expect("models replaced");
    assert!(store.fitted_models().await.expect("models").is_empty());

    // Customers who answered a survey in a window of receive times.
    create(&store, vec![root("shop"), under("shop.till", "shop")]).await;
    store
        .create_survey(&req(&"shop.after"), new_survey("shop.after"))
        .await
        .expect("survey");
    let ids = ingest(&store, vec![item(0, "c-0", "C0", None, at, contact("Zed"))]).await;
    let before = now();
    store
        .submit_responses(vec![answer("r-1", ids[0], "shop", 9, 7, at)])
        .await
        .expect("response");
    let after = now() + Duration::seconds(1);
    assert_eq!(
        store
            .responding_customers(before - Duration::seconds(1), after)
            .await
            .expect("responding"),
        [ids[0]]
    );
    assert!(
        store
            .responding_customers(after, after + Duration::seconds(1))
            .await
            .expect("none")
            .is_empty()
    );
    assert_eq!(
        store.live_customers(None, 10).await.expect("live"),
        [ids[0]]
    );
}

/// Whether `customer`'s id is in `customer_scores`, looked at behind the repository (whose
/// reads hide scores of merged and erased customers anyway).
async fn has_score_row(store: &Store, customer: CustomerId) -> bool {
    store
        .locate_text(&customer.to_string())
        .await
        .expect("scan")
        .iter()
        .any(|place| place.starts_with("customer_scores."))
}

pub async fn scores_of_absorbed_and_erased_customers_are_deleted(store: Store) {
    let as_of = now();
    let ids = ingest(
        &store,
        vec![
            item(0, "a", "A", Some("a@mail.pt"), as_of, contact("Ana")),
            item(1, "b", "B", Some("b@mail.pt"), as_of, contact("Bea")),
        ],
    )
    .await;
    let scores: Vec<CustomerScores> = ids
        .iter()
        .map(|id| scored(facts_of(*id, 1, as_of), as_of, Some(500)))
        .collect();
    assert_eq!(store.save_scores(scores.clone()).await.expect("saved"), 2);
    assert!(has_score_row(&store, ids[0]).await && has_score_row(&store, ids[1]).await);

    // B's source now also names A's e-mail: one of them absorbs the other, whose row goes.
    let linked = ingest(
        &store,
        vec![{
            let mut it = item(0, "b", "B", Some("a@mail.pt"), as_of, contact("Bea"));
            it.version.updated_at = as_of + Duration::seconds(1);
            it
        }],
    )
    .await;
    let survivor = linked[0];
    let absorbed = if survivor == ids[0] { ids[1] } else { ids[0] };
    assert!(ids.contains(&survivor), "{linked:?} {ids:?}");
    assert!(!has_score_row(&store, absorbed).await, "absorbed: deleted");
    assert!(has_score_row(&store, survivor).await, "survivor: kept");

    // Erasing the survivor deletes its scores too.
    let payload = survivor.to_string();
    let bytes = payload.as_bytes();
    let erase = cxhub_domain::idempotency::RequestKey::new("tester", "test/Erase", "e1", bytes)
        .expect("valid key");
    cxhub_domain::privacy::PrivacyRepo::erase_customer(
        &cxhub_store::PrivacyStore::new(store.clone(), cxhub_domain::record::SourcePriority::new()),
        &erase,
        survivor,
        "dpo",
    )
    .await
    .expect("erased");
    assert!(!has_score_row(&store, survivor).await, "erased: deleted");
}

/// The rescored entries of the change log after `after`: (customer, fields), and the last
/// position read.
async fn rescored_after(store: &Store, after: i64) -> (Vec<(CustomerId, Vec<String>)>, i64) {
    use cxhub_domain::change::{ChangeKind, ChangeLogRepo};
    let slice = store.read_changes(after, 1_000).await.expect("read log");
    let entries = slice
        .changes
        .iter()
        .filter(|c| c.change.kind == ChangeKind::Rescored)
        .map(|c| (c.change.customer, c.change.fields.clone()))
        .collect();
    (entries, slice.head.max(after))
}

pub async fn new_categories_and_churn_bands_are_change_log_entries(store: Store) {
    use cxhub_domain::change::ChangeLogRepo;
    let as_of = now();
    let ids = ingest(
        &store,
        vec![
            item(0, "a", "A", Some("a@mail.pt"), as_of, contact("Ana")),
            item(1, "b", "B", Some("b@mail.pt"), as_of, contact("Bea")),
        ],
    )
    .await;
    let start = store.read_changes(0, 0).await.expect("head").head;
    let both = ["category".to_owned(), "churn_band".to_owned()];

    // Scored for the first time: both customers, both fields.
    let calm: Vec<CustomerScores> = ids
        .iter()
        .map(|id| scored(facts_of(*id, 0, as_of), as_of, None))
        .collect();
    store.save_scores(calm.clone()).await.expect("saved");
    let (mut first, seen) = rescored_after(&store, start).await;
    first.sort();
    let mut want: Vec<(CustomerId, Vec<String>)> =
        ids.iter().map(|id| (*id, both.to_vec())).collect();
    want.sort();
    assert_eq!(first, want);

    // The same scores again (a later as-of): no entry.
    let later = as_of + Duration::minutes(1);
    let again: Vec<CustomerScores> = ids
        .iter()
        .map(|id| scored(facts_of(*id, 0, later), later, Some(700)))
        .collect();
    store.save_scores(again.clone()).await.expect("saved");
    let (none, seen) = rescored_after(&store, seen).await;
    assert_eq!(none, []);

    // Three failed payments move Ana to the high band, her category stays.
    let risky = scored(facts_of(ids[0], 3, later), later, None);
    assert_eq!(risky.category.category, calm[0].category.category);
    assert_ne!(risky.churn.band, calm[0].churn.band);
    store.save_scores(vec![risky]).await.expect("saved");
    let (band, _) = rescored_after(&store, seen).await;
    assert_eq!(band, [(ids[0], vec!["churn_band".to_owned()])]);
}
