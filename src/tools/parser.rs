//! Tool calls found in generated text, as it streams or whole: `<tool_call>` blocks become call events
//! (name first, then argument fragments); everything else stays content.
//!
//! A block the model got wrong never reaches the client as markup: a call that is JSON only short of its
//! closing quotes and brackets (a model that stopped early, or forgot the wrapper's `}`) is repaired into
//! a call; anything else inside the tags is returned as content with the tags removed.

use serde_json::Value;

/// The tags around a call, as Hermes/Qwen-style templates write them.
pub const CALL_OPEN: &str = "<tool_call>";
pub const CALL_CLOSE: &str = "</tool_call>";

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

/// Where the first JSON value in `region` ends, once it is complete.
fn first_value_end(region: &str) -> Option<usize> {
    let mut values = serde_json::Deserializer::from_str(region).into_iter::<Value>();
    match values.next() {
        Some(Ok(_)) => Some(values.byte_offset()),
        _ => None,
    }
}

/// The arguments text of a finished call body: the first JSON value in it, closed if the model stopped
/// short of its end; else everything up to the wrapper's closing `}`, as written.
fn final_arguments(region: &str) -> String {
    if let Some(end) = first_value_end(region) {
        return region[..end].to_string();
    }
    if let Some(closed) = close_json(region) {
        return closed;
    }
    match region.rfind('}') {
        Some(end) => region[..end].trim_end().to_string(),
        None => region.trim_end().to_string(),
    }
}

