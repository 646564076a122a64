//! The engine's responses as our events: streamed chunks matched with the token picks behind them
//! (logprobs), finish reasons, the first completion token's whitespace restored.

use std::sync::Arc;

use mistralrs::Response;
use tokio::sync::mpsc;

use crate::engine::sampler::{Pick, TokenPicker};
use crate::engine::vocab::Vocabulary;
use crate::engine::{EngineError, EngineEvent, EngineFinish, EventStream, TokenLogprob};

pub(super) fn finish_reason(reason: &str) -> Result<EngineFinish, EngineError> {
    match reason {
        "length" => Ok(EngineFinish::Length),
        "error" => Err(EngineError::Internal(
            "the engine ended the sequence with an error".into(),
        )),
        // "stop" (EOS, stop token or stop string) and anything this server did not ask for.
        _ => Ok(EngineFinish::Stop),
    }
}

/// mistral.rs trims the start of a sequence's first streamed delta. Right for chat, wrong for completions:
/// the continuation of "colors are" is " the", and `echo` or prompt + completion would lose the space. The
/// sampled tokens' own bytes give the whitespace back.
pub(super) fn restore_leading_whitespace(delta: String, token: &str) -> String {
    let trimmed = token.trim_start();
    let whitespace = &token[..token.len() - trimmed.len()];
    if whitespace.is_empty()
        || !delta.starts_with(trimmed)
        || delta.starts_with(char::is_whitespace)
    {
        return delta;
    }
    format!("{whitespace}{delta}")
}

/// Matches the engine's streamed chunks with the picks behind them. The engine sends a chunk after a token
/// unless the text so far ends in an incomplete UTF-8 sequence, so the picks of one chunk run up to the
/// first point where their bytes decode whole: the same rule, replayed on the same bytes.
pub(super) struct ChunkPicks {
    picker: Arc<TokenPicker>,
    vocabulary: Arc<Vocabulary>,
    /// Picks already matched to chunks.
    consumed: usize,
    /// `Some(k)`: the request asked for logprobs with `k` alternatives.
    top_logprobs: Option<usize>,
}

impl ChunkPicks {
    pub(super) fn new(
        picker: Arc<TokenPicker>,
        vocabulary: Arc<Vocabulary>,
        top_logprobs: Option<usize>,
    ) -> Self {
        ChunkPicks {
            picker,
            vocabulary,
            consumed: 0,
            top_logprobs,
        }
    }

    /// The picks behind the next chunk, and the bytes they decode to.
    fn next_chunk(&mut self) -> (Vec<Pick>, Vec<u8>) {
        let mut picks = Vec::new();
        let mut bytes = Vec::new();
        for pick in self.picker.picks_from(self.consumed) {
            bytes.extend_from_slice(self.vocabulary.text_bytes(pick.token));
            picks.push(pick);
            if !String::from_utf8_lossy(&bytes).ends_with('\u{FFFD}') {
                break;
            }
        }
        self.consumed += picks.len();
        (picks, bytes)
    }

    /// OpenAI's logprob entries for these picks; an end-of-sequence token is not part of the answer.
    fn logprobs(&self, picks: &[Pick]) -> Vec<TokenLogprob> {
        let Some(k) = self.top_logprobs else {
            return Vec::new();
        };
        picks
            .iter()
            .filter(|p| !self.vocabulary.is_end_of_sequence(p.token))
            .map(|p| TokenLogprob {
                sampled: self.vocabulary.alternative(p.token, p.logprob),
                top: p
                    .top
                    .iter()
                    .take(k)
                    .map(|&(t, l)| self.vocabulary.alternative(t, l))
                    .collect(),
            })
            .collect()
    }
}

/// How llguidance's parser errors begin, as mistral.rs passes them on.
const CONSTRAINT_PARSER_ERROR: &str = "Parser Error";

/// Turns the engine's response channel into our events; dropping the stream drops the receiver, which the
/// engine notices at its next token and answers by cancelling the sequence.
pub(super) fn event_stream(
    mut rx: mpsc::Receiver<Response>,
    mut picks: ChunkPicks,
    is_completion: bool,
    constrained: bool,
) -> EventStream {
    // llguidance prefixes its own failures so; in a constrained request they are the constraint's.
    let failure = move |message: String| {
        if constrained && message.contains(CONSTRAINT_PARSER_ERROR) {
            // Its first line says why; the parser state and backtrace after it are the engine's.
            let why = message.lines().next().unwrap_or_default().to_string();
            EngineError::ConstraintFailed(why)
        } else {
            EngineError::Internal(message)
        }
    };
    Box::pin(async_stream::stream! {
        let mut first_delta = true;
        while let Some(response) = rx.recv().await {
            let (text, reason, usage) = match response {
                Response::Chunk(mut chunk) => {
                    let usage = chunk.usage.as_ref().map(|u| (u.completion_tokens, u.prompt_tokens));
                    let Some(choice) = chunk.choices.pop() else { continue };
                    (choice.delta.content.unwrap_or_default(), choice.finish_reason, usage)
                }
                Response::CompletionChunk(mut chunk) => {
                    let Some(choice) = chunk.choices.pop() else { continue };
                    (choice.text, choice.finish_reason, None)
                }
                Response::ValidationError(e) => {
                    yield Err(EngineError::Rejected(e.to_string()));
                    return;
                }
                Response::InternalError(e) => {
                    yield Err(failure(e.to_string()));
                    return;
                }
                Response::ModelError(message, _) | Response::CompletionModelError(message, _) => {
                    yield Err(failure(message));
                    return;
                }
                // Non-streaming answers and other modalities are never requested.
                _ => continue,
            };
            let (chunk_picks, bytes) = picks.next_chunk();
            let mut text = text;
            if is_completion && std::mem::take(&mut first_delta) {
                text = restore_leading_whitespace(text, &String::from_utf8_lossy(&bytes));
            }
            yield Ok(EngineEvent::Text {
                text,
                tokens: chunk_picks.len().max(1),
                logprobs: picks.logprobs(&chunk_picks),
            });
            if let Some(reason) = reason {
                yield finish_reason(&reason).map(|reason| EngineEvent::Finished {
                    reason,
                    completion_tokens: usage.map(|(completion, _)| completion),
                    prompt_tokens: usage.map(|(_, prompt)| prompt),
                });
                return;
            }
        }
        yield Err(EngineError::Internal("the engine dropped the sequence without finishing it".into()));
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_completion_token_gets_its_whitespace_back() {
        assert_eq!(restore_leading_whitespace("the".into(), " the"), " the");
        assert_eq!(restore_leading_whitespace("".into(), "\n"), "\n");
        assert_eq!(restore_leading_whitespace("4,".into(), " 4"), " 4,");
        // Nothing to restore, or the delta is not this token's text (several tokens held back).
        assert_eq!(restore_leading_whitespace("the".into(), "the"), "the");
        assert_eq!(restore_leading_whitespace("é!".into(), " x"), "é!");
    }
}
