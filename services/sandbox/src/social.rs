//! AWS End User Messaging Social (Social Messaging API): `SendWhatsAppMessage`,
//! `PostWhatsAppMessageMedia` and `GetWhatsAppMessageMedia`, with media moved
//! through a real S3 (moto) bucket as the service does. Every message "sent"
//! is recorded for tests.

use std::sync::Arc;

use axum::{Json, Router, body::Bytes, extract::State, routing::post};
use base64::Engine as _;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::{
    aws::{Api, AwsError, AwsResult, parse_json},
    state::{Sandbox, WhatsAppMedia, new_id},
};

const API: Api = Api::Social;

/// The routes of this service.
pub fn routes() -> Router<Arc<Sandbox>> {
    Router::new()
        .route("/v1/whatsapp/send", post(send))
        .route("/v1/whatsapp/media", post(post_media))
        .route("/v1/whatsapp/media/get", post(get_media))
}

/// Whether `id` is a phone number id the API accepts: `phone-number-id-…`
/// or its ARN.
pub fn valid_origination(id: &str) -> bool {
    let hex = id.strip_prefix("phone-number-id-").or_else(|| {
        id.strip_prefix("arn:")
            .and_then(|rest| rest.rsplit_once(":phone-number-id/").map(|(_, h)| h))
    });
    hex.is_some_and(|h| !h.is_empty() && h.chars().all(|c| c.is_ascii_alphanumeric()))
}

