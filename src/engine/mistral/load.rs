//! Loading: GGUF files through the GGUF loader (with the dtype the SDK builder does not expose), safetensors
//! directories and hub repos through the text or multimodal builder, then what our layer needs to know of
//! the tokenizer.

use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use mistralrs::core::{
    AutoDeviceMapParams, DeviceMapSetting, GGUFLoaderBuilder, GGUFSpecificConfig, MistralRsBuilder,
    ModelCategory, MultimodalPromptPrefixer, Pipeline, SupportedModality,
};
use mistralrs::llguidance::toktrie::TokTrie;
use mistralrs::model_builder_trait::{
    build_model_from_pipeline, build_multimodal_pipeline, build_text_pipeline,
};
use mistralrs::{
    DefaultSchedulerMethod, Device, IsqType, MemoryGpuConfig, Model, ModelDType,
    MultimodalLoaderType, MultimodalModelBuilder, PagedAttentionConfig, PagedCacheType,
    SchedulerConfig, TextModelBuilder, TokenSource,
};
use serde_json::Value;

use crate::engine::settings::{Dtype, EngineSettings, GpuMemory, Isq, PagedAttention};
use crate::engine::vocab::{Piece, Vocabulary};
use crate::engine::{gguf, EngineError, ModelInfo};

use super::pixel_images::{self, PixelSizedImages};
use super::{GrammarFactory, MistralEngine, FALLBACK_CONTEXT_LENGTH};

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
    /// A local sentence-transformers embedding model directory (`modules.json` beside `config.json`).
    Embedding(PathBuf),
}

