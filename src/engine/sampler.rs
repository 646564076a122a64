//! Per-request token choice: logit bias, seeded sampling and log probabilities, on plain logit slices.
//!
//! mistral.rs 0.8.1 samples every sequence from one global RNG seeded once, never applies `logit_bias`, and
//! reports base-10 log probabilities (of raw logits at temperature 0). So each sequence carries a
//! `TokenPicker`, run by the engine as a logits processor after its penalties: it chooses the token itself
//! with the request's own RNG and leaves the engine a single candidate, which the engine's argmax takes.
//! The engine may call it twice for one step (a grammar rejected the first choice and masked the logits):
//! the later call replaces the step's record.

use std::sync::Mutex;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::Sampling;

/// A bias at or below this bans the token outright (OpenAI: "-100 should result in a ban").
const BAN_BIAS: f32 = -100.0;

/// How one sequence chooses its tokens.
#[derive(Debug, Clone, PartialEq)]
pub struct PickerSettings {
    /// Temperature, top-p, top-k and min-p apply here; the engine applies the penalties before.
    pub sampling: Sampling,
    pub logit_bias: Vec<(u32, f32)>,
    /// `None`: a fresh random seed.
    pub seed: Option<u64>,
    /// Alternatives to record per step (`Some(0)`: only the sampled token's log probability).
    pub top_logprobs: Option<usize>,
}

/// One step's choice: the token, its log probability and the most likely alternatives (natural log, over
/// the distribution after penalties and bias, before temperature, as vLLM reports them).
#[derive(Debug, Clone, PartialEq)]
pub struct Pick {
    pub token: u32,
    pub logprob: f32,
    pub top: Vec<(u32, f32)>,
}

struct Steps {
    /// Context length at the first step: the prompt.
    prompt_len: Option<usize>,
    picks: Vec<Pick>,
}

pub struct TokenPicker {
    settings: PickerSettings,
    rng: Mutex<StdRng>,
    steps: Mutex<Steps>,
}

impl TokenPicker {
    pub fn new(settings: PickerSettings) -> Self {
        let seed = settings.seed.unwrap_or_else(rand::random);
        TokenPicker {
            settings,
            rng: Mutex::new(StdRng::seed_from_u64(seed)),
            steps: Mutex::new(Steps {
                prompt_len: None,
                picks: Vec::new(),
            }),
        }
    }

    /// Chooses the next token from `logits` (the sequence's context is `context_len` tokens long) and
    /// rewrites `logits` so that it is the only candidate left.
    pub fn pick(&self, logits: &mut [f32], context_len: usize) -> u32 {
        for &(token, bias) in &self.settings.logit_bias {
            if let Some(logit) = logits.get_mut(token as usize) {
                *logit = if bias <= BAN_BIAS {
                    f32::NEG_INFINITY
                } else {
                    *logit + bias
                };
            }
        }
        let token = if self.settings.sampling.temperature <= 0.0 {
            argmax(logits)
        } else {
            let mut rng = self.rng.lock().expect("picker rng");
            sample(logits, &self.settings.sampling, &mut *rng)
        };
        // Recorded for every request: the stream needs each token's bytes (and `best_of`, which asks for
        // logprobs, their log probabilities).
        let pick = self.log_probabilities(logits, token);
        {
            let mut steps = self.steps.lock().expect("picker steps");
            let prompt_len = *steps.prompt_len.get_or_insert(context_len);
            let step = context_len.saturating_sub(prompt_len);
            steps.picks.truncate(step);
            steps.picks.push(pick);
        }
        for (index, logit) in logits.iter_mut().enumerate() {
            *logit = if index == token as usize {
                0.0
            } else {
                f32::NEG_INFINITY
            };
        }
        token
    }

