//! Byte-level SSE framing, checked on the raw body: what the SDKs' decoders rely on.

use serde_json::{json, Value};

use crate::common::{post_sse, server, sse_data};

fn assert_framing(raw: &str) {
    assert!(
        raw.ends_with("data: [DONE]\n\n"),
        "stream must end with [DONE]: {raw:?}"
    );
    for event in raw.split("\n\n").filter(|e| !e.is_empty()) {
        assert!(
            event.starts_with("data: ") || event == ": ping",
            "every event is one `data: ` line or a keep-alive comment: {event:?}"
        );
        assert!(!event.contains('\n'), "one line per event: {event:?}");
        assert!(!event.starts_with("event:"), "no named events");
    }
    assert_eq!(raw.matches("data: [DONE]").count(), 1);
}

#[tokio::test]
async fn chat_stream_framing_ids_roles_finish_and_usage() {
    let (headers, raw) = post_sse(
        server(),
        "/v1/chat/completions",
        json!({"messages": [{"role": "user", "content": "Count to five."}], "max_tokens": 10,
               "temperature": 0, "stream": true, "stream_options": {"include_usage": true}}),
    )
    .await;
    assert_eq!(headers["content-type"], "text/event-stream");
    assert_eq!(headers["cache-control"], "no-cache");
    assert_eq!(headers["x-accel-buffering"], "no");
    assert!(headers.get("content-length").is_none());
    assert!(headers.get("x-request-id").is_some());
    assert_framing(&raw);

    let data = sse_data(&raw);
    let chunks: Vec<Value> = data[..data.len() - 1]
        .iter()
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    let (usage_chunk, chunks) = chunks.split_last().unwrap();
    let id = chunks[0]["id"].as_str().unwrap();
    assert!(id.starts_with("chatcmpl-"));
    for chunk in chunks.iter().chain([usage_chunk]) {
        assert_eq!(chunk["id"], id);
        assert_eq!(chunk["created"], chunks[0]["created"]);
        assert_eq!(chunk["object"], "chat.completion.chunk");
    }
    for chunk in chunks {
        assert!(chunk["usage"].is_null() && chunk.as_object().unwrap().contains_key("usage"));
        let choice = &chunk["choices"][0];
        assert_eq!(choice["index"], 0);
        assert!(choice.as_object().unwrap().contains_key("finish_reason"));
        assert!(choice.as_object().unwrap().contains_key("logprobs"));
    }
    assert_eq!(
        chunks[0]["choices"][0]["delta"],
        json!({"role": "assistant", "content": ""})
    );
    for chunk in &chunks[1..] {
        assert!(
            chunk["choices"][0]["delta"].get("role").is_none(),
            "role only in the first delta"
        );
    }
    let last = chunks.last().unwrap();
    assert_eq!(last["choices"][0]["delta"], json!({}));
    assert!(["stop", "length"].contains(&last["choices"][0]["finish_reason"].as_str().unwrap()));
    for chunk in &chunks[..chunks.len() - 1] {
        assert!(chunk["choices"][0]["finish_reason"].is_null());
    }
    assert_eq!(usage_chunk["choices"], json!([]));
    let content_chunks = chunks
        .iter()
        .filter(|c| {
            c["choices"][0]["delta"]["content"]
                .as_str()
                .is_some_and(|s| !s.is_empty())
        })
        .count() as u64;
    let usage = &usage_chunk["usage"];
    assert!(usage["completion_tokens"].as_u64().unwrap() >= content_chunks.min(10));
    assert_eq!(
        usage["total_tokens"].as_u64().unwrap(),
        usage["prompt_tokens"].as_u64().unwrap() + usage["completion_tokens"].as_u64().unwrap()
    );
}

#[tokio::test]
async fn without_include_usage_chunks_have_no_usage_key() {
    let (_, raw) = post_sse(
        server(),
        "/v1/completions",
        json!({"prompt": "The sky is", "max_tokens": 4, "temperature": 0, "stream": true}),
    )
    .await;
    assert_framing(&raw);
    let data = sse_data(&raw);
    for d in &data[..data.len() - 1] {
        let chunk: Value = serde_json::from_str(d).unwrap();
        assert_eq!(chunk["object"], "text_completion");
        assert!(chunk.get("usage").is_none(), "{d}");
        assert!(!chunk["choices"].as_array().unwrap().is_empty());
    }
}

#[tokio::test]
async fn request_id_is_accepted_and_echoed() {
    let response = crate::common::client()
        .get(format!("{}/v1/models", server()))
        .header("x-request-id", "trace-me-42")
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["x-request-id"], "trace-me-42");
}
