//! One builder for the whole stack on one machine: moto (when asked), the
//! sandbox, and any set of Parley services — in this process (each
//! crate's `run(listener, config, shutdown)` on a loopback port) or as
//! separate processes (the real binaries) — on free ports. Tests, the
//! load test and `parley-local` all start Parley through it.

use std::{
    collections::BTreeMap,
    net::{IpAddr, Ipv4Addr, SocketAddr},
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::Duration,
};

use anyhow::Context as _;
use parley_client::{
    CallPolicy, GrpcConnect, GrpcSession, GrpcTranscoder, GrpcTranscriber, GrpcWhatsApp,
};
use parley_runtime::{client::ClientConfig, server::ServerConfig};
use parley_sandbox::{RunningSandbox, SandboxConfig, moto};
use tokio::sync::watch;

/// A Parley component the stack can run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Component {
    /// `parley-session`.
    Session,
    /// `parley-transcoder`.
    Transcoder,
    /// `parley-transcriber`.
    Transcriber,
    /// `parley-connect-relay`.
    ConnectRelay,
    /// `parley-whatsapp-sender`.
    WhatsAppSender,
}

impl Component {
    /// Every service.
    pub const SERVICES: [Component; 5] = [
        Component::Session,
        Component::Transcoder,
        Component::Transcriber,
        Component::ConnectRelay,
        Component::WhatsAppSender,
    ];

    /// The short name (`session`, `transcoder`, …) used in ready files.
    pub fn name(self) -> &'static str {
        match self {
            Self::Session => "session",
            Self::Transcoder => "transcoder",
            Self::Transcriber => "transcriber",
            Self::ConnectRelay => "connect-relay",
            Self::WhatsAppSender => "whatsapp-sender",
        }
    }

    /// The binary that runs it.
    pub fn binary(self) -> &'static str {
        match self {
            Self::Session => "parley-session",
            Self::Transcoder => "parley-transcoder",
            Self::Transcriber => "parley-transcriber",
            Self::ConnectRelay => "parley-connect-relay",
            Self::WhatsAppSender => "parley-whatsapp-sender",
        }
    }

    /// The gRPC service its health check names.
    pub fn grpc_service(self) -> &'static str {
        match self {
            Self::Session => "parley.session.v1.Session",
            Self::Transcoder => "parley.transcoder.v1.Transcoder",
            Self::Transcriber => "parley.transcriber.v1.Transcriber",
            Self::ConnectRelay => "parley.connect.v1.ConnectRelay",
            Self::WhatsAppSender => "parley.whatsapp.v1.WhatsAppSender",
        }
    }
}

/// Where the session service keeps its state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionStore {
    /// SQLite in memory.
    Memory,
    /// SQLite in this file.
    File(PathBuf),
    /// DynamoDB on moto (the builder starts moto).
    DynamoDb,
}

/// How services run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// In this process, each on its own loopback listener.
    InProcess,
    /// As separate processes of the real binaries (which must be built:
    /// `cargo test --workspace` builds them beside the tests).
    Processes,
}

/// Names the stack gives the AWS resources it creates.
pub mod names {
    /// The Connect instance the relay starts chats on.
    pub const INSTANCE: &str = "parley-local-instance";
    /// The inbound contact flow.
    pub const FLOW: &str = "parley-local-flow";
    /// The media bucket.
    pub const BUCKET: &str = "parley-media";
    /// The topic Connect streams agent messages to.
    pub const STREAMING_TOPIC: &str = "parley-connect-out";
    /// Its ARN when the sandbox plays SNS itself (no moto).
    pub const LOCAL_STREAMING_TOPIC_ARN: &str =
        "arn:aws:sns:us-east-1:123456789012:parley-connect-out";
}

/// Changes to a service's configuration before it starts.
type Tweak<T> = Box<dyn FnOnce(&mut T) + Send>;

/// Assembles a stack.
pub struct StackBuilder {
    components: Vec<Component>,
    moto: bool,
    store: SessionStore,
    mode: Mode,
    host: IpAddr,
    sandbox: Vec<Tweak<SandboxConfig>>,
    transcoder: Vec<Tweak<parley_transcoder::grpc::TranscoderConfig>>,
    transcriber: Vec<Tweak<parley_transcriber::grpc::TranscriberConfig>>,
    relay: Vec<Tweak<parley_connect_relay::relay::RelayConfig>>,
    sender: Vec<Tweak<parley_whatsapp_sender::sender::SenderConfig>>,
    session: Vec<Tweak<parley_session::grpc::SessionConfig>>,
    env: Vec<(String, String)>,
}

