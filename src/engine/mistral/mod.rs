//! The mistral.rs 0.8.1 engine: loading, and translation between our requests/events and its own.
//!
//! The only module that imports `mistralrs`. Rules from shared/design/ENGINE.md that shape it:
//! every generation is submitted as streaming (a dropped non-streaming receiver panics the engine thread),
//! tokenization runs detached (the engine `expect`s its answer to be received), response channels are large
//! (a full channel stalls every sequence of the engine).

use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use either::Either;
use indexmap::IndexMap;
use mistralrs::core::{
    AutoDeviceMapParams, DeviceMapSetting, GGUFLoaderBuilder, GGUFSpecificConfig, MistralRsBuilder,
    ModelCategory, MultimodalPromptPrefixer, Pipeline, RequestMessage, SupportedModality,
    TokenizationRequest,
};
use mistralrs::llguidance::toktrie::TokTrie;
use mistralrs::model_builder_trait::{
    build_model_from_pipeline, build_multimodal_pipeline, build_text_pipeline,
};
use mistralrs::{
    Constraint, CustomLogitsProcessor, DefaultSchedulerMethod, Device, LlguidanceGrammar,
    MemoryGpuConfig, MessageContent, Model, ModelDType, MultimodalLoaderType,
    MultimodalModelBuilder, NormalRequest, PagedAttentionConfig, PagedCacheType, Request, Response,
    SamplingParams, SchedulerConfig, StopTokens, TextModelBuilder, TokenSource,
};
use serde_json::Value;
use tokio::sync::mpsc;

use crate::engine::settings::{Dtype, GpuMemory, PagedAttention};

use super::sampler::{Pick, PickerSettings, TokenPicker};
use super::vocab::{Piece, Vocabulary};
use super::{
    gguf, Engine, EngineError, EngineEvent, EngineFinish, EventStream, GenerationRequest,
    ModelInfo, OutputConstraint, Prompt, StepCounts, Submitted, TokenLogprob,
};

/// llguidance's grammar compiler for this model's tokenizer.
type GrammarFactory = Arc<mistralrs::llguidance::ParserFactory>;

/// Buffer of each request's response channel: the engine awaits a full channel, stalling every sequence.
const RESPONSE_CHANNEL_CAPACITY: usize = 10_000;
/// Context length assumed when a model does not report one.
const FALLBACK_CONTEXT_LENGTH: usize = 4096;

/// Where the weights are, as the loader needs it.
#[derive(Debug, Clone)]
pub enum LoadTarget {
    /// GGUF file(s) in a local directory (several files = one split model).
    Gguf { dir: PathBuf, files: Vec<String> },
    /// A local safetensors model directory (`config.json`, `tokenizer.json`, weights). A vision model is
    /// recognised by the architecture its `config.json` names.
    Safetensors(PathBuf),
    /// A Hugging Face repo id (needs hub access; `HF_TOKEN` for gated models).
    Hub { repo: String, multimodal: bool },
}

#[derive(Debug, Clone)]
pub struct LoadOptions {
    pub max_num_seqs: usize,
    /// Finished sequences kept for prefix reuse; 0 disables the prefix cache.
    pub prefix_cache_n: usize,
    pub dtype: Dtype,
    /// `None`: no paged attention (CPU builds, or turned off).
    pub paged_attention: Option<PagedAttention>,
    pub chat_template: Option<PathBuf>,
}

pub struct MistralEngine {
    model: Model,
    info: ModelInfo,
    vocabulary: Arc<Vocabulary>,
    grammars: Option<GrammarFactory>,
    unlisted_ends: Vec<String>,
    /// Set for multimodal models: writes a message's image placeholders the way the model expects them.
    prefixer: Option<Arc<dyn MultimodalPromptPrefixer>>,
    /// One weak handle per submitted sequence: alive while the engine still holds the sequence's sender.
    submitted: Mutex<Vec<mpsc::WeakSender<Response>>>,
}