    fn log_probabilities(&self, logits: &[f32], token: u32) -> Pick {
        // Without logprobs only the token is needed (its bytes drive the stream): skip the pass over the
        // vocabulary.
        if self.settings.top_logprobs.is_none() {
            return Pick {
                token,
                logprob: 0.0,
                top: Vec::new(),
            };
        }
        // A penalty near 0 can push logits to +inf: those tokens then share all the probability.
        let infinite = logits.iter().filter(|l| **l == f32::INFINITY).count();
        let log_sum = log_sum_exp(logits);
        let logprob_of = |t: u32| {
            let logit = logits[t as usize];
            match infinite {
                0 => clamp_logprob(logit - log_sum),
                n if logit == f32::INFINITY => -(n as f32).ln(),
                _ => clamp_logprob(f32::NEG_INFINITY),
            }
        };
        let k = self.settings.top_logprobs.unwrap_or(0).min(logits.len());
        let top = top_indices(logits, k)
            .into_iter()
            .map(|t| (t, logprob_of(t)))
            .collect();
        Pick {
            token,
            logprob: logprob_of(token),
            top,
        }
    }

    /// Records from step `from` on (steps are final once the engine has streamed them).
    pub fn picks_from(&self, from: usize) -> Vec<Pick> {
        let steps = self.steps.lock().expect("picker steps");
        steps
            .picks
            .get(from..)
            .map(<[Pick]>::to_vec)
            .unwrap_or_default()
    }
}

/// JSON has no -Infinity: a banned token is reported with the lowest finite value, as vLLM does.
fn clamp_logprob(value: f32) -> f32 {
    if value.is_finite() {
        value
    } else {
        -9999.0
    }
}

fn argmax(values: &[f32]) -> u32 {
    let mut best = 0;
    for (index, value) in values.iter().enumerate() {
        if *value > values[best] {
            best = index;
        }
    }
    best as u32
}

fn log_sum_exp(values: &[f32]) -> f32 {
    let max = values.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    if !max.is_finite() {
        return max;
    }
    let sum: f32 = values.iter().map(|v| (v - max).exp()).sum();
    max + sum.ln()
}

/// Indices of the `k` largest values, largest first (ties by index).
fn top_indices(values: &[f32], k: usize) -> Vec<u32> {
    if k == 0 {
        return Vec::new();
    }
    let mut indices: Vec<u32> = (0..values.len() as u32).collect();
    let by_value_desc = |a: &u32, b: &u32| {
        values[*b as usize]
            .total_cmp(&values[*a as usize])
            .then(a.cmp(b))
    };
    if k < indices.len() {
        indices.select_nth_unstable_by(k - 1, by_value_desc);
        indices.truncate(k);
    }
    indices.sort_unstable_by(by_value_desc);
    indices
}

