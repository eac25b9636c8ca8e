//! The cxhub hub: settings (flags, `CXHUB_*` environment variables, an optional TOML file),
//! the services it can serve, and serving them over one store. `main.rs` is the command line;
//! `cxhub-testkit` uses [`serve_on`] to run a hub inside tests.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use std::collections::{BTreeMap, BTreeSet};

use cxhub_domain::Violations;
use cxhub_domain::feed::TouchpointMap;
use cxhub_domain::identifier::{IdentifierKind, check_phone_region};
use cxhub_domain::loyalty::repo::{GuardConfig, LoyaltyRepo};
use cxhub_domain::record::{FieldGroup, SourcePriority};
use cxhub_domain::scoring::ScoreConfig;
use cxhub_feeds::FeedConfig;
use cxhub_server::{Limits, LogFormat, ServeConfig, ServiceRegistration, TokenConfig};
use cxhub_store::{Store, StoreOptions};
use serde::Deserialize;

mod points_tasks;

/// The allocator of every binary that links the hub (the `cxhub` command, the tests and the
/// benches that run a hub inside them).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Every service this build of the hub can serve, by its `--services` name.
pub const SERVICES: &[&str] = &[
    cxhub_touchpoint_registry::SHORT_NAME,
    cxhub_feeds::SHORT_NAME,
    cxhub_customer_profile::SHORT_NAME,
    cxhub_scoring::SHORT_NAME,
    cxhub_loyalty::SHORT_NAME,
];

/// Default listen address: loopback only.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:50051";
/// Default database: a SQLite file in the working directory.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://cxhub.db";

/// Settings of `cxhub serve`. Each can be given as a flag, as an environment variable, or in
/// the TOML file named by `--config` (same names in snake_case); a flag or variable wins over
/// the file.
#[derive(Args, Debug, Clone, Default)]
pub struct ServeArgs {
    /// TOML file with any of these settings, plus `[[tokens]]` tables (principal, scopes, token).
    #[arg(long, env = "CXHUB_CONFIG")]
    pub config: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:50051].
    #[arg(long, env = "CXHUB_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Database URL: `sqlite://path/to/file.db` (created if absent) or
    /// `postgres://user@host:port/db` [default: sqlite://cxhub.db].
    #[arg(long, env = "CXHUB_DATABASE_URL")]
    pub database_url: Option<String>,
    /// Comma-separated services to serve [default: all; known: touchpoints, feeds, profile, scoring, loyalty].
    #[arg(long, env = "CXHUB_SERVICES", value_delimiter = ',')]
    pub services: Option<Vec<String>>,
    /// Load the demo registry (about 350 touchpoints, a few journeys) if the registry is empty.
    #[arg(long, env = "CXHUB_DEMO")]
    pub demo: bool,
    /// Log format: `plain` or `json` [default: plain]. Filter with RUST_LOG.
    #[arg(long, env = "CXHUB_LOG_FORMAT")]
    pub log_format: Option<LogFormat>,
    /// Largest request or response message, in bytes [default: 4194304].
    #[arg(long, env = "CXHUB_MAX_MESSAGE_BYTES")]
    pub max_message_bytes: Option<usize>,
    /// Calls served at once across all connections; more are refused at once with
    /// RESOURCE_EXHAUSTED [default: 256].
    #[arg(long, env = "CXHUB_MAX_CONCURRENT_REQUESTS")]
    pub max_concurrent_requests: Option<usize>,
    /// Longest a call may take, e.g. `30s`; a shorter `grpc-timeout` from the caller wins
    /// [default: 30s].
    #[arg(long, env = "CXHUB_REQUEST_TIMEOUT", value_parser = humantime::parse_duration)]
    pub request_timeout: Option<Duration>,
    /// On SIGTERM or Ctrl-C, how long in-flight calls get to finish before the hub exits
    /// anyway, e.g. `10s` [default: 10s].
    #[arg(long, env = "CXHUB_DRAIN_TIMEOUT", value_parser = humantime::parse_duration)]
    pub drain_timeout: Option<Duration>,
    /// A bearer token, as `PRINCIPAL:SCOPE1+SCOPE2:TOKEN` (repeat the flag, or comma-separate
    /// in CXHUB_AUTH_TOKENS). Scopes: touchpoints:read, touchpoints:write, admin. With no token
    /// configured every caller is an anonymous admin, which is only allowed on loopback.
    #[arg(
        long = "auth-token",
        env = "CXHUB_AUTH_TOKENS",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub auth_tokens: Vec<TokenConfig>,
    /// Allow listening on a non-loopback address with no tokens configured.
    #[arg(long, env = "CXHUB_ALLOW_UNAUTHENTICATED")]
    pub allow_unauthenticated: bool,
    /// Most records in one IngestRecords or SyncRecords batch [default: 1000].
    #[arg(long, env = "CXHUB_MAX_BATCH")]
    pub max_batch: Option<usize>,
    /// Region (ISO 3166-1 alpha-2) assumed for phone numbers written without a country code
    /// [default: US].
    #[arg(long, env = "CXHUB_DEFAULT_REGION")]
    pub default_region: Option<String>,
    /// How long the customer change log keeps entries for WatchCustomerChanges, e.g. `7days`;
    /// older entries are pruned and resuming before them answers OUT_OF_RANGE [default: 7days].
    #[arg(long, env = "CXHUB_CHANGE_RETENTION", value_parser = humantime::parse_duration)]
    pub change_retention: Option<Duration>,
    /// How often the background score recompute refits the models and rescores every customer,
    /// e.g. `24h`; `0s` leaves only the incremental recompute and `RecomputeScores`
    /// [default: 24h].
    #[arg(long, env = "CXHUB_SCORE_FULL_RECOMPUTE_EVERY", value_parser = humantime::parse_duration)]
    pub score_full_recompute_every: Option<Duration>,
    /// Whether a hub serving `loyalty` runs its rules by itself: the event-triggered rules
    /// within a moment of the change that triggers them, the scheduled ones once a day
    /// [default: true], and ingested payments earn points (refunds reverse them) and expired
    /// points are posted hourly. Off, rules act only through `RunRuleSweep`.
    #[arg(long, env = "CXHUB_LOYALTY_RULE_TASKS")]
    pub loyalty_rule_tasks: Option<bool>,
}

