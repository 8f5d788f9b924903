//! The console: the local bridge in a browser. A WhatsApp-like customer
//! pane and a Connect-like agent pane, both driving the real bridge
//! through the same conversation driver the tests use, and each message's
//! trace read from the in-process span store.
//!
//! The page is plain HTML, CSS and JavaScript (`tests/console/`, embedded
//! at build time; `PARLEY_CONSOLE_DIR` serves them from disk instead, for
//! working on them). Its API, all JSON unless noted:
//!
//! - `GET /api/state`: every conversation — what the customer sent and
//!   received on WhatsApp, and each of their Connect chats as the agent
//!   sees it.
//! - `POST /api/customers/{phone}/text` `{name, text}`;
//!   `…/media?kind=image|document|video|sticker&name=…&caption=…` (the
//!   file as the body, its type as `Content-Type`); `…/voice` (an OGG/Opus
//!   or WAV recording as the body); `…/location` `{latitude, longitude,
//!   name, address}`; `…/choose` `{message_id, option_id, title}`. Each
//!   answers `{wamid, trace_id}`.
//! - `POST /api/agent/{contact_id}/say` `{content_type, content}`;
//!   `…/attach?name=…` (the file as the body); `…/event` `{event}`
//!   (`typing`, `chat.ended`).
//! - `GET /api/whatsapp-media/{id}`, `GET /api/connect-attachment/{id}`:
//!   the bytes.
//! - `GET /api/traces/{trace_id}`: the trace's spans, by start time.

use std::{
    collections::BTreeMap,
    path::PathBuf,
    sync::{Arc, Mutex},
};

