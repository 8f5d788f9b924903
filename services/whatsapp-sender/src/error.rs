//! The sender's one error type and the mapping from AWS SDK errors.

use aws_sdk_socialmessaging::error::{ProvideErrorMetadata, SdkError};

/// Why a sender call failed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SenderError {
    /// The request is malformed.
    #[error("invalid request: {0}")]
    Invalid(String),
    /// The media is of a type or size WhatsApp refuses.
    #[error("invalid media: {0}")]
    InvalidMedia(String),
    /// Throttled or unavailable after the SDK's retries.
    #[error("whatsapp unavailable: {0}")]
    Unavailable(String),
    /// Not found (media id, object).
    #[error("not found: {0}")]
    NotFound(String),
    /// Anything else.
    #[error("internal: {0}")]
    Internal(String),
}

impl SenderError {
    /// Maps an AWS SDK error by its code.
    pub fn from_sdk<E, R>(operation: &str, error: SdkError<E, R>) -> Self
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
        R: std::fmt::Debug,
    {
        let code = error.code().unwrap_or_default().to_owned();
        let message = format!("{operation}: {}", error.message().unwrap_or(&code));
        match code.as_str() {
            "ValidationException" | "InvalidParametersException" => Self::Invalid(message),
            "ThrottledRequestException"
            | "ThrottlingException"
            | "InternalServiceException"
            | "DependencyException" => Self::Unavailable(message),
            "ResourceNotFoundException" | "NoSuchKey" => Self::NotFound(message),
            "" => match error {
                SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) => {
                    Self::Unavailable(format!("{operation}: no response from the service"))
                }
                other => Self::Internal(format!(
                    "{operation}: {}",
                    aws_sdk_socialmessaging::error::DisplayErrorContext(&other)
                )),
            },
            _ => Self::Internal(message),
        }
    }
}

/// Result alias for the sender.
pub type Result<T, E = SenderError> = std::result::Result<T, E>;
