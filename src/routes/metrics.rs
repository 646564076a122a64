//! `GET /metrics`: the Prometheus text exposition, with the queue's gauges read at scrape time.

use actix_web::{web, HttpResponse};

use crate::routes::auth::{policy, Guarded};
use crate::state::AppState;

/// Prometheus metrics in the text exposition format (0.0.4).
///
/// Request latency histograms (TTFT, inter-token, end-to-end, queue), running and waiting requests,
/// token counters, requests by finish reason, rejections, disconnects, HTTP requests by route template,
/// model load state, build info and `process_*`.
#[utoipa::path(get, path = "/metrics", tag = "Operations",
    responses((status = 200, description = "Prometheus text format", body = String, content_type = "text/plain")))]
pub async fn metrics(
    _reader: Guarded<policy::MetricsRead>,
    state: web::Data<AppState>,
) -> HttpResponse {
    let (mut running, mut waiting, mut caches) = (0, 0, Vec::new());
    for version in state.models.ready_versions() {
        let engine = &version.engine;
        running += version.admission.requests_running();
        waiting += version.admission.requests_waiting();
        caches.extend(engine.kv_cache());
        state
            .metrics
            .record_engine_steps(&version.name, &version.version, engine.step_counts());
        state.metrics.set_load(
            &version.name,
            &version.version,
            version.admission.requests_running(),
            version.admission.requests_waiting(),
            engine.sequences_alive(),
        );
    }
    state.metrics.set_server_load(running, waiting, &caches);
    if let Some(shared) = state.limiter.shared() {
        state.metrics.set_limits_shared(shared);
    }
    if let Some(replicas) = state.limiter.replicas() {
        state.metrics.set_limits_replicas(replicas);
    }
    let draining = state.models.is_draining();
    for alias in state.models.readiness() {
        state
            .metrics
            .set_ready(&alias.alias, alias.ready && !draining);
    }
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(state.metrics.render())
}

/// Registers `/metrics` (on the API port, or alone on `--metrics-port`).
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        super::resource_with::<policy::MetricsRead>(super::METRICS, "GET")
            .route(super::guarded(web::get(), metrics)),
    );
}
