//! The sandbox as Amazon SNS for HTTP(S) subscribers: topics, the
//! subscription handshake (a signed `SubscriptionConfirmation` whose
//! `SubscribeURL` the subscriber must visit), and signed `Notification`s
//! delivered with SNS's retry behaviour — so a gateway's HTTP source is
//! exercised exactly as SNS would exercise it, signature checks included.
//!
//! Messages are signed as SNS signs them (RSA PKCS#1 v1.5 over the
//! canonical string, SHA1 for `SignatureVersion` 1, SHA256 for 2) with a
//! key and self-signed certificate the sandbox generates at start; the
//! certificate is served at `/_sandbox/sns/signing-cert.pem`, an origin a
//! local gateway must be told to trust (real SNS certificates are only
//! fetched from `sns.<region>.amazonaws.com`).

use std::{
    collections::{BTreeMap, HashMap},
    sync::{Arc, Mutex, OnceLock},
    time::Duration,
};

use axum::{
    Json, Router,
    extract::{Query, State},
    http::StatusCode,
    response::IntoResponse,
    routing::{get, post},
};
use base64::Engine as _;
use rsa::{
    RsaPrivateKey,
    pkcs1v15::SigningKey,
    pkcs8::EncodePrivateKey,
    signature::{SignatureEncoding, Signer as _},
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::state::{Sandbox, new_id, now_ms};

/// The AWS account the emulated topics belong to.
pub const ACCOUNT_ID: &str = "123456789012";

/// The key and certificate messages are signed with.
pub struct Signer {
    key: RsaPrivateKey,
    /// The certificate, PEM.
    pub certificate_pem: String,
}

impl Signer {
    /// A fresh 2048-bit key and a self-signed certificate for it.
    pub fn generate() -> Self {
        let key = RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048).expect("an RSA key");
        let pem = key
            .to_pkcs8_pem(rsa::pkcs8::LineEnding::LF)
            .expect("a PKCS#8 encoding");
        let key_pair = rcgen::KeyPair::from_pem_and_sign_algo(&pem, &rcgen::PKCS_RSA_SHA256)
            .expect("rcgen accepts the key");
        let params = rcgen::CertificateParams::new(vec!["sns.sandbox.parley.local".to_owned()])
            .expect("certificate parameters");
        let certificate = params
            .self_signed(&key_pair)
            .expect("a self-signed certificate");
        Self {
            key,
            certificate_pem: certificate.pem(),
        }
    }

    /// The base64 signature of `text` for `version` (1: SHA1, 2: SHA256).
    pub fn sign(&self, version: u8, text: &str) -> String {
        let signature = if version == 1 {
            SigningKey::<sha1::Sha1>::new(self.key.clone())
                .sign(text.as_bytes())
                .to_vec()
        } else {
            SigningKey::<sha2::Sha256>::new(self.key.clone())
                .sign(text.as_bytes())
                .to_vec()
        };
        base64::engine::general_purpose::STANDARD.encode(signature)
    }
}

/// The string SNS signs for a message: the listed fields, each as its name
/// and value on their own lines, in this order, absent ones skipped.
pub fn string_to_sign(message: &Value) -> String {
    let fields: &[&str] = match message.get("Type").and_then(Value::as_str) {
        Some("Notification") => &[
            "Message",
            "MessageId",
            "Subject",
            "Timestamp",
            "TopicArn",
            "Type",
        ],
        _ => &[
            "Message",
            "MessageId",
            "SubscribeURL",
            "Timestamp",
            "Token",
            "TopicArn",
            "Type",
        ],
    };
    let mut text = String::new();
    for field in fields {
        if let Some(value) = message.get(*field).and_then(Value::as_str) {
            text.push_str(field);
            text.push('\n');
            text.push_str(value);
            text.push('\n');
        }
    }
    text
}

/// One HTTP(S) subscription of a topic.
#[derive(Debug, Clone, Serialize)]
pub struct Subscription {
    /// Its ARN.
    pub arn: String,
    /// The topic.
    pub topic_arn: String,
    /// Where notifications go.
    pub endpoint: String,
    /// Whether the subscriber visited its SubscribeURL.
    pub confirmed: bool,
    /// The confirmation token.
    #[serde(skip)]
    pub token: String,
    /// The signature version used (1 or 2).
    pub signature_version: u8,
}

/// A delivery that gave up (for inspection).
#[derive(Debug, Clone, Serialize)]
pub struct FailedDelivery {
    /// The subscription.
    pub subscription_arn: String,
    /// The notification's message id.
    pub message_id: String,
    /// Why.
    pub reason: String,
}

/// The emulated topics and their subscriptions.
#[derive(Default)]
pub struct Topics {
    subscriptions: Mutex<HashMap<String, Subscription>>,
    failures: Mutex<Vec<FailedDelivery>>,
    signer: OnceLock<Signer>,
}

