//! Fuzz targets (bolero) for what parses untrusted input: request bodies through parsing and validation
//! (chat, completions, embeddings, Responses), the tool-call parser on model output, and the models
//! file. `cargo test` (the test command) runs each with bolero's random engine for a bounded time on
//! stable Rust (`LLMSERVE_FUZZ_SECS`, 4 s by default); longer, coverage-guided runs use a fuzzing engine,
//! for example `cargo bolero test --release fuzz::tool_call_parser` (docs/security.md, "Fuzzing").
//!
//! Inputs are structured where raw bytes would almost never get past the JSON parser: JSON values built
//! from the API's own field names, then serialized, so that validation itself is exercised.

use std::time::Duration;

use serde_json::{json, Map, Value};

use crate::api::chat::ChatCompletionRequest;
use crate::api::completions::CompletionRequest;
use crate::api::embeddings::EmbeddingRequest;
use crate::api::responses::CreateResponseRequest;
use crate::extract::parse_json;
use crate::tools::parser::{ToolCallParser, ToolEvent};

/// How long each target runs under `cargo test`.
fn budget() -> Duration {
    let secs = std::env::var("LLMSERVE_FUZZ_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(4);
    Duration::from_secs(secs)
}

/// Field names the request types know, so that generated objects hit real fields.
const FIELDS: &[&str] = &[
    "model",
    "messages",
    "prompt",
    "input",
    "role",
    "content",
    "type",
    "text",
    "image_url",
    "url",
    "max_tokens",
    "max_completion_tokens",
    "max_output_tokens",
    "temperature",
    "top_p",
    "n",
    "stream",
    "stream_options",
    "include_usage",
    "stop",
    "seed",
    "logit_bias",
    "logprobs",
    "top_logprobs",
    "response_format",
    "json_schema",
    "schema",
    "name",
    "strict",
    "tools",
    "tool_choice",
    "function",
    "parameters",
    "arguments",
    "tool_calls",
    "tool_call_id",
    "id",
    "best_of",
    "echo",
    "suffix",
    "user",
    "safety_identifier",
    "presence_penalty",
    "frequency_penalty",
    "instructions",
    "previous_response_id",
    "store",
    "metadata",
    "call_id",
    "output",
    "encoding_format",
    "dimensions",
    "detail",
    "format",
];

#[derive(Debug, bolero::TypeGenerator)]
enum Scalar {
    Null,
    Bool(bool),
    Int(i64),
    Small(u8),
    Float(f64),
    Text(String),
    Field(u8),
}

#[derive(Debug, bolero::TypeGenerator)]
enum Json {
    Scalar(Scalar),
    Array(Vec<Json>),
    Object(Vec<(u8, Json)>),
}

fn field(index: u8) -> &'static str {
    FIELDS[index as usize % FIELDS.len()]
}

impl Scalar {
    fn value(&self) -> Value {
        match self {
            Scalar::Null => Value::Null,
            Scalar::Bool(b) => json!(b),
            Scalar::Int(i) => json!(i),
            Scalar::Small(n) => json!(n),
            Scalar::Float(f) => serde_json::Number::from_f64(*f).map_or(Value::Null, Value::Number),
            Scalar::Text(t) => json!(t),
            Scalar::Field(i) => json!(field(*i)),
        }
    }
}

impl Json {
    fn value(&self) -> Value {
        match self {
            Json::Scalar(s) => s.value(),
            Json::Array(items) => Value::Array(items.iter().map(Json::value).collect()),
            Json::Object(fields) => Value::Object(
                fields
                    .iter()
                    .map(|(k, v)| (field(*k).to_string(), v.value()))
                    .collect::<Map<_, _>>(),
            ),
        }
    }
}

/// A request body: a top-level object of known fields, with well-formed messages or generated ones.
#[derive(Debug, bolero::TypeGenerator)]
struct Body {
    fields: Vec<(u8, Json)>,
    messages: Option<Vec<(u8, Json)>>,
}

impl Body {
    fn bytes(&self) -> Vec<u8> {
        let mut object: Map<String, Value> = self
            .fields
            .iter()
            .map(|(k, v)| (field(*k).to_string(), v.value()))
            .collect();
        if let Some(messages) = &self.messages {
            let roles = [
                "system",
                "user",
                "assistant",
                "tool",
                "developer",
                "function",
            ];
            object.insert(
                "messages".into(),
                messages
                    .iter()
                    .map(|(role, content)| {
                        json!({"role": roles[*role as usize % roles.len()], "content": content.value()})
                    })
                    .collect(),
            );
        }
        serde_json::to_vec(&Value::Object(object)).expect("JSON serializes")
    }
}

/// Parses and validates a body as every request type: each answer is a value or an error, never a
/// panic.
fn every_request_type(bytes: &[u8]) {
    if let Ok(request) = parse_json::<ChatCompletionRequest>(bytes) {
        let _ = crate::validate::chat(request);
    }
    if let Ok(request) = parse_json::<CompletionRequest>(bytes) {
        let _ = crate::validate::completion(request);
    }
    if let Ok(request) = parse_json::<EmbeddingRequest>(bytes) {
        let _ = crate::validate::embedding::embedding(request);
    }
    if let Ok(request) = parse_json::<CreateResponseRequest>(bytes) {
        if let Ok(input) = crate::responses::input::to_chat(&request, &[]) {
            let _ = crate::validate::chat(input.request);
        }
    }
}

#[test]
fn request_bodies_parse_and_validate_without_panics() {
    bolero::check!()
        .with_type::<Body>()
        .with_test_time(budget())
        .for_each(|body| every_request_type(&body.bytes()));
}

