//! Channels to other Parley services, with the same trace propagation,
//! timeouts and keep-alive on every hop.

use std::time::Duration;

use tonic::transport::channel::Change;
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
    /// How calls spread over the service's replicas.
    pub balance: Balance,
}

/// How a client spreads calls over a service's replicas.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Balance {
    /// One connection to the endpoint's address. Right behind a proxy that
    /// balances per request (ECS Service Connect's Envoy, a service mesh).
    Single,
    /// Resolve the endpoint's host name every `refresh` and keep a
    /// connection to every address it returns, spreading calls over them.
    /// Right for a Kubernetes headless service: HTTP/2 multiplexes every
    /// call over one connection, so a plain ClusterIP service would pin a
    /// client to one replica.
    Dns {
        /// How often the name is resolved again.
        refresh: Duration,
    },
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
            balance: Balance::Single,
        }
    }

    /// Reads `PARLEY_<NAME>_ENDPOINT` (one URI, or several separated by
    /// commas: replicas to balance over), `PARLEY_<NAME>_TIMEOUT_MS`,
    /// `PARLEY_<NAME>_BALANCE` (`single` or `dns`),
    /// `PARLEY_<NAME>_DNS_REFRESH_MS` and, for TLS, `PARLEY_<NAME>_TLS_CA`,
    /// `PARLEY_<NAME>_TLS_CERT`, `PARLEY_<NAME>_TLS_KEY`,
    /// `PARLEY_<NAME>_TLS_DOMAIN`.
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
        let refresh = settings.millis(&format!("{name}_dns_refresh_ms"), Duration::from_secs(10));
        match settings
            .raw(&format!("{name}_balance"))
            .as_deref()
            .unwrap_or("single")
        {
            "single" => {}
            "dns" => config.balance = Balance::Dns { refresh },
            other => settings.problem(
                &format!("{name}_balance"),
                format!("{other:?}: expected single or dns"),
            ),
        }
        for uri in endpoints(&config.endpoint) {
            if Endpoint::from_shared(uri.to_owned()).is_err() {
                settings.problem(&format!("{name}_endpoint"), format!("{uri:?} is not a URI"));
            }
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
    /// A balanced endpoint's host cannot be resolved as given.
    #[error("cannot balance over {endpoint:?}: {reason}")]
    Resolve {
        /// The endpoint as configured.
        endpoint: String,
        /// What is wrong with it.
        reason: String,
    },
}

/// Builds a channel that connects on first use (so services can start in any
/// order) and reconnects after failures; with [`Balance::Dns`], one that
/// keeps a connection to every address the name resolves to.
pub fn connect_lazy(config: &ClientConfig) -> Result<TracedChannel, ClientError> {
    let listed = endpoints(&config.endpoint);
    let channel = if listed.len() > 1 {
        // A fixed set of replicas: calls spread over them all.
        let endpoints = listed
            .iter()
            .map(|uri| endpoint(config, uri))
            .collect::<Result<Vec<_>, _>>()?;
        Channel::balance_list(endpoints.into_iter())
    } else {
        match config.balance {
            Balance::Single => endpoint(config, &config.endpoint)?.connect_lazy(),
            Balance::Dns { refresh } => balanced(config, refresh)?,
        }
    };
    Ok(ClientTraceLayer.layer(channel))
}

/// The endpoints a setting names: one URI, or several separated by commas
/// (a fixed set of replicas, balanced).
pub fn endpoints(setting: &str) -> Vec<&str> {
    setting
        .split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .collect()
}

/// The endpoint for `uri` with `config`'s timeouts, keep-alive and TLS.
fn endpoint(config: &ClientConfig, uri: &str) -> Result<Endpoint, ClientError> {
    let endpoint_error = |source| ClientError::Endpoint {
        endpoint: uri.to_owned(),
        source,
    };
    let mut endpoint = Endpoint::from_shared(uri.to_owned())
        .map_err(endpoint_error)?
        .connect_timeout(config.connect_timeout)
        .timeout(config.request_timeout)
        .http2_keep_alive_interval(config.keepalive_interval)
        .keep_alive_while_idle(true)
        .tcp_nodelay(true);
    if let Some(tls) = &config.tls {
        endpoint = endpoint.tls_config(tls.load()?).map_err(endpoint_error)?;
    }
    Ok(endpoint)
}

/// A channel balanced over every address `config.endpoint`'s host
/// resolves to, re-resolved every `refresh` by a background task that
/// ends with the channel.
fn balanced(config: &ClientConfig, refresh: Duration) -> Result<Channel, ClientError> {
    let invalid = |why: &str| ClientError::Resolve {
        endpoint: config.endpoint.clone(),
        reason: why.to_owned(),
    };
    let uri: http::Uri = config.endpoint.parse().map_err(|_| invalid("not a URI"))?;
    let host = uri.host().ok_or_else(|| invalid("no host"))?.to_owned();
    let scheme = uri.scheme_str().unwrap_or("http").to_owned();
    let port = uri
        .port_u16()
        .unwrap_or(if scheme == "https" { 443 } else { 80 });
    // Validate the settings once, up front.
    endpoint(config, &config.endpoint)?;
    let (channel, changes) = Channel::balance_channel::<std::net::SocketAddr>(64);
    let config = config.clone();
    tokio::spawn(async move {
        let mut known = std::collections::BTreeSet::new();
        loop {
            match tokio::net::lookup_host((host.as_str(), port)).await {
                Ok(found) => {
                    let found: std::collections::BTreeSet<_> = found.collect();
                    for gone in known.difference(&found) {
                        if changes.send(Change::Remove(*gone)).await.is_err() {
                            return;
                        }
                    }
                    for new in found.difference(&known) {
                        // Connect by address, but keep the host for TLS.
                        let Ok(mut endpoint) = endpoint(&config, &format!("{scheme}://{new}"))
                        else {
                            continue;
                        };
                        if config.tls.is_some() {
                            endpoint = endpoint.origin(uri.clone());
                        }
                        if changes.send(Change::Insert(*new, endpoint)).await.is_err() {
                            return;
                        }
                    }
                    tracing::debug!(replicas = found.len(), "resolved service replicas");
                    known = found;
                }
                Err(e) => tracing::warn!(error = %e, "cannot resolve service replicas"),
            }
            tokio::time::sleep(refresh).await;
            if changes.is_closed() {
                return;
            }
        }
    });
    Ok(channel)
}