/// The `[feeds]` table of the TOML file: how records are ingested and customers resolved.
#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
struct FeedFileSettings {
    /// Most records per batch.
    max_batch: Option<usize>,
    /// Default phone region.
    default_region: Option<String>,
    /// Normalised identifier values that never link anyone (`a@b.com`, `+15551234567`,
    /// `crm:0000`).
    #[serde(default)]
    blocked_identifiers: Vec<String>,
    /// E-mail domains whose addresses never link anyone.
    #[serde(default)]
    blocked_email_domains: Vec<String>,
    /// An identifier held by more customers than this links no one.
    max_customers_per_identifier: Option<usize>,
    /// Kinds that merge customers besides source ids: any of `email`, `phone`.
    mergeable: Option<Vec<String>>,
    /// Per field group (`name`, `address`, `language`, `consent`, `lifecycle`, `account`), the
    /// sources from the highest priority down.
    #[serde(default)]
    source_priority: std::collections::BTreeMap<String, Vec<String>>,
    /// Touchpoint keys per record type (`order`, `order.web`, `activity.call`…), over the
    /// defaults.
    #[serde(default)]
    touchpoints: std::collections::BTreeMap<String, String>,
}

/// The same settings as read from the TOML file.
#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
struct FileSettings {
    listen: Option<SocketAddr>,
    database_url: Option<String>,
    services: Option<Vec<String>>,
    demo: Option<bool>,
    log_format: Option<String>,
    max_message_bytes: Option<usize>,
    max_concurrent_requests: Option<usize>,
    request_timeout: Option<String>,
    drain_timeout: Option<String>,
    change_retention: Option<String>,
    score_full_recompute_every: Option<String>,
    loyalty_rule_tasks: Option<bool>,
    allow_unauthenticated: Option<bool>,
    #[serde(default)]
    tokens: Vec<TokenConfig>,
    #[serde(default)]
    feeds: FeedFileSettings,
}

