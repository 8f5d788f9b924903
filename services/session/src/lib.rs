//! Parley's session service: every piece of conversation state the bridge
//! needs, so the gateway stays stateless.
//!
//! - **Active chats** per (business number, customer), found by conversation
//!   or by Connect contact id (current or initial, so transfers keep working).
//! - **Creation leases**: of any number of concurrent callers for a new
//!   customer, exactly one creates the Connect chat; the others wait and
//!   reuse it. A crashed holder's lease expires.
//! - **Message claims** for idempotent processing of WhatsApp and Connect
//!   message ids.
//! - **Pending buffers** for the gateway's debounce, persisted and taken
//!   atomically.
//!
//! # Layout
//! - [`model`]: validated domain types; [`error`]: [`error::SessionError`].
//! - [`store`]: the [`store::SessionStore`] contract, implemented by
//!   [`embedded::EmbeddedStore`] (SQLite) and [`dynamo::DynamoStore`].
//! - [`grpc`]: the `parley.session.v1.Session` service.
//! - [`clock`]: epoch milliseconds.

pub mod clock;
pub mod dynamo;
pub mod embedded;
pub mod error;
pub mod grpc;
pub mod model;
pub mod store;
