//! The one error type of the transcoder; [`crate::grpc`] maps it to a gRPC
//! status in exactly one place.

/// Why a conversion or probe failed. Every variant except `Internal` and
/// `Cancelled` is the caller's input being wrong, and says what is wrong.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TranscodeError {
    /// Zero bytes of input.
    #[error("empty input: no audio bytes were sent")]
    Empty,
    /// The bytes are neither OGG nor RIFF/WAVE.
    #[error("unrecognised audio: input is neither OGG nor WAV (starts with {0})")]
    UnknownContainer(String),
    /// An OGG stream whose first packet is not an OpusHead.
    #[error("not opus: the ogg stream carries {0}, only opus is supported")]
    NotOpus(String),
    /// The OGG framing is broken (bad capture pattern, CRC mismatch, …).
    #[error("corrupt ogg stream at byte {offset}: {reason}")]
    CorruptOgg {
        /// Byte offset of the page that failed.
        offset: u64,
        /// What was wrong with it.
        reason: String,
    },
    /// The input ended before the stream did.
    #[error("truncated stream: {0}")]
    Truncated(String),
    /// A header field is outside what RFC 7845 (or sanity) allows.
    #[error("invalid opus header: {0}")]
    InvalidHeader(String),
    /// A channel mapping the transcoder does not decode.
    #[error(
        "unsupported channel mapping family {family} with {streams} streams: only mono and stereo voice notes are supported"
    )]
    UnsupportedChannelMapping {
        /// The header's mapping family.
        family: u8,
        /// The header's stream count.
        streams: u8,
    },
    /// libopus refused a packet.
    #[error("corrupt opus packet {packet}: {reason}")]
    CorruptPacket {
        /// Index of the audio packet, from 0.
        packet: u64,
        /// What libopus said.
        reason: String,
    },
    /// The WAV header or data could not be read.
    #[error("invalid wav: {0}")]
    InvalidWav(String),
    /// A unary call would produce more than the unary output limit.
    #[error("output too large for a unary call: {bytes} bytes exceeds {limit}; use ConvertStream")]
    OutputTooLarge {
        /// The output the call would produce.
        bytes: u64,
        /// The unary limit.
        limit: u64,
    },
    /// A streaming client went quiet, or the stream ran past its deadline.
    #[error("stream timed out: {0}")]
    TimedOut(String),
    /// The input is larger than the configured limit.
    #[error("input too large: more than {limit} bytes (limit is configurable)")]
    TooLarge {
        /// The limit in bytes.
        limit: u64,
    },
    /// The audio is longer than the configured limit.
    #[error("audio too long: {duration_ms} ms exceeds the {limit_ms} ms limit")]
    TooLong {
        /// Duration found (or reached so far).
        duration_ms: u64,
        /// The limit.
        limit_ms: u64,
    },
    /// The request asks for something the transcoder cannot do.
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// The caller went away before the conversion finished.
    #[error("cancelled: the caller stopped reading or sending")]
    Cancelled,
    /// A fault inside the transcoder (not the input's).
    #[error("internal transcoder error: {0}")]
    Internal(String),
}

impl TranscodeError {
    /// Shorthand for a corrupt-OGG error.
    pub(crate) fn corrupt(offset: u64, reason: impl Into<String>) -> Self {
        Self::CorruptOgg {
            offset,
            reason: reason.into(),
        }
    }

    /// Maps an I/O error from the input or output side. Closed channels mean
    /// the caller left; anything else on input is a malformed read.
    pub(crate) fn from_io(error: std::io::Error, context: &str) -> Self {
        match error.kind() {
            std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionAborted => {
                Self::Cancelled
            }
            std::io::ErrorKind::UnexpectedEof => {
                Self::Truncated(format!("input ended inside {context}"))
            }
            std::io::ErrorKind::FileTooLarge => match error
                .get_ref()
                .and_then(|e| e.downcast_ref::<LimitExceeded>())
            {
                Some(limit) => Self::TooLarge { limit: limit.0 },
                None => Self::Internal(error.to_string()),
            },
            _ => Self::Internal(format!("i/o error in {context}: {error}")),
        }
    }
}

/// Carried inside an `io::Error` by size-limited readers.
#[derive(Debug, thiserror::Error)]
#[error("input exceeds {0} bytes")]
pub struct LimitExceeded(pub u64);

/// Result alias for the transcoder.
pub type Result<T, E = TranscodeError> = std::result::Result<T, E>;
