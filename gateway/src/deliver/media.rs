//! Attachments both ways, streamed: a customer's picture, video, document
//! or sticker is downloaded from WhatsApp and attached to the Connect chat;
//! an agent's approved attachment is fetched from Connect and sent to
//! WhatsApp — audio WhatsApp refuses (a `.wav`) transcoded to an OGG/Opus
//! voice note first. What one side refuses is told to the agent, never
//! dropped silently.

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use parley_client::{
    ClientError,
    media::{self, MediaBody, MediaStream},
};
use parley_proto::{
    common::{ErrorReason, MediaHeader},
    connect::{AttachmentStart, FetchAttachmentRequest},
    transcoder::{
        AudioFormat, ConvertStart, OutputSpec, convert_stream_response::Message as ConvertMessage,
    },
    whatsapp::{DownloadMediaRequest, MediaKind as WaKind, UploadMediaStart},
};

use crate::{keys, model::MediaKind, services::Services};

/// Largest sticker converted (WhatsApp's sticker limit is 500 KB).
const MAX_STICKER_BYTES: usize = 1 << 20;
/// Largest agent audio transcoded to a voice note (WhatsApp's audio limit).
const MAX_VOICE_NOTE_BYTES: usize = 16 << 20;

/// What happened to one attachment.
#[derive(Debug)]
pub enum Attached {
    /// Sent: the ids the receiving side gave it.
    Sent(Vec<String>),
    /// Refused for good: why, for the agent.
    Refused(String),
}

/// Turns a body stream of client results into an upload body.
pub fn upload_body(stream: MediaStream) -> MediaBody {
    stream
        .map_err(|e| std::io::Error::other(e.to_string()))
        .boxed()
}

/// Whether an error means "this file will never go", as opposed to "try
/// again later".
fn refused(error: &ClientError) -> bool {
    matches!(
        error.reason(),
        ErrorReason::InvalidMedia | ErrorReason::LimitExceeded | ErrorReason::NotFound
    ) || (!error.is_retryable() && error.is(ErrorReason::InvalidRequest))
}

/// Adds the extension of `mime_type` when `name` has none (Connect decides
/// by extension).
pub fn with_extension(name: &str, mime_type: &str) -> String {
    if name
        .rsplit_once('.')
        .is_some_and(|(stem, ext)| !stem.is_empty() && !ext.is_empty())
    {
        name.to_owned()
    } else {
        format!("{name}.{}", crate::render::to_agent::extension(mime_type))
    }
}

/// A WebP sticker as PNG (Connect does not take WebP). Animated stickers
/// keep their first frame.
pub fn webp_to_png(webp: &[u8]) -> Result<Vec<u8>, String> {
    let image = image::load_from_memory_with_format(webp, image::ImageFormat::WebP)
        .map_err(|e| format!("the sticker is not a readable WebP image: {e}"))?;
    let mut png = std::io::Cursor::new(Vec::new());
    image
        .write_to(&mut png, image::ImageFormat::Png)
        .map_err(|e| format!("the sticker could not be converted to PNG: {e}"))?;
    Ok(png.into_inner())
}

/// Downloads a customer's media and attaches it to the chat on
/// `connection_token`. A refused file is [`Attached::Refused`]; a
/// transient failure is an `Err` for the caller to retry.
#[allow(clippy::too_many_arguments)]
pub async fn to_agent(
    services: &Services,
    connection_token: String,
    business: &str,
    wamid: &str,
    kind: MediaKind,
    media_id: &str,
    mime_type: &str,
    file_name: &str,
    contact_id: &str,
) -> Result<Attached, ClientError> {
    let download = services
        .whatsapp
        .download_media(DownloadMediaRequest {
            business_number_id: business.to_owned(),
            media_id: media_id.to_owned(),
        })
        .await;
    let (header, bytes) = match download {
        Ok(found) => found,
        Err(error) if refused(&error) => {
            return Ok(Attached::Refused(format!(
                "the {} could not be downloaded from WhatsApp ({:?})",
                kind.as_str(),
                error.reason()
            )));
        }
        Err(error) => return Err(error),
    };
    let mime = if header.mime_type.is_empty() {
        mime_type.to_owned()
    } else {
        header.mime_type.clone()
    };
    let essence = mime
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    let (media, body) = if essence == "image/webp" {
        let webp = media::collect(bytes, MAX_STICKER_BYTES).await?;
        match webp_to_png(&webp) {
            Ok(png) => (
                MediaHeader {
                    mime_type: "image/png".into(),
                    file_name: format!(
                        "{}.png",
                        file_name
                            .rsplit_once('.')
                            .map_or(file_name, |(stem, _)| stem)
                    ),
                    size_bytes: png.len() as u64,
                },
                media::body_from(png),
            ),
            Err(reason) => return Ok(Attached::Refused(reason)),
        }
    } else {
        (
            MediaHeader {
                mime_type: essence.clone(),
                file_name: with_extension(file_name, &essence),
                size_bytes: header.size_bytes,
            },
            upload_body(bytes),
        )
    };
    let sent = services
        .connect
        .send_attachment(
            AttachmentStart {
                connection_token,
                media: Some(media),
                client_token: keys::key([contact_id, wamid, "attachment"]),
            },
            body,
        )
        .await;
    match sent {
        Ok(sent) => Ok(Attached::Sent(vec![sent.attachment_id])),
        Err(error) if refused(&error) => Ok(Attached::Refused(format!(
            "Connect did not accept the {} ({}): {}",
            kind.as_str(),
            essence,
            error.message
        ))),
        Err(error) => Err(error),
    }
}

