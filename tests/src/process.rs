//! Running Parley's binaries as separate processes: finding them beside the
//! tests, free ports, and waiting for health.

use std::path::PathBuf;

/// Path of a workspace binary built alongside the tests
/// (`target/<profile>/<name>`).
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test> → target/<profile>/<name>
    let path = exe
        .parent()
        .and_then(|deps| deps.parent())
        .map(|dir| dir.join(name))
        .expect("target directory");
    assert!(
        path.exists(),
        "{} is missing: run the tests with `cargo test --workspace` so it is built",
        path.display()
    );
    path
}

/// A free loopback port (bound, then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Waits (up to 5 s) until the gRPC server at `endpoint` reports `service`
/// SERVING; `false` if it never does.
pub async fn wait_until_serving(endpoint: &str, service: &str) -> bool {
    use tonic_health::pb::{
        HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
    };
    for _ in 0..100 {
        if let Ok(channel) = tonic::transport::Channel::from_shared(endpoint.to_owned())
            .expect("a valid endpoint")
            .connect()
            .await
            && let Ok(response) = HealthClient::new(channel)
                .check(HealthCheckRequest {
                    service: service.into(),
                })
                .await
        {
            return response.into_inner().status() == ServingStatus::Serving;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    false
}