use axum::{
    Json, Router,
    body::Bytes,
    extract::{Path, Query, State},
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::{Stack, conversation::whatsapp_text, spans::SpanStore};

/// What a customer sent from the console (the customer pane shows it).
#[derive(Debug, Clone, serde::Serialize)]
struct Sent {
    wamid: String,
    phone: String,
    kind: String,
    text: String,
    media_id: String,
    mime_type: String,
    file_name: String,
    at_ms: i64,
    trace_id: String,
}

/// The console's state: the bridge, its spans, and what customers sent.
#[derive(Clone)]
pub struct Console {
    stack: Arc<Stack>,
    spans: SpanStore,
    sent: Arc<Mutex<Vec<Sent>>>,
    names: Arc<Mutex<BTreeMap<String, String>>>,
    assets: Option<PathBuf>,
}

type ApiResult = Result<Response, (StatusCode, String)>;

fn bad(error: impl std::fmt::Display) -> (StatusCode, String) {
    (StatusCode::BAD_REQUEST, error.to_string())
}

fn failed(error: impl std::fmt::Display) -> (StatusCode, String) {
    (StatusCode::BAD_GATEWAY, error.to_string())
}

/// A fresh W3C trace context and its trace id.
fn traceparent() -> (String, String) {
    let id: String = (0..2)
        .map(|_| format!("{:016x}", fastrand::u64(1..)))
        .collect();
    (format!("00-{id}-{:016x}-01", fastrand::u64(1..)), id)
}

impl Console {
    /// A console over `stack`, reading traces from `spans`.
    pub fn new(stack: Arc<Stack>, spans: SpanStore) -> Self {
        Self {
            stack,
            spans,
            sent: Arc::default(),
            names: Arc::default(),
            assets: std::env::var_os("PARLEY_CONSOLE_DIR").map(PathBuf::from),
        }
    }

    /// The console's routes.
    pub fn router(self) -> Router {
        Router::new()
            .route("/", get(|State(c): State<Console>| async move { c.asset("index.html") }))
            .route(
                "/{file}",
                get(|State(c): State<Console>, Path(file): Path<String>| async move { c.asset(&file) }),
            )
            .route("/api/state", get(state))
            .route("/api/customers/{phone}/text", post(customer_text))
            .route("/api/customers/{phone}/media", post(customer_media))
            .route("/api/customers/{phone}/voice", post(customer_voice))
            .route("/api/customers/{phone}/location", post(customer_location))
            .route("/api/customers/{phone}/choose", post(customer_choose))
            .route("/api/agent/{contact}/say", post(agent_say))
            .route("/api/agent/{contact}/attach", post(agent_attach))
            .route("/api/agent/{contact}/event", post(agent_event))
            .route("/api/whatsapp-media/{id}", get(whatsapp_media))
            .route("/api/connect-attachment/{id}", get(connect_attachment))
            .route("/api/traces/{trace}", get(trace))
            .layer(axum::extract::DefaultBodyLimit::max(32 << 20))
            .with_state(self)
    }

    /// A page file: from `PARLEY_CONSOLE_DIR` when set, else embedded.
    fn asset(&self, file: &str) -> Response {
        const EMBEDDED: [(&str, &str, &str); 3] = [
            (
                "index.html",
                "text/html; charset=utf-8",
                include_str!("../console/index.html"),
            ),
            (
                "app.js",
                "text/javascript; charset=utf-8",
                include_str!("../console/app.js"),
            ),
            (
                "style.css",
                "text/css; charset=utf-8",
                include_str!("../console/style.css"),
            ),
        ];
        let Some((name, mime, embedded)) = EMBEDDED.iter().find(|(name, _, _)| *name == file)
        else {
            return StatusCode::NOT_FOUND.into_response();
        };
        let body = match &self.assets {
            Some(dir) => {
                std::fs::read_to_string(dir.join(name)).unwrap_or_else(|_| (*embedded).to_owned())
            }
            None => (*embedded).to_owned(),
        };
        (
            [
                (header::CONTENT_TYPE, *mime),
                (header::CACHE_CONTROL, "no-store"),
            ],
            body,
        )
            .into_response()
    }

    fn name_of(&self, phone: &str, given: Option<&str>) -> String {
        let mut names = self.names.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(name) = given.filter(|n| !n.trim().is_empty()) {
            names.insert(phone.to_owned(), name.trim().to_owned());
        }
        names
            .get(phone)
            .cloned()
            .unwrap_or_else(|| format!("Customer {}", &phone[phone.len().saturating_sub(4)..]))
    }

    fn remember(&self, sent: Sent) {
        self.sent
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(sent);
    }

    /// Sends a Meta message object as `phone`, traced; records it.
    async fn send(
        &self,
        phone: &str,
        name: Option<&str>,
        message: Value,
        record: Sent,
    ) -> ApiResult {
        check_phone(phone)?;
        let name = self.name_of(phone, name);
        let (tp, trace_id) = traceparent();
        let wamid = self
            .stack
            .customer(phone, &name)
            .send_traced(message, &tp)
            .await
            .map_err(failed)?;
        self.remember(Sent {
            wamid: wamid.clone(),
            phone: phone.to_owned(),
            at_ms: parley_sandbox::state::now_ms(),
            trace_id: trace_id.clone(),
            ..record
        });
        Ok(Json(json!({ "wamid": wamid, "trace_id": trace_id })).into_response())
    }
}

fn check_phone(phone: &str) -> Result<(), (StatusCode, String)> {
    if (6..=20).contains(&phone.len()) && phone.bytes().all(|b| b.is_ascii_digit()) {
        Ok(())
    } else {
        Err(bad("a customer is a WhatsApp id: 6 to 20 digits"))
    }
}

fn blank(kind: &str) -> Sent {
    Sent {
        wamid: String::new(),
        phone: String::new(),
        kind: kind.to_owned(),
        text: String::new(),
        media_id: String::new(),
        mime_type: String::new(),
        file_name: String::new(),
        at_ms: 0,
        trace_id: String::new(),
    }
}

async fn state(State(console): State<Console>) -> Json<Value> {
    let sandbox = &console.stack.sandbox.sandbox;
    let sent = console
        .sent
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let mut phones: Vec<String> = sent.iter().map(|s| s.phone.clone()).collect();
    for contact in sandbox.contacts() {
        if let Some(phone) = contact.attributes.get("customerId") {
            phones.push(phone.clone());
        }
    }
    phones.sort();
    phones.dedup();
    let conversations: Vec<Value> = phones
        .iter()
        .map(|phone| {
            let mut whatsapp: Vec<Value> = sent
                .iter()
                .filter(|s| &s.phone == phone)
                .map(|s| json!({
                    "id": s.wamid, "direction": "in", "type": s.kind, "text": s.text,
                    "media": if s.media_id.is_empty() { Value::Null } else { json!({ "id": s.media_id, "mime_type": s.mime_type, "name": s.file_name }) },
                    "at_ms": s.at_ms, "trace_id": s.trace_id,
                }))
                .collect();
            for (n, message) in console.stack.whatsapp_to(phone).iter().enumerate() {
                let m = &message.message;
                let kind = m["type"].as_str().unwrap_or_default();
                let media = ["image", "audio", "video", "document", "sticker"]
                    .iter()
                    .find_map(|k| m.get(*k).and_then(|v| v["id"].as_str()).map(|id| (*k, id)));
                whatsapp.push(json!({
                    "id": message.message_id,
                    "direction": "out",
                    "type": kind,
                    "text": whatsapp_text(message),
                    "media": media.map(|(k, id)| {
                        let stored = sandbox.whatsapp_media(id);
                        json!({ "id": id, "kind": k, "mime_type": stored.map(|s| s.mime_type).unwrap_or_default(), "name": m[k]["filename"] })
                    }),
                    "buttons": m.pointer("/interactive/action/buttons").cloned().unwrap_or(Value::Null),
                    "list": m.pointer("/interactive/action/sections").cloned().unwrap_or(Value::Null),
                    "reply_to": m.pointer("/context/message_id").cloned().unwrap_or(Value::Null),
                    "reaction": m.get("reaction").cloned().unwrap_or(Value::Null),
                    "order": n,
                }));
            }
            let chats: Vec<Value> = console
                .stack
                .chats_of(phone)
                .into_iter()
                .map(|chat| {
                    let attachments = console.stack.attachments_of(&chat.contact_id);
                    let items: Vec<Value> = chat
                        .transcript
                        .iter()
                        .map(|item| {
                            let attachment = (item.kind == "ATTACHMENT")
                                .then(|| attachments.iter().find(|a| a.id == item.content))
                                .flatten()
                                .map(|a| json!({ "id": a.id, "name": a.name, "mime_type": a.content_type, "size": a.size }));
                            let notice = (item.content_type == "application/json")
                                .then(|| serde_json::from_str::<Value>(&item.content).ok())
                                .flatten()
                                .and_then(|v| v.get("parleyNotice").cloned());
                            json!({
                                "id": item.id, "kind": item.kind, "role": item.role,
                                "content_type": item.content_type, "content": item.content,
                                "attachment": attachment, "notice": notice, "at_ms": item.at_ms,
                            })
                        })
                        .collect();
                    json!({ "contact_id": chat.contact_id, "initial_contact_id": chat.initial_contact_id, "ended": chat.ended, "items": items })
                })
                .collect();
            json!({ "phone": phone, "name": console.name_of(phone, None), "whatsapp": whatsapp, "chats": chats })
        })
        .collect();
    Json(json!({ "conversations": conversations }))
}

#[derive(Deserialize)]
struct TextRequest {
    #[serde(default)]
    name: Option<String>,
    text: String,
}

async fn customer_text(
    State(console): State<Console>,
    Path(phone): Path<String>,
    Json(request): Json<TextRequest>,
) -> ApiResult {
    if request.text.trim().is_empty() {
        return Err(bad("the text is empty"));
    }
    let record = Sent {
        text: request.text.clone(),
        ..blank("text")
    };
    console
        .send(
            &phone,
            request.name.as_deref(),
            json!({ "type": "text", "text": { "body": request.text } }),
            record,
        )
        .await
}

#[derive(Deserialize)]
struct MediaQuery {
    #[serde(default = "image")]
    kind: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    caption: String,
    #[serde(default)]
    customer: Option<String>,
}

fn image() -> String {
    "image".into()
}

fn content_type(headers: &HeaderMap) -> String {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/octet-stream")
        .to_owned()
}

async fn customer_media(
    State(console): State<Console>,
    Path(phone): Path<String>,
    Query(query): Query<MediaQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult {
    if !matches!(
        query.kind.as_str(),
        "image" | "document" | "video" | "sticker" | "audio"
    ) {
        return Err(bad("kind is image, document, video, sticker or audio"));
    }
    if body.is_empty() {
        return Err(bad("the file is empty"));
    }
    let mime = content_type(&headers);
    let id = console
        .stack
        .sandbox
        .sandbox
        .add_customer_media(&mime, body.to_vec());
    let mut media = json!({ "id": id, "mime_type": mime, "sha256": "-" });
    if !query.caption.is_empty() && query.kind != "sticker" {
        media["caption"] = json!(query.caption);
    }
    if query.kind == "document" && !query.name.is_empty() {
        media["filename"] = json!(query.name);
    }
    let record = Sent {
        text: query.caption.clone(),
        media_id: id,
        mime_type: mime,
        file_name: query.name.clone(),
        ..blank(&query.kind)
    };
    console
        .send(
            &phone,
            query.customer.as_deref(),
            json!({ "type": query.kind, query.kind.clone(): media }),
            record,
        )
        .await
}

/// A recording (OGG/Opus as WhatsApp sends it, or a WAV the browser
/// made) as a voice note; a WAV is encoded to OGG/Opus by the transcoder
/// first, as a phone would.
async fn customer_voice(
    State(console): State<Console>,
    Path(phone): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult {
    use parley_client::TranscoderApi as _;
    use parley_proto::transcoder::{AudioFormat, ConvertRequest, OutputSpec};
    let mime = content_type(&headers);
    let ogg = if body.starts_with(b"OggS") {
        body.to_vec()
    } else if body.starts_with(b"RIFF") {
        console
            .stack
            .transcoder()
            .convert(ConvertRequest {
                input: None,
                output: Some(OutputSpec {
                    format: AudioFormat::OggOpus as i32,
                    sample_rate_hz: 48_000,
                    bitrate_bps: 24_000,
                }),
                audio: body,
            })
            .await
            .map_err(failed)?
            .audio
            .to_vec()
    } else {
        return Err(bad(format!("a voice note is OGG/Opus or WAV, not {mime}")));
    };
    let id = console
        .stack
        .sandbox
        .sandbox
        .add_customer_media("audio/ogg; codecs=opus", ogg);
    let record = Sent {
        media_id: id.clone(),
        mime_type: "audio/ogg; codecs=opus".into(),
        ..blank("voice")
    };
    console
        .send(
            &phone,
            None,
            json!({ "type": "audio", "audio": { "id": id, "mime_type": "audio/ogg; codecs=opus", "sha256": "-", "voice": true } }),
            record,
        )
        .await
}

#[derive(Deserialize)]
struct LocationRequest {
    latitude: f64,
    longitude: f64,
    #[serde(default)]
    name: String,
    #[serde(default)]
    address: String,
}

async fn customer_location(
    State(console): State<Console>,
    Path(phone): Path<String>,
    Json(request): Json<LocationRequest>,
) -> ApiResult {
    if !(-90.0..=90.0).contains(&request.latitude) || !(-180.0..=180.0).contains(&request.longitude)
    {
        return Err(bad("latitude is -90..90 and longitude -180..180"));
    }
    let record = Sent {
        text: format!(
            "📍 {} {:.5}, {:.5}",
            request.name, request.latitude, request.longitude
        ),
        ..blank("location")
    };
    console
        .send(
            &phone,
            None,
            json!({ "type": "location", "location": {
                "latitude": request.latitude, "longitude": request.longitude,
                "name": request.name, "address": request.address,
            }}),
            record,
        )
        .await
}

#[derive(Deserialize)]
struct ChooseRequest {
    message_id: String,
    option_id: String,
    title: String,
}

async fn customer_choose(
    State(console): State<Console>,
    Path(phone): Path<String>,
    Json(request): Json<ChooseRequest>,
) -> ApiResult {
    let record = Sent {
        text: request.title.clone(),
        ..blank("interactive")
    };
    console
        .send(
            &phone,
            None,
            json!({
                "type": "interactive",
                "context": { "from": "15550783881", "id": request.message_id },
                "interactive": { "type": "button_reply", "button_reply": { "id": request.option_id, "title": request.title } },
            }),
            record,
        )
        .await
}

#[derive(Deserialize)]
struct SayRequest {
    #[serde(default = "plain")]
    content_type: String,
    content: String,
}

fn plain() -> String {
    "text/plain".into()
}

async fn agent_say(
    State(console): State<Console>,
    Path(contact): Path<String>,
    Json(request): Json<SayRequest>,
) -> ApiResult {
    if request.content.trim().is_empty() {
        return Err(bad("the message is empty"));
    }
    let (tp, trace_id) = traceparent();
    let id = console
        .stack
        .agent()
        .says_traced(&contact, &request.content_type, &request.content, &tp)
        .await
        .map_err(bad)?;
    Ok(Json(json!({ "item_id": id, "trace_id": trace_id })).into_response())
}

#[derive(Deserialize)]
struct AttachQuery {
    name: String,
}

async fn agent_attach(
    State(console): State<Console>,
    Path(contact): Path<String>,
    Query(query): Query<AttachQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult {
    if body.is_empty() {
        return Err(bad("the file is empty"));
    }
    let id = console
        .stack
        .agent()
        .attaches(
            &contact,
            &query.name,
            &content_type(&headers),
            body.to_vec(),
        )
        .await
        .map_err(bad)?;
    Ok(Json(json!({ "attachment_id": id })).into_response())
}

#[derive(Deserialize)]
struct EventRequest {
    event: String,
}

async fn agent_event(
    State(console): State<Console>,
    Path(contact): Path<String>,
    Json(request): Json<EventRequest>,
) -> ApiResult {
    if !matches!(
        request.event.as_str(),
        "typing" | "chat.ended" | "participant.joined" | "participant.left"
    ) {
        return Err(bad(
            "event is typing, chat.ended, participant.joined or participant.left",
        ));
    }
    console
        .stack
        .agent()
        .event(&contact, &request.event)
        .await
        .map_err(bad)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn whatsapp_media(State(console): State<Console>, Path(id): Path<String>) -> Response {
    match console.stack.sandbox.sandbox.whatsapp_media(&id) {
        Some(media) => ([(header::CONTENT_TYPE, media.mime_type)], media.bytes).into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn connect_attachment(State(console): State<Console>, Path(id): Path<String>) -> Response {
    match console
        .stack
        .sandbox
        .sandbox
        .attachment(&id)
        .and_then(|a| Some((a.content_type, a.bytes?)))
    {
        Some((mime, bytes)) => ([(header::CONTENT_TYPE, mime)], bytes).into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn trace(State(console): State<Console>, Path(trace): Path<String>) -> Json<Value> {
    Json(json!({ "trace_id": trace, "spans": console.spans.trace(&trace) }))
}
