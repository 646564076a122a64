//! The mistral.rs 0.8.1 engine: loading, and translation between our requests/events and its own.
//!
//! The only module that imports `mistralrs`. Rules from shared/design/ENGINE.md that shape it:
//! every generation is submitted as streaming (a dropped non-streaming receiver panics the engine thread),
//! tokenization runs detached (the engine `expect`s its answer to be received), response channels are large
//! (a full channel stalls every sequence of the engine).

use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::sync::Mutex;

use async_trait::async_trait;
use either::Either;
use indexmap::IndexMap;
use mistralrs::core::{
    AutoDeviceMapParams, DeviceMapSetting, GGUFLoaderBuilder, GGUFSpecificConfig, MistralRsBuilder,
    RequestMessage, TokenizationRequest,
};
use mistralrs::{
    Constraint, DefaultSchedulerMethod, Device, MemoryGpuConfig, MessageContent, Model, ModelDType,
    NormalRequest, PagedAttentionConfig, PagedCacheType, Request, Response, SamplingParams,
    SchedulerConfig, StopTokens, TextModelBuilder, TokenSource,
};
use tokio::sync::mpsc;

use crate::config::{Dtype, GpuMemory, PagedAttention};

use super::{
    gguf, Engine, EngineError, EngineEvent, EngineFinish, EventStream, GenerationRequest,
    ModelInfo, Prompt, Submitted,
};

/// Buffer of each request's response channel: the engine awaits a full channel, stalling every sequence.
const RESPONSE_CHANNEL_CAPACITY: usize = 10_000;
/// Context length assumed when a model does not report one.
const FALLBACK_CONTEXT_LENGTH: usize = 4096;

