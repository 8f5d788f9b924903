//! Both sides of a conversation, driven through the sandbox: a WhatsApp
//! customer whose messages are published exactly as End User Messaging
//! Social publishes them (SNS, then HTTP or SQS), and the Connect agent
//! whose messages stream out as Connect streams them. Plus views of what
//! each side ended up seeing, for assertions — the tests, the load test
//! and `parley-local`'s scripted conversation all use these.

use std::{
    sync::atomic::{AtomicI64, AtomicU64, Ordering},
    time::Duration,
};

use parley_sandbox::{
    customer::message_value,
    state::{Attachment, ChatItem, Contact, SentWhatsApp},
};
use serde_json::{Value, json};

use crate::Stack;

/// A WhatsApp customer writing to the sandbox's business number.
pub struct Customer<'a> {
    stack: &'a Stack,
    /// The customer's WhatsApp id (digits).
    pub phone: String,
    /// Their profile name.
    pub name: String,
    sent: AtomicU64,
    /// WhatsApp's timestamp of the last message (seconds).
    clock: AtomicI64,
}

/// Every customer's wamids are unique across stacks and runs.
static WAMIDS: AtomicU64 = AtomicU64::new(0);

impl Stack {
    /// A customer with WhatsApp id `phone`.
    pub fn customer(&self, phone: &str, name: &str) -> Customer<'_> {
        Customer {
            stack: self,
            phone: phone.to_owned(),
            name: name.to_owned(),
            sent: AtomicU64::new(0),
            clock: AtomicI64::new(0),
        }
    }

    /// The agent's side of the sandbox.
    pub fn agent(&self) -> Agent<'_> {
        Agent { stack: self }
    }

    /// Every chat opened for the customer `phone`, oldest first.
    pub fn chats_of(&self, phone: &str) -> Vec<Contact> {
        self.sandbox
            .sandbox
            .contacts()
            .into_iter()
            .filter(|c| c.attributes.get("customerId").map(String::as_str) == Some(phone))
            .collect()
    }

    /// What the customer `phone` received on WhatsApp, in order.
    pub fn whatsapp_to(&self, phone: &str) -> Vec<SentWhatsApp> {
        self.sandbox
            .sandbox
            .whatsapp_sent()
            .into_iter()
            .filter(|m| {
                m.message["to"]
                    .as_str()
                    .is_some_and(|to| to.trim_start_matches('+') == phone.trim_start_matches('+'))
            })
            .collect()
    }

    /// Waits until nothing is pending for customer `phone` in either
    /// direction — every batch delivered and acked — so counts taken after
    /// it include any redelivery. `false` if it does not settle in time.
    pub async fn settled(&self, phone: &str, timeout: Duration) -> bool {
        use parley_client::SessionApi as _;
        use parley_proto::session::{Direction, PeekPendingRequest};
        let key = parley_proto::common::ConversationKey {
            business_number_id: parley_sandbox::customer::WhatsAppNumber::default().phone_number_id,
            customer_id: phone.to_owned(),
        };
        let session = self.session();
        let deadline = tokio::time::Instant::now() + timeout;
        while tokio::time::Instant::now() < deadline {
            let mut pending = 0;
            for direction in [Direction::Inbound, Direction::Outbound] {
                match session
                    .peek_pending(PeekPendingRequest {
                        key: Some(key.clone()),
                        direction: direction as i32,
                    })
                    .await
                {
                    Ok(state) => pending += state.message_count,
                    Err(_) => pending += 1,
                }
            }
            if pending == 0 {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        false
    }

    /// The attachments of a chat.
    pub fn attachments_of(&self, contact_id: &str) -> Vec<Attachment> {
        self.sandbox.sandbox.attachments_of(contact_id)
    }
}

impl Customer<'_> {
    fn next_wamid(&self) -> String {
        let n = WAMIDS.fetch_add(1, Ordering::Relaxed);
        self.sent.fetch_add(1, Ordering::Relaxed);
        format!("wamid.parley.{}.{}.{n}", std::process::id(), self.phone)
    }

    /// WhatsApp's timestamp for the next message: now, but at least a
    /// second after the previous one. WhatsApp stamps whole seconds and a
    /// standard topic may reorder, so messages of one second have no
    /// defined order; a person typing takes longer than that, and the
    /// driver types like one.
    fn next_timestamp(&self) -> i64 {
        let now = parley_sandbox::state::now_ms() / 1000;
        let previous = self.clock.load(Ordering::Relaxed);
        let next = now.max(previous + 1);
        self.clock.store(next, Ordering::Relaxed);
        next
    }

    /// Sends a Meta message object (`type` and its body); `from`, `id`
    /// and `timestamp` are filled in. Its wamid.
    pub async fn send(&self, message: Value) -> anyhow::Result<String> {
        self.send_traced(message, "").await
    }

    /// [`Self::send`], the SNS notification carrying `traceparent` (when
    /// not empty) as a message attribute, so the message's trace has a
    /// known id (EUM itself sets none).
    pub async fn send_traced(
        &self,
        mut message: Value,
        traceparent: &str,
    ) -> anyhow::Result<String> {
        let wamid = self.next_wamid();
        message["from"] = json!(self.phone);
        message["id"] = json!(wamid);
        message["timestamp"] = json!(self.next_timestamp().to_string());
        self.publish_traced(message_value(&self.phone, &self.name, message), traceparent)
            .await?;
        Ok(wamid)
    }

    /// Publishes a webhook `value` as EUM would.
    pub async fn publish(&self, value: Value) -> anyhow::Result<()> {
        self.publish_traced(value, "").await
    }

    async fn publish_traced(&self, value: Value, traceparent: &str) -> anyhow::Result<()> {
        let sandbox = &self.stack.sandbox.sandbox;
        let mut attributes = std::collections::BTreeMap::new();
        if !traceparent.is_empty() {
            attributes.insert("traceparent".to_owned(), traceparent.to_owned());
        }
        sandbox
            .publish(
                &sandbox.config.inbound_topic_arn,
                sandbox.eum_message(value).to_string(),
                &attributes,
            )
            .await
            .map_err(|e| anyhow::anyhow!("publishing: {e:?}"))?;
        Ok(())
    }

    /// Sends a text.
    pub async fn text(&self, body: &str) -> anyhow::Result<String> {
        self.send(json!({ "type": "text", "text": { "body": body } }))
            .await
    }

    /// Sends a reply quoting `wamid`.
    pub async fn reply(&self, wamid: &str, body: &str) -> anyhow::Result<String> {
        self.send(json!({
            "type": "text",
            "text": { "body": body },
            "context": { "from": "15550783881", "id": wamid },
        }))
        .await
    }

    /// Sends media: stored with the emulated WhatsApp, then announced.
    /// `kind` is `image`, `video`, `audio`, `document` or `sticker`;
    /// `extra` is merged into the media object (caption, filename, voice).
    pub async fn media(
        &self,
        kind: &str,
        mime_type: &str,
        bytes: Vec<u8>,
        extra: Value,
    ) -> anyhow::Result<String> {
        let id = self
            .stack
            .sandbox
            .sandbox
            .add_customer_media(mime_type, bytes);
        let mut media = json!({ "id": id, "mime_type": mime_type, "sha256": "-" });
        if let (Some(media), Some(extra)) = (media.as_object_mut(), extra.as_object()) {
            for (k, v) in extra {
                media.insert(k.clone(), v.clone());
            }
        }
        self.send(json!({ "type": kind, kind: media })).await
    }

    /// Sends a voice note (OGG/Opus bytes).
    pub async fn voice_note(&self, ogg: Vec<u8>) -> anyhow::Result<String> {
        self.media(
            "audio",
            "audio/ogg; codecs=opus",
            ogg,
            json!({ "voice": true }),
        )
        .await
    }

    /// Taps option `id` (`title`) of an interactive message `wamid`.
    pub async fn choose(&self, wamid: &str, id: &str, title: &str) -> anyhow::Result<String> {
        self.send(json!({
            "type": "interactive",
            "context": { "from": "15550783881", "id": wamid },
            "interactive": { "type": "button_reply", "button_reply": { "id": id, "title": title } },
        }))
        .await
    }

    /// WhatsApp reports `status` (`delivered`, `read`, `failed`) for a
    /// message the business sent to this customer.
    pub async fn status(&self, wamid: &str, status: &str) -> anyhow::Result<()> {
        let mut entry = json!({
            "id": wamid,
            "status": status,
            "timestamp": (parley_sandbox::state::now_ms() / 1000).to_string(),
            "recipient_id": self.phone,
        });
        if status == "failed" {
            entry["errors"] = json!([{
                "code": 131047,
                "title": "Re-engagement message",
                "error_data": { "details": "Message failed to send because more than 24 hours have passed since the customer last replied to this number." }
            }]);
        }
        self.publish(json!({ "messaging_product": "whatsapp", "statuses": [entry] }))
            .await
    }

    /// How many messages this customer sent.
    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }
}

