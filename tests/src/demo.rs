//! The scripted conversation `parley-local demo` plays on the whole bridge:
//! a customer's text, a burst, a picture, a voice note with its
//! transcript; the agent's text, markdown, a quick reply answered, a
//! `.wav` that arrives as a voice note, and the chat ending. Each step is
//! printed as the customer and as the agent see it, with its trace id and
//! how long it took. A test plays it too, so the README's first command
//! cannot rot.

use std::{
    io::Write,
    time::{Duration, Instant},
};

use serde_json::{Value, json};

use crate::{
    Stack,
    conversation::{customer_texts, eventually, whatsapp_text},
};

/// How long one step may take before the demo gives up.
const STEP: Duration = Duration::from_secs(30);

/// The routing the demo runs with: the stack's, plus the transcript echo
/// and a goodbye.
pub fn routing() -> String {
    format!(
        "{}echo_transcript = true\ngoodbye = \"Thanks for contacting us. Bye! 👋\"\n",
        crate::stack::default_routing()
    )
}

/// What one step took, for the summary.
#[derive(Debug, Clone)]
pub struct StepReport {
    /// What happened.
    pub name: &'static str,
    /// From the send to the far side seeing it.
    pub took: Duration,
}

/// A fresh W3C trace context: the step's trace id, known up front.
fn traceparent() -> (String, String) {
    let id: String = (0..2)
        .map(|_| format!("{:016x}", fastrand::u64(1..)))
        .collect();
    let span = format!("{:016x}", fastrand::u64(1..));
    (format!("00-{id}-{span}-01"), id)
}

/// A 1×1 PNG.
const PNG: &[u8] = &[
    0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44, 0x52,
    0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06, 0x00, 0x00, 0x00, 0x1f, 0x15, 0xc4,
    0x89, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x44, 0x41, 0x54, 0x78, 0x9c, 0x63, 0xf8, 0xcf, 0xc0, 0xf0,
    0x1f, 0x00, 0x05, 0x00, 0x01, 0xff, 0x89, 0x99, 0x3d, 0x1d, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45,
    0x4e, 0x44, 0xae, 0x42, 0x60, 0x82,
];

