//! The transcoder service (`parley.transcoder.v1.Transcoder`).

use std::sync::Arc;

use futures::{StreamExt, stream::BoxStream};
use parley_proto::transcoder::{self as pb, transcoder_client::TranscoderClient};
use parley_runtime::client::TracedChannel;

use crate::{
    CallFuture, CallPolicy, ClientError, Result, always,
    media::{self, MediaBody},
    unary,
};

/// What a streaming conversion sends back: an optional prelude, chunks,
/// then a summary.
pub type ConvertOutput = BoxStream<'static, Result<pb::ConvertStreamResponse>>;

/// Audio conversion.
pub trait TranscoderApi: Send + Sync + 'static {
    /// Converts a whole file in one call.
    fn convert(&self, request: pb::ConvertRequest) -> CallFuture<'_, pb::ConvertResponse>;
    /// Facts about a file.
    fn probe(&self, request: pb::ProbeRequest) -> CallFuture<'_, pb::ProbeResponse>;
    /// Converts a stream: `start`, then `input`; output flows back as it is
    /// ready.
    fn convert_stream(
        &self,
        start: pb::ConvertStart,
        input: MediaBody,
    ) -> CallFuture<'_, ConvertOutput>;
}

/// [`TranscoderApi`] over gRPC.
#[derive(Clone)]
pub struct GrpcTranscoder {
    client: TranscoderClient<TracedChannel>,
    policy: Arc<CallPolicy>,
}

impl GrpcTranscoder {
    /// A client on `channel`; unary responses may be as large as the
    /// transcoder allows (64 MiB).
    pub fn new(channel: TracedChannel, policy: CallPolicy) -> Self {
        Self {
            client: TranscoderClient::new(channel)
                .max_decoding_message_size(64 << 20)
                .max_encoding_message_size(64 << 20),
            policy: Arc::new(policy),
        }
    }
}

impl TranscoderApi for GrpcTranscoder {
    unary!(
        "transcoder",
        convert,
        pb::ConvertRequest,
        pb::ConvertResponse,
        always
    );
    unary!(
        "transcoder",
        probe,
        pb::ProbeRequest,
        pb::ProbeResponse,
        always
    );

    fn convert_stream(
        &self,
        start: pb::ConvertStart,
        input: MediaBody,
    ) -> CallFuture<'_, ConvertOutput> {
        let (requests, body_error) = media::upload_requests(
            pb::ConvertStreamRequest {
                message: Some(pb::convert_stream_request::Message::Start(start)),
            },
            input,
            |chunk| pb::ConvertStreamRequest {
                message: Some(pb::convert_stream_request::Message::Chunk(chunk)),
            },
        );
        let mut call = tonic::Request::new(requests);
        call.set_timeout(self.policy.media_deadline);
        let mut client = self.client.clone();
        Box::pin(async move {
            let responses = client
                .convert_stream(call)
                .await
                .map_err(|s| ClientError::from_status("transcoder", "convert_stream", s))?
                .into_inner();
            Ok(responses
                .map(move |r| {
                    r.map_err(|s| {
                        body_error.or(
                            "transcoder",
                            "convert_stream",
                            ClientError::from_status("transcoder", "convert_stream", s),
                        )
                    })
                })
                .boxed())
        })
    }
}
