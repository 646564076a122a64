//! `llmserve.v1.Llmserve`: each call validated, planned and run by the same core as the HTTP routes.

use std::sync::Arc;

use futures::stream::BoxStream;
use futures::{Stream, StreamExt};
use tonic::{Request, Response, Status};
use tracing::Instrument;

use crate::api::common::{FinishReason, Usage};
use crate::api::models::{ModelKind, ModelStatus};
use crate::engine::Prompt;
use crate::error::ApiError;
use crate::gateway::access::policy;
use crate::generation::chat::{call_id, ChatChoiceText};
use crate::generation::output::{Collected, GenerationEvent};
use crate::grpc::auth::authorized;
use crate::grpc::convert;
use crate::grpc::proto::llmserve_server::Llmserve;
use crate::grpc::proto::{self, chat_response, generate_response};
use crate::grpc::status::refuse;
use crate::request_log::{CallLog, REQUEST_ID_HEADER, TRACEPARENT_HEADER};
use crate::state::AppState;
use crate::tools::ToolEvent;

pub struct GrpcService {
    state: Arc<AppState>,
}

impl GrpcService {
    pub fn new(state: Arc<AppState>) -> Self {
        GrpcService { state }
    }

    fn call<T>(&self, method: &str, request: &Request<T>) -> CallLog {
        let metadata = request.metadata();
        let text = |key: &str| metadata.get(key).and_then(|v| v.to_str().ok());
        CallLog::grpc(
            &format!("/{}/{method}", super::SERVICE_NAME),
            text(REQUEST_ID_HEADER),
            text(TRACEPARENT_HEADER),
            Some(self.state.metrics.clone()),
            self.state.spans.clone(),
        )
    }
}

fn finish_reason(reason: FinishReason) -> proto::FinishReason {
    match reason {
        FinishReason::Stop => proto::FinishReason::Stop,
        FinishReason::Length => proto::FinishReason::Length,
        FinishReason::ToolCalls => proto::FinishReason::ToolCalls,
        FinishReason::ContentFilter => proto::FinishReason::ContentFilter,
    }
}

fn usage(usage: Usage) -> proto::Usage {
    let count = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
    proto::Usage {
        prompt_tokens: count(usage.prompt_tokens),
        completion_tokens: count(usage.completion_tokens),
        total_tokens: count(usage.total_tokens),
    }
}

/// Frames a generation stream for gRPC: `frame` turns each event into zero or more messages; a failure
/// ends the call with its status. The call's log lives inside the stream: it is written when the stream
/// ends or the client cancels (then the engine sequences are cancelled with the dropped stream).
fn framed<M: Send + 'static>(
    mut call: CallLog,
    events: impl Stream<Item = GenerationEvent> + Send + 'static,
    mut frame: impl FnMut(GenerationEvent) -> Vec<M> + Send + 'static,
) -> BoxStream<'static, Result<M, Status>> {
    Box::pin(async_stream::stream! {
        let mut events = std::pin::pin!(events);
        while let Some(event) = events.next().await {
            if let GenerationEvent::Failed(error) = &event {
                yield Err(refuse(&mut call, error));
                call.completed();
                return;
            }
            let done = matches!(event, GenerationEvent::Done(_));
            for message in frame(event) {
                yield Ok(message);
            }
            if done {
                call.completed();
                return;
            }
        }
    })
}

#[tonic::async_trait]
impl Llmserve for GrpcService {
    type GenerateStream = BoxStream<'static, Result<proto::GenerateResponse, Status>>;
    type ChatStream = BoxStream<'static, Result<proto::ChatResponse, Status>>;

