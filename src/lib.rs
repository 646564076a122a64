//! llmserve: an OpenAI-compatible LLM server on mistral.rs.
//!
//! # Layout
//! The request path reads top to bottom, and a layer of it imports only the layers below it; the shared
//! modules at the end serve every layer (`error` joins the layers' own error types into `ApiError`).
//! - `main.rs`: thin: flags → [`config::Config`] → [`telemetry::init`] → [`server::start`].
//! - [`server`]: start-up, the drain, the HTTP `app` (served by `main` and by the tests), the metrics and
//!   gRPC ports beside it, SIGHUP (reload); [`reload`] applies the models file again when its content
//!   changes. [`state`]: what every front reads. [`config`]: the typed
//!   configuration (`config::cli`: the flags; `config::from_flags`: their checking; `config::file`: the
//!   models file; `config::models`: the registry's desired state; `config::keys`: keys, roles, limits),
//!   which names the engine's settings types.
//! - Fronts, translators over one entrance: [`routes`] (HTTP: the routing table, one module per endpoint
//!   group, `routes::admin` the admin API, `routes::responses` the Responses API, `routes::ui` the chat
//!   page at `/`, `routes::sse` the one SSE writer, `routes::errors` errors as HTTP responses) with
//!   [`extract`] (JSON bodies whose rejections are OpenAI envelopes) and [`openapi`] (the document,
//!   refined with what the derives cannot state, plus the loaded model's bounds when served); [`grpc`]
//!   (`llmserve.v1`, health, reflection; errors as gRPC statuses). Each calls
//!   [`generation::GenerationService`] once and translates what comes out: [`formats`] holds the chat
//!   and completions wire shapes (chunks and whole answers), `responses::stream` the Responses events.
//! - [`responses`]: the Responses API on the chat path: `responses::input` turns a Responses request (items,
//!   instructions, a stored conversation) into a chat request, `responses::output` the chat answer into
//!   output items, `responses::stream` its event stream; `responses::store` keeps responses (bounded, per
//!   key) for `previous_response_id`, in this process or (`responses::redis_store`) in Redis for every
//!   replica.
//! - [`validate`]: wire request → validated request (defaults, bounds; one file per kind of check), and
//!   `validate::model`, the checks that need the resolved model. [`remote_images`]: `http(s)` image
//!   URLs fetched, when allowed.
//! - [`models`]: the registry of versions (each its own engine and admission queue,
//!   `models::admission`) and aliases (weights over versions): the one lookup per request, hot swap,
//!   reload, drain of unloaded versions (`models::registry`: the table, and the operations on it one
//!   file each); `models::routing` picks an alias's version by weight, sticky per caller;
//!   `models::loading` turns a configured source into a warmed-up engine.
//! - [`gateway`]: between the model lookup and generation: API keys (hashed, compared in constant time)
//!   → a `Principal` (its role's actions, its models, its limits; `routes::auth` asks for it on every
//!   HTTP route but the probes, `grpc::service` on every call); `gateway::quota` holds each key's request,
//!   token and concurrency budget over a sliding minute, reserved at admission, settled at the response's
//!   end; `gateway::redis_quota` keeps those windows in Redis for every replica (`--limits-redis`),
//!   falling back to this process's when Redis does not answer; `gateway::redis_link` is the one Redis
//!   client.
//! - [`generation`]: the transport-neutral core. `generation::service` is the one entrance: a wire
//!   request and its caller in, a `Prepared` answer out, to stream or collect (collect is built on
//!   stream); `generation::inputs` the kinds of request it takes. Behind it: planning (bias ids, grammar,
//!   prompt counts, `max_tokens` fitted, n × seed), submission, stop filtering, logprobs, tool-call
//!   parsing, fill-in-the-middle, echo, `best_of`; out come `GenerationEvent`s, the key's budget settled
//!   as the last step. `generation::embedding` runs `/v1/embeddings` on an embedding model.
//! - [`engine`]: the `Engine` trait and engine-neutral events; `engine::mistral` (load / request / events)
//!   is the only importer of `mistralrs` (`engine::mistral::embed`: embedding models, which never
//!   generate); `engine::settings` what the server decides for an engine (the
//!   engine never reads [`config`]); `engine::sampler` chooses each token, `engine::vocab` knows the
//!   tokens' bytes; `engine::scripted` is the test engine of the layers above.
//! - Shared: [`api`] (wire types only),
//!   [`error`] (`ApiError` and its statuses, one match), [`tools`] (`tools::prompt`: tools into the prompt
//!   and grammars; `tools::parser`: calls out of the text), [`stop`], [`request_log`] (request ids, one
//!   log line per request or call, feeding [`metrics`] and [`otlp`]; its actix side is
//!   `routes::http_log`), [`telemetry`] (tracing set-up), [`process_memory`], [`ids`], [`default_model`]
//!   (SmolLM2 from PyPI).
//!
//! # Data flow
//! A streamed chat request, as stops; each file is entered once on the way down, and each token comes
//! back up through each file once.
//! ```text
//! POST /v1/chat/completions                  gRPC llmserve.v1.Llmserve/Chat (and Generate)
//!   extract::ApiJson   body → ChatCompletionRequest        grpc::convert  message → the same wire request
//!   routes::auth       API key → Principal; the route's action allowed; the key's requests per minute
//!                      and concurrency held, before the body is read (401 / 403 / 429; grpc::auth alike)
//!   routes::chat       → generation::service.prepare(request, caller)   (routes::responses: Responses
//!                      input → chat request first, responses::input)
//!   generation::service  once each:
//!     models.resolve       alias or model@version → a version by weight  (404 / 503, reported after the
//!                          body's own faults); held until the response ends; a found model the key
//!                          may not use is refused at once (403), before any work for the request
//!     remote_images        http(s) image URLs → data URLs, for a model that takes images (400)
//!     generation::inputs   validate::chat → ValidatedChat (tools in the prompt) (400);
//!                          validate::model: logit_bias ids, images (400)
//!     generation::plan     grammar compiles, prompt tokens counted, max_tokens fitted, n × seed (400)
//!     gateway::limiter     the key's tokens held (429 + Retry-After, x-ratelimit-*)
//!   Prepared::stream   generation::plan.run: models::admission (429 / 503; a queued stream: 200 + pings)
//!                      → engine.generate → EventStream per sequence
//!   per token, upward: generation::choices (stop filter) → generation::output (GenerationEvents; the
//!                      key's Settlement made at Done) → formats::chat (chunks; tool calls parsed by
//!                      generation::chat) → routes::sse (bytes … [DONE])  |  grpc::service (messages)
//! ```
//! The admission permit and the engine stream live inside the response: when the client goes away they are
//! dropped, the engine cancels the sequence, and the count goes down.

pub mod api;
pub mod config;
pub mod default_model;
pub mod engine;
pub mod error;
pub mod extract;
pub mod formats;
pub mod gateway;
pub mod generation;
pub mod grpc;
pub mod ids;
pub mod metrics;
pub mod models;
pub mod openapi;
pub mod otlp;
pub mod process_memory;
pub mod reload;
pub mod remote_images;
pub mod request_log;
pub mod responses;
pub mod routes;
pub mod server;
pub mod state;
pub mod stop;
pub mod telemetry;
pub mod tools;
pub mod validate;

pub use server::{app, start, RunningServer};

#[cfg(test)]
mod fuzz;