impl MistralEngine {
    /// Loads the model. Slow and partly synchronous: call it off the HTTP workers.
    pub async fn load(target: LoadTarget, options: LoadOptions) -> Result<Self, EngineError> {
        let template = options
            .chat_template
            .as_ref()
            .map(|p| p.display().to_string());
        let device = mistralrs::best_device(false).map_err(|e| EngineError::Load(e.to_string()))?;
        let paged = paged_attention_config(options.paged_attention)
            .map_err(|e| EngineError::Load(format!("{e:#}")))?;
        let built = match target {
            LoadTarget::Gguf { dir, files } => {
                for file in &files {
                    let path = dir.join(file);
                    let architecture = gguf::check_architecture(&path)?;
                    let dtype = gguf::dominant_dtype(&path)?;
                    tracing::info!(path = %path.display(), architecture, quantization = ?dtype, "loading GGUF");
                    if dtype == candle_core::quantized::GgmlDType::Q4_1 {
                        tracing::warn!(
                            "Q4_1 has no SIMD kernel in candle: expect ~3x slower decoding than Q8_0 or Q4_0"
                        );
                    }
                }
                load_gguf(dir, files, &options, template).await
            }
            LoadTarget::Safetensors(dir) => {
                let load = SafetensorsLoad {
                    multimodal: multimodal_architecture(&dir)?,
                    model_id: dir.display().to_string(),
                    token_source: TokenSource::None,
                };
                load.load(&options, template, paged, &device).await
            }
            // The hub needs a token for gated models (HF_TOKEN or the cached login).
            LoadTarget::Hub { repo, multimodal } => {
                let load = SafetensorsLoad {
                    // `None` inside: mistral.rs reads the architecture from the repo's config.json.
                    multimodal: multimodal.then_some(None),
                    model_id: repo,
                    token_source: TokenSource::CacheToken,
                };
                load.load(&options, template, paged, &device).await
            }
        };
        let (model, tokens) = built.map_err(|e| EngineError::Load(format!("{e:#}")))?;
        let context_length = model
            .max_sequence_length()
            .ok()
            .flatten()
            .unwrap_or(FALLBACK_CONTEXT_LENGTH);
        Ok(MistralEngine {
            model,
            info: ModelInfo {
                context_length,
                accepts_images: tokens.accepts_images,
                vocab_size: tokens.vocabulary.len(),
                fill_in_middle: tokens.vocabulary.fill_in_middle(),
            },
            vocabulary: Arc::new(tokens.vocabulary),
            grammars: tokens.grammars,
            unlisted_ends: tokens.unlisted_ends,
            prefixer: tokens.prefixer,
            submitted: Mutex::new(Vec::new()),
        })
    }

    fn sender(&self) -> Result<mpsc::Sender<Request>, EngineError> {
        self.model
            .inner()
            .get_sender(None)
            .map_err(|e| EngineError::Unavailable(e.to_string()))
    }
}

/// `auto` means f32 on CPU: mistral.rs's own auto picks f16 there, whose emulated CPU kernels make prefill
/// several times slower. On GPUs its choice (bf16/f16) stands.
fn model_dtype(dtype: Dtype, device: &Device) -> ModelDType {
    match dtype {
        Dtype::Auto if device.is_cpu() => ModelDType::F32,
        Dtype::Auto => ModelDType::Auto,
        Dtype::F32 => ModelDType::F32,
        Dtype::F16 => ModelDType::F16,
        Dtype::Bf16 => ModelDType::BF16,
    }
}

/// The vision architecture a local model directory's `config.json` names, if it names one mistral.rs serves
/// as multimodal (`Some(Some(kind))`); `None` for a text model.
fn multimodal_architecture(
    dir: &std::path::Path,
) -> Result<Option<Option<MultimodalLoaderType>>, EngineError> {
    let path = dir.join("config.json");
    let Ok(text) = std::fs::read_to_string(&path) else {
        // `params.json` (Mistral's own layout) and the like: left to the text loader, as before.
        return Ok(None);
    };
    let config: Value = serde_json::from_str(&text)
        .map_err(|e| EngineError::Load(format!("{}: {e}", path.display())))?;
    let architectures = config["architectures"].as_array().into_iter().flatten();
    Ok(architectures
        .filter_map(Value::as_str)
        .find_map(|name| MultimodalLoaderType::from_causal_lm_name(name).ok())
        .map(Some))
}

/// A safetensors model, from a local directory or the hub, through the SDK's text or multimodal builder.
struct SafetensorsLoad {
    model_id: String,
    token_source: TokenSource,
    /// `Some` for a multimodal model, with its architecture when known.
    multimodal: Option<Option<MultimodalLoaderType>>,
}

