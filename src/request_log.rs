//! The request log, whatever the transport: a request's id, span and facts (model, key, tokens, timings),
//! and one log line per request or gRPC call, written when its response has ended (finished or dropped),
//! so a stream's line carries its token counts, its time to first token, and whether the client went away
//! before the end. The same moment feeds the request metrics and the exported spans, and runs the hooks
//! that settle the request's quota. The HTTP side (the actix middleware that opens the log and the body
//! that ends it) is `routes::http_log`; tracing's set-up is [`crate::telemetry`].

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use crate::error::ApiError;
use crate::metrics::{Metrics, RequestOutcome};
use crate::otlp::{AttributeValue, FinishedSpan, SpanExporter, TraceContext};

pub const REQUEST_ID_HEADER: &str = "x-request-id";
/// The status a request's line carries when its client went away before the response began.
pub(crate) const CLIENT_CLOSED_REQUEST: u16 = 499;
/// Lines of refused or failed requests without a key: at most this many per second, the rest counted
/// into the next one written (anyone can send malformed requests; nobody can flood the log with them).
const ANONYMOUS_LINES_PER_SECOND: u32 = 20;

/// A per-second budget of log lines; what it refuses is counted and reported with the next line let
/// through.
struct LineBudget {
    state: Mutex<(Instant, u32, u64)>,
}

impl LineBudget {
    fn new() -> Self {
        LineBudget {
            state: Mutex::new((Instant::now(), 0, 0)),
        }
    }

    /// `Some(lines suppressed before this one)` when a line may be written now.
    fn allow(&self) -> Option<u64> {
        let mut state = self.state.lock().expect("line budget lock");
        let (window, written, suppressed) = &mut *state;
        if window.elapsed() >= Duration::from_secs(1) {
            *window = Instant::now();
            *written = 0;
        }
        if *written >= ANONYMOUS_LINES_PER_SECOND {
            *suppressed += 1;
            return None;
        }
        *written += 1;
        Some(std::mem::take(suppressed))
    }
}

fn anonymous_lines() -> &'static LineBudget {
    static BUDGET: std::sync::OnceLock<LineBudget> = std::sync::OnceLock::new();
    BUDGET.get_or_init(LineBudget::new)
}

/// A failure of ours (a 5xx that is not an expected refusal), logged once, in full, inside the
/// request's span: at error level for a keyed caller, at most warn (and within the anonymous budget) for
/// one without a key. The client gets the clean message.
pub(crate) fn log_failure(error: &ApiError, keyed: bool) {
    if keyed {
        tracing::error!(error = %error, code = error.label(), "request failed");
    } else if let Some(suppressed) = anonymous_lines().allow() {
        tracing::warn!(error = %error, code = error.label(), suppressed_lines = suppressed, "request failed");
    }
}
/// W3C trace context: the caller's trace, continued in our spans and logs.
pub const TRACEPARENT_HEADER: &str = "traceparent";
/// Longest client-supplied request id echoed back; longer or non-printable ones are replaced.
const MAX_REQUEST_ID_LEN: usize = 128;

/// What a handler learns about a request, for its log line.
#[derive(Debug, Default)]
struct RequestFacts {
    /// The API key's id (never the key).
    key_id: Option<String>,
    /// What the client asked for: an alias or a `model@version` id.
    requested_model: Option<String>,
    model: Option<String>,
    model_version: Option<String>,
    prompt_tokens: Option<usize>,
    completion_tokens: Option<usize>,
    finish_reason: Option<&'static str>,
    error: Option<&'static str>,
    first_token_after: Option<Duration>,
    /// Time from arrival to holding a slot (validation and prompt counting included).
    admitted_after: Option<Duration>,
    last_token_at: Option<Instant>,
}

/// A handle on the current request's log facts; cheap to clone into a response stream.
#[derive(Clone)]
pub struct RequestLog {
    started: Instant,
    facts: Arc<Mutex<RequestFacts>>,
    metrics: Option<Arc<Metrics>>,
}

