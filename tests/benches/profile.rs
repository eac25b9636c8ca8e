//! The profile-reads benchmark (issue 4, "Performance"). Seeds customers straight through the
//! store (`CustomerRepo::ingest`, big batches, no gRPC), starts the hub on that store and
//! measures the customer-profile reads with a real tonic client, printing in the same run, on
//! the same server, the rate of the empty RPC (`grpc.health.v1.Health/Check`) as the baseline.
//!
//! ```text
//! cargo bench -p cxhub-tests --bench profile                    # SQLite
//! CXHUB_BENCH_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/cxhub_profbench \
//!   cargo bench -p cxhub-tests --bench profile                  # SQLite, then PostgreSQL
//! CXHUB_BENCH_ONLY=sqlite|postgres …                            # one backend only
//! CXHUB_BENCH_CUSTOMERS=100000 …                                # customers with history
//! CXHUB_BENCH_SEARCH_CUSTOMERS=1000000 …                        # customers in total for search
//! CXHUB_BENCH_SECONDS=8 …                                       # seconds per measurement
//! CXHUB_BENCH_READERS=2 …                                       # the store's read connections
//! ```
//!
//! Seeded per customer with history: one CRM contact (a Portuguese given name and one or two
//! family names, an e-mail, a mobile phone), 4 ERP orders, 3 billing invoices and 3 payments
//! (each an interaction and a ledger entry), 4 shipments, 3 support cases and 3 activities: 21
//! records, 20 interactions, 10 transactions. The ERP and billing records carry the contact's
//! e-mail under their own source customer ids, so identity resolution links them. For search
//! the store then grows to `CXHUB_BENCH_SEARCH_CUSTOMERS` with contacts only.
//!
//! Figures printed, per backend (each measured for `CXHUB_BENCH_SECONDS` after a 1 s warm-up):
//! - seeding: time and records/s (not a target);
//! - the background catch-up after seeding, run to the end before any read is measured (the
//!   points accrual over the seeded payments, the loyalty rule follower over the change log):
//!   time and events/s (not a target);
//! - empty RPC at 16 calls in flight: calls/s, p50, p99 (the baseline);
//! - GetCustomer360 at 16 in flight (random customers): calls/s ÷ empty (target ≥ 0.3), p99
//!   (target ≤ 3 ms);
//! - GetCustomer and LookupCustomer (by e-mail) at 16 in flight: calls/s ÷ empty (target ≥ 0.5);
//! - SearchCustomers by a 2–4 letter name prefix, page size 20, at 1 and 16 in flight: p50,
//!   p99 (target p99 ≤ 10 ms).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::too_many_arguments,
    missing_docs
)]

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use cxhub_domain::feed::{
    Activity, ActivityKind, CasePriority, CaseStatus, ContactFields, Direction, FeedRecord,
    FieldIdentifier, IngestItem, Invoice, InvoiceStatus, LifecycleStage, Order, OrderLine,
    OrderStatus, Payment, PaymentStatus, RecordBody, Shipment, ShipmentStatus, SourceCustomer,
    SupportCase, TouchpointMap, derive,
};
use cxhub_domain::identifier::{normalise_email, normalise_phone, normalise_source_id};
use cxhub_domain::loyalty::repo::{GuardConfig, LoyaltyRepo};
use cxhub_domain::money::{Currency, Money};
use cxhub_domain::record::{ContentHash, RecordKey, StoredVersion};
use cxhub_domain::repo::{CustomerRepo, IngestContext};
use cxhub_domain::touchpoint::Channel;
use cxhub_proto::profile::v1 as pb;
use cxhub_proto::profile::v1::customer_profile_service_client::CustomerProfileServiceClient;
use cxhub_store::{Store, StoreOptions};
use tonic::transport::Channel as GrpcChannel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

mod support;
use support::{Hub, serve_store};

