//! Access tests for keys' limits and what refusals and failures reveal: rpm, tpm and byte caps refused
//! before the prompt is read, anonymous probes, a constraint failure's 400, a 5xx without internals.

use std::time::Duration;

use actix_web::test::{call_service, init_service, read_body};
use serde_json::{json, Value};

use crate::config::keys::Limits;
use crate::engine::scripted::engine;
use crate::server::access_support::{finished, keyed_state, ready, request, serving};
use crate::server::app;

const USER_KEY: Option<&str> = Some("sk-access-user-0000000000002");

/// A counted route refuses a key over its limits before the body is read or anything is tokenized.
#[actix_web::test]
async fn a_key_over_its_limits_is_refused_before_its_prompt_is_read() {
    let scripted = engine(5, finished(), Duration::ZERO);
    let state = serving(
        Limits {
            rpm: Some(1),
            ..Limits::default()
        },
        scripted.clone(),
    );
    let service = init_service(app(state)).await;
    let key = USER_KEY;
    let chat = |content: String| {
        json!({"messages": [{"role": "user", "content": content}], "max_tokens": 2}).to_string()
    };
    let first = call_service(
        &service,
        request(
            "POST",
            "/v1/chat/completions",
            key,
            Some(&chat("hi".into())),
        )
        .to_request(),
    )
    .await;
    assert_eq!(first.status().as_u16(), 200);
    let counted = scripted
        .tokenized
        .load(std::sync::atomic::Ordering::Relaxed);
    let big = chat("x".repeat(4 << 20));
    for path in ["/v1/chat/completions", "/v1/completions", "/tokenize"] {
        let response = call_service(
            &service,
            request("POST", path, key, Some(&big)).to_request(),
        )
        .await;
        assert_eq!(response.status().as_u16(), 429, "{path}");
        assert!(response.headers().contains_key("retry-after"), "{path}");
    }
    assert_eq!(
        scripted
            .tokenized
            .load(std::sync::atomic::Ordering::Relaxed),
        counted,
        "nothing was tokenized for the refused requests"
    );
}

/// A prompt whose bytes alone are over the key's token limit (or the context) is refused without
/// being tokenized.
#[actix_web::test]
async fn a_prompt_too_large_for_the_key_is_refused_from_its_size() {
    let scripted = engine(5, finished(), Duration::ZERO);
    let state = serving(
        Limits {
            tpm: Some(1_000),
            ..Limits::default()
        },
        scripted.clone(),
    );
    let service = init_service(app(state)).await;
    let key = USER_KEY;
    let body = json!({"messages": [{"role": "user", "content": "x".repeat(4 << 20)}]}).to_string();
    let response = call_service(
        &service,
        request("POST", "/v1/chat/completions", key, Some(&body)).to_request(),
    )
    .await;
    let status = response.status().as_u16();
    let text = String::from_utf8_lossy(&read_body(response).await).to_string();
    assert!(status == 429 || status == 400, "{status} {text}");
    assert_eq!(
        scripted
            .tokenized
            .load(std::sync::atomic::Ordering::Relaxed),
        0
    );
}

