//! Kubernetes-style probes: liveness, readiness (model loaded) and startup; no key needed.

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};

use crate::api::health::HealthStatus;
use crate::models::LoadState;
use crate::server::AppState;

fn status(state: &AppState, ok_when_loading: bool) -> HttpResponse {
    let engine_sequences = state
        .models
        .ready()
        .map_or(0, |m| m.engine.sequences_alive());
    let (code, status, reason, model) = match state.models.state() {
        LoadState::Ready(model) => (StatusCode::OK, "ok", None, Some(model.name.clone())),
        LoadState::Loading if ok_when_loading => (StatusCode::OK, "loading", None, None),
        LoadState::Loading => (
            StatusCode::SERVICE_UNAVAILABLE,
            "loading",
            Some("the model is still loading".to_string()),
            None,
        ),
        LoadState::Failed(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "failed",
            Some(reason),
            None,
        ),
    };
    let mut response = HttpResponse::build(code);
    if code == StatusCode::SERVICE_UNAVAILABLE {
        response.insert_header((
            "Retry-After",
            crate::error::RETRY_AFTER_NOT_READY_SECS.to_string(),
        ));
    }
    response.json(HealthStatus {
        status: status.to_string(),
        reason,
        model,
        requests_running: state.tracker.requests_running(),
        engine_sequences,
    })
}

/// Liveness: 200 while the process serves HTTP (also while the model loads).
#[utoipa::path(get, path = "/health/live", tag = "Health",
    responses((status = 200, description = "Alive", body = HealthStatus),
              (status = 503, description = "The model failed to load", body = HealthStatus)))]
pub async fn live(state: web::Data<AppState>) -> HttpResponse {
    status(&state, true)
}

/// Readiness: 200 only when the model is loaded and requests can be served. `/health` is an alias.
#[utoipa::path(get, path = "/health/ready", tag = "Health",
    responses((status = 200, description = "Ready", body = HealthStatus),
              (status = 503, description = "Not ready (loading or failed)", body = HealthStatus)))]
pub async fn ready(state: web::Data<AppState>) -> HttpResponse {
    status(&state, false)
}

/// Startup: 503 until the model has loaded once (loading can take minutes on big models).
#[utoipa::path(get, path = "/health/startup", tag = "Health",
    responses((status = 200, description = "Started", body = HealthStatus),
              (status = 503, description = "Still starting", body = HealthStatus)))]
pub async fn startup(state: web::Data<AppState>) -> HttpResponse {
    status(&state, false)
}
