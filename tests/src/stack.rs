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
    sync::{Arc, Mutex},
    time::Duration,
};

use anyhow::Context as _;
use parley_client::{
    CallPolicy, GrpcConnect, GrpcSession, GrpcTranscoder, GrpcTranscriber, GrpcWhatsApp,
};
use parley_gateway::config::{DeadLetterTarget, FlushConfig, GatewayConfig, QueueConfig};
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
    /// `parley-gateway` (started after the services; see
    /// [`StackBuilder::gateway_replicas`]).
    Gateway,
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
            Self::Gateway => "gateway",
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
            Self::Gateway => "parley-gateway",
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
            // Not a gRPC server: its health is `GET /health`.
            Self::Gateway => "",
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
    /// The topic End User Messaging Social publishes WhatsApp events to.
    pub const INBOUND_TOPIC: &str = "parley-eum-in";
    /// The gateway's queues on the SQS feed.
    pub const INBOUND_QUEUE: &str = "parley-inbound";
    /// See [`INBOUND_QUEUE`].
    pub const OUTBOUND_QUEUE: &str = "parley-outbound";
    /// See [`INBOUND_QUEUE`].
    pub const DEAD_LETTER_QUEUE: &str = "parley-dead-letters";
}

async fn create_topic(sns: &aws_sdk_sns::Client, name: &str) -> anyhow::Result<String> {
    Ok(sns
        .create_topic()
        .name(name)
        .send()
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "creating topic {name} on moto: {}",
                aws_sdk_sns::error::DisplayErrorContext(&e)
            )
        })?
        .topic_arn
        .unwrap_or_default())
}

/// The SQS feed as deployed: a queue per topic (the inbound one with SNS
/// envelopes, the outbound one with raw delivery, so both forms are
/// exercised) and a dead-letter queue.
async fn sqs_feed(
    aws: &aws_config::SdkConfig,
    sns: &aws_sdk_sns::Client,
    inbound_topic: &str,
    streaming_topic: &str,
) -> anyhow::Result<Queues> {
    let sqs = aws_sdk_sqs::Client::new(aws);
    let mut urls = Vec::new();
    for name in [
        names::INBOUND_QUEUE,
        names::OUTBOUND_QUEUE,
        names::DEAD_LETTER_QUEUE,
    ] {
        let url = sqs
            .create_queue()
            .queue_name(name)
            .send()
            .await
            .map_err(|e| {
                anyhow::anyhow!(
                    "creating queue {name}: {}",
                    aws_sdk_sqs::error::DisplayErrorContext(&e)
                )
            })?
            .queue_url
            .unwrap_or_default();
        urls.push(url);
    }
    for (topic, url, raw) in [
        (inbound_topic, &urls[0], false),
        (streaming_topic, &urls[1], true),
    ] {
        let arn = sqs
            .get_queue_attributes()
            .queue_url(url)
            .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
            .send()
            .await
            .map_err(|e| {
                anyhow::anyhow!("queue ARN: {}", aws_sdk_sqs::error::DisplayErrorContext(&e))
            })?
            .attributes
            .and_then(|a| {
                a.get(&aws_sdk_sqs::types::QueueAttributeName::QueueArn)
                    .cloned()
            })
            .unwrap_or_default();
        let mut subscribe = sns
            .subscribe()
            .topic_arn(topic)
            .protocol("sqs")
            .endpoint(arn);
        if raw {
            subscribe = subscribe.attributes("RawMessageDelivery", "true");
        }
        subscribe.send().await.map_err(|e| {
            anyhow::anyhow!(
                "subscribing a queue: {}",
                aws_sdk_sns::error::DisplayErrorContext(&e)
            )
        })?;
    }
    Ok(Queues {
        inbound: urls[0].clone(),
        outbound: urls[1].clone(),
        dead_letters: urls[2].clone(),
    })
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
    gateway: Vec<SharedTweak<GatewayConfig>>,
    routing: String,
    replicas: usize,
    service_replicas: BTreeMap<Component, usize>,
    feed: Feed,
    capture_logs: bool,
    data_dir: Option<PathBuf>,
    sandbox_port: u16,
    gateway_port: u16,
    env: Vec<(String, String)>,
}

/// A change applied to every gateway replica's configuration.
type SharedTweak<T> = Arc<dyn Fn(&mut T) + Send + Sync>;

/// How events reach the gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Feed {
    /// The sandbox plays SNS and delivers both topics to the first
    /// replica's HTTP source, signed (as `parley-local` runs).
    Http,
    /// moto's SNS fans both topics out to SQS queues every replica
    /// consumes (as deployed); needs moto.
    Sqs,
}

