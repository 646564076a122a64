//! Clients that go away: their engine sequences are cancelled and freed, and the server keeps serving.

use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::{json, Value};

use crate::common::{client, get_json, open_sse, post_json, start_server};

/// Whether SSE events carry a non-empty `content` delta.
fn has_generated_text(events: &str) -> bool {
    events
        .split("\"content\":\"")
        .skip(1)
        .any(|rest| !rest.starts_with('"'))
}

fn count(health: &Value, key: &str) -> u64 {
    health[key].as_u64().unwrap()
}

/// Polls the health counts until nothing runs, waits or is held by the engine; returns how long our layer
/// (running + waiting) and the engine (its sequences) each took to get there.
async fn wait_until_idle(base: &str, limit: Duration) -> (Duration, Duration) {
    let started = Instant::now();
    let mut ours = None;
    loop {
        let (_, health) = get_json(base, "/health/ready").await;
        let running = count(&health, "requests_running");
        let waiting = count(&health, "requests_waiting");
        let sequences = count(&health, "engine_sequences");
        if running == 0 && waiting == 0 {
            let ours = *ours.get_or_insert(started.elapsed());
            if sequences == 0 {
                return (ours, started.elapsed());
            }
        }
        assert!(
            started.elapsed() < limit,
            "still running={running} waiting={waiting} sequences={sequences}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn a_fresh_request_is_served(base: &str) {
    let fresh = Instant::now();
    let request =
        json!({"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 8, "temperature": 0});
    let (status, body) = post_json(base, "/v1/chat/completions", request).await;
    assert_eq!(status, 200, "{body}");
    println!("a fresh request afterwards took {:?}", fresh.elapsed());
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
        streams.push(open_sse(&base, "/v1/chat/completions", &body).await);
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
        let (base, body) = (base.clone(), long.clone());
        abandoned.push(tokio::spawn(async move {
            post_json(&base, "/v1/chat/completions", body).await
        }));
    }
    // Polled, not slept: on a loaded machine (the suite runs tests in parallel) admission can take seconds.
    let admitted = Instant::now();
    let health = loop {
        let (_, health) = get_json(&base, "/health/ready").await;
        if count(&health, "requests_running") == 8 {
            break health;
        }
        assert!(
            admitted.elapsed() < Duration::from_secs(60),
            "all eight requests in flight: {health}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        count(&health, "engine_sequences") >= 6,
        "the engine holds the sequences: {health}"
    );

    drop(streams);
    for task in abandoned {
        task.abort();
    }
    let (ours, engine) = wait_until_idle(&base, Duration::from_secs(30)).await;
    println!("8 dropped requests: our slots free after {ours:?}, engine sequences freed after {engine:?}");
    a_fresh_request_is_served(&base).await;
}

/// Issue 5's bar: 200 streams and 40 non-streaming requests, opened and abandoned mid-generation or while
/// queued; afterwards nothing runs, waits or generates, and a fresh request is served.
#[tokio::test]
async fn two_hundred_abandoned_streams_and_requests_leave_nothing_running() {
    let base = start_server(|config| config.queue.max_waiting = 512);
    let body = json!({"messages": [{"role": "user", "content": "Tell me a long story about a ship."}],
                      "max_tokens": 500, "temperature": 0.8});
    let mut tasks = Vec::new();
    for i in 0..240u64 {
        let (base, mut body) = (base.clone(), body.clone());
        body["stream"] = json!(i < 200);
        // Spread the abandonments over 0.2–3.0 s: some while queued, some mid-generation. The first eight
        // streams stay 20 s, long enough to get text on a loaded machine: proof that requests were served.
        let lifetime = if i < 8 {
            Duration::from_secs(20)
        } else {
            Duration::from_millis(200 + (i * 37) % 2800)
        };
        tasks.push(tokio::spawn(async move {
            // What the client saw before it went away: the status, if the answer had begun, and the
            // events that had arrived.
            let mut seen = (None, String::new());
            let _ = tokio::time::timeout(lifetime, async {
                let response = client()
                    .post(format!("{base}/v1/chat/completions"))
                    .json(&body)
                    .send()
                    .await;
                if let Ok(response) = response {
                    seen.0 = Some(response.status().as_u16());
                    let mut events = response.bytes_stream();
                    while let Some(Ok(bytes)) = events.next().await {
                        seen.1.push_str(&String::from_utf8_lossy(&bytes));
                    }
                }
            })
            .await;
            seen
        }));
    }
    // Meanwhile, the most requests seen waiting in the queue: the abandonments must include queued ones.
    let mut most_waiting = 0;
    while tasks.iter().any(|task| !task.is_finished()) {
        let (_, health) = get_json(&base, "/health/ready").await;
        most_waiting = most_waiting.max(count(&health, "requests_waiting"));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut answered = 0;
    let mut streamed_tokens = 0;
    for task in tasks {
        match task.await.unwrap() {
            (Some(200), events) => {
                answered += 1;
                // A delta with text, not only the opening role chunk or keep-alive comments.
                if has_generated_text(&events) {
                    streamed_tokens += 1;
                }
            }
            (Some(status), _) => panic!("a request was refused with {status}"),
            (None, _) => {}
        }
    }
    println!("{answered} answers begun, {streamed_tokens} with generated text, at most {most_waiting} queued");
    // The test means abandonment of requests being served and queued, not of refused ones.
    assert!(
        streamed_tokens >= 8,
        "only {streamed_tokens} streams got text before they were abandoned"
    );
    assert!(most_waiting > 0, "no request was ever queued");
    let (ours, engine) = wait_until_idle(&base, Duration::from_secs(60)).await;
    println!("240 abandoned requests: our slots free after {ours:?}, engine sequences freed after {engine:?}");
    a_fresh_request_is_served(&base).await;
}