impl Topics {
    fn signer(&self) -> &Signer {
        self.signer.get_or_init(Signer::generate)
    }

    /// Every subscription.
    pub fn subscriptions(&self) -> Vec<Subscription> {
        self.subscriptions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect()
    }

    /// Deliveries that gave up.
    pub fn failures(&self) -> Vec<FailedDelivery> {
        self.failures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Whether `topic_arn` has a confirmed subscriber.
    pub fn has_subscribers(&self, topic_arn: &str) -> bool {
        self.subscriptions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .any(|s| s.topic_arn == topic_arn && s.confirmed)
    }
}

/// How deliveries are retried: SNS retries a failed HTTP delivery (no
/// answer, or a 5xx) with backoff; any 2xx counts as delivered; other
/// answers are client errors and not retried.
const DELIVERY_ATTEMPTS: u32 = 12;

impl Sandbox {
    /// The certificate PEM notifications are signed with.
    pub fn sns_certificate_pem(&self) -> String {
        self.topics.signer().certificate_pem.clone()
    }

    /// Subscribes `endpoint` to `topic_arn` and sends it a signed
    /// SubscriptionConfirmation; deliveries start once it is confirmed.
    pub fn sns_subscribe(
        self: &Arc<Self>,
        topic_arn: &str,
        endpoint: &str,
        signature_version: u8,
    ) -> String {
        let subscription = Subscription {
            arn: format!("{topic_arn}:{}", new_id()),
            topic_arn: topic_arn.to_owned(),
            endpoint: endpoint.to_owned(),
            confirmed: false,
            token: new_id().replace('-', ""),
            signature_version: if signature_version == 1 { 1 } else { 2 },
        };
        let arn = subscription.arn.clone();
        self.topics
            .subscriptions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(arn.clone(), subscription.clone());
        let message = self.signed(
            &subscription,
            json!({
                "Type": "SubscriptionConfirmation",
                "MessageId": new_id(),
                "Token": subscription.token,
                "TopicArn": topic_arn,
                "Message": format!("You have chosen to subscribe to the topic {topic_arn}.\nTo confirm the subscription, visit the SubscribeURL included in this message."),
                "SubscribeURL": format!("{}/_sandbox/sns/confirm?Action=ConfirmSubscription&TopicArn={topic_arn}&Token={}", self.config.public_url, subscription.token),
                "Timestamp": crate::aws::iso8601(now_ms()),
            }),
        );
        let sandbox = self.clone();
        tokio::spawn(async move { sandbox.deliver(subscription, message).await });
        arn
    }

    /// Confirms the subscription holding `token`; its ARN, if any.
    pub fn sns_confirm(&self, token: &str) -> Option<String> {
        let mut subscriptions = self
            .topics
            .subscriptions
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let subscription = subscriptions.values_mut().find(|s| s.token == token)?;
        subscription.confirmed = true;
        Some(subscription.arn.clone())
    }

    /// Publishes to every confirmed subscriber of `topic_arn`, each in the
    /// background with retries, in no particular order (as SNS standard
    /// topics do); returns the message id.
    pub fn sns_publish(
        self: &Arc<Self>,
        topic_arn: &str,
        message: String,
        attributes: &BTreeMap<String, String>,
    ) -> String {
        let message_id = new_id();
        let subscribers: Vec<Subscription> = self
            .topics
            .subscriptions()
            .into_iter()
            .filter(|s| s.topic_arn == topic_arn && s.confirmed)
            .collect();
        for subscription in subscribers {
            let mut notification = json!({
                "Type": "Notification",
                "MessageId": message_id,
                "TopicArn": topic_arn,
                "Message": message,
                "Timestamp": crate::aws::iso8601(now_ms()),
                "UnsubscribeURL": format!("{}/_sandbox/sns/unsubscribe?SubscriptionArn={}", self.config.public_url, subscription.arn),
            });
            if !attributes.is_empty() {
                notification["MessageAttributes"] = attributes
                    .iter()
                    .map(|(k, v)| (k.clone(), json!({"Type": "String", "Value": v})))
                    .collect::<serde_json::Map<_, _>>()
                    .into();
            }
            let signed = self.signed(&subscription, notification);
            let sandbox = self.clone();
            tokio::spawn(async move { sandbox.deliver(subscription, signed).await });
        }
        message_id
    }

    fn signed(&self, subscription: &Subscription, mut message: Value) -> Value {
        let version = subscription.signature_version;
        message["SignatureVersion"] = json!(version.to_string());
        message["SigningCertURL"] = json!(format!(
            "{}/_sandbox/sns/signing-cert.pem",
            self.config.public_url
        ));
        message["Signature"] = json!(
            self.topics
                .signer()
                .sign(version, &string_to_sign(&message))
        );
        message
    }

