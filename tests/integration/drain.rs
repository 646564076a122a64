//! Graceful drain of the real binary on SIGTERM, and the second signal that ends what is left.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::json;

use crate::common::{cache_dir, client, get_json, open_sse, wait_ready};

/// Every stdout line of a spawned server, as it is written.
pub type Lines = std::sync::Arc<std::sync::Mutex<Vec<String>>>;

/// Starts the `llmserve` binary, a process of its own (`common::start_in_process` runs the server inside
/// the test binary instead), on a free port with the default model and JSON logs; returns the child, its
/// address and its log lines.
pub fn spawn_binary(extra: &[&str]) -> (Child, SocketAddr, Lines) {
    spawn_binary_on(0, extra)
}

/// [`spawn_binary`] on a port of the caller's choosing (a replica restarted where its balancer expects
/// it).
pub fn spawn_binary_on(port: u16, extra: &[&str]) -> (Child, SocketAddr, Lines) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_llmserve"))
        .args([
            "--port",
            &port.to_string(),
            "--log-format",
            "json",
            "--cache-dir",
        ])
        .arg(cache_dir())
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let lines = Lines::default();
    let kept = lines.clone();
    std::thread::spawn(move || {
        let mut tx = Some(tx);
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            kept.lock().unwrap().push(line.clone());
            // Our own "listening" line carries `address`; actix's lines (one per port, the metrics
            // port's first) say "listening" too, without it.
            let address = line
                .contains("listening")
                .then(|| serde_json::from_str::<serde_json::Value>(&line).ok())
                .flatten()
                .and_then(|entry| entry["address"].as_str()?.parse::<SocketAddr>().ok());
            if let Some(addr) = address {
                if let Some(tx) = tx.take() {
                    let _ = tx.send(addr);
                }
            }
        }
    });
    let addr = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("the server logs its address");
    wait_ready(addr);
    (child, addr, lines)
}

/// A spawned server, killed if the test fails before it stops it.
pub struct Server(pub Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn signal(child: &Child, name: &str) {
    let status = Command::new("kill")
        .args([&format!("-{name}"), &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

pub fn wait_exit(child: &mut Child, limit: Duration) -> i32 {
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status.code().unwrap_or(-1);
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            panic!("the server did not exit within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

async fn open_stream(
    base: &str,
    max_tokens: u32,
) -> impl futures::Stream<Item = reqwest::Result<actix_web::web::Bytes>> {
    let body = json!({"prompt": "1, 2, 3, 4,", "max_tokens": max_tokens, "temperature": 0, "stream": true});
    let mut stream = open_sse(base, "/v1/completions", &body).await;
    // Wait for generated text, so that the request is surely running when the signal comes.
    let mut seen = String::new();
    while !seen.contains("\"text\":\"") || seen.matches("data: ").count() < 2 {
        seen.push_str(&String::from_utf8_lossy(
            &stream.next().await.unwrap().unwrap(),
        ));
    }
    futures::stream::iter([Ok(actix_web::web::Bytes::from(seen))]).chain(stream)
}

async fn read_all(
    stream: impl futures::Stream<Item = reqwest::Result<actix_web::web::Bytes>>,
) -> String {
    let chunks: Vec<_> = stream.collect().await;
    chunks
        .into_iter()
        .map(|c| String::from_utf8_lossy(&c.unwrap()).to_string())
        .collect()
}

#[tokio::test]
async fn sigterm_drains_running_streams_refuses_new_work_and_exits_0() {
    let (mut child, addr, _) = spawn_binary(&["--drain-timeout", "60"]);
    let base = format!("http://{addr}");
    let mut streams = Vec::new();
    for _ in 0..3 {
        streams.push(open_stream(&base, 40).await);
    }
    signal(&child, "TERM");

    let started = Instant::now();
    loop {
        let (status, body) = get_json(&base, "/health/ready").await;
        if status == 503 {
            assert_eq!(body["status"], "draining");
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "readiness still 200 after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let refused = client()
        .post(format!("{base}/v1/chat/completions"))
        .json(&json!({"messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status().as_u16(), 503);
    assert!(refused.headers().contains_key("retry-after"));

    for stream in streams {
        let body = read_all(stream).await;
        assert!(body.ends_with("data: [DONE]\n\n"), "{body}");
        assert!(
            body.contains("\"finish_reason\":\"length\""),
            "every stream ran to its end: {body}"
        );
        assert!(!body.contains("\"error\""), "{body}");
    }
    let code = tokio::task::spawn_blocking(move || wait_exit(&mut child, Duration::from_secs(30)))
        .await
        .unwrap();
    assert_eq!(code, 0);
}

#[tokio::test]
async fn a_second_signal_ends_the_rest_with_an_error_event_and_done() {
    let (mut child, addr, _) = spawn_binary(&["--drain-timeout", "120"]);
    let base = format!("http://{addr}");
    let stream = open_stream(&base, 4000).await;
    signal(&child, "TERM");
    tokio::time::sleep(Duration::from_millis(500)).await;
    signal(&child, "INT");
    let body = tokio::time::timeout(Duration::from_secs(30), read_all(stream))
        .await
        .expect("the stream ends");
    assert!(body.ends_with("data: [DONE]\n\n"), "{body}");
    assert!(body.contains("\"code\":\"shut_down\""), "{body}");
    let code = tokio::task::spawn_blocking(move || wait_exit(&mut child, Duration::from_secs(30)))
        .await
        .unwrap();
    assert_eq!(code, 0);
}
