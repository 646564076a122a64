//! Per-key limits shared by every replica through Redis (`--limits-redis`): the same sliding-minute windows
//! as [`super::quota`], kept in Redis sorted sets and changed by Lua scripts (each one round trip, atomic
//! on the server, timed by the server's clock so replicas' clocks do not matter). When Redis cannot be
//! reached the replica keeps serving on its own windows with each limit divided by the live replicas
//! Redis last counted (each replica renews a short lease in one set every 2 s), never fewer than
//! `--limits-replicas`, says so (log, `llmserve_limits_shared`, `/health/ready`'s body for keys), and goes back
//! to Redis as soon as it answers again.
//!
//! The client is the maintained `redis` crate: `redis://` and `rediss://` (TLS, with
//! `--limits-redis-ca-file` for a private CA), a user and password in the URL (Redis ACLs, managed
//! Redis), and Redis Cluster when several URLs are given (a key's windows share one hash slot).
//!
//! Nothing a replica asked of Redis can outlive its request:
//! - an admission (or token hold) whose answer does not come within the round-trip timeout is decided
//!   locally, and a compensating release is sent by its id until Redis takes it; the release leaves a
//!   marker that refuses the late admission should Redis run it afterwards;
//! - a concurrent slot is a short lease ([`CONCURRENCY_LEASE`]) that this replica renews while the request
//!   runs, so that a replica that dies (or a release that never arrives) frees it within the lease.

mod hold;
mod replicas;
mod scripts;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::quota::{QuotaError, Quotas, RateHeaders, Reservation, WINDOW};
use super::redis_link::{Call, RedisLink};
pub use super::redis_link::{RedisSettings, SharedLimitsError};
use crate::config::keys::Limits;
use hold::millis;
pub use hold::{Hold, RedisHold};
use scripts::{KeyNames, Scripts, ADMIT, HEARTBEAT, RELEASE, RENEW, SETTLE, TOKENS};

/// After Redis failed, admissions decide locally for this long before trying it again: a Redis that
/// does not answer would otherwise cost every admission the whole round-trip timeout, one at a time.
const RETRY_REDIS_AFTER: Duration = Duration::from_secs(1);
/// A running request's concurrent slot lasts this long unless renewed.
pub const CONCURRENCY_LEASE: Duration = Duration::from_secs(30);
/// How often a compensating release is tried again while Redis does not take it.
const RELEASE_RETRY: Duration = Duration::from_millis(500);

/// Limits kept in Redis, with this replica's own windows as the fallback.
pub struct SharedQuotas {
    link: RedisLink,
    scripts: Scripts,
    local: Quotas,
    /// The live replicas Redis last counted (every replica heartbeats); `--limits-replicas` until then.
    replicas: AtomicU32,
    /// `--limits-replicas`: the fewest replicas a limit is ever divided by (a count just after start,
    /// before the others' heartbeats, is too low).
    min_replicas: u32,
    /// This replica in the set of live ones.
    replica_id: String,
    shared: AtomicBool,
    /// While set and in the future, Redis is not asked.
    retry_at: Mutex<Option<Instant>>,
    /// The ids of this replica's running requests admitted in Redis, by key: their leases are renewed.
    running: Mutex<HashMap<String, HashSet<String>>>,
    renewing: AtomicBool,
}

impl SharedQuotas {
    pub fn new(settings: &RedisSettings, replicas: u32) -> Result<Arc<Self>, SharedLimitsError> {
        Ok(Arc::new(SharedQuotas {
            link: RedisLink::new(settings)?,
            scripts: Scripts {
                admit: redis::Script::new(ADMIT),
                tokens: redis::Script::new(TOKENS),
                settle: redis::Script::new(SETTLE),
                release: redis::Script::new(RELEASE),
                renew: redis::Script::new(RENEW),
                heartbeat: redis::Script::new(HEARTBEAT),
                leave: redis::Script::new("redis.call('ZREM', KEYS[1], ARGV[1]) return 1"),
            },
            local: Quotas::default(),
            replicas: AtomicU32::new(replicas.max(1)),
            min_replicas: replicas.max(1),
            replica_id: crate::ids::random_id(16),
            shared: AtomicBool::new(true),
            retry_at: Mutex::new(None),
            running: Mutex::new(HashMap::new()),
            renewing: AtomicBool::new(false),
        }))
    }

    /// Whether the last admission was decided in Redis.
    pub fn is_shared(&self) -> bool {
        self.shared.load(Ordering::Relaxed)
    }

    fn mark(&self, shared: bool) {
        if shared {
            *self.retry_at.lock().expect("retry lock") = None;
        }
        let was = self.shared.swap(shared, Ordering::Relaxed);
        if was && !shared {
            tracing::warn!(replicas = self.replicas(), "Redis unreachable: limits are per replica now (each divided by the replicas last seen live) until it answers again");
        } else if !was && shared {
            tracing::info!("Redis answers again: limits are shared across replicas");
        }
    }

    /// Redis failed: decide locally for a while.
    fn failed(&self) {
        self.mark(false);
        *self.retry_at.lock().expect("retry lock") = Some(Instant::now() + RETRY_REDIS_AFTER);
    }

