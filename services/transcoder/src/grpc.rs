//! The gRPC face of the transcoder: decode and validate the request into
//! domain types, run the pipeline on a blocking thread, respond. Errors
//! become statuses here and nowhere else.

use std::{panic::AssertUnwindSafe, sync::Arc};

use bytes::Bytes;
use parley_proto::{
    common::{ErrorDetail, ErrorReason},
    transcoder::{
        self as pb, ConvertRequest, ConvertResponse, ConvertStreamRequest, ConvertStreamResponse,
        ConvertSummary, ProbeRequest, ProbeResponse, convert_stream_request,
        convert_stream_response,
        transcoder_server::{Transcoder, TranscoderServer},
    },
};

use tokio::sync::{Semaphore, mpsc};
use tokio_stream::{StreamExt as _, wrappers::ReceiverStream};
use tonic::{Request, Response, Status, Streaming};

use crate::{
    audio::{AudioFormat, AudioInfo, InputSpec, Limits, OutputSpec},
    error::{Result, TranscodeError},
    io::{ChannelReader, ChannelWriter},
    pipeline::{Conversion, convert, convert_buffer, probe},
};

/// Settings of the transcoder service.
#[derive(Debug, Clone)]
pub struct TranscoderConfig {
    /// Size and duration limits, enforced before work is done.
    pub limits: Limits,
    /// Conversions running at once; more wait. Default: one per core.
    pub workers: usize,
    /// Size of output chunks on streaming calls.
    pub stream_chunk_bytes: usize,
    /// Largest output a unary Convert may produce (checked before any
    /// decoding); bigger conversions are refused with a pointer to
    /// ConvertStream.
    pub max_unary_output_bytes: u64,
    /// A streaming client that sends nothing for this long is ended.
    pub stream_idle_timeout: std::time::Duration,
    /// No stream runs longer than this, however busy.
    pub stream_deadline: std::time::Duration,
}

impl Default for TranscoderConfig {
    fn default() -> Self {
        Self {
            limits: Limits::default(),
            workers: std::thread::available_parallelism().map_or(2, |n| n.get()),
            stream_chunk_bytes: 32 * 1024,
            max_unary_output_bytes: 32 * 1024 * 1024,
            stream_idle_timeout: std::time::Duration::from_secs(30),
            stream_deadline: std::time::Duration::from_secs(600),
        }
    }
}

impl TranscoderConfig {
    /// Reads `PARLEY_MAX_INPUT_BYTES`, `PARLEY_MAX_DURATION_MS`,
    /// `PARLEY_WORKERS`, `PARLEY_STREAM_CHUNK_BYTES`,
    /// `PARLEY_MAX_UNARY_OUTPUT_BYTES`, `PARLEY_STREAM_IDLE_TIMEOUT_MS` and
    /// `PARLEY_STREAM_DEADLINE_MS`.
    pub fn from_settings(settings: &mut parley_runtime::config::Settings<'_>) -> Self {
        let defaults = Self::default();
        let config = Self {
            limits: Limits {
                max_input_bytes: settings.parse("max_input_bytes", defaults.limits.max_input_bytes),
                max_duration_ms: settings.parse("max_duration_ms", defaults.limits.max_duration_ms),
            },
            workers: settings.parse("workers", defaults.workers),
            stream_chunk_bytes: settings.parse("stream_chunk_bytes", defaults.stream_chunk_bytes),
            max_unary_output_bytes: settings
                .parse("max_unary_output_bytes", defaults.max_unary_output_bytes),
            stream_idle_timeout: settings
                .millis("stream_idle_timeout_ms", defaults.stream_idle_timeout),
            stream_deadline: settings.millis("stream_deadline_ms", defaults.stream_deadline),
        };
        if config.stream_idle_timeout.is_zero() || config.stream_deadline.is_zero() {
            settings.problem("stream_idle_timeout_ms", "timeouts must be at least 1 ms");
        }
        if config.workers == 0 {
            settings.problem("workers", "must be at least 1");
        }
        if !(1024..=4 << 20).contains(&config.stream_chunk_bytes) {
            settings.problem("stream_chunk_bytes", "must be within 1024..=4194304");
        }
        config
    }
}

/// The `parley.transcoder.v1.Transcoder` service.
#[derive(Debug, Clone)]
pub struct TranscoderService {
    config: Arc<TranscoderConfig>,
    /// Bounds CPU-bound conversions to the worker count.
    workers: Arc<Semaphore>,
}

impl TranscoderService {
    /// A service with `config`.
    pub fn new(config: TranscoderConfig) -> Self {
        Self {
            workers: Arc::new(Semaphore::new(config.workers)),
            config: Arc::new(config),
        }
    }

