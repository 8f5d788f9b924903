//! The AWS sample's way with a voice note, on the same notes and the same
//! machine: `ffmpeg` spawned per note for OGG→WAV, then the original OGG
//! streamed to Transcribe (ogg-opus, 48 kHz) through the AWS SDK in
//! 8192-byte chunks with a 1.365 s sleep after each, as the sample paces
//! it. Measured per note, beside Parley's figures from the same run.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::Context as _;
use aws_sdk_transcribestreaming::{
    Client,
    primitives::Blob,
    types::{AudioEvent, AudioStream, LanguageCode, MediaEncoding, TranscriptResultStream},
};
use futures::StreamExt as _;
use serde::Serialize;

/// The sample's chunk size and the sleep after each chunk
/// (`CHUNK_SIZE*16/(SAMPLE_RATE*BYTES_PER_SAMPLE*CHANNEL_NUMS)`).
const CHUNK: usize = 8192;
const SLEEP: Duration = Duration::from_millis(1365);

/// Both approaches, side by side.
#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    /// Notes each approach handled.
    pub notes: usize,
    /// Seconds of audio per note, on average.
    pub mean_note_seconds: f64,
    /// Notes handled at once.
    pub concurrency: usize,
    /// The sample: median seconds per note (conversion + transcription).
    pub sample_note_seconds_p50: f64,
    /// The sample: slowest note, seconds.
    pub sample_note_seconds_max: f64,
    /// The sample: CPU milliseconds per note of `ffmpeg`.
    pub sample_convert_cpu_ms: f64,
    /// The sample: notes per second end to end.
    pub sample_notes_per_s: f64,
    /// Parley: median seconds per note until the transcript reached the
    /// agent (the attachment arrives first).
    pub parley_note_seconds_p50: f64,
    /// Parley: CPU milliseconds per note of its transcoder processes.
    pub parley_convert_cpu_ms: f64,
    /// Parley: CPU milliseconds per note of the whole bridge.
    pub parley_bridge_cpu_ms: f64,
    /// Parley: notes per second end to end.
    pub parley_notes_per_s: f64,
}

impl Comparison {
    /// A Markdown table with ratios.
    pub fn markdown(&self) -> String {
        let ratio = |sample: f64, parley: f64| {
            if parley > 0.0 {
                format!("{:.1}×", sample / parley)
            } else {
                "—".into()
            }
        };
        format!(
            "Baseline: the AWS sample's approach on the same {} notes ({:.1} s each on average, {} at once)\n\n\
| per note | AWS sample (ffmpeg + paced Transcribe) | Parley | ratio |\n|---|---:|---:|---:|\n\
| seconds until the agent has the transcript (p50) | {:.2} | {:.2} | {} |\n\
| conversion CPU ms | {:.1} | {:.1} | {} |\n\
| notes/s end to end | {:.2} | {:.2} | {} |\n\
| whole-bridge CPU ms (Parley) | — | {:.1} | |\n",
            self.notes,
            self.mean_note_seconds,
            self.concurrency,
            self.sample_note_seconds_p50,
            self.parley_note_seconds_p50,
            ratio(self.sample_note_seconds_p50, self.parley_note_seconds_p50),
            self.sample_convert_cpu_ms,
            self.parley_convert_cpu_ms,
            ratio(self.sample_convert_cpu_ms, self.parley_convert_cpu_ms),
            self.sample_notes_per_s,
            self.parley_notes_per_s,
            ratio(self.parley_notes_per_s, self.sample_notes_per_s),
            self.parley_bridge_cpu_ms,
        )
    }
}

/// What the sample's approach measured.
pub struct SampleFigures {
    /// Seconds per note, sorted.
    pub note_seconds: Vec<f64>,
    /// ffmpeg CPU per note, ms.
    pub convert_cpu_ms: f64,
    /// Notes per second.
    pub notes_per_s: f64,
}

/// Runs the sample's approach over `oggs` (all of them, `concurrency` at
/// once), transcribing through the Transcribe endpoint `transcribe`.
pub async fn run(
    oggs: &[Vec<u8>],
    concurrency: usize,
    transcribe: &aws_config::SdkConfig,
) -> anyhow::Result<SampleFigures> {
    let dir = tempfile::tempdir()?;
    let client = Client::new(transcribe);
    let cpu_before = crate::transcoder::children_cpu();
    let started = Instant::now();
    let gate = Arc::new(tokio::sync::Semaphore::new(concurrency.max(1)));
    let mut tasks = Vec::new();
    for (index, ogg) in oggs.iter().enumerate() {
        let input = dir.path().join(format!("note-{index}.ogg"));
        let output = dir.path().join(format!("note-{index}.wav"));
        std::fs::write(&input, ogg)?;
        let (client, gate, ogg) = (client.clone(), gate.clone(), ogg.clone());
        tasks.push(tokio::spawn(async move {
            let _permit = gate.acquire_owned().await?;
            let note_started = Instant::now();
            let status = tokio::process::Command::new("ffmpeg")
                .args(["-nostdin", "-loglevel", "error", "-y", "-i"])
                .arg(&input)
                .args(["-acodec", "pcm_s16le", "-ar", "16000", "-ac", "1"])
                .arg(&output)
                .status()
                .await
                .context("running ffmpeg (install it for the baseline)")?;
            anyhow::ensure!(status.success(), "ffmpeg failed: {status}");
            paced_transcription(&client, ogg).await?;
            anyhow::Ok(note_started.elapsed().as_secs_f64())
        }));
    }
    let mut note_seconds = Vec::new();
    for task in tasks {
        note_seconds.push(task.await??);
    }
    let wall = started.elapsed().as_secs_f64();
    let cpu = crate::transcoder::children_cpu().saturating_sub(cpu_before);
    note_seconds.sort_by(f64::total_cmp);
    Ok(SampleFigures {
        convert_cpu_ms: cpu.as_secs_f64() * 1000.0 / oggs.len().max(1) as f64,
        notes_per_s: oggs.len() as f64 / wall,
        note_seconds,
    })
}

/// The sample's transcription: the OGG in 8 KiB chunks, a sleep after
/// each, the transcript collected to the end.
async fn paced_transcription(client: &Client, ogg: Vec<u8>) -> anyhow::Result<String> {
    let chunks: Vec<Vec<u8>> = ogg.chunks(CHUNK).map(<[u8]>::to_vec).collect();
    let events = futures::stream::iter(chunks).then(|chunk| async move {
        let event =
            AudioStream::AudioEvent(AudioEvent::builder().audio_chunk(Blob::new(chunk)).build());
        tokio::time::sleep(SLEEP).await;
        Ok(event)
    });
    let mut output = client
        .start_stream_transcription()
        .language_code(LanguageCode::EnUs)
        .media_sample_rate_hertz(48_000)
        .media_encoding(MediaEncoding::OggOpus)
        .audio_stream(events.into())
        .send()
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "{}",
                aws_sdk_transcribestreaming::error::DisplayErrorContext(&e)
            )
        })?;
    let mut transcript = Vec::new();
    while let Some(event) = output.transcript_result_stream.recv().await? {
        if let TranscriptResultStream::TranscriptEvent(event) = event {
            for result in event
                .transcript()
                .and_then(|t| t.results.as_ref())
                .into_iter()
                .flatten()
            {
                if !result.is_partial
                    && let Some(text) = result.alternatives().first().and_then(|a| a.transcript())
                {
                    transcript.push(text.to_owned());
                }
            }
        }
    }
    Ok(transcript.join(" "))
}
