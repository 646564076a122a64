//! Tests of the shared limits without a Redis to reach.

use super::*;

fn settings(url: &str) -> RedisSettings {
    RedisSettings {
        urls: vec![url.to_string()],
        ca_pem: None,
    }
}

#[tokio::test]
async fn without_redis_the_limits_are_this_replicas_share() {
    // Nothing listens on port 1: every admission falls back, with the limit divided by 2.
    let shared = SharedQuotas::new(&settings("redis://127.0.0.1:1"), 2).unwrap();
    let limits = Limits {
        rpm: Some(4),
        ..Limits::default()
    };
    for _ in 0..2 {
        let hold = shared.admit("k", limits).await.unwrap();
        assert!(!hold.is_shared());
        hold.settle(Some(1));
    }
    assert!(!shared.is_shared());
    assert!(matches!(
        shared.admit("k", limits).await,
        Err(QuotaError::Requests { limit: 2, .. })
    ));
}