    /// The tonic server for this service, accepting unary messages up to the
    /// input limit.
    pub fn into_server(self) -> TranscoderServer<Self> {
        let max = usize::try_from(self.config.limits.max_input_bytes)
            .unwrap_or(usize::MAX)
            .saturating_add(64 * 1024);
        TranscoderServer::new(self)
            .max_decoding_message_size(max)
            .max_encoding_message_size(usize::MAX)
    }

    async fn worker(&self) -> Result<tokio::sync::OwnedSemaphorePermit, Status> {
        self.workers
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| Status::unavailable("transcoder is shutting down"))
    }
}

/// Runs codec work on a blocking thread, turning a panic (a bug, never an
/// input's fault) into an internal error instead of a dead task.
pub async fn run_blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    // The codec's work stays in the request's span (and trace).
    let span = tracing::Span::current();
    tokio::task::spawn_blocking(move || {
        let _entered = span.enter();
        std::panic::catch_unwind(AssertUnwindSafe(work)).unwrap_or_else(|_| {
            Err(TranscodeError::Internal(
                "codec fault (panic); input rejected".into(),
            ))
        })
    })
    .await
    .unwrap_or_else(|e| Err(TranscodeError::Internal(format!("codec task failed: {e}"))))
}

#[tonic::async_trait]
impl Transcoder for TranscoderService {
    async fn convert(
        &self,
        request: Request<ConvertRequest>,
    ) -> Result<Response<ConvertResponse>, Status> {
        let request = request.into_inner();
        let input = input_spec(request.input.unwrap_or_default())?;
        let output = output_spec(request.output.unwrap_or_default())?;
        let limits = self.config.limits;
        let max_output = self.config.max_unary_output_bytes;
        let _permit = self.worker().await?;
        let started = std::time::Instant::now();
        let (audio, conversion) = run_blocking(move || {
            // Refuse what the reply could not carry before decoding anything.
            if input.format != Some(AudioFormat::Pcm) {
                let source = crate::pipeline::probe(&request.audio, limits)?;
                if let Some(out) = crate::pipeline::predict_output(&source, &output)
                    && out.byte_size > max_output
                {
                    return Err(TranscodeError::OutputTooLarge {
                        bytes: out.byte_size,
                        limit: max_output,
                    });
                }
            }
            convert_buffer(&request.audio, input, output, limits)
        })
        .await?;
        record_realtime_factor(&conversion, started);
        tracing::info!(
            source_ms = conversion.source.duration_ms(),
            output_bytes = audio.len(),
            "converted"
        );
        Ok(Response::new(ConvertResponse {
            audio: audio.into(),
            output: Some(info_to_proto(&conversion.output)),
            source: Some(info_to_proto(&conversion.source)),
        }))
    }

    type ConvertStreamStream = ReceiverStream<Result<ConvertStreamResponse, Status>>;

