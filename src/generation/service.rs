//! The one entrance for generation, in the manner of TGI's `Infer`: every front (the HTTP routes, the
//! Responses API, gRPC) hands it a wire request and its caller, once, and gets back a [`Prepared`]
//! answer to [`Prepared::stream`] or [`Prepared::collect`]; a front only translates what comes out.
//!
//! Inside, once each and in this order: the model lookup (a weighted alias picks once), remote images
//! (for a model that takes images), the request's own checks, then the lookup's error, the caller's
//! right to the model, the checks against the model, planning, and the key's token budget. The budget is
//! settled as the answer's last step ([`crate::gateway::limiter::Settlement`]). The key's request and
//! concurrency admission is not here: the fronts take it before they read the body.

use std::time::Duration;

use futures::Stream;

use crate::api::embeddings::EmbeddingRequest;
use crate::engine::Prompt;
use crate::error::ApiError;
use crate::gateway::limiter::{KeyBudget, Settlement};
use crate::gateway::quota::{QuotaError, RateHeaders};
use crate::gateway::Principal;
use crate::generation::embedding;
use crate::generation::inputs::{ForModel, WireRequest};
use crate::generation::output::{self, Collected, GenerationEvent};
use crate::generation::plan::{self, PlannedGeneration};
use crate::generation::run::Answering;
use crate::models::{ModelRegistry, Routed};
use crate::remote_images::RemoteImages;
use crate::request_log::RequestLog;
use crate::validate::{self, ValidatedGeneration};

/// Built once at start-up; every front holds it through the application state.
pub struct GenerationService {
    models: ModelRegistry,
    /// The image fetcher, when `--allow-remote-images` is set.
    remote_images: Option<RemoteImages>,
    /// How long a stream waits for its slot before its headers go out, and the keep-alive interval.
    keep_alive: Duration,
}

/// Who asks: the caller, and its hold on its key's limits (taken before the body was read).
pub struct Caller {
    pub principal: Principal,
    pub budget: KeyBudget,
}

/// What an answer's formatter needs before the first event: the model, the validated generation (`n`,
/// logprobs, `stream`…), the request kind's shape, and the `x-ratelimit-*` headers.
pub struct AnswerHead<S> {
    /// What the client asked for and the version that answers.
    pub model: Routed,
    pub generation: ValidatedGeneration,
    pub shape: S,
    pub rate_headers: RateHeaders,
    /// Unix seconds when the request was prepared: the answer's `created`, however long it then waits
    /// and generates.
    pub created: u64,
}

/// A request ready to wait for its slot: everything that can still be refused with a 4xx was decided.
pub struct Prepared<S> {
    pub head: AnswerHead<S>,
    planned: PlannedGeneration,
    settlement: Settlement,
    keep_alive: Duration,
}

/// An embeddings request answered: the vectors as the engine gave them, with what the wire needs.
pub struct Embedded {
    pub model: Routed,
    pub vectors: Vec<Vec<f32>>,
    /// The length the vectors are cut to (and renormalized), when asked.
    pub dimensions: Option<usize>,
    /// `encoding_format: base64`.
    pub base64: bool,
    /// Tokens of every input, summed.
    pub prompt_tokens: usize,
    pub rate_headers: RateHeaders,
}

impl GenerationService {
    pub fn new(
        models: ModelRegistry,
        remote_images: Option<RemoteImages>,
        keep_alive: Duration,
    ) -> Self {
        GenerationService {
            models,
            remote_images,
            keep_alive,
        }
    }

    /// The request through every check, planned, its tokens held against the caller's key.
    pub async fn prepare<R: WireRequest>(
        &self,
        mut request: R,
        caller: Caller,
        log: &RequestLog,
    ) -> Result<Prepared<R::Shape>, ApiError> {
        let Caller { principal, budget } = caller;
        let resolved = self.resolve(&principal, request.model(), request.caller_identity());
        // A model the key may not use is refused before anything is done for the request: no fetch on
        // its behalf, and no answer that tells what that model accepts.
        if let Ok(model) = &resolved {
            principal.check_model(&model.requested)?;
        }
        if let (Some(fetcher), Ok(model), Some(chat)) =
            (&self.remote_images, &resolved, request.with_remote_images())
        {
            // Fetched only for a model that takes images: any other refuses them below without a fetch.
            if model.engine.info().accepts_images {
                fetcher.inline(chat).await?;
            }
        }
        let valid = request.validate()?;
        // An unknown or loading model is reported after the request's own faults.
        let model = resolved?;
        log.set_model(&model.requested, &model.name, &model.version);
        let ForModel {
            generation,
            prompts,
            shape,
        } = R::for_model(valid, &model)?;
        refuse_over_token_limit(&budget, &prompts, &model)?;
        let mut planned =
            plan::plan(model.served.clone(), generation.clone(), prompts, log).await?;
        let rate_headers = hold_tokens(&budget, &mut planned).await?;
        let settlement = Settlement::new(budget, planned.prompt_tokens());
        Ok(Prepared {
            head: AnswerHead {
                model,
                generation,
                shape,
                rate_headers,
                created: crate::ids::unix_now(),
            },
            planned,
            settlement,
            keep_alive: self.keep_alive,
        })
    }

