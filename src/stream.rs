//! Engine events → client output: one SSE body (OpenAI's framing) or one collected answer.
//!
//! The single place that knows the SSE wire format (shared/design/OPENAI_WIRE.md): `data: <json>\n\n`
//! events, no named events, `: ping` keep-alive comments, errors after the 200 as JSON `data:` events, and
//! `data: [DONE]` last. The admission permit and the engine streams live inside the body, so a client that
//! goes away drops them: the engine cancels its sequences and the slot is freed. A server that must stop
//! (second signal, drain timeout) ends each stream with an error event and `[DONE]`.

use std::time::Duration;

use actix_web::web::Bytes;
use actix_web::HttpResponse;
use futures::future::BoxFuture;
use futures::stream::{select_all, BoxStream};
use futures::{Stream, StreamExt};

use crate::api::common::{FinishReason, Usage};
use std::collections::VecDeque;

use crate::engine::{EngineError, EngineEvent, EngineFinish, EventStream, TokenLogprob};
use crate::error::ApiError;
use crate::gateway::limits::{AdmissionPermit, GatewayError};
use crate::stop::StopFilter;
use crate::telemetry::RequestLog;

/// Events the engine may still send after our stop filter matched, waiting for its own finish (and usage),
/// before the sequence is ended (and cancelled) here.
const EVENTS_AFTER_STOP_MATCH: usize = 4;

/// One choice being generated.
pub struct ChoiceSource {
    pub index: usize,
    pub events: EventStream,
    pub stop: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ChoiceEvent {
    Text {
        index: usize,
        text: String,
        /// Sampled tokens this text covers (text held back by the stop filter counts with the next).
        tokens: usize,
        /// The log probabilities of the tokens behind this text, when the request asked for them.
        logprobs: Vec<TokenLogprob>,
    },
    Finished {
        index: usize,
        reason: FinishReason,
        completion_tokens: usize,
        /// The engine's count of the prompt, when it reported one.
        prompt_tokens: Option<usize>,
    },
    Failed(EngineError),
}

fn finish_reason(reason: EngineFinish) -> FinishReason {
    match reason {
        EngineFinish::Stop => FinishReason::Stop,
        EngineFinish::Length => FinishReason::Length,
    }
}

/// Token logprobs waiting for their text to pass the stop filter. A token is released once all its bytes
/// have been emitted; tokens in (or straddling) a cut stop string are dropped with it.
#[derive(Default)]
struct HeldLogprobs {
    tokens: VecDeque<TokenLogprob>,
    /// Bytes of the front token already released with earlier text.
    front_released: usize,
}

impl HeldLogprobs {
    fn release(&mut self, mut emitted: usize) -> Vec<TokenLogprob> {
        let mut released = Vec::new();
        while emitted > 0 {
            let Some(front) = self.tokens.front() else {
                break;
            };
            let remaining = front
                .sampled
                .bytes
                .len()
                .saturating_sub(self.front_released);
            if remaining > emitted {
                // The token straddles the end of this text: it goes out with the text after.
                self.front_released += emitted;
                break;
            }
            emitted -= remaining;
            self.front_released = 0;
            released.extend(self.tokens.pop_front());
        }
        // Tokens with no bytes of their own (special tokens) travel with the text before them.
        while self
            .tokens
            .front()
            .is_some_and(|t| t.sampled.bytes.is_empty())
        {
            released.extend(self.tokens.pop_front());
        }
        released
    }
}

/// One choice's engine events with stop sequences cut out and tokens counted.
fn choice_events(source: ChoiceSource) -> BoxStream<'static, ChoiceEvent> {
    let ChoiceSource {
        index,
        mut events,
        stop,
    } = source;
    let has_stops = !stop.is_empty();
    Box::pin(async_stream::stream! {
        let mut filter = StopFilter::new(stop);
        let mut held = HeldLogprobs::default();
        let mut tokens = 0usize;
        let mut unsent_tokens = 0usize;
        let mut events_after_stop: Option<usize> = None;
        while let Some(event) = events.next().await {
            match event {
                Ok(EngineEvent::Text { text, tokens: n, logprobs }) => {
                    if let Some(seen) = events_after_stop.as_mut() {
                        *seen += 1;
                        if *seen > EVENTS_AFTER_STOP_MATCH {
                            yield ChoiceEvent::Finished { index, reason: FinishReason::Stop, completion_tokens: tokens, prompt_tokens: None };
                            return;
                        }
                        continue;
                    }
                    tokens += n;
                    unsent_tokens += n;
                    held.tokens.extend(logprobs);
                    let filtered = filter.push(&text);
                    let logprobs = if has_stops {
                        held.release(filtered.emit.len())
                    } else {
                        held.tokens.drain(..).collect()
                    };
                    if !filtered.emit.is_empty() || !logprobs.is_empty() {
                        yield ChoiceEvent::Text {
                            index,
                            text: filtered.emit,
                            tokens: std::mem::take(&mut unsent_tokens),
                            logprobs,
                        };
                    }
                    if filtered.stopped {
                        events_after_stop = Some(0);
                    }
                }
                Ok(EngineEvent::Finished { reason, completion_tokens, prompt_tokens }) => {
                    let reason = if events_after_stop.is_some() {
                        FinishReason::Stop
                    } else {
                        let rest = filter.flush();
                        let logprobs: Vec<TokenLogprob> = held.tokens.drain(..).collect();
                        if !rest.is_empty() || !logprobs.is_empty() {
                            yield ChoiceEvent::Text { index, text: rest, tokens: unsent_tokens, logprobs };
                        }
                        finish_reason(reason)
                    };
                    let completion_tokens = completion_tokens.unwrap_or(tokens);
                    yield ChoiceEvent::Finished { index, reason, completion_tokens, prompt_tokens };
                    return;
                }
                Err(error) => {
                    yield ChoiceEvent::Failed(error);
                    return;
                }
            }
        }
        if events_after_stop.is_some() {
            yield ChoiceEvent::Finished { index, reason: FinishReason::Stop, completion_tokens: tokens, prompt_tokens: None };
        } else {
            yield ChoiceEvent::Failed(EngineError::Internal("the sequence ended without a finish".into()));
        }
    })
}

