//! Prometheus metrics, measured in our own layer (mistral.rs 0.8.1 records none), rendered at `/metrics`.
//!
//! Names and histogram buckets follow vLLM's, with the `llmserve_` prefix, so vLLM dashboards translate.
//! Labels are bounded: `model` and `model_version` are the registry's model names and versions (from the
//! models file, the flags or an operator's admin call), `llmserve_ready`'s `model` its aliases; routes
//! are actix's route templates (`/v1/models/{model}`), reasons and statuses are our own fixed sets. Never
//! raw paths or input.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use prometheus::core::Collector;
use prometheus::{
    Counter, Encoder, Gauge, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec,
    Opts, Registry, TextEncoder,
};

use crate::engine::{KvCacheState, StepCounts};

/// vLLM's `time_to_first_token_seconds` buckets.
const TTFT_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
    20.0, 40.0, 80.0, 160.0, 640.0, 2560.0,
];
/// vLLM's `inter_token_latency_seconds` buckets.
const ITL_BUCKETS: &[f64] = &[
    0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0,
    40.0, 80.0,
];
/// vLLM's request-latency buckets (end to end, queue).
const REQUEST_LATENCY_BUCKETS: &[f64] = &[
    0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0, 240.0,
    480.0, 960.0, 1920.0, 7680.0,
];
/// Queue waits are usually far below a second: finer buckets at the low end, then vLLM's.
const QUEUE_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0,
    30.0, 60.0, 120.0, 240.0, 480.0,
];
const HTTP_DURATION_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0, 120.0, 300.0,
];

/// Rejection reasons: the error codes of refusals before any work (429 / 503 with `Retry-After`).
pub const REJECTION_REASONS: &[&str] =
    &["overloaded", "queue_timeout", "draining", "model_not_ready"];

/// Token-count buckets reach this far (the largest contexts mistral.rs serves).
const MAX_TOKEN_BUCKET: usize = 131_072;

/// vLLM's 1-2-5 buckets for token counts, up to the model's context.
fn token_buckets(max: usize) -> Vec<f64> {
    let mut buckets = Vec::new();
    let mut magnitude = 1usize;
    'outer: loop {
        for step in [1, 2, 5] {
            let bound = step * magnitude;
            if bound > max {
                break 'outer;
            }
            buckets.push(bound as f64);
        }
        magnitude *= 10;
    }
    buckets
}

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

/// Collectors are registered once with fixed names: a failure here is a programming error.
fn registered<C: Collector + Clone + 'static>(registry: &Registry, collector: C) -> C {
    registry
        .register(Box::new(collector.clone()))
        .expect("metric names are unique and valid");
    collector
}

fn histogram(
    registry: &Registry,
    name: &str,
    help: &str,
    buckets: Vec<f64>,
    labels: &[&str],
) -> HistogramVec {
    let opts = HistogramOpts::new(name, help).buckets(buckets);
    registered(
        registry,
        HistogramVec::new(opts, labels).expect("valid histogram"),
    )
}

fn counter(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    registered(
        registry,
        IntCounterVec::new(Opts::new(name, help), labels).expect("valid counter"),
    )
}

