//! Wire requests → validated requests: defaults applied, bounds checked, unsupported features refused.
//!
//! Messages name the field, the bound and the value, so that a client can fix its request from the text.

use crate::api::chat::{ChatCompletionRequest, ChatMessage, MessageContent};
use crate::api::common::StopSequences;
use crate::api::completions::{CompletionRequest, PromptInput};
use crate::engine::{PromptMessage, Role, Sampling};
use crate::error::ValidationError;

/// OpenAI allows at most 4 stop sequences.
pub const MAX_STOP_SEQUENCES: usize = 4;
/// Legacy completions generate 16 tokens when `max_tokens` is absent (OpenAI's default).
pub const DEFAULT_COMPLETION_MAX_TOKENS: usize = 16;
/// Prompts one completions request may carry (each becomes its own choice).
pub const MAX_PROMPTS_PER_REQUEST: usize = 64;

/// What every generation request shares once validated.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidatedGeneration {
    /// The requested model id; `None` means the served model.
    pub model: Option<String>,
    pub sampling: Sampling,
    /// What the client asked for; `None` means "as much as the context allows".
    pub max_tokens: Option<usize>,
    pub stop: Vec<String>,
    pub stream: bool,
    pub include_usage: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ValidatedChat {
    pub generation: ValidatedGeneration,
    pub messages: Vec<PromptMessage>,
    /// Whether any message carried an `image_url` part (served only by vision models).
    pub has_images: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ValidatedCompletion {
    pub generation: ValidatedGeneration,
    pub prompts: Vec<String>,
    pub echo: bool,
}

fn range_f64(
    param: &'static str,
    value: Option<f64>,
    min: f64,
    max: f64,
) -> Result<Option<f64>, ValidationError> {
    match value {
        Some(v) if !(min..=max).contains(&v) => Err(ValidationError::invalid(
            param,
            format!("`{param}` must be between {min} and {max}, got {v}"),
        )),
        other => Ok(other),
    }
}

/// The parameters chat and completions share, in one place.
struct CommonParams {
    model: Option<String>,
    max_tokens: Option<i64>,
    temperature: Option<f64>,
    top_p: Option<f64>,
    top_k: Option<i64>,
    min_p: Option<f64>,
    presence_penalty: Option<f64>,
    frequency_penalty: Option<f64>,
    repetition_penalty: Option<f64>,
    stop: Option<StopSequences>,
    stream: Option<bool>,
    include_usage: Option<bool>,
    n: Option<i64>,
    seed: Option<i64>,
    logit_bias_len: usize,
}

fn common(p: CommonParams) -> Result<ValidatedGeneration, ValidationError> {
    let temperature = range_f64("temperature", p.temperature, 0.0, 2.0)?.unwrap_or(1.0);
    let top_p = match p.top_p {
        Some(v) if !(v > 0.0 && v <= 1.0) => {
            return Err(ValidationError::invalid(
                "top_p",
                format!("`top_p` must be in (0, 1], got {v}"),
            ))
        }
        other => other,
    };
    let top_k = match p.top_k {
        None | Some(0) | Some(-1) => None,
        Some(k) if k > 0 => Some(k as usize),
        Some(k) => {
            return Err(ValidationError::invalid(
                "top_k",
                format!("`top_k` must be a positive integer, or 0 or -1 to disable it, got {k}"),
            ))
        }
    };
    let min_p = range_f64("min_p", p.min_p, 0.0, 1.0)?;
    let presence_penalty = range_f64("presence_penalty", p.presence_penalty, -2.0, 2.0)?;
    let frequency_penalty = range_f64("frequency_penalty", p.frequency_penalty, -2.0, 2.0)?;
    let repetition_penalty = match p.repetition_penalty {
        Some(v) if !(v > 0.0 && v <= 2.0) => {
            return Err(ValidationError::invalid(
                "repetition_penalty",
                format!("`repetition_penalty` must be in (0, 2], got {v}"),
            ))
        }
        other => other,
    };
    let max_tokens = match p.max_tokens {
        Some(m) if m < 1 => {
            return Err(ValidationError::invalid(
                "max_tokens",
                format!("`max_tokens` must be at least 1, got {m}"),
            ))
        }
        Some(m) => Some(usize::try_from(m).unwrap_or(usize::MAX)),
        None => None,
    };
    let stop = p.stop.map(StopSequences::into_vec).unwrap_or_default();
    if stop.len() > MAX_STOP_SEQUENCES {
        return Err(ValidationError::invalid(
            "stop",
            format!(
                "`stop` takes at most {MAX_STOP_SEQUENCES} sequences, got {}",
                stop.len()
            ),
        ));
    }
    if stop.iter().any(String::is_empty) {
        return Err(ValidationError::invalid(
            "stop",
            "`stop` sequences must not be empty",
        ));
    }
    match p.n {
        None | Some(1) => {}
        Some(n) if n < 1 => {
            return Err(ValidationError::invalid(
                "n",
                format!("`n` must be at least 1, got {n}"),
            ))
        }
        Some(n) => {
            return Err(ValidationError::unsupported(
                "n",
                format!("`n` > 1 is not supported by this server yet, got {n}"),
            ))
        }
    }
    if p.seed.is_some() && temperature > 0.0 {
        return Err(ValidationError::unsupported(
            "seed",
            "`seed` is only supported with `temperature: 0` so far (seeded sampling is not served yet)",
        ));
    }
    if p.logit_bias_len > 0 {
        return Err(ValidationError::unsupported(
            "logit_bias",
            "`logit_bias` is not supported by this server yet",
        ));
    }
    let stream = p.stream.unwrap_or(false);
    Ok(ValidatedGeneration {
        model: p.model,
        sampling: Sampling {
            temperature,
            top_p,
            top_k,
            min_p,
            presence_penalty: presence_penalty.map(|v| v as f32),
            frequency_penalty: frequency_penalty.map(|v| v as f32),
            repetition_penalty: repetition_penalty.map(|v| v as f32),
        },
        max_tokens,
        stop,
        stream,
        // `stream_options` with `stream: false` is accepted and ignored, as OpenAI does.
        include_usage: stream && p.include_usage.unwrap_or(false),
    })
}

fn message(index: usize, message: ChatMessage) -> Result<(PromptMessage, bool), ValidationError> {
    let role = match message.role.as_str() {
        "system" | "developer" => Role::System,
        "user" => Role::User,
        "assistant" => Role::Assistant,
        "tool" => Role::Tool,
        other => {
            return Err(ValidationError::invalid(
                "messages",
                format!(
                    "`messages[{index}].role` must be one of system, developer, user, assistant, tool; got `{other}`"
                ),
            ))
        }
    };
    let mut has_images = false;
    let content = match message.content {
        Some(MessageContent::Text(text)) => text,
        Some(MessageContent::Parts(parts)) => {
            let mut text = String::new();
            for (part_index, part) in parts.into_iter().enumerate() {
                match (part.kind.as_str(), part.text) {
                    ("text", Some(t)) => text.push_str(&t),
                    ("text", None) => {
                        return Err(ValidationError::invalid(
                            "messages",
                            format!("`messages[{index}].content[{part_index}]` has type `text` but no `text`"),
                        ))
                    }
                    ("image_url", _) => has_images = true,
                    (other, _) => {
                        return Err(ValidationError::invalid(
                            "messages",
                            format!(
                                "`messages[{index}].content[{part_index}].type` must be `text` or `image_url`, got `{other}`"
                            ),
                        ))
                    }
                }
            }
            text
        }
        // An assistant turn that only carried tool calls has no content.
        None if role == Role::Assistant => String::new(),
        None => {
            return Err(ValidationError::invalid(
                "messages",
                format!(
                    "`messages[{index}].content` is required for role `{}`",
                    message.role
                ),
            ))
        }
    };
    Ok((PromptMessage { role, content }, has_images))
}

pub fn chat(request: ChatCompletionRequest) -> Result<ValidatedChat, ValidationError> {
    if request.messages.is_empty() {
        return Err(ValidationError::invalid(
            "messages",
            "`messages` must contain at least one message",
        ));
    }
    if request.logprobs == Some(true) {
        return Err(ValidationError::unsupported(
            "logprobs",
            "`logprobs` is not supported by this server yet",
        ));
    }
    if let Some(format) = &request.response_format {
        let kind = format.get("type").and_then(|t| t.as_str());
        if kind != Some("text") {
            return Err(ValidationError::unsupported(
                "response_format",
                "only `response_format: {\"type\": \"text\"}` is supported by this server so far",
            ));
        }
    }
    let tools_requested = request.tools.as_ref().is_some_and(|t| !t.is_empty());
    let tool_choice_none = request.tool_choice.as_ref().and_then(|c| c.as_str()) == Some("none");
    if tools_requested && !tool_choice_none {
        return Err(ValidationError::unsupported(
            "tools",
            "tool calling is not supported by this server yet (send `tool_choice: \"none\"` to ignore the tools)",
        ));
    }
    let generation = common(CommonParams {
        model: request.model,
        max_tokens: request.max_completion_tokens.or(request.max_tokens),
        temperature: request.temperature,
        top_p: request.top_p,
        top_k: request.top_k,
        min_p: request.min_p,
        presence_penalty: request.presence_penalty,
        frequency_penalty: request.frequency_penalty,
        repetition_penalty: request.repetition_penalty,
        stop: request.stop,
        stream: request.stream,
        include_usage: request.stream_options.and_then(|o| o.include_usage),
        n: request.n,
        seed: request.seed,
        logit_bias_len: request.logit_bias.map_or(0, |b| b.len()),
    })?;
    let mut messages = Vec::with_capacity(request.messages.len());
    let mut has_images = false;
    for (index, m) in request.messages.into_iter().enumerate() {
        let (m, images) = message(index, m)?;
        has_images |= images;
        messages.push(m);
    }
    Ok(ValidatedChat {
        generation,
        messages,
        has_images,
    })
}

pub fn completion(request: CompletionRequest) -> Result<ValidatedCompletion, ValidationError> {
    let prompts = match request.prompt {
        PromptInput::One(prompt) => vec![prompt],
        PromptInput::Many(prompts) => prompts,
    };
    if prompts.is_empty() {
        return Err(ValidationError::invalid(
            "prompt",
            "`prompt` must not be an empty list",
        ));
    }
    if prompts.len() > MAX_PROMPTS_PER_REQUEST {
        return Err(ValidationError::invalid(
            "prompt",
            format!(
                "`prompt` takes at most {MAX_PROMPTS_PER_REQUEST} prompts, got {}",
                prompts.len()
            ),
        ));
    }
    if request.logprobs.is_some() {
        return Err(ValidationError::unsupported(
            "logprobs",
            "`logprobs` is not supported by this server yet",
        ));
    }
    if request.suffix.as_ref().is_some_and(|s| !s.is_empty()) {
        return Err(ValidationError::unsupported(
            "suffix",
            "`suffix` is not supported by this server yet",
        ));
    }
    match request.best_of {
        None | Some(1) => {}
        Some(b) if Some(b) == request.n => {}
        Some(b) => {
            return Err(ValidationError::unsupported(
                "best_of",
                format!("`best_of` > 1 is not supported by this server yet, got {b}"),
            ))
        }
    }
    let mut generation = common(CommonParams {
        model: request.model,
        max_tokens: request.max_tokens,
        temperature: request.temperature,
        top_p: request.top_p,
        top_k: request.top_k,
        min_p: request.min_p,
        presence_penalty: request.presence_penalty,
        frequency_penalty: request.frequency_penalty,
        repetition_penalty: request.repetition_penalty,
        stop: request.stop,
        stream: request.stream,
        include_usage: request.stream_options.and_then(|o| o.include_usage),
        n: request.n,
        seed: request.seed,
        logit_bias_len: request.logit_bias.map_or(0, |b| b.len()),
    })?;
    generation.max_tokens = Some(
        generation
            .max_tokens
            .unwrap_or(DEFAULT_COMPLETION_MAX_TOKENS),
    );
    Ok(ValidatedCompletion {
        generation,
        prompts,
        echo: request.echo.unwrap_or(false),
    })
}

/// The completion budget for a prompt: the request's `max_tokens` clamped to what the context leaves
/// (clients such as Open-AutoGLM send 3000 whatever the model), or 400 when the prompt leaves nothing.
pub fn fit_to_context(
    prompt_tokens: usize,
    requested: Option<usize>,
    context_length: usize,
) -> Result<usize, ValidationError> {
    let left = context_length.saturating_sub(prompt_tokens);
    if left == 0 {
        return Err(ValidationError::ContextLengthExceeded {
            limit: context_length,
            prompt_tokens,
        });
    }
    Ok(requested.map_or(left, |r| r.min(left)))
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn unsupported_features_are_refused_not_ignored() {
        for (extra, param) in [
            (serde_json::json!({"n": 2}), "n"),
            (serde_json::json!({"logprobs": true}), "logprobs"),
            (serde_json::json!({"seed": 1, "temperature": 0.7}), "seed"),
            (serde_json::json!({"logit_bias": {"1": 5}}), "logit_bias"),
            (
                serde_json::json!({"response_format": {"type": "json_object"}}),
                "response_format",
            ),
            (
                serde_json::json!({"tools": [{"type": "function", "function": {"name": "f"}}]}),
                "tools",
            ),
        ] {
            match chat_error(extra) {
                ValidationError::Unsupported { param: p, .. } => assert_eq!(p, param),
                other => panic!("{param}: {other:?}"),
            }
        }
        assert!(chat(chat_request(
            serde_json::json!({"seed": 1, "temperature": 0})
        ))
        .is_ok());
        assert!(chat(chat_request(
            serde_json::json!({"response_format": {"type": "text"}})
        ))
        .is_ok());
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
        assert!(!chat.has_images);
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

    #[test]
    fn max_tokens_is_clamped_to_the_context_and_a_full_prompt_is_refused() {
        assert_eq!(fit_to_context(100, Some(3000), 1000), Ok(900));
        assert_eq!(fit_to_context(100, Some(10), 1000), Ok(10));
        assert_eq!(fit_to_context(100, None, 1000), Ok(900));
        assert_eq!(
            fit_to_context(1000, Some(1), 1000),
            Err(ValidationError::ContextLengthExceeded {
                limit: 1000,
                prompt_tokens: 1000
            })
        );
    }

    #[test]
    fn completions_default_to_16_tokens_and_accept_prompt_lists() {
        let request: CompletionRequest =
            serde_json::from_value(serde_json::json!({"prompt": ["a", "b"], "echo": true}))
                .unwrap();
        let v = completion(request).unwrap();
        assert_eq!(v.generation.max_tokens, Some(DEFAULT_COMPLETION_MAX_TOKENS));
        assert_eq!(v.prompts, vec!["a", "b"]);
        assert!(v.echo);
        let request: CompletionRequest =
            serde_json::from_value(serde_json::json!({"prompt": "a", "best_of": 3})).unwrap();
        assert!(matches!(
            completion(request),
            Err(ValidationError::Unsupported {
                param: "best_of",
                ..
            })
        ));
    }
}
