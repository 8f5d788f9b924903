//! The gRPC server every Parley service runs: health, reflection, trace
//! propagation, request timeout, concurrency limit, load shedding and a
//! graceful shutdown with a drain deadline.
//!
//! The tower stack, outermost first:
//! trace → errors-as-status → load shed → concurrency limit → timeout → routes.

use std::{
    convert::Infallible,
    future::Future,
    net::SocketAddr,
    task::{Context, Poll},
    time::Duration,
};

use futures::FutureExt as _;
use tokio::net::TcpListener;
use tonic::{
    body::Body,
    server::NamedService,
    service::RoutesBuilder,
    transport::{Server, server::TcpIncoming},
};
use tower::{
    BoxError, Layer, Service, ServiceBuilder, limit::ConcurrencyLimitLayer,
    load_shed::LoadShedLayer, timeout::TimeoutLayer,
};

use crate::{config::Settings, propagation::ServerTraceLayer, tls::ServerTls};

/// How the server listens and protects itself.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Address to listen on (`PARLEY_LISTEN` or `--listen`).
    pub listen: SocketAddr,
    /// Longest a request may take to produce its response headers.
    pub request_timeout: Duration,
    /// Requests handled at once across all connections.
    pub concurrency_limit: usize,
    /// Refuse requests at once with UNAVAILABLE when the limit is reached,
    /// instead of queueing them.
    pub load_shed: bool,
    /// How long in-flight requests may run after SIGTERM before the process
    /// stops anyway.
    pub shutdown_grace: Duration,
    /// HTTP/2 keep-alive ping interval.
    pub keepalive_interval: Duration,
    /// TLS (and mutual TLS); plaintext when `None`.
    pub tls: Option<ServerTls>,
}

impl ServerConfig {
    /// Defaults suitable for a local run on `listen`.
    pub fn local(listen: SocketAddr) -> Self {
        Self {
            listen,
            request_timeout: Duration::from_secs(30),
            concurrency_limit: 1024,
            load_shed: true,
            shutdown_grace: Duration::from_secs(10),
            keepalive_interval: Duration::from_secs(30),
            tls: None,
        }
    }

    /// Reads `PARLEY_LISTEN`, `PARLEY_REQUEST_TIMEOUT_MS`,
    /// `PARLEY_CONCURRENCY_LIMIT`, `PARLEY_LOAD_SHED`,
    /// `PARLEY_SHUTDOWN_GRACE_MS`, `PARLEY_KEEPALIVE_INTERVAL_MS` and the TLS
    /// settings.
    pub fn from_settings(settings: &mut Settings<'_>, default_listen: SocketAddr) -> Self {
        let defaults = Self::local(default_listen);
        let config = Self {
            listen: settings.parse("listen", default_listen),
            request_timeout: settings.millis("request_timeout_ms", defaults.request_timeout),
            concurrency_limit: settings.parse("concurrency_limit", defaults.concurrency_limit),
            load_shed: settings.flag("load_shed", defaults.load_shed),
            shutdown_grace: settings.millis("shutdown_grace_ms", defaults.shutdown_grace),
            keepalive_interval: settings
                .millis("keepalive_interval_ms", defaults.keepalive_interval),
            tls: ServerTls::from_settings(settings),
        };
        if config.concurrency_limit == 0 {
            settings.problem("concurrency_limit", "must be at least 1");
        }
        if config.request_timeout.is_zero() {
            settings.problem("request_timeout_ms", "must be at least 1");
        }
        config
    }
}

