//! The gateway's settings: where the services are, where events come from,
//! where dead letters go, and how batches are flushed. Read from the
//! environment (`PARLEY_…`) or `PARLEY_CONFIG_FILE`, every problem reported
//! at once. Routing per business number is a file of its own
//! ([`crate::routing`]), because it is reloaded while running.

use std::{path::PathBuf, time::Duration};

use parley_runtime::{client::ClientConfig, config::Settings};

/// Where an SQS consumer reads, and how.
#[derive(Debug, Clone)]
pub struct QueueConfig {
    /// The queue's URL.
    pub url: String,
    /// Messages per receive (1..=10).
    pub batch: i32,
    /// Long-poll wait (0..=20 s).
    pub wait: Duration,
    /// Visibility timeout given on receive, and extended by while a message
    /// is still being worked on.
    pub visibility: Duration,
    /// Messages worked on at once.
    pub concurrency: usize,
}

/// Where dead letters go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeadLetterTarget {
    /// An SQS queue (the reason as a message attribute).
    Queue(String),
    /// A JSON-lines file (local runs).
    File(PathBuf),
}

/// How the SNS HTTP(S) subscriptions and Meta webhooks are checked.
#[derive(Debug, Clone, Default)]
pub struct HttpSourceConfig {
    /// Meta app secret for `X-Hub-Signature-256` (Meta webhooks refused
    /// without it).
    pub meta_app_secret: Option<String>,
    /// The token Meta's verification request must echo.
    pub meta_verify_token: Option<String>,
    /// An origin (`http://127.0.0.1:4566`) whose signing certificates are
    /// trusted besides SNS's own hosts: local runs only.
    pub sns_trusted_cert_origin: Option<String>,
    /// Topics accepted (empty: any topic whose signature verifies).
    pub sns_topics: Vec<String>,
}

/// How pending buffers are flushed.
#[derive(Debug, Clone)]
pub struct FlushConfig {
    /// How often due buffers are listed (besides local wake-ups).
    pub poll: Duration,
    /// How long a taken batch is leased (extended while delivery runs).
    pub lease: Duration,
    /// Deliveries of one batch before it goes to the dead letters.
    pub max_attempts: u32,
    /// Batches delivered at once per direction.
    pub concurrency: usize,
    /// Messages per batch.
    pub max_messages: u32,
    /// First retry delay; doubles per attempt, with jitter.
    pub backoff: Duration,
    /// Longest retry delay.
    pub max_backoff: Duration,
}

impl Default for FlushConfig {
    fn default() -> Self {
        Self {
            poll: Duration::from_millis(500),
            lease: Duration::from_secs(30),
            max_attempts: 8,
            concurrency: 32,
            max_messages: 50,
            backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(300),
        }
    }
}

/// Every setting of the gateway.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// The routing file (absent: defaults from `PARLEY_DEFAULT_*` only).
    pub routing_file: Option<PathBuf>,
    /// How often the routing file is checked for changes.
    pub routing_reload: Duration,
    /// The session service.
    pub session: ClientConfig,
    /// The connect-relay service.
    pub connect: ClientConfig,
    /// The whatsapp-sender service.
    pub whatsapp: ClientConfig,
    /// The transcoder service.
    pub transcoder: ClientConfig,
    /// The transcriber service.
    pub transcriber: ClientConfig,
    /// The queue subscribed to the EUM Social topic.
    pub inbound_queue: Option<QueueConfig>,
    /// The queue subscribed to Connect's streaming topic.
    pub outbound_queue: Option<QueueConfig>,
    /// Where events that cannot be handled go.
    pub dead_letters: Option<DeadLetterTarget>,
    /// The HTTP source's checks.
    pub http: HttpSourceConfig,
    /// Flushing.
    pub flush: FlushConfig,
    /// How long agent messages wait to be put in order (Connect's topic is
    /// a standard one: it may reorder).
    pub outbound_window: Duration,
    /// How long an agent message for a chat not stored yet is retried
    /// before it is dead-lettered.
    pub unknown_chat_grace: Duration,
    /// How long an ended chat still takes agent messages (its last words
    /// often arrive after `chat.ended`).
    pub ended_chat_grace: Duration,
    /// How long message ids (for dedupe) and links are kept.
    pub claim_ttl: Duration,
    /// How long a replica opening a chat holds the conversation's creation
    /// lease: a creation cut short (a crash) is taken over after it, so it
    /// must outlast StartChat's slowest answer.
    pub chat_creation_lease: Duration,
    /// AWS configuration (tests point it at the stand-ins); `None`: the
    /// default chain.
    pub aws: Option<aws_config::SdkConfig>,
}

