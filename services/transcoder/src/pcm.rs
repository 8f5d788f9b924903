//! PCM sources and sinks: the two ends of every conversion. Sources deliver
//! mono 16-bit blocks at their own rate (stereo is mixed down on the way in);
//! sinks take them.

use std::io::{Read, Write};

use crate::{
    audio::{AudioFormat, AudioInfo},
    error::{Result, TranscodeError},
    ogg_reader::read_up_to,
};

/// Frames per block handed down the pipeline by interleaved sources.
const BLOCK_FRAMES: usize = 4096;

/// Something that yields mono 16-bit PCM.
pub trait PcmSource {
    /// Rate of the samples this source yields.
    fn sample_rate(&self) -> u32;
    /// The next block of samples, `None` once the audio is exhausted.
    fn next_block(&mut self) -> Result<Option<&[i16]>>;
    /// Facts about the input as read so far (complete once exhausted).
    fn info(&self) -> AudioInfo;
}

/// Something that consumes mono 16-bit PCM.
pub trait PcmSink {
    /// Takes the next samples.
    fn write(&mut self, samples: &[i16]) -> Result<()>;
    /// Flushes everything; returns facts about the output and, for WAV, the
    /// header with exact sizes.
    fn finish(self: Box<Self>) -> Result<SinkReport>;
}

/// What a sink reports when it is finished.
#[derive(Debug, Clone)]
pub struct SinkReport {
    /// Facts about the output.
    pub info: AudioInfo,
    /// For WAV: the 44-byte header with exact sizes (the one written first
    /// declares unknown sizes when the output is streamed).
    pub final_header: Option<[u8; WAV_HEADER_LEN]>,
}

/// Sample encodings of interleaved PCM input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SampleFormat {
    /// Unsigned 8-bit.
    U8,
    /// Signed 16-bit little-endian.
    S16,
    /// Signed 24-bit little-endian, packed.
    S24,
    /// Signed 32-bit little-endian.
    S32,
    /// IEEE float 32-bit little-endian.
    F32,
}

impl SampleFormat {
    /// Bytes one sample occupies.
    pub fn bytes(self) -> usize {
        match self {
            Self::U8 => 1,
            Self::S16 => 2,
            Self::S24 => 3,
            Self::S32 | Self::F32 => 4,
        }
    }

    fn to_i16(self, b: &[u8]) -> i16 {
        match self {
            Self::U8 => (i16::from(b[0]) - 128) << 8,
            Self::S16 => i16::from_le_bytes([b[0], b[1]]),
            Self::S24 => i16::from_le_bytes([b[1], b[2]]),
            Self::S32 => i16::from_le_bytes([b[2], b[3]]),
            Self::F32 => {
                let v = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
                (v.clamp(-1.0, 1.0) * 32767.0) as i16
            }
        }
    }
}

/// Interleaved PCM from a WAV data chunk or a raw stream, mixed to mono.
pub struct InterleavedSource<R> {
    input: R,
    format: AudioFormat,
    sample_format: SampleFormat,
    channels: u16,
    rate: u32,
    /// Bytes left in the data chunk; `None` reads to the end of input.
    remaining: Option<u64>,
    raw: Vec<u8>,
    block: Vec<i16>,
    frames: u64,
    bytes: u64,
}

impl<R: Read> InterleavedSource<R> {
    /// Raw signed 16-bit little-endian PCM.
    pub fn raw(input: R, rate: u32, channels: u16) -> Result<Self> {
        if !(1..=2).contains(&channels) {
            return Err(TranscodeError::InvalidRequest(format!(
                "raw pcm input needs 1 or 2 channels, got {channels}"
            )));
        }
        if !(1_000..=384_000).contains(&rate) {
            return Err(TranscodeError::InvalidRequest(format!(
                "raw pcm input needs its sample rate (1000..=384000 Hz), got {rate}"
            )));
        }
        Ok(Self::new(
            input,
            AudioFormat::Pcm,
            SampleFormat::S16,
            channels,
            rate,
            None,
        ))
    }

