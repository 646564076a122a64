//! What validation enforces that utoipa's derives cannot state, added to the generated document as JSON
//! Schema 2020-12 (OpenAPI 3.1): the shapes of `tools`, `tool_choice`, `response_format` and `logit_bias`,
//! the rules between fields that JSON Schema can express (`if`/`then`), non-empty prompts, and the
//! server-sent events of a stream. The model-dependent bounds (token ids below the vocabulary size) are
//! added by [`with_model_bounds`] to the document a running server serves.
//!
//! Rules JSON Schema cannot state (comparisons between fields: `best_of` ≥ `n`, prompts × `best_of` ≤ 64;
//! a `parameters` schema the grammar compiler accepts) are in the operations' descriptions.

use serde_json::{json, Value};

fn schema<'a>(document: &'a mut Value, name: &str) -> &'a mut Value {
    let schema = &mut document["components"]["schemas"][name];
    assert!(schema.is_object(), "no schema {name} in the document");
    schema
}

fn property<'a>(document: &'a mut Value, name: &str, field: &str) -> &'a mut Value {
    let property = &mut schema(document, name)["properties"][field];
    assert!(property.is_object(), "no property {name}.{field}");
    property
}

/// Replaces a property's type keywords, keeping its description.
fn restate(document: &mut Value, name: &str, field: &str, with: Value) {
    let property = property(document, name, field);
    let description = property.get("description").cloned();
    *property = with;
    if let Some(description) = description {
        property["description"] = description;
    }
}

/// One function tool, as `tools::prompt` accepts it.
fn tool() -> Value {
    json!({
        "type": "object",
        "required": ["type", "function"],
        "properties": {
            "type": {"const": "function"},
            "function": {
                "type": "object",
                "required": ["name"],
                "properties": {
                    "name": {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,64}$"},
                    "description": {"type": ["string", "null"]},
                    "parameters": {"type": ["object", "null"],
                                   "description": "A JSON Schema of the arguments object."},
                    "strict": {"type": ["boolean", "null"]}
                }
            }
        }
    })
}

fn tool_choice() -> Value {
    json!({
        "oneOf": [
            {"type": "null"},
            {"enum": ["none", "auto", "required"]},
            {
                "type": "object",
                "required": ["type", "function"],
                "properties": {
                    "type": {"const": "function"},
                    "function": {"type": "object", "required": ["name"],
                                 "properties": {"name": {"type": "string"}}}
                }
            }
        ]
    })
}

fn response_format() -> Value {
    json!({
        "oneOf": [
            {"type": "null"},
            {"type": "object", "required": ["type"], "properties": {"type": {"enum": ["text", "json_object"]}}},
            {
                "type": "object",
                "required": ["type", "json_schema"],
                "properties": {
                    "type": {"const": "json_schema"},
                    "json_schema": {
                        "type": "object",
                        "required": ["name"],
                        "properties": {
                            "name": {"type": "string"},
                            "description": {"type": ["string", "null"]},
                            "schema": {"type": ["object", "boolean", "null"]},
                            "strict": {"type": ["boolean", "null"]}
                        }
                    }
                }
            }
        ]
    })
}

/// A `logit_bias` key as validation reads it (`str::trim` then `u32` parsing, which takes a `+` and
/// leading zeros): a decimal token id up to `max`.
fn token_id_key(max: usize) -> String {
    format!("^[ \\t\\n\\r]*\\+?0*({})[ \\t\\n\\r]*$", decimal_range(max))
}

/// Token id (decimal, as a string) → bias.
fn logit_bias() -> Value {
    json!({
        "type": ["object", "null"],
        "maxProperties": 300,
        "propertyNames": {"pattern": token_id_key(u32::MAX as usize)},
        "additionalProperties": {"type": "number", "minimum": -100, "maximum": 100}
    })
}

