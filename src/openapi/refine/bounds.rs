//! The model-dependent bounds a running server adds to the document it serves.

use serde_json::{json, Value};

use super::document::{property, restate, schema};
use super::token_ids::token_id_key;

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
