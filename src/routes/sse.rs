//! The single place that knows the SSE wire format (shared/design/OPENAI_WIRE.md): `data: <json>\n\n`
//! events, no named events, `: ping` keep-alive comments, errors after the 200 as JSON `data:` events, and
//! `data: [DONE]` last, whatever happens. Chat and completions differ only in their [`ChunkFormat`].

use actix_web::web::Bytes;
use actix_web::HttpResponse;
use futures::{Stream, StreamExt};

use serde::Serialize;

use crate::api::common::{ChunkUsage, FinishReason, Usage};
use crate::engine::TokenLogprob;
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

fn data_event(json: &str) -> Bytes {
    Bytes::from(format!("data: {json}\n\n"))
}

const KEEP_ALIVE_EVENT: &[u8] = b": ping\n\n";
const DONE_EVENT: &[u8] = b"data: [DONE]\n\n";

/// The SSE body of a streamed request: each generation event framed by `format`; `include_usage` adds
/// the usage chunk (`stream_options.include_usage`) before `[DONE]`.
pub fn sse_body<F: ChunkFormat>(
    mut format: F,
    events: impl Stream<Item = GenerationEvent> + Send + 'static,
    include_usage: bool,
) -> impl Stream<Item = Result<Bytes, actix_web::Error>> {
    async_stream::stream! {
        let mut events = std::pin::pin!(events);
        while let Some(event) = events.next().await {
            match event {
                GenerationEvent::Idle => yield Ok(Bytes::from_static(KEEP_ALIVE_EVENT)),
                GenerationEvent::Opened { index } => {
                    for chunk in format.opening(index) {
                        yield Ok(data_event(&chunk));
                    }
                }
                GenerationEvent::Text(piece) => {
                    for chunk in format.text(piece.index, piece.text, piece.logprobs) {
                        yield Ok(data_event(&chunk));
                    }
                }
                GenerationEvent::Finished { index, reason } => {
                    for chunk in format.finish(index, reason) {
                        yield Ok(data_event(&chunk));
                    }
                }
                GenerationEvent::Done(usage) => {
                    if include_usage {
                        yield Ok(data_event(&format.usage(usage)));
                    }
                    break;
                }
                GenerationEvent::Failed(error) => {
                    let envelope = serde_json::to_string(&error.envelope()).expect("envelopes serialize");
                    yield Ok(data_event(&envelope));
                    break;
                }
            }
        }
        yield Ok(Bytes::from_static(DONE_EVENT));
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
