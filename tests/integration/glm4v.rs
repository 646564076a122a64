//! GLM-4.1V (AutoGLM-Phone-9B's architecture) served end to end: the tiny random checkpoint that
//! `scripts/glm4v-fixtures.sh` wrote with transformers (`tests/fixtures/glm4v/`), served as
//! `autoglm-phone-9b` with the real loading code and engine, and checked against what transformers computed
//! from it (prefill logits and eight greedy steps through the KV cache), then driven the way Open-AutoGLM's
//! phone agent drives its model service.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use candle_core::{Device, Tensor};
use serde_json::{json, Value};

use crate::common::{
    assert_envelope, post_json, post_sse, sample, scrape, serve_model_dir, sse_data,
};

pub const SERVED_NAME: &str = "autoglm-phone-9b";
/// The fixture's system prompt and user text (make_fixtures.py).
const SYSTEM_PROMPT: &str =
    "You are a phone agent. Answer with <think>...</think><answer>...</answer>.";
const USER_TEXT: &str = "Open the chrome browser.";
/// Logprobs and logits agree to this (f32 on both sides, different summation orders).
const TOLERANCE: f64 = 1e-4;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/glm4v")
}

fn expected() -> HashMap<String, Tensor> {
    candle_core::safetensors::load(fixtures().join("expected.safetensors"), &Device::Cpu)
        .expect("tests/fixtures/glm4v/expected.safetensors")
}

/// A copy of the fixture checkpoint in a fresh directory, `config.json` passed through `edit`.
fn model_copy(label: &str, edit: impl FnOnce(&mut Value)) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("llmserve-glm4v-{label}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    for entry in std::fs::read_dir(fixtures().join("model")).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dir.join(entry.file_name())).unwrap();
    }
    let path = dir.join("config.json");
    let mut config: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    edit(&mut config);
    std::fs::write(&path, serde_json::to_vec_pretty(&config).unwrap()).unwrap();
    dir
}

fn serve(
    dir: PathBuf,
    tweak: impl FnOnce(&mut llmserve::config::Config) + Send + 'static,
) -> String {
    serve_model_dir(dir, SERVED_NAME, tweak)
}

/// The server on the fixture model with AutoGLM's deployment settings (vLLM's `max_pixels` 5,000,000 and
/// ten images per prompt), shared by the tests that need no server of their own.
fn autoglm_server() -> &'static str {
    static SERVER: OnceLock<String> = OnceLock::new();
    SERVER.get_or_init(|| {
        serve(model_copy("served", |_| {}), |config| {
            config.engine.max_image_pixels = Some(5_000_000);
            config.engine.max_images = 10;
        })
    })
}

fn data_url(path: &Path) -> String {
    format!(
        "data:image/png;base64,{}",
        STANDARD.encode(std::fs::read(path).unwrap())
    )
}

fn png_url(picture: &image::RgbImage) -> String {
    let mut encoded = Vec::new();
    picture
        .write_to(
            &mut std::io::Cursor::new(&mut encoded),
            image::ImageFormat::Png,
        )
        .unwrap();
    format!("data:image/png;base64,{}", STANDARD.encode(&encoded))
}

/// A user turn the way Open-AutoGLM writes one: the screenshot first, then the text.
fn user_turn(image_url: &str, text: &str) -> Value {
    json!({"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": image_url}},
        {"type": "text", "text": text},
    ]})
}

fn log_softmax(logits: &[f32]) -> Vec<f64> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let sum: f64 = logits.iter().map(|&l| (l as f64 - max).exp()).sum();
    logits.iter().map(|&l| l as f64 - max - sum.ln()).collect()
}

/// The answer's eight greedy tokens and their logprobs (and the top five at each step) are transformers'.
fn assert_matches_reference(answer: &Value, expected: &HashMap<String, Tensor>) {
    let tokens: Vec<i64> = expected["chat.greedy_tokens"].to_vec1().unwrap();
    let logits: Vec<Vec<f32>> = expected["chat.greedy_logits"].to_vec2().unwrap();
    let text: String = tokens.iter().map(|&t| t as u8 as char).collect();
    assert_eq!(answer["choices"][0]["message"]["content"], text, "{answer}");
    assert_eq!(
        answer["usage"]["prompt_tokens"],
        expected["chat.input_ids"].dim(0).unwrap(),
        "the image's 24 tokens and the template's text, as transformers' processor counts them"
    );
    let steps = answer["choices"][0]["logprobs"]["content"]
        .as_array()
        .unwrap();
    assert_eq!(steps.len(), tokens.len());
    for (i, step) in steps.iter().enumerate() {
        let reference = log_softmax(&logits[i]);
        let chosen = step["logprob"].as_f64().unwrap();
        let want = reference[tokens[i] as usize];
        assert!(
            (chosen - want).abs() < TOLERANCE,
            "step {i}: {chosen} vs {want}"
        );
        let mut sorted = reference.clone();
        sorted.sort_by(|a, b| b.partial_cmp(a).unwrap());
        for (j, alternative) in step["top_logprobs"].as_array().unwrap().iter().enumerate() {
            let got = alternative["logprob"].as_f64().unwrap();
            assert!(
                (got - sorted[j]).abs() < TOLERANCE,
                "step {i}, alternative {j}: {got} vs {}",
                sorted[j]
            );
        }
    }
}

