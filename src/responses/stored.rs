//! What the Responses store keeps of a response, wherever it keeps it ([`super::store`] in this process,
//! [`super::redis_store`] in Redis).

use std::sync::Arc;

use serde_json::Value;

use crate::api::responses::ResponseObject;

/// A stored response and the conversation it ends: the chat messages of its input (after any earlier
/// responses', without `instructions`) and its own output, which a continuing response starts from.
#[derive(Debug, Clone)]
pub struct StoredResponse {
    pub response: Arc<ResponseObject>,
    pub conversation: Arc<Vec<Value>>,
}

impl StoredResponse {
    /// What it holds, as JSON text (images inline as data URLs dominate it): what the byte bound counts.
    pub fn approximate_bytes(&self) -> usize {
        let response = serde_json::to_string(&*self.response).map_or(0, |s| s.len());
        let conversation: usize = self
            .conversation
            .iter()
            .map(|m| serde_json::to_string(m).map_or(0, |s| s.len()))
            .sum();
        response + conversation
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::api::responses::ResponseStatus;

    /// A response whose conversation holds `text_bytes` bytes of text.
    pub(crate) fn response(id: &str, text_bytes: usize) -> StoredResponse {
        let response = ResponseObject {
            id: id.to_string(),
            object: "response".into(),
            created_at: 0,
            status: ResponseStatus::Completed,
            error: None,
            incomplete_details: None,
            instructions: None,
            max_output_tokens: None,
            model: "m".into(),
            output: Vec::new(),
            parallel_tool_calls: true,
            previous_response_id: None,
            store: true,
            temperature: 1.0,
            top_p: 1.0,
            text: Value::Null,
            tool_choice: Value::Null,
            tools: Vec::new(),
            truncation: "disabled".into(),
            usage: None,
            user: None,
            metadata: Default::default(),
        };
        StoredResponse {
            response: Arc::new(response),
            conversation: Arc::new(vec![Value::String("x".repeat(text_bytes))]),
        }
    }
}