    async fn generate(
        &self,
        request: Request<proto::GenerateRequest>,
    ) -> Result<Response<Self::GenerateStream>, Status> {
        let mut call = self.call("Generate", &request);
        let (log, span) = (call.log(), call.span());
        let started = async {
            let caller = authorized::<policy::Completions, _>(&request, &log)?;
            let wire = convert::completion(request.get_ref())?;
            let prepared = self.state.generation.prepare(wire, caller, &log).await?;
            let (head, events) = prepared.stream().await?;
            Ok::<_, ApiError>((head.model, events))
        }
        .instrument(span)
        .await;
        let (model, events) = started.map_err(|error| refuse(&mut call, &error))?;
        let mut reason = FinishReason::Stop;
        let (model, model_version) = (model.requested.clone(), model.id.clone());
        let stream = framed(call, events, move |event| {
            use generate_response::Event;
            let event = match event {
                GenerationEvent::Text(piece) if !piece.text.is_empty() => {
                    Event::Text(proto::TextDelta {
                        text: piece.text,
                        tokens: piece.tokens as u32,
                    })
                }
                GenerationEvent::Finished { reason: r, .. } => {
                    reason = r;
                    return Vec::new();
                }
                GenerationEvent::Done(totals) => Event::Finished(proto::Finished {
                    finish_reason: finish_reason(reason).into(),
                    usage: Some(usage(totals)),
                    model: model.clone(),
                    model_version: model_version.clone(),
                }),
                _ => return Vec::new(),
            };
            vec![proto::GenerateResponse { event: Some(event) }]
        });
        Ok(Response::new(stream))
    }

    async fn generate_once(
        &self,
        request: Request<proto::GenerateRequest>,
    ) -> Result<Response<proto::GenerateOnceResponse>, Status> {
        let mut call = self.call("GenerateOnce", &request);
        let (log, span) = (call.log(), call.span());
        let answered = async {
            let caller = authorized::<policy::Completions, _>(&request, &log)?;
            let wire = convert::completion(request.get_ref())?;
            let prepared = self.state.generation.prepare(wire, caller, &log).await?;
            let (head, collected) = prepared.collect().await?;
            Ok::<_, ApiError>((head.model, collected))
        }
        .instrument(span)
        .await;
        let (
            model,
            Collected {
                choices,
                usage: totals,
            },
        ) = answered.map_err(|error| refuse(&mut call, &error))?;
        call.completed();
        let choice = choices.into_iter().next().expect("one prompt, one choice");
        Ok(Response::new(proto::GenerateOnceResponse {
            text: choice.text,
            finish_reason: finish_reason(choice.finish_reason).into(),
            usage: Some(usage(totals)),
            model: model.requested.clone(),
            model_version: model.id.clone(),
        }))
    }

    async fn chat(
        &self,
        request: Request<proto::ChatRequest>,
    ) -> Result<Response<Self::ChatStream>, Status> {
        let mut call = self.call("Chat", &request);
        let (log, span) = (call.log(), call.span());
        let started = async {
            let caller = authorized::<policy::ChatCompletions, _>(&request, &log)?;
            let wire = convert::chat(request.get_ref())?;
            let prepared = self.state.generation.prepare(wire, caller, &log).await?;
            let (head, events) = prepared.stream().await?;
            Ok::<_, ApiError>((head.model, events, head.shape.parse_tools))
        }
        .instrument(span)
        .await;
        let (model, events, parse_tools) = started.map_err(|error| refuse(&mut call, &error))?;
        let (model, model_version) = (model.requested.clone(), model.id.clone());
        let mut text = ChatChoiceText::new(parse_tools);
        let mut reason = FinishReason::Stop;
        // Tokens behind text the tool-call parser still holds: they go with the next delta sent.
        let mut unsent_tokens = 0u32;
        let stream = framed(call, events, move |event| {
            let pieces = match event {
                GenerationEvent::Text(piece) => {
                    unsent_tokens += piece.tokens as u32;
                    text.push(piece.text)
                }
                GenerationEvent::Finished { reason: r, .. } => {
                    let (pieces, promoted) = text.finish(r);
                    reason = promoted;
                    pieces
                }
                GenerationEvent::Done(totals) => {
                    let finished = proto::Finished {
                        finish_reason: finish_reason(reason).into(),
                        usage: Some(usage(totals)),
                        model: model.clone(),
                        model_version: model_version.clone(),
                    };
                    return vec![proto::ChatResponse {
                        event: Some(chat_response::Event::Finished(finished)),
                    }];
                }
                _ => return Vec::new(),
            };
            pieces
                .into_iter()
                .map(delta)
                .filter(|d| !d.content.is_empty() || d.tool_call.is_some())
                .map(|mut d| {
                    d.tokens = std::mem::take(&mut unsent_tokens);
                    proto::ChatResponse {
                        event: Some(chat_response::Event::Delta(d)),
                    }
                })
                .collect()
        });
        Ok(Response::new(stream))
    }

