//! The transcriber service (`parley.transcriber.v1.Transcriber`).

use std::sync::Arc;

use futures::{StreamExt, stream::BoxStream};
use parley_proto::transcriber::{self as pb, transcriber_client::TranscriberClient};
use parley_runtime::client::TracedChannel;

use crate::{
    CallFuture, CallPolicy, ClientError, Result,
    media::{self, MediaBody},
};

/// What a transcription sends back: segments, then a summary.
pub type TranscriptStream = BoxStream<'static, Result<pb::TranscribeResponse>>;

/// Speech to text.
pub trait TranscriberApi: Send + Sync + 'static {
    /// Transcribes `audio` as `config` describes it.
    fn transcribe(
        &self,
        config: pb::TranscriptionConfig,
        audio: MediaBody,
    ) -> CallFuture<'_, TranscriptStream>;
}

/// [`TranscriberApi`] over gRPC.
#[derive(Clone)]
pub struct GrpcTranscriber {
    client: TranscriberClient<TracedChannel>,
    policy: Arc<CallPolicy>,
}

impl GrpcTranscriber {
    /// A client on `channel`.
    pub fn new(channel: TracedChannel, policy: CallPolicy) -> Self {
        Self {
            client: TranscriberClient::new(channel),
            policy: Arc::new(policy),
        }
    }
}

impl TranscriberApi for GrpcTranscriber {
    fn transcribe(
        &self,
        config: pb::TranscriptionConfig,
        audio: MediaBody,
    ) -> CallFuture<'_, TranscriptStream> {
        let (requests, body_error) = media::upload_requests(
            pb::TranscribeRequest {
                message: Some(pb::transcribe_request::Message::Config(config)),
            },
            audio,
            |chunk| pb::TranscribeRequest {
                message: Some(pb::transcribe_request::Message::Audio(chunk)),
            },
        );
        let mut call = tonic::Request::new(requests);
        call.set_timeout(self.policy.media_deadline);
        let mut client = self.client.clone();
        Box::pin(async move {
            let responses = client
                .transcribe(call)
                .await
                .map_err(|s| ClientError::from_status("transcriber", "transcribe", s))?
                .into_inner();
            Ok(responses
                .map(move |r| {
                    r.map_err(|s| {
                        body_error.or(
                            "transcriber",
                            "transcribe",
                            ClientError::from_status("transcriber", "transcribe", s),
                        )
                    })
                })
                .boxed())
        })
    }
}