fn gauge(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    registered(
        registry,
        IntGaugeVec::new(Opts::new(name, help), labels).expect("valid gauge"),
    )
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

    /// Declares the served model, so that its series exist (at zero) before the first request.
    /// A version's series exist (at 0) from the moment it is configured.
    pub fn declare_model(&self, model: &str, version: &str) {
        let labels = &[model, version];
        self.requests_running.with_label_values(labels);
        self.requests_waiting.with_label_values(labels);
        self.client_disconnects.with_label_values(labels);
        self.prompt_tokens.with_label_values(labels);
        self.generation_tokens.with_label_values(labels);
    }

    /// Per alias: whether a request for it would be served now.
    pub fn set_ready(&self, alias: &str, ready: bool) {
        self.ready.with_label_values(&[alias]).set(i64::from(ready));
    }

    pub fn set_model_loaded(&self, model: &str, version: &str, loaded: bool) {
        self.model_loaded
            .with_label_values(&[model, version])
            .set(i64::from(loaded));
    }

    /// A version's queue and engine, read at scrape time.
    pub fn set_load(
        &self,
        model: &str,
        version: &str,
        running: usize,
        waiting: usize,
        engine_sequences: usize,
    ) {
        let labels = &[model, version];
        self.requests_running
            .with_label_values(labels)
            .set(running as i64);
        self.requests_waiting
            .with_label_values(labels)
            .set(waiting as i64);
        self.engine_sequences
            .with_label_values(labels)
            .set(engine_sequences as i64);
    }

    /// The whole server's load and KV cache, for an inference gateway's endpoint picker: totals over every
    /// loaded version, the KV use weighted by each cache's blocks.
    pub fn set_server_load(&self, running: usize, waiting: usize, caches: &[KvCacheState]) {
        self.num_requests_running.set(running as i64);
        self.num_requests_waiting.set(waiting as i64);
        let total_blocks: usize = caches.iter().map(|c| c.total_blocks).sum();
        let used: f64 = caches.iter().map(|c| c.usage * c.total_blocks as f64).sum();
        self.kv_cache_usage.set(if total_blocks == 0 {
            0.0
        } else {
            (used / total_blocks as f64).clamp(0.0, 1.0)
        });
        // One series: a changed configuration (a model swapped) replaces the old labels.
        self.cache_config_info.reset();
        if let Some(first) = caches.first() {
            self.cache_config_info
                .with_label_values(&[&first.block_size.to_string(), &total_blocks.to_string()])
                .set(1);
        }
    }

    /// The engine's step counts, read at scrape time. A count below the last one seen (an engine reloaded)
    /// starts a new baseline rather than moving a counter backwards.
    pub fn record_engine_steps(&self, model: &str, version: &str, counts: StepCounts) {
        let mut seen = self.engine_steps_seen.lock().expect("engine steps lock");
        let last = seen
            .entry((model.to_string(), version.to_string()))
            .or_default();
        let advance = |now: u64, before: u64| now.checked_sub(before).unwrap_or(now);
        for (kind, steps, sequences, steps_before, sequences_before) in [
            (
                "prompt",
                counts.prompt_steps,
                counts.prompt_sequences,
                last.prompt_steps,
                last.prompt_sequences,
            ),
            (
                "decode",
                counts.decode_steps,
                counts.decode_sequences,
                last.decode_steps,
                last.decode_sequences,
            ),
        ] {
            self.engine_steps
                .with_label_values(&[model, version, kind])
                .inc_by(advance(steps, steps_before));
            self.engine_step_sequences
                .with_label_values(&[model, version, kind])
                .inc_by(advance(sequences, sequences_before));
        }
        self.prefix_cache_hits
            .with_label_values(&[model, version])
            .inc_by(advance(counts.prefix_cache_hits, last.prefix_cache_hits));
        *last = counts;
    }

    /// One gap between generated tokens; `tokens` > 1 when one engine event covered several.
    pub fn observe_token_gap(&self, model: &str, version: &str, gap: Duration, tokens: usize) {
        let histogram = self
            .inter_token_latency
            .with_label_values(&[model, version]);
        let per_token = gap.as_secs_f64() / tokens.max(1) as f64;
        for _ in 0..tokens.max(1) {
            histogram.observe(per_token);
        }
    }

    pub fn observe_request(&self, outcome: &RequestOutcome<'_>) {
        if let Some(key) = outcome.key_id {
            // A 429 from a full queue is the server's overload, not the key's limit: an `error`.
            let result = match (outcome.status, outcome.error) {
                (_, Some("rate_limit_exceeded")) => "rate_limited",
                (401 | 403, _) => "denied",
                (_, Some(_)) => "error",
                _ if outcome.status >= 400 => "error",
                _ => "ok",
            };
            self.key_requests.with_label_values(&[key, result]).inc();
            if outcome.queue_time.is_some() {
                for (kind, tokens) in [
                    ("prompt", outcome.prompt_tokens),
                    ("completion", outcome.completion_tokens),
                ] {
                    self.key_tokens
                        .with_label_values(&[key, kind])
                        .inc_by(tokens.unwrap_or(0) as u64);
                }
            }
        }
        let transport = match outcome.grpc_code {
            Some(code) => {
                self.grpc_requests
                    .with_label_values(&[outcome.route, code])
                    .inc();
                "grpc"
            }
            None => {
                let status = outcome.status.to_string();
                self.http_requests
                    .with_label_values(&[outcome.route, outcome.method, &status])
                    .inc();
                self.http_request_duration
                    .with_label_values(&[outcome.route, outcome.method])
                    .observe(outcome.duration.as_secs_f64());
                "http"
            }
        };
        if let Some(reason) = outcome.error.filter(|e| REJECTION_REASONS.contains(e)) {
            // A refusal is counted whether it came as a status or, for a queued stream, as an error event.
            if outcome.time_to_first_token.is_none() {
                self.requests_rejected.with_label_values(&[reason]).inc();
                return;
            }
        }
        let (Some(model), Some(version)) = (outcome.model, outcome.model_version) else {
            return;
        };
        let Some(queue_time) = outcome.queue_time else {
            // Refused before admission (validation, context length): no generation to measure.
            return;
        };
        let m = &[model, version];
        self.request_queue_time
            .with_label_values(m)
            .observe(queue_time.as_secs_f64());
        if let Some(ttft) = outcome.time_to_first_token {
            self.time_to_first_token
                .with_label_values(m)
                .observe(ttft.as_secs_f64());
        }
        self.e2e_request_latency
            .with_label_values(m)
            .observe(outcome.duration.as_secs_f64());
        let prompt_tokens = outcome.prompt_tokens.unwrap_or(0);
        let completion_tokens = outcome.completion_tokens.unwrap_or(0);
        self.prompt_tokens
            .with_label_values(m)
            .inc_by(prompt_tokens as u64);
        self.request_prompt_tokens
            .with_label_values(m)
            .observe(prompt_tokens as f64);
        if outcome.completion_tokens.is_some() {
            self.generation_tokens
                .with_label_values(m)
                .inc_by(completion_tokens as u64);
            self.request_generation_tokens
                .with_label_values(m)
                .observe(completion_tokens as f64);
        }
        let ended = if outcome.client_disconnected {
            self.client_disconnects.with_label_values(m).inc();
            "abort"
        } else if outcome.error.is_some() {
            "error"
        } else {
            outcome.finish_reason.unwrap_or("stop")
        };
        self.requests
            .with_label_values(&[model, version, ended, transport])
            .inc();
    }

    /// The Prometheus text exposition of every series.
    pub fn set_limits_replicas(&self, replicas: u32) {
        self.limits_replicas.set(i64::from(replicas));
    }

    pub fn set_limits_shared(&self, shared: bool) {
        self.limits_shared.set(i64::from(shared));
    }

    /// A key's series exist (at 0) from the moment it is configured.
    pub fn declare_key(&self, key: &str) {
        for outcome in ["ok", "rate_limited", "denied", "error"] {
            self.key_requests.with_label_values(&[key, outcome]);
        }
        for kind in ["prompt", "completion"] {
            self.key_tokens.with_label_values(&[key, kind]);
        }
    }

    /// A key's totals since start: requests by outcome, then prompt and completion tokens.
    pub fn key_usage(&self, key: &str) -> (Vec<(&'static str, u64)>, u64, u64) {
        let requests = ["ok", "rate_limited", "denied", "error"]
            .into_iter()
            .map(|o| (o, self.key_requests.with_label_values(&[key, o]).get()))
            .collect();
        let tokens = |kind| self.key_tokens.with_label_values(&[key, kind]).get();
        (requests, tokens("prompt"), tokens("completion"))
    }

    pub fn render(&self) -> String {
        self.process.refresh();
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .expect("text encoding of valid metrics");
        String::from_utf8(out).expect("the text format is UTF-8")
    }
}

fn build_features() -> &'static str {
    if cfg!(feature = "cuda") {
        "cuda"
    } else {
        "cpu"
    }
}

