//! One transcription, as a small pipeline: the client's audio → the
//! [`Chunker`] → [`Pacing`] → the backend; the backend's results → the
//! client's segments → a closing summary. Audio flows while results come
//! back, and every hop is a bounded channel, so memory per stream stays
//! bounded however long the note is.

use std::time::Duration;

use bytes::Bytes;
use futures::{Stream, StreamExt};
use parley_proto::transcriber as pb;
use tokio::{sync::mpsc, time::Instant};

use crate::{
    backend::{Segment, SpeechBackend},
    chunker::{AudioChunk, Chunker, OggChunker, PcmChunker},
    error::TranscribeError,
    pacing::Pacing,
    settings::{Encoding, Language, StreamSettings},
};

/// Audio events buffered between the chunker and the backend.
const AUDIO_EVENTS_IN_FLIGHT: usize = 4;

/// How every transcription on this server runs.
#[derive(Debug, Clone, PartialEq)]
pub struct TranscriptionOptions {
    /// Audio per event (Transcribe recommends 50–200 ms).
    pub event: Duration,
    /// When events may be sent.
    pub pacing: Pacing,
    /// The longest note accepted.
    pub max_audio: Duration,
}

impl Default for TranscriptionOptions {
    fn default() -> Self {
        Self {
            event: Duration::from_millis(100),
            pacing: Pacing::AsFastAsAccepted,
            max_audio: Duration::from_secs(3_600),
        }
    }
}

/// What a transcription reports besides its segments.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Outcome {
    /// Audio sent to the backend.
    pub audio: Duration,
    /// Final segments.
    pub segments: u32,
}

/// Runs one transcription: reads `audio_in` to its end, sends each
/// segment and then the summary to `out`. An error ends it; the caller
/// reports it (the summary is only sent on success).
pub async fn transcribe<B: SpeechBackend>(
    backend: &B,
    settings: StreamSettings,
    options: &TranscriptionOptions,
    audio_in: impl Stream<Item = Result<Bytes, TranscribeError>> + Send + Unpin,
    out: &mpsc::Sender<Result<pb::TranscribeResponse, tonic::Status>>,
) -> Result<Outcome, TranscribeError> {
    let chunker = match settings.encoding {
        Encoding::Pcm => Chunker::Pcm(PcmChunker::new(settings.sample_rate_hz, options.event)),
        Encoding::OggOpus => Chunker::OggOpus(Box::new(OggChunker::new(options.event))),
    };
    let (audio_tx, audio_rx) = mpsc::channel(AUDIO_EVENTS_IN_FLIGHT);
    let (first_audio_tx, first_audio) = tokio::sync::oneshot::channel();
    let pump = pump_audio(audio_in, chunker, options, audio_tx, first_audio_tx);
    let results = async {
        // Open the Transcribe stream only once there is audio to send: a
        // slow client then holds no AWS stream (a quota slot), and cannot
        // trip Transcribe's timeout for streams without audio. Without any
        // audio the pump fails, and that error ends the call.
        if first_audio.await.is_err() {
            std::future::pending::<()>().await;
        }
        let started = backend.start(&settings, audio_rx).await?;
        forward_results(started, &settings, out).await
    };
    // Either side failing ends both: a bad note stops the backend stream,
    // a backend exception stops reading the note.
    let (audio, summary) = tokio::try_join!(pump, results)?;
    let segments = summary.segment_count;
    let summary = pb::TranscriptionSummary {
        audio_duration_ms: audio.as_millis() as u64,
        ..summary
    };
    let _ = out
        .send(Ok(pb::TranscribeResponse {
            message: Some(pb::transcribe_response::Message::Summary(summary)),
        }))
        .await;
    Ok(Outcome { audio, segments })
}

/// Chunks and paces the client's audio into the backend's audio stream;
/// returns the audio sent.
async fn pump_audio(
    mut audio_in: impl Stream<Item = Result<Bytes, TranscribeError>> + Send + Unpin,
    mut chunker: Chunker,
    options: &TranscriptionOptions,
    audio_tx: mpsc::Sender<Bytes>,
    first_audio: tokio::sync::oneshot::Sender<()>,
) -> Result<Duration, TranscribeError> {
    let mut sender = EventSender {
        audio_tx,
        pacing: options.pacing,
        first_audio: Some(first_audio),
        started: Instant::now(),
        sent: Duration::ZERO,
        backend_gone: false,
    };
    while let Some(piece) = audio_in.next().await {
        let chunks = chunker.push(&piece?)?;
        if chunker.audio_seen() > options.max_audio {
            return Err(TranscribeError::InvalidAudio(format!(
                "the audio is longer than this server's limit of {} s",
                options.max_audio.as_secs()
            )));
        }
        for chunk in chunks {
            sender.send(chunk).await;
        }
        if sender.backend_gone {
            return Ok(sender.sent);
        }
    }
    if let Some(last) = chunker.finish()? {
        sender.send(last).await;
    }
    if sender.sent.is_zero() {
        return Err(TranscribeError::InvalidAudio("no audio was sent".into()));
    }
    Ok(sender.sent)
}