/// A message part: text, or an image as a data URL (vision models only; the served document of a text
/// model lists text parts alone).
fn content_part() -> Value {
    json!({
        "oneOf": [
            {"type": "object", "required": ["type", "text"],
             "properties": {"type": {"const": "text"}, "text": {"type": "string"}}},
            {"type": "object", "required": ["type", "image_url"],
             "properties": {"type": {"const": "image_url"},
                            "image_url": {"type": "object", "required": ["url"],
                                          "properties": {"url": {"type": "string",
                                                                 "pattern": "^data:image/(png|jpeg|webp|gif);base64,"},
                                                         "detail": {"type": ["string", "null"]}}}}}
        ],
        "description": "A part of a message: `text`, or `image_url` (only for vision models) holding a base64 \
                        `data:` URL of a PNG, JPEG, WebP or GIF image (at most 10 MiB and 4096×4096 pixels)."
    })
}

/// Text parts, as an assistant turn or a function's output may hold them.
fn text_parts() -> Value {
    json!({
        "type": "array",
        "items": {"oneOf": [
            {"type": "object", "required": ["type", "text"],
             "properties": {"type": {"enum": ["input_text", "output_text", "text"]}, "text": {"type": "string"}}},
            {"type": "object", "required": ["type", "refusal"],
             "properties": {"type": {"const": "refusal"}, "refusal": {"type": "string"}}}
        ]}
    })
}

/// A Responses `input`: a string, or items of which at least one is not a `reasoning` item.
fn response_input() -> Value {
    json!({
        "oneOf": [
            {"type": "string"},
            {
                "type": "array",
                "minItems": 1,
                "contains": {"not": {"required": ["type"], "properties": {"type": {"const": "reasoning"}}}},
                "items": {"oneOf": [
                    {"type": "object", "required": ["role", "content"],
                     "description": "A message of the user, the system or the developer.",
                     "properties": {
                         "type": {"const": "message"},
                         "role": {"enum": ["user", "system", "developer"]},
                         "content": {"oneOf": [
                             {"type": "string"},
                             {"type": "array", "items": {"$ref": "#/components/schemas/ResponseInputPart"}}
                         ]}
                     }},
                    {"type": "object", "required": ["role", "content"],
                     "description": "An earlier assistant turn: its text.",
                     "properties": {
                         "type": {"const": "message"},
                         "role": {"const": "assistant"},
                         "content": {"oneOf": [{"type": "string"}, text_parts()]}
                     }},
                    {"type": "object", "required": ["type", "call_id", "name", "arguments"],
                     "description": "A call the model made earlier.",
                     "properties": {
                         "type": {"const": "function_call"},
                         "call_id": {"type": "string"},
                         "name": {"type": "string"},
                         "arguments": {"type": "string", "description": "JSON text"}
                     }},
                    {"type": "object", "required": ["type", "call_id", "output"],
                     "description": "What a call returned.",
                     "properties": {
                         "type": {"const": "function_call_output"},
                         "call_id": {"type": "string"},
                         "output": {"oneOf": [{"type": "string"}, text_parts()]}
                     }},
                    {"type": "object", "required": ["type"],
                     "description": "A reasoning model's item, sent back by agent frameworks: skipped.",
                     "properties": {"type": {"const": "reasoning"}}}
                ]}
            }
        ]
    })
}

/// A part of a user's Responses message: text, or an image as a data URL (vision models only).
fn response_input_part() -> Value {
    json!({
        "oneOf": [
            {"type": "object", "required": ["type", "text"],
             "properties": {"type": {"enum": ["input_text", "output_text", "text"]}, "text": {"type": "string"}}},
            {"type": "object", "required": ["type", "image_url"],
             "properties": {"type": {"const": "input_image"},
                            "image_url": {"type": "string", "pattern": "^data:image/(png|jpeg|webp|gif);base64,"},
                            "detail": {"type": ["string", "null"]}}}
        ],
        "description": "`input_text`, or `input_image` (only for vision models) with `image_url` a base64 `data:` \
                        URL of a PNG, JPEG, WebP or GIF image."
    })
}

/// One function tool in the Responses shape (flat: no `function` object).
fn response_tool() -> Value {
    json!({
        "type": "object",
        "required": ["type", "name"],
        "properties": {
            "type": {"const": "function"},
            "name": {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,64}$"},
            "description": {"type": ["string", "null"]},
            "parameters": {"type": ["object", "null"], "description": "A JSON Schema of the arguments object."},
            "strict": {"type": ["boolean", "null"]}
        }
    })
}

