//! Clients that go away: their engine sequences are cancelled and freed, and the server keeps serving.

use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::json;

use crate::common::{client, get_json, post_json, start_server};

async fn counts(base: &str) -> (u64, u64) {
    let (_, health) = get_json(base, "/health/ready").await;
    (
        health["requests_running"].as_u64().unwrap(),
        health["engine_sequences"].as_u64().unwrap(),
    )
}

#[tokio::test]
async fn dropped_streams_and_requests_are_cancelled_and_freed() {
    // A server of its own: the counts below must not see other tests' requests.
    let base = start_server(|_| {});
    let long = json!({"messages": [{"role": "user", "content": "Write a very long essay about the sea."}],
                      "max_tokens": 2000, "temperature": 0.7});

    let mut streams = Vec::new();
    for _ in 0..6 {
        let mut body = long.clone();
        body["stream"] = json!(true);
        let response = client()
            .post(format!("{base}/v1/chat/completions"))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 200);
        streams.push(response.bytes_stream());
    }
    // Read a few events from each, so that every sequence is generating.
    for stream in &mut streams {
        for _ in 0..3 {
            stream.next().await.unwrap().unwrap();
        }
    }
    // Non-streaming requests abandoned mid-generation (a client timeout).
    let mut abandoned = Vec::new();
    for _ in 0..2 {
        let base = base.clone();
        let body = long.clone();
        abandoned.push(tokio::spawn(async move {
            post_json(&base, "/v1/chat/completions", body).await
        }));
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (running, sequences) = counts(&base).await;
    assert_eq!(running, 8, "all eight requests in flight");
    assert!(sequences >= 6, "engine holds the sequences: {sequences}");

    drop(streams);
    for task in abandoned {
        task.abort();
    }
    let started = Instant::now();
    loop {
        let (running, sequences) = counts(&base).await;
        if running == 0 && sequences == 0 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "still running={running} sequences={sequences}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!(
        "all cancelled sequences freed after {:?}",
        started.elapsed()
    );

    let fresh = Instant::now();
    let (status, body) = post_json(
        &base,
        "/v1/chat/completions",
        json!({"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 8, "temperature": 0}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    println!(
        "a fresh request after the disconnects took {:?}",
        fresh.elapsed()
    );
    assert_eq!(counts(&base).await, (0, 0));
}

/// Issue 5's bar: 200 streams and 40 non-streaming requests, opened and abandoned mid-generation or while
/// queued; afterwards nothing runs, waits or generates, and a fresh request is served.
#[tokio::test]
async fn two_hundred_abandoned_streams_and_requests_leave_nothing_running() {
    let base = start_server(|config| config.max_queue = 512);
    let body = json!({"messages": [{"role": "user", "content": "Tell me a long story about a ship."}],
                      "max_tokens": 500, "temperature": 0.8});
    let mut tasks = Vec::new();
    for i in 0..240u64 {
        let (base, mut body) = (base.clone(), body.clone());
        let streaming = i < 200;
        body["stream"] = json!(streaming);
        // Spread the abandonments over 0.2–3.0 s: some while queued, some mid-generation.
        let lifetime = Duration::from_millis(200 + (i * 37) % 2800);
        tasks.push(tokio::spawn(async move {
            let _ = tokio::time::timeout(lifetime, async {
                let response = client()
                    .post(format!("{base}/v1/chat/completions"))
                    .json(&body)
                    .send()
                    .await;
                if let Ok(response) = response {
                    let mut events = response.bytes_stream();
                    while events.next().await.is_some() {}
                }
            })
            .await;
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let started = Instant::now();
    loop {
        let (_, health) = get_json(&base, "/health/ready").await;
        let (running, waiting, sequences) = (
            health["requests_running"].as_u64().unwrap(),
            health["requests_waiting"].as_u64().unwrap(),
            health["engine_sequences"].as_u64().unwrap(),
        );
        if running == 0 && waiting == 0 && sequences == 0 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "still running={running} waiting={waiting} sequences={sequences}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!(
        "240 abandoned requests released after {:?}",
        started.elapsed()
    );
    let fresh = Instant::now();
    let (status, body) = post_json(
        &base,
        "/v1/chat/completions",
        json!({"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 8, "temperature": 0}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    println!("a fresh request afterwards took {:?}", fresh.elapsed());
}
