//! The whole bridge under load, end to end: customers (this process)
//! publish WhatsApp events as End User Messaging Social would — through
//! the sandbox's SNS, or straight into the gateway's SQS queue — and the
//! sandbox, playing Connect, WhatsApp and Transcribe, logs when each item
//! became visible to the agent (or reached the customer). Every message
//! is checked for arrival, uniqueness, order, chat and content; latency is
//! measured from the intended send time, so queueing is not hidden.
//!
//! Stages: [`traffic`] (who sends what, and how) → the bridge →
//! [`ledger`] (what arrived) → [`report`] (figures, JSON, HTML), with
//! [`procstat`] and [`hops`] saying where the CPU and the time went, and
//! [`baseline`] running the AWS sample's approach on the same notes.

mod baseline;
mod hops;
mod ledger;
mod procstat;
mod report;
pub mod traffic;

use std::{
    collections::BTreeMap,
    path::PathBuf,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::Context as _;
use clap::ValueEnum;
use parley_local::{Component, SessionStore, Stack};
use tokio::sync::Notify;

use ledger::{Kind, Ledger, Observation, Piece};
use report::{ProcessFigures, Report, Step};
use traffic::{Feed, Media, Messages, NotePool};

/// What customers send.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Mix {
    /// Texts only.
    Text,
    /// Bursts of `--burst` texts at once (see `--debounce`).
    Burst,
    /// A greeting, then voice notes.
    Voice,
    /// A greeting, then documents and pictures in turn.
    Media,
    /// Texts, each answered by the agent; the reply's trip to WhatsApp is
    /// measured too (closed loop only).
    TwoWay,
    /// Mostly texts, with documents, pictures and voice notes.
    Mixed,
}

/// How customer events reach the gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FeedKind {
    /// Signed SNS over HTTP from the sandbox (as `parley-local` runs).
    Http,
    /// Into the gateway's SQS queue (moto locally; real SQS deployed).
    Sqs,
}

/// Gaps between open-loop arrivals.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Arrivals {
    /// Evenly spaced.
    Constant,
    /// Exponential gaps (a Poisson process).
    Poisson,
}

/// On or off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Switch {
    /// On.
    On,
    /// Off.
    Off,
}

/// Options of the pipeline load test.
#[derive(clap::Args, Debug, Clone)]
pub struct Options {
    /// What customers send.
    #[arg(long, value_enum, default_value_t = Mix::Text)]
    mix: Mix,
    /// How events reach the gateway.
    #[arg(long, value_enum, default_value_t = FeedKind::Http)]
    feed: FeedKind,
    /// Customers. In a closed loop each has one message (or burst) in
    /// flight; in an open loop messages go to them in turn.
    #[arg(long, default_value_t = 50)]
    conversations: usize,
    /// Open loop: customer messages per second; several (comma-separated)
    /// make a ramp, one step of `--duration` each. Absent: closed loop.
    #[arg(long, value_delimiter = ',')]
    rate: Vec<f64>,
    /// Gaps between open-loop arrivals.
    #[arg(long, value_enum, default_value_t = Arrivals::Constant)]
    arrivals: Arrivals,
    /// Seconds of load (per ramp step).
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Stop sending after this many customer messages (0: no limit).
    #[arg(long, default_value_t = 0)]
    count: u64,
    /// The gateway's debounce: merge a customer's burst (300 ms) or not.
    #[arg(long, value_enum, default_value_t = Switch::Off)]
    debounce: Switch,
    /// Texts per burst (`--mix burst`).
    #[arg(long, default_value_t = 5)]
    burst: usize,
    /// Voice-note lengths, seconds: `30`, or `3..120` spread over the pool.
    #[arg(long, default_value = "3..120")]
    voice_seconds: String,
    /// Distinct voice notes synthesised (each reused).
    #[arg(long, default_value_t = 8)]
    voice_pool: usize,
    /// Transcoder processes (local runs).
    #[arg(long, default_value_t = 1)]
    transcoder_replicas: usize,
    /// Gateway processes (local runs; more than one needs `--feed sqs`).
    #[arg(long, default_value_t = 1)]
    gateway_replicas: usize,
    /// Also run the AWS sample's per-note approach on the same notes.
    #[arg(long)]
    baseline: bool,
    /// Longest wait, after sending stops, for the last arrivals (seconds).
    #[arg(long, default_value_t = 120.0)]
    settle: f64,
    /// Where `report.json` and `report.html` go.
    #[arg(long, default_value = "target/loadtest")]
    out: PathBuf,
    /// A deployed bridge: the base URL of the sandbox playing AWS there.
    /// Absent: the whole bridge is started here, as processes.
    #[arg(long)]
    sandbox_url: Option<String>,
    /// A deployed bridge's inbound SQS queue (`--feed sqs`); region and
    /// credentials come from the AWS default chain.
    #[arg(long)]
    sqs_queue_url: Option<String>,
    /// Two-way: how long the agent takes before each reply (ms).
    #[arg(long, default_value_t = 250)]
    agent_think_ms: u64,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
}

