//! Embedding a validated request on its version: tokens counted (each input within the context), a slot
//! in the version's admission queue, the engine's vectors, then `dimensions` (cut and renormalized) and
//! the wire encoding.

use base64::Engine as _;

use crate::engine::{EmbeddingInput, Prompt};
use crate::error::{ApiError, ValidationError};
use crate::gateway::limiter::Settlement;
use crate::models::ServedModel;
use crate::request_log::RequestLog;

/// Tokens each input occupies, as the model reads it; an input longer than the context is refused.
pub async fn count_tokens(
    model: &ServedModel,
    inputs: &[EmbeddingInput],
) -> Result<Vec<usize>, ApiError> {
    let limit = model.engine.info().context_length;
    // Asked together: each count is a round trip to the engine, and a request may hold 2,048 inputs.
    let counts = futures::future::try_join_all(inputs.iter().map(|input| async move {
        match input {
            EmbeddingInput::Text(text) => model
                .engine
                .tokenize(&Prompt::Text(text.clone()))
                .await
                .map(|tokens| tokens.len()),
            EmbeddingInput::Tokens(ids) => Ok(ids.len()),
        }
    }))
    .await?;
    if let Some(&tokens) = counts.iter().find(|&&tokens| tokens > limit) {
        return Err(ValidationError::ContextLengthExceeded {
            limit,
            prompt_tokens: tokens,
        }
        .into());
    }
    Ok(counts)
}

/// The vectors, once the version's queue admits the request (every input counts as a sequence).
pub async fn embed(
    model: &ServedModel,
    inputs: Vec<EmbeddingInput>,
    log: &RequestLog,
    settlement: &mut Settlement,
) -> Result<Vec<Vec<f32>>, ApiError> {
    let permit = model.admission.admit(inputs.len()).await?;
    log.admitted();
    settlement.admitted();
    let vectors = model.engine.embed(inputs).await?;
    drop(permit);
    Ok(vectors)
}

/// The first `dimensions` values, scaled back to length 1 (how Matryoshka embeddings are shortened).
pub fn shorten(mut vector: Vec<f32>, dimensions: usize) -> Vec<f32> {
    vector.truncate(dimensions);
    let norm = vector.iter().map(|v| v * v).sum::<f32>().sqrt();
    if norm > 0.0 {
        vector.iter_mut().for_each(|v| *v /= norm);
    }
    vector
}

/// OpenAI's `base64` encoding: the little-endian f32 bytes.
pub fn base64(vector: &[f32]) -> String {
    let bytes: Vec<u8> = vector.iter().flat_map(|v| v.to_le_bytes()).collect();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shortened_vectors_have_length_one_and_base64_is_little_endian_f32() {
        let short = shorten(vec![3.0, 4.0, 12.0], 2);
        assert_eq!(short, vec![0.6, 0.8]);
        let encoded = base64(&[1.0, -2.5]);
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .unwrap();
        assert_eq!(
            bytes,
            [1.0f32.to_le_bytes(), (-2.5f32).to_le_bytes()].concat()
        );
    }
}
