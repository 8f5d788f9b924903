//! How a call is made: a deadline per attempt, and retries — with
//! exponential backoff and jitter (backon), honouring the service's
//! `retry_after` — only for retryable errors on idempotent calls.

use std::{future::Future, time::Duration};

use backon::{ExponentialBuilder, Retryable as _};

use crate::error::{ClientError, Result};

/// Deadlines and retries of the calls a client makes.
#[derive(Debug, Clone)]
pub struct CallPolicy {
    /// Each unary attempt's deadline (sent as `grpc-timeout`).
    pub deadline: Duration,
    /// Deadline of calls that move media or run long (a voice note).
    pub media_deadline: Duration,
    /// Attempts of an idempotent call, the first included.
    pub attempts: usize,
    /// First backoff delay.
    pub min_delay: Duration,
    /// Longest backoff delay (and cap on a service's `retry_after`).
    pub max_delay: Duration,
}

impl Default for CallPolicy {
    fn default() -> Self {
        Self {
            deadline: Duration::from_secs(10),
            media_deadline: Duration::from_secs(300),
            attempts: 4,
            min_delay: Duration::from_millis(50),
            max_delay: Duration::from_secs(2),
        }
    }
}

impl CallPolicy {
    /// No retries (each call is tried once).
    pub fn once(mut self) -> Self {
        self.attempts = 1;
        self
    }

    /// Runs `attempt` until it succeeds, fails with an error that is not
    /// worth retrying, or the attempts run out. Non-idempotent calls are
    /// tried once: a lost response would otherwise make the call happen
    /// twice.
    pub async fn run<T, F, Fut>(&self, idempotent: bool, attempt: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let retries = if idempotent {
            self.attempts.saturating_sub(1)
        } else {
            0
        };
        let backoff = ExponentialBuilder::default()
            .with_min_delay(self.min_delay)
            .with_max_delay(self.max_delay)
            .with_max_times(retries)
            .with_jitter();
        let max_delay = self.max_delay;
        attempt
            .retry(backoff)
            .when(|error: &ClientError| error.is_retryable())
            .adjust(move |error: &ClientError, delay| {
                // Out of attempts stays out; otherwise prefer the service's
                // own advice, within reason.
                delay.map(|delay| error.retry_after().map_or(delay, |d| d.min(max_delay)))
            })
            .notify(|error: &ClientError, delay| {
                tracing::debug!(error = %error, delay_ms = delay.as_millis() as u64, "retrying");
            })
            .await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use parley_proto::{
        common::{ErrorDetail, ErrorReason},
        errors,
    };
    use tonic::Code;

    use super::*;

    fn error(retryable: bool) -> ClientError {
        let detail = ErrorDetail::new(ErrorReason::Unavailable).retryable(retryable);
        ClientError::from_status(
            "test",
            "call",
            errors::status(Code::Unavailable, "x", detail),
        )
    }

    fn fast() -> CallPolicy {
        CallPolicy {
            min_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(2),
            ..CallPolicy::default()
        }
    }

    #[tokio::test]
    async fn retryable_errors_on_idempotent_calls_are_retried() {
        let calls = AtomicUsize::new(0);
        let result = fast()
            .run(true, || async {
                if calls.fetch_add(1, Ordering::SeqCst) < 2 {
                    Err(error(true))
                } else {
                    Ok(7)
                }
            })
            .await;
        assert_eq!(result.unwrap(), 7);
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn attempts_are_bounded() {
        let calls = AtomicUsize::new(0);
        let result: Result<()> = fast()
            .run(true, || async {
                calls.fetch_add(1, Ordering::SeqCst);
                Err(error(true))
            })
            .await;
        assert!(result.is_err());
        assert_eq!(calls.load(Ordering::SeqCst), 4);
    }

    #[tokio::test]
    async fn non_idempotent_calls_and_final_errors_are_tried_once() {
        for (idempotent, retryable) in [(false, true), (true, false)] {
            let calls = AtomicUsize::new(0);
            let result: Result<()> = fast()
                .run(idempotent, || async {
                    calls.fetch_add(1, Ordering::SeqCst);
                    Err(error(retryable))
                })
                .await;
            assert!(result.is_err());
            assert_eq!(calls.load(Ordering::SeqCst), 1, "{idempotent} {retryable}");
        }
    }
}