/// Resolved settings of a hub.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Listen address.
    pub listen: SocketAddr,
    /// Database URL.
    pub database_url: String,
    /// Services to serve, by `--services` name.
    pub services: Vec<String>,
    /// Load the demo registry if empty.
    pub demo: bool,
    /// Log format.
    pub log_format: LogFormat,
    /// Limits, drain time and authentication.
    pub serve: ServeConfig,
    /// How feeds are ingested and customers resolved.
    pub feeds: FeedConfig,
    /// How long the change log keeps entries.
    pub change_retention: Duration,
    /// How customer scores are computed, including how often the background task makes a full
    /// recompute.
    pub scores: ScoreConfig,
    /// Whether the loyalty rule tasks run (event follower, daily sweep, points accrual and
    /// expiry).
    pub loyalty_rule_tasks: bool,
}

impl ServeArgs {
    /// Resolves the settings: flag or environment variable, else the file, else the default.
    pub fn resolve(self) -> anyhow::Result<Settings> {
        let file = match &self.config {
            Some(path) => read_file_settings(path)?,
            None => FileSettings::default(),
        };
        let duration = |flag: Option<Duration>,
                        file: Option<String>,
                        name: &str,
                        default: Duration| match (flag, file) {
            (Some(d), _) => Ok(d),
            (None, Some(text)) => humantime::parse_duration(&text).with_context(|| {
                format!("{name} in the config file: `{text}` is not a duration like `30s`")
            }),
            (None, None) => Ok(default),
        };
        let log_format = match (self.log_format, file.log_format) {
            (Some(f), _) => f,
            (None, Some(text)) => text
                .parse()
                .map_err(|e| anyhow::anyhow!("log_format in the config file: {e}"))?,
            (None, None) => LogFormat::Plain,
        };
        let services = self
            .services
            .or(file.services)
            .unwrap_or_else(|| SERVICES.iter().map(|s| (*s).to_owned()).collect());
        check_services(&services)?;
        let mut tokens = self.auth_tokens;
        tokens.extend(file.tokens);
        let max_message_bytes = self
            .max_message_bytes
            .or(file.max_message_bytes)
            .unwrap_or(4 * 1024 * 1024);
        let max_concurrent_requests = self
            .max_concurrent_requests
            .or(file.max_concurrent_requests)
            .unwrap_or(256);
        if max_message_bytes < 1024 {
            bail!("max_message_bytes must be at least 1024");
        }
        if max_concurrent_requests == 0 {
            bail!("max_concurrent_requests must be at least 1");
        }
        let feeds = feed_config(self.max_batch, self.default_region, file.feeds)?;
        let change_retention = duration(
            self.change_retention,
            file.change_retention,
            "change_retention",
            Duration::from_secs(7 * 24 * 3600),
        )?;
        if change_retention < Duration::from_secs(60) {
            bail!("change_retention must be at least 1 minute");
        }
        let full_recompute_every = duration(
            self.score_full_recompute_every,
            file.score_full_recompute_every,
            "score_full_recompute_every",
            Duration::from_secs(24 * 3600),
        )?;
        let scores = ScoreConfig {
            full_recompute_every_hours: full_recompute_every.as_secs_f64() / 3600.0,
            ..ScoreConfig::default()
        };
        Ok(Settings {
            feeds,
            change_retention,
            scores,
            loyalty_rule_tasks: self
                .loyalty_rule_tasks
                .or(file.loyalty_rule_tasks)
                .unwrap_or(true),
            listen: self.listen.or(file.listen).unwrap_or_else(|| {
                DEFAULT_LISTEN
                    .parse()
                    .unwrap_or(SocketAddr::from(([127, 0, 0, 1], 50051)))
            }),
            database_url: self
                .database_url
                .or(file.database_url)
                .unwrap_or_else(|| DEFAULT_DATABASE_URL.to_owned()),
            services,
            demo: self.demo || file.demo.unwrap_or(false),
            log_format,
            serve: ServeConfig {
                limits: Limits {
                    max_message_bytes,
                    max_concurrent_requests,
                    request_timeout: duration(
                        self.request_timeout,
                        file.request_timeout,
                        "request_timeout",
                        Duration::from_secs(30),
                    )?,
                },
                drain_timeout: duration(
                    self.drain_timeout,
                    file.drain_timeout,
                    "drain_timeout",
                    Duration::from_secs(10),
                )?,
                tokens,
                allow_unauthenticated: self.allow_unauthenticated
                    || file.allow_unauthenticated.unwrap_or(false),
            },
        })
    }
}

