//! `llmserve.v1.Llmserve`: each call goes through the same generation service as the HTTP routes, once;
//! `grpc::frames` turns what comes out into messages.

use std::sync::Arc;

use futures::stream::BoxStream;
use futures::{Stream, StreamExt};
use tonic::{Request, Response, Status};
use tracing::Instrument;

use crate::api::models::{ModelKind, ModelStatus};
use crate::engine::Prompt;
use crate::error::ApiError;
use crate::gateway::access::policy;
use crate::generation::output::{Collected, GenerationEvent};
use crate::grpc::auth::authorized;
use crate::grpc::convert;
use crate::grpc::frames::{finish_reason, usage, ChatFrames, GenerateFrames};
use crate::grpc::proto;
use crate::grpc::proto::llmserve_server::Llmserve;
use crate::grpc::status::refuse;
use crate::request_log::{CallLog, REQUEST_ID_HEADER, TRACEPARENT_HEADER};
use crate::state::AppState;

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
        let mut frames = GenerateFrames::new(&model);
        let stream = framed(call, events, move |event| frames.frame(event));
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
        let mut frames = ChatFrames::new(&model, parse_tools);
        let stream = framed(call, events, move |event| frames.frame(event));
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
