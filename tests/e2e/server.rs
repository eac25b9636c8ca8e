//! What every service shares, end to end: scopes, authentication, limits, health, reflection
//! and graceful shutdown.

use std::time::Duration;

use cxhub_proto::touchpoint::v1 as pb;
use cxhub_testkit::{TestHub, with_token};
use tonic::Code;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_reflection::pb::v1alpha::ServerReflectionRequest;
use tonic_reflection::pb::v1alpha::server_reflection_client::ServerReflectionClient;
use tonic_reflection::pb::v1alpha::server_reflection_request::MessageRequest;
use tonic_reflection::pb::v1alpha::server_reflection_response::MessageResponse;

use crate::{refused, rid, touchpoint};

const SERVICE: &str = "cxhub.touchpoint.v1.TouchpointRegistryService";

#[tokio::test]
async fn every_rpc_in_the_descriptor_set_declares_a_scope() {
    let hub = TestHub::start().await;
    let registrations =
        cxhub::registrations(&hub.store, &hub.settings.services, &hub.settings.feeds)
            .expect("registrations");
    let table = cxhub_server::access_table(&registrations);
    let methods = cxhub_server::descriptor_methods();
    assert!(
        methods.len() >= 16,
        "the descriptor set lists the registry's RPCs: {methods:?}"
    );
    for method in &methods {
        match table.get(method) {
            Some(cxhub_server::Access::Scope(scope)) => assert!(!scope.is_empty(), "{method}"),
            Some(cxhub_server::Access::Public) => {
                panic!("{method} is public: cxhub RPCs need a scope")
            }
            None => panic!("{method} declares no scope"),
        }
    }
}

async fn health(channel: tonic::transport::Channel, service: &str) -> Result<i32, tonic::Status> {
    HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: service.to_owned(),
        })
        .await
        .map(|r| r.into_inner().status)
}

#[tokio::test]
async fn health_and_reflection_answer_for_the_server_and_each_service() {
    let hub = TestHub::start().await;
    let channel = hub.channel().await;
    assert_eq!(
        health(channel.clone(), "").await.expect("overall"),
        ServingStatus::Serving as i32
    );
    assert_eq!(
        health(channel.clone(), SERVICE).await.expect("service"),
        ServingStatus::Serving as i32
    );
    assert_eq!(
        health(channel.clone(), "no.such.Service")
            .await
            .expect_err("unknown")
            .code(),
        Code::NotFound
    );

    // grpcurl 1.8 speaks reflection v1alpha only.
    let mut reflection = ServerReflectionClient::new(channel);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut stream = reflection
        .server_reflection_info(tokio_stream::iter(vec![request]))
        .await
        .expect("reflection")
        .into_inner();
    let response = stream
        .message()
        .await
        .expect("answer")
        .expect("one message");
    let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
        panic!("unexpected reflection answer {response:?}");
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    for expected in [SERVICE, "grpc.health.v1.Health"] {
        assert!(
            names.iter().any(|n| n == expected),
            "{expected} missing from {names:?}"
        );
    }
}

#[tokio::test]
async fn tokens_and_scopes_are_enforced() {
    let hub = TestHub::builder()
        .token("dashboard:touchpoints:read:read-secret")
        .token("crm-sync:touchpoints:read+touchpoints:write:write-secret")
        .token("ops:admin:admin-secret")
        .start()
        .await;
    let mut c = hub.touchpoints().await;
    let list = || pb::ListTouchpointsRequest::default();
    let create = || pb::CreateTouchpointRequest {
        touchpoint: Some(touchpoint("web.auth-test")),
        request_id: rid(),
    };

    refused(
        c.list_touchpoints(list()).await,
        Code::Unauthenticated,
        "MISSING_TOKEN",
    );
    refused(
        c.list_touchpoints(with_token(list(), "wrong-secret")).await,
        Code::Unauthenticated,
        "INVALID_TOKEN",
    );
    c.list_touchpoints(with_token(list(), "read-secret"))
        .await
        .expect("reader lists");
    let status = refused(
        c.create_touchpoint(with_token(create(), "read-secret"))
            .await,
        Code::PermissionDenied,
        "MISSING_SCOPE",
    );
    assert!(status.message().contains("touchpoints:write"), "{status:?}");
    c.create_touchpoint(with_token(create(), "write-secret"))
        .await
        .expect("writer creates");
    c.list_touchpoints(with_token(list(), "admin-secret"))
        .await
        .expect("admin reads");

    // Probes and reflection need no token.
    assert_eq!(
        health(hub.channel().await, "")
            .await
            .expect("health without a token"),
        ServingStatus::Serving as i32
    );
}

