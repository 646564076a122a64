//! Chat's `response_format` → the output constraint that serves it (`text` is none, `json_object` and
//! `json_schema` a JSON Schema).

use serde_json::{json, Value};

use crate::engine::OutputConstraint;
use crate::error::ValidationError;

/// `response_format` → a constraint; `text` (or nothing) is none.
pub(super) fn response_format(
    format: Option<&Value>,
) -> Result<Option<OutputConstraint>, ValidationError> {
    let Some(format) = format.filter(|f| !f.is_null()) else {
        return Ok(None);
    };
    match format.get("type").and_then(Value::as_str) {
        Some("text") => Ok(None),
        Some("json_object") => Ok(Some(OutputConstraint::JsonSchema(
            json!({"type": "object"}),
        ))),
        Some("json_schema") => {
            let spec = format
                .get("json_schema")
                .filter(|s| s.is_object())
                .ok_or_else(|| {
                    ValidationError::invalid(
                        "response_format",
                        "`response_format.json_schema` is required with type `json_schema`",
                    )
                })?;
            if spec.get("name").and_then(Value::as_str).is_none() {
                return Err(ValidationError::invalid(
                    "response_format",
                    "`response_format.json_schema.name` is required",
                ));
            }
            if !matches!(
                spec.get("strict"),
                None | Some(Value::Null | Value::Bool(_))
            ) {
                return Err(ValidationError::invalid(
                    "response_format",
                    "`response_format.json_schema.strict` must be a boolean",
                ));
            }
            if !matches!(
                spec.get("description"),
                None | Some(Value::Null | Value::String(_))
            ) {
                return Err(ValidationError::invalid(
                    "response_format",
                    "`response_format.json_schema.description` must be a string",
                ));
            }
            match spec.get("schema") {
                // No schema: any JSON value.
                None | Some(Value::Null) => Ok(Some(OutputConstraint::JsonSchema(json!({})))),
                Some(schema) if schema.is_object() || schema.is_boolean() => {
                    Ok(Some(OutputConstraint::JsonSchema(schema.clone())))
                }
                Some(_) => Err(ValidationError::invalid(
                    "response_format",
                    "`response_format.json_schema.schema` must be a JSON Schema object",
                )),
            }
        }
        other => Err(ValidationError::invalid(
            "response_format",
            format!(
                "`response_format.type` must be `text`, `json_object` or `json_schema`, got {}",
                other.map_or("nothing".to_string(), |t| format!("`{t}`"))
            ),
        )),
    }
}
