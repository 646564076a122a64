//! What every front (HTTP routes, gRPC) does with a wire request before it writes the answer: validate
//! it, check it against the model (looked up once, by the caller), and plan it in the generation core.

use crate::api::chat::ChatCompletionRequest;
use crate::api::completions::CompletionRequest;
use crate::engine::Prompt;
use crate::error::ApiError;
use crate::generation::completion;
use crate::generation::request::ValidatedGeneration;
use crate::generation::{self, PlannedGeneration};
use crate::models::Routed;
use crate::state::AppState;
use crate::telemetry::RequestLog;
use crate::validate;

/// A request ready to wait for its slot.
pub struct Prepared {
    /// What the client asked for and the version that answers.
    pub model: Routed,
    pub generation: ValidatedGeneration,
    pub planned: PlannedGeneration,
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

/// `resolved` is the request's one model lookup: an unknown or loading model is reported after the
/// request's own faults.
pub async fn chat(
    resolved: Result<Routed, ApiError>,
    request: ChatCompletionRequest,
    log: &RequestLog,
) -> Result<PreparedChat, ApiError> {
    let chat = validate::chat(request)?;
    let model = resolved?;
    log.set_model(&model.requested, &model.name, &model.version);
    let info = model.engine.info();
    validate::model::check(&chat.generation, chat.has_images(), &model.name, info)?;
    let parse_tools = chat.tools.is_some();
    let prompts = vec![Prompt::Chat(chat.messages)];
    let prepared = plan(model, chat.generation, prompts, log).await?;
    Ok(PreparedChat {
        prepared,
        parse_tools,
    })
}

pub async fn completion(
    state: &AppState,
    request: CompletionRequest,
    log: &RequestLog,
) -> Result<PreparedCompletion, ApiError> {
    let identity = request.caller_identity().map(str::to_string);
    let completion = validate::completion(request)?;
    let model = state
        .models
        .resolve(completion.generation.model.as_deref(), identity.as_deref())?;
    log.set_model(&model.requested, &model.name, &model.version);
    let info = model.engine.info();
    validate::model::check(&completion.generation, false, &model.name, info)?;
    let suffix = completion.suffix.as_deref();
    let prompts = completion::prompts(&completion.prompts, suffix, &model.name, info)?;
    let prepared = plan(model, completion.generation, prompts, log).await?;
    Ok(PreparedCompletion {
        prepared,
        prompts: completion.prompts,
        echo: completion.echo,
    })
}

async fn plan(
    model: Routed,
    generation: ValidatedGeneration,
    prompts: Vec<Prompt>,
    log: &RequestLog,
) -> Result<Prepared, ApiError> {
    let planned = generation::plan(model.served.clone(), generation.clone(), prompts, log).await?;
    Ok(Prepared {
        model,
        generation,
        planned,
    })
}
