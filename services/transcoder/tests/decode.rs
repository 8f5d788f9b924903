//! OGG/Opus decoding: exact lengths, fidelity, rates, gain, stereo, and
//! agreement with independent tools.

mod common;

use common::*;
use parley_transcoder::{
    audio::{AudioFormat, InputSpec, Limits, OutputSpec},
    pipeline::{convert_buffer, probe},
    synth,
};

#[test]
fn decodes_to_every_native_rate_with_exact_sample_count() {
    // 2.5 s at 16 kHz = 40,000 samples: not a whole number of 20 ms frames
    // after pre-skip, so end trimming must be right for the count to match.
    let input = synth::tone(440.0, 16_000, 2.5, 0.5);
    let ogg = synth::encode_pcm(&input, 16_000).unwrap();
    for rate in [8_000, 12_000, 16_000, 24_000, 48_000] {
        let (decoded, conversion) = decode(&ogg, rate);
        let expected = input.len() * rate as usize / 16_000;
        assert_eq!(decoded.len(), expected, "sample count at {rate} Hz");
        assert_eq!(conversion.output.sample_count, expected as u64);
        assert_eq!(conversion.output.duration_ms(), 2_500);
        let freq = tone_frequency(&decoded[rate as usize / 10..], rate);
        assert!(
            (freq - 440.0).abs() < 5.0,
            "{rate} Hz output carries {freq} Hz instead of 440"
        );
    }
}

#[test]
fn decodes_to_non_opus_rates_through_the_resampler() {
    let input = synth::tone(1_000.0, 48_000, 2.0, 0.5);
    let ogg = synth::encode_pcm(&input, 48_000).unwrap();
    for rate in [22_050, 44_100, 11_025] {
        let (decoded, _) = decode(&ogg, rate);
        let expected = (input.len() as u64 * u64::from(rate) + 24_000) / 48_000;
        assert_eq!(decoded.len() as u64, expected, "sample count at {rate} Hz");
        let freq = tone_frequency(&decoded[rate as usize / 10..], rate);
        assert!(
            (freq - 1_000.0).abs() < 8.0,
            "{rate} Hz output carries {freq} Hz"
        );
        assert!(
            rms(&decoded) > 0.3 * 32767.0 / 2f64.sqrt(),
            "level kept at {rate} Hz"
        );
    }
}

#[test]
fn decoded_output_is_aligned_with_the_original() {
    // Pre-skip removed: the decode lines up with the input at lag 0 (±1).
    let input = synth::speech_like(16_000, 3.0, 3);
    let ogg = synth::encode_pcm(&input, 16_000).unwrap();
    let (decoded, _) = decode(&ogg, 16_000);
    assert_eq!(decoded.len(), input.len());
    let (corr, lag) = best_correlation(&decoded, &input, 40);
    assert!(lag.abs() <= 1, "decode is offset by {lag} samples");
    assert!(corr > 0.85, "speech-like round trip correlation {corr}");
}

#[test]
fn round_trip_keeps_a_chirp() {
    let input = synth::chirp(200.0, 3_400.0, 16_000, 2.0, 0.4);
    let ogg = synth::encode_pcm(&input, 16_000).unwrap();
    let (decoded, _) = decode(&ogg, 16_000);
    let corr = correlation(&decoded, &input);
    assert!(corr > 0.9, "chirp correlation {corr}");
}

#[test]
fn wav_output_has_an_exact_header() {
    let ogg = synth::voice_note(1.0, 16_000).unwrap();
    let (wav, conversion) = convert_buffer(
        &ogg,
        InputSpec::default(),
        OutputSpec::new(AudioFormat::Wav),
        Limits::default(),
    )
    .unwrap();
    let reader = hound::WavReader::new(&wav[..]).unwrap();
    assert_eq!(reader.spec().sample_rate, 16_000);
    assert_eq!(reader.spec().channels, 1);
    assert_eq!(reader.spec().bits_per_sample, 16);
    assert_eq!(u64::from(reader.len()), conversion.output.sample_count);
    assert_eq!(reader.len(), 16_000);
}

