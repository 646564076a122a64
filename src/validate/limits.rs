//! The bounds every request is held to before its model is known: counts, sizes, OpenAI's limits. A leaf:
//! it imports nothing from the other validation files.

/// OpenAI allows at most 4 stop sequences.
pub const MAX_STOP_SEQUENCES: usize = 4;
/// Legacy completions generate 16 tokens when `max_tokens` is absent (OpenAI's default).
pub const DEFAULT_COMPLETION_MAX_TOKENS: usize = 16;
/// Prompts one completions request may carry (each becomes its own choice).
pub const MAX_PROMPTS_PER_REQUEST: usize = 64;
/// Sequences one request may generate: prompts × `n` (or × `best_of`).
pub const MAX_SEQUENCES_PER_REQUEST: usize = 64;
/// OpenAI's bounds: `top_logprobs` for chat, `logprobs` for completions, entries of `logit_bias`.
pub const MAX_TOP_LOGPROBS: i64 = 20;
pub const MAX_COMPLETION_LOGPROBS: i64 = 5;
pub const MAX_LOGIT_BIAS_ENTRIES: usize = 300;
/// Images any request may carry, before its model is known (each model's own limit, `--max-images`, is at
/// most this), and bytes per decoded image.
pub const MAX_IMAGES: usize = crate::engine::settings::MAX_IMAGES_PER_REQUEST;
pub const MAX_IMAGE_BYTES: usize = 10 * 1024 * 1024;
/// Pixels per image, read from its header before anything is decoded: a small file can announce a huge
/// canvas (a decompression bomb), and a 4096×4096 RGBA image already takes 64 MiB.
pub const MAX_IMAGE_PIXELS: u64 = 4096 * 4096;

/// OpenAI's bound on `user` and `safety_identifier`.
pub(super) const MAX_CALLER_ID_CHARS: usize = 256;
