//! A legacy completions request → a [`ValidatedCompletion`]: its prompts, `echo`, `logprobs`, `suffix`,
//! `best_of` and the shared parameters, with the 16-token default.

use super::common::{common, common_params};
use super::limits::{
    DEFAULT_COMPLETION_MAX_TOKENS, MAX_COMPLETION_LOGPROBS, MAX_PROMPTS_PER_REQUEST,
    MAX_SEQUENCES_PER_REQUEST,
};
use crate::api::completions::{CompletionRequest, PromptInput};
use crate::error::ValidationError;
use crate::validate::generation::ValidatedGeneration;

#[derive(Debug, Clone, PartialEq)]
pub struct ValidatedCompletion {
    pub generation: ValidatedGeneration,
    pub prompts: Vec<String>,
    pub echo: bool,
    /// Text after the insertion point (fill in the middle).
    pub suffix: Option<String>,
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
    if let Some(index) = prompts.iter().position(String::is_empty) {
        // An empty prompt has no token to continue from (the engine refuses it too).
        return Err(ValidationError::invalid(
            "prompt",
            format!("`prompt` must not be empty (prompt {index} is)"),
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
    let echo = request.echo.unwrap_or(false);
    let logprobs = match request.logprobs {
        None => None,
        Some(k) if !(0..=MAX_COMPLETION_LOGPROBS).contains(&k) => {
            return Err(ValidationError::invalid(
                "logprobs",
                format!("`logprobs` must be between 0 and {MAX_COMPLETION_LOGPROBS}, got {k}"),
            ))
        }
        Some(_) if echo => {
            return Err(ValidationError::unsupported(
                "logprobs",
                "`logprobs` with `echo` would need the prompt's log probabilities, which this server does not compute; drop one of them",
            ))
        }
        Some(k) => Some(k as usize),
    };
    let suffix = request.suffix.filter(|s| !s.is_empty());
    let stream = request.stream.unwrap_or(false);
    let mut generation = common(common_params!(request, max_tokens: request.max_tokens))?;
    let best_of = match request.best_of {
        None => generation.n,
        Some(b) if b < generation.n as i64 => {
            return Err(ValidationError::invalid(
                "best_of",
                format!("`best_of` must be at least `n` ({}), got {b}", generation.n),
            ))
        }
        Some(b) if b as usize > MAX_SEQUENCES_PER_REQUEST => {
            return Err(ValidationError::invalid(
                "best_of",
                format!("`best_of` must be at most {MAX_SEQUENCES_PER_REQUEST}, got {b}"),
            ))
        }
        Some(b) if stream && b as usize > generation.n => {
            return Err(ValidationError::invalid(
                "best_of",
                "`best_of` cannot be streamed: the best choices are known only at the end",
            ))
        }
        Some(b) => b as usize,
    };
    if prompts.len() * best_of > MAX_SEQUENCES_PER_REQUEST {
        return Err(ValidationError::invalid(
            if best_of > generation.n { "best_of" } else { "n" },
            format!(
                "{} prompts × {best_of} choices is more than {MAX_SEQUENCES_PER_REQUEST} sequences per request",
                prompts.len()
            ),
        ));
    }
    generation.generated = best_of;
    generation.logprobs = logprobs;
    generation.max_tokens = Some(
        generation
            .max_tokens
            .unwrap_or(DEFAULT_COMPLETION_MAX_TOKENS),
    );
    Ok(ValidatedCompletion {
        generation,
        prompts,
        echo,
        suffix,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn completions_default_to_16_tokens_and_accept_prompt_lists() {
        let request: CompletionRequest =
            serde_json::from_value(serde_json::json!({"prompt": ["a", "b"], "echo": true}))
                .unwrap();
        let v = completion(request).unwrap();
        assert_eq!(v.generation.max_tokens, Some(DEFAULT_COMPLETION_MAX_TOKENS));
        assert_eq!(v.prompts, vec!["a", "b"]);
        assert!(v.echo);
        let parse = |body: serde_json::Value| -> Result<ValidatedCompletion, ValidationError> {
            completion(serde_json::from_value(body).unwrap())
        };
        let best = parse(serde_json::json!({"prompt": "a", "best_of": 3, "n": 2})).unwrap();
        assert_eq!((best.generation.n, best.generation.generated), (2, 3));
        for body in [
            serde_json::json!({"prompt": "a", "best_of": 1, "n": 2}),
            serde_json::json!({"prompt": "a", "best_of": 2, "stream": true}),
            serde_json::json!({"prompt": "a", "logprobs": 6}),
            serde_json::json!({"prompt": [], "n": 2}),
        ] {
            assert!(parse(body.clone()).is_err(), "{body}");
        }
        assert!(matches!(
            parse(serde_json::json!({"prompt": "a", "logprobs": 1, "echo": true})),
            Err(ValidationError::Unsupported {
                param: "logprobs",
                ..
            })
        ));
        let many: Vec<String> = (0..33).map(|i| i.to_string()).collect();
        assert!(parse(serde_json::json!({"prompt": many, "n": 2})).is_err());
    }
}
