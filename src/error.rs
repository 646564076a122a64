//! Every error a client can see: typed enums joined into `ApiError`, mapped to status + OpenAI envelope in one match.

use crate::api::errors::{ErrorBody, ErrorResponse};
use crate::engine::EngineError;
use crate::gateway::quota::QuotaError;
use crate::gateway::GatewayError;
use crate::models::admission::{AdmissionError, RETRY_AFTER_SECS};
use crate::models::error::RegistryError;
use crate::responses::ResponsesError;

/// HTTP statuses by name, as numbers: this module is shared by every front (`routes` turns them into
/// responses, `grpc` maps the errors to codes of its own).
mod status {
    pub const BAD_REQUEST: u16 = 400;
    pub const UNAUTHORIZED: u16 = 401;
    pub const FORBIDDEN: u16 = 403;
    pub const NOT_FOUND: u16 = 404;
    pub const METHOD_NOT_ALLOWED: u16 = 405;
    pub const REQUEST_TIMEOUT: u16 = 408;
    pub const CONFLICT: u16 = 409;
    pub const PAYLOAD_TOO_LARGE: u16 = 413;
    pub const UNSUPPORTED_MEDIA_TYPE: u16 = 415;
    pub const TOO_MANY_REQUESTS: u16 = 429;
    pub const INTERNAL_SERVER_ERROR: u16 = 500;
    pub const SERVICE_UNAVAILABLE: u16 = 503;
}

/// The message of a 5xx that is a fault of ours, as OpenAI words it; the details are in the log under the
/// response's `x-request-id`.
pub const INTERNAL_ERROR_MESSAGE: &str =
    "The server had an error while processing your request. Sorry about that! \
     The log has the details under this response's x-request-id.";

/// Seconds a client should wait before retrying a 503 (model still loading).
pub const RETRY_AFTER_NOT_READY_SECS: u64 = 5;
/// Seconds a client should wait before retrying elsewhere while this server drains.
pub const RETRY_AFTER_DRAINING_SECS: u64 = 5;

/// Problems with the HTTP request itself, found before its fields are looked at.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    #[error("request body is {given} bytes, more than the limit of {limit} bytes")]
    PayloadTooLarge { limit: usize, given: usize },
    #[error("Content-Type must be application/json, got `{0}`")]
    UnsupportedMediaType(String),
    #[error("could not read the request body: {0}")]
    PayloadRead(String),
    #[error("the request body did not arrive in time: {received} bytes in {seconds} s")]
    BodyTimeout { received: usize, seconds: u64 },
    #[error("request body is not valid JSON: {message}")]
    MalformedJson { message: String },
    #[error("invalid request body: {message}")]
    InvalidField {
        message: String,
        param: Option<String>,
    },
}

/// A request whose JSON parsed but whose values the API does not accept.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ValidationError {
    /// A value outside its documented bounds, or of the wrong shape.
    #[error("{message}")]
    Invalid {
        param: &'static str,
        message: String,
    },
    /// A feature of the OpenAI API this server does not serve (yet): refused rather than silently ignored.
    #[error("{message}")]
    Unsupported {
        param: &'static str,
        message: String,
    },
    #[error(
        "This model's maximum context length is {limit} tokens. However, your prompt has {prompt_tokens} tokens, \
         which leaves no room for a completion. Please shorten the prompt."
    )]
    ContextLengthExceeded { limit: usize, prompt_tokens: usize },
    /// Found from the prompt's size before it was tokenized: it cannot fit, however it tokenizes.
    #[error(
        "This model's maximum context length is {limit} tokens. However, your prompt has at least {at_least} tokens, \
         which leaves no room for a completion. Please shorten the prompt."
    )]
    PromptTooLong { limit: usize, at_least: usize },
    #[error(
        "The model `{model}` does not accept images; send text content only or use a vision model"
    )]
    ImagesNotSupported { model: String },
}

impl ValidationError {
    pub fn invalid(param: &'static str, message: impl Into<String>) -> Self {
        ValidationError::Invalid {
            param,
            message: message.into(),
        }
    }
    pub fn unsupported(param: &'static str, message: impl Into<String>) -> Self {
        ValidationError::Unsupported {
            param,
            message: message.into(),
        }
    }
}

