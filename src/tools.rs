//! Tool calling in our own layer: tools described in the prompt, calls parsed from `<tool_call>` blocks
//! (the Hermes/Qwen format), and `required` or a named function enforced by a grammar.
//!
//! mistral.rs 0.8.1 parses tool calls only for model families it knows, and never enforces `tool_choice`.
//! Doing it here gives every model the same wire behaviour, and a grammar makes even a 135M model produce
//! a call that parses and matches the function's parameter schema.

use serde_json::{json, Value};

use crate::error::ValidationError;

pub const CALL_OPEN: &str = "<tool_call>";
pub const CALL_CLOSE: &str = "</tool_call>";
/// OpenAI's limit on tools per request.
pub const MAX_TOOLS: usize = 128;

/// A function the model may call.
#[derive(Debug, Clone, PartialEq)]
pub struct FunctionTool {
    pub name: String,
    pub description: Option<String>,
    /// JSON Schema of the arguments object.
    pub parameters: Value,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ToolChoice {
    None,
    Auto,
    Required,
    Function(String),
}

/// A request's tools after validation. `choice` is never `None` here: with `none` the tools are dropped.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolSetup {
    pub tools: Vec<FunctionTool>,
    pub choice: ToolChoice,
    pub parallel: bool,
}

fn invalid(param: &'static str, message: String) -> ValidationError {
    ValidationError::invalid(param, message)
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

fn parse_tool(index: usize, tool: &Value) -> Result<FunctionTool, ValidationError> {
    let kind = tool.get("type").and_then(Value::as_str);
    if kind != Some("function") {
        return Err(invalid(
            "tools",
            format!("`tools[{index}].type` must be `function`"),
        ));
    }
    let function = tool
        .get("function")
        .filter(|f| f.is_object())
        .ok_or_else(|| invalid("tools", format!("`tools[{index}].function` is required")))?;
    let name = function
        .get("name")
        .and_then(Value::as_str)
        .filter(|n| valid_name(n))
        .ok_or_else(|| {
            invalid(
                "tools",
                format!("`tools[{index}].function.name` must be 1–64 characters of a-z, A-Z, 0-9, _ and -"),
            )
        })?;
    let parameters = match function.get("parameters") {
        None | Some(Value::Null) => json!({"type": "object", "properties": {}}),
        Some(p) if p.is_object() => p.clone(),
        Some(_) => {
            return Err(invalid(
                "tools",
                format!("`tools[{index}].function.parameters` must be a JSON Schema object"),
            ))
        }
    };
    Ok(FunctionTool {
        name: name.to_string(),
        description: function
            .get("description")
            .and_then(Value::as_str)
            .map(str::to_string),
        parameters,
    })
}

/// Validates `tools`, `tool_choice` and `parallel_tool_calls`; `None` when no tool can be called.
pub fn setup(
    tools: Option<&[Value]>,
    choice: Option<&Value>,
    parallel: Option<bool>,
) -> Result<Option<ToolSetup>, ValidationError> {
    let tools = tools.unwrap_or_default();
    if tools.len() > MAX_TOOLS {
        return Err(invalid(
            "tools",
            format!(
                "`tools` takes at most {MAX_TOOLS} tools, got {}",
                tools.len()
            ),
        ));
    }
    let tools = tools
        .iter()
        .enumerate()
        .map(|(i, t)| parse_tool(i, t))
        .collect::<Result<Vec<_>, _>>()?;
    let choice = match choice {
        None | Some(Value::Null) => {
            if tools.is_empty() {
                ToolChoice::None
            } else {
                ToolChoice::Auto
            }
        }
        Some(Value::String(s)) => match s.as_str() {
            "none" => ToolChoice::None,
            "auto" => ToolChoice::Auto,
            "required" => ToolChoice::Required,
            other => {
                return Err(invalid(
                    "tool_choice",
                    format!(
                    "`tool_choice` must be `none`, `auto`, `required` or a function, got `{other}`"
                ),
                ))
            }
        },
        Some(object) => {
            let name = object
                .get("function")
                .and_then(|f| f.get("name"))
                .and_then(Value::as_str)
                .filter(|_| object.get("type").and_then(Value::as_str) == Some("function"))
                .ok_or_else(|| {
                    invalid(
                        "tool_choice",
                        "`tool_choice` as an object must be `{\"type\": \"function\", \"function\": {\"name\": …}}`".into(),
                    )
                })?;
            ToolChoice::Function(name.to_string())
        }
    };
    match &choice {
        ToolChoice::None => return Ok(None),
        _ if tools.is_empty() => {
            return Err(invalid("tool_choice", "`tool_choice` needs `tools`".into()))
        }
        ToolChoice::Function(name) if !tools.iter().any(|t| &t.name == name) => {
            return Err(invalid(
                "tool_choice",
                format!("`tool_choice` names `{name}`, which is not in `tools`"),
            ))
        }
        _ => {}
    }
    Ok(Some(ToolSetup {
        tools,
        choice,
        parallel: parallel.unwrap_or(true),
    }))
}

impl ToolSetup {
    /// The system-prompt text that tells the model its tools and the call format.
    pub fn instructions(&self) -> String {
        let mut text = String::from(
            "# Tools\n\nYou may call one or more functions to assist with the user query.\n\n\
             You are provided with function signatures within <tools></tools> XML tags:\n<tools>",
        );
        for tool in &self.tools {
            let mut function = json!({"name": tool.name, "parameters": tool.parameters});
            if let Some(description) = &tool.description {
                function["description"] = json!(description);
            }
            text.push('\n');
            text.push_str(&json!({"type": "function", "function": function}).to_string());
        }
        text.push_str(
            "\n</tools>\n\nFor each function call, return a json object with function name and arguments \
             within <tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": <function-name>, \
             \"arguments\": <args-json-object>}\n</tool_call>",
        );
        text
    }

    /// A Lark grammar (llguidance's dialect) that admits only one well-formed call, for `required` and a
    /// named function; `None` for `auto`.
    pub fn grammar(&self) -> Option<String> {
        let tools: Vec<&FunctionTool> = match &self.choice {
            ToolChoice::None | ToolChoice::Auto => return None,
            ToolChoice::Required => self.tools.iter().collect(),
            ToolChoice::Function(name) => self.tools.iter().filter(|t| &t.name == name).collect(),
        };
        // Exactly one call: a grammar that admits more leaves stopping to the model, and a small model
        // repeats its call until `max_tokens` (measured with SmolLM2-135M). Several calls in one answer come
        // from `auto`, when the model writes them.
        let mut grammar = format!(
            "start: call_block\ncall_block: {} call {}\ncall: {}\n",
            lark_literal(&format!("{CALL_OPEN}\n")),
            lark_literal(&format!("\n{CALL_CLOSE}")),
            (0..tools.len())
                .map(|i| format!("call_{i}"))
                .collect::<Vec<_>>()
                .join(" | ")
        );
        for (i, tool) in tools.iter().enumerate() {
            let head = format!("{{\"name\": {}, \"arguments\": ", json!(tool.name));
            grammar.push_str(&format!(
                "call_{i}: {} args_{i} \"}}\"\nargs_{i}: %json {}\n",
                lark_literal(&head),
                tool.parameters
            ));
        }
        Some(grammar)
    }
}

/// A Lark string literal: llguidance reads it as a JSON string.
fn lark_literal(text: &str) -> String {
    Value::String(text.to_string()).to_string()
}

/// An assistant turn's earlier calls, written back in the format the model produces them.
pub fn render_calls(calls: &[Value]) -> Result<String, String> {
    let mut text = String::new();
    for (i, call) in calls.iter().enumerate() {
        let function = call
            .get("function")
            .ok_or_else(|| format!("tool_calls[{i}].function is required"))?;
        let name = function
            .get("name")
            .and_then(Value::as_str)
            .ok_or_else(|| format!("tool_calls[{i}].function.name is required"))?;
        let arguments = match function.get("arguments") {
            Some(Value::String(s)) => serde_json::from_str(s).unwrap_or(Value::String(s.clone())),
            Some(other) => other.clone(),
            None => json!({}),
        };
        if !text.is_empty() {
            text.push('\n');
        }
        text.push_str(&format!(
            "{CALL_OPEN}\n{{\"name\": {}, \"arguments\": {arguments}}}\n{CALL_CLOSE}",
            json!(name)
        ));
    }
    Ok(text)
}

/// What the parser finds in the generated text, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum ToolEvent {
    Content(String),
    /// A call begins: its index among this answer's calls and the function's name.
    CallStart {
        index: usize,
        name: String,
    },
    /// More of a call's arguments text.
    Arguments {
        index: usize,
        fragment: String,
    },
}

