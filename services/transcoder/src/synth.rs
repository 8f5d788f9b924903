//! Deterministic test audio: tones, chirps and a speech-like signal, and
//! voice notes encoded from them. Used by the tests, the demo and the
//! benchmarks, so none of them depends on audio files or network access.

use std::f64::consts::TAU;

use crate::{
    audio::{AudioFormat, InputSpec, Limits, OutputSpec},
    error::Result,
    pipeline::convert_buffer,
};

/// A sine tone.
pub fn tone(freq: f64, rate: u32, seconds: f64, amplitude: f64) -> Vec<i16> {
    let n = (seconds * f64::from(rate)) as usize;
    (0..n)
        .map(|i| {
            let t = i as f64 / f64::from(rate);
            (amplitude * 32767.0 * (TAU * freq * t).sin()) as i16
        })
        .collect()
}

/// A linear chirp from `f0` to `f1` Hz.
pub fn chirp(f0: f64, f1: f64, rate: u32, seconds: f64, amplitude: f64) -> Vec<i16> {
    let n = (seconds * f64::from(rate)) as usize;
    let k = (f1 - f0) / seconds;
    (0..n)
        .map(|i| {
            let t = i as f64 / f64::from(rate);
            (amplitude * 32767.0 * (TAU * (f0 * t + 0.5 * k * t * t)).sin()) as i16
        })
        .collect()
}

/// A speech-like signal: a glottal pulse train with a wandering pitch,
/// shaped by vowel formants that change every syllable, with syllable-rate
/// loudness and a faint noise floor. It exercises the voice codec the way
/// speech does (voiced harmonics, formant structure, pauses) without
/// pretending to say anything.
pub fn speech_like(rate: u32, seconds: f64, seed: u64) -> Vec<i16> {
    // (F1, F2, F3) of a few vowels, Hz.
    const VOWELS: [(f64, f64, f64); 5] = [
        (730.0, 1090.0, 2440.0),
        (270.0, 2290.0, 3010.0),
        (530.0, 1840.0, 2480.0),
        (570.0, 840.0, 2410.0),
        (300.0, 870.0, 2240.0),
    ];
    let fs = f64::from(rate);
    let n = (seconds * fs) as usize;
    let mut rng = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let mut noise = move || {
        rng = rng
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((rng >> 33) as f64 / f64::from(1u32 << 31)) - 1.0
    };
    let syllable = (0.18 * fs) as usize;
    let mut out = Vec::with_capacity(n);
    let mut phase = 0.0;
    // Two-pole resonator state per formant.
    let mut state = [[0.0f64; 2]; 3];
    let mut vowel = VOWELS[0];
    for i in 0..n {
        if i % syllable == 0 {
            vowel = VOWELS[((i / syllable) as u64 ^ seed) as usize % VOWELS.len()];
        }
        let t = i as f64 / fs;
        let pitch = 140.0 + 30.0 * (TAU * 0.7 * t).sin() + 10.0 * (TAU * 2.3 * t).sin();
        phase += pitch / fs;
        let excitation = if phase >= 1.0 {
            phase -= 1.0;
            1.0
        } else {
            0.0
        } + 0.02 * noise();
        let mut voiced = 0.0;
        for (k, &(freq, bandwidth)) in [(vowel.0, 80.0), (vowel.1, 100.0), (vowel.2, 120.0)]
            .iter()
            .enumerate()
        {
            if freq >= fs / 2.0 {
                continue;
            }
            let r = (-std::f64::consts::PI * bandwidth / fs).exp();
            let a1 = 2.0 * r * (TAU * freq / fs).cos();
            let a2 = -r * r;
            let y = excitation * (1.0 - r) + a1 * state[k][0] + a2 * state[k][1];
            state[k][1] = state[k][0];
            state[k][0] = y;
            voiced += y / (k as f64 + 1.0);
        }
        // Syllables at ~4 Hz with short pauses between phrases.
        let envelope =
            (TAU * 2.7 * t).sin().abs().powf(0.6) * if (t % 3.0) > 2.6 { 0.05 } else { 1.0 };
        let sample = 6.0 * voiced * envelope + 0.003 * noise();
        out.push((sample.clamp(-1.0, 1.0) * 32767.0) as i16);
    }
    out
}

/// Raw s16le bytes of `samples`.
pub fn to_le_bytes(samples: &[i16]) -> Vec<u8> {
    samples.iter().flat_map(|s| s.to_le_bytes()).collect()
}

/// A WhatsApp-style voice note: `seconds` of speech-like audio recorded at
/// `input_rate` (16 kHz gives SILK wideband packets, 48 kHz hybrid
/// fullband ones, as phones produce), encoded to OGG/Opus at ~24 kbps.
pub fn voice_note(seconds: f64, input_rate: u32) -> Result<Vec<u8>> {
    encode_pcm(&speech_like(input_rate, seconds, 7), input_rate)
}

/// Encodes mono PCM at `rate` to OGG/Opus with Parley's own encoder.
pub fn encode_pcm(samples: &[i16], rate: u32) -> Result<Vec<u8>> {
    let input = InputSpec {
        format: Some(AudioFormat::Pcm),
        sample_rate: rate,
        channels: 1,
    };
    let (bytes, _) = convert_buffer(
        &to_le_bytes(samples),
        input,
        OutputSpec::new(AudioFormat::OggOpus),
        Limits::default(),
    )?;
    Ok(bytes)
}
