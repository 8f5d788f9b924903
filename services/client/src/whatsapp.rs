//! The whatsapp-sender service (`parley.whatsapp.v1.WhatsAppSender`).

use std::sync::Arc;

use parley_proto::{
    common::MediaHeader,
    whatsapp::{self as pb, whats_app_sender_client::WhatsAppSenderClient},
};
use parley_runtime::client::TracedChannel;

use crate::{
    CallFuture, CallPolicy, ClientError, always,
    media::{self, MediaBody, MediaStream},
    unary,
};

/// WhatsApp through AWS End User Messaging Social.
pub trait WhatsAppApi: Send + Sync + 'static {
    /// Sends a message (every part at most once with an idempotency key).
    fn send_message(
        &self,
        request: pb::SendMessageRequest,
    ) -> CallFuture<'_, pb::SendMessageResponse>;
    /// Marks an inbound message read (optionally showing typing).
    fn mark_read(&self, request: pb::MarkReadRequest) -> CallFuture<'_, pb::MarkReadResponse>;
    /// Uploads media for a later media message: `start`, then `body`.
    fn upload_media(&self, start: pb::UploadMediaStart, body: MediaBody) -> CallFuture<'_, String>;
    /// Downloads a customer's media: its header and its bytes.
    fn download_media(
        &self,
        request: pb::DownloadMediaRequest,
    ) -> CallFuture<'_, (MediaHeader, MediaStream)>;
}

/// [`WhatsAppApi`] over gRPC.
#[derive(Clone)]
pub struct GrpcWhatsApp {
    client: WhatsAppSenderClient<TracedChannel>,
    policy: Arc<CallPolicy>,
}

impl GrpcWhatsApp {
    /// A client on `channel`.
    pub fn new(channel: TracedChannel, policy: CallPolicy) -> Self {
        Self {
            client: WhatsAppSenderClient::new(channel).max_decoding_message_size(1 << 20),
            policy: Arc::new(policy),
        }
    }
}

impl WhatsAppApi for GrpcWhatsApp {
    // Without an idempotency key a repeated send is a second message.
    unary!(
        "whatsapp",
        send_message,
        pb::SendMessageRequest,
        pb::SendMessageResponse,
        |r| !r.idempotency_key.is_empty()
    );
    // Marking read twice is harmless.
    unary!(
        "whatsapp",
        mark_read,
        pb::MarkReadRequest,
        pb::MarkReadResponse,
        always
    );

    fn upload_media(&self, start: pb::UploadMediaStart, body: MediaBody) -> CallFuture<'_, String> {
        let (requests, body_error) = media::upload_requests(
            pb::UploadMediaRequest {
                message: Some(pb::upload_media_request::Message::Start(start)),
            },
            body,
            |chunk| pb::UploadMediaRequest {
                message: Some(pb::upload_media_request::Message::Chunk(chunk)),
            },
        );
        let mut call = tonic::Request::new(requests);
        call.set_timeout(self.policy.media_deadline);
        let mut client = self.client.clone();
        Box::pin(async move {
            client
                .upload_media(call)
                .await
                .map(|r| r.into_inner().media_id)
                .map_err(|status| {
                    body_error.or(
                        "whatsapp",
                        "upload_media",
                        ClientError::from_status("whatsapp", "upload_media", status),
                    )
                })
        })
    }

    fn download_media(
        &self,
        request: pb::DownloadMediaRequest,
    ) -> CallFuture<'_, (MediaHeader, MediaStream)> {
        let mut call = tonic::Request::new(request);
        call.set_timeout(self.policy.media_deadline);
        let mut client = self.client.clone();
        Box::pin(async move {
            media::split_download(
                "whatsapp",
                "download_media",
                client.download_media(call).await,
            )
            .await
        })
    }
}
