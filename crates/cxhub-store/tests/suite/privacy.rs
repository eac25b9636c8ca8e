//! Privacy on a fresh store: consents combined with the feeds' and their history, erasure that
//! leaves no trace and suppresses later records, export, and the audit trail.

use chrono::{DateTime, Utc};
use cxhub_domain::Error;
use cxhub_domain::feed::{
    Consent, ConsentChannel, ConsentPurpose, ConsentStatus, ContactFields, Derived,
    FieldIdentifier, IngestItem, IngestResult, Interaction, Transaction, TransactionKind,
};
use cxhub_domain::idempotency::RequestKey;
use cxhub_domain::identifier::{CustomerId, Identifier};
use cxhub_domain::money::{Currency, Money};
use cxhub_domain::page::PageRequest;
use cxhub_domain::privacy::{AuditFilter, AuditLog, ConsentUpdate, PrivacyRepo};
use cxhub_domain::record::{
    ContentHash, IngestOutcome, RecordKey, RecordType, SourcePriority, StoredVersion,
};
use cxhub_domain::repo::{CustomerRepo, IngestContext};
use cxhub_domain::scoring::survey::SurveyRepo;
use cxhub_domain::touchpoint::Channel;
use cxhub_store::{PrivacyStore, Store};

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

fn key(id: &str, payload: &impl serde::Serialize) -> RequestKey {
    let bytes = serde_json::to_vec(payload).expect("serializable");
    RequestKey::new("tester", "test/Privacy", id, &bytes).expect("valid key")
}

fn fresh(payload: &impl serde::Serialize) -> RequestKey {
    key(&uuid::Uuid::now_v7().to_string(), payload)
}

fn consent(
    purpose: ConsentPurpose,
    channel: ConsentChannel,
    status: ConsentStatus,
    t: i64,
) -> Consent {
    Consent {
        purpose,
        channel,
        status,
        given_at: at(t),
    }
}

/// A record of `source` about source customer `customer`, version `t`, payload `payload`.
fn item(
    source: &str,
    record_type: RecordType,
    id: &str,
    customer: &str,
    t: i64,
    payload: &str,
) -> IngestItem {
    IngestItem {
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
        payload: payload.as_bytes().to_vec(),
        derived: Derived::default(),
    }
}

fn contact(source: &str, customer: &str, t: i64, fields: ContactFields) -> IngestItem {
    let mut it = item(
        source,
        RecordType::Contact,
        &format!("{customer}-contact"),
        customer,
        t,
        &format!("{fields:?}"),
    );
    it.derived.contact = Some(fields);
    it
}

fn with(mut it: IngestItem, ids: &[Identifier]) -> IngestItem {
    for id in ids {
        let i = it.identifiers.len();
        it.identifiers.push(FieldIdentifier {
            field: format!("customer.ids[{i}]"),
            identifier: id.clone(),
        });
    }
    it
}

async fn ingest(store: &Store, items: Vec<IngestItem>) -> Vec<IngestResult> {
    let items: Vec<IngestItem> = items
        .into_iter()
        .enumerate()
        .map(|(i, mut it)| {
            it.index = i;
            it
        })
        .collect();
    store.ingest(items, &ctx()).await.expect("ingest")
}

fn privacy(store: &Store) -> PrivacyStore {
    PrivacyStore::new(store.clone(), SourcePriority::new())
}

async fn update(
    p: &PrivacyStore,
    req: &RequestKey,
    customer: CustomerId,
    consents: Vec<Consent>,
) -> cxhub_domain::Result<cxhub_domain::privacy::ConsentsUpdated> {
    p.update_consents(
        req,
        customer,
        ConsentUpdate {
            consents,
            source: "preference-centre".into(),
        },
    )
    .await
}

