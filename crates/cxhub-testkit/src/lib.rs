//! Spawns a cxhub hub on `127.0.0.1:0` over a fresh database, for end-to-end tests and
//! benchmarks.
//!
//! The backend follows the environment: PostgreSQL when `CXHUB_TEST_POSTGRES_URL` is set (each
//! hub gets its own schema in that database, dropped when the hub is dropped), otherwise a
//! SQLite file in a temporary directory. The same suite thus runs on both backends.

use std::net::SocketAddr;
use std::time::Duration;

use cxhub::{ServeArgs, Settings};
use cxhub_proto::feeds::v1::feed_service_client::FeedServiceClient;
use cxhub_proto::profile::v1::customer_profile_service_client::CustomerProfileServiceClient;
use cxhub_proto::touchpoint::v1::touchpoint_registry_service_client::TouchpointRegistryServiceClient;
use cxhub_server::TokenConfig;
use cxhub_store::{Store, StoreOptions};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::transport::Channel;

/// The environment variable naming the PostgreSQL database the tests may use.
pub const POSTGRES_URL_VAR: &str = "CXHUB_TEST_POSTGRES_URL";

/// The backend tests run on: `postgres` when [`POSTGRES_URL_VAR`] is set, else `sqlite`.
pub fn backend() -> &'static str {
    if postgres_url().is_some() {
        "postgres"
    } else {
        "sqlite"
    }
}

fn postgres_url() -> Option<String> {
    std::env::var(POSTGRES_URL_VAR)
        .ok()
        .filter(|s| !s.is_empty())
}

/// Options of a test hub.
#[derive(Debug, Clone, Default)]
pub struct TestHubBuilder {
    args: ServeArgs,
}

impl TestHubBuilder {
    /// Configures a bearer token (`PRINCIPAL:SCOPE1+SCOPE2:TOKEN`).
    pub fn token(mut self, spec: &str) -> Self {
        match spec.parse::<TokenConfig>() {
            Ok(token) => self.args.auth_tokens.push(token),
            Err(err) => panic!("bad token spec {spec:?}: {err}"),
        }
        self
    }

    /// Largest message in bytes.
    pub fn max_message_bytes(mut self, n: usize) -> Self {
        self.args.max_message_bytes = Some(n);
        self
    }

    /// Calls served at once.
    pub fn max_concurrent_requests(mut self, n: usize) -> Self {
        self.args.max_concurrent_requests = Some(n);
        self
    }

    /// Longest a call may take.
    pub fn request_timeout(mut self, d: Duration) -> Self {
        self.args.request_timeout = Some(d);
        self
    }

    /// How long in-flight calls get on shutdown.
    pub fn drain_timeout(mut self, d: Duration) -> Self {
        self.args.drain_timeout = Some(d);
        self
    }

    /// Most records in one IngestRecords or SyncRecords batch.
    pub fn max_batch(mut self, n: usize) -> Self {
        self.args.max_batch = Some(n);
        self
    }

    /// The region national phone numbers are read in (ISO 3166 alpha-2, e.g. `PT`).
    pub fn default_region(mut self, region: &str) -> Self {
        self.args.default_region = Some(region.to_owned());
        self
    }

    /// Whether the loyalty rule tasks (event follower, daily sweep) run; tests that drive the
    /// follower pass by pass turn them off.
    pub fn loyalty_rule_tasks(mut self, on: bool) -> Self {
        self.args.loyalty_rule_tasks = Some(on);
        self
    }

    /// How often the background score recompute makes a full recompute (`0s`: never).
    pub fn score_full_recompute_every(mut self, d: Duration) -> Self {
        self.args.score_full_recompute_every = Some(d);
        self
    }

    /// Load the demo registry at start.
    pub fn demo(mut self) -> Self {
        self.args.demo = true;
        self
    }

    /// Starts the hub.
    pub async fn start(self) -> TestHub {
        match TestHub::try_start(self.args).await {
            Ok(hub) => hub,
            Err(err) => panic!("test hub did not start: {err:#}"),
        }
    }
}

/// A running hub over its own fresh database.
pub struct TestHub {
    /// The address it listens on.
    pub addr: SocketAddr,
    /// Its settings.
    pub settings: Settings,
    /// Its store, for checks behind the API.
    pub store: Store,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<anyhow::Result<()>>>,
    postgres_schema: Option<(String, String)>,
    _dir: tempfile::TempDir,
}

impl TestHub {
    /// Options for a hub.
    pub fn builder() -> TestHubBuilder {
        TestHubBuilder::default()
    }

    /// A hub with default settings.
    pub async fn start() -> TestHub {
        Self::builder().start().await
    }

