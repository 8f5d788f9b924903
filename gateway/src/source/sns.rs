//! SNS message signatures, as AWS documents them: the string to sign is
//! built from the message's fields, signed with SHA1withRSA (version 1) or
//! SHA256withRSA (version 2) by the key in the certificate at
//! `SigningCertURL` — which is fetched only over HTTPS from an SNS host
//! (`sns.<region>.amazonaws.com[.cn]`), or from one origin trusted
//! explicitly for local runs, and cached.
//!
//! The sandbox's SNS signer is a separate implementation on purpose: the
//! two sides of the protocol are checked against each other, not against
//! a shared helper.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use base64::Engine as _;
use rsa::{RsaPublicKey, pkcs1v15::VerifyingKey, signature::Verifier as _};
use serde_json::Value;
use x509_cert::{Certificate, der::DecodePem as _, der::Encode as _};

/// Why a message was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SnsError {
    /// Not an SNS message at all.
    #[error("not an SNS message: {0}")]
    Malformed(String),
    /// The certificate URL is not one SNS uses (nor the trusted origin).
    #[error("signing certificate URL refused: {0}")]
    UntrustedCertificate(String),
    /// The certificate could not be fetched or read.
    #[error("signing certificate unavailable: {0}")]
    Certificate(String),
    /// The signature does not verify.
    #[error("the signature does not match the message")]
    BadSignature,
    /// A topic not on the allowed list.
    #[error("topic {0} is not accepted here")]
    Topic(String),
}

/// The fields of a verified SNS message the source acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// `Notification`, `SubscriptionConfirmation` or `UnsubscribeConfirmation`.
    pub kind: String,
    /// The topic.
    pub topic_arn: String,
    /// The SNS message id.
    pub message_id: String,
    /// For confirmations: where to confirm.
    pub subscribe_url: String,
    /// When SNS published it, epoch ms (0 if unreadable).
    pub timestamp_ms: i64,
}

/// The string SNS signs, per message type.
pub fn string_to_sign(message: &Value) -> Result<String, SnsError> {
    let kind = field(message, "Type")?;
    let names: &[&str] = match kind {
        "Notification" => &[
            "Message",
            "MessageId",
            "Subject",
            "Timestamp",
            "TopicArn",
            "Type",
        ],
        "SubscriptionConfirmation" | "UnsubscribeConfirmation" => &[
            "Message",
            "MessageId",
            "SubscribeURL",
            "Timestamp",
            "Token",
            "TopicArn",
            "Type",
        ],
        other => return Err(SnsError::Malformed(format!("unknown Type {other:?}"))),
    };
    let mut text = String::new();
    for name in names {
        match message.get(*name) {
            Some(Value::String(value)) => {
                text.push_str(name);
                text.push('\n');
                text.push_str(value);
                text.push('\n');
            }
            // Subject is optional; every other field is required.
            None | Some(Value::Null) if *name == "Subject" => {}
            _ => return Err(SnsError::Malformed(format!("{name} is missing"))),
        }
    }
    Ok(text)
}

fn field<'a>(message: &'a Value, name: &str) -> Result<&'a str, SnsError> {
    message
        .get(name)
        .and_then(Value::as_str)
        .ok_or_else(|| SnsError::Malformed(format!("{name} is missing")))
}

/// The certificate URL, in either spelling (Lambda's events use
/// `SigningCertUrl`).
fn cert_url(message: &Value) -> Result<&str, SnsError> {
    field(message, "SigningCertURL").or_else(|_| field(message, "SigningCertUrl"))
}

/// Checks signatures, caching certificates by URL.
#[derive(Clone)]
pub struct SnsVerifier {
    http: reqwest::Client,
    trusted_origin: Option<url::Url>,
    topics: Vec<String>,
    cache: Arc<Mutex<HashMap<String, RsaPublicKey>>>,
}

/// Certificates kept at most (SNS rotates rarely; a cap keeps a flood of
/// forged URLs from growing memory).
const MAX_CACHED: usize = 64;

impl SnsVerifier {
    /// A verifier trusting SNS's hosts and `trusted_origin`, accepting
    /// `topics` (any when empty).
    pub fn new(trusted_origin: Option<&str>, topics: Vec<String>) -> Self {
        Self {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("a static client configuration"),
            trusted_origin: trusted_origin.and_then(|o| url::Url::parse(o).ok()),
            topics,
            cache: Arc::default(),
        }
    }

    /// Whether a certificate or confirmation URL may be followed.
    pub fn url_trusted(&self, raw: &str) -> bool {
        let Ok(url) = url::Url::parse(raw) else {
            return false;
        };
        if let Some(origin) = &self.trusted_origin
            && url.origin() == origin.origin()
        {
            return true;
        }
        let host = url.host_str().unwrap_or_default();
        let sns_host = host.starts_with("sns.")
            && (host.ends_with(".amazonaws.com") || host.ends_with(".amazonaws.com.cn"))
            && host[4..].split('.').next().is_some_and(|region| {
                !region.is_empty()
                    && region
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            });
        url.scheme() == "https" && url.port().is_none() && sns_host
    }