/// Responses' `tool_choice`: a mode, or a function by name.
fn response_tool_choice() -> Value {
    json!({
        "oneOf": [
            {"type": "null"},
            {"enum": ["none", "auto", "required"]},
            {"type": "object", "required": ["type", "name"],
             "properties": {"type": {"const": "function"}, "name": {"type": "string"}}}
        ]
    })
}

/// Responses' `text`: its `format` as chat's `response_format`, flattened.
fn response_text() -> Value {
    json!({
        "type": ["object", "null"],
        "properties": {
            "format": {"oneOf": [
                {"type": "null"},
                {"type": "object", "required": ["type"], "properties": {"type": {"enum": ["text", "json_object"]}}},
                {"type": "object", "required": ["type", "name"],
                 "properties": {
                     "type": {"const": "json_schema"},
                     "name": {"type": "string"},
                     "description": {"type": ["string", "null"]},
                     "schema": {"type": ["object", "boolean", "null"]},
                     "strict": {"type": ["boolean", "null"]}
                 }}
            ]}
        }
    })
}

/// A server-sent event whose `data` is the JSON of `chunk`, an error envelope, or `[DONE]` last.
fn stream_event(chunk: &str) -> Value {
    json!({
        "type": "object",
        "required": ["data"],
        "description": format!(
            "One server-sent event: `data` holds the JSON of a `{chunk}`, then `[DONE]` last; an error after \
             the response began is a `data` event holding an `ErrorResponse`. `: ping` comments keep a silent \
             stream open."
        ),
        "properties": {
            "data": {
                "anyOf": [
                    {"const": "[DONE]"},
                    {
                        "type": "string",
                        "contentMediaType": "application/json",
                        "contentSchema": {"anyOf": [
                            {"$ref": format!("#/components/schemas/{chunk}")},
                            {"$ref": "#/components/schemas/ErrorResponse"}
                        ]}
                    }
                ]
            }
        }
    })
}

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

/// The Responses API's request shapes and the rules between its fields (as chat's), and the echoed
/// fields of a `response` as they come back.
fn refine_responses(document: &mut Value) {
    let request = "CreateResponseRequest";
    restate(document, request, "input", response_input());
    restate(
        document,
        request,
        "tools",
        json!({"type": ["array", "null"], "maxItems": 128, "items": response_tool()}),
    );
    restate(document, request, "tool_choice", response_tool_choice());
    restate(document, request, "text", response_text());
    document["components"]["schemas"]["ResponseInputPart"] = response_input_part();
    schema(document, request)["allOf"] = json!([
        // JSON output and callable tools exclude each other.
        {"if": {"required": ["text"],
                "properties": {"text": {"type": "object", "required": ["format"],
                    "properties": {"format": {"type": "object", "required": ["type"],
                        "properties": {"type": {"enum": ["json_object", "json_schema"]}}}}}}},
         "then": {"anyOf": [{"properties": {"tools": {"type": ["array", "null"], "maxItems": 0}}},
                            {"required": ["tool_choice"], "properties": {"tool_choice": {"const": "none"}}}]}},
        // A named or required tool needs tools.
        {"if": {"required": ["tool_choice"],
                "properties": {"tool_choice": {"not": {"anyOf": [{"type": "null"}, {"const": "none"}]}}}},
         "then": {"required": ["tools"], "properties": {"tools": {"type": "array", "minItems": 1}}}}
    ]);
    let response = "ResponseObject";
    restate(
        document,
        response,
        "tool_choice",
        json!({"oneOf": [{"enum": ["none", "auto", "required"]},
                         {"type": "object", "required": ["type", "name"]}]}),
    );
    restate(document, response, "text", json!({"type": "object"}));
    restate(
        document,
        response,
        "tools",
        json!({"type": "array", "items": {"type": "object"}}),
    );
    document["paths"]["/v1/responses"]["post"]["responses"]["200"]["content"]
        ["text/event-stream"]["schema"] = json!({
        "type": "object",
        "required": ["event", "data"],
        "description": "One server-sent event: `event` is the type, `data` the JSON of a \
                        `ResponseStreamEvent`; no `[DONE]`. `: ping` comments keep a silent stream open.",
        "properties": {
            "event": {"type": "string"},
            "data": {"type": "string", "contentMediaType": "application/json",
                     "contentSchema": {"$ref": "#/components/schemas/ResponseStreamEvent"}}
        }
    });
}

