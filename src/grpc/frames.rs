//! Generation events as `llmserve.v1` messages: the Generate stream's text deltas and its finish, the
//! Chat stream's content and tool-call deltas (tool calls parsed as the text arrives) and its finish.
//! The gRPC counterpart of `crate::formats`.

use crate::api::common::{FinishReason, Usage};
use crate::generation::chat::{call_id, ChatChoiceText};
use crate::generation::output::GenerationEvent;
use crate::grpc::proto::{self, chat_response, generate_response};
use crate::models::Routed;
use crate::tools::ToolEvent;

pub fn finish_reason(reason: FinishReason) -> proto::FinishReason {
    match reason {
        FinishReason::Stop => proto::FinishReason::Stop,
        FinishReason::Length => proto::FinishReason::Length,
        FinishReason::ToolCalls => proto::FinishReason::ToolCalls,
        FinishReason::ContentFilter => proto::FinishReason::ContentFilter,
    }
}

pub fn usage(usage: Usage) -> proto::Usage {
    let count = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
    proto::Usage {
        prompt_tokens: count(usage.prompt_tokens),
        completion_tokens: count(usage.completion_tokens),
        total_tokens: count(usage.total_tokens),
    }
}

/// The messages of a Generate stream.
pub struct GenerateFrames {
    model: String,
    model_version: String,
    reason: FinishReason,
}

impl GenerateFrames {
    pub fn new(model: &Routed) -> Self {
        GenerateFrames {
            model: model.requested.clone(),
            model_version: model.id.clone(),
            reason: FinishReason::Stop,
        }
    }

    /// Zero or one message for this event.
    pub fn frame(&mut self, event: GenerationEvent) -> Vec<proto::GenerateResponse> {
        use generate_response::Event;
        let event = match event {
            GenerationEvent::Text(piece) if !piece.text.is_empty() => {
                Event::Text(proto::TextDelta {
                    text: piece.text,
                    tokens: piece.tokens as u32,
                })
            }
            GenerationEvent::Finished { reason, .. } => {
                self.reason = reason;
                return Vec::new();
            }
            GenerationEvent::Done(totals) => Event::Finished(proto::Finished {
                finish_reason: finish_reason(self.reason).into(),
                usage: Some(usage(totals)),
                model: self.model.clone(),
                model_version: self.model_version.clone(),
            }),
            _ => return Vec::new(),
        };
        vec![proto::GenerateResponse { event: Some(event) }]
    }
}

/// The messages of a Chat stream.
pub struct ChatFrames {
    model: String,
    model_version: String,
    text: ChatChoiceText,
    reason: FinishReason,
    /// Tokens behind text the tool-call parser still holds: they go with the next delta sent.
    unsent_tokens: u32,
}

impl ChatFrames {
    pub fn new(model: &Routed, parse_tools: bool) -> Self {
        ChatFrames {
            model: model.requested.clone(),
            model_version: model.id.clone(),
            text: ChatChoiceText::new(parse_tools),
            reason: FinishReason::Stop,
            unsent_tokens: 0,
        }
    }

    /// Zero or more messages for this event.
    pub fn frame(&mut self, event: GenerationEvent) -> Vec<proto::ChatResponse> {
        let pieces = match event {
            GenerationEvent::Text(piece) => {
                self.unsent_tokens += piece.tokens as u32;
                self.text.push(piece.text)
            }
            GenerationEvent::Finished { reason, .. } => {
                let (pieces, promoted) = self.text.finish(reason);
                self.reason = promoted;
                pieces
            }
            GenerationEvent::Done(totals) => {
                let finished = proto::Finished {
                    finish_reason: finish_reason(self.reason).into(),
                    usage: Some(usage(totals)),
                    model: self.model.clone(),
                    model_version: self.model_version.clone(),
                };
                return vec![proto::ChatResponse {
                    event: Some(chat_response::Event::Finished(finished)),
                }];
            }
            _ => return Vec::new(),
        };
        pieces
            .into_iter()
            .map(delta)
            .filter(|d| !d.content.is_empty() || d.tool_call.is_some())
            .map(|mut d| {
                d.tokens = std::mem::take(&mut self.unsent_tokens);
                proto::ChatResponse {
                    event: Some(chat_response::Event::Delta(d)),
                }
            })
            .collect()
    }
}

fn delta(piece: ToolEvent) -> proto::ChatDelta {
    match piece {
        ToolEvent::Content(content) => proto::ChatDelta {
            content,
            ..Default::default()
        },
        ToolEvent::CallStart { index, name } => proto::ChatDelta {
            tool_call: Some(proto::ToolCallDelta {
                index: index as u32,
                id: call_id(),
                name,
                arguments: String::new(),
            }),
            ..Default::default()
        },
        ToolEvent::Arguments { index, fragment } => proto::ChatDelta {
            tool_call: Some(proto::ToolCallDelta {
                index: index as u32,
                arguments: fragment,
                ..Default::default()
            }),
            ..Default::default()
        },
    }
}
