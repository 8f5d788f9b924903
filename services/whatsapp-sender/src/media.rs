//! WhatsApp's media rules: which MIME types each kind accepts and how big
//! they may be (per AWS End User Messaging Social's supported media types).

use crate::error::{Result, SenderError};

const MB: u64 = 1024 * 1024;

/// The largest media of `mime_type` WhatsApp accepts, or `None` when it
/// accepts no such type.
pub fn size_limit(mime_type: &str) -> Option<u64> {
    let base = mime_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    Some(match base.as_str() {
        "image/jpeg" | "image/png" => 5 * MB,
        "audio/aac" | "audio/amr" | "audio/mpeg" | "audio/mp4" => 16 * MB,
        // OGG audio must be Opus.
        "audio/ogg"
            if mime_type.to_ascii_lowercase().contains("opus") || !mime_type.contains(';') =>
        {
            16 * MB
        }
        "video/mp4" | "video/3gpp" | "video/3gp" => 16 * MB,
        "image/webp" => 500 * 1024,
        "text/plain"
        | "application/pdf"
        | "application/vnd.ms-excel"
        | "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
        | "application/msword"
        | "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
        | "application/vnd.ms-powerpoint"
        | "application/vnd.openxmlformats-officedocument.presentationml.presentation" => 100 * MB,
        _ => return None,
    })
}

/// Checks media against WhatsApp's limits before anything is uploaded.
pub fn check(mime_type: &str, size: u64) -> Result<()> {
    let Some(limit) = size_limit(mime_type) else {
        return Err(SenderError::invalid_media(format!(
            "WhatsApp does not accept {mime_type:?} media (images: jpeg/png; audio: aac/amr/mpeg/mp4/ogg-opus; video: mp4/3gpp; stickers: webp; documents: pdf, text, office)"
        )));
    };
    if size == 0 {
        return Err(SenderError::invalid_media(
            "media size must be declared and non-zero",
        ));
    }
    if size > limit {
        return Err(SenderError::invalid_media(format!(
            "{mime_type} media of {size} bytes exceeds WhatsApp's {limit}-byte limit"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_follow_whatsapp() {
        assert_eq!(size_limit("image/jpeg"), Some(5 * MB));
        assert_eq!(size_limit("audio/ogg; codecs=opus"), Some(16 * MB));
        assert_eq!(size_limit("audio/ogg; codecs=vorbis"), None);
        assert_eq!(size_limit("application/pdf"), Some(100 * MB));
        assert_eq!(size_limit("audio/wav"), None);
        assert!(check("image/png", 6 * MB).is_err());
        assert!(check("image/png", MB).is_ok());
        assert!(check("image/heic", 10).is_err());
    }
}
