//! `POST /v1/completions` (legacy text completions): the request through the generation service, one
//! choice per prompt (× `n`), as `text_completion` chunks or one answer.

use actix_web::{web, HttpResponse};

use crate::api::completions::{CompletionRequest, TextCompletion, TextCompletionChunk};
use crate::error::ApiError;
use crate::extract::ApiJson;
use crate::formats::completion::CompletionAnswer;
use crate::generation::Caller;
use crate::request_log::RequestLog;
use crate::routes::answer::answer;
use crate::routes::auth::{policy, Guarded};
use crate::routes::errors::GenerationErrors;
use crate::state::AppState;

/// Creates a completion for the given prompt(s): the model continues the text, no chat template.
///
/// With several prompts, each becomes a choice whose `index` is the prompt's position.
///
/// Rules between fields that the schema cannot state, each a 400 naming it: `best_of` is at least `n`;
/// `best_of` above `n` cannot be streamed; prompts × `best_of` (or × `n`) is at most 64 sequences.
#[utoipa::path(
    post,
    path = "/v1/completions",
    tag = "OpenAI",
    request_body = CompletionRequest,
    responses(
        (status = 200, description = "The completion; `text/event-stream` of `TextCompletionChunk` when streaming",
            content(
                (TextCompletion = "application/json"),
                (TextCompletionChunk = "text/event-stream"),
            )),
        GenerationErrors,
    )
)]
pub async fn create_completion(
    guarded: Guarded<policy::Completions, ApiJson<CompletionRequest>>,
    state: web::Data<AppState>,
    log: RequestLog,
) -> Result<HttpResponse, ApiError> {
    let (principal, budget, body) = guarded.into_parts();
    let caller = Caller { principal, budget };
    let prepared = state
        .generation
        .prepare(body.into_inner(), caller, &log)
        .await?;
    answer(prepared, CompletionAnswer).await
}