#[derive(Debug)]
enum State {
    Outside,
    /// Inside `<tool_call>`: `args_at` is where the arguments start once the name is known.
    Inside {
        args_at: Option<usize>,
        sent: usize,
    },
}

/// Splits generated text into content and tool calls as it streams. Argument fragments are sent as they
/// arrive, except a trailing `}` and whitespace, which may close the call's wrapper object instead.
#[derive(Debug)]
pub struct ToolCallParser {
    state: State,
    buffer: String,
    calls: usize,
}

impl Default for ToolCallParser {
    fn default() -> Self {
        ToolCallParser {
            state: State::Outside,
            buffer: String::new(),
            calls: 0,
        }
    }
}

/// Where the arguments start in `{"name": "f", "arguments": …`, and the name; `None` until both are seen.
fn call_head(body: &str) -> Option<(String, usize)> {
    let mut rest = body.trim_start().strip_prefix('{')?.trim_start();
    rest = rest.strip_prefix("\"name\"")?.trim_start();
    rest = rest.strip_prefix(':')?.trim_start();
    let name_body = rest.strip_prefix('"')?;
    let end = name_body.find('"')?;
    let name = name_body[..end].to_string();
    rest = name_body[end + 1..].trim_start();
    rest = rest.strip_prefix(',')?.trim_start();
    rest = rest.strip_prefix("\"arguments\"")?.trim_start();
    rest = rest.strip_prefix(':')?;
    let rest_trimmed = rest.trim_start();
    if rest_trimmed.is_empty() {
        return None;
    }
    Some((name, body.len() - rest_trimmed.len()))
}