fn feed_config(
    max_batch: Option<usize>,
    default_region: Option<String>,
    file: FeedFileSettings,
) -> anyhow::Result<FeedConfig> {
    let mut config = FeedConfig::default();
    config.max_batch = max_batch.or(file.max_batch).unwrap_or(config.max_batch);
    if config.max_batch == 0 || config.max_batch > 100_000 {
        bail!("max_batch must be from 1 to 100000");
    }
    if let Some(region) = default_region.or(file.default_region) {
        check_phone_region(&region)
            .map_err(|p| anyhow::anyhow!("default_region `{region}`: {}", p.description()))?;
        config.policy.default_region = region;
    }
    for value in file.blocked_identifiers {
        config.policy.junk.blocked.insert(value);
    }
    for domain in file.blocked_email_domains {
        config
            .policy
            .junk
            .block_email_domain(&domain)
            .map_err(|p| {
                anyhow::anyhow!(
                    "feeds.blocked_email_domains `{domain}`: {}",
                    p.description()
                )
            })?;
    }
    if let Some(n) = file.max_customers_per_identifier {
        config.rules.max_customers_per_identifier = n;
    }
    if let Some(kinds) = file.mergeable {
        let mut mergeable = BTreeSet::from([IdentifierKind::SourceId]);
        for kind in kinds {
            mergeable.insert(match kind.as_str() {
                "email" => IdentifierKind::Email,
                "phone" => IdentifierKind::Phone,
                "source_id" => IdentifierKind::SourceId,
                other => bail!("feeds.mergeable: unknown kind `{other}` (email, phone)"),
            });
        }
        config.rules.mergeable = mergeable;
    }
    let mut v = Violations::new();
    config.rules.check("feeds", &mut v);
    v.into_result().map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut lists = BTreeMap::new();
    for (group, sources) in file.source_priority {
        let group: FieldGroup = group
            .parse()
            .map_err(|e| anyhow::anyhow!("feeds.source_priority: {e}"))?;
        lists.insert(group, sources);
    }
    config.priority = SourcePriority::from_lists(lists, "feeds.source_priority")
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    config.policy.touchpoints =
        TouchpointMap::with_overrides(file.touchpoints, "feeds.touchpoints")
            .map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(config)
}

fn read_file_settings(path: &Path) -> anyhow::Result<FileSettings> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading config file {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("parsing config file {}", path.display()))
}

fn check_services(services: &[String]) -> anyhow::Result<()> {
    if services.is_empty() {
        bail!(
            "no service to serve: name at least one of {}",
            SERVICES.join(", ")
        );
    }
    for name in services {
        if !SERVICES.contains(&name.as_str()) {
            bail!(
                "unknown service `{name}`: known services are {}",
                SERVICES.join(", ")
            );
        }
    }
    Ok(())
}

/// Opens the store and applies pending migrations.
pub async fn open_store(database_url: &str, options: StoreOptions) -> anyhow::Result<Store> {
    let store = Store::connect(database_url, options)
        .await
        .with_context(|| format!("connecting to the database ({})", redact(database_url)))?;
    store.migrate().await.context("applying migrations")?;
    Ok(store)
}

