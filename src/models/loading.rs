//! Loading a version: the configured source turned into files the engine can open (fetching the default
//! model if needed), the engine loaded on a blocking thread, then warmed up with one short generation, so
//! that a version counts as ready only once it has generated.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};

use super::registry::Loader;
use crate::config::{ModelSource, VersionSpec};
use crate::default_model;
use crate::engine::mistral::{is_embedding_dir, LoadTarget, MistralEmbedder, MistralEngine};
use crate::engine::{
    EmbeddingInput, Engine, EngineError, EngineEvent, GenerationRequest, Prompt, Sampling,
};

/// Loads versions with mistral.rs.
pub struct MistralLoader;

impl Loader for MistralLoader {
    fn load(&self, spec: &VersionSpec) -> BoxFuture<'static, Result<Arc<dyn Engine>, EngineError>> {
        let (source, settings) = (spec.source.clone(), spec.engine.clone());
        async move {
            // Loading blocks for seconds to minutes (pip, requantization, mistral.rs's synchronous
            // loader): never on a server worker.
            let runtime = tokio::runtime::Handle::current();
            let engine = tokio::task::spawn_blocking(move || {
                let target = resolve_target(&source)?;
                tracing::info!(?target, "model files found");
                let engine: Arc<dyn Engine> = match target {
                    LoadTarget::Embedding(dir) => {
                        Arc::new(runtime.block_on(MistralEmbedder::load(dir, settings))?)
                    }
                    target => Arc::new(runtime.block_on(MistralEngine::load(target, settings))?),
                };
                Ok::<_, EngineError>(engine)
            })
            .await
            .map_err(|e| EngineError::Load(format!("the loading thread failed: {e}")))??;
            warm_up(engine.as_ref()).await?;
            Ok(engine)
        }
        .boxed()
    }
}

/// One token from a short prompt (one embedding, for an embedding model): the engine's thread runs, its
/// first forward pass has allocated what it needs, and a version that cannot serve fails here rather
/// than on a client's request.
pub async fn warm_up(engine: &dyn Engine) -> Result<(), EngineError> {
    if engine.info().embedding_dimensions.is_some() {
        let vectors = engine
            .embed(vec![EmbeddingInput::Text("Hello".into())])
            .await?;
        return match vectors.first() {
            Some(vector) if !vector.is_empty() => Ok(()),
            _ => Err(EngineError::Load(
                "the warm-up embedding came back empty".into(),
            )),
        };
    }
    let request = GenerationRequest::new(
        Prompt::Text("Hello".into()),
        Sampling::default(),
        1,
        Vec::new(),
    );
    let mut events = engine.generate(request).await?.events;
    while let Some(event) = events.next().await {
        if let EngineEvent::Finished { .. } = event? {
            return Ok(());
        }
    }
    Err(EngineError::Load(
        "the warm-up generation ended without finishing".into(),
    ))
}

/// Turns the configured source into files the loader can open, fetching the default model if needed.
fn resolve_target(source: &ModelSource) -> Result<LoadTarget, EngineError> {
    match source {
        ModelSource::Default { cache_dir } => gguf_file_target(&default_model::ensure(cache_dir)?),
        ModelSource::GgufFile(path) => gguf_file_target(path),
        ModelSource::LocalDir(dir) => local_dir_target(dir),
        ModelSource::HubRepo { repo, multimodal } => Ok(LoadTarget::Hub {
            repo: repo.clone(),
            multimodal: *multimodal,
        }),
    }
}

fn gguf_file_target(path: &Path) -> Result<LoadTarget, EngineError> {
    let path = path
        .canonicalize()
        .map_err(|e| EngineError::Load(format!("{}: {e}", path.display())))?;
    let dir = path
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("/"));
    let file = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .ok_or_else(|| EngineError::Load(format!("{}: not a file", path.display())))?;
    Ok(LoadTarget::Gguf {
        dir,
        files: vec![file],
    })
}

fn local_dir_target(dir: &Path) -> Result<LoadTarget, EngineError> {
    let entries =
        std::fs::read_dir(dir).map_err(|e| EngineError::Load(format!("{}: {e}", dir.display())))?;
    let mut ggufs: Vec<String> = entries
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| name.to_ascii_lowercase().ends_with(".gguf"))
        .collect();
    ggufs.sort();
    let is_split = |name: &str| name.contains("-of-");
    match ggufs.len() {
        0 if dir.join("config.json").is_file() && is_embedding_dir(dir) => {
            Ok(LoadTarget::Embedding(dir.to_path_buf()))
        }
        0 if dir.join("config.json").is_file() || dir.join("params.json").is_file() => {
            Ok(LoadTarget::Safetensors(dir.to_path_buf()))
        }
        0 => Err(EngineError::Load(format!(
            "{}: no .gguf file and no config.json: not a model directory",
            dir.display()
        ))),
        1 => gguf_file_target(&dir.join(&ggufs[0])),
        _ if ggufs.iter().all(|name| is_split(name)) => Ok(LoadTarget::Gguf {
            dir: dir.to_path_buf(),
            files: ggufs,
        }),
        _ => Err(EngineError::Load(format!(
            "{}: several GGUF files ({}); pass one with --model {}/FILE.gguf",
            dir.display(),
            ggufs.join(", "),
            dir.display()
        ))),
    }
}