impl GatewayConfig {
    /// Defaults with every service at `endpoint`'s conventional local port.
    pub fn local() -> Self {
        Self {
            routing_file: None,
            routing_reload: Duration::from_secs(2),
            session: ClientConfig::new("http://127.0.0.1:50051"),
            transcoder: ClientConfig::new("http://127.0.0.1:50052"),
            transcriber: ClientConfig::new("http://127.0.0.1:50053"),
            connect: ClientConfig::new("http://127.0.0.1:50054"),
            whatsapp: ClientConfig::new("http://127.0.0.1:50055"),
            inbound_queue: None,
            outbound_queue: None,
            dead_letters: None,
            http: HttpSourceConfig::default(),
            flush: FlushConfig::default(),
            outbound_window: Duration::from_millis(500),
            unknown_chat_grace: Duration::from_secs(120),
            ended_chat_grace: Duration::from_secs(120),
            claim_ttl: Duration::from_secs(7 * 24 * 3600),
            chat_creation_lease: Duration::from_secs(30),
            aws: None,
        }
    }

    /// Reads every setting; problems are recorded in `settings`.
    pub fn from_settings(settings: &mut Settings<'_>) -> Self {
        let defaults = Self::local();
        let queue = |settings: &mut Settings<'_>, name: &str| {
            let url = settings.raw(&format!("{name}_queue_url"))?;
            let batch = settings.parse(&format!("{name}_queue_batch"), 10i32);
            if !(1..=10).contains(&batch) {
                settings.problem(&format!("{name}_queue_batch"), "must be 1 to 10");
            }
            let wait = settings.millis(&format!("{name}_queue_wait_ms"), Duration::from_secs(20));
            if wait > Duration::from_secs(20) {
                settings.problem(&format!("{name}_queue_wait_ms"), "must be at most 20000");
            }
            Some(QueueConfig {
                url,
                batch,
                wait,
                visibility: settings.millis(
                    &format!("{name}_queue_visibility_ms"),
                    Duration::from_secs(60),
                ),
                concurrency: settings
                    .parse(&format!("{name}_queue_concurrency"), 16usize)
                    .max(1),
            })
        };
        let dead_letters = match (
            settings.raw("dead_letter_queue_url"),
            settings.raw("dead_letter_file"),
        ) {
            (Some(url), None) => Some(DeadLetterTarget::Queue(url)),
            (None, Some(path)) => Some(DeadLetterTarget::File(path.into())),
            (None, None) => None,
            (Some(_), Some(_)) => {
                settings.problem(
                    "dead_letter_file",
                    "set either PARLEY_DEAD_LETTER_QUEUE_URL or PARLEY_DEAD_LETTER_FILE, not both",
                );
                None
            }
        };
        let flush_defaults = FlushConfig::default();
        let flush = FlushConfig {
            poll: settings.millis("flush_poll_ms", flush_defaults.poll),
            lease: settings.millis("flush_lease_ms", flush_defaults.lease),
            max_attempts: settings
                .parse("flush_max_attempts", flush_defaults.max_attempts)
                .max(1),
            concurrency: settings
                .parse("flush_concurrency", flush_defaults.concurrency)
                .max(1),
            max_messages: settings
                .parse("flush_max_messages", flush_defaults.max_messages)
                .max(1),
            backoff: settings.millis("flush_backoff_ms", flush_defaults.backoff),
            max_backoff: settings.millis("flush_max_backoff_ms", flush_defaults.max_backoff),
        };
        if flush.lease < Duration::from_secs(3) {
            settings.problem("flush_lease_ms", "must be at least 3000");
        }
        let config = Self {
            routing_file: settings.existing_file("routing_file"),
            routing_reload: settings.millis("routing_reload_ms", defaults.routing_reload),
            session: ClientConfig::from_settings(settings, "session", &defaults.session.endpoint),
            transcoder: ClientConfig::from_settings(
                settings,
                "transcoder",
                &defaults.transcoder.endpoint,
            ),
            transcriber: ClientConfig::from_settings(
                settings,
                "transcriber",
                &defaults.transcriber.endpoint,
            ),
            connect: ClientConfig::from_settings(settings, "connect", &defaults.connect.endpoint),
            whatsapp: ClientConfig::from_settings(
                settings,
                "whatsapp",
                &defaults.whatsapp.endpoint,
            ),
            inbound_queue: queue(settings, "inbound"),
            outbound_queue: queue(settings, "outbound"),
            dead_letters,
            http: HttpSourceConfig {
                meta_app_secret: settings.raw("meta_app_secret").filter(|s| !s.is_empty()),
                meta_verify_token: settings.raw("meta_verify_token").filter(|s| !s.is_empty()),
                sns_trusted_cert_origin: settings.raw("sns_trusted_cert_origin"),
                sns_topics: settings
                    .raw("sns_topics")
                    .map(|list| {
                        list.split(',')
                            .map(str::trim)
                            .filter(|t| !t.is_empty())
                            .map(str::to_owned)
                            .collect()
                    })
                    .unwrap_or_default(),
            },
            flush,
            outbound_window: settings.millis("outbound_window_ms", defaults.outbound_window),
            unknown_chat_grace: settings
                .millis("unknown_chat_grace_ms", defaults.unknown_chat_grace),
            ended_chat_grace: settings.millis("ended_chat_grace_ms", defaults.ended_chat_grace),
            claim_ttl: settings.millis("claim_ttl_ms", defaults.claim_ttl),
            chat_creation_lease: settings
                .millis("chat_creation_lease_ms", defaults.chat_creation_lease),
            aws: None,
        };
        if let Some(origin) = &config.http.sns_trusted_cert_origin
            && url::Url::parse(origin).is_err()
        {
            settings.problem(
                "sns_trusted_cert_origin",
                format!("{origin:?} is not a URL"),
            );
        }
        config
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    struct Env(HashMap<&'static str, &'static str>);