/// Sends events to the backend at the pacing policy's times.
struct EventSender {
    audio_tx: mpsc::Sender<Bytes>,
    pacing: Pacing,
    /// Signalled with the first event, so the stream opens then.
    first_audio: Option<tokio::sync::oneshot::Sender<()>>,
    /// When the first event went: pacing counts from there.
    started: Instant,
    sent: Duration,
    backend_gone: bool,
}

impl EventSender {
    async fn send(&mut self, chunk: AudioChunk) {
        if let Some(first_audio) = self.first_audio.take() {
            self.started = Instant::now();
            let _ = first_audio.send(());
        }
        if let Some(after) = self.pacing.release_after(self.sent) {
            tokio::time::sleep_until(self.started + after).await;
        }
        // A backend that stops reading has failed; the results side
        // reports why, so the pump just stops sending.
        self.backend_gone |= self.audio_tx.send(chunk.bytes).await.is_err();
        self.sent += chunk.duration;
    }
}

/// Sends every segment to the client; returns the summary (without the
/// audio duration).
async fn forward_results(
    mut started: crate::backend::StartedStream,
    settings: &StreamSettings,
    out: &mpsc::Sender<Result<pb::TranscribeResponse, tonic::Status>>,
) -> Result<pb::TranscriptionSummary, TranscribeError> {
    let mut transcript = String::new();
    let mut segments = 0u32;
    let mut language = match &settings.language {
        Language::Fixed(code) => code.clone(),
        Language::Identify { .. } => String::new(),
    };
    while let Some(batch) = started.results.next().await {
        for segment in batch? {
            if !segment.is_partial {
                segments += 1;
                if !segment.text.is_empty() {
                    if !transcript.is_empty() {
                        transcript.push(' ');
                    }
                    transcript.push_str(&segment.text);
                }
                if language.is_empty() {
                    language.clone_from(&segment.language_code);
                }
            }
            let message = pb::transcribe_response::Message::Segment(to_proto(segment));
            if out
                .send(Ok(pb::TranscribeResponse {
                    message: Some(message),
                }))
                .await
                .is_err()
            {
                return Err(TranscribeError::Internal(
                    "the client went away before the transcript was complete".into(),
                ));
            }
        }
    }
    if language.is_empty() {
        language = started.language_code;
    }
    Ok(pb::TranscriptionSummary {
        transcript,
        language_code: language,
        audio_duration_ms: 0,
        segment_count: segments,
        session_id: started.session_id,
    })
}