    /// A WAV file: parses the header up to the data chunk.
    pub fn wav(input: R) -> Result<Self> {
        let reader =
            hound::WavReader::new(input).map_err(|e| TranscodeError::InvalidWav(e.to_string()))?;
        let spec = reader.spec();
        let format = match (spec.sample_format, spec.bits_per_sample) {
            (hound::SampleFormat::Int, 8) => SampleFormat::U8,
            (hound::SampleFormat::Int, 16) => SampleFormat::S16,
            (hound::SampleFormat::Int, 24) => SampleFormat::S24,
            (hound::SampleFormat::Int, 32) => SampleFormat::S32,
            (hound::SampleFormat::Float, 32) => SampleFormat::F32,
            (kind, bits) => {
                return Err(TranscodeError::InvalidWav(format!(
                    "unsupported sample format {kind:?} with {bits} bits"
                )));
            }
        };
        let data_len = u64::from(reader.len()) * format.bytes() as u64;
        let input = reader.into_inner();
        let channels = spec.channels;
        if !(1..=2).contains(&channels) {
            return Err(TranscodeError::InvalidWav(format!(
                "{channels} channels: only mono and stereo are supported"
            )));
        }
        let rate = spec.sample_rate;
        if !(1_000..=384_000).contains(&rate) {
            return Err(TranscodeError::InvalidWav(format!(
                "sample rate {rate} Hz is absurd"
            )));
        }
        // Streaming writers declare 0 or 0xFFFFFFFF: read to the end.
        let remaining = (data_len != 0 && data_len < u64::from(u32::MAX)).then_some(data_len);
        Ok(Self::new(
            input,
            AudioFormat::Wav,
            format,
            channels,
            rate,
            remaining,
        ))
    }

    fn new(
        input: R,
        format: AudioFormat,
        sample_format: SampleFormat,
        channels: u16,
        rate: u32,
        remaining: Option<u64>,
    ) -> Self {
        Self {
            input,
            format,
            sample_format,
            channels,
            rate,
            remaining,
            raw: Vec::new(),
            block: Vec::with_capacity(BLOCK_FRAMES),
            frames: 0,
            bytes: 0,
        }
    }
}

impl<R> InterleavedSource<R> {
    /// Bytes per interleaved frame (all channels).
    pub fn frame_bytes(&self) -> usize {
        self.sample_format.bytes() * usize::from(self.channels)
    }

    /// Data bytes the WAV header declares, when it declares a size.
    pub fn declared_data_bytes(&self) -> Option<u64> {
        self.remaining
    }
}

impl<'a> InterleavedSource<&'a [u8]> {
    /// The bytes not read yet.
    pub fn remaining_input(&self) -> &'a [u8] {
        self.input
    }
}

impl<R: Read> PcmSource for InterleavedSource<R> {
    fn sample_rate(&self) -> u32 {
        self.rate
    }

    fn next_block(&mut self) -> Result<Option<&[i16]>> {
        let frame_bytes = self.frame_bytes();
        let mut want = BLOCK_FRAMES * frame_bytes;
        if let Some(remaining) = self.remaining {
            want = want.min(usize::try_from(remaining).unwrap_or(usize::MAX));
        }
        self.raw.resize(want, 0);
        let got = read_up_to(&mut self.input, &mut self.raw)
            .map_err(|e| TranscodeError::from_io(e, "pcm data"))?;
        if let Some(remaining) = &mut self.remaining {
            *remaining -= got as u64;
            if got < want {
                return Err(TranscodeError::Truncated(format!(
                    "wav data chunk ended {} bytes early",
                    *remaining
                )));
            }
        }
        self.bytes += got as u64;
        // A trailing partial frame (odd byte count) is dropped, as players do.
        let whole = got - got % frame_bytes;
        if whole == 0 {
            return Ok(None);
        }
        self.block.clear();
        let width = self.sample_format.bytes();
        for frame in self.raw[..whole].chunks_exact(frame_bytes) {
            let sample = if self.channels == 1 {
                self.sample_format.to_i16(frame)
            } else {
                let left = i32::from(self.sample_format.to_i16(&frame[..width]));
                let right = i32::from(self.sample_format.to_i16(&frame[width..]));
                ((left + right) / 2) as i16
            };
            self.block.push(sample);
        }
        self.frames += self.block.len() as u64;
        Ok(Some(&self.block))
    }

