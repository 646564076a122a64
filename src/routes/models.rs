//! `GET /v1/models` and `GET /v1/models/{model}` in OpenAI's shapes.

use actix_web::{web, HttpResponse};

use crate::api::errors::ErrorResponse;
use crate::api::models::{Model, ModelList};
use crate::error::ApiError;
use crate::state::AppState;

/// Lists the models this server can run (the loaded ones).
#[utoipa::path(get, path = "/v1/models", tag = "OpenAI",
    responses((status = 200, description = "The served models", body = ModelList)))]
pub async fn list_models(state: web::Data<AppState>) -> HttpResponse {
    let data: Vec<Model> = state
        .models
        .ready()
        .map(|m| m.to_wire())
        .into_iter()
        .collect();
    HttpResponse::Ok().json(ModelList {
        object: "list".to_string(),
        data,
    })
}

/// One model by id.
#[utoipa::path(get, path = "/v1/models/{model}", tag = "OpenAI",
    params(("model" = String, Path, description = "The model id")),
    responses(
        (status = 200, description = "The model", body = Model),
        (status = 404, description = "Unknown model", body = ErrorResponse),
        (status = 503, description = "Model still loading", body = ErrorResponse),
    ))]
pub async fn retrieve_model(
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let model = state.models.resolve(Some(path.as_str()))?;
    Ok(HttpResponse::Ok().json(model.to_wire()))
}
