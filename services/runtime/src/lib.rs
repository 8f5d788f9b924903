//! Process plumbing shared by every Parley service, so each service crate
//! holds only its own logic.
//!
//! # Layout
//! - [`config`]: settings from the environment and an optional TOML file,
//!   every bad setting reported at once.
//! - [`telemetry`]: structured logs, OpenTelemetry spans over OTLP, the W3C
//!   propagator.
//! - [`propagation`]: tower layers that continue and pass on `traceparent`.
//! - [`server`]: the tonic server with health, reflection, timeouts,
//!   concurrency limit, load shedding and graceful shutdown.
//! - [`client`]: channels to other services with the same propagation.
//! - [`tls`]: optional TLS and mutual TLS from PEM files.
//! - [`process`]: the start and end of every binary's `main`.
//! - [`service`]: the one start-up path of every service binary (settings
//!   → telemetry → bind → the crate's `run`).
//!
//! A service crate exposes `run(listener, server, config, shutdown)`, which
//! hands its tonic services to [`server::GrpcServer`]; its binary calls
//! [`service::serve_from_env`], and the stack builder calls `run` directly.

pub mod client;
pub mod config;
pub mod metrics;
pub mod process;
pub mod propagation;
pub mod server;
pub mod service;
pub mod telemetry;
pub mod tls;

/// Completes on SIGTERM or SIGINT (Ctrl-C): the signal to drain and stop.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for ctrl-c");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for sigterm");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}
