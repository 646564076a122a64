//! The `response` object: its fields echoed from the request, its output items made from the chat answer,
//! its status from how generation ended; and the assistant turn a continuing response sees.

use serde_json::{json, Value};

use crate::api::common::{FinishReason, Usage};
use crate::api::responses::{
    CreateResponseRequest, IncompleteDetails, ItemStatus, OutputItem, OutputText, ResponseError,
    ResponseObject, ResponseStatus, ResponseUsage,
};
use crate::generation::chat::{self, ChatAnswer};
use crate::generation::output::Collected;
use crate::ids;

/// A fresh response id.
pub fn response_id() -> String {
    format!("resp_{}", ids::random_id(32))
}

/// A fresh message item id.
pub fn message_id() -> String {
    format!("msg_{}", ids::random_id(32))
}

/// A fresh function-call item id.
pub fn function_call_id() -> String {
    format!("fc_{}", ids::random_id(32))
}

/// The response as it starts: `in_progress`, no output, the request's settings echoed.
pub fn in_progress(
    request: &CreateResponseRequest,
    id: String,
    model: String,
    created_at: u64,
) -> ResponseObject {
    let tools = request.tools.clone().unwrap_or_default();
    let tool_choice = request
        .tool_choice
        .clone()
        .filter(|c| !c.is_null())
        .unwrap_or_else(|| json!("auto"));
    ResponseObject {
        id,
        object: "response".to_string(),
        created_at,
        status: ResponseStatus::InProgress,
        error: None,
        incomplete_details: None,
        instructions: request.instructions.clone(),
        max_output_tokens: request.max_output_tokens,
        model,
        output: Vec::new(),
        parallel_tool_calls: request.parallel_tool_calls.unwrap_or(true),
        previous_response_id: request.previous_response_id.clone(),
        store: request.store.unwrap_or(true),
        temperature: request.temperature.unwrap_or(1.0),
        top_p: request.top_p.unwrap_or(1.0),
        text: json!({"format": request
            .text
            .as_ref()
            .and_then(|t| t.format.clone())
            .filter(|f| !f.is_null())
            .unwrap_or_else(|| json!({"type": "text"}))}),
        tool_choice,
        tools,
        truncation: "disabled".to_string(),
        usage: None,
        user: request.user.clone(),
        metadata: request.metadata.clone().unwrap_or_default(),
    }
}

/// The status a finished answer gives its response: cut at `max_output_tokens` (or the context) is
/// `incomplete`.
pub fn finished(response: &mut ResponseObject, reason: FinishReason, usage: Usage) {
    response.usage = Some(ResponseUsage::from(usage));
    if reason == FinishReason::Length {
        response.status = ResponseStatus::Incomplete;
        response.incomplete_details = Some(IncompleteDetails {
            reason: "max_output_tokens".to_string(),
        });
    } else {
        response.status = ResponseStatus::Completed;
    }
}

/// The response of a whole (not streamed) answer: its one choice's text as output items, its status
/// and usage.
pub fn whole(
    mut response: ResponseObject,
    parse_tools: bool,
    collected: Collected,
) -> ResponseObject {
    let choice = collected
        .choices
        .into_iter()
        .next()
        .expect("a response has one choice");
    let answer = chat::chat_answer(choice.text, parse_tools, choice.finish_reason);
    let reason = answer.finish_reason;
    response.output = items(answer);
    finished(&mut response, reason, collected.usage);
    response
}

/// A response whose generation failed after its stream began.
pub fn failed(response: &mut ResponseObject, code: &str, message: String) {
    response.status = ResponseStatus::Failed;
    response.error = Some(ResponseError {
        code: code.to_string(),
        message,
    });
}

/// A whole chat answer's output items: its text as one message (when there is text), then its calls.
pub fn items(answer: ChatAnswer) -> Vec<OutputItem> {
    let status = item_status(answer.finish_reason);
    let mut items = Vec::new();
    if let Some(text) = answer
        .content
        .filter(|t| !t.is_empty() || answer.tool_calls.is_empty())
    {
        items.push(OutputItem::Message {
            id: message_id(),
            status,
            role: "assistant".to_string(),
            content: vec![OutputText::new(text)],
        });
    }
    items.extend(
        answer
            .tool_calls
            .into_iter()
            .map(|call| OutputItem::FunctionCall {
                id: function_call_id(),
                call_id: call.id,
                name: call.name,
                arguments: call.arguments,
                status: ItemStatus::Completed,
            }),
    );
    items
}

/// An item cut at `max_output_tokens` is `incomplete`.
pub fn item_status(reason: FinishReason) -> ItemStatus {
    if reason == FinishReason::Length {
        ItemStatus::Incomplete
    } else {
        ItemStatus::Completed
    }
}

/// The output as the assistant turn of a chat conversation (what a continuing response's prompt shows).
pub fn assistant_turn(output: &[OutputItem]) -> Option<Value> {
    let mut text = String::new();
    let mut calls = Vec::new();
    for item in output {
        match item {
            OutputItem::Message { content, .. } => {
                content.iter().for_each(|part| text.push_str(&part.text))
            }
            OutputItem::FunctionCall {
                call_id,
                name,
                arguments,
                ..
            } => calls.push(json!({
                "id": call_id,
                "type": "function",
                "function": {"name": name, "arguments": arguments},
            })),
        }
    }
    if text.is_empty() && calls.is_empty() {
        return None;
    }
    let mut turn = json!({"role": "assistant", "content": (!text.is_empty()).then_some(text)});
    if !calls.is_empty() {
        turn["tool_calls"] = Value::Array(calls);
    }
    Some(turn)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::generation::chat::ParsedToolCall;

    #[test]
    fn an_answer_becomes_a_message_then_its_calls_and_back_into_a_turn() {
        let answer = ChatAnswer {
            content: Some("Checking.".into()),
            tool_calls: vec![ParsedToolCall {
                id: "call_1".into(),
                name: "get_weather".into(),
                arguments: "{\"city\":\"Paris\"}".into(),
            }],
            finish_reason: FinishReason::ToolCalls,
        };
        let items = items(answer);
        assert!(
            matches!(&items[0], OutputItem::Message { content, .. } if content[0].text == "Checking.")
        );
        assert!(
            matches!(&items[1], OutputItem::FunctionCall { call_id, .. } if call_id == "call_1")
        );
        let turn = assistant_turn(&items).unwrap();
        assert_eq!(turn["content"], "Checking.");
        assert_eq!(turn["tool_calls"][0]["id"], "call_1");

        let only_call = ChatAnswer {
            content: None,
            tool_calls: vec![ParsedToolCall {
                id: "call_2".into(),
                name: "f".into(),
                arguments: "{}".into(),
            }],
            finish_reason: FinishReason::ToolCalls,
        };
        assert_eq!(
            items_len(only_call),
            1,
            "no empty message before a lone call"
        );
    }

    fn items_len(answer: ChatAnswer) -> usize {
        items(answer).len()
    }
}
