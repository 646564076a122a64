//! Response ids and timestamps in OpenAI's forms.

use rand::distr::Alphanumeric;
use rand::Rng;

/// A random alphanumeric string, for `chatcmpl-…`/`cmpl-…` ids and request ids.
pub fn random_id(len: usize) -> String {
    rand::rng()
        .sample_iter(&Alphanumeric)
        .take(len)
        .map(char::from)
        .collect()
}

/// Unix seconds, as OpenAI's `created` fields carry them.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
