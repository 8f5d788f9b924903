//! Typed errors of every client call, decoded from the status and its
//! `ErrorDetail` once, so callers branch on reasons, not on strings.

use std::time::Duration;

use parley_proto::{
    common::{ErrorDetail, ErrorReason},
    errors,
};
use tonic::{Code, Status};

/// Why a call to a Parley service failed.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{service}.{method}: {code:?}: {message}")]
pub struct ClientError {
    /// The service called, e.g. `session`.
    pub service: &'static str,
    /// The method called, e.g. `append_pending`.
    pub method: &'static str,
    /// The gRPC status code.
    pub code: Code,
    /// The status message (services keep personal data out of it).
    pub message: String,
    /// The service's error detail, when it sent one (boxed: it is large,
    /// and errors travel through every `Result`).
    pub detail: Option<Box<ErrorDetail>>,
}

impl ClientError {
    /// Decodes a status returned by `service.method`.
    pub fn from_status(service: &'static str, method: &'static str, status: Status) -> Self {
        Self {
            service,
            method,
            code: status.code(),
            detail: errors::detail(&status).map(Box::new),
            message: status.message().to_owned(),
        }
    }

    /// What went wrong, in terms the caller acts on (inferred from the code
    /// when the status carried no detail).
    pub fn reason(&self) -> ErrorReason {
        match &self.detail {
            Some(detail) => detail.reason(),
            None => match self.code {
                Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled => {
                    ErrorReason::Unavailable
                }
                Code::ResourceExhausted => ErrorReason::LimitExceeded,
                Code::InvalidArgument => ErrorReason::InvalidRequest,
                Code::NotFound => ErrorReason::NotFound,
                Code::Aborted => ErrorReason::VersionConflict,
                _ => ErrorReason::Unspecified,
            },
        }
    }

    /// Whether the same request may succeed if sent again.
    pub fn is_retryable(&self) -> bool {
        match &self.detail {
            Some(detail) => detail.retryable,
            // No detail: the status came from the transport, a proxy or a
            // timeout, which are transient.
            None => matches!(
                self.code,
                Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled | Code::Unknown
            ),
        }
    }

    /// The delay the service asked for before a retry, if any.
    pub fn retry_after(&self) -> Option<Duration> {
        self.detail
            .as_ref()
            .filter(|d| d.retry_after_ms > 0)
            .map(|d| Duration::from_millis(u64::from(d.retry_after_ms)))
    }

    /// For multi-part sends: the ids of the parts sent before the failure.
    pub fn completed_ids(&self) -> &[String] {
        self.detail
            .as_ref()
            .map_or(&[], |d| d.completed_ids.as_slice())
    }

    /// The AWS error code behind the failure, if any.
    pub fn aws_code(&self) -> &str {
        self.detail
            .as_ref()
            .map_or("", |d| d.aws_error_code.as_str())
    }

    /// Whether this is `reason`.
    pub fn is(&self, reason: ErrorReason) -> bool {
        self.reason() == reason
    }
}

/// Result alias for client calls.
pub type Result<T, E = ClientError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn details_decide_and_codes_fill_in() {
        let throttled = errors::status(
            Code::Unavailable,
            "slow down",
            ErrorDetail::new(ErrorReason::Throttled).retry_after(Duration::from_millis(250)),
        );
        let error = ClientError::from_status("connect", "send_message", throttled);
        assert_eq!(error.reason(), ErrorReason::Throttled);
        assert!(error.is_retryable());
        assert_eq!(error.retry_after(), Some(Duration::from_millis(250)));
        assert_eq!(
            error.to_string(),
            "connect.send_message: Unavailable: slow down"
        );

        let ended = errors::status(
            Code::FailedPrecondition,
            "over",
            ErrorDetail::new(ErrorReason::ChatEnded)
                .aws("CreateParticipantConnection", "AccessDeniedException"),
        );
        let error = ClientError::from_status("connect", "refresh_connection", ended);
        assert!(error.is(ErrorReason::ChatEnded));
        assert!(!error.is_retryable());
        assert_eq!(error.aws_code(), "AccessDeniedException");

        let transport = ClientError::from_status("session", "peek", Status::unavailable("refused"));
        assert!(transport.is_retryable());
        assert_eq!(transport.reason(), ErrorReason::Unavailable);
        let bad = ClientError::from_status("session", "peek", Status::invalid_argument("x"));
        assert!(!bad.is_retryable());
    }
}
