//! `POST /v1/chat/completions`: resolve the model → validate → plan → SSE chunks or one `chat.completion`.

use actix_web::{web, HttpResponse};

use crate::api::chat::{
    AssistantMessage, ChatChoice, ChatChunkChoice, ChatCompletion, ChatCompletionChunk,
    ChatCompletionRequest, ChatDelta, ChatLogprobs, ChatTokenLogprob, ChatTopLogprob, FunctionCall,
    FunctionCallDelta, ToolCall, ToolCallDelta,
};
use crate::api::common::{FinishReason, Usage};
use crate::engine::TokenLogprob;
use crate::error::ApiError;
use crate::extract::ApiJson;
use crate::front::{self, Prepared, PreparedChat};
use crate::gateway::limiter::KeyBudget;
use crate::generation::chat::{self, ChatChoiceText};
use crate::ids;
use crate::request_log::RequestLog;
use crate::routes::auth::{policy, Guarded};
use crate::routes::errors::GenerationErrors;
use crate::routes::sse::{self, ChunkFormat, ChunkHeader, SseEvent};
use crate::routes::{with_rate_headers, MODEL_VERSION_HEADER};
use crate::state::AppState;
use crate::tools::ToolEvent;

/// Creates a model response for the given chat conversation.
///
/// With `stream: true` the answer comes as server-sent events (`chat.completion.chunk` objects, then
/// `data: [DONE]`); otherwise as one `chat.completion` object.
///
/// Rules between fields that the schema cannot state, each a 400 naming it: a named `tool_choice` must be
/// one of `tools`; a forced call (`tool_choice` `required` or a named function) compiles the tools'
/// `parameters` schemas into a grammar, and one the compiler cannot take is refused (`param: tools`); so
/// is a `response_format` JSON Schema it cannot take (`param: response_format`).
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
        GenerationErrors,
    )
)]
pub async fn create_chat_completion(
    guarded: Guarded<policy::ChatCompletions, ApiJson<ChatCompletionRequest>>,
    state: web::Data<AppState>,
    log: RequestLog,
) -> Result<HttpResponse, ApiError> {
    let (caller, budget, body) = guarded.into_parts();
    let PreparedChat {
        prepared:
            Prepared {
                model,
                generation,
                planned,
                rate_headers,
            },
        parse_tools,
    } = prepare(&state, &caller, &budget, body.into_inner(), &log).await?;
    let id = format!("chatcmpl-{}", ids::random_id(24));
    let created = ids::unix_now();

    if generation.stream {
        let format = ChatChunks {
            header: ChunkHeader::new(
                id,
                "chat.completion.chunk",
                created,
                model.requested.clone(),
                model.id.clone(),
                generation.include_usage,
            ),
            with_logprobs: generation.logprobs.is_some(),
            choices: (0..generation.n)
                .map(|_| ChoiceState::new(parse_tools))
                .collect(),
        };
        let events = planned.stream(state.config.server.sse_keep_alive).await?;
        let body = sse::sse_body(format, events);
        return Ok(with_rate_headers(
            &rate_headers,
            sse::sse_response(&model.id, body),
        ));
    }

    let (choices, usage) = planned.collect().await?;
    let with_logprobs = generation.logprobs.is_some();
    let response = HttpResponse::Ok()
        .insert_header((MODEL_VERSION_HEADER, model.id.as_str()))
        .json(ChatCompletion {
            id,
            object: "chat.completion".to_string(),
            created,
            model: model.requested.clone(),
            system_fingerprint: model.id.clone(),
            choices: choices
                .into_iter()
                .map(|c| {
                    let answer = chat::chat_answer(c.text, parse_tools, c.finish_reason);
                    let tool_calls = (!answer.tool_calls.is_empty()).then(|| {
                        answer
                            .tool_calls
                            .into_iter()
                            .map(|call| ToolCall {
                                id: call.id,
                                kind: "function".to_string(),
                                function: FunctionCall {
                                    name: call.name,
                                    arguments: call.arguments,
                                },
                            })
                            .collect()
                    });
                    ChatChoice {
                        index: c.index,
                        message: AssistantMessage {
                            role: "assistant".to_string(),
                            content: answer.content,
                            tool_calls,
                        },
                        logprobs: with_logprobs.then(|| chat_logprobs(c.logprobs)),
                        finish_reason: answer.finish_reason,
                    }
                })
                .collect(),
            usage,
        });
    Ok(with_rate_headers(&rate_headers, response))
}