    fn backing_off(&self) -> bool {
        self.retry_at
            .lock()
            .expect("retry lock")
            .is_some_and(|at| Instant::now() < at)
    }

    /// Admits a request (its request and concurrent slot) before its body is read.
    pub async fn admit(self: &Arc<Self>, key: &str, limits: Limits) -> Result<Hold, QuotaError> {
        if self.backing_off() {
            return self.locally(key, limits).map(Hold::Local);
        }
        self.start_renewing();
        let id = crate::ids::random_id(16);
        let names = KeyNames::new(key);
        let call = Call {
            script: &self.scripts.admit,
            keys: vec![
                names.requests,
                names.concurrency,
                KeyNames::released(key, &id),
            ],
            args: vec![
                limits.rpm.unwrap_or(0).to_string(),
                limits.max_concurrent.unwrap_or(0).to_string(),
                id.clone(),
                WINDOW.as_millis().to_string(),
                CONCURRENCY_LEASE.as_millis().to_string(),
            ],
        };
        let reply = match self.link.run(call).await {
            Ok(reply) if reply.len() == 5 && reply[1] != 4 => reply,
            outcome => {
                match &outcome {
                    Err(error) => {
                        tracing::debug!(%error, "Redis admission failed");
                        // Redis may still run the admission once it recovers: release it by its id.
                        if error.may_have_run() {
                            self.clone().release_later(key.to_string(), id, None);
                        }
                    }
                    Ok(reply) => {
                        tracing::error!(?reply, "unexpected reply from the admission script")
                    }
                }
                self.failed();
                return self.locally(key, limits).map(Hold::Local);
            }
        };
        self.mark(true);
        let [allowed, reason, retry_ms, used, reset] = reply[..] else {
            unreachable!("checked to have 5 items above")
        };
        let headers = RateHeaders {
            requests: limits
                .rpm
                .map(|l| (l, l.saturating_sub(used.max(0) as u32), millis(reset))),
            tokens: None,
        };
        if allowed == 1 {
            self.running
                .lock()
                .expect("running lock")
                .entry(key.to_string())
                .or_default()
                .insert(id.clone());
            return Ok(Hold::Redis(RedisHold {
                quotas: self.clone(),
                key: key.to_string(),
                id,
                limits,
                tokens: None,
                headers,
                settled: false,
            }));
        }
        Err(match reason {
            1 => QuotaError::Concurrency {
                limit: limits.max_concurrent.unwrap_or(0),
                headers,
            },
            _ => QuotaError::Requests {
                limit: limits.rpm.unwrap_or(0),
                retry_after_secs: (retry_ms.max(1) as u64).div_ceil(1000),
                headers,
            },
        })
    }

    /// This replica's share of the limits, decided in its own windows.
    fn locally(&self, key: &str, limits: Limits) -> Result<Reservation, QuotaError> {
        let replicas = u64::from(self.replicas());
        let share = |n: u64| (n / replicas).max(1);
        let divided = Limits {
            rpm: limits.rpm.map(|n| share(u64::from(n)) as u32),
            tpm: limits.tpm.map(share),
            max_concurrent: limits.max_concurrent.map(|n| share(u64::from(n)) as u32),
            max_request_bytes: limits.max_request_bytes,
        };
        self.local.admit(key, divided)
    }

    fn forget(&self, key: &str, id: &str) {
        let mut running = self.running.lock().expect("running lock");
        if let Some(ids) = running.get_mut(key) {
            ids.remove(id);
            if ids.is_empty() {
                running.remove(key);
            }
        }
    }

    /// Sends the compensating release of `id` until Redis takes it, for as long as what it would undo
    /// could still count (the window, or a lease).
    fn release_later(self: Arc<Self>, key: String, id: String, tokens: Option<u64>) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        runtime.spawn(async move {
            let give_up = Instant::now() + WINDOW + CONCURRENCY_LEASE;
            let names = KeyNames::new(&key);
            let marker_ms = (WINDOW + CONCURRENCY_LEASE).as_millis() * 2;
            loop {
                let call = Call {
                    script: &self.scripts.release,
                    keys: vec![
                        names.requests.clone(),
                        names.concurrency.clone(),
                        names.tokens.clone(),
                        names.tokens_sum.clone(),
                        KeyNames::released(&key, &id),
                    ],
                    args: vec![
                        id.clone(),
                        tokens.map_or(-1, |t| t as i64).to_string(),
                        marker_ms.to_string(),
                    ],
                };
                match self.link.run(call).await {
                    Ok(_) => {
                        tracing::debug!(key = %key, "released an admission Redis answered too late");
                        return;
                    }
                    Err(_) if Instant::now() < give_up => {
                        tokio::time::sleep(RELEASE_RETRY).await;
                    }
                    Err(error) => {
                        tracing::warn!(%error, key = %key, "gave up releasing an unanswered admission in Redis; it has left the window by now");
                        return;
                    }
                }
            }
        });
    }
}

#[cfg(test)]
mod tests;