fn origination(id: &str) -> AwsResult<()> {
    if valid_origination(id) {
        Ok(())
    } else {
        Err(AwsError::validation(
            API,
            format!("originationPhoneNumberId {id:?} must be phone-number-id-… or its ARN"),
        ))
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Send {
    origination_phone_number_id: String,
    meta_api_version: String,
    message: String,
}

/// Meta's Cloud API rules for the message kinds Parley sends.
fn check_message(message: &Value) -> AwsResult<()> {
    let invalid = |why: &str| {
        Err(AwsError::validation(
            API,
            format!("message rejected by Meta: {why}"),
        ))
    };
    if message.get("messaging_product").and_then(Value::as_str) != Some("whatsapp") {
        return invalid("messaging_product must be whatsapp");
    }
    if message.get("status").and_then(Value::as_str) == Some("read") {
        return match message.get("message_id").and_then(Value::as_str) {
            Some(id) if !id.is_empty() => Ok(()),
            _ => invalid("a read receipt needs message_id"),
        };
    }
    let to = message
        .get("to")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let recipient = message
        .get("recipient")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let phone = !to.trim_start_matches('+').is_empty()
        && to
            .trim_start_matches('+')
            .chars()
            .all(|c| c.is_ascii_digit());
    // A business-scoped user id goes in `recipient` (`to` wins when both).
    let user_id = recipient.len() > 3 && recipient.as_bytes()[2] == b'.';
    if !phone && !user_id {
        return invalid("to must be a phone number (or recipient a business-scoped user id)");
    }
    let kind = message
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("text");
    let body = message.get(kind);
    match kind {
        "text" => match body.and_then(|b| b.get("body")).and_then(Value::as_str) {
            Some(text) if !text.is_empty() && text.chars().count() <= 4_096 => Ok(()),
            _ => invalid("text.body must be 1 to 4096 characters"),
        },
        "reaction" => match body
            .and_then(|b| b.get("message_id"))
            .and_then(Value::as_str)
        {
            Some(id) if !id.is_empty() => Ok(()),
            _ => invalid("reaction.message_id is required"),
        },
        "image" | "video" | "audio" | "document" | "sticker" => {
            if body
                .and_then(|b| b.get("id").or_else(|| b.get("link")))
                .is_some()
            {
                Ok(())
            } else {
                invalid("media needs an id or a link")
            }
        }
        "interactive" | "template" => {
            if body.is_some() {
                Ok(())
            } else {
                invalid("missing payload")
            }
        }
        other => invalid(&format!("unsupported type {other}")),
    }
}

async fn send(State(sandbox): State<Arc<Sandbox>>, body: Bytes) -> AwsResult<Json<Value>> {
    sandbox.enter(API, "SendWhatsAppMessage")?;
    let request: Send = parse_json(API, &body)?;
    origination(&request.origination_phone_number_id)?;
    if request.meta_api_version.is_empty() {
        return Err(AwsError::validation(API, "metaApiVersion is required"));
    }
    let bytes = base64_decode(&request.message)
        .ok_or_else(|| AwsError::validation(API, "message is not base64"))?;
    if bytes.len() > 2_048_000 {
        return Err(AwsError::validation(API, "message exceeds 2,048,000 bytes"));
    }
    let message: Value = serde_json::from_slice(&bytes)
        .map_err(|e| AwsError::validation(API, format!("message is not JSON: {e}")))?;
    check_message(&message)?;
    if let Some(id) = message
        .pointer("/image/id")
        .or_else(|| message.pointer("/audio/id"))
        .or_else(|| message.pointer("/document/id"))
        .or_else(|| message.pointer("/video/id"))
        .or_else(|| message.pointer("/sticker/id"))
        .and_then(Value::as_str)
        && sandbox.whatsapp_media(id).is_none()
    {
        return Err(AwsError::validation(
            API,
            format!("media {id} was never uploaded"),
        ));
    }
    let message_id = format!("wamid.sandbox.{}", new_id());
    sandbox.record_whatsapp(&request.origination_phone_number_id, &message_id, message);
    Ok(Json(json!({ "messageId": message_id })))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct S3File {
    bucket_name: String,
    key: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PostMedia {
    origination_phone_number_id: String,
    source_s3_file: Option<S3File>,
}

async fn post_media(State(sandbox): State<Arc<Sandbox>>, body: Bytes) -> AwsResult<Json<Value>> {
    sandbox.enter(API, "PostWhatsAppMessageMedia")?;
    let request: PostMedia = parse_json(API, &body)?;
    origination(&request.origination_phone_number_id)?;
    let file = request.source_s3_file.ok_or_else(|| {
        AwsError::validation(
            API,
            "sourceS3File is required (the sandbox does not fetch presigned URLs)",
        )
    })?;
    let (mime_type, bytes) = sandbox.read_object(&file.bucket_name, &file.key).await?;
    let media_id = new_id().replace('-', "");
    sandbox.add_whatsapp_media(WhatsAppMedia {
        id: media_id.clone(),
        mime_type,
        bytes,
    });
    Ok(Json(json!({ "mediaId": media_id })))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct GetMedia {
    media_id: String,
    origination_phone_number_id: String,
    destination_s3_file: Option<S3File>,
    #[serde(default)]
    metadata_only: bool,
}

async fn get_media(State(sandbox): State<Arc<Sandbox>>, body: Bytes) -> AwsResult<Json<Value>> {
    sandbox.enter(API, "GetWhatsAppMessageMedia")?;
    let request: GetMedia = parse_json(API, &body)?;
    origination(&request.origination_phone_number_id)?;
    let media = sandbox
        .whatsapp_media(&request.media_id)
        .ok_or_else(|| AwsError::not_found(API, format!("media {} not found", request.media_id)))?;
    if !request.metadata_only {
        let file = request
            .destination_s3_file
            .ok_or_else(|| AwsError::validation(API, "destinationS3File is required"))?;
        // EUM names the object <key><mediaId>.<extension>.
        let extension = media
            .mime_type
            .split(['/', ';'])
            .nth(1)
            .unwrap_or("bin")
            .trim()
            .to_owned();
        sandbox
            .write_object(
                &file.bucket_name,
                &format!("{}{}.{extension}", file.key, media.id),
                &media.mime_type,
                media.bytes.clone(),
            )
            .await?;
    }
    Ok(Json(json!({
        "mimeType": media.mime_type,
        // The API reports the size in kilobytes, rounded up.
        "fileSize": (media.bytes.len() as u64).div_ceil(1024),
    })))
}

impl Sandbox {
    /// Reads an object from the media bucket: moto's S3 when configured,
    /// else the sandbox's own.
    pub async fn read_object(&self, bucket: &str, key: &str) -> AwsResult<(String, Vec<u8>)> {
        let Some(s3) = self.s3() else {
            return self
                .buckets
                .get(bucket, key)
                .map(|o| (o.content_type, o.bytes.to_vec()))
                .ok_or_else(|| {
                    AwsError::validation(API, format!("cannot read s3://{bucket}/{key}"))
                });
        };
        let object = s3
            .get_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| {
                AwsError::validation(API, format!("cannot read s3://{bucket}/{key}: {e}"))
            })?;
        let mime_type = object
            .content_type()
            .unwrap_or("application/octet-stream")
            .to_owned();
        let bytes = object
            .body
            .collect()
            .await
            .map_err(|e| AwsError::validation(API, format!("cannot read the object: {e}")))?
            .into_bytes()
            .to_vec();
        Ok((mime_type, bytes))
    }

    /// Writes an object to the media bucket (moto's or the sandbox's own).
    pub async fn write_object(
        &self,
        bucket: &str,
        key: &str,
        mime_type: &str,
        bytes: Vec<u8>,
    ) -> AwsResult<()> {
        let Some(s3) = self.s3() else {
            self.buckets.put(bucket, key, bytes.into(), mime_type);
            return Ok(());
        };
        s3.put_object()
            .bucket(bucket)
            .key(key)
            .content_type(mime_type)
            .body(bytes.into())
            .send()
            .await
            .map_err(|e| {
                AwsError::validation(API, format!("cannot write s3://{bucket}/{key}: {e}"))
            })?;
        Ok(())
    }
}

/// Decodes standard or URL-safe base64 (padding optional).
pub fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let clean: String = text
        .chars()
        .filter(|c| !c.is_ascii_whitespace() && *c != '=')
        .map(|c| match c {
            '-' => '+',
            '_' => '/',
            c => c,
        })
        .collect();
    base64::engine::general_purpose::STANDARD_NO_PAD
        .decode(clean)
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origination_ids() {
        assert!(valid_origination("phone-number-id-0123abcd"));
        assert!(valid_origination(
            "arn:aws:social-messaging:us-east-1:123456789012:phone-number-id/0123abcd"
        ));
        assert!(!valid_origination("503650672828631"));
        assert!(!valid_origination("phone-number-id-"));
    }

    #[test]
    fn base64_round_trip() {
        assert_eq!(base64_decode("aGVsbG8=").unwrap(), b"hello");
        assert_eq!(base64_decode("aGk").unwrap(), b"hi");
        assert!(base64_decode("!!!").is_none());
    }
}
