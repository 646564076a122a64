//! llmserve: an OpenAI-compatible LLM server on mistral.rs.
//!
//! # Layout
//! The request path reads top to bottom, and a layer of it imports only the layers below it; the shared
//! modules at the end serve every layer (`error` joins the layers' own error types into `ApiError`).
//! - `main.rs`: thin: flags → [`config::Config`] → [`telemetry::init`] → [`server::start`].
//! - [`server`]: start-up, the drain, the HTTP `app` (served by `main` and by the tests), the metrics and
//!   gRPC ports beside it, SIGHUP (reload); [`reload`] applies the models file again when its content
//!   changes. [`state`]: what every front reads. [`config`]: the typed
//!   configuration (`config::cli`: the flags; `config::file`: the models file; `config::models`: the
//!   registry's desired state; `config::keys`: keys, roles, limits), which names the engine's settings
//!   types.
//! - Fronts, thin adapters over the core: [`routes`] (HTTP: the routing table, one module per endpoint
//!   group, `routes::admin` the admin API, `routes::responses` the Responses API and its event stream,
//!   `routes::ui` the chat page at `/`, `routes::sse` the one SSE writer, `routes::errors` errors as
//!   HTTP responses) with [`extract`]
//!   (JSON bodies whose rejections are OpenAI envelopes) and [`openapi`] (the document, refined with what the
//!   derives cannot state, plus the loaded model's bounds when served); [`grpc`] (`llmserve.v1`, health,
//!   reflection; errors as gRPC statuses). [`front`]: what both do with a wire request before the core.
//! - [`responses`]: the Responses API on the chat path: `responses::input` turns a Responses request (items,
//!   instructions, a stored conversation) into a chat request, `responses::output` the chat answer into
//!   output items, `responses::store` keeps responses (bounded, per key) for `previous_response_id`, in
//!   this process or (`responses::redis_store`) in Redis for every replica.
//! - [`validate`]: wire request → validated request (defaults, bounds), and `validate::model`, the checks
//!   that need the resolved model. [`remote_images`]: `http(s)` image URLs fetched, when allowed.
//! - [`models`]: the registry of versions (each its own engine and admission queue) and aliases (weights
//!   over versions): the one lookup per request, hot swap, reload, drain of unloaded versions
//!   (`models::registry`); `models::routing` picks an alias's version by weight, sticky per caller;
//!   `models::loading` turns a configured source into a warmed-up engine.
//! - [`gateway`]: between the model lookup and generation: API keys (hashed, compared in constant time)
//!   → a `Principal` (its role's actions, its models, its limits; `routes::auth` asks for it on every
//!   HTTP route but the probes, `grpc::service` on every call); `gateway::quota` holds each key's request,
//!   token and concurrency budget over a sliding minute, reserved at admission, settled at the response's
//!   end; `gateway::redis_quota` keeps those windows in Redis for every replica (`--limits-redis`),
//!   falling back to this process's when Redis does not answer; `gateway::redis_link` is the one Redis
//!   client.
//! - [`generation`]: the transport-neutral core: planning (bias ids, grammar, prompt counts, `max_tokens`
//!   fitted, n × seed), admission (`generation::admission`: the bounded queue, the drain), submission,
//!   stop filtering, logprobs, tool-call parsing, fill-in-the-middle, echo, `best_of`; out come
//!   `GenerationEvent`s or one collected answer. `generation::embedding` runs `/v1/embeddings` on an
//!   embedding model (tokens counted, a slot, the vectors, `dimensions`).
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
//! ```text
//! POST /v1/chat/completions                  gRPC llmserve.v1.Llmserve/Chat
//!   extract::ApiJson   body → ChatCompletionRequest        grpc::convert  message → the same wire request
//!   routes::auth       API key → Principal; the route's action allowed?  (401 / 403; probes need none)
//!   models.resolve     alias or model@version → a version by weight, once  (404 / 503; reported after
//!                      the body's faults); the request holds the version until its response ends
//!   remote_images      http(s) image URLs → data URLs, if allowed (400)
//!   front::chat        the steps below, shared by both fronts
//!   validate::chat     → ValidatedChat (tools in the prompt)  (400)
//!   validate::model    logit_bias ids, images               (400)
//!   gateway            the key may use this model?  (403 model_not_allowed)
//!   generation::plan   grammar compiles, count prompt tokens, fit max_tokens, n × seed (400)
//!   gateway::quota     the key's rpm / tpm / concurrency budget held  (429 + Retry-After, x-ratelimit-*)
//!   generation::admission  wait for a slot in that version's queue  (429 / 503; a queued stream: 200 + pings)
//!   engine.generate    → EventStream (Text + logprobs…, Finished); a TokenPicker per sequence
//!   generation::output stop filter → GenerationEvents | one collected answer
//!   routes::sse | grpc::service   chunks (tool calls parsed by generation::chat) … [DONE] | messages
//! ```
//! The admission permit and the engine stream live inside the response: when the client goes away they are
//! dropped, the engine cancels the sequence, and the count goes down.

pub mod api;
pub mod config;
pub mod default_model;
pub mod engine;
pub mod error;
pub mod extract;
pub mod front;
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
