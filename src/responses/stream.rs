//! The Responses API's event stream: its items opened, filled and closed as the answer's text is parsed
//! into content and calls, every event numbered and named after its `type`; and where a finished
//! response is kept for `previous_response_id`.

use std::sync::Arc;

use serde_json::Value;

use crate::api::common::{FinishReason, Usage};
use crate::api::responses::{
    ItemStatus, OutputItem, OutputText, ResponseEventKind, ResponseObject, ResponseStatus,
    ResponseStreamEvent,
};
use crate::engine::TokenLogprob;
use crate::error::ApiError;
use crate::formats::{Answer, ChunkFormat, SseEvent};
use crate::generation::chat::{self, ChatChoiceText};
use crate::generation::inputs::ChatShape;
use crate::generation::output::Collected;
use crate::generation::AnswerHead;
use crate::responses::output;
use crate::responses::store::{ResponseStore, StoredResponse};
use crate::tools::ToolEvent;

/// The Responses API's answer: the response begun (`in_progress`), streamed as its events or whole, and
/// kept once finished unless `store: false`.
pub struct ResponsesAnswer {
    pub response: ResponseObject,
    pub keep: Option<Keep>,
}

impl Answer<ChatShape> for ResponsesAnswer {
    type Streamed = ResponseEvents;
    type Whole = ResponseObject;

    fn streamed(self, head: &AnswerHead<ChatShape>) -> ResponseEvents {
        ResponseEvents::new(self.response, head.shape.parse_tools, self.keep)
    }

    fn whole(self, head: &AnswerHead<ChatShape>, collected: Collected) -> ResponseObject {
        let response = output::whole(self.response, head.shape.parse_tools, collected);
        if let Some(keep) = self.keep {
            keep.put(&response);
        }
        response
    }
}

/// Where a finished response is kept (`store`, the default): its owner's key and its conversation.
pub struct Keep {
    store: Arc<ResponseStore>,
    owner: Option<String>,
    conversation: Vec<Value>,
}

impl Keep {
    /// A finished response's keeping: where, for whom, and the conversation before its answer.
    pub fn new(store: Arc<ResponseStore>, owner: Option<String>, conversation: Vec<Value>) -> Self {
        Keep {
            store,
            owner,
            conversation,
        }
    }

    /// Stores the finished response and its conversation (in the background, with a shared store).
    pub fn put(self, response: &ResponseObject) {
        let mut conversation = self.conversation;
        conversation.extend(output::assistant_turn(&response.output));
        self.store.put(
            self.owner.as_deref(),
            StoredResponse {
                response: Arc::new(response.clone()),
                conversation: Arc::new(conversation),
            },
        );
    }
}

/// The message item being streamed.
struct OpenMessage {
    output_index: usize,
    id: String,
    text: String,
}

/// A function-call item being streamed.
struct OpenCall {
    output_index: usize,
    id: String,
    call_id: String,
    name: String,
    arguments: String,
}

/// The event stream of one response: its items opened, filled and closed as the text is parsed into
/// content and calls, every event numbered.
pub struct ResponseEvents {
    response: ResponseObject,
    sequence: u64,
    text: ChatChoiceText,
    message: Option<OpenMessage>,
    call: Option<OpenCall>,
    /// Items added so far (the next item's `output_index`).
    added: usize,
    /// Items done, by `output_index`.
    done: Vec<(usize, OutputItem)>,
    reason: FinishReason,
    keep: Option<Keep>,
}

impl ResponseEvents {
    pub fn new(response: ResponseObject, parse_tools: bool, keep: Option<Keep>) -> Self {
        ResponseEvents {
            response,
            sequence: 0,
            text: ChatChoiceText::new(parse_tools),
            message: None,
            call: None,
            added: 0,
            done: Vec::new(),
            reason: FinishReason::Stop,
            keep,
        }
    }

    fn event(&mut self, event: ResponseEventKind) -> SseEvent {
        let name = event.name();
        let numbered = ResponseStreamEvent {
            event,
            sequence_number: self.sequence,
        };
        self.sequence += 1;
        SseEvent::named(
            name,
            serde_json::to_string(&numbered).expect("events serialize"),
        )
    }

    fn snapshot(&self) -> Box<ResponseObject> {
        Box::new(self.response.clone())
    }