/// Runs the pipeline load test; fails when anything was lost, doubled,
/// crossed or changed.
pub fn run(options: Options) -> anyhow::Result<()> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run_async(options))
}

fn now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}

/// `30` → (30, 30); `3..120` → (3, 120).
fn seconds_range(text: &str) -> anyhow::Result<(f64, f64)> {
    let parse = |s: &str| {
        s.trim()
            .parse::<f64>()
            .ok()
            .filter(|v| *v > 0.0 && *v <= 1200.0)
            .with_context(|| format!("--voice-seconds: {s:?} is not a length in seconds (0–1200)"))
    };
    match text.split_once("..") {
        Some((low, high)) => {
            let (low, high) = (parse(low)?, parse(high)?);
            anyhow::ensure!(low <= high, "--voice-seconds: {low} is above {high}");
            Ok((low, high))
        }
        None => parse(text).map(|v| (v, v)),
    }
}

/// The kind of message `seq` of conversation `conv`: the first is always a
/// text, so the agent's chat is known by then.
fn kind_for(mix: Mix, conv: usize, seq: usize, pool: usize) -> Kind {
    let voice = Kind::Voice {
        note: (conv + seq) % pool.max(1),
    };
    match (mix, seq) {
        (_, 0) | (Mix::Text | Mix::Burst | Mix::TwoWay, _) => Kind::Text,
        (Mix::Voice, _) => voice,
        (Mix::Media, s) if s % 2 == 1 => Kind::Document,
        (Mix::Media, _) => Kind::Image,
        (Mix::Mixed, s) => match s % 10 {
            3 => Kind::Document,
            6 => Kind::Image,
            9 => voice,
            _ => Kind::Text,
        },
    }
}

/// The bridge being loaded.
struct Target {
    stack: Option<Stack>,
    sandbox: String,
    feed: Feed,
    transcribe: aws_config::SdkConfig,
}

async fn local_target(options: &Options, data: &std::path::Path) -> anyhow::Result<Target> {
    let routing = parley_local::stack::default_routing().replace(
        "buffer_ms = 300",
        if options.debounce == Switch::On {
            "buffer_ms = 300"
        } else {
            "buffer_ms = 0"
        },
    );
    let mut builder = Stack::builder()
        .bridge()
        .processes()
        .data_dir(data)
        .session_store(SessionStore::File(data.join("session.db")))
        .routing(routing)
        .service_replicas(Component::Transcoder, options.transcoder_replicas)
        .gateway_replicas(options.gateway_replicas)
        .process_env("RUST_LOG", "warn")
        .sandbox_config(|config| config.retain_payloads = false);
    if options.feed == FeedKind::Sqs {
        builder = builder.sqs_feed();
    } else {
        anyhow::ensure!(
            options.gateway_replicas == 1,
            "gateway replicas share work through SQS: add --feed sqs"
        );
    }
    let stack = builder.start().await.context("starting the bridge")?;
    let sandbox = stack.sandbox.endpoint.clone();
    let feed = match (&stack.queues, &stack.moto_aws) {
        (Some(queues), Some(aws)) => Feed::Queue {
            sqs: aws_sdk_sqs::Client::new(aws),
            url: queues.inbound.clone(),
            numbers: Arc::new(stack.sandbox.sandbox.config.whatsapp_numbers.clone()),
        },
        _ => Feed::Sandbox {
            http: reqwest::Client::new(),
            url: sandbox.clone(),
        },
    };
    Ok(Target {
        transcribe: stack.sandbox_aws.clone(),
        stack: Some(stack),
        sandbox,
        feed,
    })
}

