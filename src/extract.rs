//! `ApiJson<T>`: the JSON body extractor whose every rejection is an OpenAI error envelope (never plain
//! text). The body is read under the server's byte limit (or the key's, when lower: `routes::auth`
//! puts it in the request) and a deadline that grows with what has arrived ([`BodyLimit`]), so that a
//! client trickling its body is cut off rather than holding its connection.

use std::future::Future;
use std::pin::Pin;

use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::web::{BytesMut, Data};
use actix_web::{FromRequest, HttpMessage, HttpRequest};
use futures::StreamExt;
use serde::de::DeserializeOwned;
use serde_json::error::Category;

use crate::config::cli::{
    DEFAULT_BODY_MIN_RATE, DEFAULT_BODY_READ_TIMEOUT_SECS, DEFAULT_MAX_REQUEST_BODY_BYTES,
};
use crate::error::{ApiError, RequestError};

/// The body rules in force, registered as app data by the server.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimit {
    pub max_bytes: usize,
    /// The deadline before any byte has arrived…
    pub read_timeout: std::time::Duration,
    /// …extended by a second for every this many bytes that have.
    pub min_bytes_per_sec: usize,
}

impl Default for BodyLimit {
    fn default() -> Self {
        BodyLimit {
            max_bytes: DEFAULT_MAX_REQUEST_BODY_BYTES,
            read_timeout: std::time::Duration::from_secs(DEFAULT_BODY_READ_TIMEOUT_SECS),
            min_bytes_per_sec: DEFAULT_BODY_MIN_RATE,
        }
    }
}

impl BodyLimit {
    /// How long a body may take, having received `bytes` so far.
    fn deadline_after(&self, bytes: usize) -> std::time::Duration {
        let earned = bytes as f64 / self.min_bytes_per_sec.max(1) as f64;
        self.read_timeout + std::time::Duration::from_secs_f64(earned)
    }
}

/// The caller's key's byte cap on one body, when it has one (put in the request by `routes::auth`).
#[derive(Debug, Clone, Copy)]
pub struct KeyBodyLimit(pub usize);

pub struct ApiJson<T>(pub T);

impl<T> ApiJson<T> {
    pub fn into_inner(self) -> T {
        self.0
    }
}

fn is_json(mime: &str) -> bool {
    let essence = mime
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// Parses with the failing field's path in the error, so the client learns which field is wrong.
pub fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, RequestError> {
    let deserializer = &mut serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(deserializer).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        match inner.classify() {
            Category::Syntax | Category::Eof | Category::Io => RequestError::MalformedJson {
                message: inner.to_string(),
            },
            Category::Data => {
                let param = (path != ".").then_some(path);
                let message = match &param {
                    Some(p) => format!("`{p}`: {inner}"),
                    None => inner.to_string(),
                };
                RequestError::InvalidField { message, param }
            }
        }
    })
}

impl<T: DeserializeOwned + 'static> FromRequest for ApiJson<T> {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let rules = req
            .app_data::<Data<BodyLimit>>()
            .map_or_else(BodyLimit::default, |rules| *rules.get_ref());
        let key_limit = req.extensions().get::<KeyBodyLimit>().map(|l| l.0);
        let limit = key_limit.map_or(rules.max_bytes, |k| k.min(rules.max_bytes));
        let content_type = req
            .headers()
            .get(header::CONTENT_TYPE)
            .map(|v| v.to_str().unwrap_or("<not text>").to_string());
        let declared_length = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok());
        let mut payload = payload.take();
        Box::pin(async move {
            // A missing Content-Type is read as JSON (curl -d without -H, many scripts); a wrong one is refused.
            if let Some(content_type) = content_type {
                if !is_json(&content_type) {
                    return Err(RequestError::UnsupportedMediaType(content_type).into());
                }
            }
            if let Some(given) = declared_length.filter(|&n| n > limit) {
                return Err(RequestError::PayloadTooLarge { limit, given }.into());
            }
            let started = tokio::time::Instant::now();
            let mut body = BytesMut::new();
            loop {
                let deadline = started + rules.deadline_after(body.len());
                let chunk = match tokio::time::timeout_at(deadline, payload.next()).await {
                    Ok(Some(chunk)) => chunk,
                    Ok(None) => break,
                    Err(_) => {
                        return Err(RequestError::BodyTimeout {
                            received: body.len(),
                            seconds: started.elapsed().as_secs(),
                        }
                        .into())
                    }
                };
                let chunk = chunk.map_err(|e| RequestError::PayloadRead(e.to_string()))?;
                if body.len() + chunk.len() > limit {
                    return Err(RequestError::PayloadTooLarge {
                        limit,
                        given: body.len() + chunk.len(),
                    }
                    .into());
                }
                body.extend_from_slice(&chunk);
            }
            Ok(ApiJson(parse_json(&body)?))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::chat::ChatCompletionRequest;

    #[test]
    fn wrong_types_name_the_field() {
        let err = parse_json::<ChatCompletionRequest>(br#"{"messages": [], "temperature": "hot"}"#)
            .unwrap_err();
        match err {
            RequestError::InvalidField { param, message } => {
                assert_eq!(param.as_deref(), Some("temperature"));
                assert!(message.contains("invalid type"), "{message}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn syntax_errors_are_malformed_json() {
        assert!(matches!(
            parse_json::<ChatCompletionRequest>(b"{\"messages\": ["),
            Err(RequestError::MalformedJson { .. })
        ));
        assert!(matches!(
            parse_json::<ChatCompletionRequest>(b"{}"),
            Err(RequestError::InvalidField { param: None, .. })
        ));
    }

    #[test]
    fn json_media_types() {
        assert!(is_json("application/json"));
        assert!(is_json("application/json; charset=utf-8"));
        assert!(is_json("application/vnd.api+json"));
        assert!(!is_json("text/plain"));
        assert!(!is_json("application/x-www-form-urlencoded"));
    }
}
