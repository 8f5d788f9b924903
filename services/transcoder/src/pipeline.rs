//! One conversion, read as a pipeline: source (OGG/Opus decoder or WAV/PCM
//! reader, mixed to mono) → optional resampler → sink (WAV/PCM writer or
//! Opus encoder). Files, buffers and gRPC streams all go through [`convert`].

use std::io::{Cursor, Read, Write};

use crate::{
    audio::{AudioFormat, AudioInfo, InputSpec, Limits, OPUS_GRANULE_RATE, OPUS_RATES, OutputSpec},
    decode::{OpusSource, probe_ogg_opus},
    encode::OpusSink,
    error::{Result, TranscodeError},
    io::LimitedReader,
    ogg_reader::read_up_to,
    pcm::{InterleavedSource, PcmSink, PcmSource, PcmWriter, WAV_HEADER_LEN},
    resample::ResampledSource,
};

/// What a finished conversion reports.
#[derive(Debug, Clone)]
pub struct Conversion {
    /// Facts about the input as decoded.
    pub source: AudioInfo,
    /// Facts about the output.
    pub output: AudioInfo,
    /// For WAV output: the header with exact sizes.
    pub final_header: Option<[u8; WAV_HEADER_LEN]>,
}

/// Reads enough of `input` to identify its container, and returns a reader
/// that still yields those bytes.
fn identify<R: Read>(
    mut input: R,
    declared: Option<AudioFormat>,
) -> Result<(AudioFormat, impl Read)> {
    let mut prefix = [0u8; 12];
    let got =
        read_up_to(&mut input, &mut prefix).map_err(|e| TranscodeError::from_io(e, "the input"))?;
    if got == 0 {
        return Err(TranscodeError::Empty);
    }
    let format = match declared {
        Some(format) => format,
        None => AudioFormat::sniff(&prefix[..got])?,
    };
    Ok((format, Cursor::new(prefix).take(got as u64).chain(input)))
}

/// The rate to decode Opus at for a given output: libopus decodes natively
/// at its own rates (about twice as fast as decoding at 48 kHz and
/// resampling), so only other rates go through the resampler.
fn opus_decode_rate(output: &OutputSpec) -> u32 {
    match output.format {
        AudioFormat::OggOpus => OPUS_GRANULE_RATE,
        _ if OPUS_RATES.contains(&output.sample_rate) => output.sample_rate,
        _ => OPUS_GRANULE_RATE,
    }
}

/// The Opus rate to encode a source of `rate` at: its own when it is one,
/// else the next one up (resampled), so no band is lost.
fn opus_encode_rate(rate: u32) -> u32 {
    OPUS_RATES
        .iter()
        .copied()
        .find(|&r| r >= rate)
        .unwrap_or(OPUS_GRANULE_RATE)
}

/// Converts `input` to `output` as specified, enforcing `limits` as bytes
/// arrive. Runs on the calling thread: call it from a blocking context.
pub fn convert<R: Read, W: Write>(
    input: R,
    input_spec: InputSpec,
    output: W,
    output_spec: OutputSpec,
    limits: Limits,
) -> Result<Conversion> {
    output_spec.validate()?;
    let limited = LimitedReader::new(input, limits.max_input_bytes);
    let (format, reader) = identify(limited, input_spec.format)?;
    let mut source: Box<dyn PcmSource + '_> = match format {
        AudioFormat::OggOpus => Box::new(OpusSource::open(
            reader,
            opus_decode_rate(&output_spec),
            limits.max_duration_ms,
        )?),
        AudioFormat::Wav => Box::new(InterleavedSource::wav(reader)?),
        AudioFormat::Pcm => Box::new(InterleavedSource::raw(
            reader,
            input_spec.sample_rate,
            input_spec.channels,
        )?),
    };
    let source_rate = source.sample_rate();
    let target_rate = match output_spec.format {
        AudioFormat::OggOpus => opus_encode_rate(source_rate),
        _ => output_spec.sample_rate,
    };
    if target_rate != source_rate {
        source = Box::new(ResampledSource::new(source, target_rate)?);
    }
    let mut sink: Box<dyn PcmSink + '_> = match output_spec.format {
        AudioFormat::Wav => match output_spec.exact_samples {
            Some(samples) => Box::new(PcmWriter::wav_sized(output, target_rate, samples)?),
            None => Box::new(PcmWriter::wav(output, target_rate)?),
        },
        AudioFormat::Pcm => Box::new(PcmWriter::raw(output, target_rate)),
        AudioFormat::OggOpus => Box::new(OpusSink::new(
            output,
            target_rate,
            source_rate,
            output_spec.bitrate,
        )?),
    };
    let max_samples = limits
        .max_duration_ms
        .saturating_mul(u64::from(target_rate))
        / 1000;
    let mut written = 0u64;
    while let Some(block) = source.next_block()? {
        written += block.len() as u64;
        if written > max_samples {
            return Err(TranscodeError::TooLong {
                duration_ms: written * 1000 / u64::from(target_rate),
                limit_ms: limits.max_duration_ms,
            });
        }
        sink.write(block)?;
    }
    let report = sink.finish()?;
    Ok(Conversion {
        source: source.info(),
        output: report.info,
        final_header: report.final_header,
    })
}

