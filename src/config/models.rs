//! What the model registry should hold: versions (a source and the engine settings to load it with) and
//! aliases (weights over versions). Made from the flags alone (one model, one version) or from the models
//! file ([`super::file`]); the registry applies one spec at start-up and the difference of the next on reload.

use std::path::PathBuf;

use super::keys::KeysSpec;
use super::{EngineSettings, ModelSource, PagedAttnMode, QueueConfig};
use crate::engine::settings::PagedAttention;

/// Separates a model's name from its version in a concrete id: `smollm2@v1`.
pub const VERSION_SEPARATOR: char = '@';

/// The registry's desired state.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelsSpec {
    /// In the order given: a model's first version is what its name routes to unless an alias says more.
    pub versions: Vec<VersionSpec>,
    /// Explicit aliases first, then each model's implicit one (its name → its first version).
    pub aliases: Vec<AliasSpec>,
    /// What a request without `model` gets: an alias name.
    pub default_alias: String,
    /// API keys (`[[keys]]`); none: the server is open.
    pub keys: KeysSpec,
}

/// One version of a model: where its weights come from and how its engine runs.
#[derive(Debug, Clone, PartialEq)]
pub struct VersionSpec {
    pub model: String,
    pub version: String,
    pub source: ModelSource,
    pub engine: EngineSettings,
    /// Its own admission queue (in front of `engine.max_num_seqs` slots).
    pub queue: QueueConfig,
    /// Why paged attention is on or off, for the load log.
    pub paged_attention_reason: &'static str,
}

impl VersionSpec {
    /// `model@version`: what clients send to reach this version alone, and what responses name.
    pub fn id(&self) -> String {
        version_id(&self.model, &self.version)
    }
}

pub fn version_id(model: &str, version: &str) -> String {
    format!("{model}{VERSION_SEPARATOR}{version}")
}

/// An alias: a name clients send, routed by weight to concrete versions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AliasSpec {
    pub name: String,
    /// `(version id, weight)`, weights ≥ 0 with a positive sum.
    pub weights: Vec<(String, u32)>,
}

/// What a version not stating its own settings gets: the flags.
#[derive(Debug, Clone)]
pub struct VersionDefaults {
    pub engine: EngineSettings,
    pub queue: QueueConfig,
    pub paged_mode: PagedAttnMode,
    /// Memory and block size of paged attention, wherever it is on.
    pub paged_settings: PagedAttention,
    /// Where a version without `source` finds (or fetches) the default model; `None`: no cache directory.
    pub cache_dir: Option<PathBuf>,
}

impl ModelsSpec {
    /// The flags' one model: `name` is its only alias, routed wholly to `name@version`.
    pub fn single(version: VersionSpec) -> Self {
        let alias = AliasSpec {
            name: version.model.clone(),
            weights: vec![(version.id(), 100)],
        };
        ModelsSpec {
            default_alias: alias.name.clone(),
            aliases: vec![alias],
            versions: vec![version],
            keys: KeysSpec::default(),
        }
    }

    pub fn version(&self, id: &str) -> Option<&VersionSpec> {
        self.versions.iter().find(|v| v.id() == id)
    }

    pub fn alias(&self, name: &str) -> Option<&AliasSpec> {
        self.aliases.iter().find(|a| a.name == name)
    }
}

#[cfg(test)]
impl VersionDefaults {
    /// CPU defaults for tests: 16 sequences, a queue of 64, no paged attention, cache in /tmp.
    pub fn for_tests() -> Self {
        use crate::engine::settings::{Dtype, GpuMemory};
        VersionDefaults {
            engine: EngineSettings {
                max_num_seqs: 16,
                prefix_cache_n: None,
                dtype: Dtype::Auto,
                paged_attention: None,
                chat_template: None,
                isq: None,
                max_image_pixels: None,
                max_images: crate::config::cli::DEFAULT_MAX_IMAGES,
                max_model_len: None,
            },
            queue: QueueConfig {
                max_waiting: 64,
                timeout: None,
            },
            paged_mode: PagedAttnMode::Off,
            paged_settings: PagedAttention {
                memory: GpuMemory::Utilization(0.9),
                block_size: 32,
            },
            cache_dir: Some("/tmp/cache".into()),
        }
    }
}
