//! `POST /tokenize` and `POST /detokenize` wire types, in vLLM's shapes.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::chat::ChatMessage;

/// Either a `prompt` (tokenized as `/v1/completions` would) or `messages` (templated as
/// `/v1/chat/completions` would, with the generation prompt), never both. The document shows it as
/// `TokenizeRequestSchema`, which states that rule; this flat form lets validation name what is wrong.
#[derive(Debug, Clone, Deserialize)]
pub struct TokenizeRequest {
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default)]
    pub prompt: Option<String>,
    #[serde(default)]
    pub messages: Option<Vec<ChatMessage>>,
    /// Also return each token's text.
    #[serde(default)]
    pub return_token_strs: Option<bool>,
}

/// `TokenizeRequest` as the OpenAPI document states it: exactly one of `prompt` and `messages`.
#[derive(Deserialize, ToSchema)]
#[serde(untagged)]
#[schema(as = TokenizeRequest, example = json!({"prompt": "The capital of France is"}))]
pub enum TokenizeRequestSchema {
    Prompt(TokenizePrompt),
    Chat(TokenizeChat),
}

/// A prompt, tokenized as `/v1/completions` would.
#[derive(Deserialize, ToSchema)]
pub struct TokenizePrompt {
    pub model: Option<String>,
    pub prompt: String,
    /// Also return each token's text.
    pub return_token_strs: Option<bool>,
}

/// A conversation, templated as `/v1/chat/completions` would, with the generation prompt.
#[derive(Deserialize, ToSchema)]
pub struct TokenizeChat {
    pub model: Option<String>,
    #[schema(min_items = 1)]
    pub messages: Vec<ChatMessage>,
    /// Also return each token's text.
    pub return_token_strs: Option<bool>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TokenizeResponse {
    pub count: usize,
    /// The model's context length.
    pub max_model_len: usize,
    pub tokens: Vec<u32>,
    /// Each token's text, with `return_token_strs`.
    pub token_strs: Option<Vec<String>>,
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[schema(example = json!({"tokens": [504, 3575, 282, 4649, 314]}))]
pub struct DetokenizeRequest {
    #[serde(default)]
    pub model: Option<String>,
    /// Token ids, each below the model's vocabulary size (a larger one is a 400 naming it).
    #[schema(value_type = Vec<u32>)]
    #[serde(deserialize_with = "crate::api::common::integer::list")]
    pub tokens: Vec<i64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DetokenizeResponse {
    pub prompt: String,
}