/// The arguments text of a finished call body: everything up to the wrapper's closing `}`.
fn final_arguments(region: &str) -> &str {
    match region.rfind('}') {
        Some(end) => region[..end].trim_end(),
        None => region.trim_end(),
    }
}

impl ToolCallParser {
    pub fn calls(&self) -> usize {
        self.calls
    }

    pub fn push(&mut self, text: &str) -> Vec<ToolEvent> {
        self.buffer.push_str(text);
        let mut events = Vec::new();
        loop {
            match &mut self.state {
                State::Outside => {
                    if let Some(at) = self.buffer.find(CALL_OPEN) {
                        let content = self.buffer[..at].to_string();
                        if !content.trim().is_empty() || (self.calls == 0 && !content.is_empty()) {
                            events.push(ToolEvent::Content(content));
                        }
                        self.buffer.drain(..at + CALL_OPEN.len());
                        self.state = State::Inside {
                            args_at: None,
                            sent: 0,
                        };
                        continue;
                    }
                    let keep = partial_suffix(&self.buffer, CALL_OPEN);
                    let emit: String = self.buffer.drain(..self.buffer.len() - keep).collect();
                    // Whitespace between calls is not content.
                    if !emit.is_empty() && (self.calls == 0 || !emit.trim().is_empty()) {
                        events.push(ToolEvent::Content(emit));
                    }
                    return events;
                }
                State::Inside { args_at, sent } => {
                    let index = self.calls;
                    if args_at.is_none() {
                        if let Some((name, at)) = call_head(&self.buffer) {
                            *args_at = Some(at);
                            events.push(ToolEvent::CallStart { index, name });
                        }
                    }
                    if let Some(close) = self.buffer.find(CALL_CLOSE) {
                        let body = self.buffer[..close].to_string();
                        events.extend(finish_call(index, &body, *args_at, *sent));
                        self.calls += 1;
                        self.buffer.drain(..close + CALL_CLOSE.len());
                        self.state = State::Outside;
                        continue;
                    }
                    if let Some(at) = *args_at {
                        let region = &self.buffer[at..];
                        let safe = match region.rfind('}') {
                            Some(end) => region[..end].trim_end().len(),
                            None => region.trim_end().len(),
                        };
                        // Never cut inside a held-back `</tool_call>` prefix.
                        let safe = safe.min(region.len() - partial_suffix(region, CALL_CLOSE));
                        if safe > *sent {
                            events.push(ToolEvent::Arguments {
                                index,
                                fragment: region[*sent..safe].to_string(),
                            });
                            *sent = safe;
                        }
                    }
                    return events;
                }
            }
        }
    }

