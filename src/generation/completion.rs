//! Text completions, for every front: prompts wrapped for fill-in-the-middle, echoed prompts, and the
//! `best_of` choice among candidates.

use crate::engine::{ModelInfo, Prompt};
use crate::error::ValidationError;
use crate::generation::output::CollectedChoice;

/// The engine prompts: as sent, or wrapped in the model's fill-in-the-middle tokens around `suffix`.
pub fn prompts(
    prompts: &[String],
    suffix: Option<&str>,
    model: &str,
    info: &ModelInfo,
) -> Result<Vec<Prompt>, ValidationError> {
    let Some(suffix) = suffix else {
        return Ok(prompts.iter().cloned().map(Prompt::Text).collect());
    };
    let fim = info.fill_in_middle.as_ref().ok_or_else(|| {
        ValidationError::unsupported(
            "suffix",
            format!("`suffix` needs a model with fill-in-the-middle tokens; `{model}` has none"),
        )
    })?;
    Ok(prompts
        .iter()
        .map(|p| {
            Prompt::Text(format!(
                "{}{p}{}{suffix}{}",
                fim.prefix, fim.suffix, fim.middle
            ))
        })
        .collect())
}

/// Per choice (prompt-major, `n` per prompt): the prompt it continues, when the request echoes.
pub fn echoes(prompts: &[String], n: usize, echo: bool) -> Option<Vec<String>> {
    echo.then(|| {
        prompts
            .iter()
            .flat_map(|p| std::iter::repeat_n(p.clone(), n))
            .collect()
    })
}

/// Of `generated` candidates per prompt (prompt-major), the `n` with the highest total log probability,
/// in that order; with `generated == n` all of them, in order.
pub fn best_of(
    candidates: Vec<CollectedChoice>,
    generated: usize,
    n: usize,
) -> Vec<CollectedChoice> {
    if generated == n {
        return candidates;
    }
    let mut chosen = Vec::with_capacity(candidates.len() / generated * n);
    let mut candidates = candidates.into_iter().peekable();
    while candidates.peek().is_some() {
        let mut group: Vec<CollectedChoice> = candidates.by_ref().take(generated).collect();
        group.sort_by(|a, b| b.total_logprob().total_cmp(&a.total_logprob()));
        chosen.extend(group.into_iter().take(n));
    }
    chosen
}
