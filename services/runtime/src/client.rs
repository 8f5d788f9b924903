//! Channels to other Parley services, with the same trace propagation,
//! timeouts and keep-alive on every hop.

use std::time::Duration;

use tonic::transport::{Channel, Endpoint};

use crate::{
    config::Settings,
    propagation::{ClientTrace, ClientTraceLayer},
    tls::ClientTls,
};
use tower::Layer as _;

/// A channel that opens a client span per call and sends its `traceparent`.
/// Every generated client accepts it: `TranscoderClient::new(channel)`.
pub type TracedChannel = ClientTrace<Channel>;

/// How to reach one service.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// `http://host:port` (or `https://` with TLS).
    pub endpoint: String,
    /// Longest wait for a TCP (and TLS) connection.
    pub connect_timeout: Duration,
    /// Longest wait for each call's response headers.
    pub request_timeout: Duration,
    /// HTTP/2 keep-alive ping interval, so dead peers are noticed.
    pub keepalive_interval: Duration,
    /// TLS (and mutual TLS); plaintext when `None`.
    pub tls: Option<ClientTls>,
}

impl ClientConfig {
    /// Defaults for `endpoint`.
    pub fn new(endpoint: impl Into<String>) -> Self {
        Self {
            endpoint: endpoint.into(),
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(30),
            keepalive_interval: Duration::from_secs(30),
            tls: None,
        }
    }

    /// Reads `PARLEY_<NAME>_ENDPOINT`, `PARLEY_<NAME>_TIMEOUT_MS` and, for
    /// TLS, `PARLEY_<NAME>_TLS_CA`, `PARLEY_<NAME>_TLS_CERT`,
    /// `PARLEY_<NAME>_TLS_KEY`, `PARLEY_<NAME>_TLS_DOMAIN`.
    pub fn from_settings(settings: &mut Settings<'_>, name: &str, default_endpoint: &str) -> Self {
        let mut config = Self::new(
            settings
                .raw(&format!("{name}_endpoint"))
                .unwrap_or_else(|| default_endpoint.to_owned()),
        );
        config.request_timeout =
            settings.millis(&format!("{name}_timeout_ms"), config.request_timeout);
        if let Some(ca) = settings.existing_file(&format!("{name}_tls_ca")) {
            let cert = settings.existing_file(&format!("{name}_tls_cert"));
            let key = settings.existing_file(&format!("{name}_tls_key"));
            config.tls = Some(ClientTls {
                ca,
                identity: cert.zip(key),
                domain: settings.raw(&format!("{name}_tls_domain")),
            });
        }
        if Endpoint::from_shared(config.endpoint.clone()).is_err() {
            settings.problem(
                &format!("{name}_endpoint"),
                format!("{:?} is not a URI", config.endpoint),
            );
        }
        config
    }
}

/// Why a channel could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The endpoint is not a valid URI, or TLS could not be configured.
    #[error("invalid endpoint {endpoint:?}: {source}")]
    Endpoint {
        /// The endpoint as configured.
        endpoint: String,
        /// What tonic said.
        source: tonic::transport::Error,
    },
    /// The TLS files could not be read.
    #[error("cannot load tls files: {0}")]
    Tls(#[from] std::io::Error),
}

/// Builds a channel that connects on first use (so services can start in any
/// order) and reconnects after failures.
pub fn connect_lazy(config: &ClientConfig) -> Result<TracedChannel, ClientError> {
    let endpoint_error = |source| ClientError::Endpoint {
        endpoint: config.endpoint.clone(),
        source,
    };
    let mut endpoint = Endpoint::from_shared(config.endpoint.clone())
        .map_err(endpoint_error)?
        .connect_timeout(config.connect_timeout)
        .timeout(config.request_timeout)
        .http2_keep_alive_interval(config.keepalive_interval)
        .keep_alive_while_idle(true)
        .tcp_nodelay(true);
    if let Some(tls) = &config.tls {
        endpoint = endpoint.tls_config(tls.load()?).map_err(endpoint_error)?;
    }
    Ok(ClientTraceLayer.layer(endpoint.connect_lazy()))
}
