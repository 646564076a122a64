//! `POST /tokenize` and `POST /detokenize`: the served model's own tokenizer and chat template, for clients
//! that count tokens (vLLM's endpoints and shapes). Each call counts against its key's requests per minute
//! and concurrency, like a generation: tokenizing a long prompt is work.

use actix_web::{web, HttpResponse};

use crate::api::chat::ChatCompletionRequest;
use crate::api::errors::ErrorResponse;
use crate::api::tokenize::{
    DetokenizeRequest, DetokenizeResponse, TokenizeRequest, TokenizeRequestSchema, TokenizeResponse,
};
use crate::engine::Prompt;
use crate::error::{ApiError, ValidationError};
use crate::extract::ApiJson;
use crate::routes::auth::{policy, Guarded};
use crate::state::AppState;
use crate::validate;

/// Tokenizes a prompt, or chat messages through the chat template, exactly as generation would.
#[utoipa::path(post, path = "/tokenize", tag = "Tokenizer", request_body = TokenizeRequestSchema,
    responses(
        (status = 200, description = "The token ids", body = TokenizeResponse),
        (status = 400, description = "Neither or both of `prompt` and `messages`", body = ErrorResponse),
        (status = 404, description = "Unknown model", body = ErrorResponse),
    ))]
pub async fn tokenize(
    guarded: Guarded<policy::Tokenize, ApiJson<TokenizeRequest>>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let (caller, _budget, body) = guarded.into_parts();
    let request = body.into_inner();
    let model = state.models.resolve(request.model.as_deref(), None)?;
    caller.check_model(&model.requested)?;
    let prompt = match (request.prompt, request.messages) {
        (Some(prompt), None) => Prompt::Text(prompt),
        (None, Some(messages)) => {
            // The same validation and rendering as a chat request.
            let chat = validate::chat(ChatCompletionRequest::from_messages(messages))?;
            validate::model::check_messages(&model.name, model.engine.info())?;
            Prompt::Chat(chat.messages)
        }
        _ => {
            return Err(ValidationError::invalid(
                "prompt",
                "send exactly one of `prompt` and `messages`",
            )
            .into())
        }
    };
    let tokens = model.engine.tokenize(&prompt).await?;
    let token_strs = match request.return_token_strs {
        Some(true) => Some(
            tokens
                .iter()
                .map(|t| model.engine.detokenize(&[*t]))
                .collect::<Result<Vec<_>, _>>()?,
        ),
        _ => None,
    };
    Ok(HttpResponse::Ok().json(TokenizeResponse {
        count: tokens.len(),
        max_model_len: model.engine.info().context_length,
        tokens,
        token_strs,
    }))
}

/// Turns token ids back into text (special tokens written by name).
#[utoipa::path(post, path = "/detokenize", tag = "Tokenizer", request_body = DetokenizeRequest,
    responses(
        (status = 200, description = "The text", body = DetokenizeResponse),
        (status = 400, description = "A token id outside the vocabulary", body = ErrorResponse),
        (status = 404, description = "Unknown model", body = ErrorResponse),
    ))]
pub async fn detokenize(
    guarded: Guarded<policy::Tokenize, ApiJson<DetokenizeRequest>>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let (caller, _budget, body) = guarded.into_parts();
    let request = body.into_inner();
    let model = state.models.resolve(request.model.as_deref(), None)?;
    caller.check_model(&model.requested)?;
    let vocab_size = model.engine.info().vocab_size;
    let tokens = request
        .tokens
        .iter()
        .map(|&t| {
            u32::try_from(t)
                .ok()
                .filter(|t| (*t as usize) < vocab_size)
                .ok_or_else(|| {
                    ValidationError::invalid(
                        "tokens",
                        format!("token id {t} is outside the vocabulary (0..{vocab_size})"),
                    )
                })
        })
        .collect::<Result<Vec<u32>, _>>()?;
    let prompt = model.engine.detokenize(&tokens)?;
    Ok(HttpResponse::Ok().json(DetokenizeResponse { prompt }))
}