/// The registrations of the named services over `store`.
pub fn registrations(
    store: &Store,
    services: &[String],
    feeds: &FeedConfig,
) -> anyhow::Result<Vec<ServiceRegistration>> {
    check_services(services)?;
    let mut out = Vec::new();
    for name in services {
        let store = Arc::new(store.clone());
        match name.as_str() {
            cxhub_touchpoint_registry::SHORT_NAME => {
                out.push(cxhub_touchpoint_registry::registration(
                    store.clone(),
                    store,
                    feeds.policy.junk.clone(),
                ));
            }
            cxhub_feeds::SHORT_NAME => {
                out.push(cxhub_feeds::registration(store, feeds.clone()));
            }
            cxhub_customer_profile::SHORT_NAME => {
                out.push(cxhub_customer_profile::registration(
                    store.clone(),
                    feeds.rules.clone(),
                    feeds.priority.clone(),
                    store.clone(),
                    cxhub_customer_profile::watch::Watcher::new(
                        store.clone(),
                        cxhub_customer_profile::watch::WatchConfig::default(),
                    ),
                    cxhub_customer_profile::Reads {
                        repo: store.clone(),
                        default_region: feeds.policy.default_region.clone(),
                    },
                ));
                out.push(cxhub_customer_profile::privacy_registration(
                    Arc::new(cxhub_store::PrivacyStore::new(
                        (*store).clone(),
                        feeds.priority.clone(),
                    )),
                    store,
                ));
            }
            cxhub_scoring::SHORT_NAME => {
                out.push(cxhub_scoring::registration(
                    store.clone(),
                    store.clone(),
                    cxhub_scoring::Scores::new(store.clone(), store, ScoreConfig::default()),
                ));
            }
            cxhub_loyalty::SHORT_NAME => {
                out.push(cxhub_loyalty::registration(
                    store.clone(),
                    cxhub_domain::loyalty::repo::GuardConfig::default(),
                ));
            }
            _ => {}
        }
    }
    Ok(out)
}

/// Serves the configured services over `store` on `listener` until `shutdown` resolves,
/// loading the demo registry first when asked.
pub async fn serve_on(
    settings: &Settings,
    store: Store,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let addr = listener.local_addr()?;
    cxhub_server::check_auth_config(&settings.serve, addr)?;
    if settings.demo {
        let (touchpoints, journeys) = cxhub_touchpoint_registry::seed_demo(&store)
            .await
            .context("loading the demo registry")?;
        tracing::info!(touchpoints, journeys, "demo registry loaded");
    }
    let services = registrations(&store, &settings.services, &settings.feeds)?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let pruning = tokio::spawn(prune_changes(
        store.clone(),
        settings.change_retention,
        stopped,
    ));
    let (stop_scores, scores_stopped) = tokio::sync::oneshot::channel::<()>();
    let scoring = settings
        .services
        .iter()
        .any(|s| s == cxhub_scoring::SHORT_NAME)
        .then(|| {
            let store = Arc::new(store.clone());
            tokio::spawn(follow_scores(
                cxhub_scoring::Scores::new(store.clone(), store, settings.scores),
                scores_stopped,
            ))
        });
    let loyalty = (settings.loyalty_rule_tasks
        && settings
            .services
            .iter()
            .any(|s| s == cxhub_loyalty::SHORT_NAME))
    .then(|| {
        let repo: Arc<dyn LoyaltyRepo> = Arc::new(store.clone());
        let (stop_sweeps, sweeps_stopped) = tokio::sync::oneshot::channel::<()>();
        let (stop_events, events_stopped) = tokio::sync::oneshot::channel::<()>();
        let (stop_accrual, accrual_stopped) = tokio::sync::oneshot::channel::<()>();
        let (stop_expiry, expiry_stopped) = tokio::sync::oneshot::channel::<()>();
        let sweeps = tokio::spawn(sweep_rules_daily(repo.clone(), sweeps_stopped));
        let events = tokio::spawn(follow_rule_events(repo, events_stopped));
        let accrual = tokio::spawn(points_tasks::accrue_points(store.clone(), accrual_stopped));
        let expiry = tokio::spawn(points_tasks::expire_points(store.clone(), expiry_stopped));
        (
            [stop_sweeps, stop_events, stop_accrual, stop_expiry],
            [sweeps, events, accrual, expiry],
        )
    });
    let served = cxhub_server::serve(settings.serve.clone(), listener, services, shutdown).await;
    // Stopped between two prunes, never in the middle of one (an abandoned transaction would
    // hold its locks until the connection is closed).
    let _ = stop.send(());
    if let Err(err) = pruning.await {
        tracing::warn!(error = %err, "the change log pruning task failed");
    }
    if let Some((stops, tasks)) = loyalty {
        for stop in stops {
            let _ = stop.send(());
        }
        for task in tasks {
            if let Err(err) = task.await {
                tracing::warn!(error = %err, "a loyalty rule task failed");
            }
        }
    }
    let _ = stop_scores.send(());
    if let Some(task) = scoring
        && let Err(err) = task.await
    {
        tracing::warn!(error = %err, "the incremental score recompute failed");
    }
    served
}

