//! One key's budget shared by two llmserve processes through a real Redis (Debian's `redis-server`, on a
//! free loopback port, with an ACL user and password): together they admit exactly the limit. With Redis
//! killed they keep serving, each on its share of the limit, and say so; with Redis back they share
//! again. Then, on the limiter itself: an admission lost in a stalled Redis is released once Redis
//! recovers, and `rediss://` with a private CA and a password works (and a wrong password or CA does not).

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use llmserve::config::keys::Limits;
use llmserve::gateway::redis_quota::{RedisSettings, SharedQuotas};

use crate::common::{client, smollm2_models_file, tool};
use crate::drain::{signal, spawn_binary, wait_exit};

const KEY: &str = "sk-test-shared-5e7a9c1b3d";

pub struct Killed(pub Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The ACL user the replicas log in as (managed Redis has no anonymous default user).
pub const REDIS_USER: &str = "llmserve";
pub const REDIS_PASSWORD: &str = "s3cret-redis-pw";

pub fn start_redis(port: u16) -> Killed {
    start_redis_with(port, &["--port", &port.to_string()])
}

/// redis-server on loopback with `args` (its port or TLS port among them), no persistence, and only the
/// ACL user [`REDIS_USER`].
fn start_redis_with(port: u16, args: &[&str]) -> Killed {
    let password = format!(">{REDIS_PASSWORD}");
    let child = Command::new(tool("redis-server"))
        .args(args)
        .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
        .args(["--user", REDIS_USER, "on", &password, "~*", "&*", "+@all"])
        .args(["--user", "default", "off"])
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

fn models_file() -> String {
    smollm2_models_file(
        "shared",
        &format!("[[keys]]\nid = \"shared\"\nkey = \"{KEY}\"\nrole = \"user\"\nrpm = 6\n"),
    )
    .display()
    .to_string()
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
    // The limits mode is for keys: an anonymous probe sees the status only.
    let body: Value = client()
        .get(format!("http://{addr}/health/ready"))
        .bearer_auth(KEY)
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
    let file = models_file();
    let port = free_port();
    let redis_url = format!("redis://{REDIS_USER}:{REDIS_PASSWORD}@127.0.0.1:{port}");
    let redis = start_redis(port);
    let args = [
        "--config",
        &file,
        "--limits-redis",
        &redis_url,
        "--limits-replicas",
        "2",
    ];
    let (a, addr_a, _) = spawn_binary(&args);
    let (b, addr_b, _) = spawn_binary(&args);
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
}

fn settings(url: &str, ca: Option<&Path>) -> RedisSettings {
    RedisSettings::from_flags(url, ca).expect("a valid Redis URL")
}

/// The concurrent leases Redis holds for `key`, once it answers.
async fn running_in_redis(shared: &SharedQuotas, key: &str, want: u64, within: Duration) -> u64 {
    let started = Instant::now();
    loop {
        let now = shared.running_in_redis(key).await;
        if now == Some(want) || started.elapsed() > within {
            return now.unwrap_or(u64::MAX);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Issue 27: an admission that timed out against a busy Redis (a 2 s Lua loop) was applied by Redis
/// later, and its concurrency entry locked the key out on every replica for the whole lease. Now the
/// replica decides that request locally and sends a release by the admission's id; once Redis recovers
/// the key holds nothing there within a few seconds and is admitted in Redis again.
#[tokio::test]
async fn an_admission_lost_in_a_stalled_redis_is_released_once_it_recovers() {
    let port = free_port();
    let _redis = start_redis(port);
    let url = format!("redis://{REDIS_USER}:{REDIS_PASSWORD}@127.0.0.1:{port}");
    let shared = SharedQuotas::new(&settings(&url, None), 1).unwrap();
    let limits = Limits {
        max_concurrent: Some(1),
        ..Limits::default()
    };
    let first = shared.admit("stalled", limits).await.unwrap();
    assert!(first.is_shared(), "Redis answers");
    assert_eq!(
        running_in_redis(&shared, "stalled", 1, Duration::ZERO).await,
        1
    );
    first.settle(Some(0));
    assert_eq!(
        running_in_redis(&shared, "stalled", 0, Duration::from_secs(5)).await,
        0
    );

    // Another client keeps Redis busy for 2 s.
    let busy = "local t = redis.call('TIME') local start = t[1] * 1000000 + t[2] \
                repeat t = redis.call('TIME') until t[1] * 1000000 + t[2] - start > 2000000 return 1";
    let mut stall = Command::new(tool("redis-cli"))
        .args([
            "-p",
            &port.to_string(),
            "--user",
            REDIS_USER,
            "--pass",
            REDIS_PASSWORD,
        ])
        .args(["--no-auth-warning", "EVAL", busy, "0"])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    let during = shared.admit("stalled", limits).await.unwrap();
    assert!(
        !during.is_shared() && started.elapsed() < Duration::from_secs(1),
        "decided locally within the round-trip timeout"
    );
    during.settle(Some(0));
    assert!(stall.wait().unwrap().success());

    // Redis ran the late admission after the stall; the release undoes it (or refuses it first).
    let left = running_in_redis(&shared, "stalled", 0, Duration::from_secs(5)).await;
    assert_eq!(left, 0, "the key's concurrency in Redis is back to 0");
    // Past the replica's one-second pause in asking a Redis that failed: admitted in Redis again.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let again = shared.admit("stalled", limits).await.unwrap();
    assert!(again.is_shared());
    again.settle(Some(0));
}

/// A CA and a server certificate for 127.0.0.1, made with openssl in `dir`.
fn certificates(dir: &Path) {
    let run = |args: &[&str]| {
        let status = Command::new(tool("openssl"))
            .args(args)
            .current_dir(dir)
            .stderr(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "openssl {args:?}");
    };
    std::fs::write(dir.join("san.ext"), "subjectAltName=IP:127.0.0.1\n").unwrap();
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-days",
        "1",
        "-subj",
        "/CN=llmserve test CA",
    ]);
    run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=127.0.0.1",
    ]);
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.crt",
        "-days",
        "1",
        "-extfile",
        "san.ext",
    ]);
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "other.key",
        "-out",
        "other.crt",
        "-days",
        "1",
        "-subj",
        "/CN=another CA",
    ]);
}

