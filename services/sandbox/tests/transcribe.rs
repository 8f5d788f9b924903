//! The Transcribe Streaming emulator through the real
//! `aws-sdk-transcribestreaming` client: event-stream framing and signing,
//! the request headers, partial and final results, and exception frames.

use aws_sdk_transcribestreaming::{
    Client,
    primitives::Blob,
    types::{
        AudioEvent, AudioStream, LanguageCode, MediaEncoding, TranscriptResultStream,
        error::AudioStreamError,
    },
};
use parley_sandbox::{SandboxConfig, moto, recognizer::dtmf};

async fn client(endpoint: &str) -> Client {
    Client::new(&moto::aws_config(endpoint).await)
}

fn audio_events(pcm: &[i16], rate: u32) -> Vec<Result<AudioStream, AudioStreamError>> {
    // 100 ms per event, inside Transcribe's 50–200 ms recommendation.
    pcm.chunks(rate as usize / 10)
        .map(|chunk| {
            let bytes: Vec<u8> = chunk.iter().flat_map(|s| s.to_le_bytes()).collect();
            Ok(AudioStream::AudioEvent(
                AudioEvent::builder().audio_chunk(Blob::new(bytes)).build(),
            ))
        })
        .collect()
}

#[tokio::test]
async fn pcm_stream_yields_partials_then_the_final_transcript() {
    let sandbox = parley_sandbox::start("127.0.0.1:0".parse().unwrap(), SandboxConfig::default())
        .await
        .unwrap();
    let pcm = dtmf("4271", 16_000);
    let mut output = client(&sandbox.endpoint)
        .await
        .start_stream_transcription()
        .language_code(LanguageCode::EnUs)
        .media_sample_rate_hertz(16_000)
        .media_encoding(MediaEncoding::Pcm)
        .audio_stream(futures::stream::iter(audio_events(&pcm, 16_000)).into())
        .send()
        .await
        .unwrap();
    assert!(output.session_id().is_some());
    // Over a cleartext endpoint the SDK speaks HTTP/1.1; HTTP/2 is covered
    // by the test below.
    let (mut partials, mut finals) = (0, Vec::new());
    while let Some(event) = output.transcript_result_stream.recv().await.unwrap() {
        if let TranscriptResultStream::TranscriptEvent(event) = event {
            for result in event.transcript().unwrap().results() {
                let text = result.alternatives()[0]
                    .transcript()
                    .unwrap_or_default()
                    .to_owned();
                if result.is_partial() {
                    partials += 1;
                } else {
                    finals.push(text);
                }
            }
        }
    }
    assert!(
        partials >= 3,
        "results flow while audio is sent ({partials} partials)"
    );
    assert_eq!(finals, ["four two seven one"]);
    let request = &sandbox.sandbox.transcription_requests()[0];
    assert_eq!(request.http_version, "HTTP/1.1");
    let headers = &request.headers;
    assert_eq!(headers["x-amzn-transcribe-language-code"], "en-US");
    assert_eq!(headers["x-amzn-transcribe-sample-rate"], "16000");
    assert_eq!(headers["x-amzn-transcribe-media-encoding"], "pcm");
}

#[tokio::test]
async fn ogg_opus_is_decoded_and_language_identification_headers_arrive() {
    let sandbox = parley_sandbox::start("127.0.0.1:0".parse().unwrap(), SandboxConfig::default())
        .await
        .unwrap();
    let ogg = parley_transcoder::synth::encode_pcm(&dtmf("90", 48_000), 48_000).unwrap();
    let events: Vec<Result<AudioStream, AudioStreamError>> = ogg
        .chunks(600)
        .map(|c| {
            Ok(AudioStream::AudioEvent(
                AudioEvent::builder()
                    .audio_chunk(Blob::new(c.to_vec()))
                    .build(),
            ))
        })
        .collect();
    let mut output = client(&sandbox.endpoint)
        .await
        .start_stream_transcription()
        .identify_language(true)
        .language_options("en-US,es-US")
        .preferred_language(LanguageCode::EsUs)
        .media_sample_rate_hertz(48_000)
        .media_encoding(MediaEncoding::OggOpus)
        .audio_stream(futures::stream::iter(events).into())
        .send()
        .await
        .unwrap();
    let mut last = String::new();
    while let Some(TranscriptResultStream::TranscriptEvent(event)) =
        output.transcript_result_stream.recv().await.unwrap()
    {
        for result in event.transcript().unwrap().results() {
            last = result.alternatives()[0]
                .transcript()
                .unwrap_or_default()
                .to_owned();
        }
    }
    assert_eq!(
        last, "nine zero",
        "the opus audio reached the recognizer intact"
    );
    let headers = &sandbox.sandbox.transcription_requests()[0].headers;
    assert_eq!(headers["x-amzn-transcribe-identify-language"], "true");
    assert_eq!(headers["x-amzn-transcribe-language-options"], "en-US,es-US");
    assert_eq!(headers["x-amzn-transcribe-preferred-language"], "es-US");
}

