//! The plain types that flow between the gateway's stages: what a customer
//! sent (parsed from any webhook form), what a WhatsApp status says, and
//! what an agent (or bot) sent in Connect. Customer and agent messages are
//! what the pending buffers hold, serialised as JSON.

use serde::{Deserialize, Serialize};

/// Kinds of WhatsApp media.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MediaKind {
    /// A picture.
    Image,
    /// A video.
    Video,
    /// Audio: a voice note (`voice: true`, OGG/Opus) or an audio file.
    Audio,
    /// A file.
    Document,
    /// A sticker (WebP).
    Sticker,
}

impl MediaKind {
    /// The name WhatsApp uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Image => "image",
            Self::Video => "video",
            Self::Audio => "audio",
            Self::Document => "document",
            Self::Sticker => "sticker",
        }
    }
}

/// One contact card a customer shared.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ContactCard {
    /// Formatted name.
    pub name: String,
    /// Phone numbers, as given.
    pub phones: Vec<String>,
    /// E-mail addresses.
    pub emails: Vec<String>,
    /// Company, when given.
    pub organization: String,
}

/// One line of an order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct OrderItem {
    /// The catalog's product id.
    pub product_retailer_id: String,
    /// How many.
    pub quantity: f64,
    /// Unit price.
    pub item_price: f64,
    /// ISO currency.
    pub currency: String,
}

/// Which interactive element a customer answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReplyKind {
    /// A reply button.
    Button,
    /// A list row.
    List,
    /// A WhatsApp Flow (its answers as JSON).
    Flow,
}

/// What a customer's WhatsApp message carries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Content {
    /// Text.
    Text {
        /// The text.
        body: String,
    },
    /// Media, downloaded later by its id.
    Media {
        /// Image, video, audio, document or sticker.
        kind: MediaKind,
        /// WhatsApp's media id.
        media_id: String,
        /// MIME type as WhatsApp reported it.
        mime_type: String,
        /// Caption, when given.
        caption: String,
        /// File name (documents).
        file_name: String,
        /// A voice note (recorded in WhatsApp), not an audio file.
        voice: bool,
        /// An animated sticker.
        animated: bool,
    },
    /// A shared location.
    Location {
        /// Degrees.
        latitude: f64,
        /// Degrees.
        longitude: f64,
        /// A place name, when chosen from a list.
        name: String,
        /// Its address.
        address: String,
        /// Its web page.
        url: String,
    },
    /// Shared contact cards.
    Contacts {
        /// The cards.
        cards: Vec<ContactCard>,
    },
    /// An answer to an interactive message.
    Interactive {
        /// Button, list row or flow.
        kind: ReplyKind,
        /// The option's id.
        id: String,
        /// The option's title (what the customer saw and tapped).
        title: String,
        /// A list row's description.
        description: String,
        /// A flow's answers (JSON).
        response_json: String,
    },
    /// A tap on a template's quick-reply button.
    Button {
        /// The button's text.
        text: String,
        /// Its payload.
        payload: String,
    },
    /// An order from the catalog.
    Order {
        /// The catalog.
        catalog_id: String,
        /// The customer's note.
        text: String,
        /// What was ordered.
        items: Vec<OrderItem>,
    },
    /// A reaction to a message (`emoji` empty: the reaction was removed).
    Reaction {
        /// The message reacted to.
        message_id: String,
        /// The emoji.
        emoji: String,
    },
    /// A system notice (the customer changed number).
    System {
        /// Its kind, e.g. `user_changed_number`.
        kind: String,
        /// WhatsApp's text.
        body: String,
    },
    /// Something WhatsApp could not deliver or Parley does not know.
    Unsupported {
        /// WhatsApp's type name.
        kind: String,
        /// Why, as WhatsApp put it.
        reason: String,
    },
}

impl Content {
    /// A short name of the kind, for metrics and spans (never the content).
    pub fn kind_name(&self) -> &'static str {
        match self {
            Self::Text { .. } => "text",
            Self::Media { kind, voice, .. } => match (kind, voice) {
                (MediaKind::Audio, true) => "voice",
                (kind, _) => kind.as_str(),
            },
            Self::Location { .. } => "location",
            Self::Contacts { .. } => "contacts",
            Self::Interactive { .. } => "interactive",
            Self::Button { .. } => "button",
            Self::Order { .. } => "order",
            Self::Reaction { .. } => "reaction",
            Self::System { .. } => "system",
            Self::Unsupported { .. } => "unsupported",
        }
    }
}