/// Managed Redis wants TLS and a password: `rediss://user:password@host` with the CA that signs the
/// server's certificate (`--limits-redis-ca-file`). A wrong password, or a CA that did not sign it, is
/// Redis unreachable: the limits fall back to this replica's share.
#[tokio::test]
async fn rediss_with_a_password_and_a_private_ca() {
    let dir = std::env::temp_dir().join(format!("llmserve-redis-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    certificates(&dir);
    let port = free_port();
    let file = |name: &str| dir.join(name).display().to_string();
    let _redis = start_redis_with(
        port,
        &[
            "--port",
            "0",
            "--tls-port",
            &port.to_string(),
            "--tls-cert-file",
            &file("server.crt"),
            "--tls-key-file",
            &file("server.key"),
            "--tls-ca-cert-file",
            &file("ca.crt"),
            "--tls-auth-clients",
            "no",
        ],
    );
    let limits = Limits {
        rpm: Some(100),
        ..Limits::default()
    };
    let ca = dir.join("ca.crt");
    let url = format!("rediss://{REDIS_USER}:{REDIS_PASSWORD}@127.0.0.1:{port}");
    let shared = SharedQuotas::new(&settings(&url, Some(&ca)), 1).unwrap();
    let hold = shared.admit("tls", limits).await.unwrap();
    assert!(
        hold.is_shared(),
        "admitted in Redis over TLS with the password"
    );
    hold.settle(Some(0));

    let wrong = format!("rediss://{REDIS_USER}:not-the-password@127.0.0.1:{port}");
    let shared = SharedQuotas::new(&settings(&wrong, Some(&ca)), 1).unwrap();
    assert!(!shared.admit("tls", limits).await.unwrap().is_shared());

    let other_ca = dir.join("other.crt");
    let shared = SharedQuotas::new(&settings(&url, Some(&other_ca)), 1).unwrap();
    assert!(!shared.admit("tls", limits).await.unwrap().is_shared());

    let plain = format!("redis://{REDIS_USER}:{REDIS_PASSWORD}@127.0.0.1:{port}");
    let shared = SharedQuotas::new(&settings(&plain, None), 1).unwrap();
    assert!(
        !shared.admit("tls", limits).await.unwrap().is_shared(),
        "no plain text on a TLS port"
    );
    let _ = std::fs::remove_dir_all(dir);
}
