//! The mistral.rs 0.8.1 engine: the `Engine` trait over mistral.rs ([`load`] loads a model, [`request`]
//! and [`events`] translate our requests and its responses).
//!
//! The only module that imports `mistralrs`. Rules of mistral.rs 0.8.1 that shape it (each found the hard
//! way; the tests of this module and `tests/integration/disconnect.rs` hold them):
//! every generation is submitted as streaming (a dropped non-streaming receiver panics the engine thread),
//! tokenization runs detached (the engine `expect`s its answer to be received), response channels are large
//! (a full channel stalls every sequence of the engine).

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use either::Either;
use indexmap::IndexMap;
use mistralrs::core::{MultimodalPromptPrefixer, RequestMessage, TokenizationRequest};
use mistralrs::{LlguidanceGrammar, MessageContent, Model, NormalRequest, Request, Response};
use tokio::sync::mpsc;

use super::sampler::{PickerSettings, TokenPicker};
use super::vocab::Vocabulary;
use super::{
    Engine, EngineError, GenerationRequest, KvCacheState, ModelInfo, OutputConstraint, Prompt,
    StepCounts, Submitted,
};

pub mod cpu_kernels;
mod embed;
mod events;
mod load;
pub mod pixel_images;
pub mod prefix_cache;
mod request;

pub use embed::{is_embedding_dir, MistralEmbedder};
pub use load::LoadTarget;

use events::{event_stream, ChunkPicks};
use pixel_images::PixelSizedImages;
use request::{chat_messages, constraint, decode_images, sampling_params, PickerProcessor};

/// Steps of one path a constraint is walked when checked (`check_constraint`).
const CONSTRAINT_CHECK_STEPS: usize = 4;

/// llguidance's grammar compiler for this model's tokenizer.
type GrammarFactory = Arc<mistralrs::llguidance::ParserFactory>;

/// Buffer of each request's response channel: the engine awaits a full channel, stalling every sequence.
const RESPONSE_CHANNEL_CAPACITY: usize = 10_000;
/// Context length assumed when a model does not report one.
const FALLBACK_CONTEXT_LENGTH: usize = 4096;

/// The [`Engine`] on mistral.rs: one loaded model (its pipeline, scheduler and engine thread), with what
/// llmserve needs beside it (its vocabulary for token picking and grammars, the image prefixer of a vision
/// model). Made by `MistralEngine::load` (`load.rs`); the only type outside this module that stands for
/// mistral.rs.
pub struct MistralEngine {
    model: Model,
    info: ModelInfo,
    vocabulary: Arc<Vocabulary>,
    grammars: Option<GrammarFactory>,
    unlisted_ends: Vec<String>,
    /// Set for multimodal models: writes a message's image placeholders the way the model expects them.
    prefixer: Option<Arc<dyn MultimodalPromptPrefixer>>,
    /// Set for models that size images by pixel count (GLM-4.1V): image token counts and `--max-image-pixels`.
    pixel_images: Option<PixelSizedImages>,
    /// One weak handle per submitted sequence: alive while the engine still holds the sequence's sender.
    submitted: Mutex<Vec<mpsc::WeakSender<Response>>>,
}

impl MistralEngine {
    fn sender(&self) -> Result<mpsc::Sender<Request>, EngineError> {
        self.model
            .inner()
            .get_sender(None)
            .map_err(|e| EngineError::Unavailable(e.to_string()))
    }
}

