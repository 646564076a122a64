//! What the server records into the metric set: declared models and keys, load read at scrape time,
//! engine steps, token gaps and finished requests.

use std::time::Duration;

use super::{Metrics, RequestOutcome, REJECTION_REASONS};
use crate::engine::{KvCacheState, StepCounts};

impl Metrics {
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
}
