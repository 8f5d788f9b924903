//! AWS REST-JSON errors as the SDKs parse them: the type in
//! `x-amzn-ErrorType`, the message in the JSON body.

use axum::{
    Json,
    http::StatusCode,
    response::{IntoResponse, Response},
};

/// An AWS API error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwsError {
    /// HTTP status.
    pub status: StatusCode,
    /// Error type, e.g. `AccessDeniedException`.
    pub kind: &'static str,
    /// Human-readable message.
    pub message: String,
}

impl AwsError {
    fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            kind,
            message: message.into(),
        }
    }

    /// 403 `AccessDeniedException` (unknown or expired token).
    pub fn access_denied(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "AccessDeniedException", message)
    }

    /// 400 `ValidationException`.
    pub fn validation(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "ValidationException", message)
    }

    /// 404 `ResourceNotFoundException`.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "ResourceNotFoundException", message)
    }

    /// 429 `ThrottlingException`.
    pub fn throttled() -> Self {
        Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "ThrottlingException",
            "Rate exceeded (sandbox)",
        )
    }

    /// 402 `ServiceQuotaExceededException`.
    pub fn quota(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::PAYMENT_REQUIRED,
            "ServiceQuotaExceededException",
            message,
        )
    }
}

impl IntoResponse for AwsError {
    fn into_response(self) -> Response {
        (
            self.status,
            [("x-amzn-ErrorType", self.kind)],
            Json(serde_json::json!({ "message": self.message })),
        )
            .into_response()
    }
}

/// Result of a sandbox handler.
pub type AwsResult<T> = Result<T, AwsError>;