/// The engine's own tokenization of `text` (with special tokens; with the generation prompt when asked).
/// Detached, so that a client going away mid-call cannot drop the receiver the engine answers into.
pub(super) async fn tokenize_on(
    sender: mpsc::Sender<Request>,
    text: Either<Vec<IndexMap<String, MessageContent>>, String>,
    add_generation_prompt: bool,
) -> Result<Vec<u32>, EngineError> {
    let (tx, mut rx) = mpsc::channel(1);
    let request = Request::Tokenize(TokenizationRequest {
        text,
        tools: None,
        add_generation_prompt,
        add_special_tokens: true,
        enable_thinking: None,
        reasoning_effort: None,
        response: tx,
    });
    let task = tokio::spawn(async move {
        sender
            .send(request)
            .await
            .map_err(|_| EngineError::Unavailable("engine request channel closed".into()))?;
        match rx.recv().await {
            Some(Ok(tokens)) => Ok(tokens),
            Some(Err(e)) => Err(EngineError::Rejected(format!("{e:#}"))),
            None => Err(EngineError::Unavailable(
                "engine dropped a tokenization request".into(),
            )),
        }
    });
    task.await
        .map_err(|e| EngineError::Internal(format!("tokenization task failed: {e}")))?
}

#[async_trait]
impl Engine for MistralEngine {
    fn info(&self) -> &ModelInfo {
        &self.info
    }

    async fn tokenize(&self, prompt: &Prompt) -> Result<Vec<u32>, EngineError> {
        // The same flags the engine uses when it adds a chat or completion request.
        let text = chat_messages(prompt, self.prefixer.as_deref());
        let tokens = tokenize_on(self.sender()?, text, true).await?;
        // The engine expands each image placeholder into the image's tokens: count what it will run.
        match &self.pixel_images {
            Some(images) => images.expand(tokens, prompt),
            None => Ok(tokens),
        }
    }

    fn detokenize(&self, tokens: &[u32]) -> Result<String, EngineError> {
        self.vocabulary.decode(tokens)
    }

    fn check_constraint(&self, wanted: &OutputConstraint) -> Result<(), EngineError> {
        let factory = self.grammars.as_ref().ok_or_else(|| {
            EngineError::Rejected("this model has no grammar support for constrained output".into())
        })?;
        let grammar = match wanted {
            OutputConstraint::JsonSchema(schema) => {
                LlguidanceGrammar::from_json_schema(schema.clone())
            }
            OutputConstraint::Lark(lark) => LlguidanceGrammar::from_lark(lark.clone()),
        };
        let mut parser = factory
            .create_parser(grammar)
            .map_err(|e| EngineError::Rejected(format!("invalid constraint: {e}")))?;
        // The first masks build the parser's first rows: a grammar too large for the parser's limits
        // (too many items in a row, too much lexer work) fails here, as the client's mistake, rather
        // than in the engine once the request runs. A few steps along one path are walked, since a
        // grammar often fans out only after its opening token (`anyOf` of many objects after `{`);
        // one that outgrows the limits later still fails as the constraint's (`ConstraintFailed`).
        // The parser's own message, without the state dump it appends.
        let too_large = |e: anyhow::Error| {
            let message = e.to_string();
            let first_line = message.lines().next().unwrap_or_default().to_string();
            EngineError::Rejected(format!(
                "the constraint is too large for constrained decoding: {first_line}"
            ))
        };
        parser.start_without_prompt();
        for _ in 0..CONSTRAINT_CHECK_STEPS {
            let mask = parser.compute_mask().map_err(too_large)?;
            let Some(token) = mask.first_bit_set() else {
                break;
            };
            // A token the mask allows fails only when the grammar outgrows the parser's limits.
            parser.consume_token(token as u32).map_err(too_large)?;
            if parser.stopped() {
                break;
            }
        }
        Ok(())
    }