/// How often the incremental score recompute looks for changed customers when it has caught
/// up.
const SCORE_POLL: Duration = Duration::from_millis(500);

/// Keeps customer scores current: one incremental pass (see
/// [`cxhub_scoring::Scores::follow_once`]) after another, pausing [`SCORE_POLL`] when a pass
/// found nothing, for as long as the hub serves. Stopped between two passes.
async fn follow_scores(
    scores: cxhub_scoring::Scores,
    mut stop: tokio::sync::oneshot::Receiver<()>,
) {
    loop {
        let pause = match scores.follow_once().await {
            Ok(pass) if pass.changes > 0 => Duration::ZERO,
            Ok(_) => SCORE_POLL,
            Err(err) => {
                tracing::warn!(error = %err, "the incremental score recompute failed; retrying");
                SCORE_POLL * 10
            }
        };
        tokio::select! {
            () = tokio::time::sleep(pause) => {}
            _ = &mut stop => return,
        }
    }
}

/// How often the scheduled loyalty rules sweep their segments.
const RULE_SWEEP_EVERY: Duration = Duration::from_secs(24 * 3600);
/// How often the loyalty rule follower looks for triggering events when it has caught up.
const RULE_EVENTS_POLL: Duration = Duration::from_millis(200);

/// Runs every enabled scheduled loyalty rule once a day, for as long as the hub serves. The
/// first sweep waits a day too (a sweep acts on a customer at most once per rule version and
/// day, so a restart never repeats one; `RunRuleSweep` runs one now). Stopped between sweeps.
async fn sweep_rules_daily(
    repo: Arc<dyn LoyaltyRepo>,
    mut stop: tokio::sync::oneshot::Receiver<()>,
) {
    let guard = GuardConfig::default();
    loop {
        tokio::select! {
            () = tokio::time::sleep(RULE_SWEEP_EVERY) => {}
            _ = &mut stop => return,
        }
        match cxhub_loyalty::sweep_scheduled(repo.as_ref(), &guard).await {
            Ok(reports) => tracing::info!(rules = reports.len(), "daily rule sweeps done"),
            Err(err) => tracing::warn!(error = %err, "the daily rule sweep failed"),
        }
    }
}

/// Follows the change log and survey answers for the event-triggered loyalty rules (see
/// `LoyaltyRepo::follow_rule_events`), pausing [`RULE_EVENTS_POLL`] when caught up, for as long
/// as the hub serves. Stopped between two passes.
async fn follow_rule_events(
    repo: Arc<dyn LoyaltyRepo>,
    mut stop: tokio::sync::oneshot::Receiver<()>,
) {
    let guard = GuardConfig::default();
    loop {
        let pause = match repo.follow_rule_events(&guard, 500).await {
            Ok(pass) if pass.read > 0 => Duration::ZERO,
            Ok(_) => RULE_EVENTS_POLL,
            Err(err) => {
                tracing::warn!(error = %err, "the loyalty rule follower failed; retrying");
                RULE_EVENTS_POLL * 10
            }
        };
        tokio::select! {
            () = tokio::time::sleep(pause) => {}
            _ = &mut stop => return,
        }
    }
}

