//! The real server's protective layers answer in gRPC terms: a full server
//! sheds load with UNAVAILABLE at once, a slow handler gets
//! DEADLINE_EXCEEDED — over a real connection to `GrpcServer`, not a copy
//! of its layer stack.

use std::{
    convert::Infallible,
    future::Future,
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};

use parley_runtime::server::{GrpcServer, ServerConfig};
use tonic::{Code, body::Body, server::NamedService};

/// A handler that answers only once `release` says so.
#[derive(Clone)]
struct Slow {
    release: tokio::sync::watch::Receiver<bool>,
}

impl NamedService for Slow {
    const NAME: &'static str = "parley.test.Slow";
}

impl tower::Service<http::Request<Body>> for Slow {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: http::Request<Body>) -> Self::Future {
        let mut release = self.release.clone();
        Box::pin(async move {
            let _ = release.wait_for(|r| *r).await;
            // An empty, successful unary answer (trailers-only).
            Ok(http::Response::builder()
                .header("content-type", "application/grpc")
                .header("grpc-status", "0")
                .body(Body::empty())
                .unwrap())
        })
    }
}

async fn call(channel: tonic::transport::Channel) -> Result<(), tonic::Status> {
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready()
        .await
        .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    let path = http::uri::PathAndQuery::from_static("/parley.test.Slow/Call");
    grpc.unary::<(), (), _>(
        tonic::Request::new(()),
        path,
        tonic_prost::ProstCodec::default(),
    )
    .await
    .map(drop)
}

#[tokio::test]
async fn overload_is_unavailable_and_slowness_is_deadline_exceeded() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let mut config = ServerConfig::local(address);
    config.concurrency_limit = 1;
    config.load_shed = true;
    config.request_timeout = Duration::from_millis(300);
    let (release, released) = tokio::sync::watch::channel(false);
    let (_stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(
        GrpcServer::new(config)
            .add_service(Slow { release: released })
            .serve(listener, async {
                let _ = stopped.await;
            }),
    );
    let channel = tonic::transport::Channel::from_shared(format!("http://{address}"))
        .unwrap()
        .connect()
        .await
        .unwrap();

    // The first call takes the only slot and holds it.
    let first = tokio::spawn(call(channel.clone()));
    tokio::time::sleep(Duration::from_millis(50)).await;
    // The second is refused at once rather than queued.
    let started = std::time::Instant::now();
    let second = call(channel.clone()).await.unwrap_err();
    assert_eq!(second.code(), Code::Unavailable, "{second:?}");
    assert!(
        started.elapsed() < Duration::from_millis(250),
        "refused at once"
    );
    // The held call runs into the server's timeout.
    let first = first.await.unwrap().unwrap_err();
    assert_eq!(first.code(), Code::DeadlineExceeded, "{first:?}");
    // With the slot free and the handler released, a call reaches the
    // handler again (whose empty answer the client then finds lacking a
    // message: proof it was answered, not shed or timed out).
    release.send(true).unwrap();
    let third = call(channel).await.unwrap_err();
    assert_eq!(third.code(), Code::Internal, "{third:?}");
    assert!(
        third.message().contains("Missing response message"),
        "{third:?}"
    );
}
