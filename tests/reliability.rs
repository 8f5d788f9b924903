//! Nothing lost, nothing doubled: the whole bridge as separate processes
//! (real gRPC, real SDK calls, the sandbox's SNS retrying deliveries as SNS
//! does), with the gateway killed — at every step that has state on either
//! side of it, then at random moments — and services killed mid-flow.
//! Every message is counted at the far side: each exactly once, in order.
//! The logs of every process are scanned for personal data afterwards.
//!
//! Bounded for CI; `PARLEY_RELIABILITY_ROUNDS` runs the random-kill loop
//! longer (e.g. 50).

use std::time::Duration;

use parley_local::{
    Component, SessionStore, Stack, StackBuilder,
    conversation::{customer_texts, eventually, whatsapp_text},
};

const WAIT: Duration = Duration::from_secs(60);

/// Every step of the gateway with state on either side (grep
/// `crash_point` for where each is), and whether the customer's chat
/// exists before (a step inside delivery to an open chat) or is opened by
/// the messages (the chat-creation path).
const CRASH_POINTS: [(&str, bool); 8] = [
    ("ingest:parsed", false),
    ("ingest:appended", false),
    ("flush:taken", false),
    ("deliver:chat-opened", false),
    ("flush:delivered", false),
    ("deliver:step", true),
    ("flush:delivered", true),
    ("flush:acked", true),
];

async fn stack() -> Stack {
    stack_with(|builder| builder).await
}

async fn stack_with(tweak: impl FnOnce(StackBuilder) -> StackBuilder) -> Stack {
    let data = tempfile::tempdir().unwrap().keep();
    tweak(Stack::builder())
        .bridge()
        .processes()
        .session_store(SessionStore::File(data.join("session.db")))
        .capture_logs()
        .gateway_config(|config| {
            config.flush.lease = Duration::from_secs(4);
        })
        .start()
        .await
        .expect("the bridge starts as processes")
}

/// The lines the agent received from `phone`, once there are `count`.
async fn lines_at_agent(stack: &Stack, phone: &str, count: usize) -> Vec<String> {
    let lines = |stack: &Stack| -> Vec<String> {
        stack
            .chats_of(phone)
            .iter()
            .flat_map(customer_texts)
            .flat_map(|t| t.lines().map(str::to_owned).collect::<Vec<_>>())
            .collect()
    };
    let found = eventually(WAIT, || {
        let lines = lines(stack);
        (lines.len() >= count).then_some(lines)
    })
    .await;
    match found {
        // Count only once every batch is acked: a redelivery, if any, has
        // happened by then.
        Some(_) => {
            assert!(
                stack.settled(phone, WAIT).await,
                "{phone}'s buffers never drained"
            );
            lines(stack)
        }
        None => panic!(
            "{count} lines never reached the agent from {phone}: {:#?}",
            stack.chats_of(phone)
        ),
    }
}

