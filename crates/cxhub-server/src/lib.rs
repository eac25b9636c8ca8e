//! What every cxhub service shares: domain error → gRPC status, bearer-token auth with scopes,
//! the per-call middleware (span, auth, concurrency limit, deadline), health, reflection,
//! telemetry, and serving with a bounded graceful shutdown.
//!
//! A service crate supplies a [`ServiceRegistration`]; the binary passes them to [`serve`].

pub mod auth;
pub mod error;
mod middleware;
mod serve;
pub mod telemetry;
mod validate;

pub use auth::{Access, ParseTokenConfigError, Principal, TokenConfig, principal};
pub use error::to_status;
pub use serve::{
    AddService, HEALTH_SERVICE, Limits, MethodAccess, REFLECTION_SERVICES, ServeConfig,
    ServiceRegistration, access_table, check_auth_config, descriptor_methods, serve,
    shutdown_signal,
};
pub use telemetry::{LogFormat, ParseLogFormatError, TelemetryGuard, init_telemetry};
pub use validate::{request_key, validated};

#[cfg(test)]
mod tests;