    impl parley_runtime::config::EnvSource for Env {
        fn var(&self, key: &str) -> Option<String> {
            self.0.get(key).map(|v| (*v).to_owned())
        }
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let env = Env(HashMap::from([
            ("PARLEY_INBOUND_QUEUE_URL", "http://127.0.0.1:1/q"),
            ("PARLEY_INBOUND_QUEUE_BATCH", "20"),
            ("PARLEY_FLUSH_LEASE_MS", "100"),
            ("PARLEY_DEAD_LETTER_FILE", "/tmp/dl"),
            ("PARLEY_DEAD_LETTER_QUEUE_URL", "http://127.0.0.1:1/dlq"),
            ("PARLEY_SESSION_ENDPOINT", "not a uri"),
        ]));
        let mut settings = Settings::new(&env);
        let _ = GatewayConfig::from_settings(&mut settings);
        let problems = settings.finish().unwrap_err().problems;
        assert_eq!(problems.len(), 4, "{problems:#?}");
    }

    #[test]
    fn defaults_need_nothing() {
        let env = Env(HashMap::new());
        let mut settings = Settings::new(&env);
        let config = GatewayConfig::from_settings(&mut settings);
        settings.finish().unwrap();
        assert!(config.inbound_queue.is_none() && config.dead_letters.is_none());
        assert_eq!(config.session.endpoint, "http://127.0.0.1:50051");
    }
}