impl Default for StackBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl StackBuilder {
    /// A stack of just the sandbox, on loopback, in this process.
    pub fn new() -> Self {
        Self {
            components: Vec::new(),
            moto: false,
            store: SessionStore::Memory,
            mode: Mode::InProcess,
            host: IpAddr::V4(Ipv4Addr::LOCALHOST),
            sandbox: Vec::new(),
            transcoder: Vec::new(),
            transcriber: Vec::new(),
            relay: Vec::new(),
            sender: Vec::new(),
            session: Vec::new(),
            env: Vec::new(),
        }
    }

    /// Adds a service.
    pub fn with(mut self, component: Component) -> Self {
        if !self.components.contains(&component) {
            self.components.push(component);
        }
        self
    }

    /// Adds every service.
    pub fn all_services(mut self) -> Self {
        for component in Component::SERVICES {
            self = self.with(component);
        }
        self
    }

    /// Starts moto for S3 (media), SNS (Connect streaming) and SQS.
    pub fn with_moto(mut self) -> Self {
        self.moto = true;
        self
    }

    /// Where the session service keeps its state (DynamoDB implies moto).
    pub fn session_store(mut self, store: SessionStore) -> Self {
        if store == SessionStore::DynamoDb {
            self.moto = true;
        }
        self.store = store;
        self
    }

    /// Runs the services as separate processes.
    pub fn processes(mut self) -> Self {
        self.mode = Mode::Processes;
        self
    }

    /// Binds everything on `host` instead of 127.0.0.1.
    pub fn host(mut self, host: IpAddr) -> Self {
        self.host = host;
        self
    }

