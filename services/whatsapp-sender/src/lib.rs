//! Parley's whatsapp-sender: every message Parley sends to WhatsApp, and
//! every media object it moves in or out, through the real
//! `aws-sdk-socialmessaging` and `aws-sdk-s3` clients.
//!
//! # Layout
//! - [`message`]: Meta Cloud API payloads for text (split at 4,096
//!   characters), quoted replies, reactions, media by id, interactive
//!   buttons and lists, templates, read receipts.
//! - [`media`]: WhatsApp's media types and size limits.
//! - [`sender`]: the calls — send, upload via the media bucket, download.
//! - [`error`]: [`error::SenderError`]; [`grpc`]: the service.

pub mod error;
pub mod grpc;
pub mod media;
pub mod message;
pub mod sender;
