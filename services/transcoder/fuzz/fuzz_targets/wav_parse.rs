//! WAV parsing and the encode path (WAV → OGG/Opus).
#![no_main]

use libfuzzer_sys::fuzz_target;
use parley_transcoder::{
    audio::{AudioFormat, InputSpec, Limits, OutputSpec},
    pipeline::{convert_buffer, probe},
};

fuzz_target!(|data: &[u8]| {
    let limits = Limits {
        max_input_bytes: 1 << 20,
        max_duration_ms: 10_000,
    };
    let mut input = b"RIFF\0\0\0\0WAVE".to_vec();
    input.extend_from_slice(data);
    let _ = probe(&input, limits);
    let _ = convert_buffer(&input, InputSpec::default(), OutputSpec::new(AudioFormat::OggOpus), limits);
});
