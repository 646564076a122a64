//! Wire requests → validated requests: defaults applied, bounds checked, unsupported features refused.
//!
//! Messages name the field, the bound and the value, so that a client can fix its request from the text.
//! [`model`] has the checks that need the resolved model.
//!
//! One file per job:
//! - [`generation`]: what every validated generation request shares, the type the core takes;
//! - `limits.rs`: the bounds every request is held to before its model is known (a leaf);
//! - `common.rs`: the parameters chat and completions share (sampling, `max_tokens`, `stop`, `n`, `seed`,
//!   `logit_bias`, caller ids) → a [`ValidatedGeneration`];
//! - `response_format.rs`: chat's `response_format` → an output constraint;
//! - `images.rs`: an `image_url` part → a decoded image (data URL, format sniffed, size and pixel bounds);
//! - `messages.rs`: one wire chat message → a prompt message (role, text and image parts, tool calls);
//! - `chat.rs`: a chat request → a [`ValidatedChat`] ([`chat()`]);
//! - `completion.rs`: a legacy completions request → a [`ValidatedCompletion`] ([`completion()`]);
//! - [`embedding`]: an embeddings request, and the checks it needs from its model;
//! - [`model`]: the checks that need the resolved model.

pub mod embedding;
pub mod generation;
pub mod model;

mod chat;
mod common;
mod completion;
mod images;
mod limits;
mod messages;
mod response_format;

pub use chat::{chat, ValidatedChat};
pub use completion::{completion, ValidatedCompletion};
pub use generation::ValidatedGeneration;
pub(crate) use images::sniffed_media_type;
pub use limits::{
    DEFAULT_COMPLETION_MAX_TOKENS, MAX_COMPLETION_LOGPROBS, MAX_IMAGES, MAX_IMAGE_BYTES,
    MAX_IMAGE_PIXELS, MAX_LOGIT_BIAS_ENTRIES, MAX_PROMPTS_PER_REQUEST, MAX_SEQUENCES_PER_REQUEST,
    MAX_STOP_SEQUENCES, MAX_TOP_LOGPROBS,
};