/// Records per `ingest` call while seeding.
const BATCH: usize = 5_000;
/// Calls in flight for the concurrent measurements.
const IN_FLIGHT: usize = 16;
/// Transaction events per points-accrual pass, and changes per rule-follower pass, in the
/// catch-up before the reads (the hub's own tasks take 500 too).
const ACCRUAL_BATCH: u32 = 500;
/// Records per customer with history.
const RECORDS_PER_CUSTOMER: usize = 21;

// ------------------------------------------------------------------------------------------------
// Data

const GIVEN: &[&str] = &[
    "Maria",
    "Ana",
    "João",
    "José",
    "Francisco",
    "Manuel",
    "António",
    "Beatriz",
    "Carolina",
    "Inês",
    "Mariana",
    "Matilde",
    "Leonor",
    "Sofia",
    "Rita",
    "Catarina",
    "Joana",
    "Teresa",
    "Isabel",
    "Helena",
    "Margarida",
    "Luísa",
    "Filipa",
    "Madalena",
    "Clara",
    "Diana",
    "Eduarda",
    "Gabriela",
    "Lara",
    "Marta",
    "Patrícia",
    "Raquel",
    "Sara",
    "Vera",
    "Pedro",
    "Paulo",
    "Rui",
    "Tiago",
    "Tomás",
    "Duarte",
    "Gonçalo",
    "Rodrigo",
    "Afonso",
    "Martim",
    "Santiago",
    "Miguel",
    "Diogo",
    "Bernardo",
    "Henrique",
    "Guilherme",
    "Ricardo",
    "Nuno",
    "Luís",
    "Carlos",
    "Jorge",
    "Fernando",
    "Alexandre",
    "Vasco",
    "Bruno",
    "Hugo",
    "Sérgio",
    "Vítor",
    "Daniel",
    "David",
    "Samuel",
    "Lourenço",
    "Simão",
    "Salvador",
    "Frederico",
    "Cristina",
    "Sandra",
    "Susana",
    "Fátima",
    "Graça",
    "Olga",
    "Lúcia",
    "Alice",
    "Benedita",
    "Camila",
    "Emma",
    "Yara",
    "Ursula",
    "Quirino",
    "Xavier",
    "Zacarias",
    "Wagner",
    "Kevin",
    "Ivo",
    "Óscar",
    "Édson",
];

const FAMILY: &[&str] = &[
    "Silva",
    "Santos",
    "Ferreira",
    "Pereira",
    "Oliveira",
    "Costa",
    "Rodrigues",
    "Martins",
    "Jesus",
    "Sousa",
    "Fernandes",
    "Gonçalves",
    "Gomes",
    "Lopes",
    "Marques",
    "Alves",
    "Almeida",
    "Ribeiro",
    "Pinto",
    "Carvalho",
    "Teixeira",
    "Moreira",
    "Correia",
    "Mendes",
    "Nunes",
    "Soares",
    "Vieira",
    "Monteiro",
    "Cardoso",
    "Rocha",
    "Raposo",
    "Neves",
    "Coelho",
    "Cruz",
    "Cunha",
    "Pires",
    "Ramos",
    "Reis",
    "Simões",
    "Antunes",
    "Matos",
    "Fonseca",
    "Machado",
    "Araújo",
    "Barbosa",
    "Tavares",
    "Lourenço",
    "Castro",
    "Figueiredo",
    "Azevedo",
    "Freitas",
    "Baptista",
    "Magalhães",
    "Brito",
    "Guerreiro",
    "Henriques",
    "Lima",
    "Miranda",
    "Amaral",
    "Valente",
    "Esteves",
    "Batista",
    "Nogueira",
    "Sequeira",
    "Quintela",
    "Xavier",
    "Zêzere",
    "Ulisses",
    "Dinis",
    "Vaz",
    "Leite",
    "Abreu",
    "Faria",
    "Campos",
    "Pacheco",
    "Macedo",
    "Paiva",
    "Domingues",
    "Branco",
    "Sá",
    "Ventura",
    "Morais",
    "Bastos",
    "Loureiro",
    "Barros",
    "Andrade",
    "Serrano",
    "Calado",
    "Quaresma",
    "Espírito Santo",
    "Garcia",
    "Torres",
    "Jardim",
    "Horta",
    "Ogando",
    "Kuznetsov",
    "Wang",
    "Yilmaz",
];

