//! The `parley.transcriber.v1.Transcriber` service: the config and the
//! first audio, then the gate (a permit — a Transcribe stream — is taken
//! only once there is audio to send, so a client that opens a call and goes
//! quiet holds nothing), then the transcription on its own task, holding
//! its permit until the stream ends. Every read from the client has an idle
//! deadline and the whole call a total one.

use std::{sync::Arc, time::Duration};

use bytes::Bytes;
use futures::StreamExt;
use parley_proto::transcriber::{
    self as pb,
    transcriber_server::{Transcriber, TranscriberServer},
};
use parley_runtime::config::Settings;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};
use tracing::Instrument as _;

use crate::{
    backend::SpeechBackend,
    error::TranscribeError,
    gate::ConcurrencyGate,
    pacing::Pacing,
    settings::StreamSettings,
    transcription::{TranscriptionOptions, transcribe},
};

/// Responses buffered per stream before the backend waits for the client.
const RESPONSES_IN_FLIGHT: usize = 16;

/// The server's settings.
#[derive(Debug, Clone, PartialEq)]
pub struct TranscriberConfig {
    /// Concurrent Transcribe streams (keep it under the account's quota,
    /// shared by every replica).
    pub max_streams: usize,
    /// Calls that may wait for a stream.
    pub max_waiting: usize,
    /// How long a call may wait.
    pub max_wait: Duration,
    /// How long the client may stay silent before the call is ended.
    pub idle_timeout: Duration,
    /// How long a whole call may take.
    pub deadline: Duration,
    /// How each transcription runs.
    pub options: TranscriptionOptions,
}

impl Default for TranscriberConfig {
    fn default() -> Self {
        Self {
            max_streams: 20,
            max_waiting: 100,
            max_wait: Duration::from_secs(20),
            idle_timeout: Duration::from_secs(30),
            deadline: Duration::from_secs(15 * 60),
            options: TranscriptionOptions::default(),
        }
    }
}

impl TranscriberConfig {
    /// Reads `PARLEY_TRANSCRIBE_MAX_STREAMS`, `_MAX_WAITING`,
    /// `_MAX_WAIT_MS`, `_EVENT_MS` (50..=200), `_REALTIME_MULTIPLIER`
    /// (0 = unpaced) and `_MAX_AUDIO_SECONDS`, reporting bad values.
    pub fn from_settings(settings: &mut Settings<'_>) -> Self {
        let defaults = Self::default();
        let multiplier = settings.parse("transcribe_realtime_multiplier", 0.0f64);
        if multiplier < 0.0 || !multiplier.is_finite() {
            settings.problem(
                "transcribe_realtime_multiplier",
                "must be 0 (unpaced) or a positive multiple of real time",
            );
        }
        let config = Self {
            max_streams: settings.parse("transcribe_max_streams", defaults.max_streams),
            max_waiting: settings.parse("transcribe_max_waiting", defaults.max_waiting),
            max_wait: settings.millis("transcribe_max_wait_ms", defaults.max_wait),
            idle_timeout: settings.millis("transcribe_idle_timeout_ms", defaults.idle_timeout),
            deadline: settings.millis("transcribe_deadline_ms", defaults.deadline),
            options: TranscriptionOptions {
                event: settings.millis("transcribe_event_ms", defaults.options.event),
                pacing: Pacing::from_multiplier(multiplier),
                max_audio: Duration::from_secs(settings.parse(
                    "transcribe_max_audio_seconds",
                    defaults.options.max_audio.as_secs(),
                )),
            },
        };
        if config.max_streams == 0 {
            settings.problem("transcribe_max_streams", "must be at least 1");
        }
        if !(50..=200).contains(&config.options.event.as_millis()) {
            settings.problem(
                "transcribe_event_ms",
                "must be within 50..=200 (Transcribe's recommended event size)",
            );
        }
        config
    }
}

/// The gRPC service over a [`SpeechBackend`].
pub struct TranscriberService<B> {
    backend: Arc<B>,
    gate: ConcurrencyGate,
    options: Arc<TranscriptionOptions>,
    idle_timeout: Duration,
    deadline: Duration,
}

impl<B> Clone for TranscriberService<B> {
    fn clone(&self) -> Self {
        Self {
            backend: self.backend.clone(),
            gate: self.gate.clone(),
            options: self.options.clone(),
            idle_timeout: self.idle_timeout,
            deadline: self.deadline,
        }
    }
}

impl<B: SpeechBackend> TranscriberService<B> {
    /// A service over `backend` with `config`.
    pub fn new(backend: B, config: TranscriberConfig) -> Self {
        Self {
            backend: Arc::new(backend),
            gate: ConcurrencyGate::new(config.max_streams, config.max_waiting, config.max_wait),
            options: Arc::new(config.options),
            idle_timeout: config.idle_timeout,
            deadline: config.deadline,
        }
    }

    /// The gate, for observing load.
    pub fn gate(&self) -> &ConcurrencyGate {
        &self.gate
    }

    /// The tonic server for this service.
    pub fn into_server(self) -> TranscriberServer<Self> {
        TranscriberServer::new(self)
    }
}

/// The client's next message, within the idle deadline.
async fn next_message(
    input: &mut Streaming<pb::TranscribeRequest>,
    idle: Duration,
) -> Result<Option<pb::TranscribeRequest>, TranscribeError> {
    match tokio::time::timeout(idle, input.message()).await {
        Err(_) => Err(TranscribeError::InvalidRequest(format!(
            "the client sent nothing for {} s: the call is ended",
            idle.as_secs_f64()
        ))),
        Ok(Err(status)) => Err(TranscribeError::InvalidRequest(format!(
            "the client's stream failed: {}",
            status.message()
        ))),
        Ok(Ok(message)) => Ok(message),
    }
}

