//! `parley-local`: the whole bridge on this machine — the sandbox as
//! Connect, WhatsApp, Transcribe and SNS; every service; the gateway fed
//! with signed SNS deliveries — with embedded defaults: no AWS account, no
//! moto, no Python. Never deployed.
//!
//! - `parley-local demo` plays a scripted conversation and prints what each
//!   side sees (add `--keep` to stay up afterwards).
//! - `parley-local serve` (the default) runs until Ctrl-C.

use std::{
    net::{IpAddr, Ipv4Addr},
    path::PathBuf,
    process::ExitCode,
};

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use parley_local::{Component, SessionStore, Stack};

#[derive(Parser)]
#[command(
    name = "parley-local",
    version,
    about = "The whole Parley bridge on this machine, against the AWS sandbox"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Where routing.toml (edit it: it is reloaded), the session store and
    /// the dead letters live.
    #[arg(long, global = true, default_value = "target/parley-local")]
    data_dir: PathBuf,
    /// Address everything listens on.
    #[arg(long, global = true, default_value_t = IpAddr::V4(Ipv4Addr::LOCALHOST))]
    host: IpAddr,
    /// Once everything answers its health check, write the endpoints here
    /// as JSON.
    #[arg(long, global = true)]
    ready_file: Option<PathBuf>,
    /// The sandbox's port (0: any free one).
    #[arg(long, global = true, default_value_t = 0)]
    sandbox_port: u16,
    /// The gateway's port (0: any free one).
    #[arg(long, global = true, default_value_t = 0)]
    gateway_port: u16,
    /// The console's port (0: any free one).
    #[arg(long, global = true, default_value_t = 0)]
    console_port: u16,
    /// Allow `--host` to be an address other machines can reach (the
    /// console and the sandbox have no authentication).
    #[arg(long, global = true)]
    allow_remote: bool,
}

