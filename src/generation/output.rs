//! A submitted request's choice events → what a transport sends: a stream of [`GenerationEvent`]s (the SSE
//! and gRPC writers frame them) or one collected answer.
//!
//! The admission permit and the engine streams live inside the stream, so a client that goes away drops
//! them: the engine cancels its sequences and the slot is freed. A server that must stop (second signal,
//! drain timeout) ends each stream with a `Failed` event.

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::{Stream, StreamExt};

use crate::api::common::{FinishReason, Usage};
use crate::engine::{EngineError, TokenLogprob};
use crate::error::{ApiError, ValidationError};
use crate::gateway::limiter::Settlement;
use crate::generation::choices::{merged_choices, ChoiceEvent, ChoiceSource, ChoiceText};
use crate::models::admission::{AdmissionError, AdmissionPermit};
use crate::models::ServedModel;
use crate::request_log::RequestLog;

/// A request admitted and submitted: its slot and its choices' engine streams.
pub struct Started {
    pub permit: AdmissionPermit,
    pub sources: Vec<ChoiceSource>,
    /// The version answering, held until the response ends: a version taken out of service is unloaded
    /// only once its last response has let go of it.
    pub model: Arc<ServedModel>,
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

/// What a transport writes, in order: `Idle` while waiting (a keep-alive is due), then per choice `Opened`,
/// its `Text`s and `Finished`, and last `Done` with the totals, or `Failed` once, after which nothing follows.
#[derive(Debug)]
pub enum GenerationEvent {
    /// Nothing for a keep-alive interval: still queued for a slot, or between tokens.
    Idle,
    /// The choice's sequence is in the engine (chat opens with the role, completions with an echo).
    Opened {
        index: usize,
    },
    Text(ChoiceText),
    Finished {
        index: usize,
        reason: FinishReason,
    },
    /// Every choice has finished; the request's usage.
    Done(Usage),
    /// Refused (queue timeout, drain) or failed after the stream began; logged here, once.
    Failed(ApiError),
}

/// How a request is run: its counted prompt, the keep-alive interval, its log and its settlement.
pub struct StreamSettings {
    pub prompt_tokens: PromptCount,
    pub keep_alive: Duration,
    pub log: RequestLog,
    /// The key's settlement, made as the stream's last step (or when it is dropped unfinished).
    pub settlement: Settlement,
    /// Whether a failure is logged here: after a stream's 200 nobody else logs it; a collected answer's
    /// failure is returned as the response's error and logged there.
    pub log_failures: bool,
    /// The request field its output constraint came from, if it has one.
    pub constraint: Option<&'static str>,
}

fn failed(error: ApiError, log: &RequestLog, log_failures: bool) -> GenerationEvent {
    if !log_failures {
        // Returned as the response's error, and logged with it.
    } else if error.is_failure() {
        tracing::error!(error = %error, "generation ended after the response started");
    } else {
        // An expected refusal (queue timeout, drain): the request log line records it.
        tracing::info!(error = %error, code = error.label(), "refused after the response started");
    }
    log.set_error(error.label());
    GenerationEvent::Failed(error)
}

/// The events of a streamed request. `start` resolves once the request holds a slot and its sequences
/// are submitted; until then only `Idle` events come, one per keep-alive interval.
pub fn events(
    start: BoxFuture<'static, Result<Started, ApiError>>,
    settings: StreamSettings,
) -> impl Stream<Item = GenerationEvent> + Send {
    let StreamSettings {
        prompt_tokens,
        keep_alive,
        log,
        mut settlement,
        log_failures,
        constraint,
    } = settings;
    async_stream::stream! {
        let mut start = start;
        // `_version` (not `_`) keeps the answering version loaded until the stream ends.
        let Started { mut permit, sources, model: _version } = loop {
            match tokio::time::timeout(keep_alive, &mut start).await {
                Err(_) => yield GenerationEvent::Idle,
                Ok(Ok(started)) => break started,
                Ok(Err(error)) => {
                    settlement.settle();
                    yield failed(error, &log, log_failures);
                    return;
                }
            }
        };
        for index in 0..sources.len() {
            yield GenerationEvent::Opened { index };
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
                    yield GenerationEvent::Idle;
                    continue;
                }
                Some(Ok(None)) => break,
                Some(Ok(Some(ChoiceEvent::Text(text)))) => {
                    log.tokens_arrived(text.tokens);
                    settlement.generated(text.tokens);
                    yield GenerationEvent::Text(text);
                    continue;
                }
                Some(Ok(Some(ChoiceEvent::Finished { index, reason, completion_tokens: n, prompt_tokens: engine_prompt }))) => {
                    completion_tokens += n;
                    engine_prompt_tokens = engine_prompt_tokens.max(engine_prompt);
                    log.set_finish_reason(reason.as_str());
                    yield GenerationEvent::Finished { index, reason };
                    continue;
                }
                Some(Ok(Some(ChoiceEvent::Failed(error)))) => name_constraint(error.into(), constraint),
                None => ApiError::from(AdmissionError::ShutDown),
            };
            settlement.settle();
            yield failed(error, &log, log_failures);
            return;
        }
        let prompt_tokens = prompt_tokens.reported(engine_prompt_tokens);
        log.set_prompt_tokens(prompt_tokens);
        log.set_completion_tokens(completion_tokens);
        settlement.complete(prompt_tokens, completion_tokens);
        yield GenerationEvent::Done(Usage::new(prompt_tokens, completion_tokens));
    }
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

