//! Formats, specs and facts about audio: the transcoder's domain types,
//! independent of gRPC.

use crate::error::{Result, TranscodeError};

/// Rates libopus decodes and encodes natively.
pub const OPUS_RATES: [u32; 5] = [8_000, 12_000, 16_000, 24_000, 48_000];

/// Opus always counts granule positions and pre-skip at 48 kHz.
pub const OPUS_GRANULE_RATE: u32 = 48_000;

/// Output rates accepted for PCM/WAV output.
pub const MIN_RATE: u32 = 8_000;
/// Highest output rate accepted.
pub const MAX_RATE: u32 = 192_000;

/// Containers and encodings the transcoder reads or writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AudioFormat {
    /// RIFF/WAVE, 16-bit PCM on output.
    Wav,
    /// Headerless signed 16-bit little-endian PCM.
    Pcm,
    /// OGG with one Opus stream.
    OggOpus,
}

impl AudioFormat {
    /// Detects OGG or WAV from the first bytes; raw PCM cannot be detected.
    pub fn sniff(prefix: &[u8]) -> Result<Self> {
        if prefix.is_empty() {
            return Err(TranscodeError::Empty);
        }
        if prefix.starts_with(b"OggS") {
            Ok(Self::OggOpus)
        } else if prefix.len() >= 12 && &prefix[0..4] == b"RIFF" && &prefix[8..12] == b"WAVE" {
            Ok(Self::Wav)
        } else {
            let shown: String = prefix
                .iter()
                .take(8)
                .map(|b| format!("{b:02x}"))
                .collect::<Vec<_>>()
                .join(" ");
            Err(TranscodeError::UnknownContainer(shown))
        }
    }

    /// The format a file name's extension implies.
    pub fn from_extension(path: &std::path::Path) -> Option<Self> {
        match path.extension()?.to_str()?.to_ascii_lowercase().as_str() {
            "wav" | "wave" => Some(Self::Wav),
            "pcm" | "raw" | "s16le" => Some(Self::Pcm),
            "ogg" | "opus" | "oga" => Some(Self::OggOpus),
            _ => None,
        }
    }

    /// The MIME type callers should label this output with.
    pub fn mime_type(self) -> &'static str {
        match self {
            Self::Wav => "audio/wav",
            Self::Pcm => "audio/L16",
            Self::OggOpus => "audio/ogg; codecs=opus",
        }
    }
}

impl std::str::FromStr for AudioFormat {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "wav" => Ok(Self::Wav),
            "pcm" | "raw" | "s16le" => Ok(Self::Pcm),
            "ogg" | "opus" | "ogg-opus" => Ok(Self::OggOpus),
            other => Err(format!(
                "unknown format {other:?}: expected wav, pcm or ogg"
            )),
        }
    }
}

/// What the caller sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct InputSpec {
    /// `None` sniffs OGG or WAV from the bytes.
    pub format: Option<AudioFormat>,
    /// Raw PCM only: sample rate.
    pub sample_rate: u32,
    /// Raw PCM only: channel count (1 or 2).
    pub channels: u16,
}

/// What the caller wants back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutputSpec {
    /// Output container.
    pub format: AudioFormat,
    /// Output rate (for OGG/Opus: the rate written as the input rate).
    pub sample_rate: u32,
    /// Opus bitrate, bits per second.
    pub bitrate: u32,
    /// WAV only: the header written first declares exactly this many
    /// samples (see [`crate::pipeline::predict_output`]), and producing
    /// another count is an error.
    pub exact_samples: Option<u64>,
}

impl OutputSpec {
    /// Default Opus bitrate for voice notes.
    pub const DEFAULT_BITRATE: u32 = 24_000;

    /// The spec for `format` with its default rate (16 kHz for WAV/PCM, what
    /// Transcribe and Connect want; 48 kHz for OGG/Opus).
    pub fn new(format: AudioFormat) -> Self {
        Self {
            format,
            sample_rate: match format {
                AudioFormat::OggOpus => OPUS_GRANULE_RATE,
                _ => 16_000,
            },
            bitrate: Self::DEFAULT_BITRATE,
            exact_samples: None,
        }
    }

