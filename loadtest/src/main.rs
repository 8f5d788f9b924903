//! `parley-loadtest`: benchmarks and load generators, each run side by side
//! with the alternative it replaces, printing a Markdown table for the
//! README. Every loop is bounded and stops by itself.

use clap::{Parser, Subcommand};

mod pipeline;
mod session;
mod transcoder;
mod transcriber;

#[derive(Parser)]
#[command(
    name = "parley-loadtest",
    about = "Parley benchmarks, side by side with the alternatives"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Voice-note conversion: Parley in-process, over gRPC (unary and
    /// streaming), ffmpeg as the AWS sample runs it, and a libopus
    /// decode-only loop (the physical limit).
    Transcoder(transcoder::Options),
    /// Session lookups and claims per second through gRPC, with latency
    /// percentiles, on the embedded store.
    Session(session::Options),
    /// Voice notes to text: Parley's transcriber against the AWS SDK
    /// straight to the Transcribe emulator (streams per second and the
    /// latency the service adds), plus real-time pacing as the AWS sample.
    Transcriber(transcriber::Options),
    /// The whole bridge end to end (locally, or a deployed one): texts,
    /// bursts, media, voice notes and two-way conversations, closed or open
    /// loop, every message checked; with the AWS sample's approach side by
    /// side on the same voice notes (`--baseline`).
    Pipeline(Box<pipeline::Options>),
}

/// The `p` quantile (0..=1) of sorted latencies, in milliseconds.
fn percentile_ms(sorted: &[std::time::Duration], p: f64) -> f64 {
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)].as_secs_f64() * 1000.0
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Transcoder(options) => transcoder::run(options),
        Command::Session(options) => session::run(options),
        Command::Transcriber(options) => transcriber::run(options),
        Command::Pipeline(options) => pipeline::run(*options),
    }
}
