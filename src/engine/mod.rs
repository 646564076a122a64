//! The inference engine behind a small trait of engine-neutral requests and events.
//!
//! `mistral` is the only module that imports `mistralrs`; `gguf` reads and rewrites GGUF files; `settings`
//! are what the server decides for an engine at start-up.

pub mod gguf;
pub mod mistral;
pub mod sampler;
#[cfg(test)]
pub mod scripted;
pub mod settings;
pub mod vocab;

use std::pin::Pin;
use std::sync::{Arc, OnceLock};

use async_trait::async_trait;
use futures::Stream;

/// Who said a message; `developer` arrives here as `System`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    System,
    User,
    Assistant,
    Tool,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
            Role::Tool => "tool",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct PromptMessage {
    pub role: Role,
    pub content: String,
    /// Images of a user turn, decoded (served only when `ModelInfo::accepts_images`).
    pub images: Vec<ImageInput>,
}

/// An image as the client sent it: its media type and its encoded bytes (PNG, JPEG, WebP or GIF).
#[derive(Debug, Clone)]
pub struct ImageInput {
    pub media_type: String,
    pub data: Vec<u8>,
    /// The pixels, decoded by the first choice that needs them: a request's choices share clones of one
    /// prompt, so `n` choices decode each image once.
    decoded: Arc<OnceLock<Result<Arc<image::DynamicImage>, String>>>,
}

impl ImageInput {
    pub fn new(media_type: String, data: Vec<u8>) -> Self {
        ImageInput {
            media_type,
            data,
            decoded: Arc::default(),
        }
    }

    /// The decoded pixels (slow for large images: call it off the async workers).
    pub fn decode(&self) -> Result<Arc<image::DynamicImage>, String> {
        self.decoded
            .get_or_init(|| {
                image::load_from_memory(&self.data)
                    .map(Arc::new)
                    .map_err(|e| e.to_string())
            })
            .clone()
    }
}

impl PartialEq for ImageInput {
    fn eq(&self, other: &Self) -> bool {
        self.media_type == other.media_type && self.data == other.data
    }
}

/// What the model continues: a conversation rendered by the chat template, or raw text.
#[derive(Debug, Clone, PartialEq)]
pub enum Prompt {
    Chat(Vec<PromptMessage>),
    Text(String),
}

/// Sampling settings after validation; `None` means the engine's neutral value.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Sampling {
    pub temperature: f64,
    pub top_p: Option<f64>,
    pub top_k: Option<usize>,
    pub min_p: Option<f64>,
    pub presence_penalty: Option<f32>,
    pub frequency_penalty: Option<f32>,
    pub repetition_penalty: Option<f32>,
}

/// What the generated text must match, enforced by constrained decoding.
#[derive(Debug, Clone, PartialEq)]
pub enum OutputConstraint {
    /// Any JSON value described by this JSON Schema (`{"type": "object"}` for `json_object`).
    JsonSchema(serde_json::Value),
    /// A grammar in llguidance's Lark dialect (tool calls are built as one).
    Lark(String),
}

/// One sequence to generate. `max_tokens` already fits the context.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerationRequest {
    pub prompt: Prompt,
    pub sampling: Sampling,
    pub max_tokens: usize,
    /// Passed to the engine so it stops early; the text layer (`stop.rs`) cuts them from the output.
    pub stop: Vec<String>,
    /// Seeds this sequence's own sampler: the same seed and logits give the same tokens.
    pub seed: Option<u64>,
    /// Added to the logits of these token ids before sampling (OpenAI's `logit_bias`).
    pub logit_bias: Vec<(u32, f32)>,
    /// `Some(k)`: report each sampled token's log probability and its `k` most likely alternatives.
    pub logprobs: Option<usize>,
    pub constraint: Option<OutputConstraint>,
}

impl GenerationRequest {
    /// A plain request: no seed, bias, logprobs or constraint.
    pub fn new(prompt: Prompt, sampling: Sampling, max_tokens: usize, stop: Vec<String>) -> Self {
        GenerationRequest {
            prompt,
            sampling,
            max_tokens,
            stop,
            seed: None,
            logit_bias: Vec::new(),
            logprobs: None,
            constraint: None,
        }
    }
}

