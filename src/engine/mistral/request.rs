//! Our requests in the engine's terms: messages (images as parts for multimodal models), sampling reduced
//! to penalties and an argmax with our `TokenPicker` as the logits processor, grammar constraints.

use std::sync::Arc;

use either::Either;
use indexmap::IndexMap;
use mistralrs::core::MultimodalPromptPrefixer;
use mistralrs::{Constraint, CustomLogitsProcessor, MessageContent, SamplingParams, StopTokens};
use serde_json::Value;

use crate::engine::sampler::TokenPicker;
use crate::engine::{EngineError, GenerationRequest, OutputConstraint, Prompt};

/// The engine's messages. For a multimodal model every message is a list of parts, images first (as
/// mistral.rs's own server writes them), with the model's image placeholders added to the text by its
/// prefixer: such chat templates (SmolVLM's, for one) read only parts. A text model's are plain strings.
pub(super) fn chat_messages(
    prompt: &Prompt,
    prefixer: Option<&dyn MultimodalPromptPrefixer>,
) -> Either<Vec<IndexMap<String, MessageContent>>, String> {
    let messages = match prompt {
        Prompt::Text(text) => return Either::Right(text.clone()),
        Prompt::Chat(messages) => messages,
    };
    let mut images_before = 0;
    let messages = messages
        .iter()
        .map(|m| {
            let content = match prefixer {
                None => Either::Left(m.content.clone()),
                Some(prefixer) => {
                    let indices: Vec<usize> =
                        (images_before..images_before + m.images.len()).collect();
                    images_before += m.images.len();
                    let text = if indices.is_empty() {
                        m.content.clone()
                    } else {
                        prefixer.prefix_image(indices, &m.content)
                    };
                    let mut parts: Vec<IndexMap<String, Value>> = m
                        .images
                        .iter()
                        .map(|_| IndexMap::from([("type".to_string(), Value::from("image"))]))
                        .collect();
                    parts.push(IndexMap::from([
                        ("type".to_string(), Value::from("text")),
                        ("text".to_string(), Value::from(text)),
                    ]));
                    Either::Right(parts)
                }
            };
            IndexMap::from([
                (
                    "role".to_string(),
                    Either::Left(m.role.as_str().to_string()),
                ),
                ("content".to_string(), content),
            ])
        })
        .collect();
    Either::Left(messages)
}

/// A prompt's images, in order, decoded off the async workers (a large PNG takes tens of milliseconds) and
/// copied for the engine, which takes them by value.
pub(super) async fn decode_images(
    prompt: &Prompt,
) -> Result<Vec<image::DynamicImage>, EngineError> {
    let Prompt::Chat(messages) = prompt else {
        return Ok(Vec::new());
    };
    let encoded: Vec<_> = messages.iter().flat_map(|m| m.images.clone()).collect();
    if encoded.is_empty() {
        return Ok(Vec::new());
    }
    tokio::task::spawn_blocking(move || {
        encoded
            .iter()
            .enumerate()
            .map(|(index, input)| {
                input.decode().map(|pixels| (*pixels).clone()).map_err(|e| {
                    EngineError::Rejected(format!(
                        "image {index} ({}) could not be decoded: {e}",
                        input.media_type
                    ))
                })
            })
            .collect()
    })
    .await
    .map_err(|e| EngineError::Internal(format!("image decoding failed: {e}")))?
}

/// The engine's own sampling is reduced to its penalties and an argmax: `TokenPicker` chooses the token.
pub(super) fn sampling_params(
    request: &GenerationRequest,
    unlisted_ends: &[String],
) -> SamplingParams {
    let s = &request.sampling;
    let mut params = SamplingParams::neutral();
    params.temperature = Some(0.0);
    params.presence_penalty = s.presence_penalty;
    params.frequency_penalty = s.frequency_penalty;
    params.repetition_penalty = s.repetition_penalty;
    params.max_len = Some(request.max_tokens);
    // A stop string that is one special token becomes a stop token in the engine.
    let stops: Vec<String> = request.stop.iter().chain(unlisted_ends).cloned().collect();
    params.stop_toks = (!stops.is_empty()).then_some(StopTokens::Seqs(stops));
    params.n_choices = 1;
    params
}

pub(super) fn constraint(constraint: Option<&OutputConstraint>) -> Constraint {
    match constraint {
        None => Constraint::None,
        Some(OutputConstraint::JsonSchema(schema)) => Constraint::JsonSchema(schema.clone()),
        Some(OutputConstraint::Lark(grammar)) => Constraint::Lark(grammar.clone()),
    }
}

/// The logits processor that hands each step to our `TokenPicker`.
pub(super) struct PickerProcessor(pub(super) Arc<TokenPicker>);

impl CustomLogitsProcessor for PickerProcessor {
    fn apply(
        &self,
        logits: &candle_core::Tensor,
        context: &[u32],
    ) -> candle_core::Result<candle_core::Tensor> {
        let mut values: Vec<f32> = logits.to_dtype(candle_core::DType::F32)?.to_vec1()?;
        self.0.pick(&mut values, context.len());
        let len = values.len();
        candle_core::Tensor::from_vec(values, len, logits.device())?.to_dtype(logits.dtype())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{ImageInput, PromptMessage, Role};

    /// Phi-3.5-vision's way: numbered placeholders before the text.
    struct NumberedImages;
    impl MultimodalPromptPrefixer for NumberedImages {
        fn prefix_image(&self, indices: Vec<usize>, prompt: &str) -> String {
            let marks: String = indices
                .iter()
                .map(|i| format!("<|image_{}|>", i + 1))
                .collect();
            format!("{marks}{prompt}")
        }
    }

    #[test]
    fn a_multimodal_model_gets_parts_with_numbered_images() {
        let image = ImageInput::new("image/png".into(), vec![]);
        let message = |role, content: &str, images: usize| PromptMessage {
            role,
            content: content.into(),
            images: vec![image.clone(); images],
        };
        let prompt = Prompt::Chat(vec![
            message(Role::System, "be brief", 0),
            message(Role::User, "first", 2),
            message(Role::User, "second", 1),
        ]);
        let Either::Left(text_model) = chat_messages(&prompt, None) else {
            panic!("chat")
        };
        assert_eq!(text_model[1]["content"], Either::Left("first".to_string()));
        let Either::Left(vision_model) = chat_messages(&prompt, Some(&NumberedImages)) else {
            panic!("chat")
        };
        let parts = |i: usize| match &vision_model[i]["content"] {
            Either::Right(parts) => serde_json::to_value(parts).unwrap(),
            Either::Left(text) => panic!("a string: {text}"),
        };
        assert_eq!(
            parts(0),
            serde_json::json!([{"type": "text", "text": "be brief"}])
        );
        assert_eq!(
            parts(1),
            serde_json::json!([{"type": "image"}, {"type": "image"},
                {"type": "text", "text": "<|image_1|><|image_2|>first"}])
        );
        // Numbering runs on across messages.
        assert_eq!(
            parts(2),
            serde_json::json!([{"type": "image"}, {"type": "text", "text": "<|image_3|>second"}])
        );
    }
}