pub async fn consents_combine_with_feed_contacts_and_keep_their_history(store: Store) {
    use ConsentChannel::{Any, Email};
    use ConsentPurpose::{Marketing, Surveys};
    use ConsentStatus::{Denied, Granted};
    let p = privacy(&store);
    let feed_fields = |status, t| ContactFields {
        given_name: "Ana".into(),
        consents: vec![consent(Marketing, Email, status, t)],
        ..ContactFields::default()
    };
    let c = ingest(
        &store,
        vec![contact("crm", "C1", 10, feed_fields(Granted, 10))],
    )
    .await[0]
        .customer;

    // A newer answer given to the hub wins over the feed's; a new slot is added.
    let answers = vec![
        consent(Marketing, Email, Denied, 20),
        consent(Surveys, Any, Granted, 5),
    ];
    let req = fresh(&answers);
    let done = update(&p, &req, c, answers.clone()).await.expect("update");
    assert_eq!(done.customer, c);
    assert_eq!(
        done.consents,
        vec![
            consent(Marketing, Email, Denied, 20),
            consent(Surveys, Any, Granted, 5)
        ]
    );
    assert_eq!(done.changes[0].previous, Some(Granted));
    assert_eq!(done.changes[1].previous, None);
    assert!(done.changes.iter().all(|ch| ch.effective));
    assert_eq!(done.changes[0].recorded_by, "tester");
    assert_eq!(done.changes[0].source, "preference-centre");
    let view = store.get_customer(c).await.expect("get");
    assert_eq!(view.profile.consents, done.consents);
    // The change log says the consents changed (names only).
    let log = {
        use cxhub_domain::change::ChangeLogRepo;
        store.read_changes(0, 100).await.expect("changes").changes
    };
    let last = log.last().expect("a change");
    assert_eq!(
        (
            last.change.customer,
            last.change.kind.as_str(),
            last.change.fields.clone()
        ),
        (c, "updated", vec!["consent".to_owned()])
    );

    // A retry answers the same and writes nothing; the id with another payload is refused.
    let again = update(&p, &req, c, answers).await.expect("retry");
    assert_eq!(again, done);
    let after_retry = {
        use cxhub_domain::change::ChangeLogRepo;
        store.read_changes(0, 100).await.expect("changes").changes
    };
    assert_eq!(after_retry.len(), log.len(), "a retry logs nothing");
    let other = vec![consent(Marketing, Email, Granted, 21)];
    let reused = update(&p, &key(&req.request_id, &other), c, other)
        .await
        .expect_err("reused id");
    assert_eq!(reason(&reused), "REQUEST_ID_REUSED");

    // A newer feed contact wins over the hub's answer, and an older hub answer changes nothing.
    ingest(
        &store,
        vec![contact("crm", "C1", 30, feed_fields(Granted, 30))],
    )
    .await;
    let view = store.get_customer(c).await.expect("get");
    assert!(
        view.profile
            .consents
            .contains(&consent(Marketing, Email, Granted, 30))
    );
    let late = vec![consent(Marketing, Email, Denied, 25)];
    let done = update(&p, &fresh(&late), c, late).await.expect("update");
    assert!(!done.changes[0].effective);
    assert_eq!(done.changes[0].previous, Some(Granted));
    assert!(
        done.consents
            .contains(&consent(Marketing, Email, Granted, 30))
    );
    // The hub's answers survive the rebuild that the feed's contact caused.
    assert!(done.consents.contains(&consent(Surveys, Any, Granted, 5)));

    // History, newest first, paged without loss or repetition.
    let first = p
        .consent_history(
            c,
            &PageRequest {
                size: 2,
                after: None,
            },
        )
        .await
        .expect("history");
    assert_eq!(first.items.len(), 2);
    let rest = p
        .consent_history(
            c,
            &PageRequest {
                size: 2,
                after: first.next_after.clone(),
            },
        )
        .await
        .expect("history");
    assert_eq!(rest.items.len(), 1);
    assert_eq!(rest.next_after, None);
    let ids: Vec<&str> = first
        .items
        .iter()
        .chain(&rest.items)
        .map(|ch| ch.id.as_str())
        .collect();
    let mut sorted = ids.clone();
    sorted.sort_unstable_by(|a, b| b.cmp(a));
    sorted.dedup();
    assert_eq!(ids, sorted, "newest first, no repeat");
    assert_eq!(first.items[0].given_at, at(25));

    // Unknown customers are not found.
    let nobody = CustomerId::generate();
    let one = vec![consent(Marketing, Email, Granted, 1)];
    let err = update(&p, &fresh(&one), nobody, one)
        .await
        .expect_err("unknown");
    assert!(matches!(err, Error::NotFound { .. }), "{err:?}");
}

