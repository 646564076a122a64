//! The routing table (one place, paths as named consts) and what the generation endpoints share.

pub mod chat;
pub mod completions;
pub mod docs;
pub mod health;
pub mod models;

use actix_web::web;

use crate::engine::{GenerationRequest, Prompt};
use crate::error::{ApiError, ValidationError};
use crate::models::ServedModel;
use crate::stream::ChoiceSource;
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

/// Registers every route; `server::app` and the tests use the same table.
pub fn configure(cfg: &mut web::ServiceConfig) {
    let resource = |path: &str| web::resource(path).default_service(web::to(method_not_allowed));
    cfg.service(resource(CHAT_COMPLETIONS).route(web::post().to(chat::create_chat_completion)))
        .service(resource(COMPLETIONS).route(web::post().to(completions::create_completion)))
        .service(resource(MODELS).route(web::get().to(models::list_models)))
        .service(resource(MODEL).route(web::get().to(models::retrieve_model)))
        .service(resource(HEALTH).route(web::get().to(health::ready)))
        .service(resource(HEALTH_LIVE).route(web::get().to(health::live)))
        .service(resource(HEALTH_READY).route(web::get().to(health::ready)))
        .service(resource(HEALTH_STARTUP).route(web::get().to(health::startup)));
    docs::configure(cfg);
}

async fn method_not_allowed(
    req: actix_web::HttpRequest,
) -> Result<actix_web::HttpResponse, ApiError> {
    Err(ApiError::MethodNotAllowed(req.method().to_string()))
}

/// Anything unrouted: a JSON 404 rather than actix's empty one.
pub async fn not_found(req: actix_web::HttpRequest) -> Result<actix_web::HttpResponse, ApiError> {
    Err(ApiError::RouteNotFound(req.path().to_string()))
}

/// Counts the prompt, fits `max_tokens` to the context and submits one sequence: everything a choice
/// needs before its first token. Returns the choice and its prompt tokens.
pub async fn start_choice(
    model: &ServedModel,
    generation: &ValidatedGeneration,
    prompt: Prompt,
    index: usize,
) -> Result<(ChoiceSource, usize), ApiError> {
    let counting = std::time::Instant::now();
    let prompt_tokens = model.engine.count_prompt_tokens(&prompt).await?;
    tracing::debug!(
        prompt_tokens,
        elapsed_ms = counting.elapsed().as_millis() as u64,
        "prompt counted"
    );
    let max_tokens = validate::fit_to_context(
        prompt_tokens,
        generation.max_tokens,
        model.engine.info().context_length,
    )?;
    let events = model
        .engine
        .generate(GenerationRequest {
            prompt,
            sampling: generation.sampling.clone(),
            max_tokens,
            stop: generation.stop.clone(),
        })
        .await?;
    Ok((
        ChoiceSource {
            index,
            events,
            stop: generation.stop.clone(),
        },
        prompt_tokens,
    ))
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

#[cfg(test)]
mod tests;
