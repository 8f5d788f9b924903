//! The session service's one error type; [`crate::grpc`] maps it to gRPC
//! statuses in one place.

use std::time::Duration;

/// Why a session operation failed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SessionError {
    /// The request is malformed; the message names the field.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// Nothing matches.
    #[error("not found: {0}")]
    NotFound(String),
    /// The record changed since it was read (version check failed).
    #[error("version conflict: {0}")]
    Conflict(String),
    /// The caller's lease, take token or claim is no longer theirs.
    #[error("lease lost: {0}")]
    LeaseLost(String),
    /// Someone else holds what the caller asked for, until about then.
    #[error("busy: {message}")]
    Busy {
        /// What is held.
        message: String,
        /// When it is worth asking again.
        retry_after: Duration,
    },
    /// A buffer would grow past what one store item holds.
    #[error("limit exceeded: {0}")]
    LimitExceeded(String),
    /// The backing store failed.
    #[error("store failure: {0}")]
    Store(String),
    /// The message was appended before (an append-once found its claim
    /// completed): nothing was appended now.
    #[error("duplicate: {0}")]
    Duplicate(String),
}

impl From<parley_identity::IdentityError> for SessionError {
    fn from(error: parley_identity::IdentityError) -> Self {
        Self::InvalidArgument(error.to_string())
    }
}

/// Result alias for the session service.
pub type Result<T, E = SessionError> = std::result::Result<T, E>;
