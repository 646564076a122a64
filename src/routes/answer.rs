//! A prepared generation answered over HTTP, for every API alike: streamed as server-sent events in the
//! API's format, or whole as JSON; both name the version that answers and carry the caller's
//! `x-ratelimit-*` headers.

use actix_web::HttpResponse;

use crate::error::ApiError;
use crate::formats::Answer;
use crate::generation::Prepared;
use crate::routes::{json_answer, sse};

/// Streams or collects `prepared` (as its request asked) and writes it in `answer`'s shape.
pub async fn answer<S, A: Answer<S>>(
    prepared: Prepared<S>,
    answer: A,
) -> Result<HttpResponse, ApiError> {
    if prepared.head.generation.stream {
        let (head, events) = prepared.stream().await?;
        let format = answer.streamed(&head);
        return Ok(sse::stream_answer(
            &head.model.id,
            &head.rate_headers,
            format,
            events,
        ));
    }
    let (head, collected) = prepared.collect().await?;
    let body = answer.whole(&head, collected);
    Ok(json_answer(&head.model.id, &head.rate_headers, body))
}
