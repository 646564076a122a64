//! Valid requests never fail: no 5xx and no error event over hundreds of short mixed requests sent back to
//! back and concurrently, and a sequence whose last token ends inside a UTF-8 character still finishes.
//!
//! Before patches/mistralrs-core-0.8.1/0003 such a sequence was dropped by the engine without a finish (a
//! 500, or an error event after the 200): about 1 in 25 sampled chat requests with `max_tokens: 1`.

use futures::future::join_all;
use serde_json::{json, Value};

use crate::common::{
    client, model_name, post_json, sample, scrape, server, sse_data, start_server,
};

/// A token whose bytes are only the start of a multi-byte UTF-8 character: the first token of an emoji.
async fn partial_character_token(base: &str) -> u64 {
    let (status, body) = post_json(base, "/tokenize", json!({"prompt": "🫠"})).await;
    assert_eq!(status, 200, "{body}");
    let token = body["tokens"][0].as_u64().expect("a token id");
    let (_, text) = post_json(base, "/detokenize", json!({"tokens": [token]})).await;
    assert_eq!(
        text["prompt"], "\u{fffd}",
        "token {token} is not a partial character"
    );
    token
}

/// Sends one request and checks that it ended properly; returns the text and finish reason of its one
/// choice. Streamed responses must end with a finish reason and `[DONE]`, with no error event.
async fn complete(base: &str, path: &str, body: Value) -> (String, String) {
    let streamed = body["stream"].as_bool().unwrap_or(false);
    let response = client()
        .post(format!("{base}{path}"))
        .json(&body)
        .send()
        .await
        .expect("request sent");
    let status = response.status().as_u16();
    let text = response.text().await.expect("body");
    assert_eq!(status, 200, "{body} answered {status}: {text}");
    let is_chat = path.ends_with("chat/completions");
    if !streamed {
        let answer: Value = serde_json::from_str(&text).expect("JSON answer");
        let choice = &answer["choices"][0];
        let content = if is_chat {
            &choice["message"]["content"]
        } else {
            &choice["text"]
        };
        let finish = choice["finish_reason"].as_str().unwrap_or("").to_string();
        return (content.as_str().unwrap_or("").to_string(), finish);
    }
    let events = sse_data(&text);
    assert_eq!(
        events.last().map(String::as_str),
        Some("[DONE]"),
        "{body}: {text}"
    );
    let mut content = String::new();
    let mut finish = String::new();
    for event in &events[..events.len() - 1] {
        let chunk: Value = serde_json::from_str(event).expect("JSON event");
        assert!(chunk.get("error").is_none(), "{body}: error event {event}");
        for choice in chunk["choices"].as_array().into_iter().flatten() {
            let piece = if is_chat {
                &choice["delta"]["content"]
            } else {
                &choice["text"]
            };
            content.push_str(piece.as_str().unwrap_or(""));
            if let Some(reason) = choice["finish_reason"].as_str() {
                finish = reason.to_string();
            }
        }
    }
    assert!(!finish.is_empty(), "{body}: no finish reason in {text}");
    (content, finish)
}

#[tokio::test]
async fn a_sequence_ending_inside_a_character_still_finishes() {
    let base = server();
    let token = partial_character_token(base).await;
    for max_tokens in [1, 2] {
        for stream in [false, true] {
            for path in ["/v1/chat/completions", "/v1/completions"] {
                let mut body = json!({
                    "model": model_name(), "max_tokens": max_tokens, "temperature": 0, "stream": stream,
                    "logit_bias": {token.to_string(): 100},
                });
                if path == "/v1/chat/completions" {
                    body["messages"] = json!([{"role": "user", "content": "Smile."}]);
                    body["logprobs"] = json!(true);
                } else {
                    body["prompt"] = json!("A smiley:");
                    body["logprobs"] = json!(1);
                }
                let (text, finish) = complete(base, path, body).await;
                assert_eq!(finish, "length", "{path} max_tokens {max_tokens}");
                // Each cut character arrives as U+FFFD (a lossy decoding of its bytes).
                assert!(
                    !text.is_empty() && text.chars().all(|c| c == '\u{fffd}'),
                    "{path} max_tokens {max_tokens} stream {stream}: {text:?}"
                );
            }
        }
    }
}

