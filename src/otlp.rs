//! W3C trace context and OTLP/HTTP (JSON) export of one server span per request, with queue and generation
//! child spans.
//!
//! Why not the opentelemetry SDK: `opentelemetry_sdk` 0.31 turns on `futures-executor/default`, a feature
//! change that recompiles most of mistral.rs's ~650-crate tree (measured with `cargo tree -e features`).
//! What we export is small and fixed (one request = one server span and two children), and OTLP/HTTP with
//! JSON encoding is a stable protocol, so a batched exporter over the reqwest client already in the tree
//! does it without that cost.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rand::Rng;
use serde_json::{json, Value};
use tokio::sync::mpsc;

/// Spans buffered for export; beyond it new spans are dropped (a slow collector never slows requests).
const QUEUE_CAPACITY: usize = 4096;
/// Most spans per export request.
const MAX_BATCH: usize = 512;
/// How often buffered spans are sent.
const EXPORT_INTERVAL: Duration = Duration::from_secs(1);
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

/// A request's place in a distributed trace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceContext {
    /// 32 lowercase hex digits.
    pub trace_id: String,
    /// This server's span for the request, 16 hex digits.
    pub span_id: String,
    /// The caller's span, from `traceparent`.
    pub parent_span_id: Option<String>,
    pub sampled: bool,
}

/// `bytes` (1–16) random bytes as lowercase hex, formatted at once: this runs twice per request.
fn random_hex(bytes: usize) -> String {
    let mut rng = rand::rng();
    loop {
        let id = rng.random::<u128>() >> (128 - 8 * bytes);
        // All-zero ids are invalid in W3C trace context.
        if id != 0 {
            return format!("{id:0width$x}", width = 2 * bytes);
        }
    }
}

fn is_hex_id(text: &str, len: usize) -> bool {
    text.len() == len
        && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        && text.bytes().any(|b| b != b'0')
}

impl TraceContext {
    /// Continues the caller's trace from a W3C `traceparent` header, or starts a new one when it is absent
    /// or malformed (as the W3C spec asks: an invalid header is ignored, never an error).
    pub fn from_traceparent(header: Option<&str>) -> Self {
        let parsed = header.and_then(|value| {
            let mut parts = value.trim().split('-');
            let (version, trace_id, parent, flags) =
                (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
            let version_ok =
                version.len() == 2 && version != "ff" && u8::from_str_radix(version, 16).is_ok();
            // Version 00 has exactly four fields; later versions may append more.
            if !version_ok || (version == "00" && parts.next().is_some()) {
                return None;
            }
            let flags = u8::from_str_radix(flags, 16)
                .ok()
                .filter(|_| flags.len() == 2)?;
            (is_hex_id(trace_id, 32) && is_hex_id(parent, 16))
                .then(|| (trace_id.to_string(), parent.to_string(), flags & 1 == 1))
        });
        match parsed {
            Some((trace_id, parent, sampled)) => TraceContext {
                trace_id,
                span_id: random_hex(8),
                parent_span_id: Some(parent),
                sampled,
            },
            None => TraceContext {
                trace_id: random_hex(16),
                span_id: random_hex(8),
                parent_span_id: None,
                sampled: true,
            },
        }
    }
}

/// One attribute value, in OTLP's JSON shapes.
#[derive(Debug, Clone)]
pub enum AttributeValue {
    Str(String),
    Int(i64),
    Double(f64),
    Bool(bool),
}

impl AttributeValue {
    fn to_json(&self) -> Value {
        match self {
            AttributeValue::Str(v) => json!({"stringValue": v}),
            // int64 travels as a decimal string in OTLP/JSON.
            AttributeValue::Int(v) => json!({"intValue": v.to_string()}),
            AttributeValue::Double(v) => json!({"doubleValue": v}),
            AttributeValue::Bool(v) => json!({"boolValue": v}),
        }
    }
}

/// A finished span, ready to export.
#[derive(Debug, Clone)]
pub struct FinishedSpan {
    pub trace_id: String,
    pub span_id: String,
    pub parent_span_id: Option<String>,
    pub name: String,
    /// OTLP span kind: 1 internal, 2 server.
    pub kind: u8,
    pub start: SystemTime,
    pub end: SystemTime,
    pub attributes: Vec<(&'static str, AttributeValue)>,
    pub error: Option<String>,
}

fn unix_nanos(time: SystemTime) -> String {
    time.duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos()
        .to_string()
}

impl FinishedSpan {
    fn to_json(&self) -> Value {
        let attributes: Vec<Value> = self
            .attributes
            .iter()
            .map(|(key, value)| json!({"key": key, "value": value.to_json()}))
            .collect();
        let status = match &self.error {
            Some(message) => json!({"code": 2, "message": message}),
            None => json!({"code": 0}),
        };
        json!({
            "traceId": self.trace_id,
            "spanId": self.span_id,
            "parentSpanId": self.parent_span_id.clone().unwrap_or_default(),
            "name": self.name,
            "kind": self.kind,
            "startTimeUnixNano": unix_nanos(self.start),
            "endTimeUnixNano": unix_nanos(self.end),
            "attributes": attributes,
            "status": status,
        })
    }