/// What `/v1/embeddings` takes: non-empty strings and token lists, at most 2,048 inputs; the encodings.
fn refine_embeddings(document: &mut Value) {
    let ids = json!({"type": "array", "minItems": 1, "items": {"type": "integer", "minimum": 0, "maximum": u32::MAX}});
    *schema(document, "EmbeddingInput") = json!({
        "oneOf": [
            {"type": "string", "minLength": 1},
            {"type": "array", "minItems": 1, "maxItems": 2048, "items": {"type": "string", "minLength": 1}},
            ids.clone(),
            {"type": "array", "minItems": 1, "maxItems": 2048, "items": ids}
        ],
        "description": "A string, a list of strings, a list of token ids, or a list of such lists (at most 2,048 inputs)."
    });
    restate(
        document,
        "EmbeddingRequest",
        "encoding_format",
        json!({"anyOf": [{"type": "null"}, {"enum": ["float", "base64"]}]}),
    );
}

/// What the served document states of the loaded model.
#[derive(Debug, Clone, Copy)]
pub struct ModelBounds {
    pub vocab_size: usize,
    pub accepts_images: bool,
    pub fill_in_middle: bool,
    /// The widest embedding a served model returns (`dimensions` up to it); `None`: no model embeds.
    pub embedding_dimensions: Option<usize>,
}

/// The served document: token ids bounded by this model's vocabulary; text parts only for a model that
/// takes no images; no `suffix` for a model without fill-in-the-middle tokens.
pub fn with_model_bounds(mut document: Value, model: ModelBounds) -> Value {
    let ModelBounds {
        vocab_size,
        accepts_images,
        fill_in_middle,
        embedding_dimensions,
    } = model;
    if let Some(width) = embedding_dimensions {
        property(&mut document, "EmbeddingRequest", "dimensions")["maximum"] = json!(width);
    }
    if !fill_in_middle {
        restate(
            &mut document,
            "CompletionRequest",
            "suffix",
            json!({"anyOf": [{"type": "null"}, {"const": ""}]}),
        );
    }
    if !accepts_images {
        for name in ["ContentPart", "ResponseInputPart"] {
            let part = schema(&mut document, name);
            let text = part["oneOf"][0].take();
            *part = text;
        }
    }
    let largest = vocab_size.saturating_sub(1);
    property(&mut document, "DetokenizeRequest", "tokens")["items"]["maximum"] = json!(largest);
    for request in ["ChatCompletionRequest", "CompletionRequest"] {
        property(&mut document, request, "logit_bias")["propertyNames"]["pattern"] =
            json!(token_id_key(largest));
    }
    let input = schema(&mut document, "EmbeddingInput");
    input["oneOf"][2]["items"]["maximum"] = json!(largest);
    input["oneOf"][3]["items"]["items"]["maximum"] = json!(largest);
    document
}

