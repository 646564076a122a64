//! The OpenAPI document, declared next to the handlers, refined with what the derives cannot state
//! ([`refine`]) and committed as `openapi/openapi.json`; and the routes that serve it (Swagger UI). The
//! served document adds the loaded model's bounds (its vocabulary, whether it takes images).

mod refine;

pub use refine::{with_model_bounds, ModelBounds};

use actix_web::{web, HttpResponse};
use utoipa::OpenApi;

use std::sync::Arc;

use crate::error::ApiError;
use crate::routes::auth::{policy, Guarded};
use crate::routes::{self, DOCS, DOCS_FILE, OPENAPI_JSON};
use crate::state::AppState;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "llmserve",
        description = "An OpenAI-compatible LLM server on mistral.rs. Point an OpenAI SDK's base URL at \
                       `http://HOST:PORT/v1`. Errors use OpenAI's envelope: \
                       `{\"error\": {\"message\", \"type\", \"param\", \"code\"}}`.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    paths(
        routes::chat::create_chat_completion,
        routes::completions::create_completion,
        routes::embeddings::create_embeddings,
        routes::responses::create_response,
        routes::responses::retrieve_response,
        routes::responses::delete_response,
        routes::models::list_models,
        routes::models::retrieve_model,
        routes::tokenize::tokenize,
        routes::tokenize::detokenize,
        routes::health::live,
        routes::health::ready,
        routes::health::startup,
        routes::metrics::metrics,
        routes::admin::list,
        routes::admin::add_version,
        routes::admin::remove_version,
        routes::admin::set_weights,
        routes::admin::promote,
        routes::admin::roll_back,
        routes::admin::reload,
        routes::admin::usage,
    ),
    modifiers(&ApiKeyScheme),
    tags(
        (name = "OpenAI", description = "The OpenAI-compatible API"),
        (name = "Health", description = "Probes for load balancers and Kubernetes"),
        (name = "Tokenizer", description = "The served model's tokenizer (vLLM's endpoints)"),
        (name = "Operations", description = "Prometheus metrics"),
        (name = "Admin", description = "Model versions, weighted aliases, hot swap, reload, usage per key; \
                                       for keys whose role has the `admin` action"),
    )
)]
pub struct ApiDoc;

/// API keys as a bearer security scheme, optional for the document as a whole: a server without keys
/// needs none, and the probes never do.
struct ApiKeyScheme;

impl utoipa::Modify for ApiKeyScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{
            HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme,
        };
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "An API key from the models file's `[[keys]]` (also accepted as `x-api-key`)",
                    ))
                    .build(),
            ),
        );
        openapi.security = Some(vec![
            SecurityRequirement::new("api_key", Vec::<String>::new()),
            SecurityRequirement::default(),
        ]);
    }
}

/// The document without a model's bounds.
pub fn document_value() -> serde_json::Value {
    let generated =
        serde_json::to_value(ApiDoc::openapi()).expect("the OpenAPI document serializes");
    refine::refine(generated)
}

/// The document without the admin API: what a server without API keys serves, since it has no admin
/// API (its `admin` action needs a key).
pub fn without_admin(mut document: serde_json::Value) -> serde_json::Value {
    if let Some(paths) = document["paths"].as_object_mut() {
        paths.retain(|path, _| !path.starts_with("/admin"));
    }
    document
}

/// The document as committed: pretty JSON with a trailing newline.
pub fn document() -> String {
    let mut json =
        serde_json::to_string_pretty(&document_value()).expect("the OpenAPI document serializes");
    json.push('\n');
    json
}

/// Swagger UI at `/docs` and the document at `/openapi.json`, both for keys with `docs.read`.
pub fn configure(cfg: &mut web::ServiceConfig) {
    use routes::{guarded, resource_with};
    type Docs = policy::DocsRead;
    cfg.service(resource_with::<Docs>(DOCS_FILE, "GET").route(guarded(web::get(), docs_file)))
        .service(
            resource_with::<Docs>(OPENAPI_JSON, "GET").route(guarded(web::get(), served_document)),
        )
        .service(resource_with::<Docs>(DOCS, "GET").route(guarded(web::get(), redirect_to_docs)));
}

/// Swagger UI's files (utoipa-swagger-ui's, served by our own guarded handler), pointed at
/// `/openapi.json`.
async fn docs_file(reader: Guarded<policy::DocsRead, web::Path<String>>) -> HttpResponse {
    static CONFIG: std::sync::OnceLock<Arc<utoipa_swagger_ui::Config<'static>>> =
        std::sync::OnceLock::new();
    let config = CONFIG
        .get_or_init(|| Arc::new(utoipa_swagger_ui::Config::from(OPENAPI_JSON)))
        .clone();
    match utoipa_swagger_ui::serve(&reader.data, config) {
        Ok(Some(file)) => {
            let mut response = HttpResponse::Ok();
            if file.gzpipped {
                response.insert_header((
                    actix_web::http::header::CONTENT_ENCODING,
                    actix_web::http::header::ContentEncoding::Gzip,
                ));
            }
            response
                .content_type(file.content_type)
                .body(file.bytes.to_vec())
        }
        Ok(None) => actix_web::ResponseError::error_response(&ApiError::RouteNotFound(format!(
            "{DOCS}/{}",
            reader.data.as_str()
        ))),
        Err(error) => {
            tracing::error!(%error, "Swagger UI could not be served");
            HttpResponse::InternalServerError().finish()
        }
    }
}

