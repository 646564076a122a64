//! The HTTP front: the routing table (one place, paths as named consts), one module per endpoint group,
//! the SSE writer ([`sse`]) and errors as HTTP responses.

pub mod admin;
pub mod answer;
pub mod auth;
pub mod chat;
pub mod completions;
pub mod embeddings;
pub mod health;
pub mod http_log;
pub mod metrics;
pub mod models;
pub mod responses;
pub mod sse;
pub mod tokenize;
pub mod ui;

pub mod errors;

use actix_web::{web, FromRequest, Handler, Responder};

use crate::error::ApiError;
use auth::{policy, Guarded};

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
/// Swagger UI's files.
pub const DOCS_FILE: &str = "/docs/{file:.*}";
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
    use policy as p;
    let post = web::post;
    let get = web::get;
    cfg.service(
        resource_with::<p::ChatCompletions>(CHAT_COMPLETIONS, "POST")
            .route(guarded(post(), chat::create_chat_completion)),
    )
    .service(
        resource_with::<p::Completions>(COMPLETIONS, "POST")
            .route(guarded(post(), completions::create_completion)),
    )
    .service(
        resource_with::<p::Embeddings>(EMBEDDINGS, "POST")
            .route(guarded(post(), embeddings::create_embeddings)),
    )
    .service(
        resource_with::<p::CreateResponse>(RESPONSES, "POST")
            .route(guarded(post(), responses::create_response)),
    )
    .service(
        resource_with::<p::StoredResponses>(RESPONSE, "GET, DELETE")
            .route(guarded(get(), responses::retrieve_response))
            .route(guarded(web::delete(), responses::delete_response)),
    )
    .service(
        resource_with::<p::ModelsRead>(MODELS, "GET").route(guarded(get(), models::list_models)),
    )
    .service(
        resource_with::<p::ModelsRead>(MODEL, "GET").route(guarded(get(), models::retrieve_model)),
    )
    .service(
        resource_with::<p::Tokenize>(TOKENIZE, "POST").route(guarded(post(), tokenize::tokenize)),
    )
    .service(
        resource_with::<p::Tokenize>(DETOKENIZE, "POST")
            .route(guarded(post(), tokenize::detokenize)),
    )
    .service(resource_with::<p::Public>(HEALTH, "GET").route(guarded(get(), health::ready)))
    .service(resource_with::<p::Public>(HEALTH_LIVE, "GET").route(guarded(get(), health::live)))
    .service(resource_with::<p::Public>(HEALTH_READY, "GET").route(guarded(get(), health::ready)))
    .service(
        resource_with::<p::Public>(HEALTH_STARTUP, "GET").route(guarded(get(), health::startup)),
    );
    if with_metrics {
        metrics::configure(cfg);
    }
    admin::configure(cfg);
    if with_ui {
        ui::configure(cfg);
    }
}

/// Argument lists that start with a [`Guarded`]: the only handlers [`guarded`] attaches.
pub trait GuardedFirst {}

macro_rules! guarded_first {
    ($($rest:ident),*) => {
        impl<P: crate::gateway::access::Policy, D, $($rest),*> GuardedFirst for (Guarded<P, D>, $($rest,)*) {}
    };
}
guarded_first!();
guarded_first!(A);
guarded_first!(A, B);
guarded_first!(A, B, C);
guarded_first!(A, B, C, D2);
guarded_first!(A, B, C, D2, E);

/// Attaches `handler` to `route`: the one way a handler is registered (clippy refuses `Route::to` and
/// `web::to` anywhere else, clippy.toml), and it takes only handlers whose first argument is a
/// [`Guarded<P, _>`], so every route names its policy in its type.
#[allow(clippy::disallowed_methods)]
pub(crate) fn guarded<F, Args>(route: actix_web::Route, handler: F) -> actix_web::Route
where
    F: Handler<Args>,
    Args: FromRequest + GuardedFirst + 'static,
    F::Output: Responder + 'static,
{
    route.to(handler)
}

/// A resource whose other methods get a 405 naming `allow`, the methods it has, under the resource's own
/// policy `P`: a caller learns no more about a route than its policy lets it (and a spelling of another
/// path that lands on this resource is decided as this resource is, `server::access_tests`).
pub(crate) fn resource_with<P: crate::gateway::access::Policy>(
    path: &str,
    allow: &'static str,
) -> actix_web::Resource {
    web::resource(path).default_service(guarded(
        web::route(),
        move |guarded: Guarded<P, actix_web::HttpRequest>| async move {
            Err::<actix_web::HttpResponse, _>(ApiError::MethodNotAllowed {
                method: guarded.data.method().to_string(),
                allow,
            })
        },
    ))
}

/// Anything unrouted: a JSON 404 rather than actix's empty one, to anyone (as OpenAI's API answers an
/// unknown URL).
pub async fn not_found(
    guarded: Guarded<policy::Public, actix_web::HttpRequest>,
) -> Result<actix_web::HttpResponse, ApiError> {
    Err(ApiError::RouteNotFound(guarded.data.path().to_string()))
}

/// The caller's `x-ratelimit-*` headers on a response.
/// A whole answer: `200` JSON naming the version that answered, with the caller's `x-ratelimit-*`.
pub fn json_answer(
    version: &str,
    headers: &crate::gateway::quota::RateHeaders,
    body: impl serde::Serialize,
) -> actix_web::HttpResponse {
    let response = actix_web::HttpResponse::Ok()
        .insert_header((MODEL_VERSION_HEADER, version))
        .json(body);
    with_rate_headers(headers, response)
}

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
