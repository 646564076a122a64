//! OpenAI's Responses API on the chat path: a request becomes a chat request ([`input`]) served by the
//! same validation, engine, limits, metrics and logs as `/v1/chat/completions`; the chat answer becomes
//! output items ([`output`]); responses are kept for `previous_response_id` in a bounded [`store`].
//!
//! Translating rather than a second generation path keeps one set of rules (tool prompting and grammars,
//! JSON output, context checks) for both APIs; what only the Responses API has (items, instructions,
//! stored conversations, its event stream: [`stream`]) lives here; `routes::responses` only translates.

pub mod input;
pub mod output;
pub mod redis_store;
pub mod store;
pub mod stored;
pub mod stream;

/// A Responses request the API refuses, or a response that is not there.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ResponsesError {
    /// A value of the wrong shape; `param` is its path (`input[2].content[0].type`).
    #[error("{message}")]
    Invalid { param: String, message: String },
    /// A feature of the Responses API this server does not serve.
    #[error("{message}")]
    Unsupported { param: String, message: String },
    /// `previous_response_id` names no stored response of this caller.
    #[error("Previous response with id '{0}' not found.")]
    PreviousNotFound(String),
    /// `GET`/`DELETE` of an id that is not stored for this caller.
    #[error("Response with id '{0}' not found.")]
    NotFound(String),
    /// The shared store (`--responses-store redis`) did not answer: whether the response exists is
    /// unknown, so no 404 is claimed.
    #[error("The response store is unavailable; retry shortly.")]
    StoreUnavailable,
}

impl ResponsesError {
    pub fn invalid(param: impl Into<String>, message: impl Into<String>) -> Self {
        ResponsesError::Invalid {
            param: param.into(),
            message: message.into(),
        }
    }
    pub fn unsupported(param: impl Into<String>, message: impl Into<String>) -> Self {
        ResponsesError::Unsupported {
            param: param.into(),
            message: message.into(),
        }
    }
}
