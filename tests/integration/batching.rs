//! Co-batched requests answer exactly as they do alone: *different* prompts in flight together, greedy,
//! compared token for token and logprob for logprob with the same requests served one at a time. The
//! engine's own step counts (`llmserve_engine_step_sequences_total` above `llmserve_engine_steps_total`)
//! prove that the concurrent requests really shared forward steps.
//!
//! Before patches/mistralrs-core-0.8.1/0001 most co-batched answers were another request's answer.

use std::collections::{BTreeMap, HashMap};

use futures::future::join_all;
use serde_json::{json, Value};

use crate::common::{model_name, post_json, sample, scrape, start_server};

/// Long enough for a wrong attention row to show; short enough for many rounds on two cores.
const MAX_TOKENS: u64 = 24;

const SUBJECTS: &[&str] = &[
    "salt", "bees", "rain", "cats", "dogs", "snow", "gold", "iron", "milk", "tea", "coffee",
    "music", "books", "trees", "stars", "clouds", "bread", "rice", "wine", "cheese", "maps",
    "clocks", "ships", "trains", "birds", "fish", "roses", "chess", "jazz", "math", "soap",
    "glass",
];

/// Question shapes of different lengths, so that prompts of several token counts can be drawn.
const TEMPLATES: &[&str] = &[
    "Why do people like {}?",
    "Why do so many people like {} so much?",
    "In one short paragraph, explain why people like {}.",
    "What is the history of {}, and why do people still care about {} today?",
];

fn messages(template: &str, subject: &str) -> Value {
    json!([{"role": "user", "content": template.replace("{}", subject)}])
}

/// Candidate prompts grouped by their token count, as the server's own tokenizer counts them.
async fn prompts_by_length(base: &str, templates: &[&str]) -> BTreeMap<u64, Vec<Value>> {
    let mut by_length: BTreeMap<u64, Vec<Value>> = BTreeMap::new();
    for template in templates {
        for subject in SUBJECTS {
            let messages = messages(template, subject);
            let (status, body) =
                post_json(base, "/tokenize", json!({"messages": messages.clone()})).await;
            assert_eq!(status, 200, "{body}");
            let count = body["count"].as_u64().expect("a token count");
            by_length.entry(count).or_default().push(messages);
        }
    }
    by_length
}

/// The greedy answer with its per-token logprobs: equal answers are equal token for token.
async fn answer(base: &str, messages: &Value) -> Value {
    let body = json!({
        "model": model_name(),
        "messages": messages,
        "max_tokens": MAX_TOKENS,
        "temperature": 0,
        "logprobs": true,
        "top_logprobs": 2,
    });
    let (status, body) = post_json(base, "/v1/chat/completions", body).await;
    assert_eq!(status, 200, "{body}");
    json!({"choice": body["choices"][0], "completion_tokens": body["usage"]["completion_tokens"]})
}

/// Decode steps the engine ran and the sequences they carried, from `/metrics`.
async fn decode_counts(base: &str) -> (f64, f64) {
    let text = scrape(&format!("{base}/metrics")).await;
    let labels = [("model", model_name()), ("kind", "decode")];
    let steps = sample(&text, "llmserve_engine_steps_total", &labels).unwrap_or(0.0);
    let sequences = sample(&text, "llmserve_engine_step_sequences_total", &labels).unwrap_or(0.0);
    (steps, sequences)
}

