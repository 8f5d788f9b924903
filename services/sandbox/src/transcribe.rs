//! Amazon Transcribe Streaming's `StartStreamTranscription` over its real
//! wire protocol: `POST /stream-transcription` with the
//! `x-amzn-transcribe-*` headers, an event-stream request body of signed
//! frames (each wrapping an `AudioEvent`), and an event-stream response of
//! `TranscriptEvent`s or an exception frame — full duplex, so results flow
//! while audio is still arriving. The words come from
//! [`crate::recognizer`], which decodes DTMF and never invents speech.

use std::{collections::HashMap, sync::Arc};

use aws_smithy_eventstream::frame::{
    DecodedFrame, MessageFrameDecoder, read_message_from, write_message_to,
};
use aws_smithy_types::event_stream::{Header, HeaderValue, Message};
use axum::{
    Router,
    body::Body,
    extract::{Request, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::post,
};
use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use serde_json::json;

use crate::{
    aws::{Api, AwsError},
    recognizer::DtmfRecognizer,
    state::{Sandbox, TranscriptionRequest, new_id},
};

/// Counts a stream open until its task ends, however it ends.
struct OpenStream(Arc<Sandbox>);

impl Drop for OpenStream {
    fn drop(&mut self) {
        self.0.transcription_closed();
    }
}

/// The routes of this service.
pub fn routes() -> Router<Arc<Sandbox>> {
    Router::new().route("/stream-transcription", post(start_stream_transcription))
}

fn header(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

fn frame(message_type: &str, kind_header: &str, kind: &str, payload: serde_json::Value) -> Bytes {
    let message = Message::new(Bytes::from(payload.to_string()))
        .add_header(Header::new(
            ":message-type",
            HeaderValue::String(message_type.to_owned().into()),
        ))
        .add_header(Header::new(
            kind_header.to_owned(),
            HeaderValue::String(kind.to_owned().into()),
        ))
        .add_header(Header::new(
            ":content-type",
            HeaderValue::String("application/json".into()),
        ));
    let mut out = Vec::new();
    write_message_to(&message, &mut out).expect("writing to a Vec cannot fail");
    out.into()
}

fn exception(kind: &str, message: &str) -> Bytes {
    frame(
        "exception",
        ":exception-type",
        kind,
        json!({ "Message": message }),
    )
}

fn transcript_event(
    result_id: &str,
    recognizer: &DtmfRecognizer,
    partial: bool,
    language: &str,
    identified: bool,
) -> Bytes {
    let keys = recognizer.keys();
    let items: Vec<_> = keys
        .iter()
        .map(|k| {
            json!({"Type": "pronunciation", "Content": crate::recognizer::word(k.key), "StartTime": k.start_s, "EndTime": k.end_s,
                   "Stable": !partial, "Confidence": 0.99})
        })
        .collect();
    let start = keys.first().map_or(0.0, |k| k.start_s);
    let end = keys.last().map_or(0.0, |k| k.end_s);
    let mut result = json!({
        "ResultId": result_id, "StartTime": start, "EndTime": end, "IsPartial": partial, "ChannelId": "ch_0",
        "LanguageCode": language,
        "Alternatives": [{"Transcript": recognizer.transcript(), "Items": items}]
    });
    if identified {
        // With language identification, each result scores the candidates.
        result["LanguageIdentification"] = json!([{ "LanguageCode": language, "Score": 0.99 }]);
    }
    frame(
        "event",
        ":event-type",
        "TranscriptEvent",
        json!({"Transcript": {"Results": [result]}}),
    )
}

async fn start_stream_transcription(
    State(sandbox): State<Arc<Sandbox>>,
    request: Request,
) -> Response {
    if let Err(e) = sandbox.enter(Api::Transcribe, "StartStreamTranscription") {
        return e.into_response();
    }
    let headers = request.headers().clone();
    let transcribe_headers: HashMap<String, String> = headers
        .iter()
        .filter(|(name, _)| name.as_str().starts_with("x-amzn-transcribe-"))
        .filter_map(|(name, value)| {
            Some((name.as_str().to_owned(), value.to_str().ok()?.to_owned()))
        })
        .collect();
    let http_version = format!("{:?}", request.version());

    let encoding = header(&headers, "x-amzn-transcribe-media-encoding").unwrap_or_default();
    let rate: u32 = header(&headers, "x-amzn-transcribe-sample-rate")
        .and_then(|r| r.parse().ok())
        .unwrap_or(0);
    let language = header(&headers, "x-amzn-transcribe-language-code");
    // Clients write the flag as `true` or `True`: booleans in headers are
    // case-insensitive.
    let identify = header(&headers, "x-amzn-transcribe-identify-language")
        .is_some_and(|v| v.eq_ignore_ascii_case("true"));
    let bad = |message: &str| AwsError::validation(Api::Transcribe, message).into_response();
    if !matches!(encoding.as_str(), "pcm" | "ogg-opus" | "flac") {
        return bad("MediaEncoding must be pcm, ogg-opus or flac");
    }
    if !(8_000..=48_000).contains(&rate) {
        return bad("MediaSampleRateHertz must be between 8000 and 48000");
    }
    if language.is_none() && !identify {
        return bad("either LanguageCode or IdentifyLanguage is required");
    }
    let options = header(&headers, "x-amzn-transcribe-language-options").unwrap_or_default();
    if identify && options.split(',').filter(|o| !o.is_empty()).count() < 2 {
        return bad("IdentifyLanguage needs at least two LanguageOptions");
    }
    let language = language
        .or_else(|| header(&headers, "x-amzn-transcribe-preferred-language"))
        .or_else(|| options.split(',').next().map(str::to_owned))
        .unwrap_or_default();

    let session_id = header(&headers, "x-amzn-transcribe-session-id").unwrap_or_else(new_id);
    let stream_index = sandbox.transcription_opened(TranscriptionRequest {
        http_version,
        headers: transcribe_headers,
        audio_events: Vec::new(),
    });
    let recorder = sandbox.clone();
    let open = OpenStream(sandbox.clone());
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(16);
    let fail_with = match sandbox.take_transcribe_failure() {
        Some(failure) if failure.at_start => return refusal(&failure.exception).into_response(),
        Some(failure) => Some(failure.exception),
        None => None,
    };
    let mut body = request.into_body().into_data_stream();
    let response_language = language.clone();
    let response_encoding = encoding.clone();
    let identified = identify.then(|| language.clone());
    tokio::spawn(async move {
        let _open = open;
        let mut decoder = MessageFrameDecoder::new();
        let mut buffer = BytesMut::new();
        let mut recognizer = DtmfRecognizer::new(if encoding == "pcm" { rate } else { 16_000 });
        let mut ogg = Vec::new();
        let mut events = 0u32;
        let result_id = new_id();
        let send = |bytes: Bytes| {
            let tx = tx.clone();
            async move { tx.send(Ok(bytes)).await.is_ok() }
        };
        while let Some(chunk) = body.next().await {
            let Ok(chunk) = chunk else { return };
            buffer.extend_from_slice(&chunk);
            loop {
                let outer = match decoder.decode_frame(&mut buffer) {
                    Ok(DecodedFrame::Complete(message)) => message,
                    Ok(DecodedFrame::Incomplete) => break,
                    Err(e) => {
                        send(exception(
                            "BadRequestException",
                            &format!("malformed event stream: {e}"),
                        ))
                        .await;
                        return;
                    }
                };
                if outer.payload().is_empty() {
                    // The signed empty frame: end of audio.
                    recognizer.finish();
                    if encoding == "ogg-opus" {
                        recognizer = recognise_ogg(&ogg);
                    }
                    send(transcript_event(
                        &result_id,
                        &recognizer,
                        false,
                        &response_language,
                        identified.is_some(),
                    ))
                    .await;
                    return;
                }
                let inner = match read_message_from(outer.payload().clone()) {
                    Ok(inner) => inner,
                    Err(e) => {
                        send(exception(
                            "BadRequestException",
                            &format!("malformed audio event: {e}"),
                        ))
                        .await;
                        return;
                    }
                };
                let audio = inner.payload();
                events += 1;
                recorder.transcription_audio(stream_index, audio);
                if encoding == "pcm" && audio.len() > rate as usize * 2 {
                    send(exception(
                        "BadRequestException",
                        "an audio event may hold at most 1 second of audio",
                    ))
                    .await;
                    return;
                }
                if let Some(kind) = &fail_with
                    && events == 2
                {
                    send(exception(kind, "failure injected by the sandbox")).await;
                    return;
                }
                match encoding.as_str() {
                    "pcm" => {
                        let samples: Vec<i16> = audio
                            .chunks_exact(2)
                            .map(|b| i16::from_le_bytes([b[0], b[1]]))
                            .collect();
                        if recognizer.push(&samples)
                            && !send(transcript_event(
                                &result_id,
                                &recognizer,
                                true,
                                &response_language,
                                identified.is_some(),
                            ))
                            .await
                        {
                            return;
                        }
                    }
                    _ => ogg.extend_from_slice(audio),
                }
            }
        }
    });
    let mut response =
        Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(rx)).into_response();
    *response.status_mut() = StatusCode::OK;
    let out = response.headers_mut();
    out.insert(
        "content-type",
        "application/vnd.amazon.eventstream"
            .parse()
            .expect("static"),
    );
    out.insert("x-amzn-request-id", new_id().parse().expect("uuid"));
    if let Ok(v) = session_id.parse() {
        out.insert("x-amzn-transcribe-session-id", v);
    }
    if let Ok(v) = language.parse() {
        out.insert("x-amzn-transcribe-language-code", v);
    }
    // Transcribe echoes the stream's parameters.
    if let Ok(v) = rate.to_string().parse() {
        out.insert("x-amzn-transcribe-sample-rate", v);
    }
    if let Ok(v) = response_encoding.parse() {
        out.insert("x-amzn-transcribe-media-encoding", v);
    }
    if identify {
        if let Ok(v) = "true".parse() {
            out.insert("x-amzn-transcribe-identify-language", v);
        }
        if let Ok(v) = options.parse() {
            out.insert("x-amzn-transcribe-language-options", v);
        }
    }
    response
}

/// An exception as the HTTP error that refuses a request.
fn refusal(exception: &str) -> AwsError {
    let (status, kind) = match exception {
        "BadRequestException" => (StatusCode::BAD_REQUEST, "BadRequestException"),
        "LimitExceededException" => (StatusCode::TOO_MANY_REQUESTS, "LimitExceededException"),
        "ConflictException" => (StatusCode::CONFLICT, "ConflictException"),
        "ServiceUnavailableException" => (
            StatusCode::SERVICE_UNAVAILABLE,
            "ServiceUnavailableException",
        ),
        _ => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalFailureException",
        ),
    };
    AwsError::new(
        Api::Transcribe,
        status,
        kind,
        "failure injected by the sandbox",
    )
}

/// Ogg/Opus audio is decoded with Parley's own transcoder, then recognised.
fn recognise_ogg(ogg: &[u8]) -> DtmfRecognizer {
    let mut recognizer = DtmfRecognizer::new(16_000);
    let spec =
        parley_transcoder::audio::OutputSpec::new(parley_transcoder::audio::AudioFormat::Pcm);
    if let Ok((pcm, _)) = parley_transcoder::pipeline::convert_buffer(
        ogg,
        Default::default(),
        spec,
        Default::default(),
    ) {
        let samples: Vec<i16> = pcm
            .chunks_exact(2)
            .map(|b| i16::from_le_bytes([b[0], b[1]]))
            .collect();
        recognizer.push(&samples);
    }
    recognizer.finish();
    recognizer
}
