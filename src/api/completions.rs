//! `POST /v1/completions` (legacy text completions) wire types: request, `text_completion` and chunks.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::common::{ChunkUsage, FinishReason, Usage};

super::generation_request! {
    /// A text completion request. Unknown fields are accepted and ignored.
    #[derive(Debug, Clone, Deserialize, ToSchema)]
    #[schema(example = json!({"prompt": "The capital of France is",
        "max_tokens": 16, "temperature": 0}))]
    pub struct CompletionRequest {
        /// The model id from `/v1/models`. When omitted, the served model is used.
        #[serde(default)]
        pub model: Option<String>,
        /// A string, or an array of strings (one choice per prompt, `index` in prompt order).
        pub prompt: PromptInput,
        /// Most tokens to generate per choice. Default 16, as in OpenAI's API.
        #[serde(default, deserialize_with = "crate::api::common::integer::optional")]
        #[schema(minimum = 1)]
        pub max_tokens: Option<i64>,
        /// Return the prompt in front of the completion (streamed as the first chunk of each choice).
        #[serde(default)]
        pub echo: Option<bool>,
        /// Choices per prompt; choice `i` of prompt `p` has index `p * n + i`.
        #[serde(default, deserialize_with = "crate::api::common::integer::optional")]
        #[schema(minimum = 1, maximum = 64)]
        pub n: Option<i64>,
        /// Generate `best_of` candidates per prompt and return the `n` with the highest total log
        /// probability. Not with `stream`.
        #[serde(default, deserialize_with = "crate::api::common::integer::optional")]
        #[schema(minimum = 1, maximum = 64)]
        pub best_of: Option<i64>,
        /// 0–5: log probabilities of each token and of the `logprobs` most likely alternatives.
        #[serde(default, deserialize_with = "crate::api::common::integer::optional")]
        #[schema(minimum = 0, maximum = 5)]
        pub logprobs: Option<i64>,
        /// Text after the insertion point: the model fills in the middle. Needs fill-in-the-middle tokens in
        /// the vocabulary (StarCoder-style `<fim_prefix>`… or Qwen-style `<|fim_prefix|>`…); other models
        /// answer 400. SmolLM2 has none.
        #[serde(default)]
        pub suffix: Option<String>,
        /// Seeds this request's own sampler; see the chat request.
        #[serde(default, deserialize_with = "crate::api::common::integer::optional")]
        pub seed: Option<i64>,
    }
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
    /// The concrete version that answered (`model@version`): `model` names what the client asked for,
    /// which may be an alias routed by weight. Also in the `x-llmserve-model-version` header.
    pub system_fingerprint: String,
    pub choices: Vec<CompletionChoice>,
    pub usage: Usage,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CompletionChoice {
    pub text: String,
    pub index: usize,
    /// Present (not null) only when the request asked for `logprobs`.
    pub logprobs: Option<CompletionLogprobs>,
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
    /// The concrete version that answered (`model@version`): `model` names what the client asked for,
    /// which may be an alias routed by weight. Also in the `x-llmserve-model-version` header.
    pub system_fingerprint: String,
    pub choices: Vec<CompletionChunkChoice>,
    #[serde(skip_serializing_if = "ChunkUsage::is_absent")]
    #[schema(value_type = Option<Usage>)]
    pub usage: ChunkUsage,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CompletionChunkChoice {
    pub text: String,
    pub index: usize,
    pub logprobs: Option<CompletionLogprobs>,
    pub finish_reason: Option<FinishReason>,
}

/// The legacy `logprobs` object: parallel lists, one entry per token.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct CompletionLogprobs {
    pub tokens: Vec<String>,
    /// Natural log.
    pub token_logprobs: Vec<f32>,
    /// Per token: the `logprobs` most likely alternatives and the sampled token, text → log probability.
    pub top_logprobs: Vec<std::collections::BTreeMap<String, f32>>,
    /// Character offset of each token in the choice's text (after any echoed prompt).
    pub text_offset: Vec<usize>,
}