/// The queues of the SQS feed.
#[derive(Debug, Clone)]
pub struct Queues {
    /// Subscribed to the inbound (EUM) topic, SNS envelope bodies.
    pub inbound: String,
    /// Subscribed to the streaming topic with raw delivery.
    pub outbound: String,
    /// Where the gateway dead-letters.
    pub dead_letters: String,
}

/// The routing every stack's gateway starts with: the sandbox's number on
/// the sandbox's instance and flow, a short debounce.
pub fn default_routing() -> String {
    let number = parley_sandbox::customer::WhatsAppNumber::default();
    format!(
        r#"[defaults]
instance_id = "{instance}"
contact_flow_id = "{flow}"
buffer_ms = 300
max_wait_ms = 2000
language = "en-US"

[numbers."{id}"]
meta_id = "{meta}"
"#,
        instance = names::INSTANCE,
        flow = names::FLOW,
        id = number.phone_number_id,
        meta = number.meta_id,
    )
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
            gateway: Vec::new(),
            routing: default_routing(),
            replicas: 1,
            service_replicas: BTreeMap::new(),
            feed: Feed::Http,
            capture_logs: false,
            data_dir: None,
            sandbox_port: 0,
            gateway_port: 0,
            env: Vec::new(),
        }
    }

    /// Keeps the stack's files in `dir` (created if needed) instead of a
    /// scratch folder.
    pub fn data_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.data_dir = Some(dir.into());
        self
    }

    /// Listens for the sandbox on `port` (0: any free port).
    pub fn sandbox_port(mut self, port: u16) -> Self {
        self.sandbox_port = port;
        self
    }

    /// Listens for the first gateway replica on `port` (0: any free port).
    pub fn gateway_port(mut self, port: u16) -> Self {
        self.gateway_port = port;
        self
    }

    /// Writes each process's log (JSON, debug level) to a file in the
    /// stack's scratch folder instead of this process's stderr; read them
    /// with [`Stack::process_logs`].
    pub fn capture_logs(mut self) -> Self {
        self.capture_logs = true;
        self
    }

    /// Adds every service and the gateway: the whole bridge.
    pub fn bridge(self) -> Self {
        self.all_services().with(Component::Gateway)
    }

    /// How many gateway replicas run (default 1).
    pub fn gateway_replicas(mut self, replicas: usize) -> Self {
        self.replicas = replicas.max(1);
        self
    }

    /// Runs `replicas` processes of service `component` (processes mode
    /// only); the gateway is given all their addresses, comma-separated,
    /// and balances its calls across them.
    pub fn service_replicas(mut self, component: Component, replicas: usize) -> Self {
        self.service_replicas.insert(component, replicas.max(1));
        self
    }

    /// Feeds the gateway through SQS (moto) instead of HTTP.
    pub fn sqs_feed(mut self) -> Self {
        self.feed = Feed::Sqs;
        self.moto = true;
        self
    }

    /// Changes every gateway replica's configuration.
    pub fn gateway_config(
        mut self,
        tweak: impl Fn(&mut GatewayConfig) + Send + Sync + 'static,
    ) -> Self {
        self.gateway.push(Arc::new(tweak));
        self
    }

    /// Replaces the gateway's routing file (TOML).
    pub fn routing(mut self, routing: impl Into<String>) -> Self {
        self.routing = routing.into();
        self
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
        if let Some(aws) = &moto_aws {
            moto::s3_client(aws)
                .create_bucket()
                .bucket(names::BUCKET)
                .send()
                .await
                .map_err(|e| {
                    anyhow::anyhow!(
                        "creating the media bucket on moto: {}",
                        aws_sdk_s3::error::DisplayErrorContext(&e)
                    )
                })?;
        }
        // SNS is moto's when moto runs, unless the gateway is fed over
        // HTTP: then the sandbox plays SNS itself (and signs).
        let with_gateway = self.components.contains(&Component::Gateway);
        let moto_sns = moto_aws
            .as_ref()
            .filter(|_| !(with_gateway && self.feed == Feed::Http));
        let mut sandbox_config = SandboxConfig::default();
        let mut queues = None;
        let streaming_topic_arn = match moto_sns {
            Some(aws) => {
                let sns = aws_sdk_sns::Client::new(aws);
                let streaming = create_topic(&sns, names::STREAMING_TOPIC).await?;
                let inbound = create_topic(&sns, names::INBOUND_TOPIC).await?;
                sandbox_config.inbound_topic_arn = inbound.clone();
                sandbox_config.sns = Some(sns.clone());
                if with_gateway && self.feed == Feed::Sqs {
                    queues = Some(sqs_feed(aws, &sns, &inbound, &streaming).await?);
                }
                streaming
            }
            None => names::LOCAL_STREAMING_TOPIC_ARN.to_owned(),
        };
        if let Some(aws) = &moto_aws {
            sandbox_config.s3 = Some(moto::s3_client(aws));
        }
        for tweak in self.sandbox {
            tweak(&mut sandbox_config);
        }
        let sandbox = parley_sandbox::start(
            SocketAddr::new(self.host, self.sandbox_port),
            sandbox_config,
        )
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
            children: Mutex::new(BTreeMap::new()),
            extra_replicas: Mutex::new(Vec::new()),
            store: self.store.clone(),
            s3_endpoint: s3_endpoint.clone(),
            capture_logs: self.capture_logs,
            streaming_topic_arn,
            data: match &self.data_dir {
                Some(dir) => {
                    std::fs::create_dir_all(dir)
                        .with_context(|| format!("cannot create {}", dir.display()))?;
                    DataDir::Kept(dir.clone())
                }
                None => DataDir::Temp(tempfile::tempdir().context("a scratch folder")?),
            },
            policy: CallPolicy::default(),
            queues,
            gateways: Mutex::new(Vec::new()),
            metrics: Mutex::new(BTreeMap::new()),
            gateway_setup: GatewaySetup {
                tweaks: self.gateway.clone(),
                routing: self.routing.clone(),
                mode: self.mode,
                env: self.env.clone(),
                first_port: self.gateway_port,
            },
        };

        // The session service first: the sender's ledger lives in it.
        let mut components = self.components.clone();
        components.retain(|c| *c != Component::Gateway);
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
            let mut address = listener.local_addr()?;
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
                    let (bound, child) = stack
                        .spawn_service(component, address, component.binary())
                        .await?;
                    address = bound;
                    stack.children().insert(component, child);
                }
            }
            stack.addresses.insert(component, address);
            let replicas = self.service_replicas.get(&component).copied().unwrap_or(1);
            if replicas > 1 {
                anyhow::ensure!(
                    self.mode == Mode::Processes,
                    "service replicas run as processes only"
                );
                for replica in 1..replicas {
                    let address = SocketAddr::new(self.host, crate::process::free_port());
                    let name = format!("{}-{replica}", component.binary());
                    let (address, child) = stack.spawn_service(component, address, &name).await?;
                    stack.extra_replicas().push((component, address, child));
                }
            }
        }
        let extra: Vec<(Component, SocketAddr)> = stack
            .extra_replicas()
            .iter()
            .map(|(component, address, _)| (*component, *address))
            .collect();
        for (component, address) in stack.addresses.iter().map(|(c, a)| (*c, *a)).chain(extra) {
            let endpoint = format!("http://{address}");
            anyhow::ensure!(
                crate::process::wait_until_serving(&endpoint, component.grpc_service()).await,
                "{} did not become healthy at {endpoint}",
                component.name()
            );
        }
        if with_gateway {
            for replica in 0..self.replicas {
                let port = if replica == 0 { self.gateway_port } else { 0 };
                let listener =
                    parley_runtime::service::bind(SocketAddr::new(self.host, port)).await?;
                let index = stack.gateways().len();
                stack.gateways().push(GatewayReplica {
                    address: listener.local_addr()?,
                    task: None,
                    child: None,
                });
                stack.run_gateway(index, Some(listener), &[]).await?;
            }
            if self.feed == Feed::Http {
                stack.subscribe_gateway().await?;
            }
        }
        Ok(stack)
    }
}

