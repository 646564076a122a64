//! A Responses request → the chat request that serves it: `input` items become chat messages (after the
//! stored conversation it continues), function tools and `tool_choice` take the chat shapes, `text.format`
//! becomes `response_format`. Everything the chat path cannot take is refused here, naming the Responses
//! field, before any of it is looked at twice.

use serde_json::{json, Map, Value};

use super::ResponsesError;
use crate::api::chat::ChatCompletionRequest;
use crate::api::responses::CreateResponseRequest;
use crate::error::{ApiError, ValidationError};

/// The chat request of a Responses request, and the conversation it carries (the earlier turns and this
/// input as chat messages, without `instructions`): stored with the output, it is where a continuing
/// response starts.
#[derive(Debug)]
pub struct ChatInput {
    pub request: ChatCompletionRequest,
    pub conversation: Vec<Value>,
}

/// Built-in OpenAI tools, refused by name.
const BUILT_IN_TOOLS: &[&str] = &[
    "web_search",
    "web_search_preview",
    "web_search_preview_2025_03_11",
    "file_search",
    "computer_use_preview",
    "computer_use",
    "code_interpreter",
    "image_generation",
    "mcp",
    "local_shell",
    "shell",
    "apply_patch",
];

/// `previous`: the stored conversation this request continues (empty when it starts one).
pub fn to_chat(
    request: &CreateResponseRequest,
    previous: &[Value],
) -> Result<ChatInput, ResponsesError> {
    refuse_unserved(request)?;
    let mut conversation = previous.to_vec();
    conversation.extend(input_messages(&request.input)?);
    let mut messages = Vec::with_capacity(conversation.len() + 1);
    if let Some(instructions) = request.instructions.as_ref().filter(|i| !i.is_empty()) {
        messages.push(json!({"role": "system", "content": instructions}));
    }
    messages.extend(conversation.iter().cloned());

    let mut chat = Map::new();
    chat.insert("messages".into(), Value::Array(messages));
    let mut copy = |name: &str, value: Option<Value>| {
        if let Some(value) = value {
            chat.insert(name.to_string(), value);
        }
    };
    copy("model", request.model.clone().map(Value::from));
    copy("max_tokens", request.max_output_tokens.map(Value::from));
    copy("temperature", request.temperature.map(Value::from));
    copy("top_p", request.top_p.map(Value::from));
    copy("stream", request.stream.map(Value::from));
    copy(
        "parallel_tool_calls",
        request.parallel_tool_calls.map(Value::from),
    );
    copy(
        "safety_identifier",
        request.safety_identifier.clone().map(Value::from),
    );
    copy("user", request.user.clone().map(Value::from));
    copy("tools", tools(request.tools.as_deref())?);
    copy("tool_choice", tool_choice(request.tool_choice.as_ref())?);
    let format = request.text.as_ref().and_then(|t| t.format.as_ref());
    copy("response_format", response_format(format)?);
    let request = serde_json::from_value(Value::Object(chat))
        .map_err(|e| ResponsesError::invalid("input", format!("invalid input: {e}")))?;
    Ok(ChatInput {
        request,
        conversation,
    })
}

fn refuse_unserved(request: &CreateResponseRequest) -> Result<(), ResponsesError> {
    if request.background == Some(true) {
        return Err(ResponsesError::unsupported(
            "background",
            "`background: true` is not supported: a response runs while its request is open (stream it to see progress)",
        ));
    }
    if request.conversation.as_ref().is_some_and(|c| !c.is_null()) {
        return Err(ResponsesError::unsupported(
            "conversation",
            "conversation objects are not supported: continue a conversation with `previous_response_id`",
        ));
    }
    if request.prompt.as_ref().is_some_and(|p| !p.is_null()) {
        return Err(ResponsesError::unsupported(
            "prompt",
            "stored prompt templates are not supported: send `instructions` and `input`",
        ));
    }
    Ok(())
}

