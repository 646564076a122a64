//! `POST /v1/embeddings`: validate → the model (it must embed) → tokens counted, budget held → a slot →
//! the vectors, shortened to `dimensions` and encoded as asked.

use actix_web::{web, HttpResponse};

use crate::api::embeddings::{
    Embedding, EmbeddingList, EmbeddingRequest, EmbeddingUsage, EmbeddingVector,
};
use crate::error::ApiError;
use crate::extract::ApiJson;
use crate::front::{self, PreparedEmbedding};
use crate::generation::embedding;
use crate::request_log::RequestLog;
use crate::routes::auth::{policy, Guarded};
use crate::routes::errors::GenerationErrors;
use crate::routes::{with_rate_headers, MODEL_VERSION_HEADER};
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
    let (caller, budget, body) = guarded.into_parts();
    let PreparedEmbedding {
        model,
        embedding: request,
        prompt_tokens,
        rate_headers,
    } = front::embedding(&state, &caller, &budget, body.into_inner(), &log).await?;
    let vectors = embedding::embed(&model, request.inputs, &log).await?;
    let data = vectors
        .into_iter()
        .enumerate()
        .map(|(index, vector)| {
            let vector = match request.dimensions {
                Some(dimensions) => embedding::shorten(vector, dimensions),
                None => vector,
            };
            Embedding {
                object: "embedding".to_string(),
                index,
                embedding: if request.base64 {
                    EmbeddingVector::Base64(embedding::base64(&vector))
                } else {
                    EmbeddingVector::Float(vector)
                },
            }
        })
        .collect();
    let response = HttpResponse::Ok()
        .insert_header((MODEL_VERSION_HEADER, model.id.as_str()))
        .json(EmbeddingList {
            object: "list".to_string(),
            data,
            model: model.requested.clone(),
            usage: EmbeddingUsage {
                prompt_tokens,
                total_tokens: prompt_tokens,
            },
        });
    Ok(with_rate_headers(&rate_headers, response))
}