async fn remote_target(options: &Options, sandbox: &str) -> anyhow::Result<Target> {
    let aws = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .load()
        .await;
    let feed = match (&options.sqs_queue_url, options.feed) {
        (Some(url), _) => Feed::Queue {
            sqs: aws_sdk_sqs::Client::new(&aws),
            url: url.clone(),
            numbers: Arc::new(vec![parley_sandbox::customer::WhatsAppNumber::default()]),
        },
        (None, FeedKind::Sqs) => {
            anyhow::bail!("--feed sqs on a deployed bridge needs --sqs-queue-url")
        }
        (None, FeedKind::Http) => Feed::Sandbox {
            http: reqwest::Client::new(),
            url: sandbox.to_owned(),
        },
    };
    let transcribe = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(sandbox)
        .load()
        .await;
    Ok(Target {
        stack: None,
        sandbox: sandbox.trim_end_matches('/').to_owned(),
        feed,
        transcribe,
    })
}

/// Everything the load loops share.
struct Shared {
    options: Options,
    ledger: Mutex<Ledger>,
    /// Woken when a conversation's messages arrive.
    wake: Vec<Notify>,
    messages: Messages,
    feed: Feed,
    http: reqwest::Client,
    sandbox: String,
    pool: usize,
    /// Intended send times (µs), for the throughput plot.
    sends: Mutex<Vec<i64>>,
    /// Customer messages still allowed (`--count`).
    budget: AtomicU64,
}

impl Shared {
    fn ledger(&self) -> std::sync::MutexGuard<'_, Ledger> {
        self.ledger.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn take_budget(&self, n: u64) -> bool {
        self.budget
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |left| {
                left.checked_sub(n)
            })
            .is_ok()
    }

    /// Plans and publishes the next message of `conv`, intended at
    /// `intended_us`.
    async fn send(&self, conv: usize, intended_us: i64) {
        let (seq, kind) = {
            let mut ledger = self.ledger();
            let kind = kind_for(self.options.mix, conv, ledger.next_seq(conv), self.pool);
            (ledger.plan(conv, kind, intended_us), kind)
        };
        self.sends
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(intended_us);
        let ok = self
            .feed
            .publish(self.messages.value(conv, seq, kind))
            .await
            .is_ok();
        self.ledger().sent(conv, seq, ok);
    }

    /// Waits until everything `conv` sent has arrived, up to `limit`.
    async fn settled(&self, conv: usize, limit: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            if self.ledger().settled(conv) {
                return true;
            }
            if tokio::time::timeout_at(deadline, self.wake[conv].notified())
                .await
                .is_err()
            {
                return self.ledger().settled(conv);
            }
        }
    }
}

/// One customer of the closed loop: a message (or burst), wait for it to
/// arrive (and, two-way, for the agent's reply to reach WhatsApp), again.
async fn closed_loop_customer(shared: Arc<Shared>, conv: usize, until: Instant) {
    let per_send = if shared.options.mix == Mix::Burst {
        shared.options.burst.max(1)
    } else {
        1
    };
    let wait = Duration::from_secs_f64(shared.options.settle.max(1.0));
    while Instant::now() < until && shared.take_budget(per_send as u64) {
        for _ in 0..per_send {
            shared.send(conv, now_us()).await;
        }
        if !shared.settled(conv, wait).await {
            return;
        }
        if shared.options.mix == Mix::TwoWay {
            let (seq, contact) = {
                let ledger = shared.ledger();
                (ledger.last_seq(conv), ledger.contact_of(conv))
            };
            let (Some(seq), Some(contact)) = (seq, contact) else {
                return;
            };
            // An agent takes a moment (`--agent-think-ms`): a human reply
            // does not follow a chat's creation within milliseconds.
            tokio::time::sleep(Duration::from_millis(shared.options.agent_think_ms)).await;
            shared.ledger().replied(conv, seq, now_us());
            let text = ledger::reply_line(shared.messages.run(), conv, seq);
            if let Err(error) =
                Feed::agent_says(&shared.http, &shared.sandbox, &contact, &text).await
            {
                eprintln!("the agent's reply could not be written: {error:#}");
                shared.ledger().reply_failed(conv, seq);
                return;
            }
            if !shared.settled(conv, wait).await {
                return;
            }
        }
    }
}

