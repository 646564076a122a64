//! The wire requests the generation service takes, each checked alone and then against its model: chat
//! (the Responses API arrives translated into one) and text completions. A new kind of request is one
//! more implementation of [`WireRequest`] here; the service's steps stay the same.

use crate::api::chat::ChatCompletionRequest;
use crate::api::completions::CompletionRequest;
use crate::engine::Prompt;
use crate::error::ApiError;
use crate::generation::completion;
use crate::models::Routed;
use crate::validate::{self, ValidatedChat, ValidatedCompletion, ValidatedGeneration};

/// A request checked against its model: the generation, its engine prompts, and what the answer's
/// formatter needs besides.
pub struct ForModel<S> {
    pub generation: ValidatedGeneration,
    pub prompts: Vec<Prompt>,
    pub shape: S,
}

/// A wire request the generation service takes.
pub trait WireRequest: Send + Sized {
    /// The request checked alone (defaults applied, bounds checked).
    type Valid: Send;
    /// What the answer's formatter needs besides the generation.
    type Shape: Send;
    /// The model it asks for (`None`: the default).
    fn model(&self) -> Option<&str>;
    /// The end user it names, for sticky routing.
    fn caller_identity(&self) -> Option<&str>;
    /// The request, when its images may be fetched from `http(s)` URLs (chat).
    fn with_remote_images(&mut self) -> Option<&mut ChatCompletionRequest> {
        None
    }
    fn validate(self) -> Result<Self::Valid, ApiError>;
    /// The checks that need the model (its bounds, what it accepts), and its prompts.
    fn for_model(valid: Self::Valid, model: &Routed) -> Result<ForModel<Self::Shape>, ApiError>;
}

/// A chat answer's shape: whether its text is split into content and tool calls.
#[derive(Debug, Clone, Copy)]
pub struct ChatShape {
    pub parse_tools: bool,
}

impl WireRequest for ChatCompletionRequest {
    type Valid = ValidatedChat;
    type Shape = ChatShape;

    fn model(&self) -> Option<&str> {
        self.model.as_deref()
    }

    fn caller_identity(&self) -> Option<&str> {
        ChatCompletionRequest::caller_identity(self)
    }

    fn with_remote_images(&mut self) -> Option<&mut ChatCompletionRequest> {
        Some(self)
    }

    fn validate(self) -> Result<ValidatedChat, ApiError> {
        Ok(validate::chat(self)?)
    }

    fn for_model(chat: ValidatedChat, model: &Routed) -> Result<ForModel<ChatShape>, ApiError> {
        let info = model.engine.info();
        validate::model::check(&chat.generation, chat.image_count(), &model.name, info)?;
        validate::model::check_messages(&model.name, info)?;
        Ok(ForModel {
            shape: ChatShape {
                parse_tools: chat.tools.is_some(),
            },
            prompts: vec![Prompt::Chat(chat.messages)],
            generation: chat.generation,
        })
    }
}

/// A completions answer's shape: the prompts as sent (for echo and choice counts), and whether they are
/// echoed.
#[derive(Debug, Clone)]
pub struct CompletionShape {
    pub prompts: Vec<String>,
    pub echo: bool,
}

impl WireRequest for CompletionRequest {
    type Valid = ValidatedCompletion;
    type Shape = CompletionShape;

    fn model(&self) -> Option<&str> {
        self.model.as_deref()
    }

    fn caller_identity(&self) -> Option<&str> {
        CompletionRequest::caller_identity(self)
    }

    fn validate(self) -> Result<ValidatedCompletion, ApiError> {
        Ok(validate::completion(self)?)
    }

    fn for_model(
        completion: ValidatedCompletion,
        model: &Routed,
    ) -> Result<ForModel<CompletionShape>, ApiError> {
        let info = model.engine.info();
        validate::model::check(&completion.generation, 0, &model.name, info)?;
        let suffix = completion.suffix.as_deref();
        let prompts = completion::prompts(&completion.prompts, suffix, &model.name, info)?;
        Ok(ForModel {
            generation: completion.generation,
            prompts,
            shape: CompletionShape {
                prompts: completion.prompts,
                echo: completion.echo,
            },
        })
    }
}
