//! The shapes of chat and completion requests that the derives cannot state (`tools`, `tool_choice`,
//! `response_format`, `logit_bias`, a message's parts) and the server-sent events of their streams.

use serde_json::{json, Value};

use super::token_ids::token_id_key;

/// One function tool, as `tools::prompt` accepts it.
pub(super) fn tool() -> Value {
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

pub(super) fn tool_choice() -> Value {
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

pub(super) fn response_format() -> Value {
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

/// Token id (decimal, as a string) → bias.
pub(super) fn logit_bias() -> Value {
    json!({
        "type": ["object", "null"],
        "maxProperties": 300,
        "propertyNames": {"pattern": token_id_key(u32::MAX as usize)},
        "additionalProperties": {"type": "number", "minimum": -100, "maximum": 100}
    })
}

/// A message part: text, or an image as a data URL (vision models only; the served document of a text
/// model lists text parts alone).
pub(super) fn content_part() -> Value {
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

/// A server-sent event whose `data` is the JSON of `chunk`, an error envelope, or `[DONE]` last.
pub(super) fn stream_event(chunk: &str) -> Value {
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