    /// Checks rate and bitrate ranges.
    pub fn validate(&self) -> Result<()> {
        if !(MIN_RATE..=MAX_RATE).contains(&self.sample_rate) {
            return Err(TranscodeError::InvalidRequest(format!(
                "output sample rate {} Hz is outside {MIN_RATE}..={MAX_RATE}",
                self.sample_rate
            )));
        }
        if self.format == AudioFormat::OggOpus && !(6_000..=128_000).contains(&self.bitrate) {
            return Err(TranscodeError::InvalidRequest(format!(
                "opus bitrate {} bps is outside 6000..=128000",
                self.bitrate
            )));
        }
        Ok(())
    }
}

/// Facts about one audio stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct AudioInfo {
    /// Container.
    pub format: AudioFormat,
    /// `opus` or `pcm_s16le`.
    pub codec: &'static str,
    /// Channels in the stream.
    pub channels: u16,
    /// Rate samples are delivered at (48 kHz for Opus).
    pub sample_rate: u32,
    /// For Opus: the original input rate from the header (0 if unset).
    pub input_sample_rate: u32,
    /// Samples per channel at `sample_rate`.
    pub sample_count: u64,
    /// Encoded size in bytes.
    pub byte_size: u64,
}

impl AudioInfo {
    /// Exact duration in milliseconds (rounded down).
    pub fn duration_ms(&self) -> u64 {
        if self.sample_rate == 0 {
            0
        } else {
            self.sample_count * 1000 / u64::from(self.sample_rate)
        }
    }

    /// Container name as reported by `probe`.
    pub fn container(&self) -> &'static str {
        match self.format {
            AudioFormat::Wav => "wav",
            AudioFormat::Pcm => "raw",
            AudioFormat::OggOpus => "ogg",
        }
    }
}

/// Limits enforced before (and while) work is done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest input accepted, bytes.
    pub max_input_bytes: u64,
    /// Longest audio accepted, milliseconds.
    pub max_duration_ms: u64,
}

impl Default for Limits {
    /// 20 MiB and 20 minutes: above WhatsApp's 16 MB audio limit and any
    /// voice note a person records.
    fn default() -> Self {
        Self {
            max_input_bytes: 20 * 1024 * 1024,
            max_duration_ms: 20 * 60 * 1000,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sniffs_containers() {
        assert_eq!(
            AudioFormat::sniff(b"OggS\0\x02").unwrap(),
            AudioFormat::OggOpus
        );
        assert_eq!(
            AudioFormat::sniff(b"RIFF\x24\0\0\0WAVEfmt ").unwrap(),
            AudioFormat::Wav
        );
        assert_eq!(AudioFormat::sniff(b"").unwrap_err(), TranscodeError::Empty);
        let err = AudioFormat::sniff(b"ID3\x04garbage").unwrap_err();
        assert!(err.to_string().contains("49 44 33"), "{err}");
    }

    #[test]
    fn formats_from_extensions() {
        use std::path::Path;
        assert_eq!(
            AudioFormat::from_extension(Path::new("a.WAV")),
            Some(AudioFormat::Wav)
        );
        assert_eq!(
            AudioFormat::from_extension(Path::new("a.opus")),
            Some(AudioFormat::OggOpus)
        );
        assert_eq!(
            AudioFormat::from_extension(Path::new("a.pcm")),
            Some(AudioFormat::Pcm)
        );
        assert_eq!(AudioFormat::from_extension(Path::new("a.mp3")), None);
    }

    #[test]
    fn output_spec_validation() {
        assert!(OutputSpec::new(AudioFormat::Wav).validate().is_ok());
        let mut spec = OutputSpec::new(AudioFormat::Wav);
        spec.sample_rate = 100;
        assert!(spec.validate().is_err());
        let mut spec = OutputSpec::new(AudioFormat::OggOpus);
        spec.bitrate = 1;
        assert!(spec.validate().is_err());
    }

    #[test]
    fn duration_is_exact() {
        let info = AudioInfo {
            format: AudioFormat::OggOpus,
            codec: "opus",
            channels: 1,
            sample_rate: 48_000,
            input_sample_rate: 16_000,
            sample_count: 48_000 * 3 + 24_000,
            byte_size: 0,
        };
        assert_eq!(info.duration_ms(), 3_500);
    }
}
