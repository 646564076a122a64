//! One choice's engine events → text with stop sequences cut out, tokens counted, logprobs kept with the
//! text they belong to; and all choices of a request interleaved.

use std::collections::VecDeque;

use futures::stream::{select_all, BoxStream};
use futures::{Stream, StreamExt};

use crate::api::common::FinishReason;
use crate::engine::{EngineError, EngineEvent, EngineFinish, EventStream, TokenLogprob};
use crate::stop::StopFilter;

/// Events the engine may still send after our stop filter matched, waiting for its own finish (and usage),
/// before the sequence is ended (and cancelled) here.
const EVENTS_AFTER_STOP_MATCH: usize = 4;

/// One choice being generated.
pub struct ChoiceSource {
    pub index: usize,
    pub events: EventStream,
    pub stop: Vec<String>,
}

/// Text of one choice that passed the stop filter.
#[derive(Debug, Clone, PartialEq)]
pub struct ChoiceText {
    pub index: usize,
    pub text: String,
    /// Sampled tokens this text covers (text held back by the stop filter counts with the next).
    pub tokens: usize,
    /// The log probabilities of the tokens behind this text, when the request asked for them.
    pub logprobs: Vec<TokenLogprob>,
}

/// One choice's progress, as every front consumes it: text that passed the stop filter (with its
/// logprobs), then `Finished` with the reason and counts, or `Failed` if the engine failed mid-way. A
/// request with `n` choices interleaves the choices' events, each tagged with its index.
#[derive(Debug, Clone, PartialEq)]
pub enum ChoiceEvent {
    Text(ChoiceText),
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
                        yield ChoiceEvent::Text(ChoiceText {
                            index,
                            text: filtered.emit,
                            tokens: std::mem::take(&mut unsent_tokens),
                            logprobs,
                        });
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
                            yield ChoiceEvent::Text(ChoiceText { index, text: rest, tokens: unsent_tokens, logprobs });
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
