//! Parley's transcriber: voice notes to text with Amazon Transcribe
//! Streaming, as a bidirectional gRPC stream.
//!
//! - [`settings`]: the client's config, validated.
//! - [`chunker`]: audio of any piece size → 50–200 ms events (PCM cut at
//!   samples, OGG/Opus re-paginated), never over one second.
//! - [`pacing`]: unpaced by default, or a multiple of real time.
//! - [`gate`]: the concurrency gate with its bounded wait queue.
//! - [`backend`]: the speech-to-text trait and its AWS implementation.
//! - [`transcription`]: one transcription, audio in and segments out.
//! - [`grpc`]: the tonic service.
//! - [`error`]: the error type and its gRPC statuses.

pub mod backend;
pub mod chunker;
pub mod error;
pub mod gate;
pub mod grpc;
pub mod pacing;
pub mod settings;
pub mod transcription;