    fn info(&self) -> AudioInfo {
        AudioInfo {
            format: self.format,
            codec: "pcm",
            channels: self.channels,
            sample_rate: self.rate,
            input_sample_rate: self.rate,
            sample_count: self.frames,
            byte_size: self.bytes,
        }
    }
}

/// Length of the canonical RIFF/WAVE header written for 16-bit PCM.
pub const WAV_HEADER_LEN: usize = 44;

/// The 44-byte header of a mono 16-bit WAV. `data_bytes == None` writes the
/// streaming form, whose sizes say "unknown" (0xFFFFFFFF).
pub fn wav_header(rate: u32, data_bytes: Option<u64>) -> [u8; WAV_HEADER_LEN] {
    let data = data_bytes.map_or(u32::MAX, |n| u32::try_from(n).unwrap_or(u32::MAX));
    let riff = data_bytes.map_or(u32::MAX, |_| data.saturating_add(36));
    let mut h = [0u8; WAV_HEADER_LEN];
    h[0..4].copy_from_slice(b"RIFF");
    h[4..8].copy_from_slice(&riff.to_le_bytes());
    h[8..12].copy_from_slice(b"WAVE");
    h[12..16].copy_from_slice(b"fmt ");
    h[16..20].copy_from_slice(&16u32.to_le_bytes());
    h[20..22].copy_from_slice(&1u16.to_le_bytes()); // PCM
    h[22..24].copy_from_slice(&1u16.to_le_bytes()); // mono
    h[24..28].copy_from_slice(&rate.to_le_bytes());
    h[28..32].copy_from_slice(&(rate * 2).to_le_bytes());
    h[32..34].copy_from_slice(&2u16.to_le_bytes());
    h[34..36].copy_from_slice(&16u16.to_le_bytes());
    h[36..40].copy_from_slice(b"data");
    h[40..44].copy_from_slice(&data.to_le_bytes());
    h
}

/// Writes mono 16-bit PCM, with a WAV header or without.
pub struct PcmWriter<W> {
    output: W,
    rate: u32,
    wav: bool,
    samples: u64,
    /// For a WAV whose header declared its size: the samples it declared.
    declared: Option<u64>,
    scratch: Vec<u8>,
}

impl<W: Write> PcmWriter<W> {
    /// A WAV writer; the header is written first, declaring unknown sizes.
    pub fn wav(mut output: W, rate: u32) -> Result<Self> {
        output
            .write_all(&wav_header(rate, None))
            .map_err(|e| TranscodeError::from_io(e, "the output"))?;
        Ok(Self::new(output, rate, true))
    }

    /// A WAV writer whose header, written first, declares exactly
    /// `samples`; writing another count fails at [`PcmSink::finish`].
    pub fn wav_sized(mut output: W, rate: u32, samples: u64) -> Result<Self> {
        output
            .write_all(&wav_header(rate, Some(samples * 2)))
            .map_err(|e| TranscodeError::from_io(e, "the output"))?;
        let mut writer = Self::new(output, rate, true);
        writer.declared = Some(samples);
        Ok(writer)
    }

    /// A headerless s16le writer.
    pub fn raw(output: W, rate: u32) -> Self {
        Self::new(output, rate, false)
    }

    fn new(output: W, rate: u32, wav: bool) -> Self {
        Self {
            output,
            rate,
            wav,
            samples: 0,
            declared: None,
            scratch: Vec::new(),
        }
    }
}

impl<W: Write> PcmSink for PcmWriter<W> {
    fn write(&mut self, samples: &[i16]) -> Result<()> {
        self.scratch.clear();
        self.scratch.reserve(samples.len() * 2);
        for s in samples {
            self.scratch.extend_from_slice(&s.to_le_bytes());
        }
        self.samples += samples.len() as u64;
        self.output
            .write_all(&self.scratch)
            .map_err(|e| TranscodeError::from_io(e, "the output"))
    }

