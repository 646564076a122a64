//! Command-line flags, each also an `LLMSERVE_*` environment variable, checked once into a
//! [`Config`](super::Config).
//!
//! The checking itself (`Cli::into_config`) is in `from_flags.rs`.

use std::net::IpAddr;
use std::path::PathBuf;

use clap::Parser;

use super::{CpuKernels, Dtype, Isq, LogFormat, PagedAttnMode, ResponsesBackend};

/// Largest request body accepted before answering 413; chat histories with a few base64 screenshots fit.
pub const DEFAULT_MAX_REQUEST_BODY_BYTES: usize = 16 * 1024 * 1024;
/// Seconds a request body gets before the deadline (`--body-read-timeout`), plus one per
/// [`DEFAULT_BODY_MIN_RATE`] bytes received.
pub const DEFAULT_BODY_READ_TIMEOUT_SECS: u64 = 10;
/// 64 KiB/s: a phone on a poor uplink still sends a 1 MB screenshot well inside its deadline.
pub const DEFAULT_BODY_MIN_RATE: usize = 64 * 1024;
/// Sequences the engine runs at once (mistral.rs server's own default).
pub const DEFAULT_MAX_NUM_SEQS: usize = 16;
/// Images per request unless `--max-images` says otherwise.
pub const DEFAULT_MAX_IMAGES: usize = 8;
/// Requests that may wait for a free sequence slot before new ones get 429.
pub const DEFAULT_MAX_QUEUE: usize = 64;
/// Seconds in-flight requests get to finish after SIGTERM.
pub const DEFAULT_DRAIN_TIMEOUT_SECS: u64 = 30;
/// Seconds between SSE keep-alive comments on an otherwise silent stream (proxies cut ~60 s of silence).
pub const DEFAULT_SSE_KEEP_ALIVE_SECS: u64 = 5;
pub const DEFAULT_PORT: u16 = 8080;
/// The prefix cache's KV budget without paged attention.
pub const DEFAULT_PREFIX_CACHE_MIB: usize = 1024;
/// Seconds between checks of the models file (a ConfigMap update reaches a pod within about a minute).
pub const DEFAULT_CONFIG_POLL_SECS: u64 = 10;

/// llmserve: an OpenAI-compatible LLM server on mistral.rs.
///
/// With no --model it serves SmolLM2-135M-Instruct, fetched once into the cache directory.
#[derive(Debug, Clone, Parser)]
#[command(name = "llmserve", version, about, long_about = None)]
pub struct Cli {
    /// Models file (TOML): several models and versions, weighted aliases, per-version settings; read
    /// again on SIGHUP and `POST /admin/reload` (README, "Many models and versions"). Without it the
    /// flags below name the one model; with it, leave out --model, --multimodal, --served-model-name and
    /// --model-version (the other flags become every version's defaults).
    #[arg(long = "config", env = "LLMSERVE_CONFIG")]
    pub models_file: Option<PathBuf>,

    /// Seconds between checks of the models file's content; a changed file is applied as on SIGHUP (a
    /// Kubernetes ConfigMap mounted as a directory changes under a running pod). 0: only SIGHUP and
    /// `POST /admin/reload` reload it.
    #[arg(long = "config-poll", env = "LLMSERVE_CONFIG_POLL", default_value_t = DEFAULT_CONFIG_POLL_SECS)]
    pub models_file_poll: u64,

    /// Model to serve: a `.gguf` file, a local model directory (GGUF or safetensors), or a Hugging Face
    /// repo id (needs hub access). Default: SmolLM2-135M-Instruct, fetched into --cache-dir when absent.
    #[arg(long, env = "LLMSERVE_MODEL")]
    pub model: Option<String>,

    /// Load a Hugging Face repo id with mistral.rs's multimodal loader (vision models such as SmolVLM or
    /// Qwen2.5-VL). A local directory needs no flag: its `config.json` names the architecture.
    #[arg(long, env = "LLMSERVE_MULTIMODAL", action = clap::ArgAction::SetTrue)]
    pub multimodal: bool,

    /// Model id that clients send in `model` and see in `/v1/models`. Default: derived from the file or
    /// directory name (e.g. `SmolLM2-135M-Instruct`), or the repo id.
    #[arg(long, env = "LLMSERVE_SERVED_MODEL_NAME")]
    pub served_model_name: Option<String>,

