//! Text completions in their wire shapes: the `text_completion` chunks of a stream
//! ([`CompletionChunks`], echoes first, logprobs with their text offsets) and the whole answer
//! ([`text_completion`], `best_of` chosen).

use std::collections::BTreeMap;

use crate::api::common::{FinishReason, Usage};
use crate::api::completions::{
    CompletionChoice, CompletionChunkChoice, CompletionLogprobs, TextCompletion,
};
use crate::engine::TokenLogprob;
use crate::formats::{Answer, ChunkFormat, ChunkHeader, SseEvent};
use crate::generation::completion;
use crate::generation::inputs::CompletionShape;
use crate::generation::output::Collected;
use crate::generation::AnswerHead;
use crate::ids;

/// The completions API's answer: `text_completion` chunks, or one `text_completion`.
pub struct CompletionAnswer;

impl Answer<CompletionShape> for CompletionAnswer {
    type Streamed = CompletionChunks;
    type Whole = TextCompletion;

    fn streamed(self, head: &AnswerHead<CompletionShape>) -> CompletionChunks {
        CompletionChunks::new(head)
    }

    fn whole(self, head: &AnswerHead<CompletionShape>, collected: Collected) -> TextCompletion {
        text_completion(head, collected)
    }
}

/// A new completion's id.
fn answer_id() -> String {
    format!("cmpl-{}", ids::random_id(24))
}

/// The whole `text_completion`: the `n` best of each prompt's candidates, echoes prepended.
pub fn text_completion(
    head: &AnswerHead<CompletionShape>,
    Collected {
        choices: candidates,
        usage,
    }: Collected,
) -> TextCompletion {
    let generation = &head.generation;
    let echoes = completion::echoes(&head.shape.prompts, generation.n, head.shape.echo);
    let chosen = completion::best_of(candidates, generation.generated, generation.n);
    TextCompletion {
        id: answer_id(),
        object: "text_completion".to_string(),
        created: head.created,
        model: head.model.requested.clone(),
        system_fingerprint: head.model.id.clone(),
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
    }
}

impl CompletionChunks {
    /// The chunks of one streamed answer: same id, `created` and model on every chunk.
    pub fn new(head: &AnswerHead<CompletionShape>) -> Self {
        let generation = &head.generation;
        let echoes = completion::echoes(&head.shape.prompts, generation.n, head.shape.echo);
        let choices = head.shape.prompts.len() * generation.n;
        let offsets = (0..choices)
            .map(|i| echoes.as_ref().map_or(0, |e| e[i].chars().count()))
            .collect();
        CompletionChunks {
            header: ChunkHeader::new(
                answer_id(),
                "text_completion",
                head.created,
                head.model.requested.clone(),
                head.model.id.clone(),
                generation.include_usage,
            ),
            echoes,
            logprobs: generation.logprobs,
            offsets,
        }
    }
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
pub struct CompletionChunks {
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
