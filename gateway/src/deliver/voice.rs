//! A voice note to the agent, from one decode: WhatsApp's OGG/Opus is
//! streamed through the transcoder into a WAV whose exact size is known
//! before the first byte (so Connect's upload can start at once), and the
//! same stream feeds both the Connect attachment and — without its 44-byte
//! header — Transcribe. Each branch may fail alone: a failed transcription
//! never holds back the audio, and an audio Connect refuses (longer than
//! its 20 MB) is still transcribed.

use bytes::Bytes;
use futures::StreamExt;
use parley_client::{ClientError, media::MediaBody};
use parley_proto::{
    common::{ErrorReason, MediaHeader},
    connect::AttachmentStart,
    transcoder::{
        AudioFormat, ConvertStart, OutputSpec, convert_stream_response::Message as ConvertMessage,
    },
    transcriber::{
        AudioEncoding, LanguageIdentification, TranscriptionConfig, transcribe_response,
        transcription_config::Language,
    },
    whatsapp::DownloadMediaRequest,
};
use tokio::sync::mpsc;

use super::media::upload_body;
use crate::{routing::Route, services::Services};

/// The sample rate of the WAV attachment and of the audio Transcribe gets.
pub const SAMPLE_RATE_HZ: u32 = 16_000;
/// Bytes of the WAV header the transcoder writes first.
const WAV_HEADER_BYTES: usize = 44;
/// Chunks buffered per branch: a slow branch slows the decode, never
/// grows memory.
const BRANCH_BUFFER: usize = 8;

/// How a voice note went.
#[derive(Debug, Default)]
pub struct VoiceResult {
    /// The Connect attachment id, when attached.
    pub attachment_id: Option<String>,
    /// Why it was not attached.
    pub attach_error: Option<ClientError>,
    /// The transcript, when transcribed.
    pub transcript: Option<Transcript>,
    /// Why it was not transcribed.
    pub transcribe_error: Option<ClientError>,
    /// Its length.
    pub duration_ms: u64,
}

/// A voice note's text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transcript {
    /// What was said.
    pub text: String,
    /// The language (identified or configured).
    pub language: String,
}

/// The transcription settings of a route.
pub fn transcription_config(route: &Route) -> TranscriptionConfig {
    let language = if route.language_options.len() >= 2 {
        Language::IdentifyLanguage(LanguageIdentification {
            language_options: route.language_options.clone(),
            preferred_language: route.preferred_language.clone(),
        })
    } else {
        Language::LanguageCode(if route.language.is_empty() {
            "en-US".to_owned()
        } else {
            route.language.clone()
        })
    };
    TranscriptionConfig {
        language: Some(language),
        sample_rate_hz: SAMPLE_RATE_HZ,
        encoding: AudioEncoding::PcmS16le as i32,
        ..TranscriptionConfig::default()
    }
}

