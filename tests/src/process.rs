//! Running Parley's binaries as separate processes: finding them beside the
//! tests, free ports, and waiting for health.

use std::path::PathBuf;

/// Path of a workspace binary built alongside the caller: beside it
/// (`target/<profile>/<name>`, for binaries such as `parley-loadtest`), or
/// one folder up from a test (`target/<profile>/deps/<test>`);
/// `PARLEY_BIN_DIR` overrides both.
pub fn binary(name: &str) -> PathBuf {
    if let Some(dir) = std::env::var_os("PARLEY_BIN_DIR") {
        return PathBuf::from(dir).join(name);
    }
    let exe = std::env::current_exe().expect("executable path");
    let candidates: Vec<PathBuf> = exe
        .ancestors()
        .skip(1)
        .take(2)
        .map(|dir| dir.join(name))
        .collect();
    let found = candidates.iter().find(|path| path.exists());
    assert!(
        found.is_some(),
        "{name} is missing beside {}: build it with `cargo test --workspace` (tests) or `cargo build --profile local --bins` (parley-local, the load test)",
        exe.display()
    );
    found.cloned().unwrap_or_default()
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
    for _ in 0..100 {
        if let Some(serving) = health(endpoint, service).await {
            return serving;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    false
}

/// One health check of `service` at `endpoint`: `None` while nothing
/// answers, else whether it reports SERVING.
pub async fn health(endpoint: &str, service: &str) -> Option<bool> {
    use tonic_health::pb::{
        HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
    };
    let channel = tonic::transport::Channel::from_shared(endpoint.to_owned())
        .ok()?
        .connect()
        .await
        .ok()?;
    let response = HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: service.into(),
        })
        .await
        .ok()?;
    Some(response.into_inner().status() == ServingStatus::Serving)
}
