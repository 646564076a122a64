//! Swagger UI at `/docs` and the OpenAPI 3.1 document at `/openapi.json`.

use actix_web::{web, HttpResponse};
use utoipa::OpenApi;
use utoipa_swagger_ui::SwaggerUi;

use super::{DOCS, OPENAPI_JSON};
use crate::openapi::ApiDoc;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(SwaggerUi::new("/docs/{_:.*}").url(OPENAPI_JSON, ApiDoc::openapi()))
        .route(DOCS, web::get().to(redirect_to_docs));
}

/// `/docs` → `/docs/`: Swagger UI's relative asset paths need the trailing slash.
async fn redirect_to_docs() -> HttpResponse {
    HttpResponse::PermanentRedirect()
        .insert_header(("Location", "/docs/"))
        .finish()
}
