//! A concurrency gate for Transcribe streams. Transcribe limits concurrent
//! streams per account (25 by default in most regions); past the gate's
//! permits callers wait in a bounded queue for a bounded time, and beyond
//! that get a clear "busy" at once instead of a failure from AWS mid-note.

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::TranscribeError;

/// Limits concurrent streams, with a bounded wait queue.
#[derive(Clone)]
pub struct ConcurrencyGate {
    permits: Arc<Semaphore>,
    max_streams: usize,
    waiting: Arc<AtomicUsize>,
    max_waiting: usize,
    max_wait: Duration,
}

/// Held for the life of one stream; dropping it lets the next one in.
#[derive(Debug)]
pub struct GatePermit {
    _permit: OwnedSemaphorePermit,
}

/// Decrements the waiting count however the wait ends.
struct Waiting(Arc<AtomicUsize>);

impl Drop for Waiting {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl ConcurrencyGate {
    /// At most `max_streams` at once, `max_waiting` more waiting up to
    /// `max_wait` each.
    pub fn new(max_streams: usize, max_waiting: usize, max_wait: Duration) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(max_streams)),
            max_streams,
            waiting: Arc::new(AtomicUsize::new(0)),
            max_waiting,
            max_wait,
        }
    }

    /// Enters the gate, waiting in the queue if needed; `Busy` when the
    /// queue is full or the wait runs out.
    pub async fn enter(&self) -> Result<GatePermit, TranscribeError> {
        if let Ok(permit) = self.permits.clone().try_acquire_owned() {
            return Ok(GatePermit { _permit: permit });
        }
        let joined = self
            .waiting
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.max_waiting).then_some(n + 1)
            });
        if joined.is_err() {
            return Err(TranscribeError::Busy(format!(
                "all {} transcription streams are in use and {} more are waiting; retry later",
                self.max_streams, self.max_waiting
            )));
        }
        let _waiting = Waiting(self.waiting.clone());
        match tokio::time::timeout(self.max_wait, self.permits.clone().acquire_owned()).await {
            Ok(Ok(permit)) => Ok(GatePermit { _permit: permit }),
            Ok(Err(_)) => Err(TranscribeError::Internal("the gate was closed".into())),
            Err(_) => Err(TranscribeError::Busy(format!(
                "no transcription stream became free within {} ms; retry later",
                self.max_wait.as_millis()
            ))),
        }
    }

    /// Streams running now.
    pub fn in_use(&self) -> usize {
        self.max_streams - self.permits.available_permits()
    }

    /// Callers waiting now.
    pub fn waiting(&self) -> usize {
        self.waiting.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn waits_in_a_bounded_queue_then_refuses() {
        let gate = ConcurrencyGate::new(1, 1, Duration::from_secs(10));
        let first = gate.enter().await.unwrap();
        assert_eq!(gate.in_use(), 1);

        let queued = tokio::spawn({
            let gate = gate.clone();
            async move { gate.enter().await }
        });
        while gate.waiting() == 0 {
            tokio::task::yield_now().await;
        }
        let refused = gate.enter().await.unwrap_err();
        assert!(matches!(refused, TranscribeError::Busy(_)), "{refused}");

        drop(first);
        let second = queued.await.unwrap().unwrap();
        assert_eq!((gate.in_use(), gate.waiting()), (1, 0));
        drop(second);
        assert_eq!(gate.in_use(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_wait_that_runs_out_is_refused() {
        let gate = ConcurrencyGate::new(1, 4, Duration::from_millis(200));
        let _held = gate.enter().await.unwrap();
        let refused = gate.enter().await.unwrap_err();
        assert!(refused.to_string().contains("within 200 ms"), "{refused}");
        assert_eq!(gate.waiting(), 0, "a timed-out waiter leaves the queue");
    }
}
