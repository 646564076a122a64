//! HTTP-layer tests with a scripted engine: behaviour that does not depend on the model (context budget,
//! errors after the 200, keep-alive, loading state). Everything model-dependent is in tests/integration.

use std::time::Duration;

use actix_web::test::{call_service, init_service, TestRequest};
use actix_web::web;
use serde_json::{json, Value};

use crate::config::Config;
use crate::engine::scripted::{engine, engine_with_images, text};
use crate::engine::{EngineError, EngineFinish, Prompt};
use crate::server::app;
use crate::server::test_support::{chat, finished, post, post_req, state};
use crate::state::AppState;

#[actix_web::test]
async fn max_tokens_is_clamped_to_what_the_context_leaves() {
    let engine = engine(
        60,
        vec![text("ok"), finished(EngineFinish::Length)],
        Duration::ZERO,
    );
    let (status, body) = post(
        state(Some(engine.clone())),
        "/v1/chat/completions",
        chat(json!({"max_tokens": 3000})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(engine.requests.lock().unwrap()[0].max_tokens, 4);
}

#[actix_web::test]
async fn a_prompt_that_fills_the_context_is_refused_before_the_engine() {
    let engine = engine(64, vec![], Duration::ZERO);
    let (status, body) = post(
        state(Some(engine.clone())),
        "/v1/chat/completions",
        chat(json!({})),
    )
    .await;
    assert_eq!(status, 400);
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["error"]["code"], "context_length_exceeded");
    assert!(engine.requests.lock().unwrap().is_empty());
}

#[actix_web::test]
async fn an_engine_failure_after_the_200_is_an_error_event_then_done() {
    let script = vec![
        text("partial"),
        Err(EngineError::Internal("kv cache exploded".into())),
    ];
    let (status, body) = post(
        state(Some(engine(5, script, Duration::ZERO))),
        "/v1/chat/completions",
        chat(json!({"stream": true})),
    )
    .await;
    assert_eq!(status, 200);
    let events: Vec<&str> = body.split("\n\n").filter(|e| !e.is_empty()).collect();
    assert_eq!(events.last(), Some(&"data: [DONE]"));
    let error: Value =
        serde_json::from_str(events[events.len() - 2].strip_prefix("data: ").unwrap()).unwrap();
    assert_eq!(error["error"]["type"], "server_error");
    // The engine's own words stay in the log: the client is pointed to its request id.
    let message = error["error"]["message"].as_str().unwrap();
    assert!(!message.contains("kv cache"), "{message}");
    assert!(message.contains("x-request-id"), "{message}");
    for key in ["param", "code"] {
        assert!(error["error"].as_object().unwrap().contains_key(key));
    }
}

#[actix_web::test]
async fn a_silent_stream_gets_keep_alive_comments() {
    let script = vec![text("late"), finished(EngineFinish::Stop)];
    let engine = engine(5, script, Duration::from_millis(2300));
    let (status, body) = post(
        state(Some(engine)),
        "/v1/completions",
        json!({"prompt": "x", "stream": true}),
    )
    .await;
    assert_eq!(status, 200);
    assert!(body.matches(": ping\n\n").count() >= 2, "{body}");
    assert!(body.ends_with("data: [DONE]\n\n"));
}

#[actix_web::test]
async fn while_loading_generation_and_readiness_answer_503_with_retry_after() {
    let service = init_service(app(state(None))).await;
    let response = call_service(
        &service,
        post_req("/v1/chat/completions", &chat(json!({}))).to_request(),
    )
    .await;
    assert_eq!(response.status().as_u16(), 503);
    assert!(response.headers().contains_key("retry-after"));
    let response = call_service(
        &service,
        TestRequest::get().uri("/health/ready").to_request(),
    )
    .await;
    assert_eq!(response.status().as_u16(), 503);
    let response = call_service(
        &service,
        TestRequest::get().uri("/health/live").to_request(),
    )
    .await;
    assert_eq!(response.status().as_u16(), 200);
    // The name is known before the model loads: a wrong one is 404 even now.
    let (status, _) = post(
        state(None),
        "/v1/chat/completions",
        chat(json!({"model": "other"})),
    )
    .await;
    assert_eq!(status, 404);
}

#[actix_web::test]
async fn the_stop_text_is_cut_from_collected_answers() {
    let script = vec![
        text("Hello wor"),
        text("ld, bye"),
        finished(EngineFinish::Stop),
    ];
    let (status, body) = post(
        state(Some(engine(5, script, Duration::ZERO))),
        "/v1/completions",
        json!({"prompt": "x", "stop": "world"}),
    )
    .await;
    assert_eq!(status, 200);
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["choices"][0]["text"], "Hello ");
    assert_eq!(body["choices"][0]["finish_reason"], "stop");
}

