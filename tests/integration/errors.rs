//! Every client mistake is a 4xx with the OpenAI envelope, and the server keeps serving afterwards.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use serde_json::json;

use crate::common::{assert_envelope, client, get_json, model_name, post_json, server};

async fn post_raw(path: &str, content_type: &str, body: &'static str) -> (u16, serde_json::Value) {
    let response = client()
        .post(format!("{}{path}", server()))
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

#[tokio::test]
async fn malformed_json_and_wrong_types_are_400() {
    let (status, body) = post_raw(
        "/v1/chat/completions",
        "application/json",
        "{\"messages\": [",
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(assert_envelope(&body)["type"], "invalid_request_error");

    let (status, body) = post_raw(
        "/v1/chat/completions",
        "application/json",
        r#"{"messages": [{"role": "user", "content": "hi"}], "temperature": "hot"}"#,
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(assert_envelope(&body)["param"], "temperature");

    let (status, body) = post_raw("/v1/completions", "application/json", r#"{"prompt": 42}"#).await;
    assert_eq!(status, 400);
    assert_envelope(&body);
}

#[tokio::test]
async fn non_json_content_type_is_415() {
    let (status, body) = post_raw("/v1/chat/completions", "text/plain", "hello").await;
    assert_eq!(status, 415);
    assert_envelope(&body);
}

#[tokio::test]
async fn bad_values_are_400_naming_the_field() {
    let cases = [
        (json!({"messages": []}), "messages"),
        (
            json!({"messages": [{"role": "user", "content": "hi"}], "temperature": 7.5}),
            "temperature",
        ),
        (
            json!({"messages": [{"role": "user", "content": "hi"}], "top_p": 1.5}),
            "top_p",
        ),
        (
            json!({"messages": [{"role": "user", "content": "hi"}], "max_tokens": -1}),
            "max_tokens",
        ),
        (
            json!({"messages": [{"role": "user", "content": "hi"}], "frequency_penalty": 9}),
            "frequency_penalty",
        ),
        (
            json!({"messages": [{"role": "user", "content": "hi"}], "n": 0}),
            "n",
        ),
        (
            json!({"messages": [{"role": "wizard", "content": "hi"}]}),
            "messages",
        ),
        (
            json!({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:image/png;base64,AA=="}}]}]}),
            "messages",
        ),
    ];
    for (request, param) in cases {
        let (status, body) = post_json(server(), "/v1/chat/completions", request.clone()).await;
        assert_eq!(status, 400, "{request} → {body}");
        assert_eq!(assert_envelope(&body)["param"], param, "{request} → {body}");
    }
    let (status, body) = post_json(
        server(),
        "/v1/chat/completions",
        json!({"messages": [{"role": "user", "content": "hi"}], "temperature": 7.5}),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(
        body["error"]["message"],
        "`temperature` must be between 0 and 2, got 7.5"
    );
}

#[tokio::test]
async fn unknown_model_is_404_model_not_found() {
    let (status, body) = post_json(
        server(),
        "/v1/chat/completions",
        json!({"model": "gpt-9", "messages": [{"role": "user", "content": "hi"}]}),
    )
    .await;
    assert_eq!(status, 404);
    let error = assert_envelope(&body);
    assert_eq!(error["code"], "model_not_found");
    assert_eq!(error["type"], "not_found_error");
    let (status, body) = get_json(server(), "/v1/models/gpt-9").await;
    assert_eq!(status, 404);
    assert_envelope(&body);
}

#[tokio::test]
async fn a_prompt_beyond_the_context_is_400_context_length_exceeded() {
    let long = "hello ".repeat(9000);
    let (status, body) = post_json(
        server(),
        "/v1/completions",
        json!({"prompt": long, "max_tokens": 5}),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(assert_envelope(&body)["code"], "context_length_exceeded");
    assert!(body["error"]["message"].as_str().unwrap().contains("8192"));
}

#[tokio::test]
async fn a_body_over_the_limit_is_413_before_it_is_read() {
    let addr = server().trim_start_matches("http://").to_string();
    let reply = tokio::task::spawn_blocking(move || {
        let mut stream = TcpStream::connect(addr).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let declared = 64 * 1024 * 1024;
        write!(
            stream,
            "POST /v1/chat/completions HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: {declared}\r\n\r\n{{\"messages\": ["
        )
        .unwrap();
        let mut reply = vec![0u8; 4096];
        let n = stream.read(&mut reply).unwrap();
        String::from_utf8_lossy(&reply[..n]).to_string()
    })
    .await
    .unwrap();
    assert!(reply.starts_with("HTTP/1.1 413"), "{reply}");
    assert!(reply.contains("\"error\""), "{reply}");
}

#[tokio::test]
async fn unknown_routes_and_methods_get_json_errors() {
    let (status, body) = get_json(server(), "/v1/nothing-here").await;
    assert_eq!(status, 404);
    assert_envelope(&body);
    let (status, body) = get_json(server(), "/v1/chat/completions").await;
    assert_eq!(status, 405);
    assert_envelope(&body);
    // RFC 9110: a 405 names the methods the resource has.
    for (method, path, allow) in [
        (reqwest::Method::GET, "/v1/chat/completions", "POST"),
        (reqwest::Method::DELETE, "/v1/models", "GET"),
        (reqwest::Method::PUT, "/health", "GET"),
    ] {
        let response = client()
            .request(method.clone(), format!("{}{path}", server()))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 405, "{method} {path}");
        assert_eq!(response.headers()["allow"], allow, "{method} {path}");
    }
}

#[tokio::test]
async fn models_list_and_retrieve_have_openai_shapes() {
    let (status, body) = get_json(server(), "/v1/models").await;
    assert_eq!(status, 200);
    assert_eq!(body["object"], "list");
    assert_eq!(body["data"][0]["id"], model_name());
    assert_eq!(body["data"][0]["object"], "model");
    assert!(body["data"][0]["created"].as_u64().unwrap() > 1_700_000_000);
    let (status, body) = get_json(server(), &format!("/v1/models/{}", model_name())).await;
    assert_eq!(status, 200);
    assert_eq!(body["max_model_len"], 8192);
}

#[tokio::test]
async fn probes_docs_and_openapi_are_served() {
    for path in [
        "/health/live",
        "/health/ready",
        "/health/startup",
        "/health",
    ] {
        let (status, body) = get_json(server(), path).await;
        assert_eq!(status, 200, "{path}");
        assert_eq!(body["status"], "ok");
    }
    let (status, doc) = get_json(server(), "/openapi.json").await;
    assert_eq!(status, 200);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
    let committed: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/openapi/openapi.json"))
            .unwrap(),
    )
    .unwrap();
    // The served document is the committed one plus the loaded model's bounds (and without the admin
    // API, which a server without --admin-token does not serve): the largest token id it states is the
    // largest /detokenize takes.
    let largest = doc["components"]["schemas"]["DetokenizeRequest"]["properties"]["tokens"]
        ["items"]["maximum"]
        .as_u64()
        .expect("the served document bounds token ids");
    let (status, _) = post_json(server(), "/detokenize", json!({"tokens": [largest]})).await;
    assert_eq!(status, 200);
    let (status, _) = post_json(server(), "/detokenize", json!({"tokens": [largest + 1]})).await;
    assert_eq!(status, 400);
    let bounds = llmserve::openapi::ModelBounds {
        vocab_size: largest as usize + 1,
        accepts_images: false,
        fill_in_middle: false,
        embedding_dimensions: None,
    };
    assert_eq!(
        doc,
        llmserve::openapi::with_model_bounds(llmserve::openapi::without_admin(committed), bounds),
        "the served document is not the committed one with the model's bounds"
    );
    let page = client()
        .get(format!("{}/docs/", server()))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status().as_u16(), 200);
    assert!(page.text().await.unwrap().contains("swagger"));
    let redirect = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let response = redirect
        .get(format!("{}/docs", server()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 308);
}
