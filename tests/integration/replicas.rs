//! Three replicas behind a real load balancer (Debian's HAProxy, round-robin, health-checked on
//! `/health/ready`) with one real Redis, all on loopback, as a Deployment behind a Service runs them:
//! - one key's requests per minute hold across the three;
//! - a Responses continuation works on whichever replica it lands on (`--responses-store redis`);
//! - the limits' fallback divides by the replicas Redis counted live, not by a fixed flag;
//! - each replica shows the endpoint picker one unlabelled queue, running and KV series on its
//!   `--metrics-port`;
//! - a rolling restart (SIGTERM one replica at a time, the next only once the new one is ready) under 8
//!   streaming clients with different prompts fails no request and truncates no stream;
//! - a replica with a full queue stays ready and answers 429 with Retry-After.

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::common::{client, scrape, smollm2_models_file, sse_data, tool};
use crate::drain::{signal, spawn_binary_on, wait_exit};
use crate::shared_limits::{free_port, start_redis, Killed, REDIS_PASSWORD, REDIS_USER};

const LIMITED: &str = "sk-test-replicas-limited-3f9a";
const OPEN: &str = "sk-test-replicas-open-8c21";
const REPLICAS: usize = 3;

fn models_file() -> String {
    smollm2_models_file(
        "replicas",
        &format!(
            "[[keys]]\nid = \"limited\"\nkey = \"{LIMITED}\"\nrole = \"user\"\nrpm = 6\n\n\
             [[keys]]\nid = \"open\"\nkey = \"{OPEN}\"\nrole = \"user\"\n"
        ),
    )
    .display()
    .to_string()
}

/// One replica: its API and metrics ports stay the same across restarts, as a pod's do.
struct Replica {
    process: Killed,
    api: SocketAddr,
    metrics_port: u16,
}

fn start_replica(api_port: u16, metrics_port: u16, file: &str, redis: &str) -> Replica {
    let metrics = metrics_port.to_string();
    let (child, api, _) = spawn_binary_on(
        api_port,
        &[
            "--config",
            file,
            "--limits-redis",
            redis,
            "--responses-store",
            "redis",
            "--metrics-port",
            &metrics,
            "--drain-timeout",
            "60",
        ],
    );
    Replica {
        process: Killed(child),
        api,
        metrics_port,
    }
}

