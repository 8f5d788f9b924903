//! The `parley-session` binary: `create-tables` against DynamoDB (moto,
//! through the real SDK and the standard AWS environment), and bad
//! configuration refused at start.

mod common;

use std::process::Command;

use common::start_moto;

fn bin() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_parley-session"));
    // Tests run side by side: no fixed metrics port.
    command.env("PARLEY_METRICS_LISTEN", "127.0.0.1:0");
    command
}

#[test]
fn create_tables_is_idempotent() {
    let Some(moto) = start_moto() else { return };
    for _ in 0..2 {
        let out = bin()
            .arg("create-tables")
            .env("PARLEY_SESSION_BACKEND", "dynamodb")
            .env("PARLEY_SESSION_TABLE", "parley-sessions-cli")
            .env("AWS_ENDPOINT_URL_DYNAMODB", &moto.endpoint)
            .env("AWS_REGION", "us-east-1")
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(String::from_utf8_lossy(&out.stdout).contains("parley-sessions-cli is ready"));
    }
}

#[test]
fn bad_configuration_is_refused_at_start() {
    let out = bin()
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env("PARLEY_SESSION_BACKEND", "postgres")
        .env("PARLEY_CONCURRENCY_LIMIT", "0")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("PARLEY_SESSION_BACKEND") && stderr.contains("PARLEY_CONCURRENCY_LIMIT"),
        "{stderr}"
    );
    let out = bin()
        .arg("create-tables")
        .env("PARLEY_SESSION_BACKEND", "embedded")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("dynamodb"));
}