/// Where the weights are, as the loader needs it.
#[derive(Debug, Clone)]
pub enum LoadTarget {
    /// GGUF file(s) in a local directory (several files = one split model).
    Gguf { dir: PathBuf, files: Vec<String> },
    /// A local safetensors model directory (`config.json`, `tokenizer.json`, weights).
    Safetensors(PathBuf),
    /// A Hugging Face repo id (needs hub access; `HF_TOKEN` for gated models).
    Hub(String),
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
                let text = TextLoad {
                    model_id: dir.display().to_string(),
                    token_source: TokenSource::None,
                };
                text.load(&options, template, paged, &device).await
            }
            // The hub needs a token for gated models (HF_TOKEN or the cached login).
            LoadTarget::Hub(repo) => {
                let text = TextLoad {
                    model_id: repo,
                    token_source: TokenSource::CacheToken,
                };
                text.load(&options, template, paged, &device).await
            }
        };
        let model = built.map_err(|e| EngineError::Load(format!("{e:#}")))?;
        let context_length = model
            .max_sequence_length()
            .ok()
            .flatten()
            .unwrap_or(FALLBACK_CONTEXT_LENGTH);
        Ok(MistralEngine {
            model,
            info: ModelInfo {
                context_length,
                accepts_images: false,
            },
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

/// A safetensors model, from a local directory or the hub, through the SDK's `TextModelBuilder`.
struct TextLoad {
    model_id: String,
    token_source: TokenSource,
}

impl TextLoad {
    async fn load(
        self,
        options: &LoadOptions,
        template: Option<String>,
        paged: Option<PagedAttentionConfig>,
        device: &Device,
    ) -> anyhow::Result<Model> {
        let prefix_cache_n = (options.prefix_cache_n > 0).then_some(options.prefix_cache_n);
        let mut builder = TextModelBuilder::new(self.model_id)
            .with_token_source(self.token_source)
            .with_dtype(model_dtype(options.dtype, device))
            .with_max_num_seqs(options.max_num_seqs)
            .with_prefix_cache_n(prefix_cache_n)
            .with_logging();
        if let Some(template) = template {
            builder = builder.with_chat_template(template);
        }
        if let Some(paged) = paged {
            builder = builder.with_paged_attn(paged);
        }
        builder.build().await
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
) -> anyhow::Result<Model> {
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
    Ok(Model::new(runner))
}

fn chat_messages(prompt: &Prompt) -> Either<Vec<IndexMap<String, MessageContent>>, String> {
    match prompt {
        Prompt::Chat(messages) => Either::Left(
            messages
                .iter()
                .map(|m| {
                    IndexMap::from([
                        (
                            "role".to_string(),
                            Either::Left(m.role.as_str().to_string()),
                        ),
                        ("content".to_string(), Either::Left(m.content.clone())),
                    ])
                })
                .collect(),
        ),
        Prompt::Text(text) => Either::Right(text.clone()),
    }
}

fn sampling_params(request: &GenerationRequest) -> SamplingParams {
    let s = &request.sampling;
    let mut params = SamplingParams::neutral();
    params.temperature = Some(s.temperature);
    params.top_p = s.top_p;
    params.top_k = s.top_k;
    params.min_p = s.min_p;
    params.presence_penalty = s.presence_penalty;
    params.frequency_penalty = s.frequency_penalty;
    params.repetition_penalty = s.repetition_penalty;
    params.max_len = Some(request.max_tokens);
    params.stop_toks = (!request.stop.is_empty()).then(|| StopTokens::Seqs(request.stop.clone()));
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
/// chunk's logprob carries the sampled token decoded untrimmed, which gives the whitespace back (byte-level
/// BPE tokenizers; a SentencePiece decoder strips it too, and then nothing changes).
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

/// Turns the engine's response channel into our events; dropping the stream drops the receiver, which the
/// engine notices at its next token and answers by cancelling the sequence.
fn event_stream(mut rx: mpsc::Receiver<Response>) -> EventStream {
    Box::pin(async_stream::stream! {
        let mut first_delta = true;
        while let Some(response) = rx.recv().await {
            match response {
                Response::Chunk(chunk) => {
                    let usage = chunk.usage.as_ref().map(|u| u.completion_tokens);
                    for choice in chunk.choices {
                        let text = choice.delta.content.unwrap_or_default();
                        yield Ok(EngineEvent::Text { text, tokens: 1 });
                        if let Some(reason) = choice.finish_reason {
                            yield finish_reason(&reason).map(|reason| EngineEvent::Finished {
                                reason,
                                completion_tokens: usage,
                            });
                            return;
                        }
                    }
                }
                Response::CompletionChunk(chunk) => {
                    for choice in chunk.choices {
                        let mut text = choice.text;
                        if std::mem::take(&mut first_delta) {
                            if let Some(bytes) = choice.logprobs.as_ref().and_then(|l| l.bytes.as_ref()) {
                                text = restore_leading_whitespace(text, &String::from_utf8_lossy(bytes));
                            }
                        }
                        yield Ok(EngineEvent::Text { text, tokens: 1 });
                        if let Some(reason) = choice.finish_reason {
                            yield finish_reason(&reason).map(|reason| EngineEvent::Finished {
                                reason,
                                completion_tokens: None,
                            });
                            return;
                        }
                    }
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
                _ => {}
            }
        }
        yield Err(EngineError::Internal("the engine dropped the sequence without finishing it".into()));
    })
}

#[async_trait]
impl Engine for MistralEngine {
    fn info(&self) -> &ModelInfo {
        &self.info
    }

    async fn count_prompt_tokens(&self, prompt: &Prompt) -> Result<usize, EngineError> {
        let sender = self.sender()?;
        let (tx, mut rx) = mpsc::channel(1);
        let request = Request::Tokenize(TokenizationRequest {
            text: chat_messages(prompt),
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
                Some(Ok(tokens)) => Ok(tokens.len()),
                Some(Err(e)) => Err(EngineError::Rejected(format!("{e:#}"))),
                None => Err(EngineError::Unavailable(
                    "engine dropped a tokenization request".into(),
                )),
            }
        });
        task.await
            .map_err(|e| EngineError::Internal(format!("tokenization task failed: {e}")))?
    }

    async fn generate(&self, request: GenerationRequest) -> Result<Submitted, EngineError> {
        let sender = self.sender()?;
        let (tx, rx) = mpsc::channel(RESPONSE_CHANNEL_CAPACITY);
        let weak = tx.downgrade();
        let messages = match chat_messages(&request.prompt) {
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
        // Completions ask for logprobs only to get the first token's untrimmed text (see above).
        let is_completion = matches!(request.prompt, Prompt::Text(_));
        let normal = NormalRequest {
            messages,
            sampling_params: sampling_params(&request),
            response: tx,
            return_logprobs: is_completion,
            is_streaming: true,
            id: 0,
            constraint: Constraint::None,
            suffix: None,
            tools: None,
            tool_choice: None,
            logits_processors: None,
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
            events: event_stream(rx),
            held: Box::new(move || weak.strong_count() > 0),
        })
    }

    fn sequences_alive(&self) -> usize {
        let mut submitted = self.submitted.lock().expect("submitted lock");
        submitted.retain(|weak| weak.strong_count() > 0);
        submitted.len()
    }
}

#[cfg(test)]
mod tests {
    use super::restore_leading_whitespace;

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
