//! The transcriber's one error type, how AWS errors map into it, and how
//! it becomes a gRPC status.

use aws_sdk_transcribestreaming::{
    error::{DisplayErrorContext, SdkError},
    operation::start_stream_transcription::StartStreamTranscriptionError,
    types::error::TranscriptResultStreamError,
};
use aws_smithy_types::event_stream::RawMessage;

type HttpResponse = aws_sdk_transcribestreaming::config::http::HttpResponse;

fn message(message: Option<&str>) -> String {
    message.unwrap_or("no message").to_owned()
}

/// The same five exceptions, whichever SDK error enum carries them.
macro_rules! map_exceptions {
    ($error:ident, $kind:ident) => {
        match $error.as_service_error() {
            Some($kind::BadRequestException(e)) => Self::BadRequest(message(e.message())),
            Some($kind::LimitExceededException(e)) => Self::LimitExceeded(message(e.message())),
            Some($kind::ServiceUnavailableException(e)) => Self::Unavailable(message(e.message())),
            Some($kind::ConflictException(e)) => Self::Conflict(message(e.message())),
            Some($kind::InternalFailureException(e)) => Self::InternalFailure(message(e.message())),
            _ => Self::other($error),
        }
    };
}
use parley_proto::common::{ErrorDetail, ErrorReason};

use tonic::{Code, Status};

/// Why a transcription failed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TranscribeError {
    /// The call itself is wrong (missing config, bad sample rate, …).
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// The audio cannot be used (corrupt, truncated, not the declared encoding).
    #[error("invalid audio: {0}")]
    InvalidAudio(String),
    /// This server's concurrency gate and wait queue are full.
    #[error("busy: {0}")]
    Busy(String),
    /// Transcribe refused the request (`BadRequestException`).
    #[error("transcribe refused the request: {0}")]
    BadRequest(String),
    /// An account limit was hit (`LimitExceededException`): concurrent
    /// streams, audio length.
    #[error("transcribe limit exceeded: {0}")]
    LimitExceeded(String),
    /// Transcribe is unavailable or did not answer: retry later.
    #[error("transcribe unavailable: {0}")]
    Unavailable(String),
    /// The session id is already in use (`ConflictException`).
    #[error("transcribe conflict: {0}")]
    Conflict(String),
    /// Transcribe failed internally (`InternalFailureException`).
    #[error("transcribe failed: {0}")]
    InternalFailure(String),
    /// Something else went wrong.
    #[error("internal: {0}")]
    Internal(String),
}

impl TranscribeError {
    /// Maps an error from starting the stream (the HTTP response).
    pub fn from_start(error: SdkError<StartStreamTranscriptionError, HttpResponse>) -> Self {
        map_exceptions!(error, StartStreamTranscriptionError)
    }

    /// Maps an exception frame on the result stream. (Its error metadata
    /// carries no code, so the typed variant is what tells them apart.)
    pub fn from_stream(error: SdkError<TranscriptResultStreamError, RawMessage>) -> Self {
        map_exceptions!(error, TranscriptResultStreamError)
    }

    /// Errors without a known exception: no response is transient.
    fn other<E, R>(error: SdkError<E, R>) -> Self
    where
        E: std::error::Error + 'static,
        R: std::fmt::Debug,
    {
        match error {
            SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) => {
                Self::Unavailable("no response from Amazon Transcribe".into())
            }
            other => Self::Internal(DisplayErrorContext(&other).to_string()),
        }
    }

    /// The AWS exception behind this error, if any.
    pub fn aws_code(&self) -> &'static str {
        match self {
            Self::BadRequest(_) => "BadRequestException",
            Self::LimitExceeded(_) => "LimitExceededException",
            Self::Unavailable(_) => "ServiceUnavailableException",
            Self::Conflict(_) => "ConflictException",
            Self::InternalFailure(_) => "InternalFailureException",
            _ => "",
        }
    }

    /// The gRPC status for this error, with an [`ErrorDetail`] naming the
    /// reason and the AWS exception.
    pub fn to_status(&self) -> Status {
        let (code, detail) = match self {
            Self::InvalidRequest(_) | Self::BadRequest(_) => (
                Code::InvalidArgument,
                ErrorDetail::new(ErrorReason::InvalidRequest),
            ),
            Self::InvalidAudio(_) => (
                Code::InvalidArgument,
                ErrorDetail::new(ErrorReason::InvalidMedia),
            ),
            // The gate and Transcribe's own stream quota both clear as other
            // notes finish: worth a retry shortly.
            Self::Busy(_) | Self::LimitExceeded(_) => (
                Code::ResourceExhausted,
                ErrorDetail::new(ErrorReason::LimitExceeded)
                    .retry_after(std::time::Duration::from_secs(1)),
            ),
            Self::Unavailable(_) => (
                Code::Unavailable,
                ErrorDetail::new(ErrorReason::Unavailable),
            ),
            // A conflicting session id is transient: a retry gets a new one.
            Self::Conflict(_) => (Code::Aborted, ErrorDetail::new(ErrorReason::Unavailable)),
            // Transcribe's InternalFailureException asks for a retry.
            Self::InternalFailure(_) => {
                (Code::Internal, ErrorDetail::new(ErrorReason::Unavailable))
            }
            Self::Internal(_) => (Code::Internal, ErrorDetail::new(ErrorReason::Unspecified)),
        };
        let operation = if self.aws_code().is_empty() {
            ""
        } else {
            "StartStreamTranscription"
        };
        parley_proto::errors::status(
            code,
            self.to_string(),
            detail.aws(operation, self.aws_code()),
        )
    }
}

impl From<TranscribeError> for Status {
    fn from(error: TranscribeError) -> Self {
        error.to_status()
    }
}
