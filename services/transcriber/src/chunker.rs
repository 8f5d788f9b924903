//! Re-chunking a client's audio, which arrives in pieces of any size, into
//! Transcribe audio events of a steady duration (50–200 ms; never more than
//! one second). Pure and push-based: bytes go in as they arrive, whole
//! events come out, and at most one event plus one OGG page is held.
//!
//! PCM is cut at sample boundaries. OGG/Opus cannot be cut at arbitrary
//! bytes, so its packets are re-paginated: each event is a run of whole
//! OGG pages whose packets add up to the target duration, measured from
//! the Opus packets themselves (a client's own pages may hold seconds).

use std::time::Duration;

use bytes::Bytes;
use ogg::{PacketWriteEndInfo, PacketWriter};
use parley_transcoder::ogg_reader::OggDemuxer;

use crate::error::TranscribeError;

/// Transcribe's ceiling on the audio in one event.
pub const MAX_EVENT_AUDIO: Duration = Duration::from_secs(1);

/// Opus granule positions always count 48 kHz samples.
const OPUS_RATE: u64 = 48_000;

/// One audio event ready to send.
#[derive(Debug, Clone, PartialEq)]
pub struct AudioChunk {
    /// The event's bytes (PCM samples or whole OGG pages).
    pub bytes: Bytes,
    /// The audio they hold.
    pub duration: Duration,
}

/// Turns arbitrary pieces of audio into [`AudioChunk`]s.
pub enum Chunker {
    /// Signed 16-bit little-endian mono PCM.
    Pcm(PcmChunker),
    /// OGG/Opus.
    OggOpus(Box<OggChunker>),
}

impl Chunker {
    /// Feeds the next piece of audio; returns the events it completed.
    pub fn push(&mut self, bytes: &[u8]) -> Result<Vec<AudioChunk>, TranscribeError> {
        match self {
            Self::Pcm(c) => Ok(c.push(bytes)),
            Self::OggOpus(c) => c.push(bytes),
        }
    }

    /// Ends the audio; returns the last, possibly shorter, event.
    pub fn finish(&mut self) -> Result<Option<AudioChunk>, TranscribeError> {
        match self {
            Self::Pcm(c) => c.finish(),
            Self::OggOpus(c) => c.finish(),
        }
    }

    /// Audio accepted so far, including what is still buffered.
    pub fn audio_seen(&self) -> Duration {
        match self {
            Self::Pcm(c) => c.duration_of(c.total_bytes),
            Self::OggOpus(c) => samples_to_duration(
                c.total_samples + c.held.as_ref().map_or(0, |(_, samples)| *samples),
            ),
        }
    }
}

fn samples_to_duration(samples_48k: u64) -> Duration {
    Duration::from_micros(samples_48k * 1_000_000 / OPUS_RATE)
}

/// Cuts PCM into events of a fixed number of whole samples.
pub struct PcmChunker {
    rate: u32,
    event_bytes: usize,
    pending: Vec<u8>,
    total_bytes: u64,
}

impl PcmChunker {
    /// Events of `event` audio at `rate` Hz (capped at one second).
    pub fn new(rate: u32, event: Duration) -> Self {
        let event = event.min(MAX_EVENT_AUDIO);
        let samples = (u128::from(rate) * event.as_micros() / 1_000_000).max(1) as usize;
        Self {
            rate,
            event_bytes: samples * 2,
            pending: Vec::with_capacity(samples * 2),
            total_bytes: 0,
        }
    }

    fn duration_of(&self, bytes: u64) -> Duration {
        Duration::from_micros(bytes / 2 * 1_000_000 / u64::from(self.rate))
    }

    fn chunk(&self, bytes: Vec<u8>) -> AudioChunk {
        AudioChunk {
            duration: self.duration_of(bytes.len() as u64),
            bytes: bytes.into(),
        }
    }

    fn push(&mut self, mut bytes: &[u8]) -> Vec<AudioChunk> {
        self.total_bytes += bytes.len() as u64;
        let mut out = Vec::new();
        while !bytes.is_empty() {
            let take = (self.event_bytes - self.pending.len()).min(bytes.len());
            self.pending.extend_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
            if self.pending.len() == self.event_bytes {
                let full =
                    std::mem::replace(&mut self.pending, Vec::with_capacity(self.event_bytes));
                out.push(self.chunk(full));
            }
        }
        out
    }

