//! Embeddings requests: the input forms OpenAI takes, the encoding, `dimensions`; then the checks that
//! need the resolved model (it embeds, its width, its vocabulary).

use crate::api::embeddings::{EmbeddingInput as WireInput, EmbeddingRequest};
use crate::engine::{EmbeddingInput, ModelInfo};
use crate::error::ValidationError;

/// Inputs per request, as OpenAI bounds them.
pub const MAX_INPUTS: usize = 2048;

#[derive(Debug, Clone, PartialEq)]
pub struct ValidatedEmbedding {
    pub model: Option<String>,
    pub inputs: Vec<EmbeddingInput>,
    /// `encoding_format: "base64"`.
    pub base64: bool,
    pub dimensions: Option<usize>,
}

pub fn embedding(request: EmbeddingRequest) -> Result<ValidatedEmbedding, ValidationError> {
    let invalid = |message: &str| ValidationError::invalid("input", message.to_string());
    let token_ids = |ids: Vec<i64>| -> Result<Vec<u32>, ValidationError> {
        if ids.is_empty() {
            return Err(invalid("a token list in `input` must not be empty"));
        }
        ids.into_iter()
            .map(|id| u32::try_from(id).map_err(|_| invalid("token ids must be 0 or more")))
            .collect()
    };
    let inputs: Vec<EmbeddingInput> = match request.input {
        WireInput::Text(text) => vec![EmbeddingInput::Text(text)],
        WireInput::Texts(texts) => texts.into_iter().map(EmbeddingInput::Text).collect(),
        WireInput::Tokens(ids) => vec![EmbeddingInput::Tokens(token_ids(ids)?)],
        WireInput::TokenLists(lists) => lists
            .into_iter()
            .map(|ids| token_ids(ids).map(EmbeddingInput::Tokens))
            .collect::<Result<_, _>>()?,
    };
    if inputs.is_empty() {
        return Err(invalid("`input` must not be empty"));
    }
    if inputs.len() > MAX_INPUTS {
        return Err(invalid(&format!(
            "`input` holds {} items, more than {MAX_INPUTS}",
            inputs.len()
        )));
    }
    if inputs
        .iter()
        .any(|i| matches!(i, EmbeddingInput::Text(t) if t.is_empty()))
    {
        return Err(invalid("`input` cannot contain an empty string"));
    }
    let base64 = match request.encoding_format.as_deref() {
        None | Some("float") => false,
        Some("base64") => true,
        Some(other) => {
            return Err(ValidationError::invalid(
                "encoding_format",
                format!("`encoding_format` must be `float` or `base64`, got `{other}`"),
            ))
        }
    };
    let dimensions = match request.dimensions {
        None => None,
        Some(d) if d >= 1 => Some(d as usize),
        Some(d) => {
            return Err(ValidationError::invalid(
                "dimensions",
                format!("`dimensions` must be at least 1, got {d}"),
            ))
        }
    };
    super::common::check_caller_id("user", request.user.as_deref())?;
    Ok(ValidatedEmbedding {
        model: request.model,
        inputs,
        base64,
        dimensions,
    })
}

/// The checks that need the model: it embeds, `dimensions` fits its width, token ids fit its vocabulary.
pub fn check_model(
    embedding: &ValidatedEmbedding,
    model: &str,
    info: &ModelInfo,
) -> Result<(), ValidationError> {
    let Some(width) = info.embedding_dimensions else {
        return Err(ValidationError::invalid(
            "model",
            format!(
                "`{model}` is a text-generation model: it serves POST /v1/chat/completions and \
                 /v1/completions, not /v1/embeddings"
            ),
        ));
    };
    if let Some(wanted) = embedding.dimensions.filter(|d| *d > width) {
        return Err(ValidationError::invalid(
            "dimensions",
            format!("`dimensions` must be at most {width} for `{model}`, got {wanted}"),
        ));
    }
    let too_large = embedding.inputs.iter().find_map(|input| match input {
        EmbeddingInput::Tokens(ids) => ids.iter().find(|id| **id as usize >= info.vocab_size),
        EmbeddingInput::Text(_) => None,
    });
    if let Some(id) = too_large {
        return Err(ValidationError::invalid(
            "input",
            format!(
                "token id {id} is outside the vocabulary of `{model}` (0 to {})",
                info.vocab_size.saturating_sub(1)
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn request(body: serde_json::Value) -> EmbeddingRequest {
        serde_json::from_value(body).unwrap()
    }

    #[test]
    fn every_input_form_and_its_refusals() {
        let forms = [
            (json!("a"), 1),
            (json!(["a", "b"]), 2),
            (json!([1, 2, 3]), 1),
            (json!([[1, 2], [3]]), 2),
            (json!([333.0, 911.0]), 1),
            (json!([[1.0], [2]]), 2),
        ];
        for (input, count) in forms {
            let validated = embedding(request(json!({"input": input}))).unwrap();
            assert_eq!(validated.inputs.len(), count, "{input}");
        }
        for (body, param) in [
            (json!({"input": ""}), "input"),
            (json!({"input": []}), "input"),
            (json!({"input": [[]]}), "input"),
            (json!({"input": [-1]}), "input"),
            (
                json!({"input": "a", "encoding_format": "hex"}),
                "encoding_format",
            ),
            (json!({"input": "a", "dimensions": 0}), "dimensions"),
        ] {
            match embedding(request(body.clone())) {
                Err(ValidationError::Invalid { param: p, .. }) => assert_eq!(p, param, "{body}"),
                other => panic!("{body}: {other:?}"),
            }
        }
    }

    #[test]
    fn the_model_must_embed_and_bound_dimensions_and_ids() {
        let mut info = ModelInfo {
            context_length: 512,
            accepts_images: false,
            chat_template: true,
            max_images: 8,
            vocab_size: 10,
            fill_in_middle: None,
            embedding_dimensions: None,
            max_token_bytes: 0,
        };
        let validated = embedding(request(json!({"input": [9], "dimensions": 8}))).unwrap();
        let refused = check_model(&validated, "gen", &info).unwrap_err();
        assert!(refused.to_string().contains("/v1/embeddings"));
        info.embedding_dimensions = Some(8);
        assert!(check_model(&validated, "emb", &info).is_ok());
        info.embedding_dimensions = Some(4);
        assert!(check_model(&validated, "emb", &info).is_err());
        info.embedding_dimensions = Some(8);
        info.vocab_size = 9;
        assert!(check_model(&validated, "emb", &info).is_err());
    }
}
