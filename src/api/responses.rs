//! `/v1/responses` wire types (OpenAI's Responses API): the request, the `response` object with its output
//! items, and the named events of its stream.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A Responses API request. Unknown fields are accepted and ignored, as OpenAI clients send many.
/// The example leaves `model` out (the default model answers), so that it runs as pre-filled in Swagger UI.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[schema(example = json!({"input": "Say hello.", "max_output_tokens": 32}))]
pub struct CreateResponseRequest {
    /// A model id from `/v1/models`; when omitted, the default model answers.
    #[serde(default)]
    pub model: Option<String>,
    /// A string (one user message), or a list of items: messages (`role` + `content` as a string or
    /// `input_text` / `input_image` / `output_text` parts), `function_call` and `function_call_output` items.
    #[schema(value_type = Object)]
    pub input: serde_json::Value,
    /// A system message put first; not carried over to a response that continues this one.
    #[serde(default)]
    pub instructions: Option<String>,
    /// Most tokens to generate; the response is `incomplete` when it stops there.
    #[serde(default, deserialize_with = "crate::api::common::integer::optional")]
    #[schema(minimum = 1)]
    pub max_output_tokens: Option<i64>,
    /// 0–2; 0 is greedy. Default 1.
    #[serde(default)]
    #[schema(minimum = 0.0, maximum = 2.0)]
    pub temperature: Option<f64>,
    /// Nucleus sampling, (0, 1]. Default 1.
    #[serde(default)]
    #[schema(exclusive_minimum = 0.0, maximum = 1.0)]
    pub top_p: Option<f64>,
    /// Function tools: `[{"type": "function", "name", "description", "parameters", "strict"}]`. Built-in
    /// tools (web search, file search, computer use, …) are not served: 400.
    #[serde(default)]
    #[schema(value_type = Option<Vec<Object>>)]
    pub tools: Option<Vec<serde_json::Value>>,
    /// `none`, `auto` (default with tools), `required`, or `{"type": "function", "name"}`; the last two are
    /// enforced by constrained decoding.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub tool_choice: Option<serde_json::Value>,
    /// Whether several calls may come in one answer (default true).
    #[serde(default)]
    pub parallel_tool_calls: Option<bool>,
    /// `{"format": {"type": "text"}}`, `{"format": {"type": "json_object"}}` or `{"format": {"type":
    /// "json_schema", "name", "schema", "strict"}}`: JSON output is enforced by constrained decoding.
    #[serde(default)]
    pub text: Option<TextSettings>,
    /// Keep the response (default true) for `GET /v1/responses/{id}` and `previous_response_id`, in a
    /// bounded in-memory store (see the README); `false` keeps nothing.
    #[serde(default)]
    pub store: Option<bool>,
    /// Continue the conversation of a stored response: its input and output come before this `input`.
    #[serde(default)]
    pub previous_response_id: Option<String>,
    /// Stream the answer as server-sent events (`response.created` … `response.completed`).
    #[serde(default)]
    pub stream: Option<bool>,
    /// String pairs, returned with the response.
    #[serde(default)]
    pub metadata: Option<std::collections::BTreeMap<String, String>>,
    /// A stable id of the end user: sticky routing between a weighted alias's versions. Wins over `user`.
    #[serde(default)]
    #[schema(max_length = 256)]
    pub safety_identifier: Option<String>,
    /// A stable id of the end user (deprecated by OpenAI for `safety_identifier`); same effect.
    #[serde(default)]
    #[schema(max_length = 256)]
    pub user: Option<String>,
    /// Not served: `true` gets 400 (responses run while their request is open). Not in the schema,
    /// which lists what is accepted.
    #[serde(default)]
    #[schema(ignore)]
    pub background: Option<bool>,
    /// Not served: conversation objects get 400; chain responses with `previous_response_id`.
    #[serde(default)]
    #[schema(ignore)]
    pub conversation: Option<serde_json::Value>,
    /// Not served: stored prompt templates get 400.
    #[serde(default)]
    #[schema(ignore)]
    pub prompt: Option<serde_json::Value>,
}

