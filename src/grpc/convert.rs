//! gRPC messages → the HTTP API's wire requests, so that both fronts share one validation (same bounds,
//! same messages, same defaults) and the same generation path.

use serde_json::{json, Map, Value};

use crate::api::chat::ChatCompletionRequest;
use crate::api::completions::CompletionRequest;
use crate::error::{ApiError, RequestError};
use crate::grpc::proto;

fn sampling_fields(sampling: Option<&proto::SamplingParams>) -> Map<String, Value> {
    let mut fields = Map::new();
    let Some(s) = sampling else {
        return fields;
    };
    let mut put = |key: &str, value: Option<Value>| {
        if let Some(value) = value {
            fields.insert(key.to_string(), value);
        }
    };
    put("max_tokens", s.max_tokens.map(Value::from));
    put("temperature", s.temperature.map(|v| json!(v)));
    put("top_p", s.top_p.map(|v| json!(v)));
    put("top_k", s.top_k.map(Value::from));
    put("min_p", s.min_p.map(|v| json!(v)));
    put("presence_penalty", s.presence_penalty.map(|v| json!(v)));
    put("frequency_penalty", s.frequency_penalty.map(|v| json!(v)));
    put("repetition_penalty", s.repetition_penalty.map(|v| json!(v)));
    put("seed", s.seed.map(Value::from));
    if !s.stop.is_empty() {
        fields.insert("stop".into(), json!(s.stop));
    }
    fields
}

/// Deserializes like an HTTP body, so that a value out of a field's type is a 400 naming it.
fn wire<T: serde::de::DeserializeOwned>(body: Value) -> Result<T, ApiError> {
    serde_path_to_error::deserialize(body).map_err(|e| {
        let param = e.path().to_string();
        ApiError::from(RequestError::InvalidField {
            message: e.inner().to_string(),
            param: (param != ".").then_some(param),
        })
    })
}

fn model_field(model: &str) -> Value {
    if model.is_empty() {
        Value::Null
    } else {
        Value::from(model)
    }
}

pub fn completion(request: &proto::GenerateRequest) -> Result<CompletionRequest, ApiError> {
    let mut body = sampling_fields(request.sampling.as_ref());
    body.insert("model".into(), model_field(&request.model));
    body.insert("prompt".into(), Value::from(request.prompt.clone()));
    if !request.user.is_empty() {
        body.insert("user".into(), Value::from(request.user.clone()));
    }
    wire(Value::Object(body))
}

fn message(m: &proto::ChatMessage) -> Value {
    let mut message = json!({"role": m.role, "content": m.content});
    if !m.tool_calls.is_empty() {
        message["tool_calls"] = m
            .tool_calls
            .iter()
            .map(|c| {
                json!({"id": c.id, "type": "function",
                       "function": {"name": c.name, "arguments": c.arguments}})
            })
            .collect();
    }
    if !m.tool_call_id.is_empty() {
        message["tool_call_id"] = Value::from(m.tool_call_id.clone());
    }
    message
}

fn tool(t: &proto::Tool) -> Result<Value, ApiError> {
    let mut function = json!({"name": t.name});
    if !t.description.is_empty() {
        function["description"] = Value::from(t.description.clone());
    }
    if !t.parameters_json.is_empty() {
        let parameters: Value =
            serde_json::from_str(&t.parameters_json).map_err(|e| RequestError::InvalidField {
                message: format!("`parameters_json` of tool `{}` is not JSON: {e}", t.name),
                param: Some("tools".into()),
            })?;
        function["parameters"] = parameters;
    }
    Ok(json!({"type": "function", "function": function}))
}

pub fn chat(request: &proto::ChatRequest) -> Result<ChatCompletionRequest, ApiError> {
    let mut body = sampling_fields(request.sampling.as_ref());
    body.insert("model".into(), model_field(&request.model));
    body.insert(
        "messages".into(),
        request.messages.iter().map(message).collect(),
    );
    if !request.user.is_empty() {
        body.insert("user".into(), Value::from(request.user.clone()));
    }
    if !request.tools.is_empty() {
        let tools = request.tools.iter().map(tool).collect::<Result<_, _>>()?;
        body.insert("tools".into(), Value::Array(tools));
    }
    let choice = match request.tool_choice.as_str() {
        "" => None,
        mode @ ("auto" | "none" | "required") => Some(Value::from(mode)),
        name => Some(json!({"type": "function", "function": {"name": name}})),
    };
    if let Some(choice) = choice {
        body.insert("tool_choice".into(), choice);
    }
    wire(Value::Object(body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_reach_the_wire_request_and_type_errors_name_the_field() {
        let request = proto::GenerateRequest {
            model: String::new(),
            prompt: "Hi".into(),
            sampling: Some(proto::SamplingParams {
                max_tokens: Some(5),
                temperature: Some(0.0),
                stop: vec!["\n".into()],
                seed: Some(7),
                ..Default::default()
            }),
            user: "caller-1".into(),
        };
        let wire = completion(&request).unwrap();
        assert_eq!(wire.model, None);
        assert_eq!(wire.caller_identity(), Some("caller-1"));
        assert_eq!(wire.max_tokens, Some(5));
        assert_eq!(wire.temperature, Some(0.0));
        assert_eq!(wire.seed, Some(7));

        let too_big = proto::GenerateRequest {
            sampling: Some(proto::SamplingParams {
                seed: Some(u64::MAX),
                ..Default::default()
            }),
            ..request
        };
        let error = completion(&too_big).unwrap_err();
        assert!(
            matches!(
                error,
                ApiError::Request(RequestError::InvalidField { ref param, .. }) if param.as_deref() == Some("seed")
            ),
            "{error:?}"
        );
    }

    #[test]
    fn chat_tools_and_choice_become_the_openai_shapes() {
        let request = proto::ChatRequest {
            messages: vec![proto::ChatMessage {
                role: "user".into(),
                content: "Weather in Paris?".into(),
                ..Default::default()
            }],
            tools: vec![proto::Tool {
                name: "get_weather".into(),
                description: String::new(),
                parameters_json: r#"{"type":"object","properties":{"city":{"type":"string"}}}"#
                    .into(),
            }],
            tool_choice: "get_weather".into(),
            ..Default::default()
        };
        let wire = chat(&request).unwrap();
        let tools = wire.tools.unwrap();
        assert_eq!(tools[0]["function"]["parameters"]["type"], "object");
        assert_eq!(wire.tool_choice.unwrap()["function"]["name"], "get_weather");

        let broken = proto::ChatRequest {
            tools: vec![proto::Tool {
                name: "f".into(),
                parameters_json: "{".into(),
                ..Default::default()
            }],
            ..request
        };
        assert!(chat(&broken).is_err());
    }
}
