//! Fetches the `http(s)` image URLs of a chat request into data URLs before validation, when the operator
//! turned it on (`--allow-remote-images`). Off by default: a server that fetches URLs for its clients can be
//! pointed at hosts only it can reach.

use std::time::Duration;

use base64::Engine as _;
use futures::StreamExt;
use serde_json::Value;

use crate::api::chat::{ChatCompletionRequest, MessageContent};
use crate::error::ValidationError;
use crate::validate::{sniffed_media_type, MAX_IMAGES, MAX_IMAGE_BYTES};

/// For the whole fetch, body included: a slow host must not hold a request for long.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);
const MAX_REDIRECTS: usize = 3;

#[derive(Clone)]
pub struct RemoteImages {
    client: reqwest::Client,
}

impl RemoteImages {
    pub fn new() -> Self {
        let client = reqwest::Client::builder()
            .timeout(FETCH_TIMEOUT)
            .redirect(reqwest::redirect::Policy::limited(MAX_REDIRECTS))
            .user_agent(concat!("llmserve/", env!("CARGO_PKG_VERSION")))
            .build()
            .expect("the image fetcher's HTTP client builds");
        RemoteImages { client }
    }

    /// Replaces each remote `image_url` of the request by a data URL of the fetched bytes; validation then
    /// checks them like any data URL. At most `MAX_IMAGES` are fetched.
    pub async fn inline(&self, request: &mut ChatCompletionRequest) -> Result<(), ValidationError> {
        let mut fetched = 0;
        for (index, message) in request.messages.iter_mut().enumerate() {
            let Some(MessageContent::Parts(parts)) = message.content.as_mut() else {
                continue;
            };
            for (part_index, part) in parts.iter_mut().enumerate() {
                // `{"url": …}` as OpenAI sends it, or a bare string.
                let slot = match part.image_url.as_mut() {
                    Some(Value::Object(fields)) => fields.get_mut("url"),
                    other => other,
                };
                let Some(Value::String(url)) = slot else {
                    continue;
                };
                if !(url.starts_with("http://") || url.starts_with("https://")) {
                    continue;
                }
                fetched += 1;
                if fetched > MAX_IMAGES {
                    return Err(ValidationError::invalid(
                        "messages",
                        format!("a request may carry at most {MAX_IMAGES} images"),
                    ));
                }
                let at = format!("messages[{index}].content[{part_index}]");
                *url = self.fetch(url, &at).await?;
            }
        }
        Ok(())
    }

    async fn fetch(&self, url: &str, at: &str) -> Result<String, ValidationError> {
        let failed = |why: String| {
            ValidationError::invalid(
                "messages",
                format!("`{at}`: the image at {url} could not be fetched: {why}"),
            )
        };
        let too_large = || failed(format!("it is larger than {MAX_IMAGE_BYTES} bytes"));
        let response = self
            .client
            .get(url)
            .send()
            .await
            .map_err(|e| failed(e.without_url().to_string()))?;
        if !response.status().is_success() {
            return Err(failed(format!("HTTP {}", response.status())));
        }
        if response
            .content_length()
            .is_some_and(|length| length > MAX_IMAGE_BYTES as u64)
        {
            return Err(too_large());
        }
        let mut body = Vec::new();
        let mut chunks = response.bytes_stream();
        while let Some(chunk) = chunks.next().await {
            let chunk = chunk.map_err(|e| failed(e.without_url().to_string()))?;
            if body.len() + chunk.len() > MAX_IMAGE_BYTES {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        // The bytes decide the type: servers often send `application/octet-stream`.
        let media = sniffed_media_type(&body)
            .ok_or_else(|| failed("it is not a PNG, JPEG, WebP or GIF image".into()))?;
        Ok(format!(
            "data:{media};base64,{}",
            base64::engine::general_purpose::STANDARD.encode(&body)
        ))
    }
}

impl Default for RemoteImages {
    fn default() -> Self {
        Self::new()
    }
}
