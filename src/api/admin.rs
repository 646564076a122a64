//! `/admin` wire types: alias weights, promotion, reload outcomes, deletions. The body that adds a version
//! is the models file's own `[[models.versions]]` table (`config::file::VersionFields`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::models::Model;

/// New weights for an alias: version id (`model@version`) → weight. Versions still loading get theirs
/// once they are ready; until then the weights in force serve (`pending_weights` in the answer).
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"weights": {"smollm2@v1": 50, "smollm2@v2": 50}}))]
pub struct SetWeightsRequest {
    pub weights: BTreeMap<String, u32>,
}

/// Send all of an alias's traffic to one version.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"version": "smollm2@v2"}))]
pub struct PromoteRequest {
    /// A version id, `model@version`.
    pub version: String,
}

/// What a reload changed, one line each (empty: the file says what is already served).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ReloadResponse {
    pub changes: Vec<String>,
}

/// A version taken out of service, in the shape of OpenAI's model deletion.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DeletedModel {
    pub id: String,
    /// Always `model`.
    pub object: String,
    pub deleted: bool,
    /// `draining` (its running requests finish first) or `removed` (it had not loaded).
    pub status: String,
}

/// Everything the registry holds, for operators.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AdminModels {
    /// What a request without `model` gets.
    pub default_model: String,
    pub data: Vec<Model>,
}

/// One API key's use since the server started.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct KeyUsage {
    /// The key's id from the models file (never the key).
    pub key_id: String,
    /// Requests by outcome: `ok`, `rate_limited` (429), `denied` (401/403), `error`.
    pub requests: BTreeMap<String, u64>,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
}

/// Every configured key's use.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct UsageList {
    pub data: Vec<KeyUsage>,
}