impl SafetensorsLoad {
    async fn load(
        self,
        options: &LoadOptions,
        template: Option<String>,
        paged: Option<PagedAttentionConfig>,
        device: &Device,
    ) -> anyhow::Result<(Model, ModelTokens)> {
        let prefix_cache_n = (options.prefix_cache_n > 0).then_some(options.prefix_cache_n);
        let dtype = model_dtype(options.dtype, device);
        // Both builders, then `build` in two steps, to read the tokenizer off the pipeline in between.
        let (pipeline, scheduler, config) = match self.multimodal {
            None => {
                let mut builder = TextModelBuilder::new(self.model_id)
                    .with_token_source(self.token_source)
                    .with_dtype(dtype)
                    .with_max_num_seqs(options.max_num_seqs)
                    .with_prefix_cache_n(prefix_cache_n)
                    .with_logging();
                if let Some(template) = template {
                    builder = builder.with_chat_template(template);
                }
                if let Some(paged) = paged {
                    builder = builder.with_paged_attn(paged);
                }
                build_text_pipeline(builder).await?
            }
            Some(architecture) => {
                tracing::info!(?architecture, "loading a multimodal model");
                let mut builder = MultimodalModelBuilder::new(self.model_id)
                    .with_token_source(self.token_source)
                    .with_dtype(dtype)
                    .with_max_num_seqs(options.max_num_seqs)
                    .with_prefix_cache_n(prefix_cache_n)
                    .with_logging();
                if let Some(architecture) = architecture {
                    builder = builder.with_loader_type(architecture);
                }
                if let Some(template) = template {
                    builder = builder.with_chat_template(template);
                }
                if let Some(paged) = paged {
                    builder = builder.with_paged_attn(paged);
                }
                build_multimodal_pipeline(builder).await?
            }
        };
        let tokens = ModelTokens::of(&pipeline).await?;
        Ok((
            build_model_from_pipeline(pipeline, scheduler, config).await,
            tokens,
        ))
    }
}

/// What the engine knows of the tokenizer that our layer needs too.
struct ModelTokens {
    vocabulary: Vocabulary,
    grammars: Option<GrammarFactory>,
    /// End tokens the model's metadata does not list (the tokenizer's own, e.g. `<|endoftext|>` beside
    /// the chat template's `<|im_end|>`), by name: a grammar ends by forcing one of them, and the engine
    /// would otherwise go on generating it until `max_tokens`.
    unlisted_ends: Vec<String>,
    /// Whether the model takes images, and how it marks them in a prompt.
    accepts_images: bool,
    prefixer: Option<Arc<dyn MultimodalPromptPrefixer>>,
}

impl ModelTokens {
    async fn of<P: Pipeline + ?Sized>(pipeline: &tokio::sync::Mutex<P>) -> anyhow::Result<Self> {
        let (metadata, category) = {
            let pipeline = pipeline.lock().await;
            (pipeline.get_metadata(), pipeline.category())
        };
        let accepts_images = metadata
            .modalities
            .input
            .contains(&SupportedModality::Vision);
        let prefixer = match category {
            ModelCategory::Multimodal { prefixer } => Some(prefixer),
            _ => None,
        };
        let grammars = metadata.llg_factory.clone();
        let env = metadata
            .tok_env()
            .ok_or_else(|| anyhow::anyhow!("the model has no tokenizer"))?;
        let trie = env.tok_trie();
        let pieces = (0..trie.vocab_size() as u32)
            .map(|token| match trie.token(token) {
                [TokTrie::SPECIAL_TOKEN_MARKER, name @ ..] => {
                    Piece::Special(String::from_utf8_lossy(name).into_owned())
                }
                bytes => Piece::Text(bytes.to_vec()),
            })
            .collect();
        let mut ends = metadata.eos_tok.clone();
        let mut unlisted_ends = Vec::new();
        for &token in trie.eos_tokens() {
            if let (false, [TokTrie::SPECIAL_TOKEN_MARKER, name @ ..]) =
                (ends.contains(&token), trie.token(token))
            {
                ends.push(token);
                unlisted_ends.push(String::from_utf8_lossy(name).into_owned());
            }
        }
        Ok(ModelTokens {
            vocabulary: Vocabulary::new(pieces, ends),
            grammars,
            unlisted_ends,
            accepts_images,
            prefixer,
        })
    }
}

