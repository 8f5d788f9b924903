//! The session benchmark: GetChatByConversation and ClaimMessage through
//! gRPC on loopback against the embedded (SQLite) store, client and server
//! in one process on this machine. Each phase is bounded by a request count.

use std::{sync::Arc, time::Instant};

use parley_proto::{
    common::ConversationKey,
    session::{
        ActiveChat, ClaimMessageRequest, CompleteChatCreationRequest, EnsureChatRequest,
        GetChatByConversationRequest, MessageOrigin, ensure_chat_response::Outcome,
        session_client::SessionClient,
    },
};
use parley_runtime::server::{GrpcServer, ServerConfig};
use parley_session::{
    embedded::EmbeddedStore,
    grpc::{SessionConfig, SessionService},
};
use tonic::transport::Channel;

use crate::percentile_ms as percentile;

/// Options of the session benchmark.
#[derive(clap::Args)]
pub struct Options {
    /// Conversations seeded before the lookups.
    #[arg(long, default_value_t = 1_000)]
    conversations: u32,
    /// Requests per phase.
    #[arg(long, default_value_t = 100_000)]
    requests: u32,
    /// Concurrent callers.
    #[arg(long, default_value_t = 16)]
    concurrency: u32,
    /// gRPC connections the callers share (like gateway replicas).
    #[arg(long, default_value_t = 4)]
    connections: u32,
}

fn key(n: u32) -> ConversationKey {
    ConversationKey {
        business_number_id: "phone-number-id-0123456789abcdef0123456789abcdef".into(),
        customer_id: format!("1415{n:07}"),
    }
}

async fn phase<F, Fut>(name: &str, options: &Options, clients: &[SessionClient<Channel>], call: F)
where
    F: Fn(SessionClient<Channel>, u32) -> Fut + Send + Sync + 'static + Clone,
    Fut: std::future::Future<Output = ()> + Send,
{
    let per_task = options.requests / options.concurrency;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for t in 0..options.concurrency {
        let client = clients[(t % options.connections) as usize].clone();
        let call = call.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(per_task as usize);
            for i in 0..per_task {
                let began = Instant::now();
                call(client.clone(), t * per_task + i).await;
                latencies.push(began.elapsed());
            }
            latencies
        }));
    }
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await.expect("caller task"));
    }
    let elapsed = started.elapsed().as_secs_f64();
    latencies.sort();
    println!(
        "| {name} | {} | {:.0} /s | {:.2} ms | {:.2} ms | {:.2} ms |",
        latencies.len(),
        latencies.len() as f64 / elapsed,
        percentile(&latencies, 0.50),
        percentile(&latencies, 0.99),
        percentile(&latencies, 0.999),
    );
}

/// Runs the benchmark and prints the table.
pub fn run(options: Options) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let dir = tempfile::tempdir()?;
        let store = Arc::new(EmbeddedStore::open(&dir.path().join("session.db"))?);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?;
        tokio::spawn(
            GrpcServer::new(ServerConfig::local(address))
                .add_service(SessionService::new(store, SessionConfig::default()).into_server())
                .serve(listener, std::future::pending()),
        );
        let mut clients = Vec::new();
        for _ in 0..options.connections {
            let channel = Channel::from_shared(format!("http://{address}"))?
                .tcp_nodelay(true)
                .connect()
                .await?;
            clients.push(SessionClient::new(channel));
        }
        // Seed the conversations through the API.
        let mut seeder = clients[0].clone();
        for n in 0..options.conversations {
            let outcome = seeder
                .ensure_chat(EnsureChatRequest {
                    key: Some(key(n)),
                    ..EnsureChatRequest::default()
                })
                .await?
                .into_inner()
                .outcome;
            if let Some(Outcome::Lease(lease)) = outcome {
                seeder
                    .complete_chat_creation(CompleteChatCreationRequest {
                        lease_id: lease.lease_id,
                        chat: Some(ActiveChat {
                            key: Some(key(n)),
                            contact_id: format!("contact-{n}"),
                            initial_contact_id: format!("contact-{n}"),
                            participant_token: "p".into(),
                            connection_token: "c".into(),
                            customer_display_name: "Customer".into(),
                            channel: "WhatsApp".into(),
                            ..ActiveChat::default()
                        }),
                    })
                    .await?;
            }
        }
        println!(
            "embedded store (SQLite file, WAL); {} requests per phase; {} callers over {} connections; client and server share this {}-core machine\n",
            options.requests,
            options.concurrency,
            options.connections,
            std::thread::available_parallelism().map_or(0, |n| n.get())
        );
        println!("| call | requests | throughput | p50 | p99 | p99.9 |");
        println!("|---|---|---|---|---|---|");
        let conversations = options.conversations;
        phase("GetChatByConversation", &options, &clients, move |mut client, i| async move {
            client
                .get_chat_by_conversation(GetChatByConversationRequest {
                    key: Some(key(i % conversations)),
                })
                .await
                .expect("lookup");
        })
        .await;
        phase("ClaimMessage (new ids)", &options, &clients, |mut client, i| async move {
            client
                .claim_message(ClaimMessageRequest {
                    origin: MessageOrigin::Whatsapp as i32,
                    message_id: format!("wamid.bench.{i}"),
                    ttl_s: 0,
                    in_progress_timeout_s: 0,
                })
                .await
                .expect("claim");
        })
        .await;
        anyhow::Ok(())
    })
}
