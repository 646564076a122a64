//! Prometheus metrics, measured in our own layer (mistral.rs 0.8.1 records none), rendered at `/metrics`.
//!
//! Names and histogram buckets follow vLLM's, with the `llmserve_` prefix, so vLLM dashboards translate.
//! Labels are bounded: `model` and `model_version` are the registry's model names and versions (from the
//! models file, the flags or an operator's admin call), `llmserve_ready`'s `model` its aliases; routes
//! are actix's route templates (`/v1/models/{model}`), reasons and statuses are our own fixed sets. Never
//! raw paths or input.

mod buckets;
mod exposition;
mod process;
mod record;
mod register;

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use prometheus::{Gauge, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Registry};

use crate::engine::StepCounts;
use buckets::{
    token_buckets, HTTP_DURATION_BUCKETS, ITL_BUCKETS, MAX_TOKEN_BUCKET, QUEUE_BUCKETS,
    REQUEST_LATENCY_BUCKETS, TTFT_BUCKETS,
};
use process::ProcessMetrics;
use register::{counter, gauge, histogram, registered};

/// Rejection reasons: the error codes of refusals before any work (429 / 503 with `Retry-After`).
pub const REJECTION_REASONS: &[&str] =
    &["overloaded", "queue_timeout", "draining", "model_not_ready"];

/// Everything one finished request contributes (written when its response body ends or is dropped).
#[derive(Debug, Default)]
pub struct RequestOutcome<'a> {
    pub route: &'a str,
    pub method: &'a str,
    pub status: u16,
    /// Set for gRPC calls (then `route` is the gRPC method path): the status code's name.
    pub grpc_code: Option<&'static str>,
    pub duration: Duration,
    /// Set for generation requests that reached a model: its name and the version that answered.
    pub model: Option<&'a str>,
    pub model_version: Option<&'a str>,
    /// The API key's id, when the request carried one.
    pub key_id: Option<&'a str>,
    pub prompt_tokens: Option<usize>,
    pub completion_tokens: Option<usize>,
    pub finish_reason: Option<&'static str>,
    pub error: Option<&'static str>,
    pub queue_time: Option<Duration>,
    pub time_to_first_token: Option<Duration>,
    pub client_disconnected: bool,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// The metric set of one server.
pub struct Metrics {
    registry: Registry,
    requests_running: IntGaugeVec,
    requests_waiting: IntGaugeVec,
    engine_sequences: IntGaugeVec,
    ready: IntGaugeVec,
    model_loaded: IntGaugeVec,
    time_to_first_token: HistogramVec,
    inter_token_latency: HistogramVec,
    e2e_request_latency: HistogramVec,
    request_queue_time: HistogramVec,
    request_prompt_tokens: HistogramVec,
    request_generation_tokens: HistogramVec,
    prompt_tokens: IntCounterVec,
    generation_tokens: IntCounterVec,
    requests: IntCounterVec,
    requests_rejected: IntCounterVec,
    client_disconnects: IntCounterVec,
    http_requests: IntCounterVec,
    http_request_duration: HistogramVec,
    grpc_requests: IntCounterVec,
    key_requests: IntCounterVec,
    key_tokens: IntCounterVec,
    limits_shared: IntGauge,
    limits_replicas: IntGauge,
    num_requests_waiting: IntGauge,
    num_requests_running: IntGauge,
    kv_cache_usage: Gauge,
    cache_config_info: IntGaugeVec,
    engine_steps: IntCounterVec,
    engine_step_sequences: IntCounterVec,
    prefix_cache_hits: IntCounterVec,
    /// The engine's own counts at the last scrape, per version: the counters advance by the difference.
    engine_steps_seen: Mutex<HashMap<(String, String), StepCounts>>,
    process: ProcessMetrics,
}