/// The open loop: arrivals at the offered rate whatever the bridge does,
/// each to the next customer in turn; per customer, sends stay in order.
/// The start (µs) and offered rate of each step.
async fn open_loop(shared: Arc<Shared>) -> Vec<(i64, f64)> {
    let conversations = shared.options.conversations;
    let mut queues = Vec::new();
    let mut workers = Vec::new();
    for conv in 0..conversations {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<i64>();
        queues.push(tx);
        let shared = shared.clone();
        workers.push(tokio::spawn(async move {
            while let Some(intended) = rx.recv().await {
                shared.send(conv, intended).await;
            }
        }));
    }
    let per_arrival = if shared.options.mix == Mix::Burst {
        shared.options.burst.max(1)
    } else {
        1
    };
    let mut steps = Vec::new();
    let mut next_conv = 0;
    'steps: for &rate in &shared.options.rate {
        let rate = rate.max(0.001);
        let step_start = tokio::time::Instant::now();
        let step_us = now_us();
        steps.push((step_us, rate));
        let length = Duration::from_secs_f64(shared.options.duration);
        let mut offset = Duration::ZERO;
        loop {
            let gap = match shared.options.arrivals {
                Arrivals::Constant => 1.0 / rate,
                Arrivals::Poisson => -(1.0 - fastrand::f64()).ln() / rate,
            };
            offset += Duration::from_secs_f64(gap * per_arrival as f64);
            if offset >= length {
                break;
            }
            tokio::time::sleep_until(step_start + offset).await;
            if !shared.take_budget(per_arrival as u64) {
                break 'steps;
            }
            let intended = step_us + offset.as_micros() as i64;
            for _ in 0..per_arrival {
                let _ = queues[next_conv].send(intended);
            }
            next_conv = (next_conv + 1) % conversations;
        }
    }
    drop(queues);
    for worker in workers {
        let _ = worker.await;
    }
    steps
}