/// The agent (or bot) side of the sandbox's Connect.
pub struct Agent<'a> {
    stack: &'a Stack,
}

impl Agent<'_> {
    /// Writes in the chat (`text/plain`, `text/markdown`, or Connect's
    /// interactive content type). The item id.
    pub async fn says(
        &self,
        contact_id: &str,
        content_type: &str,
        content: &str,
    ) -> anyhow::Result<String> {
        self.says_traced(contact_id, content_type, content, "")
            .await
    }

    /// [`Self::says`] with a known trace id (see
    /// [`Customer::send_traced`]).
    pub async fn says_traced(
        &self,
        contact_id: &str,
        content_type: &str,
        content: &str,
        traceparent: &str,
    ) -> anyhow::Result<String> {
        self.stack
            .sandbox
            .sandbox
            .agent_says_traced(contact_id, content_type, content, traceparent)
            .await
            .map_err(|e| anyhow::anyhow!("agent message: {e:?}"))
    }

    /// An event: `typing`, `participant.joined`, `participant.left`,
    /// `chat.ended`.
    pub async fn event(&self, contact_id: &str, event: &str) -> anyhow::Result<()> {
        self.stack
            .sandbox
            .sandbox
            .agent_event(contact_id, event)
            .await
            .map(drop)
            .map_err(|e| anyhow::anyhow!("agent event: {e:?}"))
    }

    /// Sends a file.
    pub async fn attaches(
        &self,
        contact_id: &str,
        name: &str,
        content_type: &str,
        bytes: Vec<u8>,
    ) -> anyhow::Result<String> {
        self.stack
            .sandbox
            .sandbox
            .agent_attaches(contact_id, name, content_type, bytes)
            .await
            .map_err(|e| anyhow::anyhow!("agent attachment: {e:?}"))
    }

    /// Transfers the chat: Connect gives it a new contact id.
    pub fn transfers(&self, contact_id: &str) -> anyhow::Result<String> {
        self.stack
            .sandbox
            .sandbox
            .transfer(contact_id)
            .map_err(|e| anyhow::anyhow!("transfer: {e:?}"))
    }
}

