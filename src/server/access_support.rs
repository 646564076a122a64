//! Helpers shared by the access tests (`access_tests`, `access_limit_tests`): a state with a key of each
//! role, a scripted answer, and a request as a caller sends it.

use std::sync::Arc;
use std::time::Duration;

use actix_web::test::TestRequest;
use actix_web::web;

use crate::config::keys::{keys_spec, KeyFields, Limits};
use crate::config::Config;
use crate::engine::scripted::{text, ScriptedEngine};
use crate::engine::{EngineEvent, EngineFinish};
use crate::state::AppState;

pub(super) fn keyed_state(limits: Limits) -> web::Data<AppState> {
    let toml_keys = r#"
        [[keys]]
        id = "admin"
        key = "sk-access-admin-000000000001"
        role = "admin"
        [[keys]]
        id = "user"
        key = "sk-access-user-0000000000002"
        role = "user"
        [[keys]]
        id = "metrics"
        key = "sk-access-metrics-0000000003"
        role = "metrics"
        [[keys]]
        id = "completer"
        key = "sk-access-completer-00000004"
        role = "completer"
        [[keys]]
        id = "chatter"
        key = "sk-access-chatter-0000000005"
        role = "chatter"
    "#;
    #[derive(serde::Deserialize)]
    struct Root {
        keys: Vec<KeyFields>,
    }
    let keys = toml::from_str::<Root>(toml_keys).unwrap().keys;
    let roles = [
        ("completer".to_string(), vec!["completions".to_string()]),
        ("chatter".to_string(), vec!["chat.completions".to_string()]),
    ]
    .into_iter()
    .collect();
    let keys = keys_spec(&keys, &roles, limits, |_| None).unwrap();
    let mut config = Config::for_default_model(std::env::temp_dir());
    config.server.sse_keep_alive = Duration::from_secs(1);
    let state = web::Data::new(AppState::new(config, keys));
    let spec = state.config.models_spec().unwrap();
    state.models.apply_without_loading(spec);
    state
}

pub(super) fn ready(state: &AppState, engine: Arc<ScriptedEngine>) {
    let id = state.config.models_spec().unwrap().versions[0].id();
    state.models.finish_load(&id, engine);
}

/// A keyed state with these default limits, its model served by `engine`.
pub(super) fn serving(limits: Limits, engine: Arc<ScriptedEngine>) -> web::Data<AppState> {
    let state = keyed_state(limits);
    ready(&state, engine);
    state
}

pub(super) fn finished() -> Vec<Result<EngineEvent, crate::engine::EngineError>> {
    vec![
        text("ok"),
        Ok(EngineEvent::Finished {
            reason: EngineFinish::Stop,
            completion_tokens: None,
            prompt_tokens: None,
        }),
    ]
}

pub(super) fn request(
    method: &str,
    path: &str,
    key: Option<&str>,
    body: Option<&str>,
) -> TestRequest {
    let method = actix_web::http::Method::from_bytes(method.as_bytes()).unwrap();
    let mut request = TestRequest::default().method(method).uri(path);
    if let Some(key) = key {
        request = request.insert_header(("Authorization", format!("Bearer {key}")));
    }
    if let Some(body) = body {
        request = request
            .insert_header(("Content-Type", "application/json"))
            .set_payload(body.to_string());
    }
    request
}
