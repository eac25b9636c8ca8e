//! Serving registered services with health, reflection, the hub middleware, and a bounded
//! graceful shutdown.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context as _;
use prost::Message as _;
use tonic::service::RoutesBuilder;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;
use tonic_health::ServingStatus;

use crate::auth::{Access, TokenConfig, TokenStore};
use crate::middleware::HubLayer;

/// The health service, public and exempt from the concurrency limit.
pub const HEALTH_SERVICE: &str = "grpc.health.v1.Health";
/// The reflection services (v1 and v1alpha, which grpcurl 1.8 needs), public.
pub const REFLECTION_SERVICES: [&str; 2] = [
    "grpc.reflection.v1.ServerReflection",
    "grpc.reflection.v1alpha.ServerReflection",
];

/// One gRPC method and the scope it needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MethodAccess {
    /// Method name as in the proto, e.g. `CreateTouchpoint`.
    pub method: &'static str,
    /// What a caller needs to call it.
    pub access: Access,
}

/// A service the hub can serve, supplied by each service crate.
pub struct ServiceRegistration {
    /// CLI name, e.g. `touchpoints`.
    pub short_name: &'static str,
    /// Fully-qualified gRPC name, e.g. `cxhub.touchpoint.v1.TouchpointRegistryService`; also the
    /// name its health status is reported under.
    pub grpc_name: &'static str,
    /// Every method of the service and what it needs.
    pub methods: &'static [MethodAccess],
    /// Adds the tonic server to the routes; the service crate applies
    /// `max_decoding_message_size`/`max_encoding_message_size` from [`Limits`].
    pub add: AddService,
}

/// Adds one service's tonic server to the routes, applying the message size [`Limits`].
pub type AddService = Box<dyn FnOnce(&mut RoutesBuilder, &Limits) + Send>;

impl std::fmt::Debug for ServiceRegistration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceRegistration")
            .field("short_name", &self.short_name)
            .field("grpc_name", &self.grpc_name)
            .field("methods", &self.methods)
            .finish_non_exhaustive()
    }
}

/// Limits applied to every call.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Largest message a service decodes or encodes, in bytes.
    pub max_message_bytes: usize,
    /// Calls (open streams included) served at once by the whole process; health checks are
    /// exempt.
    pub max_concurrent_requests: usize,
    /// Longest a call may take to produce its response headers; a shorter `grpc-timeout` from
    /// the caller wins.
    pub request_timeout: Duration,
}

impl Default for Limits {
    /// 4 MiB messages, 256 concurrent calls, 30 s per call.
    fn default() -> Self {
        Limits {
            max_message_bytes: 4 * 1024 * 1024,
            max_concurrent_requests: 256,
            request_timeout: Duration::from_secs(30),
        }
    }
}

/// How to serve.
#[derive(Clone, Debug)]
pub struct ServeConfig {
    /// Limits applied to every call.
    pub limits: Limits,
    /// How long in-flight calls get to finish after shutdown is requested.
    pub drain_timeout: Duration,
    /// Accepted bearer tokens; empty means every caller is [`crate::Principal::anonymous`].
    pub tokens: Vec<TokenConfig>,
    /// Allows listening on a non-loopback address without tokens.
    pub allow_unauthenticated: bool,
}

impl Default for ServeConfig {
    /// Default limits, 10 s drain, no tokens, loopback only.
    fn default() -> Self {
        ServeConfig {
            limits: Limits::default(),
            drain_timeout: Duration::from_secs(10),
            tokens: Vec::new(),
            allow_unauthenticated: false,
        }
    }
}

/// Refuses (Err with a clear message) to listen on a non-loopback address with no tokens unless
/// allow_unauthenticated. `serve` calls it too.
pub fn check_auth_config(config: &ServeConfig, addr: SocketAddr) -> anyhow::Result<()> {
    if config.tokens.is_empty() && !addr.ip().is_loopback() && !config.allow_unauthenticated {
        anyhow::bail!(
            "refusing to listen on {addr} without authentication: configure at least one token \
             (--auth-token), listen on a loopback address, or pass --allow-unauthenticated \
             (CXHUB_ALLOW_UNAUTHENTICATED=true)"
        );
    }
    Ok(())
}

/// Full path → Access table for a set of registrations, plus health/reflection as Public.
pub fn access_table(services: &[ServiceRegistration]) -> HashMap<String, Access> {
    let mut table = HashMap::new();
    for method in ["Check", "Watch", "List"] {
        table.insert(format!("/{HEALTH_SERVICE}/{method}"), Access::Public);
    }
    for service in REFLECTION_SERVICES {
        table.insert(format!("/{service}/ServerReflectionInfo"), Access::Public);
    }
    for service in services {
        for method in service.methods {
            table.insert(
                format!("/{}/{}", service.grpc_name, method.method),
                method.access,
            );
        }
    }
    table
}