/// Prunes the change log of entries older than `retention` every tenth of the retention (at
/// most every 10 minutes), for as long as the hub serves.
async fn prune_changes(
    store: Store,
    retention: Duration,
    mut stop: tokio::sync::oneshot::Receiver<()>,
) {
    use cxhub_domain::change::ChangeLogRepo;
    let every = (retention / 10).min(Duration::from_secs(600));
    loop {
        // Wait first: a hub that only lives for moments (tests, a failed start) never begins
        // a prune its runtime could abandon half-way, holding the transaction's locks.
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            _ = &mut stop => return,
        }
        let cutoff = chrono::Utc::now()
            - chrono::Duration::from_std(retention).unwrap_or(chrono::Duration::days(7));
        match store.prune_changes(cutoff).await {
            Ok(0) => {}
            Ok(pruned) => tracing::info!(pruned, "change log pruned"),
            Err(err) => tracing::warn!(error = %err, "pruning the change log failed"),
        }
        // The loyalty action event log (WatchActions) keeps events as long as the change log.
        match cxhub_domain::loyalty::repo::LoyaltyRepo::prune_action_events(&store, cutoff).await {
            Ok(0) => {}
            Ok(pruned) => tracing::info!(pruned, "action event log pruned"),
            Err(err) => tracing::warn!(error = %err, "pruning the action event log failed"),
        }
    }
}

/// A database URL with any password replaced, for messages.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let creds = &url[scheme_end + 3..at];
            match creds.find(':') {
                Some(colon) => format!(
                    "{}{}:***{}",
                    &url[..scheme_end + 3],
                    &creds[..colon],
                    &url[at..]
                ),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn defaults_are_the_quickstart() {
        let s = ServeArgs::default().resolve().expect("defaults resolve");
        assert_eq!(s.listen.to_string(), DEFAULT_LISTEN);
        assert_eq!(s.database_url, DEFAULT_DATABASE_URL);
        assert_eq!(
            s.services,
            ["touchpoints", "feeds", "profile", "scoring", "loyalty"]
        );
        assert_eq!(s.feeds.max_batch, 1000);
        assert_eq!(s.serve.limits.max_message_bytes, 4 * 1024 * 1024);
        assert_eq!(s.serve.limits.request_timeout, Duration::from_secs(30));
        assert!(s.serve.tokens.is_empty());
    }

    #[test]
    fn flags_win_over_the_file_and_the_file_over_defaults() {
        let mut file = tempfile::NamedTempFile::new().expect("temp file");
        writeln!(
            file,
            r#"
listen = "127.0.0.1:6000"
database_url = "sqlite://from-file.db"
request_timeout = "5s"
max_concurrent_requests = 7

[[tokens]]
principal = "crm-sync"
scopes = ["touchpoints:read"]
token = "s3cret"
"#
        )
        .expect("write");
        let args = ServeArgs {
            config: Some(file.path().to_owned()),
            listen: Some("127.0.0.1:7000".parse().expect("addr")),
            ..Default::default()
        };
        let s = args.resolve().expect("resolves");
        assert_eq!(s.listen.port(), 7000);
        assert_eq!(s.database_url, "sqlite://from-file.db");
        assert_eq!(s.serve.limits.request_timeout, Duration::from_secs(5));
        assert_eq!(s.serve.limits.max_concurrent_requests, 7);
        assert_eq!(s.serve.tokens.len(), 1);
        assert_eq!(s.serve.tokens[0].principal, "crm-sync");
    }

    #[test]
    fn bad_settings_are_refused_with_a_reason() {
        let unknown = ServeArgs {
            services: Some(vec!["telepathy".into()]),
            ..Default::default()
        };
        let err = unknown.resolve().expect_err("unknown service").to_string();
        assert!(
            err.contains("telepathy") && err.contains("touchpoints"),
            "{err}"
        );

        let mut file = tempfile::NamedTempFile::new().expect("temp file");
        writeln!(file, "listn = \"127.0.0.1:1\"").expect("write");
        let typo = ServeArgs {
            config: Some(file.path().to_owned()),
            ..Default::default()
        };
        assert!(
            typo.resolve().is_err(),
            "unknown keys in the file are refused"
        );
    }

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact("postgres://u:pw@h:5432/db"),
            "postgres://u:***@h:5432/db"
        );
        assert_eq!(redact("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(redact("sqlite://cxhub.db"), "sqlite://cxhub.db");
    }
}
