//! Peak memory of one real-width GLM-4.1V vision block (1536 wide, 12 heads, a 4096-wide MLP: GLM-4.1V-9B's
//! and AutoGLM-Phone-9B's) on the patches of Open-AutoGLM's 1080 × 2400 screenshot, with random weights.
//! Shows that the attention never holds an image's whole score matrix: for 13,416 patches and 12 heads that
//! matrix alone is 8.6 GB in f32.
//!
//!     cargo run --release --example glm4v_vision_memory -- 172 78    # the processor's default limit
//!     cargo run --release --example glm4v_vision_memory -- 168 74    # vLLM's max_pixels 5,000,000
//!
//! One grid per process, since the peak (`VmHWM`) is the process's.

use std::time::Instant;

use llmserve::engine::mistral::pixel_images::run_random_vision_block;

/// A `/proc/self/status` field in KiB.
fn status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|rest| rest.trim().trim_end_matches(" kB").trim().parse().ok())
        .unwrap_or(0)
}

fn main() {
    let args: Vec<u32> = std::env::args()
        .skip(1)
        .map(|a| a.parse().expect("grid height and width in patches"))
        .collect();
    let (h, w) = match args.as_slice() {
        [h, w] => (*h, *w),
        _ => (172, 78),
    };
    let (hidden, heads, mlp) = (1536, 12, 4096);
    let patches = u64::from(h) * u64::from(w);
    let before = status_kib("VmHWM:");
    let start = Instant::now();
    run_random_vision_block(hidden, heads, mlp, [1, h, w]).expect("the block runs");
    let seconds = start.elapsed().as_secs_f64();
    let peak = status_kib("VmHWM:");
    let whole_scores_mib = (heads as u64 * patches * patches * 4) as f64 / (1024.0 * 1024.0);
    println!(
        "grid {h}x{w} ({patches} patches), one block {hidden} wide, {heads} heads: {seconds:.1} s, \
         peak RSS {:.0} MiB (before the block {:.0} MiB); the whole score matrix would be {whole_scores_mib:.0} MiB",
        peak as f64 / 1024.0,
        before as f64 / 1024.0
    );
}
