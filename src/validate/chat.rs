//! A chat request → a [`ValidatedChat`]: `logprobs`, `response_format` and `tools` checked, unserved
//! fields refused, the shared parameters and each message validated, the tools put into the system prompt.

use serde_json::Value;

use super::common::{common, common_params};
use super::limits::{MAX_IMAGES, MAX_TOP_LOGPROBS};
use super::messages::message;
use super::response_format::response_format;
use crate::api::chat::ChatCompletionRequest;
use crate::engine::{OutputConstraint, PromptMessage, Role};
use crate::error::ValidationError;
use crate::tools::{self, ToolSetup};
use crate::validate::generation::ValidatedGeneration;

/// A chat request after validation: defaults filled in, bounds checked, content parts turned into prompt
/// messages with their images decoded, tools turned into the prompt text and grammar that serve them.
/// What the generation core accepts; nothing after this point re-reads the wire request.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidatedChat {
    pub generation: ValidatedGeneration,
    pub messages: Vec<PromptMessage>,
    pub tools: Option<ToolSetup>,
}

impl ValidatedChat {
    /// Whether any message carries an image (served only by vision models).
    pub fn has_images(&self) -> bool {
        self.messages.iter().any(|m| !m.images.is_empty())
    }

    /// Images over all messages (each model takes at most its `--max-images`).
    pub fn image_count(&self) -> usize {
        self.messages.iter().map(|m| m.images.len()).sum()
    }
}

/// Fields that would change what OpenAI returns but that this server cannot serve: refused, not ignored.
fn refuse_unserved(request: &ChatCompletionRequest) -> Result<(), ValidationError> {
    let present = |v: &Option<Value>| v.as_ref().is_some_and(|v| !v.is_null());
    if present(&request.functions) || present(&request.function_call) {
        return Err(ValidationError::unsupported(
            if present(&request.functions) { "functions" } else { "function_call" },
            "the deprecated `functions` / `function_call` are not served; send `tools` and `tool_choice`",
        ));
    }
    if let Some(other) = request
        .modalities
        .iter()
        .flatten()
        .find(|m| m.as_str() != "text")
    {
        return Err(ValidationError::unsupported(
            "modalities",
            format!("only the `text` modality is served, got `{other}`"),
        ));
    }
    if present(&request.audio) {
        return Err(ValidationError::unsupported(
            "audio",
            "audio output is not served by this server",
        ));
    }
    if present(&request.web_search_options) {
        return Err(ValidationError::unsupported(
            "web_search_options",
            "web search is not served by this server",
        ));
    }
    Ok(())
}

