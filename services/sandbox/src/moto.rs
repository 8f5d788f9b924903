//! Starting moto server (PyPI `moto[server]`), the stand-in for DynamoDB,
//! S3, SQS and SNS, on a free loopback port for a test; stopped on drop.
//! Found through `PARLEY_MOTO_SERVER`, `~/.cache/parley-venv` (where
//! `.ci/run` installs it) or `PATH`.
//!
//! moto applies each write as an unlocked read-modify-write of the stored
//! item, so two concurrent conditional `UpdateItem`s on one item can both
//! pass their condition and one write is lost. DynamoDB makes every
//! single-item write atomic, and Parley relies on that. So when moto's own
//! Python is at hand (a venv), the server is started through a small
//! launcher that handles one DynamoDB request at a time (connections stay
//! concurrent); tests then see DynamoDB's per-item atomicity. Only
//! DynamoDB is serialised: an SQS `ReceiveMessage` long poll holding the
//! lock would keep every `SendMessage` out for the whole wait (that once
//! capped the load test's SQS feed at ~7 messages/s).

use std::{
    net::TcpStream,
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

/// Runs `moto.server.main` with the WSGI application wrapped so DynamoDB
/// requests are handled one at a time (see the module docs for why).
const SERIAL_LAUNCHER: &str = r#"
import sys, threading
import moto.server as server
lock = threading.Lock()
inner = server.DomainDispatcherApplication
class Serial:
    def __init__(self, *args, **kwargs):
        self.app = inner(*args, **kwargs)
    def __getattr__(self, name):
        return getattr(self.app, name)
    def __setattr__(self, name, value):
        if name == "app":
            object.__setattr__(self, name, value)
        else:
            setattr(self.app, name, value)
    def __call__(self, environ, start_response):
        if not environ.get("HTTP_X_AMZ_TARGET", "").startswith("DynamoDB"):
            return self.app(environ, start_response)
        with lock:
            return list(self.app(environ, start_response))
server.DomainDispatcherApplication = Serial
server.main(sys.argv[1:])
"#;

/// A running moto server.
pub struct Moto {
    child: Child,
    /// `http://127.0.0.1:<port>`.
    pub endpoint: String,
}

impl Moto {
    /// The server's process id (for CPU and memory readings).
    pub fn process_id(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn binary() -> Option<PathBuf> {
    if let Ok(path) = std::env::var("PARLEY_MOTO_SERVER") {
        return Some(PathBuf::from(path));
    }
    let venv = PathBuf::from(std::env::var("HOME").unwrap_or_default())
        .join(".cache/parley-venv/bin/moto_server");
    if venv.exists() {
        return Some(venv);
    }
    Command::new("moto_server")
        .arg("--help")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .ok()
        .map(|_| PathBuf::from("moto_server"))
}

/// Starts moto, or returns `None` when it is not installed (panicking
/// instead when `PARLEY_REQUIRE_MOTO=1`, as in CI).
pub fn start() -> Option<Moto> {
    let Some(binary) = binary() else {
        assert!(
            std::env::var("PARLEY_REQUIRE_MOTO").as_deref() != Ok("1"),
            "moto_server is required (PARLEY_REQUIRE_MOTO=1) but not found"
        );
        eprintln!("skipping: moto_server not found (set PARLEY_MOTO_SERVER)");
        return None;
    };
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .ok()?
        .local_addr()
        .ok()?
        .port();
    let python = binary.parent().map(|dir| dir.join("python"));
    let mut command = match python.filter(|python| python.exists()) {
        Some(python) => {
            let mut command = Command::new(python);
            command.args(["-c", SERIAL_LAUNCHER]);
            command
        }
        None => Command::new(binary),
    };
    let child = command
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("moto_server starts");
    let moto = Moto {
        child,
        endpoint: format!("http://127.0.0.1:{port}"),
    };
    // Ready means answering HTTP, not just accepting connections: under
    // load the socket opens before the application can serve.
    let started = Instant::now();
    while !answers_http(port) {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "moto did not start"
        );
        #[allow(
            clippy::disallowed_methods,
            reason = "start() is synchronous: tests call it before any runtime exists"
        )]
        std::thread::sleep(Duration::from_millis(50));
    }
    Some(moto)
}

/// Whether something on `port` answers an HTTP request.
fn answers_http(port: u16) -> bool {
    use std::io::{Read, Write};
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let request =
        format!("GET /moto-api/ HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n");
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut head = [0u8; 12];
    matches!(stream.read(&mut head), Ok(n) if n >= 12 && head.starts_with(b"HTTP/1."))
}

/// AWS configuration pointing every SDK client at `endpoint` with test
/// credentials, fast retries and us-east-1.
pub async fn aws_config(endpoint: &str) -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_s3::config::Credentials::new(
            "test",
            "test",
            None,
            None,
            "parley-tests",
        ))
        .retry_config(
            aws_config::retry::RetryConfig::standard()
                .with_max_attempts(3)
                .with_initial_backoff(Duration::from_millis(5)),
        )
        .load()
        .await
}

/// An S3 client for moto (path-style addressing).
pub fn s3_client(config: &aws_config::SdkConfig) -> aws_sdk_s3::Client {
    aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(config)
            .force_path_style(true)
            .build(),
    )
}
