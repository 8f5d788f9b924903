//! The sandbox plays the agent: chat items reach an SQS queue through a
//! real SNS topic (moto) in Connect's streaming format, with Connect's
//! message attributes — what the gateway will consume.

use std::time::Duration;

use parley_sandbox::{SandboxConfig, moto};
use serde_json::Value;

#[tokio::test]
async fn agent_replies_are_streamed_to_sns_and_sqs() {
    let Some(moto) = moto::start() else { return };
    let aws = moto::aws_config(&moto.endpoint).await;
    let sns = aws_sdk_sns::Client::new(&aws);
    let sqs = aws_sdk_sqs::Client::new(&aws);
    let topic = sns
        .create_topic()
        .name("connect-out")
        .send()
        .await
        .unwrap()
        .topic_arn
        .unwrap();
    let queue = sqs
        .create_queue()
        .queue_name("connect-out")
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();
    let queue_arn = sqs
        .get_queue_attributes()
        .queue_url(&queue)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
        .send()
        .await
        .unwrap()
        .attributes
        .unwrap()[&aws_sdk_sqs::types::QueueAttributeName::QueueArn]
        .clone();
    sns.subscribe()
        .topic_arn(&topic)
        .protocol("sqs")
        .endpoint(&queue_arn)
        .send()
        .await
        .unwrap();

    let sandbox = parley_sandbox::start(
        "127.0.0.1:0".parse().unwrap(),
        SandboxConfig {
            sns: Some(sns.clone()),
            ..SandboxConfig::default()
        },
    )
    .await
    .unwrap();
    // A chat started through the real Connect SDK, streaming to the topic.
    let connect = aws_sdk_connect::Client::new(&moto::aws_config(&sandbox.endpoint).await);
    let chat = connect
        .start_chat_contact()
        .instance_id("instance-1")
        .contact_flow_id("flow-1")
        .participant_details(
            aws_sdk_connect::types::ParticipantDetails::builder()
                .display_name("Kike")
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    let contact_id = chat.contact_id().unwrap().to_owned();
    connect
        .start_contact_streaming()
        .instance_id("instance-1")
        .contact_id(&contact_id)
        .chat_streaming_configuration(
            aws_sdk_connect::types::ChatStreamingConfiguration::builder()
                .streaming_endpoint_arn(&topic)
                .build()
                .unwrap(),
        )
        .client_token("t")
        .send()
        .await
        .unwrap();

    let http = reqwest::Client::new();
    let control = |path: &str, body: Value| {
        http.post(format!("{}/_sandbox/{path}", sandbox.endpoint))
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
    };
    control(
        "agent-event",
        serde_json::json!({"contact_id": contact_id, "event": "participant.joined"}),
    )
    .await
    .unwrap()
    .error_for_status()
    .unwrap();
    control(
        "agent-message",
        serde_json::json!({"contact_id": contact_id, "content": "Hola Kike, ¿en qué te ayudo?"}),
    )
    .await
    .unwrap()
    .error_for_status()
    .unwrap();
    control("agent-attachment", serde_json::json!({"contact_id": contact_id, "name": "invoice.pdf", "content_type": "application/pdf", "bytes_base64": "JVBERi0xLjQK"})).await.unwrap().error_for_status().unwrap();
    control(
        "agent-event",
        serde_json::json!({"contact_id": contact_id, "event": "chat.ended"}),
    )
    .await
    .unwrap()
    .error_for_status()
    .unwrap();

    let mut envelopes = Vec::new();
    for _ in 0..20 {
        let received = sqs
            .receive_message()
            .queue_url(&queue)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .send()
            .await
            .unwrap();
        for message in received.messages.unwrap_or_default() {
            envelopes
                .push(serde_json::from_str::<Value>(message.body.as_deref().unwrap()).unwrap());
            sqs.delete_message()
                .queue_url(&queue)
                .receipt_handle(message.receipt_handle.unwrap())
                .send()
                .await
                .unwrap();
        }
        if envelopes.len() >= 4 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(envelopes.len(), 4, "{envelopes:#?}");
    let inner: Vec<Value> = envelopes
        .iter()
        .map(|e| serde_json::from_str(e["Message"].as_str().unwrap()).unwrap())
        .collect();
    let by_type = |t: &str| {
        inner
            .iter()
            .position(|m| m["Type"] == t)
            .unwrap_or_else(|| panic!("no {t} in {inner:#?}"))
    };

    let message = by_type("MESSAGE");
    assert_eq!(inner[message]["Content"], "Hola Kike, ¿en qué te ayudo?");
    assert_eq!(inner[message]["ParticipantRole"], "AGENT");
    assert_eq!(inner[message]["ContactId"], contact_id.as_str());
    let attributes = &envelopes[message]["MessageAttributes"];
    assert_eq!(attributes["ParticipantRole"]["Value"], "AGENT");
    assert_eq!(attributes["MessageVisibility"]["Value"], "ALL");
    assert_eq!(attributes["ContentType"]["Value"], "text/plain");
    assert_eq!(attributes["InitialContactId"]["Value"], contact_id.as_str());

    let attachment = &inner[by_type("ATTACHMENT")];
    assert_eq!(
        attachment["Attachments"][0]["AttachmentName"],
        "invoice.pdf"
    );
    assert_eq!(attachment["Attachments"][0]["Status"], "APPROVED");
    let ended = inner
        .iter()
        .any(|m| m["ContentType"] == "application/vnd.amazonaws.connect.event.chat.ended");
    assert!(ended, "chat.ended is streamed");
}
