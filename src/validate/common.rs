//! The parameters chat and completions share (sampling, `max_tokens`, `stop`, `n`, `seed`, `logit_bias`,
//! caller ids) → a [`ValidatedGeneration`] with OpenAI's defaults and bounds.

use std::collections::HashMap;

use serde_json::Value;

use super::limits::{
    MAX_CALLER_ID_CHARS, MAX_LOGIT_BIAS_ENTRIES, MAX_SEQUENCES_PER_REQUEST, MAX_STOP_SEQUENCES,
};
use crate::api::common::StopSequences;
use crate::engine::Sampling;
use crate::error::ValidationError;
use crate::validate::generation::ValidatedGeneration;

fn range_f64(
    param: &'static str,
    value: Option<f64>,
    min: f64,
    max: f64,
) -> Result<Option<f64>, ValidationError> {
    match value {
        Some(v) if !(min..=max).contains(&v) => Err(ValidationError::invalid(
            param,
            format!("`{param}` must be between {min} and {max}, got {v}"),
        )),
        other => Ok(other),
    }
}

/// The parameters chat and completions share, in one place.
///
/// The wire types repeat these fields rather than `#[serde(flatten)]` one struct: through a flattened
/// struct serde_path_to_error loses the field's name, and a type error (`"temperature": "hot"`) would no
/// longer say `param: "temperature"`.
pub(super) struct CommonParams {
    pub(super) model: Option<String>,
    pub(super) max_tokens: Option<i64>,
    pub(super) temperature: Option<f64>,
    pub(super) top_p: Option<f64>,
    pub(super) top_k: Option<i64>,
    pub(super) min_p: Option<f64>,
    pub(super) presence_penalty: Option<f64>,
    pub(super) frequency_penalty: Option<f64>,
    pub(super) repetition_penalty: Option<f64>,
    pub(super) stop: Option<StopSequences>,
    pub(super) stream: Option<bool>,
    pub(super) include_usage: Option<bool>,
    pub(super) n: Option<i64>,
    pub(super) seed: Option<i64>,
    pub(super) logit_bias: Option<HashMap<String, Value>>,
    pub(super) safety_identifier: Option<String>,
    pub(super) user: Option<String>,
}

/// The shared fields of a chat or completions wire request, moved out by name; `max_tokens` is given
/// because chat also takes `max_completion_tokens`.
macro_rules! common_params {
    ($request:ident, max_tokens: $max_tokens:expr) => {
        $crate::validate::common::CommonParams {
            model: $request.model,
            max_tokens: $max_tokens,
            temperature: $request.temperature,
            top_p: $request.top_p,
            top_k: $request.top_k,
            min_p: $request.min_p,
            presence_penalty: $request.presence_penalty,
            frequency_penalty: $request.frequency_penalty,
            repetition_penalty: $request.repetition_penalty,
            stop: $request.stop,
            stream: $request.stream,
            include_usage: $request.stream_options.and_then(|o| o.include_usage),
            n: $request.n,
            seed: $request.seed,
            logit_bias: $request.logit_bias,
            safety_identifier: $request.safety_identifier,
            user: $request.user,
        }
    };
}

// Used by `chat` and `completion`, which build their `CommonParams` with it.
pub(crate) use common_params;

/// `user` / `safety_identifier` within OpenAI's bound.
pub(super) fn check_caller_id(
    param: &'static str,
    id: Option<&str>,
) -> Result<(), ValidationError> {
    match id.map(|id| id.chars().count()) {
        Some(count) if count > MAX_CALLER_ID_CHARS => Err(ValidationError::invalid(
            param,
            format!("`{param}` must be at most {MAX_CALLER_ID_CHARS} characters, got {count}"),
        )),
        _ => Ok(()),
    }
}