impl MistralEngine {
    /// Loads the model. Slow and partly synchronous: call it off the HTTP workers.
    pub async fn load(target: LoadTarget, options: EngineSettings) -> Result<Self, EngineError> {
        let template = options
            .chat_template
            .as_ref()
            .map(|p| p.display().to_string());
        let device = mistralrs::best_device(false).map_err(|e| EngineError::Load(e.to_string()))?;
        let paged = paged_attention_config(options.paged_attention)
            .map_err(|e| EngineError::Load(format!("{e:#}")))?;
        // Where a safetensors checkpoint's own files are (a directory, or the repo in the hub cache).
        let model_id = match &target {
            LoadTarget::Safetensors(dir) => Some(dir.display().to_string()),
            LoadTarget::Hub { repo, .. } => Some(repo.clone()),
            LoadTarget::Gguf { .. } | LoadTarget::Embedding(_) => None,
        };
        let built = match target {
            LoadTarget::Gguf { dir, files } => {
                let mut packs_prompts = true;
                for file in &files {
                    let path = dir.join(file);
                    let architecture = gguf::check_architecture(&path)?;
                    packs_prompts &= gguf::PACKED_PROMPT_ARCHITECTURES
                        .contains(&architecture.to_ascii_lowercase().as_str());
                    let dtype = gguf::dominant_dtype(&path)?;
                    tracing::info!(path = %path.display(), architecture, quantization = ?dtype, "loading GGUF");
                    if dtype == candle_core::quantized::GgmlDType::Q4_1 {
                        tracing::warn!(
                            "Q4_1 has no SIMD kernel in candle: expect ~3x slower decoding than Q8_0 or Q4_0"
                        );
                    }
                }
                let prefix_cache_n = options.prefix_cache_entries(packs_prompts);
                tracing::info!(prefix_cache_n, "prefix cache");
                load_gguf(dir, files, &options, prefix_cache_n, template).await
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
            LoadTarget::Embedding(dir) => {
                return Err(EngineError::Load(format!(
                    "{}: an embedding model loads with MistralEmbedder",
                    dir.display()
                )))
            }
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
        let processor_tokens: Vec<&str> =
            tokens.processor_tokens.iter().map(String::as_str).collect();
        let pixel_images = PixelSizedImages::detect(
            &processor_tokens,
            tokens.image_placeholder,
            model_id
                .as_deref()
                .and_then(PixelSizedImages::preprocessor_json)
                .as_deref(),
            options.max_image_pixels,
        )?;
        if options.max_image_pixels.is_some() && pixel_images.is_none() {
            tracing::warn!("--max-image-pixels applies only to models that size images by pixel count (GLM-4.1V)");
        }
        let context_length = model
            .max_sequence_length()
            .ok()
            .flatten()
            .unwrap_or(FALLBACK_CONTEXT_LENGTH)
            .min(options.max_model_len.unwrap_or(usize::MAX));
        Ok(MistralEngine {
            model,
            info: ModelInfo {
                context_length,
                accepts_images: tokens.accepts_images,
                chat_template: tokens.chat_template,
                max_images: options.max_images,
                vocab_size: tokens.vocabulary.len(),
                fill_in_middle: tokens.vocabulary.fill_in_middle(),
                embedding_dimensions: None,
                max_token_bytes: tokens.vocabulary.longest_piece_bytes(),
            },
            vocabulary: Arc::new(tokens.vocabulary),
            grammars: tokens.grammars,
            unlisted_ends: tokens.unlisted_ends,
            prefixer: tokens.prefixer,
            pixel_images,
            submitted: Mutex::new(Vec::new()),
        })
    }
}

/// `auto` means f32 on CPU: mistral.rs's own auto picks f16 there, whose emulated CPU kernels make prefill
/// several times slower. On GPUs its choice (bf16/f16) stands.
pub(super) fn model_dtype(dtype: Dtype, device: &Device) -> ModelDType {
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
pub(super) fn multimodal_architecture(
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
pub(super) struct SafetensorsLoad {
    model_id: String,
    token_source: TokenSource,
    /// `Some` for a multimodal model, with its architecture when known.
    multimodal: Option<Option<MultimodalLoaderType>>,
}

impl SafetensorsLoad {
    async fn load(
        self,
        options: &EngineSettings,
        template: Option<String>,
        paged: Option<PagedAttentionConfig>,
        device: &Device,
    ) -> anyhow::Result<(Model, ModelTokens)> {
        let prefix_cache_n = options.prefix_cache_entries(false);
        let prefix_cache_n = (prefix_cache_n > 0).then_some(prefix_cache_n);
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
                if let Some(isq) = options.isq {
                    builder = builder.with_isq(isq_type(isq));
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
                if let Some(isq) = options.isq {
                    builder = builder.with_isq(isq_type(isq));
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
pub(super) struct ModelTokens {
    vocabulary: Vocabulary,
    grammars: Option<GrammarFactory>,
    /// End tokens the model's metadata does not list (the tokenizer's own, e.g. `<|endoftext|>` beside
    /// the chat template's `<|im_end|>`), by name: a grammar ends by forcing one of them, and the engine
    /// would otherwise go on generating it until `max_tokens`.
    unlisted_ends: Vec<String>,
    /// Whether the model takes images, and how it marks them in a prompt.
    accepts_images: bool,
    /// Whether the pipeline has a chat template to render messages with.
    chat_template: bool,
    prefixer: Option<Arc<dyn MultimodalPromptPrefixer>>,
    /// The special tokens of the model's prompt processor (GLM-4.1V's image markers, for one).
    processor_tokens: Vec<String>,
    /// The id of GLM's `<|image|>` placeholder, when the vocabulary has one.
    image_placeholder: Option<u32>,
}

impl ModelTokens {
    async fn of<P: Pipeline + ?Sized>(pipeline: &tokio::sync::Mutex<P>) -> anyhow::Result<Self> {
        let (metadata, category, processor_tokens, chat_template) = {
            let pipeline = pipeline.lock().await;
            let processor = pipeline.get_processor();
            let tokens: Vec<String> = processor
                .get_special_tokens()
                .iter()
                .map(|t| t.to_string())
                .collect();
            let chat_template = pipeline
                .get_chat_template()
                .is_some_and(|template| template.has_chat_template());
            (
                pipeline.get_metadata(),
                pipeline.category(),
                tokens,
                chat_template,
            )
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
        let image_placeholder = (0..trie.vocab_size() as u32).find(|&token| {
            matches!(trie.token(token), [TokTrie::SPECIAL_TOKEN_MARKER, name @ ..]
                if name == pixel_images::PLACEHOLDER.as_bytes())
        });
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
            chat_template,
            prefixer,
            processor_tokens,
            image_placeholder,
        })
    }
}

/// mistral.rs's ISQ type for ours.
fn isq_type(isq: Isq) -> IsqType {
    match isq {
        Isq::Q8_0 => IsqType::Q8_0,
        Isq::Q4K => IsqType::Q4K,
        Isq::Q6K => IsqType::Q6K,
    }
}

/// mistral.rs's paged-attention settings; the SDK default pool (4096 tokens in all) is far too small to serve.
pub(super) fn paged_attention_config(
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
pub(super) async fn load_gguf(
    dir: PathBuf,
    files: Vec<String>,
    options: &EngineSettings,
    prefix_cache_n: usize,
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
        .with_no_prefix_cache(prefix_cache_n == 0)
        .with_prefix_cache_n(prefix_cache_n)
        .build()
        .await;
    Ok((Model::new(runner), tokens))
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