/// All choices of a request, interleaved as they arrive.
pub fn merged_choices(sources: Vec<ChoiceSource>) -> impl Stream<Item = ChoiceEvent> + Send {
    select_all(sources.into_iter().map(choice_events))
}

/// How one endpoint writes its chunks (chat and completions differ only here). Each method returns the
/// JSON of zero or more chunks: a format may hold text back (a tool call's head) or split it.
pub trait ChunkFormat: Send + 'static {
    /// The first event of a choice, before any generated text (chat: the role; completions: an echo).
    fn opening(&mut self, index: usize) -> Vec<String>;
    fn text(&mut self, index: usize, text: String, logprobs: Vec<TokenLogprob>) -> Vec<String>;
    fn finish(&mut self, index: usize, reason: FinishReason) -> Vec<String>;
    /// The extra chunk with empty `choices` and the totals (`stream_options.include_usage`).
    fn usage(&self, usage: Usage) -> String;
}

fn data_event(json: &str) -> Bytes {
    Bytes::from(format!("data: {json}\n\n"))
}

const KEEP_ALIVE_EVENT: &[u8] = b": ping\n\n";
const DONE_EVENT: &[u8] = b"data: [DONE]\n\n";

/// A request admitted and submitted: its slot and its choices' engine streams.
pub struct Started {
    pub permit: AdmissionPermit,
    pub sources: Vec<ChoiceSource>,
}

/// A request's prompt tokens as counted before generation, and whether the engine's own count replaces them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PromptCount {
    pub counted: usize,
    /// Every choice continues one prompt (chat, or a single completion prompt): the engine's count, when
    /// it reports one, is then that prompt's, and it includes what the engine adds itself (a vision
    /// model's image tokens). Several completion prompts keep our sum.
    pub single_prompt: bool,
}

impl PromptCount {
    fn reported(self, engine: Option<usize>) -> usize {
        match engine {
            Some(engine) if self.single_prompt => engine,
            _ => self.counted,
        }
    }
}

/// Everything an SSE response needs besides the choices themselves.
pub struct StreamSettings {
    pub prompt_tokens: PromptCount,
    pub include_usage: bool,
    pub keep_alive: Duration,
    pub log: RequestLog,
}

/// Writes a refusal or failure after the 200 as a JSON error event, then `[DONE]`.
fn error_events(error: ApiError, log: &RequestLog) -> [Bytes; 2] {
    if error.is_failure() {
        tracing::error!(error = %error, "generation ended after the response started");
    } else {
        // An expected refusal (queue timeout, drain): the request log line records it.
        tracing::info!(error = %error, code = error.label(), "refused after the response started");
    }
    log.set_error(error.label());
    let envelope = serde_json::to_string(&error.envelope()).expect("envelopes serialize");
    [data_event(&envelope), Bytes::from_static(DONE_EVENT)]
}

