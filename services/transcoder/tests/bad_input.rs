//! Bad input gets a clear, specific error — never a panic, never unbounded
//! memory. The property tests at the end mutate real voice notes at random.

mod common;

use common::*;
use parley_transcoder::{
    TranscodeError,
    audio::{AudioFormat, InputSpec, Limits, OutputSpec},
    opus_header::OpusHead,
    pipeline::{convert, convert_buffer, probe},
    synth,
};
use proptest::prelude::*;

fn to_wav(input: &[u8]) -> Result<Vec<u8>, TranscodeError> {
    to_wav_within(input, Limits::default())
}

fn to_wav_within(input: &[u8], limits: Limits) -> Result<Vec<u8>, TranscodeError> {
    convert_buffer(
        input,
        InputSpec::default(),
        OutputSpec::new(AudioFormat::Wav),
        limits,
    )
    .map(|(b, _)| b)
}

/// The same input streamed (no probe first), as ConvertStream runs it.
fn streamed(input: &[u8]) -> Result<Vec<u8>, TranscodeError> {
    streamed_within(input, Limits::default()).map_err(|(e, _)| e)
}

/// Streamed with `limits`; on error also returns what was written before it.
fn streamed_within(input: &[u8], limits: Limits) -> Result<Vec<u8>, (TranscodeError, Vec<u8>)> {
    let mut out = Vec::new();
    match convert(
        input,
        InputSpec::default(),
        &mut out,
        OutputSpec::new(AudioFormat::Wav),
        limits,
    ) {
        Ok(_) => Ok(out),
        Err(e) => Err((e, out)),
    }
}

fn note() -> Vec<u8> {
    synth::voice_note(3.0, 16_000).unwrap()
}

fn assert_both(input: &[u8], check: impl Fn(&TranscodeError) -> bool) {
    for (path, result) in [("buffered", to_wav(input)), ("streamed", streamed(input))] {
        match result {
            Err(e) => assert!(check(&e), "{path}: unexpected error {e:?}"),
            Ok(_) => panic!("{path}: bad input was accepted"),
        }
    }
}

#[test]
fn empty_input() {
    assert_both(b"", |e| *e == TranscodeError::Empty);
}

#[test]
fn random_bytes_and_other_containers() {
    assert_both(
        b"ID3\x04\0\0\0\0\0\0mp3 data here",
        |e| matches!(e, TranscodeError::UnknownContainer(s) if s.starts_with("49 44 33")),
    );
    let noise: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    assert_both(&noise, |e| matches!(e, TranscodeError::UnknownContainer(_)));
}

#[test]
fn ogg_vorbis_is_named() {
    let mut ogg = note();
    // Replace the OpusHead magic with a Vorbis identification header start.
    ogg[28..36].copy_from_slice(b"\x01vorbisX");
    fix_crcs(&mut ogg);
    assert_both(&ogg, |e| *e == TranscodeError::NotOpus("vorbis".into()));
}

#[test]
fn corrupt_page_crc() {
    let mut ogg = note();
    let middle = page_offsets(&ogg)[3] + 40;
    ogg[middle] ^= 0x55;
    assert_both(
        &ogg,
        |e| matches!(e, TranscodeError::CorruptOgg { reason, .. } if reason.contains("ash")),
    );
}

#[test]
fn truncated_inside_a_page() {
    let ogg = note();
    let cut = &ogg[..ogg.len() - 100];
    assert_both(cut, |e| matches!(e, TranscodeError::Truncated(_)));
}

#[test]
fn truncated_at_a_page_boundary() {
    let ogg = note();
    let last = *page_offsets(&ogg).last().unwrap();
    assert_both(
        &ogg[..last],
        |e| matches!(e, TranscodeError::Truncated(m) if m.contains("end-of-stream")),
    );
}

/// `ogg` with its last page no longer the end, and `page` (its flags,
/// lacing values and body) appended after it, CRCs fixed.
fn with_final_page(ogg: &[u8], flags: u8, lacing: &[u8], body: &[u8]) -> Vec<u8> {
    let last = *page_offsets(ogg).last().unwrap();
    let mut out = ogg.to_vec();
    out[last + 5] &= !0x04;
    let mut page = out[last..last + 27].to_vec();
    page[5] = flags;
    let sequence = u32::from_le_bytes(page[18..22].try_into().unwrap()) + 1;
    page[18..22].copy_from_slice(&sequence.to_le_bytes());
    page[26] = lacing.len() as u8;
    page.extend_from_slice(lacing);
    page.extend_from_slice(body);
    out.extend_from_slice(&page);
    fix_crcs(&mut out);
    out
}