#[test]
fn raw_request_bytes_parse_without_panics() {
    bolero::check!()
        .with_test_time(budget())
        .for_each(|bytes: &[u8]| every_request_type(bytes));
}

/// Model output as the tool-call parser meets it: text with the call tags and JSON pieces.
#[derive(Debug, bolero::TypeGenerator)]
enum Piece {
    Text(String),
    Open,
    Close,
    Fence,
    Call { name: u8, arguments: Json },
    Json(Json),
    Cut(u8),
}

fn model_output(pieces: &[Piece]) -> String {
    let mut text = String::new();
    for piece in pieces {
        match piece {
            Piece::Text(t) => text.push_str(t),
            Piece::Open => text.push_str("<tool_call>"),
            Piece::Close => text.push_str("</tool_call>"),
            Piece::Fence => text.push_str("```json\n"),
            Piece::Call { name, arguments } => text.push_str(
                &json!({"name": field(*name), "arguments": arguments.value()}).to_string(),
            ),
            Piece::Json(value) => text.push_str(&value.value().to_string()),
            Piece::Cut(n) => {
                let keep = text.len().saturating_sub(*n as usize % 8);
                let keep = (0..=keep)
                    .rev()
                    .find(|i| text.is_char_boundary(*i))
                    .unwrap_or(0);
                text.truncate(keep);
            }
        }
    }
    text
}

/// The calls a parser finds in `pieces` fed one after another: (name, arguments) in order.
fn calls(pieces: &[&str]) -> Vec<(String, String)> {
    let mut parser = ToolCallParser::default();
    let mut events = Vec::new();
    for piece in pieces {
        events.extend(parser.push(piece));
    }
    events.extend(parser.finish());
    let mut calls: Vec<(String, String)> = Vec::new();
    for event in events {
        match event {
            ToolEvent::Content(_) => {}
            ToolEvent::CallStart { index, name } => {
                assert_eq!(index, calls.len(), "call indices run in order");
                calls.push((name, String::new()));
            }
            ToolEvent::Arguments { index, fragment } => {
                calls
                    .get_mut(index)
                    .expect("arguments of a started call")
                    .1
                    .push_str(&fragment);
            }
        }
    }
    calls
}

#[test]
fn tool_call_parser_finds_the_same_calls_however_the_text_is_cut() {
    bolero::check!()
        .with_type::<(Vec<Piece>, Vec<u8>)>()
        .with_test_time(budget())
        .for_each(|(pieces, cuts)| {
            let text = model_output(pieces);
            let whole = calls(&[&text]);
            let chars: Vec<String> = text.chars().map(String::from).collect();
            let by_char = calls(&chars.iter().map(String::as_str).collect::<Vec<_>>());
            assert_eq!(whole, by_char, "{text:?}");
            // Cut at generated places, as tokens of any length would arrive.
            let mut parts = Vec::new();
            let mut at = 0;
            for cut in cuts {
                let mut end = (at + 1 + *cut as usize % 12).min(text.len());
                while !text.is_char_boundary(end) {
                    end += 1;
                }
                parts.push(&text[at..end]);
                at = end;
                if at == text.len() {
                    break;
                }
            }
            parts.push(&text[at..]);
            assert_eq!(whole, calls(&parts), "{text:?} cut as {parts:?}");
            let (_, complete) = crate::tools::parser::parse_complete(&text);
            assert_eq!(complete, whole, "{text:?}");
        });
}

/// A models file's text: known tables and keys with generated values.
#[derive(Debug, bolero::TypeGenerator)]
enum Line {
    Table(u8),
    Entry(u8, Scalar),
    Raw(String),
}

fn models_file(lines: &[Line]) -> String {
    const TABLES: &[&str] = &[
        "[[models]]",
        "[[models.versions]]",
        "[aliases]",
        "[[keys]]",
        "[roles]",
        "[limits]",
    ];
    const KEYS: &[&str] = &[
        "name",
        "version",
        "source",
        "dtype",
        "max_num_seqs",
        "max_queue",
        "queue_timeout",
        "paged_attn",
        "chat_template",
        "multimodal",
        "default_model",
        "id",
        "key",
        "sha256",
        "key_env",
        "role",
        "models",
        "rpm",
        "tpm",
        "max_concurrent",
        "max_request_bytes",
        "expires",
        "smollm2",
        "user",
    ];
    let mut text = String::new();
    for line in lines {
        match line {
            Line::Table(i) => text.push_str(TABLES[*i as usize % TABLES.len()]),
            Line::Entry(k, v) => {
                let value = match v {
                    Scalar::Field(i) => format!("[\"{}\"]", field(*i)),
                    other => toml_value(&other.value()),
                };
                text.push_str(&format!("{} = {value}", KEYS[*k as usize % KEYS.len()]));
            }
            Line::Raw(raw) => text.push_str(raw),
        }
        text.push('\n');
    }
    text
}

fn toml_value(value: &Value) -> String {
    match value {
        Value::Null => "\"\"".into(),
        Value::String(s) => toml::Value::String(s.clone()).to_string(),
        other => other.to_string(),
    }
}

#[test]
fn models_files_parse_without_panics() {
    let defaults =
        crate::config::Config::for_default_model(std::env::temp_dir()).version_defaults();
    let base = std::env::temp_dir();
    bolero::check!()
        .with_type::<Vec<Line>>()
        .with_test_time(budget())
        .for_each(|lines| {
            let _ = crate::config::file::parse(&models_file(lines), &base, &defaults);
        });
}
