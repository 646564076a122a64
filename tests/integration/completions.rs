//! Legacy completions on the real model: string and list prompts, echo, stop across tokens, usage.

use serde_json::{json, Value};

use crate::common::{post_json, post_sse, server, sse_data};

#[tokio::test]
async fn completion_has_openai_shape_and_default_length() {
    let (status, body) = post_json(
        server(),
        "/v1/completions",
        json!({"prompt": "Once upon a time", "temperature": 0}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(body["id"].as_str().unwrap().starts_with("cmpl-"));
    assert_eq!(body["object"], "text_completion");
    let choice = &body["choices"][0];
    assert!(choice["logprobs"].is_null());
    // No max_tokens: OpenAI's default of 16.
    if choice["finish_reason"] == "length" {
        assert_eq!(body["usage"]["completion_tokens"], 16);
    }
    assert!(body["usage"]["completion_tokens"].as_u64().unwrap() <= 16);
}

#[tokio::test]
async fn prompt_lists_give_one_choice_each_in_order_and_echo_prepends() {
    let (status, body) = post_json(
        server(),
        "/v1/completions",
        json!({"prompt": ["1, 2, 3,", "a, b, c,"], "max_tokens": 6, "temperature": 0, "echo": true}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let choices = body["choices"].as_array().unwrap();
    assert_eq!(choices.len(), 2);
    assert_eq!(choices[0]["index"], 0);
    // The continuation keeps its leading space (mistral.rs trims the first streamed delta; we restore it).
    assert!(
        choices[0]["text"]
            .as_str()
            .unwrap()
            .starts_with("1, 2, 3, "),
        "{body}"
    );
    assert!(choices[1]["text"].as_str().unwrap().starts_with("a, b, c,"));
    assert!(body["usage"]["completion_tokens"].as_u64().unwrap() <= 12);

    let (_, raw) = post_sse(
        server(),
        "/v1/completions",
        json!({"prompt": "1, 2, 3,", "max_tokens": 4, "temperature": 0, "echo": true, "stream": true}),
    )
    .await;
    let data = sse_data(&raw);
    let first: Value = serde_json::from_str(&data[0]).unwrap();
    assert_eq!(first["choices"][0]["text"], "1, 2, 3,");
}

fn streamed_text(raw: &str) -> (String, Vec<String>, Option<String>) {
    let mut pieces = Vec::new();
    let mut finish = None;
    for d in sse_data(raw).iter().filter(|d| *d != "[DONE]") {
        let chunk: Value = serde_json::from_str(d).unwrap();
        if let Some(choice) = chunk["choices"].get(0) {
            let text = choice["text"].as_str().unwrap_or_default();
            if !text.is_empty() {
                pieces.push(text.to_string());
            }
            if let Some(reason) = choice["finish_reason"].as_str() {
                finish = Some(reason.to_string());
            }
        }
    }
    (pieces.concat(), pieces, finish)
}

#[tokio::test]
async fn a_stop_string_split_across_tokens_never_reaches_the_client() {
    let base = json!({"prompt": "The first ten numbers are one, two, three,", "max_tokens": 16, "temperature": 0, "stream": true});
    let (_, raw) = post_sse(server(), "/v1/completions", base.clone()).await;
    let (full, pieces, _) = streamed_text(&raw);
    // A stop string made of the end of one streamed piece and the start of the next spans a token boundary.
    let k = pieces
        .iter()
        .position(|p| p.chars().count() >= 2)
        .expect("a piece of two chars");
    assert!(k + 1 < pieces.len(), "need two pieces: {pieces:?}");
    let left: String = pieces[k]
        .chars()
        .rev()
        .take(2)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    let right: String = pieces[k + 1].chars().take(2).collect();
    let stop = format!("{left}{right}");
    let expected = &full[..full.find(&stop).unwrap()];

    let mut streaming = base.clone();
    streaming["stop"] = json!([stop]);
    let (_, raw) = post_sse(server(), "/v1/completions", streaming.clone()).await;
    let (text, _, finish) = streamed_text(&raw);
    assert_eq!(text, expected, "stop {stop:?} in {full:?}");
    assert_eq!(finish.as_deref(), Some("stop"));

    let mut non_streaming = streaming;
    non_streaming["stream"] = json!(false);
    let (_, body) = post_json(server(), "/v1/completions", non_streaming).await;
    assert_eq!(body["choices"][0]["text"], expected);
    assert_eq!(body["choices"][0]["finish_reason"], "stop");
}
