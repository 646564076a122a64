//! `/v1/responses`: create (JSON or a stream of named events), retrieve and delete. A request is
//! translated into a chat request (`responses::input`) and served by the generation service; its
//! answer becomes output items (`responses::output`, `responses::stream`), and the response is kept
//! (unless `store: false`) for `previous_response_id`.

use std::sync::Arc;

use actix_web::{web, HttpResponse};

use crate::api::responses::{
    CreateResponseRequest, DeletedResponse, ResponseObject, ResponseStreamEvent,
};
use crate::error::ApiError;
use crate::extract::ApiJson;
use crate::generation::Caller;
use crate::ids;
use crate::request_log::RequestLog;
use crate::responses::input::{self, ChatInput};
use crate::responses::output;
use crate::responses::stream::{Keep, ResponsesAnswer};
use crate::responses::ResponsesError;
use crate::routes::answer::answer;
use crate::routes::auth::{policy, Guarded};
use crate::routes::errors::GenerationErrors;
use crate::state::AppState;

/// Creates a model response (OpenAI's Responses API).
///
/// `input` is a string or a list of items (messages, `function_call`, `function_call_output`);
/// `previous_response_id` continues a stored response's conversation. With `stream: true` the answer
/// comes as server-sent events named after their `type` (`ResponseStreamEvent`), numbered by
/// `sequence_number`; otherwise as one `response` object. Served by the chat path: the same models,
/// tool calling, JSON output, limits and errors as `/v1/chat/completions`.
#[utoipa::path(
    post,
    path = "/v1/responses",
    tag = "OpenAI",
    request_body = CreateResponseRequest,
    responses(
        (status = 200, description = "The response; `text/event-stream` of `ResponseStreamEvent` when streaming",
            content(
                (ResponseObject = "application/json"),
                (ResponseStreamEvent = "text/event-stream"),
            )),
        GenerationErrors,
    )
)]
pub async fn create_response(
    guarded: Guarded<policy::CreateResponse, ApiJson<CreateResponseRequest>>,
    state: web::Data<AppState>,
    log: RequestLog,
) -> Result<HttpResponse, ApiError> {
    let (principal, budget, body) = guarded.into_parts();
    let request = body.into_inner();
    let owner = principal.key_id.clone();
    let previous = match request.previous_response_id.as_deref() {
        Some(id) => {
            state
                .responses
                .get(owner.as_deref(), id)
                .await?
                .ok_or_else(|| ResponsesError::PreviousNotFound(id.to_string()))?
                .conversation
        }
        None => Arc::new(Vec::new()),
    };
    let ChatInput {
        request: chat_request,
        conversation,
    } = input::to_chat(&request, &previous)?;
    let caller = Caller { principal, budget };
    let prepared = state
        .generation
        .prepare(chat_request, caller, &log)
        .await
        .map_err(input::in_responses_terms)?;
    let response = output::in_progress(
        &request,
        output::response_id(),
        prepared.head.model.requested.clone(),
        ids::unix_now(),
    );
    let keep = response
        .store
        .then(|| Keep::new(state.responses.clone(), owner, conversation));
    answer(prepared, ResponsesAnswer { response, keep }).await
}

/// Retrieves a stored response (one this API key created, within the store's bounds).
#[utoipa::path(
    get,
    path = "/v1/responses/{response_id}",
    tag = "OpenAI",
    params(("response_id" = String, Path, description = "A `resp_…` id")),
    responses(
        (status = 200, description = "The response", body = ResponseObject),
        (status = 404, description = "No stored response by that id for this caller", body = crate::api::errors::ErrorResponse),
        (status = 503, description = "The shared response store (`--responses-store redis`) did not answer (`store_unavailable`), with Retry-After", body = crate::api::errors::ErrorResponse),
    )
)]
pub async fn retrieve_response(
    guarded: Guarded<policy::StoredResponses, web::Path<String>>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let (caller, _, path) = guarded.into_parts();
    let id = path.into_inner();
    let stored = state
        .responses
        .get(caller.key_id.as_deref(), &id)
        .await?
        .ok_or(ResponsesError::NotFound(id))?;
    Ok(HttpResponse::Ok().json(&*stored.response))
}

/// Deletes a stored response.
#[utoipa::path(
    delete,
    path = "/v1/responses/{response_id}",
    tag = "OpenAI",
    params(("response_id" = String, Path, description = "A `resp_…` id")),
    responses(
        (status = 200, description = "Deleted", body = DeletedResponse),
        (status = 404, description = "No stored response by that id for this caller", body = crate::api::errors::ErrorResponse),
        (status = 503, description = "The shared response store (`--responses-store redis`) did not answer (`store_unavailable`), with Retry-After", body = crate::api::errors::ErrorResponse),
    )
)]
pub async fn delete_response(
    guarded: Guarded<policy::StoredResponses, web::Path<String>>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let (caller, _, path) = guarded.into_parts();
    let id = path.into_inner();
    if !state
        .responses
        .delete(caller.key_id.as_deref(), &id)
        .await?
    {
        return Err(ResponsesError::NotFound(id).into());
    }
    Ok(HttpResponse::Ok().json(DeletedResponse {
        id,
        object: "response".to_string(),
        deleted: true,
    }))
}
