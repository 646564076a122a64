//! Tools in the prompt: the request's `tools` and `tool_choice` checked, the instructions that describe
//! them, earlier calls rendered in the call format, and the grammar for `required` or a named function.

use serde_json::{json, Value};

use super::parser::{CALL_CLOSE, CALL_OPEN};
use crate::error::ValidationError;

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
    let description = match function.get("description") {
        None | Some(Value::Null) => None,
        Some(Value::String(text)) => Some(text.clone()),
        Some(_) => {
            return Err(invalid(
                "tools",
                format!("`tools[{index}].function.description` must be a string"),
            ))
        }
    };
    // `strict` asks for the arguments to follow `parameters` exactly, which a forced call's grammar does
    // anyway; any other type is a mistake worth saying.
    if !matches!(
        function.get("strict"),
        None | Some(Value::Null | Value::Bool(_))
    ) {
        return Err(invalid(
            "tools",
            format!("`tools[{index}].function.strict` must be a boolean"),
        ));
    }
    Ok(FunctionTool {
        name: name.to_string(),
        description,
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
                arguments_schema(&tool.parameters)
            ));
        }
        Some(grammar)
    }
}

/// The schema a forced call's arguments are generated under: the tool's `parameters` with every object
/// that leaves `additionalProperties` unset closed (JSON Schema's default would let the model add keys
/// forever, and a small model does: LangChain's `bind_tools` and most hand-written schemas leave it
/// unset), and written compactly on one line (`x-guidance`: no free whitespace, `", "` and `": "` as the
/// prompt's example writes them). Either way the call ends and parses, for any model.
pub fn arguments_schema(parameters: &Value) -> Value {
    let mut schema = match parameters {
        Value::Object(map) if !map.is_empty() => parameters.clone(),
        // No parameters: an empty object.
        _ => json!({"type": "object", "properties": {}}),
    };
    close_objects(&mut schema);
    if let Value::Object(map) = &mut schema {
        map.insert(
            "x-guidance".into(),
            json!({"whitespace_flexible": false, "item_separator": ", ", "key_separator": ": "}),
        );
    }
    schema
}

/// Sets `additionalProperties: false` on every object schema that does not state it, following the
/// keywords whose values are schemas (not, say, `properties`' names or `enum` values).
fn close_objects(schema: &mut Value) {
    let Value::Object(map) = schema else {
        return;
    };
    let is_object = map.get("type") == Some(&json!("object"))
        || map.contains_key("properties")
        || map.contains_key("required");
    if is_object && !map.contains_key("additionalProperties") {
        map.insert("additionalProperties".into(), json!(false));
    }
    for (keyword, value) in map.iter_mut() {
        match keyword.as_str() {
            "properties" | "patternProperties" | "$defs" | "definitions" | "dependentSchemas" => {
                if let Value::Object(children) = value {
                    children.values_mut().for_each(close_objects);
                }
            }
            "items"
            | "additionalProperties"
            | "not"
            | "contains"
            | "propertyNames"
            | "if"
            | "then"
            | "else"
            | "unevaluatedProperties"
            | "unevaluatedItems" => close_objects(value),
            "anyOf" | "oneOf" | "allOf" | "prefixItems" => {
                if let Value::Array(children) = value {
                    children.iter_mut().for_each(close_objects);
                }
            }
            _ => {}
        }
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
        if !matches!(call.get("type"), None | Some(Value::Null)) && call["type"] != "function" {
            return Err(format!("tool_calls[{i}].type must be `function`"));
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tools::parse_complete;

    #[test]
    fn forced_arguments_are_closed_objects_written_compactly() {
        let schema = arguments_schema(&json!({
            "type": "object",
            "properties": {
                "city": {"type": "string"},
                "where": {"type": "object", "properties": {"lat": {"type": "number"}}},
                "tags": {"type": "array", "items": {"properties": {"name": {"type": "string"}}}},
                "properties": {"type": "string", "enum": [{"properties": {}}]},
                "open": {"type": "object", "additionalProperties": true},
            },
            "anyOf": [{"type": "object", "required": ["city"]}],
        }));
        assert_eq!(schema["additionalProperties"], false);
        assert_eq!(schema["properties"]["where"]["additionalProperties"], false);
        assert_eq!(
            schema["properties"]["tags"]["items"]["additionalProperties"],
            false
        );
        assert_eq!(schema["anyOf"][0]["additionalProperties"], false);
        // What the schema states stands; property names and values are not schemas.
        assert_eq!(schema["properties"]["open"]["additionalProperties"], true);
        assert!(schema["properties"]["properties"]
            .get("additionalProperties")
            .is_none());
        assert_eq!(
            schema["properties"]["properties"]["enum"][0],
            json!({"properties": {}})
        );
        assert_eq!(schema["x-guidance"]["whitespace_flexible"], false);
        assert_eq!(arguments_schema(&json!({}))["additionalProperties"], false);
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
        assert!(
            grammar.contains("\"additionalProperties\":false"),
            "{grammar}"
        );
        assert!(
            grammar.contains("\"whitespace_flexible\":false"),
            "{grammar}"
        );
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