const DOMAINS: &[&str] = &[
    "mail.pt",
    "sapo.pt",
    "gmail.com",
    "outlook.pt",
    "hotmail.com",
    "iol.pt",
    "netcabo.pt",
    "clix.pt",
    "live.com.pt",
    "yahoo.com",
];

/// A well-mixed 64-bit hash (splitmix64).
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

fn pick<'a>(list: &[&'a str], seed: u64) -> &'a str {
    list[(seed % list.len() as u64) as usize]
}

/// The name as ASCII lowercase without spaces, for an e-mail address.
fn ascii(name: &str) -> String {
    name.chars()
        .filter_map(|c| {
            let c = match c {
                'á' | 'à' | 'â' | 'ã' | 'Á' => 'a',
                'é' | 'ê' | 'É' => 'e',
                'í' | 'Í' => 'i',
                'ó' | 'ô' | 'õ' | 'Ó' => 'o',
                'ú' | 'Ú' => 'u',
                'ç' => 'c',
                ' ' => return None,
                c => c,
            };
            Some(c.to_ascii_lowercase())
        })
        .collect()
}

struct Person {
    given: &'static str,
    family: String,
    email: String,
    phone: String,
}

fn person(n: u64) -> Person {
    let h = mix(n);
    let given = pick(GIVEN, h);
    let first = pick(FAMILY, h >> 16);
    // Two family names for about half of them, as is common in Portugal.
    let family = if (h >> 40).is_multiple_of(2) {
        format!("{first} {}", pick(FAMILY, h >> 24))
    } else {
        first.to_owned()
    };
    let last = family.rsplit(' ').next().unwrap_or(&family);
    let email = format!(
        "{}.{}{}@{}",
        ascii(given),
        ascii(last),
        n,
        pick(DOMAINS, h >> 48)
    );
    // Portuguese mobiles: 9[1236] then 7 digits; n ↦ (n × 7919 + c) mod 10⁷ is one-to-one.
    let phone = format!(
        "+351 9{} {:07}",
        [1, 2, 3, 6][(n % 4) as usize],
        (n * 7919 + 1_234_567) % 10_000_000
    );
    Person {
        given,
        family,
        email,
        phone,
    }
}

fn at(seconds: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(1_700_000_000 + seconds, 0).expect("valid time")
}

struct Builder {
    map: TouchpointMap,
    eur: Currency,
}

impl Builder {
    fn item(
        &self,
        source: &str,
        record_id: String,
        source_customer_id: String,
        p: &Person,
        with_phone: bool,
        updated_at: DateTime<Utc>,
        body: RecordBody,
    ) -> IngestItem {
        let customer = SourceCustomer {
            source_customer_id,
            emails: vec![p.email.clone()],
            phones: if with_phone {
                vec![p.phone.clone()]
            } else {
                vec![]
            },
        };
        let anchor = normalise_source_id(source, &customer.source_customer_id).expect("source id");
        let mut identifiers = vec![FieldIdentifier {
            field: "customer.emails[0]".into(),
            identifier: normalise_email(&p.email).expect("e-mail"),
        }];
        if with_phone {
            identifiers.push(FieldIdentifier {
                field: "customer.phones[0]".into(),
                identifier: normalise_phone(&p.phone, "PT").expect("phone"),
            });
        }
        let record = FeedRecord {
            key: RecordKey {
                source: source.into(),
                record_type: body.record_type(),
                record_id,
            },
            updated_at,
            customer,
            body,
        };
        let payload =
            serde_json::to_vec(&(&record.key, &record.customer, &record.body)).expect("payload");
        let derived = derive(&record, &self.map);
        IngestItem {
            index: 0,
            version: StoredVersion {
                updated_at,
                hash: ContentHash::of(&payload),
            },
            key: record.key,
            anchor,
            identifiers,
            ignored: Vec::new(),
            payload,
            derived,
        }
    }