    async fn deliver(&self, subscription: Subscription, message: Value) {
        let kind = message["Type"]
            .as_str()
            .unwrap_or("Notification")
            .to_owned();
        let message_id = message["MessageId"].as_str().unwrap_or_default().to_owned();
        let body = message.to_string();
        let mut delay = Duration::from_millis(50);
        let mut last = String::new();
        for _ in 0..DELIVERY_ATTEMPTS {
            let sent = self
                .http
                .post(&subscription.endpoint)
                .header("content-type", "text/plain; charset=UTF-8")
                .header("x-amz-sns-message-type", &kind)
                .header("x-amz-sns-message-id", &message_id)
                .header("x-amz-sns-topic-arn", &subscription.topic_arn)
                .header("x-amz-sns-subscription-arn", &subscription.arn)
                .body(body.clone())
                .send()
                .await;
            match sent {
                Ok(response) if response.status().is_success() => return,
                Ok(response) if !response.status().is_server_error() => {
                    last = format!("the subscriber answered {}", response.status());
                    break;
                }
                Ok(response) => last = format!("the subscriber answered {}", response.status()),
                Err(e) => last = format!("delivery failed: {e}"),
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(5));
        }
        tracing::warn!(subscription = %subscription.arn, reason = %last, "sns delivery gave up");
        self.topics
            .failures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(FailedDelivery {
                subscription_arn: subscription.arn,
                message_id,
                reason: last,
            });
    }
}

/// The routes of the SNS emulation.
pub fn routes() -> Router<Arc<Sandbox>> {
    Router::new()
        .route("/_sandbox/sns/signing-cert.pem", get(certificate))
        .route("/_sandbox/sns/confirm", get(confirm))
        .route("/_sandbox/sns/subscribe", post(subscribe))
        .route("/_sandbox/sns/subscriptions", get(subscriptions))
}

async fn certificate(State(sandbox): State<Arc<Sandbox>>) -> impl IntoResponse {
    (
        [("content-type", "application/x-pem-file")],
        sandbox.sns_certificate_pem(),
    )
}

#[derive(Deserialize)]
struct Confirm {
    #[serde(rename = "Token")]
    token: String,
}

async fn confirm(
    State(sandbox): State<Arc<Sandbox>>,
    Query(query): Query<Confirm>,
) -> impl IntoResponse {
    match sandbox.sns_confirm(&query.token) {
        Some(arn) => (
            StatusCode::OK,
            [("content-type", "text/xml")],
            format!(
                "<ConfirmSubscriptionResponse xmlns=\"http://sns.amazonaws.com/doc/2010-03-31/\"><ConfirmSubscriptionResult><SubscriptionArn>{arn}</SubscriptionArn></ConfirmSubscriptionResult><ResponseMetadata><RequestId>{}</RequestId></ResponseMetadata></ConfirmSubscriptionResponse>",
                new_id()
            ),
        ),
        None => (
            StatusCode::NOT_FOUND,
            [("content-type", "text/xml")],
            "<ErrorResponse><Error><Type>Sender</Type><Code>NotFound</Code><Message>Subscription not found</Message></Error></ErrorResponse>".to_owned(),
        ),
    }
}

#[derive(Deserialize)]
struct Subscribe {
    topic_arn: String,
    endpoint: String,
    #[serde(default)]
    signature_version: u8,
}

async fn subscribe(
    State(sandbox): State<Arc<Sandbox>>,
    Json(request): Json<Subscribe>,
) -> Json<Value> {
    let arn = sandbox.sns_subscribe(
        &request.topic_arn,
        &request.endpoint,
        request.signature_version,
    );
    Json(json!({ "SubscriptionArn": arn }))
}

async fn subscriptions(State(sandbox): State<Arc<Sandbox>>) -> Json<Value> {
    Json(json!({
        "subscriptions": sandbox.topics.subscriptions(),
        "failed_deliveries": sandbox.topics.failures(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_string_to_sign_follows_sns() {
        let notification = json!({
            "Type": "Notification", "MessageId": "m", "TopicArn": "t", "Message": "hello",
            "Timestamp": "2026-01-01T00:00:00.000Z", "UnsubscribeURL": "u",
        });
        assert_eq!(
            string_to_sign(&notification),
            "Message\nhello\nMessageId\nm\nTimestamp\n2026-01-01T00:00:00.000Z\nTopicArn\nt\nType\nNotification\n"
        );
        let confirmation = json!({
            "Type": "SubscriptionConfirmation", "MessageId": "m", "TopicArn": "t", "Message": "hi",
            "Timestamp": "x", "Token": "k", "SubscribeURL": "s",
        });
        assert_eq!(
            string_to_sign(&confirmation),
            "Message\nhi\nMessageId\nm\nSubscribeURL\ns\nTimestamp\nx\nToken\nk\nTopicArn\nt\nType\nSubscriptionConfirmation\n"
        );
    }
}