    /// The end of the text: held content is released; an unclosed call is finished as far as it got.
    pub fn finish(&mut self) -> Vec<ToolEvent> {
        let rest = std::mem::take(&mut self.buffer);
        match std::mem::replace(&mut self.state, State::Outside) {
            State::Outside if rest.is_empty() => Vec::new(),
            State::Outside => vec![ToolEvent::Content(rest)],
            State::Inside {
                args_at: Some(at),
                sent,
            } => {
                let index = self.calls;
                self.calls += 1;
                let region = &rest[at..];
                let arguments = final_arguments(region);
                if arguments.len() > sent {
                    vec![ToolEvent::Arguments {
                        index,
                        fragment: arguments[sent..].to_string(),
                    }]
                } else {
                    Vec::new()
                }
            }
            // Cut off before the call's name: what there is stays text.
            State::Inside { args_at: None, .. } => {
                vec![ToolEvent::Content(format!("{CALL_OPEN}{rest}"))]
            }
        }
    }
}

/// A call whose `</tool_call>` arrived: the rest of its arguments, or (when its head never parsed as
/// name-then-arguments) the whole call from its JSON.
fn finish_call(index: usize, body: &str, args_at: Option<usize>, sent: usize) -> Vec<ToolEvent> {
    if let Some(at) = args_at {
        let arguments = final_arguments(&body[at..]);
        return if arguments.len() > sent {
            vec![ToolEvent::Arguments {
                index,
                fragment: arguments[sent..].to_string(),
            }]
        } else {
            Vec::new()
        };
    }
    let parsed: Option<(String, String)> = serde_json::from_str::<Value>(body.trim())
        .ok()
        .and_then(|call| {
            let name = call.get("name")?.as_str()?.to_string();
            let arguments = match call.get("arguments") {
                Some(Value::String(s)) => s.clone(),
                Some(other) => other.to_string(),
                None => "{}".to_string(),
            };
            Some((name, arguments))
        });
    match parsed {
        Some((name, arguments)) => vec![
            ToolEvent::CallStart { index, name },
            ToolEvent::Arguments {
                index,
                fragment: arguments,
            },
        ],
        // Not a call after all: the text stays content.
        None => vec![ToolEvent::Content(format!("{CALL_OPEN}{body}{CALL_CLOSE}"))],
    }
}

/// Length of the longest suffix of `text` that is a proper prefix of `tag`.
fn partial_suffix(text: &str, tag: &str) -> usize {
    (1..tag.len().min(text.len() + 1))
        .rev()
        .find(|&n| {
            text.is_char_boundary(text.len() - n) && tag.starts_with(&text[text.len() - n..])
        })
        .unwrap_or(0)
}

