//! `POST /v1/chat/completions`: the request through the generation service, its answer as
//! `chat.completion.chunk` events or one `chat.completion`.

use actix_web::{web, HttpResponse};

use crate::api::chat::{ChatCompletion, ChatCompletionChunk, ChatCompletionRequest};
use crate::error::ApiError;
use crate::extract::ApiJson;
use crate::formats::chat::ChatAnswer;
use crate::generation::Caller;
use crate::request_log::RequestLog;
use crate::routes::answer::answer;
use crate::routes::auth::{policy, Guarded};
use crate::routes::errors::GenerationErrors;
use crate::state::AppState;

/// Creates a model response for the given chat conversation.
///
/// With `stream: true` the answer comes as server-sent events (`chat.completion.chunk` objects, then
/// `data: [DONE]`); otherwise as one `chat.completion` object.
///
/// Rules between fields that the schema cannot state, each a 400 naming it: a named `tool_choice` must be
/// one of `tools`; a forced call (`tool_choice` `required` or a named function) compiles the tools'
/// `parameters` schemas into a grammar, and one the compiler cannot take is refused (`param: tools`); so
/// is a `response_format` JSON Schema it cannot take (`param: response_format`).
#[utoipa::path(
    post,
    path = "/v1/chat/completions",
    tag = "OpenAI",
    request_body = ChatCompletionRequest,
    responses(
        (status = 200, description = "The completion; `text/event-stream` of `ChatCompletionChunk` when streaming",
            content(
                (ChatCompletion = "application/json"),
                (ChatCompletionChunk = "text/event-stream"),
            )),
        GenerationErrors,
    )
)]
pub async fn create_chat_completion(
    guarded: Guarded<policy::ChatCompletions, ApiJson<ChatCompletionRequest>>,
    state: web::Data<AppState>,
    log: RequestLog,
) -> Result<HttpResponse, ApiError> {
    let (principal, budget, body) = guarded.into_parts();
    let caller = Caller { principal, budget };
    let prepared = state
        .generation
        .prepare(body.into_inner(), caller, &log)
        .await?;
    answer(prepared, ChatAnswer).await
}