/// mistral.rs's paged-attention settings; the SDK default pool (4096 tokens in all) is far too small to serve.
fn paged_attention_config(
    settings: Option<PagedAttention>,
) -> anyhow::Result<Option<PagedAttentionConfig>> {
    settings
        .map(|s| {
            let memory = match s.memory {
                GpuMemory::Utilization(fraction) => MemoryGpuConfig::Utilization(fraction),
                GpuMemory::MiB(mib) => MemoryGpuConfig::MbAmount(mib),
            };
            PagedAttentionConfig::new(Some(s.block_size), memory, PagedCacheType::Auto)
        })
        .transpose()
}

/// The SDK's `GgufModelBuilder` with the activation dtype it does not expose (it hardcodes `Auto`).
async fn load_gguf(
    dir: PathBuf,
    files: Vec<String>,
    options: &LoadOptions,
    chat_template: Option<String>,
) -> anyhow::Result<(Model, ModelTokens)> {
    let device = mistralrs::best_device(false)?;
    let dtype = model_dtype(options.dtype, &device);
    tracing::info!(?dtype, device = ?device.location(), "activation dtype");
    let loader = GGUFLoaderBuilder::new(
        chat_template,
        None,
        dir.display().to_string(),
        files,
        GGUFSpecificConfig { topology: None },
        false,
        None,
    )
    .build();
    let pipeline = loader.load_model_from_hf(
        None,
        TokenSource::None,
        &dtype,
        &device,
        // Silent: otherwise the loader `println!`s the GGUF metadata onto stdout, which breaks JSON-lines
        // logs. Our own start-up lines say what was loaded.
        true,
        DeviceMapSetting::Auto(AutoDeviceMapParams::default_text()),
        None,
        paged_attention_config(options.paged_attention)?,
    )?;
    let tokens = ModelTokens::of(&pipeline).await?;
    // With paged attention the pipeline carries the KV-pool layout its scheduler needs.
    let cache_config = pipeline.lock().await.get_metadata().cache_config.clone();
    let scheduler = match cache_config {
        Some(config) if options.paged_attention.is_some() => SchedulerConfig::PagedAttentionMeta {
            max_num_seqs: options.max_num_seqs,
            config,
        },
        _ => SchedulerConfig::DefaultScheduler {
            method: DefaultSchedulerMethod::Fixed(
                NonZeroUsize::new(options.max_num_seqs).unwrap_or(NonZeroUsize::MIN),
            ),
        },
    };
    let runner = MistralRsBuilder::new(pipeline, scheduler, false, None)
        .with_no_prefix_cache(options.prefix_cache_n == 0)
        .with_prefix_cache_n(options.prefix_cache_n)
        .build()
        .await;
    Ok((Model::new(runner), tokens))
}

/// The engine's messages. For a multimodal model every message is a list of parts, images first (as
/// mistral.rs's own server writes them), with the model's image placeholders added to the text by its
/// prefixer: such chat templates (SmolVLM's, for one) read only parts. A text model's are plain strings.
fn chat_messages(
    prompt: &Prompt,
    prefixer: Option<&dyn MultimodalPromptPrefixer>,
) -> Either<Vec<IndexMap<String, MessageContent>>, String> {
    let messages = match prompt {
        Prompt::Text(text) => return Either::Right(text.clone()),
        Prompt::Chat(messages) => messages,
    };
    let mut images_before = 0;
    let messages = messages
        .iter()
        .map(|m| {
            let content = match prefixer {
                None => Either::Left(m.content.clone()),
                Some(prefixer) => {
                    let indices: Vec<usize> =
                        (images_before..images_before + m.images.len()).collect();
                    images_before += m.images.len();
                    let text = if indices.is_empty() {
                        m.content.clone()
                    } else {
                        prefixer.prefix_image(indices, &m.content)
                    };
                    let mut parts: Vec<IndexMap<String, Value>> = m
                        .images
                        .iter()
                        .map(|_| IndexMap::from([("type".to_string(), Value::from("image"))]))
                        .collect();
                    parts.push(IndexMap::from([
                        ("type".to_string(), Value::from("text")),
                        ("text".to_string(), Value::from(text)),
                    ]));
                    Either::Right(parts)
                }
            };
            IndexMap::from([
                (
                    "role".to_string(),
                    Either::Left(m.role.as_str().to_string()),
                ),
                ("content".to_string(), content),
            ])
        })
        .collect();
    Either::Left(messages)
}

