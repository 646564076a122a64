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
}
