//! What each API streams, beside the API: an answer's generation events turned into that API's wire
//! events ([`ChunkFormat`]), each a typed [`SseEvent`] that names itself. [`chat`] and [`completion`]
//! write `chat.completion.chunk` and `text_completion` chunks (sharing [`ChunkHeader`]) and build the
//! whole answers too; the Responses API's events live with that API (`responses::stream`). The bytes
//! on the wire are `routes::sse`'s alone.

pub mod chat;
pub mod completion;

use serde::Serialize;

use crate::api::common::{ChunkUsage, FinishReason, Usage};
use crate::engine::TokenLogprob;
use crate::error::ApiError;
use crate::generation::output::Collected;
use crate::generation::AnswerHead;

/// What every chunk of one streamed answer repeats, and the one place chunks are serialized: the
/// documented `ChatCompletionChunk` and `TextCompletionChunk` are this header, their `object`, and their
/// choices (a test holds them to it).
pub struct ChunkHeader {
    pub id: String,
    pub object: &'static str,
    pub created: u64,
    pub model: String,
    /// The version that answers: `model@version`.
    pub system_fingerprint: String,
    /// `usage` on every chunk but the last: absent, or `null` with `stream_options.include_usage`.
    pub usage: ChunkUsage,
}

#[derive(Serialize)]
struct Chunk<'a, C> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
    system_fingerprint: &'a str,
    choices: Vec<C>,
    #[serde(skip_serializing_if = "ChunkUsage::is_absent")]
    usage: ChunkUsage,
}

impl ChunkHeader {
    pub fn new(
        id: String,
        object: &'static str,
        created: u64,
        model: String,
        system_fingerprint: String,
        include_usage: bool,
    ) -> Self {
        let usage = if include_usage {
            ChunkUsage::Null
        } else {
            ChunkUsage::Absent
        };
        ChunkHeader {
            id,
            object,
            created,
            model,
            system_fingerprint,
            usage,
        }
    }

    /// The JSON of a chunk of these choices.
    pub fn chunk<C: Serialize>(&self, choices: Vec<C>) -> String {
        self.serialize(choices, self.usage)
    }

    /// The JSON of the usage chunk: no choices, the totals.
    pub fn usage_chunk(&self, usage: Usage) -> String {
        self.serialize(Vec::<()>::new(), ChunkUsage::Totals(usage))
    }

    /// The chunks after every choice finished: the usage chunk when `stream_options.include_usage` asked
    /// for it.
    pub fn closing(&self, usage: Usage) -> Vec<String> {
        if self.usage.is_absent() {
            Vec::new()
        } else {
            vec![self.usage_chunk(usage)]
        }
    }

    fn serialize<C: Serialize>(&self, choices: Vec<C>, usage: ChunkUsage) -> String {
        serde_json::to_string(&Chunk {
            id: &self.id,
            object: self.object,
            created: self.created,
            model: &self.model,
            system_fingerprint: &self.system_fingerprint,
            choices,
            usage,
        })
        .expect("chunks serialize")
    }
}

/// One server-sent event: its JSON and, where the API names its events (the Responses API:
/// `event: response.created`), its name, given by the typed event that made it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    pub name: Option<&'static str>,
    pub data: String,
}

impl SseEvent {
    /// An unnamed `data:` event (chat and completions chunks, error envelopes).
    pub fn data(json: String) -> Self {
        SseEvent {
            name: None,
            data: json,
        }
    }

    /// Unnamed events of these chunks' JSON.
    pub fn all_data(chunks: Vec<String>) -> Vec<Self> {
        chunks.into_iter().map(SseEvent::data).collect()
    }

    /// An event named `name` (`event: <name>` before its `data:`).
    pub fn named(name: &'static str, json: String) -> Self {
        SseEvent {
            name: Some(name),
            data: json,
        }
    }
}

/// How an API answers a prepared request: a stream of events in its [`ChunkFormat`], or one whole body.
/// A front picks by the request's `stream` and writes either on its transport.
pub trait Answer<S> {
    type Streamed: ChunkFormat;
    type Whole: Serialize;
    /// The format of the streamed answer.
    fn streamed(self, head: &AnswerHead<S>) -> Self::Streamed;
    /// The whole answer, once every choice has finished.
    fn whole(self, head: &AnswerHead<S>, collected: Collected) -> Self::Whole;
}

/// How one endpoint writes its events (chat and completions differ only here). Each method returns zero
/// or more events: a format may hold text back (a tool call's head) or split it.
pub trait ChunkFormat: Send + 'static {
    /// Whether the stream ends with `data: [DONE]` (chat and completions; the Responses API's does not).
    const ENDS_WITH_DONE: bool = true;
    /// Events before anything else, even a keep-alive (Responses: `response.created`, `.in_progress`).
    fn prelude(&mut self) -> Vec<SseEvent> {
        Vec::new()
    }
    /// The first event of a choice, before any generated text (chat: the role; completions: an echo).
    fn opening(&mut self, index: usize) -> Vec<SseEvent>;
    fn text(&mut self, index: usize, text: String, logprobs: Vec<TokenLogprob>) -> Vec<SseEvent>;
    fn finish(&mut self, index: usize, reason: FinishReason) -> Vec<SseEvent>;
    /// The events after every choice finished, given the totals (chat and completions: the chunk with
    /// empty `choices` that `stream_options.include_usage` asks for; Responses: `response.completed`).
    fn closing(&mut self, usage: Usage) -> Vec<SseEvent>;
    /// The events of an error after the 200: the error envelope, unless the format has its own.
    fn failure(&mut self, error: &ApiError) -> Vec<SseEvent> {
        vec![SseEvent::data(
            serde_json::to_string(&error.envelope()).expect("envelopes serialize"),
        )]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::chat::{ChatChunkChoice, ChatCompletionChunk, ChatDelta};
    use crate::api::completions::{CompletionChunkChoice, TextCompletionChunk};

    /// The chunks written here are byte for byte the documented wire types.
    #[test]
    fn chunks_serialize_as_the_documented_types() {
        let chat_choice = || ChatChunkChoice {
            index: 1,
            delta: ChatDelta {
                content: Some("hi".into()),
                ..ChatDelta::default()
            },
            logprobs: None,
            finish_reason: Some(FinishReason::Length),
        };
        for include_usage in [false, true] {
            let header = ChunkHeader::new(
                "chatcmpl-x".into(),
                "chat.completion.chunk",
                7,
                "m".into(),
                "m@v".into(),
                include_usage,
            );
            let documented = ChatCompletionChunk {
                id: "chatcmpl-x".into(),
                object: "chat.completion.chunk",
                created: 7,
                model: "m".into(),
                system_fingerprint: "m@v".into(),
                choices: vec![chat_choice()],
                usage: header.usage,
            };
            assert_eq!(
                header.chunk(vec![chat_choice()]),
                serde_json::to_string(&documented).unwrap()
            );
        }
        let header = ChunkHeader::new(
            "cmpl-x".into(),
            "text_completion",
            7,
            "m".into(),
            "m@v".into(),
            true,
        );
        let usage = Usage::new(3, 4);
        let documented = TextCompletionChunk {
            id: "cmpl-x".into(),
            object: "text_completion",
            created: 7,
            model: "m".into(),
            system_fingerprint: "m@v".into(),
            choices: Vec::<CompletionChunkChoice>::new(),
            usage: ChunkUsage::Totals(usage),
        };
        assert_eq!(
            header.usage_chunk(usage),
            serde_json::to_string(&documented).unwrap()
        );
    }
}