/// A regular expression matching the decimal numbers 0..=`max` without leading zeros.
fn decimal_range(max: usize) -> String {
    let digits: Vec<u8> = max.to_string().bytes().map(|b| b - b'0').collect();
    let width = digits.len();
    let mut alternatives = vec!["0".to_string()];
    // Every number with fewer digits than `max`.
    if width >= 2 {
        alternatives.push(format!("[1-9][0-9]{{0,{}}}", width - 2));
    }
    // Numbers of `max`'s width: equal to it up to position i, smaller at i, anything after.
    for i in 0..width {
        let low = if i == 0 { 1 } else { 0 };
        if digits[i] > low {
            let prefix: String = digits[..i].iter().map(|d| d.to_string()).collect();
            let rest = width - i - 1;
            let tail = if rest > 0 {
                format!("[0-9]{{{rest}}}")
            } else {
                String::new()
            };
            alternatives.push(format!("{prefix}[{low}-{}]{tail}", digits[i] - 1));
        }
    }
    if max > 0 {
        alternatives.push(max.to_string());
    }
    alternatives.join("|")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_served_document_states_the_model_bounds() {
        let committed = super::super::document_value();
        let served = with_model_bounds(
            committed.clone(),
            ModelBounds {
                vocab_size: 49152,
                accepts_images: false,
                fill_in_middle: false,
                embedding_dimensions: None,
            },
        );
        let schemas = &served["components"]["schemas"];
        assert_eq!(
            schemas["DetokenizeRequest"]["properties"]["tokens"]["items"]["maximum"],
            49151
        );
        assert_eq!(
            schemas["ContentPart"]["properties"]["type"]["const"],
            "text"
        );
        let pattern = schemas["CompletionRequest"]["properties"]["logit_bias"]["propertyNames"]
            ["pattern"]
            .as_str()
            .unwrap();
        assert!(pattern.contains("|49151)"), "{pattern}");
        let vision = with_model_bounds(
            committed.clone(),
            ModelBounds {
                vocab_size: 10,
                accepts_images: true,
                fill_in_middle: true,
                embedding_dimensions: None,
            },
        );
        assert_eq!(
            vision["components"]["schemas"]["ContentPart"],
            committed["components"]["schemas"]["ContentPart"]
        );
    }

    #[test]
    fn decimal_ranges_match_exactly_the_numbers_up_to_the_bound() {
        for max in [0, 1, 9, 10, 99, 100, 49151, 32000, 151935] {
            let pattern = format!("^({})$", decimal_range(max));
            let matches = |n: usize| -> bool { full_match(&pattern, &n.to_string()) };
            for n in (0..=max.min(2000)).chain(max.saturating_sub(2000)..=max) {
                assert!(matches(n), "{n} should match {pattern}");
            }
            for n in [max + 1, max + 10, max * 10 + 1] {
                assert!(!matches(n), "{n} should not match {pattern}");
            }
            assert!(!full_match(&pattern, "01"));
        }
    }

    /// A tiny matcher for the patterns `decimal_range` writes: alternatives of literal digits, `[a-b]`
    /// classes and `{n}` / `{0,n}` repeats of `[0-9]`.
    fn full_match(pattern: &str, text: &str) -> bool {
        let body = &pattern[2..pattern.len() - 2];
        body.split('|')
            .any(|alternative| matches_alternative(alternative, text))
    }

    fn matches_alternative(alternative: &str, text: &str) -> bool {
        // Expand into a list of (class, min, max) items.
        let mut items: Vec<(u8, u8, usize, usize)> = Vec::new();
        let bytes = alternative.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            let (lo, hi) = if bytes[i] == b'[' {
                let class = (bytes[i + 1], bytes[i + 3]);
                i += 5;
                class
            } else {
                let digit = bytes[i];
                i += 1;
                (digit, digit)
            };
            let (mut min, mut max) = (1, 1);
            if i < bytes.len() && bytes[i] == b'{' {
                let end = alternative[i..].find('}').unwrap() + i;
                let spec = &alternative[i + 1..end];
                (min, max) = match spec.split_once(',') {
                    Some((a, b)) => (a.parse().unwrap(), b.parse().unwrap()),
                    None => (spec.parse().unwrap(), spec.parse().unwrap()),
                };
                i = end + 1;
            }
            items.push((lo, hi, min, max));
        }
        fn go(items: &[(u8, u8, usize, usize)], text: &[u8]) -> bool {
            let Some(&(lo, hi, min, max)) = items.first() else {
                return text.is_empty();
            };
            (min..=max).any(|n| {
                n <= text.len()
                    && text[..n].iter().all(|c| (lo..=hi).contains(c))
                    && go(&items[1..], &text[n..])
            })
        }
        go(&items, text.as_bytes())
    }
}
