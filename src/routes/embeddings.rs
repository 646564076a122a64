//! `POST /v1/embeddings`: validate → the model (it must embed) → tokens counted, budget held → a slot →
//! the vectors, shortened to `dimensions` and encoded as asked.

use actix_web::{web, HttpResponse};

use crate::api::embeddings::{
    Embedding, EmbeddingList, EmbeddingRequest, EmbeddingUsage, EmbeddingVector,
};
use crate::error::ApiError;
use crate::extract::ApiJson;
use crate::generation::embedding;
use crate::generation::service::{Caller, Embedded};
use crate::request_log::RequestLog;
use crate::routes::auth::{policy, Guarded};
use crate::routes::errors::GenerationErrors;
use crate::routes::json_answer;
use crate::state::AppState;

/// Creates embeddings of the input: one vector per string or token list, in input order.
///
/// Served by embedding models (sentence-transformers directories: EmbeddingGemma, Qwen3-Embedding); a
/// text-generation model answers 400 naming the endpoints it serves (`param: model`). `dimensions`
/// above the model's width is a 400 (`param: dimensions`), as is an input longer than its context.
#[utoipa::path(
    post,
    path = "/v1/embeddings",
    tag = "OpenAI",
    request_body = EmbeddingRequest,
    responses(
        (status = 200, description = "The embeddings", body = EmbeddingList),
        GenerationErrors,
    )
)]
pub async fn create_embeddings(
    guarded: Guarded<policy::Embeddings, ApiJson<EmbeddingRequest>>,
    state: web::Data<AppState>,
    log: RequestLog,
) -> Result<HttpResponse, ApiError> {
    let (principal, budget, body) = guarded.into_parts();
    let caller = Caller { principal, budget };
    let Embedded {
        model,
        vectors,
        dimensions,
        base64,
        prompt_tokens,
        rate_headers,
    } = state
        .generation
        .embed(body.into_inner(), caller, &log)
        .await?;
    let data = vectors
        .into_iter()
        .enumerate()
        .map(|(index, vector)| {
            let vector = match dimensions {
                Some(dimensions) => embedding::shorten(vector, dimensions),
                None => vector,
            };
            Embedding {
                object: "embedding".to_string(),
                index,
                embedding: if base64 {
                    EmbeddingVector::Base64(embedding::base64(&vector))
                } else {
                    EmbeddingVector::Float(vector)
                },
            }
        })
        .collect();
    let list = EmbeddingList {
        object: "list".to_string(),
        data,
        model: model.requested.clone(),
        usage: EmbeddingUsage {
            prompt_tokens,
            total_tokens: prompt_tokens,
        },
    };
    Ok(json_answer(&model.id, &rate_headers, list))
}