    /// An embeddings request, checked against its model, its tokens counted and held, its vectors.
    pub async fn embed(
        &self,
        request: EmbeddingRequest,
        caller: Caller,
        log: &RequestLog,
    ) -> Result<Embedded, ApiError> {
        let Caller { principal, budget } = caller;
        let named =
            crate::api::common::caller_identity(None, request.user.as_deref()).map(str::to_string);
        let request = validate::embedding::embedding(request)?;
        let model = self.resolve(&principal, request.model.as_deref(), named.as_deref())?;
        principal.check_model(&model.requested)?;
        log.set_model(&model.requested, &model.name, &model.version);
        validate::embedding::check_model(&request, &model.name, model.engine.info())?;
        let counts = embedding::count_tokens(&model, &request.inputs).await?;
        let prompt_tokens = counts.into_iter().sum();
        log.set_prompt_tokens(prompt_tokens);
        log.set_completion_tokens(0);
        let rate_headers = budget.reserve_tokens(prompt_tokens as u64, 0).await?;
        let mut settlement = Settlement::new(budget, prompt_tokens);
        let vectors = embedding::embed(&model, request.inputs, log, &mut settlement).await?;
        settlement.complete(prompt_tokens, 0);
        Ok(Embedded {
            model,
            vectors,
            dimensions: request.dimensions,
            base64: request.base64,
            prompt_tokens,
            rate_headers,
        })
    }

    /// The one model lookup: who is asking (the end user the request names, else its key) keeps an
    /// alias's weighted pick sticky.
    fn resolve(
        &self,
        principal: &Principal,
        model: Option<&str>,
        named: Option<&str>,
    ) -> Result<Routed, ApiError> {
        let identity = named.or(principal.identity());
        self.models.resolve(model, identity)
    }
}

impl<S> Prepared<S> {
    /// The answer's events, for a stream. A request refused at once (queue full, draining) is an error
    /// here, before any response has begun; one that waits longer than the keep-alive interval for its
    /// slot waits inside the stream.
    pub async fn stream(
        self,
    ) -> Result<
        (
            AnswerHead<S>,
            impl Stream<Item = GenerationEvent> + Send + 'static,
        ),
        ApiError,
    > {
        let answering = Answering::Streamed(self.keep_alive);
        let events = self
            .planned
            .run(answering, self.keep_alive, self.settlement)
            .await?;
        Ok((self.head, events))
    }

    /// The whole answer, once every choice has finished: the same events, collected.
    pub async fn collect(self) -> Result<(AnswerHead<S>, Collected), ApiError> {
        let sequences = self.planned.sequences();
        let events = self
            .planned
            .run(Answering::Whole, self.keep_alive, self.settlement)
            .await?;
        let collected = output::collect(events, sequences).await?;
        Ok((self.head, collected))
    }
}

/// Refused before any prompt is counted: a prompt whose bytes alone exceed what the key's token limit
/// could ever admit.
fn refuse_over_token_limit(
    budget: &KeyBudget,
    prompts: &[Prompt],
    model: &Routed,
) -> Result<(), ApiError> {
    if let Some(limit) = budget.token_limit() {
        let floor = plan::prompt_token_floor(prompts, model.engine.info()) as u64;
        if floor > limit {
            return Err(QuotaError::TooLarge {
                limit,
                prompt: floor,
            }
            .into());
        }
    }
    Ok(())
}

/// Holds the caller's tokens for this request: its prompt plus every token its choices may generate
/// (`max_tokens` fitted into the key's token limit), given back down to what it really used when its
/// answer ends.
async fn hold_tokens(
    budget: &KeyBudget,
    planned: &mut PlannedGeneration,
) -> Result<RateHeaders, ApiError> {
    let prompt = planned.prompt_tokens() as u64;
    if let Some(tpm) = budget.token_limit() {
        let room = tpm.saturating_sub(prompt) as usize;
        if !planned.fit_completion_budget(room) {
            return Err(QuotaError::TooLarge { limit: tpm, prompt }.into());
        }
    }
    let completion = planned.completion_budget() as u64;
    Ok(budget.reserve_tokens(prompt, completion).await?)
}
