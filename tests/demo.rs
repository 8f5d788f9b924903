//! The README's first command plays this conversation: it must keep
//! working, step by step, on the whole bridge.

use parley_local::Stack;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scripted_conversation_plays_through() {
    let stack = Stack::builder()
        .bridge()
        .routing(parley_local::demo::routing())
        .start()
        .await
        .unwrap();
    let mut out = Vec::new();
    let reports = parley_local::demo::run(&stack, &mut out).await.unwrap();
    let text = String::from_utf8(out).unwrap();
    assert_eq!(reports.len(), 9, "{text}");
    for expected in [
        "🎧 agent     Hi! I ordered a blue jacket last week.",
        "\"Order 10072\\nIt was due on Monday\\nCan you check?\"",
        "one zero zero seven two",
        "📱 Ana sees  Your order *10072* is _in transit_ and arrives *tomorrow*.",
        "📱 Ana sees  buttons [\"Yes, please\", \"No, thanks\"]",
        "a voice note (OGG/Opus",
        "Thanks for contacting us. Bye!",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }
    assert!(!text.contains("trace 00000000000000000000000000000000"));
}
