//! One key's budget shared by two llmserve processes through a real Redis (Debian's `redis-server`, on a
//! free loopback port): together they admit exactly the limit. With Redis killed they keep serving, each on
//! its share of the limit, and say so; with Redis back they share again.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::common::{cache_dir, client, tool};
use crate::drain::{signal, spawn_server, wait_exit};

const KEY: &str = "sk-test-shared-5e7a9c1b3d";

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn start_redis(port: u16) -> Killed {
    let child = Command::new(tool("redis-server"))
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .stdout(Stdio::null())
        .spawn()
        .expect("redis-server starts");
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "redis-server did not listen"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    Killed(child)
}

fn models_file(dir: &Path) -> String {
    let model = llmserve::default_model::ensure(&cache_dir()).expect("the default model");
    let text = format!(
        "[[models]]\nname = \"smollm2\"\n[[models.versions]]\nversion = \"v1\"\nsource = \"{}\"\n\n\
         [[keys]]\nid = \"shared\"\nkey = \"{KEY}\"\nrole = \"user\"\nrpm = 6\n",
        model.display()
    );
    let path = dir.join("llmserve.toml");
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

/// One short chat request with the key; its status.
async fn ask(addr: SocketAddr) -> u16 {
    client()
        .post(format!("http://{addr}/v1/chat/completions"))
        .bearer_auth(KEY)
        .json(&json!({"model": "smollm2", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 1}))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

async fn limits_state(addr: SocketAddr) -> String {
    let body: Value = client()
        .get(format!("http://{addr}/health/ready"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    body["limits"].as_str().unwrap_or("").to_string()
}

#[actix_web::test]
async fn two_replicas_share_one_budget_through_redis_and_fall_back_without_it() {
    let dir = std::env::temp_dir().join(format!("llmserve-shared-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = models_file(&dir);
    let port = free_port();
    let redis_url = format!("redis://127.0.0.1:{port}");
    let redis = start_redis(port);
    let args = [
        "--config",
        &file,
        "--limits-redis",
        &redis_url,
        "--limits-replicas",
        "2",
    ];
    let (a, addr_a, _) = spawn_server(&args);
    let (b, addr_b, _) = spawn_server(&args);
    let (mut a, mut b) = (Killed(a), Killed(b));

    // 10 requests alternating between the replicas: exactly the key's 6 per minute get through.
    let mut statuses = Vec::new();
    for i in 0..10 {
        statuses.push(ask(if i % 2 == 0 { addr_a } else { addr_b }).await);
    }
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        6,
        "{statuses:?}"
    );
    assert!(statuses[6..].iter().all(|s| *s == 429), "{statuses:?}");
    assert_eq!(limits_state(addr_a).await, "shared");

    // Redis gone: each replica serves on its own half of the limit, and says so.
    drop(redis);
    let mut fallback = [0; 2];
    for (i, addr) in [addr_a, addr_b].into_iter().enumerate() {
        for _ in 0..5 {
            if ask(addr).await == 200 {
                fallback[i] += 1;
            }
        }
        assert_eq!(limits_state(addr).await, "local: Redis unreachable");
    }
    assert_eq!(fallback, [3, 3]);

    // Redis back (empty): shared again from the first admission after the replicas' one-second pause
    // in asking it.
    let _redis = start_redis(port);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(ask(addr_a).await, 200);
    assert_eq!(limits_state(addr_a).await, "shared");
    let mut again = Vec::new();
    for i in 0..8 {
        again.push(ask(if i % 2 == 0 { addr_b } else { addr_a }).await);
    }
    assert_eq!(again.iter().filter(|s| **s == 200).count(), 5, "{again:?}");

    for child in [&mut a, &mut b] {
        signal(&child.0, "TERM");
        assert_eq!(wait_exit(&mut child.0, Duration::from_secs(30)), 0);
    }
    let _ = std::fs::remove_dir_all(dir);
}