/// Converts a whole in-memory file, checking size and duration limits before
/// any audio is decoded. The WAV header in the result carries exact sizes.
pub fn convert_buffer(
    input: &[u8],
    input_spec: InputSpec,
    output_spec: OutputSpec,
    limits: Limits,
) -> Result<(Vec<u8>, Conversion)> {
    if input.len() as u64 > limits.max_input_bytes {
        return Err(TranscodeError::TooLarge {
            limit: limits.max_input_bytes,
        });
    }
    let declared_raw = input_spec.format == Some(AudioFormat::Pcm);
    if !declared_raw {
        let info = probe(input, limits)?;
        if info.duration_ms() > limits.max_duration_ms {
            return Err(TranscodeError::TooLong {
                duration_ms: info.duration_ms(),
                limit_ms: limits.max_duration_ms,
            });
        }
    }
    let mut out = Vec::with_capacity(estimate_output_len(input.len(), &output_spec));
    let conversion = convert(input, input_spec, &mut out, output_spec, limits)?;
    if let Some(header) = conversion.final_header {
        out[..WAV_HEADER_LEN].copy_from_slice(&header);
    }
    Ok((out, conversion))
}

/// The exact output a conversion of `source` (as [`probe`] reports it) to
/// `spec` will produce, computed with the same rules the decoder and the
/// resampler apply: a native Opus rate keeps `(end − pre-skip) / (48000 /
/// rate)` samples, any other rate rounds `samples × to / from`. `None` for
/// OGG/Opus output (its size depends on the encoder) and raw PCM input.
pub fn predict_output(source: &AudioInfo, spec: &OutputSpec) -> Option<AudioInfo> {
    let to = u64::from(spec.sample_rate);
    let samples = match (source.format, spec.format) {
        (_, AudioFormat::OggOpus) | (AudioFormat::Pcm, _) => return None,
        (AudioFormat::OggOpus, _) if OPUS_RATES.contains(&spec.sample_rate) => {
            source.sample_count / (u64::from(OPUS_GRANULE_RATE) / to)
        }
        (AudioFormat::OggOpus, _) => {
            let from = u64::from(OPUS_GRANULE_RATE);
            (source.sample_count * to + from / 2) / from
        }
        (AudioFormat::Wav, _) => {
            let from = u64::from(source.sample_rate);
            if from == to {
                source.sample_count
            } else {
                (source.sample_count * to + from / 2) / from
            }
        }
    };
    let header = if spec.format == AudioFormat::Wav {
        WAV_HEADER_LEN as u64
    } else {
        0
    };
    Some(AudioInfo {
        format: spec.format,
        codec: "pcm_s16le",
        channels: 1,
        sample_rate: spec.sample_rate,
        input_sample_rate: spec.sample_rate,
        sample_count: samples,
        byte_size: header + samples * 2,
    })
}