/// Checks the logs of every process: no phone number, no message text, no
/// participant or connection token, in clear.
fn assert_logs_clean(stack: &Stack, secrets: &[String]) {
    let logs = stack.process_logs();
    assert!(!logs.is_empty(), "the processes logged");
    let mut lines = 0;
    for (file, text) in &logs {
        for line in text.lines() {
            lines += 1;
            for secret in secrets {
                assert!(
                    !line.contains(secret.as_str()),
                    "{file} logs {secret:?} in clear: {line}"
                );
            }
            assert!(
                !line.contains("ptok-"),
                "{file} logs a participant token: {line}"
            );
        }
    }
    assert!(lines > 50, "only {lines} log lines: is logging on?");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_killed_at_every_step_loses_and_doubles_nothing() {
    let stack = stack().await;
    let mut secrets = Vec::new();
    for (index, (point, chat_open)) in CRASH_POINTS.iter().enumerate() {
        let phone = format!("1415555041{index}");
        let customer = stack.customer(&phone, "Crash Test");
        let mut sent = Vec::new();
        if *chat_open {
            let warm_up = format!("secret warm-up {index}");
            customer.text(&warm_up).await.unwrap();
            lines_at_agent(&stack, &phone, 1).await;
            sent.push(warm_up);
        }
        stack
            .restart_gateway(0, &[("PARLEY_TEST_CRASH_AT", point)])
            .await
            .unwrap();
        let burst: Vec<String> = (1..=3)
            .map(|n| format!("secret words {index}-{n}"))
            .collect();
        sent.extend(burst.iter().cloned());
        for text in &burst {
            customer.text(text).await.unwrap();
        }
        assert!(
            stack.wait_gateway_exit(0, Duration::from_secs(30)).await,
            "the gateway reached {point} and died"
        );
        stack.restart_gateway(0, &[]).await.unwrap();
        let lines = lines_at_agent(&stack, &phone, sent.len()).await;
        assert_eq!(
            lines, sent,
            "killed at {point}: every message once, in order"
        );
        assert_eq!(
            stack.chats_of(&phone).len(),
            1,
            "killed at {point}: one chat"
        );
        secrets.push(phone);
        secrets.extend(sent);
    }
    assert_logs_clean(&stack, &secrets);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_messages_survive_a_gateway_killed_at_every_step() {
    let stack = stack().await;
    let phone = "14155550420";
    let customer = stack.customer(phone, "Agent Side");
    customer.text("hello").await.unwrap();
    let chat = eventually(WAIT, || {
        stack
            .chats_of(phone)
            .into_iter()
            .find(|c| c.streaming_endpoint.is_some() && !customer_texts(c).is_empty())
    })
    .await
    .expect("a chat");
    // Let the first batch finish (and the session store the chat).
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut expected = Vec::new();
    for point in [
        "ingest:appended",
        "flush:taken",
        "deliver:step",
        "flush:delivered",
    ] {
        stack
            .restart_gateway(0, &[("PARLEY_TEST_CRASH_AT", point)])
            .await
            .unwrap();
        for n in 1..=2 {
            let text = format!("agent says {point} {n}");
            stack
                .agent()
                .says(&chat.contact_id, "text/plain", &text)
                .await
                .unwrap();
            expected.push(text);
        }
        assert!(
            stack.wait_gateway_exit(0, Duration::from_secs(30)).await,
            "the gateway reached {point} and died"
        );
        stack.restart_gateway(0, &[]).await.unwrap();
        let got = eventually(WAIT, || {
            let texts: Vec<String> = stack.whatsapp_to(phone).iter().map(whatsapp_text).collect();
            (texts.len() >= expected.len()).then_some(texts)
        })
        .await
        .unwrap_or_else(|| panic!("killed at {point}: {:#?}", stack.whatsapp_to(phone)));
        assert!(
            stack.settled(phone, WAIT).await,
            "killed at {point}: the buffers drain"
        );
        let texts: Vec<String> = stack.whatsapp_to(phone).iter().map(whatsapp_text).collect();
        assert_eq!(texts, got, "killed at {point}: nothing more arrived");
        assert_eq!(texts, expected, "killed at {point}: each once, in order");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_greeting_from_before_streaming_survives_a_gateway_killed_as_the_chat_opens() {
    // The flow's greeting is only in the transcript (Connect streams what
    // comes after StartContactStreaming); the gateway buffers it before it
    // stores the chat. Killed right after that, or after the chat was
    // stored, the customer still gets it once and the agent the text once.
    let greeting = "Welcome! An agent will be with you shortly.";
    let stack = stack_with(|builder| {
        builder
            .sandbox_config(move |config| config.flow_greeting = Some(greeting.into()))
            .gateway_config(|config| {
                config.chat_creation_lease = Duration::from_secs(3);
                // Room for the takeover's wait (lease, then the batch's).
                config.flush.max_attempts = 10;
            })
    })
    .await;
    for (index, point) in ["deliver:earlier-buffered", "deliver:chat-opened"]
        .into_iter()
        .enumerate()
    {
        let phone = format!("1415555043{index}");
        let customer = stack.customer(&phone, "Greeted");
        stack
            .restart_gateway(0, &[("PARLEY_TEST_CRASH_AT", point)])
            .await
            .unwrap();
        let text = format!("secret hello {index}");
        customer.text(&text).await.unwrap();
        assert!(
            stack.wait_gateway_exit(0, Duration::from_secs(30)).await,
            "the gateway reached {point} and died"
        );
        stack.restart_gateway(0, &[]).await.unwrap();
        assert_eq!(lines_at_agent(&stack, &phone, 1).await, [text]);
        let greeted = eventually(WAIT, || {
            let texts: Vec<String> = stack
                .whatsapp_to(&phone)
                .iter()
                .map(whatsapp_text)
                .collect();
            (!texts.is_empty()).then_some(texts)
        })
        .await
        .unwrap_or_else(|| panic!("killed at {point}: the greeting never reached WhatsApp"));
        assert!(
            stack.settled(&phone, WAIT).await,
            "killed at {point}: the buffers drain"
        );
        let texts: Vec<String> = stack
            .whatsapp_to(&phone)
            .iter()
            .map(whatsapp_text)
            .collect();
        assert_eq!(texts, greeted, "killed at {point}: nothing more arrived");
        assert_eq!(texts, [greeting], "killed at {point}: the greeting once");
        assert_eq!(
            stack.chats_of(&phone).len(),
            1,
            "killed at {point}: one chat"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_sigkills_lose_and_double_nothing() {
    let rounds: usize = std::env::var("PARLEY_RELIABILITY_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(4);
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    eprintln!("random kills: {rounds} rounds, seed {seed}");
    let mut random = fastrand::Rng::with_seed(seed);
    let stack = stack().await;
    let phones: Vec<String> = (0..3).map(|n| format!("1415555043{n}")).collect();
    let customers: Vec<_> = phones.iter().map(|p| stack.customer(p, "Random")).collect();
    let mut expected: Vec<Vec<String>> = vec![Vec::new(); phones.len()];
    for round in 0..rounds {
        for (n, customer) in customers.iter().enumerate() {
            let text = format!("round {round} from {n}");
            customer.text(&text).await.unwrap();
            expected[n].push(text);
        }
        tokio::time::sleep(Duration::from_millis(random.u64(50..1_200))).await;
        stack.kill_gateway(0).await;
        tokio::time::sleep(Duration::from_millis(random.u64(0..300))).await;
        stack.restart_gateway(0, &[]).await.unwrap();
    }
    for (n, phone) in phones.iter().enumerate() {
        let lines = lines_at_agent(&stack, phone, expected[n].len()).await;
        assert_eq!(
            lines, expected[n],
            "customer {n} (seed {seed}): each once, in order"
        );
        assert_eq!(stack.chats_of(phone).len(), 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_killed_mid_flow_delays_but_loses_nothing() {
    let stack = stack().await;
    let phone = "14155550440";
    let customer = stack.customer(phone, "Patient");
    customer.text("before").await.unwrap();
    lines_at_agent(&stack, phone, 1).await;
    for component in [Component::ConnectRelay, Component::Session] {
        stack.kill_service(component);
        customer
            .text(&format!("while {} is down", component.name()))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(1_500)).await;
        stack.start_service(component).await.unwrap();
    }
    let lines = lines_at_agent(&stack, phone, 3).await;
    assert_eq!(
        lines,
        [
            "before",
            "while connect-relay is down",
            "while session is down"
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_on_one_queue_with_one_killed_lose_and_double_nothing() {
    let stack = Stack::builder()
        .bridge()
        .processes()
        .sqs_feed()
        .gateway_replicas(2)
        .gateway_config(|config| config.flush.lease = Duration::from_secs(4))
        .start()
        .await
        .expect("two replicas on SQS");
    let phones: Vec<String> = (0..3).map(|n| format!("1415555045{n}")).collect();
    let customers: Vec<_> = phones.iter().map(|p| stack.customer(p, "Two")).collect();
    let mut expected: Vec<Vec<String>> = vec![Vec::new(); phones.len()];
    for round in 0..4 {
        for (n, customer) in customers.iter().enumerate() {
            let text = format!("round {round} from {n}");
            customer.text(&text).await.unwrap();
            expected[n].push(text);
        }
        if round == 1 {
            // One replica dies mid-flow; the other (and SQS redelivery)
            // carries on.
            tokio::time::sleep(Duration::from_millis(300)).await;
            stack.kill_gateway(1).await;
        }
    }
    for (n, phone) in phones.iter().enumerate() {
        let mut lines = lines_at_agent(&stack, phone, expected[n].len()).await;
        // Each once. Not necessarily in order: a receive the killed
        // replica had in flight still hides its message for the queue's
        // visibility timeout (SQS, like moto, answers a long poll whose
        // caller is gone), and the survivor delivers later messages
        // meanwhile (README, known limits).
        lines.sort();
        let mut sent = expected[n].clone();
        sent.sort();
        assert_eq!(lines, sent, "customer {n}: each once");
        assert_eq!(stack.chats_of(phone).len(), 1, "customer {n}: one chat");
    }
}