/// A constraint the engine's parser gave up on while decoding (a grammar that grows past its limits
/// only after some tokens) is the request's own fault: a 400 naming the field it came from.
fn name_constraint(error: ApiError, param: Option<&'static str>) -> ApiError {
    match (error, param) {
        (ApiError::Engine(EngineError::ConstraintFailed(message)), Some(param)) => {
            ValidationError::invalid(
                param,
                format!("the constraint is too large for constrained decoding: {message}"),
            )
            .into()
        }
        (error, _) => error,
    }
}

/// A collected answer: every choice whole, in index order, and the usage.
#[derive(Debug)]
pub struct Collected {
    pub choices: Vec<CollectedChoice>,
    pub usage: Usage,
}

/// Runs a request's events to their end for an answer sent whole: built on the same events a stream
/// writes. Dropping this future (client gone) drops the events, which cancels the engine sequences.
pub async fn collect(
    events: impl Stream<Item = GenerationEvent>,
    sequences: usize,
) -> Result<Collected, ApiError> {
    let mut choices: Vec<CollectedChoice> = (0..sequences)
        .map(|index| CollectedChoice {
            index,
            text: String::new(),
            logprobs: Vec::new(),
            finish_reason: FinishReason::Stop,
        })
        .collect();
    let mut events = std::pin::pin!(events);
    while let Some(event) = events.next().await {
        match event {
            GenerationEvent::Idle | GenerationEvent::Opened { .. } => {}
            GenerationEvent::Text(piece) => {
                let choice = &mut choices[piece.index];
                choice.text.push_str(&piece.text);
                choice.logprobs.extend(piece.logprobs);
            }
            GenerationEvent::Finished { index, reason } => choices[index].finish_reason = reason,
            GenerationEvent::Done(usage) => return Ok(Collected { choices, usage }),
            GenerationEvent::Failed(error) => return Err(error),
        }
    }
    Err(AdmissionError::ShutDown.into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{EngineError, EngineEvent, EngineFinish, EventStream};
    use futures::FutureExt;

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
                ChoiceEvent::Text(ChoiceText {
                    index: 0,
                    text: "Hello".into(),
                    tokens: 1,
                    logprobs: vec![]
                }),
                ChoiceEvent::Text(ChoiceText {
                    index: 0,
                    text: " ".into(),
                    tokens: 1,
                    logprobs: vec![]
                }),
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
            crate::models::admission::Admission::new(crate::models::admission::AdmissionLimits {
                max_running: 1,
                max_waiting: 0,
                queue_timeout: None,
            });
        let started = Started {
            permit: gate.admit(1).await.unwrap(),
            sources: vec![source],
            model: ServedModel::for_tests(crate::engine::scripted::engine(
                1,
                vec![],
                Duration::ZERO,
            )),
        };
        let one_prompt = PromptCount {
            counted: 5,
            single_prompt: true,
        };
        let settings = StreamSettings {
            prompt_tokens: one_prompt,
            keep_alive: Duration::from_secs(60),
            log: RequestLog::default(),
            settlement: Settlement::new(crate::gateway::limiter::KeyBudget::unlimited(), 5),
            log_failures: false,
            constraint: None,
        };
        let started = futures::future::ready(Ok(started)).boxed();
        let Collected { choices, usage } = collect(events(started, settings), 1).await.unwrap();
        assert_eq!(usage, Usage::new(12, 7));
        assert_eq!(choices[0].finish_reason, FinishReason::Length);
        assert_eq!(choices[0].text, "a");
    }
}
