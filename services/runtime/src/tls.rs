//! Optional TLS and mutual TLS for servers and clients, from PEM files named
//! in configuration. Off unless the certificate settings are given.

use std::path::PathBuf;

use tonic::transport::{Certificate, ClientTlsConfig, Identity, ServerTlsConfig};

use crate::config::Settings;

/// Picks rustls's process-wide crypto provider (ring) once. When both ring
/// (tonic) and aws-lc-rs (the AWS SDK) are compiled in, rustls cannot choose
/// by itself and would panic on the first TLS handshake.
fn ensure_crypto_provider() {
    static INSTALLED: std::sync::Once = std::sync::Once::new();
    INSTALLED.call_once(|| {
        // Err means another part of the process installed one first: fine.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// Server-side TLS: our certificate, and the CA that client certificates must
/// chain to when mutual TLS is wanted.
#[derive(Debug, Clone)]
pub struct ServerTls {
    /// PEM certificate chain presented to clients.
    pub cert: PathBuf,
    /// PEM private key of `cert`.
    pub key: PathBuf,
    /// When set, clients must present a certificate signed by this CA.
    pub client_ca: Option<PathBuf>,
}

impl ServerTls {
    /// Reads `PARLEY_TLS_CERT`, `PARLEY_TLS_KEY` and `PARLEY_TLS_CLIENT_CA`;
    /// `None` when no certificate is configured.
    pub fn from_settings(settings: &mut Settings<'_>) -> Option<Self> {
        let cert = settings.existing_file("tls_cert");
        let key = settings.existing_file("tls_key");
        let client_ca = settings.existing_file("tls_client_ca");
        match (cert, key) {
            (Some(cert), Some(key)) => Some(Self {
                cert,
                key,
                client_ca,
            }),
            (None, None) => {
                if client_ca.is_some() {
                    settings.problem("tls_client_ca", "needs PARLEY_TLS_CERT and PARLEY_TLS_KEY");
                }
                None
            }
            _ => {
                settings.problem("tls_cert", "PARLEY_TLS_CERT and PARLEY_TLS_KEY go together");
                None
            }
        }
    }

    /// Loads the files into tonic's server TLS config.
    pub fn load(&self) -> std::io::Result<ServerTlsConfig> {
        ensure_crypto_provider();
        let identity = Identity::from_pem(std::fs::read(&self.cert)?, std::fs::read(&self.key)?);
        let mut config = ServerTlsConfig::new().identity(identity);
        if let Some(ca) = &self.client_ca {
            config = config.client_ca_root(Certificate::from_pem(std::fs::read(ca)?));
        }
        Ok(config)
    }
}

/// Client-side TLS: the CA to trust, and our certificate for mutual TLS.
#[derive(Debug, Clone)]
pub struct ClientTls {
    /// PEM CA certificate the server's certificate must chain to.
    pub ca: PathBuf,
    /// PEM certificate and key presented to the server (mutual TLS).
    pub identity: Option<(PathBuf, PathBuf)>,
    /// Expected server name when it differs from the endpoint's host.
    pub domain: Option<String>,
}

impl ClientTls {
    /// Loads the files into tonic's client TLS config.
    pub fn load(&self) -> std::io::Result<ClientTlsConfig> {
        ensure_crypto_provider();
        let mut config =
            ClientTlsConfig::new().ca_certificate(Certificate::from_pem(std::fs::read(&self.ca)?));
        if let Some((cert, key)) = &self.identity {
            config = config.identity(Identity::from_pem(
                std::fs::read(cert)?,
                std::fs::read(key)?,
            ));
        }
        if let Some(domain) = &self.domain {
            config = config.domain_name(domain.clone());
        }
        Ok(config)
    }
}
