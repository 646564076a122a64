//! Helpers shared by the scripted-engine HTTP tests (`tests`, `queue_tests`, `tool_call_tests`): a state
//! serving a scripted engine, request bodies and script events.

use std::sync::Arc;
use std::time::Duration;

use actix_web::test::{call_service, init_service, read_body, TestRequest};
use actix_web::web;
use serde_json::{json, Value};

use crate::config::Config;
use crate::engine::scripted::ScriptedEngine;
use crate::engine::{EngineError, EngineEvent, EngineFinish};
use crate::server::app;
use crate::state::AppState;

pub(super) fn state(engine: Option<Arc<ScriptedEngine>>) -> web::Data<AppState> {
    let mut config = Config::for_default_model(std::env::temp_dir());
    config.server.sse_keep_alive = Duration::from_secs(1);
    let state = web::Data::new(AppState::new(config, Default::default()));
    let spec = state.config.models_spec().unwrap();
    state.models.apply_without_loading(spec);
    if let Some(engine) = engine {
        serve(&state, engine);
    }
    state
}

/// The configured version finishes loading with this engine.
pub(super) fn serve(state: &AppState, engine: Arc<ScriptedEngine>) {
    let id = state.config.models_spec().unwrap().versions[0].id();
    state.models.finish_load(&id, engine);
}

pub(super) fn chat(extra: Value) -> Value {
    let mut body = json!({"messages": [{"role": "user", "content": "hi"}]});
    body.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    body
}

pub(super) async fn post(state: web::Data<AppState>, path: &str, body: Value) -> (u16, String) {
    let service = init_service(app(state)).await;
    let response = call_service(&service, post_req(path, &body).to_request()).await;
    let status = response.status().as_u16();
    (
        status,
        String::from_utf8(read_body(response).await.to_vec()).unwrap(),
    )
}

pub(super) fn finished(reason: EngineFinish) -> Result<EngineEvent, EngineError> {
    Ok(EngineEvent::Finished {
        reason,
        completion_tokens: None,
        prompt_tokens: None,
    })
}

pub(super) fn post_req(uri: &str, body: &Value) -> TestRequest {
    TestRequest::post().uri(uri).set_json(body)
}
