//! OGG/Opus → mono PCM, exact to the sample: pre-skip removed, output gain
//! applied, and the end trimmed to the final page's granule position.

use std::io::Read;

use crate::{
    audio::{AudioFormat, AudioInfo, OPUS_GRANULE_RATE},
    error::{Result, TranscodeError},
    ogg_reader::OggPacketReader,
    opus_header::{OpusHead, is_opus_tags},
    pcm::PcmSource,
    pool::{MonoDecoder, Pooled},
};

/// Longest Opus packet: 120 ms at 48 kHz.
const MAX_PACKET_SAMPLES_48K: usize = 5_760;

/// Decodes an OGG/Opus stream at one of libopus's native rates.
pub struct OpusSource<R> {
    reader: OggPacketReader<R>,
    head: OpusHead,
    decoder: Pooled<MonoDecoder>,
    rate: u32,
    /// 48 kHz samples per output sample.
    ratio: u64,
    /// Output samples of pre-skip still to drop.
    skip: u64,
    /// Decoded samples of the current page, held until the page's end says
    /// whether the stream ends there (and must be trimmed).
    held: Vec<i16>,
    scratch: Vec<i16>,
    ready: Vec<i16>,
    emitted: u64,
    packets: u64,
    last_packet_samples: usize,
    max_samples: u64,
    finished: bool,
}

impl<R: Read> OpusSource<R> {
    /// Reads the two header packets and prepares a decoder at `rate` (one of
    /// [`crate::audio::OPUS_RATES`]). Audio longer than `max_duration_ms`
    /// fails with [`TranscodeError::TooLong`] as soon as it is reached.
    pub fn open(input: R, rate: u32, max_duration_ms: u64) -> Result<Self> {
        let mut reader = OggPacketReader::new(input);
        let first = reader.next_packet()?.ok_or(TranscodeError::Empty)?;
        let head = OpusHead::parse(&first.data)?;
        let tags = reader
            .next_packet()?
            .ok_or_else(|| TranscodeError::Truncated("stream ends after its OpusHead".into()))?;
        if !is_opus_tags(&tags.data) {
            return Err(TranscodeError::InvalidHeader(
                "the second packet must be OpusTags".into(),
            ));
        }
        let mut decoder = Pooled::<MonoDecoder>::take(rate)?;
        if head.output_gain != 0 {
            decoder
                .get()
                .0
                .set_gain(i32::from(head.output_gain))
                .map_err(|e| TranscodeError::InvalidHeader(format!("output gain: {e}")))?;
        }
        let ratio = u64::from(OPUS_GRANULE_RATE / rate);
        Ok(Self {
            reader,
            head,
            decoder,
            rate,
            ratio,
            skip: u64::from(head.pre_skip) / ratio,
            held: Vec::new(),
            scratch: vec![0; MAX_PACKET_SAMPLES_48K / ratio as usize],
            ready: Vec::new(),
            emitted: 0,
            packets: 0,
            last_packet_samples: 960 / ratio as usize,
            max_samples: max_duration_ms.saturating_mul(u64::from(rate)) / 1000,
            finished: false,
        })
    }

    /// The stream's identification header.
    pub fn head(&self) -> &OpusHead {
        &self.head
    }

    fn decode_packet(&mut self, data: &[u8]) -> Result<()> {
        let decoder = &mut self.decoder.get().0;
        let n = if data.is_empty() {
            // A zero-length packet marks a lost frame: conceal it for the
            // duration of the previous one.
            let len = self.last_packet_samples;
            decoder.decode(&[], &mut self.scratch[..len], false)
        } else {
            decoder.decode(data, &mut self.scratch, false)
        }
        .map_err(|e| TranscodeError::CorruptPacket {
            packet: self.packets,
            reason: e.to_string(),
        })?;
        self.packets += 1;
        self.last_packet_samples = n.max(1);
        let drop = (self.skip as usize).min(n);
        self.skip -= drop as u64;
        self.held.extend_from_slice(&self.scratch[drop..n]);
        if self.emitted + self.held.len() as u64 > self.max_samples {
            return Err(TranscodeError::TooLong {
                duration_ms: (self.emitted + self.held.len() as u64) * 1000 / u64::from(self.rate),
                limit_ms: self.max_samples * 1000 / u64::from(self.rate),
            });
        }
        Ok(())
    }