pub async fn erasure_leaves_no_trace_and_suppresses_later_records(store: Store) {
    let p = privacy(&store);
    let tag = uuid::Uuid::now_v7().simple().to_string();
    let email = format!("canary-{tag}@mail.pt");
    let phone = format!(
        "+3519{}",
        &tag[tag.len() - 8..].replace(|c: char| !c.is_ascii_digit(), "7")
    );
    let name = format!("Canaryname{}", &tag[..8]);
    let e = Identifier::Email(email.clone());
    let ph = Identifier::Phone(phone.clone());

    // A contact with the canaries, an order, a second source with the same e-mail (a merge).
    let fields = ContactFields {
        given_name: name.clone(),
        family_name: "Silva".into(),
        ..ContactFields::default()
    };
    let mut order = item("crm", RecordType::Order, "C1-order", "C1", 11, &email);
    order.derived.interaction = Some(Interaction {
        touchpoint_key: "commerce.checkout".into(),
        channel: Channel::Web,
        occurred_at: at(11),
        outcome: "ORDER_PLACED".into(),
    });
    order.derived.transaction = Some(Transaction {
        kind: TransactionKind::Order,
        amount: Money::new(1999, Currency::parse("EUR").expect("EUR")),
        occurred_at: at(11),
        status: "placed".into(),
        due_at: None,
    });
    // A support case whose category is a canary too: its state is kept for reads.
    let category = format!("cat-{tag}");
    let mut case = item("crm", RecordType::SupportCase, "C1-case", "C1", 11, "case");
    case.derived.support_case = Some(cxhub_domain::feed::SupportCase {
        opened_at: at(11),
        closed_at: None,
        status: cxhub_domain::feed::CaseStatus::Open,
        priority: cxhub_domain::feed::CasePriority::Low,
        category: category.clone(),
        channel: Channel::Phone,
    });
    let a = ingest(
        &store,
        vec![
            with(
                contact("crm", "C1", 10, fields.clone()),
                &[e.clone(), ph.clone()],
            ),
            order,
            case,
        ],
    )
    .await[0]
        .customer;
    let shop = |t, ids: &[Identifier]| with(contact("shop", "S1", t, fields.clone()), ids);
    let b = ingest(&store, vec![shop(12, &[])]).await[0].customer;
    assert_ne!(a, b);
    let merged = ingest(&store, vec![shop(13, std::slice::from_ref(&e))]).await;
    assert_eq!(merged[0].customer, a);
    assert_eq!(
        merged[0].merged.len(),
        1,
        "the shop customer merged into the CRM one"
    );
    let b = merged[0].merged[0];

    // Undo the merge (a stored answer holding the canaries), then link them again by source id.
    let merge = store.list_merges(a).await.expect("merges")[0].id;
    let split_key = key(&format!("split-{tag}"), &merge.to_string());
    store.split(&split_key, merge, &ctx()).await.expect("split");
    let relink = with(
        item("shop", RecordType::Order, "S1-order", "S1", 13, "order"),
        &[Identifier::SourceId {
            source: "crm".into(),
            id: "C1".into(),
        }],
    );
    let relinked = ingest(&store, vec![relink]).await;
    assert_eq!(relinked[0].merged.len(), 1, "merged again");
    let survivor = relinked[0].customer;
    assert!(survivor == a || survivor == b);

    // A consent update (history + stored answer) and an audit event.
    let answers = vec![consent(
        ConsentPurpose::Marketing,
        ConsentChannel::Email,
        ConsentStatus::Granted,
        14,
    )];
    update(&p, &fresh(&answers), a, answers)
        .await
        .expect("consents");
    store
        .record("auditor", "GetCustomer", &[a])
        .await
        .expect("audit");

    // A survey response about the absorbed customer, its comment a canary too.
    let comment = format!("comment-{tag}");
    super::create(
        &store,
        vec![super::root("shop"), super::under("shop.till", "shop")],
    )
    .await;
    let mut survey = super::scoring::new_survey("shop.after");
    survey.definition.allows_comment = true;
    store
        .create_survey(&super::req(&"survey"), survey)
        .await
        .expect("survey");
    let mut response = super::scoring::answer("r-canary", b, "shop", 2, 3, at(14));
    response.comment = Some(comment.clone());
    let submitted = store
        .submit_responses(vec![response])
        .await
        .expect("submitted");
    assert!(submitted[0].is_ok(), "{submitted:?}");

    for canary in [&email, &phone, &name, &category, &comment] {
        assert!(
            !store.locate_text(canary).await.expect("scan").is_empty(),
            "the canary {canary} is stored before the erasure"
        );
    }
    let rows_before = store.locate_text("commerce.checkout").await.expect("scan");

    // Erase through the absorbed id: the survivor and what it absorbed go.
    let absorbed = if survivor == a { b } else { a };
    let erase_key = fresh(&absorbed.to_string());
    let erasure = p
        .erase_customer(&erase_key, absorbed, "dpo")
        .await
        .expect("erase");
    assert_eq!(erasure.customers[0], survivor);
    assert_eq!(erasure.customers.len(), 2);
    assert!(erasure.identifiers_suppressed >= 4, "{erasure:?}");
    assert!(erasure.records_removed >= 4, "{erasure:?}");
    assert_eq!(erasure.interactions_anonymised, 1);
    assert_eq!(erasure.transactions_anonymised, 1);
    assert!(erasure.request_records_removed >= 2, "{erasure:?}");
    assert!(!erasure.already_erased);
    for canary in [&email, &phone, &name, &category, &comment] {
        assert_eq!(
            store.locate_text(canary).await.expect("scan"),
            Vec::<String>::new(),
            "the canary {canary} is gone from every table"
        );
    }
    // Survey answers stay for score reports, anonymised.
    assert!(
        !store
            .locate_text("r-canary")
            .await
            .expect("scan")
            .is_empty()
    );
    // Interactions stay for aggregates.
    assert_eq!(
        store.locate_text("commerce.checkout").await.expect("scan"),
        rows_before
    );

    // The same request, and a new one, answer the same erasure.
    let retry = p
        .erase_customer(&erase_key, absorbed, "dpo")
        .await
        .expect("retry");
    assert_eq!(retry, erasure);
    let twice = p
        .erase_customer(&fresh(&survivor.to_string()), survivor, "dpo")
        .await
        .expect("erase twice");
    assert!(twice.already_erased);
    assert_eq!(
        cxhub_domain::privacy::Erasure {
            already_erased: false,
            ..twice
        },
        erasure
    );

    // The customer is gone; consents and exports say why.
    assert!(matches!(
        store.get_customer(survivor).await,
        Err(Error::NotFound { .. })
    ));
    let err = p.export_customer(a).await.expect_err("erased");
    assert_eq!(reason(&err), "CUSTOMER_ERASED");
    let one = vec![consent(
        ConsentPurpose::Surveys,
        ConsentChannel::Any,
        ConsentStatus::Granted,
        15,
    )];
    let err = update(&p, &fresh(&one), a, one).await.expect_err("erased");
    assert_eq!(reason(&err), "CUSTOMER_ERASED");

    // Later records carrying an erased identifier are dropped; others are not.
    let needle = format!("later-payload-{tag}");
    assert!(store.locate_text(&needle).await.expect("scan").is_empty());
    let later = ingest(
        &store,
        vec![
            with(
                item("web", RecordType::Contact, "web-later-1", "W9", 20, &needle),
                std::slice::from_ref(&e),
            ),
            item("crm", RecordType::Order, "C1-order-2", "C1", 21, &needle),
            item(
                "web",
                RecordType::Contact,
                "web-later-2",
                "W10",
                22,
                &needle,
            ),
        ],
    )
    .await;
    let outcomes: Vec<IngestOutcome> = later.iter().map(|r| r.outcome).collect();
    assert_eq!(
        outcomes,
        [
            IngestOutcome::Suppressed,
            IngestOutcome::Suppressed,
            IngestOutcome::Created
        ]
    );
    assert_eq!(later[0].customer, survivor);
    assert_eq!(
        store.locate_text(&needle).await.expect("scan"),
        ["feed_records.payload"],
        "only the third record was written"
    );
    assert!(cxhub_store::suppressed_records_total() >= 2);
}

