//! Reads Opus packets out of an OGG stream from any `Read`, strictly: pages
//! must follow each other, carry valid CRCs, and belong to one logical
//! stream. Built on the `ogg` crate's push parser, so no `Seek` is needed and
//! input can arrive in network chunks.

use std::io::Read;

use ogg::reading::{BasePacketReader, PageParser};

use crate::error::{Result, TranscodeError};

/// One packet with the facts about the page it completed on.
#[derive(Debug)]
pub struct OggPacket {
    /// The packet bytes.
    pub data: Vec<u8>,
    /// Granule position of the page the packet ended on.
    pub granule: u64,
    /// Last packet completed on its page.
    pub last_in_page: bool,
    /// Last packet of the stream (its page has the end-of-stream flag).
    pub last_in_stream: bool,
}

/// Pulls packets from an OGG byte stream.
pub struct OggPacketReader<R> {
    input: R,
    base: BasePacketReader,
    offset: u64,
    serial: Option<u32>,
    saw_end_of_stream: bool,
    last_granule: u64,
}

const FLAG_BEGIN: u8 = 0x02;
const FLAG_END: u8 = 0x04;

impl<R: Read> OggPacketReader<R> {
    /// Wraps `input`; nothing is read yet.
    pub fn new(input: R) -> Self {
        Self {
            input,
            base: BasePacketReader::new(),
            offset: 0,
            serial: None,
            saw_end_of_stream: false,
            last_granule: 0,
        }
    }

    /// The next packet, or `None` at the end of the input.
    pub fn next_packet(&mut self) -> Result<Option<OggPacket>> {
        loop {
            if let Some(packet) = self.base.read_packet() {
                return Ok(Some(OggPacket {
                    last_in_page: packet.last_in_page(),
                    last_in_stream: packet.last_in_stream(),
                    granule: packet.absgp_page(),
                    data: packet.data,
                }));
            }
            if self.saw_end_of_stream || !self.read_page()? {
                return Ok(None);
            }
        }
    }

    /// Whether the stream's last page (end-of-stream flag) has been read.
    pub fn saw_end_of_stream(&self) -> bool {
        self.saw_end_of_stream
    }

    /// Granule position of the last page read that completed a packet.
    pub fn last_granule(&self) -> u64 {
        self.last_granule
    }

    /// Bytes consumed so far.
    pub fn bytes_read(&self) -> u64 {
        self.offset
    }

    /// Reads one page into the packet parser; `false` at a clean end of input.
    fn read_page(&mut self) -> Result<bool> {
        let offset = self.offset;
        let mut header = [0u8; 27];
        let got = read_up_to(&mut self.input, &mut header)
            .map_err(|e| TranscodeError::from_io(e, "an ogg page header"))?;
        if got == 0 {
            return Ok(false);
        }
        if got < header.len() {
            return Err(TranscodeError::Truncated(format!(
                "input ended inside the ogg page header at byte {offset}"
            )));
        }
        if &header[..4] != b"OggS" {
            return Err(TranscodeError::corrupt(
                offset,
                "expected an ogg page (capture pattern \"OggS\")",
            ));
        }
        let flags = header[5];
        let granule = u64::from_le_bytes(header[6..14].try_into().expect("8 bytes"));
        let serial = u32::from_le_bytes(header[14..18].try_into().expect("4 bytes"));
        match self.serial {
            None if flags & FLAG_BEGIN == 0 => {
                return Err(TranscodeError::corrupt(
                    offset,
                    "first page lacks the beginning-of-stream flag",
                ));
            }
            None => self.serial = Some(serial),
            Some(expected) if expected != serial || flags & FLAG_BEGIN != 0 => {
                return Err(TranscodeError::corrupt(
                    offset,
                    "a second logical stream starts here: multiplexed or chained ogg is not supported",
                ));
            }
            Some(_) => {}
        }

        let (mut parser, segment_count) =
            PageParser::new(header).map_err(|e| TranscodeError::corrupt(offset, e.to_string()))?;
        let mut segments = vec![0u8; segment_count];
        self.input
            .read_exact(&mut segments)
            .map_err(|e| TranscodeError::from_io(e, "an ogg segment table"))?;
        let body_len = parser.parse_segments(segments);
        let mut body = vec![0u8; body_len];
        self.input
            .read_exact(&mut body)
            .map_err(|e| TranscodeError::from_io(e, "an ogg page body"))?;
        let page = parser
            .parse_packet_data(body)
            .map_err(|e| TranscodeError::corrupt(offset, e.to_string()))?;
        self.offset += (27 + segment_count + body_len) as u64;

        if flags & FLAG_END != 0 {
            self.saw_end_of_stream = true;
        }
        if granule != u64::MAX {
            self.last_granule = granule;
        }
        // A page without segments carries no packet data; the parser cannot
        // take it (and it has nothing to give).
        if segment_count > 0 {
            self.base
                .push_page(page)
                .map_err(|e| TranscodeError::corrupt(offset, e.to_string()))?;
        }
        Ok(true)
    }
}

/// Fills `buf` as far as the input allows; returns the bytes read.
pub(crate) fn read_up_to(input: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match input.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}