/// The customer's messages as the agent sees them in a chat: texts (and
/// interactive responses) from the customer side, in order.
pub fn customer_texts(contact: &Contact) -> Vec<String> {
    contact
        .transcript
        .iter()
        .filter(|i| i.kind == "MESSAGE" && i.role == "CUSTOMER")
        .map(|i| i.content.clone())
        .collect()
}

/// The agent-only notices Parley left in a chat (their text).
pub fn notices(contact: &Contact) -> Vec<String> {
    contact
        .transcript
        .iter()
        .filter(|i| i.kind == "MESSAGE" && i.content_type == "application/json")
        .filter_map(|i| {
            serde_json::from_str::<Value>(&i.content)
                .ok()?
                .pointer("/parleyNotice/text")?
                .as_str()
                .map(str::to_owned)
        })
        .collect()
}

/// Receipts the customer side sent (`delivered`/`read`) for message ids.
pub fn receipts(contact: &Contact) -> Vec<(String, String)> {
    contact
        .transcript
        .iter()
        .filter(|i| i.kind == "EVENT" && i.role == "CUSTOMER")
        .filter_map(|i: &ChatItem| {
            let event = i.content_type.rsplit('.').next()?.to_owned();
            let id = serde_json::from_str::<Value>(&i.content)
                .ok()?
                .get("messageId")?
                .as_str()?
                .to_owned();
            Some((event, id))
        })
        .collect()
}

/// The text of a WhatsApp message Parley sent (text body, interactive
/// body, or empty).
pub fn whatsapp_text(message: &SentWhatsApp) -> String {
    let m = &message.message;
    m.pointer("/text/body")
        .or_else(|| m.pointer("/interactive/body/text"))
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

/// Polls `check` every 50 ms until it gives `Some`, or `timeout` passes.
pub async fn eventually<T>(timeout: Duration, mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(found) = check() {
            return Some(found);
        }
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
