//! The engine's prefix cache on CPU (engine patch 0014), as an agent uses it: several clients share a long
//! system prompt and resend their growing history every turn, concurrently.
//!
//! Before the patch, a request that started from a cache hit was never moved on to decoding: it was
//! prefilled again at every step while its KV cache grew, and 16 streams sharing a prompt stopped making
//! progress. Here every conversation must end within its deadline, hits must occur (the engine counts them
//! for `llmserve_prefix_cache_hits_total`), decode steps must still carry several sequences, and every answer
//! must be the answer of a server without the cache. The cached server runs the default settings: since
//! engine patch 0016 a hit answers as the cold prompt does, and the cache is on by default for the
//! default model.

use std::time::Duration;

use futures::future::join_all;
use serde_json::json;

use crate::common::{model_name, post_json, sample, scrape, start_server};

const CLIENTS: usize = 8;
const TURNS: usize = 3;
const MAX_TOKENS: u64 = 12;

/// A system prompt of a few hundred tokens, the same for every client.
fn system_prompt() -> String {
    let mut text = String::from(
        "You are a phone-operating agent. Each turn you get the screen and the task, and answer with \
         one action, do(action=..., element=[x, y]), coordinates from 0 to 1000.\n",
    );
    for (i, app) in ["Settings", "Messages", "Maps", "Camera", "Clock", "Notes"]
        .iter()
        .enumerate()
    {
        text.push_str(&format!(
            "Rule {}: when {app} shows a dialog, read its title first, then tap the button that \
             continues the task, or Back when the dialog is unrelated to it.\n",
            i + 1
        ));
    }
    text
}

fn user_turn(client: usize, turn: usize) -> String {
    format!(
        "Task {client}: turn on option {}. Step {}. Screen: a list of {} rows, the first titled \
         'option {turn}'.",
        client + turn,
        turn + 1,
        4 + turn
    )
}

/// One client's conversation: each turn's greedy answer, appended to the history for the next.
async fn conversation(base: String, client: usize) -> Vec<String> {
    let mut messages = vec![json!({"role": "system", "content": system_prompt()})];
    let mut answers = Vec::new();
    for turn in 0..TURNS {
        messages.push(json!({"role": "user", "content": user_turn(client, turn)}));
        let body = json!({
            "model": model_name(),
            "messages": messages,
            "max_tokens": MAX_TOKENS,
            "temperature": 0,
        });
        let (status, body) = post_json(&base, "/v1/chat/completions", body).await;
        assert_eq!(status, 200, "client {client}, turn {turn}: {body}");
        let answer = body["choices"][0]["message"]["content"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        messages.push(json!({"role": "assistant", "content": answer}));
        answers.push(answer);
    }
    answers
}

/// Every client's conversation, all at once; within a deadline that a stalled engine misses by far.
async fn all_conversations(base: &str) -> Vec<Vec<String>> {
    let runs = join_all((0..CLIENTS).map(|client| conversation(base.to_string(), client)));
    tokio::time::timeout(Duration::from_secs(300), runs)
        .await
        .expect("the conversations did not end within 300 s: the engine stalled")
}

fn counter(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    sample(text, name, labels).unwrap_or(0.0)
}

#[tokio::test]
async fn agents_sharing_a_system_prompt_hit_the_prefix_cache_and_get_the_uncached_answers() {
    // Without the cache: the reference answers, one conversation at a time.
    let cold = start_server(|config| config.engine.prefix_cache_n = Some(0));
    let mut reference = Vec::new();
    for client in 0..CLIENTS {
        reference.push(conversation(cold.clone(), client).await);
    }

    // The default: on, for the default model (a llama-family GGUF, whose prompts the engine packs).
    let cached = start_server(|_| {});
    let answers = all_conversations(&cached).await;
    let metrics = scrape(&format!("{cached}/metrics")).await;
    let model = [("model", model_name())];
    let hits = counter(&metrics, "llmserve_prefix_cache_hits_total", &model);
    let decode = [("model", model_name()), ("kind", "decode")];
    let steps = counter(&metrics, "llmserve_engine_steps_total", &decode);
    let sequences = counter(&metrics, "llmserve_engine_step_sequences_total", &decode);
    println!(
        "{CLIENTS} clients x {TURNS} turns: {hits} prefix-cache hits; {steps} decode steps carried \
         {sequences} sequences"
    );
    // Turns 2 and 3 extend the client's own earlier turn; at least those hit.
    assert!(
        hits >= (CLIENTS * (TURNS - 1)) as f64,
        "{hits} prefix-cache hits for {} turns that extend a finished one",
        CLIENTS * (TURNS - 1)
    );
    assert!(sequences > steps, "no decode step carried two sequences");
    let differing: Vec<String> = (0..CLIENTS)
        .flat_map(|client| (0..TURNS).map(move |turn| (client, turn)))
        .filter(|&(client, turn)| answers[client][turn] != reference[client][turn])
        .map(|(client, turn)| {
            format!(
                "client {client}, turn {turn}: cached {:?}, uncached {:?}",
                answers[client][turn], reference[client][turn]
            )
        })
        .collect();
    assert!(
        differing.is_empty(),
        "{} of {} answers differ with the prefix cache:\n{}",
        differing.len(),
        CLIENTS * TURNS,
        differing.join("\n")
    );
}