pub(super) fn common(p: CommonParams) -> Result<ValidatedGeneration, ValidationError> {
    check_caller_id("safety_identifier", p.safety_identifier.as_deref())?;
    check_caller_id("user", p.user.as_deref())?;
    let temperature = range_f64("temperature", p.temperature, 0.0, 2.0)?.unwrap_or(1.0);
    let top_p = match p.top_p {
        Some(v) if !(v > 0.0 && v <= 1.0) => {
            return Err(ValidationError::invalid(
                "top_p",
                format!("`top_p` must be in (0, 1], got {v}"),
            ))
        }
        other => other,
    };
    let top_k = match p.top_k {
        None | Some(0) | Some(-1) => None,
        Some(k) if k > 0 => Some(k as usize),
        Some(k) => {
            return Err(ValidationError::invalid(
                "top_k",
                format!("`top_k` must be a positive integer, or 0 or -1 to disable it, got {k}"),
            ))
        }
    };
    let min_p = range_f64("min_p", p.min_p, 0.0, 1.0)?;
    let presence_penalty = range_f64("presence_penalty", p.presence_penalty, -2.0, 2.0)?;
    let frequency_penalty = range_f64("frequency_penalty", p.frequency_penalty, -2.0, 2.0)?;
    let repetition_penalty = match p.repetition_penalty {
        Some(v) if !(v > 0.0 && v <= 2.0) => {
            return Err(ValidationError::invalid(
                "repetition_penalty",
                format!("`repetition_penalty` must be in (0, 2], got {v}"),
            ))
        }
        other => other,
    };
    let max_tokens = match p.max_tokens {
        Some(m) if m < 1 => {
            return Err(ValidationError::invalid(
                "max_tokens",
                format!("`max_tokens` must be at least 1, got {m}"),
            ))
        }
        Some(m) => Some(usize::try_from(m).unwrap_or(usize::MAX)),
        None => None,
    };
    let stop = p.stop.map(StopSequences::into_vec).unwrap_or_default();
    if stop.len() > MAX_STOP_SEQUENCES {
        return Err(ValidationError::invalid(
            "stop",
            format!(
                "`stop` takes at most {MAX_STOP_SEQUENCES} sequences, got {}",
                stop.len()
            ),
        ));
    }
    if stop.iter().any(String::is_empty) {
        return Err(ValidationError::invalid(
            "stop",
            "`stop` sequences must not be empty",
        ));
    }
    let n = match p.n {
        None => 1,
        Some(n) if n < 1 => {
            return Err(ValidationError::invalid(
                "n",
                format!("`n` must be at least 1, got {n}"),
            ))
        }
        Some(n) if n as usize > MAX_SEQUENCES_PER_REQUEST => {
            return Err(ValidationError::invalid(
                "n",
                format!("`n` must be at most {MAX_SEQUENCES_PER_REQUEST}, got {n}"),
            ))
        }
        Some(n) => n as usize,
    };
    let logit_bias = parse_logit_bias(p.logit_bias)?;
    let stream = p.stream.unwrap_or(false);
    Ok(ValidatedGeneration {
        model: p.model,
        sampling: Sampling {
            temperature,
            top_p,
            top_k,
            min_p,
            presence_penalty: presence_penalty.map(|v| v as f32),
            frequency_penalty: frequency_penalty.map(|v| v as f32),
            repetition_penalty: repetition_penalty.map(|v| v as f32),
        },
        max_tokens,
        stop,
        stream,
        // `stream_options` with `stream: false` is accepted and ignored, as OpenAI does.
        include_usage: stream && p.include_usage.unwrap_or(false),
        n,
        generated: n,
        // Any integer is a seed; negative ones are taken as their two's-complement bits.
        seed: p.seed.map(|s| s as u64),
        logit_bias,
        logprobs: None,
        constraint: None,
    })
}

fn parse_logit_bias(
    bias: Option<HashMap<String, Value>>,
) -> Result<Vec<(u32, f32)>, ValidationError> {
    let bias = bias.unwrap_or_default();
    if bias.len() > MAX_LOGIT_BIAS_ENTRIES {
        return Err(ValidationError::invalid(
            "logit_bias",
            format!(
                "`logit_bias` takes at most {MAX_LOGIT_BIAS_ENTRIES} entries, got {}",
                bias.len()
            ),
        ));
    }
    let mut parsed: Vec<(u32, f32)> = bias
        .into_iter()
        .map(|(key, value)| {
            let token: u32 = key.trim().parse().map_err(|_| {
                ValidationError::invalid(
                    "logit_bias",
                    format!(
                        "`logit_bias` keys must be token ids (non-negative integers), got `{key}`"
                    ),
                )
            })?;
            let bias = value
                .as_f64()
                .filter(|b| (-100.0..=100.0).contains(b))
                .ok_or_else(|| {
                    ValidationError::invalid(
                        "logit_bias",
                        format!(
                            "`logit_bias[{key}]` must be a number from -100 to 100, got {value}"
                        ),
                    )
                })?;
            Ok((token, bias as f32))
        })
        .collect::<Result<_, ValidationError>>()?;
    parsed.sort_by_key(|(token, _)| *token);
    Ok(parsed)
}
