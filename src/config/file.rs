//! The models file (`--config llmserve.toml`): models with their versions, weighted aliases, the default
//! model; read and checked whole into a [`ModelsSpec`], so that a file that does not parse or validate
//! changes nothing (at start-up the server does not start; on reload it keeps serving the old spec).
//!
//! ```toml
//! default_model = "chat"            # optional: what a request without `model` gets (default: the first model)
//!
//! [[models]]
//! name = "smollm2"
//! [[models.versions]]
//! version = "v1"
//! source = "/models/SmolLM2-135M-Instruct.Q8_0.gguf"   # a .gguf, a directory, or a hub repo id
//! max_num_seqs = 8                  # optional per version: dtype, max_num_seqs, max_queue, queue_timeout,
//! [[models.versions]]               #   paged_attn, chat_template, multimodal, isq, max_image_pixels,
//!                                   #   max_images, max_model_len
//! version = "v2"
//! source = "/models/SmolLM2-135M-Instruct.Q4_0.gguf"
//!
//! [aliases]
//! chat = { "smollm2@v1" = 95, "smollm2@v2" = 5 }
//! ```
//! A model's name is itself an alias of its first version unless `[aliases]` names it. Relative paths are
//! read from the file's directory. A version without `source` is the built-in default model.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::keys::{keys_spec, KeyFields, Limits};
use super::models::{version_id, AliasSpec, ModelsSpec, VersionDefaults, VersionSpec};
pub use super::names::check_name;
use super::VERSION_SEPARATOR;
use super::{classify_model, paged_attention, ConfigError, Dtype, Isq, ModelSource, PagedAttnMode};