    /// Version of the served model, for the `model_version` label of metrics and the request log (a
    /// canary and its stable release share a name and differ here). Default: the file or directory name,
    /// or the repo id (e.g. `SmolLM2-135M-Instruct.Q8_0.gguf`).
    #[arg(long, env = "LLMSERVE_MODEL_VERSION")]
    pub model_version: Option<String>,

    /// Address to bind. Keep 127.0.0.1 unless the server sits behind something that authenticates.
    #[arg(long, env = "LLMSERVE_HOST", default_value = "127.0.0.1")]
    pub host: IpAddr,

    /// Port to bind; 0 picks a free port (the log says which).
    #[arg(long, env = "LLMSERVE_PORT", default_value_t = DEFAULT_PORT)]
    pub port: u16,

    /// Most sequences the engine generates at once; further requests wait in the engine's queue.
    #[arg(long, env = "LLMSERVE_MAX_NUM_SEQS", default_value_t = DEFAULT_MAX_NUM_SEQS)]
    pub max_num_seqs: usize,

    /// Requests that may wait for a free slot (beyond --max-num-seqs running); more get 429 with Retry-After.
    #[arg(long, env = "LLMSERVE_MAX_QUEUE", default_value_t = DEFAULT_MAX_QUEUE)]
    pub max_queue: usize,

    /// Seconds a request may wait in the queue before it gets 503 with Retry-After (no limit when unset).
    #[arg(long, env = "LLMSERVE_QUEUE_TIMEOUT")]
    pub queue_timeout: Option<u64>,

    /// Seconds in-flight requests get to finish after SIGTERM before they are ended with an error.
    #[arg(long, env = "LLMSERVE_DRAIN_TIMEOUT", default_value_t = DEFAULT_DRAIN_TIMEOUT_SECS)]
    pub drain_timeout: u64,

    /// Finished sequences whose KV cache the engine keeps to reuse for prompts sharing a prefix (an agent's
    /// system prompt and history); 0 turns the prefix cache off. Default: 16 where a hit answers exactly
    /// as the cold prompt does: with paged attention, and on CPU for GGUF models whose prompts the engine
    /// packs (llama family, Gemma 3; engine patch 0016); 0 for other models without paged attention,
    /// where hits would split the CPU batches (docs/benchmarks.md, "An agent's traffic").
    #[arg(long, env = "LLMSERVE_PREFIX_CACHE_N")]
    pub prefix_cache_n: Option<usize>,

    /// MiB of KV the prefix cache keeps without paged attention (all models together); the least recently
    /// used entries go first. An entry holds its sequence's whole KV: an agent's 4,000-token history is
    /// about 180 MiB of it for SmolLM2-135M in f32.
    #[arg(long, env = "LLMSERVE_PREFIX_CACHE_MIB", default_value_t = DEFAULT_PREFIX_CACHE_MIB)]
    pub prefix_cache_mib: usize,

    /// Activation dtype. `auto` is f32 on CPU (candle's f16/bf16 CPU kernels are emulated: the default
    /// model decoded 41 tok/s in f16 and 51 in f32) and mistral.rs's choice on GPUs.
    #[arg(long, env = "LLMSERVE_DTYPE", value_enum, default_value_t = Dtype::Auto)]
    pub dtype: Dtype,

    /// Paged attention for the KV cache: `auto` is on in CUDA builds and off on CPU, where mistral.rs has
    /// none; `on` in a CPU build is refused at start-up.
    #[arg(long, env = "LLMSERVE_PAGED_ATTN", value_enum, default_value_t = PagedAttnMode::Auto)]
    pub paged_attn: PagedAttnMode,

    /// GPU memory for the paged KV cache: a fraction of free memory (0 < x <= 1) or an amount in MiB (> 1).
    #[arg(long, env = "LLMSERVE_PAGED_ATTN_GPU_MEMORY", default_value = "0.9")]
    pub paged_attn_gpu_memory: String,

    /// Tokens per paged KV-cache block: 8, 16 or 32.
    #[arg(long, env = "LLMSERVE_PAGED_ATTN_BLOCK_SIZE", default_value_t = 32)]
    pub paged_attn_block_size: usize,