    /// A child span of this one.
    pub fn child(&self, name: &str, start: SystemTime, end: SystemTime) -> FinishedSpan {
        FinishedSpan {
            trace_id: self.trace_id.clone(),
            span_id: random_hex(8),
            parent_span_id: Some(self.span_id.clone()),
            name: name.to_string(),
            kind: 1,
            start,
            end,
            attributes: Vec::new(),
            error: None,
        }
    }
}

/// The OTLP/HTTP `ExportTraceServiceRequest` body for a batch of spans.
fn export_body(service_name: &str, spans: &[FinishedSpan]) -> Value {
    json!({
        "resourceSpans": [{
            "resource": {"attributes": [
                {"key": "service.name", "value": {"stringValue": service_name}},
                {"key": "service.version", "value": {"stringValue": env!("CARGO_PKG_VERSION")}},
            ]},
            "scopeSpans": [{
                "scope": {"name": "llmserve", "version": env!("CARGO_PKG_VERSION")},
                "spans": spans.iter().map(FinishedSpan::to_json).collect::<Vec<_>>(),
            }],
        }]
    })
}

/// Hands finished spans to the background exporter; cheap to clone.
#[derive(Debug, Clone)]
pub struct SpanExporter {
    sender: mpsc::Sender<FinishedSpan>,
}

impl SpanExporter {
    /// Starts the exporter task for `endpoint` (the collector's base URL, e.g. `http://collector:4318`;
    /// spans go to `{endpoint}/v1/traces`). Call inside a tokio runtime.
    pub fn start(endpoint: &str, service_name: String) -> SpanExporter {
        let url = format!("{}/v1/traces", endpoint.trim_end_matches('/'));
        let (sender, receiver) = mpsc::channel(QUEUE_CAPACITY);
        tokio::spawn(export_loop(url, service_name, receiver));
        SpanExporter { sender }
    }

    /// Queues spans for export, dropping them if the queue is full.
    pub fn export(&self, spans: impl IntoIterator<Item = FinishedSpan>) {
        for span in spans {
            if self.sender.try_send(span).is_err() {
                tracing::debug!("OTLP span queue full: span dropped");
            }
        }
    }
}

async fn export_loop(
    url: String,
    service_name: String,
    mut receiver: mpsc::Receiver<FinishedSpan>,
) {
    let client = match reqwest::Client::builder().timeout(EXPORT_TIMEOUT).build() {
        Ok(client) => client,
        Err(error) => {
            tracing::error!(%error, "OTLP exporter disabled: no HTTP client");
            return;
        }
    };
    let mut batch = Vec::with_capacity(MAX_BATCH);
    loop {
        // Wait for the first span, then gather what arrives within the interval (or a full batch).
        match receiver.recv().await {
            Some(span) => batch.push(span),
            None => return,
        }
        let deadline = tokio::time::Instant::now() + EXPORT_INTERVAL;
        while batch.len() < MAX_BATCH {
            match tokio::time::timeout_at(deadline, receiver.recv()).await {
                Ok(Some(span)) => batch.push(span),
                Ok(None) | Err(_) => break,
            }
        }
        let body = export_body(&service_name, &batch);
        match client.post(&url).json(&body).send().await {
            Ok(response) if response.status().is_success() => {}
            Ok(response) => {
                tracing::warn!(
                    status = response.status().as_u16(),
                    spans = batch.len(),
                    "OTLP export refused"
                )
            }
            Err(error) => tracing::warn!(%error, spans = batch.len(), "OTLP export failed"),
        }
        batch.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_valid_traceparent_is_continued() {
        let context = TraceContext::from_traceparent(Some(
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ));
        assert_eq!(context.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(context.parent_span_id.as_deref(), Some("00f067aa0ba902b7"));
        assert!(context.sampled);
        assert!(is_hex_id(&context.span_id, 16));
        assert_ne!(context.span_id, "00f067aa0ba902b7");
    }

    #[test]
    fn malformed_traceparents_start_a_new_trace() {
        for header in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
        ] {
            let context = TraceContext::from_traceparent(Some(header));
            assert_eq!(context.parent_span_id, None, "{header:?}");
            assert!(is_hex_id(&context.trace_id, 32));
        }
    }

    #[test]
    fn spans_encode_as_otlp_json() {
        let now = SystemTime::now();
        let span = FinishedSpan {
            trace_id: "4bf92f3577b34da6a3ce929d0e0e4736".into(),
            span_id: "00f067aa0ba902b7".into(),
            parent_span_id: None,
            name: "POST /v1/chat/completions".into(),
            kind: 2,
            start: now,
            end: now + Duration::from_millis(5),
            attributes: vec![("gen_ai.usage.output_tokens", AttributeValue::Int(7))],
            error: None,
        };
        let child = span.child("llmserve.queue", now, now);
        let body = export_body("llmserve", &[span, child]);
        let spans = &body["resourceSpans"][0]["scopeSpans"][0]["spans"];
        assert_eq!(spans[0]["kind"], 2);
        assert_eq!(spans[0]["attributes"][0]["value"]["intValue"], json!("7"));
        assert_eq!(spans[1]["parentSpanId"], "00f067aa0ba902b7");
        assert_eq!(spans[1]["traceId"], spans[0]["traceId"]);
    }
}
