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
    /// Finished sequences kept for prefix reuse; 0 disables the prefix cache. `None`: the model's default
    /// (`prefix_cache_entries`).
    pub prefix_cache_n: Option<usize>,
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

/// Finished sequences the prefix cache keeps by default where it is on (mistral.rs's default).
pub const DEFAULT_PREFIX_CACHE_N: usize = 16;

impl EngineSettings {
    /// The prefix cache's entries for a model: as set, or by default 16 where a hit answers exactly as
    /// the cold prompt does and shares steps with other prompts (paged attention, or `packs_prompts`: a
    /// model whose prompt steps the engine packs, engine patch 0016), 0 elsewhere: on CPU a hit's
    /// cached-prefix length would keep it out of other prompts' batches.
    pub fn prefix_cache_entries(&self, packs_prompts: bool) -> usize {
        self.prefix_cache_n
            .unwrap_or(if self.paged_attention.is_some() || packs_prompts {
                DEFAULT_PREFIX_CACHE_N
            } else {
                0
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(prefix_cache_n: Option<usize>, paged: bool) -> EngineSettings {
        EngineSettings {
            max_num_seqs: 16,
            prefix_cache_n,
            dtype: Dtype::Auto,
            paged_attention: paged.then_some(PagedAttention {
                memory: GpuMemory::Utilization(0.9),
                block_size: 32,
            }),
            chat_template: None,
            isq: None,
            max_image_pixels: None,
            max_images: 1,
            max_model_len: None,
        }
    }

    #[test]
    fn the_prefix_cache_is_on_by_default_only_where_hits_answer_as_cold_prompts() {
        let packs_prompts = true;
        assert_eq!(
            settings(None, true).prefix_cache_entries(!packs_prompts),
            16
        );
        assert_eq!(
            settings(None, false).prefix_cache_entries(packs_prompts),
            16
        );
        assert_eq!(
            settings(None, false).prefix_cache_entries(!packs_prompts),
            0
        );
        assert_eq!(
            settings(Some(0), false).prefix_cache_entries(packs_prompts),
            0
        );
        assert_eq!(
            settings(Some(4), false).prefix_cache_entries(!packs_prompts),
            4
        );
    }
}