/// The SSE body for a request, ending in `data: [DONE]` whatever happens. `start` resolves once the
/// request holds a slot and its sequences are submitted; until then the body sends only keep-alives.
pub fn sse_body<F: ChunkFormat>(
    mut format: F,
    start: BoxFuture<'static, Result<Started, ApiError>>,
    settings: StreamSettings,
) -> impl Stream<Item = Result<Bytes, actix_web::Error>> {
    let StreamSettings {
        prompt_tokens,
        include_usage,
        keep_alive,
        log,
    } = settings;
    async_stream::stream! {
        let mut start = start;
        let Started { mut permit, sources } = loop {
            match tokio::time::timeout(keep_alive, &mut start).await {
                Err(_) => yield Ok(Bytes::from_static(KEEP_ALIVE_EVENT)),
                Ok(Ok(started)) => break started,
                Ok(Err(error)) => {
                    for event in error_events(error, &log) {
                        yield Ok(event);
                    }
                    return;
                }
            }
        };
        for index in 0..sources.len() {
            for opening in format.opening(index) {
                yield Ok(data_event(&opening));
            }
        }
        let mut merged = std::pin::pin!(merged_choices(sources));
        let mut completion_tokens = 0;
        let mut engine_prompt_tokens = None;
        loop {
            let next = tokio::select! {
                _ = permit.aborted() => None,
                next = tokio::time::timeout(keep_alive, merged.next()) => Some(next),
            };
            let error = match next {
                Some(Err(_)) => {
                    yield Ok(Bytes::from_static(KEEP_ALIVE_EVENT));
                    continue;
                }
                Some(Ok(None)) => break,
                Some(Ok(Some(ChoiceEvent::Text { index, text, tokens, logprobs }))) => {
                    log.tokens_arrived(tokens);
                    for chunk in format.text(index, text, logprobs) {
                        yield Ok(data_event(&chunk));
                    }
                    continue;
                }
                Some(Ok(Some(ChoiceEvent::Finished { index, reason, completion_tokens: n, prompt_tokens: engine_prompt }))) => {
                    completion_tokens += n;
                    engine_prompt_tokens = engine_prompt_tokens.max(engine_prompt);
                    log.set_finish_reason(reason.as_str());
                    let chunks = format.finish(index, reason);
                    for chunk in chunks {
                        yield Ok(data_event(&chunk));
                    }
                    continue;
                }
                Some(Ok(Some(ChoiceEvent::Failed(error)))) => ApiError::from(error),
                None => ApiError::from(GatewayError::ShutDown),
            };
            for event in error_events(error, &log) {
                yield Ok(event);
            }
            return;
        }
        let prompt_tokens = prompt_tokens.reported(engine_prompt_tokens);
        log.set_prompt_tokens(prompt_tokens);
        log.set_completion_tokens(completion_tokens);
        if include_usage {
            yield Ok(data_event(&format.usage(Usage::new(prompt_tokens, completion_tokens))));
        }
        yield Ok(Bytes::from_static(DONE_EVENT));
    }
}

/// A `200 text/event-stream` response around an SSE body.
pub fn sse_response(
    body: impl Stream<Item = Result<Bytes, actix_web::Error>> + 'static,
) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header(("Cache-Control", "no-cache"))
        .insert_header(("X-Accel-Buffering", "no"))
        .streaming(body)
}

/// One choice's complete answer.
#[derive(Debug, Clone, PartialEq)]
pub struct CollectedChoice {
    pub index: usize,
    pub text: String,
    pub logprobs: Vec<TokenLogprob>,
    pub finish_reason: FinishReason,
}

impl CollectedChoice {
    /// The sum of the sampled tokens' log probabilities (`best_of` ranks choices by it).
    pub fn total_logprob(&self) -> f32 {
        self.logprobs.iter().map(|t| t.sampled.logprob).sum()
    }
}

