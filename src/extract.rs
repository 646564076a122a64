//! `ApiJson<T>`: the JSON body extractor whose every rejection is an OpenAI error envelope (never plain text).

use std::future::Future;
use std::pin::Pin;

use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::web::{BytesMut, Data};
use actix_web::{FromRequest, HttpRequest};
use futures::StreamExt;
use serde::de::DeserializeOwned;
use serde_json::error::Category;

use crate::config::cli::DEFAULT_MAX_REQUEST_BODY_BYTES;
use crate::error::{ApiError, RequestError};

/// The body limit in force, registered as app data by the server.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimit(pub usize);

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
        let limit = req
            .app_data::<Data<BodyLimit>>()
            .map_or(DEFAULT_MAX_REQUEST_BODY_BYTES, |l| l.0);
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
            let mut body = BytesMut::new();
            while let Some(chunk) = payload.next().await {
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