    fn finish(&mut self) -> Result<Option<AudioChunk>, TranscribeError> {
        if !self.pending.len().is_multiple_of(2) {
            return Err(TranscribeError::InvalidAudio(format!(
                "PCM audio ends in the middle of a sample ({} bytes in all; 16-bit samples need an even count)",
                self.total_bytes
            )));
        }
        if self.pending.is_empty() {
            return Ok(None);
        }
        let rest = std::mem::take(&mut self.pending);
        Ok(Some(self.chunk(rest)))
    }
}

/// Re-paginates OGG/Opus into events of whole pages.
pub struct OggChunker {
    target_samples: u64,
    /// The transcoder's demuxer: both services read OGG the same way.
    demuxer: OggDemuxer,
    serial: Option<u32>,
    header_packets: u8,
    writer: PacketWriter<'static, Vec<u8>>,
    /// Samples (48 kHz) in the packets written but not yet emitted.
    event_samples: u64,
    /// Samples in every audio packet so far: the next granule position.
    total_samples: u64,
    /// The page granule the input declared last (its end trimming).
    declared_granule: u64,
    /// Decoder priming samples (OpusHead pre-skip) not yet discounted:
    /// they are decoded but not audio, so no event's duration counts them.
    pre_skip_left: u64,
    /// The latest audio packet and its samples, not yet written.
    held: Option<(Vec<u8>, u64)>,
    finished: bool,
}

impl OggChunker {
    /// Events of about `event` audio each (never above one second).
    pub fn new(event: Duration) -> Self {
        let event = event.min(MAX_EVENT_AUDIO);
        Self {
            target_samples: (u128::from(OPUS_RATE) * event.as_micros() / 1_000_000).max(1) as u64,
            demuxer: OggDemuxer::new(),
            serial: None,
            header_packets: 0,
            writer: PacketWriter::new(Vec::new()),
            event_samples: 0,
            total_samples: 0,
            declared_granule: 0,
            pre_skip_left: 0,
            held: None,
            finished: false,
        }
    }

    fn push(&mut self, bytes: &[u8]) -> Result<Vec<AudioChunk>, TranscribeError> {
        if self.finished && !bytes.is_empty() {
            return Err(invalid("audio after the OGG end-of-stream page"));
        }
        self.demuxer.push(bytes).map_err(from_transcoder)?;
        let mut out = Vec::new();
        while let Some(packet) = self.demuxer.next_packet().map_err(from_transcoder)? {
            if self.serial.is_none() {
                // The demuxer keeps one logical stream; its pages are
                // written back under the same serial.
                self.serial = Some(self.demuxer.serial().unwrap_or_default());
            }
            self.declared_granule = self.demuxer.last_granule();
            let last = packet.last_in_stream;
            self.write_packet(packet.data, &mut out)?;
            if last {
                self.finished = true;
            }
        }
        if self.demuxer.saw_end_of_stream() {
            self.finished = true;
        }
        Ok(out)
    }

    fn write_packet(
        &mut self,
        data: Vec<u8>,
        out: &mut Vec<AudioChunk>,
    ) -> Result<(), TranscribeError> {
        if self.header_packets < 2 {
            // OpusHead and OpusTags each end their own page; they travel
            // with the first audio event.
            let expected: &[u8] = if self.header_packets == 0 {
                b"OpusHead"
            } else {
                b"OpusTags"
            };
            if !data.starts_with(expected) {
                return Err(invalid(format!(
                    "not OGG/Opus: expected the {} header packet",
                    String::from_utf8_lossy(expected)
                )));
            }
            if self.header_packets == 0 && data.len() >= 12 {
                self.pre_skip_left = u64::from(u16::from_le_bytes([data[10], data[11]]));
            }
            self.header_packets += 1;
            return self.write(data, PacketWriteEndInfo::EndPage, 0);
        }
        let samples = opus::packet::get_nb_samples(&data, OPUS_RATE as u32)
            .map_err(|e| invalid(format!("corrupt Opus packet: {e}")))?
            as u64;
        // One packet of lookahead: only at `finish` is the last packet known,
        // and it must end the stream's last page.
        if let Some((held, held_samples)) = self.held.replace((data, samples)) {
            self.write_audio(held, held_samples, samples, out)?;
        }
        Ok(())
    }