/// A chat request (also a Responses request, translated) through the front: its model looked up once
/// (a weighted alias must not pick twice), its remote images fetched for a model that takes images,
/// then validated and planned. An unknown or loading model is reported after the request's own faults.
pub(crate) async fn prepare(
    state: &AppState,
    caller: &crate::gateway::Principal,
    budget: &KeyBudget,
    mut request: ChatCompletionRequest,
    log: &RequestLog,
) -> Result<PreparedChat, ApiError> {
    let identity = front::identity(caller, request.caller_identity());
    let resolved = state.models.resolve(request.model.as_deref(), identity);
    if let (Some(remote_images), Ok(model)) = (&state.remote_images, &resolved) {
        // Fetched only for a model that takes images: any other refuses them below without a fetch.
        if model.engine.info().accepts_images {
            remote_images.inline(&mut request).await?;
        }
    }
    front::chat(caller, budget, resolved, request, log).await
}

/// Our token logprobs in the chat shape.
fn chat_logprobs(tokens: Vec<TokenLogprob>) -> ChatLogprobs {
    ChatLogprobs {
        content: tokens
            .into_iter()
            .map(|t| ChatTokenLogprob {
                token: t.sampled.token,
                logprob: t.sampled.logprob,
                bytes: Some(t.sampled.bytes),
                top_logprobs: t
                    .top
                    .into_iter()
                    .map(|a| ChatTopLogprob {
                        token: a.token,
                        logprob: a.logprob,
                        bytes: Some(a.bytes),
                    })
                    .collect(),
            })
            .collect(),
        refusal: None,
    }
}

/// One streaming choice: its text split into content and tool calls, and logprobs not yet sent.
struct ChoiceState {
    text: ChatChoiceText,
    pending_logprobs: Vec<TokenLogprob>,
}

impl ChoiceState {
    fn new(parse_tools: bool) -> Self {
        ChoiceState {
            text: ChatChoiceText::new(parse_tools),
            pending_logprobs: Vec::new(),
        }
    }
}

/// `chat.completion.chunk` events of one request: same id, `created` and model on every chunk.
struct ChatChunks {
    header: ChunkHeader,
    with_logprobs: bool,
    choices: Vec<ChoiceState>,
}

impl ChatChunks {
    fn choice(
        &self,
        index: usize,
        delta: ChatDelta,
        logprobs: Option<ChatLogprobs>,
        finish_reason: Option<FinishReason>,
    ) -> String {
        let choice = ChatChunkChoice {
            index,
            delta,
            logprobs,
            finish_reason,
        };
        self.header.chunk(vec![choice])
    }

    /// The logprobs owed to the next chunk of this choice (all pending ones, once).
    fn take_logprobs(&mut self, index: usize) -> Option<ChatLogprobs> {
        let pending = std::mem::take(&mut self.choices[index].pending_logprobs);
        (self.with_logprobs && !pending.is_empty()).then(|| chat_logprobs(pending))
    }

    fn tool_events(&mut self, index: usize, events: Vec<ToolEvent>) -> Vec<String> {
        let mut chunks = Vec::new();
        for event in events {
            let delta = match event {
                ToolEvent::Content(text) => ChatDelta {
                    content: Some(text),
                    ..ChatDelta::default()
                },
                ToolEvent::CallStart { index: call, name } => {
                    let id = chat::call_id();
                    ChatDelta {
                        tool_calls: Some(vec![ToolCallDelta {
                            index: call,
                            id: Some(id),
                            kind: Some("function"),
                            function: FunctionCallDelta {
                                name: Some(name),
                                arguments: String::new(),
                            },
                        }]),
                        ..ChatDelta::default()
                    }
                }
                ToolEvent::Arguments {
                    index: call,
                    fragment,
                } => ChatDelta {
                    tool_calls: Some(vec![ToolCallDelta {
                        index: call,
                        id: None,
                        kind: None,
                        function: FunctionCallDelta {
                            name: None,
                            arguments: fragment,
                        },
                    }]),
                    ..ChatDelta::default()
                },
            };
            let logprobs = self.take_logprobs(index);
            chunks.push(self.choice(index, delta, logprobs, None));
        }
        chunks
    }
}

impl ChunkFormat for ChatChunks {
    fn opening(&mut self, index: usize) -> Vec<SseEvent> {
        let delta = ChatDelta {
            role: Some("assistant"),
            content: Some(String::new()),
            tool_calls: None,
        };
        vec![SseEvent::data(self.choice(index, delta, None, None))]
    }

    fn text(&mut self, index: usize, text: String, logprobs: Vec<TokenLogprob>) -> Vec<SseEvent> {
        self.choices[index].pending_logprobs.extend(logprobs);
        let events = self.choices[index].text.push(text);
        SseEvent::all_data(self.tool_events(index, events))
    }

    fn finish(&mut self, index: usize, reason: FinishReason) -> Vec<SseEvent> {
        let (events, reason) = self.choices[index].text.finish(reason);
        let mut chunks = self.tool_events(index, events);
        let logprobs = self.take_logprobs(index);
        chunks.push(self.choice(index, ChatDelta::default(), logprobs, Some(reason)));
        SseEvent::all_data(chunks)
    }

    fn closing(&mut self, usage: Usage) -> Vec<SseEvent> {
        SseEvent::all_data(self.header.closing(usage))
    }
}
