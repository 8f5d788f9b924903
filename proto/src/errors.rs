//! The one encoder and decoder of Parley's error details, used by every
//! service and client.
//!
//! A failed call carries a [`ErrorDetail`] packed as a `google.protobuf.Any`
//! in the standard `google.rpc.Status` of the gRPC status details
//! (`grpc-status-details-bin`), plus a standard `google.rpc.RetryInfo` when
//! a retry delay is known, so clients in any language can read both with
//! their usual gRPC error-details tooling.

use std::time::Duration;

use prost::Message as _;
use tonic::{Code, Status};

use crate::common::{ErrorDetail, ErrorReason};

/// The `type_url` of a packed [`ErrorDetail`].
pub const ERROR_DETAIL_TYPE_URL: &str = "type.googleapis.com/parley.common.v1.ErrorDetail";
const RETRY_INFO_TYPE_URL: &str = "type.googleapis.com/google.rpc.RetryInfo";

impl ErrorDetail {
    /// A detail with `reason` and the retry advice that reason usually
    /// carries (throttling, unavailability and busy holders are retryable).
    pub fn new(reason: ErrorReason) -> Self {
        Self {
            reason: reason as i32,
            retryable: matches!(
                reason,
                ErrorReason::Throttled
                    | ErrorReason::Unavailable
                    | ErrorReason::Busy
                    | ErrorReason::VersionConflict
            ),
            ..Self::default()
        }
    }

    /// Sets the AWS error code and the operation that produced it.
    pub fn aws(mut self, operation: &str, code: &str) -> Self {
        self.operation = operation.to_owned();
        self.aws_error_code = code.to_owned();
        self
    }

    /// Marks the error retryable (or not).
    pub fn retryable(mut self, retryable: bool) -> Self {
        self.retryable = retryable;
        self
    }

    /// Marks the error retryable after `delay`.
    pub fn retry_after(mut self, delay: Duration) -> Self {
        self.retryable = true;
        self.retry_after_ms = u32::try_from(delay.as_millis()).unwrap_or(u32::MAX);
        self
    }

    /// Records the ids of the parts that succeeded before the failure.
    pub fn completed(mut self, ids: Vec<String>) -> Self {
        self.completed_ids = ids;
        self
    }
}

/// A gRPC status with `detail` encoded in its details.
pub fn status(code: Code, message: impl Into<String>, detail: ErrorDetail) -> Status {
    let message = message.into();
    let mut details = vec![prost_types::Any {
        type_url: ERROR_DETAIL_TYPE_URL.to_owned(),
        value: detail.encode_to_vec(),
    }];
    if detail.retry_after_ms > 0 {
        let delay = Duration::from_millis(u64::from(detail.retry_after_ms));
        let retry = tonic_types::pb::RetryInfo {
            retry_delay: Some(prost_types::Duration {
                seconds: delay.as_secs() as i64,
                nanos: delay.subsec_nanos() as i32,
            }),
        };
        details.push(prost_types::Any {
            type_url: RETRY_INFO_TYPE_URL.to_owned(),
            value: retry.encode_to_vec(),
        });
    }
    let rpc_status = tonic_types::pb::Status {
        code: code as i32,
        message: message.clone(),
        details,
    };
    Status::with_details(code, message, rpc_status.encode_to_vec().into())
}

/// The [`ErrorDetail`] a status carries, if any.
pub fn detail(status: &Status) -> Option<ErrorDetail> {
    let rpc_status = tonic_types::pb::Status::decode(status.details()).ok()?;
    rpc_status
        .details
        .iter()
        .find(|any| any.type_url == ERROR_DETAIL_TYPE_URL)
        .and_then(|any| ErrorDetail::decode(any.value.as_slice()).ok())
}

/// The reason a status gives, or what its code implies when it carries no
/// detail (a status from a proxy, a load balancer or tonic itself).
pub fn reason(status: &Status) -> ErrorReason {
    match detail(status) {
        Some(detail) => detail.reason(),
        None => match status.code() {
            Code::Unavailable | Code::DeadlineExceeded => ErrorReason::Unavailable,
            Code::ResourceExhausted => ErrorReason::LimitExceeded,
            Code::InvalidArgument => ErrorReason::InvalidRequest,
            Code::NotFound => ErrorReason::NotFound,
            Code::Aborted => ErrorReason::VersionConflict,
            _ => ErrorReason::Unspecified,
        },
    }
}

/// Whether sending the same request again may succeed: what the detail
/// says, or, without one, whether the code is a transient one.
pub fn is_retryable(status: &Status) -> bool {
    match detail(status) {
        Some(detail) => detail.retryable,
        None => matches!(
            status.code(),
            Code::Unavailable | Code::DeadlineExceeded | Code::Aborted | Code::ResourceExhausted
        ),
    }
}

/// The retry delay a status suggests, if any.
pub fn retry_after(status: &Status) -> Option<Duration> {
    detail(status)
        .filter(|d| d.retryable && d.retry_after_ms > 0)
        .map(|d| Duration::from_millis(u64::from(d.retry_after_ms)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn details_round_trip_through_a_status() {
        let sent = ErrorDetail::new(ErrorReason::Throttled)
            .aws("SendMessage", "ThrottlingException")
            .retry_after(Duration::from_millis(1500))
            .completed(vec!["m1".into(), "m2".into()]);
        let status = status(Code::Unavailable, "slow down", sent.clone());
        // Through the wire format, as a client would see it.
        let response = status.into_http::<tonic::body::Body>();
        let received = Status::from_header_map(response.headers()).unwrap();
        assert_eq!(received.code(), Code::Unavailable);
        assert_eq!(detail(&received), Some(sent));
        assert_eq!(reason(&received), ErrorReason::Throttled);
        assert!(is_retryable(&received));
        assert_eq!(retry_after(&received), Some(Duration::from_millis(1500)));
        // The standard google.rpc.RetryInfo is there for non-Parley clients.
        let rpc = tonic_types::pb::Status::decode(received.details()).unwrap();
        assert!(
            rpc.details
                .iter()
                .any(|d| d.type_url == RETRY_INFO_TYPE_URL)
        );
        assert_eq!(rpc.code, Code::Unavailable as i32);
    }

    #[test]
    fn statuses_without_details_fall_back_to_their_code() {
        let plain = Status::unavailable("connection refused");
        assert_eq!(detail(&plain), None);
        assert_eq!(reason(&plain), ErrorReason::Unavailable);
        assert!(is_retryable(&plain));
        assert!(!is_retryable(&Status::invalid_argument("bad")));
        // Garbage in the details is not a detail.
        let junk = Status::with_details(Code::Internal, "x", vec![1u8, 2, 3].into());
        assert_eq!(detail(&junk), None);
    }

    #[test]
    fn reasons_carry_their_usual_retry_advice() {
        assert!(ErrorDetail::new(ErrorReason::Unavailable).retryable);
        assert!(!ErrorDetail::new(ErrorReason::ChatEnded).retryable);
        assert!(!ErrorDetail::new(ErrorReason::InvalidMedia).retryable);
        assert!(
            !ErrorDetail::new(ErrorReason::Busy)
                .retryable(false)
                .retryable
        );
    }
}