    fn finish(mut self: Box<Self>) -> Result<SinkReport> {
        self.output
            .flush()
            .map_err(|e| TranscodeError::from_io(e, "the output"))?;
        if let Some(declared) = self.declared
            && declared != self.samples
        {
            return Err(TranscodeError::Internal(format!(
                "the header declared {declared} samples, the conversion produced {}",
                self.samples
            )));
        }
        let data_bytes = self.samples * 2;
        Ok(SinkReport {
            info: AudioInfo {
                format: if self.wav {
                    AudioFormat::Wav
                } else {
                    AudioFormat::Pcm
                },
                codec: "pcm_s16le",
                channels: 1,
                sample_rate: self.rate,
                input_sample_rate: self.rate,
                sample_count: self.samples,
                byte_size: data_bytes + if self.wav { WAV_HEADER_LEN as u64 } else { 0 },
            },
            final_header: self.wav.then(|| wav_header(self.rate, Some(data_bytes))),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wav_header_is_read_back_by_hound() {
        let mut bytes = wav_header(16_000, Some(8)).to_vec();
        for s in [1i16, -2, 300, -32768] {
            bytes.extend_from_slice(&s.to_le_bytes());
        }
        let mut reader = hound::WavReader::new(&bytes[..]).unwrap();
        assert_eq!(reader.spec().sample_rate, 16_000);
        assert_eq!(reader.spec().channels, 1);
        let samples: Vec<i16> = reader.samples::<i16>().map(|s| s.unwrap()).collect();
        assert_eq!(samples, [1, -2, 300, -32768]);
    }

    #[test]
    fn stereo_wav_is_mixed_to_mono() {
        let mut bytes = Vec::new();
        let spec = hound::WavSpec {
            channels: 2,
            sample_rate: 44_100,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut w = hound::WavWriter::new(std::io::Cursor::new(&mut bytes), spec).unwrap();
        for (l, r) in [(100i16, 300i16), (-1000, 1000), (32767, 32767)] {
            w.write_sample(l).unwrap();
            w.write_sample(r).unwrap();
        }
        w.finalize().unwrap();
        let mut source = InterleavedSource::wav(&bytes[..]).unwrap();
        assert_eq!(source.sample_rate(), 44_100);
        assert_eq!(source.next_block().unwrap().unwrap(), &[200, 0, 32767]);
        assert!(source.next_block().unwrap().is_none());
        assert_eq!(source.info().sample_count, 3);
    }

    #[test]
    fn float_and_24_bit_samples_scale() {
        assert_eq!(SampleFormat::F32.to_i16(&1.0f32.to_le_bytes()), 32767);
        assert_eq!(SampleFormat::F32.to_i16(&(-2.0f32).to_le_bytes()), -32767);
        assert_eq!(SampleFormat::S24.to_i16(&[0xff, 0x34, 0x12]), 0x1234);
        assert_eq!(SampleFormat::U8.to_i16(&[128]), 0);
    }

    #[test]
    fn truncated_wav_data_is_an_error() {
        let mut bytes = wav_header(8_000, Some(100)).to_vec();
        bytes.extend_from_slice(&[0u8; 10]);
        let mut source = InterleavedSource::wav(&bytes[..]).unwrap();
        assert!(matches!(
            source.next_block(),
            Err(TranscodeError::Truncated(_))
        ));
    }

    #[test]
    fn raw_input_needs_rate_and_channels() {
        assert!(InterleavedSource::raw(&[][..], 0, 1).is_err());
        assert!(InterleavedSource::raw(&[][..], 16_000, 3).is_err());
    }

    #[test]
    fn writer_reports_exact_header() {
        let mut out = Vec::new();
        let mut w = Box::new(PcmWriter::wav(&mut out, 16_000).unwrap());
        w.write(&[1, 2, 3]).unwrap();
        let report = w.finish().unwrap();
        assert_eq!(report.info.sample_count, 3);
        assert_eq!(report.final_header.unwrap(), wav_header(16_000, Some(6)));
        assert_eq!(out.len(), 44 + 6);
        assert_eq!(&out[40..44], &u32::MAX.to_le_bytes());
    }
}
