//! The speech-to-text backend behind a small trait, and its one real
//! implementation: Amazon Transcribe Streaming through the AWS SDK (pointed
//! at the sandbox's emulator locally and in tests, by endpoint override).

use std::future::Future;

use aws_sdk_transcribestreaming::{
    Client,
    primitives::Blob,
    types::{
        AudioEvent, AudioStream, ContentIdentificationType, ContentRedactionType, LanguageCode,
        MediaEncoding, PartialResultsStability, TranscriptEvent, TranscriptResultStream,
        error::AudioStreamError,
    },
};
use bytes::Bytes;
use futures::{StreamExt, stream::BoxStream};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use crate::{
    error::TranscribeError,
    settings::{Encoding, Language, Pii, Stability, StreamSettings},
};

/// One recognised stretch of speech, partial or final.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Segment {
    /// The result's id; a final result supersedes partials with its id.
    pub result_id: String,
    /// The text.
    pub text: String,
    /// Offset of its start into the audio, seconds.
    pub start_s: f64,
    /// Offset of its end, seconds.
    pub end_s: f64,
    /// Whether more audio may still change it.
    pub is_partial: bool,
    /// Fraction of its words marked stable (0 when stabilisation is off).
    pub stability: f32,
    /// Mean word confidence, 0 when none was given.
    pub confidence: f32,
    /// The segment's language (set with language identification).
    pub language_code: String,
}

/// A stream the backend has accepted.
pub struct StartedStream {
    /// The backend's session id, for support cases.
    pub session_id: String,
    /// The language the backend named at the start (fixed language).
    pub language_code: String,
    /// Results as they come; ends after the last final result.
    pub results: BoxStream<'static, Result<Vec<Segment>, TranscribeError>>,
}

/// Turns a stream of audio events into transcript segments.
pub trait SpeechBackend: Send + Sync + 'static {
    /// Starts a stream with `settings`, reading audio events from `audio`
    /// until its senders are gone.
    fn start(
        &self,
        settings: &StreamSettings,
        audio: mpsc::Receiver<Bytes>,
    ) -> impl Future<Output = Result<StartedStream, TranscribeError>> + Send;
}

/// Amazon Transcribe Streaming.
#[derive(Clone)]
pub struct AwsTranscribe {
    client: Client,
}

impl AwsTranscribe {
    /// A backend over `client`.
    pub fn new(client: Client) -> Self {
        Self { client }
    }
}

impl SpeechBackend for AwsTranscribe {
    async fn start(
        &self,
        settings: &StreamSettings,
        audio: mpsc::Receiver<Bytes>,
    ) -> Result<StartedStream, TranscribeError> {
        let events = ReceiverStream::new(audio).map(|bytes| {
            Ok::<_, AudioStreamError>(AudioStream::AudioEvent(
                AudioEvent::builder()
                    .audio_chunk(Blob::new(bytes.to_vec()))
                    .build(),
            ))
        });
        let mut request = self
            .client
            .start_stream_transcription()
            .media_sample_rate_hertz(settings.sample_rate_hz as i32)
            .media_encoding(match settings.encoding {
                Encoding::Pcm => MediaEncoding::Pcm,
                Encoding::OggOpus => MediaEncoding::OggOpus,
            })
            .audio_stream(events.into());
        request = match &settings.language {
            Language::Fixed(code) => {
                let request = request.language_code(LanguageCode::from(code.as_str()));
                match &settings.vocabulary_name {
                    Some(name) => request.vocabulary_name(name),
                    None => request,
                }
            }
            Language::Identify { options, preferred } => {
                let mut request = request
                    .identify_language(true)
                    .language_options(options.join(","));
                if let Some(preferred) = preferred {
                    request = request.preferred_language(LanguageCode::from(preferred.as_str()));
                }
                // With identification, vocabularies are named per language set.
                match &settings.vocabulary_name {
                    Some(name) => request.vocabulary_names(name),
                    None => request,
                }
            }
        };
        request = match settings.pii {
            Pii::Off => request,
            Pii::Identify => request.content_identification_type(ContentIdentificationType::Pii),
            Pii::Redact => request.content_redaction_type(ContentRedactionType::Pii),
        };
        if !settings.pii_entity_types.is_empty() {
            request = request.pii_entity_types(settings.pii_entity_types.join(","));
        }
        if let Some(stability) = settings.partial_stability {
            request = request
                .enable_partial_results_stabilization(true)
                .partial_results_stability(match stability {
                    Stability::Low => PartialResultsStability::Low,
                    Stability::Medium => PartialResultsStability::Medium,
                    Stability::High => PartialResultsStability::High,
                });
        }
        let output = request.send().await.map_err(TranscribeError::from_start)?;
        let session_id = output.session_id().unwrap_or_default().to_owned();
        let language_code = output
            .language_code()
            .map(|code| code.as_str().to_owned())
            .unwrap_or_default();
        let results =
            futures::stream::unfold(output.transcript_result_stream, |mut stream| async {
                loop {
                    match stream.recv().await {
                        Ok(Some(TranscriptResultStream::TranscriptEvent(event))) => {
                            return Some((Ok(segments(&event)), stream));
                        }
                        // Event kinds newer than this SDK carry nothing for us.
                        Ok(Some(_)) => continue,
                        Ok(None) => return None,
                        Err(error) => {
                            return Some((Err(TranscribeError::from_stream(error)), stream));
                        }
                    }
                }
            })
            .boxed();
        Ok(StartedStream {
            session_id,
            language_code,
            results,
        })
    }
}