    /// Moves the held page to `ready`, trimming it if it ends the stream.
    fn release_page(&mut self, end_granule: Option<u64>) {
        if let Some(granule) = end_granule {
            let valid = granule.saturating_sub(u64::from(self.head.pre_skip)) / self.ratio;
            let allowed = valid.saturating_sub(self.emitted);
            if (self.held.len() as u64) > allowed {
                self.held.truncate(allowed as usize);
            }
        }
        std::mem::swap(&mut self.ready, &mut self.held);
        self.held.clear();
        self.emitted += self.ready.len() as u64;
    }
}

impl<R: Read> PcmSource for OpusSource<R> {
    fn sample_rate(&self) -> u32 {
        self.rate
    }

    fn next_block(&mut self) -> Result<Option<&[i16]>> {
        self.ready.clear();
        while !self.finished {
            let Some(packet) = self.reader.next_packet()? else {
                if !self.reader.saw_end_of_stream() {
                    return Err(TranscodeError::Truncated(
                        "input ended before the stream's last page (no end-of-stream flag)".into(),
                    ));
                }
                self.finished = true;
                let granule = self.reader.last_granule();
                self.release_page(Some(granule));
                break;
            };
            self.decode_packet(&packet.data)?;
            if packet.last_in_stream {
                // Nothing may follow the last packet: no data after the
                // end-of-stream page, no packet left unfinished.
                if self.reader.next_packet()?.is_some() {
                    return Err(TranscodeError::corrupt(
                        self.reader.bytes_read(),
                        "a packet after the end-of-stream page",
                    ));
                }
                self.finished = true;
                self.release_page(Some(packet.granule));
                break;
            }
            if packet.last_in_page && !self.held.is_empty() {
                self.release_page(None);
                break;
            }
        }
        Ok((!self.ready.is_empty()).then_some(self.ready.as_slice()))
    }

    fn info(&self) -> AudioInfo {
        AudioInfo {
            format: AudioFormat::OggOpus,
            codec: "opus",
            channels: u16::from(self.head.channels),
            sample_rate: OPUS_GRANULE_RATE,
            input_sample_rate: self.head.input_sample_rate,
            sample_count: self.emitted * self.ratio,
            byte_size: self.reader.bytes_read(),
        }
    }
}

/// Reads an OGG/Opus stream's structure without decoding audio: validates
/// framing, headers and every packet's table of contents, and returns exact
/// facts. About 1 % of the cost of decoding.
pub fn probe_ogg_opus(input: impl Read) -> Result<AudioInfo> {
    let mut reader = OggPacketReader::new(input);
    let first = reader.next_packet()?.ok_or(TranscodeError::Empty)?;
    let head = OpusHead::parse(&first.data)?;
    let tags = reader
        .next_packet()?
        .ok_or_else(|| TranscodeError::Truncated("stream ends after its OpusHead".into()))?;
    if !is_opus_tags(&tags.data) {
        return Err(TranscodeError::InvalidHeader(
            "the second packet must be OpusTags".into(),
        ));
    }
    let mut index = 0u64;
    let mut decoded = 0u64;
    while let Some(packet) = reader.next_packet()? {
        if !packet.data.is_empty() {
            let samples =
                opus::packet::get_nb_samples(&packet.data, OPUS_GRANULE_RATE).map_err(|e| {
                    TranscodeError::CorruptPacket {
                        packet: index,
                        reason: e.to_string(),
                    }
                })?;
            decoded += samples as u64;
        }
        index += 1;
    }
    if !reader.saw_end_of_stream() {
        return Err(TranscodeError::Truncated(
            "input ended before the stream's last page (no end-of-stream flag)".into(),
        ));
    }
    let end = reader.last_granule().min(decoded);
    Ok(AudioInfo {
        format: AudioFormat::OggOpus,
        codec: "opus",
        channels: u16::from(head.channels),
        sample_rate: OPUS_GRANULE_RATE,
        input_sample_rate: head.input_sample_rate,
        sample_count: end.saturating_sub(u64::from(head.pre_skip)),
        byte_size: reader.bytes_read(),
    })
}