/// `input` as chat messages: a string is one user message; a list is items in order.
fn input_messages(input: &Value) -> Result<Vec<Value>, ResponsesError> {
    let items = match input {
        Value::String(text) => return Ok(vec![json!({"role": "user", "content": text})]),
        Value::Array(items) => items,
        _ => {
            return Err(ResponsesError::invalid(
                "input",
                "`input` must be a string or a list of items",
            ))
        }
    };
    let mut messages: Vec<Value> = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let at = format!("input[{i}]");
        let Some(item) = item.as_object() else {
            return Err(ResponsesError::invalid(
                at,
                "each input item must be an object",
            ));
        };
        let kind = match item.get("type") {
            Some(Value::String(kind)) => kind.as_str(),
            None if item.contains_key("role") => "message",
            _ => {
                return Err(ResponsesError::invalid(
                    format!("{at}.type"),
                    "an input item needs a `type` (or a `role` for a message)",
                ))
            }
        };
        match kind {
            "message" => messages.push(message(item, &at)?),
            "function_call" => {
                let call = json!({
                    "id": string_field(item, "call_id", &at)?,
                    "type": "function",
                    "function": {
                        "name": string_field(item, "name", &at)?,
                        "arguments": string_field(item, "arguments", &at)?,
                    },
                });
                // Calls of one turn (and the text before them) are one assistant message, as the model
                // wrote them.
                match messages.last_mut() {
                    Some(last) if last["role"] == "assistant" => {
                        let calls = last
                            .as_object_mut()
                            .expect("messages are objects")
                            .entry("tool_calls")
                            .or_insert_with(|| json!([]));
                        calls.as_array_mut().expect("tool_calls is a list").push(call);
                    }
                    _ => messages.push(json!({"role": "assistant", "content": null, "tool_calls": [call]})),
                }
            }
            "function_call_output" => {
                let output = match item.get("output") {
                    Some(Value::String(text)) => text.clone(),
                    Some(Value::Array(parts)) => text_of_parts(parts, &format!("{at}.output"))?,
                    _ => {
                        return Err(ResponsesError::invalid(
                            format!("{at}.output"),
                            "`output` must be a string or a list of `input_text` parts",
                        ))
                    }
                };
                messages.push(json!({
                    "role": "tool",
                    "tool_call_id": string_field(item, "call_id", &at)?,
                    "content": output,
                }));
            }
            // A reasoning model's summary, sent back by agent frameworks: nothing of it reaches a prompt.
            "reasoning" => {}
            "item_reference" => {
                return Err(ResponsesError::unsupported(
                    format!("{at}.type"),
                    "`item_reference` items are not supported: send the item itself, or continue with `previous_response_id`",
                ))
            }
            other => {
                return Err(ResponsesError::unsupported(
                    format!("{at}.type"),
                    format!("input items of type `{other}` are not supported (messages, `function_call` and `function_call_output` are)"),
                ))
            }
        }
    }
    if messages.is_empty() {
        return Err(ResponsesError::invalid(
            "input",
            "`input` must contain at least one message",
        ));
    }
    Ok(messages)
}

fn string_field(item: &Map<String, Value>, name: &str, at: &str) -> Result<String, ResponsesError> {
    match item.get(name) {
        Some(Value::String(value)) => Ok(value.clone()),
        _ => Err(ResponsesError::invalid(
            format!("{at}.{name}"),
            format!("`{name}` must be a string"),
        )),
    }
}

/// A message item: its role, and its content as text or chat parts.
fn message(item: &Map<String, Value>, at: &str) -> Result<Value, ResponsesError> {
    let role = string_field(item, "role", at)?;
    if !["user", "system", "developer", "assistant"].contains(&role.as_str()) {
        return Err(ResponsesError::invalid(
            format!("{at}.role"),
            format!("`role` must be `user`, `system`, `developer` or `assistant`, got `{role}`"),
        ));
    }
    let content = match item.get("content") {
        Some(Value::String(text)) => Value::String(text.clone()),
        // An assistant turn is text (`output_text` parts); a user turn may hold images.
        Some(Value::Array(parts)) if role == "assistant" => {
            Value::String(text_of_parts(parts, &format!("{at}.content"))?)
        }
        Some(Value::Array(parts)) => {
            let parts = parts
                .iter()
                .enumerate()
                .map(|(j, part)| content_part(part, &format!("{at}.content[{j}]")))
                .collect::<Result<Vec<_>, _>>()?;
            Value::Array(parts)
        }
        _ => {
            return Err(ResponsesError::invalid(
                format!("{at}.content"),
                "`content` must be a string or a list of content parts",
            ))
        }
    };
    Ok(json!({"role": role, "content": content}))
}

/// A user or system part in the chat shape.
fn content_part(part: &Value, at: &str) -> Result<Value, ResponsesError> {
    let kind = part.get("type").and_then(Value::as_str).unwrap_or("");
    match kind {
        "input_text" | "output_text" | "text" => {
            let text = part.get("text").and_then(Value::as_str).ok_or_else(|| {
                ResponsesError::invalid(format!("{at}.text"), "`text` must be a string")
            })?;
            Ok(json!({"type": "text", "text": text}))
        }
        "input_image" => {
            if part.get("file_id").is_some_and(|f| !f.is_null()) {
                return Err(ResponsesError::unsupported(
                    format!("{at}.file_id"),
                    "images by `file_id` are not supported: send `image_url` (a data URL)",
                ));
            }
            let url = part.get("image_url").and_then(Value::as_str).ok_or_else(|| {
                ResponsesError::invalid(
                    format!("{at}.image_url"),
                    "`image_url` must be a URL string (a data URL, or http(s) where the server fetches them)",
                )
            })?;
            let mut image_url = json!({"url": url});
            if let Some(detail) = part.get("detail").filter(|d| !d.is_null()) {
                image_url["detail"] = detail.clone();
            }
            Ok(json!({"type": "image_url", "image_url": image_url}))
        }
        "input_file" | "input_audio" => Err(ResponsesError::unsupported(
            format!("{at}.type"),
            format!("`{kind}` parts are not supported (text and images are)"),
        )),
        _ => Err(ResponsesError::invalid(
            format!("{at}.type"),
            format!(
                "unknown content part type `{kind}` (`input_text`, `input_image` or `output_text`)"
            ),
        )),
    }
}