impl std::fmt::Debug for RequestLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestLog")
            .field("facts", &self.facts)
            .finish_non_exhaustive()
    }
}

impl Default for RequestLog {
    fn default() -> Self {
        RequestLog::new(None)
    }
}

impl RequestLog {
    pub(crate) fn new(metrics: Option<Arc<Metrics>>) -> Self {
        RequestLog {
            started: Instant::now(),
            facts: Arc::default(),
            metrics,
        }
    }

    fn update(&self, f: impl FnOnce(&mut RequestFacts)) {
        f(&mut self.facts.lock().expect("request facts lock"));
    }

    /// `requested`: what the client sent (or the default alias); `model` and `version`: what answers.
    pub fn set_model(&self, requested: &str, model: &str, version: &str) {
        self.update(|facts| {
            facts.requested_model = Some(requested.to_string());
            facts.model = Some(model.to_string());
            facts.model_version = Some(version.to_string());
        });
    }
    /// The caller's API key id.
    /// The API key's id, once known.
    pub fn key_id(&self) -> Option<String> {
        self.facts
            .lock()
            .expect("request facts lock")
            .key_id
            .clone()
    }

    pub fn set_key(&self, key_id: &str) {
        self.update(|facts| facts.key_id = Some(key_id.to_string()));
    }
    pub fn set_prompt_tokens(&self, tokens: usize) {
        self.update(|facts| facts.prompt_tokens = Some(tokens));
    }
    pub fn set_completion_tokens(&self, tokens: usize) {
        self.update(|facts| facts.completion_tokens = Some(tokens));
    }
    pub fn set_finish_reason(&self, reason: &'static str) {
        self.update(|facts| facts.finish_reason = Some(reason));
    }
    pub fn set_error(&self, label: &'static str) {
        self.update(|facts| facts.error = Some(label));
    }
    /// Records when the request got its slot; its sequences go to the engine right then, so this is also
    /// where the engine's own time to first token starts.
    pub fn admitted(&self) {
        let elapsed = self.started.elapsed();
        self.update(|facts| facts.admitted_after = Some(elapsed));
    }
    /// Records generated tokens as they reach the response: the first sets the time to first token,
    /// later ones the inter-token latency.
    pub fn tokens_arrived(&self, tokens: usize) {
        let now = Instant::now();
        let mut facts = self.facts.lock().expect("request facts lock");
        facts.first_token_after.get_or_insert(now - self.started);
        let previous = facts.last_token_at.replace(now);
        if let (Some(previous), Some(metrics), Some(model), Some(version)) = (
            previous,
            &self.metrics,
            facts.model.as_deref(),
            facts.model_version.as_deref(),
        ) {
            metrics.observe_token_gap(model, version, now - previous, tokens);
        }
    }
}

/// The caller's request id when it is short visible ASCII, else a fresh one.
pub(crate) fn accepted_request_id(given: Option<&str>) -> String {
    given
        .filter(|v| {
            !v.is_empty()
                && v.len() <= MAX_REQUEST_ID_LEN
                && v.bytes().all(|b| b.is_ascii_graphic())
        })
        .map(str::to_string)
        .unwrap_or_else(|| crate::ids::random_id(24))
}

/// One request's line: written (with its metrics and spans) when dropped, at the end of its response.
pub(crate) struct LogLine {
    pub(crate) span: tracing::Span,
    pub(crate) request_id: String,
    pub(crate) method: String,
    pub(crate) path: String,
    pub(crate) route: String,
    /// The HTTP status; for a gRPC call, that of the error it ended with (200 when OK).
    pub(crate) status: u16,
    /// Set for gRPC calls: the status code's name (`OK`, `INVALID_ARGUMENT`…).
    pub(crate) grpc_code: Option<&'static str>,
    pub(crate) log: RequestLog,
    pub(crate) completed: bool,
    /// Set when spans are exported (`--otlp-endpoint`).
    pub(crate) trace: Option<(SpanExporter, TraceContext, SystemTime)>,
}

