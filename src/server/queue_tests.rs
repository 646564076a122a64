//! Admission-queue tests with a scripted engine: 429 beyond the queue, draining, a queued stream's
//! keep-alives, the queue timeout after the 200.

use std::sync::Arc;
use std::time::Duration;

use actix_web::test::{call_service, init_service, read_body, TestRequest};
use actix_web::web;
use serde_json::{json, Value};

use crate::config::Config;
use crate::engine::scripted::{engine, text, ScriptedEngine};
use crate::engine::EngineFinish;
use crate::server::app;
use crate::server::test_support::{chat, finished, post_req, serve};
use crate::state::AppState;

/// The served version's admission queue.
fn admission(state: &AppState) -> crate::models::admission::Admission {
    state.models.ready_versions()[0].admission.clone()
}

fn state_with_limits(
    engine: Arc<ScriptedEngine>,
    max_num_seqs: usize,
    max_queue: usize,
) -> web::Data<AppState> {
    state_with_queue(
        engine,
        max_num_seqs,
        max_queue,
        None,
        Duration::from_secs(5),
    )
}

fn state_with_queue(
    engine: Arc<ScriptedEngine>,
    max_num_seqs: usize,
    max_queue: usize,
    queue_timeout: Option<Duration>,
    keep_alive: Duration,
) -> web::Data<AppState> {
    let mut config = Config::for_default_model(std::env::temp_dir());
    config.engine.max_num_seqs = max_num_seqs;
    config.queue.max_waiting = max_queue;
    config.queue.timeout = queue_timeout;
    config.server.sse_keep_alive = keep_alive;
    let state = web::Data::new(AppState::new(config, Default::default()));
    let spec = state.config.models_spec().unwrap();
    state.models.apply_without_loading(spec);
    serve(&state, engine);
    state
}

#[actix_web::test]
async fn beyond_the_queue_requests_get_429_with_retry_after_at_admission() {
    let slow = engine(
        5,
        vec![text("x"), finished(EngineFinish::Stop)],
        Duration::from_secs(30),
    );
    let state = state_with_limits(slow, 1, 0);
    let service = init_service(app(state.clone())).await;
    let stream = json!({"prompt": "x", "stream": true});
    // The first stream holds the only slot while its body is unread.
    let first = call_service(&service, post_req("/v1/completions", &stream).to_request()).await;
    assert_eq!(first.status().as_u16(), 200);
    assert_eq!(admission(&state).requests_running(), 1);
    let second = call_service(&service, post_req("/v1/completions", &stream).to_request()).await;
    assert_eq!(second.status().as_u16(), 429);
    assert_eq!(second.headers().get("retry-after").unwrap(), "1");
    let body: Value = serde_json::from_slice(&read_body(second).await).unwrap();
    assert_eq!(body["error"]["code"], "overloaded");
    // The queue (size 0) is full: that is load, not unreadiness, so the replica stays in the Service
    // (and its clients keep getting this 429, not a balancer's 503).
    let ready = call_service(
        &service,
        TestRequest::get().uri("/health/ready").to_request(),
    )
    .await;
    assert_eq!(ready.status().as_u16(), 200);
    let body: Value = serde_json::from_slice(&read_body(ready).await).unwrap();
    assert_eq!(body["status"], "ok");
    assert_eq!(body["requests_running"], 1);
    drop(first);
    assert_eq!(admission(&state).requests_running(), 0);
}

