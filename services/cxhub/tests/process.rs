//! The `cxhub` binary as an operator runs it: a real process, killed with SIGKILL or stopped
//! with SIGTERM. (SQLite; PostgreSQL's own durability is PostgreSQL's job.)

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cxhub_proto::touchpoint::v1 as pb;
use pb::touchpoint_registry_service_client::TouchpointRegistryServiceClient;
use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

fn start(db: &Path, port: u16) -> Child {
    Command::new(env!("CARGO_BIN_EXE_cxhub"))
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .args(["--database-url", &format!("sqlite://{}", db.display())])
        .args(["--drain-timeout", "2s"])
        .env_remove("CXHUB_CONFIG")
        .env_remove("CXHUB_AUTH_TOKENS")
        .env_remove("CXHUB_SERVICES")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("cxhub starts")
}

/// Waits until the hub answers its health check as SERVING.
async fn connect(port: u16) -> Channel {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(channel) = Channel::from_shared(format!("http://127.0.0.1:{port}"))
            .expect("uri")
            .connect()
            .await
        {
            let health = HealthClient::new(channel.clone())
                .check(HealthCheckRequest {
                    service: String::new(),
                })
                .await;
            if health.is_ok_and(|r| r.into_inner().status == ServingStatus::Serving as i32) {
                return channel;
            }
        }
        assert!(
            Instant::now() < deadline,
            "the hub did not become healthy within 30 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn touchpoint(i: usize) -> pb::Touchpoint {
    pb::Touchpoint {
        key: format!("durable.t{i:04}"),
        name: format!("Durable {i}"),
        channel: pb::Channel::Web as i32,
        stage: pb::JourneyStage::Usage as i32,
        department: "digital".into(),
        main: true,
        ..Default::default()
    }
}

#[tokio::test]
async fn acknowledged_writes_survive_kill_9() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("hub.db");
    let port = free_port();
    let mut hub = start(&db, port);
    let mut client = TouchpointRegistryServiceClient::new(connect(port).await);

    // Acknowledged one by one, then the process dies without any chance to flush.
    let mut acknowledged = Vec::new();
    for i in 0..200 {
        let created = client
            .create_touchpoint(pb::CreateTouchpointRequest {
                touchpoint: Some(touchpoint(i)),
                request_id: format!("durable-{i}"),
            })
            .await
            .expect("create acknowledged")
            .into_inner()
            .touchpoint
            .expect("touchpoint");
        acknowledged.push(created);
    }
    hub.kill().expect("SIGKILL");
    hub.wait().expect("reaped");

    let port = free_port();
    let mut hub = start(&db, port);
    let mut client = TouchpointRegistryServiceClient::new(connect(port).await);
    for before in &acknowledged {
        let after = client
            .get_touchpoint(pb::GetTouchpointRequest {
                lookup: Some(pb::get_touchpoint_request::Lookup::Key(before.key.clone())),
            })
            .await
            .unwrap_or_else(|status| panic!("{} lost after kill -9: {status:?}", before.key))
            .into_inner()
            .touchpoint;
        assert_eq!(after.as_ref(), Some(before));
    }
    // A retry of an acknowledged request after the crash answers the first result.
    let retry = client
        .create_touchpoint(pb::CreateTouchpointRequest {
            touchpoint: Some(touchpoint(7)),
            request_id: "durable-7".into(),
        })
        .await
        .expect("retry after restart")
        .into_inner()
        .touchpoint;
    assert_eq!(retry.as_ref(), Some(&acknowledged[7]));
    hub.kill().expect("SIGKILL");
    hub.wait().expect("reaped");
}

#[tokio::test]
async fn sigterm_stops_the_hub_cleanly() {
    let dir = tempfile::tempdir().expect("temp dir");
    let port = free_port();
    let mut hub = start(&dir.path().join("hub.db"), port);
    connect(port).await;
    let sent = Command::new("kill")
        .args(["-TERM", &hub.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(sent.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = hub.try_wait().expect("wait") {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "the hub did not exit within 10 s of SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "exit status {status:?}");
}

#[test]
fn a_public_address_without_tokens_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let output = Command::new(env!("CARGO_BIN_EXE_cxhub"))
        .args(["serve", "--listen", "0.0.0.0:0"])
        .args([
            "--database-url",
            &format!("sqlite://{}", dir.path().join("hub.db").display()),
        ])
        .env_remove("CXHUB_AUTH_TOKENS")
        .env_remove("CXHUB_ALLOW_UNAUTHENTICATED")
        .env_remove("CXHUB_CONFIG")
        .output()
        .expect("cxhub runs");
    assert!(!output.status.success(), "it must refuse to start");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("allow-unauthenticated"),
        "the refusal says how to proceed: {stderr}"
    );
}

#[test]
fn serve_help_documents_every_setting() {
    let output = Command::new(env!("CARGO_BIN_EXE_cxhub"))
        .args(["serve", "--help"])
        .output()
        .expect("cxhub runs");
    let help = String::from_utf8_lossy(&output.stdout);
    for flag in [
        "--listen",
        "--database-url",
        "--services",
        "--config",
        "--demo",
        "--log-format",
        "--max-message-bytes",
        "--max-concurrent-requests",
        "--request-timeout",
        "--drain-timeout",
        "--auth-token",
        "--allow-unauthenticated",
        "CXHUB_LISTEN",
        "CXHUB_DATABASE_URL",
    ] {
        assert!(
            help.contains(flag),
            "{flag} missing from serve --help:\n{help}"
        );
    }
}