/// Writes the hand-made regression inputs (`cargo test -p
/// parley-transcoder --test bad_input -- --ignored write_regressions`).
#[test]
#[ignore = "regenerates tests/regressions"]
fn write_regressions() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/regressions");
    let note = note();
    let last = *page_offsets(&note).last().unwrap();
    let files: [(&str, Vec<u8>); 4] = [
        (
            "bad-unfinished-last-packet.ogg",
            with_final_page(&note, 0x04, &[255], &[0xfc; 255]),
        ),
        ("bad-cut-at-page-boundary.ogg", note[..last].to_vec()),
        (
            "bad-data-after-end-of-stream.ogg",
            [note.clone(), note[..200].to_vec()].concat(),
        ),
        (
            "ok-empty-final-page.ogg",
            with_final_page(&note, 0x04, &[], &[]),
        ),
    ];
    for (name, bytes) in files {
        std::fs::write(dir.join(name), bytes).unwrap();
    }
}

#[test]
fn a_packet_left_unfinished_at_the_end_is_truncated() {
    // The last page's only segment is 255 bytes: its packet goes on in a
    // page that never comes. Dropping it silently would shorten the note.
    let ogg = with_final_page(&note(), 0x04, &[255], &[0xfc; 255]);
    assert_both(
        &ogg,
        |e| matches!(e, TranscodeError::Truncated(m) if m.contains("unfinished")),
    );
}

#[test]
fn an_empty_final_page_is_accepted() {
    // A page with no segments (an encoder closing the stream late) carries
    // nothing and is fine.
    let ogg = with_final_page(&note(), 0x04, &[], &[]);
    let wav = to_wav(&ogg).expect("accepted");
    // The end trimming now sits on a page after the audio, too late to
    // trim it: the same audio, never less.
    assert!(wav.len() >= to_wav(&note()).unwrap().len());
    streamed(&ogg).expect("accepted when streamed");
}

#[test]
fn data_after_the_end_of_stream_page_is_refused() {
    let mut ogg = note();
    let tail = ogg[..200].to_vec();
    ogg.extend_from_slice(&tail);
    assert_both(&ogg, |e| {
        matches!(e, TranscodeError::CorruptOgg { reason, .. } if reason.contains("after the end-of-stream"))
            || matches!(e, TranscodeError::Truncated(_))
    });
}

#[test]
fn absurd_header_values() {
    let mut ogg = note();
    ogg[28 + 9] = 0; // zero channels
    fix_crcs(&mut ogg);
    assert_both(&ogg, |e| matches!(e, TranscodeError::InvalidHeader(_)));

    let mut ogg = note();
    ogg[28 + 8] = 0x20; // OpusHead version 2.x
    fix_crcs(&mut ogg);
    assert_both(&ogg, |e| matches!(e, TranscodeError::InvalidHeader(_)));
}

#[test]
fn surround_mapping_is_unsupported() {
    let tone = synth::tone(400.0, 48_000, 0.2, 0.3);
    let head = OpusHead {
        channels: 6,
        pre_skip: 312,
        input_sample_rate: 48_000,
        output_gain: 0,
        mapping_family: 1,
    };
    let mut ogg = handmade_ogg(&tone, 1, head);
    // Make the mapping table claim four streams.
    let table = 28 + 19;
    ogg[table] = 4;
    fix_crcs(&mut ogg);
    assert_both(&ogg, |e| {
        matches!(
            e,
            TranscodeError::UnsupportedChannelMapping {
                family: 1,
                streams: 4
            }
        )
    });
}

#[test]
fn garbage_opus_packets() {
    let mut ogg = note();
    let offsets = page_offsets(&ogg);
    // Overwrite an audio page's body (after its segment table) with 0xff
    // bytes: framing stays valid, the packets do not.
    let page = offsets[2];
    let segments = ogg[page + 26] as usize;
    let body = page + 27 + segments;
    for b in &mut ogg[body..body + 200] {
        *b = 0xff;
    }
    fix_crcs(&mut ogg);
    assert_both(&ogg, |e| matches!(e, TranscodeError::CorruptPacket { .. }));
}

