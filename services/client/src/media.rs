//! Media over gRPC: every media RPC is a header (or start) message, then
//! the bytes in chunks of at most [`CHUNK_BYTES`]. These helpers build the
//! request streams and take the response streams apart, once, for every
//! service and caller.

use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};
use futures::{Stream, StreamExt, stream::BoxStream};
use parley_proto::{
    common::MediaHeader,
    connect::{FetchAttachmentResponse, fetch_attachment_response},
    whatsapp::{DownloadMediaResponse, download_media_response},
};

use crate::error::{ClientError, Result};

/// Largest chunk sent in one gRPC message (the contracts' limit).
pub const CHUNK_BYTES: usize = 256 * 1024;

/// Bytes going into an upload; an `Err` aborts the upload.
pub type MediaBody = BoxStream<'static, std::io::Result<Bytes>>;

/// Bytes coming out of a download.
pub type MediaStream = BoxStream<'static, Result<Bytes>>;

/// A body from bytes in memory.
pub fn body_from(bytes: impl Into<Bytes>) -> MediaBody {
    let bytes: Bytes = bytes.into();
    futures::stream::once(async move { Ok(bytes) }).boxed()
}

/// Re-cuts a stream into pieces of at most `limit` bytes (joining small
/// pieces up to it), so no message exceeds the contracts' chunk limit.
pub fn rechunk<S, E>(stream: S, limit: usize) -> impl Stream<Item = Result<Bytes, E>> + Send
where
    S: Stream<Item = Result<Bytes, E>> + Send + Unpin + 'static,
    E: Send + 'static,
{
    let limit = limit.max(1);
    // State: the source, bytes not yet emitted, whether the source ended,
    // and an error to emit once the bytes before it are out.
    futures::stream::unfold(
        (stream, BytesMut::new(), false, None::<E>),
        move |(mut stream, mut pending, mut done, mut failed)| async move {
            loop {
                if pending.len() >= limit || ((done || failed.is_some()) && !pending.is_empty()) {
                    let take = pending.len().min(limit);
                    let piece = pending.split_to(take).freeze();
                    return Some((Ok(piece), (stream, pending, done, failed)));
                }
                if let Some(error) = failed.take() {
                    return Some((Err(error), (stream, pending, true, None)));
                }
                if done {
                    return None;
                }
                match stream.next().await {
                    Some(Ok(bytes)) => pending.extend_from_slice(&bytes),
                    Some(Err(e)) => failed = Some(e),
                    None => done = true,
                }
            }
        },
    )
}

/// Remembers the first error of a body that was being sent, so the call
/// can report it instead of the service's "fewer bytes than declared".
#[derive(Clone, Default)]
pub struct BodyError(Arc<Mutex<Option<std::io::Error>>>);

impl BodyError {
    /// The error the body ended with, if it did.
    pub fn take(&self) -> Option<std::io::Error> {
        self.0.lock().ok().and_then(|mut e| e.take())
    }

    /// The call's error: the body's own failure when there was one.
    pub fn or(
        &self,
        service: &'static str,
        method: &'static str,
        error: ClientError,
    ) -> ClientError {
        match self.take() {
            Some(source) => ClientError {
                service,
                method,
                code: tonic::Code::Aborted,
                message: format!("the media source failed: {source}"),
                detail: Some(Box::new(parley_proto::common::ErrorDetail::new(
                    parley_proto::common::ErrorReason::Unavailable,
                ))),
            },
            None => error,
        }
    }
}

/// The messages of an upload, as a named stream type (a bare boxed `dyn
/// Stream` trips a compiler limitation — "higher-ranked lifetime error" —
/// when tonic's client future must be `Send`).
pub struct Requests<R>(BoxStream<'static, R>);

impl<R> Stream for Requests<R> {
    type Item = R;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<R>> {
        self.0.as_mut().poll_next(cx)
    }
}

/// The request stream of an upload: `start`, then `body` in chunks of at
/// most [`CHUNK_BYTES`] wrapped by `chunk`. A body error ends the stream
/// (the service then refuses the short upload) and is kept in the
/// returned [`BodyError`].
pub fn upload_requests<R: Send + 'static>(
    start: R,
    body: MediaBody,
    chunk: fn(Bytes) -> R,
) -> (Requests<R>, BodyError) {
    let failure = BodyError::default();
    let seen = failure.clone();
    let chunks = rechunk(body, CHUNK_BYTES)
        .take_while(move |piece| {
            let keep = match piece {
                Ok(_) => true,
                Err(e) => {
                    if let Ok(mut slot) = seen.0.lock() {
                        *slot = Some(std::io::Error::new(e.kind(), e.to_string()));
                    }
                    false
                }
            };
            futures::future::ready(keep)
        })
        .filter_map(move |piece| futures::future::ready(piece.ok().map(chunk)));
    (
        Requests(
            futures::stream::once(async move { start })
                .chain(chunks)
                .boxed(),
        ),
        failure,
    )
}

/// One message of a header-then-chunks response.
pub enum Frame {
    /// The media's facts (first).
    Header(MediaHeader),
    /// The next bytes.
    Chunk(Bytes),
    /// An empty message.
    Empty,
}

/// A response message of a download RPC.
pub trait MediaFrame {
    /// What the message carries.
    fn into_frame(self) -> Frame;
}

impl MediaFrame for FetchAttachmentResponse {
    fn into_frame(self) -> Frame {
        match self.message {
            Some(fetch_attachment_response::Message::Header(h)) => Frame::Header(h),
            Some(fetch_attachment_response::Message::Chunk(c)) => Frame::Chunk(c),
            None => Frame::Empty,
        }
    }
}

