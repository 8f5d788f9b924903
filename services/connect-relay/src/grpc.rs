//! The `parley.connect.v1.ConnectRelay` service: requests are validated into
//! relay calls, and [`status`] turns every [`RelayError`] into a status the
//! gateway can act on (SESSION_GONE, THROTTLED, INVALID_*).

use std::pin::Pin;

use bytes::Bytes;
use futures::{Stream, StreamExt};
use parley_proto::{
    common::{ErrorDetail, ErrorReason, MediaHeader},
    connect::{self as pb, connect_relay_server::ConnectRelay},
};
use tonic::{Request, Response, Status, Streaming};

use crate::{
    error::{ErrorKind, RelayError},
    relay::{Relay, StartChat},
};

/// The one mapping from [`RelayError`] to a gRPC status.
pub fn status(error: RelayError) -> Status {
    use tonic::Code;
    let (code, reason) = match error.kind {
        ErrorKind::ConnectionExpired => (Code::FailedPrecondition, ErrorReason::ConnectionExpired),
        ErrorKind::ChatEnded => (Code::FailedPrecondition, ErrorReason::ChatEnded),
        ErrorKind::Configuration => (Code::FailedPrecondition, ErrorReason::Configuration),
        ErrorKind::Throttled => (Code::Unavailable, ErrorReason::Throttled),
        ErrorKind::Unavailable => (Code::Unavailable, ErrorReason::Unavailable),
        ErrorKind::Busy => (Code::Aborted, ErrorReason::Busy),
        ErrorKind::Invalid => (Code::InvalidArgument, ErrorReason::InvalidRequest),
        ErrorKind::InvalidMedia => (Code::InvalidArgument, ErrorReason::InvalidMedia),
        ErrorKind::Limit => (Code::ResourceExhausted, ErrorReason::LimitExceeded),
        ErrorKind::Internal => (Code::Internal, ErrorReason::Unspecified),
    };
    if matches!(
        error.kind,
        ErrorKind::Internal | ErrorKind::Unavailable | ErrorKind::Configuration
    ) {
        tracing::warn!(error = %error, aws_code = %error.aws_code, "connect call failed");
    }
    let detail = ErrorDetail::new(reason)
        .aws(error.operation, &error.aws_code)
        .retryable(error.retryable())
        .completed(error.completed_ids.clone());
    parley_proto::errors::status(code, error.message, detail)
}

fn required(field: &str, value: &str) -> Result<(), Status> {
    if value.trim().is_empty() {
        Err(status(RelayError::invalid(format!("{field} is required"))))
    } else {
        Ok(())
    }
}

fn content_type(value: i32) -> Result<&'static str, Status> {
    Ok(match pb::ContentType::try_from(value) {
        Ok(pb::ContentType::Unspecified | pb::ContentType::TextPlain) => "text/plain",
        Ok(pb::ContentType::TextMarkdown) => "text/markdown",
        Ok(pb::ContentType::InteractiveResponse) => {
            "application/vnd.amazonaws.connect.message.interactive.response"
        }
        Ok(pb::ContentType::Json) => "application/json",
        Ok(pb::ContentType::AgentNotice) => {
            return Err(status(RelayError::invalid(
                "AGENT_NOTICE is sent with SendMessage, not as a chat's initial message",
            )));
        }
        Err(_) => {
            return Err(status(RelayError::invalid(format!(
                "unknown content type {value}"
            ))));
        }
    })
}

/// The gRPC service over a [`Relay`].
#[derive(Clone)]
pub struct RelayService {
    relay: Relay,
}

impl RelayService {
    /// A service over `relay`.
    pub fn new(relay: Relay) -> Self {
        Self { relay }
    }

    /// The tonic server for this service.
    pub fn into_server(self) -> pb::connect_relay_server::ConnectRelayServer<Self> {
        pb::connect_relay_server::ConnectRelayServer::new(self)
    }
}

type FetchStream = Pin<Box<dyn Stream<Item = Result<pb::FetchAttachmentResponse, Status>> + Send>>;

