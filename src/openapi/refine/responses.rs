//! The Responses API's request shapes, the rules between their fields, the echoed fields of a `response`
//! and the server-sent events of its stream.

use serde_json::{json, Value};

use super::document::{restate, schema};

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

/// The Responses API's request shapes and the rules between its fields (as chat's), and the echoed
/// fields of a `response` as they come back.
pub(super) fn refine_responses(document: &mut Value) {
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