/// What a message replies to or where it came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct MessageContext {
    /// The WhatsApp message replied to, when the customer quoted one.
    pub reply_to: String,
    /// Forwarded.
    pub forwarded: bool,
    /// Forwarded many times.
    pub frequently_forwarded: bool,
    /// The catalog product the customer asked about.
    pub referred_product: String,
}

/// An ad (Click to WhatsApp) that led to the message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Referral {
    /// The ad's headline.
    pub headline: String,
    /// Its body.
    pub body: String,
    /// Where it points.
    pub source_url: String,
    /// `ad` or `post`.
    pub source_type: String,
}

/// A customer's WhatsApp message, normalised and routed: what an inbound
/// pending buffer holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CustomerMessage {
    /// WhatsApp's message id.
    pub wamid: String,
    /// The business number, `phone-number-id-…`.
    pub business: String,
    /// The customer (digits or business-scoped user id).
    pub customer: String,
    /// The customer's phone number when known (digits).
    pub phone: String,
    /// The customer's WhatsApp profile name.
    pub profile_name: String,
    /// When the customer sent it, epoch ms (WhatsApp's clock).
    pub sent_at_ms: i64,
    /// What it replies to.
    pub context: MessageContext,
    /// The ad that led to it.
    pub referral: Option<Referral>,
    /// What it carries.
    pub content: Content,
    /// The W3C trace context of the event that brought it, so its delivery
    /// continues the same trace.
    #[serde(default)]
    pub traceparent: String,
}

/// A delivery status WhatsApp reports for a message Parley sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StatusKind {
    /// Accepted by WhatsApp.
    Sent,
    /// On the customer's phone.
    Delivered,
    /// Read.
    Read,
    /// A voice note was played.
    Played,
    /// Could not be delivered.
    Failed,
    /// Anything newer.
    Other(String),
}

/// An error Meta reports (for a failed status, or for a whole webhook).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct MetaError {
    /// Meta's error code (e.g. 131047: outside the 24-hour window).
    pub code: i64,
    /// Its title.
    pub title: String,
    /// Its details, when given.
    pub details: String,
}

impl MetaError {
    /// `title (code): details` for people.
    pub fn describe(&self) -> String {
        let mut text = format!("{} ({})", self.title, self.code);
        if !self.details.is_empty() {
            text.push_str(": ");
            text.push_str(&self.details);
        }
        text
    }
}

/// Connect streaming item kinds (`Type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ItemKind {
    /// A message.
    Message,
    /// An event (typing, joined, left, ended, receipts…).
    Event,
    /// A file.
    Attachment,
}

impl ItemKind {
    /// Its name in metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Message => "message",
            Self::Event => "event",
            Self::Attachment => "attachment",
        }
    }
}

/// One attachment of a Connect item.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentAttachment {
    /// Connect's attachment id.
    pub id: String,
    /// Its name.
    pub name: String,
    /// Its MIME type.
    pub content_type: String,
    /// `APPROVED` once Connect's scanner passed it.
    pub status: String,
}

/// A Connect chat item from the streaming topic, with the attributes
/// Connect sets on it: what an outbound pending buffer holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentItem {
    /// Connect's item id.
    pub id: String,
    /// Message, event or attachment.
    pub kind: ItemKind,
    /// The content type (`text/plain`, `…event.chat.ended`, …).
    pub content_type: String,
    /// The text (messages).
    pub content: String,
    /// AGENT, SYSTEM, CUSTOM_BOT, SUPERVISOR or CUSTOMER.
    pub participant_role: String,
    /// Who may see it: AGENT, CUSTOMER or ALL.
    pub visibility: String,
    /// The contact it was sent in.
    pub contact_id: String,
    /// The contact the chat started as.
    pub initial_contact_id: String,
    /// When Connect stamped it, epoch ms.
    pub absolute_time_ms: i64,
    /// The sender's display name.
    pub display_name: String,
    /// Files.
    pub attachments: Vec<AgentAttachment>,
    /// Trace context of the notification.
    #[serde(default)]
    pub traceparent: String,
}

impl AgentItem {
    /// The event name after Connect's `application/vnd.amazonaws.connect.event.`
    /// prefix (`chat.ended`, `typing`, …), for events.
    pub fn event(&self) -> Option<&str> {
        self.content_type
            .strip_prefix("application/vnd.amazonaws.connect.event.")
    }

    /// Whether the customer should see it: not their own echo, and visible
    /// to customers (AWS's documented filter).
    pub fn for_customer(&self) -> bool {
        self.participant_role != "CUSTOMER"
            && matches!(self.visibility.as_str(), "CUSTOMER" | "ALL")
    }
}