    /// Log format on stdout: `text` for people, `json` (one object per line) for log collectors.
    #[arg(long, env = "LLMSERVE_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Chat template to use instead of the model's own: a `.jinja` file or a `tokenizer_config.json`-style
    /// `.json` file.
    #[arg(long, env = "LLMSERVE_CHAT_TEMPLATE")]
    pub chat_template: Option<PathBuf>,

    /// Quantize a safetensors model's linear layers while it loads (in-situ quantization): `q8_0`, `q4k` or
    /// `q6k`. A 9B model in f32 needs ~36 GB; in q8_0 ~10 GB, in q4k ~6 GB. GGUF files are already quantized.
    #[arg(long, env = "LLMSERVE_ISQ", value_enum)]
    pub isq: Option<Isq>,

    /// The most pixels an image is resized to before the vision tower (vLLM's
    /// `--mm-processor-kwargs '{"max_pixels": N}'`), for models that size images by pixel count (GLM-4.1V,
    /// AutoGLM). It only lowers the checkpoint's own limit.
    #[arg(long, env = "LLMSERVE_MAX_IMAGE_PIXELS")]
    pub max_image_pixels: Option<u64>,

    /// Images one request may carry (vLLM's `--limit-mm-per-prompt '{"image": N}'`); more get 400.
    #[arg(long, env = "LLMSERVE_MAX_IMAGES", default_value_t = DEFAULT_MAX_IMAGES)]
    pub max_images: usize,

    /// Prompt + completion tokens a request may use (vLLM's `--max-model-len`): only lowers the model's own
    /// context length; `max_tokens` is clamped to what the prompt leaves.
    #[arg(long, env = "LLMSERVE_MAX_MODEL_LEN")]
    pub max_model_len: Option<usize>,

    /// Directory for the default model and other downloads. Default: `$XDG_CACHE_HOME/llmserve`, else
    /// `~/.cache/llmserve`.
    #[arg(long, env = "LLMSERVE_CACHE_DIR")]
    pub cache_dir: Option<PathBuf>,

    /// Largest request body in bytes; larger bodies get 413.
    #[arg(long, env = "LLMSERVE_MAX_REQUEST_BODY_BYTES", default_value_t = DEFAULT_MAX_REQUEST_BODY_BYTES)]
    pub max_request_body_bytes: usize,

    /// Seconds a request body has to arrive in, plus one second for every --body-min-rate bytes that have
    /// arrived: a client that trickles its body (one byte every few seconds, holding a connection and a
    /// worker's attention) gets 408 at the deadline, while a large body on a slow link still arrives.
    #[arg(long, env = "LLMSERVE_BODY_READ_TIMEOUT", default_value_t = DEFAULT_BODY_READ_TIMEOUT_SECS)]
    pub body_read_timeout: u64,

    /// Bytes per second of request body that extend --body-read-timeout (the slowest upload served
    /// without a deadline of its own).
    #[arg(long, env = "LLMSERVE_BODY_MIN_RATE", default_value_t = DEFAULT_BODY_MIN_RATE)]
    pub body_min_rate: usize,

    /// Seconds of silence after which a stream gets an SSE keep-alive comment (`: ping`).
    #[arg(long, env = "LLMSERVE_SSE_KEEP_ALIVE", default_value_t = DEFAULT_SSE_KEEP_ALIVE_SECS)]
    pub sse_keep_alive: u64,

    /// Serve `/metrics` on this port (same --host) instead of the API port, e.g. to leave it open inside
    /// the cluster while the API port requires keys. Unset: `/metrics` is on the API port.
    #[arg(long, env = "LLMSERVE_METRICS_PORT")]
    pub metrics_port: Option<u16>,

    /// Also serve the gRPC API (`proto/llmserve/v1/llmserve.proto`, health and reflection) on this port
    /// (same --host). Unset: no gRPC. `0` picks a free port (logged).
    #[arg(long, env = "LLMSERVE_GRPC_PORT")]
    pub grpc_port: Option<u16>,

    /// Export one span per request (plus queue and generation children) over OTLP/HTTP with JSON encoding
    /// to this collector base URL, e.g. `http://otel-collector:4318` (spans go to `/v1/traces`). A W3C
    /// `traceparent` header on the request makes them part of the caller's trace.
    #[arg(long, env = "LLMSERVE_OTLP_ENDPOINT")]
    pub otlp_endpoint: Option<String>,