/// Where the stack keeps its files (routing, dead letters, logs, the
/// session store when it is a file).
enum DataDir {
    /// A scratch folder removed with the stack.
    Temp(tempfile::TempDir),
    /// A folder the user chose, kept.
    Kept(PathBuf),
}

impl DataDir {
    fn path(&self) -> &std::path::Path {
        match self {
            Self::Temp(dir) => dir.path(),
            Self::Kept(dir) => dir,
        }
    }
}

/// How the stack's gateway replicas are configured (kept to restart them).
struct GatewaySetup {
    tweaks: Vec<SharedTweak<GatewayConfig>>,
    routing: String,
    mode: Mode,
    env: Vec<(String, String)>,
    /// The first replica's port, when the user chose it (0: any).
    first_port: u16,
}

impl GatewaySetup {
    /// Whether replica `index` must keep the port it was given.
    fn fixed_port(&self, index: usize) -> bool {
        index == 0 && self.first_port != 0
    }
}

/// One gateway replica: in-process (a task) or a process (a child).
struct GatewayReplica {
    address: SocketAddr,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    child: Option<Child>,
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
    children: Mutex<BTreeMap<Component, Child>>,
    /// Replicas beyond the first of a service (processes mode): address
    /// and process, by component.
    extra_replicas: Mutex<Vec<(Component, SocketAddr, Child)>>,
    store: SessionStore,
    s3_endpoint: String,
    capture_logs: bool,
    data: DataDir,
    policy: CallPolicy,
    /// The SQS feed's queues, when the gateway is fed through SQS.
    pub queues: Option<Queues>,
    gateways: Mutex<Vec<GatewayReplica>>,
    gateway_setup: GatewaySetup,
    /// Where each process serves `/metrics` (by its log name), kept
    /// across restarts.
    metrics: Mutex<BTreeMap<String, SocketAddr>>,
}

