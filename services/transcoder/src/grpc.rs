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
use prost::Message as _;
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
}

impl Default for TranscoderConfig {
    fn default() -> Self {
        Self {
            limits: Limits::default(),
            workers: std::thread::available_parallelism().map_or(2, |n| n.get()),
            stream_chunk_bytes: 32 * 1024,
        }
    }
}

impl TranscoderConfig {
    /// Reads `PARLEY_MAX_INPUT_BYTES`, `PARLEY_MAX_DURATION_MS`,
    /// `PARLEY_WORKERS` and `PARLEY_STREAM_CHUNK_BYTES`.
    pub fn from_settings(settings: &mut parley_runtime::config::Settings<'_>) -> Self {
        let defaults = Self::default();
        let config = Self {
            limits: Limits {
                max_input_bytes: settings.parse("max_input_bytes", defaults.limits.max_input_bytes),
                max_duration_ms: settings.parse("max_duration_ms", defaults.limits.max_duration_ms),
            },
            workers: settings.parse("workers", defaults.workers),
            stream_chunk_bytes: settings.parse("stream_chunk_bytes", defaults.stream_chunk_bytes),
        };
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
    tokio::task::spawn_blocking(move || {
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
        let _permit = self.worker().await?;
        let (audio, conversion) =
            run_blocking(move || convert_buffer(&request.audio, input, output, limits)).await?;
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
        let permit = self.worker().await?;

        // Small bounded queues on both sides: memory per conversion stays
        // at a few chunks however large the input is.
        let (input_tx, input_rx) = mpsc::channel::<Bytes>(2);
        let (response_tx, response_rx) = mpsc::channel(2);
        let feeder = tokio::spawn(async move {
            while let Some(message) = inbound.next().await {
                match message?.message {
                    Some(convert_stream_request::Message::Chunk(chunk)) => {
                        if input_tx.send(chunk).await.is_err() {
                            break; // the codec stopped early (error or limit)
                        }
                    }
                    _ => {
                        return Err(Status::invalid_argument(
                            "only chunks may follow the ConvertStart",
                        ));
                    }
                }
            }
            Ok(())
        });
        let chunk_bytes = self.config.stream_chunk_bytes;
        let codec_tx = response_tx.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let writer = ChannelWriter::new(codec_tx, chunk_bytes, |chunk| {
                Ok(ConvertStreamResponse {
                    message: Some(convert_stream_response::Message::Chunk(chunk)),
                })
            });
            let result = run_blocking(move || {
                convert(ChannelReader::new(input_rx), input, writer, output, limits)
            })
            .await;
            // A protocol error on the way in explains a codec failure best.
            let fed = feeder
                .await
                .unwrap_or_else(|e| Err(Status::internal(format!("input task failed: {e}"))));
            let last = match (result, fed) {
                (_, Err(status)) => Err(status),
                (Err(e), Ok(())) => Err(Status::from(e)),
                (Ok(conversion), Ok(())) => Ok(summary(&conversion)),
            };
            let _ = response_tx.send(last).await;
        });
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

fn summary(conversion: &Conversion) -> ConvertStreamResponse {
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
            E::Cancelled => (tonic::Code::Cancelled, ErrorReason::Unspecified),
            E::Internal(_) => (tonic::Code::Internal, ErrorReason::Unspecified),
            _ => (tonic::Code::InvalidArgument, ErrorReason::InvalidMedia),
        };
        if code == tonic::Code::Internal {
            tracing::error!(error = %error, "transcoder fault");
        }
        let detail = ErrorDetail {
            reason: reason as i32,
            aws_error_code: String::new(),
        };
        Status::with_details(code, error.to_string(), detail.encode_to_vec().into())
    }
}