/// `text`: how the output is written.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
pub struct TextSettings {
    /// `{"type": "text"}`, `{"type": "json_object"}` or `{"type": "json_schema", "name", "schema", "strict"}`.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub format: Option<serde_json::Value>,
}

/// A response: what the model produced for one request, and how it ended.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ResponseObject {
    /// `resp_…`.
    pub id: String,
    /// Always `response`.
    pub object: String,
    pub created_at: u64,
    /// `in_progress` while streaming, then `completed`, `incomplete` (stopped at `max_output_tokens`) or
    /// `failed`.
    pub status: ResponseStatus,
    pub error: Option<ResponseError>,
    pub incomplete_details: Option<IncompleteDetails>,
    pub instructions: Option<String>,
    pub max_output_tokens: Option<i64>,
    /// What the client asked for; the answering version is in `x-llmserve-model-version`.
    pub model: String,
    pub output: Vec<OutputItem>,
    pub parallel_tool_calls: bool,
    pub previous_response_id: Option<String>,
    pub store: bool,
    pub temperature: f64,
    pub top_p: f64,
    #[schema(value_type = Object)]
    pub text: serde_json::Value,
    #[schema(value_type = Object)]
    pub tool_choice: serde_json::Value,
    #[schema(value_type = Vec<Object>)]
    pub tools: Vec<serde_json::Value>,
    /// Always `disabled`: a conversation longer than the context is refused, never cut.
    pub truncation: String,
    pub usage: Option<ResponseUsage>,
    pub user: Option<String>,
    pub metadata: std::collections::BTreeMap<String, String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ResponseStatus {
    InProgress,
    Completed,
    Incomplete,
    Failed,
}

/// Why a response failed after its stream began.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ResponseError {
    pub code: String,
    pub message: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct IncompleteDetails {
    /// `max_output_tokens`.
    pub reason: String,
}

/// One item of a response's output.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum OutputItem {
    /// Text the model wrote.
    Message {
        /// `msg_…`.
        id: String,
        status: ItemStatus,
        /// Always `assistant`.
        role: String,
        content: Vec<OutputText>,
    },
    /// A function the model called; answer it with a `function_call_output` item naming `call_id`.
    FunctionCall {
        /// `fc_…`.
        id: String,
        /// `call_…`.
        call_id: String,
        name: String,
        /// The arguments as a JSON text.
        arguments: String,
        status: ItemStatus,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ItemStatus {
    InProgress,
    Completed,
    Incomplete,
}

/// A message's text part.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct OutputText {
    /// Always `output_text`.
    #[serde(rename = "type")]
    pub kind: String,
    pub text: String,
    #[schema(value_type = Vec<Object>)]
    pub annotations: Vec<serde_json::Value>,
    #[schema(value_type = Vec<Object>)]
    pub logprobs: Vec<serde_json::Value>,
}

impl OutputText {
    pub fn new(text: String) -> Self {
        OutputText {
            kind: "output_text".to_string(),
            text,
            annotations: Vec::new(),
            logprobs: Vec::new(),
        }
    }
}

/// Token counts of one response.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ResponseUsage {
    pub input_tokens: usize,
    pub input_tokens_details: InputTokensDetails,
    pub output_tokens: usize,
    pub output_tokens_details: OutputTokensDetails,
    pub total_tokens: usize,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct InputTokensDetails {
    pub cached_tokens: usize,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct OutputTokensDetails {
    pub reasoning_tokens: usize,
}

impl From<super::common::Usage> for ResponseUsage {
    fn from(usage: super::common::Usage) -> Self {
        ResponseUsage {
            input_tokens: usage.prompt_tokens,
            input_tokens_details: InputTokensDetails::default(),
            output_tokens: usage.completion_tokens,
            output_tokens_details: OutputTokensDetails::default(),
            total_tokens: usage.total_tokens,
        }
    }
}

/// `DELETE /v1/responses/{id}`'s answer.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DeletedResponse {
    pub id: String,
    /// Always `response`.
    pub object: String,
    pub deleted: bool,
}

/// One event of a streamed response (`text/event-stream`, each as `event: <type>` and `data: <json>`):
/// numbered from 0 by `sequence_number`, `type` first.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ResponseStreamEvent {
    #[serde(flatten)]
    pub event: ResponseEventKind,
    pub sequence_number: u64,
}