#[test]
fn wav_with_a_broken_header() {
    let mut wav = b"RIFF\x24\0\0\0WAVEfmt \x10\0\0\0".to_vec();
    wav.extend_from_slice(&[0u8; 8]);
    assert_both(&wav, |e| matches!(e, TranscodeError::InvalidWav(_)));
}

#[test]
fn limits_are_enforced_before_work() {
    let ogg = note();
    let small = Limits {
        max_input_bytes: 1_000,
        max_duration_ms: 60_000,
    };
    let too_large = TranscodeError::TooLarge { limit: 1_000 };
    assert_eq!(to_wav_within(&ogg, small).unwrap_err(), too_large);
    assert_eq!(probe(&ogg, small).unwrap_err(), too_large);
    assert_eq!(streamed_within(&ogg, small).unwrap_err().0, too_large);

    let short = Limits {
        max_input_bytes: 1 << 20,
        max_duration_ms: 1_000,
    };
    let err = to_wav_within(&ogg, short).unwrap_err();
    assert_eq!(
        err,
        TranscodeError::TooLong {
            duration_ms: 3_000,
            limit_ms: 1_000
        }
    );
    let (err, written) = streamed_within(&ogg, short).unwrap_err();
    assert!(
        matches!(
            err,
            TranscodeError::TooLong {
                limit_ms: 1_000,
                ..
            }
        ),
        "{err:?}"
    );
    // The streaming path stopped near the limit rather than decoding it all.
    assert!(
        written.len() < 2 * 16_000 * 2,
        "wrote {} bytes past the limit",
        written.len()
    );
}

#[test]
fn invalid_requests() {
    let ogg = note();
    let mut spec = OutputSpec::new(AudioFormat::Wav);
    spec.sample_rate = 7;
    assert!(matches!(
        convert_buffer(&ogg, InputSpec::default(), spec, Limits::default()),
        Err(TranscodeError::InvalidRequest(_))
    ));
    let raw = InputSpec {
        format: Some(AudioFormat::Pcm),
        sample_rate: 0,
        channels: 1,
    };
    assert!(matches!(
        convert_buffer(
            &[0, 0, 0, 0],
            raw,
            OutputSpec::new(AudioFormat::Wav),
            Limits::default()
        ),
        Err(TranscodeError::InvalidRequest(_))
    ));
}

/// Regression inputs — found by fuzzing (`fuzz/` under this crate), or
/// written for a defect found by hand — live in `tests/regressions/`; each
/// must be converted or refused as its name says (`ok-…`, or a refusal
/// otherwise), never with a panic, and the folder must not be empty (a
/// replay of nothing proves nothing).
#[test]
fn regressions_replay() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/regressions");
    let mut replayed = 0;
    for entry in std::fs::read_dir(&dir).expect("tests/regressions exists") {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let bytes = std::fs::read(&path).unwrap();
        let buffered = to_wav(&bytes);
        let streamed = streamed(&bytes);
        let _ = probe(&bytes, Limits::default());
        if name.starts_with("ok-") {
            assert!(buffered.is_ok() && streamed.is_ok(), "{name}: {buffered:?}");
        } else if name.starts_with("bad-") {
            assert!(
                buffered.is_err() && streamed.is_err(),
                "{name} was accepted"
            );
        }
        replayed += 1;
    }
    assert!(replayed >= 5, "only {replayed} regression inputs");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, .. ProptestConfig::default() })]

    #[test]
    fn mutated_voice_notes_never_panic(
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        cut in any::<prop::sample::Index>(),
        fix in any::<bool>(),
    ) {
        let mut ogg = synth::voice_note(0.5, 16_000).unwrap();
        for (index, value) in flips {
            let i = index.index(ogg.len());
            ogg[i] = value;
        }
        if fix {
            fix_crcs(&mut ogg);
        }
        let len = cut.index(ogg.len() + 1).max(1);
        let input = &ogg[..len];
        let _ = to_wav(input);
        let _ = streamed(input);
        let _ = probe(input, Limits::default());
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..2048), ogg_prefix in any::<bool>(), wav_prefix in any::<bool>()) {
        let mut input = Vec::new();
        if ogg_prefix { input.extend_from_slice(b"OggS\0\x02"); }
        if wav_prefix { input.extend_from_slice(b"RIFF\0\0\0\0WAVEfmt "); }
        input.extend_from_slice(&bytes);
        let _ = to_wav(&input);
        let _ = probe(&input, Limits::default());
    }
}