    fn parsed(&mut self, events: Vec<ToolEvent>) -> Vec<SseEvent> {
        let mut out = Vec::new();
        for event in events {
            match event {
                ToolEvent::Content(text) if text.is_empty() => {}
                ToolEvent::Content(text) => {
                    if self.message.is_none() {
                        out.extend(self.close_call(ItemStatus::Completed));
                        out.extend(self.open_message());
                    }
                    let message = self.message.as_mut().expect("opened above");
                    message.text.push_str(&text);
                    let (item_id, output_index) = (message.id.clone(), message.output_index);
                    out.push(self.event(ResponseEventKind::OutputTextDelta {
                        item_id,
                        output_index,
                        content_index: 0,
                        delta: text,
                        logprobs: Vec::new(),
                    }));
                }
                ToolEvent::CallStart { name, .. } => {
                    out.extend(self.close_message(ItemStatus::Completed));
                    out.extend(self.close_call(ItemStatus::Completed));
                    let call = OpenCall {
                        output_index: self.added,
                        id: output::function_call_id(),
                        call_id: chat::call_id(),
                        name,
                        arguments: String::new(),
                    };
                    self.added += 1;
                    let item = OutputItem::FunctionCall {
                        id: call.id.clone(),
                        call_id: call.call_id.clone(),
                        name: call.name.clone(),
                        arguments: String::new(),
                        status: ItemStatus::InProgress,
                    };
                    let output_index = call.output_index;
                    self.call = Some(call);
                    out.push(self.event(ResponseEventKind::OutputItemAdded { output_index, item }));
                }
                ToolEvent::Arguments { fragment, .. } => {
                    let Some(call) = self.call.as_mut() else {
                        continue;
                    };
                    call.arguments.push_str(&fragment);
                    let (item_id, output_index) = (call.id.clone(), call.output_index);
                    out.push(self.event(ResponseEventKind::FunctionCallArgumentsDelta {
                        item_id,
                        output_index,
                        delta: fragment,
                    }));
                }
            }
        }
        out
    }

    fn open_message(&mut self) -> Vec<SseEvent> {
        let message = OpenMessage {
            output_index: self.added,
            id: output::message_id(),
            text: String::new(),
        };
        self.added += 1;
        let item = OutputItem::Message {
            id: message.id.clone(),
            status: ItemStatus::InProgress,
            role: "assistant".to_string(),
            content: Vec::new(),
        };
        let (item_id, output_index) = (message.id.clone(), message.output_index);
        self.message = Some(message);
        vec![
            self.event(ResponseEventKind::OutputItemAdded { output_index, item }),
            self.event(ResponseEventKind::ContentPartAdded {
                item_id,
                output_index,
                content_index: 0,
                part: OutputText::new(String::new()),
            }),
        ]
    }

    fn close_message(&mut self, status: ItemStatus) -> Vec<SseEvent> {
        let Some(message) = self.message.take() else {
            return Vec::new();
        };
        let part = OutputText::new(message.text.clone());
        let item = OutputItem::Message {
            id: message.id.clone(),
            status,
            role: "assistant".to_string(),
            content: vec![part.clone()],
        };
        self.done.push((message.output_index, item.clone()));
        vec![
            self.event(ResponseEventKind::OutputTextDone {
                item_id: message.id.clone(),
                output_index: message.output_index,
                content_index: 0,
                text: message.text,
                logprobs: Vec::new(),
            }),
            self.event(ResponseEventKind::ContentPartDone {
                item_id: message.id,
                output_index: message.output_index,
                content_index: 0,
                part,
            }),
            self.event(ResponseEventKind::OutputItemDone {
                output_index: message.output_index,
                item,
            }),
        ]
    }

    fn close_call(&mut self, status: ItemStatus) -> Vec<SseEvent> {
        let Some(call) = self.call.take() else {
            return Vec::new();
        };
        let item = OutputItem::FunctionCall {
            id: call.id.clone(),
            call_id: call.call_id,
            name: call.name.clone(),
            arguments: call.arguments.clone(),
            status,
        };
        self.done.push((call.output_index, item.clone()));
        vec![
            self.event(ResponseEventKind::FunctionCallArgumentsDone {
                item_id: call.id,
                output_index: call.output_index,
                name: call.name,
                arguments: call.arguments,
            }),
            self.event(ResponseEventKind::OutputItemDone {
                output_index: call.output_index,
                item,
            }),
        ]
    }
}

impl ChunkFormat for ResponseEvents {
    const ENDS_WITH_DONE: bool = false;

    fn prelude(&mut self) -> Vec<SseEvent> {
        let created = self.snapshot();
        let in_progress = self.snapshot();
        vec![
            self.event(ResponseEventKind::Created { response: created }),
            self.event(ResponseEventKind::InProgress {
                response: in_progress,
            }),
        ]
    }

    fn opening(&mut self, _: usize) -> Vec<SseEvent> {
        Vec::new()
    }

    fn text(&mut self, _: usize, text: String, _: Vec<TokenLogprob>) -> Vec<SseEvent> {
        let events = self.text.push(text);
        self.parsed(events)
    }