    fn contact(&self, n: u64, p: &Person) -> IngestItem {
        self.item(
            "crm",
            format!("contact-{n}"),
            format!("C{n}"),
            p,
            true,
            at(0),
            RecordBody::Contact(ContactFields {
                given_name: p.given.to_owned(),
                family_name: p.family.clone(),
                preferred_language: "pt-PT".into(),
                lifecycle_stage: Some(LifecycleStage::Customer),
                account_id: format!("ACC{n:08}"),
                ..ContactFields::default()
            }),
        )
    }

    fn money(&self, h: u64) -> Money {
        Money::new(500 + (h % 50_000) as i64, self.eur)
    }

    /// The 21 records of customer `n` with history, contact first.
    fn customer(&self, n: u64, out: &mut Vec<IngestItem>) {
        let p = person(n);
        out.push(self.contact(n, &p));
        let day = 86_400;
        let base = (mix(n ^ 0xABCD) % 300) as i64 * day;
        let t = |k: i64| at(base + k * 7 * day + (n % 86_400) as i64);
        for k in 0..4 {
            let h = mix(n * 100 + k as u64);
            let lines = (0..1 + h % 3)
                .map(|l| OrderLine {
                    sku: format!("SKU-{:05}", (h >> (l * 8)) % 20_000),
                    quantity: 1 + ((h >> 20) % 3) as u32,
                    unit_price: self.money(h >> (l * 5)),
                })
                .collect();
            out.push(self.item(
                "erp",
                format!("order-{n}-{k}"),
                format!("E{n}"),
                &p,
                false,
                t(k),
                RecordBody::Order(Order {
                    ordered_at: t(k),
                    lines,
                    channel: if h.is_multiple_of(3) {
                        Channel::Store
                    } else {
                        Channel::Web
                    },
                    store_id: if h.is_multiple_of(3) {
                        format!("LJ{:03}", h % 120)
                    } else {
                        String::new()
                    },
                    status: OrderStatus::Placed,
                }),
            ));
            let shipped = t(k) + chrono::Duration::days(1);
            let delivered = shipped + chrono::Duration::days(1 + (h % 4) as i64);
            out.push(self.item(
                "erp",
                format!("shipment-{n}-{k}"),
                format!("E{n}"),
                &p,
                false,
                delivered,
                RecordBody::Shipment(Shipment {
                    order_id: format!("order-{n}-{k}"),
                    shipped_at: shipped,
                    promised_at: Some(shipped + chrono::Duration::days(3)),
                    delivered_at: Some(delivered),
                    status: ShipmentStatus::Delivered,
                }),
            ));
        }
        for k in 0..3 {
            let h = mix(n * 100 + 10 + k as u64);
            let issued = t(k + 5);
            let amount = self.money(h);
            out.push(self.item(
                "billing",
                format!("invoice-{n}-{k}"),
                format!("B{n}"),
                &p,
                false,
                issued,
                RecordBody::Invoice(Invoice {
                    issued_at: issued,
                    due_at: issued + chrono::Duration::days(30),
                    amount,
                    status: InvoiceStatus::Paid,
                }),
            ));
            let paid = issued + chrono::Duration::days(2 + (h % 20) as i64);
            out.push(self.item(
                "billing",
                format!("payment-{n}-{k}"),
                format!("B{n}"),
                &p,
                false,
                paid,
                RecordBody::Payment(Payment {
                    attempted_at: paid,
                    amount,
                    status: PaymentStatus::Succeeded,
                    failure_reason: String::new(),
                    invoice_id: format!("invoice-{n}-{k}"),
                }),
            ));
        }
        for k in 0..3 {
            let h = mix(n * 100 + 20 + k as u64);
            let opened = t(k + 2) + chrono::Duration::hours(5);
            // The last case of one customer in four is still open.
            let open = k == 2 && n.is_multiple_of(4);
            let closed = opened + chrono::Duration::hours(2 + (h % 70) as i64);
            out.push(self.item(
                "crm",
                format!("case-{n}-{k}"),
                format!("C{n}"),
                &p,
                false,
                if open { opened } else { closed },
                RecordBody::SupportCase(SupportCase {
                    opened_at: opened,
                    closed_at: (!open).then_some(closed),
                    status: if open {
                        CaseStatus::Open
                    } else {
                        CaseStatus::Resolved
                    },
                    priority: [CasePriority::Low, CasePriority::Normal, CasePriority::High]
                        [(h % 3) as usize],
                    category:
                        pick(&["billing", "delivery", "product", "account"], h >> 8).to_owned(),
                    channel: [Channel::Phone, Channel::Email, Channel::Web][(h % 3) as usize],
                }),
            ));
            let when = t(k + 3) + chrono::Duration::hours(3);
            out.push(self.item(
                "crm",
                format!("activity-{n}-{k}"),
                format!("C{n}"),
                &p,
                false,
                when,
                RecordBody::Activity(Activity {
                    kind: [
                        ActivityKind::Call,
                        ActivityKind::Email,
                        ActivityKind::Meeting,
                    ][(h % 3) as usize],
                    direction: if h.is_multiple_of(2) {
                        Direction::Inbound
                    } else {
                        Direction::Outbound
                    },
                    occurred_at: when,
                    subject: "Acompanhamento".into(),
                }),
            ));
        }
    }
}