/// The segments in one `TranscriptEvent` (its best alternative each).
pub fn segments(event: &TranscriptEvent) -> Vec<Segment> {
    let Some(transcript) = event.transcript() else {
        return Vec::new();
    };
    transcript
        .results()
        .iter()
        .filter_map(|result| {
            let best = result.alternatives().first()?;
            let words: Vec<_> = best
                .items()
                .iter()
                .filter(|item| item.r#type().is_none_or(|t| t.as_str() == "pronunciation"))
                .collect();
            let stable = words.iter().filter(|w| w.stable() == Some(true)).count();
            let confidences: Vec<f64> = words.iter().filter_map(|w| w.confidence()).collect();
            Some(Segment {
                result_id: result.result_id().unwrap_or_default().to_owned(),
                text: best.transcript().unwrap_or_default().to_owned(),
                start_s: result.start_time(),
                end_s: result.end_time(),
                is_partial: result.is_partial(),
                stability: if words.is_empty() {
                    0.0
                } else {
                    stable as f32 / words.len() as f32
                },
                confidence: if confidences.is_empty() {
                    0.0
                } else {
                    (confidences.iter().sum::<f64>() / confidences.len() as f64) as f32
                },
                language_code: result
                    .language_code()
                    .map(|c| c.as_str().to_owned())
                    .unwrap_or_default(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_transcribestreaming::types::{
        Alternative, Item, ItemType, Result as AwsResult, Transcript,
    };

    fn word(content: &str, stable: bool, confidence: f64) -> Item {
        Item::builder()
            .r#type(ItemType::Pronunciation)
            .content(content)
            .stable(stable)
            .confidence(confidence)
            .build()
    }

    #[test]
    fn maps_the_best_alternative_with_stability_and_confidence() {
        let event = TranscriptEvent::builder()
            .transcript(
                Transcript::builder()
                    .results(
                        AwsResult::builder()
                            .result_id("r1")
                            .start_time(0.5)
                            .end_time(1.5)
                            .is_partial(true)
                            .language_code(LanguageCode::EsUs)
                            .alternatives(
                                Alternative::builder()
                                    .transcript("hola mundo.")
                                    .items(word("hola", true, 0.9))
                                    .items(word("mundo", false, 0.5))
                                    .items(
                                        Item::builder()
                                            .r#type(ItemType::Punctuation)
                                            .content(".")
                                            .build(),
                                    )
                                    .build(),
                            )
                            .alternatives(Alternative::builder().transcript("ola mundo").build())
                            .build(),
                    )
                    .results(AwsResult::builder().result_id("empty").build())
                    .build(),
            )
            .build();
        let segments = segments(&event);
        assert_eq!(
            segments.len(),
            1,
            "a result without alternatives is skipped"
        );
        let s = &segments[0];
        assert_eq!(
            (s.result_id.as_str(), s.text.as_str()),
            ("r1", "hola mundo.")
        );
        assert_eq!((s.start_s, s.end_s, s.is_partial), (0.5, 1.5, true));
        assert_eq!(s.stability, 0.5, "punctuation does not count");
        assert!((s.confidence - 0.7).abs() < 1e-6);
        assert_eq!(s.language_code, "es-US");
    }
}