    /// Extra environment for service processes (RUST_LOG, OTLP, …).
    pub fn process_env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_owned(), value.to_owned()));
        self
    }

    /// Changes the sandbox's configuration.
    pub fn sandbox_config(
        mut self,
        tweak: impl FnOnce(&mut SandboxConfig) + Send + 'static,
    ) -> Self {
        self.sandbox.push(Box::new(tweak));
        self
    }

    /// Changes the transcoder's configuration.
    pub fn transcoder_config(
        mut self,
        tweak: impl FnOnce(&mut parley_transcoder::grpc::TranscoderConfig) + Send + 'static,
    ) -> Self {
        self.transcoder.push(Box::new(tweak));
        self
    }

    /// Changes the transcriber's configuration.
    pub fn transcriber_config(
        mut self,
        tweak: impl FnOnce(&mut parley_transcriber::grpc::TranscriberConfig) + Send + 'static,
    ) -> Self {
        self.transcriber.push(Box::new(tweak));
        self
    }

    /// Changes the relay's configuration.
    pub fn relay_config(
        mut self,
        tweak: impl FnOnce(&mut parley_connect_relay::relay::RelayConfig) + Send + 'static,
    ) -> Self {
        self.relay.push(Box::new(tweak));
        self
    }

    /// Changes the sender's configuration.
    pub fn sender_config(
        mut self,
        tweak: impl FnOnce(&mut parley_whatsapp_sender::sender::SenderConfig) + Send + 'static,
    ) -> Self {
        self.sender.push(Box::new(tweak));
        self
    }

    /// Changes the session service's configuration.
    pub fn session_config(
        mut self,
        tweak: impl FnOnce(&mut parley_session::grpc::SessionConfig) + Send + 'static,
    ) -> Self {
        self.session.push(Box::new(tweak));
        self
    }

    /// Starts everything and waits until every service answers its health
    /// check.
    pub async fn start(self) -> anyhow::Result<Stack> {
        let moto = if self.moto {
            Some(moto::start().context(
                "moto_server is needed (install `moto[server]`, or set PARLEY_MOTO_SERVER)",
            )?)
        } else {
            None
        };
        let moto_aws = match &moto {
            Some(moto) => Some(moto::aws_config(&moto.endpoint).await),
            None => None,
        };
        let streaming_topic_arn = match &moto_aws {
            Some(aws) => {
                let s3 = moto::s3_client(aws);
                s3.create_bucket()
                    .bucket(names::BUCKET)
                    .send()
                    .await
                    .map_err(|e| {
                        anyhow::anyhow!(
                            "creating the media bucket on moto: {}",
                            aws_sdk_s3::error::DisplayErrorContext(&e)
                        )
                    })?;
                aws_sdk_sns::Client::new(aws)
                    .create_topic()
                    .name(names::STREAMING_TOPIC)
                    .send()
                    .await
                    .context("creating the streaming topic on moto")?
                    .topic_arn
                    .unwrap_or_default()
            }
            None => names::LOCAL_STREAMING_TOPIC_ARN.to_owned(),
        };

        let mut sandbox_config = SandboxConfig::default();
        if let Some(aws) = &moto_aws {
            sandbox_config.s3 = Some(moto::s3_client(aws));
            sandbox_config.sns = Some(aws_sdk_sns::Client::new(aws));
        }
        for tweak in self.sandbox {
            tweak(&mut sandbox_config);
        }
        let sandbox = parley_sandbox::start(SocketAddr::new(self.host, 0), sandbox_config)
            .await
            .context("starting the sandbox")?;
        let sandbox_aws = moto::aws_config(&sandbox.endpoint).await;
        // S3 is moto's when it runs; otherwise the sandbox's own.
        let s3_endpoint = moto
            .as_ref()
            .map_or_else(|| sandbox.endpoint.clone(), |m| m.endpoint.clone());

        let (stop, stopped) = watch::channel(false);
        let mut stack = Stack {
            sandbox,
            moto,
            moto_aws,
            sandbox_aws,
            addresses: BTreeMap::new(),
            stop,
            tasks: Vec::new(),
            children: Vec::new(),
            streaming_topic_arn,
            _data: tempfile::tempdir().context("a scratch folder")?,
            policy: CallPolicy::default(),
        };

        // The session service first: the sender's ledger lives in it.
        let mut components = self.components.clone();
        components.sort();
        let mut tweaks = Tweaks {
            transcoder: self.transcoder,
            transcriber: self.transcriber,
            relay: self.relay,
            sender: self.sender,
            session: self.session,
        };
        for component in components {
            let listener = parley_runtime::service::bind(SocketAddr::new(self.host, 0)).await?;
            let address = listener.local_addr()?;
            match self.mode {
                Mode::InProcess => {
                    let task = stack.spawn_in_process(
                        component,
                        listener,
                        &mut tweaks,
                        &self.store,
                        &s3_endpoint,
                        stopped.clone(),
                    )?;
                    stack.tasks.push(task);
                }
                Mode::Processes => {
                    drop(listener);
                    let child = stack.spawn_process(
                        component,
                        address,
                        &self.store,
                        &s3_endpoint,
                        &self.env,
                    )?;
                    stack.children.push(child);
                }
            }
            stack.addresses.insert(component, address);
        }
        for (component, address) in &stack.addresses {
            let endpoint = format!("http://{address}");
            anyhow::ensure!(
                crate::process::wait_until_serving(&endpoint, component.grpc_service()).await,
                "{} did not become healthy at {endpoint}",
                component.name()
            );
        }
        Ok(stack)
    }
}

/// The builder's configuration changes, handed to each service as it starts.
struct Tweaks {
    transcoder: Vec<Tweak<parley_transcoder::grpc::TranscoderConfig>>,
    transcriber: Vec<Tweak<parley_transcriber::grpc::TranscriberConfig>>,
    relay: Vec<Tweak<parley_connect_relay::relay::RelayConfig>>,
    sender: Vec<Tweak<parley_whatsapp_sender::sender::SenderConfig>>,
    session: Vec<Tweak<parley_session::grpc::SessionConfig>>,
}

fn apply<T>(tweaks: &mut Vec<Tweak<T>>, value: &mut T) {
    for tweak in tweaks.drain(..) {
        tweak(value);
    }
}

