//! What every front (HTTP routes, gRPC) does with a wire request before it writes the answer: validate
//! it, check it against the model (looked up once, by the caller), check the caller may use that model
//! (the gateway), plan it in the generation core, and hold the caller's token budget for it (its request
//! and concurrent slot were taken before its body was read: `routes::auth`, `grpc::auth`).

use crate::api::chat::ChatCompletionRequest;
use crate::api::completions::CompletionRequest;
use crate::api::embeddings::EmbeddingRequest;
use crate::engine::Prompt;
use crate::error::ApiError;
use crate::gateway::limiter::KeyBudget;
use crate::gateway::quota::{QuotaError, RateHeaders};
use crate::gateway::Principal;
use crate::generation::request::ValidatedGeneration;
use crate::generation::{self, PlannedGeneration};
use crate::generation::{completion, embedding};
use crate::models::Routed;
use crate::request_log::RequestLog;
use crate::state::AppState;
use crate::validate;
use crate::validate::embedding::ValidatedEmbedding;

/// A request ready to wait for its slot.
pub struct Prepared {
    /// What the client asked for and the version that answers.
    pub model: Routed,
    pub generation: ValidatedGeneration,
    pub planned: PlannedGeneration,
    /// The caller's rate-limit state, for the response's `x-ratelimit-*` headers.
    pub rate_headers: RateHeaders,
}

/// A chat request, planned; `parse_tools` when the answer is to be split into content and tool calls.
pub struct PreparedChat {
    pub prepared: Prepared,
    pub parse_tools: bool,
}

/// A completions request, planned; the prompts as sent (for echo and choice counts).
pub struct PreparedCompletion {
    pub prepared: Prepared,
    pub prompts: Vec<String>,
    pub echo: bool,
}

/// An embeddings request, checked against its model, its tokens counted and its budget held.
pub struct PreparedEmbedding {
    pub model: Routed,
    pub embedding: ValidatedEmbedding,
    /// Tokens of every input, summed.
    pub prompt_tokens: usize,
    pub rate_headers: RateHeaders,
}

pub async fn embedding(
    state: &AppState,
    caller: &Principal,
    budget: &KeyBudget,
    request: EmbeddingRequest,
    log: &RequestLog,
) -> Result<PreparedEmbedding, ApiError> {
    let named = crate::api::common::caller_identity(None, request.user.as_deref());
    let identity = identity(caller, named).map(str::to_string);
    let embedding = validate::embedding::embedding(request)?;
    let model = state
        .models
        .resolve(embedding.model.as_deref(), identity.as_deref())?;
    caller.check_model(&model.requested)?;
    log.set_model(&model.requested, &model.name, &model.version);
    validate::embedding::check_model(&embedding, &model.name, model.engine.info())?;
    let prompt_tokens = embedding::count_tokens(&model, &embedding.inputs)
        .await?
        .into_iter()
        .sum();
    log.set_prompt_tokens(prompt_tokens);
    log.set_completion_tokens(0);
    let rate_headers = budget.reserve_tokens(prompt_tokens as u64, 0).await?;
    Ok(PreparedEmbedding {
        model,
        embedding,
        prompt_tokens,
        rate_headers,
    })
}

/// `resolved` is the request's one model lookup: an unknown or loading model is reported after the
/// request's own faults.
pub async fn chat(
    caller: &Principal,
    budget: &KeyBudget,
    resolved: Result<Routed, ApiError>,
    request: ChatCompletionRequest,
    log: &RequestLog,
) -> Result<PreparedChat, ApiError> {
    let chat = validate::chat(request)?;
    let model = resolved?;
    caller.check_model(&model.requested)?;
    log.set_model(&model.requested, &model.name, &model.version);
    let info = model.engine.info();
    validate::model::check(&chat.generation, chat.image_count(), &model.name, info)?;
    validate::model::check_messages(&model.name, info)?;
    let parse_tools = chat.tools.is_some();
    let prompts = vec![Prompt::Chat(chat.messages)];
    let prepared = plan(budget, model, chat.generation, prompts, log).await?;
    Ok(PreparedChat {
        prepared,
        parse_tools,
    })
}

pub async fn completion(
    state: &AppState,
    caller: &Principal,
    budget: &KeyBudget,
    request: CompletionRequest,
    log: &RequestLog,
) -> Result<PreparedCompletion, ApiError> {
    let identity = identity(caller, request.caller_identity()).map(str::to_string);
    let completion = validate::completion(request)?;
    let model = state
        .models
        .resolve(completion.generation.model.as_deref(), identity.as_deref())?;
    caller.check_model(&model.requested)?;
    log.set_model(&model.requested, &model.name, &model.version);
    let info = model.engine.info();
    validate::model::check(&completion.generation, 0, &model.name, info)?;
    let suffix = completion.suffix.as_deref();
    let prompts = completion::prompts(&completion.prompts, suffix, &model.name, info)?;
    let prepared = plan(budget, model, completion.generation, prompts, log).await?;
    Ok(PreparedCompletion {
        prepared,
        prompts: completion.prompts,
        echo: completion.echo,
    })
}

/// Who a request is, for sticky routing between an alias's versions: the end user it names
/// (`safety_identifier`, `user`), else its API key.
pub fn identity<'a>(caller: &'a Principal, named: Option<&'a str>) -> Option<&'a str> {
    named.or(caller.identity())
}

async fn plan(
    budget: &KeyBudget,
    model: Routed,
    generation: ValidatedGeneration,
    prompts: Vec<Prompt>,
    log: &RequestLog,
) -> Result<Prepared, ApiError> {
    // Refused before any prompt is counted: a prompt whose bytes alone exceed what the key's token
    // limit could ever admit.
    if let Some(limit) = budget.token_limit() {
        let floor = generation::prompt_token_floor(&prompts, model.engine.info()) as u64;
        if floor > limit {
            return Err(QuotaError::TooLarge {
                limit,
                prompt: floor,
            }
            .into());
        }
    }
    let mut planned =
        generation::plan(model.served.clone(), generation.clone(), prompts, log).await?;
    let rate_headers = hold_tokens(budget, &mut planned).await?;
    Ok(Prepared {
        model,
        generation,
        planned,
        rate_headers,
    })
}

/// Holds the caller's tokens for this request: its prompt plus every token its choices may generate
/// (`max_tokens` fitted into the key's token limit), given back down to what it really used when its
/// response ends (the settlement `routes::auth` registered at admission), however it ends.
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
