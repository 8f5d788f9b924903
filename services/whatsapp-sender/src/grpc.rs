//! The `parley.whatsapp.v1.WhatsAppSender` service; [`status`] is the one
//! place errors become statuses.

use std::pin::Pin;

use futures::{Stream, StreamExt};
use parley_proto::{
    common::{ErrorDetail, ErrorReason, MediaHeader},
    whatsapp::{self as pb, whats_app_sender_server::WhatsAppSender},
};
use prost::Message as _;
use tonic::{Request, Response, Status, Streaming};

use crate::{
    error::SenderError,
    message::{mark_read, payloads, recipient},
    sender::Sender,
};

/// The one mapping from [`SenderError`] to a gRPC status.
pub fn status(error: SenderError) -> Status {
    let (code, reason) = match &error {
        SenderError::Invalid(_) => (tonic::Code::InvalidArgument, ErrorReason::InvalidRequest),
        SenderError::InvalidMedia(_) => (tonic::Code::InvalidArgument, ErrorReason::InvalidMedia),
        SenderError::Unavailable(_) => (tonic::Code::Unavailable, ErrorReason::Throttled),
        SenderError::NotFound(_) => (tonic::Code::NotFound, ErrorReason::Unspecified),
        SenderError::Internal(_) => (tonic::Code::Internal, ErrorReason::Unspecified),
    };
    if matches!(
        error,
        SenderError::Internal(_) | SenderError::Unavailable(_)
    ) {
        tracing::warn!(error = %error, "whatsapp call failed");
    }
    let detail = ErrorDetail {
        reason: reason as i32,
        aws_error_code: String::new(),
    };
    Status::with_details(code, error.to_string(), detail.encode_to_vec().into())
}

/// The gRPC service over a [`Sender`].
#[derive(Clone)]
pub struct SenderService {
    sender: Sender,
}

impl SenderService {
    /// A service over `sender`.
    pub fn new(sender: Sender) -> Self {
        Self { sender }
    }

    /// The tonic server for this service.
    pub fn into_server(self) -> pb::whats_app_sender_server::WhatsAppSenderServer<Self> {
        pb::whats_app_sender_server::WhatsAppSenderServer::new(self)
    }
}

type DownloadStream = Pin<Box<dyn Stream<Item = Result<pb::DownloadMediaResponse, Status>> + Send>>;

#[tonic::async_trait]
impl WhatsAppSender for SenderService {
    async fn send_message(
        &self,
        request: Request<pb::SendMessageRequest>,
    ) -> Result<Response<pb::SendMessageResponse>, Status> {
        let request = request.into_inner();
        let origination = self
            .sender
            .origination(&request.business_number_id)
            .map_err(status)?;
        let to = recipient(&request.recipient).map_err(status)?;
        let content = request
            .content
            .ok_or_else(|| status(SenderError::Invalid("content is required".into())))?;
        let mut message_ids = Vec::new();
        for payload in payloads(&to, &request.reply_to_message_id, content).map_err(status)? {
            message_ids.push(
                self.sender
                    .send_payload(&origination, &payload)
                    .await
                    .map_err(status)?,
            );
        }
        Ok(Response::new(pb::SendMessageResponse { message_ids }))
    }

    async fn mark_read(
        &self,
        request: Request<pb::MarkReadRequest>,
    ) -> Result<Response<pb::MarkReadResponse>, Status> {
        let request = request.into_inner();
        let origination = self
            .sender
            .origination(&request.business_number_id)
            .map_err(status)?;
        if request.message_id.is_empty() {
            return Err(status(SenderError::Invalid(
                "message_id is required".into(),
            )));
        }
        self.sender
            .send_payload(
                &origination,
                &mark_read(&request.message_id, request.show_typing),
            )
            .await
            .map_err(status)?;
        Ok(Response::new(pb::MarkReadResponse {}))
    }

    async fn upload_media(
        &self,
        request: Request<Streaming<pb::UploadMediaRequest>>,
    ) -> Result<Response<pb::UploadMediaResponse>, Status> {
        let mut inbound = request.into_inner();
        let start = match inbound.message().await? {
            Some(pb::UploadMediaRequest {
                message: Some(pb::upload_media_request::Message::Start(start)),
            }) => start,
            _ => {
                return Err(status(SenderError::Invalid(
                    "the first message must be an UploadMediaStart".into(),
                )));
            }
        };
        let origination = self
            .sender
            .origination(&start.business_number_id)
            .map_err(status)?;
        let media = start.media.unwrap_or_default();
        crate::media::check(&media.mime_type, media.size_bytes).map_err(status)?;
        let body = inbound.map(|message| match message {
            Ok(pb::UploadMediaRequest {
                message: Some(pb::upload_media_request::Message::Chunk(chunk)),
            }) => Ok(chunk),
            Ok(_) => Err(SenderError::Invalid(
                "only chunks may follow the UploadMediaStart".into(),
            )),
            Err(e) => Err(SenderError::Invalid(format!("upload stream failed: {e}"))),
        });
        let media_id = self
            .sender
            .upload(
                &origination,
                &media.mime_type,
                media.size_bytes,
                Box::pin(body),
            )
            .await
            .map_err(status)?;
        Ok(Response::new(pb::UploadMediaResponse { media_id }))
    }

    type DownloadMediaStream = DownloadStream;

    async fn download_media(
        &self,
        request: Request<pb::DownloadMediaRequest>,
    ) -> Result<Response<Self::DownloadMediaStream>, Status> {
        let request = request.into_inner();
        let origination = self
            .sender
            .origination(&request.business_number_id)
            .map_err(status)?;
        let media = self
            .sender
            .download(&origination, &request.media_id)
            .await
            .map_err(status)?;
        let header = pb::DownloadMediaResponse {
            message: Some(pb::download_media_response::Message::Header(MediaHeader {
                mime_type: media.mime_type,
                file_name: String::new(),
                size_bytes: media.size,
            })),
        };
        let chunks = media.body.map(|chunk| {
            chunk
                .map(|bytes| pb::DownloadMediaResponse {
                    message: Some(pb::download_media_response::Message::Chunk(bytes)),
                })
                .map_err(status)
        });
        Ok(Response::new(Box::pin(
            futures::stream::once(async { Ok(header) }).chain(chunks),
        )))
    }
}
