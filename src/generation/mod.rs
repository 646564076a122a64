//! The transport-neutral core (in the manner of TGI's `router/src/infer/`): from a validated request and
//! its resolved model to a stream of [`output::GenerationEvent`]s or one collected answer. No HTTP or gRPC
//! type in it; `routes` (SSE / JSON) and `grpc` are thin adapters over it.
//!
//! - [`plan`]: bias ids, the grammar compiles, every prompt counted, `max_tokens` fitted to the context,
//!   n × seed; [`run`]: then admission and submission.
//! - [`choices`]: one choice's engine events with stop sequences cut out; all choices interleaved.
//! - [`output`]: the events a writer frames, or the collected answer.
//! - [`chat`]: tool calls parsed out of a chat answer (streamed or whole); [`completion`]: fill-in-the-
//!   middle prompts, echo and `best_of`.

pub mod chat;
pub mod choices;
pub mod completion;
pub mod embedding;
pub mod inputs;
pub mod output;
pub mod plan;
pub mod run;
pub mod service;

pub use service::{AnswerHead, Caller, GenerationService, Prepared};