    /// Writes one audio packet, ending its page (and emitting the event)
    /// when the next packet would not fit in the event.
    fn write_audio(
        &mut self,
        data: Vec<u8>,
        samples: u64,
        next_samples: u64,
        out: &mut Vec<AudioChunk>,
    ) -> Result<(), TranscribeError> {
        self.total_samples += samples;
        self.event_samples += samples;
        let full = self.event_samples + next_samples > self.target_samples;
        let end = if full {
            PacketWriteEndInfo::EndPage
        } else {
            PacketWriteEndInfo::NormalPacket
        };
        self.write(data, end, self.total_samples)?;
        if full {
            out.push(self.take_event());
        }
        Ok(())
    }

    fn write(
        &mut self,
        data: Vec<u8>,
        end: PacketWriteEndInfo,
        granule: u64,
    ) -> Result<(), TranscribeError> {
        let serial = self.serial.unwrap_or_default();
        self.writer
            .write_packet(data, serial, end, granule)
            .map_err(|e| TranscribeError::Internal(format!("writing an OGG page: {e}")))
    }

    /// Emits everything written since the last event (pages already ended).
    fn take_event(&mut self) -> AudioChunk {
        let bytes = std::mem::take(self.writer.inner_mut());
        let priming = self.pre_skip_left.min(self.event_samples);
        self.pre_skip_left -= priming;
        let duration = samples_to_duration(self.event_samples - priming);
        self.event_samples = 0;
        AudioChunk {
            bytes: bytes.into(),
            duration,
        }
    }

    fn finish(&mut self) -> Result<Option<AudioChunk>, TranscribeError> {
        // Cut inside a page, before the end-of-stream page, or inside a
        // packet: refused, as the transcoder refuses it.
        self.demuxer.finish().map_err(from_transcoder)?;
        if self.header_packets < 2 {
            return Err(invalid("OGG/Opus audio ended before its headers"));
        }
        let Some((last, samples)) = self.held.take() else {
            return Ok(None);
        };
        self.total_samples += samples;
        self.event_samples += samples;
        // The last page keeps the input's end trimming when it declared one.
        let granule = if self.declared_granule > 0 && self.declared_granule <= self.total_samples {
            self.declared_granule
        } else {
            self.total_samples
        };
        self.write(last, PacketWriteEndInfo::EndStream, granule)?;
        // The trimmed tail is not audio either.
        self.event_samples -= (self.total_samples - granule).min(self.event_samples);
        Ok(Some(self.take_event()))
    }
}

fn invalid(message: impl Into<String>) -> TranscribeError {
    TranscribeError::InvalidAudio(message.into())
}