/// The standard `process_*` series, read from `/proc/self` at scrape time (Linux; absent elsewhere).
struct ProcessMetrics {
    cpu_seconds: Counter,
    resident_memory: IntGauge,
    virtual_memory: IntGauge,
    open_fds: IntGauge,
    max_fds: IntGauge,
    start_time: Gauge,
    threads: IntGauge,
}

/// Linux reports CPU time in clock ticks of `USER_HZ`, which is 100 on every Linux ABI we build for.
const CLOCK_TICKS_PER_SECOND: f64 = 100.0;
const PAGE_SIZE: i64 = 4096;

impl ProcessMetrics {
    fn new(r: &Registry) -> Self {
        let gauge_f =
            |name: &str, help: &str| registered(r, Gauge::new(name, help).expect("valid gauge"));
        let gauge_i =
            |name: &str, help: &str| registered(r, IntGauge::new(name, help).expect("valid gauge"));
        ProcessMetrics {
            cpu_seconds: registered(
                r,
                Counter::new(
                    "process_cpu_seconds_total",
                    "Total user and system CPU time spent in seconds.",
                )
                .expect("valid counter"),
            ),
            resident_memory: gauge_i(
                "process_resident_memory_bytes",
                "Resident memory size in bytes.",
            ),
            virtual_memory: gauge_i(
                "process_virtual_memory_bytes",
                "Virtual memory size in bytes.",
            ),
            open_fds: gauge_i("process_open_fds", "Number of open file descriptors."),
            max_fds: gauge_i(
                "process_max_fds",
                "Maximum number of open file descriptors.",
            ),
            start_time: gauge_f(
                "process_start_time_seconds",
                "Start time of the process since unix epoch in seconds.",
            ),
            threads: gauge_i("process_threads", "Number of OS threads in the process."),
        }
    }

