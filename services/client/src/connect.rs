//! The connect-relay service (`parley.connect.v1.ConnectRelay`).

use std::sync::Arc;

use parley_proto::{
    common::MediaHeader,
    connect::{self as pb, connect_relay_client::ConnectRelayClient},
};
use parley_runtime::client::TracedChannel;

use crate::{
    CallFuture, CallPolicy, ClientError, always,
    media::{self, MediaBody, MediaStream},
    unary,
};

/// Amazon Connect chat as the customer participant.
pub trait ConnectApi: Send + Sync + 'static {
    /// Starts (and connects to) a chat.
    fn start_chat(&self, request: pb::StartChatRequest) -> CallFuture<'_, pb::StartChatResponse>;
    /// Sends text (split at Connect's limit) or an agent-only notice.
    fn send_message(
        &self,
        request: pb::SendMessageRequest,
    ) -> CallFuture<'_, pb::SendMessageResponse>;
    /// Sends a typing indicator or a receipt.
    fn send_event(&self, request: pb::SendEventRequest) -> CallFuture<'_, pb::SendEventResponse>;
    /// A fresh connection token from the participant token.
    fn refresh_connection(
        &self,
        request: pb::RefreshConnectionRequest,
    ) -> CallFuture<'_, pb::RefreshConnectionResponse>;
    /// Leaves the chat as the customer.
    fn disconnect(&self, request: pb::DisconnectRequest) -> CallFuture<'_, pb::DisconnectResponse>;
    /// Uploads an attachment: `start` (name, type, exact size), then `body`.
    fn send_attachment(
        &self,
        start: pb::AttachmentStart,
        body: MediaBody,
    ) -> CallFuture<'_, pb::SendAttachmentResponse>;
    /// Downloads an attachment an agent sent: its header and its bytes.
    fn fetch_attachment(
        &self,
        request: pb::FetchAttachmentRequest,
    ) -> CallFuture<'_, (MediaHeader, MediaStream)>;
}

/// [`ConnectApi`] over gRPC.
#[derive(Clone)]
pub struct GrpcConnect {
    client: ConnectRelayClient<TracedChannel>,
    policy: Arc<CallPolicy>,
}

impl GrpcConnect {
    /// A client on `channel`.
    pub fn new(channel: TracedChannel, policy: CallPolicy) -> Self {
        Self {
            // Media messages are up to 256 KiB plus framing.
            client: ConnectRelayClient::new(channel).max_decoding_message_size(1 << 20),
            policy: Arc::new(policy),
        }
    }
}

// A client token makes a send or a start idempotent at Connect (one
// ClientToken per part), so those are retried only when one is given.
impl ConnectApi for GrpcConnect {
    unary!(
        "connect",
        start_chat,
        pb::StartChatRequest,
        pb::StartChatResponse,
        |r| !r.client_token.is_empty()
    );
    unary!(
        "connect",
        send_message,
        pb::SendMessageRequest,
        pb::SendMessageResponse,
        |r| !r.client_token.is_empty()
    );
    unary!(
        "connect",
        send_event,
        pb::SendEventRequest,
        pb::SendEventResponse,
        |r| !r.client_token.is_empty()
    );
    unary!(
        "connect",
        refresh_connection,
        pb::RefreshConnectionRequest,
        pb::RefreshConnectionResponse,
        always
    );
    unary!(
        "connect",
        disconnect,
        pb::DisconnectRequest,
        pb::DisconnectResponse,
        always
    );

    fn send_attachment(
        &self,
        start: pb::AttachmentStart,
        body: MediaBody,
    ) -> CallFuture<'_, pb::SendAttachmentResponse> {
        let (requests, body_error) = media::upload_requests(
            pb::SendAttachmentRequest {
                message: Some(pb::send_attachment_request::Message::Start(start)),
            },
            body,
            |chunk| pb::SendAttachmentRequest {
                message: Some(pb::send_attachment_request::Message::Chunk(chunk)),
            },
        );
        let mut call = tonic::Request::new(requests);
        call.set_timeout(self.policy.media_deadline);
        let mut client = self.client.clone();
        Box::pin(async move {
            client
                .send_attachment(call)
                .await
                .map(tonic::Response::into_inner)
                .map_err(|status| {
                    body_error.or(
                        "connect",
                        "send_attachment",
                        ClientError::from_status("connect", "send_attachment", status),
                    )
                })
        })
    }

    fn fetch_attachment(
        &self,
        request: pb::FetchAttachmentRequest,
    ) -> CallFuture<'_, (MediaHeader, MediaStream)> {
        let mut call = tonic::Request::new(request);
        call.set_timeout(self.policy.media_deadline);
        let mut client = self.client.clone();
        Box::pin(async move {
            media::split_download(
                "connect",
                "fetch_attachment",
                client.fetch_attachment(call).await,
            )
            .await
        })
    }
}
