//! Meta Cloud API webhooks, for users who point Meta at Parley directly:
//! the verification handshake (`hub.mode=subscribe`, `hub.verify_token`,
//! echo `hub.challenge`) and the `X-Hub-Signature-256` header — an
//! HMAC-SHA256 of the raw body with the app secret, compared in constant
//! time (the `hmac` crate's `verify_slice`).

use hmac::{Hmac, Mac as _};
use sha2::Sha256;

/// Whether `header` (`sha256=<hex>`) signs `body` with `app_secret`.
pub fn signature_valid(app_secret: &str, body: &[u8], header: &str) -> bool {
    let Some(hex_digest) = header.trim().strip_prefix("sha256=") else {
        return false;
    };
    let Ok(expected) = hex::decode(hex_digest) else {
        return false;
    };
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(app_secret.as_bytes()) else {
        return false;
    };
    mac.update(body);
    mac.verify_slice(&expected).is_ok()
}

/// The signature header Meta would send for `body` (tests and tools).
pub fn sign(app_secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(app_secret.as_bytes()).expect("any key length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// The answer to Meta's verification request: the challenge when the mode
/// and token match, else `None` (403).
pub fn challenge<'a>(
    verify_token: Option<&str>,
    mode: Option<&str>,
    token: Option<&str>,
    challenge: Option<&'a str>,
) -> Option<&'a str> {
    let expected = verify_token.filter(|t| !t.is_empty())?;
    (mode == Some("subscribe") && token == Some(expected))
        .then_some(challenge)
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_are_checked_over_the_raw_body() {
        let body = br#"{"object":"whatsapp_business_account","entry":[]}"#;
        let header = sign("app-secret", body);
        assert!(signature_valid("app-secret", body, &header));
        assert!(!signature_valid("other-secret", body, &header));
        assert!(!signature_valid("app-secret", b"{}", &header));
        assert!(!signature_valid("app-secret", body, "sha1=abc"));
        assert!(!signature_valid("app-secret", body, "sha256=zz"));
        assert!(!signature_valid("app-secret", body, ""));
        // A known vector: HMAC-SHA256(key = "key", "The quick brown fox jumps over the lazy dog").
        assert!(signature_valid(
            "key",
            b"The quick brown fox jumps over the lazy dog",
            "sha256=f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8"
        ));
    }

    #[test]
    fn the_handshake_needs_the_configured_token() {
        assert_eq!(
            challenge(Some("t"), Some("subscribe"), Some("t"), Some("123")),
            Some("123")
        );
        assert_eq!(
            challenge(Some("t"), Some("subscribe"), Some("x"), Some("123")),
            None
        );
        assert_eq!(
            challenge(None, Some("subscribe"), Some(""), Some("123")),
            None
        );
        assert_eq!(
            challenge(Some("t"), Some("unsubscribe"), Some("t"), Some("123")),
            None
        );
    }
}