    fn refresh(&self) {
        let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
            return;
        };
        // Fields after the command name, which is parenthesised and may contain spaces.
        let Some(after_name) = stat.rfind(')').map(|i| &stat[i + 2..]) else {
            return;
        };
        let fields: Vec<&str> = after_name.split_whitespace().collect();
        // Field numbers from proc(5), minus 3 (pid, comm and state are not in `fields` as counted here).
        let field = |n: usize| fields.get(n - 3).and_then(|v| v.parse::<f64>().ok());
        if let (Some(utime), Some(stime)) = (field(14), field(15)) {
            // The kernel's total is monotonic: the counter follows it by its increments.
            let total = (utime + stime) / CLOCK_TICKS_PER_SECOND;
            let delta = total - self.cpu_seconds.get();
            if delta > 0.0 {
                self.cpu_seconds.inc_by(delta);
            }
        }
        if let Some(threads) = field(20) {
            self.threads.set(threads as i64);
        }
        if let Some(vsize) = field(23) {
            self.virtual_memory.set(vsize as i64);
        }
        if let Some(rss) = field(24) {
            self.resident_memory.set(rss as i64 * PAGE_SIZE);
        }
        if let (Some(start_ticks), Some(boot)) = (field(22), boot_time()) {
            self.start_time
                .set(boot + start_ticks / CLOCK_TICKS_PER_SECOND);
        }
        if let Ok(dir) = std::fs::read_dir("/proc/self/fd") {
            self.open_fds.set(dir.count() as i64);
        }
        if let Some(max) = max_open_files() {
            self.max_fds.set(max);
        }
    }
}

fn boot_time() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    stat.lines()
        .find_map(|line| line.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())
}