/// HAProxy in front of the replicas: round-robin, a replica in rotation only while `/health/ready` says
/// 200, and a request that found a replica gone or draining (refused connection, 503 before any byte
/// of the answer) sent to another, as a Service with readiness and a retrying ingress do.
fn start_balancer(port: u16, replicas: &[SocketAddr]) -> Killed {
    let dir = std::env::temp_dir().join(format!("llmserve-haproxy-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let servers: String = replicas
        .iter()
        .enumerate()
        .map(|(i, addr)| format!("  server r{i} {addr} check\n"))
        .collect();
    let config = format!(
        "global\n  maxconn 512\n\
         defaults\n  mode http\n  timeout connect 2s\n  timeout client 1h\n  timeout server 1h\n\
         \x20 timeout http-keep-alive 60s\n  retries 3\n  option redispatch 1\n\
         \x20 retry-on conn-failure empty-response 503\n  option http-buffer-request\n\
         frontend api\n  bind 127.0.0.1:{port}\n  default_backend llmserve\n\
         backend llmserve\n  balance roundrobin\n  option httpchk\n\
         \x20 http-check send meth GET uri /health/ready ver HTTP/1.1 hdr Host llmserve\n\
         \x20 http-check expect status 200\n  default-server inter 200ms fall 1 rise 2\n{servers}"
    );
    let file = dir.join("haproxy.cfg");
    std::fs::write(&file, config).unwrap();
    let child = Command::new(tool("haproxy"))
        .args(["-db", "-f"])
        .arg(&file)
        .stdout(Stdio::null())
        .spawn()
        .expect("haproxy starts");
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "haproxy did not listen"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    Killed(child)
}

async fn chat(base: &str, key: &str, content: &str) -> reqwest::Response {
    client()
        .post(format!("{base}/v1/chat/completions"))
        .bearer_auth(key)
        .json(
            &json!({"model": "smollm2", "messages": [{"role": "user", "content": content}],
                      "max_tokens": 1}),
        )
        .send()
        .await
        .unwrap()
}

/// The single unlabelled sample of `name`, as the endpoint picker reads it.
fn one_series(text: &str, name: &str) -> f64 {
    let samples: Vec<&str> = text
        .lines()
        .filter(|line| !line.starts_with('#'))
        .filter(|line| line.split([' ', '{']).next() == Some(name))
        .collect();
    assert_eq!(samples.len(), 1, "{name}: {samples:?}");
    let (series, value) = samples[0].split_once(' ').unwrap();
    assert_eq!(series, name, "the picker's series carry no labels");
    value.parse().unwrap()
}

/// Generation requests a replica has finished since it started.
async fn served(metrics_port: u16) -> f64 {
    let text = scrape(&format!("http://127.0.0.1:{metrics_port}/metrics")).await;
    text.lines()
        .filter(|line| line.starts_with("llmserve_requests_total{"))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// What a streaming client saw: its status, and whether the stream ended as a complete answer.
async fn stream_once(base: &str, prompt: &str) -> Result<(), String> {
    let response = client()
        .post(format!("{base}/v1/chat/completions"))
        .bearer_auth(OPEN)
        .json(
            &json!({"model": "smollm2", "messages": [{"role": "user", "content": prompt}],
                      "max_tokens": 24, "temperature": 0, "stream": true}),
        )
        .send()
        .await
        .map_err(|e| format!("send: {e}"))?;
    let status = response.status().as_u16();
    let raw = response.text().await.map_err(|e| format!("body: {e}"))?;
    if status != 200 {
        return Err(format!("{status}: {raw}"));
    }
    let events = sse_data(&raw);
    if events.last().map(String::as_str) != Some("[DONE]") {
        return Err(format!("truncated: {raw}"));
    }
    let finished = events
        .iter()
        .filter_map(|e| serde_json::from_str::<Value>(e).ok())
        .any(|chunk| {
            chunk.get("error").is_none()
                && chunk["choices"][0]["finish_reason"]
                    .as_str()
                    .is_some_and(|r| r == "stop" || r == "length")
        });
    if !finished {
        return Err(format!("no finish_reason: {raw}"));
    }
    Ok(())
}

#[actix_web::test]
async fn three_replicas_behind_a_balancer_share_limits_and_responses_and_restart_without_failures()
{
    let file = models_file();
    let redis_port = free_port();
    let redis_url = format!("redis://{REDIS_USER}:{REDIS_PASSWORD}@127.0.0.1:{redis_port}");
    let redis = start_redis(redis_port);
    let mut replicas: Vec<Replica> = (0..REPLICAS)
        .map(|_| start_replica(0, free_port(), &file, &redis_url))
        .collect();
    let balancer_port = free_port();
    let _balancer = start_balancer(
        balancer_port,
        &replicas.iter().map(|r| r.api).collect::<Vec<_>>(),
    );
    let base = format!("http://127.0.0.1:{balancer_port}");
    // Every replica in rotation (two passing checks each).
    tokio::time::sleep(Duration::from_secs(1)).await;

    // One budget: 9 requests round-robin over three replicas, exactly the key's 6 per minute pass.
    let mut statuses = Vec::new();
    for i in 0..9 {
        let response = chat(&base, LIMITED, &format!("Say {i}.")).await;
        if response.status() == 429 {
            assert!(response.headers().contains_key("retry-after"));
        }
        statuses.push(response.status().as_u16());
    }
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        6,
        "{statuses:?}"
    );

    // A response stored through the balancer, continued and read on every replica (by the key without
    // limits: the other one's minute is spent).
    let store = |base: &str, body: Value| {
        let base = base.to_string();
        async move {
            let response = client()
                .post(format!("{base}/v1/responses"))
                .bearer_auth(OPEN)
                .json(&body)
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            (status, response.json::<Value>().await.unwrap())
        }
    };
    let (status, first) = store(
        &base,
        json!({"model": "smollm2", "input": "My name is Ada.", "max_output_tokens": 4}),
    )
    .await;
    assert_eq!(status, 200, "{first}");
    let id = first["id"].as_str().unwrap().to_string();
    for replica in &replicas {
        let direct = format!("http://{}", replica.api);
        let (status, next) = store(
            &direct,
            json!({"model": "smollm2", "input": "What is my name?", "previous_response_id": id,
                   "max_output_tokens": 4}),
        )
        .await;
        assert_eq!(status, 200, "continuation on {direct}: {next}");
        assert_eq!(next["previous_response_id"], id.as_str());
        let read = client()
            .get(format!("{direct}/v1/responses/{id}"))
            .bearer_auth(OPEN)
            .send()
            .await
            .unwrap();
        assert_eq!(read.status(), 200, "read on {direct}");
        // Another key cannot see it on any replica.
        let other = client()
            .get(format!("{direct}/v1/responses/{id}"))
            .bearer_auth(LIMITED)
            .send()
            .await
            .unwrap();
        assert_eq!(other.status(), 404);
    }

    // The picker's series: one each per pod, on the metrics port, without a key.
    for replica in &replicas {
        let text = scrape(&format!(
            "http://127.0.0.1:{}/metrics",
            replica.metrics_port
        ))
        .await;
        assert_eq!(one_series(&text, "llmserve_num_requests_waiting"), 0.0);
        assert_eq!(one_series(&text, "llmserve_num_requests_running"), 0.0);
        let kv = one_series(&text, "llmserve_kv_cache_usage_perc");
        assert!((0.0..=1.0).contains(&kv));
    }

    // The fallback's divisor is the replicas Redis counted live (each heartbeats every 10 s), not
    // --limits-replicas (left at 1): with Redis gone each replica allows a third of the key's rpm.
    let started = Instant::now();
    loop {
        let mut counts = Vec::new();
        for replica in &replicas {
            let text = scrape(&format!(
                "http://127.0.0.1:{}/metrics",
                replica.metrics_port
            ))
            .await;
            counts.push(one_series(&text, "llmserve_limits_replicas"));
        }
        if counts.iter().all(|c| *c == REPLICAS as f64) {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(25),
            "replicas counted: {counts:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    drop(redis);
    for replica in &replicas {
        let direct = format!("http://{}", replica.api);
        let mut passed = 0;
        for i in 0..4 {
            if chat(&direct, LIMITED, &format!("Fallback {i}."))
                .await
                .status()
                == 200
            {
                passed += 1;
            }
        }
        assert_eq!(passed, 2, "6 rpm over 3 live replicas on {direct}");
    }
    let _redis = start_redis(redis_port);

    // Rolling restart under 8 streaming clients with different prompts.
    let stop = Arc::new(AtomicBool::new(false));
    let completed = Arc::new(AtomicUsize::new(0));
    let failures = Arc::new(Mutex::new(Vec::<String>::new()));
    let clients: Vec<_> = (0..8)
        .map(|c| {
            let (base, stop, completed, failures) = (
                base.clone(),
                stop.clone(),
                completed.clone(),
                failures.clone(),
            );
            tokio::spawn(async move {
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    let prompt = format!("Client {c}, request {n}: name a colour and a number.");
                    match stream_once(&base, &prompt).await {
                        Ok(()) => completed.fetch_add(1, Ordering::Relaxed),
                        Err(e) => {
                            failures.lock().unwrap().push(e);
                            0
                        }
                    };
                    n += 1;
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(2)).await;
    for (slot, replica) in replicas.iter_mut().enumerate() {
        let (api, metrics_port) = (replica.api, replica.metrics_port);
        signal(&replica.process.0, "TERM");
        assert_eq!(
            wait_exit(&mut replica.process.0, Duration::from_secs(90)),
            0
        );
        *replica = start_replica(api.port(), metrics_port, &file, &redis_url);
        // Ready (the spawn waits for it), and back in rotation before the next one goes: the balancer
        // sends it requests again.
        let started = Instant::now();
        while served(metrics_port).await == 0.0 {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "replica {slot} got no traffic"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        client.await.unwrap();
    }
    let failures = failures.lock().unwrap();
    assert!(
        failures.is_empty(),
        "{} failed: {:?}",
        failures.len(),
        &failures[..failures.len().min(3)]
    );
    assert!(
        completed.load(Ordering::Relaxed) >= 16,
        "too few streams to prove anything"
    );
    eprintln!(
        "rolling restart: {} streams completed through the balancer, none failed or truncated",
        completed.load(Ordering::Relaxed)
    );

    for replica in &mut replicas {
        signal(&replica.process.0, "TERM");
        assert_eq!(
            wait_exit(&mut replica.process.0, Duration::from_secs(60)),
            0
        );
    }
}

/// A full queue is load, not unreadiness: the replica stays in rotation and says 429 with Retry-After
/// (not a balancer's 503 from a replica taken out of it).
#[actix_web::test]
async fn a_replica_with_a_full_queue_stays_ready_and_answers_429() {
    let (child, addr, _) = spawn_binary_on(0, &["--max-num-seqs", "1", "--max-queue", "0"]);
    let mut replica = Killed(child);
    let base = format!("http://{addr}");
    let holding = client()
        .post(format!("{base}/v1/chat/completions"))
        .json(
            &json!({"messages": [{"role": "user", "content": "Tell me a long story."}],
                      "max_tokens": 400, "stream": true}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(holding.status(), 200);
    let refused = client()
        .post(format!("{base}/v1/chat/completions"))
        .json(&json!({"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 429);
    assert!(refused.headers().contains_key("retry-after"));
    let ready = client()
        .get(format!("{base}/health/ready"))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 200, "a full queue keeps the replica ready");
    let body: Value = ready.json().await.unwrap();
    assert_eq!(body["status"], "ok");
    drop(holding);
    signal(&replica.0, "TERM");
    assert_eq!(wait_exit(&mut replica.0, Duration::from_secs(30)), 0);
}
