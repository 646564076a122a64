//! The admin API (`/admin/...`): load and unload versions, shift an alias's weights, promote, roll back,
//! reload the models file, usage per key. Every handler takes `Guarded<policy::Admin, _>`: only keys
//! whose role has the `admin` action reach it, and a server without keys has no admin API.

use actix_web::{web, HttpResponse};

use crate::api::admin::{
    AdminModels, DeletedModel, KeyUsage, PromoteRequest, ReloadResponse, SetWeightsRequest,
    UsageList,
};
use crate::api::errors::ErrorResponse;
use crate::api::models::Model;
use crate::config::file::{check_name, version_spec, VersionFields};
use crate::config::models::version_id;
use crate::error::ApiError;
use crate::extract::ApiJson;
use crate::models::RegistryError;
use crate::routes::auth::{policy, Guarded};
use crate::state::AppState;

/// The admin routes' error answers, documented once.
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)] // Only its documentation is used.
pub enum AdminErrors {
    #[response(status = 400, description = "Invalid body or models file")]
    BadRequest(ErrorResponse),
    #[response(status = 401, description = "Missing, wrong or expired API key")]
    Unauthorized(ErrorResponse),
    #[response(
        status = 403,
        description = "The key's role has no `admin` action (or the server has no keys)"
    )]
    Forbidden(ErrorResponse),
    #[response(status = 404, description = "Unknown model, version or alias")]
    NotFound(ErrorResponse),
    #[response(
        status = 409,
        description = "Refused in this state (version exists, still routed to, draining, failed, nothing to roll back)"
    )]
    Conflict(ErrorResponse),
}

fn alias_answer(state: &AppState, alias: &str) -> HttpResponse {
    match state.models.describe(alias) {
        Some(model) => HttpResponse::Ok().json(model),
        None => HttpResponse::NotFound().finish(),
    }
}

/// Every alias and version with its state, weights and load.
#[utoipa::path(get, path = "/admin/models", tag = "Admin",
    responses((status = 200, description = "The registry", body = AdminModels), AdminErrors))]
pub async fn list(
    _admin: Guarded<policy::Admin>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(AdminModels {
        default_model: state.models.default_alias(),
        data: state.models.list_all(),
    }))
}

/// Loads a new version of a model beside the others (202: it loads in the background, then is warmed up
/// with one generation; `GET /v1/models/{model}@{version}` says when it is `ready`). Versions are
/// immutable: a name already present is refused.
#[utoipa::path(post, path = "/admin/models/{model}/versions", tag = "Admin",
    params(("model" = String, Path, description = "The model's name (new or existing)")),
    request_body = VersionFields,
    responses((status = 202, description = "Loading", body = Model), AdminErrors))]
pub async fn add_version(
    admin: Guarded<policy::Admin, ApiJson<VersionFields>>,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let body = admin.data;
    let model = path.into_inner();
    check_name("model name", &model).map_err(RegistryError::Invalid)?;
    let fields = body.into_inner();
    let spec = version_spec(
        &model,
        &fields,
        std::path::Path::new("."),
        &state.config.version_defaults(),
    )
    .map_err(|e| RegistryError::Invalid(e.to_string()))?;
    let id = spec.id();
    state.models.add_version(spec)?;
    tracing::info!(version = %id, "admin: version added");
    let entry = state.models.describe(&id);
    Ok(HttpResponse::Accepted().json(entry))
}

/// Takes a version out of service: its running requests finish on it, then it is unloaded and its
/// memory returned. Refused (409) while an alias still routes to it.
#[utoipa::path(delete, path = "/admin/models/{model}/versions/{version}", tag = "Admin",
    params(("model" = String, Path, description = "The model's name"),
           ("version" = String, Path, description = "The version's name")),
    responses((status = 202, description = "Draining (or removed, when it had not loaded)", body = DeletedModel), AdminErrors))]
pub async fn remove_version(
    admin: Guarded<policy::Admin, web::Path<(String, String)>>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let path = admin.data;
    let (model, version) = path.into_inner();
    let id = version_id(&model, &version);
    state.models.remove_version(&id)?;
    tracing::info!(version = %id, "admin: version removed");
    let status = if state.models.status(&id).is_some() {
        "draining"
    } else {
        "removed"
    };
    Ok(HttpResponse::Accepted().json(DeletedModel {
        id,
        object: "model".into(),
        deleted: true,
        status: status.into(),
    }))
}

/// Sets an alias's weights (shift traffic: 100/0 → 95/5 → 50/50 → 0/100). In force at once when every
/// version given weight is ready; otherwise they wait (`pending_weights`) and switch atomically once it is.
#[utoipa::path(put, path = "/admin/aliases/{alias}", tag = "Admin",
    params(("alias" = String, Path, description = "An alias (a model's own name is one)")),
    request_body = SetWeightsRequest,
    responses((status = 200, description = "The alias", body = Model), AdminErrors))]