    /// Verifies a message body; the fields the source needs on success.
    pub async fn verify(&self, body: &str) -> Result<Verified, SnsError> {
        let message: Value =
            serde_json::from_str(body).map_err(|e| SnsError::Malformed(e.to_string()))?;
        let text = string_to_sign(&message)?;
        let topic_arn = field(&message, "TopicArn")?.to_owned();
        if !self.topics.is_empty() && !self.topics.contains(&topic_arn) {
            return Err(SnsError::Topic(topic_arn));
        }
        let signature = base64::engine::general_purpose::STANDARD
            .decode(field(&message, "Signature")?)
            .map_err(|_| SnsError::BadSignature)?;
        let url = cert_url(&message)?;
        if !self.url_trusted(url) {
            return Err(SnsError::UntrustedCertificate(url.to_owned()));
        }
        let key = self.key(url).await?;
        let signature = rsa::pkcs1v15::Signature::try_from(signature.as_slice())
            .map_err(|_| SnsError::BadSignature)?;
        let verified = match field(&message, "SignatureVersion")? {
            "1" => VerifyingKey::<sha1::Sha1>::new(key).verify(text.as_bytes(), &signature),
            "2" => VerifyingKey::<sha2::Sha256>::new(key).verify(text.as_bytes(), &signature),
            other => {
                return Err(SnsError::Malformed(format!("SignatureVersion {other:?}")));
            }
        };
        verified.map_err(|_| SnsError::BadSignature)?;
        Ok(Verified {
            kind: field(&message, "Type")?.to_owned(),
            topic_arn,
            message_id: field(&message, "MessageId")?.to_owned(),
            subscribe_url: message
                .get("SubscribeURL")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
            timestamp_ms: crate::parse::connect::parse_time(field(&message, "Timestamp")?),
        })
    }

    /// The public key of the certificate at `url`, fetched once.
    async fn key(&self, url: &str) -> Result<RsaPublicKey, SnsError> {
        if let Some(key) = self.cache.lock().expect("not poisoned").get(url) {
            return Ok(key.clone());
        }
        let pem = self
            .http
            .get(url)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(|e| SnsError::Certificate(e.to_string()))?
            .text()
            .await
            .map_err(|e| SnsError::Certificate(e.to_string()))?;
        let key = public_key(&pem)?;
        let mut cache = self.cache.lock().expect("not poisoned");
        if cache.len() >= MAX_CACHED {
            cache.clear();
        }
        cache.insert(url.to_owned(), key.clone());
        Ok(key)
    }
}

/// The RSA public key of a PEM certificate.
pub fn public_key(pem: &str) -> Result<RsaPublicKey, SnsError> {
    use rsa::pkcs8::DecodePublicKey as _;
    let certificate =
        Certificate::from_pem(pem.as_bytes()).map_err(|e| SnsError::Certificate(e.to_string()))?;
    let spki = certificate
        .tbs_certificate
        .subject_public_key_info
        .to_der()
        .map_err(|e| SnsError::Certificate(e.to_string()))?;
    RsaPublicKey::from_public_key_der(&spki).map_err(|e| SnsError::Certificate(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_string_to_sign_follows_the_documented_order() {
        let message: Value = serde_json::json!({
            "Type": "Notification", "MessageId": "m", "TopicArn": "t",
            "Message": "hello", "Timestamp": "2024-01-01T00:00:00.000Z",
            "Signature": "x", "SigningCertURL": "https://sns.us-east-1.amazonaws.com/c.pem",
        });
        assert_eq!(
            string_to_sign(&message).unwrap(),
            "Message\nhello\nMessageId\nm\nTimestamp\n2024-01-01T00:00:00.000Z\nTopicArn\nt\nType\nNotification\n"
        );
        let mut with_subject = message.clone();
        with_subject["Subject"] = "s".into();
        assert!(
            string_to_sign(&with_subject)
                .unwrap()
                .contains("Subject\ns\n")
        );
        let mut null_subject = message;
        null_subject["Subject"] = Value::Null;
        assert!(string_to_sign(&null_subject).is_ok());
    }

    #[test]
    fn only_sns_hosts_and_the_trusted_origin_are_followed() {
        let verifier = SnsVerifier::new(Some("http://127.0.0.1:4566"), Vec::new());
        for good in [
            "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-abc.pem",
            "https://sns.cn-north-1.amazonaws.com.cn/x.pem",
            "http://127.0.0.1:4566/_sandbox/sns/signing-cert.pem",
        ] {
            assert!(verifier.url_trusted(good), "{good}");
        }
        for bad in [
            "http://sns.us-east-1.amazonaws.com/x.pem",
            "https://sns.us-east-1.amazonaws.com.evil.com/x.pem",
            "https://evil.com/sns.us-east-1.amazonaws.com/x.pem",
            "https://sns..amazonaws.com/x.pem",
            "https://sns.us-east-1.amazonaws.com:8443/x.pem",
            "http://127.0.0.1:4567/x.pem",
            "not a url",
        ] {
            assert!(!verifier.url_trusted(bad), "{bad}");
        }
    }
}