    async fn generate(&self, request: GenerationRequest) -> Result<Submitted, EngineError> {
        let mut images = decode_images(&request.prompt).await?;
        if let Some(sizing) = &self.pixel_images {
            let sizing = sizing.clone();
            images = tokio::task::spawn_blocking(move || {
                images
                    .into_iter()
                    .map(|i| sizing.fit(i))
                    .collect::<Result<Vec<_>, _>>()
            })
            .await
            .map_err(|e| EngineError::Internal(format!("image resizing failed: {e}")))??;
        }
        // The routes refuse images for a model that does not accept them; this keeps an image from ever
        // being dropped silently.
        if !images.is_empty() && self.prefixer.is_none() {
            return Err(EngineError::Rejected(
                "this model does not accept images".into(),
            ));
        }
        let sender = self.sender()?;
        let (tx, rx) = mpsc::channel(RESPONSE_CHANNEL_CAPACITY);
        let weak = tx.downgrade();
        let messages = match chat_messages(&request.prompt, self.prefixer.as_deref()) {
            Either::Left(messages) if !images.is_empty() => RequestMessage::MultimodalChat {
                images,
                audios: Vec::new(),
                videos: Vec::new(),
                messages,
                enable_thinking: None,
                reasoning_effort: None,
            },
            Either::Left(messages) => RequestMessage::Chat {
                messages,
                enable_thinking: None,
                reasoning_effort: None,
            },
            Either::Right(text) => RequestMessage::Completion {
                text,
                echo_prompt: false,
                best_of: None,
            },
        };
        let is_completion = matches!(request.prompt, Prompt::Text(_));
        let constrained = request.constraint.is_some();
        let picker = Arc::new(TokenPicker::new(PickerSettings {
            sampling: request.sampling.clone(),
            logit_bias: request.logit_bias.clone(),
            seed: request.seed,
            top_logprobs: request.logprobs,
        }));
        let picks = ChunkPicks::new(picker.clone(), self.vocabulary.clone(), request.logprobs);
        let normal = NormalRequest {
            messages,
            sampling_params: sampling_params(&request, &self.unlisted_ends),
            response: tx,
            return_logprobs: false,
            is_streaming: true,
            id: 0,
            constraint: constraint(request.constraint.as_ref()),
            suffix: None,
            tools: None,
            tool_choice: None,
            logits_processors: Some(vec![Arc::new(PickerProcessor(picker))]),
            return_raw_logits: false,
            web_search_options: None,
            model_id: None,
            truncate_sequence: false,
        };
        sender
            .send(Request::Normal(Box::new(normal)))
            .await
            .map_err(|_| EngineError::Unavailable("engine request channel closed".into()))?;
        {
            // Pruned here too, not only when health or metrics ask: each weak sender keeps its channel's
            // buffers allocated, which grew memory over thousands of requests.
            let mut submitted = self.submitted.lock().expect("submitted lock");
            submitted.retain(|held| held.strong_count() > 0);
            submitted.push(weak.clone());
        }
        Ok(Submitted {
            events: event_stream(rx, picks, is_completion, constrained),
            held: Box::new(move || weak.strong_count() > 0),
        })
    }

    fn sequences_alive(&self) -> usize {
        let mut submitted = self.submitted.lock().expect("submitted lock");
        submitted.retain(|weak| weak.strong_count() > 0);
        submitted.len()
    }

    fn step_counts(&self) -> StepCounts {
        // Counted by the engine itself (patches/mistralrs-core-0.8.1/0004-count-engine-steps.patch).
        let Ok(logger) = self.model.inner().get_logger(None) else {
            return StepCounts::default();
        };
        let counts = logger.step_counts();
        StepCounts {
            prompt_steps: counts.prompt_steps as u64,
            prompt_sequences: counts.prompt_sequences as u64,
            decode_steps: counts.decode_steps as u64,
            decode_sequences: counts.decode_sequences as u64,
            prefix_cache_hits: logger.prefix_cache_stats().0 as u64,
        }
    }

    fn kv_cache(&self) -> Option<KvCacheState> {
        // Recorded by the paged-attention scheduler after each step
        // (patches/mistralrs-core-0.8.1/0017-kv-cache-usage.patch).
        let usage = self.model.inner().get_logger(None).ok()?.kv_cache_usage()?;
        Some(KvCacheState {
            block_size: usage.block_size,
            total_blocks: usage.total_blocks,
            usage: usage.usage,
        })
    }
}

#[cfg(test)]
mod engine_patches;
#[cfg(test)]
mod glm4v_parity;
