//! `GET /v1/models` and `GET /v1/models/{model}` in OpenAI's shapes: every alias and every concrete
//! `model@version`, each with its state.

use actix_web::{web, HttpResponse};

use crate::api::errors::ErrorResponse;
use crate::api::models::{Model, ModelList};
use crate::error::ApiError;
use crate::routes::auth::{policy, Guarded};
use crate::state::AppState;

/// Lists the model ids this server answers to: aliases first (the default model first of all), then each
/// version as `model@version`, with its state (`loading`, `ready`, `draining`, `failed`), an alias's
/// weights, and the context length of what is loaded.
#[utoipa::path(get, path = "/v1/models", tag = "OpenAI",
    responses((status = 200, description = "The served models", body = ModelList)))]
pub async fn list_models(
    guarded: Guarded<policy::ModelsRead>,
    state: web::Data<AppState>,
) -> HttpResponse {
    let caller = guarded.caller;
    let mut data = state.models.list();
    // A key sees only what it may use.
    data.retain(|m| caller.may_use(&m.id));
    HttpResponse::Ok().json(ModelList {
        object: "list".to_string(),
        data,
    })
}

/// One model (an alias or a `model@version`) by id, whatever its state.
#[utoipa::path(get, path = "/v1/models/{model}", tag = "OpenAI",
    params(("model" = String, Path, description = "An alias or a `model@version` id")),
    responses(
        (status = 200, description = "The model", body = Model),
        (status = 403, description = "The API key may not use this model", body = ErrorResponse),
        (status = 404, description = "Unknown model", body = ErrorResponse),
    ))]
pub async fn retrieve_model(
    guarded: Guarded<policy::ModelsRead, web::Path<String>>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let (caller, _, path) = guarded.into_parts();
    caller.check_model(path.as_str())?;
    let model = state
        .models
        .describe(path.as_str())
        .ok_or_else(|| ApiError::ModelNotFound(path.into_inner()))?;
    Ok(HttpResponse::Ok().json(model))
}
