//! `POST /v1/completions` (legacy text completions): one choice per prompt, streamed or collected.

use actix_web::{web, HttpResponse};

use crate::api::common::{ChunkUsage, FinishReason, Usage};
use crate::api::completions::{
    CompletionChoice, CompletionChunkChoice, CompletionRequest, TextCompletion, TextCompletionChunk,
};
use crate::api::errors::ErrorResponse;
use crate::engine::Prompt;
use crate::error::ApiError;
use crate::extract::ApiJson;
use crate::server::AppState;
use crate::stream::{self, ChunkFormat, StreamSettings};
use crate::telemetry::RequestLog;
use crate::{ids, validate};

/// Creates a completion for the given prompt(s): the model continues the text, no chat template.
///
/// With several prompts, each becomes a choice whose `index` is the prompt's position.
#[utoipa::path(
    post,
    path = "/v1/completions",
    tag = "OpenAI",
    request_body = CompletionRequest,
    responses(
        (status = 200, description = "The completion; `text/event-stream` of `TextCompletionChunk` when streaming",
            content(
                (TextCompletion = "application/json"),
                (TextCompletionChunk = "text/event-stream"),
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
pub async fn create_completion(
    state: web::Data<AppState>,
    log: RequestLog,
    body: ApiJson<CompletionRequest>,
) -> Result<HttpResponse, ApiError> {
    let completion = validate::completion(body.into_inner())?;
    let generation = completion.generation;
    let model = state.models.resolve(generation.model.as_deref())?;
    log.set_model(&model.name, &model.version);
    let prompts = completion
        .prompts
        .iter()
        .cloned()
        .map(Prompt::Text)
        .collect();
    let planned = super::plan(
        model.clone(),
        generation.clone(),
        prompts,
        &state.admission,
        &log,
    )
    .await?;
    let prompt_tokens = planned.prompt_tokens;
    let id = format!("cmpl-{}", ids::random_id(24));
    let created = ids::unix_now();
    let echoes = completion.echo.then(|| completion.prompts.clone());

    if generation.stream {
        let format = CompletionChunks {
            id,
            created,
            model: model.name.clone(),
            usage: if generation.include_usage {
                ChunkUsage::Null
            } else {
                ChunkUsage::Absent
            },
            echoes,
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
    Ok(HttpResponse::Ok().json(TextCompletion {
        id,
        object: "text_completion".to_string(),
        created,
        model: model.name.clone(),
        choices: choices
            .into_iter()
            .map(|c| CompletionChoice {
                text: match &echoes {
                    Some(prompts) => format!("{}{}", prompts[c.index], c.text),
                    None => c.text,
                },
                index: c.index,
                logprobs: None,
                finish_reason: c.finish_reason,
            })
            .collect(),
        usage: Usage::new(prompt_tokens, completion_tokens),
    }))
}

/// `text_completion` chunks of one request; with `echo`, each choice opens with its prompt.
struct CompletionChunks {
    id: String,
    created: u64,
    model: String,
    usage: ChunkUsage,
    echoes: Option<Vec<String>>,
}

impl CompletionChunks {
    fn chunk(&self, choices: Vec<CompletionChunkChoice>, usage: ChunkUsage) -> String {
        serde_json::to_string(&TextCompletionChunk {
            id: self.id.clone(),
            object: "text_completion",
            created: self.created,
            model: self.model.clone(),
            choices,
            usage,
        })
        .expect("chunks serialize")
    }

    fn choice(&self, index: usize, text: String, finish_reason: Option<FinishReason>) -> String {
        let choice = CompletionChunkChoice {
            text,
            index,
            logprobs: None,
            finish_reason,
        };
        self.chunk(vec![choice], self.usage)
    }
}

impl ChunkFormat for CompletionChunks {
    fn opening(&self, index: usize) -> Option<String> {
        let prompt = self.echoes.as_ref()?.get(index)?;
        Some(self.choice(index, prompt.clone(), None))
    }

    fn text(&self, index: usize, text: String) -> String {
        self.choice(index, text, None)
    }

    fn finish(&self, index: usize, reason: FinishReason) -> String {
        self.choice(index, String::new(), Some(reason))
    }

    fn usage(&self, usage: Usage) -> String {
        self.chunk(Vec::new(), ChunkUsage::Totals(usage))
    }
}