    async fn try_start(mut args: ServeArgs) -> anyhow::Result<TestHub> {
        let dir = tempfile::tempdir()?;
        let (url, options, postgres_schema) = match postgres_url() {
            Some(url) => {
                let schema = format!("t_{}", uuid::Uuid::now_v7().simple());
                let options = StoreOptions {
                    schema: Some(schema.clone()),
                    ..Default::default()
                };
                (url.clone(), options, Some((url, schema)))
            }
            None => {
                let path = dir.path().join("hub.db");
                (
                    format!("sqlite://{}", path.display()),
                    StoreOptions::default(),
                    None,
                )
            }
        };
        args.database_url = Some(url.clone());
        args.listen = Some(SocketAddr::from(([127, 0, 0, 1], 0)));
        let settings = args.resolve()?;
        let store = cxhub::open_store(&url, options).await?;
        let listener = tokio::net::TcpListener::bind(settings.listen).await?;
        let addr = listener.local_addr()?;
        let (tx, rx) = oneshot::channel::<()>();
        let task = {
            let settings = settings.clone();
            let store = store.clone();
            tokio::spawn(async move {
                cxhub::serve_on(&settings, store, listener, async move {
                    let _ = rx.await;
                })
                .await
            })
        };
        let hub = TestHub {
            addr,
            settings,
            store,
            shutdown: Some(tx),
            task: Some(task),
            postgres_schema,
            _dir: dir,
        };
        hub.wait_ready().await?;
        Ok(hub)
    }

    async fn wait_ready(&self) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            if self.try_channel().await.is_ok() {
                return Ok(());
            }
            if tokio::time::Instant::now() > deadline {
                anyhow::bail!("the hub did not accept connections within 30 s");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn try_channel(&self) -> Result<Channel, tonic::transport::Error> {
        Channel::builder(self.uri()).connect().await
    }

    /// The hub's URI, `http://127.0.0.1:PORT`.
    pub fn uri(&self) -> tonic::transport::Uri {
        let text = format!("http://{}", self.addr);
        match text.parse() {
            Ok(uri) => uri,
            Err(err) => panic!("{text} is not a URI: {err}"),
        }
    }

    /// A connected channel.
    pub async fn channel(&self) -> Channel {
        match self.try_channel().await {
            Ok(channel) => channel,
            Err(err) => panic!("connecting to the test hub: {err}"),
        }
    }

    /// A touchpoint registry client.
    pub async fn touchpoints(&self) -> TouchpointRegistryServiceClient<Channel> {
        TouchpointRegistryServiceClient::new(self.channel().await)
    }

    /// A feed service client.
    pub async fn feeds(&self) -> FeedServiceClient<Channel> {
        FeedServiceClient::new(self.channel().await)
    }

    /// A customer profile service client.
    pub async fn profiles(&self) -> CustomerProfileServiceClient<Channel> {
        CustomerProfileServiceClient::new(self.channel().await)
    }

    /// Asks the hub to shut down (as SIGTERM would) without waiting.
    pub fn begin_shutdown(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }

    /// Shuts the hub down and waits for it; returns what `serve` returned and how long the
    /// wait took.
    pub async fn stop(&mut self) -> (anyhow::Result<()>, Duration) {
        self.begin_shutdown();
        let started = std::time::Instant::now();
        let result = match self.task.take() {
            Some(task) => match task.await {
                Ok(result) => result,
                Err(err) => Err(anyhow::anyhow!("hub task failed: {err}")),
            },
            None => Ok(()),
        };
        (result, started.elapsed())
    }
}

impl Drop for TestHub {
    fn drop(&mut self) {
        self.begin_shutdown();
        if let Some(task) = self.task.take() {
            task.abort();
        }
        if let Some((url, schema)) = self.postgres_schema.take() {
            // Drop is synchronous: drop the schema from a thread with its own runtime. This
            // thread blocks the test's runtime meanwhile, so the wait is bounded: a schema that
            // could not be dropped in time is left behind (CI drops the whole database).
            let (done, finished) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build();
                if let Ok(runtime) = runtime {
                    let outcome =
                        runtime.block_on(cxhub_store::drop_postgres_schema(&url, &schema));
                    let _ = done.send(outcome.map_err(|err| err.to_string()));
                }
            });
            match finished.recv_timeout(Duration::from_secs(60)) {
                Ok(Ok(())) | Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {}
                Ok(Err(err)) => eprintln!("test schema not dropped: {err}"),
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                    eprintln!("test schema not dropped within 60 s; left behind");
                }
            }
        }
    }
}

/// Wraps a message in a request carrying `authorization: Bearer <token>`.
pub fn with_token<T>(message: T, token: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    match format!("Bearer {token}").parse() {
        Ok(value) => {
            request.metadata_mut().insert("authorization", value);
        }
        Err(err) => panic!("token is not a valid header value: {err}"),
    }
    request
}