#[derive(Subcommand)]
enum Command {
    /// Run the bridge until Ctrl-C.
    Serve,
    /// Run the bridge, play a scripted conversation on it, then stay up
    /// with the console (until Ctrl-C).
    Demo {
        /// Stop after the conversation instead.
        #[arg(long)]
        exit: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    parley_runtime::process::exit("parley-local", parley_runtime::process::block_on(run(cli)))
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let demo = matches!(cli.command, Some(Command::Demo { .. }));
    if !cli.host.is_loopback() {
        anyhow::ensure!(
            cli.allow_remote,
            "--host {} can be reached from other machines, and the console and the sandbox have no authentication: add --allow-remote if you mean it",
            cli.host
        );
        eprintln!(
            "WARNING: listening on {}: anyone who can reach this machine can read and write every conversation",
            cli.host
        );
    }
    // Every component runs in this process, so one in-process exporter
    // sees every span: the console shows each message's trace from it.
    let spans = parley_local::spans::SpanStore::default();
    let store_spans = spans.clone();
    let _telemetry = parley_runtime::telemetry::init_with(
        &parley_runtime::telemetry::TelemetryConfig {
            service_name: "parley-local".into(),
            log_format: parley_runtime::telemetry::LogFormat::Pretty,
            log_filter: std::env::var("RUST_LOG")
                .unwrap_or_else(|_| if demo { "warn" } else { "info" }.into()),
            trace_filter: "info".into(),
            otlp_endpoint: std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT").ok(),
            metrics_listen: None,
        },
        |builder| builder.with_simple_exporter(store_spans),
    )
    .map_err(|e| anyhow::anyhow!("{e}"))?;

    std::fs::create_dir_all(&cli.data_dir)
        .with_context(|| format!("cannot create {}", cli.data_dir.display()))?;
    // The sandbox forgets its chats when it stops, so a session store kept
    // from an earlier run would only point at chats that no longer exist.
    let store = cli.data_dir.join("session.db");
    let _ = std::fs::remove_file(&store);
    let routing_file = cli.data_dir.join("routing.toml");
    if !routing_file.exists() {
        std::fs::write(&routing_file, parley_local::demo::routing())
            .with_context(|| format!("cannot write {}", routing_file.display()))?;
    }
    let routing = std::fs::read_to_string(&routing_file)?;
    let watched = routing_file.clone();
    let stack = Stack::builder()
        .bridge()
        .host(cli.host)
        .data_dir(&cli.data_dir)
        .session_store(SessionStore::File(store))
        .sandbox_port(cli.sandbox_port)
        .gateway_port(cli.gateway_port)
        .routing(routing)
        .gateway_config(move |config| config.routing_file = Some(watched.clone()))
        .start()
        .await
        .context("starting the bridge")?;

    let stack = std::sync::Arc::new(stack);
    let console_listener =
        parley_runtime::service::bind(std::net::SocketAddr::new(cli.host, cli.console_port))
            .await?;
    let console_url = format!("http://{}", console_listener.local_addr()?);
    let console = parley_local::console::Console::new(stack.clone(), spans).router();
    let (stop_console, console_stopped) = tokio::sync::oneshot::channel::<()>();
    let console_task = tokio::spawn(async move {
        axum::serve(console_listener, console)
            .with_graceful_shutdown(async {
                let _ = console_stopped.await;
            })
            .await
    });
    let services: serde_json::Map<String, serde_json::Value> = Component::SERVICES
        .iter()
        .map(|c| (c.name().to_owned(), stack.address(*c).to_string().into()))
        .collect();
    let ready = serde_json::json!({
        "sandbox": stack.sandbox.endpoint,
        "gateway": stack.gateway_url(0),
        "services": services,
        "console": console_url,
        "data_dir": cli.data_dir,
    });
    if let Some(path) = &cli.ready_file {
        std::fs::write(path, serde_json::to_string_pretty(&ready)?)
            .with_context(|| format!("cannot write the ready file {}", path.display()))?;
    }
    println!(
        "Parley is running on this machine (sandbox as Connect, WhatsApp, Transcribe and SNS)."
    );
    println!("  console   {console_url}");
    println!("  sandbox   {}", stack.sandbox.endpoint);
    println!("  gateway   {}", stack.gateway_url(0));
    for component in Component::SERVICES {
        println!("  {:<16}{}", component.name(), stack.address(component));
    }
    println!(
        "  routing   {} (edit it: the gateway reloads it)",
        routing_file.display()
    );

    let stay = match cli.command {
        Some(Command::Demo { exit }) => {
            let mut out = std::io::stdout();
            parley_local::demo::run(&stack, &mut out).await?;
            !exit
        }
        _ => true,
    };
    if stay {
        println!(
            "\nWrite as a customer:  curl -s {}/_sandbox/whatsapp/inbound -H 'content-type: application/json' \\\n  -d '{{\"contacts\":[{{\"profile\":{{\"name\":\"Ana\"}},\"wa_id\":\"14155550123\"}}],\"messages\":[{{\"from\":\"14155550123\",\"id\":\"wamid.1\",\"timestamp\":\"1\",\"type\":\"text\",\"text\":{{\"body\":\"hello\"}}}}]}}'",
            stack.sandbox.endpoint
        );
        println!(
            "See every chat:       curl -s {}/_sandbox/contacts",
            stack.sandbox.endpoint
        );
        println!(
            "\nConsole (play the customer and the agent, see each message's trace): {console_url}"
        );
        println!("Ctrl-C stops everything.");
        parley_runtime::shutdown_signal().await;
        println!("stopping…");
    }
    let _ = stop_console.send(());
    let _ = console_task.await;
    match std::sync::Arc::try_unwrap(stack) {
        Ok(stack) => stack.shutdown().await,
        Err(_) => tracing::warn!("the console still held the stack; stopping without draining"),
    }
    Ok(())
}
