//! Errors as gRPC statuses, from the same error enum that gives the HTTP statuses, in one exhaustive match.
//!
//! Refusals a retry can fix carry a `google.rpc.RetryInfo` in the status details (the gRPC richer error
//! model) and every status carries OpenAI's error code in the `llmserve-error-code` trailer.

use prost::Message;
use tonic::{Code, Status};

use crate::engine::EngineError;
use crate::error::ApiError;
use crate::gateway::GatewayError;
use crate::models::admission::AdmissionError;
use crate::models::error::RegistryError;
use crate::request_log::CallLog;
use crate::responses::ResponsesError;

/// The trailer that names the error as the HTTP API's `code` field does (e.g. `context_length_exceeded`).
pub const ERROR_CODE_TRAILER: &str = "llmserve-error-code";

/// `google.rpc.Status`, the envelope of the details.
#[derive(Clone, PartialEq, prost::Message)]
struct RpcStatus {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
    #[prost(message, repeated, tag = "3")]
    details: Vec<prost_types::Any>,
}

/// `google.rpc.RetryInfo`: when a retry may succeed.
#[derive(Clone, PartialEq, prost::Message)]
struct RetryInfo {
    #[prost(message, optional, tag = "1")]
    retry_delay: Option<prost_types::Duration>,
}

pub fn code(error: &ApiError) -> Code {
    match error {
        ApiError::Request(_) | ApiError::Validation(_) => Code::InvalidArgument,
        ApiError::Responses(ResponsesError::NotFound(_) | ResponsesError::PreviousNotFound(_)) => {
            Code::NotFound
        }
        ApiError::Responses(_) => Code::InvalidArgument,
        ApiError::Engine(e) => match e {
            EngineError::Rejected(_) | EngineError::ConstraintFailed(_) => Code::InvalidArgument,
            EngineError::Unavailable(_) => Code::Unavailable,
            EngineError::Internal(_)
            | EngineError::UnsupportedArchitecture { .. }
            | EngineError::Load(_) => Code::Internal,
        },
        ApiError::Admission(e) => match e {
            AdmissionError::Overloaded { .. } => Code::ResourceExhausted,
            AdmissionError::QueueTimeout { .. }
            | AdmissionError::Draining
            | AdmissionError::ShutDown => Code::Unavailable,
        },
        // The admin API is HTTP only; mapped for completeness.
        ApiError::Registry(e) => match e {
            RegistryError::UnknownVersion(_) | RegistryError::UnknownAlias(_) => Code::NotFound,
            RegistryError::VersionExists(_) => Code::AlreadyExists,
            RegistryError::Invalid(_) => Code::InvalidArgument,
            RegistryError::VersionChanged(_)
            | RegistryError::VersionInUse { .. }
            | RegistryError::VersionDraining(_)
            | RegistryError::VersionFailed(_)
            | RegistryError::NothingToRollBack(_) => Code::FailedPrecondition,
        },
        ApiError::Gateway(e) => match e {
            GatewayError::MissingKey | GatewayError::InvalidKey | GatewayError::ExpiredKey(_) => {
                Code::Unauthenticated
            }
            GatewayError::PermissionDenied { .. }
            | GatewayError::ModelNotAllowed { .. }
            | GatewayError::KeysNotConfigured { .. } => Code::PermissionDenied,
        },
        ApiError::Quota(_) => Code::ResourceExhausted,
        ApiError::ModelNotFound(_) => Code::NotFound,
        ApiError::ModelNotReady => Code::Unavailable,
        ApiError::RouteNotFound(_) | ApiError::MethodNotAllowed { .. } => Code::Unimplemented,
    }
}

/// The name of a code as gRPC writes it (`INVALID_ARGUMENT`), for logs and metric labels.
pub fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

/// Records the error on the call and gives its status.
pub fn refuse(call: &mut CallLog, error: &ApiError) -> Status {
    let status = status(error);
    call.failed(error.status(), code_name(status.code()), error.label());
    status
}

/// The status a client gets for this error.
pub fn status(error: &ApiError) -> Status {
    let code = code(error);
    let message = error.client_message();
    let details = error.retry_after().map(|secs| {
        let retry = RetryInfo {
            retry_delay: Some(prost_types::Duration {
                seconds: secs as i64,
                nanos: 0,
            }),
        };
        RpcStatus {
            code: code as i32,
            message: message.clone(),
            details: vec![prost_types::Any {
                type_url: "type.googleapis.com/google.rpc.RetryInfo".to_string(),
                value: retry.encode_to_vec(),
            }],
        }
        .encode_to_vec()
    });
    let mut status = match details {
        Some(details) => Status::with_details(code, message, details.into()),
        None => Status::new(code, message),
    };
    status.metadata_mut().insert(
        ERROR_CODE_TRAILER,
        error.label().parse().expect("labels are ASCII"),
    );
    status
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_follow_the_http_statuses_and_refusals_say_when_to_retry() {
        let full = ApiError::from(AdmissionError::Overloaded { waiting: 3 });
        let status = status(&full);
        assert_eq!(status.code(), Code::ResourceExhausted);
        let details = RpcStatus::decode(status.details()).unwrap();
        assert_eq!(
            details.details[0].type_url,
            "type.googleapis.com/google.rpc.RetryInfo"
        );
        let retry = RetryInfo::decode(details.details[0].value.as_slice()).unwrap();
        assert_eq!(retry.retry_delay.unwrap().seconds, 1);
        assert_eq!(
            status.metadata().get(ERROR_CODE_TRAILER).unwrap(),
            "overloaded"
        );

        let unknown = status_of(ApiError::ModelNotFound("x".into()));
        assert_eq!(unknown.code(), Code::NotFound);
        assert!(unknown.details().is_empty());
        assert_eq!(
            status_of(AdmissionError::Draining.into()).code(),
            Code::Unavailable
        );
        assert_eq!(status_of(ApiError::ModelNotReady).code(), Code::Unavailable);
        assert_eq!(
            status_of(EngineError::Internal("boom".into()).into()).code(),
            Code::Internal
        );
    }

    fn status_of(error: ApiError) -> Status {
        status(&error)
    }
}
