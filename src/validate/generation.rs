//! What the generation core takes: a generation request with defaults applied and bounds checked, made
//! here; the core imports it from the validator, never the other way round.

use crate::engine::{OutputConstraint, Sampling};

/// What every generation request shares once validated.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidatedGeneration {
    /// The requested model id; `None` means the served model.
    pub model: Option<String>,
    pub sampling: Sampling,
    /// What the client asked for; `None` means "as much as the context allows".
    pub max_tokens: Option<usize>,
    pub stop: Vec<String>,
    pub stream: bool,
    pub include_usage: bool,
    /// Choices per prompt that the client gets back.
    pub n: usize,
    /// Choices generated per prompt (completions' `best_of`; otherwise `n`).
    pub generated: usize,
    pub seed: Option<u64>,
    pub logit_bias: Vec<(u32, f32)>,
    /// `Some(k)`: log probabilities with `k` alternatives per token.
    pub logprobs: Option<usize>,
    pub constraint: Option<OutputConstraint>,
}