    /// `service.name` of exported spans.
    #[arg(long, env = "OTEL_SERVICE_NAME", default_value = "llmserve")]
    pub otlp_service_name: String,

    /// HTTP worker threads (actix). Default: one per core.
    #[arg(long, env = "LLMSERVE_HTTP_WORKERS")]
    pub http_workers: Option<usize>,

    /// Fetch `http(s)` image URLs that clients send to a vision model (≤ 10 MiB, 10 s each). Off by
    /// default: a server that fetches URLs for its clients can be made to reach hosts only it can reach.
    #[arg(long, env = "LLMSERVE_ALLOW_REMOTE_IMAGES", action = clap::ArgAction::SetTrue)]
    pub allow_remote_images: bool,

    /// Keep per-key limits in Redis, so that every replica enforces one budget per key:
    /// `redis://[user:password@]host[:port]`, `rediss://…` for TLS, or several URLs, comma-separated, for
    /// the nodes of a Redis Cluster. If Redis cannot be reached a replica serves on its own share of each
    /// limit (divided by the live replicas it last counted there) until it can. Unset: limits per process.
    #[arg(long, env = "LLMSERVE_LIMITS_REDIS")]
    pub limits_redis: Option<String>,

    /// PEM file of the CA certificates that sign the `rediss://` server's certificate (a private CA);
    /// unset: the system's roots.
    #[arg(long, env = "LLMSERVE_LIMITS_REDIS_CA_FILE")]
    pub limits_redis_ca_file: Option<PathBuf>,

    /// The fewest replicas the limits are divided by while Redis is unreachable: each replica then allows
    /// its share, divided by the live replicas Redis last counted (each renews a 6 s lease every 2 s and
    /// leaves when it stops), never by fewer than this.
    #[arg(long, env = "LLMSERVE_LIMITS_REPLICAS", default_value_t = 1)]
    pub limits_replicas: u32,

    /// Origins browser frontends may call the API from, comma-separated (`https://chat.example.com`), or
    /// `*` for any. Preflight requests never need a key. Unset: no CORS headers.
    #[arg(long, env = "LLMSERVE_CORS_ALLOW_ORIGIN", value_delimiter = ',')]
    pub cors_allow_origin: Vec<String>,

    /// Where stored responses live: `memory` (this process; another replica or a restart forgets them) or
    /// `redis` (the --limits-redis server, so that `previous_response_id` works on every replica; the same
    /// per-key partitions and bounds).
    #[arg(long, env = "LLMSERVE_RESPONSES_STORE", value_enum, default_value_t = ResponsesBackend::Memory)]
    pub responses_store: ResponsesBackend,

    /// Stored responses kept for `GET /v1/responses/{id}` and `previous_response_id`, per API key (each
    /// key's least recently used go first, and never another key's). 0 keeps none.
    #[arg(long, env = "LLMSERVE_RESPONSES_STORE_SIZE", default_value_t = 1000)]
    pub responses_store_size: usize,

    /// Most memory one API key's stored responses take together, in MiB (images inside them count).
    /// The worst case in all is this times the keys that store responses.
    #[arg(long, env = "LLMSERVE_RESPONSES_STORE_MIB", default_value_t = 64)]
    pub responses_store_mib: usize,

    /// Seconds a stored response is kept after it was made.
    #[arg(long, env = "LLMSERVE_RESPONSES_STORE_TTL", default_value_t = 3600)]
    pub responses_store_ttl: u64,

    /// CPU matmul kernels: `auto` (the best this CPU has), `avx512`, `avx2` or `scalar`. Outputs are the
    /// same bits at every level; a lower one is slower and exists to test the kernels other CPUs run. A
    /// level the CPU lacks is refused at start-up.
    #[arg(long, env = "LLMSERVE_CPU_KERNELS", value_enum, default_value_t = CpuKernels::Auto)]
    pub cpu_kernels: CpuKernels,

    /// Do not serve the built-in chat page at `/` (an API-only server: `/` is then a JSON 404).
    #[arg(long, env = "LLMSERVE_NO_UI", action = clap::ArgAction::SetTrue)]
    pub no_ui: bool,
}