impl Drop for Stack {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        let mut children = self.children.lock().unwrap_or_else(|e| e.into_inner());
        let mut gateways = self.gateways.lock().unwrap_or_else(|e| e.into_inner());
        let mut extra = self
            .extra_replicas
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        for child in children
            .values_mut()
            .chain(extra.iter_mut().map(|(_, _, child)| child))
            .chain(gateways.iter_mut().filter_map(|g| g.child.as_mut()))
        {
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
        let gateway_tasks: Vec<_> = self
            .gateways()
            .iter_mut()
            .filter_map(|g| g.task.take())
            .collect();
        for task in gateway_tasks.into_iter().chain(self.tasks.drain(..)) {
            let _ = tokio::time::timeout(Duration::from_secs(15), task).await;
        }
    }

    /// The base URL of gateway replica `index` (`http://127.0.0.1:<port>`).
    pub fn gateway_url(&self, index: usize) -> String {
        format!("http://{}", self.gateways()[index].address)
    }

    /// How many gateway replicas the stack has.
    pub fn gateway_count(&self) -> usize {
        self.gateways().len()
    }

    fn gateways(&self) -> std::sync::MutexGuard<'_, Vec<GatewayReplica>> {
        self.gateways.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn children(&self) -> std::sync::MutexGuard<'_, BTreeMap<Component, Child>> {
        self.children.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn extra_replicas(&self) -> std::sync::MutexGuard<'_, Vec<(Component, SocketAddr, Child)>> {
        self.extra_replicas
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// Every address of service `component`: the first replica's, then
    /// the others'.
    pub fn replica_addresses(&self, component: Component) -> Vec<SocketAddr> {
        self.addresses
            .get(&component)
            .copied()
            .into_iter()
            .chain(
                self.extra_replicas()
                    .iter()
                    .filter(|(c, _, _)| *c == component)
                    .map(|(_, address, _)| *address),
            )
            .collect()
    }

    /// Every process the stack runs (processes mode), by its log name
    /// (`parley-transcoder`, `parley-transcoder-1`, `parley-gateway-0`, …,
    /// `moto`),
    /// with its process id: what a load test reads CPU and memory of.
    pub fn process_ids(&self) -> Vec<(String, u32)> {
        let mut ids: Vec<(String, u32)> = self
            .children()
            .iter()
            .map(|(component, child)| (component.binary().to_owned(), child.id()))
            .collect();
        let mut replica_numbers: BTreeMap<Component, usize> = BTreeMap::new();
        for (component, _, child) in self.extra_replicas().iter() {
            let number = replica_numbers.entry(*component).or_insert(0);
            *number += 1;
            ids.push((format!("{}-{number}", component.binary()), child.id()));
        }
        for (index, replica) in self.gateways().iter().enumerate() {
            if let Some(child) = &replica.child {
                ids.push((format!("parley-gateway-{index}"), child.id()));
            }
        }
        // moto plays DynamoDB/S3/SQS/SNS in one Python process: often the
        // first thing to saturate on the SQS path.
        if let Some(moto) = &self.moto {
            ids.push(("moto".to_owned(), moto.process_id()));
        }
        ids
    }

    /// Where the gateway's dead letters go when fed over HTTP.
    pub fn dead_letter_file(&self) -> PathBuf {
        self.data.path().join("dead-letters.jsonl")
    }

