//! Reads Opus packets out of an OGG stream, strictly: pages must follow
//! each other, carry valid CRCs and belong to one logical stream; the
//! stream must end with its end-of-stream page and no packet left
//! unfinished. [`OggDemuxer`] takes bytes pushed in any pieces (the
//! transcriber's chunker uses it too); [`OggPacketReader`] pulls them from
//! any `Read`. Built on the `ogg` crate's push parser, so no `Seek` is
//! needed.

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

/// Page header flags.
const FLAG_BEGIN: u8 = 0x02;
const FLAG_END: u8 = 0x04;

/// One hardened OGG demuxer for every Parley crate that reads OGG (the
/// transcoder's decoder and the transcriber's chunker share it, so a note
/// one accepts the other accepts too). Push bytes in pieces of any size;
/// pull the packets whole pages complete. It checks each page — capture
/// pattern, version, CRC (the `ogg` crate's parser), one logical stream
/// (the first page begins it, no page after it begins another), nothing
/// after the end-of-stream page — joins packets continued across pages,
/// tolerates pages without segments, and at the end of input
/// ([`Self::finish`]) refuses a stream cut inside a page, one that never
/// reached its end-of-stream page, and one whose last packet was left
/// unfinished.
pub struct OggDemuxer {
    buffer: bytes::BytesMut,
    base: BasePacketReader,
    offset: u64,
    serial: Option<u32>,
    saw_end_of_stream: bool,
    last_granule: u64,
    /// The last page read ends with a 255 lacing value: its last packet
    /// goes on in the next page.
    continues: bool,
}

impl Default for OggDemuxer {
    fn default() -> Self {
        Self::new()
    }
}

impl OggDemuxer {
    /// A demuxer that has seen nothing.
    pub fn new() -> Self {
        Self {
            buffer: bytes::BytesMut::new(),
            base: BasePacketReader::new(),
            offset: 0,
            serial: None,
            saw_end_of_stream: false,
            last_granule: 0,
            continues: false,
        }
    }

    /// Takes the next piece of input.
    pub fn push(&mut self, bytes: &[u8]) -> Result<()> {
        if self.saw_end_of_stream && !bytes.is_empty() && self.buffer.is_empty() {
            return Err(TranscodeError::corrupt(
                self.offset,
                "data after the end-of-stream page",
            ));
        }
        self.buffer.extend_from_slice(bytes);
        Ok(())
    }

    /// The next complete packet, or `None` until more input arrives.
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
            if !self.read_page()? {
                return Ok(None);
            }
        }
    }

    /// Ends the input: `Truncated` when it stopped inside a page, before
    /// the end-of-stream page, or inside a packet.
    pub fn finish(&self) -> Result<()> {
        if !self.buffer.is_empty() {
            return Err(TranscodeError::Truncated(format!(
                "input ended inside an ogg page at byte {} ({} bytes of it)",
                self.offset,
                self.buffer.len()
            )));
        }
        if self.serial.is_none() {
            return Err(TranscodeError::Truncated("no ogg page at all".into()));
        }
        if self.continues {
            return Err(TranscodeError::Truncated(
                "the last packet was left unfinished (its page continues it, no page follows)"
                    .into(),
            ));
        }
        if !self.saw_end_of_stream {
            return Err(TranscodeError::Truncated(format!(
                "input ended at byte {} before the ogg end-of-stream page",
                self.offset
            )));
        }
        Ok(())
    }

    /// Whether the stream's last page (end-of-stream flag) has been read.
    pub fn saw_end_of_stream(&self) -> bool {
        self.saw_end_of_stream
    }

    /// Granule position of the last page read (the stream's end trimming,
    /// once the last page is in).
    pub fn last_granule(&self) -> u64 {
        self.last_granule
    }

    /// Bytes of whole pages read so far.
    pub fn bytes_read(&self) -> u64 {
        self.offset
    }

    /// The logical stream's serial number, once its first page is read.
    pub fn serial(&self) -> Option<u32> {
        self.serial
    }

    /// Bytes held that do not yet make a whole page.
    pub fn buffered(&self) -> usize {
        self.buffer.len()
    }

    /// Reads one page from the buffer into the packet parser; `false` when
    /// the buffer does not hold a whole page.
    fn read_page(&mut self) -> Result<bool> {
        let offset = self.offset;
        if self.buffer.len() < 27 {
            return Ok(false);
        }
        if &self.buffer[..4] != b"OggS" {
            return Err(TranscodeError::corrupt(
                offset,
                "expected an ogg page (capture pattern \"OggS\")",
            ));
        }
        let segment_count = usize::from(self.buffer[26]);
        if self.buffer.len() < 27 + segment_count {
            return Ok(false);
        }
        let body_len: usize = self.buffer[27..27 + segment_count]
            .iter()
            .map(|&s| usize::from(s))
            .sum();
        let page_len = 27 + segment_count + body_len;
        if self.buffer.len() < page_len {
            return Ok(false);
        }
        if self.saw_end_of_stream {
            return Err(TranscodeError::corrupt(
                offset,
                "data after the end-of-stream page",
            ));
        }
        // Whole pages are split off without copying what follows.
        let page = self.buffer.split_to(page_len).freeze();
        let header: [u8; 27] = page[..27].try_into().expect("27 bytes");
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
        let (mut parser, _) =
            PageParser::new(header).map_err(|e| TranscodeError::corrupt(offset, e.to_string()))?;
        let segments = page[27..27 + segment_count].to_vec();
        parser.parse_segments(segments);
        let parsed = parser
            .parse_packet_data(page[27 + segment_count..].to_vec())
            .map_err(|e| TranscodeError::corrupt(offset, e.to_string()))?;
        self.offset += page_len as u64;
        if flags & FLAG_END != 0 {
            self.saw_end_of_stream = true;
        }
        if granule != u64::MAX {
            self.last_granule = granule;
        }
        // A page without segments carries no packet data; the parser cannot
        // take it (and it has nothing to give).
        if segment_count > 0 {
            self.continues = page[26 + segment_count] == 255;
            self.base
                .push_page(parsed)
                .map_err(|e| TranscodeError::corrupt(offset, e.to_string()))?;
        }
        Ok(true)
    }
}

