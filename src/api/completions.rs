//! `POST /v1/completions` (legacy text completions) wire types: request, `text_completion` and chunks.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::common::{ChunkUsage, FinishReason, StopSequences, StreamOptions, Usage};

/// A text completion request. Unknown fields are accepted and ignored.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[schema(example = json!({"model": "SmolLM2-135M-Instruct", "prompt": "The capital of France is",
    "max_tokens": 16, "temperature": 0}))]
pub struct CompletionRequest {
    /// The model id from `/v1/models`. When omitted, the served model is used.
    #[serde(default)]
    pub model: Option<String>,
    /// A string, or an array of strings (one choice per prompt, `index` in prompt order).
    pub prompt: PromptInput,
    /// Most tokens to generate per choice. Default 16, as in OpenAI's API.
    #[serde(default)]
    pub max_tokens: Option<i64>,
    #[serde(default)]
    pub temperature: Option<f64>,
    #[serde(default)]
    pub top_p: Option<f64>,
    #[serde(default)]
    pub top_k: Option<i64>,
    #[serde(default)]
    pub min_p: Option<f64>,
    #[serde(default)]
    pub presence_penalty: Option<f64>,
    #[serde(default)]
    pub frequency_penalty: Option<f64>,
    #[serde(default)]
    pub repetition_penalty: Option<f64>,
    #[serde(default)]
    pub stop: Option<StopSequences>,
    #[serde(default)]
    pub stream: Option<bool>,
    #[serde(default)]
    pub stream_options: Option<StreamOptions>,
    /// Return the prompt in front of the completion (streamed as the first chunk of each choice).
    #[serde(default)]
    pub echo: Option<bool>,
    /// Only 1 is served so far.
    #[serde(default)]
    pub n: Option<i64>,
    /// Only 1 (or equal to `n`) is served so far.
    #[serde(default)]
    pub best_of: Option<i64>,
    /// Not served yet: a value gets 400.
    #[serde(default)]
    pub logprobs: Option<i64>,
    /// Not served yet: a non-empty suffix gets 400.
    #[serde(default)]
    pub suffix: Option<String>,
    /// Accepted with `temperature: 0`; see the chat request.
    #[serde(default)]
    pub seed: Option<i64>,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub logit_bias: Option<HashMap<String, serde_json::Value>>,
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum PromptInput {
    One(String),
    Many(Vec<String>),
}

/// The answer to a non-streaming completion request (and, with `object` the same, each stream chunk).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TextCompletion {
    /// `cmpl-…`, unique per request.
    pub id: String,
    /// Always `text_completion`.
    pub object: String,
    pub created: u64,
    pub model: String,
    pub choices: Vec<CompletionChoice>,
    pub usage: Usage,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CompletionChoice {
    pub text: String,
    pub index: usize,
    #[schema(value_type = Option<Object>)]
    pub logprobs: Option<serde_json::Value>,
    pub finish_reason: FinishReason,
}

/// One server-sent event of a streaming completion.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TextCompletionChunk {
    pub id: String,
    /// Always `text_completion`.
    pub object: &'static str,
    pub created: u64,
    pub model: String,
    pub choices: Vec<CompletionChunkChoice>,
    #[serde(skip_serializing_if = "ChunkUsage::is_absent")]
    #[schema(value_type = Option<Usage>)]
    pub usage: ChunkUsage,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CompletionChunkChoice {
    pub text: String,
    pub index: usize,
    #[schema(value_type = Option<Object>)]
    pub logprobs: Option<serde_json::Value>,
    pub finish_reason: Option<FinishReason>,
}