/// `n` and `seed` reach the engine as one sequence per choice with seeds `seed + i`; `best_of` asks for
/// logprobs to rank its candidates.
#[actix_web::test]
async fn choices_are_submitted_as_seeded_sequences() {
    let engine_used = engine(
        5,
        vec![text("a"), finished(EngineFinish::Length)],
        Duration::ZERO,
    );
    let (status, body) = post(
        state(Some(engine_used.clone())),
        "/v1/completions",
        json!({"prompt": ["x", "y"], "n": 2, "best_of": 3, "seed": 10, "max_tokens": 2}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let requests = engine_used.requests.lock().unwrap();
    assert_eq!(requests.len(), 6);
    let seeds: Vec<Option<u64>> = requests.iter().map(|r| r.seed).collect();
    assert_eq!(
        seeds,
        vec![Some(10), Some(11), Some(12), Some(10), Some(11), Some(12)]
    );
    assert!(requests.iter().all(|r| r.logprobs == Some(0)));
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["choices"].as_array().unwrap().len(), 4);
    assert!(body["choices"][0]["logprobs"].is_null(), "not asked for");
}

/// On a model that accepts images, a data-URL image reaches the engine call decoded, with its media type
/// and in its message; on a text model the same request is a 400 before the engine.
#[actix_web::test]
async fn images_reach_the_engine_decoded_on_a_vision_model() {
    // A 1×1 PNG.
    let png = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==";
    let body = json!({"messages": [
        {"role": "system", "content": "Describe images."},
        {"role": "user", "content": [
            {"type": "text", "text": "What is this?"},
            {"type": "image_url", "image_url": {"url": format!("data:image/png;base64,{png}"), "detail": "low"}}
        ]}
    ]});
    let vision = engine_with_images(vec![text("a dot"), finished(EngineFinish::Stop)]);
    let (status, answer) = post(
        state(Some(vision.clone())),
        "/v1/chat/completions",
        body.clone(),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    let request = vision.requests.lock().unwrap()[0].clone();
    let Prompt::Chat(messages) = request.prompt else {
        panic!("a chat prompt")
    };
    assert!(messages[0].images.is_empty());
    assert_eq!(messages[1].content, "What is this?");
    assert_eq!(messages[1].images.len(), 1);
    assert_eq!(messages[1].images[0].media_type, "image/png");
    assert_eq!(&messages[1].images[0].data[..4], b"\x89PNG");
    assert_eq!(messages[1].images[0].data.len(), 70);

    let text_only = engine(5, vec![], Duration::ZERO);
    let (status, answer) = post(state(Some(text_only.clone())), "/v1/chat/completions", body).await;
    assert_eq!(status, 400);
    assert!(answer.contains("does not accept images"), "{answer}");
    assert!(text_only.requests.lock().unwrap().is_empty());
}

/// The chat page and its assets are served with a policy that allows only their own script, need no key
/// even when keys are configured (the page asks for one), and are gone with `--no-ui`.
#[actix_web::test]
async fn the_chat_page_is_served_under_a_strict_policy_and_off_with_no_ui() {
    let key: crate::config::keys::KeyFields =
        toml::from_str("id = \"app\"\nkey = \"sk-test-page-0123456789\"\nrole = \"user\"").unwrap();
    let keys =
        crate::config::keys::keys_spec(&[key], &Default::default(), Default::default(), |_| None)
            .unwrap();
    let mut config = Config::for_default_model(std::env::temp_dir());
    let state = web::Data::new(AppState::new(config.clone(), keys));
    let service = init_service(app(state)).await;
    for (path, kind) in [
        ("/", "text/html"),
        ("/ui/app.js", "text/javascript"),
        ("/ui/app.css", "text/css"),
    ] {
        let response = call_service(&service, TestRequest::get().uri(path).to_request()).await;
        assert_eq!(response.status().as_u16(), 200, "{path}");
        let header = |name| {
            response
                .headers()
                .get(name)
                .unwrap()
                .to_str()
                .unwrap()
                .to_string()
        };
        assert!(header("content-type").starts_with(kind), "{path}");
        let policy = header("content-security-policy");
        assert!(
            policy.contains("script-src 'self'") && !policy.contains("unsafe"),
            "{policy}"
        );
    }
    let missing = call_service(
        &service,
        TestRequest::get().uri("/ui/other.js").to_request(),
    )
    .await;
    assert_eq!(missing.status().as_u16(), 404);
    let api = actix_web::test::try_call_service(
        &service,
        TestRequest::get().uri("/v1/models").to_request(),
    )
    .await
    .map(|r| r.status().as_u16())
    .unwrap_or_else(|e| e.as_response_error().status_code().as_u16());
    assert_eq!(api, 401, "the API still needs a key");

    config.server.ui = false;
    let state = web::Data::new(AppState::new(config, Default::default()));
    let service = init_service(app(state)).await;
    let response = call_service(&service, TestRequest::get().uri("/").to_request()).await;
    assert_eq!(response.status().as_u16(), 404);
}
