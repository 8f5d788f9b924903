//! Helpers shared by the transcoder's integration tests: signal measures and
//! a writer for hand-made OGG/Opus streams (stereo, gains, odd headers).
#![allow(dead_code)]

use ogg::writing::{PacketWriteEndInfo, PacketWriter};
use opus::{Application, Channels, Encoder};
use parley_transcoder::{
    audio::{AudioFormat, InputSpec, Limits, OutputSpec},
    opus_header::{OpusHead, opus_tags},
    pipeline::{Conversion, convert_buffer},
};

/// Decodes `ogg` to mono s16 samples at `rate`.
pub fn decode(ogg: &[u8], rate: u32) -> (Vec<i16>, Conversion) {
    let mut spec = OutputSpec::new(AudioFormat::Pcm);
    spec.sample_rate = rate;
    let (bytes, conversion) =
        convert_buffer(ogg, InputSpec::default(), spec, Limits::default()).expect("decodes");
    (samples(&bytes), conversion)
}

/// s16le bytes to samples.
pub fn samples(bytes: &[u8]) -> Vec<i16> {
    bytes
        .chunks_exact(2)
        .map(|b| i16::from_le_bytes([b[0], b[1]]))
        .collect()
}

/// Normalised cross-correlation at lag 0 of the common prefix.
pub fn correlation(a: &[i16], b: &[i16]) -> f64 {
    let n = a.len().min(b.len());
    let (mut ab, mut aa, mut bb) = (0.0, 0.0, 0.0);
    for i in 0..n {
        let (x, y) = (f64::from(a[i]), f64::from(b[i]));
        ab += x * y;
        aa += x * x;
        bb += y * y;
    }
    ab / (aa.sqrt() * bb.sqrt()).max(1e-9)
}

/// Best normalised correlation within ±`max_lag` samples.
pub fn best_correlation(a: &[i16], b: &[i16], max_lag: usize) -> (f64, isize) {
    let mut best = (f64::MIN, 0isize);
    for lag in -(max_lag as isize)..=(max_lag as isize) {
        let c = if lag >= 0 {
            correlation(&a[lag as usize..], b)
        } else {
            correlation(a, &b[(-lag) as usize..])
        };
        if c > best.0 {
            best = (c, lag);
        }
    }
    best
}

/// Root mean square level.
pub fn rms(x: &[i16]) -> f64 {
    (x.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>() / x.len().max(1) as f64).sqrt()
}

/// Frequency of a pure tone from its zero crossings.
pub fn tone_frequency(x: &[i16], rate: u32) -> f64 {
    let crossings = x.windows(2).filter(|w| (w[0] < 0) != (w[1] < 0)).count();
    crossings as f64 / 2.0 / (x.len() as f64 / f64::from(rate))
}

/// Writes an OGG/Opus stream by hand: `channels` interleaved input at 48 kHz,
/// a chosen header, 20 ms packets, one packet per page for the last few.
pub fn handmade_ogg(interleaved: &[i16], channels: u8, head: OpusHead) -> Vec<u8> {
    let mut encoder = Encoder::new(
        48_000,
        if channels == 2 {
            Channels::Stereo
        } else {
            Channels::Mono
        },
        Application::Audio,
    )
    .unwrap();
    let mut out = Vec::new();
    let mut writer = PacketWriter::new(&mut out);
    writer
        .write_packet(head.to_bytes_any(), 9, PacketWriteEndInfo::EndPage, 0)
        .unwrap();
    writer
        .write_packet(opus_tags(), 9, PacketWriteEndInfo::EndPage, 0)
        .unwrap();
    let frame = 960 * channels as usize;
    let frames: Vec<&[i16]> = interleaved.chunks(frame).collect();
    let mut granule = 0u64;
    let mut packet = vec![0u8; 4000];
    let total = interleaved.len() as u64 / channels as u64 + u64::from(head.pre_skip);
    for (i, chunk) in frames.iter().enumerate() {
        let mut padded = chunk.to_vec();
        padded.resize(frame, 0);
        let n = encoder.encode(&padded, &mut packet).unwrap();
        granule += 960;
        let last = i + 1 == frames.len();
        let (end, gp) = if last {
            (PacketWriteEndInfo::EndStream, total.min(granule))
        } else {
            (PacketWriteEndInfo::NormalPacket, granule)
        };
        writer
            .write_packet(packet[..n].to_vec(), 9, end, gp)
            .unwrap();
    }
    drop(writer);
    out
}

/// Extension so tests can write headers the production writer never would.
pub trait AnyHead {
    fn to_bytes_any(&self) -> Vec<u8>;
}

impl AnyHead for OpusHead {
    fn to_bytes_any(&self) -> Vec<u8> {
        let mut bytes = self.to_bytes();
        bytes[9] = self.channels;
        bytes[18] = self.mapping_family;
        if self.mapping_family != 0 {
            bytes.extend_from_slice(&[1, u8::from(self.channels == 2), 0, 1]);
        }
        bytes
    }
}

/// A header for hand-made streams.
pub fn head(channels: u8, pre_skip: u16, gain_q8: i16) -> OpusHead {
    OpusHead {
        channels,
        pre_skip,
        input_sample_rate: 48_000,
        output_gain: gain_q8,
        mapping_family: 0,
    }
}

/// Recomputes the CRC of every page after a test edits bytes in place.
pub fn fix_crcs(ogg: &mut [u8]) {
    let mut pos = 0;
    while pos + 27 <= ogg.len() && &ogg[pos..pos + 4] == b"OggS" {
        let segments = ogg[pos + 26] as usize;
        if pos + 27 + segments > ogg.len() {
            break;
        }
        let body: usize = ogg[pos + 27..pos + 27 + segments]
            .iter()
            .map(|&s| s as usize)
            .sum();
        let end = pos + 27 + segments + body;
        if end > ogg.len() {
            break;
        }
        ogg[pos + 22..pos + 26].copy_from_slice(&[0; 4]);
        let crc = ogg_crc(&ogg[pos..end]);
        ogg[pos + 22..pos + 26].copy_from_slice(&crc.to_le_bytes());
        pos = end;
    }
}

fn ogg_crc(data: &[u8]) -> u32 {
    let mut crc = 0u32;
    for &byte in data {
        crc ^= u32::from(byte) << 24;
        for _ in 0..8 {
            crc = if crc & 0x8000_0000 != 0 {
                (crc << 1) ^ 0x04c1_1db7
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// Offsets of every page in a stream.
pub fn page_offsets(ogg: &[u8]) -> Vec<usize> {
    let mut offsets = Vec::new();
    let mut pos = 0;
    while pos + 27 <= ogg.len() && &ogg[pos..pos + 4] == b"OggS" {
        offsets.push(pos);
        let segments = ogg[pos + 26] as usize;
        let body: usize = ogg[pos + 27..pos + 27 + segments]
            .iter()
            .map(|&s| s as usize)
            .sum();
        pos += 27 + segments + body;
    }
    offsets
}

/// Whether external audio tools must be present (CI installs them).
pub fn tools_required() -> bool {
    std::env::var("PARLEY_REQUIRE_AUDIO_TOOLS").is_ok_and(|v| v == "1")
}

/// Whether `tool` can be run; panics when tools are required but missing.
pub fn have_tool(tool: &str) -> bool {
    let found = std::process::Command::new(tool)
        .arg("--help")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok();
    assert!(
        found || !tools_required(),
        "{tool} is required (PARLEY_REQUIRE_AUDIO_TOOLS=1) but missing"
    );
    if !found {
        eprintln!("skipping: {tool} is not installed");
    }
    found
}
