//! The sender's one error type and the mapping from AWS SDK errors.

use std::time::Duration;

use aws_sdk_socialmessaging::error::{ProvideErrorMetadata, SdkError};

/// What kind of failure, i.e. what the caller should do about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The request is malformed.
    Invalid,
    /// The media is of a type or size WhatsApp refuses.
    InvalidMedia,
    /// Content over one of WhatsApp's limits (text, buttons, rows).
    Limit,
    /// The deployment is misconfigured (unmapped number, no bucket, access
    /// denied by Meta or AWS).
    Configuration,
    /// Throttled after the SDK's retries: retry later.
    Throttled,
    /// The service failed or did not answer: retry later.
    Unavailable,
    /// Not found (media id, object).
    NotFound,
    /// Another caller is sending the same part right now.
    Busy(Duration),
    /// Anything else.
    Internal,
}

/// Why a sender call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct SenderError {
    /// What the caller should do.
    pub kind: ErrorKind,
    /// Human-readable (never the message text or a phone number).
    pub message: String,
    /// The AWS operation that failed; empty when none did.
    pub operation: &'static str,
    /// The AWS error code exactly as AWS sent it; empty when none.
    pub aws_code: String,
    /// For multi-part sends: the WhatsApp ids of the parts already sent.
    pub completed_ids: Vec<String>,
}

impl SenderError {
    /// An error of `kind` that did not come from AWS.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            operation: "",
            aws_code: String::new(),
            completed_ids: Vec::new(),
        }
    }

    /// A malformed request.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Invalid, message)
    }

    /// Media WhatsApp refuses.
    pub fn invalid_media(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidMedia, message)
    }

    /// Content over a WhatsApp limit.
    pub fn limit(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Limit, message)
    }

    /// A transient failure.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unavailable, message)
    }

    /// Anything else.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Internal, message)
    }

    /// Records the parts sent before this failure.
    pub fn with_completed(mut self, ids: Vec<String>) -> Self {
        self.completed_ids = ids;
        self
    }

    /// Whether the same request may succeed later.
    pub fn retryable(&self) -> bool {
        matches!(
            self.kind,
            ErrorKind::Throttled | ErrorKind::Unavailable | ErrorKind::Busy(_)
        )
    }

    /// Maps an AWS SDK error of `operation` by its code.
    pub fn from_sdk<E, R>(operation: &'static str, error: SdkError<E, R>) -> Self
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
        R: std::fmt::Debug,
    {
        let code = error.code().unwrap_or_default().to_owned();
        let kind = match code.as_str() {
            "ValidationException" | "InvalidParametersException" => ErrorKind::Invalid,
            "ThrottledRequestException" | "ThrottlingException" | "SlowDown" => {
                ErrorKind::Throttled
            }
            "InternalServiceException" | "DependencyException" | "InternalError" => {
                ErrorKind::Unavailable
            }
            "AccessDeniedException"
            | "AccessDeniedByMetaException"
            | "AccessDenied"
            | "NoSuchBucket" => ErrorKind::Configuration,
            "ResourceNotFoundException" | "NoSuchKey" => ErrorKind::NotFound,
            "" => match &error {
                SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) => ErrorKind::Unavailable,
                _ => ErrorKind::Internal,
            },
            _ => ErrorKind::Internal,
        };
        let message = match (code.as_str(), &error) {
            ("", SdkError::TimeoutError(_) | SdkError::DispatchFailure(_)) => {
                format!("{operation}: no response from the service")
            }
            ("", other) => format!(
                "{operation}: {}",
                aws_sdk_socialmessaging::error::DisplayErrorContext(other)
            ),
            _ => format!("{operation}: {}", error.message().unwrap_or(&code)),
        };
        Self {
            kind,
            message,
            operation,
            aws_code: code,
            completed_ids: Vec::new(),
        }
    }
}

impl From<parley_identity::IdentityError> for SenderError {
    fn from(error: parley_identity::IdentityError) -> Self {
        match error {
            parley_identity::IdentityError::UnmappedMetaId(_) => {
                Self::new(ErrorKind::Configuration, error.to_string())
            }
            other => Self::invalid(other.to_string()),
        }
    }
}

/// Result alias for the sender.
pub type Result<T, E = SenderError> = std::result::Result<T, E>;
