//! Parley's connect-relay: everything Parley does in an Amazon Connect chat
//! on the customer's behalf, through the real `aws-sdk-connect` and
//! `aws-sdk-connectparticipant` clients.
//!
//! # Layout
//! - [`relay`]: the calls — start chat (and connect), send, attachments in
//!   and out, events, refresh, disconnect.
//! - [`error`]: [`error::RelayError`], in the terms the gateway acts on.
//! - [`grpc`]: the `parley.connect.v1.ConnectRelay` service.

pub mod error;
pub mod grpc;
pub mod relay;