/// Plays the conversation on `stack` (started with [`routing`]), writing
/// each step to `out`.
pub async fn run(stack: &Stack, out: &mut (dyn Write + Send)) -> anyhow::Result<Vec<StepReport>> {
    let phone = "14155550123";
    let ana = stack.customer(phone, "Ana");
    let agent = stack.agent();
    let mut reports = Vec::new();
    let mut step = |out: &mut (dyn Write + Send),
                    n: usize,
                    name: &'static str,
                    trace: &str,
                    took: Duration,
                    lines: &[String]|
     -> anyhow::Result<()> {
        writeln!(out, "\n{n:>2}. {name}")?;
        for line in lines {
            writeln!(out, "    {line}")?;
        }
        writeln!(out, "    trace {trace} · {} ms", took.as_millis())?;
        reports.push(StepReport { name, took });
        Ok(())
    };
    let agent_texts = |stack: &Stack| -> Vec<String> {
        stack
            .chats_of(phone)
            .iter()
            .flat_map(customer_texts)
            .collect()
    };
    let wait =
        async |what: &str, check: &mut dyn FnMut() -> Option<Value>| -> anyhow::Result<Value> {
            eventually(STEP, check)
                .await
                .ok_or_else(|| anyhow::anyhow!("{what} did not arrive within {} s", STEP.as_secs()))
        };

    // 1. A new customer writes: a chat opens.
    let (tp, trace) = traceparent();
    let started = Instant::now();
    let text = "Hi! I ordered a blue jacket last week.";
    ana.send_traced(json!({ "type": "text", "text": { "body": text } }), &tp)
        .await?;
    wait("the first message", &mut || {
        agent_texts(stack).first().map(|t| json!(t))
    })
    .await?;
    let chat = stack.chats_of(phone).remove(0);
    step(
        out,
        1,
        "a new customer writes; Connect opens a chat",
        &trace,
        started.elapsed(),
        &[
            format!("📱 Ana       {text}"),
            format!("🎧 agent     {text}   (new chat {})", &chat.contact_id[..8]),
        ],
    )?;

    // 2. A burst: three messages, one debounced delivery.
    let (tp, trace) = traceparent();
    let started = Instant::now();
    let burst = ["Order 10072", "It was due on Monday", "Can you check?"];
    for line in burst {
        ana.send_traced(json!({ "type": "text", "text": { "body": line } }), &tp)
            .await?;
    }
    let merged = wait("the burst", &mut || {
        agent_texts(stack).get(1).map(|t| json!(t))
    })
    .await?;
    step(
        out,
        2,
        "a burst of three, debounced into one message",
        &trace,
        started.elapsed(),
        &[
            format!("📱 Ana       {}", burst.join(" / ")),
            format!("🎧 agent     {:?}", merged.as_str().unwrap_or_default()),
        ],
    )?;

    // 3. A picture with a caption.
    let (tp, trace) = traceparent();
    let started = Instant::now();
    let id = stack
        .sandbox
        .sandbox
        .add_customer_media("image/png", PNG.to_vec());
    ana.send_traced(
        json!({ "type": "image", "image": { "id": id, "mime_type": "image/png", "sha256": "-", "caption": "This is the label" } }),
        &tp,
    )
    .await?;
    let attachment = wait("the picture", &mut || {
        let attachments = stack.attachments_of(&chat.contact_id);
        attachments
            .iter()
            .find(|a| a.completed && a.content_type == "image/png")
            .map(|a| json!({ "name": a.name, "size": a.size }))
    })
    .await?;
    wait("the caption", &mut || {
        agent_texts(stack)
            .iter()
            .any(|t| t.contains("This is the label"))
            .then_some(json!(true))
    })
    .await?;
    step(
        out,
        3,
        "a picture with its caption",
        &trace,
        started.elapsed(),
        &[
            "📱 Ana       [picture] This is the label".to_owned(),
            format!(
                "🎧 agent     attachment {} ({} bytes), then \"This is the label\"",
                attachment["name"].as_str().unwrap_or_default(),
                attachment["size"]
            ),
        ],
    )?;

    // 4. A voice note: attached as WAV, transcribed, echoed back.
    let (tp, trace) = traceparent();
    let started = Instant::now();
    let mut samples = vec![0i16; 4_800];
    samples.extend(parley_sandbox::recognizer::dtmf("10072", 48_000));
    samples.extend(vec![0i16; 4_800]);
    let ogg = parley_transcoder::synth::encode_pcm(&samples, 48_000)?;
    let ogg_bytes = ogg.len();
    let id = stack
        .sandbox
        .sandbox
        .add_customer_media("audio/ogg; codecs=opus", ogg);
    ana.send_traced(
        json!({ "type": "audio", "audio": { "id": id, "mime_type": "audio/ogg; codecs=opus", "sha256": "-", "voice": true } }),
        &tp,
    )
    .await?;
    let transcript = wait("the transcript", &mut || {
        agent_texts(stack)
            .into_iter()
            .find(|t| t.starts_with("🎤"))
            .map(|t| json!(t))
    })
    .await?;
    let wav = stack
        .attachments_of(&chat.contact_id)
        .into_iter()
        .find(|a| a.content_type == "audio/wav")
        .map(|a| a.size)
        .unwrap_or_default();
    let echo = wait("the echo", &mut || {
        stack
            .whatsapp_to(phone)
            .first()
            .map(|m| json!(whatsapp_text(m)))
    })
    .await?;
    step(
        out,
        4,
        "a voice note: WAV for the agent, a transcript, an echo",
        &trace,
        started.elapsed(),
        &[
            format!("📱 Ana       [voice note, OGG/Opus, {ogg_bytes} bytes]"),
            format!(
                "🎧 agent     voice-note.wav ({wav} bytes) and {:?}",
                transcript.as_str().unwrap_or_default()
            ),
            format!("📱 Ana sees  {}", echo.as_str().unwrap_or_default()),
        ],
    )?;

    // 5–6. The agent answers in text, then markdown.
    let already = stack.whatsapp_to(phone).len();
    for (n, name, content_type, content) in [
        (
            5,
            "the agent answers",
            "text/plain",
            "Thanks, Ana! Let me check order 10072.",
        ),
        (
            6,
            "markdown becomes WhatsApp formatting",
            "text/markdown",
            "Your order **10072** is _in transit_ and arrives **tomorrow**.",
        ),
    ] {
        let (tp, trace) = traceparent();
        let started = Instant::now();
        agent
            .says_traced(&chat.contact_id, content_type, content, &tp)
            .await?;
        let index = already + n - 5;
        let seen = wait("the agent's message", &mut || {
            stack
                .whatsapp_to(phone)
                .get(index)
                .map(|m| json!(whatsapp_text(m)))
        })
        .await?;
        step(
            out,
            n,
            name,
            &trace,
            started.elapsed(),
            &[
                format!("🎧 agent     {content}"),
                format!("📱 Ana sees  {}", seen.as_str().unwrap_or_default()),
            ],
        )?;
    }

    // 7. A quick reply, answered by a tap.
    let (tp, trace) = traceparent();
    let started = Instant::now();
    let template = json!({
        "templateType": "QuickReply",
        "version": "1.0",
        "data": { "content": { "title": "Anything else I can help with?", "elements": [
            { "title": "Yes, please" }, { "title": "No, thanks" }
        ]}}
    });
    agent
        .says_traced(
            &chat.contact_id,
            "application/vnd.amazonaws.connect.message.interactive",
            &template.to_string(),
            &tp,
        )
        .await?;
    let menu = wait("the quick reply", &mut || {
        stack
            .whatsapp_to(phone)
            .into_iter()
            .find(|m| m.message["type"] == "interactive")
            .map(|m| json!({ "id": m.message_id, "buttons": m.message["interactive"]["action"]["buttons"] }))
    })
    .await?;
    let buttons: Vec<String> = menu["buttons"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|b| b["reply"]["title"].as_str().map(str::to_owned))
        .collect();
    let second = menu["buttons"][1]["reply"]["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    ana.choose(
        menu["id"].as_str().unwrap_or_default(),
        &second,
        "No, thanks",
    )
    .await?;
    wait("the choice", &mut || {
        agent_texts(stack)
            .iter()
            .any(|t| t == "No, thanks")
            .then_some(json!(true))
    })
    .await?;
    step(
        out,
        7,
        "a quick reply: buttons on WhatsApp, the tap back in Connect",
        &trace,
        started.elapsed(),
        &[
            "🎧 agent     Anything else I can help with? [Yes, please] [No, thanks]".to_owned(),
            format!("📱 Ana sees  buttons {buttons:?} and taps \"No, thanks\""),
            "🎧 agent     No, thanks".to_owned(),
        ],
    )?;

    // 8. A .wav from the agent arrives as a voice note.
    let started = Instant::now();
    let samples = parley_transcoder::synth::speech_like(16_000, 2.0, 5);
    let mut wav =
        parley_transcoder::pcm::wav_header(16_000, Some(samples.len() as u64 * 2)).to_vec();
    wav.extend(parley_transcoder::synth::to_le_bytes(&samples));
    let wav_bytes = wav.len();
    agent
        .attaches(&chat.contact_id, "directions.wav", "audio/wav", wav)
        .await?;
    let voice = wait("the agent's voice note", &mut || {
        stack
            .whatsapp_to(phone)
            .into_iter()
            .find(|m| m.message["type"] == "audio")
            .map(|m| json!(m.message["audio"]["id"]))
    })
    .await?;
    let ogg = stack
        .sandbox
        .sandbox
        .whatsapp_media(voice.as_str().unwrap_or_default())
        .map(|m| m.bytes.len())
        .unwrap_or_default();
    step(
        out,
        8,
        "the agent's .wav arrives as a WhatsApp voice note",
        &trace_of_nothing(),
        started.elapsed(),
        &[
            format!("🎧 agent     directions.wav ({wav_bytes} bytes)"),
            format!("📱 Ana sees  a voice note (OGG/Opus, {ogg} bytes)"),
        ],
    )?;

    // 9. The agent ends the chat: a goodbye, and the next message opens a new chat.
    let started = Instant::now();
    agent.event(&chat.contact_id, "chat.ended").await?;
    let goodbye = wait("the goodbye", &mut || {
        stack
            .whatsapp_to(phone)
            .last()
            .map(whatsapp_text)
            .filter(|t| t.contains("Bye"))
            .map(|t| json!(t))
    })
    .await?;
    step(
        out,
        9,
        "the agent ends the chat",
        &trace_of_nothing(),
        started.elapsed(),
        &[
            "🎧 agent     [ends the chat]".to_owned(),
            format!("📱 Ana sees  {}", goodbye.as_str().unwrap_or_default()),
        ],
    )?;
    let total: Duration = reports.iter().map(|r| r.took).sum();
    writeln!(
        out,
        "\nThe whole conversation took {} ms across {} steps. Every hop went through the real AWS SDKs against the sandbox.",
        total.as_millis(),
        reports.len()
    )?;
    Ok(reports)
}

/// Steps started by the sandbox playing Connect (attachments, events)
/// carry no trace context of their own.
fn trace_of_nothing() -> String {
    "— (started by Connect, which sets none)".to_owned()
}