impl Metrics {
    pub fn new() -> Self {
        let context_length = MAX_TOKEN_BUCKET;
        let r = Registry::new();
        let model = &["model", "model_version"];
        let metrics = Metrics {
            requests_running: gauge(&r, "llmserve_requests_running", "Requests holding a slot (generating or about to).", model),
            requests_waiting: gauge(&r, "llmserve_requests_waiting", "Requests queued for a slot.", model),
            engine_sequences: gauge(&r, "llmserve_engine_sequences", "Sequences the engine still holds, cancelled ones included until it frees them.", model),
            ready: gauge(&r, "llmserve_ready", "Per alias (label `model`): 1 when a request for it would be served now (a version ready, not draining, queue not full). The readiness probe needs all of them.", &["model"]),
            model_loaded: gauge(&r, "llmserve_model_loaded", "1 when the model version is loaded and serving.", &["model", "model_version"]),
            time_to_first_token: histogram(&r, "llmserve_time_to_first_token_seconds", "Time from request arrival to the first generated token.", TTFT_BUCKETS.to_vec(), model),
            inter_token_latency: histogram(&r, "llmserve_inter_token_latency_seconds", "Time between consecutive generated tokens of one request.", ITL_BUCKETS.to_vec(), model),
            e2e_request_latency: histogram(&r, "llmserve_e2e_request_latency_seconds", "Time from request arrival to the end of its response.", REQUEST_LATENCY_BUCKETS.to_vec(), model),
            request_queue_time: histogram(&r, "llmserve_request_queue_time_seconds", "Time from request arrival to holding a slot (validation and prompt counting included).", QUEUE_BUCKETS.to_vec(), model),
            request_prompt_tokens: histogram(&r, "llmserve_request_prompt_tokens", "Prompt tokens per request.", token_buckets(context_length), model),
            request_generation_tokens: histogram(&r, "llmserve_request_generation_tokens", "Generated tokens per request.", token_buckets(context_length), model),
            prompt_tokens: counter(&r, "llmserve_prompt_tokens_total", "Prompt tokens of admitted requests.", model),
            generation_tokens: counter(&r, "llmserve_generation_tokens_total", "Generated tokens.", model),
            requests: counter(&r, "llmserve_requests_total", "Generation requests by how they ended (stop, length, error or abort: client gone) and by transport (http, grpc).", &["model", "model_version", "finish_reason", "transport"]),
            requests_rejected: counter(&r, "llmserve_requests_rejected_total", "Requests refused before any work, by reason.", &["reason"]),
            client_disconnects: counter(&r, "llmserve_client_disconnects_total", "Generation requests whose client went away before the response ended.", model),
            http_requests: counter(&r, "llmserve_http_requests_total", "HTTP requests by route template, method and status.", &["route", "method", "status"]),
            grpc_requests: counter(&r, "llmserve_grpc_requests_total", "gRPC calls by method and status code.", &["method", "code"]),
            key_requests: counter(&r, "llmserve_key_requests_total", "Requests per API key (id from the models file) by outcome: ok, rate_limited (429), denied (401/403), error (any other failure).", &["key_id", "outcome"]),
            limits_shared: registered(&r, IntGauge::new("llmserve_limits_shared", "1 while per-key limits are shared through Redis (--limits-redis); 0 while Redis is unreachable and this replica limits alone.").expect("valid gauge")),
            key_tokens: counter(&r, "llmserve_key_tokens_total", "Tokens per API key by kind: prompt or completion (what the key's token limit counts).", &["key_id", "kind"]),
            http_request_duration: histogram(&r, "llmserve_http_request_duration_seconds", "HTTP request duration (to the end of the body) by route template.", HTTP_DURATION_BUCKETS.to_vec(), &["route", "method"]),
            limits_replicas: registered(&r, IntGauge::new("llmserve_limits_replicas", "With --limits-redis: the live replicas Redis last counted, what each key's limits are divided by while Redis is unreachable.").expect("valid gauge")),
            // The model-server protocol of the Gateway API Inference Extension: one unlabelled series per
            // pod (the endpoint picker reads each by name alone, so no version label may split them).
            num_requests_waiting: registered(&r, IntGauge::new("llmserve_num_requests_waiting", "Generation requests waiting for a slot, all models of this server together (the endpoint picker's queue length).").expect("valid gauge")),
            num_requests_running: registered(&r, IntGauge::new("llmserve_num_requests_running", "Generation requests holding a slot, all models of this server together.").expect("valid gauge")),
            kv_cache_usage: registered(&r, Gauge::new("llmserve_kv_cache_usage_perc", "Fraction (0-1) of the paged KV cache's blocks in use after the engine's last step, all models together; 0 without paged attention (CPU), where KV memory is per sequence.").expect("valid gauge")),
            cache_config_info: gauge(&r, "llmserve_cache_config_info", "1, labelled with the paged KV cache's block size (tokens) and usable blocks; absent without paged attention.", &["block_size", "num_gpu_blocks"]),
            engine_steps: counter(&r, "llmserve_engine_steps_total", "Forward steps the engine ran, by kind: prompt (prefill) or decode.", &["model", "model_version", "kind"]),
            engine_step_sequences: counter(&r, "llmserve_engine_step_sequences_total", "Sequences carried by those steps: divided by the steps, the batch size continuous batching achieved.", &["model", "model_version", "kind"]),
            prefix_cache_hits: counter(&r, "llmserve_prefix_cache_hits_total", "Requests whose prompt started from the engine's prefix cache: the cached prefix was not prefilled again.", &["model", "model_version"]),
            engine_steps_seen: Mutex::default(),
            process: ProcessMetrics::new(&r),
            registry: r,
        };
        let build_info = gauge(
            &metrics.registry,
            "llmserve_build_info",
            "Build facts; always 1.",
            &["version", "engine", "features"],
        );
        build_info
            .with_label_values(&[
                env!("CARGO_PKG_VERSION"),
                "mistral.rs 0.8.1",
                build_features(),
            ])
            .set(1);
        for reason in REJECTION_REASONS {
            metrics.requests_rejected.with_label_values(&[reason]);
        }
        metrics
    }
}

fn build_features() -> &'static str {
    if cfg!(feature = "cuda") {
        "cuda"
    } else {
        "cpu"
    }
}

#[cfg(test)]
mod tests;
