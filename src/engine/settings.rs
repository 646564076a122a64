//! Engine settings the server decides at start-up and hands to an engine: they are the engine's types, so
//! that the engine never reads the server's configuration (`config` builds them from flags).

/// Weight and activation type; `--dtype` parses into it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Dtype {
    Auto,
    F32,
    F16,
    Bf16,
}

/// Images any request may carry, whatever its model (`--max-images` is at most this).
pub const MAX_IMAGES_PER_REQUEST: usize = 32;

/// In-situ quantization of a safetensors model's linear layers as it loads (mistral.rs's ISQ); `--isq`
/// parses into it. A GGUF file is already quantized and takes none.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Isq {
    #[value(name = "q8_0")]
    #[serde(rename = "q8_0")]
    Q8_0,
    #[value(name = "q4k")]
    #[serde(rename = "q4k")]
    Q4K,
    #[value(name = "q6k")]
    #[serde(rename = "q6k")]
    Q6K,
}

/// Which instruction set the CPU matmul kernels use (`--cpu-kernels`). Every level gives the same output
/// bits (the engine's kernels fix their order of operations); forcing a lower one tests, on a CPU with
/// AVX-512, the kernels that CPUs without it run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CpuKernels {
    /// The highest level the CPU supports.
    Auto,
    Avx512,
    Avx2,
    Scalar,
}

/// How much GPU memory the paged KV cache takes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum GpuMemory {
    /// A fraction of the free memory.
    Utilization(f32),
    MiB(usize),
}

/// Paged attention as it will be configured, decided once at start-up.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PagedAttention {
    pub memory: GpuMemory,
    pub block_size: usize,
}

/// What an engine is loaded with.
#[derive(Debug, Clone, PartialEq)]
pub struct EngineSettings {
    /// Sequences generated at once.
    pub max_num_seqs: usize,
    /// Finished sequences kept for prefix reuse; 0 disables the prefix cache.
    pub prefix_cache_n: usize,
    pub dtype: Dtype,
    /// `None`: no paged attention (CPU builds, or turned off).
    pub paged_attention: Option<PagedAttention>,
    /// A chat template file to use instead of the model's own.
    pub chat_template: Option<std::path::PathBuf>,
    /// Quantize a safetensors model's linear layers while loading.
    pub isq: Option<Isq>,
    /// The most pixels an image is resized to (vLLM's `max_pixels`), for models whose processor sizes images
    /// by pixel count (GLM-4.1V); `None`: the checkpoint's own limit.
    pub max_image_pixels: Option<u64>,
    /// Images one request may carry (vLLM's `--limit-mm-per-prompt '{"image": N}'`).
    pub max_images: usize,
    /// Prompt + completion tokens a request may use, below the model's own context (vLLM's `--max-model-len`).
    pub max_model_len: Option<usize>,
}
