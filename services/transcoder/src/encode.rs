//! Mono PCM → OGG/Opus that WhatsApp accepts as a voice note: one mono
//! stream, VOIP application, 20 ms frames, correct pre-skip and granule
//! positions (the final one trims the padding of the last frame).

use std::io::Write;

use ogg::writing::{PacketWriteEndInfo, PacketWriter};
use opus::{Application, Bitrate, Channels, Encoder};

use crate::{
    audio::{AudioFormat, AudioInfo, OPUS_GRANULE_RATE},
    error::{Result, TranscodeError},
    opus_header::{OpusHead, opus_tags},
    pcm::{PcmSink, SinkReport},
};

/// Largest packet we let the encoder produce (far above 24 kbps needs).
const MAX_PACKET_BYTES: usize = 4_000;
/// Packets per OGG page: one second of audio, the granularity at which a
/// streaming reader sees progress.
const PACKETS_PER_PAGE: u64 = 50;

/// Counts bytes that pass through to the output.
struct CountingWriter<W> {
    inner: W,
    bytes: u64,
}

impl<W: Write> Write for CountingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Encodes mono PCM at an Opus rate into an OGG/Opus stream.
pub struct OpusSink<W: Write> {
    writer: PacketWriter<'static, CountingWriter<W>>,
    encoder: Encoder,
    serial: u32,
    rate: u32,
    ratio: u64,
    frame: Vec<i16>,
    frame_len: usize,
    lookahead: u64,
    pre_skip: u64,
    /// Real input samples (at `rate`).
    input_samples: u64,
    /// Samples fed to the encoder, padding included.
    encoded_samples: u64,
    packets: u64,
    packet: Vec<u8>,
}

impl<W: Write> OpusSink<W> {
    /// Starts a stream at `rate` (an Opus rate) recording `input_rate` in
    /// its header, and writes the two header pages.
    pub fn new(output: W, rate: u32, input_rate: u32, bitrate: u32) -> Result<Self> {
        let internal = |e: opus::Error| TranscodeError::Internal(format!("opus encoder: {e}"));
        let mut encoder =
            Encoder::new(rate, Channels::Mono, Application::Voip).map_err(internal)?;
        encoder
            .set_bitrate(Bitrate::Bits(bitrate as i32))
            .map_err(internal)?;
        let lookahead = encoder.get_lookahead().map_err(internal)? as u64;
        let ratio = u64::from(OPUS_GRANULE_RATE / rate);
        let pre_skip = lookahead * ratio;
        let head = OpusHead {
            channels: 1,
            pre_skip: u16::try_from(pre_skip)
                .map_err(|_| TranscodeError::Internal("pre-skip overflow".into()))?,
            input_sample_rate: input_rate,
            output_gain: 0,
            mapping_family: 0,
        };
        // Any stable value works; derive it from the rate so output is reproducible.
        let serial = 0x5041_0000 | (rate / 1000);
        let mut writer = PacketWriter::new(CountingWriter {
            inner: output,
            bytes: 0,
        });
        let io = |e| TranscodeError::from_io(e, "the output");
        writer
            .write_packet(head.to_bytes(), serial, PacketWriteEndInfo::EndPage, 0)
            .map_err(io)?;
        writer
            .write_packet(opus_tags(), serial, PacketWriteEndInfo::EndPage, 0)
            .map_err(io)?;
        let frame_len = rate as usize / 50;
        Ok(Self {
            writer,
            encoder,
            serial,
            rate,
            ratio,
            frame: Vec::with_capacity(frame_len),
            frame_len,
            lookahead,
            pre_skip,
            input_samples: 0,
            encoded_samples: 0,
            packets: 0,
            packet: vec![0; MAX_PACKET_BYTES],
        })
    }

    fn encode_frame(&mut self, end: PacketWriteEndInfo) -> Result<()> {
        self.frame.resize(self.frame_len, 0);
        let n = self
            .encoder
            .encode(&self.frame, &mut self.packet)
            .map_err(|e| TranscodeError::Internal(format!("opus encode: {e}")))?;
        self.frame.clear();
        self.encoded_samples += self.frame_len as u64;
        self.packets += 1;
        // A page's granule position counts every sample decoded up to its
        // last packet (pre-skip included); only the last page may claim
        // fewer, which is how the padding of the final frame is trimmed.
        let (end, granule) = match end {
            PacketWriteEndInfo::EndStream => (end, self.pre_skip + self.input_samples * self.ratio),
            _ if self.packets.is_multiple_of(PACKETS_PER_PAGE) => (
                PacketWriteEndInfo::EndPage,
                self.encoded_samples * self.ratio,
            ),
            _ => (
                PacketWriteEndInfo::NormalPacket,
                self.encoded_samples * self.ratio,
            ),
        };
        self.writer
            .write_packet(self.packet[..n].to_vec(), self.serial, end, granule)
            .map_err(|e| TranscodeError::from_io(e, "the output"))
    }
}

impl<W: Write> PcmSink for OpusSink<W> {
    fn write(&mut self, mut samples: &[i16]) -> Result<()> {
        self.input_samples += samples.len() as u64;
        while !samples.is_empty() {
            let take = (self.frame_len - self.frame.len()).min(samples.len());
            self.frame.extend_from_slice(&samples[..take]);
            samples = &samples[take..];
            if self.frame.len() == self.frame_len {
                self.encode_frame(PacketWriteEndInfo::NormalPacket)?;
            }
        }
        Ok(())
    }

    fn finish(mut self: Box<Self>) -> Result<SinkReport> {
        // Feed zeros until the encoder's lookahead has pushed the last real
        // sample out; the final granule position trims the excess.
        let needed = self.input_samples + self.lookahead;
        while self.encoded_samples + (self.frame_len as u64) < needed {
            self.encode_frame(PacketWriteEndInfo::NormalPacket)?;
        }
        self.encode_frame(PacketWriteEndInfo::EndStream)?;
        let writer = self.writer.inner_mut();
        writer
            .flush()
            .map_err(|e| TranscodeError::from_io(e, "the output"))?;
        let byte_size = writer.bytes;
        Ok(SinkReport {
            info: AudioInfo {
                format: AudioFormat::OggOpus,
                codec: "opus",
                channels: 1,
                sample_rate: OPUS_GRANULE_RATE,
                input_sample_rate: self.rate,
                sample_count: self.input_samples * self.ratio,
                byte_size,
            },
            final_header: None,
        })
    }
}