/// A running stack. Dropping it stops everything.
pub struct Stack {
    /// The AWS sandbox (Connect, Connect Participant, Social Messaging,
    /// Transcribe Streaming).
    pub sandbox: RunningSandbox,
    /// moto, when the stack runs it.
    pub moto: Option<moto::Moto>,
    /// SDK configuration pointing at moto.
    pub moto_aws: Option<aws_config::SdkConfig>,
    /// SDK configuration pointing at the sandbox.
    pub sandbox_aws: aws_config::SdkConfig,
    /// The topic the relay asks Connect to stream to.
    pub streaming_topic_arn: String,
    addresses: BTreeMap<Component, SocketAddr>,
    stop: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<anyhow::Result<()>>>,
    children: Vec<Child>,
    _data: tempfile::TempDir,
    policy: CallPolicy,
}

impl Drop for Stack {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Stack {
    /// A builder.
    pub fn builder() -> StackBuilder {
        StackBuilder::new()
    }

    /// Where a service listens.
    pub fn address(&self, component: Component) -> SocketAddr {
        *self
            .addresses
            .get(&component)
            .unwrap_or_else(|| panic!("{} is not part of this stack", component.name()))
    }

    /// `http://address` of a service.
    pub fn endpoint(&self, component: Component) -> String {
        format!("http://{}", self.address(component))
    }

    /// Clients handed out from now on use `policy` (tests that must see a
    /// first failure use `CallPolicy::default().once()`).
    pub fn set_call_policy(&mut self, policy: CallPolicy) {
        self.policy = policy;
    }

    /// Every service's address.
    pub fn addresses(&self) -> &BTreeMap<Component, SocketAddr> {
        &self.addresses
    }

    fn channel(&self, component: Component) -> parley_runtime::client::TracedChannel {
        parley_client::channel::connect(&ClientConfig::new(self.endpoint(component)))
            .expect("a loopback endpoint is valid")
    }

    /// A client of the session service.
    pub fn session(&self) -> GrpcSession {
        GrpcSession::new(self.channel(Component::Session), self.policy.clone())
    }

    /// A client of the transcoder.
    pub fn transcoder(&self) -> GrpcTranscoder {
        GrpcTranscoder::new(self.channel(Component::Transcoder), self.policy.clone())
    }

    /// A client of the transcriber.
    pub fn transcriber(&self) -> GrpcTranscriber {
        GrpcTranscriber::new(self.channel(Component::Transcriber), self.policy.clone())
    }

    /// A client of the connect-relay.
    pub fn connect(&self) -> GrpcConnect {
        GrpcConnect::new(self.channel(Component::ConnectRelay), self.policy.clone())
    }

    /// A client of the whatsapp-sender.
    pub fn whatsapp(&self) -> GrpcWhatsApp {
        GrpcWhatsApp::new(self.channel(Component::WhatsAppSender), self.policy.clone())
    }

    /// The moto S3 client (path-style), when moto runs.
    pub fn s3(&self) -> Option<aws_sdk_s3::Client> {
        self.moto_aws.as_ref().map(moto::s3_client)
    }

