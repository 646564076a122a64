//! The single place that knows the SSE wire format, as OpenAI streams it (docs/compatibility.md):
//! `data: <json>\n\n` events, `: ping` keep-alive comments, errors after the 200 as JSON `data:` events,
//! and `data: [DONE]` last, whatever happens. Each API differs only in its [`ChunkFormat`] (`crate::formats`);
//! the Responses API's format names each event after its `type` (`event: response.created`) and ends
//! without `[DONE]`, as OpenAI's does.

use actix_web::web::Bytes;
use actix_web::HttpResponse;
use futures::{Stream, StreamExt};

use crate::formats::{ChunkFormat, SseEvent};
use crate::gateway::quota::RateHeaders;
use crate::generation::output::GenerationEvent;

/// A streamed answer: its events framed by `format`, as a `200 text/event-stream` naming the version
/// that answers, with the caller's `x-ratelimit-*`.
pub fn stream_answer<F: ChunkFormat>(
    version: &str,
    headers: &RateHeaders,
    format: F,
    events: impl Stream<Item = GenerationEvent> + Send + 'static,
) -> HttpResponse {
    super::with_rate_headers(headers, sse_response(version, sse_body(format, events)))
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
            yield Ok(bytes(&chunk));
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
                        yield Ok(bytes(&chunk));
                    }
                    break;
                }
                GenerationEvent::Failed(error) => {
                    for chunk in format.failure(&error) {
                        yield Ok(bytes(&chunk));
                    }
                    break;
                }
            };
            for chunk in chunks {
                yield Ok(bytes(&chunk));
            }
        }
        if F::ENDS_WITH_DONE {
            yield Ok(Bytes::from_static(DONE_EVENT));
        }
    }
}

/// An event's bytes: `event: <name>` first when it has a name, then its `data:`.
fn bytes(event: &SseEvent) -> Bytes {
    match event.name {
        Some(name) => Bytes::from(format!("event: {name}\ndata: {}\n\n", event.data)),
        None => Bytes::from(format!("data: {}\n\n", event.data)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn named_events_carry_their_name_before_their_data() {
        let json = "{\"type\":\"response.created\",\"sequence_number\":0}".to_string();
        assert_eq!(
            bytes(&SseEvent::named("response.created", json.clone())),
            Bytes::from(format!("event: response.created\ndata: {json}\n\n"))
        );
        assert_eq!(
            bytes(&SseEvent::data(json.clone())),
            Bytes::from(format!("data: {json}\n\n"))
        );
    }
}