#[test]
fn stereo_is_mixed_down_to_mono() {
    // Left carries a tone, right its inverse plus another tone: the mono
    // mix must keep only the second tone (at half level).
    let left = synth::tone(500.0, 48_000, 1.0, 0.4);
    let right_extra = synth::tone(1_500.0, 48_000, 1.0, 0.4);
    let interleaved: Vec<i16> = left
        .iter()
        .zip(&right_extra)
        .flat_map(|(&l, &r)| [l, r.saturating_sub(l)])
        .collect();
    let ogg = handmade_ogg(&interleaved, 2, head(2, 312, 0));
    let (decoded, conversion) = decode(&ogg, 48_000);
    assert_eq!(conversion.source.channels, 2);
    // 50 packets of 960 decoded, less the 312 samples of pre-skip.
    assert_eq!(decoded.len(), 48_000 - 312);
    let freq = tone_frequency(&decoded[4_800..], 48_000);
    assert!((freq - 1_500.0).abs() < 30.0, "mono mix carries {freq} Hz");
}

#[test]
fn output_gain_is_applied() {
    let input = synth::tone(800.0, 48_000, 1.0, 0.5);
    let plain = handmade_ogg(&input, 1, head(1, 312, 0));
    // -6.02 dB in Q7.8 halves the amplitude.
    let quieter = handmade_ogg(&input, 1, head(1, 312, -1541));
    let (a, _) = decode(&plain, 48_000);
    let (b, _) = decode(&quieter, 48_000);
    let ratio = rms(&b) / rms(&a);
    assert!((ratio - 0.5).abs() < 0.03, "gain ratio {ratio}");
}

#[test]
fn pre_skip_and_end_trim_follow_the_header() {
    let input = synth::tone(300.0, 48_000, 1.0, 0.5);
    // 1,000 samples of pre-skip: 50 packets of 960 decode to 1,000 fewer.
    let ogg = handmade_ogg(&input, 1, head(1, 1_000, 0));
    let (decoded, _) = decode(&ogg, 48_000);
    assert_eq!(decoded.len(), 48_000 - 1_000);
    // The skipped samples are the first ones: the tone starts at once.
    let (reference, _) = decode(&handmade_ogg(&input, 1, head(1, 0, 0)), 48_000);
    assert!(correlation(&decoded, &reference[1_000..]) > 0.99);
    let info = probe(&ogg, Limits::default()).unwrap();
    assert_eq!(info.sample_count, decoded.len() as u64);
}

#[test]
fn probe_reports_exact_facts() {
    let ogg = synth::voice_note(2.0, 48_000).unwrap();
    let info = probe(&ogg, Limits::default()).unwrap();
    assert_eq!(info.container(), "ogg");
    assert_eq!(info.codec, "opus");
    assert_eq!(info.channels, 1);
    assert_eq!(info.sample_rate, 48_000);
    assert_eq!(info.input_sample_rate, 48_000);
    assert_eq!(info.duration_ms(), 2_000);
    assert_eq!(info.byte_size, ogg.len() as u64);
}

#[test]
fn agrees_with_ffmpeg_and_opusenc() {
    if !have_tool("ffmpeg") || !have_tool("opusenc") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // An independent encoder's file (opusenc) decodes to the right length.
    let input = synth::speech_like(16_000, 3.0, 11);
    let wav = dir.path().join("in.wav");
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 16_000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut writer = hound::WavWriter::create(&wav, spec).unwrap();
    input.iter().for_each(|&s| writer.write_sample(s).unwrap());
    writer.finalize().unwrap();
    let ogg = dir.path().join("in.ogg");
    let status = std::process::Command::new("opusenc")
        .args(["--quiet", "--bitrate", "24"])
        .arg(&wav)
        .arg(&ogg)
        .status()
        .unwrap();
    assert!(status.success());
    let bytes = std::fs::read(&ogg).unwrap();
    let (ours, _) = decode(&bytes, 16_000);
    assert_eq!(
        ours.len(),
        input.len(),
        "opusenc file decodes to its exact length"
    );

    // ffmpeg's own decode of the same file matches ours closely.
    let theirs_path = dir.path().join("ffmpeg.wav");
    let status = std::process::Command::new("ffmpeg")
        .args(["-loglevel", "error", "-y", "-i"])
        .arg(&ogg)
        .args(["-ar", "16000", "-ac", "1"])
        .arg(&theirs_path)
        .status()
        .unwrap();
    assert!(status.success());
    let theirs: Vec<i16> = hound::WavReader::open(&theirs_path)
        .unwrap()
        .samples::<i16>()
        .map(Result::unwrap)
        .collect();
    let (corr, _) = best_correlation(&ours, &theirs, 8);
    assert!(corr > 0.9, "ffmpeg and parley decodes correlate at {corr}");
    assert!(
        (theirs.len() as i64 - ours.len() as i64).abs() <= 16,
        "ffmpeg {} vs ours {}",
        theirs.len(),
        ours.len()
    );
}
