//! The OpenAI error envelope: `{"error":{"message","type","param","code"}}`, all four keys always present.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"error": {"message": "`temperature` must be between 0 and 2, got 7.5",
    "type": "invalid_request_error", "param": "temperature", "code": null}}))]
pub struct ErrorResponse {
    pub error: ErrorBody,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    /// What went wrong, for people.
    pub message: String,
    /// The error class: `invalid_request_error`, `not_found_error`, `server_error`, …
    #[serde(rename = "type")]
    pub kind: String,
    /// The request field at fault, when there is one.
    pub param: Option<String>,
    /// A stable machine-readable code (`model_not_found`, `context_length_exceeded`, …), or null.
    pub code: Option<String>,
}
