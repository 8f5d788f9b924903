//! The services the gateway drives, each behind its client trait, so the
//! pipeline is the same over gRPC, in-process channels or test doubles.

use std::sync::Arc;

use parley_client::{
    CallPolicy, ConnectApi, GrpcConnect, GrpcSession, GrpcTranscoder, GrpcTranscriber,
    GrpcWhatsApp, SessionApi, TranscoderApi, TranscriberApi, WhatsAppApi, channel,
};

use crate::config::GatewayConfig;

/// Every service the gateway calls.
#[derive(Clone)]
pub struct Services {
    /// Conversation state: chats, claims, links, pending buffers.
    pub session: Arc<dyn SessionApi>,
    /// The customer's side of Connect chats.
    pub connect: Arc<dyn ConnectApi>,
    /// WhatsApp sends and media.
    pub whatsapp: Arc<dyn WhatsAppApi>,
    /// Voice-note conversion.
    pub transcoder: Arc<dyn TranscoderApi>,
    /// Voice-note transcription.
    pub transcriber: Arc<dyn TranscriberApi>,
}

impl Services {
    /// gRPC clients for the endpoints in `config` (channels connect lazily,
    /// so the gateway starts before the services do).
    pub fn connect(config: &GatewayConfig) -> anyhow::Result<Self> {
        let policy = CallPolicy::default;
        Ok(Self {
            session: Arc::new(GrpcSession::new(
                channel::connect(&config.session)?,
                policy(),
            )),
            connect: Arc::new(GrpcConnect::new(
                channel::connect(&config.connect)?,
                policy(),
            )),
            whatsapp: Arc::new(GrpcWhatsApp::new(
                channel::connect(&config.whatsapp)?,
                policy(),
            )),
            transcoder: Arc::new(GrpcTranscoder::new(
                channel::connect(&config.transcoder)?,
                policy(),
            )),
            transcriber: Arc::new(GrpcTranscriber::new(
                channel::connect(&config.transcriber)?,
                policy(),
            )),
        })
    }
}
