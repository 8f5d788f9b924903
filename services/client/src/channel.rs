//! Channels to a service: over the network (one address, or a DNS name
//! balanced across every replica behind it — see
//! `parley_runtime::client::Balance`), or in-process over memory pipes for
//! tests. Either way the channel is traced, so every call carries the
//! caller's trace context.

use std::{convert::Infallible, io};

use hyper_util::rt::TokioIo;
use parley_runtime::client::{ClientConfig, ClientError as ChannelError, TracedChannel};
use tonic::{
    body::Body,
    server::NamedService,
    transport::{Endpoint, Server, Uri},
};
use tower::{Layer as _, Service};

/// A lazily connecting, traced channel to the service `config` names.
pub fn connect(config: &ClientConfig) -> Result<TracedChannel, ChannelError> {
    parley_runtime::client::connect_lazy(config)
}

/// A traced channel to `service` served in this process over memory pipes
/// (no sockets): the same encoding, layers and errors as over the network.
/// Each connection the channel opens gets its own pipe.
pub fn in_process<S>(service: S) -> TracedChannel
where
    S: Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible>
        + NamedService
        + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send + 'static,
{
    let (connections, incoming) =
        tokio::sync::mpsc::unbounded_channel::<io::Result<tokio::io::DuplexStream>>();
    tokio::spawn(Server::builder().add_service(service).serve_with_incoming(
        tokio_stream::wrappers::UnboundedReceiverStream::new(incoming),
    ));
    let channel = Endpoint::from_static("http://in-process.parley").connect_with_connector_lazy(
        tower::service_fn(move |_: Uri| {
            let (client, server) = tokio::io::duplex(1 << 20);
            let accepted = connections.send(Ok(server));
            async move {
                accepted
                    .map(|()| TokioIo::new(client))
                    .map_err(|_| io::Error::other("the in-process server has stopped"))
            }
        }),
    );
    parley_runtime::propagation::ClientTraceLayer.layer(channel)
}
