//! A scripted engine for tests of the layers above the engine (HTTP, gRPC, the generation core): it
//! counts every prompt as `prompt_tokens`, replays `script` after `delay`, and records what it was asked.
//! Behaviour that depends on a model is tested with the real engine (tests/integration).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;

use crate::engine::{
    Engine, EngineError, EngineEvent, GenerationRequest, ModelInfo, OutputConstraint, Prompt,
    Submitted,
};

/// An engine that counts every prompt as `prompt_tokens`, replays `script`, and records what it was asked.
pub struct ScriptedEngine {
    pub info: ModelInfo,
    pub prompt_tokens: usize,
    pub script: Vec<Result<EngineEvent, EngineError>>,
    pub delay: Duration,
    /// Every request submitted, in order.
    pub requests: Mutex<Vec<GenerationRequest>>,
    /// Prompts tokenized (counted), in all: what a refusal before tokenizing must leave unchanged.
    pub tokenized: std::sync::atomic::AtomicUsize,
    /// Refuse every submission with this reason (as the real engine refuses an image that does not
    /// decode), after the request got its slot.
    pub refuse_submission: Option<String>,
}

#[async_trait]
impl Engine for ScriptedEngine {
    fn info(&self) -> &ModelInfo {
        &self.info
    }
    async fn tokenize(&self, _: &Prompt) -> Result<Vec<u32>, EngineError> {
        self.tokenized
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok((0..self.prompt_tokens as u32).collect())
    }
    fn detokenize(&self, tokens: &[u32]) -> Result<String, EngineError> {
        Ok(tokens.iter().map(|t| format!("<{t}>")).collect())
    }
    fn check_constraint(&self, _: &OutputConstraint) -> Result<(), EngineError> {
        Ok(())
    }
    async fn generate(&self, request: GenerationRequest) -> Result<Submitted, EngineError> {
        if let Some(reason) = &self.refuse_submission {
            return Err(EngineError::Rejected(reason.clone()));
        }
        self.requests.lock().unwrap().push(request);
        let (script, delay) = (self.script.clone(), self.delay);
        Ok(Submitted {
            events: Box::pin(async_stream::stream! {
                tokio::time::sleep(delay).await;
                for event in script {
                    yield event;
                }
            }),
            held: Box::new(|| false),
        })
    }
    fn sequences_alive(&self) -> usize {
        0
    }
}

pub fn text(t: &str) -> Result<EngineEvent, EngineError> {
    Ok(EngineEvent::Text {
        text: t.into(),
        tokens: 1,
        logprobs: Vec::new(),
    })
}

pub fn engine_with_images(script: Vec<Result<EngineEvent, EngineError>>) -> Arc<ScriptedEngine> {
    let engine = engine(5, script, Duration::ZERO);
    let mut engine = Arc::try_unwrap(engine).ok().expect("not shared yet");
    engine.info.accepts_images = true;
    Arc::new(engine)
}

pub fn engine(
    prompt_tokens: usize,
    script: Vec<Result<EngineEvent, EngineError>>,
    delay: Duration,
) -> Arc<ScriptedEngine> {
    Arc::new(ScriptedEngine {
        info: ModelInfo {
            context_length: 64,
            accepts_images: false,
            chat_template: true,
            max_images: 8,
            vocab_size: 100,
            fill_in_middle: None,
            embedding_dimensions: None,
            max_token_bytes: 16,
        },
        prompt_tokens,
        script,
        delay,
        requests: Mutex::new(Vec::new()),
        tokenized: Default::default(),
        refuse_submission: None,
    })
}
