//! The one start-up path every service binary shares: settings (every bad
//! one reported at once) → telemetry → bind → the crate's own
//! `run(listener, server, config, shutdown)`, which the stack builder in
//! `tests/` also calls in-process.

use std::{future::Future, net::SocketAddr, pin::Pin};

use anyhow::Context as _;
use tokio::net::TcpListener;

use crate::{
    config::{EnvSource, ProcessEnv, Settings},
    server::ServerConfig,
    telemetry::{self, TelemetryConfig},
};

/// Completes when the service should drain and stop.
pub type Shutdown = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// Binds `address`, with an error that says which address could not be
/// taken and why (most often: another process has it).
pub async fn bind(address: SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(address).await.with_context(|| {
        format!("cannot listen on {address} (is another process using that port?)")
    })
}

/// Reads the service's settings with `read` (plus the server and telemetry
/// settings every service has), reports every problem at once, starts
/// telemetry, binds, and hands over to `run` until SIGTERM or Ctrl-C.
///
/// `listen` (the `--listen` flag) overrides `PARLEY_LISTEN`.
pub async fn serve_from_env<C>(
    name: &'static str,
    default_listen: &str,
    listen: Option<SocketAddr>,
    read: impl FnOnce(&mut Settings<'_>) -> C,
    run: impl AsyncFnOnce(TcpListener, ServerConfig, C, Shutdown) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    serve_with_env(&ProcessEnv, name, default_listen, listen, read, run).await
}

/// [`serve_from_env`] over any environment (tests pass a map).
pub async fn serve_with_env<C>(
    env: &dyn EnvSource,
    name: &'static str,
    default_listen: &str,
    listen: Option<SocketAddr>,
    read: impl FnOnce(&mut Settings<'_>) -> C,
    run: impl AsyncFnOnce(TcpListener, ServerConfig, C, Shutdown) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let mut settings = Settings::new(env);
    let telemetry_config = TelemetryConfig::from_settings(&mut settings, name);
    let default_listen: SocketAddr = default_listen
        .parse()
        .with_context(|| format!("default listen address {default_listen:?}"))?;
    let mut server = ServerConfig::from_settings(&mut settings, default_listen);
    if let Some(listen) = listen {
        server.listen = listen;
    }
    let config = read(&mut settings);
    settings.finish()?;
    let telemetry = telemetry::init(&telemetry_config).map_err(|e| anyhow::anyhow!("{e}"))?;
    if let Some(address) = telemetry_config.metrics_listen {
        let metrics = bind(address).await?;
        tracing::info!(address = %metrics.local_addr()?, "metrics at /metrics");
        tokio::spawn(crate::metrics::serve(
            metrics,
            telemetry.registry.clone(),
            crate::shutdown_signal(),
        ));
    }
    let listener = bind(server.listen).await?;
    tracing::info!(address = %listener.local_addr()?, "{name} serving");
    run(listener, server, config, Box::pin(crate::shutdown_signal())).await
}
