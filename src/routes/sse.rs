//! The single place that knows the SSE wire format, as OpenAI streams it (docs/compatibility.md):
//! `data: <json>\n\n` events, `: ping` keep-alive comments, errors after the 200 as JSON `data:` events,
//! and `data: [DONE]` last, whatever happens. Chat and completions differ only in their [`ChunkFormat`];
//! the Responses API's format names each event after its `type` (`event: response.created`) and ends
//! without `[DONE]`, as OpenAI's does.

use actix_web::web::Bytes;
use actix_web::HttpResponse;
use futures::{Stream, StreamExt};

use serde::Serialize;

use crate::api::common::{ChunkUsage, FinishReason, Usage};
use crate::engine::TokenLogprob;
use crate::error::ApiError;
use crate::generation::output::GenerationEvent;

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

    fn to_bytes(&self) -> Bytes {
        match self.name {
            Some(name) => Bytes::from(format!("event: {name}\ndata: {}\n\n", self.data)),
            None => Bytes::from(format!("data: {}\n\n", self.data)),
        }
    }
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

/// A `200 text/event-stream` response around an SSE body; `version` is the `model@version` answering.
pub fn sse_response(
    version: &str,
    body: impl Stream<Item = Result<Bytes, actix_web::Error>> + 'static,
) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header((super::MODEL_VERSION_HEADER, version))
        .insert_header(("Cache-Control", "no-cache"))
        .insert_header(("X-Accel-Buffering", "no"))
        .streaming(body)
}

const KEEP_ALIVE_EVENT: &[u8] = b": ping\n\n";
const DONE_EVENT: &[u8] = b"data: [DONE]\n\n";

/// The SSE body of a streamed request: each generation event framed by `format`.
pub fn sse_body<F: ChunkFormat>(
    mut format: F,
    events: impl Stream<Item = GenerationEvent> + Send + 'static,
) -> impl Stream<Item = Result<Bytes, actix_web::Error>> {
    async_stream::stream! {
        for chunk in format.prelude() {
            yield Ok(chunk.to_bytes());
        }
        let mut events = std::pin::pin!(events);
        while let Some(generated) = events.next().await {
            let chunks = match generated {
                GenerationEvent::Idle => {
                    yield Ok(Bytes::from_static(KEEP_ALIVE_EVENT));
                    continue;
                }
                GenerationEvent::Opened { index } => format.opening(index),
                GenerationEvent::Text(piece) => format.text(piece.index, piece.text, piece.logprobs),
                GenerationEvent::Finished { index, reason } => format.finish(index, reason),
                GenerationEvent::Done(usage) => {
                    for chunk in format.closing(usage) {
                        yield Ok(chunk.to_bytes());
                    }
                    break;
                }
                GenerationEvent::Failed(error) => {
                    for chunk in format.failure(&error) {
                        yield Ok(chunk.to_bytes());
                    }
                    break;
                }
            };
            for chunk in chunks {
                yield Ok(chunk.to_bytes());
            }
        }
        if F::ENDS_WITH_DONE {
            yield Ok(Bytes::from_static(DONE_EVENT));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::chat::{ChatChunkChoice, ChatCompletionChunk, ChatDelta};
    use crate::api::completions::{CompletionChunkChoice, TextCompletionChunk};

    #[test]
    fn named_events_carry_their_name_before_their_data() {
        let json = "{\"type\":\"response.created\",\"sequence_number\":0}".to_string();
        assert_eq!(
            SseEvent::named("response.created", json.clone()).to_bytes(),
            Bytes::from(format!("event: response.created\ndata: {json}\n\n"))
        );
        assert_eq!(
            SseEvent::data(json.clone()).to_bytes(),
            Bytes::from(format!("data: {json}\n\n"))
        );
    }

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