/// Every way a request can fail, whatever layer refused it: each layer's own error type converts into it
/// (`?` does the conversion), and [`ApiError::envelope`] with the status, `type`, `code` and `param` of
/// OpenAI's error envelope is derived in one exhaustive match (`parts`), so a new failure cannot reach a
/// client without a status. The HTTP front writes it as JSON (`routes::errors`), the gRPC front as a
/// status (`grpc::status`), a stream that already sent its 200 as an error event.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(transparent)]
    Request(#[from] RequestError),
    #[error(transparent)]
    Validation(#[from] ValidationError),
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error(transparent)]
    Admission(#[from] AdmissionError),
    /// An admin change the registry refused.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error(transparent)]
    Gateway(#[from] GatewayError),
    #[error(transparent)]
    Quota(#[from] QuotaError),
    #[error(transparent)]
    Responses(#[from] ResponsesError),
    #[error("The model `{0}` does not exist")]
    ModelNotFound(String),
    #[error("The model is still loading; retry shortly")]
    ModelNotReady,
    #[error("No route for {0}")]
    RouteNotFound(String),
    #[error("Method {method} is not allowed here (allowed: {allow})")]
    MethodNotAllowed {
        method: String,
        /// The resource's methods, for the `Allow` header RFC 9110 requires on a 405.
        allow: &'static str,
    },
}

/// The pieces of an error response, derived in one place.
struct ErrorParts {
    status: u16,
    kind: &'static str,
    code: Option<&'static str>,
    param: Option<String>,
    /// Seconds for `Retry-After`, on refusals a retry can fix.
    retry_after: Option<u64>,
}

impl ApiError {
    /// A fault of ours, logged at error level (once): a 5xx that is not an expected refusal such as a full
    /// queue, a queue timeout or a drain, which carry `Retry-After`.
    pub fn is_failure(&self) -> bool {
        let parts = self.parts();
        parts.status >= 500 && parts.retry_after.is_none()
    }

    fn parts(&self) -> ErrorParts {
        use status as S;
        let parts = |status, kind, code: Option<&'static str>, param: Option<&str>| ErrorParts {
            status,
            kind,
            code,
            param: param.map(str::to_string),
            retry_after: None,
        };
        let retry = |status, code: &'static str, secs| ErrorParts {
            status,
            kind: if status == S::TOO_MANY_REQUESTS {
                "rate_limit_error"
            } else {
                "server_error"
            },
            code: Some(code),
            param: None,
            retry_after: Some(secs),
        };
        match self {
            ApiError::Request(e) => match e {
                RequestError::PayloadTooLarge { .. } => parts(
                    S::PAYLOAD_TOO_LARGE,
                    "invalid_request_error",
                    Some("payload_too_large"),
                    None,
                ),
                RequestError::UnsupportedMediaType(_) => parts(
                    S::UNSUPPORTED_MEDIA_TYPE,
                    "invalid_request_error",
                    Some("unsupported_media_type"),
                    None,
                ),
                RequestError::PayloadRead(_) => {
                    parts(S::BAD_REQUEST, "invalid_request_error", None, None)
                }
                RequestError::BodyTimeout { .. } => parts(
                    S::REQUEST_TIMEOUT,
                    "invalid_request_error",
                    Some("request_timeout"),
                    None,
                ),
                RequestError::MalformedJson { .. } => parts(
                    S::BAD_REQUEST,
                    "invalid_request_error",
                    Some("invalid_json"),
                    None,
                ),
                RequestError::InvalidField { param, .. } => parts(
                    S::BAD_REQUEST,
                    "invalid_request_error",
                    None,
                    param.as_deref(),
                ),
            },
            ApiError::Validation(e) => match e {
                ValidationError::Invalid { param, .. } => {
                    parts(S::BAD_REQUEST, "invalid_request_error", None, Some(param))
                }
                ValidationError::Unsupported { param, .. } => parts(
                    S::BAD_REQUEST,
                    "invalid_request_error",
                    Some("unsupported_parameter"),
                    Some(param),
                ),
                ValidationError::ContextLengthExceeded { .. }
                | ValidationError::PromptTooLong { .. } => parts(
                    S::BAD_REQUEST,
                    "invalid_request_error",
                    Some("context_length_exceeded"),
                    Some("messages"),
                ),
                ValidationError::ImagesNotSupported { .. } => parts(
                    S::BAD_REQUEST,
                    "invalid_request_error",
                    Some("images_not_supported"),
                    Some("messages"),
                ),
            },
            ApiError::Engine(e) => match e {
                EngineError::Rejected(_) | EngineError::ConstraintFailed(_) => {
                    parts(S::BAD_REQUEST, "invalid_request_error", None, None)
                }
                EngineError::Unavailable(_) => parts(
                    S::SERVICE_UNAVAILABLE,
                    "server_error",
                    Some("engine_unavailable"),
                    None,
                ),
                EngineError::Internal(_) => {
                    parts(S::INTERNAL_SERVER_ERROR, "server_error", None, None)
                }
                EngineError::UnsupportedArchitecture { .. } | EngineError::Load(_) => parts(
                    S::INTERNAL_SERVER_ERROR,
                    "server_error",
                    Some("model_load_failed"),
                    None,
                ),
            },
            ApiError::Registry(e) => {
                let conflict = |code| parts(S::CONFLICT, "invalid_request_error", Some(code), None);
                match e {
                    RegistryError::VersionExists(_) => conflict("version_exists"),
                    RegistryError::VersionChanged(_) => conflict("version_changed"),
                    RegistryError::VersionInUse { .. } => conflict("version_in_use"),
                    RegistryError::VersionDraining(_) => conflict("version_draining"),
                    RegistryError::VersionFailed(_) => conflict("version_failed"),
                    RegistryError::NothingToRollBack(_) => conflict("nothing_to_roll_back"),
                    RegistryError::UnknownVersion(_) | RegistryError::UnknownAlias(_) => parts(
                        S::NOT_FOUND,
                        "not_found_error",
                        Some("model_not_found"),
                        None,
                    ),
                    RegistryError::Invalid(_) => {
                        parts(S::BAD_REQUEST, "invalid_request_error", None, None)
                    }
                }
            }
            ApiError::Gateway(e) => match e {
                GatewayError::MissingKey
                | GatewayError::InvalidKey
                | GatewayError::ExpiredKey(_) => parts(
                    S::UNAUTHORIZED,
                    "invalid_request_error",
                    Some("invalid_api_key"),
                    None,
                ),
                GatewayError::PermissionDenied { .. } | GatewayError::KeysNotConfigured { .. } => {
                    parts(
                        S::FORBIDDEN,
                        "permission_error",
                        Some("permission_denied"),
                        None,
                    )
                }
                GatewayError::ModelNotAllowed { .. } => parts(
                    S::FORBIDDEN,
                    "permission_error",
                    Some("model_not_allowed"),
                    Some("model"),
                ),
            },
            ApiError::Quota(e) => match e.retry_after_secs() {
                Some(secs) => retry(S::TOO_MANY_REQUESTS, "rate_limit_exceeded", secs),
                None => parts(
                    S::TOO_MANY_REQUESTS,
                    "rate_limit_error",
                    Some("rate_limit_exceeded"),
                    None,
                ),
            },
            ApiError::Responses(e) => match e {
                ResponsesError::Invalid { param, .. } => {
                    parts(S::BAD_REQUEST, "invalid_request_error", None, Some(param))
                }
                ResponsesError::Unsupported { param, .. } => parts(
                    S::BAD_REQUEST,
                    "invalid_request_error",
                    Some("unsupported_parameter"),
                    Some(param),
                ),
                // 404 as vLLM answers it: the response it names is not there.
                ResponsesError::PreviousNotFound(_) => parts(
                    S::NOT_FOUND,
                    "invalid_request_error",
                    Some("previous_response_not_found"),
                    Some("previous_response_id"),
                ),
                ResponsesError::NotFound(_) => parts(
                    S::NOT_FOUND,
                    "invalid_request_error",
                    Some("response_not_found"),
                    None,
                ),
                ResponsesError::StoreUnavailable => retry(
                    S::SERVICE_UNAVAILABLE,
                    "store_unavailable",
                    RETRY_AFTER_SECS,
                ),
            },
            ApiError::ModelNotFound(_) => parts(
                S::NOT_FOUND,
                "not_found_error",
                Some("model_not_found"),
                Some("model"),
            ),
            ApiError::Admission(e) => match e {
                AdmissionError::Overloaded { .. } => {
                    retry(S::TOO_MANY_REQUESTS, "overloaded", RETRY_AFTER_SECS)
                }
                AdmissionError::QueueTimeout { .. } => {
                    retry(S::SERVICE_UNAVAILABLE, "queue_timeout", RETRY_AFTER_SECS)
                }
                AdmissionError::Draining => retry(
                    S::SERVICE_UNAVAILABLE,
                    "draining",
                    RETRY_AFTER_DRAINING_SECS,
                ),
                AdmissionError::ShutDown => retry(
                    S::SERVICE_UNAVAILABLE,
                    "shut_down",
                    RETRY_AFTER_DRAINING_SECS,
                ),
            },
            ApiError::ModelNotReady => retry(
                S::SERVICE_UNAVAILABLE,
                "model_not_ready",
                RETRY_AFTER_NOT_READY_SECS,
            ),
            ApiError::RouteNotFound(_) => parts(S::NOT_FOUND, "not_found_error", None, None),
            ApiError::MethodNotAllowed { .. } => {
                parts(S::METHOD_NOT_ALLOWED, "invalid_request_error", None, None)
            }
        }
    }

    /// What the client is told. A fault of ours ([`ApiError::is_failure`]) and an engine that is
    /// unavailable say only that: their own text can carry the engine's internals (paths, compiler
    /// state), which go to the log with the request id instead.
    pub fn client_message(&self) -> String {
        if self.is_failure() || matches!(self, ApiError::Engine(EngineError::Unavailable(_))) {
            INTERNAL_ERROR_MESSAGE.to_string()
        } else {
            self.to_string()
        }
    }

    /// The OpenAI error envelope for this error (also sent as a `data:` event when a stream fails).
    pub fn envelope(&self) -> ErrorResponse {
        let parts = self.parts();
        ErrorResponse {
            error: ErrorBody {
                message: self.client_message(),
                kind: parts.kind.to_string(),
                param: parts.param,
                code: parts.code.map(str::to_string),
            },
        }
    }

    /// The HTTP status of this error.
    pub fn status(&self) -> u16 {
        self.parts().status
    }

    /// Seconds after which a retry may succeed, on refusals a retry can fix (`Retry-After`).
    pub fn retry_after(&self) -> Option<u64> {
        self.parts().retry_after
    }

    /// The stable `type`/`code` pair, for logs and metric labels.
    pub fn label(&self) -> &'static str {
        let parts = self.parts();
        parts.code.unwrap_or(parts.kind)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_has_all_four_keys_even_when_null() {
        let value = serde_json::to_value(ApiError::RouteNotFound("/x".into()).envelope()).unwrap();
        let error = value["error"].as_object().unwrap();
        for key in ["message", "type", "param", "code"] {
            assert!(error.contains_key(key), "missing {key}");
        }
        assert!(error["param"].is_null());
    }

    #[test]
    fn only_faults_of_ours_count_as_failures() {
        assert!(ApiError::Engine(EngineError::Internal("x".into())).is_failure());
        for expected in [
            ApiError::Admission(AdmissionError::Draining),
            ApiError::Admission(AdmissionError::ShutDown),
            ApiError::ModelNotReady,
            ApiError::ModelNotFound("x".into()),
        ] {
            assert!(!expected.is_failure(), "{expected}");
        }
    }

    #[test]
    fn statuses_follow_openai() {
        let cases: Vec<(ApiError, u16, &str)> = vec![
            (ApiError::ModelNotFound("x".into()), 404, "model_not_found"),
            (
                ValidationError::ContextLengthExceeded {
                    limit: 10,
                    prompt_tokens: 20,
                }
                .into(),
                400,
                "context_length_exceeded",
            ),
            (
                RequestError::PayloadTooLarge { limit: 1, given: 2 }.into(),
                413,
                "payload_too_large",
            ),
            (
                RequestError::UnsupportedMediaType("text/plain".into()).into(),
                415,
                "unsupported_media_type",
            ),
            (ApiError::ModelNotReady, 503, "model_not_ready"),
            (
                AdmissionError::Overloaded { waiting: 3 }.into(),
                429,
                "overloaded",
            ),
            (AdmissionError::Draining.into(), 503, "draining"),
            (
                EngineError::Internal("boom".into()).into(),
                500,
                "server_error",
            ),
        ];
        for (error, status, label) in cases {
            assert_eq!(error.status(), status, "{error}");
            assert_eq!(error.label(), label);
        }
    }
}