#[tokio::test]
async fn exceptions_arrive_as_sdk_errors() {
    let sandbox = parley_sandbox::start("127.0.0.1:0".parse().unwrap(), SandboxConfig::default())
        .await
        .unwrap();
    sandbox
        .sandbox
        .fail_next_transcription("LimitExceededException");
    let pcm = dtmf("12", 16_000);
    let mut output = client(&sandbox.endpoint)
        .await
        .start_stream_transcription()
        .language_code(LanguageCode::EnUs)
        .media_sample_rate_hertz(16_000)
        .media_encoding(MediaEncoding::Pcm)
        .audio_stream(futures::stream::iter(audio_events(&pcm, 16_000)).into())
        .send()
        .await
        .unwrap();
    let error = loop {
        match output.transcript_result_stream.recv().await {
            Ok(Some(_)) => continue,
            Ok(None) => panic!("the stream ended without the injected exception"),
            Err(e) => break e,
        }
    };
    let text = format!("{:?}", error);
    assert!(text.contains("LimitExceededException"), "{text}");

    // A request without any language is refused before streaming.
    let error = client(&sandbox.endpoint)
        .await
        .start_stream_transcription()
        .media_sample_rate_hertz(16_000)
        .media_encoding(MediaEncoding::Pcm)
        .audio_stream(futures::stream::iter(audio_events(&pcm, 16_000)).into())
        .send()
        .await
        .unwrap_err();
    assert!(
        format!("{error:?}").contains("BadRequestException"),
        "{error:?}"
    );
}

/// The same protocol over HTTP/2 (prior knowledge, as on a cleartext
/// endpoint), framed by hand with the public event-stream codec.
#[tokio::test]
async fn the_protocol_also_runs_over_http2() {
    use aws_smithy_eventstream::frame::{DecodedFrame, MessageFrameDecoder, write_message_to};
    use aws_smithy_types::event_stream::{Header, HeaderValue, Message};

    fn frame(message: &Message) -> Vec<u8> {
        let mut out = Vec::new();
        write_message_to(message, &mut out).unwrap();
        out
    }
    let sandbox = parley_sandbox::start("127.0.0.1:0".parse().unwrap(), SandboxConfig::default())
        .await
        .unwrap();
    let pcm = dtmf("58", 8_000);
    let mut body = Vec::new();
    for chunk in pcm.chunks(800) {
        let audio: Vec<u8> = chunk.iter().flat_map(|s| s.to_le_bytes()).collect();
        let event = Message::new(audio)
            .add_header(Header::new(
                ":message-type",
                HeaderValue::String("event".into()),
            ))
            .add_header(Header::new(
                ":event-type",
                HeaderValue::String("AudioEvent".into()),
            ));
        // The SDK wraps each event in a signed envelope; the emulator reads
        // the envelope's payload as the event.
        body.extend(frame(&Message::new(frame(&event))));
    }
    body.extend(frame(&Message::new(Vec::<u8>::new())));

    let client = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let response = client
        .post(format!("{}/stream-transcription", sandbox.endpoint))
        .header("x-amzn-transcribe-language-code", "en-GB")
        .header("x-amzn-transcribe-sample-rate", "8000")
        .header("x-amzn-transcribe-media-encoding", "pcm")
        .header("content-type", "application/vnd.amazon.eventstream")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.version(), reqwest::Version::HTTP_2);
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["x-amzn-transcribe-language-code"],
        "en-GB"
    );
    let mut bytes = bytes::BytesMut::from(&response.bytes().await.unwrap()[..]);
    let mut decoder = MessageFrameDecoder::new();
    let mut transcripts = Vec::new();
    while let DecodedFrame::Complete(message) = decoder.decode_frame(&mut bytes).unwrap() {
        let json: serde_json::Value = serde_json::from_slice(message.payload()).unwrap();
        let result = &json["Transcript"]["Results"][0];
        transcripts.push((
            result["IsPartial"].as_bool().unwrap(),
            result["Alternatives"][0]["Transcript"]
                .as_str()
                .unwrap()
                .to_owned(),
        ));
    }
    assert_eq!(
        transcripts.last().unwrap(),
        &(false, "five eight".to_owned())
    );
    let request = &sandbox.sandbox.transcription_requests()[0];
    assert_eq!(request.http_version, "HTTP/2.0");
}