    /// Every dead letter so far (from the file, or the SQS feed's queue).
    pub async fn dead_letters(&self) -> Vec<parley_gateway::dead_letter::DeadLetter> {
        let Some(queues) = &self.queues else {
            return parley_gateway::dead_letter::FileDeadLetters::new(self.dead_letter_file())
                .read();
        };
        let Some(aws) = &self.moto_aws else {
            return Vec::new();
        };
        let sqs = aws_sdk_sqs::Client::new(aws);
        let mut letters = Vec::new();
        for _ in 0..5 {
            let Ok(received) = sqs
                .receive_message()
                .queue_url(&queues.dead_letters)
                .max_number_of_messages(10)
                .message_attribute_names("All")
                .visibility_timeout(0)
                .send()
                .await
            else {
                break;
            };
            let messages = received.messages.unwrap_or_default();
            if messages.is_empty() {
                break;
            }
            for message in messages {
                let attribute = |name: &str| {
                    message
                        .message_attributes()
                        .and_then(|a| a.get(name))
                        .and_then(|v| v.string_value())
                        .unwrap_or_default()
                        .to_owned()
                };
                letters.push(parley_gateway::dead_letter::DeadLetter {
                    source: attribute("parley.source"),
                    reason: attribute("parley.reason"),
                    body: message.body().unwrap_or_default().to_owned(),
                    attributes: BTreeMap::new(),
                });
                if let Some(receipt) = message.receipt_handle() {
                    let _ = sqs
                        .delete_message()
                        .queue_url(&queues.dead_letters)
                        .receipt_handle(receipt)
                        .send()
                        .await;
                }
            }
        }
        letters
    }

    /// Kills gateway replica `index` at once — SIGKILL for a process, an
    /// abort for a task — with no draining of any kind.
    pub async fn kill_gateway(&self, index: usize) {
        let (child, task) = {
            let mut gateways = self.gateways();
            (gateways[index].child.take(), gateways[index].task.take())
        };
        if let Some(mut child) = child {
            let _ = child.kill();
            let _ = child.wait();
        }
        if let Some(task) = task {
            task.abort();
            let _ = task.await;
        }
    }

