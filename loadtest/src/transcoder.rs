//! The transcoder benchmark. CPU figures are thread (in-process) or child
//! (ffmpeg) CPU time, so they read as "per core"; latencies are wall time.
//! Each figure is the median of the repetitions.

use std::{
    path::Path,
    process::Command,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::Context as _;
use cpu_time::ThreadTime;
use parley_proto::transcoder::{
    AudioFormat as PbFormat, ConvertRequest, OutputSpec as PbOutput,
    convert_stream_response::Message as Out, transcoder_client::TranscoderClient,
};
use parley_runtime::server::{GrpcServer, ServerConfig};
use parley_transcoder::{
    audio::{AudioFormat, InputSpec, Limits, OutputSpec},
    client::convert_stream_requests,
    grpc::{TranscoderConfig, TranscoderService},
    ogg_reader::OggPacketReader,
    pipeline::convert_buffer,
    synth,
};
use tonic::transport::Channel;

/// Options of the transcoder benchmark.
#[derive(clap::Args)]
pub struct Options {
    /// Note lengths, seconds.
    #[arg(long, value_delimiter = ',', default_value = "10,30,120")]
    lengths: Vec<u32>,
    /// Input rates of the generated notes (16 kHz → SILK-WB, 48 kHz → hybrid FB).
    #[arg(long, value_delimiter = ',', default_value = "16000,48000")]
    input_rates: Vec<u32>,
    /// Repetitions per measurement (the median is reported).
    #[arg(long, default_value_t = 7)]
    reps: usize,
    /// Concurrent streaming conversions for the memory measurement.
    #[arg(long, default_value_t = 16)]
    streams: usize,
    /// Skip ffmpeg even if installed.
    #[arg(long)]
    no_ffmpeg: bool,
    /// Use Parley's synthetic speech-like signal even when espeak-ng is
    /// installed (by default notes are espeak-ng speech, as real voice notes).
    #[arg(long)]
    synthetic: bool,
}

/// A voice note of `seconds` at `rate`: espeak-ng speech with a faint noise
/// floor when available, else the synthetic speech-like signal; encoded at
/// ~24 kbps by Parley's encoder.
fn voice_note(
    seconds: u32,
    rate: u32,
    synthetic: bool,
    dir: &Path,
) -> anyhow::Result<(Vec<u8>, &'static str)> {
    if !synthetic && let Some(speech) = espeak_speech(seconds, rate, dir)? {
        return Ok((synth::encode_pcm(&speech, rate)?, "espeak-ng speech"));
    }
    Ok((
        synth::voice_note(f64::from(seconds), rate)?,
        "synthetic speech-like signal",
    ))
}

fn espeak_speech(seconds: u32, rate: u32, dir: &Path) -> anyhow::Result<Option<Vec<i16>>> {
    const TEXT: &str = "Hello, I am writing about my order from last week. The parcel arrived \
        yesterday but one of the items was damaged, and I would like to know whether you can \
        send a replacement or refund it. My order number is on the receipt. Thank you very much.";
    let wav = dir.join(format!("espeak-{rate}.wav"));
    let Ok(status) = Command::new("espeak-ng")
        .args(["-s", "160", "-w"])
        .arg(&wav)
        .arg(TEXT)
        .status()
    else {
        return Ok(None);
    };
    anyhow::ensure!(status.success(), "espeak-ng failed");
    let mut spec = OutputSpec::new(AudioFormat::Pcm);
    spec.sample_rate = rate;
    let (pcm, _) = convert_buffer(
        &std::fs::read(&wav)?,
        InputSpec::default(),
        spec,
        Limits::default(),
    )?;
    let one: Vec<i16> = pcm
        .chunks_exact(2)
        .map(|b| i16::from_le_bytes([b[0], b[1]]))
        .collect();
    let want = (seconds * rate) as usize;
    let mut noise = 0x2545_f491_u32;
    Ok(Some(
        one.iter()
            .cycle()
            .take(want)
            .map(|&s| {
                noise ^= noise << 13;
                noise ^= noise >> 17;
                noise ^= noise << 5;
                s.saturating_add((noise % 64) as i16 - 32)
            })
            .collect(),
    ))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn wav16k_proto() -> PbOutput {
    PbOutput {
        format: PbFormat::Wav as i32,
        sample_rate_hz: 16_000,
        bitrate_bps: 0,
    }
}

fn wav16k() -> OutputSpec {
    OutputSpec::new(AudioFormat::Wav)
}

/// libopus alone: packets demuxed beforehand, one decoder reused (reset per
/// note), output at 16 kHz into a reused buffer. Nothing can be faster.
fn decode_only_cpu_ms(ogg: &[u8], reps: usize) -> anyhow::Result<f64> {
    let mut reader = OggPacketReader::new(ogg);
    let mut packets = Vec::new();
    while let Some(p) = reader.next_packet()? {
        packets.push(p.data);
    }
    let audio = packets.split_off(2);
    let mut decoder = opus::Decoder::new(16_000, opus::Channels::Mono)?;
    let mut out = vec![0i16; 1920];
    let mut times = Vec::new();
    for _ in 0..reps {
        decoder.reset_state()?;
        let start = ThreadTime::now();
        for packet in &audio {
            decoder.decode(packet, &mut out, false)?;
        }
        times.push(start.elapsed().as_secs_f64() * 1000.0);
    }
    Ok(median(times))
}

/// Parley's whole in-process path: probe, demux, decode, WAV.
fn in_process(ogg: &[u8], reps: usize) -> anyhow::Result<(f64, f64)> {
    let (mut cpu, mut wall) = (Vec::new(), Vec::new());
    for _ in 0..reps {
        let (c, w) = (ThreadTime::now(), Instant::now());
        let (wav, _) = convert_buffer(ogg, InputSpec::default(), wav16k(), Limits::default())?;
        std::hint::black_box(wav);
        cpu.push(c.elapsed().as_secs_f64() * 1000.0);
        wall.push(w.elapsed().as_secs_f64() * 1000.0);
    }
    Ok((median(cpu), median(wall)))
}

/// CPU time of this process's finished children (user + system).
pub(crate) fn children_cpu() -> Duration {
    use nix::sys::resource::{UsageWho, getrusage};
    let Ok(usage) = getrusage(UsageWho::RUSAGE_CHILDREN) else {
        return Duration::ZERO;
    };
    let tv =
        |t: nix::sys::time::TimeVal| Duration::new(t.tv_sec() as u64, t.tv_usec() as u32 * 1000);
    tv(usage.user_time()) + tv(usage.system_time())
}

/// `ffmpeg -i in.ogg -ar 16000 -ac 1 out.wav`, as the AWS sample's Lambda runs it.
fn ffmpeg(ogg: &Path, dir: &Path, reps: usize) -> anyhow::Result<(f64, f64)> {
    let out = dir.join("ffmpeg-out.wav");
    let (mut cpu, mut wall) = (Vec::new(), Vec::new());
    for _ in 0..reps {
        let (c, w) = (children_cpu(), Instant::now());
        let status = Command::new("ffmpeg")
            .args(["-nostdin", "-loglevel", "error", "-y", "-i"])
            .arg(ogg)
            .args(["-ar", "16000", "-ac", "1"])
            .arg(&out)
            .status()
            .context("running ffmpeg")?;
        anyhow::ensure!(status.success(), "ffmpeg failed");
        wall.push(w.elapsed().as_secs_f64() * 1000.0);
        cpu.push((children_cpu() - c).as_secs_f64() * 1000.0);
    }
    Ok((median(cpu), median(wall)))
}

async fn grpc_unary(
    client: &mut TranscoderClient<Channel>,
    ogg: &[u8],
    reps: usize,
) -> anyhow::Result<f64> {
    let mut wall = Vec::new();
    for _ in 0..reps {
        let request = ConvertRequest {
            input: None,
            output: Some(wav16k_proto()),
            audio: ogg.to_vec().into(),
        };
        let w = Instant::now();
        let response = client.convert(request).await?.into_inner();
        wall.push(w.elapsed().as_secs_f64() * 1000.0);
        std::hint::black_box(response);
    }
    Ok(median(wall))
}

/// Runs one streaming conversion, optionally pausing per output chunk (a
/// slow consumer keeps the conversion in flight); returns output bytes.
async fn stream_once(
    client: &mut TranscoderClient<Channel>,
    ogg: &[u8],
    pause: Duration,
) -> anyhow::Result<usize> {
    let mut responses = client
        .convert_stream(tokio_stream::iter(
            convert_stream_requests(ogg, Default::default(), wav16k_proto(), 32 * 1024)
                .collect::<Vec<_>>(),
        ))
        .await?
        .into_inner();
    let mut bytes = 0;
    while let Some(message) = responses.message().await? {
        if let Some(Out::Chunk(chunk)) = message.message {
            bytes += chunk.len();
            if !pause.is_zero() {
                tokio::time::sleep(pause).await;
            }
        }
    }
    Ok(bytes)
}

async fn grpc_stream(
    client: &mut TranscoderClient<Channel>,
    ogg: &[u8],
    reps: usize,
) -> anyhow::Result<f64> {
    let mut wall = Vec::new();
    for _ in 0..reps {
        let w = Instant::now();
        stream_once(client, ogg, Duration::ZERO).await?;
        wall.push(w.elapsed().as_secs_f64() * 1000.0);
    }
    Ok(median(wall))
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// Peak resident memory added per in-flight streaming conversion: `streams`
/// conversions of a 120 s note, each with a slow consumer, all at once.
async fn memory_per_stream(
    client: &TranscoderClient<Channel>,
    ogg: Arc<Vec<u8>>,
    streams: usize,
) -> anyhow::Result<f64> {
    // Warm up allocator arenas and codec caches first.
    stream_once(&mut client.clone(), &ogg, Duration::ZERO).await?;
    let baseline = rss_kib();
    let peak = Arc::new(std::sync::atomic::AtomicU64::new(baseline));
    let sampler = {
        let peak = peak.clone();
        tokio::spawn(async move {
            loop {
                peak.fetch_max(rss_kib(), std::sync::atomic::Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        })
    };
    let mut tasks = Vec::new();
    for _ in 0..streams {
        let mut client = client.clone();
        let ogg = ogg.clone();
        tasks.push(tokio::spawn(async move {
            stream_once(&mut client, &ogg, Duration::from_millis(3)).await
        }));
    }
    for task in tasks {
        task.await??;
    }
    sampler.abort();
    let grown = peak
        .load(std::sync::atomic::Ordering::Relaxed)
        .saturating_sub(baseline);
    // Each client also holds its own request (the whole note, by design of
    // this load generator): subtract it to count only the server's share.
    let request_kib = ogg.len() as f64 / 1024.0;
    Ok((grown as f64 / streams as f64 - request_kib).max(0.0))
}

struct Row {
    rate: u32,
    seconds: u32,
    decode_only: f64,
    parley_cpu: f64,
    parley_wall: f64,
    unary: f64,
    stream: f64,
    ffmpeg: Option<(f64, f64)>,
}

/// Runs the benchmark and prints the table.
pub fn run(options: Options) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let dir = tempfile::tempdir()?;
    let have_ffmpeg = !options.no_ffmpeg && Command::new("ffmpeg").arg("-version").output().is_ok();

    let (client, _server) = runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?;
        let config = TranscoderConfig {
            workers: options.streams.max(2),
            ..TranscoderConfig::default()
        };
        let server = tokio::spawn(
            GrpcServer::new(ServerConfig::local(address))
                .add_service(TranscoderService::new(config).into_server())
                .serve(listener, std::future::pending()),
        );
        let channel = Channel::from_shared(format!("http://{address}"))?
            .tcp_nodelay(true)
            .connect()
            .await?;
        anyhow::Ok((
            TranscoderClient::new(channel)
                .max_decoding_message_size(64 << 20)
                .max_encoding_message_size(64 << 20),
            server,
        ))
    })?;

    let mut rows = Vec::new();
    let mut signal = "";
    for &rate in &options.input_rates {
        for &seconds in &options.lengths {
            let (ogg, kind) = voice_note(seconds, rate, options.synthetic, dir.path())?;
            signal = kind;
            let path = dir.path().join(format!("note-{rate}-{seconds}.ogg"));
            std::fs::write(&path, &ogg)?;
            let reps = if seconds >= 60 {
                options.reps.div_ceil(2).max(1)
            } else {
                options.reps
            };
            eprintln!("measuring {seconds} s note at {rate} Hz input ({reps} reps)");
            // Warm caches (decoders, resamplers, page cache) once.
            in_process(&ogg, 1)?;
            let decode_only = decode_only_cpu_ms(&ogg, reps)?;
            let (parley_cpu, parley_wall) = in_process(&ogg, reps)?;
            let mut c = client.clone();
            let unary = runtime.block_on(grpc_unary(&mut c, &ogg, reps))?;
            let stream = runtime.block_on(grpc_stream(&mut c, &ogg, reps))?;
            let ffmpeg = if have_ffmpeg {
                Some(ffmpeg(&path, dir.path(), reps)?)
            } else {
                None
            };
            rows.push(Row {
                rate,
                seconds,
                decode_only,
                parley_cpu,
                parley_wall,
                unary,
                stream,
                ffmpeg,
            });
        }
    }
    let (long, _) = voice_note(120, 16_000, options.synthetic, dir.path())?;
    println!(
        "notes: {signal}, mono, ~24 kbps OGG/Opus; output WAV 16 kHz; medians of {} reps (120 s: {})\n",
        options.reps,
        options.reps.div_ceil(2)
    );
    let memory = runtime.block_on(memory_per_stream(&client, Arc::new(long), options.streams))?;

    println!(
        "| input | note | libopus decode-only CPU | Parley in-process CPU (RTF/core) | % of limit | in-process wall | gRPC unary wall (+overhead) | gRPC stream wall | ffmpeg CPU | ffmpeg wall |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for r in &rows {
        let rtf = f64::from(r.seconds) * 1000.0 / r.parley_cpu;
        let (ff_cpu, ff_wall) = r
            .ffmpeg
            .map(|(c, w)| (format!("{c:.1} ms"), format!("{w:.1} ms")))
            .unwrap_or(("n/a".into(), "n/a".into()));
        println!(
            "| {} kHz | {} s | {:.2} ms | {:.2} ms ({rtf:.0}×) | {:.0} % | {:.2} ms | {:.2} ms (+{:.2}) | {:.2} ms | {ff_cpu} | {ff_wall} |",
            r.rate / 1000,
            r.seconds,
            r.decode_only,
            r.parley_cpu,
            100.0 * r.decode_only / r.parley_cpu,
            r.parley_wall,
            r.unary,
            r.unary - r.parley_wall,
            r.stream,
        );
    }
    // Marginal throughput: the extra audio of the longest note over the
    // shortest, divided by the extra CPU it took (start-up cancels out).
    for &rate in &options.input_rates {
        let of_rate: Vec<&Row> = rows.iter().filter(|r| r.rate == rate).collect();
        let (Some(short), Some(long)) = (of_rate.first(), of_rate.last()) else {
            continue;
        };
        if long.seconds == short.seconds {
            continue;
        }
        let audio = f64::from(long.seconds - short.seconds) * 1000.0;
        let parley = audio / (long.parley_cpu - short.parley_cpu);
        let limit = audio / (long.decode_only - short.decode_only);
        match (short.ffmpeg, long.ffmpeg) {
            (Some((s, _)), Some((l, _))) => {
                let ff = audio / (l - s);
                println!(
                    "\n{} kHz input, marginal realtime factor per core: Parley {parley:.0}×, libopus limit {limit:.0}×, ffmpeg {ff:.0}× → Parley/ffmpeg = {:.1}×",
                    rate / 1000,
                    parley / ff
                );
            }
            _ => println!(
                "\n{} kHz input, marginal realtime factor per core: Parley {parley:.0}×, libopus limit {limit:.0}×",
                rate / 1000
            ),
        }
    }
    println!(
        "\nmemory per in-flight streaming conversion (120 s note, {} at once, slow consumers): {memory:.0} KiB",
        options.streams
    );
    Ok(())
}
