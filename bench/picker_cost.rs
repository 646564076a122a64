//! The per-step cost of llmserve's token choice (`engine::sampler::TokenPicker`) on a SmolLM2-sized
//! vocabulary, including the copy of the logits the engine hands it: greedy, sampled, and greedy with five
//! alternatives recorded. A measurement, not a test: `cargo run --release --example picker_cost`.

use std::time::Instant;

use llmserve::engine::sampler::{PickerSettings, TokenPicker};
use llmserve::engine::Sampling;

const VOCAB: usize = 49152;
const STEPS: usize = 1000;

fn main() {
    let logits: Vec<f32> = (0..VOCAB)
        .map(|i| ((i * 7919) % 1000) as f32 / 100.0)
        .collect();
    for (label, temperature, top_logprobs) in [
        ("greedy", 0.0, None),
        ("sampled at temperature 1", 1.0, None),
        ("greedy, top_logprobs 5", 0.0, Some(5)),
    ] {
        let picker = TokenPicker::new(PickerSettings {
            sampling: Sampling {
                temperature,
                ..Sampling::default()
            },
            logit_bias: Vec::new(),
            seed: Some(1),
            top_logprobs,
        });
        let start = Instant::now();
        for step in 0..STEPS {
            let mut values = logits.clone();
            picker.pick(&mut values, 10 + step);
        }
        println!("{label}: {:?} per step", start.elapsed() / STEPS as u32);
    }
}
