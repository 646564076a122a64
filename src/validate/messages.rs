//! One wire chat message → a prompt message: its role, its text and image parts, an assistant's tool calls
//! rendered into its content.

use super::images::image_part;
use crate::api::chat::{ChatMessage, MessageContent};
use crate::engine::{PromptMessage, Role};
use crate::error::ValidationError;
use crate::tools;

pub(super) fn message(
    index: usize,
    message: ChatMessage,
) -> Result<PromptMessage, ValidationError> {
    let role = match message.role.as_str() {
        "system" | "developer" => Role::System,
        "user" => Role::User,
        "assistant" => Role::Assistant,
        "tool" => Role::Tool,
        other => {
            return Err(ValidationError::invalid(
                "messages",
                format!(
                    "`messages[{index}].role` must be one of system, developer, user, assistant, tool; got `{other}`"
                ),
            ))
        }
    };
    let mut images = Vec::new();
    let content = match message.content {
        Some(MessageContent::Text(text)) => Some(text),
        Some(MessageContent::Parts(parts)) => {
            let mut text = String::new();
            for (part_index, part) in parts.into_iter().enumerate() {
                match part.kind.as_str() {
                    "text" => match &part.text {
                        Some(t) => text.push_str(t),
                        None => {
                            return Err(ValidationError::invalid(
                                "messages",
                                format!("`messages[{index}].content[{part_index}]` has type `text` but no `text`"),
                            ))
                        }
                    },
                    "image_url" if role == Role::User => {
                        images.push(image_part(index, part_index, &part)?);
                    }
                    "image_url" => {
                        return Err(ValidationError::invalid(
                            "messages",
                            format!("`messages[{index}]`: only user messages may carry images"),
                        ))
                    }
                    other => {
                        return Err(ValidationError::invalid(
                            "messages",
                            format!(
                                "`messages[{index}].content[{part_index}].type` must be `text` or `image_url`, got `{other}`"
                            ),
                        ))
                    }
                }
            }
            Some(text)
        }
        None => None,
    };
    let calls = message.tool_calls.filter(|c| !c.is_empty());
    let content = match (role, content, calls) {
        (Role::Assistant, content, Some(calls)) => {
            let rendered = tools::render_calls(&calls).map_err(|e| {
                ValidationError::invalid("messages", format!("`messages[{index}].{e}`"))
            })?;
            match content.filter(|c| !c.is_empty()) {
                Some(text) => format!("{text}\n{rendered}"),
                None => rendered,
            }
        }
        (_, Some(_), Some(_)) | (_, None, Some(_)) => {
            return Err(ValidationError::invalid(
                "messages",
                format!("`messages[{index}].tool_calls` is only allowed on assistant messages"),
            ))
        }
        (_, Some(content), None) => content,
        // An assistant turn that only carried tool calls has no content.
        (Role::Assistant, None, None) => String::new(),
        (_, None, None) => {
            return Err(ValidationError::invalid(
                "messages",
                format!(
                    "`messages[{index}].content` is required for role `{}`",
                    message.role
                ),
            ))
        }
    };
    Ok(PromptMessage {
        role,
        content,
        images,
    })
}
