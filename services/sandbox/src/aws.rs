//! The AWS wire conventions every emulated API shares: REST-JSON errors as
//! the SDKs parse them (the type in `x-amzn-ErrorType`, the message in the
//! body member each service's model names), request bodies that fail to
//! parse answered with an AWS error, a request id on every response, and
//! timestamps as AWS writes them (ISO 8601 with milliseconds).

use axum::{
    Json,
    body::Bytes,
    extract::Request,
    http::{HeaderValue, StatusCode},
    middleware::Next,
    response::{IntoResponse, Response},
};
use serde::de::DeserializeOwned;

/// Which emulated API an error belongs to (their models differ in error
/// names and in how the message member is spelled).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    /// Amazon Connect (`connect`): message member `Message`.
    Connect,
    /// Amazon Connect Participant: message member `Message`.
    Participant,
    /// AWS End User Messaging Social: message member `message`.
    Social,
    /// Amazon Transcribe Streaming: message member `Message`.
    Transcribe,
}

/// An AWS API error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwsError {
    /// Which API answers.
    pub api: Api,
    /// HTTP status.
    pub status: StatusCode,
    /// Error type, e.g. `AccessDeniedException`.
    pub kind: &'static str,
    /// Human-readable message.
    pub message: String,
}

impl AwsError {
    /// An error of `kind` with `status`.
    pub fn new(
        api: Api,
        status: StatusCode,
        kind: &'static str,
        message: impl Into<String>,
    ) -> Self {
        Self {
            api,
            status,
            kind,
            message: message.into(),
        }
    }

    /// 403 `AccessDeniedException` (unknown or expired token, ended chat).
    pub fn access_denied(api: Api, message: impl Into<String>) -> Self {
        Self::new(api, StatusCode::FORBIDDEN, "AccessDeniedException", message)
    }

    /// 400: what each API calls a request that fails validation
    /// (`connect` models no ValidationException: it says
    /// InvalidRequestException).
    pub fn validation(api: Api, message: impl Into<String>) -> Self {
        let kind = match api {
            Api::Connect => "InvalidRequestException",
            Api::Transcribe => "BadRequestException",
            Api::Participant | Api::Social => "ValidationException",
        };
        Self::new(api, StatusCode::BAD_REQUEST, kind, message)
    }

    /// 400 `InvalidParameterException` (Connect: one parameter is wrong).
    pub fn invalid_parameter(message: impl Into<String>) -> Self {
        Self::new(
            Api::Connect,
            StatusCode::BAD_REQUEST,
            "InvalidParameterException",
            message,
        )
    }

    /// 404 `ResourceNotFoundException`.
    pub fn not_found(api: Api, message: impl Into<String>) -> Self {
        Self::new(
            api,
            StatusCode::NOT_FOUND,
            "ResourceNotFoundException",
            message,
        )
    }

    /// 429: each API's throttling error (`operation` matters for Connect:
    /// StartChatContact throttles with LimitExceededException).
    pub fn throttled(api: Api, operation: &str) -> Self {
        let kind = match (api, operation) {
            (Api::Connect, "StartChatContact") => "LimitExceededException",
            (Api::Social, _) => "ThrottledRequestException",
            (Api::Transcribe, _) => "LimitExceededException",
            _ => "ThrottlingException",
        };
        Self::new(
            api,
            StatusCode::TOO_MANY_REQUESTS,
            kind,
            "Rate exceeded (sandbox)",
        )
    }

    /// 402 `ServiceQuotaExceededException`.
    pub fn quota(api: Api, message: impl Into<String>) -> Self {
        Self::new(
            api,
            StatusCode::PAYMENT_REQUIRED,
            "ServiceQuotaExceededException",
            message,
        )
    }

    /// 400 `SerializationException`: the body is not the JSON the
    /// operation takes.
    pub fn serialization(api: Api, message: impl Into<String>) -> Self {
        Self::new(
            api,
            StatusCode::BAD_REQUEST,
            "SerializationException",
            message,
        )
    }
}

impl IntoResponse for AwsError {
    fn into_response(self) -> Response {
        let member = match self.api {
            Api::Social => "message",
            Api::Connect | Api::Participant | Api::Transcribe => "Message",
        };
        let mut body = serde_json::Map::new();
        body.insert(member.to_owned(), self.message.into());
        (
            self.status,
            [("x-amzn-ErrorType", self.kind)],
            Json(serde_json::Value::Object(body)),
        )
            .into_response()
    }
}

/// Result of a sandbox handler.
pub type AwsResult<T> = Result<T, AwsError>;

/// Parses a request body as the operation's JSON, answering malformed
/// bodies as AWS does (an error, not a framework's plain-text rejection).
pub fn parse_json<T: DeserializeOwned>(api: Api, body: &Bytes) -> AwsResult<T> {
    let body: &[u8] = if body.is_empty() { b"{}" } else { body };
    serde_json::from_slice(body).map_err(|e| {
        if e.is_data() {
            // Well-formed JSON with a missing or mistyped member: the
            // operation's own validation error.
            AwsError::validation(api, format!("the request is not valid: {e}"))
        } else {
            AwsError::serialization(api, format!("the request body is not JSON: {e}"))
        }
    })
}

/// Adds an `x-amzn-RequestId` to every response that lacks one, as every
/// AWS API does (clients log it for support cases).
pub async fn request_id(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    if !headers.contains_key("x-amzn-requestid") {
        let id = uuid::Uuid::new_v4().to_string();
        if let Ok(value) = HeaderValue::from_str(&id) {
            headers.insert("x-amzn-RequestId", value);
        }
    }
    response
}

/// An epoch-ms time as AWS writes it: ISO 8601, UTC, with milliseconds
/// (`2021-09-08T13:28:24.656Z`).
pub fn iso8601(ms: i64) -> String {
    let format = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| t.format(format).ok())
        .unwrap_or_else(|| "1970-01-01T00:00:00.000Z".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_format_as_aws_does() {
        assert_eq!(iso8601(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(iso8601(1_762_827_867_123), "2025-11-11T02:24:27.123Z");
        assert_eq!(iso8601(951_782_400_000), "2000-02-29T00:00:00.000Z");
    }

    #[test]
    fn each_api_names_its_errors() {
        assert_eq!(
            AwsError::validation(Api::Connect, "x").kind,
            "InvalidRequestException"
        );
        assert_eq!(
            AwsError::validation(Api::Participant, "x").kind,
            "ValidationException"
        );
        assert_eq!(
            AwsError::throttled(Api::Connect, "StartChatContact").kind,
            "LimitExceededException"
        );
        assert_eq!(
            AwsError::throttled(Api::Social, "SendWhatsAppMessage").kind,
            "ThrottledRequestException"
        );
        assert_eq!(
            AwsError::throttled(Api::Participant, "SendMessage").kind,
            "ThrottlingException"
        );
    }
}
