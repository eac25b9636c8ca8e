//! Tests over the whole crate: configuration checks, the access table, and `serve` end to end.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_stream::StreamExt as _;
use tonic::Code;
use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_reflection::pb::v1::ServerReflectionRequest;
use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
use tonic_types::StatusExt as _;

use crate::{
    Access, Limits, MethodAccess, ServeConfig, ServiceRegistration, TokenConfig, access_table,
    check_auth_config, descriptor_methods, serve,
};

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("address")
}

#[test]
fn loopback_without_tokens_is_allowed() {
    let config = ServeConfig::default();
    assert!(check_auth_config(&config, addr("127.0.0.1:50051")).is_ok());
    assert!(check_auth_config(&config, addr("[::1]:50051")).is_ok());
}

#[test]
fn public_address_without_tokens_is_refused() {
    let config = ServeConfig::default();
    let err = check_auth_config(&config, addr("0.0.0.0:50051")).expect_err("refused");
    assert!(err.to_string().contains("without authentication"), "{err}");

    let allowed = ServeConfig {
        allow_unauthenticated: true,
        ..ServeConfig::default()
    };
    assert!(check_auth_config(&allowed, addr("0.0.0.0:50051")).is_ok());

    let with_tokens = ServeConfig {
        tokens: vec!["ops:admin:t0ken".parse::<TokenConfig>().expect("token")],
        ..ServeConfig::default()
    };
    assert!(check_auth_config(&with_tokens, addr("0.0.0.0:50051")).is_ok());
}

#[test]
fn access_table_covers_services_health_and_reflection() {
    static METHODS: [MethodAccess; 2] = [
        MethodAccess {
            method: "GetThing",
            access: Access::Scope("things:read"),
        },
        MethodAccess {
            method: "Ping",
            access: Access::Public,
        },
    ];
    let registration = ServiceRegistration {
        short_name: "things",
        grpc_name: "cxhub.thing.v1.ThingService",
        methods: &METHODS,
        add: Box::new(|_, _| {}),
    };
    let table = access_table(&[registration]);
    assert_eq!(
        table.get("/cxhub.thing.v1.ThingService/GetThing"),
        Some(&Access::Scope("things:read"))
    );
    assert_eq!(
        table.get("/cxhub.thing.v1.ThingService/Ping"),
        Some(&Access::Public)
    );
    for public in [
        "/grpc.health.v1.Health/Check",
        "/grpc.health.v1.Health/Watch",
        "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
        "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
    ] {
        assert_eq!(table.get(public), Some(&Access::Public), "{public}");
    }
    assert!(!table.contains_key("/cxhub.thing.v1.ThingService/DeleteThing"));
}

#[test]
fn descriptor_methods_lists_full_paths() {
    let methods = descriptor_methods();
    assert!(!methods.is_empty());
    for method in &methods {
        let rest = method.strip_prefix("/cxhub.").expect("cxhub package");
        let (service, name) = rest.split_once('/').expect("service/method");
        assert!(service.contains('.') && !name.is_empty(), "{method}");
    }
}

struct Hub {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<anyhow::Result<()>>,
}

async fn start(config: ServeConfig) -> Hub {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("address");
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(serve(config, listener, Vec::new(), async move {
        let _ = stopped.await;
    }));
    Hub {
        addr,
        stop: Some(stop),
        task,
    }
}

async fn channel(addr: SocketAddr) -> Channel {
    Channel::from_shared(format!("http://{addr}"))
        .expect("uri")
        .connect()
        .await
        .expect("connect")
}

fn health_request(service: &str) -> HealthCheckRequest {
    HealthCheckRequest {
        service: service.to_owned(),
    }
}

fn list_services() -> ServerReflectionRequest {
    ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    }
}

#[tokio::test]
async fn shutdown_turns_health_not_serving_and_bounds_the_drain() {
    let drain_timeout = Duration::from_millis(300);
    let mut hub = start(ServeConfig {
        drain_timeout,
        ..ServeConfig::default()
    })
    .await;
    let mut health = HealthClient::new(channel(hub.addr).await);

    let checked = health
        .check(health_request(""))
        .await
        .expect("check")
        .into_inner();
    assert_eq!(checked.status(), ServingStatus::Serving);

    let mut watch = health
        .watch(health_request(""))
        .await
        .expect("watch")
        .into_inner();
    let first = watch.message().await.expect("first").expect("an update");
    assert_eq!(first.status(), ServingStatus::Serving);
    // A second watcher that never reads: its stream never ends, so the drain cannot finish.
    let _never_read = health
        .clone()
        .watch(health_request(""))
        .await
        .expect("watch")
        .into_inner();

    if let Some(stop) = hub.stop.take() {
        let _ = stop.send(());
    }
    let update = watch.message().await.expect("update").expect("an update");
    assert_eq!(update.status(), ServingStatus::NotServing);

    let returned = tokio::time::timeout(drain_timeout + Duration::from_secs(1), &mut hub.task)
        .await
        .expect("serve returned despite the open stream");
    returned.expect("task").expect("serve");
}

#[tokio::test]
async fn open_streams_count_against_the_limit_but_health_is_exempt() {
    let mut hub = start(ServeConfig {
        limits: Limits {
            max_concurrent_requests: 1,
            ..Limits::default()
        },
        drain_timeout: Duration::from_millis(100),
        ..ServeConfig::default()
    })
    .await;
    let channel = channel(hub.addr).await;
    let mut reflection = ServerReflectionClient::new(channel.clone());

    // Holds the only permit: the request stream never ends, so neither does the response.
    let requests = tokio_stream::once(list_services()).chain(tokio_stream::pending());
    let mut open = reflection
        .server_reflection_info(requests)
        .await
        .expect("first reflection call")
        .into_inner();
    let listed = open.message().await.expect("listing").expect("a response");
    let Some(MessageResponse::ListServicesResponse(list)) = listed.message_response else {
        panic!("expected a service list, got {listed:?}");
    };
    let names: Vec<_> = list.service.iter().map(|s| s.name.as_str()).collect();
    assert!(names.contains(&"grpc.health.v1.Health"), "{names:?}");

    let refused = match reflection
        .server_reflection_info(tokio_stream::once(list_services()))
        .await
    {
        Ok(response) => response
            .into_inner()
            .message()
            .await
            .expect_err("the second call must be refused"),
        Err(status) => status,
    };
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    let details = refused.get_error_details();
    assert_eq!(
        details.error_info().map(|info| info.reason.as_str()),
        Some("CONCURRENCY_LIMIT")
    );
    assert!(details.retry_info().is_some());

    let mut health = HealthClient::new(channel);
    let checked = health
        .check(health_request(""))
        .await
        .expect("health is exempt")
        .into_inner();
    assert_eq!(checked.status(), ServingStatus::Serving);

    drop(open);
    if let Some(stop) = hub.stop.take() {
        let _ = stop.send(());
    }
    let _ = tokio::time::timeout(Duration::from_secs(5), &mut hub.task).await;
}