fn reference_request() -> Value {
    json!({
        "model": SERVED_NAME,
        "messages": [
            {"role": "system", "content": SYSTEM_PROMPT},
            user_turn(&data_url(&fixtures().join("chat-168x112.png")), USER_TEXT),
        ],
        "temperature": 0,
        "max_tokens": 8,
        "logprobs": true,
        "top_logprobs": 5,
    })
}

/// Prefill logits and eight greedy decode steps through the KV cache equal transformers' to 1e-4, and the
/// greedy tokens exactly; the image is placed the way vLLM's `string` content format places it.
#[tokio::test]
async fn the_served_model_matches_transformers_prefill_and_greedy_decoding() {
    let (status, answer) = post_json(
        autoglm_server(),
        "/v1/chat/completions",
        reference_request(),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert_matches_reference(&answer, &expected());
}

/// A checkpoint written by transformers 4 (`rope_theta`, `partial_rotary_factor` and
/// `rope_scaling.mrope_section` as separate keys) loads as the same model.
#[tokio::test]
async fn a_transformers_4_config_loads_the_same_model() {
    let dir = model_copy("v4", |config| {
        let text = config["text_config"].as_object_mut().unwrap();
        let rope = text.remove("rope_parameters").unwrap();
        text.insert("rope_theta".into(), rope["rope_theta"].clone());
        text.insert(
            "partial_rotary_factor".into(),
            rope["partial_rotary_factor"].clone(),
        );
        text.insert(
            "rope_scaling".into(),
            json!({"type": "default", "mrope_section": rope["mrope_section"]}),
        );
        config["vision_config"]
            .as_object_mut()
            .unwrap()
            .remove("rope_parameters");
    });
    let base = serve(dir, |_| {});
    let (status, answer) = post_json(&base, "/v1/chat/completions", reference_request()).await;
    assert_eq!(status, 200, "{answer}");
    assert_matches_reference(&answer, &expected());
}

/// One streamed chat completion: every event is a well-formed chunk of one id, the stream ends with
/// `[DONE]` after a usage chunk; returns the text and the usage.
async fn stream_turn(base: &str, body: Value) -> (String, Value, String) {
    let (_, raw) = post_sse(base, "/v1/chat/completions", body).await;
    let events = sse_data(&raw);
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"), "{raw}");
    let mut text = String::new();
    let mut usage = Value::Null;
    let mut finish = String::new();
    let mut id = None;
    for event in &events[..events.len() - 1] {
        let chunk: Value = serde_json::from_str(event).unwrap_or_else(|e| panic!("{e}: {event}"));
        assert_eq!(chunk["object"], "chat.completion.chunk", "{chunk}");
        assert_eq!(chunk["model"], SERVED_NAME);
        let this_id = chunk["id"].as_str().unwrap().to_string();
        assert_eq!(id.get_or_insert(this_id.clone()), &this_id);
        if !chunk["usage"].is_null() {
            usage = chunk["usage"].clone();
            continue;
        }
        let choice = &chunk["choices"][0];
        if let Some(delta) = choice["delta"]["content"].as_str() {
            text.push_str(delta);
        }
        if let Some(reason) = choice["finish_reason"].as_str() {
            finish = reason.to_string();
        }
    }
    assert!(!usage.is_null(), "no usage chunk: {raw}");
    (text, usage, finish)
}

/// Tokens of a conversation's text as the server counts them (`/tokenize`), images left out.
async fn text_tokens(base: &str, messages: &Value) -> u64 {
    let (status, body) = post_json(
        base,
        "/tokenize",
        json!({"model": SERVED_NAME, "messages": messages}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    body["count"].as_u64().unwrap()
}

/// Open-AutoGLM's traffic: each step sends the conversation so far with the new screenshot as a data URL
/// (the 1080 × 2400 one from its sample messages), earlier screenshots removed from the history, streamed,
/// with the agent's sampling settings. Every stream is well formed, and each turn's prompt is its text plus
/// the screenshot's 3,108 image tokens (a 168 × 74 patch grid at `max_pixels` 5,000,000, as transformers'
/// processor computes it).
#[tokio::test]
async fn the_phone_agent_runs_several_steps_over_streams() {
    let base = autoglm_server();
    let expected = expected();
    let grid: Vec<i64> = expected["screenshot.max5m.grid_thw"]
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    let image_tokens = (grid[0] * grid[1] * grid[2] / 4) as u64;
    let screenshot = data_url(&fixtures().join("screenshot-1080x2400.png"));
    let mut context = vec![json!({"role": "system", "content": SYSTEM_PROMPT})];
    for step in 0..3 {
        let text = format!(
            "** Screen Info **\n{{\"current_app\": \"System Home\"}}\nStep {step}: {USER_TEXT}"
        );
        context.push(user_turn(&screenshot, &text));
        let body = json!({
            "model": SERVED_NAME,
            "messages": context,
            "stream": true,
            "stream_options": {"include_usage": true},
            "temperature": 0.0,
            "top_p": 0.85,
            "frequency_penalty": 0.2,
            "max_tokens": 3000,
        });
        let (answer, usage, finish) = stream_turn(base, body).await;
        // The text the server counts for this conversation without its one image, plus the image's tokens
        // and the three the placeholder line adds around them (`<|begin_of_image|>`, `<|end_of_image|>` and
        // the newline before the text, in this byte-level vocabulary).
        let mut text_only = context.clone();
        let last = text_only.len() - 1;
        text_only[last] = json!({"role": "user", "content": text});
        let expected_prompt = text_tokens(base, &json!(text_only)).await + image_tokens + 3;
        assert_eq!(
            usage["prompt_tokens"].as_u64(),
            Some(expected_prompt),
            "step {step}: {usage}"
        );
        let completion = usage["completion_tokens"].as_u64().unwrap();
        assert!((1..=3000).contains(&completion), "step {step}: {usage}");
        assert_eq!(
            usage["total_tokens"].as_u64(),
            Some(expected_prompt + completion)
        );
        assert!(
            matches!(finish.as_str(), "stop" | "length"),
            "step {step}: {finish}"
        );
        if finish == "length" {
            assert_eq!(completion, 3000, "step {step}");
        }
        // As the agent does: the screenshot leaves the history, the answer joins it.
        context[last] = json!({"role": "user", "content": [{"type": "text", "text": text}]});
        context.push(json!({"role": "assistant", "content": answer}));
    }
}

/// A picture of the chat image's size whose pixels depend on `seed`.
fn pattern(seed: u8) -> image::RgbImage {
    image::RgbImage::from_fn(168, 112, |x, y| {
        image::Rgb([
            (x as u8).wrapping_mul(seed | 1) ^ (y as u8),
            (y as u8)
                .wrapping_mul(3)
                .wrapping_add(seed.wrapping_mul(41)),
            ((x / 7 + y / 5) as u8).wrapping_mul(seed),
        ])
    })
}

/// Co-batched requests with different images and texts (of equal token length, so that they share prefill
/// and decode steps) give each the greedy answer it gets alone.
#[tokio::test]
async fn co_batched_image_requests_answer_as_they_do_alone() {
    let base = serve(model_copy("batch", |_| {}), |_| {});
    let texts = [
        "Open the chrome browser.",
        "Open the camera app now.",
        "Close the music players.",
    ];
    let bodies: Vec<Value> = texts
        .iter()
        .enumerate()
        .map(|(i, text)| {
            json!({
                "model": SERVED_NAME,
                "messages": [{"role": "system", "content": SYSTEM_PROMPT},
                             user_turn(&png_url(&pattern(i as u8 * 50 + 7)), text)],
                "temperature": 0,
                "max_tokens": 16,
            })
        })
        .collect();
    let mut alone = Vec::new();
    let mut lengths = Vec::new();
    for body in &bodies {
        let (status, answer) = post_json(&base, "/v1/chat/completions", body.clone()).await;
        assert_eq!(status, 200, "{answer}");
        alone.push(answer["choices"][0]["message"]["content"].clone());
        lengths.push(answer["usage"]["prompt_tokens"].clone());
    }
    assert!(
        lengths.iter().all(|l| *l == lengths[0]),
        "prompt lengths differ: {lengths:?}"
    );
    assert!(
        alone[0] != alone[1] || alone[1] != alone[2],
        "different images and texts should not all give one answer: {alone:?}"
    );
    let decode_counts = || async {
        let text = scrape(&format!("{base}/metrics")).await;
        let labels = [("model", SERVED_NAME), ("kind", "decode")];
        let steps = sample(&text, "llmserve_engine_steps_total", &labels).unwrap_or(0.0);
        let sequences =
            sample(&text, "llmserve_engine_step_sequences_total", &labels).unwrap_or(0.0);
        (steps, sequences)
    };
    let (steps_before, sequences_before) = decode_counts().await;
    for round in 0..3 {
        let together = futures::future::join_all(
            bodies
                .iter()
                .map(|body| post_json(&base, "/v1/chat/completions", body.clone())),
        )
        .await;
        for (i, (status, answer)) in together.into_iter().enumerate() {
            assert_eq!(status, 200, "{answer}");
            assert_eq!(
                answer["choices"][0]["message"]["content"], alone[i],
                "round {round}, request {i}"
            );
        }
    }
    // They really shared steps: some decode steps carried more than one sequence. (How many depends on
    // when the three requests reach the engine, which on a machine busy with other tests is apart; a
    // mean above 1.5 failed there once.)
    let (steps, sequences) = decode_counts().await;
    let (steps, sequences) = (steps - steps_before, sequences - sequences_before);
    assert!(
        sequences > steps,
        "{steps} decode steps carried {sequences} sequences: the requests never ran together"
    );
}

/// More images than `--max-images` is a 400 that names the limit; an `<|image|>` typed into the text (a
/// placeholder without an image) is a 400 too; the server answers afterwards.
#[tokio::test]
async fn image_limits_and_stray_placeholders_are_refused() {
    let base = autoglm_server();
    let image = png_url(&pattern(3));
    let mut content: Vec<Value> = (0..11)
        .map(|_| json!({"type": "image_url", "image_url": {"url": image}}))
        .collect();
    content.push(json!({"type": "text", "text": "What changed?"}));
    let (status, body) = post_json(
        base,
        "/v1/chat/completions",
        json!({"model": SERVED_NAME, "max_tokens": 2,
               "messages": [{"role": "user", "content": content}]}),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    let message = assert_envelope(&body)["message"].as_str().unwrap();
    assert!(message.contains("at most 10 images"), "{body}");

    let (status, body) = post_json(
        base,
        "/v1/chat/completions",
        json!({"model": SERVED_NAME, "max_tokens": 2, "messages": [
            user_turn(&image, "Is <|image|> a token?")]}),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert_envelope(&body);

    let (status, body) = post_json(base, "/v1/chat/completions", reference_request()).await;
    assert_eq!(status, 200, "{body}");
}

/// In-situ quantization of the decoder while the safetensors load (`--isq`): the quantized model answers,
/// its logprobs moved by the quantization (so it happened) but stay near the f32 reference's.
#[tokio::test]
async fn isq_quantizes_the_decoder_and_stays_near_the_reference() {
    let expected = expected();
    let logits: Vec<Vec<f32>> = expected["chat.greedy_logits"].to_vec2().unwrap();
    let reference = log_softmax(&logits[0]);
    let first_token = expected["chat.greedy_tokens"].to_vec1::<i64>().unwrap()[0] as usize;
    for isq in [llmserve::config::Isq::Q8_0, llmserve::config::Isq::Q4K] {
        let base = serve(model_copy(&format!("{isq:?}"), |_| {}), move |config| {
            config.engine.isq = Some(isq);
        });
        let mut body = reference_request();
        body["max_tokens"] = json!(1);
        let (status, answer) = post_json(&base, "/v1/chat/completions", body).await;
        assert_eq!(status, 200, "{isq:?}: {answer}");
        let step = &answer["choices"][0]["logprobs"]["content"][0];
        let token = step["bytes"][0].as_u64().unwrap() as usize;
        let got = step["logprob"].as_f64().unwrap();
        let want = reference[token];
        let drift = (got - want).abs();
        assert!(
            drift > 1e-6,
            "{isq:?}: the logprobs did not move ({got}): nothing was quantized"
        );
        assert!(
            drift < 0.25,
            "{isq:?}: token {token}: {got} vs the f32 reference's {want}"
        );
        if isq == llmserve::config::Isq::Q8_0 {
            assert_eq!(token, first_token, "Q8_0 keeps the greedy choice");
        }
    }
}
