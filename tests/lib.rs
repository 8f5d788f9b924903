//! End-to-end tests for Parley: each test starts real `parley-*` binaries
//! on loopback and talks to them as a user's system would. Helpers for
//! finding and running the binaries live here.

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
