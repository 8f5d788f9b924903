//! The `parley.whatsapp.v1.WhatsAppSender` service; [`status`] is the one
//! place errors become statuses.

use std::pin::Pin;

use futures::{Stream, StreamExt};
use parley_proto::{
    common::{ErrorDetail, ErrorReason, MediaHeader},
    whatsapp::{self as pb, whats_app_sender_server::WhatsAppSender},
};
use tonic::{Request, Response, Status, Streaming};

use crate::{
    error::{ErrorKind, SenderError},
    message::{mark_read, payloads, recipient},
    sender::Sender,
};

/// The one mapping from [`SenderError`] to a gRPC status.
pub fn status(error: SenderError) -> Status {
    use tonic::Code;
    let (code, detail) = match error.kind {
        ErrorKind::Invalid => (
            Code::InvalidArgument,
            ErrorDetail::new(ErrorReason::InvalidRequest),
        ),
        ErrorKind::InvalidMedia => (
            Code::InvalidArgument,
            ErrorDetail::new(ErrorReason::InvalidMedia),
        ),
        ErrorKind::Limit => (
            Code::InvalidArgument,
            ErrorDetail::new(ErrorReason::LimitExceeded),
        ),
        ErrorKind::Configuration => (
            Code::FailedPrecondition,
            ErrorDetail::new(ErrorReason::Configuration),
        ),
        ErrorKind::Throttled => (Code::Unavailable, ErrorDetail::new(ErrorReason::Throttled)),
        ErrorKind::Unavailable => (
            Code::Unavailable,
            ErrorDetail::new(ErrorReason::Unavailable),
        ),
        ErrorKind::NotFound => (Code::NotFound, ErrorDetail::new(ErrorReason::NotFound)),
        ErrorKind::Busy(retry_after) => (
            Code::Aborted,
            ErrorDetail::new(ErrorReason::Busy).retry_after(retry_after),
        ),
        ErrorKind::Internal => (Code::Internal, ErrorDetail::new(ErrorReason::Unspecified)),
    };
    if matches!(
        error.kind,
        ErrorKind::Internal | ErrorKind::Unavailable | ErrorKind::Configuration
    ) {
        tracing::warn!(error = %error, aws_code = %error.aws_code, "whatsapp call failed");
    }
    let detail = detail
        .aws(error.operation, &error.aws_code)
        .completed(error.completed_ids.clone());
    parley_proto::errors::status(code, error.message, detail)
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
            .ok_or_else(|| status(SenderError::invalid("content is required")))?;
        let parts = payloads(&to, &request.reply_to_message_id, content).map_err(status)?;
        if request.idempotency_key.len() > 512 {
            return Err(status(SenderError::invalid(
                "idempotency_key is longer than 512 bytes",
            )));
        }
        let sent = self
            .sender
            .send_parts(&origination, &parts, &request.idempotency_key)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::SendMessageResponse {
            message_ids: sent.message_ids,
            already_sent: sent.already_sent as u32,
        }))
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
            return Err(status(SenderError::invalid("message_id is required")));
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
                return Err(status(SenderError::invalid(
                    "the first message must be an UploadMediaStart",
                )));
            }
        };
        let origination = self
            .sender
            .origination(&start.business_number_id)
            .map_err(status)?;
        let media = start.media.unwrap_or_default();
        crate::media::check(&media.mime_type, media.size_bytes).map_err(status)?;
        // The bytes go to S3 as they arrive, through a small channel (the
        // SDK's body must be Sync; the gRPC stream is not).
        let (tx, rx) = tokio::sync::mpsc::channel(2);
        tokio::spawn(async move {
            while let Some(message) = inbound.next().await {
                let chunk = match message {
                    Ok(pb::UploadMediaRequest {
                        message: Some(pb::upload_media_request::Message::Chunk(chunk)),
                    }) => Ok(chunk),
                    Ok(_) => Err(SenderError::invalid(
                        "only chunks may follow the UploadMediaStart",
                    )),
                    Err(e) => Err(SenderError::invalid(format!("upload stream failed: {e}"))),
                };
                let failed = chunk.is_err();
                if tx.send(chunk).await.is_err() || failed {
                    break;
                }
            }
        });
        let media_id = self
            .sender
            .upload(
                &origination,
                &media.mime_type,
                media.size_bytes,
                tokio_stream::wrappers::ReceiverStream::new(rx),
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