/// Seeds customers `from..to`, with history or contacts only, in batches of about [`BATCH`]
/// records (a customer's records never straddle two batches). Returns the customer id of each
/// seeded customer, in order, and the number of records.
async fn seed(
    store: &Store,
    builder: &Builder,
    from: u64,
    to: u64,
    history: bool,
) -> (Vec<String>, usize) {
    let ctx = IngestContext {
        principal: "bench".into(),
        ..IngestContext::default()
    };
    let per = if history { RECORDS_PER_CUSTOMER } else { 1 };
    let chunk = (BATCH / per).max(1) as u64;
    let mut ids = Vec::with_capacity((to - from) as usize);
    let mut records = 0;
    let mut start = from;
    while start < to {
        let end = (start + chunk).min(to);
        let mut items = Vec::with_capacity((end - start) as usize * per);
        let mut contacts = Vec::with_capacity((end - start) as usize);
        for n in start..end {
            contacts.push(items.len());
            if history {
                builder.customer(n, &mut items);
            } else {
                items.push(builder.contact(n, &person(n)));
            }
        }
        for (i, item) in items.iter_mut().enumerate() {
            item.index = i;
        }
        records += items.len();
        let results = store.ingest(items, &ctx).await.expect("ingest");
        ids.extend(contacts.iter().map(|&i| results[i].customer.to_string()));
        start = end;
    }
    (ids, records)
}

/// Runs the work a hub's background tasks do after a bulk load, to the end, before any read is
/// measured: the points accrual over every ingested transaction event and the loyalty rule
/// follower over every change (what [`serve_store`]'s hub would otherwise do while the reads
/// run, each of its commits making every SQLite reader drop its page cache). Prints how long
/// each took.
async fn catch_up(store: &Store) {
    drain("points accrual", "transaction events", || async {
        store
            .accrue_points(ACCRUAL_BATCH)
            .await
            .expect("accrual")
            .read
    })
    .await;
    let guard = GuardConfig::default();
    drain("loyalty rule follower", "changes", || async {
        store
            .follow_rule_events(&guard, ACCRUAL_BATCH)
            .await
            .expect("rule follower")
            .read
    })
    .await;
}

