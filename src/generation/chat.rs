//! Chat answers, for every front: with tools in the request, the generated text is split into content and
//! tool calls (streamed or whole), and an answer that called a tool finishes with `tool_calls`.

use crate::api::common::FinishReason;
use crate::ids;
use crate::tools::{self, ToolCallParser, ToolEvent};

/// A fresh tool-call id in OpenAI's shape.
pub fn call_id() -> String {
    format!("call_{}", ids::random_id(24))
}

/// One streamed chat choice's text → content and tool-call events.
#[derive(Debug)]
pub struct ChatChoiceText {
    tools: Option<ToolCallParser>,
}

impl ChatChoiceText {
    pub fn new(parse_tools: bool) -> Self {
        ChatChoiceText {
            tools: parse_tools.then(ToolCallParser::default),
        }
    }

    /// Without tools, the text is content as it stands (even empty: it may carry logprobs).
    pub fn push(&mut self, text: String) -> Vec<ToolEvent> {
        match self.tools.as_mut() {
            Some(parser) => parser.push(&text),
            None => vec![ToolEvent::Content(text)],
        }
    }

    /// What the parser still held, and the finish reason: `tool_calls` when the model called a tool.
    pub fn finish(&mut self, reason: FinishReason) -> (Vec<ToolEvent>, FinishReason) {
        let Some(parser) = self.tools.as_mut() else {
            return (Vec::new(), reason);
        };
        let events = parser.finish();
        let reason = match reason {
            FinishReason::Stop if parser.calls() > 0 => FinishReason::ToolCalls,
            other => other,
        };
        (events, reason)
    }
}

/// A tool call of a whole answer.
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedToolCall {
    pub id: String,
    pub name: String,
    /// JSON text.
    pub arguments: String,
}

/// A whole chat answer, split.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatAnswer {
    pub content: Option<String>,
    pub tool_calls: Vec<ParsedToolCall>,
    pub finish_reason: FinishReason,
}

/// Splits a collected answer into content and tool calls (when the request had tools).
pub fn chat_answer(text: String, parse_tools: bool, reason: FinishReason) -> ChatAnswer {
    let (content, calls) = if parse_tools {
        tools::parse_complete(&text)
    } else {
        (Some(text), Vec::new())
    };
    let finish_reason = match reason {
        FinishReason::Stop if !calls.is_empty() => FinishReason::ToolCalls,
        other => other,
    };
    ChatAnswer {
        content,
        tool_calls: calls
            .into_iter()
            .map(|(name, arguments)| ParsedToolCall {
                id: call_id(),
                name,
                arguments,
            })
            .collect(),
        finish_reason,
    }
}
