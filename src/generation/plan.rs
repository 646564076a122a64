//! Planning and submission: everything that can still be refused with a 4xx is decided before a request
//! waits for a slot (bias ids, the grammar compiles, every prompt counted, `max_tokens` fitted, n × seed);
//! then it waits for admission and its choices go to the engine.

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::{FutureExt, Stream, StreamExt};

use crate::api::common::Usage;
use crate::engine::{EngineError, GenerationRequest, OutputConstraint, Prompt};
use crate::error::{ApiError, ValidationError};
use crate::generation::admission::{AdmissionPermit, Admitted};
use crate::generation::choices::ChoiceSource;
use crate::generation::output::{
    self, CollectedChoice, GenerationEvent, PromptCount, Started, StreamSettings,
};
use crate::generation::request::ValidatedGeneration;
use crate::models::ServedModel;
use crate::request_log::RequestLog;

/// One choice, counted and fitted to the context, not yet submitted.
struct PlannedChoice {
    prompt: Prompt,
    max_tokens: usize,
    seed: Option<u64>,
}

/// A request's choices, counted and fitted to the context, not yet submitted: everything that can still
/// be refused with a 4xx is decided before the request waits for a slot.
pub struct PlannedGeneration {
    model: Arc<ServedModel>,
    generation: ValidatedGeneration,
    choices: Vec<PlannedChoice>,
    log: RequestLog,
    prompt_tokens: PromptCount,
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

    /// Submits every choice under an admission permit, which then also covers the engine's hold on each
    /// sequence: the slot is free only once the engine has really let go of it.
    async fn submit(self, mut permit: AdmissionPermit) -> Result<Started, ApiError> {
        self.log.admitted();
        let mut sources = Vec::with_capacity(self.choices.len());
        // `best_of` ranks its candidates by their total log probability, so they need logprobs.
        let logprobs = match self.generation.logprobs {
            None if self.generation.generated > self.generation.n => Some(0),
            other => other,
        };
        for (index, choice) in self.choices.into_iter().enumerate() {
            let submitted = self
                .model
                .engine
                .generate(GenerationRequest {
                    seed: choice.seed,
                    logit_bias: self.generation.logit_bias.clone(),
                    logprobs,
                    constraint: self.generation.constraint.clone(),
                    ..GenerationRequest::new(
                        choice.prompt,
                        self.generation.sampling.clone(),
                        choice.max_tokens,
                        self.generation.stop.clone(),
                    )
                })
                .await?;
            permit.also_hold(submitted.held);
            sources.push(ChoiceSource {
                index,
                events: submitted.events,
                stop: self.generation.stop.clone(),
            });
        }
        Ok(Started {
            permit,
            sources,
            model: self.model,
        })
    }

    /// Waits for a slot, submits, and runs every choice to its end: for answers that are sent whole.
    /// Returns the choices in index order and the usage. Dropping the future cancels the sequences.
    pub async fn collect(self) -> Result<(Vec<CollectedChoice>, Usage), ApiError> {
        let (prompt_tokens, log) = (self.prompt_tokens, self.log.clone());
        let permit = self.model.admission.admit(self.sequences()).await?;
        let param = self.generation.constraint.as_ref().map(constraint_param);
        let started = self.submit(permit).await?;
        output::collect(started, prompt_tokens, &log)
            .await
            .map_err(|error| name_constraint(error, param))
    }

    /// For streams: the events a writer frames. A request refused at once (queue full, draining) is an
    /// error here, before any response has begun; see [`Self::start_streaming`] for one that waits.
    pub async fn stream(
        self,
        keep_alive: Duration,
    ) -> Result<impl Stream<Item = GenerationEvent> + Send + 'static, ApiError> {
        let settings = StreamSettings {
            prompt_tokens: self.prompt_tokens,
            keep_alive,
            log: self.log.clone(),
        };
        let param = self.generation.constraint.as_ref().map(constraint_param);
        let start = self.start_streaming(keep_alive).await?;
        Ok(
            output::events(start, settings).map(move |event| match event {
                GenerationEvent::Failed(error) => {
                    GenerationEvent::Failed(name_constraint(error, param))
                }
                other => other,
            }),
        )
    }

    /// For streams: a request admitted within `headers_within` is submitted now, so that a refusal is
    /// still a plain 4xx/5xx. One that has to wait longer gets its 200 and waits inside the SSE body, with
    /// keep-alive comments, so that proxies do not cut a queued stream; a refusal then arrives as an error
    /// event before any token.
    async fn start_streaming(
        self,
        headers_within: Duration,
    ) -> Result<BoxFuture<'static, Result<Started, ApiError>>, ApiError> {
        let admission = self.model.admission.clone();
        match admission
            .admit_or_defer(self.sequences(), headers_within)
            .await?
        {
            Admitted::Now(permit) => {
                let started = self.submit(permit).await?;
                Ok(futures::future::ready(Ok(started)).boxed())
            }
            Admitted::Queued(waiting) => Ok(async move {
                let permit = waiting.await?;
                self.submit(permit).await
            }
            .boxed()),
        }
    }
}

/// The request field a constraint came from.
fn constraint_param(constraint: &OutputConstraint) -> &'static str {
    match constraint {
        OutputConstraint::JsonSchema(_) => "response_format",
        OutputConstraint::Lark(_) => "tools",
    }
}

/// A constraint the engine's parser gave up on while decoding (a grammar that grows past its limits
/// only after some tokens) is the request's own fault: a 400 naming the field it came from.
fn name_constraint(error: ApiError, param: Option<&'static str>) -> ApiError {
    match (error, param) {
        (ApiError::Engine(EngineError::ConstraintFailed(message)), Some(param)) => {
            ValidationError::invalid(
                param,
                format!("the constraint is too large for constrained decoding: {message}"),
            )
            .into()
        }
        (error, _) => error,
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