/// A token's text and log probability (natural log, as OpenAI reports it).
#[derive(Debug, Clone, PartialEq)]
pub struct TokenAlternative {
    pub token: String,
    pub bytes: Vec<u8>,
    pub logprob: f32,
}

/// One sampled token with its most likely alternatives at that step.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenLogprob {
    pub sampled: TokenAlternative,
    pub top: Vec<TokenAlternative>,
}

/// Why the engine ended a sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EngineFinish {
    /// End of turn (EOS) or a stop sequence.
    Stop,
    /// `max_tokens` or the context length.
    Length,
}

/// What an engine reports for one submitted sequence, in order: any number of `Text`, then one `Finished`
/// (or an [`EngineError`] in its place). Engine-neutral: `engine::mistral` translates mistral.rs's
/// responses into these, `engine::scripted` plays them back in HTTP-layer tests, and
/// `generation::choices` turns them into per-choice events with stop strings and logprobs applied.
#[derive(Debug, Clone, PartialEq)]
pub enum EngineEvent {
    /// Newly generated text; `tokens` is how many sampled tokens it covers, `logprobs` (when asked for)
    /// one entry per token.
    Text {
        text: String,
        tokens: usize,
        logprobs: Vec<TokenLogprob>,
    },
    /// The last event of a sequence, with the engine's own counts when it reports them. Its prompt count
    /// includes what the engine adds itself: a multimodal model's processor expands each image into its
    /// image tokens.
    Finished {
        reason: EngineFinish,
        completion_tokens: Option<usize>,
        prompt_tokens: Option<usize>,
    },
}

pub type EventStream = Pin<Box<dyn Stream<Item = Result<EngineEvent, EngineError>> + Send>>;

/// True while the engine still holds a submitted sequence (dropping its events does not free it at once:
/// mistral.rs notices a gone receiver only at the sequence's next token).
pub type EngineHold = Box<dyn Fn() -> bool + Send + Sync>;

/// A submitted sequence: its events, and whether the engine still holds it.
pub struct Submitted {
    pub events: EventStream,
    pub held: EngineHold,
}

/// Why an engine could not load, accept or finish a request. The variants decide the client's status in
/// `error.rs` (`Rejected` and `ConstraintFailed` are the request's fault: 400; `Unavailable` 503;
/// `Internal`, `Load` and `UnsupportedArchitecture` are ours: 500, their text kept out of the client's
/// message where it could carry internals).
#[derive(Debug, Clone, thiserror::Error, PartialEq)]
pub enum EngineError {
    /// The engine refused the request's content (e.g. its chat template failed on these messages).
    #[error("The engine rejected the request: {0}")]
    Rejected(String),
    /// The engine is gone or not accepting work.
    #[error("The engine is unavailable: {0}")]
    Unavailable(String),
    #[error("The engine failed: {0}")]
    Internal(String),
    /// The output constraint's parser gave up while decoding (its grammar outgrew the parser's limits):
    /// the request's fault, not the engine's.
    #[error("The output constraint failed while decoding: {0}")]
    ConstraintFailed(String),
    #[error(
        "{path}: GGUF architecture `{architecture}` is not supported by mistral.rs 0.8.1 (supported: {supported})"
    )]
    UnsupportedArchitecture {
        path: String,
        architecture: String,
        supported: String,
    },
    #[error("Could not load the model: {0}")]
    Load(String),
}

/// Facts about the loaded model that validation needs.
#[derive(Debug, Clone)]
pub struct ModelInfo {
    /// Prompt + completion tokens the model can attend to.
    pub context_length: usize,
    /// Whether `image_url` content parts can be served.
    pub accepts_images: bool,
    /// Whether the model renders chat messages (it has a chat template). A base model without one, such
    /// as a pretrained GGUF, serves prompts only.
    pub chat_template: bool,
    /// Images one request may carry (`--max-images`).
    pub max_images: usize,
    /// Token ids run from 0 to `vocab_size - 1` (bounds `logit_bias` keys).
    pub vocab_size: usize,
    /// Whether the vocabulary has fill-in-the-middle tokens (`suffix` needs them).
    pub fill_in_middle: Option<FillInMiddle>,
    /// `Some(width)` for an embedding model (it embeds and does not generate).
    pub embedding_dimensions: Option<usize>,
    /// The most bytes of text one token stands for (the longest piece, special tokens by name): a
    /// prompt's bytes over this bound its token count from below without the tokenizer. 0: unknown.
    pub max_token_bytes: usize,
}

