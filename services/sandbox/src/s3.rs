//! A small S3 for local runs without moto: path-style buckets and objects
//! in memory — CreateBucket, PutObject (plain or `aws-chunked` bodies),
//! GetObject, HeadObject, DeleteObject and ListObjectsV2 — answered in
//! S3's REST-XML so `aws-sdk-s3` reaches it by endpoint override. Enough
//! for WhatsApp media to move through a bucket as it does with EUM.
//!
//! Paths no other route claims come here, so it is mounted as the
//! router's fallback; anything that is not an S3 request gets an AWS-style
//! "unknown operation" error instead of a bare 404.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{Arc, Mutex},
};

use axum::{
    body::Bytes,
    extract::{Request, State},
    http::{HeaderMap, Method, StatusCode},
    response::{IntoResponse, Response},
};

use crate::state::{Sandbox, now_ms};

/// One stored object.
#[derive(Debug, Clone)]
pub struct Object {
    /// The bytes.
    pub bytes: Bytes,
    /// Its content type.
    pub content_type: String,
    /// When it was written.
    pub modified_ms: i64,
}

/// Buckets and their objects.
#[derive(Default)]
pub struct Buckets {
    buckets: Mutex<HashMap<String, BTreeMap<String, Object>>>,
}

impl Buckets {
    /// Stores an object (creating the bucket: the sandbox is forgiving).
    pub fn put(&self, bucket: &str, key: &str, bytes: Bytes, content_type: &str) {
        self.buckets
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(bucket.to_owned())
            .or_default()
            .insert(
                key.to_owned(),
                Object {
                    bytes,
                    content_type: content_type.to_owned(),
                    modified_ms: now_ms(),
                },
            );
    }

    /// An object.
    pub fn get(&self, bucket: &str, key: &str) -> Option<Object> {
        self.buckets
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(bucket)?
            .get(key)
            .cloned()
    }

    fn delete(&self, bucket: &str, key: &str) {
        if let Some(objects) = self
            .buckets
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_mut(bucket)
        {
            objects.remove(key);
        }
    }

    fn create(&self, bucket: &str) {
        self.buckets
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(bucket.to_owned())
            .or_default();
    }

    fn exists(&self, bucket: &str) -> bool {
        self.buckets
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains_key(bucket)
    }

