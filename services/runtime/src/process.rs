//! The two ends of every `parley-*` binary's `main`: run the async entry
//! point on a multi-threaded runtime, and turn the outcome into an exit
//! status with a one-line reason on stderr.

use std::{future::Future, process::ExitCode};

/// Runs `entry` to completion on a fresh multi-threaded tokio runtime.
pub fn block_on<T>(entry: impl Future<Output = anyhow::Result<T>>) -> anyhow::Result<T> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| anyhow::anyhow!("cannot start the async runtime: {e}"))?
        .block_on(entry)
}

/// Success, or failure with `binary: reason` (the whole error chain on one
/// line) on stderr.
pub fn exit(binary: &str, outcome: anyhow::Result<()>) -> ExitCode {
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("{binary}: {error:#}");
            ExitCode::FAILURE
        }
    }
}
