//! What validation enforces that utoipa's derives cannot state, added to the generated document as JSON
//! Schema 2020-12 (OpenAPI 3.1): the shapes of `tools`, `tool_choice`, `response_format` and `logit_bias`,
//! the rules between fields that JSON Schema can express (`if`/`then`), non-empty prompts, and the
//! server-sent events of a stream. The model-dependent bounds (token ids below the vocabulary size) are
//! added by [`with_model_bounds`] to the document a running server serves.
//!
//! Rules JSON Schema cannot state (comparisons between fields: `best_of` ≥ `n`, prompts × `best_of` ≤ 64;
//! a `parameters` schema the grammar compiler accepts) are in the operations' descriptions.

mod bounds;
mod chat;
mod document;
mod embeddings;
mod responses;
mod token_ids;

use serde_json::{json, Value};

pub use bounds::{with_model_bounds, ModelBounds};
use chat::{content_part, logit_bias, response_format, stream_event, tool, tool_choice};
use document::{property, restate, schema};
use embeddings::refine_embeddings;
use responses::refine_responses;

/// The generated document with every rule above added.
pub fn refine(mut document: Value) -> Value {
    for request in ["ChatCompletionRequest", "CompletionRequest"] {
        restate(&mut document, request, "logit_bias", logit_bias());
    }
    restate(
        &mut document,
        "ChatCompletionRequest",
        "tools",
        json!({"type": ["array", "null"], "maxItems": 128, "items": tool()}),
    );
    restate(
        &mut document,
        "ChatCompletionRequest",
        "tool_choice",
        tool_choice(),
    );
    restate(
        &mut document,
        "ChatCompletionRequest",
        "modalities",
        json!({"type": ["array", "null"], "items": {"const": "text"}}),
    );
    // The deprecated function calling is refused: only null is accepted.
    for field in ["functions", "function_call"] {
        restate(
            &mut document,
            "ChatCompletionRequest",
            field,
            json!({"type": "null"}),
        );
    }
    // An assistant turn's earlier calls, as `tools::prompt` renders them.
    property(&mut document, "ChatMessage", "tool_calls")["items"] = json!({
        "type": "object",
        "required": ["function"],
        "properties": {
            "id": {"description": "Not read: the prompt shows calls by name and arguments."},
            "type": {"anyOf": [{"type": "null"}, {"const": "function"}]},
            "function": {"type": "object", "required": ["name"],
                         "properties": {"name": {"type": "string"},
                                        "arguments": {"description": "JSON text, or the arguments object"}}}
        }
    });
    restate(
        &mut document,
        "ChatCompletionRequest",
        "response_format",
        response_format(),
    );
    // A message other than the assistant's needs its content, and only the assistant calls tools.
    let message = schema(&mut document, "ChatMessage");
    message["if"] = json!({"properties": {"role": {"const": "assistant"}}});
    message["else"] = json!({
        "required": ["content"],
        "properties": {"content": {"not": {"type": "null"}},
                       "tool_calls": {"type": ["array", "null"], "maxItems": 0}}
    });
    let chat = schema(&mut document, "ChatCompletionRequest");
    chat["allOf"] = json!([
        // `top_logprobs` above 0 needs `logprobs: true`.
        {"if": {"required": ["top_logprobs"], "properties": {"top_logprobs": {"type": "integer", "minimum": 1}}},
         "then": {"required": ["logprobs"], "properties": {"logprobs": {"const": true}}}},
        // JSON output and callable tools exclude each other.
        {"if": {"required": ["response_format"],
                "properties": {"response_format": {"required": ["type"],
                                                   "properties": {"type": {"enum": ["json_object", "json_schema"]}}}}},
         "then": {"anyOf": [{"properties": {"tools": {"type": ["array", "null"], "maxItems": 0}}},
                            {"required": ["tool_choice"], "properties": {"tool_choice": {"const": "none"}}}]}},
        // A named or required tool needs tools.
        {"if": {"required": ["tool_choice"],
                "properties": {"tool_choice": {"not": {"anyOf": [{"type": "null"}, {"const": "none"}]}}}},
         "then": {"required": ["tools"], "properties": {"tools": {"type": "array", "minItems": 1}}}}
    ]);
    let completion = schema(&mut document, "CompletionRequest");
    // `logprobs` with `echo` would need the prompt's log probabilities.
    completion["if"] = json!({"required": ["echo"], "properties": {"echo": {"const": true}}});
    completion["then"] = json!({"properties": {"logprobs": {"type": "null"}}});
    *schema(&mut document, "ContentPart") = content_part();
    refine_responses(&mut document);
    refine_embeddings(&mut document);
    let stop = schema(&mut document, "StopSequences");
    stop["oneOf"][0]["minLength"] = json!(1);
    stop["oneOf"][1]["maxItems"] = json!(4);
    stop["oneOf"][1]["items"]["minLength"] = json!(1);
    *schema(&mut document, "PromptInput") = json!({
        "oneOf": [
            {"type": "string", "minLength": 1},
            {"type": "array", "minItems": 1, "maxItems": 64, "items": {"type": "string", "minLength": 1}}
        ]
    });
    for (path, chunk) in [
        ("/v1/chat/completions", "ChatCompletionChunk"),
        ("/v1/completions", "TextCompletionChunk"),
    ] {
        document["paths"][path]["post"]["responses"]["200"]["content"]["text/event-stream"]
            ["schema"] = stream_event(chunk);
    }
    document
}

#[cfg(test)]
mod tests;
