//! The HTTP front: the routing table (one place, paths as named consts), one module per endpoint group,
//! the SSE writer ([`sse`]) and errors as HTTP responses.

pub mod admin;
pub mod auth;
pub mod chat;
pub mod completions;
pub mod embeddings;
pub mod health;
pub mod metrics;
pub mod models;
pub mod responses;
pub mod sse;
pub mod tokenize;
pub mod ui;

pub mod errors;

use actix_web::web;

use crate::error::ApiError;

pub const CHAT_COMPLETIONS: &str = "/v1/chat/completions";
pub const COMPLETIONS: &str = "/v1/completions";
pub const EMBEDDINGS: &str = "/v1/embeddings";
pub const RESPONSES: &str = "/v1/responses";
pub const RESPONSE: &str = "/v1/responses/{response_id}";
pub const MODELS: &str = "/v1/models";
pub const MODEL: &str = "/v1/models/{model}";
pub const HEALTH: &str = "/health";
pub const HEALTH_LIVE: &str = "/health/live";
pub const HEALTH_READY: &str = "/health/ready";
pub const HEALTH_STARTUP: &str = "/health/startup";
pub const OPENAPI_JSON: &str = "/openapi.json";
pub const DOCS: &str = "/docs";
pub const METRICS: &str = "/metrics";
pub const TOKENIZE: &str = "/tokenize";
pub const DETOKENIZE: &str = "/detokenize";
pub const ADMIN_MODELS: &str = "/admin/models";
pub const ADMIN_VERSIONS: &str = "/admin/models/{model}/versions";
pub const ADMIN_VERSION: &str = "/admin/models/{model}/versions/{version}";
pub const ADMIN_ALIAS: &str = "/admin/aliases/{alias}";
pub const ADMIN_PROMOTE: &str = "/admin/aliases/{alias}/promote";
pub const ADMIN_ROLLBACK: &str = "/admin/aliases/{alias}/rollback";
pub const ADMIN_RELOAD: &str = "/admin/reload";
pub const ADMIN_USAGE: &str = "/admin/usage";
pub const UI_PAGE: &str = "/";
pub const UI_ASSET: &str = "/ui/{asset}";

/// The response header naming the version (`model@version`) that answered a generation request.
pub const MODEL_VERSION_HEADER: &str = "x-llmserve-model-version";

/// Registers every API route; `server::app` (served by `main` and the tests) adds the OpenAPI document
/// and Swagger UI (`openapi::configure`). `/metrics` is here unless it
/// has a port of its own.
pub fn configure(cfg: &mut web::ServiceConfig, with_metrics: bool, with_ui: bool) {
    let post = |path: &str| resource_with(path, "POST");
    let get = |path: &str| resource_with(path, "GET");
    cfg.service(post(CHAT_COMPLETIONS).route(web::post().to(chat::create_chat_completion)))
        .service(post(COMPLETIONS).route(web::post().to(completions::create_completion)))
        .service(post(EMBEDDINGS).route(web::post().to(embeddings::create_embeddings)))
        .service(post(RESPONSES).route(web::post().to(responses::create_response)))
        .service(
            resource_with(RESPONSE, "GET, DELETE")
                .route(web::get().to(responses::retrieve_response))
                .route(web::delete().to(responses::delete_response)),
        )
        .service(get(MODELS).route(web::get().to(models::list_models)))
        .service(get(MODEL).route(web::get().to(models::retrieve_model)))
        .service(post(TOKENIZE).route(web::post().to(tokenize::tokenize)))
        .service(post(DETOKENIZE).route(web::post().to(tokenize::detokenize)))
        .service(get(HEALTH).route(web::get().to(health::ready)))
        .service(get(HEALTH_LIVE).route(web::get().to(health::live)))
        .service(get(HEALTH_READY).route(web::get().to(health::ready)))
        .service(get(HEALTH_STARTUP).route(web::get().to(health::startup)));
    if with_metrics {
        metrics::configure(cfg);
    }
    admin::configure(cfg);
    if with_ui {
        ui::configure(cfg);
    }
}

/// A resource whose other methods get a 405 naming `allow`, the methods it has.
pub(crate) fn resource_with(path: &str, allow: &'static str) -> actix_web::Resource {
    web::resource(path).default_service(web::to(move |req: actix_web::HttpRequest| async move {
        Err::<actix_web::HttpResponse, _>(ApiError::MethodNotAllowed {
            method: req.method().to_string(),
            allow,
        })
    }))
}

/// Anything unrouted: a JSON 404 rather than actix's empty one.
pub async fn not_found(req: actix_web::HttpRequest) -> Result<actix_web::HttpResponse, ApiError> {
    Err(ApiError::RouteNotFound(req.path().to_string()))
}

/// The caller's `x-ratelimit-*` headers on a response.
pub fn with_rate_headers(
    headers: &crate::gateway::quota::RateHeaders,
    mut response: actix_web::HttpResponse,
) -> actix_web::HttpResponse {
    for (name, value) in headers.pairs() {
        if let Ok(value) = actix_web::http::header::HeaderValue::from_str(&value) {
            response.headers_mut().insert(
                actix_web::http::header::HeaderName::from_static(name),
                value,
            );
        }
    }
    response
}