/// Converts an in-memory file to WAV whose first bytes are a header with
/// the exact sizes. `announce` learns the exact output before any byte is
/// written (the gRPC service sends it as the stream's prelude).
pub fn convert_sized<W: Write>(
    input: &[u8],
    input_spec: InputSpec,
    output: W,
    mut output_spec: OutputSpec,
    limits: Limits,
    announce: impl FnOnce(&AudioInfo) -> Result<()>,
) -> Result<Conversion> {
    if output_spec.format != AudioFormat::Wav {
        return Err(TranscodeError::InvalidRequest(
            "exact sizes up front are offered for WAV output only".into(),
        ));
    }
    if input_spec.format == Some(AudioFormat::Pcm) {
        return Err(TranscodeError::InvalidRequest(
            "exact sizes up front need a self-describing input (OGG/Opus or WAV)".into(),
        ));
    }
    let source = probe(input, limits)?;
    if source.duration_ms() > limits.max_duration_ms {
        return Err(TranscodeError::TooLong {
            duration_ms: source.duration_ms(),
            limit_ms: limits.max_duration_ms,
        });
    }
    let predicted = predict_output(&source, &output_spec).ok_or_else(|| {
        TranscodeError::InvalidRequest("this conversion's size cannot be known up front".into())
    })?;
    announce(&predicted)?;
    output_spec.exact_samples = Some(predicted.sample_count);
    convert(input, input_spec, output, output_spec, limits)
}

/// A capacity guess so the output buffer rarely reallocates.
fn estimate_output_len(input_len: usize, spec: &OutputSpec) -> usize {
    match spec.format {
        // ~24 kbps in → 2 bytes per sample out.
        AudioFormat::Wav | AudioFormat::Pcm => {
            (input_len as u64 * u64::from(spec.sample_rate) * 2 / 3_000).min(64 << 20) as usize
        }
        AudioFormat::OggOpus => input_len / 8 + 4096,
    }
}

/// Reports container, codec, channels, rates, exact duration and size of an
/// OGG/Opus or WAV file, validating its structure without decoding audio.
pub fn probe(input: &[u8], limits: Limits) -> Result<AudioInfo> {
    if input.len() as u64 > limits.max_input_bytes {
        return Err(TranscodeError::TooLarge {
            limit: limits.max_input_bytes,
        });
    }
    let mut info = match AudioFormat::sniff(input)? {
        AudioFormat::OggOpus => probe_ogg_opus(input)?,
        AudioFormat::Wav => probe_wav(input)?,
        AudioFormat::Pcm => {
            return Err(TranscodeError::InvalidRequest(
                "raw pcm cannot be probed".into(),
            ));
        }
    };
    info.byte_size = input.len() as u64;
    Ok(info)
}

fn probe_wav(input: &[u8]) -> Result<AudioInfo> {
    let source = InterleavedSource::wav(input)?;
    let header_len = (input.len() as u64).saturating_sub(source.remaining_input().len() as u64);
    let present = (input.len() as u64) - header_len;
    let frame_bytes = source.frame_bytes() as u64;
    let declared = source.declared_data_bytes().unwrap_or(present);
    if declared > present {
        return Err(TranscodeError::Truncated(format!(
            "wav data chunk declares {declared} bytes, {present} are present"
        )));
    }
    let mut info = source.info();
    info.sample_count = declared / frame_bytes;
    Ok(info)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn predictions_follow_the_decoders_rules() {
        let opus = AudioInfo {
            format: AudioFormat::OggOpus,
            codec: "opus",
            channels: 1,
            sample_rate: 48_000,
            input_sample_rate: 16_000,
            sample_count: 1_440_001,
            byte_size: 0,
        };
        let at = |rate| {
            let mut spec = OutputSpec::new(AudioFormat::Wav);
            spec.sample_rate = rate;
            predict_output(&opus, &spec).unwrap()
        };
        assert_eq!(at(16_000).sample_count, 480_000);
        assert_eq!(at(16_000).byte_size, 44 + 960_000);
        assert_eq!(at(48_000).sample_count, 1_440_001);
        assert_eq!(
            at(44_100).sample_count,
            (1_440_001 * 44_100 + 24_000) / 48_000
        );
        assert!(predict_output(&opus, &OutputSpec::new(AudioFormat::OggOpus)).is_none());
    }

    #[test]
    fn decode_rates_prefer_native_opus() {
        assert_eq!(opus_decode_rate(&OutputSpec::new(AudioFormat::Wav)), 16_000);
        let mut spec = OutputSpec::new(AudioFormat::Pcm);
        spec.sample_rate = 22_050;
        assert_eq!(opus_decode_rate(&spec), 48_000);
        assert_eq!(opus_encode_rate(16_000), 16_000);
        assert_eq!(opus_encode_rate(22_050), 24_000);
        assert_eq!(opus_encode_rate(44_100), 48_000);
        assert_eq!(opus_encode_rate(96_000), 48_000);
    }
}