impl LogLine {
    /// The request's server span, and its queue and generation children, for OTLP export.
    fn spans(
        &self,
        facts: &RequestFacts,
        trace: &TraceContext,
        started_at: SystemTime,
        duration: Duration,
    ) -> Vec<FinishedSpan> {
        use AttributeValue::{Bool, Int, Str};
        let end = started_at + duration;
        let mut attributes = vec![
            ("http.request.method", Str(self.method.clone())),
            ("http.route", Str(self.route.clone())),
            ("url.path", Str(self.path.clone())),
            ("http.response.status_code", Int(i64::from(self.status))),
            ("llmserve.request_id", Str(self.request_id.clone())),
            ("llmserve.client_disconnected", Bool(!self.completed)),
        ];
        let optional = [
            (
                "gen_ai.request.model",
                facts.requested_model.clone().map(Str),
            ),
            (
                "gen_ai.response.model",
                facts
                    .model
                    .as_deref()
                    .zip(facts.model_version.as_deref())
                    .map(|(m, v)| Str(crate::config::models::version_id(m, v))),
            ),
            (
                "llmserve.model_version",
                facts.model_version.clone().map(Str),
            ),
            (
                "gen_ai.usage.input_tokens",
                facts.prompt_tokens.map(|t| Int(t as i64)),
            ),
            (
                "gen_ai.usage.output_tokens",
                facts.completion_tokens.map(|t| Int(t as i64)),
            ),
            (
                "gen_ai.response.finish_reasons",
                facts.finish_reason.map(|r| Str(r.to_string())),
            ),
            ("error.type", facts.error.map(|e| Str(e.to_string()))),
            (
                "llmserve.time_to_first_token_ms",
                facts
                    .first_token_after
                    .map(|d| AttributeValue::Double(d.as_secs_f64() * 1000.0)),
            ),
        ];
        attributes.extend(optional.into_iter().filter_map(|(k, v)| Some((k, v?))));
        let server = FinishedSpan {
            trace_id: trace.trace_id.clone(),
            span_id: trace.span_id.clone(),
            parent_span_id: trace.parent_span_id.clone(),
            name: format!("{} {}", self.method, self.route),
            kind: 2,
            start: started_at,
            end,
            attributes,
            error: (self.status >= 500 || facts.error.is_some())
                .then(|| facts.error.unwrap_or("server_error").to_string()),
        };
        let mut spans = Vec::with_capacity(3);
        if let Some(admitted) = facts.admitted_after {
            spans.push(server.child("llmserve.queue", started_at, started_at + admitted));
            spans.push(server.child("llmserve.generate", started_at + admitted, end));
        }
        spans.insert(0, server);
        spans
    }
}