/// Every method of every service in cxhub_proto::FILE_DESCRIPTOR_SET as "/pkg.Service/Method"
/// (decode with prost_types::FileDescriptorSet) — used by a test asserting every RPC declares a
/// scope.
pub fn descriptor_methods() -> Vec<String> {
    // The set is generated at build time; a decoding failure would be a build bug, and it
    // shows as an empty list, which the checking test then reports.
    let Ok(set) = prost_types::FileDescriptorSet::decode(cxhub_proto::FILE_DESCRIPTOR_SET) else {
        tracing::error!("the embedded file descriptor set does not decode");
        return Vec::new();
    };
    let mut methods = Vec::new();
    for file in &set.file {
        let package = file.package();
        for service in &file.service {
            let service_name = if package.is_empty() {
                service.name().to_owned()
            } else {
                format!("{package}.{}", service.name())
            };
            for method in &service.method {
                methods.push(format!("/{service_name}/{}", method.name()));
            }
        }
    }
    methods.sort();
    methods
}

/// A future that resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(err) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %err, "cannot listen for ctrl-c");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(err) => {
                tracing::error!(error = %err, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();

    tokio::select! {
        () = ctrl_c => tracing::info!("ctrl-c received"),
        () = terminate => tracing::info!("SIGTERM received"),
    }
}

/// Serves the given services plus health and reflection on `listener` until `shutdown` resolves;
/// then health turns NOT_SERVING at once, in-flight calls get `drain_timeout` to finish, and the
/// function returns even if a client never reads (the drain is bounded here: hyper can hang,
/// hyper#4170). Connections still open after the drain are left to the runtime's shutdown.
pub async fn serve(
    config: ServeConfig,
    listener: tokio::net::TcpListener,
    services: Vec<ServiceRegistration>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let addr = listener
        .local_addr()
        .context("cannot read the listener's address")?;
    check_auth_config(&config, addr)?;
    anyhow::ensure!(
        config.limits.max_concurrent_requests > 0,
        "max_concurrent_requests must be at least 1"
    );

    let access = access_table(&services);
    let layer = HubLayer::new(
        access,
        TokenStore::new(&config.tokens),
        config.limits.max_concurrent_requests,
        config.limits.request_timeout,
    );

    let (health, health_server) = tonic_health::server::health_reporter();
    let mut health_names = vec![String::new()];
    health_names.extend(services.iter().map(|s| s.grpc_name.to_owned()));
    for name in &health_names {
        health
            .set_service_status(name, ServingStatus::Serving)
            .await;
    }

    let mut routes = RoutesBuilder::default();
    routes.add_service(health_server);
    routes.add_service(
        reflection_builder(&services)
            .build_v1()
            .context("cannot build the reflection service (v1)")?,
    );
    routes.add_service(
        reflection_builder(&services)
            .build_v1alpha()
            .context("cannot build the reflection service (v1alpha)")?,
    );
    let short_names: Vec<&'static str> = services.iter().map(|s| s.short_name).collect();
    let grpc_names: Vec<&'static str> = services.iter().map(|s| s.grpc_name).collect();
    for service in services {
        (service.add)(&mut routes, &config.limits);
    }

    let (drain_tx, drain_rx) = tokio::sync::oneshot::channel::<()>();
    let signal = async move {
        shutdown.await;
        for name in &health_names {
            health
                .set_service_status(name, ServingStatus::NotServing)
                .await;
        }
        tracing::info!("shutting down: health is NOT_SERVING, draining in-flight calls");
        let _ = drain_tx.send(());
    };

    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    tracing::info!(
        %addr,
        services = ?short_names,
        grpc_services = ?grpc_names,
        auth = if config.tokens.is_empty() { "none" } else { "bearer" },
        "listening"
    );

    let server = Server::builder()
        .layer(layer)
        .add_routes(routes.routes())
        .serve_with_incoming_shutdown(incoming, signal);
    let drain_timeout = config.drain_timeout;
    let drain_deadline = async move {
        if drain_rx.await.is_err() {
            std::future::pending::<()>().await;
        }
        tokio::time::sleep(drain_timeout).await;
    };

    tokio::select! {
        result = server => {
            result.context("the gRPC server failed")?;
            tracing::info!("all connections closed");
        }
        () = drain_deadline => {
            tracing::warn!(
                drain_timeout_ms = drain_timeout.as_millis() as u64,
                "drain timed out; abandoning the connections still open"
            );
        }
    }
    Ok(())
}

/// Reflection over the hub's descriptors, advertising only the services actually served.
fn reflection_builder(
    services: &[ServiceRegistration],
) -> tonic_reflection::server::Builder<'static> {
    let mut builder = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(cxhub_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_types::pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET)
        .with_service_name(HEALTH_SERVICE);
    for name in REFLECTION_SERVICES {
        builder = builder.with_service_name(name);
    }
    for service in services {
        builder = builder.with_service_name(service.grpc_name);
    }
    builder
}
