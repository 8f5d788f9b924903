//! `parley-transcoder`: serve the gRPC API, or convert and probe files from
//! the command line. `demo` runs the whole service on loopback against a
//! voice note it generates, as the README's first command.

use std::{
    io::{BufReader, BufWriter, Seek, SeekFrom, Write},
    net::SocketAddr,
    path::{Path, PathBuf},
    process::ExitCode,
};

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use parley_runtime::{
    config::{ProcessEnv, Settings},
    process,
};
use parley_transcoder::{
    audio::{AudioFormat, InputSpec, OutputSpec},
    grpc::TranscoderConfig,
    pcm::WAV_HEADER_LEN,
    pipeline,
};

mod demo;

const DEFAULT_LISTEN: &str = "0.0.0.0:50052";

#[derive(Parser)]
#[command(
    name = "parley-transcoder",
    version,
    about = "OGG/Opus <-> WAV/PCM transcoding for Parley"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the parley.transcoder.v1 gRPC API (with health and reflection).
    Serve {
        /// Address to listen on [env: PARLEY_LISTEN] [default: 0.0.0.0:50052]
        #[arg(long)]
        listen: Option<SocketAddr>,
    },
    /// Convert a file: OGG/Opus to WAV/PCM, or WAV/PCM to OGG/Opus.
    Convert {
        /// Input file (OGG/Opus or WAV; raw PCM with --input-format pcm).
        input: PathBuf,
        /// Output file; its extension picks the format unless --format is given.
        output: PathBuf,
        /// Output sample rate in Hz [default: 16000 for wav/pcm].
        #[arg(long)]
        rate: Option<u32>,
        /// Output format: wav, pcm or ogg.
        #[arg(long)]
        format: Option<AudioFormat>,
        /// Opus bitrate for ogg output, bits per second.
        #[arg(long, default_value_t = OutputSpec::DEFAULT_BITRATE)]
        bitrate: u32,
        /// Input format when it cannot be detected (pcm).
        #[arg(long)]
        input_format: Option<AudioFormat>,
        /// Sample rate of raw pcm input.
        #[arg(long, default_value_t = 16_000)]
        input_rate: u32,
        /// Channels of raw pcm input.
        #[arg(long, default_value_t = 1)]
        input_channels: u16,
    },
    /// Print container, codec, channels, rates and exact duration as JSON.
    Probe {
        /// OGG/Opus or WAV file.
        file: PathBuf,
    },
    /// Start the service on loopback, convert a generated voice note through
    /// it, and print what happened.
    Demo {
        /// Length of the generated voice note, seconds.
        #[arg(long, default_value_t = 30.0)]
        seconds: f64,
        /// Folder for the files the demo writes.
        #[arg(long, default_value = "target/parley-demo")]
        out_dir: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve { listen } => process::block_on(parley_runtime::service::serve_from_env(
            "parley-transcoder",
            DEFAULT_LISTEN,
            listen,
            TranscoderConfig::from_settings,
            parley_transcoder::run,
        )),
        Command::Convert {
            input,
            output,
            rate,
            format,
            bitrate,
            input_format,
            input_rate,
            input_channels,
        } => {
            let input_spec = InputSpec {
                format: input_format,
                sample_rate: input_rate,
                channels: input_channels,
            };
            output_spec(&output, format, rate, bitrate)
                .and_then(|spec| convert_file(&input, input_spec, &output, spec))
        }
        Command::Probe { file } => probe_file(&file),
        Command::Demo { seconds, out_dir } => process::block_on(demo::run(seconds, &out_dir)),
    };
    process::exit("parley-transcoder", result)
}

/// The transcoder's limits as the environment sets them (the CLI honours
/// them too).
fn limits() -> anyhow::Result<parley_transcoder::audio::Limits> {
    let mut settings = Settings::new(&ProcessEnv);
    let config = TranscoderConfig::from_settings(&mut settings);
    settings.finish()?;
    Ok(config.limits)
}

fn output_spec(
    output: &Path,
    format: Option<AudioFormat>,
    rate: Option<u32>,
    bitrate: u32,
) -> anyhow::Result<OutputSpec> {
    let format = format
        .or_else(|| AudioFormat::from_extension(output))
        .with_context(|| {
            format!(
                "cannot tell the output format from {}: pass --format",
                output.display()
            )
        })?;
    let mut spec = OutputSpec::new(format);
    if let Some(rate) = rate {
        spec.sample_rate = rate;
    }
    spec.bitrate = bitrate;
    spec.validate()?;
    Ok(spec)
}

/// Streams a file through the pipeline into a temporary file beside the
/// output, which replaces the output only when the conversion succeeded.
fn convert_file(
    input: &Path,
    input_spec: InputSpec,
    output: &Path,
    spec: OutputSpec,
) -> anyhow::Result<()> {
    let limits = limits()?;
    let file =
        std::fs::File::open(input).with_context(|| format!("cannot open {}", input.display()))?;
    let dir = output
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut staged = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("cannot write in {}", dir.display()))?;
    let conversion = {
        let writer = BufWriter::new(staged.as_file_mut());
        pipeline::convert(BufReader::new(file), input_spec, writer, spec, limits)?
    };
    if let Some(header) = conversion.final_header {
        let file = staged.as_file_mut();
        file.seek(SeekFrom::Start(0))?;
        file.write_all(&header[..WAV_HEADER_LEN])?;
    }
    // Temporary files are created private (0600); the output is an ordinary file.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        staged
            .as_file()
            .set_permissions(std::fs::Permissions::from_mode(0o644))?;
    }
    staged
        .persist(output)
        .with_context(|| format!("cannot create {}", output.display()))?;
    eprintln!(
        "{} → {}: {} ms of audio, {} Hz {}",
        input.display(),
        output.display(),
        conversion.output.duration_ms(),
        spec.sample_rate,
        spec.format.mime_type()
    );
    Ok(())
}

fn probe_file(path: &Path) -> anyhow::Result<()> {
    let limits = limits()?;
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let info = pipeline::probe(&bytes, limits)?;
    let json = serde_json::json!({
        "container": info.container(),
        "codec": info.codec,
        "channels": info.channels,
        "sample_rate": info.sample_rate,
        "input_sample_rate": info.input_sample_rate,
        "duration_ms": info.duration_ms(),
        "sample_count": info.sample_count,
        "byte_size": info.byte_size,
    });
    println!("{json}");
    Ok(())
}
