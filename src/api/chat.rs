//! `POST /v1/chat/completions` wire types: the request, the `chat.completion` object and its stream chunks.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::common::{ChunkUsage, FinishReason, Usage};

super::generation_request! {
    /// A chat completion request. Unknown fields are accepted and ignored, as OpenAI clients send many.
    /// The example leaves `model` out (the default model answers), so that it runs as pre-filled in
    /// Swagger UI whatever the served model is called.
    #[derive(Debug, Clone, Deserialize, ToSchema)]
    #[schema(example = json!({"messages": [{"role": "user", "content": "Say hello."}], "max_tokens": 32, "stream": false}))]
    pub struct ChatCompletionRequest {
        /// A model id from `/v1/models` (an alias or a `model@version`). When omitted, the default model
        /// answers.
        #[serde(default)]
        pub model: Option<String>,
        /// The conversation so far; at least one message.
        #[schema(min_items = 1)]
        pub messages: Vec<ChatMessage>,
        /// Most tokens to generate. Clamped to what is left of the context after the prompt.
        #[serde(default, deserialize_with = "crate::api::common::integer::optional")]
        #[schema(minimum = 1)]
        pub max_tokens: Option<i64>,
        /// The newer name of `max_tokens`; wins when both are given.
        #[serde(default, deserialize_with = "crate::api::common::integer::optional")]
        #[schema(minimum = 1)]
        pub max_completion_tokens: Option<i64>,
        /// Number of choices (1–64), each under its own `index`; usage sums them.
        #[serde(default, deserialize_with = "crate::api::common::integer::optional")]
        #[schema(minimum = 1, maximum = 64)]
        pub n: Option<i64>,
        /// Seeds this request's own sampler, which no other request advances: the same seed and request
        /// give the same output at any temperature while the engine computes the same logits (see
        /// docs/compatibility.md). With `n > 1` choice `i` uses `seed + i`.
        #[serde(default, deserialize_with = "crate::api::common::integer::optional")]
        pub seed: Option<i64>,
        /// Return the log probability of each output token in `choices[].logprobs.content`.
        #[serde(default)]
        pub logprobs: Option<bool>,
        /// 0–20 most likely alternatives per token; needs `logprobs: true`.
        #[serde(default, deserialize_with = "crate::api::common::integer::optional")]
        #[schema(minimum = 0, maximum = 20)]
        pub top_logprobs: Option<i64>,
        /// `{"type": "text"}`, `{"type": "json_object"}`, or `{"type": "json_schema", "json_schema": {"name",
        /// "schema", "strict"}}`: JSON output is enforced by constrained decoding.
        #[serde(default)]
        #[schema(value_type = Option<Object>)]
        pub response_format: Option<serde_json::Value>,
        /// Functions the model may call: `[{"type": "function", "function": {"name", "description",
        /// "parameters"}}]`.
        #[serde(default)]
        #[schema(value_type = Option<Vec<Object>>)]
        pub tools: Option<Vec<serde_json::Value>>,
        /// `none`, `auto` (default with tools), `required`, or `{"type": "function", "function": {"name"}}`.
        /// `required` and a named function are enforced by constrained decoding.
        #[serde(default)]
        #[schema(value_type = Option<Object>)]
        pub tool_choice: Option<serde_json::Value>,
        /// Whether several calls may come in one answer (default true).
        #[serde(default)]
        pub parallel_tool_calls: Option<bool>,
        /// Deprecated function calling: refused with a pointer to `tools`.
        #[serde(default)]
        #[schema(value_type = Option<Vec<Object>>)]
        pub functions: Option<serde_json::Value>,
        /// Deprecated function calling: refused with a pointer to `tool_choice`.
        #[serde(default)]
        #[schema(value_type = Option<Object>)]
        pub function_call: Option<serde_json::Value>,
        /// Output modalities: only `["text"]` is served.
        #[serde(default)]
        pub modalities: Option<Vec<String>>,
        /// Audio output is not served: a value gets 400. Not in the schema, which lists what is accepted.
        #[serde(default)]
        #[schema(ignore)]
        pub audio: Option<serde_json::Value>,
        /// Web search is not served: a value gets 400. Not in the schema, which lists what is accepted.
        #[serde(default)]
        #[schema(ignore)]
        pub web_search_options: Option<serde_json::Value>,
    }
}

