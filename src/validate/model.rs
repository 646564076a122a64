//! The checks that need the resolved model: `logit_bias` keys inside its vocabulary, images only for a
//! model that takes them.

use crate::engine::ModelInfo;
use crate::error::ValidationError;
use crate::validate::generation::ValidatedGeneration;

/// Refuses chat messages for a model without a chat template (a base model serves prompts only), as vLLM
/// does: a 400 that says where to go, not the engine's failure to render.
pub fn check_messages(model: &str, info: &ModelInfo) -> Result<(), ValidationError> {
    if info.chat_template {
        return Ok(());
    }
    Err(ValidationError::invalid(
        "messages",
        format!(
            "`{model}` has no chat template (a base model): send a prompt to POST /v1/completions, or \
             serve it with --chat-template"
        ),
    ))
}

/// Refuses what this model cannot take, before anything is counted or submitted.
pub fn check(
    generation: &ValidatedGeneration,
    images: usize,
    model: &str,
    info: &ModelInfo,
) -> Result<(), ValidationError> {
    if info.embedding_dimensions.is_some() {
        return Err(ValidationError::invalid(
            "model",
            format!("`{model}` is an embedding model: it serves POST /v1/embeddings"),
        ));
    }
    if let Some((token, _)) = generation
        .logit_bias
        .iter()
        .find(|(token, _)| *token as usize >= info.vocab_size)
    {
        return Err(ValidationError::invalid(
            "logit_bias",
            format!(
                "`logit_bias` key {token} is not a token id of this model (0..{})",
                info.vocab_size
            ),
        ));
    }
    if images > 0 && !info.accepts_images {
        return Err(ValidationError::ImagesNotSupported {
            model: model.to_string(),
        });
    }
    if images > info.max_images {
        return Err(ValidationError::invalid(
            "messages",
            format!(
                "`{model}` takes at most {} images per request, got {images}",
                info.max_images
            ),
        ));
    }
    Ok(())
}
