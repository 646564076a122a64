//! Chat completions in their wire shapes: the `chat.completion.chunk` events of a stream
//! ([`ChatChunks`], the text split into content and tool-call deltas as it arrives) and the whole
//! `chat.completion` ([`chat_completion`]).

use crate::api::chat::{
    AssistantMessage, ChatChoice, ChatChunkChoice, ChatCompletion, ChatDelta, ChatLogprobs,
    ChatTokenLogprob, ChatTopLogprob, FunctionCall, FunctionCallDelta, ToolCall, ToolCallDelta,
};
use crate::api::common::{FinishReason, Usage};
use crate::engine::TokenLogprob;
use crate::formats::{Answer, ChunkFormat, ChunkHeader, SseEvent};
use crate::generation::chat::{self, ChatChoiceText};
use crate::generation::inputs::ChatShape;
use crate::generation::output::Collected;
use crate::generation::AnswerHead;
use crate::ids;
use crate::tools::ToolEvent;

/// The chat completions API's answer: `chat.completion.chunk` events, or one `chat.completion`.
pub struct ChatAnswer;

impl Answer<ChatShape> for ChatAnswer {
    type Streamed = ChatChunks;
    type Whole = ChatCompletion;

    fn streamed(self, head: &AnswerHead<ChatShape>) -> ChatChunks {
        ChatChunks::new(head)
    }

    fn whole(self, head: &AnswerHead<ChatShape>, collected: Collected) -> ChatCompletion {
        chat_completion(head, collected)
    }
}

/// A new chat answer's id.
pub fn answer_id() -> String {
    format!("chatcmpl-{}", ids::random_id(24))
}

/// The whole `chat.completion`: each choice's text split into content and tool calls.
pub fn chat_completion(
    head: &AnswerHead<ChatShape>,
    Collected { choices, usage }: Collected,
) -> ChatCompletion {
    let with_logprobs = head.generation.logprobs.is_some();
    let parse_tools = head.shape.parse_tools;
    ChatCompletion {
        id: answer_id(),
        object: "chat.completion".to_string(),
        created: head.created,
        model: head.model.requested.clone(),
        system_fingerprint: head.model.id.clone(),
        choices: choices
            .into_iter()
            .map(|c| {
                let answer = chat::chat_answer(c.text, parse_tools, c.finish_reason);
                let tool_calls = (!answer.tool_calls.is_empty()).then(|| {
                    answer
                        .tool_calls
                        .into_iter()
                        .map(|call| ToolCall {
                            id: call.id,
                            kind: "function".to_string(),
                            function: FunctionCall {
                                name: call.name,
                                arguments: call.arguments,
                            },
                        })
                        .collect()
                });
                ChatChoice {
                    index: c.index,
                    message: AssistantMessage {
                        role: "assistant".to_string(),
                        content: answer.content,
                        tool_calls,
                    },
                    logprobs: with_logprobs.then(|| chat_logprobs(c.logprobs)),
                    finish_reason: answer.finish_reason,
                }
            })
            .collect(),
        usage,
    }
}

impl ChatChunks {
    /// The chunks of one streamed answer: same id, `created` and model on every chunk.
    pub fn new(head: &AnswerHead<ChatShape>) -> Self {
        let generation = &head.generation;
        ChatChunks {
            header: ChunkHeader::new(
                answer_id(),
                "chat.completion.chunk",
                head.created,
                head.model.requested.clone(),
                head.model.id.clone(),
                generation.include_usage,
            ),
            with_logprobs: generation.logprobs.is_some(),
            choices: (0..generation.n)
                .map(|_| ChoiceState::new(head.shape.parse_tools))
                .collect(),
        }
    }
}

/// Our token logprobs in the chat shape.
fn chat_logprobs(tokens: Vec<TokenLogprob>) -> ChatLogprobs {
    ChatLogprobs {
        content: tokens
            .into_iter()
            .map(|t| ChatTokenLogprob {
                token: t.sampled.token,
                logprob: t.sampled.logprob,
                bytes: Some(t.sampled.bytes),
                top_logprobs: t
                    .top
                    .into_iter()
                    .map(|a| ChatTopLogprob {
                        token: a.token,
                        logprob: a.logprob,
                        bytes: Some(a.bytes),
                    })
                    .collect(),
            })
            .collect(),
        refusal: None,
    }
}

