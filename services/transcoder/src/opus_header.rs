//! The OpusHead and OpusTags packets of RFC 7845: parsing with validation,
//! and writing for the encoder.

use crate::error::{Result, TranscodeError};

/// The identification header of an Ogg Opus stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpusHead {
    /// Output channels (1 or 2 here).
    pub channels: u8,
    /// Samples at 48 kHz to discard from the start of the decoded stream.
    pub pre_skip: u16,
    /// Rate of the original input, informational only.
    pub input_sample_rate: u32,
    /// Gain to apply on output, Q7.8 dB.
    pub output_gain: i16,
    /// Channel mapping family (0, or 1 with a single stream).
    pub mapping_family: u8,
}

impl OpusHead {
    const MAGIC: &'static [u8; 8] = b"OpusHead";

    /// Parses and validates the first packet of the stream.
    pub fn parse(packet: &[u8]) -> Result<Self> {
        if packet.len() < 8 || &packet[..8] != Self::MAGIC {
            let codec = match packet {
                p if p.len() >= 7 && &p[1..7] == b"vorbis" => "vorbis",
                p if p.starts_with(b"Speex") => "speex",
                p if p.starts_with(b"\x7fFLAC") => "flac",
                p if p.starts_with(b"\x80theora") => "theora",
                _ => "an unknown codec",
            };
            return Err(TranscodeError::NotOpus(codec.to_owned()));
        }
        if packet.len() < 19 {
            return Err(TranscodeError::InvalidHeader(format!(
                "OpusHead is {} bytes, at least 19 are required",
                packet.len()
            )));
        }
        let version = packet[8];
        if version >> 4 != 0 {
            return Err(TranscodeError::InvalidHeader(format!(
                "unsupported OpusHead version {version}"
            )));
        }
        let channels = packet[9];
        let pre_skip = u16::from_le_bytes([packet[10], packet[11]]);
        let input_sample_rate =
            u32::from_le_bytes([packet[12], packet[13], packet[14], packet[15]]);
        let output_gain = i16::from_le_bytes([packet[16], packet[17]]);
        let mapping_family = packet[18];
        if channels == 0 {
            return Err(TranscodeError::InvalidHeader("channel count is 0".into()));
        }
        match mapping_family {
            0 if channels <= 2 => {}
            0 => {
                return Err(TranscodeError::InvalidHeader(format!(
                    "mapping family 0 allows 1 or 2 channels, header says {channels}"
                )));
            }
            _ => {
                // Families 1+ carry a channel mapping table; a single coupled
                // or uncoupled stream of at most two channels decodes like
                // family 0. Anything else is true multichannel audio.
                let table = packet.get(19..21).ok_or_else(|| {
                    TranscodeError::InvalidHeader("channel mapping table is missing".into())
                })?;
                let (streams, coupled) = (table[0], table[1]);
                if streams != 1 || channels > 2 || coupled > 1 {
                    return Err(TranscodeError::UnsupportedChannelMapping {
                        family: mapping_family,
                        streams,
                    });
                }
            }
        }
        Ok(Self {
            channels,
            pre_skip,
            input_sample_rate,
            output_gain,
            mapping_family,
        })
    }

    /// Encodes a mapping-family-0 header.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(19);
        out.extend_from_slice(Self::MAGIC);
        out.push(1);
        out.push(self.channels);
        out.extend_from_slice(&self.pre_skip.to_le_bytes());
        out.extend_from_slice(&self.input_sample_rate.to_le_bytes());
        out.extend_from_slice(&self.output_gain.to_le_bytes());
        out.push(0);
        out
    }
}

/// Whether `packet` is the comment header that must follow OpusHead.
pub fn is_opus_tags(packet: &[u8]) -> bool {
    packet.starts_with(b"OpusTags")
}

/// An OpusTags packet naming Parley as the encoder, with no comments.
pub fn opus_tags() -> Vec<u8> {
    let vendor = concat!("parley-transcoder ", env!("CARGO_PKG_VERSION"));
    let mut out = Vec::with_capacity(16 + vendor.len());
    out.extend_from_slice(b"OpusTags");
    out.extend_from_slice(&(vendor.len() as u32).to_le_bytes());
    out.extend_from_slice(vendor.as_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head() -> OpusHead {
        OpusHead {
            channels: 1,
            pre_skip: 312,
            input_sample_rate: 16_000,
            output_gain: -256,
            mapping_family: 0,
        }
    }

    #[test]
    fn round_trips() {
        assert_eq!(OpusHead::parse(&head().to_bytes()).unwrap(), head());
    }

    #[test]
    fn names_other_codecs() {
        let err = OpusHead::parse(b"\x01vorbis\0\0\0\0\x02").unwrap_err();
        assert_eq!(err, TranscodeError::NotOpus("vorbis".into()));
        let err = OpusHead::parse(b"Speex   1.2").unwrap_err();
        assert_eq!(err, TranscodeError::NotOpus("speex".into()));
    }

    #[test]
    fn rejects_absurd_values() {
        let mut bytes = head().to_bytes();
        bytes[9] = 0;
        assert!(matches!(
            OpusHead::parse(&bytes),
            Err(TranscodeError::InvalidHeader(_))
        ));
        let mut bytes = head().to_bytes();
        bytes[9] = 6;
        assert!(matches!(
            OpusHead::parse(&bytes),
            Err(TranscodeError::InvalidHeader(_))
        ));
        let mut bytes = head().to_bytes();
        bytes[8] = 0x10;
        assert!(matches!(
            OpusHead::parse(&bytes),
            Err(TranscodeError::InvalidHeader(_))
        ));
        assert!(matches!(
            OpusHead::parse(&head().to_bytes()[..15]),
            Err(TranscodeError::InvalidHeader(_))
        ));
    }

    #[test]
    fn multichannel_mappings_are_unsupported() {
        let mut bytes = head().to_bytes();
        bytes[9] = 6;
        bytes[18] = 1;
        bytes.extend_from_slice(&[4, 2, 0, 4, 1, 2, 3, 5]);
        assert_eq!(
            OpusHead::parse(&bytes).unwrap_err(),
            TranscodeError::UnsupportedChannelMapping {
                family: 1,
                streams: 4
            }
        );
        let mut bytes = head().to_bytes();
        bytes[18] = 255;
        bytes.extend_from_slice(&[1, 0, 0]);
        assert_eq!(OpusHead::parse(&bytes).unwrap().mapping_family, 255);
    }

    #[test]
    fn tags_are_recognised() {
        assert!(is_opus_tags(&opus_tags()));
        assert!(!is_opus_tags(b"OpusHead"));
    }
}