/// A whole answer split at once: content (if any) and the calls as (name, arguments).
pub fn parse_complete(text: &str) -> (Option<String>, Vec<(String, String)>) {
    let mut parser = ToolCallParser::default();
    let mut events = parser.push(text);
    events.extend(parser.finish());
    let mut content = String::new();
    let mut calls: Vec<(String, String)> = Vec::new();
    for event in events {
        match event {
            ToolEvent::Content(text) => content.push_str(&text),
            ToolEvent::CallStart { name, .. } => calls.push((name, String::new())),
            ToolEvent::Arguments { fragment, .. } => {
                if let Some(call) = calls.last_mut() {
                    call.1.push_str(&fragment);
                }
            }
        }
    }
    let content = if calls.is_empty() || !content.trim().is_empty() {
        Some(content)
    } else {
        None
    };
    (content, calls)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn streamed(pieces: &[&str]) -> (String, Vec<(String, String)>, usize) {
        let mut parser = ToolCallParser::default();
        let mut events = Vec::new();
        for piece in pieces {
            events.extend(parser.push(piece));
        }
        events.extend(parser.finish());
        let mut content = String::new();
        let mut calls: Vec<(String, String)> = Vec::new();
        let mut fragments = 0;
        for event in events {
            match event {
                ToolEvent::Content(t) => content.push_str(&t),
                ToolEvent::CallStart { index, name } => {
                    assert_eq!(index, calls.len());
                    calls.push((name, String::new()));
                }
                ToolEvent::Arguments { index, fragment } => {
                    fragments += 1;
                    calls[index].1.push_str(&fragment);
                }
            }
        }
        (content, calls, fragments)
    }

    #[test]
    fn calls_stream_name_first_then_argument_fragments() {
        let text = "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\", \"days\": {\"n\": 2}}}\n</tool_call>";
        let pieces: Vec<String> = text.chars().map(String::from).collect();
        let pieces: Vec<&str> = pieces.iter().map(String::as_str).collect();
        let (content, calls, fragments) = streamed(&pieces);
        assert_eq!(content, "");
        assert_eq!(
            calls,
            vec![(
                "get_weather".to_string(),
                "{\"city\": \"Paris\", \"days\": {\"n\": 2}}".to_string()
            )]
        );
        assert!(fragments > 5, "arguments arrive in pieces: {fragments}");
        assert_eq!(
            streamed(&[text]).1,
            calls,
            "one piece or many, the same call"
        );
    }

    #[test]
    fn content_around_calls_and_several_calls() {
        let text = "Let me check.<tool_call>\n{\"name\": \"a\", \"arguments\": {}}\n</tool_call>\n<tool_call>{\"arguments\": {\"x\": 1}, \"name\": \"b\"}</tool_call>";
        let (content, calls, _) = streamed(&[text]);
        assert_eq!(content, "Let me check.");
        assert_eq!(
            calls,
            vec![("a".into(), "{}".into()), ("b".into(), "{\"x\":1}".into())]
        );
        let (content, calls) = parse_complete("no calls <tool_ here");
        assert_eq!(content.as_deref(), Some("no calls <tool_ here"));
        assert!(calls.is_empty());
    }

    #[test]
    fn a_call_cut_off_before_its_name_stays_text() {
        let (content, calls, _) = streamed(&["<tool_call>\n{\"na"]);
        assert_eq!(content, "<tool_call>\n{\"na");
        assert!(calls.is_empty());
    }

    #[test]
    fn setup_validates_choices_and_the_grammar_names_each_tool() {
        let tools = vec![
            json!({"type": "function", "function": {"name": "get_weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}),
        ];
        assert!(setup(Some(&tools), Some(&json!("none")), None)
            .unwrap()
            .is_none());
        let required = setup(Some(&tools), Some(&json!("required")), None)
            .unwrap()
            .unwrap();
        let grammar = required.grammar().unwrap();
        assert!(grammar.contains("args_0: %json {"), "{grammar}");
        assert!(grammar.contains("\"required\":[\"city\"]"), "{grammar}");
        assert!(grammar.starts_with("start: call_block\n"), "{grammar}");
        let auto = setup(Some(&tools), None, None).unwrap().unwrap();
        assert_eq!(auto.choice, ToolChoice::Auto);
        assert!(auto.grammar().is_none());
        assert!(auto.instructions().contains("\"name\":\"get_weather\""));
        let named = json!({"type": "function", "function": {"name": "nope"}});
        assert!(setup(Some(&tools), Some(&named), None).is_err());
        assert!(setup(None, Some(&json!("required")), None).is_err());
        assert!(setup(
            Some(&[json!({"type": "function", "function": {"name": "bad name"}})]),
            None,
            None
        )
        .is_err());
    }

    #[test]
    fn earlier_calls_render_in_the_call_format() {
        let calls = vec![json!({"id": "call_1", "type": "function",
            "function": {"name": "f", "arguments": "{\"a\": 1}"}})];
        let text = render_calls(&calls).unwrap();
        assert_eq!(
            parse_complete(&text).1,
            vec![("f".into(), "{\"a\":1}".into())]
        );
    }
}