/// How an agent's file goes to WhatsApp.
fn whatsapp_kind(mime: &str) -> WaKind {
    match mime {
        "image/jpeg" | "image/png" => WaKind::Image,
        "video/mp4" | "video/3gpp" => WaKind::Video,
        "audio/ogg" | "audio/mpeg" | "audio/mp4" | "audio/aac" | "audio/amr" => WaKind::Audio,
        _ => WaKind::Document,
    }
}

/// Whether agent audio must become a voice note first (WhatsApp does not
/// take WAV).
fn needs_voice_note(mime: &str) -> bool {
    matches!(
        mime,
        "audio/wav" | "audio/x-wav" | "audio/wave" | "audio/vnd.wave"
    )
}

/// An agent's file fetched from Connect and uploaded to WhatsApp: the
/// media id and the kind to send it as.
pub async fn to_customer(
    services: &Services,
    connection_token: String,
    business: &str,
    attachment_id: &str,
    file_name: &str,
) -> Result<Result<(String, WaKind, String), String>, ClientError> {
    let fetched = services
        .connect
        .fetch_attachment(FetchAttachmentRequest {
            connection_token,
            attachment_id: attachment_id.to_owned(),
            file_name: file_name.to_owned(),
        })
        .await;
    let (header, bytes) = match fetched {
        Ok(found) => found,
        Err(error) if refused(&error) => {
            return Ok(Err(format!(
                "the attachment could not be fetched from Connect ({:?})",
                error.reason()
            )));
        }
        Err(error) => return Err(error),
    };
    let mime = header
        .mime_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    let (media, body, kind) = if needs_voice_note(&mime) {
        let ogg = match to_voice_note(services, header.size_bytes, upload_body(bytes)).await {
            Ok(ogg) => ogg,
            Err(error) if refused(&error) => {
                return Ok(Err(format!(
                    "the audio could not be converted to a voice note: {}",
                    error.message
                )));
            }
            Err(error) => return Err(error),
        };
        let stem = file_name
            .rsplit_once('.')
            .map_or(file_name, |(stem, _)| stem);
        (
            MediaHeader {
                mime_type: "audio/ogg".into(),
                file_name: format!("{stem}.ogg"),
                size_bytes: ogg.len() as u64,
            },
            media::body_from(ogg),
            WaKind::Voice,
        )
    } else {
        (
            MediaHeader {
                mime_type: mime.clone(),
                file_name: file_name.to_owned(),
                size_bytes: header.size_bytes,
            },
            upload_body(bytes),
            whatsapp_kind(&mime),
        )
    };
    let name = media.file_name.clone();
    match services
        .whatsapp
        .upload_media(
            UploadMediaStart {
                business_number_id: business.to_owned(),
                media: Some(media),
            },
            body,
        )
        .await
    {
        Ok(media_id) => Ok(Ok((media_id, kind, name))),
        Err(error) if refused(&error) => Ok(Err(format!(
            "WhatsApp did not accept the file ({mime}): {}",
            error.message
        ))),
        Err(error) => Err(error),
    }
}

/// Agent audio → OGG/Opus in memory (voice notes are small; WhatsApp
/// needs the exact size up front).
async fn to_voice_note(
    services: &Services,
    input_size: u64,
    input: MediaBody,
) -> Result<Bytes, ClientError> {
    let mut output = services
        .transcoder
        .convert_stream(
            ConvertStart {
                input: None,
                output: Some(OutputSpec {
                    format: AudioFormat::OggOpus as i32,
                    sample_rate_hz: 48_000,
                    bitrate_bps: 24_000,
                }),
                input_size_bytes: input_size,
                exact_size_header: false,
            },
            input,
        )
        .await?;
    let mut ogg = bytes::BytesMut::new();
    while let Some(message) = output.next().await {
        if let Some(ConvertMessage::Chunk(chunk)) = message?.message {
            if ogg.len() + chunk.len() > MAX_VOICE_NOTE_BYTES {
                return Err(ClientError {
                    service: "transcoder",
                    method: "convert_stream",
                    code: tonic::Code::ResourceExhausted,
                    message: format!(
                        "the voice note would exceed WhatsApp's {MAX_VOICE_NOTE_BYTES}-byte audio limit"
                    ),
                    detail: Some(Box::new(parley_proto::common::ErrorDetail::new(
                        ErrorReason::LimitExceeded,
                    ))),
                });
            }
            ogg.extend_from_slice(&chunk);
        }
    }
    Ok(ogg.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_get_the_extension_connect_decides_by() {
        assert_eq!(
            with_extension("report.pdf", "application/pdf"),
            "report.pdf"
        );
        assert_eq!(with_extension("report", "application/pdf"), "report.pdf");
        assert_eq!(with_extension(".hidden", "text/plain"), ".hidden.txt");
    }

    #[test]
    fn webp_stickers_become_png() {
        // A 2×2 WebP encoded by the image crate itself (lossless).
        let pixels = image::RgbaImage::from_pixel(2, 2, image::Rgba([200, 10, 10, 255]));
        let mut webp = std::io::Cursor::new(Vec::new());
        image::DynamicImage::ImageRgba8(pixels)
            .write_to(&mut webp, image::ImageFormat::WebP)
            .unwrap();
        let png = webp_to_png(webp.get_ref()).unwrap();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        let back = image::load_from_memory(&png).unwrap().to_rgba8();
        assert_eq!(back.get_pixel(1, 1).0, [200, 10, 10, 255]);
        assert!(webp_to_png(b"not a webp").is_err());
    }

    #[test]
    fn agent_files_map_to_whatsapp_kinds() {
        assert_eq!(whatsapp_kind("image/png"), WaKind::Image);
        assert_eq!(whatsapp_kind("application/pdf"), WaKind::Document);
        assert!(needs_voice_note("audio/wav"));
        assert!(!needs_voice_note("audio/ogg"));
    }
}