/// Why a models file (or an admin request that adds a version) was refused.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum ModelsFileError {
    #[error("{path}: {reason}")]
    Read { path: String, reason: String },
    #[error("{path}: {reason}")]
    Parse { path: String, reason: String },
    #[error("{0}")]
    Invalid(String),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileRoot {
    #[serde(default)]
    default_model: Option<String>,
    #[serde(default)]
    models: Vec<FileModel>,
    #[serde(default)]
    aliases: BTreeMap<String, BTreeMap<String, u32>>,
    #[serde(default)]
    keys: Vec<KeyFields>,
    #[serde(default)]
    roles: BTreeMap<String, Vec<String>>,
    /// Every key's limits unless it sets its own.
    #[serde(default)]
    limits: Limits,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileModel {
    name: String,
    #[serde(default)]
    versions: Vec<VersionFields>,
}

/// One version as the models file's `[[models.versions]]` (and the body of
/// `POST /admin/models/{model}/versions`) states it; what it leaves out comes from the flags.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"version": "v2", "source": "/models/SmolLM2-135M-Instruct.Q4_0.gguf"}))]
pub struct VersionFields {
    /// The version's name: clients reach it alone as `model@version`.
    #[schema(min_length = 1, max_length = 128, pattern = "^[A-Za-z0-9._:/-]+$")]
    pub version: String,
    /// A `.gguf` file, a model directory or a Hugging Face repo id; absent: the built-in default model.
    /// Relative paths: from the models file's directory (from the server's working directory when
    /// sent to the admin API).
    #[serde(default)]
    pub source: Option<String>,
    /// Load a hub repo with the multimodal (vision) loader.
    #[serde(default)]
    pub multimodal: bool,
    /// `auto`, `f32`, `f16` or `bf16` (`--dtype`).
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub dtype: Option<Dtype>,
    /// Sequences generated at once (`--max-num-seqs`).
    #[serde(default)]
    #[schema(minimum = 1)]
    pub max_num_seqs: Option<usize>,
    /// Requests that may wait for a slot (`--max-queue`).
    #[serde(default)]
    pub max_queue: Option<usize>,
    /// Seconds a request may wait for a slot (`--queue-timeout`).
    #[serde(default)]
    #[schema(minimum = 1)]
    pub queue_timeout: Option<u64>,
    /// `auto`, `on` or `off` (`--paged-attn`).
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub paged_attn: Option<PagedAttnMode>,
    /// A `.jinja` or `.json` chat template instead of the model's own.
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub chat_template: Option<PathBuf>,
    /// `q8_0`, `q4k` or `q6k`: quantize a safetensors model while it loads (`--isq`).
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub isq: Option<Isq>,
    /// The most pixels an image is resized to (`--max-image-pixels`, vLLM's `max_pixels`).
    #[serde(default)]
    pub max_image_pixels: Option<u64>,
    /// Images one request may carry (`--max-images`).
    #[serde(default)]
    #[schema(minimum = 1)]
    pub max_images: Option<usize>,
    /// Prompt + completion tokens a request may use (`--max-model-len`).
    #[serde(default)]
    #[schema(minimum = 1)]
    pub max_model_len: Option<usize>,
}

/// Reads and checks the models file.
pub fn read(path: &Path, defaults: &VersionDefaults) -> Result<ModelsSpec, ModelsFileError> {
    let text = std::fs::read_to_string(path).map_err(|e| ModelsFileError::Read {
        path: path.display().to_string(),
        reason: e.to_string(),
    })?;
    let base = path.parent().unwrap_or(Path::new("."));
    parse(&text, base, defaults).map_err(|error| match error {
        ModelsFileError::Parse { reason, .. } => ModelsFileError::Parse {
            path: path.display().to_string(),
            reason,
        },
        ModelsFileError::Invalid(reason) => {
            ModelsFileError::Invalid(format!("{}: {reason}", path.display()))
        }
        other => other,
    })
}

/// Parses and checks a models file's text; relative paths are taken from `base`.
pub fn parse(
    text: &str,
    base: &Path,
    defaults: &VersionDefaults,
) -> Result<ModelsSpec, ModelsFileError> {
    let root: FileRoot = toml::from_str(text).map_err(|e| ModelsFileError::Parse {
        path: "models file".into(),
        reason: e.to_string().trim_end().replace('\n', " "),
    })?;
    let invalid = |reason: String| ModelsFileError::Invalid(reason);
    if root.models.is_empty() {
        return Err(invalid("no `[[models]]`: name at least one model".into()));
    }
    let mut versions = Vec::new();
    let mut model_names = HashSet::new();
    for model in &root.models {
        check_name("model name", &model.name).map_err(invalid)?;
        if !model_names.insert(model.name.as_str()) {
            return Err(invalid(format!("model `{}` is listed twice", model.name)));
        }
        if model.versions.is_empty() {
            return Err(invalid(format!(
                "model `{}` has no `[[models.versions]]`",
                model.name
            )));
        }
        let mut seen = HashSet::new();
        for fields in &model.versions {
            if !seen.insert(fields.version.as_str()) {
                return Err(invalid(format!(
                    "`{}` is listed twice",
                    version_id(&model.name, &fields.version)
                )));
            }
            versions.push(version_spec(&model.name, fields, base, defaults)?);
        }
    }
    let mut aliases = Vec::new();
    for (name, weights) in &root.aliases {
        check_name("alias", name).map_err(invalid)?;
        let weights: Vec<(String, u32)> = weights
            .iter()
            .map(|(id, weight)| (id.clone(), *weight))
            .collect();
        check_weights(name, &weights, |id| versions.iter().any(|v| v.id() == id))
            .map_err(invalid)?;
        aliases.push(AliasSpec {
            name: name.clone(),
            weights,
        });
    }
    for model in &root.models {
        if !root.aliases.contains_key(&model.name) {
            aliases.push(AliasSpec {
                name: model.name.clone(),
                weights: vec![(version_id(&model.name, &model.versions[0].version), 100)],
            });
        }
    }
    let default_alias = match root.default_model {
        Some(name) if aliases.iter().any(|a| a.name == name) => name,
        Some(name) => {
            return Err(invalid(format!(
                "`default_model = \"{name}\"` names no model or alias"
            )))
        }
        None => root.models[0].name.clone(),
    };
    let keys = keys_spec(&root.keys, &root.roles, root.limits, |var| {
        std::env::var(var).ok()
    })
    .map_err(invalid)?;
    for key in &keys.keys {
        for model in key.models.iter().flatten() {
            if !aliases.iter().any(|a| &a.name == model) {
                return Err(invalid(format!(
                    "key `{}`: `{model}` is no model or alias of this file",
                    key.id
                )));
            }
        }
    }
    Ok(ModelsSpec {
        versions,
        aliases,
        default_alias,
        keys,
    })
}

/// An alias's weights: known version ids, none negative, a positive sum.
pub fn check_weights(
    alias: &str,
    weights: &[(String, u32)],
    known: impl Fn(&str) -> bool,
) -> Result<(), String> {
    if weights.is_empty() || weights.iter().all(|(_, w)| *w == 0) {
        return Err(format!(
            "alias `{alias}` needs at least one version with a weight above 0"
        ));
    }
    for (id, _) in weights {
        if !id.contains(VERSION_SEPARATOR) {
            return Err(format!(
                "alias `{alias}`: `{id}` is not a version id (write `model{VERSION_SEPARATOR}version`)"
            ));
        }
        if !known(id) {
            return Err(format!("alias `{alias}`: no version `{id}`"));
        }
    }
    Ok(())
}

/// A version's fields resolved against the flags' defaults and checked like the flags are.
pub fn version_spec(
    model: &str,
    fields: &VersionFields,
    base: &Path,
    defaults: &VersionDefaults,
) -> Result<VersionSpec, ModelsFileError> {
    let id = version_id(model, &fields.version);
    let invalid = |reason: String| ModelsFileError::Invalid(format!("`{id}`: {reason}"));
    check_name("version", &fields.version).map_err(ModelsFileError::Invalid)?;
    let source = match &fields.source {
        None => ModelSource::Default {
            cache_dir: defaults
                .cache_dir
                .clone()
                .ok_or_else(|| invalid(ConfigError::NoCacheDir.to_string()))?,
        },
        Some(source) => {
            let local = base.join(source);
            let found = if local.exists() {
                classify_model(&local.to_string_lossy(), fields.multimodal)
            } else {
                classify_model(source, fields.multimodal)
            };
            found.map_err(|_| {
                invalid(format!(
                    "source `{source}`: no such file or directory (and not a Hugging Face repo id)"
                ))
            })?
        }
    };
    let mut engine = defaults.engine.clone();
    if let Some(dtype) = fields.dtype {
        engine.dtype = dtype;
    }
    if let Some(seqs) = fields.max_num_seqs {
        if seqs == 0 {
            return Err(invalid(ConfigError::ZeroMaxNumSeqs.to_string()));
        }
        engine.max_num_seqs = seqs;
    }
    if let Some(template) = &fields.chat_template {
        let template = base.join(template);
        super::check_chat_template(&template).map_err(|e| invalid(e.to_string()))?;
        engine.chat_template = Some(template);
    }
    if let Some(isq) = fields.isq {
        engine.isq = Some(isq);
    }
    if let Some(pixels) = fields.max_image_pixels {
        engine.max_image_pixels = Some(pixels);
    }
    if let Some(images) = fields.max_images {
        engine.max_images = images;
    }
    super::check_image_limits(engine.max_image_pixels, engine.max_images)
        .map_err(|e| invalid(e.to_string()))?;
    match fields.max_model_len {
        Some(0) => return Err(invalid(ConfigError::ZeroMaxModelLen.to_string())),
        Some(len) => engine.max_model_len = Some(len),
        None => {}
    }
    let mode = fields.paged_attn.unwrap_or(defaults.paged_mode);
    let (paged, paged_attention_reason) =
        paged_attention(mode, defaults.paged_settings).map_err(|e| invalid(e.to_string()))?;
    engine.paged_attention = paged;
    let mut queue = defaults.queue;
    if let Some(waiting) = fields.max_queue {
        queue.max_waiting = waiting;
    }
    match fields.queue_timeout {
        Some(0) => return Err(invalid(ConfigError::ZeroQueueTimeout.to_string())),
        Some(secs) => queue.timeout = Some(Duration::from_secs(secs)),
        None => {}
    }
    Ok(VersionSpec {
        model: model.to_string(),
        version: fields.version.clone(),
        source,
        engine,
        queue,
        paged_attention_reason,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn defaults() -> VersionDefaults {
        VersionDefaults::for_tests()
    }

    fn parsed(text: &str) -> Result<ModelsSpec, ModelsFileError> {
        // `Cargo.toml` stands in for a model file: sources only need to exist here.
        parse(text, Path::new(env!("CARGO_MANIFEST_DIR")), &defaults())
    }

    const TWO_VERSIONS: &str = r#"
        [[models]]
        name = "smollm2"
        [[models.versions]]
        version = "v1"
        source = "Cargo.toml"
        [[models.versions]]
        version = "v2"
        source = "Cargo.toml"
        max_num_seqs = 4
        max_queue = 2
        queue_timeout = 9
        dtype = "f16"

        [aliases]
        chat = { "smollm2@v1" = 95, "smollm2@v2" = 5 }
    "#;

    #[test]
    fn the_documented_shape_parses_with_per_version_settings_and_an_implicit_alias() {
        let spec = parsed(TWO_VERSIONS).unwrap();
        let ids: Vec<String> = spec.versions.iter().map(VersionSpec::id).collect();
        assert_eq!(ids, ["smollm2@v1", "smollm2@v2"]);
        let v1 = spec.version("smollm2@v1").unwrap();
        assert_eq!(v1.engine.max_num_seqs, 16);
        assert!(matches!(v1.source, ModelSource::GgufFile(_)));
        let v2 = spec.version("smollm2@v2").unwrap();
        assert_eq!(v2.engine.max_num_seqs, 4);
        assert_eq!(v2.engine.dtype, Dtype::F16);
        assert_eq!(v2.queue.max_waiting, 2);
        assert_eq!(v2.queue.timeout, Some(Duration::from_secs(9)));
        assert_eq!(
            spec.alias("chat").unwrap().weights,
            vec![("smollm2@v1".into(), 95), ("smollm2@v2".into(), 5)]
        );
        // The model's own name routes to its first version.
        assert_eq!(
            spec.alias("smollm2").unwrap().weights,
            vec![("smollm2@v1".into(), 100)]
        );
        assert_eq!(spec.default_alias, "smollm2");
    }

    #[test]
    fn a_version_without_source_is_the_default_model() {
        let spec =
            parsed("[[models]]\nname = \"m\"\n[[models.versions]]\nversion = \"a\"\n").unwrap();
        assert_eq!(
            spec.versions[0].source,
            ModelSource::Default {
                cache_dir: "/tmp/cache".into()
            }
        );
    }

    #[test]
    fn broken_files_are_refused_with_the_reason() {
        let cases = [
            ("models = 3", "invalid type"),
            ("[[models]]\nname = \"m\"\n", "has no `[[models.versions]]`"),
            ("", "name at least one model"),
            (
                "[[models]]\nname = \"m\"\n[[models.versions]]\nversion = \"a\"\nsource = \"/no/such.gguf\"\n",
                "no such file",
            ),
            (
                "[[models]]\nname = \"m\"\n[[models.versions]]\nversion = \"a\"\n[aliases]\nx = { \"m@b\" = 1 }\n",
                "no version `m@b`",
            ),
            (
                "[[models]]\nname = \"m\"\n[[models.versions]]\nversion = \"a\"\n[aliases]\nx = { \"m@a\" = 0 }\n",
                "above 0",
            ),
            (
                "[[models]]\nname = \"m\"\n[[models.versions]]\nversion = \"a\"\nmax_num_seqs = 0\n",
                "--max-num-seqs must be at least 1",
            ),
            (
                "[[models]]\nname = \"m@x\"\n[[models.versions]]\nversion = \"a\"\n",
                "must be 1–128 characters",
            ),
            (
                "[[models]]\nname = \"m\"\n[[models.versions]]\nversion = \"a\"\n[[models.versions]]\nversion = \"a\"\n",
                "`m@a` is listed twice",
            ),
            (
                "[[models]]\nname = \"m\"\n[[models.versions]]\nversion = \"a\"\nnot_a_field = 1\n",
                "unknown field",
            ),
            (
                "default_model = \"nope\"\n[[models]]\nname = \"m\"\n[[models.versions]]\nversion = \"a\"\n",
                "names no model or alias",
            ),
        ];
        for (text, reason) in cases {
            let error = parsed(text).unwrap_err().to_string();
            assert!(error.contains(reason), "{text:?}: {error}");
        }
    }

    #[test]
    fn an_alias_may_take_over_a_model_name() {
        let spec = parsed(&TWO_VERSIONS.replace("chat =", "smollm2 =")).unwrap();
        assert_eq!(spec.aliases.len(), 1);
        assert_eq!(spec.alias("smollm2").unwrap().weights.len(), 2);
    }
}