impl MediaFrame for DownloadMediaResponse {
    fn into_frame(self) -> Frame {
        match self.message {
            Some(download_media_response::Message::Header(h)) => Frame::Header(h),
            Some(download_media_response::Message::Chunk(c)) => Frame::Chunk(c),
            None => Frame::Empty,
        }
    }
}

/// A download call's answer, split into its header and its bytes, every
/// status a typed error.
pub async fn split_download<F: MediaFrame + Send + 'static>(
    service: &'static str,
    method: &'static str,
    answer: std::result::Result<tonic::Response<tonic::Streaming<F>>, tonic::Status>,
) -> Result<(MediaHeader, MediaStream)> {
    let responses = answer
        .map_err(|s| ClientError::from_status(service, method, s))?
        .into_inner()
        .map(move |r| r.map_err(|s| ClientError::from_status(service, method, s)))
        .boxed();
    split_frames(service, method, responses).await
}

/// Splits a download's messages into the header and the bytes.
async fn split_frames<F: MediaFrame + Send + 'static>(
    service: &'static str,
    method: &'static str,
    mut responses: BoxStream<'static, Result<F>>,
) -> Result<(MediaHeader, MediaStream)> {
    let protocol = |message: &str| ClientError {
        service,
        method,
        code: tonic::Code::Internal,
        message: message.to_owned(),
        detail: None,
    };
    let header = match responses.next().await {
        Some(Ok(message)) => match message.into_frame() {
            Frame::Header(header) => header,
            _ => return Err(protocol("the stream did not start with a header")),
        },
        Some(Err(e)) => return Err(e),
        None => return Err(protocol("the stream ended before its header")),
    };
    let bytes = responses
        .filter_map(move |message| {
            futures::future::ready(match message {
                Ok(message) => match message.into_frame() {
                    Frame::Chunk(chunk) => Some(Ok(chunk)),
                    Frame::Header(_) => Some(Err(protocol("a second header"))),
                    Frame::Empty => None,
                },
                Err(e) => Some(Err(e)),
            })
        })
        .boxed();
    Ok((header, bytes))
}

/// Reads a whole media stream into memory, refusing more than `limit`
/// bytes.
pub async fn collect(mut stream: MediaStream, limit: usize) -> Result<Bytes> {
    let mut all = BytesMut::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        if all.len() + chunk.len() > limit {
            return Err(ClientError {
                service: "media",
                method: "collect",
                code: tonic::Code::ResourceExhausted,
                message: format!("media exceeds {limit} bytes"),
                detail: Some(Box::new(parley_proto::common::ErrorDetail::new(
                    parley_proto::common::ErrorReason::LimitExceeded,
                ))),
            });
        }
        all.extend_from_slice(&chunk);
    }
    Ok(all.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn rechunk_caps_and_joins_without_losing_bytes() {
        let pieces: Vec<std::io::Result<Bytes>> = vec![
            Ok(Bytes::from(vec![1u8; 10])),
            Ok(Bytes::from(vec![2u8; 700])),
            Ok(Bytes::from(vec![3u8; 5])),
        ];
        let out: Vec<Bytes> = rechunk(futures::stream::iter(pieces), 256)
            .map(|p| p.unwrap())
            .collect()
            .await;
        assert!(out.iter().all(|p| p.len() <= 256));
        assert_eq!(out.iter().map(Bytes::len).sum::<usize>(), 715);
        let joined: Vec<u8> = out.iter().flat_map(|p| p.to_vec()).collect();
        assert_eq!(&joined[..10], &[1u8; 10]);
        assert_eq!(&joined[710..], &[3u8; 5]);
    }

    #[tokio::test]
    async fn an_upload_body_error_ends_the_stream_and_is_kept() {
        let body: MediaBody = futures::stream::iter(vec![
            Ok(Bytes::from_static(b"abc")),
            Err(std::io::Error::other("download broke off")),
            Ok(Bytes::from_static(b"never")),
        ])
        .boxed();
        let (requests, failure) = upload_requests(Bytes::from_static(b"start"), body, |b| b);
        let sent: Vec<Bytes> = requests.collect().await;
        assert_eq!(
            sent,
            [Bytes::from_static(b"start"), Bytes::from_static(b"abc")]
        );
        assert!(failure.take().unwrap().to_string().contains("broke off"));
    }

    #[tokio::test]
    async fn downloads_split_into_header_and_bytes() {
        let responses: BoxStream<'static, Result<DownloadMediaResponse>> =
            futures::stream::iter(vec![
                Ok(DownloadMediaResponse {
                    message: Some(download_media_response::Message::Header(MediaHeader {
                        mime_type: "image/png".into(),
                        file_name: String::new(),
                        size_bytes: 4,
                    })),
                }),
                Ok(DownloadMediaResponse {
                    message: Some(download_media_response::Message::Chunk(Bytes::from_static(
                        b"ab",
                    ))),
                }),
                Ok(DownloadMediaResponse {
                    message: Some(download_media_response::Message::Chunk(Bytes::from_static(
                        b"cd",
                    ))),
                }),
            ])
            .boxed();
        let (header, bytes) = split_frames("whatsapp", "download_media", responses)
            .await
            .unwrap();
        assert_eq!(header.mime_type, "image/png");
        assert_eq!(
            collect(bytes, 10).await.unwrap(),
            Bytes::from_static(b"abcd")
        );
    }
}
