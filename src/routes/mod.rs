//! The routing table (one place, paths as named consts) and what the generation endpoints share.

pub mod chat;
pub mod completions;
pub mod health;
pub mod metrics;
pub mod models;
pub mod tokenize;

use actix_web::web;

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::FutureExt;

use crate::engine::{EngineError, GenerationRequest, OutputConstraint, Prompt};
use crate::error::{ApiError, ValidationError};
use crate::gateway::limits::{Admission, AdmissionPermit, Admitted};
use crate::models::ServedModel;
use crate::stream::{ChoiceSource, Started};
use crate::telemetry::RequestLog;
use crate::validate::{self, ValidatedGeneration};

pub const CHAT_COMPLETIONS: &str = "/v1/chat/completions";
pub const COMPLETIONS: &str = "/v1/completions";
pub const MODELS: &str = "/v1/models";
pub const MODEL: &str = "/v1/models/{model}";
pub const HEALTH: &str = "/health";
pub const HEALTH_LIVE: &str = "/health/live";
pub const HEALTH_READY: &str = "/health/ready";
pub const HEALTH_STARTUP: &str = "/health/startup";
pub const OPENAPI_JSON: &str = "/openapi.json";
pub const DOCS: &str = "/docs";
pub const METRICS: &str = "/metrics";
pub const TOKENIZE: &str = "/tokenize";
pub const DETOKENIZE: &str = "/detokenize";

/// Registers every API route; `server::app` (served by `main` and the tests) adds the OpenAPI document
/// and Swagger UI (`openapi::configure`). `/metrics` is here unless it
/// has a port of its own.
pub fn configure(cfg: &mut web::ServiceConfig, with_metrics: bool) {
    let post = |path: &str| resource_with(path, "POST");
    let get = |path: &str| resource_with(path, "GET");
    cfg.service(post(CHAT_COMPLETIONS).route(web::post().to(chat::create_chat_completion)))
        .service(post(COMPLETIONS).route(web::post().to(completions::create_completion)))
        .service(get(MODELS).route(web::get().to(models::list_models)))
        .service(get(MODEL).route(web::get().to(models::retrieve_model)))
        .service(post(TOKENIZE).route(web::post().to(tokenize::tokenize)))
        .service(post(DETOKENIZE).route(web::post().to(tokenize::detokenize)))
        .service(get(HEALTH).route(web::get().to(health::ready)))
        .service(get(HEALTH_LIVE).route(web::get().to(health::live)))
        .service(get(HEALTH_READY).route(web::get().to(health::ready)))
        .service(get(HEALTH_STARTUP).route(web::get().to(health::startup)));
    if with_metrics {
        metrics::configure(cfg);
    }
}

/// A resource whose other methods get a 405 naming `allow`, the methods it has.
pub(crate) fn resource_with(path: &str, allow: &'static str) -> actix_web::Resource {
    web::resource(path).default_service(web::to(move |req: actix_web::HttpRequest| async move {
        Err::<actix_web::HttpResponse, _>(ApiError::MethodNotAllowed {
            method: req.method().to_string(),
            allow,
        })
    }))
}

/// Anything unrouted: a JSON 404 rather than actix's empty one.
pub async fn not_found(req: actix_web::HttpRequest) -> Result<actix_web::HttpResponse, ApiError> {
    Err(ApiError::RouteNotFound(req.path().to_string()))
}

/// A request's choices, counted and fitted to the context, not yet submitted: everything that can still
/// be refused with a 4xx is decided before the request waits for a slot.
struct PlannedChoice {
    prompt: Prompt,
    max_tokens: usize,
    seed: Option<u64>,
}

pub struct PlannedGeneration {
    model: Arc<ServedModel>,
    generation: ValidatedGeneration,
    choices: Vec<PlannedChoice>,
    log: RequestLog,
    pub prompt_tokens: usize,
}

/// Counts every prompt with the engine's own template and tokenizer and fits `max_tokens` to the context.
/// A request the gate would refuse anyway (queue full, draining) is refused first: counting runs on the
/// engine thread, which an overloaded server should not spend on requests it turns away.
pub async fn plan(
    model: Arc<ServedModel>,
    generation: ValidatedGeneration,
    prompts: Vec<Prompt>,
    admission: &Admission,
    log: &RequestLog,
) -> Result<PlannedGeneration, ApiError> {
    generation.check_against(model.engine.info())?;
    if let Some(constraint) = &generation.constraint {
        let param = match constraint {
            OutputConstraint::JsonSchema(_) => "response_format",
            OutputConstraint::Lark(_) => "tools",
        };
        // Compiling a grammar is CPU work that grows with the schema: off the HTTP worker.
        let (engine, constraint) = (model.engine.clone(), constraint.clone());
        tokio::task::spawn_blocking(move || engine.check_constraint(&constraint))
            .await
            .map_err(|e| EngineError::Internal(format!("grammar check failed: {e}")))?
            .map_err(|e| ValidationError::invalid(param, e.to_string()))?;
    }
    admission.refuse_early()?;
    let counting = std::time::Instant::now();
    let mut choices = Vec::with_capacity(prompts.len() * generation.generated);
    let mut prompt_tokens = 0;
    for prompt in prompts {
        let tokens = model.engine.count_prompt_tokens(&prompt).await?;
        let max_tokens = validate::fit_to_context(
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
        prompt_tokens,
    })
}

impl PlannedGeneration {
    /// Sequences this request runs at once.
    pub fn sequences(&self) -> usize {
        self.choices.len()
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
        Ok(Started { permit, sources })
    }

    /// Waits for a slot, then submits: for answers that are sent whole.
    pub async fn start(self, admission: &Admission) -> Result<Started, ApiError> {
        let permit = admission.admit(self.sequences()).await?;
        self.submit(permit).await
    }

    /// For streams: a request admitted within `headers_within` is submitted now, so that a refusal is
    /// still a plain 4xx/5xx. One that has to wait longer gets its 200 and waits inside the SSE body, with
    /// keep-alive comments, so that proxies do not cut a queued stream; a refusal then arrives as an error
    /// event before any token.
    pub async fn start_streaming(
        self,
        admission: &Admission,
        headers_within: Duration,
    ) -> Result<BoxFuture<'static, Result<Started, ApiError>>, ApiError> {
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

/// Checks that a model can take the request's content before anything is submitted.
pub fn check_images(model: &ServedModel, has_images: bool) -> Result<(), ApiError> {
    if has_images && !model.engine.info().accepts_images {
        return Err(ValidationError::ImagesNotSupported {
            model: model.name.clone(),
        }
        .into());
    }
    Ok(())
}