    fn finish(&mut self, _: usize, reason: FinishReason) -> Vec<SseEvent> {
        let (events, reason) = self.text.finish(reason);
        self.reason = reason;
        let mut out = self.parsed(events);
        let status = output::item_status(reason);
        out.extend(self.close_message(status));
        out.extend(self.close_call(status));
        out
    }

    fn closing(&mut self, usage: Usage) -> Vec<SseEvent> {
        let mut done = std::mem::take(&mut self.done);
        done.sort_by_key(|(index, _)| *index);
        self.response.output = done.into_iter().map(|(_, item)| item).collect();
        output::finished(&mut self.response, self.reason, usage);
        if let Some(keep) = self.keep.take() {
            keep.put(&self.response);
        }
        let response = self.snapshot();
        let event = match self.response.status {
            ResponseStatus::Incomplete => ResponseEventKind::Incomplete { response },
            _ => ResponseEventKind::Completed { response },
        };
        vec![self.event(event)]
    }

    fn failure(&mut self, error: &ApiError) -> Vec<SseEvent> {
        let envelope = error.envelope().error;
        output::failed(
            &mut self.response,
            envelope.code.as_deref().unwrap_or(&envelope.kind),
            envelope.message.clone(),
        );
        let response = self.snapshot();
        vec![
            self.event(ResponseEventKind::Error {
                code: envelope.code,
                message: envelope.message,
                param: envelope.param,
            }),
            self.event(ResponseEventKind::Failed { response }),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::responses::CreateResponseRequest;

    fn request() -> CreateResponseRequest {
        serde_json::from_value(serde_json::json!({"input": "x"})).unwrap()
    }

    /// The events' JSON, each checked to be named after its `type`.
    fn events_of(chunks: &[SseEvent]) -> Vec<Value> {
        chunks
            .iter()
            .map(|c| {
                let json: Value = serde_json::from_str(&c.data).unwrap();
                assert_eq!(c.name, json["type"].as_str(), "{json}");
                json
            })
            .collect()
    }

    /// The stream of a text-then-call answer: every event numbered in order, `type` first, items opened
    /// before their deltas and closed before the next, the final response holding both items.
    #[test]
    fn events_follow_openai_order_with_sequence_numbers() {
        let response = output::in_progress(&request(), "resp_1".into(), "m".into(), 0);
        let mut format = ResponseEvents::new(response, true, None);
        let mut chunks = format.prelude();
        chunks.extend(format.opening(0));
        for piece in [
            "Hi",
            " there.",
            "<tool_call>{\"name\": \"f\", \"arguments\": {\"a\": 1}}</tool_call>",
        ] {
            chunks.extend(format.text(0, piece.to_string(), Vec::new()));
        }
        chunks.extend(format.finish(0, FinishReason::Stop));
        chunks.extend(format.closing(Usage::new(3, 4)));
        assert!(chunks.iter().all(|c| c.data.starts_with("{\"type\":\"")));
        let events = events_of(&chunks);
        let types: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
        assert_eq!(
            types,
            [
                "response.created",
                "response.in_progress",
                "response.output_item.added",
                "response.content_part.added",
                "response.output_text.delta",
                "response.output_text.delta",
                "response.output_text.done",
                "response.content_part.done",
                "response.output_item.done",
                "response.output_item.added",
                "response.function_call_arguments.delta",
                "response.function_call_arguments.done",
                "response.output_item.done",
                "response.completed",
            ]
        );
        for (i, event) in events.iter().enumerate() {
            assert_eq!(event["sequence_number"], i as u64);
        }
        let done = &events[13]["response"];
        assert_eq!(done["status"], "completed");
        assert_eq!(done["output"][0]["content"][0]["text"], "Hi there.");
        assert_eq!(done["output"][1]["type"], "function_call");
        assert_eq!(done["output"][1]["arguments"], "{\"a\": 1}");
        assert_eq!(done["usage"]["output_tokens"], 4);
        assert_eq!(events[9]["output_index"], 1);
    }

    #[test]
    fn a_failure_is_an_error_event_then_response_failed() {
        let response = output::in_progress(&request(), "resp_1".into(), "m".into(), 0);
        let mut format = ResponseEvents::new(response, false, None);
        let mut chunks = format.prelude();
        chunks.extend(format.text(0, "a".into(), Vec::new()));
        chunks.extend(format.failure(&ApiError::from(
            crate::models::admission::AdmissionError::Draining,
        )));
        let events = events_of(&chunks);
        let last = &events[events.len() - 1];
        assert_eq!(events[events.len() - 2]["type"], "error");
        assert_eq!(last["type"], "response.failed");
        assert_eq!(last["response"]["status"], "failed");
        assert_eq!(last["response"]["error"]["code"], "draining");
    }
}