    async fn convert_stream(
        &self,
        request: Request<Streaming<ConvertStreamRequest>>,
    ) -> Result<Response<Self::ConvertStreamStream>, Status> {
        let mut inbound = request.into_inner();
        let start = match inbound.message().await? {
            Some(ConvertStreamRequest {
                message: Some(convert_stream_request::Message::Start(start)),
            }) => start,
            _ => {
                return Err(Status::invalid_argument(
                    "the first message must be a ConvertStart",
                ));
            }
        };
        let input = input_spec(start.input.unwrap_or_default())?;
        let output = output_spec(start.output.unwrap_or_default())?;
        let limits = self.config.limits;
        if start.input_size_bytes > limits.max_input_bytes {
            return Err(TranscodeError::TooLarge {
                limit: limits.max_input_bytes,
            }
            .into());
        }
        if start.exact_size_header && output.format != AudioFormat::Wav {
            return Err(TranscodeError::InvalidRequest(
                "exact_size_header is for WAV output only".into(),
            )
            .into());
        }
        let idle = self.config.stream_idle_timeout;
        let deadline = tokio::time::Instant::now() + self.config.stream_deadline;
        let chunk_bytes = self.config.stream_chunk_bytes;
        let service = self.clone();
        let (response_tx, response_rx) = mpsc::channel(2);
        let worker_tx = response_tx.clone();
        let conversion = async move {
            // A worker (a core) is taken only once input arrives, so a
            // client that opens a stream and goes quiet holds nothing.
            let first = next_chunk(&mut inbound, idle).await?;
            if start.exact_size_header {
                // Compressed input is small: read it all, learn the exact
                // output, announce it, then stream.
                let mut all = bytes::BytesMut::new();
                let mut chunk = first;
                while let Some(piece) = chunk {
                    if all.len() as u64 + piece.len() as u64 > limits.max_input_bytes {
                        return Err(TranscodeError::TooLarge {
                            limit: limits.max_input_bytes,
                        }
                        .into());
                    }
                    all.extend_from_slice(&piece);
                    chunk = next_chunk(&mut inbound, idle).await?;
                }
                let all = all.freeze();
                let _permit = service.worker().await?;
                let started = std::time::Instant::now();
                let prelude_tx = worker_tx.clone();
                let writer = ChannelWriter::new(worker_tx, chunk_bytes, chunk_message);
                let conversion = run_blocking(move || {
                    crate::pipeline::convert_sized(&all, input, writer, output, limits, |info| {
                        prelude_tx
                            .blocking_send(Ok(prelude(info)))
                            .map_err(|_| TranscodeError::Cancelled)
                    })
                })
                .await?;
                return Ok(summary(&conversion, started));
            }
            let _permit = service.worker().await?;
            let started = std::time::Instant::now();
            // Small bounded queues on both sides: memory per conversion
            // stays at a few chunks however large the input is.
            let (input_tx, input_rx) = mpsc::channel::<Bytes>(2);
            let feeder = tokio::spawn(tracing::Instrument::in_current_span(async move {
                let mut chunk = first;
                while let Some(piece) = chunk {
                    if input_tx.send(piece).await.is_err() {
                        break; // the codec stopped early (error or limit)
                    }
                    chunk = next_chunk(&mut inbound, idle).await?;
                }
                Ok::<(), Status>(())
            }));
            let writer = ChannelWriter::new(worker_tx, chunk_bytes, chunk_message);
            let result = run_blocking(move || {
                convert(ChannelReader::new(input_rx), input, writer, output, limits)
            })
            .await;
            // A protocol error (or a quiet client) on the way in explains
            // a codec failure best.
            let fed = feeder
                .await
                .unwrap_or_else(|e| Err(Status::internal(format!("input task failed: {e}"))));
            match (result, fed) {
                (_, Err(status)) => Err(status),
                (Err(e), Ok(())) => Err(Status::from(e)),
                (Ok(conversion), Ok(())) => Ok(summary(&conversion, started)),
            }
        };
        tokio::spawn(tracing::Instrument::in_current_span(async move {
            let last = tokio::time::timeout_at(deadline, conversion)
                .await
                .unwrap_or_else(|_| {
                    Err(TranscodeError::TimedOut("the stream ran past its deadline".into()).into())
                });
            let _ = response_tx.send(last).await;
        }));
        Ok(Response::new(ReceiverStream::new(response_rx)))
    }

    async fn probe(
        &self,
        request: Request<ProbeRequest>,
    ) -> Result<Response<ProbeResponse>, Status> {
        let audio = request.into_inner().audio;
        let limits = self.config.limits;
        let info = run_blocking(move || probe(&audio, limits)).await?;
        Ok(Response::new(ProbeResponse {
            info: Some(info_to_proto(&info)),
        }))
    }
}

/// The next input chunk of a stream, `None` at its end; a client quiet for
/// `idle` is ended with DEADLINE_EXCEEDED.
async fn next_chunk(
    inbound: &mut Streaming<ConvertStreamRequest>,
    idle: std::time::Duration,
) -> Result<Option<Bytes>, Status> {
    let message = tokio::time::timeout(idle, inbound.next())
        .await
        .map_err(|_| {
            Status::from(TranscodeError::TimedOut(format!(
                "no input for {} ms",
                idle.as_millis()
            )))
        })?;
    match message {
        None => Ok(None),
        Some(message) => match message?.message {
            Some(convert_stream_request::Message::Chunk(chunk)) => Ok(Some(chunk)),
            _ => Err(Status::invalid_argument(
                "only chunks may follow the ConvertStart",
            )),
        },
    }
}

fn chunk_message(chunk: Bytes) -> Result<ConvertStreamResponse, Status> {
    Ok(ConvertStreamResponse {
        message: Some(convert_stream_response::Message::Chunk(chunk)),
    })
}

fn prelude(info: &AudioInfo) -> ConvertStreamResponse {
    ConvertStreamResponse {
        message: Some(convert_stream_response::Message::Prelude(
            pb::ConvertPrelude {
                output: Some(info_to_proto(info)),
                output_bytes: info.byte_size,
            },
        )),
    }
}