    fn list(&self, bucket: &str, prefix: &str) -> Vec<(String, Object)> {
        self.buckets
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(bucket)
            .map(|objects| {
                objects
                    .range(prefix.to_owned()..)
                    .take_while(|(k, _)| k.starts_with(prefix))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// Decodes an `aws-chunked` body (`<hex size>[;chunk-signature=…]\r\n<data>\r\n`
/// … `0\r\n<trailers>\r\n\r\n`), as SDKs send streaming uploads.
pub fn decode_aws_chunked(body: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(body.len());
    let mut rest = body;
    loop {
        let line_end = rest.windows(2).position(|w| w == b"\r\n")?;
        let line = std::str::from_utf8(&rest[..line_end]).ok()?;
        let size = usize::from_str_radix(line.split(';').next()?.trim(), 16).ok()?;
        rest = &rest[line_end + 2..];
        if size == 0 {
            return Some(out);
        }
        if rest.len() < size + 2 {
            return None;
        }
        out.extend_from_slice(&rest[..size]);
        rest = &rest[size + 2..];
    }
}

fn xml_error(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        [("content-type", "application/xml")],
        format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>{code}</Code><Message>{message}</Message><RequestId>{}</RequestId></Error>",
            crate::state::new_id()
        ),
    )
        .into_response()
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The router's fallback: S3 for bucket paths, an AWS error otherwise.
pub async fn fallback(State(sandbox): State<Arc<Sandbox>>, request: Request) -> Response {
    let method = request.method().clone();
    let uri = request.uri().clone();
    let headers: HeaderMap = request.headers().clone();
    let path = uri.path().trim_start_matches('/').to_owned();
    let query: HashMap<String, String> = uri
        .query()
        .map(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .into_owned()
                .collect()
        })
        .unwrap_or_default();
    let Some((bucket, key)) = split(&path) else {
        return unknown(&method, uri.path());
    };
    let bucket = bucket.to_owned();
    let key = percent_decode(key);
    let buckets = &sandbox.buckets;
    match (method, key.is_empty()) {
        (Method::PUT, true) => {
            buckets.create(&bucket);
            StatusCode::OK.into_response()
        }
        (Method::GET, true) if query.get("list-type").map(String::as_str) == Some("2") => {
            if !buckets.exists(&bucket) {
                return xml_error(
                    StatusCode::NOT_FOUND,
                    "NoSuchBucket",
                    "The specified bucket does not exist",
                );
            }
            let prefix = query.get("prefix").cloned().unwrap_or_default();
            let objects = buckets.list(&bucket, &prefix);
            let contents: String = objects
                .iter()
                .map(|(key, object)| {
                    format!(
                        "<Contents><Key>{}</Key><LastModified>{}</LastModified><ETag>&quot;{}&quot;</ETag><Size>{}</Size><StorageClass>STANDARD</StorageClass></Contents>",
                        escape(key),
                        crate::aws::iso8601(object.modified_ms),
                        object.bytes.len(),
                        object.bytes.len()
                    )
                })
                .collect();
            (
                [("content-type", "application/xml")],
                format!(
                    "<?xml version=\"1.0\" encoding=\"UTF-8\"?><ListBucketResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Name>{}</Name><Prefix>{}</Prefix><KeyCount>{}</KeyCount><MaxKeys>1000</MaxKeys><IsTruncated>false</IsTruncated>{contents}</ListBucketResult>",
                    escape(&bucket),
                    escape(&prefix),
                    objects.len()
                ),
            )
                .into_response()
        }
        (Method::PUT, false) => {
            let chunked = headers
                .get("content-encoding")
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.contains("aws-chunked"))
                || headers
                    .get("x-amz-content-sha256")
                    .and_then(|v| v.to_str().ok())
                    .is_some_and(|v| v.starts_with("STREAMING-"));
            let content_type = headers
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("binary/octet-stream")
                .to_owned();
            let Ok(body) = axum::body::to_bytes(request.into_body(), 64 << 20).await else {
                return xml_error(
                    StatusCode::BAD_REQUEST,
                    "IncompleteBody",
                    "the body could not be read",
                );
            };
            let bytes = if chunked {
                match decode_aws_chunked(&body) {
                    Some(decoded) => Bytes::from(decoded),
                    None => {
                        return xml_error(
                            StatusCode::BAD_REQUEST,
                            "InvalidRequest",
                            "malformed aws-chunked body",
                        );
                    }
                }
            } else {
                body
            };
            buckets.put(&bucket, &key, bytes.clone(), &content_type);
            ([("etag", format!("\"{}\"", bytes.len()))], StatusCode::OK).into_response()
        }
        (method @ (Method::GET | Method::HEAD), false) => match buckets.get(&bucket, &key) {
            Some(object) => {
                let headers = [
                    ("content-type", object.content_type.clone()),
                    ("content-length", object.bytes.len().to_string()),
                    ("etag", format!("\"{}\"", object.bytes.len())),
                    (
                        "last-modified",
                        httpdate::fmt_http_date(
                            std::time::UNIX_EPOCH
                                + std::time::Duration::from_millis(object.modified_ms as u64),
                        ),
                    ),
                ];
                if method == Method::HEAD {
                    (headers, ()).into_response()
                } else {
                    (headers, object.bytes).into_response()
                }
            }
            None => xml_error(
                StatusCode::NOT_FOUND,
                "NoSuchKey",
                "The specified key does not exist.",
            ),
        },
        (Method::DELETE, false) => {
            buckets.delete(&bucket, &key);
            StatusCode::NO_CONTENT.into_response()
        }
        (method, _) => unknown(&method, uri.path()),
    }
}

/// `bucket/key…` → (bucket, key); `None` for an empty path.
fn split(path: &str) -> Option<(&str, &str)> {
    if path.is_empty() {
        return None;
    }
    Some(path.split_once('/').unwrap_or((path, "")))
}

fn percent_decode(text: &str) -> String {
    url::form_urlencoded::parse(format!("k={}", text.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

fn unknown(method: &Method, path: &str) -> Response {
    crate::aws::AwsError::new(
        crate::aws::Api::Connect,
        StatusCode::NOT_FOUND,
        "UnknownOperationException",
        format!("the sandbox does not emulate {method} {path}"),
    )
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aws_chunked_bodies_decode() {
        let body = b"5;chunk-signature=abc\r\nhello\r\n6\r\n world\r\n0\r\nx-amz-checksum-crc32:AAAA\r\n\r\n";
        assert_eq!(decode_aws_chunked(body).unwrap(), b"hello world");
        assert!(decode_aws_chunked(b"zz\r\n").is_none());
        assert!(decode_aws_chunked(b"5\r\nhel").is_none());
    }

    #[test]
    fn keys_keep_their_slashes_and_decode() {
        assert_eq!(split("bucket/a/b.ogg"), Some(("bucket", "a/b.ogg")));
        assert_eq!(split("bucket"), Some(("bucket", "")));
        assert_eq!(percent_decode("a%20b/c"), "a b/c");
    }
}
