//! `POST /v1/chat/completions` wire types: the request, the `chat.completion` object and its stream chunks.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::common::{ChunkUsage, FinishReason, StopSequences, StreamOptions, Usage};

/// A chat completion request. Unknown fields are accepted and ignored, as OpenAI clients send many.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[schema(example = json!({"model": "SmolLM2-135M-Instruct",
    "messages": [{"role": "user", "content": "Say hello."}], "max_tokens": 32, "stream": false}))]
pub struct ChatCompletionRequest {
    /// The model id from `/v1/models`. When omitted, the served model is used.
    #[serde(default)]
    pub model: Option<String>,
    /// The conversation so far; at least one message.
    pub messages: Vec<ChatMessage>,
    /// Most tokens to generate. Clamped to what is left of the context after the prompt.
    #[serde(default)]
    pub max_tokens: Option<i64>,
    /// The newer name of `max_tokens`; wins when both are given.
    #[serde(default)]
    pub max_completion_tokens: Option<i64>,
    /// 0–2; 0 is greedy. Default 1.
    #[serde(default)]
    pub temperature: Option<f64>,
    /// Nucleus sampling, (0, 1]. Default 1.
    #[serde(default)]
    pub top_p: Option<f64>,
    /// Sample among the k most likely tokens; 0 or -1 turns it off.
    #[serde(default)]
    pub top_k: Option<i64>,
    /// Drop tokens less likely than min_p × the most likely one, [0, 1].
    #[serde(default)]
    pub min_p: Option<f64>,
    /// −2–2.
    #[serde(default)]
    pub presence_penalty: Option<f64>,
    /// −2–2.
    #[serde(default)]
    pub frequency_penalty: Option<f64>,
    /// Multiplicative penalty on repeated tokens, (0, 2]; 1 is off.
    #[serde(default)]
    pub repetition_penalty: Option<f64>,
    /// A string or up to 4 strings; generation stops before them and they are not returned.
    #[serde(default)]
    pub stop: Option<StopSequences>,
    /// Stream the answer as server-sent events.
    #[serde(default)]
    pub stream: Option<bool>,
    #[serde(default)]
    pub stream_options: Option<StreamOptions>,
    /// Number of choices. Only 1 is served so far.
    #[serde(default)]
    pub n: Option<i64>,
    /// Accepted with `temperature: 0` (greedy output is reproducible anyway); per-request seeded sampling
    /// is not served yet, so other temperatures with a seed get 400.
    #[serde(default)]
    pub seed: Option<i64>,
    /// Only `false` is served so far.
    #[serde(default)]
    pub logprobs: Option<bool>,
    #[serde(default)]
    pub top_logprobs: Option<i64>,
    /// Not served yet: a non-empty map gets 400.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub logit_bias: Option<HashMap<String, serde_json::Value>>,
    /// Only `{"type": "text"}` is served so far.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub response_format: Option<serde_json::Value>,
    /// Not served yet: tools are refused unless `tool_choice` is `none`.
    #[serde(default)]
    #[schema(value_type = Option<Vec<Object>>)]
    pub tools: Option<Vec<serde_json::Value>>,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub tool_choice: Option<serde_json::Value>,
}

/// One message of the conversation.
#[derive(Debug, Clone, Deserialize, ToSchema)]
pub struct ChatMessage {
    /// `system`, `developer`, `user`, `assistant` or `tool`.
    pub role: String,
    /// A string, or an array of content parts (`{"type": "text", "text": …}`).
    #[serde(default)]
    pub content: Option<MessageContent>,
    #[serde(default)]
    pub name: Option<String>,
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum MessageContent {
    Text(String),
    Parts(Vec<ContentPart>),
}

/// A part of a message: `text`, or `image_url` (only for vision models).
#[derive(Debug, Clone, Deserialize, ToSchema)]
pub struct ContentPart {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub text: Option<String>,
}

/// The answer to a non-streaming chat request.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ChatCompletion {
    /// `chatcmpl-…`, unique per request.
    pub id: String,
    /// Always `chat.completion`.
    pub object: String,
    pub created: u64,
    pub model: String,
    pub choices: Vec<ChatChoice>,
    pub usage: Usage,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ChatChoice {
    pub index: usize,
    pub message: AssistantMessage,
    /// Always null until logprobs are served.
    #[schema(value_type = Option<Object>)]
    pub logprobs: Option<serde_json::Value>,
    pub finish_reason: FinishReason,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AssistantMessage {
    /// Always `assistant`.
    pub role: String,
    pub content: String,
}

/// One server-sent event of a streaming chat answer.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ChatCompletionChunk {
    /// The same `chatcmpl-…` id on every chunk of one request.
    pub id: String,
    /// Always `chat.completion.chunk`.
    pub object: &'static str,
    /// The same Unix seconds on every chunk of one request.
    pub created: u64,
    pub model: String,
    /// Empty only in the final usage chunk.
    pub choices: Vec<ChatChunkChoice>,
    /// Present only with `stream_options.include_usage`: null, then the totals in the last chunk.
    #[serde(skip_serializing_if = "ChunkUsage::is_absent")]
    #[schema(value_type = Option<Usage>)]
    pub usage: ChunkUsage,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ChatChunkChoice {
    pub index: usize,
    pub delta: ChatDelta,
    #[schema(value_type = Option<Object>)]
    pub logprobs: Option<serde_json::Value>,
    /// Null until the choice's last chunk.
    pub finish_reason: Option<FinishReason>,
}

/// What a chunk adds: the role in the first chunk of a choice, then content; `{}` in the last.
#[derive(Debug, Clone, Default, Serialize, ToSchema)]
pub struct ChatDelta {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
}
