//! Co-batched requests answer exactly as they do alone: *different* prompts in flight together, greedy,
//! compared token for token and logprob for logprob with the same requests served one at a time. The
//! engine's own step counts (`llmserve_engine_step_sequences_total` above `llmserve_engine_steps_total`)
//! prove that the concurrent requests really shared forward steps, decode and prompt steps alike.
//!
//! Before patches/mistralrs-core-0.8.1/0001 most co-batched answers were another request's answer.

use std::collections::{BTreeMap, HashMap};

use futures::future::join_all;
use serde_json::{json, Value};

use crate::common::{cache_dir, model_name, post_json, sample, scrape, start_server};

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

/// Steps of one kind (`decode` or `prompt`) the engine ran and the sequences they carried, from
/// `/metrics`.
async fn step_counts(base: &str, kind: &str) -> (f64, f64) {
    let text = scrape(&format!("{base}/metrics")).await;
    let labels = [("model", model_name()), ("kind", kind)];
    let steps = sample(&text, "llmserve_engine_steps_total", &labels).unwrap_or(0.0);
    let sequences = sample(&text, "llmserve_engine_step_sequences_total", &labels).unwrap_or(0.0);
    (steps, sequences)
}

/// The mean batch of each kind of step at one concurrency level.
struct MeanBatches {
    decode: f64,
    prompt: f64,
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
/// sequences. Returns the mean decode and prompt batches of each level.
async fn assert_batch_invariant(
    base: &str,
    pool: &[Value],
    levels: &[(usize, usize)],
) -> Vec<MeanBatches> {
    let solo = solo_answers(base, pool).await;
    assert_co_batched_as(base, pool, &solo, levels).await
}

/// Each prompt's answer served alone, by its messages' JSON.
async fn solo_answers(base: &str, pool: &[Value]) -> HashMap<String, Value> {
    let mut solo = HashMap::new();
    for messages in pool {
        solo.insert(messages.to_string(), answer(base, messages).await);
    }
    solo
}

/// `assert_batch_invariant` against solo answers given (perhaps another server's).
async fn assert_co_batched_as(
    base: &str,
    pool: &[Value],
    solo: &HashMap<String, Value>,
    levels: &[(usize, usize)],
) -> Vec<MeanBatches> {
    let mut compared = 0;
    let mut mismatches = Vec::new();
    let mut mean_batches = Vec::new();
    for &(concurrency, rounds) in levels {
        let (steps_before, sequences_before) = step_counts(base, "decode").await;
        let (prompt_steps_before, prompts_before) = step_counts(base, "prompt").await;
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
        let (steps, sequences) = step_counts(base, "decode").await;
        let (steps, sequences) = (steps - steps_before, sequences - sequences_before);
        let (prompt_steps, prompts) = step_counts(base, "prompt").await;
        let (prompt_steps, prompts) =
            (prompt_steps - prompt_steps_before, prompts - prompts_before);
        println!(
            "concurrency {concurrency}: {rounds} rounds, {steps} decode steps carrying {sequences} \
             sequences (mean batch {:.2}), {prompt_steps} prompt steps carrying {prompts} (mean batch \
             {:.2})",
            sequences / steps.max(1.0),
            prompts / prompt_steps.max(1.0)
        );
        assert!(
            sequences > steps,
            "at concurrency {concurrency} no decode step carried two sequences: nothing was co-batched"
        );
        mean_batches.push(MeanBatches {
            decode: sequences / steps,
            prompt: prompts / prompt_steps.max(1.0),
        });
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
    // per step. Decoding across lengths carries them all, less the ramp up and down of a round.
    assert!(
        mean_batches[1].decode > 4.0,
        "at concurrency 8 over four lengths the mean decode batch was {:.2}: sequences of different \
         lengths did not share decode steps",
        mean_batches[1].decode
    );
    // And packed prompt steps (mistralrs patch 0016) prefill prompts of different lengths together: the
    // eight arrive within one step or two, so a mean above two prompts per step is out of reach of
    // equal-length groups.
    assert!(
        mean_batches[1].prompt > 2.0,
        "at concurrency 8 over four lengths the mean prompt batch was {:.2}: prompts of different \
         lengths were not prefilled together",
        mean_batches[1].prompt
    );
}

/// The default model's weights requantized by candle into a K-quant file like llama.cpp's Q4_K_M of it:
/// the 576-wide matrices in Q5_0 and Q4_0 (their width is not a multiple of 256), the FFN down
/// projections in Q4_K, Q5_K and Q6_K by layer, the embedding in Q8_0. Every quantization type with a
/// fixed-order kernel (candle patch 0005) is in it.
fn k_quant_model() -> std::path::PathBuf {
    use candle_core::quantized::{gguf_file, GgmlDType, QTensor};
    use candle_core::Device;

    let source = llmserve::default_model::ensure(&cache_dir()).expect("the default model");
    let dir = std::env::temp_dir().join(format!("llmserve-kquant-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("SmolLM2-135M-Instruct.mixed-k.gguf");
    let mut reader = std::fs::File::open(&source).unwrap();
    let content = gguf_file::Content::read(&mut reader).unwrap();
    let mut names: Vec<(String, u64)> = content
        .tensor_infos
        .iter()
        .map(|(name, info)| (name.clone(), info.offset))
        .collect();
    names.sort_by_key(|(_, offset)| *offset);
    let layer = |name: &str| -> usize {
        name.split('.')
            .nth(1)
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    };
    let tensors: Vec<(String, QTensor)> = names
        .into_iter()
        .map(|(name, _)| {
            let tensor = content.tensor(&mut reader, &name, &Device::Cpu).unwrap();
            let target = if tensor.shape().dims().len() != 2 || name == "token_embd.weight" {
                None
            } else if name.ends_with("ffn_down.weight") {
                Some([GgmlDType::Q4K, GgmlDType::Q6K, GgmlDType::Q5K][layer(&name) % 3])
            } else {
                Some([GgmlDType::Q5_0, GgmlDType::Q4_0][layer(&name) % 2])
            };
            let tensor = match target {
                Some(dtype) => {
                    QTensor::quantize(&tensor.dequantize(&Device::Cpu).unwrap(), dtype).unwrap()
                }
                None => tensor,
            };
            (name, tensor)
        })
        .collect();
    let metadata: Vec<(&str, &gguf_file::Value)> = content
        .metadata
        .iter()
        .map(|(k, v)| (k.as_str(), v))
        .collect();
    let refs: Vec<(&str, &QTensor)> = tensors.iter().map(|(n, t)| (n.as_str(), t)).collect();
    let mut out = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
    gguf_file::write(&mut out, &metadata, &refs).unwrap();
    std::io::Write::flush(&mut out).unwrap();
    path
}

/// Starts the binary on `model` at a forced CPU kernel level (a process of its own: the level is
/// process-wide), checks from its log that the level is in force, and returns it with its base URL.
fn serve_at_level(model: &std::path::Path, level: &str) -> (std::process::Child, String) {
    let model = model.to_str().unwrap();
    let (child, addr, lines) = crate::drain::spawn_binary(&[
        "--model",
        model,
        "--served-model-name",
        model_name(),
        "--cpu-kernels",
        level,
    ]);
    let said =
        lines.lock().unwrap().iter().any(|line| {
            serde_json::from_str::<Value>(line).is_ok_and(|l| l["cpu_kernels"] == level)
        });
    assert!(
        said,
        "the server at --cpu-kernels {level} does not log that level"
    );
    (child, format!("http://{addr}"))
}

/// patches/candle-core-0.10.2/0005 end to end: on a file of Q4_0, Q5_0, Q8_0, Q4_K, Q5_K and Q6_K
/// tensors, eight different prompts of several lengths answer co-batched exactly as alone at the AVX2
/// level, and a server forced to the scalar kernels (and, on a CPU with AVX-512, one at the AVX-512
/// level) answers them co-batched with the same tokens and the same logprobs, bit for bit.
#[tokio::test]
async fn a_k_quant_model_answers_the_same_at_every_kernel_level_alone_or_co_batched() {
    let model = k_quant_model();
    let pool: Vec<Value> = SUBJECTS[..8]
        .iter()
        .enumerate()
        .map(|(i, subject)| messages(TEMPLATES[i % TEMPLATES.len()], subject))
        .collect();
    let (mut avx2, base) = serve_at_level(&model, "avx2");
    let solo = solo_answers(&base, &pool).await;
    assert_co_batched_as(&base, &pool, &solo, &[(8, 1)]).await;
    avx2.kill().unwrap();
    let _ = avx2.wait();
    let avx512 =
        std::fs::read_to_string("/proc/cpuinfo").is_ok_and(|info| info.contains(" avx512vnni"));
    let others: &[&str] = if avx512 {
        &["scalar", "avx512"]
    } else {
        &["scalar"]
    };
    for level in others {
        let (mut server, base) = serve_at_level(&model, level);
        println!("--cpu-kernels {level}:");
        assert_co_batched_as(&base, &pool, &solo, &[(8, 1)]).await;
        server.kill().unwrap();
        let _ = server.wait();
    }
    let _ = std::fs::remove_dir_all(model.parent().unwrap());
}
