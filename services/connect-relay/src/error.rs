//! The relay's one error type, in the terms the gateway acts on, and the
//! mapping from AWS SDK errors into it — per operation, because the same
//! AWS code means different things in different calls (AccessDenied on
//! StartChatContact is a misconfiguration; on SendMessage an expired
//! connection; on CreateParticipantConnection an ended chat).

use aws_sdk_connectparticipant::error::{ProvideErrorMetadata, SdkError};

/// What kind of failure, i.e. what the caller should do about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The connection token expired or was revoked: refresh it from the
    /// participant token and retry.
    ConnectionExpired,
    /// The chat (or the customer's participation) is over: start a new chat.
    ChatEnded,
    /// The deployment is misconfigured (unknown instance or flow, missing
    /// permissions): an operator must act; retrying will not help.
    Configuration,
    /// AWS throttled the call after the SDK's retries: retry later.
    Throttled,
    /// AWS or the attachment store failed or did not answer: retry later.
    Unavailable,
    /// Another request on the same resource is in flight: retry shortly.
    Busy,
    /// AWS refused the request as invalid; the message is the API's.
    Invalid,
    /// The media is of a type or size Connect refuses.
    InvalidMedia,
    /// A limit of the content was hit (not worth retrying unchanged).
    Limit,
    /// Something else went wrong.
    Internal,
}

/// Why a relay call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct RelayError {
    /// What the caller should do.
    pub kind: ErrorKind,
    /// Human-readable, with the API's message.
    pub message: String,
    /// The AWS operation that failed; empty when none did.
    pub operation: &'static str,
    /// The AWS error code exactly as AWS sent it; empty when none.
    pub aws_code: String,
    /// For calls that send several parts: the ids of those already sent.
    pub completed_ids: Vec<String>,
}

impl RelayError {
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

    /// An invalid request.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Invalid, message)
    }

    /// Media Connect refuses.
    pub fn invalid_media(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidMedia, message)
    }

    /// A failure that is nobody's input's fault.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Internal, message)
    }

    /// A transient failure.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unavailable, message)
    }

    /// Records the parts that were sent before this failure.
    pub fn with_completed(mut self, ids: Vec<String>) -> Self {
        self.completed_ids = ids;
        self
    }

    /// Whether the same request may succeed later.
    pub fn retryable(&self) -> bool {
        matches!(
            self.kind,
            ErrorKind::Throttled | ErrorKind::Unavailable | ErrorKind::Busy
        )
    }

    /// Maps an AWS SDK error of `operation` by its error code.
    pub fn from_sdk<E, R>(operation: &'static str, error: SdkError<E, R>) -> Self
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
        R: std::fmt::Debug,
    {
        let code = error.code().unwrap_or_default().to_owned();
        let kind = if code.is_empty() {
            match error {
                // No response: timeouts and connection failures are transient.
                SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) => {
                    return Self {
                        kind: ErrorKind::Unavailable,
                        message: format!("{operation}: no response from the service"),
                        operation,
                        aws_code: String::new(),
                        completed_ids: Vec::new(),
                    };
                }
                other => {
                    return Self {
                        kind: ErrorKind::Internal,
                        message: format!(
                            "{operation}: {}",
                            aws_sdk_connectparticipant::error::DisplayErrorContext(&other)
                        ),
                        operation,
                        aws_code: String::new(),
                        completed_ids: Vec::new(),
                    };
                }
            }
        } else {
            classify(operation, &code)
        };
        Self {
            kind,
            message: format!("{operation}: {}", error.message().unwrap_or(&code)),
            operation,
            aws_code: code,
            completed_ids: Vec::new(),
        }
    }
}

/// What an AWS error code means for `operation`.
pub fn classify(operation: &str, code: &str) -> ErrorKind {
    use ErrorKind::*;
    match (operation, code) {
        // Starting a chat: these point at the instance, flow or topic named
        // in the configuration, or at the task role.
        (
            "StartChatContact" | "StartContactStreaming",
            "AccessDeniedException" | "ResourceNotFoundException",
        ) => Configuration,
        // Connect's throttle for new chats (TPS, concurrent chats).
        ("StartChatContact", "LimitExceededException") => Throttled,
        // A participant token that no longer connects: the chat is over.
        ("CreateParticipantConnection", "AccessDeniedException" | "ResourceNotFoundException") => {
            ChatEnded
        }
        ("GetAttachment", "ResourceNotFoundException") => Invalid,
        (_, "AccessDeniedException") => ConnectionExpired,
        (_, "ResourceNotFoundException") => ChatEnded,
        (_, "ConflictException") => Busy,
        (
            _,
            "ThrottlingException"
            | "ThrottledRequestException"
            | "TooManyRequestsException"
            | "LimitExceededException",
        ) => Throttled,
        (_, "ServiceQuotaExceededException") => Limit,
        (
            _,
            "InternalServerException"
            | "InternalServiceException"
            | "InternalFailureException"
            | "ServiceUnavailableException",
        ) => Unavailable,
        (
            _,
            "ValidationException"
            | "InvalidRequestException"
            | "InvalidParameterException"
            | "IdempotencyException",
        ) => Invalid,
        _ => Internal,
    }
}

/// Result alias for the relay.
pub type Result<T, E = RelayError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_code_means_different_things_per_operation() {
        use ErrorKind::*;
        assert_eq!(
            classify("StartChatContact", "AccessDeniedException"),
            Configuration
        );
        assert_eq!(
            classify("StartChatContact", "ResourceNotFoundException"),
            Configuration
        );
        assert_eq!(
            classify("StartChatContact", "LimitExceededException"),
            Throttled
        );
        assert_eq!(
            classify("SendMessage", "AccessDeniedException"),
            ConnectionExpired
        );
        assert_eq!(
            classify("CreateParticipantConnection", "AccessDeniedException"),
            ChatEnded
        );
        assert_eq!(classify("SendMessage", "ConflictException"), Busy);
        assert_eq!(classify("SendMessage", "ThrottlingException"), Throttled);
        assert_eq!(
            classify("SendMessage", "InternalServerException"),
            Unavailable
        );
        assert_eq!(
            classify("StartChatContact", "InvalidRequestException"),
            Invalid
        );
        assert_eq!(
            classify("GetAttachment", "ResourceNotFoundException"),
            Invalid
        );
        assert_eq!(classify("SendMessage", "SomethingNewException"), Internal);
    }

    #[test]
    fn only_transient_kinds_are_retryable() {
        assert!(RelayError::new(ErrorKind::Throttled, "x").retryable());
        assert!(RelayError::new(ErrorKind::Busy, "x").retryable());
        assert!(!RelayError::new(ErrorKind::ChatEnded, "x").retryable());
        assert!(!RelayError::new(ErrorKind::Configuration, "x").retryable());
    }
}
