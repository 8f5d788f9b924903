//! The session service's one error type; [`crate::grpc`] maps it to gRPC
//! statuses in one place.

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
    #[error("conflict: {0}")]
    Conflict(String),
    /// The caller's lease is no longer theirs, or a chat already exists.
    #[error("precondition failed: {0}")]
    Precondition(String),
    /// Another caller is creating the chat and did not finish in time.
    #[error("busy: {0}")]
    Busy(String),
    /// The backing store failed.
    #[error("store failure: {0}")]
    Store(String),
}

/// Result alias for the session service.
pub type Result<T, E = SessionError> = std::result::Result<T, E>;
