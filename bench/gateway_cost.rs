//! What API keys and per-key limits cost a request in process: authenticate (hash the presented key, compare
//! it in constant time with every configured digest), check the route's action and the model, hold the
//! request's budget (requests, tokens, concurrency over a sliding minute) and settle it, with 100 keys
//! configured and the matching key last. With `LLMSERVE_BENCH_REDIS=redis://127.0.0.1:6379` also the
//! same budget held in Redis (`--limits-redis`): an admission and a token round trip, then the
//! settlement (sent after). A
//! measurement, not a test: `cargo run --release --example gateway_cost`.

use std::time::Instant;

use llmserve::config::keys::{hash_key, Action, KeySpec, KeysSpec, Limits};
use llmserve::gateway::quota::Quotas;
use llmserve::gateway::redis_quota::{RedisSettings, SharedQuotas};
use llmserve::gateway::Gateway;

const KEYS: usize = 100;
const REQUESTS: u32 = 200_000;

#[tokio::main]
async fn main() {
    // Limits high enough never to refuse: every request is admitted and its entries stay in the window.
    let limits = Limits {
        rpm: Some(u32::MAX),
        tpm: Some(u64::MAX / 2),
        max_concurrent: Some(64),
        max_request_bytes: None,
    };
    let keys = (0..KEYS)
        .map(|i| KeySpec {
            id: format!("key-{i}"),
            sha256: hash_key(&format!("sk-bench-{i}")),
            role: "user".into(),
            actions: vec![Action::ChatCompletions, Action::ModelsRead],
            models: Some(vec!["smollm2".into()]),
            limits,
            expires: None,
        })
        .collect();
    let gateway = Gateway::new(KeysSpec { keys });
    let quotas = Quotas::default();
    let presented = format!("sk-bench-{}", KEYS - 1);
    for (label, with_limits) in [
        ("authenticate + authorize", false),
        ("… + hold and settle the budget", true),
    ] {
        let started = Instant::now();
        for _ in 0..REQUESTS {
            let caller = gateway
                .authenticate(Some(&presented), 0)
                .expect("a configured key");
            caller.require(Action::ChatCompletions).expect("allowed");
            caller.check_model("smollm2").expect("allowed");
            if with_limits {
                let key = caller.key_id.as_deref().expect("a key");
                let mut held = quotas.admit(key, caller.limits).expect("under the limits");
                held.reserve_tokens(40, 104).expect("under the limits");
                held.settle(60);
            }
        }
        let per_request = started.elapsed() / REQUESTS;
        println!("{label}: {per_request:?} per request ({KEYS} keys)");
    }
    if let Ok(url) = std::env::var("LLMSERVE_BENCH_REDIS") {
        let settings = RedisSettings::from_flags(&url, None).expect("a redis:// URL");
        let shared = SharedQuotas::new(&settings, 1).expect("a redis:// URL");
        const ROUND_TRIPS: u32 = 5_000;
        let started = Instant::now();
        for i in 0..ROUND_TRIPS {
            let key = format!("bench-{}", i % 100);
            let mut held = shared.admit(&key, limits).await.expect("under the limits");
            held.reserve_tokens(40, 104)
                .await
                .expect("under the limits");
            assert!(held.is_shared(), "Redis answers");
            held.settle(Some(60));
        }
        let per_request = started.elapsed() / ROUND_TRIPS;
        println!("budget held in Redis (admission round trip; settlement sent after): {per_request:?} per request");
    }
}
