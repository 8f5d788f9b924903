//! Encoding WAV/PCM to WhatsApp voice notes.

mod common;

use common::*;
use parley_transcoder::{
    audio::{AudioFormat, InputSpec, Limits, OutputSpec},
    opus_header::OpusHead,
    pipeline::{convert_buffer, probe},
    synth,
};

fn stereo_wav(rate: u32, left: &[i16], right: &[i16]) -> Vec<u8> {
    let mut bytes = Vec::new();
    let spec = hound::WavSpec {
        channels: 2,
        sample_rate: rate,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::new(std::io::Cursor::new(&mut bytes), spec).unwrap();
    for (&l, &r) in left.iter().zip(right) {
        w.write_sample(l).unwrap();
        w.write_sample(r).unwrap();
    }
    w.finalize().unwrap();
    bytes
}

#[test]
fn stereo_44k_wav_becomes_a_mono_voice_note() {
    let tone = synth::tone(700.0, 44_100, 2.0, 0.4);
    let wav = stereo_wav(44_100, &tone, &tone);
    let (ogg, conversion) = convert_buffer(
        &wav,
        InputSpec::default(),
        OutputSpec::new(AudioFormat::OggOpus),
        Limits::default(),
    )
    .unwrap();
    assert_eq!(conversion.source.channels, 2);
    assert_eq!(conversion.source.sample_rate, 44_100);

    let info = probe(&ogg, Limits::default()).unwrap();
    assert_eq!(info.channels, 1, "voice notes are mono");
    assert_eq!(
        info.input_sample_rate, 44_100,
        "the header records the original rate"
    );
    assert_eq!(info.duration_ms(), 2_000);

    // The header is a plain family-0 mono OpusHead, as WhatsApp expects.
    let head_page_body = &ogg[28..47];
    let head = OpusHead::parse(head_page_body).unwrap();
    assert_eq!(head.mapping_family, 0);
    assert!(head.pre_skip > 0);

    let (decoded, _) = decode(&ogg, 48_000);
    let freq = tone_frequency(&decoded[4_800..], 48_000);
    assert!((freq - 700.0).abs() < 10.0, "{freq} Hz");
}

#[test]
fn round_trip_keeps_the_signal() {
    let input = synth::speech_like(16_000, 4.0, 5);
    let ogg = synth::encode_pcm(&input, 16_000).unwrap();
    let info = probe(&ogg, Limits::default()).unwrap();
    assert_eq!(info.sample_count, input.len() as u64 * 3);
    let bitrate = ogg.len() as f64 * 8.0 / 4.0;
    assert!(
        (15_000.0..35_000.0).contains(&bitrate),
        "about 24 kbps, got {bitrate}"
    );
    let (decoded, _) = decode(&ogg, 16_000);
    assert_eq!(decoded.len(), input.len());
    assert!(correlation(&decoded, &input) > 0.85);
}

#[test]
fn raw_pcm_at_any_rate_encodes() {
    let input = synth::tone(440.0, 22_050, 1.0, 0.5);
    let spec = InputSpec {
        format: Some(AudioFormat::Pcm),
        sample_rate: 22_050,
        channels: 1,
    };
    let (ogg, _) = convert_buffer(
        &synth::to_le_bytes(&input),
        spec,
        OutputSpec::new(AudioFormat::OggOpus),
        Limits::default(),
    )
    .unwrap();
    let info = probe(&ogg, Limits::default()).unwrap();
    assert_eq!(info.input_sample_rate, 22_050);
    assert_eq!(info.duration_ms(), 1_000);
}

#[test]
fn opusinfo_accepts_our_voice_notes() {
    if !have_tool("opusinfo") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("note.ogg");
    std::fs::write(&path, synth::voice_note(3.0, 16_000).unwrap()).unwrap();
    let out = std::process::Command::new("opusinfo")
        .arg(&path)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    assert!(
        !text.contains("WARNING") && !text.contains("ERROR"),
        "{text}"
    );
    assert!(text.contains("Playback length: 0m:03.000s"), "{text}");
    assert!(text.contains("Channels: 1"), "{text}");
}