fn to_proto(segment: Segment) -> pb::TranscriptSegment {
    pb::TranscriptSegment {
        result_id: segment.result_id,
        text: segment.text,
        start_s: segment.start_s,
        end_s: segment.end_s,
        is_partial: segment.is_partial,
        stability: segment.stability,
        confidence: segment.confidence,
        language_code: segment.language_code,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use futures::stream;

    use super::*;
    use crate::{backend::StartedStream, settings::Pii};

    /// Records when each audio event arrived (tokio time) and its size;
    /// answers with one final segment once the audio ends.
    #[derive(Default, Clone)]
    struct RecordingBackend {
        events: Arc<Mutex<Vec<(Instant, usize)>>>,
        starts: Arc<std::sync::atomic::AtomicUsize>,
    }

    impl SpeechBackend for RecordingBackend {
        async fn start(
            &self,
            _settings: &StreamSettings,
            mut audio: mpsc::Receiver<Bytes>,
        ) -> Result<StartedStream, TranscribeError> {
            self.starts
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let events = self.events.clone();
            let results = async move {
                while let Some(bytes) = audio.recv().await {
                    events.lock().unwrap().push((Instant::now(), bytes.len()));
                }
                let count = events.lock().unwrap().len();
                Ok(vec![Segment {
                    result_id: "r".into(),
                    text: format!("{count} events"),
                    ..Segment::default()
                }])
            };
            Ok(StartedStream {
                session_id: "s".into(),
                language_code: "en-US".into(),
                results: stream::once(results).boxed(),
            })
        }
    }

    fn pcm_settings() -> StreamSettings {
        StreamSettings {
            language: Language::Fixed("en-US".into()),
            sample_rate_hz: 16_000,
            encoding: Encoding::Pcm,
            vocabulary_name: None,
            pii: Pii::Off,
            pii_entity_types: Vec::new(),
            partial_stability: None,
        }
    }

    async fn run(
        pacing: Pacing,
        audio: Vec<Result<Bytes, TranscribeError>>,
    ) -> (
        Result<Outcome, TranscribeError>,
        Vec<(Instant, usize)>,
        Vec<pb::TranscribeResponse>,
    ) {
        let backend = RecordingBackend::default();
        let options = TranscriptionOptions {
            pacing,
            ..TranscriptionOptions::default()
        };
        let (out, mut responses) = mpsc::channel(64);
        let result = transcribe(
            &backend,
            pcm_settings(),
            &options,
            stream::iter(audio),
            &out,
        )
        .await;
        drop(out);
        let mut sent = Vec::new();
        while let Some(response) = responses.recv().await {
            sent.push(response.unwrap());
        }
        let events = backend.events.lock().unwrap().clone();
        (result, events, sent)
    }

    /// Two seconds of 16 kHz PCM in one big piece.
    fn two_seconds() -> Vec<Result<Bytes, TranscribeError>> {
        vec![Ok(Bytes::from(vec![0u8; 64_000]))]
    }

    #[tokio::test(start_paused = true)]
    async fn unpaced_sends_everything_at_once_and_summarises() {
        let started = Instant::now();
        let (result, events, responses) = run(Pacing::AsFastAsAccepted, two_seconds()).await;
        let outcome = result.unwrap();
        assert_eq!(outcome.audio, Duration::from_secs(2));
        assert_eq!(events.len(), 20, "100 ms events");
        assert!(
            events
                .iter()
                .all(|(at, len)| *at == started && *len == 3_200)
        );
        let Some(pb::transcribe_response::Message::Summary(summary)) =
            &responses.last().unwrap().message
        else {
            panic!("the summary closes the stream");
        };
        assert_eq!(summary.transcript, "20 events");
        assert_eq!(
            (summary.audio_duration_ms, summary.language_code.as_str()),
            (2_000, "en-US")
        );
    }

    #[tokio::test(start_paused = true)]
    async fn real_time_pacing_spreads_events_over_the_audio_duration() {
        let started = Instant::now();
        let (result, events, _) = run(Pacing::RealTime { multiplier: 2.0 }, two_seconds()).await;
        result.unwrap();
        // At 2× real time, the event starting at t seconds of audio goes at t/2.
        for (index, (at, _)) in events.iter().enumerate() {
            assert_eq!(*at - started, Duration::from_millis(50 * index as u64));
        }
    }

    #[tokio::test(start_paused = true)]
    async fn no_backend_stream_is_opened_before_audio_arrives() {
        let backend = RecordingBackend::default();
        let (out, _responses) = mpsc::channel(4);
        let (audio_tx, audio_rx) = mpsc::channel(1);
        let call = tokio::spawn({
            let backend = backend.clone();
            async move {
                let options = TranscriptionOptions::default();
                let audio = tokio_stream::wrappers::ReceiverStream::new(audio_rx);
                transcribe(&backend, pcm_settings(), &options, audio, &out).await
            }
        });
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert_eq!(backend.starts.load(std::sync::atomic::Ordering::SeqCst), 0);
        audio_tx
            .send(Ok(Bytes::from(vec![0u8; 6_400])))
            .await
            .unwrap();
        drop(audio_tx);
        assert_eq!(
            call.await.unwrap().unwrap().audio,
            Duration::from_millis(200)
        );
        assert_eq!(backend.starts.load(std::sync::atomic::Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_note_shorter_than_one_event_is_transcribed() {
        let (result, events, _) = run(
            Pacing::AsFastAsAccepted,
            vec![Ok(Bytes::from(vec![0u8; 1_000]))],
        )
        .await;
        assert_eq!(result.unwrap().audio, Duration::from_micros(31_250));
        assert_eq!(events.len(), 1);
    }

    #[tokio::test]
    async fn bad_audio_ends_the_stream_with_a_clear_error() {
        let (result, _, responses) = run(
            Pacing::AsFastAsAccepted,
            vec![Ok(Bytes::from_static(&[0; 3]))],
        )
        .await;
        assert!(matches!(result, Err(TranscribeError::InvalidAudio(_))));
        assert!(responses.is_empty(), "no summary after a failure");
        let (result, _, _) = run(Pacing::AsFastAsAccepted, Vec::new()).await;
        assert_eq!(
            result.unwrap_err(),
            TranscribeError::InvalidAudio("no audio was sent".into())
        );
        let (result, _, _) = run(
            Pacing::AsFastAsAccepted,
            vec![Err(TranscribeError::InvalidRequest(
                "the client's stream failed".into(),
            ))],
        )
        .await;
        assert!(matches!(result, Err(TranscribeError::InvalidRequest(_))));
    }
}
