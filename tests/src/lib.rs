//! The whole Parley stack on one machine.
//!
//! - [`stack`]: the one builder that starts moto (where needed), the AWS
//!   sandbox and any set of services, in-process or as processes, and hands
//!   out addresses and clients. End-to-end tests, the load test and the
//!   `parley-local` binary all use it.
//! - [`process`]: running the real binaries (finding them, free ports,
//!   waiting for health).

pub mod console;
pub mod conversation;
pub mod demo;
pub mod process;
pub mod spans;
pub mod stack;

pub use stack::{Component, Feed, Mode, SessionStore, Stack, StackBuilder};
