//! What the benchmarks share: the CDNOW purchase histories and a hub serving on a free port.

#![allow(dead_code)]

use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};
use cxhub_store::StoreOptions;
use tonic::transport::Channel;

/// One line of CDNOW_master.txt: a customer's purchase of some CDs on a day.
pub struct Purchase {
    pub customer: u32,
    pub date: NaiveDate,
    pub cds: i64,
    pub cents: i64,
}

fn cdnow_path() -> PathBuf {
    if let Ok(dir) = std::env::var("CXHUB_CDNOW_DIR") {
        return PathBuf::from(dir).join("CDNOW_master.txt");
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/cdnow/CDNOW_master.txt")
}

/// Every purchase of CDNOW_master.txt (23,570 customers, 69,659 lines), in file order.
pub fn load_cdnow() -> Vec<Purchase> {
    let path = cdnow_path();
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e} (set CXHUB_CDNOW_DIR)", path.display()));
    text.lines()
        .filter_map(|line| {
            let mut f = line.split_whitespace();
            let customer = f.next()?.parse().ok()?;
            let date = NaiveDate::parse_from_str(f.next()?, "%Y%m%d").ok()?;
            let cds = f.next()?.parse().ok()?;
            let dollars: f64 = f.next()?.parse().ok()?;
            #[allow(clippy::cast_possible_truncation)]
            let cents = (dollars * 100.0).round() as i64;
            Some(Purchase {
                customer,
                date,
                cds,
                cents,
            })
        })
        .collect()
}

pub fn ts(t: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: t.timestamp(),
        nanos: 0,
    }
}

pub fn noon(d: NaiveDate) -> DateTime<Utc> {
    d.and_hms_opt(12, 0, 0).expect("noon").and_utc()
}

/// A hub serving `services` on a free local port, in this process.
pub struct Hub {
    pub channel: Channel,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

/// Starts a hub on `url` with `services`, 64 MiB messages and a 10-minute request timeout (a
/// benchmark's long admin calls must not be cut short).
pub async fn start_hub(url: &str, options: StoreOptions, services: &[&str]) -> Hub {
    let args = cxhub::ServeArgs {
        database_url: Some(url.to_owned()),
        services: Some(services.iter().map(|s| (*s).to_owned()).collect()),
        max_message_bytes: Some(64 * 1024 * 1024),
        request_timeout: Some(Duration::from_secs(600)),
        ..Default::default()
    };
    let store = cxhub::open_store(url, options).await.expect("store");
    serve_store(args, store).await
}

/// Serves `store` with the settings of `args` on a free local port (whatever `args.listen`
/// says), in this process.
pub async fn serve_store(args: cxhub::ServeArgs, store: cxhub_store::Store) -> Hub {
    let args = cxhub::ServeArgs {
        listen: Some("127.0.0.1:0".parse().unwrap()),
        ..args
    };
    let settings = args.resolve().expect("settings");
    let listener = tokio::net::TcpListener::bind(settings.listen)
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        cxhub::serve_on(&settings, store, listener, async move {
            let _ = rx.await;
        })
        .await
    });
    let uri: tonic::transport::Uri = format!("http://{addr}").parse().unwrap();
    let channel = loop {
        if let Ok(c) = Channel::builder(uri.clone()).connect().await {
            break c;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    Hub {
        channel,
        shutdown: Some(tx),
        task,
    }
}

impl Hub {
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        let _ = self.task.await;
    }
}