#[actix_web::test]
async fn a_draining_server_refuses_new_work_and_ends_running_streams_on_abort() {
    let slow = engine(
        5,
        vec![text("x"), finished(EngineFinish::Stop)],
        Duration::from_secs(30),
    );
    let state = state_with_limits(slow, 4, 4);
    let service = init_service(app(state.clone())).await;
    let running = call_service(
        &service,
        post_req("/v1/chat/completions", &chat(json!({"stream": true}))).to_request(),
    )
    .await;
    assert_eq!(running.status().as_u16(), 200);

    state.models.start_draining();
    let refused = call_service(
        &service,
        post_req("/v1/chat/completions", &chat(json!({}))).to_request(),
    )
    .await;
    assert_eq!(refused.status().as_u16(), 503);
    assert!(refused.headers().contains_key("retry-after"));
    let ready = call_service(
        &service,
        TestRequest::get().uri("/health/ready").to_request(),
    )
    .await;
    assert_eq!(ready.status().as_u16(), 503);
    let body: Value = serde_json::from_slice(&read_body(ready).await).unwrap();
    assert_eq!(body["status"], "draining");

    admission(&state).abort_all();
    let body = String::from_utf8(read_body(running).await.to_vec()).unwrap();
    assert!(body.ends_with("data: [DONE]\n\n"), "{body}");
    assert!(body.contains("\"code\":\"shut_down\""), "{body}");
    assert_eq!(admission(&state).requests_running(), 0);
}

#[actix_web::test]
async fn a_queued_stream_gets_its_200_and_keep_alives_then_its_tokens() {
    let script = vec![text("queued answer"), finished(EngineFinish::Stop)];
    let engine = engine(5, script, Duration::ZERO);
    let state = state_with_queue(engine, 1, 4, None, Duration::from_millis(200));
    let service = init_service(app(state.clone())).await;
    let stream = json!({"prompt": "x", "stream": true});
    // The first stream holds the only slot while its body is unread.
    let first = call_service(&service, post_req("/v1/completions", &stream).to_request()).await;
    assert_eq!(first.status().as_u16(), 200);
    // The second waits one keep-alive interval for a slot, then gets its 200 while still queued.
    let second = call_service(&service, post_req("/v1/completions", &stream).to_request()).await;
    assert_eq!(second.status().as_u16(), 200);
    assert_eq!(admission(&state).requests_waiting(), 1);
    let release_first = async {
        tokio::time::sleep(Duration::from_millis(700)).await;
        drop(first);
    };
    let (body, ()) = futures::join!(read_body(second), release_first);
    let body = String::from_utf8(body.to_vec()).unwrap();
    let ping = body.find(": ping\n\n").expect("keep-alives while queued");
    let answer = body
        .find("queued answer")
        .expect("the tokens after admission");
    assert!(ping < answer, "{body}");
    assert!(!body.contains("error"), "{body}");
    assert!(body.ends_with("data: [DONE]\n\n"), "{body}");
    assert_eq!(admission(&state).requests_running(), 0);
}

#[actix_web::test]
async fn a_queue_timeout_after_the_200_is_an_error_event_before_any_token() {
    let script = vec![text("never"), finished(EngineFinish::Stop)];
    let engine = engine(5, script, Duration::ZERO);
    let state = state_with_queue(
        engine,
        1,
        4,
        Some(Duration::from_millis(900)),
        Duration::from_millis(200),
    );
    let service = init_service(app(state.clone())).await;
    let stream = chat(json!({"stream": true}));
    let first = call_service(
        &service,
        post_req("/v1/chat/completions", &stream).to_request(),
    )
    .await;
    assert_eq!(first.status().as_u16(), 200);
    let second = call_service(
        &service,
        post_req("/v1/chat/completions", &stream).to_request(),
    )
    .await;
    assert_eq!(second.status().as_u16(), 200);
    let body = String::from_utf8(read_body(second).await.to_vec()).unwrap();
    assert!(body.starts_with(": ping\n\n"), "{body}");
    assert!(
        !body.contains("never") && !body.contains("chat.completion.chunk"),
        "{body}"
    );
    assert!(body.contains("\"code\":\"queue_timeout\""), "{body}");
    assert!(body.ends_with("data: [DONE]\n\n"), "{body}");
    assert_eq!(admission(&state).requests_waiting(), 0);
    drop(first);
}
