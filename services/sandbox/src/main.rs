//! `parley-sandbox`: the AWS emulator as a standalone process for local
//! runs (`AWS_ENDPOINT_URL_CONNECT`, `AWS_ENDPOINT_URL_CONNECTPARTICIPANT`
//! and `AWS_ENDPOINT_URL_SOCIALMESSAGING` point at it). Never deploy it.

use std::net::SocketAddr;

use clap::Parser;
use parley_sandbox::SandboxConfig;

#[derive(Parser)]
#[command(
    name = "parley-sandbox",
    version,
    about = "Local emulator of Connect chat and Connect Participant for Parley"
)]
struct Cli {
    /// Address to listen on.
    #[arg(long, env = "PARLEY_LISTEN", default_value = "127.0.0.1:4599")]
    listen: SocketAddr,
    /// Base URL in the upload/download links it hands out (default: its own address).
    #[arg(long, default_value = "")]
    public_url: String,
    /// Move WhatsApp media through S3 and publish Connect streaming to SNS,
    /// using the standard AWS environment (point `AWS_ENDPOINT_URL` at moto).
    #[arg(long)]
    with_aws: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let (s3, sns) = if cli.with_aws {
        let aws = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
        (
            Some(parley_sandbox::moto::s3_client(&aws)),
            Some(aws_sdk_sns::Client::new(&aws)),
        )
    } else {
        (None, None)
    };
    let running = parley_sandbox::start(
        cli.listen,
        SandboxConfig {
            public_url: cli.public_url,
            s3,
            sns,
            ..SandboxConfig::default()
        },
    )
    .await?;
    eprintln!("parley-sandbox listening on {}", running.endpoint);
    parley_runtime::shutdown_signal().await;
    Ok(())
}
