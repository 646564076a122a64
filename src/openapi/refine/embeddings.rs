//! What `/v1/embeddings` takes, stated in the document.

use serde_json::{json, Value};

use super::document::{restate, schema};

/// What `/v1/embeddings` takes: non-empty strings and token lists, at most 2,048 inputs; the encodings.
pub(super) fn refine_embeddings(document: &mut Value) {
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