/// One input of an embedding request: text (tokenized as the model's tokenizer does, special tokens
/// included), or token ids as given.
#[derive(Debug, Clone, PartialEq)]
pub enum EmbeddingInput {
    Text(String),
    Tokens(Vec<u32>),
}

/// The special tokens of a fill-in-the-middle prompt: `{prefix}{text}{suffix}{after}{middle}`.
#[derive(Debug, Clone, PartialEq)]
pub struct FillInMiddle {
    pub prefix: String,
    pub suffix: String,
    pub middle: String,
}

/// A loaded model that generates. Dropping an `EventStream` cancels its sequence.
#[async_trait]
pub trait Engine: Send + Sync {
    fn info(&self) -> &ModelInfo;

    /// Tokens the prompt occupies after templating, as the engine will count them.
    async fn count_prompt_tokens(&self, prompt: &Prompt) -> Result<usize, EngineError> {
        Ok(self.tokenize(prompt).await?.len())
    }

    /// The prompt's token ids after templating (with special tokens), as the engine will see them.
    async fn tokenize(&self, prompt: &Prompt) -> Result<Vec<u32>, EngineError>;

    /// The text of these token ids; unknown ids are an error.
    fn detokenize(&self, tokens: &[u32]) -> Result<String, EngineError>;

    /// Checks that a constraint compiles, so that a bad schema is a 400 before anything is submitted.
    fn check_constraint(&self, constraint: &OutputConstraint) -> Result<(), EngineError>;

    /// Submits one sequence; events arrive as the engine produces them.
    async fn generate(&self, request: GenerationRequest) -> Result<Submitted, EngineError>;

    /// Sequences the engine still holds (finished or cancelled ones drop out once the engine frees them).
    fn sequences_alive(&self) -> usize;

    /// One vector per input, in order, as the model's pooling and normalization leave them; only an
    /// embedding model (`ModelInfo::embedding_dimensions`) embeds.
    async fn embed(&self, inputs: Vec<EmbeddingInput>) -> Result<Vec<Vec<f32>>, EngineError> {
        let _ = inputs;
        Err(EngineError::Rejected(
            "this model generates text and does not embed".into(),
        ))
    }

    /// Forward steps run so far and the sequences they carried (zero for engines that do not count).
    fn step_counts(&self) -> StepCounts {
        StepCounts::default()
    }

    /// The paged KV cache after the engine's last step; `None` without paged attention (or before the
    /// first step).
    fn kv_cache(&self) -> Option<KvCacheState> {
        None
    }
}

/// How full a paged KV cache is, for an inference gateway that routes by it.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct KvCacheState {
    /// Tokens per block.
    pub block_size: usize,
    /// Usable blocks.
    pub total_blocks: usize,
    /// Fraction of them in use, 0 to 1.
    pub usage: f64,
}

/// How many forward steps the engine ran and how many sequences they carried: sequences / steps is the
/// batch size continuous batching achieved, and decode sequences above decode steps prove co-batching.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StepCounts {
    pub prompt_steps: u64,
    pub prompt_sequences: u64,
    pub decode_steps: u64,
    pub decode_sequences: u64,
    /// Requests that started from the prefix cache (their prompt's shared prefix not prefilled again).
    pub prefix_cache_hits: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn choices_sharing_a_prompt_decode_its_image_once() {
        let mut png = Vec::new();
        image::RgbImage::new(2, 2)
            .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
            .unwrap();
        let image = ImageInput::new("image/png".into(), png);
        let other_choice = image.clone();
        let first = image.decode().unwrap();
        assert!(Arc::ptr_eq(&first, &other_choice.decode().unwrap()));
        assert_eq!((first.width(), first.height()), (2, 2));
        let broken = ImageInput::new("image/png".into(), b"\x89PNG\r\n\x1a\n".to_vec());
        assert!(broken.decode().is_err());
    }
}