/// Why serving stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The TLS files could not be read.
    #[error("cannot load tls files: {0}")]
    Tls(#[from] std::io::Error),
    /// The transport failed.
    #[error("grpc transport failed: {0}")]
    Transport(#[from] tonic::transport::Error),
}

/// A gRPC server being assembled: add services, then [`GrpcServer::serve`].
pub struct GrpcServer {
    config: ServerConfig,
    routes: RoutesBuilder,
    service_names: Vec<&'static str>,
}

impl GrpcServer {
    /// Starts assembling a server.
    pub fn new(config: ServerConfig) -> Self {
        Self {
            config,
            routes: RoutesBuilder::default(),
            service_names: Vec::new(),
        }
    }

    /// Adds a generated tonic service; it is reported SERVING by health
    /// checks while the server runs.
    pub fn add_service<S>(mut self, service: S) -> Self
    where
        S: Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible>
            + NamedService
            + Clone
            + Send
            + Sync
            + 'static,
        S::Future: Send + 'static,
    {
        self.service_names.push(S::NAME);
        self.routes.add_service(service);
        self
    }

    /// Serves on `listener` until `shutdown` completes, then stops accepting,
    /// reports NOT_SERVING, and gives in-flight requests up to
    /// `shutdown_grace` to finish.
    pub async fn serve(
        mut self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServeError> {
        let (health, health_service) = tonic_health::server::health_reporter();
        for name in &self.service_names {
            health
                .set_service_status(*name, tonic_health::ServingStatus::Serving)
                .await;
        }
        health
            .set_service_status("", tonic_health::ServingStatus::Serving)
            .await;
        self.routes.add_service(health_service);
        self.routes.add_service(
            tonic_reflection::server::Builder::configure()
                .register_encoded_file_descriptor_set(parley_proto::FILE_DESCRIPTOR_SET)
                .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
                .build_v1()
                .expect("embedded descriptor sets are valid"),
        );
        self.routes.add_service(
            tonic_reflection::server::Builder::configure()
                .register_encoded_file_descriptor_set(parley_proto::FILE_DESCRIPTOR_SET)
                .build_v1alpha()
                .expect("embedded descriptor sets are valid"),
        );

        let config = &self.config;
        let stack = ServiceBuilder::new()
            .layer(ServerTraceLayer)
            .layer(ErrorStatusLayer)
            .option_layer(config.load_shed.then(LoadShedLayer::new))
            .layer(ConcurrencyLimitLayer::new(config.concurrency_limit))
            .layer(TimeoutLayer::new(config.request_timeout))
            .into_inner();
        let mut builder =
            Server::builder().http2_keepalive_interval(Some(config.keepalive_interval));
        if let Some(tls) = &config.tls {
            builder = builder.tls_config(tls.load()?)?;
        }

        let (draining_tx, draining_rx) = tokio::sync::oneshot::channel::<()>();
        let drain_health = health.clone();
        let signal = async move {
            shutdown.await;
            tracing::info!("shutdown requested: draining in-flight requests");
            drain_health
                .set_service_status("", tonic_health::ServingStatus::NotServing)
                .await;
            let _ = draining_tx.send(());
        };
        // Accepted sockets get TCP_NODELAY here: the builder's own setting
        // only applies to listeners tonic binds itself, and without it small
        // HTTP/2 frames wait ~40 ms for delayed ACKs.
        let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
        let server = builder
            .layer(stack)
            .add_routes(self.routes.routes())
            .serve_with_incoming_shutdown(incoming, signal);
        let grace = config.shutdown_grace;
        let deadline = draining_rx.then(|_| tokio::time::sleep(grace));
        tokio::select! {
            result = server => result?,
            () = deadline => {
                tracing::warn!(grace_ms = grace.as_millis() as u64, "drain deadline passed: stopping with requests in flight");
            }
        }
        Ok(())
    }
}

/// Turns errors from the protective layers into gRPC statuses, so a client
/// sees UNAVAILABLE or DEADLINE_EXCEEDED instead of a reset stream.
#[derive(Debug, Clone, Copy, Default)]
pub struct ErrorStatusLayer;

impl<S> Layer<S> for ErrorStatusLayer {
    type Service = ErrorStatus<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ErrorStatus { inner }
    }
}

/// The service [`ErrorStatusLayer`] produces.
#[derive(Debug, Clone)]
pub struct ErrorStatus<S> {
    inner: S,
}

/// The gRPC status for an error raised by a protective layer.
pub fn status_for_layer_error(error: &BoxError) -> tonic::Status {
    if error.is::<tower::load_shed::error::Overloaded>() {
        tonic::Status::unavailable("server overloaded: retry with backoff")
    } else if error.is::<tower::timeout::error::Elapsed>() {
        tonic::Status::deadline_exceeded("request timed out on the server")
    } else {
        tonic::Status::internal(format!("request failed: {error}"))
    }
}

impl<S, B> Service<http::Request<B>> for ErrorStatus<S>
where
    S: Service<http::Request<B>, Response = http::Response<Body>>,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = futures::future::BoxFuture<'static, Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        match self.inner.poll_ready(cx) {
            Poll::Ready(Err(e)) => {
                // A failed readiness check (e.g. overload) is reported on the
                // call itself; keep the connection usable.
                tracing::debug!(error = %e.into(), "service not ready");
                Poll::Ready(Ok(()))
            }
            other => other.map(|_| Ok(())),
        }
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let future = self.inner.call(request);
        Box::pin(async move {
            Ok(future.await.unwrap_or_else(|e| {
                let status = status_for_layer_error(&e.into());
                tracing::warn!(code = ?status.code(), message = status.message(), "request refused");
                status.into_http()
            }))
        })
    }
}
