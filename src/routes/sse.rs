//! The single place that knows the SSE wire format (shared/design/OPENAI_WIRE.md): `data: <json>\n\n`
//! events, no named events, `: ping` keep-alive comments, errors after the 200 as JSON `data:` events, and
//! `data: [DONE]` last, whatever happens. Chat and completions differ only in their [`ChunkFormat`].

use actix_web::web::Bytes;
use actix_web::HttpResponse;
use futures::{Stream, StreamExt};

use crate::api::common::{FinishReason, Usage};
use crate::engine::TokenLogprob;
use crate::generation::output::GenerationEvent;

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
                GenerationEvent::Text { index, text, logprobs, .. } => {
                    for chunk in format.text(index, text, logprobs) {
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