pub async fn set_weights(
    admin: Guarded<policy::Admin, ApiJson<SetWeightsRequest>>,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let body = admin.data;
    let alias = path.into_inner();
    let weights = body.into_inner().weights.into_iter().collect();
    let active = state.models.set_weights(&alias, weights)?;
    tracing::info!(%alias, active, "admin: weights set");
    Ok(alias_answer(&state, &alias))
}

/// Sends all of an alias's traffic to one version (the same as weights `{version: 100}`).
#[utoipa::path(post, path = "/admin/aliases/{alias}/promote", tag = "Admin",
    params(("alias" = String, Path, description = "An alias")),
    request_body = PromoteRequest,
    responses((status = 200, description = "The alias", body = Model), AdminErrors))]
pub async fn promote(
    admin: Guarded<policy::Admin, ApiJson<PromoteRequest>>,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let body = admin.data;
    let alias = path.into_inner();
    let version = body.into_inner().version;
    state
        .models
        .set_weights(&alias, vec![(version.clone(), 100)])?;
    tracing::info!(%alias, %version, "admin: promoted");
    Ok(alias_answer(&state, &alias))
}

/// Returns an alias to its weights before the last change (repeatable, 16 steps back).
#[utoipa::path(post, path = "/admin/aliases/{alias}/rollback", tag = "Admin",
    params(("alias" = String, Path, description = "An alias")),
    responses((status = 200, description = "The alias", body = Model), AdminErrors))]
pub async fn roll_back(
    admin: Guarded<policy::Admin, web::Path<String>>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let path = admin.data;
    let alias = path.into_inner();
    state.models.roll_back(&alias)?;
    tracing::info!(%alias, "admin: rolled back");
    Ok(alias_answer(&state, &alias))
}

/// Reads the models file again and applies what changed since it was last read (as SIGHUP does). A file
/// that does not parse or validate changes nothing: 400 with the reason, and the server serves on.
#[utoipa::path(post, path = "/admin/reload", tag = "Admin",
    responses((status = 200, description = "Applied", body = ReloadResponse), AdminErrors))]
pub async fn reload(
    _admin: Guarded<policy::Admin>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let changes = state.reload_models_file()?;
    Ok(HttpResponse::Ok().json(ReloadResponse { changes }))
}

/// Requests and tokens per API key since the server started (the same counts as
/// `llmserve_key_requests_total` and `llmserve_key_tokens_total`).
#[utoipa::path(get, path = "/admin/usage", tag = "Admin",
    responses((status = 200, description = "Use per key", body = UsageList), AdminErrors))]
pub async fn usage(_admin: Guarded<policy::Admin>, state: web::Data<AppState>) -> HttpResponse {
    let data = state
        .gateway
        .key_ids()
        .into_iter()
        .map(|key_id| {
            let (requests, prompt_tokens, completion_tokens) = state.metrics.key_usage(&key_id);
            KeyUsage {
                requests: requests
                    .into_iter()
                    .map(|(outcome, n)| (outcome.to_string(), n))
                    .collect(),
                prompt_tokens,
                completion_tokens,
                key_id,
            }
        })
        .collect();
    HttpResponse::Ok().json(UsageList { data })
}

/// Registers the admin routes (reached only by keys with the `admin` action).
pub fn configure(cfg: &mut web::ServiceConfig) {
    use super::{
        guarded, resource_with, ADMIN_ALIAS, ADMIN_MODELS, ADMIN_PROMOTE, ADMIN_RELOAD,
        ADMIN_ROLLBACK, ADMIN_USAGE, ADMIN_VERSION, ADMIN_VERSIONS,
    };
    cfg.service(
        resource_with::<policy::Admin>(ADMIN_MODELS, "GET").route(guarded(web::get(), list)),
    )
    .service(
        resource_with::<policy::Admin>(ADMIN_VERSIONS, "POST")
            .route(guarded(web::post(), add_version)),
    )
    .service(
        resource_with::<policy::Admin>(ADMIN_VERSION, "DELETE")
            .route(guarded(web::delete(), remove_version)),
    )
    .service(
        resource_with::<policy::Admin>(ADMIN_ALIAS, "PUT").route(guarded(web::put(), set_weights)),
    )
    .service(
        resource_with::<policy::Admin>(ADMIN_PROMOTE, "POST").route(guarded(web::post(), promote)),
    )
    .service(
        resource_with::<policy::Admin>(ADMIN_ROLLBACK, "POST")
            .route(guarded(web::post(), roll_back)),
    )
    .service(
        resource_with::<policy::Admin>(ADMIN_RELOAD, "POST").route(guarded(web::post(), reload)),
    )
    .service(resource_with::<policy::Admin>(ADMIN_USAGE, "GET").route(guarded(web::get(), usage)));
}
