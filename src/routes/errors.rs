//! Errors as HTTP responses: the status, `Retry-After` on refusals a retry can fix, `Allow` on a 405, and
//! OpenAI's error envelope as the body.

use actix_web::http::{header, StatusCode};
use actix_web::{HttpResponse, ResponseError};

use crate::error::ApiError;

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.status()).expect("error statuses are valid")
    }

    fn error_response(&self) -> HttpResponse {
        if self.is_failure() {
            // Logged once here, in full, inside the request's span; the client gets the clean message.
            tracing::error!(error = %self, code = self.label(), "request failed");
        }
        let mut response = HttpResponse::build(self.status_code());
        if let Some(secs) = self.retry_after() {
            response.insert_header((header::RETRY_AFTER, secs.to_string()));
        }
        if let ApiError::MethodNotAllowed { allow, .. } = self {
            response.insert_header((header::ALLOW, *allow));
        }
        response.json(self.envelope())
    }
}
