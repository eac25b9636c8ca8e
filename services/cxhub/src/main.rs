//! `cxhub`: the customer-experience data hub.
//!
//! - `cxhub serve`: serve every built service on one port (see `cxhub serve --help`).
//! - `cxhub migrate`: apply pending database migrations and exit.
//! - `cxhub demo-seed`: load the demo touchpoint registry and exit.

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use cxhub::{DEFAULT_DATABASE_URL, ServeArgs};
use cxhub_server::LogFormat;
use cxhub_store::StoreOptions;

/// cxhub: one gRPC hub for customer-experience data.
#[derive(Parser, Debug)]
#[command(name = "cxhub", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Serve the hub: every built service on one port, with health and reflection.
    Serve(Box<ServeArgs>),
    /// Apply pending database migrations, then exit.
    Migrate(DatabaseArgs),
    /// Load the demo touchpoint registry (if the registry is empty), then exit.
    DemoSeed(DatabaseArgs),
}

#[derive(Args, Debug)]
struct DatabaseArgs {
    /// Database URL: `sqlite://path/to/file.db` or `postgres://user@host:port/db`.
    #[arg(long, env = "CXHUB_DATABASE_URL", default_value = DEFAULT_DATABASE_URL)]
    database_url: String,
    /// Log format: `plain` or `json`.
    #[arg(long, env = "CXHUB_LOG_FORMAT", default_value = "plain")]
    log_format: LogFormat,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => {
            let settings = args.resolve()?;
            let telemetry = cxhub_server::init_telemetry(settings.log_format)?;
            let result = serve(settings).await;
            if let Err(err) = &result {
                tracing::error!(error = format!("{err:#}"), "cxhub stopped");
            }
            telemetry.shutdown();
            result
        }
        Command::Migrate(db) => {
            let telemetry = cxhub_server::init_telemetry(db.log_format)?;
            cxhub::open_store(&db.database_url, StoreOptions::default()).await?;
            tracing::info!("migrations applied");
            telemetry.shutdown();
            Ok(())
        }
        Command::DemoSeed(db) => {
            let telemetry = cxhub_server::init_telemetry(db.log_format)?;
            let store = cxhub::open_store(&db.database_url, StoreOptions::default()).await?;
            let (touchpoints, journeys) = cxhub_touchpoint_registry::seed_demo(&store).await?;
            if touchpoints == 0 {
                tracing::info!("the registry already holds touchpoints: nothing loaded");
            } else {
                tracing::info!(touchpoints, journeys, "demo registry loaded");
            }
            telemetry.shutdown();
            Ok(())
        }
    }
}

async fn serve(settings: cxhub::Settings) -> anyhow::Result<()> {
    cxhub_server::check_auth_config(&settings.serve, settings.listen)?;
    let store = cxhub::open_store(&settings.database_url, StoreOptions::default()).await?;
    tracing::info!(
        backend = store.backend(),
        database = %cxhub::redact(&settings.database_url),
        "database ready"
    );
    let listener = tokio::net::TcpListener::bind(settings.listen)
        .await
        .with_context(|| format!("binding {}", settings.listen))?;
    cxhub::serve_on(&settings, store, listener, cxhub_server::shutdown_signal()).await
}