/// Downloads, transcodes, attaches and transcribes one voice note. `Err`
/// only when nothing could start (the download or the transcoder failed);
/// branch failures are in the result.
#[allow(clippy::too_many_arguments)]
pub async fn to_agent(
    services: &Services,
    connection_token: String,
    business: &str,
    media_id: &str,
    file_name: String,
    client_token: String,
    route: &Route,
) -> Result<VoiceResult, ClientError> {
    let (header, ogg) = services
        .whatsapp
        .download_media(DownloadMediaRequest {
            business_number_id: business.to_owned(),
            media_id: media_id.to_owned(),
        })
        .await?;
    let mut wav = services
        .transcoder
        .convert_stream(
            ConvertStart {
                input: None,
                output: Some(OutputSpec {
                    format: AudioFormat::Wav as i32,
                    sample_rate_hz: SAMPLE_RATE_HZ,
                    bitrate_bps: 0,
                }),
                input_size_bytes: header.size_bytes,
                exact_size_header: true,
            },
            upload_body(ogg),
        )
        .await?;
    // The prelude: the WAV's exact size, before any audio.
    let (wav_bytes, duration_ms) = match wav.next().await {
        Some(Ok(message)) => match message.message {
            Some(ConvertMessage::Prelude(prelude)) => (
                prelude.output_bytes,
                prelude.output.map_or(0, |o| o.duration_ms),
            ),
            _ => {
                return Err(protocol_error(
                    "the transcoder sent audio before its prelude",
                ));
            }
        },
        Some(Err(error)) => return Err(error),
        None => return Err(protocol_error("the transcoder sent nothing")),
    };

    let (attach_tx, attach_rx) = mpsc::channel::<std::io::Result<Bytes>>(BRANCH_BUFFER);
    let (speech_tx, speech_rx) = mpsc::channel::<std::io::Result<Bytes>>(BRANCH_BUFFER);
    let attach = services.connect.send_attachment(
        AttachmentStart {
            connection_token,
            media: Some(MediaHeader {
                mime_type: "audio/wav".into(),
                file_name,
                size_bytes: wav_bytes,
            }),
            client_token,
        },
        receiver_body(attach_rx),
    );
    let transcribe = async {
        let mut segments = services
            .transcriber
            .transcribe(transcription_config(route), receiver_body(speech_rx))
            .await?;
        let mut transcript = None;
        while let Some(response) = segments.next().await {
            if let Some(transcribe_response::Message::Summary(summary)) = response?.message {
                transcript = Some(Transcript {
                    text: summary.transcript,
                    language: summary.language_code,
                });
            }
        }
        transcript.ok_or_else(|| protocol_error("the transcriber ended without a summary"))
    };
    let pump = pump(wav, attach_tx, speech_tx);
    let (pumped, attached, transcribed) = tokio::join!(pump, attach, transcribe);
    let mut result = VoiceResult {
        duration_ms,
        ..VoiceResult::default()
    };
    match attached {
        Ok(sent) => result.attachment_id = Some(sent.attachment_id),
        Err(error) => result.attach_error = Some(error),
    }
    match transcribed {
        Ok(transcript) => result.transcript = Some(transcript),
        Err(error) => result.transcribe_error = Some(error),
    }
    // A transcoder failure mid-stream fails both branches; say why.
    if let Err(error) = pumped {
        result.attach_error.get_or_insert_with(|| error.clone());
        result.transcribe_error.get_or_insert(error);
    }
    Ok(result)
}

/// Copies the transcoder's output to both branches: all of it to the
/// attachment, the audio after the WAV header to the transcriber. A branch
/// that stopped listening (it failed) is dropped; the other goes on.
async fn pump(
    mut wav: parley_client::transcoder::ConvertOutput,
    attach: mpsc::Sender<std::io::Result<Bytes>>,
    speech: mpsc::Sender<std::io::Result<Bytes>>,
) -> Result<(), ClientError> {
    let mut attach = Some(attach);
    let mut speech = Some(speech);
    let mut header_left = WAV_HEADER_BYTES;
    while let Some(message) = wav.next().await {
        let chunk = match message {
            Ok(message) => match message.message {
                Some(ConvertMessage::Chunk(chunk)) => chunk,
                _ => continue,
            },
            Err(error) => {
                for branch in [attach.take(), speech.take()].into_iter().flatten() {
                    let _ = branch
                        .send(Err(std::io::Error::other(error.to_string())))
                        .await;
                }
                return Err(error);
            }
        };
        if let Some(branch) = &attach
            && branch.send(Ok(chunk.clone())).await.is_err()
        {
            attach = None;
        }
        let audio = if header_left > 0 {
            let skip = header_left.min(chunk.len());
            header_left -= skip;
            chunk.slice(skip..)
        } else {
            chunk
        };
        if !audio.is_empty()
            && let Some(branch) = &speech
            && branch.send(Ok(audio)).await.is_err()
        {
            speech = None;
        }
        if attach.is_none() && speech.is_none() {
            break;
        }
    }
    Ok(())
}

fn receiver_body(receiver: mpsc::Receiver<std::io::Result<Bytes>>) -> MediaBody {
    tokio_stream::wrappers::ReceiverStream::new(receiver).boxed()
}

fn protocol_error(message: &str) -> ClientError {
    ClientError {
        service: "transcoder",
        method: "convert_stream",
        code: tonic::Code::Internal,
        message: message.to_owned(),
        detail: Some(Box::new(parley_proto::common::ErrorDetail::new(
            ErrorReason::Unavailable,
        ))),
    }
}