/// Runs every choice to its end for a non-streaming answer; returns the choices in index order and the
/// completion tokens. Dropping this future (client gone) cancels the engine sequences.
pub async fn collect(
    started: Started,
    prompt_tokens: PromptCount,
    log: &RequestLog,
) -> Result<(Vec<CollectedChoice>, Usage), ApiError> {
    let Started {
        mut permit,
        sources,
    } = started;
    let mut choices: Vec<CollectedChoice> = (0..sources.len())
        .map(|index| CollectedChoice {
            index,
            text: String::new(),
            logprobs: Vec::new(),
            finish_reason: FinishReason::Stop,
        })
        .collect();
    let mut completion_tokens = 0;
    let mut engine_prompt_tokens = None;
    let mut merged = std::pin::pin!(merged_choices(sources));
    loop {
        let event = tokio::select! {
            _ = permit.aborted() => return Err(GatewayError::ShutDown.into()),
            event = merged.next() => event,
        };
        match event {
            None => break,
            Some(ChoiceEvent::Text {
                index,
                text,
                tokens,
                logprobs,
            }) => {
                log.tokens_arrived(tokens);
                choices[index].text.push_str(&text);
                choices[index].logprobs.extend(logprobs);
            }
            Some(ChoiceEvent::Finished {
                index,
                reason,
                completion_tokens: n,
                prompt_tokens: engine_prompt,
            }) => {
                completion_tokens += n;
                engine_prompt_tokens = engine_prompt_tokens.max(engine_prompt);
                choices[index].finish_reason = reason;
                log.set_finish_reason(reason.as_str());
            }
            Some(ChoiceEvent::Failed(error)) => return Err(error.into()),
        }
    }
    let prompt_tokens = prompt_tokens.reported(engine_prompt_tokens);
    log.set_prompt_tokens(prompt_tokens);
    log.set_completion_tokens(completion_tokens);
    Ok((choices, Usage::new(prompt_tokens, completion_tokens)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scripted(events: Vec<Result<EngineEvent, EngineError>>) -> EventStream {
        Box::pin(futures::stream::iter(events))
    }

    fn text(t: &str) -> Result<EngineEvent, EngineError> {
        Ok(EngineEvent::Text {
            text: t.into(),
            tokens: 1,
            logprobs: Vec::new(),
        })
    }

    #[actix_web::test]
    async fn stop_is_cut_and_counted_tokens_used_without_engine_usage() {
        let source = ChoiceSource {
            index: 0,
            events: scripted(vec![
                text("Hello"),
                text(" wor"),
                text("ld!"),
                Ok(EngineEvent::Finished {
                    reason: EngineFinish::Stop,
                    completion_tokens: None,
                    prompt_tokens: None,
                }),
            ]),
            stop: vec!["world".into()],
        };
        let events: Vec<ChoiceEvent> = merged_choices(vec![source]).collect().await;
        assert_eq!(
            events,
            vec![
                ChoiceEvent::Text {
                    index: 0,
                    text: "Hello".into(),
                    tokens: 1,
                    logprobs: vec![]
                },
                ChoiceEvent::Text {
                    index: 0,
                    text: " ".into(),
                    tokens: 1,
                    logprobs: vec![]
                },
                ChoiceEvent::Finished {
                    index: 0,
                    reason: FinishReason::Stop,
                    completion_tokens: 3,
                    prompt_tokens: None
                },
            ]
        );
    }

    #[actix_web::test]
    async fn a_stream_that_ends_without_finish_is_an_error() {
        let source = ChoiceSource {
            index: 0,
            events: scripted(vec![text("a")]),
            stop: vec![],
        };
        let events: Vec<ChoiceEvent> = merged_choices(vec![source]).collect().await;
        assert!(matches!(events.last(), Some(ChoiceEvent::Failed(_))));
    }

    #[actix_web::test]
    /// The engine's counts win: its completion count, and its prompt count for a single prompt (a vision
    /// model's processor adds the image tokens).
    async fn engine_usage_wins_over_counted_tokens() {
        let source = ChoiceSource {
            index: 0,
            events: scripted(vec![
                text("a"),
                Ok(EngineEvent::Finished {
                    reason: EngineFinish::Length,
                    completion_tokens: Some(7),
                    prompt_tokens: Some(12),
                }),
            ]),
            stop: vec![],
        };
        let gate =
            crate::gateway::limits::Admission::new(crate::gateway::limits::AdmissionLimits {
                max_running: 1,
                max_waiting: 0,
                queue_timeout: None,
            });
        let started = Started {
            permit: gate.admit(1).await.unwrap(),
            sources: vec![source],
        };
        let one_prompt = PromptCount {
            counted: 5,
            single_prompt: true,
        };
        let (choices, usage) = collect(started, one_prompt, &RequestLog::default())
            .await
            .unwrap();
        assert_eq!(usage, Usage::new(12, 7));
        assert_eq!(choices[0].finish_reason, FinishReason::Length);
        assert_eq!(choices[0].text, "a");
    }
}
