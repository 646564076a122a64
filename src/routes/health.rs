//! Kubernetes-style probes: liveness (the process serves HTTP; never about models), readiness (not
//! draining, and every alias has a loaded version) and startup (ready once).
//!
//! A full queue is load, not unreadiness: a busy replica that left the Service would push its load onto
//! the others until they left too, clients would get the ingress's 503 instead of our 429 with
//! `Retry-After`, and an inference gateway's endpoint picker (which only sees Ready pods) could no longer
//! weigh it by its queue gauges.
//! Anyone may ask; only a caller whose key may read the models learns more than the status word.

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};

use crate::api::health::{AliasHealth, HealthDetails, HealthStatus};
use crate::config::keys::Action;
use crate::gateway::Principal;
use crate::routes::auth::{policy, Guarded};
use crate::state::AppState;

/// Which question a probe asks.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Probe {
    Live,
    Ready,
    Startup,
}

fn status(state: &AppState, caller: &Principal, probe: Probe) -> HttpResponse {
    let aliases = state.models.readiness();
    let draining = state.models.is_draining();
    let ready = state.is_ready();
    let started = state.started(ready);
    let not_ready = aliases.iter().find(|a| !a.ready);
    let (word, reason) = match not_ready {
        _ if draining => ("draining", Some("the server is shutting down".to_string())),
        None if aliases.is_empty() => ("loading", Some("no model configured yet".to_string())),
        None => ("ok", None),
        Some(alias) => {
            let why = alias.reason.clone().unwrap_or_default();
            let word = match why.as_str() {
                "loading" => "loading",
                _ => "failed",
            };
            (word, Some(format!("`{}`: {why}", alias.alias)))
        }
    };
    let code = match probe {
        Probe::Live => StatusCode::OK,
        Probe::Ready if ready => StatusCode::OK,
        Probe::Startup if started => StatusCode::OK,
        _ => StatusCode::SERVICE_UNAVAILABLE,
    };
    let mut response = HttpResponse::build(code);
    if code == StatusCode::SERVICE_UNAVAILABLE {
        response.insert_header((
            "Retry-After",
            crate::error::RETRY_AFTER_NOT_READY_SECS.to_string(),
        ));
    }
    if !caller.may(Action::ModelsRead) {
        return response.json(HealthStatus {
            status: word.to_string(),
            details: None,
        });
    }
    let (requests_running, requests_waiting) = state.models.load();
    let engine_sequences = state
        .models
        .ready_versions()
        .iter()
        .map(|m| m.engine.sequences_alive())
        .sum();
    response.json(HealthStatus {
        status: word.to_string(),
        details: Some(HealthDetails {
            reason: if code == StatusCode::OK && probe != Probe::Ready {
                reason.filter(|_| word != "ok")
            } else {
                reason
            },
            model: state
                .models
                .default_model()
                .map(|m| m.name.clone())
                .filter(|name| caller.may_use(name)),
            requests_running,
            requests_waiting,
            engine_sequences,
            limits: state.limiter.state().to_string(),
            models: aliases
                .into_iter()
                .filter(|a| caller.may_use(&a.alias))
                .map(|a| AliasHealth {
                    model: a.alias,
                    ready: a.ready && !draining,
                    reason: a.reason,
                })
                .collect(),
        }),
    })
}

/// Liveness: 200 while the process serves HTTP, whatever its models do (loading, failed, draining).
#[utoipa::path(get, path = "/health/live", tag = "Health",
    responses((status = 200, description = "Alive", body = HealthStatus)))]
pub async fn live(anyone: Guarded<policy::Public>, state: web::Data<AppState>) -> HttpResponse {
    status(&state, &anyone.caller, Probe::Live)
}

/// Readiness: 200 only when the server is not draining and every alias (every model id a client may
/// send without a version) has a loaded version; `models` says which are not. A full queue stays ready
/// (its requests get 429 with Retry-After; `requests_waiting` and the queue gauges show the load).
/// `/health` is an alias.
#[utoipa::path(get, path = "/health/ready", tag = "Health",
    responses((status = 200, description = "Ready", body = HealthStatus),
              (status = 503, description = "Not ready: a model loading or failed, or the server draining", body = HealthStatus)))]
pub async fn ready(anyone: Guarded<policy::Public>, state: web::Data<AppState>) -> HttpResponse {
    status(&state, &anyone.caller, Probe::Ready)
}

/// Startup: 503 until the server has been ready once (loading can take minutes on big models).
#[utoipa::path(get, path = "/health/startup", tag = "Health",
    responses((status = 200, description = "Started", body = HealthStatus),
              (status = 503, description = "Still starting", body = HealthStatus)))]
pub async fn startup(anyone: Guarded<policy::Public>, state: web::Data<AppState>) -> HttpResponse {
    status(&state, &anyone.caller, Probe::Startup)
}
