//! One client for every Parley service. The gateway (and any service that
//! calls another) talks to services only through this crate.
//!
//! Per service, a trait the caller depends on ([`SessionApi`],
//! [`TranscoderApi`], [`TranscriberApi`], [`ConnectApi`], [`WhatsAppApi`])
//! and a tonic implementation over a traced channel. Every call:
//! - has a deadline (sent as `grpc-timeout`);
//! - fails with a typed [`ClientError`] decoded from the service's
//!   `ErrorDetail`;
//! - is retried with exponential backoff and jitter only when the call is
//!   idempotent and the error retryable ([`CallPolicy`]).
//!
//! # Layout
//! - [`error`]: [`ClientError`]; [`policy`]: deadlines and retries.
//! - [`channel`]: channels to a service — one address, a DNS name balanced
//!   across all its replicas, or in-process (for tests).
//! - [`media`]: header-then-chunks media streams, built and taken apart.
//! - [`session`], [`transcoder`], [`transcriber`], [`connect`],
//!   [`whatsapp`]: one module per service.

pub mod channel;
pub mod connect;
pub mod error;
pub mod media;
pub mod policy;
pub mod session;
pub mod transcoder;
pub mod transcriber;
pub mod whatsapp;

pub use connect::{ConnectApi, GrpcConnect};
pub use error::{ClientError, Result};
pub use policy::CallPolicy;
pub use session::{GrpcSession, SessionApi};
pub use transcoder::{GrpcTranscoder, TranscoderApi};
pub use transcriber::{GrpcTranscriber, TranscriberApi};
pub use whatsapp::{GrpcWhatsApp, WhatsAppApi};

/// A future returned by a client call.
pub type CallFuture<'a, T> = futures::future::BoxFuture<'a, Result<T>>;

/// Implements one unary method of a service trait: a deadline per
/// attempt, a typed error, and retries when `$idempotent` says the request
/// may be sent again.
macro_rules! unary {
    ($service:literal, $method:ident, $request:ty, $response:ty, $idempotent:expr) => {
        fn $method(&self, request: $request) -> $crate::CallFuture<'_, $response> {
            Box::pin(async move {
                let idempotent: fn(&$request) -> bool = $idempotent;
                let idempotent = idempotent(&request);
                self.policy
                    .run(idempotent, || {
                        let mut client = self.client.clone();
                        let mut call = tonic::Request::new(request.clone());
                        call.set_timeout(self.policy.deadline);
                        async move {
                            client
                                .$method(call)
                                .await
                                .map(tonic::Response::into_inner)
                                .map_err(|status| {
                                    $crate::ClientError::from_status(
                                        $service,
                                        stringify!($method),
                                        status,
                                    )
                                })
                        }
                    })
                    .await
            })
        }
    };
}
pub(crate) use unary;

/// Always retryable (the call is idempotent by nature).
pub(crate) fn always<T>(_: &T) -> bool {
    true
}

/// Never retried (a repeat would act twice).
pub(crate) fn never<T>(_: &T) -> bool {
    false
}