/// A prompt's images, in order, decoded off the async workers (a large PNG takes tens of milliseconds) and
/// copied for the engine, which takes them by value.
async fn decode_images(prompt: &Prompt) -> Result<Vec<image::DynamicImage>, EngineError> {
    let Prompt::Chat(messages) = prompt else {
        return Ok(Vec::new());
    };
    let encoded: Vec<_> = messages.iter().flat_map(|m| m.images.clone()).collect();
    if encoded.is_empty() {
        return Ok(Vec::new());
    }
    tokio::task::spawn_blocking(move || {
        encoded
            .iter()
            .enumerate()
            .map(|(index, input)| {
                input.decode().map(|pixels| (*pixels).clone()).map_err(|e| {
                    EngineError::Rejected(format!(
                        "image {index} ({}) could not be decoded: {e}",
                        input.media_type
                    ))
                })
            })
            .collect()
    })
    .await
    .map_err(|e| EngineError::Internal(format!("image decoding failed: {e}")))?
}

/// The engine's own sampling is reduced to its penalties and an argmax: `TokenPicker` chooses the token.
fn sampling_params(request: &GenerationRequest, unlisted_ends: &[String]) -> SamplingParams {
    let s = &request.sampling;
    let mut params = SamplingParams::neutral();
    params.temperature = Some(0.0);
    params.presence_penalty = s.presence_penalty;
    params.frequency_penalty = s.frequency_penalty;
    params.repetition_penalty = s.repetition_penalty;
    params.max_len = Some(request.max_tokens);
    // A stop string that is one special token becomes a stop token in the engine.
    let stops: Vec<String> = request.stop.iter().chain(unlisted_ends).cloned().collect();
    params.stop_toks = (!stops.is_empty()).then_some(StopTokens::Seqs(stops));
    params.n_choices = 1;
    params
}

fn finish_reason(reason: &str) -> Result<EngineFinish, EngineError> {
    match reason {
        "length" => Ok(EngineFinish::Length),
        "error" => Err(EngineError::Internal(
            "the engine ended the sequence with an error".into(),
        )),
        // "stop" (EOS, stop token or stop string) and anything this server did not ask for.
        _ => Ok(EngineFinish::Stop),
    }
}

/// mistral.rs trims the start of a sequence's first streamed delta. Right for chat, wrong for completions:
/// the continuation of "colors are" is " the", and `echo` or prompt + completion would lose the space. The
/// sampled tokens' own bytes give the whitespace back.
fn restore_leading_whitespace(delta: String, token: &str) -> String {
    let trimmed = token.trim_start();
    let whitespace = &token[..token.len() - trimmed.len()];
    if whitespace.is_empty()
        || !delta.starts_with(trimmed)
        || delta.starts_with(char::is_whitespace)
    {
        return delta;
    }
    format!("{whitespace}{delta}")
}

/// The logits processor that hands each step to our `TokenPicker`.
struct PickerProcessor(Arc<TokenPicker>);

impl CustomLogitsProcessor for PickerProcessor {
    fn apply(
        &self,
        logits: &candle_core::Tensor,
        context: &[u32],
    ) -> candle_core::Result<candle_core::Tensor> {
        let mut values: Vec<f32> = logits.to_dtype(candle_core::DType::F32)?.to_vec1()?;
        self.0.pick(&mut values, context.len());
        let len = values.len();
        candle_core::Tensor::from_vec(values, len, logits.device())?.to_dtype(logits.dtype())
    }
}

/// Matches the engine's streamed chunks with the picks behind them. The engine sends a chunk after a token
/// unless the text so far ends in an incomplete UTF-8 sequence, so the picks of one chunk run up to the
/// first point where their bytes decode whole: the same rule, replayed on the same bytes.
struct ChunkPicks {
    picker: Arc<TokenPicker>,
    vocabulary: Arc<Vocabulary>,
    /// Picks already matched to chunks.
    consumed: usize,
    /// `Some(k)`: the request asked for logprobs with `k` alternatives.
    top_logprobs: Option<usize>,
}