pub async fn exports_hold_everything_and_audit_events_page_by_filter(store: Store) {
    let p = privacy(&store);
    let fields = ContactFields {
        given_name: "Rita".into(),
        ..ContactFields::default()
    };
    let c = ingest(
        &store,
        vec![
            contact("crm", "E1", 10, fields),
            item(
                "crm",
                RecordType::Order,
                "E1-order",
                "E1",
                11,
                "order-bytes",
            ),
        ],
    )
    .await[0]
        .customer;
    let other = CustomerId::generate();
    store
        .record("alice", "GetCustomer", &[c])
        .await
        .expect("audit");
    store
        .record("bob", "GetCustomer", &[c, other])
        .await
        .expect("audit");
    store
        .record("alice", "ExportCustomer", &[other])
        .await
        .expect("audit");

    let export = p.export_customer(c).await.expect("export");
    assert_eq!(export.customer.id, c);
    assert_eq!(export.ids, [c]);
    assert_eq!(export.records.len(), 2);
    assert_eq!(export.records[1].payload, b"order-bytes");
    assert_eq!(export.audit_events.len(), 2);

    let every = all(&store, AuditFilter::default()).await;
    assert_eq!(every.len(), 4);
    assert!(every.windows(2).all(|w| w[0].id > w[1].id), "newest first");
    let about_c = all(
        &store,
        AuditFilter {
            customer: Some(c),
            ..AuditFilter::default()
        },
    )
    .await;
    assert_eq!(about_c.len(), 2);
    let by_alice = all(
        &store,
        AuditFilter {
            principal: Some("alice".into()),
            ..AuditFilter::default()
        },
    )
    .await;
    assert_eq!(
        by_alice.iter().map(|e| e.rpc.as_str()).collect::<Vec<_>>(),
        ["ExportCustomer", "GetCustomer"]
    );
    let future = all(
        &store,
        AuditFilter {
            start: Some(Utc::now() + chrono::Duration::hours(1)),
            ..AuditFilter::default()
        },
    )
    .await;
    assert!(future.is_empty());
}

/// Every audit event matching `filter`, one page of one at a time.
async fn all(store: &Store, filter: AuditFilter) -> Vec<cxhub_domain::privacy::AuditEvent> {
    let mut out = Vec::new();
    let mut after = None;
    loop {
        let page = store
            .list_audit_events(&filter, &PageRequest { size: 1, after })
            .await
            .expect("list");
        out.extend(page.items);
        match page.next_after {
            Some(next) => after = Some(next),
            None => return out,
        }
    }
}