/// The sandbox's observation log from `after` on, into the ledger, until
/// `stop` (then one last read).
async fn observe(shared: Arc<Shared>, mut after: u64, stop: Arc<AtomicBool>) -> anyhow::Result<()> {
    loop {
        let stopping = stop.load(Ordering::Relaxed);
        let page: serde_json::Value = shared
            .http
            .get(format!(
                "{}/_sandbox/observed?after={after}&limit=5000",
                shared.sandbox
            ))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let observations: Vec<Observation> =
            serde_json::from_value(page["observations"].clone()).unwrap_or_default();
        let full = observations.len() >= 5000;
        let mut touched = Vec::new();
        {
            let mut ledger = shared.ledger();
            for observation in observations {
                after = after.max(observation.seq);
                touched.extend(ledger.observe(observation));
            }
        }
        touched.sort_unstable();
        touched.dedup();
        for conv in touched {
            shared.wake[conv].notify_one();
        }
        if stopping && !full {
            return Ok(());
        }
        if !full {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// Where the observation log ends now.
async fn log_end(http: &reqwest::Client, sandbox: &str) -> anyhow::Result<u64> {
    let mut after = 0;
    loop {
        let page: serde_json::Value = http
            .get(format!(
                "{sandbox}/_sandbox/observed?after={after}&limit=10000"
            ))
            .send()
            .await?
            .error_for_status()
            .context("the sandbox has no observation log (GET /_sandbox/observed)")?
            .json()
            .await?;
        let Some(last) = page["observations"]
            .as_array()
            .and_then(|o| o.last())
            .and_then(|o| o["seq"].as_u64())
        else {
            return Ok(after);
        };
        after = last;
    }
}

async fn scrape_all(stack: &Stack, names: &[String]) -> BTreeMap<String, hops::Scrape> {
    let http = reqwest::Client::new();
    let mut scrapes = BTreeMap::new();
    for name in names {
        let Some(address) = stack.metrics_address(name) else {
            continue;
        };
        if let Ok(response) = http.get(format!("http://{address}/metrics")).send().await
            && let Ok(text) = response.text().await
        {
            scrapes.insert(name.clone(), hops::parse(&text));
        }
    }
    scrapes
}

async fn run_async(options: Options) -> anyhow::Result<()> {
    anyhow::ensure!(
        options.conversations > 0,
        "--conversations must be at least 1"
    );
    anyhow::ensure!(
        options.mix != Mix::TwoWay || options.rate.is_empty(),
        "--mix two-way runs as a closed loop (leave out --rate)"
    );
    let command = std::env::args().collect::<Vec<_>>().join(" ");
    let run = format!("{:06x}", (now_us() / 1000) & 0xff_ffff);
    let uses_voice = matches!(options.mix, Mix::Voice | Mix::Mixed);
    let pool = if uses_voice {
        NotePool::synthesise(
            options.voice_pool.max(1),
            seconds_range(&options.voice_seconds)?,
        )?
    } else {
        NotePool {
            oggs: Vec::new(),
            facts: Vec::new(),
        }
    };
    let data = tempfile::tempdir()?;
    let target = match &options.sandbox_url {
        Some(url) => remote_target(&options, url).await?,
        None => local_target(&options, data.path()).await?,
    };
    let http = reqwest::Client::new();
    let media = Media::upload(&http, &target.sandbox, &pool).await?;
    let start_of_log = log_end(&http, &target.sandbox).await?;
    let shared = Arc::new(Shared {
        ledger: Mutex::new(Ledger::new(&run, options.conversations, pool.facts.clone())),
        wake: (0..options.conversations).map(|_| Notify::new()).collect(),
        messages: Messages::new(&run, options.conversations, media),
        feed: target.feed.clone(),
        http: http.clone(),
        sandbox: target.sandbox.clone(),
        pool: pool.facts.len(),
        sends: Mutex::new(Vec::new()),
        budget: AtomicU64::new(if options.count == 0 {
            u64::MAX
        } else {
            options.count
        }),
        options: options.clone(),
    });

    // Processes to watch: the bridge's, and this one (customers + sandbox).
    let mut processes: Vec<(String, u32)> = target
        .stack
        .as_ref()
        .map(Stack::process_ids)
        .unwrap_or_default();
    let bridge_names: Vec<String> = processes.iter().map(|(n, _)| n.clone()).collect();
    processes.push(("parley-loadtest (+ sandbox)".into(), std::process::id()));
    let start_samples: Vec<Option<procstat::Sample>> = processes
        .iter()
        .map(|(_, pid)| procstat::sample(*pid))
        .collect();
    let before = match &target.stack {
        Some(stack) => scrape_all(stack, &bridge_names).await,
        None => BTreeMap::new(),
    };

    let stop = Arc::new(AtomicBool::new(false));
    let observer = tokio::spawn(observe(shared.clone(), start_of_log, stop.clone()));
    let progress = if options.quiet {
        indicatif::ProgressBar::hidden()
    } else {
        indicatif::ProgressBar::new_spinner()
    };
    progress.enable_steady_tick(Duration::from_millis(200));

    // CPU per second and notes in flight, sampled until the end.
    let sampling = Arc::new(AtomicBool::new(true));
    let sampler = {
        let (shared, sampling, processes, progress) = (
            shared.clone(),
            sampling.clone(),
            processes.clone(),
            progress.clone(),
        );
        tokio::spawn(async move {
            let mut cores: BTreeMap<String, Vec<f64>> = BTreeMap::new();
            let mut last: Vec<Option<procstat::Sample>> = processes
                .iter()
                .map(|(_, pid)| procstat::sample(*pid))
                .collect();
            let mut peak_notes = 0;
            while sampling.load(Ordering::Relaxed) {
                tokio::time::sleep(Duration::from_secs(1)).await;
                for (index, (name, pid)) in processes.iter().enumerate() {
                    let now = procstat::sample(*pid);
                    let busy = match (&last[index], &now) {
                        (Some(a), Some(b)) => b.cpu.saturating_sub(a.cpu).as_secs_f64(),
                        _ => 0.0,
                    };
                    cores.entry(name.clone()).or_default().push(busy);
                    last[index] = now;
                }
                let (sent, in_flight, settled) = {
                    let ledger = shared.ledger();
                    (
                        ledger.sent_count(),
                        ledger.notes_in_flight(),
                        ledger.complete_count(),
                    )
                };
                peak_notes = peak_notes.max(in_flight);
                progress.set_message(format!(
                    "sent {sent}, arrived {settled}, voice notes in flight {in_flight}"
                ));
            }
            (cores, peak_notes)
        })
    };

    let started = Instant::now();
    let start_us = now_us();
    let steps = if options.rate.is_empty() {
        let until = started + Duration::from_secs_f64(options.duration);
        let customers: Vec<_> = (0..options.conversations)
            .map(|conv| tokio::spawn(closed_loop_customer(shared.clone(), conv, until)))
            .collect();
        for customer in customers {
            let _ = customer.await;
        }
        Vec::new()
    } else {
        open_loop(shared.clone()).await
    };
    // Settle: wait for the last arrivals.
    let settle_until = Instant::now() + Duration::from_secs_f64(options.settle);
    while Instant::now() < settle_until && !shared.ledger().all_settled() {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let _ = observer.await;
    sampling.store(false, Ordering::Relaxed);
    let (cores, peak_notes) = sampler.await?;
    progress.finish_and_clear();

    let end_samples: Vec<Option<procstat::Sample>> = processes
        .iter()
        .map(|(_, pid)| procstat::sample(*pid))
        .collect();
    let hops_figures: Vec<hops::Hop> = match &target.stack {
        Some(stack) => {
            let after = scrape_all(stack, &bridge_names).await;
            after
                .iter()
                .flat_map(|(name, scrape)| {
                    hops::diff(
                        name,
                        before.get(name).unwrap_or(&hops::Scrape::new()),
                        scrape,
                    )
                })
                .collect()
        }
        None => Vec::new(),
    };

    let ledger = std::mem::replace(&mut *shared.ledger(), Ledger::new(&run, 0, Vec::new()));
    let (complete, notes_complete, audio_seconds) = ledger.completion();
    let (problems, arrivals) = ledger.finish();
    let last_arrival = arrivals.iter().map(|a| a.at_us).max().unwrap_or(start_us);
    let wall = ((last_arrival - start_us) as f64 / 1e6)
        .max(started.elapsed().as_secs_f64().min(options.duration))
        .max(0.001);
    let sends = shared
        .sends
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let mut latency = BTreeMap::new();
    for piece in [
        Piece::Text,
        Piece::Attachment,
        Piece::Transcript,
        Piece::Reply,
    ] {
        if let Some(p) = report::percentiles(
            arrivals
                .iter()
                .filter(|a| a.piece == piece)
                .map(|a| a.latency_us),
        ) {
            latency.insert(piece, p);
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let figures: Vec<ProcessFigures> = processes
        .iter()
        .enumerate()
        .filter_map(|(index, (name, _))| {
            let (a, b) = (start_samples[index]?, end_samples[index]?);
            let cpu = b.cpu.saturating_sub(a.cpu).as_secs_f64();
            Some(ProcessFigures {
                name: name.clone(),
                cpu_seconds: cpu,
                cores: cpu / elapsed,
                peak_rss_mib: b.peak_rss as f64 / 1_048_576.0,
            })
        })
        .collect();
    let bridge_growth: f64 = processes
        .iter()
        .enumerate()
        .filter(|(_, (name, _))| {
            name.starts_with("parley-") && !name.starts_with("parley-loadtest")
        })
        .filter_map(|(index, _)| {
            Some(
                end_samples[index]?
                    .peak_rss
                    .saturating_sub(start_samples[index]?.rss),
            )
        })
        .sum::<u64>() as f64
        / 1_048_576.0;
    let step_figures: Vec<Step> = steps
        .iter()
        .enumerate()
        .map(|(index, (from, offered))| {
            let to = steps.get(index + 1).map_or(i64::MAX, |(next, _)| *next);
            let in_step = |t: i64| t >= *from && t < to;
            let sent = sends.iter().filter(|s| in_step(**s)).count() as u64;
            let mine: Vec<_> = arrivals
                .iter()
                .filter(|a| in_step(a.at_us - a.latency_us))
                .collect();
            Step {
                offered: *offered,
                sent,
                // Over the time they took to arrive, not the step's length:
                // past the knee the step's messages arrive long after it.
                arrived_per_s: mine.len() as f64
                    / (mine
                        .iter()
                        .map(|a| a.at_us)
                        .max()
                        .map_or(0, |last| last - from) as f64
                        / 1e6)
                        .max(options.duration),
                latency: report::percentiles(mine.iter().map(|a| a.latency_us)),
            }
        })
        .collect();

    let baseline = if options.baseline && !pool.oggs.is_empty() {
        let concurrency = options.conversations.min(pool.oggs.len());
        eprintln!(
            "baseline: the AWS sample's approach on {} notes, {concurrency} at once…",
            pool.oggs.len()
        );
        let sample = baseline::run(&pool.oggs, concurrency, &target.transcribe).await?;
        let transcoder_cpu: f64 = figures
            .iter()
            .filter(|f| f.name.starts_with("parley-transcoder"))
            .map(|f| f.cpu_seconds)
            .sum();
        let bridge_cpu: f64 = figures
            .iter()
            .filter(|f| f.name.starts_with("parley-") && !f.name.starts_with("parley-loadtest"))
            .map(|f| f.cpu_seconds)
            .sum();
        let notes = notes_complete.max(1) as f64;
        Some(baseline::Comparison {
            notes: pool.oggs.len(),
            mean_note_seconds: pool.facts.iter().map(|f| f.seconds).sum::<f64>()
                / pool.facts.len() as f64,
            concurrency,
            sample_note_seconds_p50: sample.note_seconds[sample.note_seconds.len() / 2],
            sample_note_seconds_max: sample.note_seconds.last().copied().unwrap_or_default(),
            sample_convert_cpu_ms: sample.convert_cpu_ms,
            sample_notes_per_s: sample.notes_per_s,
            parley_note_seconds_p50: latency
                .get(&Piece::Transcript)
                .map_or(0.0, |p| p.p50 / 1000.0),
            parley_convert_cpu_ms: transcoder_cpu * 1000.0 / notes,
            parley_bridge_cpu_ms: bridge_cpu * 1000.0 / notes,
            parley_notes_per_s: notes_complete as f64 / wall,
        })
    } else {
        None
    };

    let mut series = Report::series_of(&arrivals, &sends, start_us);
    series.cores = cores;
    let report = Report {
        command: command.replace(&std::env::var("HOME").unwrap_or_default(), "~"),
        machine: format!(
            "{} cores, {}",
            std::thread::available_parallelism().map_or(0, |n| n.get()),
            if target.stack.is_some() {
                "everything on this machine"
            } else {
                "deployed bridge"
            }
        ),
        run,
        wall_seconds: wall,
        sent: sends.len() as u64,
        messages_per_s: complete as f64 / wall,
        notes_per_s: notes_complete as f64 / wall,
        audio_seconds_per_s: audio_seconds / wall,
        latency,
        problems,
        processes: figures,
        peak_notes_in_flight: peak_notes,
        mib_per_note_in_flight: (peak_notes > 0).then(|| bridge_growth / peak_notes as f64),
        hops: hops_figures,
        steps: step_figures,
        baseline,
        series,
    };
    std::fs::create_dir_all(&options.out)
        .with_context(|| format!("creating {}", options.out.display()))?;
    std::fs::write(
        options.out.join("report.json"),
        serde_json::to_string_pretty(&report)?,
    )?;
    std::fs::write(options.out.join("report.html"), report.html())?;
    println!("{}", report.markdown());
    println!(
        "report: {} and report.json",
        options.out.join("report.html").display()
    );
    if let Some(stack) = target.stack {
        stack.shutdown().await;
    }
    anyhow::ensure!(
        report.passed(),
        "messages were lost, doubled, crossed or changed: {:?}",
        report.problems
    );
    Ok(())
}
