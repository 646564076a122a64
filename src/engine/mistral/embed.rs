//! Embedding models (sentence-transformers layouts mistral.rs 0.8.1 loads: EmbeddingGemma,
//! Qwen3-Embedding): loaded through the SDK's embedding builder, they embed and tokenize but never
//! generate.

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use either::Either;
use mistralrs::{EmbeddingModelBuilder, EmbeddingRequest, Model, TokenSource};
use serde_json::Value;

use super::load::model_dtype;
use crate::engine::settings::EngineSettings;
use crate::engine::{
    EmbeddingInput, Engine, EngineError, GenerationRequest, ModelInfo, OutputConstraint, Prompt,
    Submitted,
};

/// A loaded embedding model.
pub struct MistralEmbedder {
    model: Model,
    info: ModelInfo,
}

/// Whether a local model directory is an embedding model: sentence-transformers' `modules.json` (the
/// pooling and normalization after the transformer) says so, where the architecture name cannot
/// (Qwen3-Embedding names itself `Qwen3ForCausalLM`, as the generative Qwen3 does).
pub fn is_embedding_dir(dir: &Path) -> bool {
    dir.join("modules.json").is_file()
}

fn read_json(path: &Path) -> Result<Value, EngineError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| EngineError::Load(format!("{}: {e}", path.display())))?;
    serde_json::from_str(&text).map_err(|e| EngineError::Load(format!("{}: {e}", path.display())))
}

/// The embedding width: the last dense layer's output, else the transformer's hidden size.
fn dimensions(dir: &Path, config: &Value) -> Result<usize, EngineError> {
    let modules = read_json(&dir.join("modules.json"))?;
    let mut width = config["hidden_size"].as_u64();
    for module in modules.as_array().into_iter().flatten() {
        if module["type"]
            .as_str()
            .is_some_and(|t| t.ends_with(".Dense"))
        {
            let path = module["path"].as_str().unwrap_or_default();
            width = read_json(&dir.join(path).join("config.json"))?["out_features"].as_u64();
        }
    }
    width
        .map(|w| w as usize)
        .ok_or_else(|| EngineError::Load(format!("{}: no hidden_size", dir.display())))
}

impl MistralEmbedder {
    /// Loads the model. Slow and partly synchronous: call it off the HTTP workers.
    pub async fn load(dir: PathBuf, options: EngineSettings) -> Result<Self, EngineError> {
        let config = read_json(&dir.join("config.json"))?;
        let dimensions = dimensions(&dir, &config)?;
        let device = mistralrs::best_device(false).map_err(|e| EngineError::Load(e.to_string()))?;
        tracing::info!(dir = %dir.display(), dimensions, "loading an embedding model");
        let model = EmbeddingModelBuilder::new(dir.display().to_string())
            .with_token_source(TokenSource::None)
            .with_dtype(model_dtype(options.dtype, &device))
            .with_max_num_seqs(options.max_num_seqs)
            .with_logging()
            .build()
            .await
            .map_err(|e| EngineError::Load(format!("{e:#}")))?;
        let field = |name: &str| config[name].as_u64().map(|v| v as usize);
        Ok(MistralEmbedder {
            model,
            info: ModelInfo {
                context_length: field("max_position_embeddings")
                    .unwrap_or(super::FALLBACK_CONTEXT_LENGTH),
                accepts_images: false,
                chat_template: false,
                max_images: 8,
                vocab_size: field("vocab_size").unwrap_or(0),
                fill_in_middle: None,
                embedding_dimensions: Some(dimensions),
                // Its vocabulary is not read here: inputs are bounded by counting them.
                max_token_bytes: 0,
            },
        })
    }

    fn refused(&self) -> EngineError {
        EngineError::Rejected("this is an embedding model: it serves POST /v1/embeddings".into())
    }
}

#[async_trait]
impl Engine for MistralEmbedder {
    fn info(&self) -> &ModelInfo {
        &self.info
    }

    /// A text's tokens as the embedding pipeline reads them (special tokens included).
    async fn tokenize(&self, prompt: &Prompt) -> Result<Vec<u32>, EngineError> {
        let Prompt::Text(text) = prompt else {
            return Err(self.refused());
        };
        let sender = self
            .model
            .inner()
            .get_sender(None)
            .map_err(|e| EngineError::Unavailable(e.to_string()))?;
        super::tokenize_on(sender, Either::Right(text.clone()), false).await
    }

    fn detokenize(&self, _: &[u32]) -> Result<String, EngineError> {
        Err(self.refused())
    }

    fn check_constraint(&self, _: &OutputConstraint) -> Result<(), EngineError> {
        Err(self.refused())
    }

    async fn generate(&self, _: GenerationRequest) -> Result<Submitted, EngineError> {
        Err(self.refused())
    }

    fn sequences_alive(&self) -> usize {
        0
    }

    async fn embed(&self, inputs: Vec<EmbeddingInput>) -> Result<Vec<Vec<f32>>, EngineError> {
        let mut request = EmbeddingRequest::builder();
        for input in inputs {
            request = match input {
                EmbeddingInput::Text(text) => request.add_prompt(text),
                EmbeddingInput::Tokens(tokens) => request.add_tokens(tokens),
            };
        }
        self.model
            .generate_embeddings(request)
            .await
            .map_err(|e| EngineError::Internal(format!("embedding failed: {e}")))
    }
}