/// The events, in the order they come: `response.created`, `response.in_progress`; per output item
/// `response.output_item.added`, its content (`response.content_part.added`, `response.output_text.delta`…,
/// `response.output_text.done`, `response.content_part.done`, or `response.function_call_arguments.delta`…,
/// `response.function_call_arguments.done`), `response.output_item.done`; last `response.completed` or
/// `response.incomplete`, or `response.failed` after an `error` event.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(tag = "type")]
pub enum ResponseEventKind {
    #[serde(rename = "response.created")]
    Created { response: Box<ResponseObject> },
    #[serde(rename = "response.in_progress")]
    InProgress { response: Box<ResponseObject> },
    #[serde(rename = "response.output_item.added")]
    OutputItemAdded {
        output_index: usize,
        item: OutputItem,
    },
    #[serde(rename = "response.content_part.added")]
    ContentPartAdded {
        item_id: String,
        output_index: usize,
        content_index: usize,
        part: OutputText,
    },
    #[serde(rename = "response.output_text.delta")]
    OutputTextDelta {
        item_id: String,
        output_index: usize,
        content_index: usize,
        delta: String,
        #[schema(value_type = Vec<Object>)]
        logprobs: Vec<serde_json::Value>,
    },
    #[serde(rename = "response.output_text.done")]
    OutputTextDone {
        item_id: String,
        output_index: usize,
        content_index: usize,
        text: String,
        #[schema(value_type = Vec<Object>)]
        logprobs: Vec<serde_json::Value>,
    },
    #[serde(rename = "response.content_part.done")]
    ContentPartDone {
        item_id: String,
        output_index: usize,
        content_index: usize,
        part: OutputText,
    },
    #[serde(rename = "response.function_call_arguments.delta")]
    FunctionCallArgumentsDelta {
        item_id: String,
        output_index: usize,
        delta: String,
    },
    #[serde(rename = "response.function_call_arguments.done")]
    FunctionCallArgumentsDone {
        item_id: String,
        output_index: usize,
        name: String,
        arguments: String,
    },
    #[serde(rename = "response.output_item.done")]
    OutputItemDone {
        output_index: usize,
        item: OutputItem,
    },
    #[serde(rename = "response.completed")]
    Completed { response: Box<ResponseObject> },
    #[serde(rename = "response.incomplete")]
    Incomplete { response: Box<ResponseObject> },
    #[serde(rename = "response.failed")]
    Failed { response: Box<ResponseObject> },
    /// An error after the stream began (then `response.failed`).
    #[serde(rename = "error")]
    Error {
        code: Option<String>,
        message: String,
        param: Option<String>,
    },
}

impl ResponseEventKind {
    /// The event's `type`, which also names it on the SSE stream (`event: response.created`): the same
    /// strings as the serde renames above (`routes::responses`' tests check each event against its JSON).
    pub fn name(&self) -> &'static str {
        match self {
            ResponseEventKind::Created { .. } => "response.created",
            ResponseEventKind::InProgress { .. } => "response.in_progress",
            ResponseEventKind::OutputItemAdded { .. } => "response.output_item.added",
            ResponseEventKind::ContentPartAdded { .. } => "response.content_part.added",
            ResponseEventKind::OutputTextDelta { .. } => "response.output_text.delta",
            ResponseEventKind::OutputTextDone { .. } => "response.output_text.done",
            ResponseEventKind::ContentPartDone { .. } => "response.content_part.done",
            ResponseEventKind::FunctionCallArgumentsDelta { .. } => {
                "response.function_call_arguments.delta"
            }
            ResponseEventKind::FunctionCallArgumentsDone { .. } => {
                "response.function_call_arguments.done"
            }
            ResponseEventKind::OutputItemDone { .. } => "response.output_item.done",
            ResponseEventKind::Completed { .. } => "response.completed",
            ResponseEventKind::Incomplete { .. } => "response.incomplete",
            ResponseEventKind::Failed { .. } => "response.failed",
            ResponseEventKind::Error { .. } => "error",
        }
    }
}
