//! The CPU matmul kernels' level (`--cpu-kernels`), set once at start-up. candle's quantized matmul
//! reads it (engine patch candle 0005), and every level gives the same output bits.

use candle_core::quantized::cpu_kernels::{self, KernelLevel};

use crate::engine::settings::CpuKernels;

/// Puts `wanted` in force: the level's name, or why this CPU (or build) cannot run it.
pub fn apply(wanted: CpuKernels) -> Result<&'static str, String> {
    let level = match wanted {
        CpuKernels::Auto => None,
        CpuKernels::Avx512 => Some(KernelLevel::Avx512),
        CpuKernels::Avx2 => Some(KernelLevel::Avx2),
        CpuKernels::Scalar => Some(KernelLevel::Scalar),
    };
    cpu_kernels::set_level(level)
        .map(KernelLevel::name)
        .map_err(|highest| {
            format!(
                "--cpu-kernels {}: this CPU or build runs at most `{}`",
                level.map_or("auto", KernelLevel::name),
                highest.name()
            )
        })
}
