//! The relay's one error type, in the terms the gateway acts on, and the
//! mapping from AWS SDK errors into it.

use aws_sdk_connectparticipant::error::{ProvideErrorMetadata, SdkError};

/// Why a relay call failed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RelayError {
    /// The connection or chat is gone (expired token, chat ended): refresh
    /// the connection or start a new chat.
    #[error("session gone: {0}")]
    SessionGone(String),
    /// AWS throttled or failed after the SDK's retries: retry later.
    #[error("connect unavailable: {0}")]
    Unavailable(String),
    /// AWS refused the request as invalid; the message is the API's.
    #[error("invalid request: {0}")]
    Invalid(String),
    /// The media is of a type or size Connect refuses.
    #[error("invalid media: {0}")]
    InvalidMedia(String),
    /// A quota or limit was hit.
    #[error("limit exceeded: {0}")]
    Limit(String),
    /// Something else went wrong.
    #[error("internal: {0}")]
    Internal(String),
}

impl RelayError {
    /// Maps any AWS SDK error by its error code.
    pub fn from_sdk<E, R>(operation: &str, error: SdkError<E, R>) -> Self
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
        R: std::fmt::Debug,
    {
        let code = error.code().unwrap_or_default().to_owned();
        let message = format!("{operation}: {}", error.message().unwrap_or(&code));
        match code.as_str() {
            "AccessDeniedException" | "ConflictException" => Self::SessionGone(message),
            "ThrottlingException" | "InternalServerException" | "ServiceUnavailableException" => {
                Self::Unavailable(message)
            }
            "ValidationException" | "InvalidRequestException" | "InvalidParameterException" => {
                Self::Invalid(message)
            }
            "ResourceNotFoundException" => Self::SessionGone(message),
            "ServiceQuotaExceededException" | "LimitExceededException" => Self::Limit(message),
            "" => match error {
                // No response: timeouts and connection failures are transient.
                SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) => {
                    Self::Unavailable(format!("{operation}: no response from the service"))
                }
                other => Self::Internal(format!(
                    "{operation}: {}",
                    aws_sdk_connectparticipant::error::DisplayErrorContext(&other)
                )),
            },
            _ => Self::Internal(message),
        }
    }

    /// The AWS error code behind this error, if any (for status details).
    pub fn code(&self) -> &'static str {
        match self {
            Self::SessionGone(_) => "AccessDeniedException",
            Self::Unavailable(_) => "ThrottlingException",
            Self::Invalid(_) => "ValidationException",
            Self::Limit(_) => "ServiceQuotaExceededException",
            Self::InvalidMedia(_) | Self::Internal(_) => "",
        }
    }
}

/// Result alias for the relay.
pub type Result<T, E = RelayError> = std::result::Result<T, E>;