/// One streaming choice: its text split into content and tool calls, and logprobs not yet sent.
struct ChoiceState {
    text: ChatChoiceText,
    pending_logprobs: Vec<TokenLogprob>,
}

impl ChoiceState {
    fn new(parse_tools: bool) -> Self {
        ChoiceState {
            text: ChatChoiceText::new(parse_tools),
            pending_logprobs: Vec::new(),
        }
    }
}

/// `chat.completion.chunk` events of one request: same id, `created` and model on every chunk.
pub struct ChatChunks {
    header: ChunkHeader,
    with_logprobs: bool,
    choices: Vec<ChoiceState>,
}

impl ChatChunks {
    fn choice(
        &self,
        index: usize,
        delta: ChatDelta,
        logprobs: Option<ChatLogprobs>,
        finish_reason: Option<FinishReason>,
    ) -> String {
        let choice = ChatChunkChoice {
            index,
            delta,
            logprobs,
            finish_reason,
        };
        self.header.chunk(vec![choice])
    }

    /// The logprobs owed to the next chunk of this choice (all pending ones, once).
    fn take_logprobs(&mut self, index: usize) -> Option<ChatLogprobs> {
        let pending = std::mem::take(&mut self.choices[index].pending_logprobs);
        (self.with_logprobs && !pending.is_empty()).then(|| chat_logprobs(pending))
    }

    fn tool_events(&mut self, index: usize, events: Vec<ToolEvent>) -> Vec<String> {
        let mut chunks = Vec::new();
        for event in events {
            let delta = match event {
                ToolEvent::Content(text) => ChatDelta {
                    content: Some(text),
                    ..ChatDelta::default()
                },
                ToolEvent::CallStart { index: call, name } => {
                    let id = chat::call_id();
                    ChatDelta {
                        tool_calls: Some(vec![ToolCallDelta {
                            index: call,
                            id: Some(id),
                            kind: Some("function"),
                            function: FunctionCallDelta {
                                name: Some(name),
                                arguments: String::new(),
                            },
                        }]),
                        ..ChatDelta::default()
                    }
                }
                ToolEvent::Arguments {
                    index: call,
                    fragment,
                } => ChatDelta {
                    tool_calls: Some(vec![ToolCallDelta {
                        index: call,
                        id: None,
                        kind: None,
                        function: FunctionCallDelta {
                            name: None,
                            arguments: fragment,
                        },
                    }]),
                    ..ChatDelta::default()
                },
            };
            let logprobs = self.take_logprobs(index);
            chunks.push(self.choice(index, delta, logprobs, None));
        }
        chunks
    }
}

impl ChunkFormat for ChatChunks {
    fn opening(&mut self, index: usize) -> Vec<SseEvent> {
        let delta = ChatDelta {
            role: Some("assistant"),
            content: Some(String::new()),
            tool_calls: None,
        };
        vec![SseEvent::data(self.choice(index, delta, None, None))]
    }

    fn text(&mut self, index: usize, text: String, logprobs: Vec<TokenLogprob>) -> Vec<SseEvent> {
        self.choices[index].pending_logprobs.extend(logprobs);
        let events = self.choices[index].text.push(text);
        SseEvent::all_data(self.tool_events(index, events))
    }

    fn finish(&mut self, index: usize, reason: FinishReason) -> Vec<SseEvent> {
        let (events, reason) = self.choices[index].text.finish(reason);
        let mut chunks = self.tool_events(index, events);
        let logprobs = self.take_logprobs(index);
        chunks.push(self.choice(index, ChatDelta::default(), logprobs, Some(reason)));
        SseEvent::all_data(chunks)
    }

    fn closing(&mut self, usage: Usage) -> Vec<SseEvent> {
        SseEvent::all_data(self.header.closing(usage))
    }
}