/// A request that got its slot is charged its prompt even when the engine then refuses it (an image
/// that passed validation but does not decode): the charge follows the slot, as the log line does.
#[actix_web::test]
async fn a_request_the_engine_refuses_after_its_slot_is_charged_its_prompt() {
    let mut refusing = std::sync::Arc::try_unwrap(engine(5, finished(), Duration::ZERO))
        .ok()
        .expect("not shared yet");
    refusing.refuse_submission = Some("the image does not decode".into());
    let limits = Limits {
        tpm: Some(1_000),
        ..Limits::default()
    };
    let state = serving(limits, std::sync::Arc::new(refusing));
    let service = init_service(app(state.clone())).await;
    let body =
        json!({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}).to_string();
    let response = call_service(
        &service,
        request("POST", "/v1/chat/completions", USER_KEY, Some(&body)).to_request(),
    )
    .await;
    assert_eq!(response.status().as_u16(), 400);
    let refused: Value = serde_json::from_slice(&read_body(response).await).unwrap();
    assert!(
        refused["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("does not decode")),
        "{refused}"
    );
    // What the key has left: a fresh hold's view of its minute.
    let probe = state.limiter.admit("user", limits).await.unwrap();
    let left = probe.reserve_tokens(0, 0).await.unwrap().tokens.unwrap().1;
    probe.settle(Some(0));
    assert_eq!(left, 1_000 - 5, "the counted prompt is charged");
}

/// A key's byte cap answers 413 from `Content-Length`, before the body: an OpenAI envelope naming the cap
/// and the size sent; the same key's small request is answered in full.
#[actix_web::test]
async fn a_body_over_the_keys_byte_cap_is_refused() {
    let state = serving(
        Limits {
            max_request_bytes: Some(2_000),
            ..Limits::default()
        },
        engine(5, finished(), Duration::ZERO),
    );
    let service = init_service(app(state)).await;
    let key = USER_KEY;
    let body = json!({"messages": [{"role": "user", "content": "x".repeat(3_000)}]}).to_string();
    let response = call_service(
        &service,
        request("POST", "/v1/chat/completions", key, Some(&body)).to_request(),
    )
    .await;
    assert_eq!(response.status().as_u16(), 413);
    let refused: Value = serde_json::from_slice(&read_body(response).await).unwrap();
    assert_eq!(refused["error"]["code"], "payload_too_large", "{refused}");
    assert_eq!(
        refused["error"]["type"], "invalid_request_error",
        "{refused}"
    );
    let message = refused["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("2000") && message.contains(&body.len().to_string()),
        "the cap and the size sent: {message}"
    );
    let small =
        json!({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}).to_string();
    let response = call_service(
        &service,
        request("POST", "/v1/chat/completions", key, Some(&small)).to_request(),
    )
    .await;
    assert_eq!(response.status().as_u16(), 200);
    let answer: Value = serde_json::from_slice(&read_body(response).await).unwrap();
    assert_eq!(answer["object"], "chat.completion", "{answer}");
    assert_eq!(answer["choices"][0]["message"]["content"], "ok", "{answer}");
}

/// Without a key, the probes give the status word only: no alias, reason or limits mode.
#[actix_web::test]
async fn anonymous_probes_see_the_status_only() {
    let state = serving(Limits::default(), engine(5, finished(), Duration::ZERO));
    let service = init_service(app(state)).await;
    for path in [
        "/health",
        "/health/ready",
        "/health/live",
        "/health/startup",
    ] {
        for key in [
            None,
            Some("sk-access-wrong-000000000006"),
            Some("sk-access-metrics-0000000003"),
        ] {
            let response =
                call_service(&service, request("GET", path, key, None).to_request()).await;
            assert_eq!(response.status().as_u16(), 200, "{path}");
            let body: Value = serde_json::from_slice(&read_body(response).await).unwrap();
            assert_eq!(body, json!({"status": "ok"}), "{path} {key:?}");
        }
        let response = call_service(
            &service,
            request("GET", path, Some("sk-access-user-0000000000002"), None).to_request(),
        )
        .await;
        let body: Value = serde_json::from_slice(&read_body(response).await).unwrap();
        assert_eq!(body["status"], "ok");
        assert!(
            body["models"].is_array() && body["limits"] == "local",
            "{body}"
        );
    }
}

/// A constraint the engine's parser gives up on while decoding is the request's fault: 400 naming
/// `response_format` (streamed: an error event of that type), not a 500.
#[actix_web::test]
async fn a_constraint_that_fails_while_decoding_is_a_400_naming_its_field() {
    let state = keyed_state(Limits::default());
    let failing = engine(
        5,
        vec![Err(crate::engine::EngineError::ConstraintFailed(
            "Parser Error: Current row has 2500 items; max is 2000".into(),
        ))],
        Duration::ZERO,
    );
    ready(&state, failing);
    let service = init_service(app(state)).await;
    let key = USER_KEY;
    for stream in [false, true] {
        let body = json!({"messages": [{"role": "user", "content": "hi"}], "stream": stream,
                          "response_format": {"type": "json_object"}})
        .to_string();
        let response = call_service(
            &service,
            request("POST", "/v1/chat/completions", key, Some(&body)).to_request(),
        )
        .await;
        let status = response.status().as_u16();
        let text = String::from_utf8_lossy(&read_body(response).await).to_string();
        let error: Value = if stream {
            assert_eq!(status, 200);
            let event = text
                .split("\n\n")
                .filter_map(|e| e.strip_prefix("data: "))
                .find(|e| e.contains("\"error\""))
                .expect("an error event");
            serde_json::from_str(event).unwrap()
        } else {
            assert_eq!(status, 400, "{text}");
            serde_json::from_str(&text).unwrap()
        };
        assert_eq!(error["error"]["type"], "invalid_request_error", "{text}");
        assert_eq!(error["error"]["param"], "response_format", "{text}");
    }
}

/// A 5xx of ours tells the client nothing of the engine's internals (they are in the log).
#[actix_web::test]
async fn a_failure_body_carries_no_internals() {
    let state = keyed_state(Limits::default());
    let failing = engine(
        5,
        vec![Err(crate::engine::EngineError::Internal(
            "Current row has 2007 items; max is 2000 (lexer_cost)".into(),
        ))],
        Duration::ZERO,
    );
    ready(&state, failing);
    let service = init_service(app(state)).await;
    let body = json!({"messages": [{"role": "user", "content": "hi"}]}).to_string();
    let response = call_service(
        &service,
        request(
            "POST",
            "/v1/chat/completions",
            Some("sk-access-user-0000000000002"),
            Some(&body),
        )
        .to_request(),
    )
    .await;
    assert_eq!(response.status().as_u16(), 500);
    let text = String::from_utf8_lossy(&read_body(response).await).to_string();
    assert!(!text.contains("row") && !text.contains("lexer"), "{text}");
    assert!(text.contains("x-request-id"), "{text}");
}

/// A key that may not use the served model cannot make the server fetch an image for it, nor learn
/// from the fetch what that model accepts: its request is 403 `model_not_allowed` before any fetch.
#[actix_web::test]
async fn a_key_without_the_model_makes_the_server_fetch_nothing() {
    use std::io::Read;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let host = listener.local_addr().unwrap();
    let fetches = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = fetches.clone();
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let _ = stream.read(&mut [0u8; 1024]);
        }
    });
    #[derive(serde::Deserialize)]
    struct Root {
        keys: Vec<crate::config::keys::KeyFields>,
    }
    let toml_keys = r#"
        [[keys]]
        id = "elsewhere"
        key = "sk-access-elsewhere-00000006"
        role = "user"
        models = ["another-model"]
    "#;
    let keys = toml::from_str::<Root>(toml_keys).unwrap().keys;
    let keys =
        crate::config::keys::keys_spec(&keys, &Default::default(), Limits::default(), |_| None)
            .unwrap();
    let mut config = crate::config::Config::for_default_model(std::env::temp_dir());
    config.server.allow_remote_images = true;
    let state = actix_web::web::Data::new(crate::state::AppState::new(config, keys));
    let spec = state.config.models_spec().unwrap();
    state.models.apply_without_loading(spec);
    ready(
        &state,
        crate::engine::scripted::engine_with_images(finished()),
    );
    let service = init_service(app(state)).await;
    let body = json!({"messages": [{"role": "user", "content": [
        {"type": "text", "text": "What is on the screen?"},
        {"type": "image_url", "image_url": {"url": format!("http://{host}/screen.png")}},
    ]}]})
    .to_string();
    let response = call_service(
        &service,
        request(
            "POST",
            "/v1/chat/completions",
            Some("sk-access-elsewhere-00000006"),
            Some(&body),
        )
        .to_request(),
    )
    .await;
    let status = response.status().as_u16();
    let refused: Value = serde_json::from_slice(&read_body(response).await).unwrap();
    assert_eq!(status, 403, "{refused}");
    assert_eq!(refused["error"]["code"], "model_not_allowed", "{refused}");
    assert_eq!(
        fetches.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "no fetch"
    );
}