/// How many times faster than real time conversions run (the audio's
/// length over the time a worker spent on it).
fn record_realtime_factor(conversion: &Conversion, started: std::time::Instant) {
    static FACTOR: std::sync::OnceLock<opentelemetry::metrics::Histogram<f64>> =
        std::sync::OnceLock::new();
    let elapsed = started.elapsed().as_secs_f64();
    let audio = conversion.source.duration_ms() as f64 / 1000.0;
    if elapsed > 0.0 && audio > 0.0 {
        FACTOR
            .get_or_init(|| {
                parley_runtime::metrics::meter("parley-transcoder")
                    .f64_histogram("parley.transcoder.realtime_factor")
                    .with_description("Audio seconds converted per second of work")
                    .with_boundaries(vec![
                        1.0, 10.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0, 5000.0,
                    ])
                    .build()
            })
            .record(audio / elapsed, &[]);
    }
}

fn summary(conversion: &Conversion, started: std::time::Instant) -> ConvertStreamResponse {
    record_realtime_factor(conversion, started);
    ConvertStreamResponse {
        message: Some(convert_stream_response::Message::Summary(ConvertSummary {
            output: Some(info_to_proto(&conversion.output)),
            source: Some(info_to_proto(&conversion.source)),
            final_header: conversion
                .final_header
                .map(|h| Bytes::copy_from_slice(&h))
                .unwrap_or_default(),
        })),
    }
}

fn format_from_proto(value: i32) -> Result<Option<AudioFormat>, Status> {
    match pb::AudioFormat::try_from(value) {
        Ok(pb::AudioFormat::Unspecified) => Ok(None),
        Ok(pb::AudioFormat::Wav) => Ok(Some(AudioFormat::Wav)),
        Ok(pb::AudioFormat::PcmS16le) => Ok(Some(AudioFormat::Pcm)),
        Ok(pb::AudioFormat::OggOpus) => Ok(Some(AudioFormat::OggOpus)),
        Err(_) => Err(Status::invalid_argument(format!(
            "unknown audio format {value}"
        ))),
    }
}

/// The domain input spec for a request.
pub fn input_spec(spec: pb::InputSpec) -> Result<InputSpec, Status> {
    Ok(InputSpec {
        format: format_from_proto(spec.format)?,
        sample_rate: spec.sample_rate_hz,
        channels: u16::try_from(spec.channels).map_err(|_| {
            Status::invalid_argument(format!("{} channels is absurd", spec.channels))
        })?,
    })
}

/// The domain output spec for a request, defaults filled in.
pub fn output_spec(spec: pb::OutputSpec) -> Result<OutputSpec, Status> {
    let mut output = OutputSpec::new(format_from_proto(spec.format)?.unwrap_or(AudioFormat::Wav));
    if spec.sample_rate_hz != 0 {
        output.sample_rate = spec.sample_rate_hz;
    }
    if spec.bitrate_bps != 0 {
        output.bitrate = spec.bitrate_bps;
    }
    output.validate()?;
    Ok(output)
}

/// Facts about audio, as the proto carries them.
pub fn info_to_proto(info: &AudioInfo) -> pb::AudioInfo {
    pb::AudioInfo {
        container: info.container().to_owned(),
        codec: info.codec.to_owned(),
        channels: u32::from(info.channels),
        sample_rate_hz: info.sample_rate,
        input_sample_rate_hz: info.input_sample_rate,
        duration_ms: info.duration_ms(),
        sample_count: info.sample_count,
        byte_size: info.byte_size,
    }
}

impl From<TranscodeError> for Status {
    fn from(error: TranscodeError) -> Self {
        use TranscodeError as E;
        let (code, reason) = match &error {
            E::InvalidRequest(_) => (tonic::Code::InvalidArgument, ErrorReason::InvalidRequest),
            E::TooLarge { .. } | E::TooLong { .. } => {
                (tonic::Code::InvalidArgument, ErrorReason::LimitExceeded)
            }
            E::OutputTooLarge { .. } => {
                (tonic::Code::ResourceExhausted, ErrorReason::LimitExceeded)
            }
            E::TimedOut(_) => (tonic::Code::DeadlineExceeded, ErrorReason::InvalidRequest),
            E::Cancelled => (tonic::Code::Cancelled, ErrorReason::Unspecified),
            E::Internal(_) => (tonic::Code::Internal, ErrorReason::Unspecified),
            _ => (tonic::Code::InvalidArgument, ErrorReason::InvalidMedia),
        };
        if code == tonic::Code::Internal {
            tracing::error!(error = %error, "transcoder fault");
        }
        parley_proto::errors::status(code, error.to_string(), ErrorDetail::new(reason))
    }
}