fn audio_in(message: pb::TranscribeRequest) -> Result<Bytes, TranscribeError> {
    match message.message {
        Some(pb::transcribe_request::Message::Audio(audio)) => Ok(audio),
        _ => Err(TranscribeError::InvalidRequest(
            "only audio may follow the first message's config".into(),
        )),
    }
}

/// The client's audio, as the pipeline reads it: `first`, then every
/// further message, each within the idle deadline.
fn audio_of(
    first: Option<Bytes>,
    input: Streaming<pb::TranscribeRequest>,
    idle: Duration,
) -> impl futures::Stream<Item = Result<Bytes, TranscribeError>> + Send + Unpin {
    let rest = futures::stream::unfold(Some(input), move |input| async move {
        let mut input = input?;
        match next_message(&mut input, idle).await {
            Ok(None) => None,
            Ok(Some(message)) => Some((audio_in(message), Some(input))),
            Err(error) => Some((Err(error), None)),
        }
    });
    Box::pin(futures::stream::iter(first.map(Ok)).chain(rest))
}

#[tonic::async_trait]
impl<B: SpeechBackend> Transcriber for TranscriberService<B> {
    type TranscribeStream = ReceiverStream<Result<pb::TranscribeResponse, Status>>;

    async fn transcribe(
        &self,
        request: Request<Streaming<pb::TranscribeRequest>>,
    ) -> Result<Response<Self::TranscribeStream>, Status> {
        let idle = self.idle_timeout;
        let mut input = request.into_inner();
        let config = match next_message(&mut input, idle).await? {
            Some(pb::TranscribeRequest {
                message: Some(pb::transcribe_request::Message::Config(config)),
            }) => config,
            _ => {
                return Err(TranscribeError::InvalidRequest(
                    "the first message must be the TranscriptionConfig".into(),
                )
                .into());
            }
        };
        let settings = StreamSettings::from_proto(config)?;
        // A Transcribe stream is scarce: take one only once there is audio.
        let first = next_message(&mut input, idle)
            .await?
            .map(audio_in)
            .transpose()?;
        let permit = self.gate.enter().await?;
        let deadline = self.deadline;
        let span = tracing::info_span!(
            "transcription",
            encoding = ?settings.encoding,
            sample_rate_hz = settings.sample_rate_hz,
            audio_ms = tracing::field::Empty,
            segments = tracing::field::Empty,
        );
        let (out, responses) = mpsc::channel(RESPONSES_IN_FLIGHT);
        let backend = self.backend.clone();
        let options = self.options.clone();
        tokio::spawn(
            async move {
                let _permit = permit;
                let audio = audio_of(first, input, idle);
                let transcribed = tokio::time::timeout(
                    deadline,
                    transcribe(&*backend, settings, &options, audio, &out),
                )
                .await
                .unwrap_or_else(|_| {
                    Err(TranscribeError::InvalidRequest(format!(
                        "the call ran past its {} s deadline",
                        deadline.as_secs()
                    )))
                });
                match transcribed {
                    Ok(outcome) => {
                        let span = tracing::Span::current();
                        span.record("audio_ms", outcome.audio.as_millis() as u64);
                        span.record("segments", outcome.segments);
                        tracing::debug!("transcription finished");
                    }
                    Err(error) => {
                        tracing::info!(error = %error, "transcription failed");
                        let _ = out.send(Err(error.to_status())).await;
                    }
                }
            }
            .instrument(span),
        );
        Ok(Response::new(ReceiverStream::new(responses)))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn settings(pairs: &[(&str, &str)]) -> Result<TranscriberConfig, String> {
        let env: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let mut settings = Settings::new(&env);
        let config = TranscriberConfig::from_settings(&mut settings);
        settings
            .finish()
            .map(|()| config)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn reads_every_setting_and_reports_each_bad_one_once() {
        let config = settings(&[
            ("PARLEY_TRANSCRIBE_MAX_STREAMS", "5"),
            ("PARLEY_TRANSCRIBE_EVENT_MS", "200"),
            ("PARLEY_TRANSCRIBE_REALTIME_MULTIPLIER", "1.5"),
        ])
        .unwrap();
        assert_eq!(config.max_streams, 5);
        assert_eq!(config.options.event, Duration::from_millis(200));
        assert_eq!(config.options.pacing, Pacing::RealTime { multiplier: 1.5 });
        assert_eq!(settings(&[]).unwrap(), TranscriberConfig::default());

        let error = settings(&[
            ("PARLEY_TRANSCRIBE_REALTIME_MULTIPLIER", "-2"),
            ("PARLEY_TRANSCRIBE_EVENT_MS", "20"),
        ])
        .unwrap_err();
        assert_eq!(
            error
                .matches("PARLEY_TRANSCRIBE_REALTIME_MULTIPLIER")
                .count(),
            1,
            "{error}"
        );
        assert!(error.contains("PARLEY_TRANSCRIBE_EVENT_MS"), "{error}");
        let error = settings(&[("PARLEY_TRANSCRIBE_REALTIME_MULTIPLIER", "fast")]).unwrap_err();
        assert_eq!(
            error
                .matches("PARLEY_TRANSCRIBE_REALTIME_MULTIPLIER")
                .count(),
            1,
            "{error}"
        );
    }
}
