//! Per-thread reuse of codec state that is costly to create.
//!
//! Creating an Opus decoder runs libopus's CPU feature detection, which
//! executes `CPUID`; on virtual machines (EC2, Fargate, Lambda) every `CPUID`
//! traps to the hypervisor, costing ~100 µs per decoder — as much as
//! decoding a second of speech. An FFT resampler costs 0.1–0.4 ms to plan.
//! Codec work runs on a fixed set of blocking threads, so a small per-thread
//! cache removes both costs after warm-up.

use std::{cell::RefCell, thread::LocalKey};

use opus::{Channels, Decoder};
use rubato::{FftFixedInOut, Resampler};

use crate::error::{Result, TranscodeError};

/// At most this many idle values of one type are kept per thread.
const MAX_IDLE_PER_THREAD: usize = 4;

/// A per-thread cache of idle values, keyed by configuration.
pub type IdleCache<K, V> = LocalKey<RefCell<Vec<(K, V)>>>;

/// Codec state that can be cached per thread and reset between uses.
pub trait Reusable: Sized + 'static {
    /// What distinguishes one configuration from another (e.g. the rate).
    type Key: PartialEq + Copy + 'static;
    /// Creates a fresh value.
    fn create(key: Self::Key) -> Result<Self>;
    /// Returns a used value to its initial state.
    fn reset(&mut self) -> Result<()>;
    /// This type's per-thread cache.
    fn idle() -> &'static IdleCache<Self::Key, Self>;
}

/// A value borrowed from this thread's cache; returned to it on drop.
pub struct Pooled<T: Reusable> {
    key: T::Key,
    value: Option<T>,
}

impl<T: Reusable> Pooled<T> {
    /// A reset value for `key`, cached or new.
    pub fn take(key: T::Key) -> Result<Self> {
        let cached = T::idle().with(|idle| {
            let mut idle = idle.borrow_mut();
            let index = idle.iter().position(|(k, _)| *k == key)?;
            Some(idle.swap_remove(index).1)
        });
        let value = match cached {
            Some(mut value) => {
                value.reset()?;
                value
            }
            None => T::create(key)?,
        };
        Ok(Self {
            key,
            value: Some(value),
        })
    }

    /// The value itself.
    pub fn get(&mut self) -> &mut T {
        self.value.as_mut().expect("present until drop")
    }
}

impl<T: Reusable> Drop for Pooled<T> {
    fn drop(&mut self) {
        if let Some(value) = self.value.take() {
            // At thread exit the cache may already be gone; then just drop.
            let _ = T::idle().try_with(|idle| {
                let mut idle = idle.borrow_mut();
                if idle.len() < MAX_IDLE_PER_THREAD {
                    idle.push((self.key, value));
                }
            });
        }
    }
}

/// A mono libopus decoder at one of its native rates.
pub struct MonoDecoder(pub Decoder);

thread_local! {
    static IDLE_DECODERS: RefCell<Vec<(u32, MonoDecoder)>> = const { RefCell::new(Vec::new()) };
    static IDLE_RESAMPLERS: RefCell<Vec<((u32, u32), MonoResampler)>> = const { RefCell::new(Vec::new()) };
}

impl Reusable for MonoDecoder {
    type Key = u32;

    fn create(rate: u32) -> Result<Self> {
        Decoder::new(rate, Channels::Mono)
            .map(Self)
            .map_err(|e| TranscodeError::Internal(format!("opus decoder at {rate} Hz: {e}")))
    }

    fn reset(&mut self) -> Result<()> {
        self.0
            .reset_state()
            .map_err(|e| TranscodeError::Internal(format!("opus decoder reset: {e}")))
    }

    fn idle() -> &'static IdleCache<u32, Self> {
        &IDLE_DECODERS
    }
}

/// A mono FFT resampler between two rates. FFT resampling is numerically
/// transparent for voice (51–65 dB SNR against a reference) and cheaper than
/// long sinc filters.
pub struct MonoResampler(pub FftFixedInOut<f32>);

impl Reusable for MonoResampler {
    type Key = (u32, u32);

    fn create((from, to): (u32, u32)) -> Result<Self> {
        FftFixedInOut::new(from as usize, to as usize, 1024, 1)
            .map(Self)
            .map_err(|e| {
                TranscodeError::InvalidRequest(format!("cannot resample {from} Hz to {to} Hz: {e}"))
            })
    }

    fn reset(&mut self) -> Result<()> {
        self.0.reset();
        Ok(())
    }

    fn idle() -> &'static IdleCache<(u32, u32), Self> {
        &IDLE_RESAMPLERS
    }
}