    /// Stops every in-process service (draining) and every process.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        for task in self.tasks.drain(..) {
            let _ = tokio::time::timeout(Duration::from_secs(15), task).await;
        }
    }

    fn server_config(address: SocketAddr) -> ServerConfig {
        let mut server = ServerConfig::local(address);
        server.shutdown_grace = Duration::from_secs(2);
        server
    }

    fn spawn_in_process(
        &self,
        component: Component,
        listener: tokio::net::TcpListener,
        tweaks: &mut Tweaks,
        store: &SessionStore,
        s3_endpoint: &str,
        mut stopped: watch::Receiver<bool>,
    ) -> anyhow::Result<tokio::task::JoinHandle<anyhow::Result<()>>> {
        let server = Self::server_config(listener.local_addr()?);
        let shutdown = async move {
            let _ = stopped.wait_for(|stop| *stop).await;
        };
        Ok(match component {
            Component::Session => {
                let mut service = parley_session::grpc::SessionConfig::default();
                apply(&mut tweaks.session, &mut service);
                let settings = parley_session::SessionSettings {
                    backend: match store {
                        SessionStore::Memory => parley_session::Backend::InMemory,
                        SessionStore::File(path) => parley_session::Backend::Embedded(path.clone()),
                        SessionStore::DynamoDb => {
                            parley_session::Backend::DynamoDb(format!("parley-{}", uuid_like()))
                        }
                    },
                    aws: self.moto_aws.clone(),
                    service,
                };
                tokio::spawn(async move {
                    if let parley_session::Backend::DynamoDb(table) = &settings.backend {
                        settings.dynamo(table).await.create_table().await?;
                    }
                    parley_session::run(listener, server, settings, shutdown).await
                })
            }
            Component::Transcoder => {
                let mut config = parley_transcoder::grpc::TranscoderConfig::default();
                apply(&mut tweaks.transcoder, &mut config);
                tokio::spawn(parley_transcoder::run(listener, server, config, shutdown))
            }
            Component::Transcriber => {
                let mut service = parley_transcriber::grpc::TranscriberConfig::default();
                apply(&mut tweaks.transcriber, &mut service);
                let settings = parley_transcriber::TranscriberSettings {
                    service,
                    aws: Some(self.sandbox_aws.clone()),
                };
                tokio::spawn(parley_transcriber::run(
                    listener, server, settings, shutdown,
                ))
            }
            Component::ConnectRelay => {
                let mut config = parley_connect_relay::relay::RelayConfig {
                    instance_id: names::INSTANCE.into(),
                    contact_flow_id: names::FLOW.into(),
                    streaming_topic_arn: self.streaming_topic_arn.clone(),
                    local_origin: self.sandbox.endpoint.clone(),
                    aws: Some(self.sandbox_aws.clone()),
                    ..Default::default()
                };
                apply(&mut tweaks.relay, &mut config);
                tokio::spawn(parley_connect_relay::run(
                    listener, server, config, shutdown,
                ))
            }
            Component::WhatsAppSender => {
                let mut config = parley_whatsapp_sender::sender::SenderConfig {
                    media_bucket: names::BUCKET.into(),
                    aws: Some(self.sandbox_aws.clone()),
                    s3_endpoint: Some(s3_endpoint.to_owned()),
                    session: self
                        .addresses
                        .get(&Component::Session)
                        .map(|a| ClientConfig::new(format!("http://{a}"))),
                    ..Default::default()
                };
                apply(&mut tweaks.sender, &mut config);
                tokio::spawn(parley_whatsapp_sender::run(
                    listener, server, config, shutdown,
                ))
            }
        })
    }

    fn spawn_process(
        &self,
        component: Component,
        address: SocketAddr,
        store: &SessionStore,
        s3_endpoint: &str,
        env: &[(String, String)],
    ) -> anyhow::Result<Child> {
        let mut command = Command::new(crate::process::binary(component.binary()));
        command
            .arg("serve")
            .env("PARLEY_LISTEN", address.to_string())
            .env("PARLEY_SHUTDOWN_GRACE_MS", "2000")
            .env("AWS_REGION", "us-east-1")
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env("AWS_ENDPOINT_URL", &self.sandbox.endpoint)
            .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        match component {
            Component::Session => {
                match store {
                    SessionStore::Memory => command.env("PARLEY_SESSION_BACKEND", "memory"),
                    SessionStore::File(path) => command
                        .env("PARLEY_SESSION_BACKEND", "embedded")
                        .env("PARLEY_SESSION_DB", path),
                    SessionStore::DynamoDb => anyhow::bail!(
                        "a DynamoDB session store is run in-process only (its table is made by the builder)"
                    ),
                };
            }
            Component::ConnectRelay => {
                command
                    .env("PARLEY_CONNECT_INSTANCE_ID", names::INSTANCE)
                    .env("PARLEY_CONNECT_CONTACT_FLOW_ID", names::FLOW)
                    .env(
                        "PARLEY_CONNECT_STREAMING_TOPIC_ARN",
                        &self.streaming_topic_arn,
                    )
                    .env("PARLEY_CONNECT_LOCAL_ORIGIN", &self.sandbox.endpoint);
            }
            Component::WhatsAppSender => {
                command
                    .env("PARLEY_WHATSAPP_MEDIA_BUCKET", names::BUCKET)
                    .env("PARLEY_WHATSAPP_S3_ENDPOINT", s3_endpoint);
                if let Some(session) = self.addresses.get(&Component::Session) {
                    command.env("PARLEY_SESSION_ENDPOINT", format!("http://{session}"));
                }
            }
            Component::Transcoder | Component::Transcriber => {}
        }
        for (key, value) in env {
            command.env(key, value);
        }
        command
            .spawn()
            .with_context(|| format!("starting {}", component.binary()))
    }
}

/// A short unique suffix (table names must differ between stacks).
fn uuid_like() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!(
        "{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}
