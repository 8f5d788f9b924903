//! Parley's v1 gRPC contracts, generated from the `.proto` files beside this
//! crate. One module per package; each service module holds its messages plus
//! a tonic client (`*_client`) and server (`*_server`).
//!
//! # Layout
//! - [`common`]: types every service shares (conversation key, media, errors).
//! - [`session`], [`transcoder`], [`transcriber`], [`connect`], [`whatsapp`]:
//!   one package per service.
//! - [`errors`]: the one encoder and decoder of `ErrorDetail`s in gRPC
//!   statuses.
//! - [`FILE_DESCRIPTOR_SET`]: the compiled descriptors, for gRPC reflection.

#![allow(clippy::large_enum_variant, clippy::doc_lazy_continuation)]

pub mod errors;

/// The generated code, nested as the proto packages are (`parley.x.v1`), so
/// cross-package references resolve.
#[allow(missing_docs)]
pub mod parley {
    pub mod common {
        pub mod v1 {
            tonic::include_proto!("parley.common.v1");
        }
    }
    pub mod session {
        pub mod v1 {
            tonic::include_proto!("parley.session.v1");
        }
    }
    pub mod transcoder {
        pub mod v1 {
            tonic::include_proto!("parley.transcoder.v1");
        }
    }
    pub mod transcriber {
        pub mod v1 {
            tonic::include_proto!("parley.transcriber.v1");
        }
    }
    pub mod connect {
        pub mod v1 {
            tonic::include_proto!("parley.connect.v1");
        }
    }
    pub mod whatsapp {
        pub mod v1 {
            tonic::include_proto!("parley.whatsapp.v1");

            /// WhatsApp's limits for interactive messages, in characters —
            /// part of the contract (`whatsapp.proto` documents them): the
            /// sender refuses what exceeds them with LIMIT_EXCEEDED, the
            /// gateway renders within them.
            pub mod limits {
                /// Header and footer text.
                pub const HEADER: usize = 60;
                /// Body text.
                pub const BODY: usize = 1_024;
                /// A reply button's title, and a list's button label.
                pub const BUTTON_TITLE: usize = 20;
                /// Reply buttons in one message.
                pub const BUTTONS: usize = 3;
                /// A list row's title, and a section's title.
                pub const ROW_TITLE: usize = 24;
                /// A list row's description.
                pub const ROW_DESCRIPTION: usize = 72;
                /// Rows in a list, over all its sections.
                pub const ROWS: usize = 10;
                /// Sections in a list.
                pub const SECTIONS: usize = 10;
                /// A button or row id.
                pub const ID: usize = 200;
            }
        }
    }
}

/// Types shared by every service (`parley.common.v1`).
pub use parley::common::v1 as common;
/// Amazon Connect chat as the customer participant (`parley.connect.v1`).
pub use parley::connect::v1 as connect;
/// Conversation state (`parley.session.v1`).
pub use parley::session::v1 as session;
/// Audio conversion (`parley.transcoder.v1`).
pub use parley::transcoder::v1 as transcoder;
/// Speech to text (`parley.transcriber.v1`).
pub use parley::transcriber::v1 as transcriber;
/// WhatsApp through AWS End User Messaging Social (`parley.whatsapp.v1`).
pub use parley::whatsapp::v1 as whatsapp;

/// Encoded `FileDescriptorSet` of every Parley proto, for server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/parley_descriptor.bin"));
