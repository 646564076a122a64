//! `POST /v1/completions` (legacy text completions): one choice per prompt, streamed or collected.

use actix_web::{web, HttpResponse};

use crate::api::common::{FinishReason, Usage};
use std::collections::BTreeMap;

use crate::api::completions::{
    CompletionChoice, CompletionChunkChoice, CompletionLogprobs, CompletionRequest, TextCompletion,
    TextCompletionChunk,
};
use crate::engine::TokenLogprob;
use crate::error::ApiError;
use crate::extract::ApiJson;
use crate::front::{self, Prepared, PreparedCompletion};
use crate::generation::completion;
use crate::ids;
use crate::request_log::RequestLog;
use crate::routes::auth::{policy, Guarded};
use crate::routes::errors::GenerationErrors;
use crate::routes::sse::{self, ChunkFormat, ChunkHeader, SseEvent};
use crate::routes::{with_rate_headers, MODEL_VERSION_HEADER};
use crate::state::AppState;

/// Creates a completion for the given prompt(s): the model continues the text, no chat template.
///
/// With several prompts, each becomes a choice whose `index` is the prompt's position.
///
/// Rules between fields that the schema cannot state, each a 400 naming it: `best_of` is at least `n`;
/// `best_of` above `n` cannot be streamed; prompts × `best_of` (or × `n`) is at most 64 sequences.
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
        GenerationErrors,
    )
)]
pub async fn create_completion(
    guarded: Guarded<policy::Completions, ApiJson<CompletionRequest>>,
    state: web::Data<AppState>,
    log: RequestLog,
) -> Result<HttpResponse, ApiError> {
    let (caller, budget, body) = guarded.into_parts();
    let PreparedCompletion {
        prepared:
            Prepared {
                model,
                generation,
                planned,
                rate_headers,
            },
        prompts,
        echo,
    } = front::completion(&state, &caller, &budget, body.into_inner(), &log).await?;
    let id = format!("cmpl-{}", ids::random_id(24));
    let created = ids::unix_now();
    let echoes = completion::echoes(&prompts, generation.n, echo);

    if generation.stream {
        let choices = prompts.len() * generation.n;
        let offsets = (0..choices)
            .map(|i| echoes.as_ref().map_or(0, |e| e[i].chars().count()))
            .collect();
        let format = CompletionChunks {
            header: ChunkHeader::new(
                id,
                "text_completion",
                created,
                model.requested.clone(),
                model.id.clone(),
                generation.include_usage,
            ),
            echoes,
            logprobs: generation.logprobs,
            offsets,
        };
        let events = planned.stream(state.config.server.sse_keep_alive).await?;
        let body = sse::sse_body(format, events);
        return Ok(with_rate_headers(
            &rate_headers,
            sse::sse_response(&model.id, body),
        ));
    }

    let (candidates, usage) = planned.collect().await?;
    let chosen = completion::best_of(candidates, generation.generated, generation.n);
    let response = HttpResponse::Ok()
        .insert_header((MODEL_VERSION_HEADER, model.id.as_str()))
        .json(TextCompletion {
            id,
            object: "text_completion".to_string(),
            created,
            model: model.requested.clone(),
            system_fingerprint: model.id.clone(),
            choices: chosen
                .into_iter()
                .enumerate()
                .map(|(index, c)| {
                    let echo = echoes.as_ref().map(|e| e[index].as_str()).unwrap_or("");
                    let logprobs = generation
                        .logprobs
                        .map(|k| completion_logprobs(&c.logprobs, k, echo.chars().count()).0);
                    CompletionChoice {
                        text: format!("{echo}{}", c.text),
                        index,
                        logprobs,
                        finish_reason: c.finish_reason,
                    }
                })
                .collect(),
            // Usage counts every generated candidate, as OpenAI bills `best_of`.
            usage,
        });
    Ok(with_rate_headers(&rate_headers, response))
}

/// Our token logprobs in the legacy shape; `offset` is where the first token starts in the choice's text.
/// Returns the offset after the last token too, for the next chunk.
fn completion_logprobs(
    tokens: &[TokenLogprob],
    k: usize,
    mut offset: usize,
) -> (CompletionLogprobs, usize) {
    let mut logprobs = CompletionLogprobs::default();
    for token in tokens {
        logprobs.tokens.push(token.sampled.token.clone());
        logprobs.token_logprobs.push(token.sampled.logprob);
        // The `k` most likely, and the sampled token whatever its rank (OpenAI: up to k + 1 entries).
        let mut top: BTreeMap<String, f32> = token
            .top
            .iter()
            .take(k)
            .map(|a| (a.token.clone(), a.logprob))
            .collect();
        top.insert(token.sampled.token.clone(), token.sampled.logprob);
        logprobs.top_logprobs.push(top);
        logprobs.text_offset.push(offset);
        offset += token.sampled.token.chars().count();
    }
    (logprobs, offset)
}

/// `text_completion` chunks of one request: same id, `created` and model on every chunk.
struct CompletionChunks {
    header: ChunkHeader,
    echoes: Option<Vec<String>>,
    logprobs: Option<usize>,
    /// Per choice: the character offset of its next token (after the echoed prompt).
    offsets: Vec<usize>,
}

impl CompletionChunks {
    fn choice(&self, choice: CompletionChunkChoice) -> String {
        self.header.chunk(vec![choice])
    }
}

impl ChunkFormat for CompletionChunks {
    fn opening(&mut self, index: usize) -> Vec<SseEvent> {
        match self.echoes.as_ref().and_then(|e| e.get(index)) {
            Some(prompt) => vec![SseEvent::data(self.choice(CompletionChunkChoice {
                text: prompt.clone(),
                index,
                logprobs: None,
                finish_reason: None,
            }))],
            None => Vec::new(),
        }
    }

    fn text(&mut self, index: usize, text: String, tokens: Vec<TokenLogprob>) -> Vec<SseEvent> {
        let logprobs = self.logprobs.map(|k| {
            let (logprobs, next) = completion_logprobs(&tokens, k, self.offsets[index]);
            self.offsets[index] = next;
            logprobs
        });
        vec![SseEvent::data(self.choice(CompletionChunkChoice {
            text,
            index,
            logprobs,
            finish_reason: None,
        }))]
    }

    fn finish(&mut self, index: usize, reason: FinishReason) -> Vec<SseEvent> {
        vec![SseEvent::data(self.choice(CompletionChunkChoice {
            text: String::new(),
            index,
            logprobs: None,
            finish_reason: Some(reason),
        }))]
    }

    fn closing(&mut self, usage: Usage) -> Vec<SseEvent> {
        SseEvent::all_data(self.header.closing(usage))
    }
}
