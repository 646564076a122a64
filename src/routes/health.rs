//! Kubernetes-style probes: liveness, readiness (model loaded, not draining, queue not full) and startup.

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};

use crate::api::health::HealthStatus;
use crate::models::LoadState;
use crate::state::AppState;

/// Which question a probe asks.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Probe {
    Live,
    Ready,
    Startup,
}

fn status(state: &AppState, probe: Probe) -> HttpResponse {
    let admission = &state.admission;
    let engine_sequences = state
        .models
        .ready()
        .map_or(0, |m| m.engine.sequences_alive());
    let unavailable = |status: &str, reason: &str| {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            status.to_string(),
            Some(reason.to_string()),
        )
    };
    let (code, status, reason) = match (state.models.state(), probe) {
        (LoadState::Failed(reason), _) => unavailable("failed", &reason),
        (LoadState::Loading, Probe::Live) => (StatusCode::OK, "loading".to_string(), None),
        (LoadState::Loading, _) => unavailable("loading", "the model is still loading"),
        (LoadState::Ready(_), Probe::Ready) if admission.is_draining() => {
            unavailable("draining", "the server is shutting down")
        }
        (LoadState::Ready(_), Probe::Ready) if admission.queue_full() => {
            unavailable("overloaded", "the request queue is full")
        }
        (LoadState::Ready(_), _) => (StatusCode::OK, "ok".to_string(), None),
    };
    let mut response = HttpResponse::build(code);
    if code == StatusCode::SERVICE_UNAVAILABLE {
        response.insert_header((
            "Retry-After",
            crate::error::RETRY_AFTER_NOT_READY_SECS.to_string(),
        ));
    }
    response.json(HealthStatus {
        status,
        reason,
        model: state.models.ready().map(|m| m.name.clone()),
        requests_running: admission.requests_running(),
        requests_waiting: admission.requests_waiting(),
        engine_sequences,
    })
}

/// Liveness: 200 while the process serves HTTP (also while the model loads or the server drains).
#[utoipa::path(get, path = "/health/live", tag = "Health",
    responses((status = 200, description = "Alive", body = HealthStatus),
              (status = 503, description = "The model failed to load", body = HealthStatus)))]
pub async fn live(state: web::Data<AppState>) -> HttpResponse {
    status(&state, Probe::Live)
}

/// Readiness: 200 only when the model is loaded, the server is not draining and the queue has room.
/// `/health` is an alias.
#[utoipa::path(get, path = "/health/ready", tag = "Health",
    responses((status = 200, description = "Ready", body = HealthStatus),
              (status = 503, description = "Not ready: loading, failed, draining or queue full", body = HealthStatus)))]
pub async fn ready(state: web::Data<AppState>) -> HttpResponse {
    status(&state, Probe::Ready)
}

/// Startup: 503 until the model has loaded once (loading can take minutes on big models).
#[utoipa::path(get, path = "/health/startup", tag = "Health",
    responses((status = 200, description = "Started", body = HealthStatus),
              (status = 503, description = "Still starting", body = HealthStatus)))]
pub async fn startup(state: web::Data<AppState>) -> HttpResponse {
    status(&state, Probe::Startup)
}
