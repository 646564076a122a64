//! llmserve: an OpenAI-compatible LLM server on mistral.rs.
//!
//! # Layout
//! - `main.rs`: thin: flags → [`config::Config`] → [`telemetry::init`] → [`server::start`].
//! - [`config`]: flags (each an `LLMSERVE_*` env var) validated once into a typed `Config`.
//! - [`server`]: [`server::app`] (served by `main` and by the tests), start-up, model loading;
//!   [`state`]: what every handler reads.
//! - [`routes`]: the routing table and one module per endpoint group.
//! - [`api`]: wire types only (serde + OpenAPI schemas).
//! - [`extract`]: the JSON body extractor whose rejections are OpenAI error envelopes.
//! - [`validate`]: wire request → validated request (defaults, bounds, context length).
//! - [`tools`]: tool calling in our layer: tools in the prompt, `<tool_call>` parsing, grammars for
//!   `required` and named choices.
//! - [`gateway`]: what stands between a request and the engine: the bounded admission queue and the drain.
//! - [`engine`]: the `Engine` trait and engine-neutral events; `engine::mistral` is the only importer of
//!   `mistralrs` (text and vision models); `engine::sampler` chooses each token (seed, bias, logprobs),
//!   `engine::vocab` knows the tokens' bytes.
//! - [`remote_images`]: `http(s)` image URLs fetched into data URLs, when the operator allows it.
//! - [`stop`]: stop sequences cut from streamed text.
//! - [`stream`]: engine events → SSE body or one collected answer.
//! - [`models`]: the served model and its load state; [`default_model`]: fetching SmolLM2 from PyPI.
//! - [`error`]: `ApiError` → status + OpenAI envelope in one match.
//! - [`telemetry`]: tracing, request ids, one log line per request, feeding [`metrics`] (Prometheus).
//! - [`memory`]: freed memory returned to the OS when the server goes idle.
//! - [`otlp`]: W3C `traceparent` and OTLP/HTTP span export. [`openapi`]: the OpenAPI document, served with
//!   Swagger UI.
//!
//! # Data flow
//! ```text
//! POST /v1/chat/completions
//!   extract::ApiJson          body → ChatCompletionRequest          (400 / 413 / 415)
//!   remote_images             http(s) image URLs → data URLs, if allowed (400)
//!   validate::chat            → ValidatedChat (tools in the prompt)  (400)
//!   models.resolve            model id → ServedModel                 (404 / 503)
//!   routes::plan              bias ids, grammar compiles, count prompt tokens, fit max_tokens, n × seed
//!                                                                    (400, context_length_exceeded)
//!   gateway::limits           wait for a slot                        (429 / 503; a queued stream: 200 + pings)
//!   engine.generate           → EventStream (Text + logprobs…, Finished); a TokenPicker per sequence
//!   stream::sse_body|collect  stop filter → format (tool-call parser) → SSE chunks … [DONE] | one answer
//! ```
//! The admission permit and the engine stream live inside the response: when the client goes away they are
//! dropped, the engine cancels the sequence, and the count goes down.

pub mod api;
pub mod config;
pub mod default_model;
pub mod engine;
pub mod error;
pub mod extract;
pub mod gateway;
pub mod ids;
pub mod memory;
pub mod metrics;
pub mod models;
pub mod openapi;
pub mod otlp;
pub mod remote_images;
pub mod routes;
pub mod server;
pub mod state;
pub mod stop;
pub mod stream;
pub mod telemetry;
pub mod tools;
pub mod validate;

pub use server::{app, start, RunningServer};