/// `text` completed into JSON when all it lacks are its closing quote and brackets (and a value after
/// a dangling `:` or a trailing `,`), as a model that stopped early leaves it; `None` when that does
/// not make it parse.
pub(crate) fn close_json(text: &str) -> Option<String> {
    let text = text.trim();
    let (mut in_string, mut escaped) = (false, false);
    let mut closers = Vec::new();
    for c in text.chars() {
        if in_string {
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match c {
            '"' => in_string = true,
            '{' => closers.push('}'),
            '[' => closers.push(']'),
            '}' | ']' if closers.pop() != Some(c) => return None,
            _ => {}
        }
    }
    let mut closed = text.to_string();
    if in_string {
        if escaped {
            closed.pop();
        }
        closed.push('"');
    }
    let trimmed = closed.trim_end();
    let mut closed = trimmed.strip_suffix(',').unwrap_or(trimmed).to_string();
    if closed.ends_with(':') {
        closed.push_str(" null");
    }
    closed.extend(closers.iter().rev());
    serde_json::from_str::<Value>(&closed).ok().map(|_| closed)
}

/// A call written as one JSON object `{"name": …, "arguments"|"parameters": …}` (in either order, in a
/// Markdown code fence or not, closed if the model stopped short): its name and arguments text.
fn whole_call(body: &str) -> Option<(String, String)> {
    let body = body.trim();
    let body = body
        .strip_prefix("```json")
        .or_else(|| body.strip_prefix("```"))
        .map(|b| b.trim_end().trim_end_matches("```"))
        .unwrap_or(body);
    let call: Value = serde_json::from_str(body.trim())
        .ok()
        .or_else(|| serde_json::from_str(&close_json(body)?).ok())?;
    let name = call.get("name")?.as_str()?.to_string();
    let arguments = match call.get("arguments").or_else(|| call.get("parameters")) {
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
        None => "{}".to_string(),
    };
    Some((name, arguments))
}

/// What is left of a block that is not a call: its text, without the tags.
fn unwrapped(body: &str) -> Vec<ToolEvent> {
    let text = body.trim();
    if text.is_empty() {
        Vec::new()
    } else {
        vec![ToolEvent::Content(text.to_string())]
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
                        let (finished, is_call) = finish_call(index, &body, *args_at, *sent);
                        events.extend(finished);
                        self.calls += usize::from(is_call);
                        self.buffer.drain(..close + CALL_CLOSE.len());
                        self.state = State::Outside;
                        continue;
                    }
                    if let Some(at) = *args_at {
                        let region = &self.buffer[at..];
                        // A held-back `</tool_call>` prefix is not the arguments' text: it is set
                        // aside before the trailing whitespace is, so that whitespace before the tag
                        // is held (and dropped at the tag) as it is when the text arrives whole.
                        let region = &region[..region.len() - partial_suffix(region, CALL_CLOSE)];
                        // Once the arguments' JSON value is complete, it is all there will be
                        // (`final_arguments`): nothing after it is ever sent as arguments.
                        let safe = match first_value_end(region) {
                            Some(end) => end,
                            None => match region.rfind('}') {
                                Some(end) => region[..end].trim_end().len(),
                                None => region.trim_end().len(),
                            },
                        };
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

    /// The end of the text: held content is released; an unclosed call is finished as far as it got
    /// (repaired when it can be, else its text without the tag).
    pub fn finish(&mut self) -> Vec<ToolEvent> {
        let rest = std::mem::take(&mut self.buffer);
        match std::mem::replace(&mut self.state, State::Outside) {
            State::Outside if rest.is_empty() => Vec::new(),
            State::Outside => vec![ToolEvent::Content(rest)],
            State::Inside { args_at, sent } => {
                let (events, is_call) = finish_call(self.calls, &rest, args_at, sent);
                self.calls += usize::from(is_call);
                events
            }
        }
    }
}

/// A call at its end (`</tool_call>` or the end of the text): the rest of its arguments, or (when its
/// head never parsed as name-then-arguments) the whole call from its JSON; and whether it was a call.
fn finish_call(
    index: usize,
    body: &str,
    args_at: Option<usize>,
    sent: usize,
) -> (Vec<ToolEvent>, bool) {
    if let Some(at) = args_at {
        let arguments = final_arguments(&body[at..]);
        let rest = arguments.get(sent..).filter(|rest| !rest.is_empty());
        let events = rest
            .map(|fragment| ToolEvent::Arguments {
                index,
                fragment: fragment.to_string(),
            })
            .into_iter()
            .collect();
        return (events, true);
    }
    match whole_call(body) {
        Some((name, arguments)) => (
            vec![
                ToolEvent::CallStart { index, name },
                ToolEvent::Arguments {
                    index,
                    fragment: arguments,
                },
            ],
            true,
        ),
        // Not a call after all: its text is content, without the markup.
        None => (unwrapped(body), false),
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

    /// Fault 5 of issue 19: no malformed block reaches the client as markup.
    #[test]
    fn a_block_that_is_not_a_call_is_content_without_its_tags() {
        for text in [
            "<tool_call>\n{\"na",
            "<tool_call>get_weather(city=Paris)</tool_call>",
            "<tool_call>\n{\"city\": \"Paris\"}\n</tool_call>",
        ] {
            for pieces in [
                vec![text.to_string()],
                text.chars().map(String::from).collect(),
            ] {
                let pieces: Vec<&str> = pieces.iter().map(String::as_str).collect();
                let (content, calls, _) = streamed(&pieces);
                assert!(calls.is_empty(), "{text}: {calls:?}");
                assert!(!content.contains("tool_call"), "{text}: {content}");
                assert!(!content.is_empty(), "{text}: the model's words stay");
            }
        }
        let (content, calls) = parse_complete("Sure.<tool_call>\n</tool_call>");
        assert_eq!((content.as_deref(), calls.len()), (Some("Sure."), 0));
    }

    #[test]
    fn a_call_short_of_its_closing_brackets_is_repaired() {
        let cases = [
            // The wrapper's `}` forgotten, then the closing tag.
            ("<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}\n</tool_call>", "{\"city\": \"Paris\"}"),
            // Stopped mid-string, no closing tag.
            ("<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Par", "{\"city\": \"Par\"}"),
            // Stopped after a key.
            ("<tool_call>{\"name\": \"f\", \"arguments\": {\"a\": [1, 2], \"b\":", "{\"a\": [1, 2], \"b\": null}"),
            // Arguments first, wrapper unclosed.
            ("<tool_call>{\"arguments\": {\"x\": 1}, \"name\": \"get_weather\"", "{\"x\":1}"),
            // In a code fence, with `parameters`.
            ("<tool_call>```json\n{\"name\": \"get_weather\", \"parameters\": {\"x\": 1}}\n```</tool_call>", "{\"x\":1}"),
        ];
        for (text, arguments) in cases {
            let whole = streamed(&[text]);
            let pieces: Vec<String> = text.chars().map(String::from).collect();
            let pieces: Vec<&str> = pieces.iter().map(String::as_str).collect();
            let by_char = streamed(&pieces);
            for (content, calls, _) in [whole, by_char] {
                assert_eq!(content, "", "{text}");
                assert_eq!(calls.len(), 1, "{text}");
                assert_eq!(calls[0].1, arguments, "{text}");
                serde_json::from_str::<Value>(&calls[0].1).expect("arguments parse");
            }
        }
    }

    /// Found by the fuzz target: whitespace before a closing tag that arrives a character at a time
    /// was streamed as arguments, which the same text arriving whole does not have.
    #[test]
    fn whitespace_before_the_closing_tag_is_held_whichever_way_the_text_arrives() {
        let text = "<tool_call>{\"name\":\"f\",\"arguments\":123```json\n</tool_call>";
        let pieces: Vec<String> = text.chars().map(String::from).collect();
        let pieces: Vec<&str> = pieces.iter().map(String::as_str).collect();
        assert_eq!(streamed(&pieces).1, streamed(&[text]).1);
    }

    #[test]
    fn close_json_only_closes() {
        assert_eq!(
            close_json("{\"a\": \"x\\").as_deref(),
            Some("{\"a\": \"x\"}")
        );
        assert_eq!(close_json("[1, 2,").as_deref(), Some("[1, 2]"));
        assert_eq!(close_json("{\"a\": 1]"), None);
        assert_eq!(close_json("get_weather(city)"), None);
    }
}
