//! The OpenAI surface beyond plain generation, with the real engine: seeded sampling under concurrent
//! load, `n`, logit bias, logprobs cut with stop strings, constrained JSON and tool calls, the tokenizer
//! endpoints.

use futures::future::join_all;
use serde_json::{json, Value};

use crate::common::{post_json, post_sse, server, sse_data, start_server};

fn story(seed: u64) -> Value {
    json!({"messages": [{"role": "user", "content": "Tell me a short story about a dragon."}],
        "max_tokens": 24, "temperature": 1.0, "seed": seed})
}

async fn content(base: &str, body: Value) -> String {
    let (status, answer) = post_json(base, "/v1/chat/completions", body).await;
    assert_eq!(status, 200, "{answer}");
    answer["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .to_string()
}

/// mistral.rs's own sampler draws from one global RNG, so any other sampled request shifted a seeded one.
/// Our per-request sampler does not share it. (The other prompts are over 60 tokens longer than the probe
/// and its 24 tokens, so the CPU engine, which batches only equal lengths, never puts them in the probe's
/// steps: a shared step may change the logits' last bits, see docs/compatibility.md.)
#[tokio::test]
async fn a_seed_reproduces_its_sample_while_other_requests_sample() {
    // A server of its own, so the "alone" run really is alone.
    let base = start_server(|_| {});
    let alone = content(&base, story(7)).await;
    assert_eq!(content(&base, story(7)).await, alone);
    // The same request again, batched with other sampled traffic (other prompts, seeds, streams).
    let mut traffic = Vec::new();
    for i in 0..6u64 {
        let topic = "the quiet northern sea at night ".repeat(10);
        let body = json!({"messages": [{"role": "user", "content": format!("Write poem {i} about {topic}.")}],
            "max_tokens": 24, "temperature": 1.3, "seed": 100 + i, "stream": i % 2 == 0});
        let base = base.clone();
        traffic.push(tokio::spawn(async move {
            crate::common::client()
                .post(format!("{base}/v1/chat/completions"))
                .json(&body)
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap()
        }));
    }
    let busy = content(&base, story(7)).await;
    join_all(traffic).await;
    assert_eq!(busy, alone, "same seed under load");
    let others: Vec<String> = join_all((1..4).map(|s| content(&base, story(s)))).await;
    assert!(
        others.iter().any(|o| o != &alone),
        "other seeds sample other stories: {others:?}"
    );
}

#[tokio::test]
async fn n_choices_are_indexed_and_usage_sums_them() {
    let (status, body) = post_json(
        server(),
        "/v1/chat/completions",
        json!({"messages": [{"role": "user", "content": "Tell me a long story."}], "n": 3,
            "max_tokens": 4, "temperature": 1.0, "seed": 3}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let choices = body["choices"].as_array().unwrap();
    let indices: Vec<u64> = choices
        .iter()
        .map(|c| c["index"].as_u64().unwrap())
        .collect();
    assert_eq!(indices, vec![0, 1, 2]);
    assert!(choices.iter().all(|c| c["finish_reason"] == "length"));
    assert_eq!(body["usage"]["completion_tokens"], 12);

    let (_, raw) = post_sse(
        server(),
        "/v1/completions",
        json!({"prompt": ["Once upon", "In a land"], "n": 2, "max_tokens": 3, "stream": true,
            "stream_options": {"include_usage": true}}),
    )
    .await;
    let events = sse_data(&raw);
    let mut finished = std::collections::BTreeSet::new();
    for event in &events[..events.len() - 1] {
        let chunk: Value = serde_json::from_str(event).unwrap();
        for choice in chunk["choices"].as_array().unwrap() {
            if !choice["finish_reason"].is_null() {
                finished.insert(choice["index"].as_u64().unwrap());
            }
        }
    }
    assert_eq!(finished.into_iter().collect::<Vec<_>>(), vec![0, 1, 2, 3]);
    let usage: Value = serde_json::from_str(&events[events.len() - 2]).unwrap();
    assert_eq!(usage["usage"]["completion_tokens"], 12);
}

async fn first_token(body: Value) -> (String, u32) {
    let (status, answer) = post_json(server(), "/v1/completions", body).await;
    assert_eq!(status, 200, "{answer}");
    let token = answer["choices"][0]["logprobs"]["tokens"][0]
        .as_str()
        .unwrap()
        .to_string();
    let (_, ids) = post_json(server(), "/tokenize", json!({"prompt": token})).await;
    (token, ids["tokens"][0].as_u64().unwrap() as u32)
}

#[tokio::test]
async fn logit_bias_bans_a_token_from_greedy_decoding() {
    let body = json!({"prompt": "The capital of France is", "max_tokens": 2, "temperature": 0,
        "logprobs": 0});
    let (token, id) = first_token(body.clone()).await;
    let mut banned = body.clone();
    banned["logit_bias"] = json!({ id.to_string(): -100 });
    let (other, _) = first_token(banned).await;
    assert_ne!(other, token);
    let mut out_of_vocabulary = body;
    out_of_vocabulary["logit_bias"] = json!({"4000000": 1});
    let (status, answer) = post_json(server(), "/v1/completions", out_of_vocabulary).await;
    assert_eq!(status, 400);
    assert_eq!(answer["error"]["param"], "logit_bias");
}

#[tokio::test]
async fn logprobs_stop_where_the_stop_string_cuts_the_text() {
    let request = |stop: Option<&str>| {
        json!({"messages": [{"role": "user", "content": "List the days of the week."}],
            "max_tokens": 24, "temperature": 0, "logprobs": true, "stop": stop})
    };
    let (_, full) = post_json(server(), "/v1/chat/completions", request(None)).await;
    let full_tokens: Vec<String> = full["choices"][0]["logprobs"]["content"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["token"].as_str().unwrap().to_string())
        .collect();
    assert!(full_tokens.len() > 6);
    // Stop at the text of the sixth token.
    let stop = full_tokens[5].trim().to_string();
    assert!(!stop.is_empty(), "{full_tokens:?}");
    let (_, cut) = post_json(server(), "/v1/chat/completions", request(Some(&stop))).await;
    let text = cut["choices"][0]["message"]["content"].as_str().unwrap();
    let tokens: Vec<&str> = cut["choices"][0]["logprobs"]["content"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["token"].as_str().unwrap())
        .collect();
    let joined = tokens.concat();
    assert!(!text.contains(&stop));
    assert!(
        joined.trim_start().starts_with(text.trim_start()) || text.contains(joined.trim()),
        "{joined:?} vs {text:?}"
    );
    assert!(
        tokens.len() < full_tokens.len(),
        "tokens after the cut are dropped"
    );
}

#[tokio::test]
async fn constrained_output_matches_its_schema() {
    let schema = json!({"type": "object", "properties": {
        "name": {"type": "string", "maxLength": 20}, "year": {"type": "integer"}, "tags": {"type": "array",
        "items": {"type": "string", "maxLength": 10}, "maxItems": 3}}, "required": ["name", "year", "tags"],
        "additionalProperties": false});
    let answer = content(
        server(),
        json!({"messages": [{"role": "user", "content": "Describe a famous book."}], "max_tokens": 120,
            "temperature": 0.7, "seed": 1, "response_format": {"type": "json_schema",
            "json_schema": {"name": "book", "strict": true, "schema": schema}}}),
    )
    .await;
    let book: Value = serde_json::from_str(&answer).unwrap_or_else(|e| panic!("{e}: {answer}"));
    let object = book.as_object().unwrap();
    assert_eq!(
        object.keys().collect::<std::collections::BTreeSet<_>>(),
        ["name", "tags", "year"]
            .iter()
            .map(|k| k.to_string())
            .collect::<std::collections::BTreeSet<_>>()
            .iter()
            .collect()
    );
    assert!(book["year"].is_i64() || book["year"].is_u64());
    assert!(book["tags"].as_array().unwrap().len() <= 3);
    let (status, bad) = post_json(
        server(),
        "/v1/chat/completions",
        json!({"messages": [{"role": "user", "content": "x"}], "response_format": {"type": "json_schema",
            "json_schema": {"name": "bad", "schema": {"type": "object", "properties": {"a": {"$ref": "#/nowhere"}}}}}}),
    )
    .await;
    assert_eq!(status, 400, "{bad}");
    assert_eq!(bad["error"]["param"], "response_format");
}

#[tokio::test]
async fn a_named_tool_is_called_and_streamed_name_first() {
    let tools = json!([{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object",
        "properties": {"query": {"type": "string"}, "limit": {"type": "integer"}}, "required": ["query", "limit"]}}},
        {"type": "function", "function": {"name": "other"}}]);
    let request = json!({"messages": [{"role": "user", "content": "Find books about Rust."}],
        "tools": tools, "tool_choice": {"type": "function", "function": {"name": "lookup"}},
        "max_tokens": 60, "temperature": 0, "stream": true});
    let (_, raw) = post_sse(server(), "/v1/chat/completions", request).await;
    let chunks: Vec<Value> = sse_data(&raw)
        .iter()
        .filter(|e| *e != "[DONE]")
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    let calls: Vec<&Value> = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["tool_calls"].get(0))
        .collect();
    assert_eq!(calls[0]["function"]["name"], "lookup");
    assert!(calls[0]["id"].as_str().unwrap().starts_with("call_"));
    assert_eq!(calls[0]["type"], "function");
    assert!(calls[1..]
        .iter()
        .all(|c| c.get("id").is_none() && c["function"].get("name").is_none()));
    let arguments: String = calls
        .iter()
        .map(|c| c["function"]["arguments"].as_str().unwrap())
        .collect();
    let arguments: Value = serde_json::from_str(&arguments).unwrap();
    assert!(arguments["query"].is_string() && arguments["limit"].is_i64());
    assert_eq!(
        chunks.last().unwrap()["choices"][0]["finish_reason"],
        "tool_calls"
    );
}