fn max_open_files() -> Option<i64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits
        .lines()
        .find(|line| line.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_buckets_follow_1_2_5_up_to_the_context() {
        assert_eq!(
            token_buckets(8192),
            vec![1., 2., 5., 10., 20., 50., 100., 200., 500., 1000., 2000., 5000.]
        );
    }

    /// The series an inference gateway's endpoint picker reads by name: one per server, KV use weighted
    /// by each cache's size, and one cache-config series that follows a swapped model.
    #[test]
    fn the_server_load_is_one_series_each_whatever_the_models() {
        let metrics = Metrics::new();
        let series = |text: &str, name: &str| -> Vec<String> {
            text.lines()
                .filter(|l| l.starts_with(name) && !l.starts_with('#'))
                .map(str::to_string)
                .collect()
        };
        metrics.set_server_load(0, 0, &[]);
        let text = metrics.render();
        assert_eq!(
            series(&text, "llmserve_kv_cache_usage_perc"),
            ["llmserve_kv_cache_usage_perc 0"]
        );
        assert!(series(&text, "llmserve_cache_config_info").is_empty());

        let cache = |total_blocks, usage| KvCacheState {
            block_size: 32,
            total_blocks,
            usage,
        };
        metrics.set_server_load(3, 7, &[cache(100, 0.5), cache(300, 0.1)]);
        let text = metrics.render();
        assert_eq!(
            series(&text, "llmserve_num_requests_running"),
            ["llmserve_num_requests_running 3"]
        );
        assert_eq!(
            series(&text, "llmserve_num_requests_waiting"),
            ["llmserve_num_requests_waiting 7"]
        );
        // (50 + 30) of 400 blocks.
        assert_eq!(
            series(&text, "llmserve_kv_cache_usage_perc"),
            ["llmserve_kv_cache_usage_perc 0.2"]
        );
        assert_eq!(
            series(&text, "llmserve_cache_config_info"),
            ["llmserve_cache_config_info{block_size=\"32\",num_gpu_blocks=\"400\"} 1"]
        );
        metrics.set_server_load(0, 0, &[cache(50, 1.0)]);
        let text = metrics.render();
        assert_eq!(
            series(&text, "llmserve_cache_config_info"),
            ["llmserve_cache_config_info{block_size=\"32\",num_gpu_blocks=\"50\"} 1"]
        );
        assert_eq!(
            series(&text, "llmserve_kv_cache_usage_perc"),
            ["llmserve_kv_cache_usage_perc 1"]
        );
    }

    #[test]
    fn a_finished_stream_fills_the_request_series() {
        let metrics = Metrics::new();
        metrics.declare_model("m", "v");
        metrics.observe_request(&RequestOutcome {
            route: "/v1/chat/completions",
            method: "POST",
            status: 200,
            duration: Duration::from_millis(900),
            model: Some("m"),
            model_version: Some("v"),
            prompt_tokens: Some(12),
            completion_tokens: Some(5),
            finish_reason: Some("length"),
            queue_time: Some(Duration::from_millis(3)),
            time_to_first_token: Some(Duration::from_millis(120)),
            ..Default::default()
        });
        metrics.observe_token_gap("m", "v", Duration::from_millis(40), 2);
        let text = metrics.render();
        for line in [
            "llmserve_requests_total{finish_reason=\"length\",model=\"m\",model_version=\"v\",transport=\"http\"} 1",
            "llmserve_prompt_tokens_total{model=\"m\",model_version=\"v\"} 12",
            "llmserve_generation_tokens_total{model=\"m\",model_version=\"v\"} 5",
            "llmserve_time_to_first_token_seconds_count{model=\"m\",model_version=\"v\"} 1",
            "llmserve_inter_token_latency_seconds_count{model=\"m\",model_version=\"v\"} 2",
            "llmserve_inter_token_latency_seconds_bucket{model=\"m\",model_version=\"v\",le=\"0.025\"} 2",
            "llmserve_http_requests_total{method=\"POST\",route=\"/v1/chat/completions\",status=\"200\"} 1",
            "llmserve_requests_rejected_total{reason=\"overloaded\"} 0",
            "llmserve_client_disconnects_total{model=\"m\",model_version=\"v\"} 0",
        ] {
            assert!(text.contains(line), "missing `{line}` in\n{text}");
        }
        assert!(text.contains("process_resident_memory_bytes "));
        assert!(text.contains("llmserve_build_info{"));
    }

    #[test]
    fn refusals_count_as_rejections_and_disconnects_as_aborts() {
        let metrics = Metrics::new();
        metrics.observe_request(&RequestOutcome {
            route: "/v1/completions",
            method: "POST",
            status: 429,
            model: Some("m"),
            model_version: Some("v"),
            error: Some("overloaded"),
            ..Default::default()
        });
        metrics.observe_request(&RequestOutcome {
            route: "/v1/completions",
            method: "POST",
            status: 200,
            model: Some("m"),
            model_version: Some("v"),
            queue_time: Some(Duration::ZERO),
            time_to_first_token: Some(Duration::from_millis(50)),
            completion_tokens: Some(3),
            client_disconnected: true,
            ..Default::default()
        });
        let text = metrics.render();
        assert!(text.contains("llmserve_requests_rejected_total{reason=\"overloaded\"} 1"));
        assert!(text.contains(
            "llmserve_requests_total{finish_reason=\"abort\",model=\"m\",model_version=\"v\",transport=\"http\"} 1"
        ));
        assert!(
            text.contains("llmserve_client_disconnects_total{model=\"m\",model_version=\"v\"} 1")
        );
    }
}
