//! `POST /v1/chat/completions`: validate → resolve the model → submit → stream or collect.

use actix_web::{web, HttpResponse};

use crate::api::chat::{
    AssistantMessage, ChatChoice, ChatChunkChoice, ChatCompletion, ChatCompletionChunk,
    ChatCompletionRequest, ChatDelta,
};
use crate::api::common::{ChunkUsage, FinishReason, Usage};
use crate::api::errors::ErrorResponse;
use crate::engine::Prompt;
use crate::error::ApiError;
use crate::extract::ApiJson;
use crate::server::AppState;
use crate::stream::{self, ChunkFormat, StreamSettings};
use crate::telemetry::RequestLog;
use crate::{ids, validate};

/// Creates a model response for the given chat conversation.
///
/// With `stream: true` the answer comes as server-sent events (`chat.completion.chunk` objects, then
/// `data: [DONE]`); otherwise as one `chat.completion` object.
#[utoipa::path(
    post,
    path = "/v1/chat/completions",
    tag = "OpenAI",
    request_body = ChatCompletionRequest,
    responses(
        (status = 200, description = "The completion; `text/event-stream` of `ChatCompletionChunk` when streaming",
            content(
                (ChatCompletion = "application/json"),
                (ChatCompletionChunk = "text/event-stream"),
            )),
        (status = 400, description = "Invalid request (bad JSON, bad field, context too long)", body = ErrorResponse),
        (status = 404, description = "Unknown model", body = ErrorResponse),
        (status = 413, description = "Body over the limit", body = ErrorResponse),
        (status = 415, description = "Body is not JSON", body = ErrorResponse),
        (status = 429, description = "Queue full (`overloaded`), with Retry-After", body = ErrorResponse),
        (status = 503, description = "Model loading, server draining or queue timeout, with Retry-After", body = ErrorResponse),
        (status = 500, description = "Engine failure", body = ErrorResponse),
    )
)]
pub async fn create_chat_completion(
    state: web::Data<AppState>,
    log: RequestLog,
    body: ApiJson<ChatCompletionRequest>,
) -> Result<HttpResponse, ApiError> {
    let chat = validate::chat(body.into_inner())?;
    let model = state.models.resolve(chat.generation.model.as_deref())?;
    log.set_model(&model.name, &model.version);
    super::check_images(&model, chat.has_images)?;
    let planned = super::plan(
        model.clone(),
        chat.generation.clone(),
        vec![Prompt::Chat(chat.messages)],
        &state.admission,
        &log,
    )
    .await?;
    let generation = chat.generation;
    let prompt_tokens = planned.prompt_tokens;
    let id = format!("chatcmpl-{}", ids::random_id(24));
    let created = ids::unix_now();

    if generation.stream {
        let format = ChatChunks {
            id,
            created,
            model: model.name.clone(),
            usage: if generation.include_usage {
                ChunkUsage::Null
            } else {
                ChunkUsage::Absent
            },
        };
        let start = planned
            .start_streaming(&state.admission, state.config.sse_keep_alive)
            .await?;
        let settings = StreamSettings {
            prompt_tokens,
            include_usage: generation.include_usage,
            keep_alive: state.config.sse_keep_alive,
            log,
        };
        return Ok(stream::sse_response(stream::sse_body(
            format, start, settings,
        )));
    }

    let started = planned.start(&state.admission).await?;
    let (choices, completion_tokens) = stream::collect(started, &log).await?;
    Ok(HttpResponse::Ok().json(ChatCompletion {
        id,
        object: "chat.completion".to_string(),
        created,
        model: model.name.clone(),
        choices: choices
            .into_iter()
            .map(|c| ChatChoice {
                index: c.index,
                message: AssistantMessage {
                    role: "assistant".to_string(),
                    content: c.text,
                },
                logprobs: None,
                finish_reason: c.finish_reason,
            })
            .collect(),
        usage: Usage::new(prompt_tokens, completion_tokens),
    }))
}

/// `chat.completion.chunk` events of one request: same id, `created` and model on every chunk.
struct ChatChunks {
    id: String,
    created: u64,
    model: String,
    usage: ChunkUsage,
}

impl ChatChunks {
    fn chunk(&self, choices: Vec<ChatChunkChoice>, usage: ChunkUsage) -> String {
        serde_json::to_string(&ChatCompletionChunk {
            id: self.id.clone(),
            object: "chat.completion.chunk",
            created: self.created,
            model: self.model.clone(),
            choices,
            usage,
        })
        .expect("chunks serialize")
    }

    fn choice(
        &self,
        index: usize,
        delta: ChatDelta,
        finish_reason: Option<FinishReason>,
    ) -> String {
        let choice = ChatChunkChoice {
            index,
            delta,
            logprobs: None,
            finish_reason,
        };
        self.chunk(vec![choice], self.usage)
    }
}

impl ChunkFormat for ChatChunks {
    fn opening(&self, index: usize) -> Option<String> {
        let delta = ChatDelta {
            role: Some("assistant"),
            content: Some(String::new()),
        };
        Some(self.choice(index, delta, None))
    }

    fn text(&self, index: usize, text: String) -> String {
        self.choice(
            index,
            ChatDelta {
                role: None,
                content: Some(text),
            },
            None,
        )
    }

    fn finish(&self, index: usize, reason: FinishReason) -> String {
        self.choice(index, ChatDelta::default(), Some(reason))
    }

    fn usage(&self, usage: Usage) -> String {
        self.chunk(Vec::new(), ChunkUsage::Totals(usage))
    }
}