#[tokio::test]
async fn an_oversized_message_is_refused() {
    let hub = TestHub::builder()
        .max_message_bytes(64 * 1024)
        .start()
        .await;
    let mut c = hub.touchpoints().await;
    let big: Vec<_> = (0..400)
        .map(|i| pb::Touchpoint {
            description: "x".repeat(1000),
            ..touchpoint(&format!("bulk.t{i}"))
        })
        .collect();
    let status = c
        .batch_create_touchpoints(pb::BatchCreateTouchpointsRequest {
            touchpoints: big,
            request_id: rid(),
        })
        .await
        .expect_err("over the limit");
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    let listed = c
        .list_touchpoints(pb::ListTouchpointsRequest::default())
        .await
        .expect("list")
        .into_inner();
    assert!(
        listed.touchpoints.is_empty(),
        "nothing of the refused batch was written"
    );
}

#[tokio::test]
async fn overload_is_refused_at_once_and_probes_still_answer() {
    let hub = TestHub::builder().max_concurrent_requests(1).start().await;
    let channel = hub.channel().await;

    // An open reflection stream holds the only slot.
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    let mut reflection = ServerReflectionClient::new(channel.clone());
    let held = tokio::spawn(async move {
        let stream = reflection
            .server_reflection_info(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await;
        stream.map(|s| s.into_inner())
    });
    tx.send(ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    })
    .await
    .expect("send");
    let mut stream = held.await.expect("task").expect("stream open");
    stream.message().await.expect("answer").expect("message");

    let mut c = pb::touchpoint_registry_service_client::TouchpointRegistryServiceClient::new(
        channel.clone(),
    );
    let status = refused(
        c.list_touchpoints(pb::ListTouchpointsRequest::default())
            .await,
        Code::ResourceExhausted,
        "CONCURRENCY_LIMIT",
    );
    let retry = tonic_types::StatusExt::get_details_retry_info(&status);
    assert!(
        retry.and_then(|r| r.retry_delay).is_some(),
        "RetryInfo tells when to retry: {status:?}"
    );
    assert_eq!(
        health(channel.clone(), "").await.expect("probe"),
        ServingStatus::Serving as i32
    );

    // Closing the stream frees the slot.
    drop(tx);
    while stream.message().await.ok().flatten().is_some() {}
    let mut ok = false;
    for _ in 0..50 {
        if c.list_touchpoints(pb::ListTouchpointsRequest::default())
            .await
            .is_ok()
        {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(ok, "the slot is released when the stream ends");
}

#[tokio::test]
async fn a_call_over_the_time_limit_is_deadline_exceeded_not_cancelled() {
    // The caller's own `grpc-timeout` is enforced by its client as well, so the server's
    // answer is observed here through the server-side limit; the min(limit, grpc-timeout)
    // rule is unit-tested in cxhub-server.
    let hub = TestHub::builder()
        .demo()
        .request_timeout(Duration::from_nanos(1))
        .start()
        .await;
    let mut c = hub.touchpoints().await;
    let status = c
        .get_touchpoint_tree(pb::GetTouchpointTreeRequest::default())
        .await
        .expect_err("deadline exceeded");
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
}

#[tokio::test]
async fn shutdown_turns_health_off_at_once_and_is_bounded_by_the_drain_time() {
    let mut hub = TestHub::builder()
        .drain_timeout(Duration::from_millis(500))
        .start()
        .await;
    let channel = hub.channel().await;
    let mut watch = HealthClient::new(channel.clone())
        .watch(HealthCheckRequest {
            service: SERVICE.to_owned(),
        })
        .await
        .expect("watch")
        .into_inner();
    let first = watch.message().await.expect("status").expect("message");
    assert_eq!(first.status, ServingStatus::Serving as i32);

    // A client that opens a stream and never reads it again keeps its connection open.
    hub.begin_shutdown();
    let next = tokio::time::timeout(Duration::from_secs(5), watch.message())
        .await
        .expect("health changes at once")
        .expect("status")
        .expect("message");
    assert_eq!(next.status, ServingStatus::NotServing as i32);

    let (result, waited) = hub.stop().await;
    result.expect("serve ends cleanly");
    assert!(
        waited < Duration::from_secs(5),
        "bounded drain, waited {waited:?}"
    );
    let refused_now = tonic::transport::Channel::builder(hub.uri())
        .connect_timeout(Duration::from_secs(2))
        .connect()
        .await;
    assert!(
        refused_now.is_err(),
        "no new connection is accepted after shutdown"
    );
}