#[tonic::async_trait]
impl ConnectRelay for RelayService {
    async fn start_chat(
        &self,
        request: Request<pb::StartChatRequest>,
    ) -> Result<Response<pb::StartChatResponse>, Status> {
        let request = request.into_inner();
        let key = request.key.unwrap_or_default();
        required("key.customer_id", &key.customer_id)?;
        required("key.business_number_id", &key.business_number_id)?;
        let started = self
            .relay
            .start_chat(StartChat {
                business_number_id: key.business_number_id,
                customer_id: key.customer_id,
                instance_id: request.instance_id,
                contact_flow_id: request.contact_flow_id,
                display_name: request.display_name,
                initial_message: request.initial_message,
                content_type: content_type(request.initial_content_type)?.to_owned(),
                chat_duration_minutes: request.chat_duration_minutes,
                client_token: request.client_token,
                attributes: request.attributes.into_iter().collect(),
                channel: request.channel,
                persistent_chat: request
                    .persistent_chat
                    .map(|p| (p.source_contact_id, p.rehydration_type)),
            })
            .await
            .map_err(status)?;
        tracing::info!(contact_id = %started.contact_id, "chat started");
        Ok(Response::new(pb::StartChatResponse {
            initial_contact_id: started.contact_id.clone(),
            contact_id: started.contact_id,
            participant_id: started.participant_id,
            participant_token: started.participant_token,
            connection_token: started.connection_token,
            connection_expires_at_ms: started.connection_expires_at_ms,
            earlier_items: started
                .earlier_items
                .into_iter()
                .map(|item| pb::TranscriptItem {
                    id: item.id,
                    r#type: item.kind,
                    content_type: item.content_type,
                    content: item.content,
                    participant_role: item.participant_role,
                    display_name: item.display_name,
                    absolute_time_ms: item.absolute_time_ms,
                    attachments: item
                        .attachments
                        .into_iter()
                        .map(|a| pb::TranscriptAttachment {
                            attachment_id: a.id,
                            name: a.name,
                            content_type: a.content_type,
                            status: a.status,
                        })
                        .collect(),
                })
                .collect(),
        }))
    }

    async fn send_message(
        &self,
        request: Request<pb::SendMessageRequest>,
    ) -> Result<Response<pb::SendMessageResponse>, Status> {
        let request = request.into_inner();
        required("connection_token", &request.connection_token)?;
        required("content", &request.content)?;
        let message_ids = if request.content_type == pb::ContentType::AgentNotice as i32 {
            vec![
                self.relay
                    .send_notice(
                        &request.connection_token,
                        &request.notice_kind,
                        &request.content,
                        &request.client_token,
                    )
                    .await
                    .map_err(status)?,
            ]
        } else {
            self.relay
                .send_message(
                    &request.connection_token,
                    content_type(request.content_type)?,
                    &request.content,
                    &request.client_token,
                )
                .await
                .map_err(status)?
        };
        Ok(Response::new(pb::SendMessageResponse { message_ids }))
    }

    async fn send_attachment(
        &self,
        request: Request<Streaming<pb::SendAttachmentRequest>>,
    ) -> Result<Response<pb::SendAttachmentResponse>, Status> {
        let mut inbound = request.into_inner();
        let start = match inbound.message().await? {
            Some(pb::SendAttachmentRequest {
                message: Some(pb::send_attachment_request::Message::Start(start)),
            }) => start,
            _ => {
                return Err(status(RelayError::invalid(
                    "the first message must be an AttachmentStart",
                )));
            }
        };
        required("connection_token", &start.connection_token)?;
        let media = start.media.unwrap_or_default();
        required("media.file_name", &media.file_name)?;
        required("media.mime_type", &media.mime_type)?;
        // Validate before the first chunk is read: nothing is uploaded for
        // a type or size Connect would refuse.
        crate::relay::check_attachment(&media.file_name, media.size_bytes).map_err(status)?;
        let declared = media.size_bytes;
        let mut received = 0u64;
        // Set when the client sends more than it declared: that is the
        // client's mistake (INVALID_ARGUMENT), not a failed upload.
        let overflowed = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let overflow_flag = overflowed.clone();
        let body = inbound.map(move |message| {
            let chunk = match message {
                Ok(pb::SendAttachmentRequest {
                    message: Some(pb::send_attachment_request::Message::Chunk(chunk)),
                }) => chunk,
                Ok(_) => {
                    return Err(std::io::Error::other(
                        "only chunks may follow the AttachmentStart",
                    ));
                }
                Err(e) => return Err(std::io::Error::other(e.to_string())),
            };
            received += chunk.len() as u64;
            if received > declared {
                overflow_flag.store(true, std::sync::atomic::Ordering::SeqCst);
                return Err(std::io::Error::other(format!(
                    "more than the declared {declared} bytes were sent"
                )));
            }
            Ok::<Bytes, std::io::Error>(chunk)
        });
        let attachment_id = self
            .relay
            .send_attachment(
                &start.connection_token,
                &media.file_name,
                &media.mime_type,
                declared,
                &start.client_token,
                body,
            )
            .await
            .map_err(|e| {
                if overflowed.load(std::sync::atomic::Ordering::SeqCst) {
                    status(RelayError::invalid(format!(
                        "more than the declared {declared} bytes were sent"
                    )))
                } else {
                    status(e)
                }
            })?;
        Ok(Response::new(pb::SendAttachmentResponse { attachment_id }))
    }

