//! This replica's upkeep in Redis: its lease among the live replicas (heartbeat, their count, leaving),
//! and the renewal of its running requests' concurrent leases.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Duration;

use super::scripts::KeyNames;
use super::{SharedQuotas, CONCURRENCY_LEASE};
use crate::gateway::redis_link::Call;

/// How often the running requests' leases are renewed: three tries before a lease runs out.
const RENEW_EVERY: Duration = Duration::from_secs(10);
/// How often a replica renews its place among the live ones (and learns their count): a replica that
/// joined is counted by the others within this, one that stopped leaves at once, one that died within
/// [`REPLICA_LEASE`].
const HEARTBEAT_EVERY: Duration = Duration::from_secs(2);
/// A replica's place among the live ones lasts this long unless renewed (three heartbeats).
const REPLICA_LEASE: Duration = Duration::from_secs(6);

/// The replicas that share the limits, each under a lease it renews every [`HEARTBEAT_EVERY`].
const REPLICAS_KEY: &str = "llmserve:replicas";

impl SharedQuotas {
    /// What each limit is divided by while Redis is unreachable: the live replicas Redis last counted,
    /// and never fewer than `--limits-replicas`.
    pub fn replicas(&self) -> u32 {
        self.replicas.load(Ordering::Relaxed).max(self.min_replicas)
    }

    /// Renews this replica's lease among the live ones and keeps their count.
    async fn heartbeat(&self) {
        let call = Call {
            script: &self.scripts.heartbeat,
            keys: vec![REPLICAS_KEY.to_string()],
            args: vec![
                self.replica_id.clone(),
                REPLICA_LEASE.as_millis().to_string(),
            ],
        };
        match self.link.run(call).await {
            Ok(reply) => {
                let live = reply
                    .first()
                    .map_or(1, |n| (*n).clamp(1, i64::from(u32::MAX)) as u32);
                let before = self.replicas.swap(live, Ordering::Relaxed);
                if before != live {
                    tracing::info!(replicas = live, "replicas sharing the limits");
                }
            }
            Err(error) => tracing::debug!(%error, "could not renew this replica's lease in Redis"),
        }
    }

    /// Takes this replica out of the live set as it stops, so that the others divide by those left
    /// (a replica that dies instead drops out when its lease lapses).
    pub async fn leave(&self) {
        let call = Call {
            script: &self.scripts.leave,
            keys: vec![REPLICAS_KEY.to_string()],
            args: vec![self.replica_id.clone()],
        };
        if let Err(error) = self.link.run(call).await {
            tracing::debug!(%error, "could not leave the live replicas in Redis");
        }
    }

    /// Starts the background task (heartbeat, lease renewal) at server start, so that other replicas
    /// count this one before it admits anything.
    pub fn start(self: &Arc<Self>) {
        self.start_renewing();
    }

    /// One task per process renews this replica's lease and those of the running requests admitted in
    /// Redis.
    pub(super) fn start_renewing(self: &Arc<Self>) {
        if self.renewing.swap(true, Ordering::Relaxed) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            self.renewing.store(false, Ordering::Relaxed);
            return;
        };
        let weak: Weak<SharedQuotas> = Arc::downgrade(self);
        let heartbeats_per_renewal = (RENEW_EVERY.as_secs() / HEARTBEAT_EVERY.as_secs()).max(1);
        runtime.spawn(async move {
            for beat in 1u64.. {
                let Some(quotas) = weak.upgrade() else {
                    return;
                };
                quotas.heartbeat().await;
                drop(quotas);
                tokio::time::sleep(HEARTBEAT_EVERY).await;
                if beat % heartbeats_per_renewal != 0 {
                    continue;
                }
                let Some(quotas) = weak.upgrade() else {
                    return;
                };
                let running: Vec<(String, Vec<String>)> = quotas
                    .running
                    .lock()
                    .expect("running lock")
                    .iter()
                    .map(|(key, ids)| (key.clone(), ids.iter().cloned().collect()))
                    .collect();
                for (key, ids) in running {
                    let mut args = vec![CONCURRENCY_LEASE.as_millis().to_string()];
                    args.extend(ids);
                    let call = Call {
                        script: &quotas.scripts.renew,
                        keys: vec![KeyNames::new(&key).concurrency],
                        args,
                    };
                    if let Err(error) = quotas.link.run(call).await {
                        tracing::debug!(%error, key = %key, "could not renew concurrency leases in Redis");
                    }
                }
            }
        });
    }

    /// Requests of `key` holding a live concurrent lease in Redis now (tests and diagnostics); `None`
    /// when Redis does not answer.
    pub async fn running_in_redis(&self, key: &str) -> Option<u64> {
        const COUNT: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
return {redis.call('ZCOUNT', KEYS[1], now, '+inf')}
"#;
        let script = redis::Script::new(COUNT);
        let call = Call {
            script: &script,
            keys: vec![KeyNames::new(key).concurrency],
            args: Vec::new(),
        };
        let reply = self.link.run(call).await.ok()?;
        reply.first().map(|n| (*n).max(0) as u64)
    }
}