/// Request `i` of the mix: chat or completions, streamed or not, 1 to 16 tokens, sampled, varied prompts.
fn mixed_request(i: usize) -> (&'static str, Value) {
    const PROMPTS: &[&str] = &[
        "Say hello.",
        "Give me an emoji.",
        "Tell me a joke",
        "What is 2 + 2?",
        "Write a haiku about rust.",
        "Name a color.",
        "¿Qué hora es?",
        "List three fruits:",
    ];
    const MAX_TOKENS: &[u64] = &[1, 1, 2, 3, 5, 8, 16];
    let prompt = PROMPTS[i % PROMPTS.len()];
    let max_tokens = MAX_TOKENS[(i / 3) % MAX_TOKENS.len()];
    let stream = (i / 2).is_multiple_of(2);
    if i.is_multiple_of(2) {
        let body = json!({"model": model_name(), "messages": [{"role": "user", "content": prompt}],
            "max_tokens": max_tokens, "stream": stream});
        ("/v1/chat/completions", body)
    } else {
        let body = json!({"model": model_name(), "prompt": prompt, "max_tokens": max_tokens, "stream": stream});
        ("/v1/completions", body)
    }
}

#[tokio::test]
async fn hundreds_of_short_requests_back_to_back_and_concurrently_all_finish() {
    let base = server();
    // Back to back: each request starts when the previous one has ended.
    for i in 0..300 {
        let (path, body) = mixed_request(i);
        complete(base, path, body).await;
    }
    // Under concurrent load: eight at a time.
    for batch in 0..25 {
        let requests = (0..8).map(|j| {
            let (path, body) = mixed_request(batch * 8 + j + 300);
            complete(base, path, body)
        });
        join_all(requests).await;
    }
}

/// patches/mistralrs-core-0.8.1/0009: a sequence whose first token is its last finishes in its prompt step;
/// the engine used to decode it once more anyway (a wasted step for every `max_tokens: 1` request).
#[tokio::test]
async fn a_sequence_finished_by_its_prompt_step_is_not_decoded_again() {
    // A server of its own: its step counts are this test's requests only.
    let base = start_server(|_| {});
    let requests = 12;
    let steps_in = |text: &str, kind| {
        sample(
            text,
            "llmserve_engine_steps_total",
            &[("model", model_name()), ("kind", kind)],
        )
        .unwrap_or(0.0)
    };
    // The load's warm-up generation (one token) ran before the server was ready: counted from here.
    let before = scrape(&format!("{base}/metrics")).await;
    let (prompt_before, decode_before) = (steps_in(&before, "prompt"), steps_in(&before, "decode"));
    for i in 0..requests {
        let body = json!({"model": model_name(), "max_tokens": 1, "stream": i % 2 == 0,
            "messages": [{"role": "user", "content": format!("Count to {i}.")}]});
        let (_, finish) = complete(&base, "/v1/chat/completions", body).await;
        assert_eq!(finish, "length");
    }
    // The engine counts a step when the step ends, which can be just after its last token reached the
    // client: the counts are read until the last prompt step is in (or a deadline passes).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let text = loop {
        let text = scrape(&format!("{base}/metrics")).await;
        if steps_in(&text, "prompt") - prompt_before >= requests as f64
            || std::time::Instant::now() > deadline
        {
            break text;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert_eq!(
        steps_in(&text, "prompt") - prompt_before,
        requests as f64,
        "{text}"
    );
    assert_eq!(
        steps_in(&text, "decode") - decode_before,
        0.0,
        "requests that ended with their first token were decoded again"
    );
}
