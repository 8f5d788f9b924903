//! OGG demux + Opus decode, buffered (probe first) and streamed.
#![no_main]

use libfuzzer_sys::fuzz_target;
use parley_transcoder::{
    audio::{AudioFormat, InputSpec, Limits, OutputSpec},
    pipeline::{convert, convert_buffer, probe},
};

fuzz_target!(|data: &[u8]| {
    let limits = Limits {
        max_input_bytes: 1 << 20,
        max_duration_ms: 60_000,
    };
    let _ = probe(data, limits);
    let _ = convert_buffer(data, InputSpec::default(), OutputSpec::new(AudioFormat::Wav), limits);
    let mut out = Vec::new();
    let mut spec = OutputSpec::new(AudioFormat::Pcm);
    spec.sample_rate = 22_050;
    let _ = convert(data, InputSpec::default(), &mut out, spec, limits);
});
