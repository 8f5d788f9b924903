//! A pipeline stage that changes a source's sample rate with rubato, keeping
//! the output aligned (the resampler's delay is removed) and its length
//! exact (`round(input × out / in)` samples).

use rubato::Resampler;

use crate::{
    audio::AudioInfo,
    error::{Result, TranscodeError},
    pcm::PcmSource,
    pool::{MonoResampler, Pooled},
};

/// Wraps a source and yields its audio at another rate.
pub struct ResampledSource<'a> {
    inner: Box<dyn PcmSource + 'a>,
    resampler: Pooled<MonoResampler>,
    from: u32,
    to: u32,
    pending: Vec<f32>,
    output: Vec<f32>,
    ready: Vec<i16>,
    delay_left: usize,
    consumed: u64,
    produced: u64,
    inner_done: bool,
    flushed: bool,
}

impl<'a> ResampledSource<'a> {
    /// Resamples `inner` to `to` Hz.
    pub fn new(inner: Box<dyn PcmSource + 'a>, to: u32) -> Result<Self> {
        let from = inner.sample_rate();
        let mut resampler = Pooled::<MonoResampler>::take((from, to))?;
        let delay_left = resampler.get().0.output_delay();
        let output = vec![0.0; resampler.get().0.output_frames_max()];
        Ok(Self {
            inner,
            resampler,
            from,
            to,
            pending: Vec::new(),
            output,
            ready: Vec::new(),
            delay_left,
            consumed: 0,
            produced: 0,
            inner_done: false,
            flushed: false,
        })
    }

    /// Samples the output must have in total for the input read so far.
    fn expected_total(&self) -> u64 {
        (self.consumed * u64::from(self.to) + u64::from(self.from) / 2) / u64::from(self.from)
    }

    fn process_chunk(&mut self, frames: usize) -> Result<()> {
        let resampler = &mut self.resampler.get().0;
        let (used, made) = resampler
            .process_into_buffer(
                &[&self.pending[..frames]],
                &mut [&mut self.output[..]],
                None,
            )
            .map_err(|e| TranscodeError::Internal(format!("resampler: {e}")))?;
        self.pending.drain(..used);
        for &sample in &self.output[..made] {
            if self.delay_left > 0 {
                self.delay_left -= 1;
                continue;
            }
            self.ready
                .push((sample * 32768.0).round().clamp(-32768.0, 32767.0) as i16);
        }
        Ok(())
    }
}

impl PcmSource for ResampledSource<'_> {
    fn sample_rate(&self) -> u32 {
        self.to
    }

    fn next_block(&mut self) -> Result<Option<&[i16]>> {
        self.ready.clear();
        while self.ready.is_empty() && !self.flushed {
            let need = self.resampler.get().0.input_frames_next();
            while self.pending.len() < need && !self.inner_done {
                match self.inner.next_block()? {
                    Some(block) => {
                        self.consumed += block.len() as u64;
                        self.pending
                            .extend(block.iter().map(|&s| f32::from(s) / 32768.0));
                    }
                    None => self.inner_done = true,
                }
            }
            if self.pending.len() >= need {
                self.process_chunk(need)?;
            } else {
                // End of input: push zeros through until the delayed tail is
                // out, then cut to the exact length.
                let expected = self.expected_total();
                let mut guard = 0;
                while self.produced + (self.ready.len() as u64) < expected && guard < 64 {
                    self.pending.resize(need, 0.0);
                    self.process_chunk(need)?;
                    guard += 1;
                }
                let keep = expected.saturating_sub(self.produced) as usize;
                self.ready.truncate(keep);
                self.flushed = true;
            }
        }
        self.produced += self.ready.len() as u64;
        Ok((!self.ready.is_empty()).then_some(self.ready.as_slice()))
    }

    fn info(&self) -> AudioInfo {
        self.inner.info()
    }
}