impl ChatCompletionRequest {
    /// A request of these messages and nothing else (for `/tokenize`).
    pub fn from_messages(messages: Vec<ChatMessage>) -> Self {
        serde_json::from_value(serde_json::json!({"messages": []}))
            .map(|empty: ChatCompletionRequest| ChatCompletionRequest { messages, ..empty })
            .expect("an empty request deserializes")
    }
}

/// The roles a message may have, as the document states them (`ChatMessage::role` stays a string so that
/// validation can name an unknown one).
#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
pub enum ChatRole {
    System,
    Developer,
    User,
    Assistant,
    Tool,
}

/// One message of the conversation.
#[derive(Debug, Clone, Deserialize, ToSchema)]
pub struct ChatMessage {
    /// `system`, `developer`, `user`, `assistant` or `tool`.
    #[schema(value_type = ChatRole)]
    pub role: String,
    /// A string, or an array of content parts (`{"type": "text", "text": …}` or
    /// `{"type": "image_url", "image_url": {"url": …}}`).
    #[serde(default)]
    pub content: Option<MessageContent>,
    #[serde(default)]
    pub name: Option<String>,
    /// An assistant turn's calls, as this server returned them.
    #[serde(default)]
    #[schema(value_type = Option<Vec<Object>>)]
    pub tool_calls: Option<Vec<serde_json::Value>>,
    /// A `tool` message: the id of the call it answers.
    #[serde(default)]
    pub tool_call_id: Option<String>,
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
    /// `{"url": "data:image/png;base64,…", "detail": …}`.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub image_url: Option<serde_json::Value>,
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
    /// The concrete version that answered (`model@version`): `model` names what the client asked for,
    /// which may be an alias routed by weight. Also in the `x-llmserve-model-version` header.
    pub system_fingerprint: String,
    pub choices: Vec<ChatChoice>,
    pub usage: Usage,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ChatChoice {
    pub index: usize,
    pub message: AssistantMessage,
    /// Present (not null) only when the request asked for `logprobs`.
    pub logprobs: Option<ChatLogprobs>,
    pub finish_reason: FinishReason,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AssistantMessage {
    /// Always `assistant`.
    pub role: String,
    /// Null when the answer is only tool calls.
    pub content: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<ToolCall>>,
}

/// A function call the model made.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ToolCall {
    /// `call_…`, unique per call.
    pub id: String,
    /// Always `function`.
    #[serde(rename = "type")]
    pub kind: String,
    pub function: FunctionCall,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct FunctionCall {
    pub name: String,
    /// The arguments as a JSON text.
    pub arguments: String,
}

/// `logprobs` of a chat choice or chunk.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ChatLogprobs {
    pub content: Vec<ChatTokenLogprob>,
    /// Always null (no refusals).
    pub refusal: Option<Vec<ChatTokenLogprob>>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ChatTokenLogprob {
    pub token: String,
    /// Natural log.
    pub logprob: f32,
    /// The token's UTF-8 bytes.
    pub bytes: Option<Vec<u8>>,
    /// The `top_logprobs` most likely tokens at this position, most likely first.
    pub top_logprobs: Vec<ChatTopLogprob>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ChatTopLogprob {
    pub token: String,
    pub logprob: f32,
    pub bytes: Option<Vec<u8>>,
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
    /// The concrete version that answered (`model@version`): `model` names what the client asked for,
    /// which may be an alias routed by weight. Also in the `x-llmserve-model-version` header.
    pub system_fingerprint: String,
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
    /// The log probabilities of this chunk's tokens, when the request asked for them.
    pub logprobs: Option<ChatLogprobs>,
    /// Null until the choice's last chunk.
    pub finish_reason: Option<FinishReason>,
}

/// What a chunk adds: the role in the first chunk of a choice, then content or tool calls; `{}` in the last.
#[derive(Debug, Clone, Default, Serialize, ToSchema)]
pub struct ChatDelta {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<ToolCallDelta>>,
}

/// A piece of a streamed tool call: `id`, `type` and the name first, then argument fragments.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ToolCallDelta {
    pub index: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<&'static str>,
    pub function: FunctionCallDelta,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct FunctionCallDelta {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub arguments: String,
}