    type FetchAttachmentStream = FetchStream;

    async fn fetch_attachment(
        &self,
        request: Request<pb::FetchAttachmentRequest>,
    ) -> Result<Response<Self::FetchAttachmentStream>, Status> {
        let request = request.into_inner();
        required("connection_token", &request.connection_token)?;
        required("attachment_id", &request.attachment_id)?;
        let fetched = self
            .relay
            .fetch_attachment(&request.connection_token, &request.attachment_id)
            .await
            .map_err(status)?;
        let header = pb::FetchAttachmentResponse {
            message: Some(pb::fetch_attachment_response::Message::Header(
                MediaHeader {
                    mime_type: fetched.content_type,
                    file_name: request.file_name,
                    size_bytes: fetched.size,
                },
            )),
        };
        let chunks = fetched.body.map(|chunk| {
            chunk
                .map(|bytes| pb::FetchAttachmentResponse {
                    message: Some(pb::fetch_attachment_response::Message::Chunk(bytes)),
                })
                .map_err(status)
        });
        Ok(Response::new(Box::pin(
            futures::stream::once(async { Ok(header) }).chain(chunks),
        )))
    }

    async fn send_event(
        &self,
        request: Request<pb::SendEventRequest>,
    ) -> Result<Response<pb::SendEventResponse>, Status> {
        let request = request.into_inner();
        required("connection_token", &request.connection_token)?;
        let (content_type, content) = match pb::ChatEvent::try_from(request.event) {
            Ok(pb::ChatEvent::Typing) => ("application/vnd.amazonaws.connect.event.typing", None),
            Ok(pb::ChatEvent::MessageDelivered) => (
                "application/vnd.amazonaws.connect.event.message.delivered",
                Some(()),
            ),
            Ok(pb::ChatEvent::MessageRead) => (
                "application/vnd.amazonaws.connect.event.message.read",
                Some(()),
            ),
            _ => {
                return Err(status(RelayError::invalid(
                    "event must be TYPING, MESSAGE_DELIVERED or MESSAGE_READ",
                )));
            }
        };
        let content = match content {
            Some(()) => {
                required("message_id", &request.message_id)?;
                Some(serde_json::json!({ "messageId": request.message_id }).to_string())
            }
            None => None,
        };
        let event_id = self
            .relay
            .send_event(
                &request.connection_token,
                content_type,
                content,
                &request.client_token,
            )
            .await
            .map_err(status)?;
        Ok(Response::new(pb::SendEventResponse { event_id }))
    }

    async fn refresh_connection(
        &self,
        request: Request<pb::RefreshConnectionRequest>,
    ) -> Result<Response<pb::RefreshConnectionResponse>, Status> {
        let request = request.into_inner();
        required("participant_token", &request.participant_token)?;
        let (connection_token, connection_expires_at_ms) = self
            .relay
            .refresh_connection(&request.participant_token)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::RefreshConnectionResponse {
            connection_token,
            connection_expires_at_ms,
        }))
    }

    async fn disconnect(
        &self,
        request: Request<pb::DisconnectRequest>,
    ) -> Result<Response<pb::DisconnectResponse>, Status> {
        let request = request.into_inner();
        required("connection_token", &request.connection_token)?;
        self.relay
            .disconnect(&request.connection_token, &request.client_token)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::DisconnectResponse {}))
    }
}
