//! Health probe bodies: a status word plus what an operator needs to see at a glance.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// What every caller sees: the status word. A caller whose key may read the models (everyone, on a
/// server without keys) also sees the details.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct HealthStatus {
    /// `ok`, `loading`, `draining` or `failed`.
    pub status: String,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub details: Option<HealthDetails>,
}

/// What an operator needs to see at a glance; never shown to a caller without a key where keys exist
/// (alias names, failure reasons and the limits mode are not for anonymous eyes).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct HealthDetails {
    /// Why the probe is not 200, when it is not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The default model (what a request without `model` gets), once it is ready.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Generation requests admitted and not finished (streams included).
    pub requests_running: usize,
    /// Generation requests waiting for a free slot.
    pub requests_waiting: usize,
    /// Sequences the engine still holds: drops back to 0 once cancelled or finished requests are freed.
    pub engine_sequences: usize,
    /// Where per-key limits are decided: `local`, `shared` (Redis), or `local: Redis unreachable`.
    pub limits: String,
    /// Every alias the caller may use: ready means a request for it would be served now (readiness
    /// needs all of them).
    pub models: Vec<AliasHealth>,
}

/// One alias's readiness.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AliasHealth {
    pub model: String,
    pub ready: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}