impl ChunkPicks {
    /// The picks behind the next chunk, and the bytes they decode to.
    fn next_chunk(&mut self) -> (Vec<Pick>, Vec<u8>) {
        let mut picks = Vec::new();
        let mut bytes = Vec::new();
        for pick in self.picker.picks_from(self.consumed) {
            bytes.extend_from_slice(self.vocabulary.text_bytes(pick.token));
            picks.push(pick);
            if !String::from_utf8_lossy(&bytes).ends_with('\u{FFFD}') {
                break;
            }
        }
        self.consumed += picks.len();
        (picks, bytes)
    }

    /// OpenAI's logprob entries for these picks; an end-of-sequence token is not part of the answer.
    fn logprobs(&self, picks: &[Pick]) -> Vec<TokenLogprob> {
        let Some(k) = self.top_logprobs else {
            return Vec::new();
        };
        picks
            .iter()
            .filter(|p| !self.vocabulary.is_end_of_sequence(p.token))
            .map(|p| TokenLogprob {
                sampled: self.vocabulary.alternative(p.token, p.logprob),
                top: p
                    .top
                    .iter()
                    .take(k)
                    .map(|&(t, l)| self.vocabulary.alternative(t, l))
                    .collect(),
            })
            .collect()
    }
}

/// Turns the engine's response channel into our events; dropping the stream drops the receiver, which the
/// engine notices at its next token and answers by cancelling the sequence.
fn event_stream(
    mut rx: mpsc::Receiver<Response>,
    mut picks: ChunkPicks,
    is_completion: bool,
) -> EventStream {
    Box::pin(async_stream::stream! {
        let mut first_delta = true;
        while let Some(response) = rx.recv().await {
            let (text, reason, usage) = match response {
                Response::Chunk(mut chunk) => {
                    let usage = chunk.usage.as_ref().map(|u| (u.completion_tokens, u.prompt_tokens));
                    let Some(choice) = chunk.choices.pop() else { continue };
                    (choice.delta.content.unwrap_or_default(), choice.finish_reason, usage)
                }
                Response::CompletionChunk(mut chunk) => {
                    let Some(choice) = chunk.choices.pop() else { continue };
                    (choice.text, choice.finish_reason, None)
                }
                Response::ValidationError(e) => {
                    yield Err(EngineError::Rejected(e.to_string()));
                    return;
                }
                Response::InternalError(e) => {
                    yield Err(EngineError::Internal(e.to_string()));
                    return;
                }
                Response::ModelError(message, _) | Response::CompletionModelError(message, _) => {
                    yield Err(EngineError::Internal(message));
                    return;
                }
                // Non-streaming answers and other modalities are never requested.
                _ => continue,
            };
            let (chunk_picks, bytes) = picks.next_chunk();
            let mut text = text;
            if is_completion && std::mem::take(&mut first_delta) {
                text = restore_leading_whitespace(text, &String::from_utf8_lossy(&bytes));
            }
            yield Ok(EngineEvent::Text {
                text,
                tokens: chunk_picks.len().max(1),
                logprobs: picks.logprobs(&chunk_picks),
            });
            if let Some(reason) = reason {
                yield finish_reason(&reason).map(|reason| EngineEvent::Finished {
                    reason,
                    completion_tokens: usage.map(|(completion, _)| completion),
                    prompt_tokens: usage.map(|(_, prompt)| prompt),
                });
                return;
            }
        }
        yield Err(EngineError::Internal("the engine dropped the sequence without finishing it".into()));
    })
}

fn constraint(constraint: Option<&OutputConstraint>) -> Constraint {
    match constraint {
        None => Constraint::None,
        Some(OutputConstraint::JsonSchema(schema)) => Constraint::JsonSchema(schema.clone()),
        Some(OutputConstraint::Lark(grammar)) => Constraint::Lark(grammar.clone()),
    }
}

#[async_trait]
impl Engine for MistralEngine {
    fn info(&self) -> &ModelInfo {
        &self.info
    }

    async fn tokenize(&self, prompt: &Prompt) -> Result<Vec<u32>, EngineError> {
        let sender = self.sender()?;
        let (tx, mut rx) = mpsc::channel(1);
        let request = Request::Tokenize(TokenizationRequest {
            text: chat_messages(prompt, self.prefixer.as_deref()),
            tools: None,
            // The same flags the engine uses when it adds a chat or completion request.
            add_generation_prompt: true,
            add_special_tokens: true,
            enable_thinking: None,
            reasoning_effort: None,
            response: tx,
        });
        // Detached so that a client going away mid-call cannot drop the receiver the engine answers into.
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
        factory
            .create_parser(grammar)
            .map(drop)
            .map_err(|e| EngineError::Rejected(format!("invalid constraint: {e}")))
    }

