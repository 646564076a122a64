//! API keys on the HTTP front: once keys are configured, every route but the probes (and CORS preflights,
//! answered before this) needs one, as `Authorization: Bearer <key>` or `x-api-key: <key>`, whose role
//! allows the route's action. The caller's [`Principal`] goes into the request for the handlers
//! ([`Caller`]), which check the model it asks for.

use std::future::{ready, Ready};

use actix_web::body::MessageBody;
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{web, Error, FromRequest, HttpMessage, HttpRequest};

use crate::config::keys::Action;
use crate::error::ApiError;
use crate::gateway::Principal;
use crate::state::AppState;

use super::*;

/// What a route needs: `None` for the probes (no key at all), else the action (`None` inside: any valid
/// key, for routes that do not exist).
fn required_action(pattern: Option<&str>) -> Option<Option<Action>> {
    let Some(pattern) = pattern else {
        return Some(None);
    };
    Some(Some(match pattern {
        // The probes, and the chat page (which asks for a key itself when the API wants one).
        HEALTH | HEALTH_LIVE | HEALTH_READY | HEALTH_STARTUP | UI_PAGE | UI_ASSET => return None,
        CHAT_COMPLETIONS => Action::ChatCompletions,
        COMPLETIONS => Action::Completions,
        RESPONSES | RESPONSE => Action::Responses,
        EMBEDDINGS => Action::Embeddings,
        TOKENIZE | DETOKENIZE => Action::Tokenize,
        MODELS | MODEL => Action::ModelsRead,
        METRICS => Action::MetricsRead,
        p if p.starts_with("/admin") => Action::Admin,
        p if p == OPENAPI_JSON || p.starts_with(DOCS) => Action::DocsRead,
        _ => return Some(None),
    }))
}

/// The key a request presents.
fn presented_key(req: &ServiceRequest) -> Option<String> {
    let header = |name| req.headers().get(name).and_then(|v| v.to_str().ok());
    crate::gateway::presented_key(
        header(actix_web::http::header::AUTHORIZATION.as_str()),
        header("x-api-key"),
    )
    .map(str::to_string)
}

/// The middleware: authenticate, authorize the route's action, hand the principal on.
pub async fn require_key(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let Some(state) = req.app_data::<web::Data<AppState>>().cloned() else {
        return next.call(req).await;
    };
    if let Some(action) = required_action(req.match_pattern().as_deref()) {
        let principal = state
            .gateway
            .authenticate(presented_key(&req).as_deref(), crate::ids::unix_now())
            .map_err(ApiError::from)?;
        if let (Some(key), Some(log)) = (
            principal.key_id.as_deref(),
            req.extensions().get::<crate::telemetry::RequestLog>(),
        ) {
            log.set_key(key);
        }
        if action == Some(Action::Admin) && state.gateway.is_open() {
            return Err(
                ApiError::from(crate::gateway::GatewayError::PermissionDenied {
                    key: String::new(),
                    action:
                        "admin (the admin API needs a key with the admin role in the models file)",
                })
                .into(),
            );
        }
        if let Some(action) = action {
            principal.require(action).map_err(ApiError::from)?;
        }
        req.extensions_mut().insert(principal);
    }
    next.call(req).await
}

/// The caller of a request ([`Principal::open`] where no key was asked, e.g. on `--metrics-port`).
pub struct Caller(pub Principal);

impl FromRequest for Caller {
    type Error = Error;
    type Future = Ready<Result<Self, Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let principal = req
            .extensions()
            .get::<Principal>()
            .cloned()
            .unwrap_or_else(Principal::open);
        ready(Ok(Caller(principal)))
    }
}
