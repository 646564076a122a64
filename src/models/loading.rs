//! Loading a model: the configured source turned into files the engine can open (fetching the default
//! model if needed), then the engine loaded on a blocking thread.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::config::ModelSource;
use crate::default_model;
use crate::engine::mistral::{LoadTarget, MistralEngine};
use crate::engine::settings::EngineSettings;
use crate::engine::{Engine, EngineError};

/// Loads the model on a blocking thread and hands the outcome to `loaded`. Loading blocks for seconds to
/// minutes (pip, requantization, mistral.rs's synchronous loader): it never runs on a server worker.
/// Call inside a tokio runtime.
pub fn load_in_background(
    source: ModelSource,
    settings: EngineSettings,
    loaded: impl FnOnce(Result<Arc<dyn Engine>, EngineError>) + Send + 'static,
) {
    let runtime = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || {
        let engine = resolve_target(&source).and_then(|target| {
            tracing::info!(?target, "model files found");
            runtime.block_on(MistralEngine::load(target, settings))
        });
        loaded(engine.map(|engine| Arc::new(engine) as Arc<dyn Engine>));
    });
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
