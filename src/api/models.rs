//! `GET /v1/models` wire types (OpenAI's model object and list).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A model the server can run, under the id clients send in `model`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Model {
    pub id: String,
    /// Always `model`.
    pub object: String,
    /// Unix seconds when this model was loaded.
    pub created: u64,
    pub owned_by: String,
    /// The context length in tokens (prompt + completion), as vLLM reports it.
    pub max_model_len: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ModelList {
    /// Always `list`.
    pub object: String,
    pub data: Vec<Model>,
}