fn from_transcoder(error: parley_transcoder::TranscodeError) -> TranscribeError {
    TranscribeError::InvalidAudio(error.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use parley_transcoder::{
        audio::{AudioFormat, Limits, OutputSpec},
        pipeline::{convert_buffer, probe},
        synth,
    };
    use proptest::arbitrary::Arbitrary as _;

    const EVENT: Duration = Duration::from_millis(100);

    /// Feeds `input` in pieces of varying size (1 byte to a few KiB).
    fn feed(chunker: &mut Chunker, input: &[u8]) -> Result<Vec<AudioChunk>, TranscribeError> {
        let mut out = Vec::new();
        let mut rest = input;
        let mut size = 1;
        while !rest.is_empty() {
            let take = size.min(rest.len());
            out.extend(chunker.push(&rest[..take])?);
            rest = &rest[take..];
            size = (size * 7 + 3) % 5_000 + 1;
        }
        out.extend(chunker.finish()?);
        Ok(out)
    }

    fn decode(ogg: &[u8]) -> Vec<u8> {
        let spec = OutputSpec::new(AudioFormat::Pcm);
        convert_buffer(ogg, Default::default(), spec, Limits::default())
            .unwrap()
            .0
    }

    #[test]
    fn pcm_is_cut_into_equal_events_at_sample_boundaries() {
        let pcm = synth::to_le_bytes(&synth::tone(440.0, 16_000, 1.234, 0.3));
        let mut chunker = Chunker::Pcm(PcmChunker::new(16_000, EVENT));
        let events = feed(&mut chunker, &pcm).unwrap();
        let (last, full) = events.split_last().unwrap();
        assert!(
            full.iter()
                .all(|e| e.bytes.len() == 3_200 && e.duration == EVENT)
        );
        assert!(last.bytes.len() <= 3_200 && last.bytes.len() % 2 == 0);
        assert_eq!(
            events.concat_bytes(),
            pcm,
            "nothing lost, reordered or added"
        );
        assert_eq!(chunker.audio_seen(), Duration::from_micros(1_234_000));
    }

    #[test]
    fn pcm_never_exceeds_one_second_per_event() {
        let mut chunker = PcmChunker::new(48_000, Duration::from_secs(5));
        let events = chunker.push(&vec![0; 48_000 * 2 * 3]);
        assert_eq!(events.len(), 3);
        assert!(events.iter().all(|e| e.duration == MAX_EVENT_AUDIO));
    }

    #[test]
    fn pcm_ending_mid_sample_is_refused() {
        let mut chunker = Chunker::Pcm(PcmChunker::new(16_000, EVENT));
        let error = feed(&mut chunker, &[0; 3_201]).unwrap_err();
        assert!(error.to_string().contains("middle of a sample"), "{error}");
    }

    #[test]
    fn ogg_is_repaginated_into_short_events_that_decode_identically() {
        let note = synth::voice_note(3.0, 16_000).unwrap();
        let mut chunker = Chunker::OggOpus(Box::new(OggChunker::new(EVENT)));
        let events = feed(&mut chunker, &note).unwrap();
        assert!(events.len() >= 29, "{} events for 3 s", events.len());
        for event in &events[..events.len() - 1] {
            assert!(
                (Duration::from_millis(80)..=EVENT).contains(&event.duration),
                "{:?}",
                event.duration
            );
        }
        let total: Duration = events.iter().map(|e| e.duration).sum();
        let info = probe(&note, Limits::default()).unwrap();
        let exact = Duration::from_micros(info.sample_count * 1_000_000 / 48_000);
        assert!(
            total.abs_diff(exact) < Duration::from_millis(1),
            "events count audio, not priming or trimmed samples: {total:?} vs {exact:?}"
        );
        let repaginated = events.concat_bytes();
        assert_eq!(
            probe(&repaginated, Limits::default()).unwrap().sample_count,
            probe(&note, Limits::default()).unwrap().sample_count,
            "the end trimming survives"
        );
        assert_eq!(
            decode(&repaginated),
            decode(&note),
            "the same packets in the same order"
        );
    }

    /// A stream whose every page holds `packets_per_page` 20 ms packets.
    fn long_pages(seconds: f64, packets_per_page: usize) -> Vec<u8> {
        let note = synth::voice_note(seconds, 48_000).unwrap();
        let mut reader = ogg::PacketReader::new(std::io::Cursor::new(note));
        let mut writer = PacketWriter::new(Vec::new());
        let (mut index, mut granule) = (0usize, 0u64);
        while let Some(packet) = reader.read_packet().unwrap() {
            let end = if packet.last_in_stream() {
                PacketWriteEndInfo::EndStream
            } else if index < 2 || (index - 1) % packets_per_page == 0 {
                PacketWriteEndInfo::EndPage
            } else {
                PacketWriteEndInfo::NormalPacket
            };
            if index >= 2 {
                granule += opus::packet::get_nb_samples(&packet.data, 48_000).unwrap() as u64;
            }
            writer.write_packet(packet.data, 7, end, granule).unwrap();
            index += 1;
        }
        writer.into_inner()
    }

    #[test]
    fn pages_holding_seconds_are_split_below_one_second() {
        let input = long_pages(4.0, 150); // 3 s per input page
        let pages = input.windows(4).filter(|w| w == b"OggS").count();
        assert!(pages <= 4, "{pages} input pages");
        let mut chunker = Chunker::OggOpus(Box::new(OggChunker::new(Duration::from_millis(200))));
        let events = feed(&mut chunker, &input).unwrap();
        assert!(
            events
                .iter()
                .all(|e| e.duration <= Duration::from_millis(200))
        );
        assert_eq!(decode(&events.concat_bytes()), decode(&input));
    }

    #[test]
    fn broken_ogg_is_refused_clearly() {
        let note = synth::voice_note(1.0, 16_000).unwrap();
        let cases: [(&[u8], &str); 3] = [
            (b"RIFF\0\0\0\0WAVEfmt and then some more bytes", "OggS"),
            (&note[..note.len() - 10], "inside an ogg page"),
            (&note[..40], "inside an ogg page"),
        ];
        for (input, expected) in cases {
            let mut chunker = Chunker::OggOpus(Box::new(OggChunker::new(EVENT)));
            let error = feed(&mut chunker, input).unwrap_err();
            assert!(error.to_string().contains(expected), "{error}");
        }
        let mut corrupt = note.clone();
        let last = corrupt.len() - 1;
        corrupt[last] ^= 0xff;
        let mut chunker = Chunker::OggOpus(Box::new(OggChunker::new(EVENT)));
        let error = feed(&mut chunker, &corrupt).unwrap_err();
        assert!(matches!(error, TranscribeError::InvalidAudio(_)), "{error}");
    }

    /// Where each OGG page of `ogg` starts.
    fn page_starts(ogg: &[u8]) -> Vec<usize> {
        let mut starts = Vec::new();
        let mut at = 0;
        while at + 27 <= ogg.len() {
            starts.push(at);
            let segments = usize::from(ogg[at + 26]);
            let body: usize = ogg[at + 27..at + 27 + segments]
                .iter()
                .map(|&s| usize::from(s))
                .sum();
            at += 27 + segments + body;
        }
        starts
    }

    #[test]
    fn a_note_cut_at_a_page_boundary_is_refused_like_the_transcoder_refuses_it() {
        // Whole pages, but not the last: a shorter note, which the
        // transcriber used to transcribe with status OK.
        let note = synth::voice_note(3.0, 16_000).unwrap();
        let last = *page_starts(&note).last().unwrap();
        let mut chunker = Chunker::OggOpus(Box::new(OggChunker::new(EVENT)));
        let error = feed(&mut chunker, &note[..last]).unwrap_err();
        assert!(error.to_string().contains("end-of-stream"), "{error}");
        let transcoder = convert_buffer(
            &note[..last],
            Default::default(),
            OutputSpec::new(AudioFormat::Pcm),
            Limits::default(),
        );
        assert!(transcoder.is_err(), "the transcoder refuses it too");
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 64, .. Default::default() })]

        /// However the note is cut into pieces, the events carry the same
        /// audio, each under a second.
        #[test]
        fn any_cut_into_pieces_gives_the_same_audio(
            cuts in proptest::collection::vec(1usize..4_000, 1..40),
        ) {
            let note = synth::voice_note(1.5, 16_000).unwrap();
            let mut chunker = Chunker::OggOpus(Box::new(OggChunker::new(EVENT)));
            let mut events = Vec::new();
            let mut rest = &note[..];
            for cut in cuts.iter().cycle() {
                if rest.is_empty() {
                    break;
                }
                let take = (*cut).min(rest.len());
                events.extend(chunker.push(&rest[..take]).unwrap());
                rest = &rest[take..];
            }
            events.extend(chunker.finish().unwrap());
            proptest::prop_assert!(events.iter().all(|e| e.duration <= MAX_EVENT_AUDIO));
            proptest::prop_assert_eq!(decode(&events.concat_bytes()), decode(&note));
        }

        /// Damaged notes are refused, never a panic.
        #[test]
        fn damaged_notes_are_refused_without_a_panic(
            flips in proptest::collection::vec((proptest::sample::Index::arbitrary(), proptest::prelude::any::<u8>()), 1..6),
            cut in proptest::sample::Index::arbitrary(),
        ) {
            let mut note = synth::voice_note(0.5, 16_000).unwrap();
            for (index, value) in flips {
                let i = index.index(note.len());
                note[i] = value;
            }
            let len = cut.index(note.len() + 1);
            let mut chunker = Chunker::OggOpus(Box::new(OggChunker::new(EVENT)));
            let _ = feed(&mut chunker, &note[..len]);
        }
    }

    trait ConcatBytes {
        fn concat_bytes(&self) -> Vec<u8>;
    }

    impl ConcatBytes for Vec<AudioChunk> {
        fn concat_bytes(&self) -> Vec<u8> {
            self.iter().flat_map(|e| e.bytes.iter().copied()).collect()
        }
    }
}
