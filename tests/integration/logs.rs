//! The request log of the real binary: one JSON object per line, with everything an operator filters on.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::common::{client, model_name};
use crate::drain::{signal, spawn_binary, wait_exit};

#[tokio::test]
async fn json_logs_carry_one_complete_line_per_request() {
    let (mut child, addr, lines) = spawn_binary(&["--model-version", "v7"]);
    // Scrapes and probes, every few seconds in a cluster, stay out of the info log.
    for path in ["/metrics", "/health/ready"] {
        let scraped = client()
            .get(format!("http://{addr}{path}"))
            .send()
            .await
            .unwrap();
        assert_eq!(scraped.status(), 200, "{path}");
    }
    let response = client()
        .post(format!("http://{addr}/v1/chat/completions"))
        .header("x-request-id", "log-test-1")
        .header(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        )
        .json(
            &json!({"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 3,
                      "stream": true}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["x-request-id"], "log-test-1");
    response.text().await.unwrap();

    let deadline = Instant::now() + Duration::from_secs(10);
    let line = loop {
        let found = lines
            .lock()
            .unwrap()
            .iter()
            .find(|line| line.contains("log-test-1"))
            .cloned();
        if let Some(line) = found {
            break line;
        }
        assert!(Instant::now() < deadline, "no log line for the request");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    signal(&child, "TERM");
    assert_eq!(wait_exit(&mut child, Duration::from_secs(30)), 0);

    // Every stdout line is one JSON object.
    for line in lines.lock().unwrap().iter() {
        serde_json::from_str::<Value>(line).unwrap_or_else(|e| panic!("{e}: {line}"));
    }
    let entry: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(entry["message"], "request");
    assert_eq!(entry["span"]["request_id"], "log-test-1");
    assert_eq!(
        entry["span"]["trace_id"],
        "4bf92f3577b34da6a3ce929d0e0e4736"
    );
    assert_eq!(entry["model"], model_name());
    assert_eq!(entry["model_version"], "v7");
    assert_eq!(entry["status"], 200);
    assert_eq!(entry["finish_reason"], "length");
    assert_eq!(entry["completion_tokens"], 3);
    assert!(entry["prompt_tokens"].as_u64().unwrap() > 0);
    for key in ["queue_ms", "ttft_ms", "duration_ms"] {
        assert!(
            entry[key].as_f64().is_some_and(|v| v >= 0.0),
            "{key}: {entry}"
        );
    }
    assert_eq!(entry["client_disconnected"], false);
    for line in lines.lock().unwrap().iter() {
        assert!(
            !line.contains("\"path\":\"/metrics\"") && !line.contains("\"path\":\"/health"),
            "a scrape or probe in the info log: {line}"
        );
    }
    // The prompt is never logged.
    assert!(!line.contains("\"Hi\""));
}
