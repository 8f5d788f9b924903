//! Mutual TLS from PEM files: a client with a certificate from the trusted
//! CA gets through; one without a certificate, or speaking plaintext, does not.

use std::{path::Path, time::Duration};

use parley_runtime::{
    client::{ClientConfig, connect_lazy},
    server::{GrpcServer, ServerConfig},
    tls::{ClientTls, ServerTls},
};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

fn write(dir: &Path, name: &str, text: String) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

#[tokio::test]
async fn mutual_tls() {
    let dir = tempfile::tempdir().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let leaf = |name: &str| {
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(vec![name.to_owned()])
            .unwrap()
            .signed_by(&key, &ca)
            .unwrap();
        (cert.pem(), key.serialize_pem())
    };
    let (server_cert, server_key) = leaf("localhost");
    let (client_cert, client_key) = leaf("gateway");
    let ca_path = write(dir.path(), "ca.pem", ca.pem());

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let mut config = ServerConfig::local(address);
    config.tls = Some(ServerTls {
        cert: write(dir.path(), "server.pem", server_cert),
        key: write(dir.path(), "server.key", server_key),
        client_ca: Some(ca_path.clone()),
    });
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(GrpcServer::new(config).serve(listener, async {
        let _ = stopped.await;
    }));

    let client = |identity: Option<(std::path::PathBuf, std::path::PathBuf)>, scheme: &str| {
        let mut config = ClientConfig::new(format!("{scheme}://127.0.0.1:{}", address.port()));
        config.connect_timeout = Duration::from_secs(2);
        config.request_timeout = Duration::from_secs(2);
        if scheme == "https" {
            config.tls = Some(ClientTls {
                ca: ca_path.clone(),
                identity,
                domain: Some("localhost".into()),
            });
        }
        HealthClient::new(connect_lazy(&config).unwrap())
    };
    let check = HealthCheckRequest {
        service: String::new(),
    };

    let identity = Some((
        write(dir.path(), "client.pem", client_cert),
        write(dir.path(), "client.key", client_key),
    ));
    client(identity, "https")
        .check(check.clone())
        .await
        .expect("a client with a trusted certificate gets through");
    assert!(
        client(None, "https").check(check.clone()).await.is_err(),
        "no client certificate, no entry"
    );
    assert!(
        client(None, "http").check(check).await.is_err(),
        "plaintext is refused"
    );
    let _ = stop.send(());
}