    async fn list_models(
        &self,
        request: Request<proto::ListModelsRequest>,
    ) -> Result<Response<proto::ListModelsResponse>, Status> {
        let mut call = self.call("ListModels", &request);
        let caller = authorized::<policy::ModelsRead, _>(&request, &call.log())
            .map_err(|error| refuse(&mut call, &error))?;
        call.completed();
        let models = self
            .state
            .models
            .list()
            .into_iter()
            .filter(|m| caller.principal.may_use(&m.id))
            .map(|m| proto::Model {
                version: match m.kind {
                    ModelKind::Alias => String::new(),
                    ModelKind::Version => {
                        m.id.rsplit_once(crate::config::VERSION_SEPARATOR)
                            .map(|(_, v)| v.to_string())
                            .unwrap_or_default()
                    }
                },
                state: match m.status {
                    ModelStatus::Loading => "loading",
                    ModelStatus::Ready => "ready",
                    ModelStatus::Draining => "draining",
                    ModelStatus::Failed => "failed",
                }
                .to_string(),
                context_length: m
                    .max_model_len
                    .map_or(0, |n| u32::try_from(n).unwrap_or(u32::MAX)),
                kind: match m.kind {
                    ModelKind::Alias => "alias",
                    ModelKind::Version => "version",
                }
                .to_string(),
                weights: m.weights.unwrap_or_default().into_iter().collect(),
                state_reason: m.status_reason.unwrap_or_default(),
                id: m.id,
            })
            .collect();
        Ok(Response::new(proto::ListModelsResponse { models }))
    }

    async fn tokenize(
        &self,
        request: Request<proto::TokenizeRequest>,
    ) -> Result<Response<proto::TokenizeResponse>, Status> {
        let mut call = self.call("Tokenize", &request);
        let log = call.log();
        let caller = authorized::<policy::Tokenize, _>(&request, &log);
        let request = request.into_inner();
        let model_name = (!request.model.is_empty()).then_some(request.model.as_str());
        let tokenized = async {
            let caller = caller?;
            let model = self.state.models.resolve(model_name, None)?;
            caller.principal.check_model(&model.requested)?;
            let tokens = model.engine.tokenize(&Prompt::Text(request.text)).await?;
            Ok::<_, ApiError>((tokens, model.engine.info().context_length))
        }
        .await;
        let (tokens, context_length) = tokenized.map_err(|error| refuse(&mut call, &error))?;
        call.completed();
        Ok(Response::new(proto::TokenizeResponse {
            count: tokens.len() as u32,
            tokens,
            max_model_len: u32::try_from(context_length).unwrap_or(u32::MAX),
        }))
    }
}

fn delta(piece: ToolEvent) -> proto::ChatDelta {
    match piece {
        ToolEvent::Content(content) => proto::ChatDelta {
            content,
            ..Default::default()
        },
        ToolEvent::CallStart { index, name } => proto::ChatDelta {
            tool_call: Some(proto::ToolCallDelta {
                index: index as u32,
                id: call_id(),
                name,
                arguments: String::new(),
            }),
            ..Default::default()
        },
        ToolEvent::Arguments { index, fragment } => proto::ChatDelta {
            tool_call: Some(proto::ToolCallDelta {
                index: index as u32,
                arguments: fragment,
                ..Default::default()
            }),
            ..Default::default()
        },
    }
}