/// Runs `pass` until it reads nothing, then prints what it read and how fast.
async fn drain<F: Future<Output = u64>>(task: &str, what: &str, mut pass: impl FnMut() -> F) {
    let started = Instant::now();
    let mut read = 0;
    loop {
        match pass().await {
            0 => break,
            n => read += n,
        }
    }
    let took = started.elapsed().as_secs_f64();
    println!(
        "{task} catch-up: {read} {what} in {took:.1} s = {:.0} {what}/s",
        read as f64 / took
    );
}

// ------------------------------------------------------------------------------------------------
// The hub

fn profile(hub: &Hub) -> CustomerProfileServiceClient<GrpcChannel> {
    CustomerProfileServiceClient::new(hub.channel.clone())
}

// ------------------------------------------------------------------------------------------------
// Measuring

type Call = Arc<dyn Fn(u64) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

struct Stats {
    calls: usize,
    elapsed: Duration,
    p50: Duration,
    p99: Duration,
}

impl Stats {
    fn rate(&self) -> f64 {
        self.calls as f64 / self.elapsed.as_secs_f64()
    }
}

/// Runs `call` with `in_flight` callers for `seconds` (after a one-second warm-up whose calls
/// are not counted); each call gets a distinct number to draw its arguments from.
async fn measure(in_flight: usize, seconds: f64, call: Call) -> Stats {
    let counter = Arc::new(AtomicU64::new(0));
    let run = |window: Duration| {
        let mut tasks = Vec::new();
        let started = Instant::now();
        for _ in 0..in_flight {
            let (call, counter) = (call.clone(), counter.clone());
            tasks.push(tokio::spawn(async move {
                let mut latencies = Vec::new();
                while started.elapsed() < window {
                    let n = counter.fetch_add(1, Ordering::Relaxed);
                    let t = Instant::now();
                    call(n).await;
                    latencies.push(t.elapsed());
                }
                latencies
            }));
        }
        async move {
            let mut all = Vec::new();
            for task in tasks {
                all.extend(task.await.unwrap());
            }
            (all, started.elapsed())
        }
    };
    let _ = run(Duration::from_secs(1)).await;
    let (mut latencies, elapsed) = run(Duration::from_secs_f64(seconds)).await;
    latencies.sort_unstable();
    let quantile = |q: f64| latencies[((latencies.len() - 1) as f64 * q).round() as usize];
    Stats {
        calls: latencies.len(),
        elapsed,
        p50: quantile(0.50),
        p99: quantile(0.99),
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1_000.0
}

fn verdict(pass: bool) -> &'static str {
    if pass { "PASS" } else { "MISS" }
}

fn line(name: &str, s: &Stats) -> String {
    format!(
        "{name:<34} {:>8.0} calls/s   p50 {:>6.2} ms   p99 {:>6.2} ms",
        s.rate(),
        ms(s.p50),
        ms(s.p99)
    )
}

// ------------------------------------------------------------------------------------------------
// Runs

struct Sizes {
    customers: u64,
    search_customers: u64,
    seconds: f64,
}

fn env<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|s| s.replace('_', "").parse().ok())
        .unwrap_or(default)
}