    async fn generate(&self, request: GenerationRequest) -> Result<Submitted, EngineError> {
        let images = decode_images(&request.prompt).await?;
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
        let picker = Arc::new(TokenPicker::new(PickerSettings {
            sampling: request.sampling.clone(),
            logit_bias: request.logit_bias.clone(),
            seed: request.seed,
            top_logprobs: request.logprobs,
        }));
        let picks = ChunkPicks {
            picker: picker.clone(),
            vocabulary: self.vocabulary.clone(),
            consumed: 0,
            top_logprobs: request.logprobs,
        };
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
            events: event_stream(rx, picks, is_completion),
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
        }
    }
}

#[cfg(test)]
mod engine_patches;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{ImageInput, PromptMessage, Role};

    /// Phi-3.5-vision's way: numbered placeholders before the text.
    struct NumberedImages;
    impl MultimodalPromptPrefixer for NumberedImages {
        fn prefix_image(&self, indices: Vec<usize>, prompt: &str) -> String {
            let marks: String = indices
                .iter()
                .map(|i| format!("<|image_{}|>", i + 1))
                .collect();
            format!("{marks}{prompt}")
        }
    }

    #[test]
    fn a_multimodal_model_gets_parts_with_numbered_images() {
        let image = ImageInput::new("image/png".into(), vec![]);
        let message = |role, content: &str, images: usize| PromptMessage {
            role,
            content: content.into(),
            images: vec![image.clone(); images],
        };
        let prompt = Prompt::Chat(vec![
            message(Role::System, "be brief", 0),
            message(Role::User, "first", 2),
            message(Role::User, "second", 1),
        ]);
        let Either::Left(text_model) = chat_messages(&prompt, None) else {
            panic!("chat")
        };
        assert_eq!(text_model[1]["content"], Either::Left("first".to_string()));
        let Either::Left(vision_model) = chat_messages(&prompt, Some(&NumberedImages)) else {
            panic!("chat")
        };
        let parts = |i: usize| match &vision_model[i]["content"] {
            Either::Right(parts) => serde_json::to_value(parts).unwrap(),
            Either::Left(text) => panic!("a string: {text}"),
        };
        assert_eq!(
            parts(0),
            serde_json::json!([{"type": "text", "text": "be brief"}])
        );
        assert_eq!(
            parts(1),
            serde_json::json!([{"type": "image"}, {"type": "image"},
                {"type": "text", "text": "<|image_1|><|image_2|>first"}])
        );
        // Numbering runs on across messages.
        assert_eq!(
            parts(2),
            serde_json::json!([{"type": "image"}, {"type": "text", "text": "<|image_3|>second"}])
        );
    }

    #[test]
    fn vision_directories_are_recognised_by_their_architecture() {
        let dir = std::env::temp_dir().join(format!("llmserve-arch-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let write = |config: &str| std::fs::write(dir.join("config.json"), config).unwrap();
        write(r#"{"architectures": ["Idefics3ForConditionalGeneration"]}"#);
        assert!(matches!(
            multimodal_architecture(&dir),
            Ok(Some(Some(MultimodalLoaderType::Idefics3)))
        ));
        write(r#"{"architectures": ["LlamaForCausalLM"]}"#);
        assert!(matches!(multimodal_architecture(&dir), Ok(None)));
        write("{not json");
        assert!(multimodal_architecture(&dir).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_first_completion_token_gets_its_whitespace_back() {
        assert_eq!(restore_leading_whitespace("the".into(), " the"), " the");
        assert_eq!(restore_leading_whitespace("".into(), "\n"), "\n");
        assert_eq!(restore_leading_whitespace("4,".into(), " 4"), " 4,");
        // Nothing to restore, or the delta is not this token's text (several tokens held back).
        assert_eq!(restore_leading_whitespace("the".into(), "the"), "the");
        assert_eq!(restore_leading_whitespace("é!".into(), " x"), "é!");
    }
}
