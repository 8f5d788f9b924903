//! The protective layers answer in gRPC terms: a full server sheds load with
//! UNAVAILABLE, a slow handler gets DEADLINE_EXCEEDED.

use std::{convert::Infallible, time::Duration};

use parley_runtime::server::ErrorStatusLayer;
use tonic::body::Body;
use tower::{
    Service, ServiceBuilder, ServiceExt, limit::ConcurrencyLimitLayer, load_shed::LoadShedLayer,
    service_fn, timeout::TimeoutLayer,
};

fn request() -> http::Request<()> {
    http::Request::new(())
}

fn grpc_status(response: &http::Response<Body>) -> &str {
    response.headers()["grpc-status"].to_str().unwrap()
}

#[tokio::test]
async fn overload_is_unavailable_and_slowness_is_deadline_exceeded() {
    let (release, released) = tokio::sync::watch::channel(false);
    let handler = service_fn(move |_request: http::Request<()>| {
        let mut released = released.clone();
        async move {
            let _ = released.wait_for(|r| *r).await;
            Ok::<_, Infallible>(http::Response::new(Body::empty()))
        }
    });
    let mut service = ServiceBuilder::new()
        .layer(ErrorStatusLayer)
        .layer(LoadShedLayer::new())
        .layer(ConcurrencyLimitLayer::new(1))
        .layer(TimeoutLayer::new(Duration::from_millis(200)))
        .service(handler);

    // The first call takes the only slot and holds it.
    let first = service.ready().await.unwrap().call(request());
    // The second is refused at once rather than queued.
    let second = service
        .ready()
        .await
        .unwrap()
        .call(request())
        .await
        .unwrap();
    assert_eq!(grpc_status(&second), "14", "UNAVAILABLE");
    // The held call runs into the timeout.
    let first = first.await.unwrap();
    assert_eq!(grpc_status(&first), "4", "DEADLINE_EXCEEDED");
    // With the slot free and the handler released, calls succeed again.
    release.send(true).unwrap();
    let third = service
        .ready()
        .await
        .unwrap()
        .call(request())
        .await
        .unwrap();
    assert!(third.headers().get("grpc-status").is_none());
}
