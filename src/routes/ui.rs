//! The built-in chat page at `/` (off with `--no-ui`): a static page compiled into the binary that talks
//! to this server's own `/v1` API from the browser, with no request anywhere else. Served without a key
//! (the page asks for one when the server has keys), under a Content-Security-Policy that allows only its
//! own script and style: model output is rendered as text nodes, and even a slip there could not run code.

use actix_web::{web, HttpResponse};

use crate::error::ApiError;
use crate::routes::auth::{policy, Guarded};

const INDEX_HTML: &str = include_str!("ui/index.html");
const APP_JS: &str = include_str!("ui/app.js");
const APP_CSS: &str = include_str!("ui/app.css");

/// Own script and style only, images from the page's own data URLs, fetches to this origin only.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self' data: blob:; connect-src 'self'; base-uri 'none'; form-action 'none'; \
     frame-ancestors 'none'";

pub fn configure(cfg: &mut web::ServiceConfig) {
    use super::{guarded, resource_with};
    type Anyone = policy::Public;
    cfg.service(resource_with::<Anyone>(super::UI_PAGE, "GET").route(guarded(web::get(), page)))
        .service(resource_with::<Anyone>(super::UI_ASSET, "GET").route(guarded(web::get(), asset)));
}

fn static_response(content_type: &str, body: &'static str) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(content_type)
        .insert_header(("Content-Security-Policy", CONTENT_SECURITY_POLICY))
        .insert_header(("X-Content-Type-Options", "nosniff"))
        .insert_header(("Referrer-Policy", "no-referrer"))
        .insert_header(("Cache-Control", "no-cache"))
        .body(body)
}

async fn page(_anyone: Guarded<policy::Public>) -> HttpResponse {
    static_response("text/html; charset=utf-8", INDEX_HTML)
}

async fn asset(
    anyone: Guarded<policy::Public, (web::Path<String>, actix_web::HttpRequest)>,
) -> Result<HttpResponse, ApiError> {
    let (path, req) = anyone.data;
    match path.as_str() {
        "app.js" => Ok(static_response("text/javascript; charset=utf-8", APP_JS)),
        "app.css" => Ok(static_response("text/css; charset=utf-8", APP_CSS)),
        _ => Err(ApiError::RouteNotFound(req.path().to_string())),
    }
}