pub fn chat(request: ChatCompletionRequest) -> Result<ValidatedChat, ValidationError> {
    if request.messages.is_empty() {
        return Err(ValidationError::invalid(
            "messages",
            "`messages` must contain at least one message",
        ));
    }
    let logprobs = match (request.logprobs.unwrap_or(false), request.top_logprobs) {
        (false, Some(k)) if k > 0 => {
            return Err(ValidationError::invalid(
                "top_logprobs",
                "`top_logprobs` needs `logprobs: true`",
            ))
        }
        (_, Some(k)) if !(0..=MAX_TOP_LOGPROBS).contains(&k) => {
            return Err(ValidationError::invalid(
                "top_logprobs",
                format!("`top_logprobs` must be between 0 and {MAX_TOP_LOGPROBS}, got {k}"),
            ))
        }
        (false, _) => None,
        (true, k) => Some(k.unwrap_or(0) as usize),
    };
    refuse_unserved(&request)?;
    let constraint = response_format(request.response_format.as_ref())?;
    let tools = tools::setup(
        request.tools.as_deref(),
        request.tool_choice.as_ref(),
        request.parallel_tool_calls,
    )?;
    if constraint.is_some() && tools.is_some() {
        return Err(ValidationError::unsupported(
            "response_format",
            "`response_format` with JSON output cannot be combined with callable `tools` (send `tool_choice: \"none\"` or drop one)",
        ));
    }
    // Both names are checked, though the newer one wins: an invalid value is never silently dropped.
    if let (Some(_), Some(m)) = (request.max_completion_tokens, request.max_tokens) {
        if m < 1 {
            return Err(ValidationError::invalid(
                "max_tokens",
                format!("`max_tokens` must be at least 1, got {m}"),
            ));
        }
    }
    let max_tokens = request.max_completion_tokens.or(request.max_tokens);
    let mut generation = common(common_params!(request, max_tokens: max_tokens))?;
    generation.logprobs = logprobs;
    generation.constraint = constraint.or_else(|| {
        tools
            .as_ref()
            .and_then(ToolSetup::grammar)
            .map(OutputConstraint::Lark)
    });
    let mut messages = Vec::with_capacity(request.messages.len() + 1);
    for (index, m) in request.messages.into_iter().enumerate() {
        messages.push(message(index, m)?);
    }
    let images: usize = messages.iter().map(|m| m.images.len()).sum();
    if images > MAX_IMAGES {
        return Err(ValidationError::invalid(
            "messages",
            format!("a request may carry at most {MAX_IMAGES} images, got {images}"),
        ));
    }
    if let Some(setup) = &tools {
        // The tools go into the system prompt (the first system message, or a new one).
        let instructions = setup.instructions();
        match messages.first_mut() {
            Some(first) if first.role == Role::System => {
                first.content = format!("{}\n\n{instructions}", first.content);
            }
            _ => messages.insert(
                0,
                PromptMessage {
                    role: Role::System,
                    content: instructions,
                    images: Vec::new(),
                },
            ),
        }
    }
    Ok(ValidatedChat {
        generation,
        messages,
        tools,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::completions::CompletionRequest;
    use crate::engine::ModelInfo;
    use crate::validate::completion::completion;
    use crate::validate::model;
    use base64::engine::general_purpose::STANDARD;
    use base64::Engine as _;
    use serde_json::json;

    fn chat_request(extra: serde_json::Value) -> ChatCompletionRequest {
        let mut body =
            serde_json::json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]});
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        serde_json::from_value(body).unwrap()
    }

    fn chat_error(extra: serde_json::Value) -> ValidationError {
        chat(chat_request(extra)).unwrap_err()
    }

    #[test]
    fn out_of_range_values_name_field_bound_and_value() {
        let err = chat_error(serde_json::json!({"temperature": 7.5}));
        assert_eq!(
            err.to_string(),
            "`temperature` must be between 0 and 2, got 7.5"
        );
        assert!(matches!(
            chat_error(serde_json::json!({"top_p": 0})),
            ValidationError::Invalid { param: "top_p", .. }
        ));
        assert!(matches!(
            chat_error(serde_json::json!({"max_tokens": 0})),
            ValidationError::Invalid {
                param: "max_tokens",
                ..
            }
        ));
        assert!(matches!(
            chat_error(serde_json::json!({"presence_penalty": -3})),
            ValidationError::Invalid { .. }
        ));
        assert!(matches!(
            chat_error(serde_json::json!({"stop": ["a","b","c","d","e"]})),
            ValidationError::Invalid { param: "stop", .. }
        ));
        assert!(matches!(
            chat_error(serde_json::json!({"top_k": -2})),
            ValidationError::Invalid { param: "top_k", .. }
        ));
    }

    /// What the OpenAPI document now states is refused, and only that.
    #[test]
    fn values_the_document_excludes_are_refused_by_name() {
        for (extra, param) in [
            (
                json!({"max_completion_tokens": 5, "max_tokens": 0}),
                "max_tokens",
            ),
            (
                json!({"tools": [{"type": "function", "function": {"name": "f", "strict": "yes"}}]}),
                "tools",
            ),
            (
                json!({"tools": [{"type": "function", "function": {"name": "f", "description": 5}}]}),
                "tools",
            ),
            (
                json!({"response_format": {"type": "json_schema", "json_schema": {"name": "n", "strict": 1}}}),
                "response_format",
            ),
            (
                json!({"messages": [{"role": "assistant", "tool_calls": [{"type": "other", "function": {"name": "f"}}]}]}),
                "messages",
            ),
        ] {
            match chat_error(extra.clone()) {
                ValidationError::Invalid { param: p, .. } => assert_eq!(p, param, "{extra}"),
                other => panic!("{extra}: {other:?}"),
            }
        }
        let empty: CompletionRequest =
            serde_json::from_value(json!({"prompt": ["a", ""]})).unwrap();
        assert!(matches!(
            completion(empty),
            Err(ValidationError::Invalid {
                param: "prompt",
                ..
            })
        ));
    }

    #[test]
    fn the_openai_surface_is_parsed_and_its_bounds_checked() {
        let v = chat(chat_request(serde_json::json!({
            "n": 3, "seed": -1, "logprobs": true, "top_logprobs": 2,
            "logit_bias": {"5": -100, " 7": 2.5}
        })))
        .unwrap();
        assert_eq!(v.generation.n, 3);
        assert_eq!(v.generation.seed, Some(u64::MAX));
        assert_eq!(v.generation.logprobs, Some(2));
        assert_eq!(v.generation.logit_bias, vec![(5, -100.0), (7, 2.5)]);
        let json = chat(chat_request(
            serde_json::json!({"response_format": {"type": "json_object"}}),
        ))
        .unwrap();
        assert_eq!(
            json.generation.constraint,
            Some(OutputConstraint::JsonSchema(json!({"type": "object"})))
        );
        for (extra, param) in [
            (serde_json::json!({"n": 0}), "n"),
            (serde_json::json!({"n": 65}), "n"),
            (serde_json::json!({"top_logprobs": 2}), "top_logprobs"),
            (serde_json::json!({"top_logprobs": -1}), "top_logprobs"),
            (
                serde_json::json!({"logprobs": true, "top_logprobs": 21}),
                "top_logprobs",
            ),
            (serde_json::json!({"logit_bias": {"a": 1}}), "logit_bias"),
            (serde_json::json!({"logit_bias": {"1": 101}}), "logit_bias"),
            (
                serde_json::json!({"response_format": {"type": "yaml"}}),
                "response_format",
            ),
            (
                serde_json::json!({"response_format": {"type": "json_schema"}}),
                "response_format",
            ),
            (
                serde_json::json!({"tool_choice": "required"}),
                "tool_choice",
            ),
        ] {
            match chat_error(extra) {
                ValidationError::Invalid { param: p, .. } => assert_eq!(p, param),
                other => panic!("{param}: {other:?}"),
            }
        }
        let info = ModelInfo {
            context_length: 10,
            accepts_images: false,
            chat_template: true,
            max_images: 8,
            vocab_size: 6,
            fill_in_middle: None,
            embedding_dimensions: None,
            max_token_bytes: 0,
        };
        assert!(
            model::check(&v.generation, 0, "m", &info).is_err(),
            "token 7 is not in a 6-token vocabulary"
        );
    }

    #[test]
    fn tools_go_into_the_system_prompt_and_images_are_checked() {
        let v = chat(chat_request(serde_json::json!({
            "tools": [{"type": "function", "function": {"name": "f"}}], "tool_choice": "required"
        })))
        .unwrap();
        assert_eq!(v.messages[0].role, Role::System);
        assert!(v.messages[0].content.contains("<tools>"));
        assert!(matches!(
            v.generation.constraint,
            Some(OutputConstraint::Lark(_))
        ));
        let image = |url: &str| {
            serde_json::json!({"messages": [{"role": "user", "content": [
                {"type": "image_url", "image_url": {"url": url}}]}]})
        };
        let mut png = Vec::new();
        image::RgbImage::new(3, 2)
            .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
            .unwrap();
        let url = format!("data:image/png;base64,{}", STANDARD.encode(&png));
        let ok: ChatCompletionRequest = serde_json::from_value(image(&url)).unwrap();
        let ok = chat(ok).unwrap();
        assert!(ok.has_images());
        assert_eq!(ok.messages[0].images[0].data, png);
        // A 41-byte GIF whose header announces 60000×60000 pixels (a two-colour palette, one 1×1 frame).
        let mut bomb = b"GIF89a".to_vec();
        bomb.extend(60000u16.to_le_bytes());
        bomb.extend(60000u16.to_le_bytes());
        bomb.extend([0x80, 0, 0, 0, 0, 0, 255, 255, 255]);
        bomb.extend([0x2C, 0, 0, 0, 0, 1, 0, 1, 0, 0, 2, 2, 0x44, 0x01, 0, 0x3B]);
        let bomb = format!("data:image/gif;base64,{}", STANDARD.encode(&bomb));
        let error = chat(serde_json::from_value(image(&bomb)).unwrap()).unwrap_err();
        assert!(error.to_string().contains("60000×60000"), "{error}");
        for bad in [
            // Only a PNG signature: no header to read.
            "data:image/png;base64,iVBORw0KGgo=",
            "https://example.com/a.png",
            // A JPEG declared as PNG.
            "data:image/png;base64,/9j/4AAQ",
            "data:text/plain;base64,aGk=",
            "data:image/png;base64,%%%",
        ] {
            let request: ChatCompletionRequest = serde_json::from_value(image(bad)).unwrap();
            assert!(chat(request).is_err(), "{bad}");
        }
    }

    #[test]
    fn messages_accept_strings_parts_and_developer_role() {
        let request: ChatCompletionRequest = serde_json::from_value(serde_json::json!({
            "messages": [
                {"role": "developer", "content": "be brief"},
                {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
                {"role": "assistant", "content": null},
            ],
            "max_completion_tokens": 5, "max_tokens": 9, "user": "ignored", "store": false
        }))
        .unwrap();
        let chat = chat(request).unwrap();
        assert_eq!(chat.messages[0].role, Role::System);
        assert_eq!(chat.messages[1].content, "ab");
        assert_eq!(chat.generation.max_tokens, Some(5));
        assert!(!chat.has_images());
    }

    #[test]
    fn empty_messages_and_bad_roles_are_rejected() {
        let request: ChatCompletionRequest =
            serde_json::from_value(serde_json::json!({"messages": []})).unwrap();
        assert!(matches!(
            chat(request),
            Err(ValidationError::Invalid {
                param: "messages",
                ..
            })
        ));
        let request: ChatCompletionRequest = serde_json::from_value(
            serde_json::json!({"messages": [{"role": "robot", "content": "x"}]}),
        )
        .unwrap();
        assert!(chat(request).unwrap_err().to_string().contains("`robot`"));
    }

    #[test]
    fn include_usage_only_counts_when_streaming() {
        let v = chat(chat_request(
            serde_json::json!({"stream_options": {"include_usage": true}}),
        ))
        .unwrap();
        assert!(!v.generation.include_usage);
        let v = chat(chat_request(
            serde_json::json!({"stream": true, "stream_options": {"include_usage": true}}),
        ))
        .unwrap();
        assert!(v.generation.include_usage);
    }
}