/// Temperature, then top-k, top-p and min-p (as vLLM orders them), then one draw from `rng`.
fn sample(logits: &[f32], settings: &Sampling, rng: &mut impl Rng) -> u32 {
    let temperature = settings.temperature as f32;
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    if !max.is_finite() {
        return argmax(logits);
    }
    let mut probs: Vec<f32> = logits
        .iter()
        .map(|l| ((l - max) / temperature).exp())
        .collect();
    let keep_k = settings.top_k.filter(|&k| k > 0 && k < probs.len());
    let top_p = settings.top_p.filter(|&p| p < 1.0);
    if keep_k.is_some() || top_p.is_some() {
        let k = keep_k.unwrap_or(probs.len());
        let order = top_indices(&probs, k);
        let total: f32 = order.iter().map(|&t| probs[t as usize]).sum();
        let mut kept = vec![false; probs.len()];
        let mut cumulative = 0.0;
        for &t in &order {
            kept[t as usize] = true;
            cumulative += probs[t as usize] / total;
            if top_p.is_some_and(|p| f64::from(cumulative) >= p) {
                break;
            }
        }
        for (p, keep) in probs.iter_mut().zip(kept) {
            if !keep {
                *p = 0.0;
            }
        }
    }
    if let Some(min_p) = settings.min_p.filter(|&m| m > 0.0) {
        let threshold = probs.iter().copied().fold(0.0, f32::max) * min_p as f32;
        for p in probs.iter_mut() {
            if *p < threshold {
                *p = 0.0;
            }
        }
    }
    let total: f32 = probs.iter().sum();
    let mut target = rng.random::<f32>() * total;
    let mut last_candidate = argmax(logits);
    for (index, p) in probs.iter().enumerate() {
        if *p <= 0.0 {
            continue;
        }
        last_candidate = index as u32;
        if target < *p {
            return index as u32;
        }
        target -= p;
    }
    // Rounding left a sliver of `target`: the last candidate takes it.
    last_candidate
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(temperature: f64) -> PickerSettings {
        PickerSettings {
            sampling: Sampling {
                temperature,
                ..Sampling::default()
            },
            logit_bias: Vec::new(),
            seed: Some(7),
            top_logprobs: Some(2),
        }
    }

    fn run(settings: PickerSettings, steps: usize) -> Vec<u32> {
        let picker = TokenPicker::new(settings);
        (0..steps)
            .map(|step| {
                let mut logits = vec![1.0, 1.2, 0.8, 1.1];
                picker.pick(&mut logits, 10 + step)
            })
            .collect()
    }

    #[test]
    fn the_same_seed_gives_the_same_tokens_and_another_seed_differs() {
        let a = run(settings(1.0), 64);
        assert_eq!(a, run(settings(1.0), 64));
        let mut other = settings(1.0);
        other.seed = Some(8);
        assert_ne!(a, run(other, 64));
        // At temperature 1 over near-equal logits every token turns up.
        for token in 0..4 {
            assert!(a.contains(&token), "{a:?}");
        }
    }

    #[test]
    fn only_the_chosen_token_is_left_and_logprobs_are_natural_logs() {
        let picker = TokenPicker::new(settings(0.0));
        let mut logits = vec![0.0, 2.0_f32.ln(), 0.0, f32::NEG_INFINITY];
        assert_eq!(picker.pick(&mut logits, 5), 1);
        assert_eq!(
            logits,
            vec![f32::NEG_INFINITY, 0.0, f32::NEG_INFINITY, f32::NEG_INFINITY]
        );
        let pick = &picker.picks_from(0)[0];
        assert!((pick.logprob - 0.5_f32.ln()).abs() < 1e-6, "{pick:?}");
        assert_eq!(pick.top.len(), 2);
        assert_eq!(pick.top[0].0, 1);
        assert_eq!(pick.top[1].0, 0, "ties go to the lower id");
        assert!((pick.top[1].1 - 0.25_f32.ln()).abs() < 1e-6);
    }

    #[test]
    fn bias_bans_and_forces_tokens() {
        let mut banned = settings(1.0);
        banned.logit_bias = vec![(1, -100.0), (3, -100.0)];
        assert!(run(banned, 64).iter().all(|t| *t == 0 || *t == 2));
        let mut forced = settings(1.0);
        forced.logit_bias = vec![(2, 100.0)];
        assert!(run(forced, 64).iter().all(|t| *t == 2));
    }

    #[test]
    fn top_k_and_top_p_narrow_the_candidates() {
        let mut top_k = settings(1.0);
        top_k.sampling.top_k = Some(2);
        assert!(run(top_k, 64).iter().all(|t| *t == 1 || *t == 3));
        let mut top_p = settings(1.0);
        top_p.sampling.top_p = Some(0.01);
        assert!(run(top_p, 64).iter().all(|t| *t == 1));
    }

    #[test]
    fn a_repeated_step_replaces_its_record() {
        let picker = TokenPicker::new(settings(0.0));
        picker.pick(&mut [0.0, 1.0], 3);
        picker.pick(&mut [2.0, 1.0], 4);
        // The engine re-ran step 1 with a grammar mask.
        picker.pick(&mut [f32::NEG_INFINITY, 1.0], 4);
        let picks = picker.picks_from(0);
        assert_eq!(
            picks.iter().map(|p| p.token).collect::<Vec<_>>(),
            vec![1, 1]
        );
        assert_eq!(picker.picks_from(1).len(), 1);
        assert!(picker.picks_from(5).is_empty());
    }

    #[test]
    fn infinite_logits_share_the_probability() {
        let picker = TokenPicker::new(settings(0.0));
        let pick = picker.log_probabilities(&[1.0, f32::INFINITY, 0.5, f32::INFINITY], 1);
        assert_eq!(pick.logprob, -(2f32.ln()));
        assert!(
            pick.top.iter().all(|(_, lp)| *lp == -(2f32.ln())),
            "{:?}",
            pick.top
        );
        let single = picker.log_probabilities(&[1.0, f32::INFINITY, 0.5], 1);
        assert_eq!(single.logprob, 0.0);
    }
}