/// Where two answers part, for the failure message.
fn first_difference(solo: &Value, batched: &Value) -> String {
    let tokens = |v: &Value| -> Vec<Value> {
        v["choice"]["logprobs"]["content"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    };
    let (a, b) = (tokens(solo), tokens(batched));
    match a.iter().zip(&b).position(|(x, y)| x != y) {
        Some(i) => format!("token {i}: alone {} / co-batched {}", a[i], b[i]),
        None => format!("lengths {} / {}", a.len(), b.len()),
    }
}

/// Serves every prompt alone first, then `rounds` rounds of `concurrency` different prompts at once,
/// asserting that every co-batched answer is the solo answer and that some decode steps carried several
/// sequences. Returns the mean decode batch of each level.
async fn assert_batch_invariant(base: &str, pool: &[Value], levels: &[(usize, usize)]) -> Vec<f64> {
    let mut solo = HashMap::new();
    for messages in pool {
        solo.insert(messages.to_string(), answer(base, messages).await);
    }
    let mut compared = 0;
    let mut mismatches = Vec::new();
    let mut mean_batches = Vec::new();
    for &(concurrency, rounds) in levels {
        let (steps_before, sequences_before) = decode_counts(base).await;
        for round in 0..rounds {
            let group: Vec<&Value> = (0..concurrency)
                .map(|i| &pool[(round * concurrency + i) % pool.len()])
                .collect();
            let answers = join_all(group.iter().map(|m| answer(base, m))).await;
            for (messages, batched) in group.iter().zip(answers) {
                compared += 1;
                let alone = &solo[&messages.to_string()];
                if *alone != batched {
                    mismatches.push(format!(
                        "concurrency {concurrency}, {}: {}",
                        messages[0]["content"],
                        first_difference(alone, &batched)
                    ));
                }
            }
        }
        let (steps, sequences) = decode_counts(base).await;
        let (steps, sequences) = (steps - steps_before, sequences - sequences_before);
        println!(
            "concurrency {concurrency}: {rounds} rounds, {steps} decode steps carrying {sequences} \
             sequences (mean batch {:.2})",
            sequences / steps.max(1.0)
        );
        assert!(
            sequences > steps,
            "at concurrency {concurrency} no decode step carried two sequences: nothing was co-batched"
        );
        mean_batches.push(sequences / steps);
    }
    assert!(
        mismatches.is_empty(),
        "{} of {compared} co-batched answers differ from the same request served alone:\n{}",
        mismatches.len(),
        mismatches.join("\n")
    );
    println!("{compared} co-batched answers equal their solo answers");
    mean_batches
}

#[tokio::test]
async fn different_prompts_of_equal_length_answer_co_batched_as_alone() {
    // A server of its own: its step counts are this test's traffic only.
    let base = start_server(|_| {});
    let by_length = prompts_by_length(&base, &TEMPLATES[..1]).await;
    let pool = by_length
        .values()
        .max_by_key(|prompts| prompts.len())
        .expect("prompts")
        .clone();
    assert!(
        pool.len() >= 16,
        "only {} prompts share a token count",
        pool.len()
    );
    assert_batch_invariant(&base, &pool[..16], &[(2, 4), (4, 3), (16, 2)]).await;
}

#[tokio::test]
async fn prompts_of_different_lengths_answer_co_batched_as_alone() {
    let base = start_server(|_| {});
    let by_length = prompts_by_length(&base, TEMPLATES).await;
    // Four prompts from each of four lengths. Every group of four holds two lengths, two prompts each:
    // rounds mix lengths, and each length has a partner to share its steps with.
    let lengths: Vec<&Vec<Value>> = by_length.values().filter(|p| p.len() >= 4).collect();
    assert!(
        lengths.len() >= 4,
        "only {} token counts have four prompts",
        lengths.len()
    );
    let pick = [
        0,
        lengths.len() / 3,
        2 * lengths.len() / 3,
        lengths.len() - 1,
    ];
    let pool: Vec<Value> = [(0, 1, 0), (2, 3, 0), (0, 1, 2), (2, 3, 2)]
        .iter()
        .flat_map(|&(a, b, i)| [(a, i), (b, i), (a, i + 1), (b, i + 1)])
        .map(|(l, i)| lengths[pick[l]][i].clone())
        .collect();
    let mean_batches = assert_batch_invariant(&base, &pool, &[(4, 4), (8, 2), (16, 1)]).await;
    // Eight requests of four lengths, two of each: equal-length buckets would carry at most two sequences
    // per decode step. Decoding across lengths carries them all, less the ramp up and down of a round.
    assert!(
        mean_batches[1] > 4.0,
        "at concurrency 8 over four lengths the mean decode batch was {:.2}: sequences of different \
         lengths did not share decode steps",
        mean_batches[1]
    );
}