/// The text of parts that may only be text (an assistant turn, a function's output), joined.
fn text_of_parts(parts: &[Value], at: &str) -> Result<String, ResponsesError> {
    let mut text = String::new();
    for (j, part) in parts.iter().enumerate() {
        // A refusal carries its words in `refusal`.
        let field =
            match part.get("type").and_then(Value::as_str) {
                Some("input_text" | "output_text" | "text") => "text",
                Some("refusal") => "refusal",
                _ => return Err(ResponsesError::invalid(
                    format!("{at}[{j}].type"),
                    "only text parts (`input_text`, `output_text`, `refusal`) are accepted here",
                )),
            };
        let words = part.get(field).and_then(Value::as_str).ok_or_else(|| {
            ResponsesError::invalid(
                format!("{at}[{j}].{field}"),
                format!("`{field}` must be a string"),
            )
        })?;
        text.push_str(words);
    }
    Ok(text)
}

/// Function tools in the chat shape; built-in tools refused by name.
fn tools(tools: Option<&[Value]>) -> Result<Option<Value>, ResponsesError> {
    let Some(tools) = tools else {
        return Ok(None);
    };
    let mut chat = Vec::with_capacity(tools.len());
    for (i, tool) in tools.iter().enumerate() {
        let kind = tool.get("type").and_then(Value::as_str).unwrap_or("");
        if kind != "function" {
            let message = if BUILT_IN_TOOLS.contains(&kind) {
                format!("the built-in tool `{kind}` is not supported: only `function` tools are")
            } else {
                format!("unknown tool type `{kind}`: only `function` tools are supported")
            };
            return Err(ResponsesError::unsupported(
                format!("tools[{i}].type"),
                message,
            ));
        }
        let mut function = Map::new();
        for field in ["name", "description", "parameters", "strict"] {
            if let Some(value) = tool.get(field).filter(|v| !v.is_null()) {
                function.insert(field.to_string(), value.clone());
            }
        }
        chat.push(json!({"type": "function", "function": function}));
    }
    Ok(Some(Value::Array(chat)))
}

/// `{"type": "function", "name"}` → the chat shape; the string choices pass as they are.
fn tool_choice(choice: Option<&Value>) -> Result<Option<Value>, ResponsesError> {
    let Some(choice) = choice.filter(|c| !c.is_null()) else {
        return Ok(None);
    };
    if choice.is_string() {
        return Ok(Some(choice.clone()));
    }
    match choice.get("type").and_then(Value::as_str) {
        Some("function") => {
            let name = choice.get("name").and_then(Value::as_str).ok_or_else(|| {
                ResponsesError::invalid("tool_choice.name", "a function `tool_choice` needs a `name`")
            })?;
            Ok(Some(json!({"type": "function", "function": {"name": name}})))
        }
        Some(other) => Err(ResponsesError::unsupported(
            "tool_choice.type",
            format!("`tool_choice` of type `{other}` is not supported (`none`, `auto`, `required` or a function)"),
        )),
        None => Err(ResponsesError::invalid(
            "tool_choice",
            "`tool_choice` must be `none`, `auto`, `required` or `{\"type\": \"function\", \"name\": …}`",
        )),
    }
}

/// `text.format` → `response_format`.
fn response_format(format: Option<&Value>) -> Result<Option<Value>, ResponsesError> {
    let Some(format) = format.filter(|f| !f.is_null()) else {
        return Ok(None);
    };
    match format.get("type").and_then(Value::as_str) {
        Some("text") => Ok(None),
        Some("json_object") => Ok(Some(json!({"type": "json_object"}))),
        Some("json_schema") => {
            let mut schema = Map::new();
            for field in ["name", "schema", "strict", "description"] {
                if let Some(value) = format.get(field).filter(|v| !v.is_null()) {
                    schema.insert(field.to_string(), value.clone());
                }
            }
            Ok(Some(json!({"type": "json_schema", "json_schema": schema})))
        }
        _ => Err(ResponsesError::invalid(
            "text.format.type",
            "`text.format.type` must be `text`, `json_object` or `json_schema`",
        )),
    }
}