    /// Waits for replica `index` (a process) to exit by itself, e.g. at a
    /// crash point; `true` if it did within `timeout`.
    pub async fn wait_gateway_exit(&self, index: usize, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            {
                let mut gateways = self.gateways();
                let exited = gateways[index]
                    .child
                    .as_mut()
                    .is_none_or(|c| c.try_wait().ok().flatten().is_some());
                if exited {
                    gateways[index].child = None;
                    return true;
                }
            }
            if tokio::time::Instant::now() > deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// (Re)starts gateway replica `index` on its port, with extra
    /// environment for a process (e.g. `PARLEY_TEST_CRASH_AT`).
    pub async fn restart_gateway(&self, index: usize, env: &[(&str, &str)]) -> anyhow::Result<()> {
        self.kill_gateway(index).await;
        self.run_gateway(index, None, env).await
    }

    /// The configuration of gateway replica `index` in this process.
    fn gateway_config(&self) -> GatewayConfig {
        let mut config = GatewayConfig::local();
        // Several replicas: a comma-separated list the client balances over.
        let endpoint = |component: Component| {
            ClientConfig::new(
                self.replica_addresses(component)
                    .iter()
                    .map(|a| format!("http://{a}"))
                    .collect::<Vec<_>>()
                    .join(","),
            )
        };
        config.session = endpoint(Component::Session);
        config.transcoder = endpoint(Component::Transcoder);
        config.transcriber = endpoint(Component::Transcriber);
        config.connect = endpoint(Component::ConnectRelay);
        config.whatsapp = endpoint(Component::WhatsAppSender);
        config.http.sns_trusted_cert_origin = Some(self.sandbox.endpoint.clone());
        config.flush = FlushConfig {
            poll: Duration::from_millis(100),
            lease: Duration::from_secs(10),
            max_attempts: 5,
            backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(2),
            ..FlushConfig::default()
        };
        config.unknown_chat_grace = Duration::from_secs(20);
        config.outbound_window = Duration::from_millis(200);
        match &self.queues {
            Some(queues) => {
                let queue = |url: &str| QueueConfig {
                    url: url.to_owned(),
                    batch: 10,
                    wait: Duration::from_secs(1),
                    visibility: Duration::from_secs(10),
                    concurrency: 8,
                };
                config.inbound_queue = Some(queue(&queues.inbound));
                config.outbound_queue = Some(queue(&queues.outbound));
                config.dead_letters = Some(DeadLetterTarget::Queue(queues.dead_letters.clone()));
                config.aws = self.moto_aws.clone();
            }
            None => {
                config.dead_letters = Some(DeadLetterTarget::File(self.dead_letter_file()));
                config.aws = Some(self.sandbox_aws.clone());
            }
        }
        for tweak in &self.gateway_setup.tweaks {
            tweak(&mut config);
        }
        config
    }

    /// Starts replica `index` (on `listener`, or on its port again).
    async fn run_gateway(
        &self,
        index: usize,
        listener: Option<tokio::net::TcpListener>,
        env: &[(&str, &str)],
    ) -> anyhow::Result<()> {
        let address = self.gateways()[index].address;
        let config = self.gateway_config();
        match self.gateway_setup.mode {
            Mode::InProcess => {
                let listener = match listener {
                    Some(listener) => listener,
                    None => rebind(address).await?,
                };
                let routing =
                    parley_gateway::routing::Routing::parse(&self.gateway_setup.routing, &NoEnv)
                        .map_err(|problems| anyhow::anyhow!("routing: {}", problems.join("; ")))?;
                let services = parley_gateway::services::Services::connect(&config)?;
                let mut stopped = self.stop.subscribe();
                let shutdown = async move {
                    let _ = stopped.wait_for(|stop| *stop).await;
                };
                let server = Self::server_config(address);
                let task = tokio::spawn(parley_gateway::run(
                    listener, server, config, services, routing, shutdown,
                ));
                self.gateways()[index].task = Some(task);
            }
            Mode::Processes if listener.is_some() && !self.gateway_setup.fixed_port(index) => {
                // First start on a port picked for it: any free port will do.
                drop(listener);
                let name = format!("parley-gateway-{index}");
                let (bound, child) = self
                    .spawn_until_listening(
                        &name,
                        address,
                        |address| self.spawn_gateway_process(index, address, &config, env),
                        async |address| http_ok(&format!("http://{address}/health")).await,
                    )
                    .await?;
                let mut gateways = self.gateways();
                gateways[index].address = bound;
                gateways[index].child = Some(child);
            }
            Mode::Processes => {
                // A restart keeps its address (feeds and tests know it).
                let child = self.spawn_gateway_process(index, address, &config, env)?;
                self.gateways()[index].child = Some(child);
            }
        }
        let address = self.gateways()[index].address;
        anyhow::ensure!(
            wait_until_http_ok(&format!("http://{address}/health")).await,
            "gateway {index} did not become healthy at {address}"
        );
        Ok(())
    }

    fn spawn_gateway_process(
        &self,
        index: usize,
        address: SocketAddr,
        config: &GatewayConfig,
        env: &[(&str, &str)],
    ) -> anyhow::Result<Child> {
        let routing = self.data.path().join("routing.toml");
        std::fs::write(&routing, &self.gateway_setup.routing)?;
        let mut command = Command::new(crate::process::binary(Component::Gateway.binary()));
        command
            .arg("serve")
            .env("PARLEY_LISTEN", address.to_string())
            .env("PARLEY_SHUTDOWN_GRACE_MS", "2000")
            .env("PARLEY_ROUTING_FILE", &routing)
            .env(
                "PARLEY_METRICS_LISTEN",
                self.metrics_for(&format!("parley-gateway-{index}"))
                    .to_string(),
            )
            .env("PARLEY_SESSION_ENDPOINT", &config.session.endpoint)
            .env("PARLEY_TRANSCODER_ENDPOINT", &config.transcoder.endpoint)
            .env("PARLEY_TRANSCRIBER_ENDPOINT", &config.transcriber.endpoint)
            .env("PARLEY_CONNECT_ENDPOINT", &config.connect.endpoint)
            .env("PARLEY_WHATSAPP_ENDPOINT", &config.whatsapp.endpoint)
            .env("PARLEY_SNS_TRUSTED_CERT_ORIGIN", &self.sandbox.endpoint)
            .env("PARLEY_FLUSH_POLL_MS", millis(config.flush.poll))
            .env("PARLEY_FLUSH_LEASE_MS", millis(config.flush.lease))
            .env(
                "PARLEY_FLUSH_MAX_ATTEMPTS",
                config.flush.max_attempts.to_string(),
            )
            .env("PARLEY_FLUSH_BACKOFF_MS", millis(config.flush.backoff))
            .env(
                "PARLEY_FLUSH_MAX_BACKOFF_MS",
                millis(config.flush.max_backoff),
            )
            .env("PARLEY_OUTBOUND_WINDOW_MS", millis(config.outbound_window))
            .env(
                "PARLEY_UNKNOWN_CHAT_GRACE_MS",
                millis(config.unknown_chat_grace),
            )
            .env(
                "PARLEY_CHAT_CREATION_LEASE_MS",
                millis(config.chat_creation_lease),
            )
            .env("AWS_REGION", "us-east-1")
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
            .stdout(Stdio::null())
            .stderr(self.stderr_for("parley-gateway")?);
        if self.capture_logs {
            command
                .env("PARLEY_LOG_FORMAT", "json")
                .env("RUST_LOG", "debug,h2=info,hyper=info,tower=info,aws_smithy_runtime=info,aws_config=info,rustls=info,tonic=info,reqwest=info,aws_sdk_sqs=info");
        }
        match (&self.queues, &self.moto) {
            (Some(queues), Some(moto)) => {
                command
                    .env("AWS_ENDPOINT_URL", &moto.endpoint)
                    .env("PARLEY_INBOUND_QUEUE_URL", &queues.inbound)
                    .env("PARLEY_INBOUND_QUEUE_WAIT_MS", "1000")
                    .env("PARLEY_INBOUND_QUEUE_VISIBILITY_MS", "10000")
                    .env("PARLEY_OUTBOUND_QUEUE_URL", &queues.outbound)
                    .env("PARLEY_OUTBOUND_QUEUE_WAIT_MS", "1000")
                    .env("PARLEY_OUTBOUND_QUEUE_VISIBILITY_MS", "10000")
                    .env("PARLEY_DEAD_LETTER_QUEUE_URL", &queues.dead_letters);
            }
            _ => {
                command.env("PARLEY_DEAD_LETTER_FILE", self.dead_letter_file());
            }
        }
        for (key, value) in &self.gateway_setup.env {
            command.env(key, value);
        }
        for (key, value) in env {
            command.env(key, value);
        }
        command.spawn().context("starting parley-gateway")
    }

    /// Subscribes replica 0's HTTP source to both topics the sandbox plays,
    /// and waits until the gateway confirmed both (signature checked).
    async fn subscribe_gateway(&self) -> anyhow::Result<()> {
        let sandbox = &self.sandbox.sandbox;
        let base = self.gateway_url(0);
        let inbound = sandbox.sns_subscribe(
            &sandbox.config.inbound_topic_arn,
            &format!("{base}/sns/inbound"),
            2,
        );
        let outbound = sandbox.sns_subscribe(
            &self.streaming_topic_arn,
            &format!("{base}/sns/outbound"),
            1,
        );
        for _ in 0..200 {
            let confirmed = sandbox
                .topics
                .subscriptions()
                .iter()
                .filter(|s| (s.arn == inbound || s.arn == outbound) && s.confirmed)
                .count();
            if confirmed == 2 {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        anyhow::bail!("the gateway did not confirm its SNS subscriptions")
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
            Component::Gateway => anyhow::bail!("the gateway is started by run_gateway"),
        })
    }

    /// Kills service `component`'s process at once (SIGKILL).
    pub fn kill_service(&self, component: Component) {
        let child = self.children().remove(&component);
        if let Some(mut child) = child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts service `component`'s process again on its address, and
    /// waits until it is healthy.
    pub async fn start_service(&self, component: Component) -> anyhow::Result<()> {
        self.kill_service(component);
        let address = self.address(component);
        let child = self.spawn_process(component, address, component.binary())?;
        self.children().insert(component, child);
        anyhow::ensure!(
            crate::process::wait_until_serving(
                &format!("http://{address}"),
                component.grpc_service()
            )
            .await,
            "{} did not become healthy again",
            component.name()
        );
        Ok(())
    }

    /// Where process `name` (`parley-session`, `parley-gateway-0`, …)
    /// serves `/metrics`, when the stack runs processes.
    pub fn metrics_address(&self, name: &str) -> Option<SocketAddr> {
        self.metrics
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .copied()
    }

    /// A metrics address for process `name`, the same on every restart.
    fn metrics_for(&self, name: &str) -> SocketAddr {
        *self
            .metrics
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(name.to_owned())
            .or_insert_with(|| SocketAddr::from(([127, 0, 0, 1], crate::process::free_port())))
    }

    /// Every process's log so far (with `capture_logs`): (file name, text).
    pub fn process_logs(&self) -> Vec<(String, String)> {
        let Ok(entries) = std::fs::read_dir(self.data.path()) else {
            return Vec::new();
        };
        let mut logs: Vec<(String, String)> = entries
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().ends_with(".log"))
            .map(|e| {
                (
                    e.file_name().to_string_lossy().into_owned(),
                    std::fs::read_to_string(e.path()).unwrap_or_default(),
                )
            })
            .collect();
        logs.sort();
        logs
    }

    /// Where a process's stderr goes: a log file (with `capture_logs`),
    /// else this process's stderr.
    fn stderr_for(&self, name: &str) -> anyhow::Result<Stdio> {
        if !self.capture_logs {
            return Ok(Stdio::inherit());
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.data.path().join(format!("{name}.log")))?;
        Ok(Stdio::from(file))
    }

    /// Starts service `component` as a process (on `address`, or a fresh
    /// port if that one is taken) and waits until it serves; `name` names
    /// its log file and metrics address.
    async fn spawn_service(
        &self,
        component: Component,
        address: SocketAddr,
        name: &str,
    ) -> anyhow::Result<(SocketAddr, Child)> {
        self.spawn_until_listening(
            name,
            address,
            |address| self.spawn_process(component, address, name),
            async |address| {
                crate::process::health(&format!("http://{address}"), component.grpc_service()).await
                    == Some(true)
            },
        )
        .await
    }

    /// Spawns a process that listens on an address it is given and waits
    /// until `ready` says it answers there. Free ports are found by
    /// binding and releasing, so another socket (an outgoing connection
    /// takes its port from the same range) can take one before the child
    /// binds it; a child that exits before it is ready is started again on
    /// fresh ports (listener and metrics), up to three times.
    async fn spawn_until_listening(
        &self,
        name: &str,
        mut address: SocketAddr,
        spawn: impl Fn(SocketAddr) -> anyhow::Result<Child>,
        ready: impl AsyncFn(SocketAddr) -> bool,
    ) -> anyhow::Result<(SocketAddr, Child)> {
        const ATTEMPTS: usize = 3;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut child = spawn(address)?;
            let mut exited = None;
            for _ in 0..200 {
                if let Some(status) = child.try_wait()? {
                    exited = Some(status);
                    break;
                }
                if ready(address).await {
                    return Ok((address, child));
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            let Some(status) = exited else {
                let _ = child.kill();
                let _ = child.wait();
                anyhow::bail!("{name} did not become ready at {address} within 10 s");
            };
            anyhow::ensure!(
                attempt < ATTEMPTS,
                "{name} exited ({status}) before it was ready, {ATTEMPTS} times; see its log"
            );
            self.metrics
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(name);
            address = SocketAddr::new(address.ip(), crate::process::free_port());
        }
    }

    /// Starts service `component` as a process on `address`; `name` names
    /// its log file and metrics address.
    fn spawn_process(
        &self,
        component: Component,
        address: SocketAddr,
        name: &str,
    ) -> anyhow::Result<Child> {
        let (store, s3_endpoint, env) = (
            &self.store,
            self.s3_endpoint.as_str(),
            &self.gateway_setup.env,
        );
        let mut command = Command::new(crate::process::binary(component.binary()));
        command
            .arg("serve")
            .env("PARLEY_LISTEN", address.to_string())
            .env("PARLEY_SHUTDOWN_GRACE_MS", "2000")
            .env("AWS_REGION", "us-east-1")
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env("AWS_ENDPOINT_URL", &self.sandbox.endpoint)
            .env("PARLEY_METRICS_LISTEN", self.metrics_for(name).to_string())
            .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
            .stdout(Stdio::null())
            .stderr(self.stderr_for(name)?);
        if self.capture_logs {
            command
                .env("PARLEY_LOG_FORMAT", "json")
                .env("RUST_LOG", "debug,h2=info,hyper=info,tower=info,aws_smithy_runtime=info,aws_config=info,rustls=info,tonic=info,reqwest=info,aws_sdk_sqs=info");
        }
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
            Component::Gateway => anyhow::bail!("the gateway is started by run_gateway"),
        }
        for (key, value) in env {
            command.env(key, value);
        }
        command
            .spawn()
            .with_context(|| format!("starting {}", component.binary()))
    }
}

/// No environment: the stack's routing is exactly its text.
struct NoEnv;

impl parley_runtime::config::EnvSource for NoEnv {
    fn var(&self, _key: &str) -> Option<String> {
        None
    }
}

fn millis(duration: Duration) -> String {
    duration.as_millis().to_string()
}

/// Binds `address` again (its previous owner may need a moment to let go).
async fn rebind(address: SocketAddr) -> anyhow::Result<tokio::net::TcpListener> {
    for _ in 0..100 {
        if let Ok(listener) = tokio::net::TcpListener::bind(address).await {
            return Ok(listener);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    anyhow::bail!("cannot bind {address} again")
}

/// Polls `url` until it answers 200 (up to 10 s).
pub async fn wait_until_http_ok(url: &str) -> bool {
    for _ in 0..200 {
        if http_ok(url).await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// Whether `url` answers 200 now.
async fn http_ok(url: &str) -> bool {
    reqwest::get(url)
        .await
        .is_ok_and(|response| response.status().is_success())
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
