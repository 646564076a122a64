//! Errors as HTTP responses: the status, `Retry-After` on refusals a retry can fix, `Allow` on a 405, and
//! OpenAI's error envelope as the body; and their documentation for the OpenAPI document.

use actix_web::http::{header, StatusCode};
use actix_web::{HttpResponse, ResponseError};

use crate::api::errors::ErrorResponse;
use crate::error::ApiError;

/// The error answers of the generation endpoints, documented once for both.
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)] // Only its documentation is used.
pub enum GenerationErrors {
    #[response(
        status = 400,
        description = "Invalid request (bad JSON, bad field, context too long)"
    )]
    BadRequest(ErrorResponse),
    #[response(status = 404, description = "Unknown model")]
    NotFound(ErrorResponse),
    #[response(
        status = 408,
        description = "The body did not arrive within its deadline (`--body-read-timeout`)"
    )]
    RequestTimeout(ErrorResponse),
    #[response(status = 413, description = "Body over the limit")]
    PayloadTooLarge(ErrorResponse),
    #[response(status = 415, description = "Body is not JSON")]
    UnsupportedMediaType(ErrorResponse),
    #[response(
        status = 429,
        description = "Queue full (`overloaded`), with Retry-After"
    )]
    TooManyRequests(ErrorResponse),
    #[response(
        status = 503,
        description = "Model loading, server draining or queue timeout, with Retry-After"
    )]
    ServiceUnavailable(ErrorResponse),
    #[response(status = 500, description = "Engine failure")]
    InternalServerError(ErrorResponse),
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.status()).expect("error statuses are valid")
    }

    fn error_response(&self) -> HttpResponse {
        // A failure of ours is logged once, by the request's line (`routes::http_log::request_context`),
        // which knows whether the caller had a key.
        let mut response = HttpResponse::build(self.status_code());
        if let Some(secs) = self.retry_after() {
            response.insert_header((header::RETRY_AFTER, secs.to_string()));
        }
        if let ApiError::MethodNotAllowed { allow, .. } = self {
            response.insert_header((header::ALLOW, *allow));
        }
        let response = response.json(self.envelope());
        match self {
            ApiError::Quota(e) => match e.headers() {
                Some(headers) => super::with_rate_headers(headers, response),
                None => response,
            },
            _ => response,
        }
    }
}