/// The chat path's errors named by the Responses fields they came from.
pub fn in_responses_terms(error: ApiError) -> ApiError {
    let rename = |param: &'static str| match param {
        "messages" => "input",
        "max_tokens" => "max_output_tokens",
        "response_format" => "text.format",
        other => other,
    };
    match error {
        ApiError::Validation(ValidationError::Invalid { param, message }) => {
            ApiError::Validation(ValidationError::Invalid {
                param: rename(param),
                message,
            })
        }
        ApiError::Validation(ValidationError::Unsupported { param, message }) => {
            ApiError::Validation(ValidationError::Unsupported {
                param: rename(param),
                message,
            })
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(body: Value) -> CreateResponseRequest {
        serde_json::from_value(body).unwrap()
    }

    #[test]
    fn items_become_chat_messages_after_the_stored_conversation() {
        let previous = vec![json!({"role": "user", "content": "Earlier."})];
        let input = to_chat(
            &request(json!({
                "instructions": "Be brief.",
                "input": [
                    {"role": "user", "content": [
                        {"type": "input_text", "text": "Weather?"},
                        {"type": "input_image", "image_url": "data:image/png;base64,AAAA", "detail": "low"},
                    ]},
                    {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Checking."}]},
                    {"type": "function_call", "call_id": "call_1", "name": "get_weather", "arguments": "{\"city\":\"Paris\"}"},
                    {"type": "function_call_output", "call_id": "call_1", "output": "sunny"},
                    {"type": "reasoning", "summary": []},
                ],
                "max_output_tokens": 20,
                "text": {"format": {"type": "json_schema", "name": "x", "schema": {"type": "object"}}},
            })),
            &previous,
        )
        .unwrap();
        let messages = &input.request.messages;
        assert_eq!(
            messages.len(),
            5,
            "instructions first, then the stored turn and three more"
        );
        assert_eq!(messages[0].role, "system");
        assert_eq!(messages[1].role, "user");
        assert_eq!(messages[3].role, "assistant");
        assert_eq!(
            messages[3].tool_calls.as_ref().unwrap()[0]["function"]["name"],
            "get_weather"
        );
        assert_eq!(messages[4].role, "tool");
        assert_eq!(messages[4].tool_call_id.as_deref(), Some("call_1"));
        assert_eq!(input.request.max_tokens, Some(20));
        assert_eq!(
            input.request.response_format.as_ref().unwrap()["json_schema"]["name"],
            "x"
        );
        assert_eq!(
            input.conversation.len(),
            4,
            "no instructions in what is stored"
        );
    }

    #[test]
    fn what_is_not_served_is_refused_naming_its_field() {
        let refused = |body: Value| to_chat(&request(body), &[]).unwrap_err();
        let cases = [
            (
                json!({"input": "x", "tools": [{"type": "web_search"}]}),
                "tools[0].type",
            ),
            (json!({"input": "x", "background": true}), "background"),
            (
                json!({"input": "x", "conversation": "conv_1"}),
                "conversation",
            ),
            (
                json!({"input": [{"type": "item_reference", "id": "msg_1"}]}),
                "input[0].type",
            ),
            (
                json!({"input": [{"role": "user", "content": [{"type": "input_file", "file_id": "f"}]}]}),
                "input[0].content[0].type",
            ),
            (
                json!({"input": [{"role": "robot", "content": "x"}]}),
                "input[0].role",
            ),
            (json!({"input": 3}), "input"),
            (json!({"input": []}), "input"),
            (
                json!({"input": "x", "text": {"format": {"type": "yaml"}}}),
                "text.format.type",
            ),
        ];
        for (body, param) in cases {
            match refused(body.clone()) {
                ResponsesError::Invalid { param: p, .. }
                | ResponsesError::Unsupported { param: p, .. } => {
                    assert_eq!(p, param, "{body}")
                }
                other => panic!("{body}: {other:?}"),
            }
        }
    }

    #[test]
    fn function_tools_and_choices_take_the_chat_shape() {
        let input = to_chat(
            &request(json!({
                "input": "x",
                "tools": [{"type": "function", "name": "f", "parameters": {"type": "object"}, "strict": true}],
                "tool_choice": {"type": "function", "name": "f"},
            })),
            &[],
        )
        .unwrap();
        assert_eq!(
            input.request.tools.as_ref().unwrap()[0]["function"]["name"],
            "f"
        );
        assert_eq!(
            input.request.tool_choice.as_ref().unwrap()["function"]["name"],
            "f"
        );
    }
}