async fn run(name: &str, url: &str, options: StoreOptions, sizes: &Sizes) {
    println!(
        "\n== {name} — {} customers × {RECORDS_PER_CUSTOMER} records, then {} customers for search ==",
        sizes.customers, sizes.search_customers
    );
    let store = cxhub::open_store(url, options).await.expect("store");
    let builder = Builder {
        map: TouchpointMap::default(),
        eur: Currency::parse("EUR").expect("EUR"),
    };

    // 1. Customers with history.
    let started = Instant::now();
    let (ids, records) = seed(&store, &builder, 0, sizes.customers, true).await;
    let took = started.elapsed();
    println!(
        "seeding: {} customers, {records} records (20 interactions, 10 transactions each) in {:.1} s = {:.0} records/s",
        sizes.customers,
        took.as_secs_f64(),
        records as f64 / took.as_secs_f64()
    );
    let ids = Arc::new(ids);
    let count = ids.len() as u64;

    // 2. What the hub's background tasks would otherwise do while the reads are measured.
    catch_up(&store).await;

    // 3. Reads against the empty RPC, on one server.
    let hub = serve_store(
        cxhub::ServeArgs {
            database_url: Some(url.to_owned()),
            ..Default::default()
        },
        store.clone(),
    )
    .await;
    let seconds = sizes.seconds;
    let health = HealthClient::new(hub.channel.clone());
    let empty = measure(
        IN_FLIGHT,
        seconds,
        Arc::new(move |_| {
            let mut c = health.clone();
            Box::pin(async move {
                c.check(HealthCheckRequest {
                    service: String::new(),
                })
                .await
                .expect("health");
            })
        }),
    )
    .await;
    println!(
        "{}   (baseline)",
        line("empty RPC (Health/Check) ×16", &empty)
    );

    let client = profile(&hub);
    let c360 = {
        let (client, ids) = (client.clone(), ids.clone());
        measure(
            IN_FLIGHT,
            seconds,
            Arc::new(move |n| {
                let mut c = client.clone();
                let id = ids[(mix(n) % count) as usize].clone();
                Box::pin(async move {
                    let r = c
                        .get_customer360(pb::GetCustomer360Request {
                            customer_id: id,
                            interaction_count: 0,
                        })
                        .await
                        .expect("GetCustomer360");
                    assert!(r.into_inner().customer.is_some(), "a customer");
                })
            }),
        )
        .await
    };
    let ratio = c360.rate() / empty.rate();
    println!(
        "{}   = {ratio:.2} × empty (target ≥ 0.30: {})   p99 target ≤ 3 ms: {}",
        line("GetCustomer360 ×16", &c360),
        verdict(ratio >= 0.3),
        verdict(c360.p99 <= Duration::from_millis(3))
    );

    let get = {
        let (client, ids) = (client.clone(), ids.clone());
        measure(
            IN_FLIGHT,
            seconds,
            Arc::new(move |n| {
                let mut c = client.clone();
                let id = ids[(mix(n) % count) as usize].clone();
                Box::pin(async move {
                    c.get_customer(pb::GetCustomerRequest { customer_id: id })
                        .await
                        .expect("GetCustomer");
                })
            }),
        )
        .await
    };
    let ratio = get.rate() / empty.rate();
    println!(
        "{}   = {ratio:.2} × empty (target ≥ 0.50: {})",
        line("GetCustomer ×16", &get),
        verdict(ratio >= 0.5)
    );

    let lookup = {
        let client = client.clone();
        measure(
            IN_FLIGHT,
            seconds,
            Arc::new(move |n| {
                let mut c = client.clone();
                let email = person(mix(n) % count).email;
                Box::pin(async move {
                    let r = c
                        .lookup_customer(pb::LookupCustomerRequest {
                            email,
                            ..Default::default()
                        })
                        .await
                        .expect("LookupCustomer");
                    assert_eq!(r.into_inner().customers.len(), 1, "one holder");
                })
            }),
        )
        .await
    };
    let ratio = lookup.rate() / empty.rate();
    println!(
        "{}   = {ratio:.2} × empty (target ≥ 0.50: {})",
        line("LookupCustomer (e-mail) ×16", &lookup),
        verdict(ratio >= 0.5)
    );

    // 4. Search over many more customers.
    if sizes.search_customers > sizes.customers {
        let started = Instant::now();
        let (_, records) = seed(
            &store,
            &builder,
            sizes.customers,
            sizes.search_customers,
            false,
        )
        .await;
        let took = started.elapsed();
        println!(
            "growing to {} customers: {records} contacts in {:.1} s = {:.0} records/s",
            sizes.search_customers,
            took.as_secs_f64(),
            records as f64 / took.as_secs_f64()
        );
        catch_up(&store).await;
    }
    let names: Arc<Vec<&'static str>> = Arc::new(
        GIVEN
            .iter()
            .chain(FAMILY.iter())
            .copied()
            .filter(|n| n.chars().count() >= 2)
            .collect(),
    );
    let hits = Arc::new(AtomicU64::new(0));
    let searched = Arc::new(AtomicU64::new(0));
    let search: Call = {
        let (client, names, hits, searched) = (
            client.clone(),
            names.clone(),
            hits.clone(),
            searched.clone(),
        );
        Arc::new(move |n| {
            let mut c = client.clone();
            let h = mix(n ^ 0x5EA5C4);
            let name = names[(h % names.len() as u64) as usize];
            let len = (2 + (h >> 32) % 3) as usize;
            let prefix: String = name.chars().take(len).collect();
            let (hits, searched) = (hits.clone(), searched.clone());
            Box::pin(async move {
                let r = c
                    .search_customers(pb::SearchCustomersRequest {
                        name_prefix: prefix,
                        page_size: 20,
                        ..Default::default()
                    })
                    .await
                    .expect("SearchCustomers");
                hits.fetch_add(r.into_inner().customers.len() as u64, Ordering::Relaxed);
                searched.fetch_add(1, Ordering::Relaxed);
            })
        })
    };
    for in_flight in [1, IN_FLIGHT] {
        hits.store(0, Ordering::Relaxed);
        searched.store(0, Ordering::Relaxed);
        let s = measure(in_flight, seconds, search.clone()).await;
        println!(
            "{}   p99 target ≤ 10 ms: {}   ({:.1} customers per page)",
            line(&format!("SearchCustomers name prefix ×{in_flight}"), &s),
            verdict(s.p99 <= Duration::from_millis(10)),
            hits.load(Ordering::Relaxed) as f64 / searched.load(Ordering::Relaxed).max(1) as f64
        );
    }
    hub.stop().await;
}