/// Prompts are tokenized in our layer (rendered as mistral.rs renders them); the engine's own count, which
/// usage reports for a single prompt, must be the same for every shape of conversation.
#[tokio::test]
async fn tokenize_counts_what_generation_counts_and_detokenize_inverts_it() {
    let conversations = [
        json!([{"role": "user", "content": "How many tokens is this?"}]),
        json!([{"role": "system", "content": "You answer in French."},
               {"role": "user", "content": "  Bonjour !\n"},
               {"role": "assistant", "content": "Salut."},
               {"role": "user", "content": "Ça va ? 🎉 <b>{{ x }}</b> & 'q'"}]),
        json!([{"role": "developer", "content": "Be brief."},
               {"role": "user", "content": [{"type": "text", "text": "two "}, {"type": "text", "text": "parts"}]}]),
    ];
    for messages in conversations {
        let (status, tokens) =
            post_json(server(), "/tokenize", json!({"messages": messages})).await;
        assert_eq!(status, 200, "{tokens}");
        let (_, answer) = post_json(
            server(),
            "/v1/chat/completions",
            json!({"messages": messages, "max_tokens": 1}),
        )
        .await;
        assert_eq!(
            tokens["count"], answer["usage"]["prompt_tokens"],
            "{messages}"
        );
        assert_eq!(tokens["max_model_len"], 8192);
    }
    let prompt = "Once upon a time, naïve 🐉";
    let (_, tokens) = post_json(server(), "/tokenize", json!({"prompt": prompt})).await;
    let (_, answer) = post_json(
        server(),
        "/v1/completions",
        json!({"prompt": prompt, "max_tokens": 1}),
    )
    .await;
    assert_eq!(tokens["count"], answer["usage"]["prompt_tokens"]);

    let (_, prompt) = post_json(
        server(),
        "/tokenize",
        json!({"prompt": "naïve café", "return_token_strs": true}),
    )
    .await;
    let (_, text) = post_json(server(), "/detokenize", json!({"tokens": prompt["tokens"]})).await;
    assert_eq!(text["prompt"], "naïve café");
    assert_eq!(
        prompt["token_strs"].as_array().unwrap().len(),
        prompt["count"].as_u64().unwrap() as usize
    );
    let (status, bad) = post_json(server(), "/detokenize", json!({"tokens": [-1]})).await;
    assert_eq!(status, 400);
    assert_eq!(bad["error"]["param"], "tokens");
    let (status, _) = post_json(server(), "/tokenize", json!({})).await;
    assert_eq!(status, 400);
}
