//! `GET /v1/models` wire types: OpenAI's model object and list, with what a registry of aliases and
//! versions adds (vLLM's `max_model_len`; the kind, state and weights of each entry).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A model id clients can send in `model`: an alias (routed by weight to versions) or a concrete
/// `model@version`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Model {
    pub id: String,
    /// Always `model`.
    pub object: String,
    /// Unix seconds when this model was loaded (0 while nothing behind it is).
    pub created: u64,
    pub owned_by: String,
    /// The context length in tokens (prompt + completion), as vLLM reports it; absent until loaded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_model_len: Option<usize>,
    pub kind: ModelKind,
    pub status: ModelStatus,
    /// Why it is failed (or about to be unloaded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_reason: Option<String>,
    /// Aliases: the weights in force, version id → weight.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weights: Option<BTreeMap<String, u32>>,
    /// Aliases: new weights waiting for their versions to finish loading.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_weights: Option<BTreeMap<String, u32>>,
    /// Versions: requests holding a slot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests_running: Option<usize>,
    /// Versions: requests queued for a slot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests_waiting: Option<usize>,
}

/// An alias routes to versions by weight; a version is one loaded model file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ModelKind {
    Alias,
    Version,
}

/// `ready` serves; `loading` will; `draining` finishes what it has and takes nothing new; `failed` did
/// not load (`status_reason` says why).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ModelStatus {
    Loading,
    Ready,
    Draining,
    Failed,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ModelList {
    /// Always `list`.
    pub object: String,
    pub data: Vec<Model>,
}