/// `CXHUB_BENCH_READERS`: the store's connections for reads (SQLite: its readers; PostgreSQL:
/// its pool), instead of the store's default.
fn readers() -> Option<u32> {
    std::env::var("CXHUB_BENCH_READERS")
        .ok()
        .map(|n| n.parse().expect("CXHUB_BENCH_READERS: a number"))
}

fn main() {
    let sizes = Sizes {
        customers: env("CXHUB_BENCH_CUSTOMERS", 100_000),
        search_customers: env("CXHUB_BENCH_SEARCH_CUSTOMERS", 1_000_000),
        seconds: env("CXHUB_BENCH_SECONDS", 8.0),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let only = std::env::var("CXHUB_BENCH_ONLY").unwrap_or_default();
    if only.is_empty() || only == "sqlite" {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}", dir.path().join("profile.db").display());
        runtime.block_on(run(
            "SQLite (WAL, synchronous=FULL)",
            &url,
            StoreOptions {
                schema: None,
                max_connections: readers(),
            },
            &sizes,
        ));
    }
    if only == "sqlite" {
        return;
    }
    if let Ok(url) = std::env::var("CXHUB_BENCH_POSTGRES_URL") {
        let schema = format!("bench_{}", uuid::Uuid::now_v7().simple());
        runtime.block_on(async {
            run(
                "PostgreSQL",
                &url,
                StoreOptions {
                    schema: Some(schema.clone()),
                    max_connections: readers(),
                },
                &sizes,
            )
            .await;
            let _ = cxhub_store::drop_postgres_schema(&url, &schema).await;
        });
    } else {
        println!("\n(PostgreSQL skipped: set CXHUB_BENCH_POSTGRES_URL)");
    }
}
