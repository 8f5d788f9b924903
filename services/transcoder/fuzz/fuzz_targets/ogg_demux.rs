//! The shared OGG demuxer, fed in pieces whose sizes the input chooses:
//! every packet it yields and every refusal must come without a panic, and
//! the same bytes cut differently must give the same packets.
#![no_main]

use libfuzzer_sys::fuzz_target;
use parley_transcoder::ogg_reader::OggDemuxer;

fn packets(data: &[u8], piece: usize) -> Result<Vec<Vec<u8>>, String> {
    let mut demuxer = OggDemuxer::new();
    let mut out = Vec::new();
    for chunk in data.chunks(piece.max(1)) {
        demuxer.push(chunk).map_err(|e| e.to_string())?;
        while let Some(packet) = demuxer.next_packet().map_err(|e| e.to_string())? {
            out.push(packet.data);
        }
    }
    demuxer.finish().map_err(|e| e.to_string())?;
    Ok(out)
}

fuzz_target!(|input: (u16, &[u8])| {
    let (piece, data) = input;
    let whole = packets(data, data.len());
    let pieces = packets(data, usize::from(piece % 512) + 1);
    if let (Ok(a), Ok(b)) = (&whole, &pieces) {
        assert_eq!(a, b, "the cut changed the packets");
    }
});