/// Pulls packets from an OGG byte stream (any `Read`), through an
/// [`OggDemuxer`].
pub struct OggPacketReader<R> {
    input: R,
    demuxer: OggDemuxer,
    exhausted: bool,
}

/// Bytes read from the input at a time.
const READ_CHUNK: usize = 16 * 1024;

impl<R: Read> OggPacketReader<R> {
    /// Wraps `input`; nothing is read yet.
    pub fn new(input: R) -> Self {
        Self {
            input,
            demuxer: OggDemuxer::new(),
            exhausted: false,
        }
    }

    /// The next packet, or `None` at the end of the stream. A stream whose
    /// input ends inside a page or inside a packet is `Truncated`; one that
    /// ends without its end-of-stream page yields its packets and then
    /// `None` (callers check [`Self::saw_end_of_stream`], as a probe of a
    /// partial note may want to).
    pub fn next_packet(&mut self) -> Result<Option<OggPacket>> {
        loop {
            if let Some(packet) = self.demuxer.next_packet()? {
                return Ok(Some(packet));
            }
            if self.demuxer.saw_end_of_stream() && self.demuxer.buffered() == 0 {
                // The last page may still leave a packet unfinished, and
                // nothing may follow it.
                self.demuxer.finish()?;
                if !self.exhausted {
                    let mut probe = [0u8; 1];
                    if read_up_to(&mut self.input, &mut probe)
                        .map_err(|e| TranscodeError::from_io(e, "the end of the input"))?
                        > 0
                    {
                        return Err(TranscodeError::corrupt(
                            self.demuxer.bytes_read(),
                            "data after the end-of-stream page",
                        ));
                    }
                    self.exhausted = true;
                }
                return Ok(None);
            }
            if self.exhausted {
                if self.demuxer.buffered() > 0 || self.demuxer.continues {
                    self.demuxer.finish()?;
                }
                return Ok(None);
            }
            let mut chunk = vec![0u8; READ_CHUNK];
            let got = read_up_to(&mut self.input, &mut chunk)
                .map_err(|e| TranscodeError::from_io(e, "an ogg page"))?;
            if got == 0 {
                self.exhausted = true;
            } else {
                self.demuxer.push(&chunk[..got])?;
            }
        }
    }

    /// Whether the stream's last page (end-of-stream flag) has been read.
    pub fn saw_end_of_stream(&self) -> bool {
        self.demuxer.saw_end_of_stream()
    }

    /// Granule position of the last page read that completed a packet.
    pub fn last_granule(&self) -> u64 {
        self.demuxer.last_granule()
    }

    /// Bytes consumed so far.
    pub fn bytes_read(&self) -> u64 {
        self.demuxer.bytes_read()
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