/// The document with the loaded model's bounds; before it has loaded, the committed one.
async fn served_document(
    _reader: Guarded<policy::DocsRead>,
    state: web::Data<AppState>,
) -> HttpResponse {
    // Generated and refined once per process; each request copies it to add the model's bounds.
    static DOCUMENT: std::sync::OnceLock<serde_json::Value> = std::sync::OnceLock::new();
    let mut document = DOCUMENT.get_or_init(document_value).clone();
    if state.gateway.is_open() {
        document = without_admin(document);
    }
    // With several models, what any of them accepts: the document describes the server.
    let bounds = state
        .models
        .ready_versions()
        .iter()
        .map(|model| {
            let info = model.engine.info();
            ModelBounds {
                vocab_size: info.vocab_size,
                accepts_images: info.accepts_images,
                fill_in_middle: info.fill_in_middle.is_some(),
                embedding_dimensions: info.embedding_dimensions,
            }
        })
        .reduce(|a, b| ModelBounds {
            vocab_size: a.vocab_size.max(b.vocab_size),
            accepts_images: a.accepts_images || b.accepts_images,
            fill_in_middle: a.fill_in_middle || b.fill_in_middle,
            // Several embedding models: the narrowest bounds what every one of them takes.
            embedding_dimensions: match (a.embedding_dimensions, b.embedding_dimensions) {
                (Some(x), Some(y)) => Some(x.min(y)),
                (x, y) => x.or(y),
            },
        });
    let document = match bounds {
        Some(bounds) => with_model_bounds(document, bounds),
        None => document,
    };
    HttpResponse::Ok().json(document)
}

/// `/docs` → `/docs/`: Swagger UI's relative asset paths need the trailing slash.
async fn redirect_to_docs(_reader: Guarded<policy::DocsRead>) -> HttpResponse {
    HttpResponse::PermanentRedirect()
        .insert_header(("Location", "/docs/"))
        .finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    const COMMITTED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/openapi/openapi.json");

    /// The committed document is what the code serves. Regenerate with
    /// `LLMSERVE_UPDATE_OPENAPI=1 cargo test --release --lib openapi`: that run rewrites the file and still
    /// fails if the committed one was stale, so that the update mode can never pass over drift.
    #[test]
    fn committed_openapi_matches_the_code() {
        let generated = document();
        let committed = std::fs::read_to_string(COMMITTED).unwrap_or_default();
        if committed != generated && std::env::var_os("LLMSERVE_UPDATE_OPENAPI").is_some() {
            std::fs::write(COMMITTED, &generated).expect("writing openapi/openapi.json");
            panic!("openapi/openapi.json was stale and has been rewritten: review and commit it");
        }
        assert!(
            committed == generated,
            "openapi/openapi.json differs from the code; regenerate it with:\n  \
             LLMSERVE_UPDATE_OPENAPI=1 cargo test --release --lib openapi"
        );
    }

    #[test]
    fn every_route_const_is_documented() {
        let doc = ApiDoc::openapi();
        for path in [
            routes::CHAT_COMPLETIONS,
            routes::COMPLETIONS,
            routes::EMBEDDINGS,
            routes::RESPONSES,
            routes::RESPONSE,
            routes::MODELS,
            routes::MODEL,
            routes::HEALTH_LIVE,
            routes::HEALTH_READY,
            routes::HEALTH_STARTUP,
            routes::TOKENIZE,
            routes::DETOKENIZE,
        ] {
            assert!(
                doc.paths.paths.contains_key(path),
                "{path} missing from the OpenAPI document"
            );
        }
        assert!(doc.to_json().unwrap().contains("\"openapi\":\"3.1"));
    }

    /// docs/compatibility.md stays a table of every request and response field: a field added to the API
    /// types without a row fails here.
    #[test]
    fn every_api_field_has_a_row_in_the_compatibility_table() {
        let table = include_str!("../../docs/compatibility.md");
        let document: serde_json::Value = serde_json::from_str(&document()).unwrap();
        let schemas = &document["components"]["schemas"];
        for schema in [
            "ChatCompletionRequest",
            "ChatMessage",
            "ChatCompletion",
            "ChatChoice",
            "AssistantMessage",
            "ChatDelta",
            "CompletionRequest",
            "TextCompletion",
            "CompletionChoice",
            "Usage",
            "CreateResponseRequest",
            "ResponseObject",
            "ResponseUsage",
            "EmbeddingRequest",
            "EmbeddingList",
            "Embedding",
            "EmbeddingUsage",
        ] {
            let properties = schemas[schema]["properties"]
                .as_object()
                .unwrap_or_else(|| panic!("{schema} has no properties"));
            for field in properties.keys() {
                assert!(
                    table.contains(&format!("{field}`")),
                    "docs/compatibility.md has no row for `{field}` of {schema}"
                );
            }
        }
    }
}