impl Drop for LogLine {
    fn drop(&mut self) {
        let facts = self.log.facts.lock().expect("request facts lock");
        let duration = self.log.started.elapsed();
        if let Some(metrics) = &self.log.metrics {
            metrics.observe_request(&RequestOutcome {
                route: &self.route,
                method: &self.method,
                status: self.status,
                grpc_code: self.grpc_code,
                duration,
                model: facts.model.as_deref(),
                model_version: facts.model_version.as_deref(),
                key_id: facts.key_id.as_deref(),
                prompt_tokens: facts.prompt_tokens,
                completion_tokens: facts.completion_tokens,
                finish_reason: facts.finish_reason,
                error: facts.error,
                queue_time: facts.admitted_after,
                time_to_first_token: facts.first_token_after,
                client_disconnected: !self.completed,
            });
        }
        if let Some((exporter, trace, started_at)) = &self.trace {
            if trace.sampled {
                exporter.export(self.spans(&facts, trace, *started_at, duration));
            }
        }
        let duration_ms = duration.as_secs_f64() * 1000.0;
        let ttft_ms = facts.first_token_after.map(|d| d.as_secs_f64() * 1000.0);
        let queue_ms = facts.admitted_after.map(|d| d.as_secs_f64() * 1000.0);
        // What the engine itself took to the first token; ttft_ms minus this is our overhead.
        let engine_ttft_ms = facts
            .first_token_after
            .zip(facts.admitted_after)
            .map(|(first, admitted)| first.saturating_sub(admitted).as_secs_f64() * 1000.0);
        let _entered = self.span.enter();
        // Probes and scrapes run every few seconds: they stay out of the info log (a refused scrape, a
        // scraper without its key, does not: it falls to the anonymous budget below).
        if self.path.starts_with("/health") || (self.path == "/metrics" && self.status < 400) {
            tracing::debug!(method = %self.method, path = %self.path, status = self.status, duration_ms, "request");
            return;
        }
        // Refused or failed without a key: within the anonymous budget only (metrics count them all).
        let mut suppressed_lines = None;
        if facts.key_id.is_none() && self.status >= 400 && self.status != CLIENT_CLOSED_REQUEST {
            match anonymous_lines().allow() {
                Some(n) => suppressed_lines = Some(n).filter(|n| *n > 0),
                None => return,
            }
        }
        tracing::info!(
            suppressed_lines,
            method = %self.method,
            path = %self.path,
            status = self.status,
            grpc_code = self.grpc_code,
            key_id = facts.key_id.as_deref(),
            requested_model = facts.requested_model.as_deref(),
            model = facts.model.as_deref(),
            model_version = facts.model_version.as_deref(),
            prompt_tokens = facts.prompt_tokens,
            completion_tokens = facts.completion_tokens,
            finish_reason = facts.finish_reason,
            error = facts.error,
            queue_ms,
            ttft_ms,
            engine_ttft_ms,
            duration_ms,
            client_disconnected = !self.completed,
            "request"
        );
    }
}

/// A gRPC call's context: its request id, span and log facts; its log line, metrics and spans are written
/// when the call ends (its response stream finished or dropped) as for an HTTP request.
pub struct CallLog {
    line: LogLine,
}

impl CallLog {
    /// `path` is the gRPC method path (`/llmserve.v1.Llmserve/Generate`); `request_id` and `traceparent`
    /// come from the call's metadata.
    pub fn grpc(
        path: &str,
        request_id: Option<&str>,
        traceparent: Option<&str>,
        metrics: Option<Arc<Metrics>>,
        exporter: Option<SpanExporter>,
    ) -> CallLog {
        let id = accepted_request_id(request_id);
        let trace = TraceContext::from_traceparent(traceparent);
        let span = tracing::info_span!(
            "request",
            request_id = %id,
            trace_id = %trace.trace_id,
            span_id = %trace.span_id
        );
        CallLog {
            line: LogLine {
                span,
                request_id: id,
                method: "POST".to_string(),
                path: path.to_string(),
                route: path.to_string(),
                status: 200,
                grpc_code: Some("OK"),
                log: RequestLog::new(metrics),
                completed: false,
                trace: exporter.map(|exporter| (exporter, trace, SystemTime::now())),
            },
        }
    }

    pub fn request_id(&self) -> &str {
        &self.line.request_id
    }

    pub fn span(&self) -> tracing::Span {
        self.line.span.clone()
    }

    /// The facts the core records for this call.
    pub fn log(&self) -> RequestLog {
        self.line.log.clone()
    }

    /// The call ended with an error: its HTTP-equivalent status and its gRPC code's name.
    pub fn failed(&mut self, status: u16, grpc_code: &'static str, label: &'static str) {
        self.line.status = status;
        self.line.grpc_code = Some(grpc_code);
        self.line.log.set_error(label);
    }

    /// The call's response ended as it should (not cut short by the client).
    pub fn completed(&mut self) {
        self.line.completed = true;
    }
}
