//! Planning and submission: everything that can still be refused with a 4xx is decided before a request
//! waits for a slot (bias ids, the grammar compiles, every prompt counted, `max_tokens` fitted, n × seed);
//! `generation::run` then waits for admission and sends its choices to the engine.

use std::sync::Arc;

use crate::engine::{EngineError, OutputConstraint, Prompt};
use crate::error::{ApiError, ValidationError};
use crate::generation::output::PromptCount;
use crate::models::ServedModel;
use crate::request_log::RequestLog;
use crate::validate::generation::ValidatedGeneration;

/// One choice, counted and fitted to the context, not yet submitted.
pub(super) struct PlannedChoice {
    pub(super) prompt: Prompt,
    pub(super) max_tokens: usize,
    pub(super) seed: Option<u64>,
}

/// A request's choices, counted and fitted to the context, not yet submitted: everything that can still
/// be refused with a 4xx is decided before the request waits for a slot.
pub struct PlannedGeneration {
    pub(super) model: Arc<ServedModel>,
    pub(super) generation: ValidatedGeneration,
    pub(super) choices: Vec<PlannedChoice>,
    pub(super) log: RequestLog,
    pub(super) prompt_tokens: PromptCount,
}

/// Counts every prompt with the engine's own template and tokenizer and fits `max_tokens` to the context.
/// A request the gate would refuse anyway (queue full, draining) is refused first: counting runs on the
/// engine thread, which an overloaded server should not spend on requests it turns away.
pub async fn plan(
    model: Arc<ServedModel>,
    generation: ValidatedGeneration,
    prompts: Vec<Prompt>,
    log: &RequestLog,
) -> Result<PlannedGeneration, ApiError> {
    // A prompt that cannot fit however it tokenizes is refused before any work on it.
    let info = model.engine.info();
    for prompt in &prompts {
        let floor = prompt_token_floor(std::slice::from_ref(prompt), info);
        if floor >= info.context_length {
            return Err(ValidationError::PromptTooLong {
                limit: info.context_length,
                at_least: floor,
            }
            .into());
        }
    }
    if let Some(constraint) = &generation.constraint {
        let param = constraint_param(constraint);
        // Compiling a grammar is CPU work that grows with the schema: off the HTTP worker.
        let (engine, constraint) = (model.engine.clone(), constraint.clone());
        tokio::task::spawn_blocking(move || engine.check_constraint(&constraint))
            .await
            .map_err(|e| EngineError::Internal(format!("grammar check failed: {e}")))?
            .map_err(|e| ValidationError::invalid(param, e.to_string()))?;
    }
    model.admission.refuse_early()?;
    let single_prompt = prompts.len() == 1;
    let counting = std::time::Instant::now();
    let mut choices = Vec::with_capacity(prompts.len() * generation.generated);
    let mut prompt_tokens = 0;
    for prompt in prompts {
        let tokens = model.engine.count_prompt_tokens(&prompt).await?;
        let max_tokens = fit_to_context(
            tokens,
            generation.max_tokens,
            model.engine.info().context_length,
        )?;
        // OpenAI counts the prompt once per prompt, however many choices it gets.
        prompt_tokens += tokens;
        for choice in 0..generation.generated {
            // Choice `i` of a seeded request samples with `seed + i`: reproducible, and not all alike.
            let seed = generation.seed.map(|s| s.wrapping_add(choice as u64));
            choices.push(PlannedChoice {
                prompt: prompt.clone(),
                max_tokens,
                seed,
            });
        }
    }
    tracing::debug!(
        prompt_tokens,
        elapsed_ms = counting.elapsed().as_millis() as u64,
        "prompts counted"
    );
    log.set_prompt_tokens(prompt_tokens);
    Ok(PlannedGeneration {
        model,
        generation,
        choices,
        log: log.clone(),
        prompt_tokens: PromptCount {
            counted: prompt_tokens,
            single_prompt,
        },
    })
}

impl PlannedGeneration {
    /// Sequences this request runs at once.
    pub fn sequences(&self) -> usize {
        self.choices.len()
    }

    /// Prompt tokens as counted (each prompt once).
    pub fn prompt_tokens(&self) -> usize {
        self.prompt_tokens.counted
    }

    /// The most tokens its choices may generate together.
    pub fn completion_budget(&self) -> usize {
        self.choices.iter().map(|c| c.max_tokens).sum()
    }

    /// Fits the choices' `max_tokens` into `budget` tokens together (a key's token limit), evenly;
    /// `false` when the budget cannot give every choice one token.
    pub fn fit_completion_budget(&mut self, budget: usize) -> bool {
        if self.completion_budget() <= budget {
            return true;
        }
        let each = budget / self.choices.len().max(1);
        if each == 0 {
            return false;
        }
        for choice in &mut self.choices {
            choice.max_tokens = choice.max_tokens.min(each);
        }
        true
    }
}

/// The request field a constraint came from.
pub(super) fn constraint_param(constraint: &OutputConstraint) -> &'static str {
    match constraint {
        OutputConstraint::JsonSchema(_) => "response_format",
        OutputConstraint::Lark(_) => "tools",
    }
}

/// How many-fold normalization can shrink text before it is tokenized (NFKC turns a 3-byte full-width
/// letter into 1 byte): the floor below allows for it.
const NORMALIZATION_SHRINK: usize = 4;

/// A floor under the tokens `prompts` take together, from their bytes alone (no tokenizer, no
/// template): one token stands for at most `max_token_bytes` bytes of text. 0 when the model does not
/// say. Cheap enough to run before anything else, so that a megabyte prompt over a key's token limit
/// or the context is refused in microseconds.
pub fn prompt_token_floor(prompts: &[Prompt], info: &crate::engine::ModelInfo) -> usize {
    if info.max_token_bytes == 0 {
        return 0;
    }
    let per_token = info.max_token_bytes * NORMALIZATION_SHRINK;
    prompts
        .iter()
        .map(|prompt| {
            let bytes = match prompt {
                Prompt::Text(text) => text.len(),
                Prompt::Chat(messages) => messages.iter().map(|m| m.content.len()).sum(),
            };
            bytes / per_token
        })
        .sum()
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
}
