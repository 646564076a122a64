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

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use super::quota::{QuotaError, Quotas, RateHeaders, Reservation, WINDOW};
use super::redis_link::{Call, RedisLink};
pub use super::redis_link::{RedisSettings, SharedLimitsError};
use crate::config::keys::Limits;

/// After Redis failed, admissions decide locally for this long before trying it again: a Redis that
/// does not answer would otherwise cost every admission the whole round-trip timeout, one at a time.
const RETRY_REDIS_AFTER: Duration = Duration::from_secs(1);
/// A running request's concurrent slot lasts this long unless renewed.
pub const CONCURRENCY_LEASE: Duration = Duration::from_secs(30);
/// How often the running requests' leases are renewed: three tries before a lease runs out.
const RENEW_EVERY: Duration = Duration::from_secs(10);
/// How often a replica renews its place among the live ones (and learns their count): a replica that
/// joined is counted by the others within this, one that stopped leaves at once, one that died within
/// [`REPLICA_LEASE`].
const HEARTBEAT_EVERY: Duration = Duration::from_secs(2);
/// A replica's place among the live ones lasts this long unless renewed (three heartbeats).
const REPLICA_LEASE: Duration = Duration::from_secs(6);
/// How often a compensating release is tried again while Redis does not take it.
const RELEASE_RETRY: Duration = Duration::from_millis(500);

/// Admission: prune the windows, check concurrency and requests, then record the request and its
/// concurrent lease. KEYS: requests zset, concurrency zset, this id's release marker. ARGV: rpm,
/// max_concurrent (0: no limit), id, window ms, lease ms. Returns {allowed, reason, retry ms, requests
/// used, requests reset ms}; reason 0 ok, 1 concurrency, 2 requests, 4 released before it ran.
const ADMIT: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local rpm, conc = tonumber(ARGV[1]), tonumber(ARGV[2])
local id, window, lease = ARGV[3], tonumber(ARGV[4]), tonumber(ARGV[5])
if redis.call('EXISTS', KEYS[3]) == 1 then return {0, 4, 0, 0, 0} end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
local used = redis.call('ZCARD', KEYS[1])
local function reset()
  local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  if first[2] then return math.max(0, tonumber(first[2]) + window - now) end
  return 0
end
if conc > 0 and redis.call('ZCARD', KEYS[2]) >= conc then
  return {0, 1, 1000, used, reset()}
end
if rpm > 0 and used >= rpm then
  local r = reset()
  return {0, 2, math.max(1, r), used, r}
end
redis.call('ZADD', KEYS[1], now, id)
redis.call('ZADD', KEYS[2], now + lease, id)
redis.call('PEXPIRE', KEYS[1], window * 2)
redis.call('PEXPIRE', KEYS[2], lease * 2)
return {1, 0, 0, used + 1, reset()}
"#;

/// Tokens of an admitted request: prune the window, check the limit, record the amount.
/// KEYS: tokens zset, tokens sum, this id's release marker. ARGV: tpm (0: no limit), id, tokens, window ms.
/// Returns {allowed, reason, retry ms, tokens used, tokens reset ms}; reason 0 ok, 3 tokens, 4 released.
const TOKENS: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local tpm, id, tokens, window = tonumber(ARGV[1]), ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
if redis.call('EXISTS', KEYS[3]) == 1 then return {0, 4, 0, 0, 0} end
local cutoff = now - window
local old = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', cutoff)
local freed = 0
for _, m in ipairs(old) do freed = freed + tonumber(string.match(m, ':(%d+)$')) end
if freed > 0 then redis.call('DECRBY', KEYS[2], freed) end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', cutoff)
local used = tonumber(redis.call('GET', KEYS[2]) or '0')
local function reset()
  local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  if first[2] then return math.max(0, tonumber(first[2]) + window - now) end
  return 0
end
if tpm > 0 and used + tokens > tpm then
  local entries = redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')
  local left = used
  local wait = window
  for i = 1, #entries, 2 do
    left = left - tonumber(string.match(entries[i], ':(%d+)$'))
    if left + tokens <= tpm then wait = math.max(1, tonumber(entries[i + 1]) + window - now) break end
  end
  return {0, 3, wait, used, reset()}
end
redis.call('ZADD', KEYS[1], now, id .. ':' .. tokens)
redis.call('INCRBY', KEYS[2], tokens)
redis.call('PEXPIRE', KEYS[1], window * 2)
redis.call('PEXPIRE', KEYS[2], window * 2)
return {1, 0, 0, used + tokens, reset()}
"#;

/// Settlement: the concurrent lease freed and the token entry (if any) rewritten to what was used.
/// KEYS: tokens zset, tokens sum, concurrency zset. ARGV: id, reserved (-1: none), used (-1: keep).
const SETTLE: &str = r#"
local id, reserved, used = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
redis.call('ZREM', KEYS[3], id)
if reserved < 0 or used < 0 then return 0 end
local member = id .. ':' .. reserved
local score = redis.call('ZSCORE', KEYS[1], member)
if not score then return 0 end
redis.call('ZREM', KEYS[1], member)
redis.call('ZADD', KEYS[1], score, id .. ':' .. used)
redis.call('INCRBY', KEYS[2], used - reserved)
return 1
"#;

/// Compensation for a call whose answer never came: a marker that refuses the call should Redis run it
/// later, and whatever it recorded removed. KEYS: requests zset, concurrency zset, tokens zset, tokens
/// sum, the id's release marker. ARGV: id, tokens asked for (-1: none), marker ms.
const RELEASE: &str = r#"
local id, tokens = ARGV[1], tonumber(ARGV[2])
redis.call('SET', KEYS[5], '1', 'PX', tonumber(ARGV[3]))
redis.call('ZREM', KEYS[1], id)
redis.call('ZREM', KEYS[2], id)
if tokens >= 0 and redis.call('ZREM', KEYS[3], id .. ':' .. tokens) == 1 then
  redis.call('DECRBY', KEYS[4], tokens)
end
return 1
"#;

/// A replica's heartbeat: its lease in the set of live replicas renewed, the lapsed ones dropped.
/// KEYS: the replicas zset. ARGV: replica id, lease ms. Returns {live replicas}.
const HEARTBEAT: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local lease = tonumber(ARGV[2])
redis.call('ZADD', KEYS[1], now + lease, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('PEXPIRE', KEYS[1], lease * 2)
return {redis.call('ZCARD', KEYS[1])}
"#;

/// The replicas that share the limits, each under a lease it renews every [`HEARTBEAT_EVERY`].
const REPLICAS_KEY: &str = "llmserve:replicas";

/// Lease renewal for a key's running requests. KEYS: concurrency zset. ARGV: lease ms, ids...
const RENEW: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local lease = tonumber(ARGV[1])
for i = 2, #ARGV do
  if redis.call('ZSCORE', KEYS[1], ARGV[i]) then redis.call('ZADD', KEYS[1], 'XX', now + lease, ARGV[i]) end
end
redis.call('PEXPIRE', KEYS[1], lease * 2)
return 1
"#;

/// The Redis keys of one API key's windows, all under one hash tag (one Redis Cluster slot).
struct KeyNames {
    requests: String,
    concurrency: String,
    tokens: String,
    tokens_sum: String,
}

impl KeyNames {
    fn new(key: &str) -> Self {
        let name = |part: &str| format!("llmserve:{{{key}}}:{part}");
        KeyNames {
            requests: name("req"),
            concurrency: name("conc"),
            tokens: name("tok"),
            tokens_sum: name("toksum"),
        }
    }

    fn released(key: &str, id: &str) -> String {
        format!("llmserve:{{{key}}}:released:{id}")
    }
}

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

struct Scripts {
    admit: redis::Script,
    tokens: redis::Script,
    settle: redis::Script,
    release: redis::Script,
    renew: redis::Script,
    heartbeat: redis::Script,
    leave: redis::Script,
}

/// A request's hold on its key's budget, wherever it was decided; settled when its response ends.
pub enum Hold {
    /// In this process's windows: no Redis, or Redis did not answer in time.
    Local(Reservation),
    Redis(RedisHold),
}

/// A request admitted in Redis.
pub struct RedisHold {
    quotas: Arc<SharedQuotas>,
    key: String,
    id: String,
    limits: Limits,
    /// The tokens held in Redis, once asked for.
    tokens: Option<u64>,
    headers: RateHeaders,
    settled: bool,
}

impl Hold {
    pub fn headers(&self) -> RateHeaders {
        match self {
            Hold::Local(reservation) => reservation.headers.clone(),
            Hold::Redis(hold) => hold.headers.clone(),
        }
    }

    /// Whether it was decided in Redis.
    pub fn is_shared(&self) -> bool {
        matches!(self, Hold::Redis(_))
    }

    /// Holds the request's tokens, where its admission was decided. A Redis hold whose token call gets
    /// no answer in time is released in Redis and decided again locally.
    pub async fn reserve_tokens(&mut self, prompt: u64, tokens: u64) -> Result<(), QuotaError> {
        match self {
            Hold::Local(reservation) => reservation.reserve_tokens(prompt, tokens),
            Hold::Redis(hold) => {
                if let Some(local) = hold.reserve_tokens(prompt, tokens).await? {
                    *self = Hold::Local(local);
                }
                Ok(())
            }
        }
    }

    /// Charges what was used (`None`: the reservation stands) and frees the concurrent slot.
    pub fn settle(self, used: Option<u64>) {
        match self {
            Hold::Local(reservation) => match used {
                Some(used) => reservation.settle(used),
                None => drop(reservation),
            },
            Hold::Redis(mut hold) => hold.settle(used),
        }
    }
}

impl RedisHold {
    /// `Ok(Some(local))` when Redis did not answer and the tokens were held locally instead.
    async fn reserve_tokens(
        &mut self,
        prompt: u64,
        tokens: u64,
    ) -> Result<Option<Reservation>, QuotaError> {
        if let Some(limit) = self.limits.tpm.filter(|limit| prompt > *limit) {
            return Err(QuotaError::TooLarge { limit, prompt });
        }
        let Some(tpm) = self.limits.tpm else {
            return Ok(None);
        };
        let charged = tokens.min(tpm);
        let names = KeyNames::new(&self.key);
        let call = Call {
            script: &self.quotas.scripts.tokens,
            keys: vec![
                names.tokens,
                names.tokens_sum,
                KeyNames::released(&self.key, &self.id),
            ],
            args: vec![
                tpm.to_string(),
                self.id.clone(),
                charged.to_string(),
                WINDOW.as_millis().to_string(),
            ],
        };
        match self.quotas.link.run(call).await {
            Ok(reply) if reply.len() == 5 && reply[0] == 1 => {
                self.quotas.mark(true);
                self.tokens = Some(charged);
                self.headers.tokens = Some((
                    tpm,
                    tpm.saturating_sub(reply[3].max(0) as u64),
                    millis(reply[4]),
                ));
                Ok(None)
            }
            Ok(reply) if reply.len() == 5 && reply[1] == 3 => {
                let headers = RateHeaders {
                    tokens: Some((
                        tpm,
                        tpm.saturating_sub(reply[3].max(0) as u64),
                        millis(reply[4]),
                    )),
                    ..self.headers.clone()
                };
                Err(QuotaError::Tokens {
                    limit: tpm,
                    used: reply[3].max(0) as u64,
                    requested: charged,
                    retry_after_secs: (reply[2].max(1) as u64).div_ceil(1000),
                    headers,
                })
            }
            outcome => {
                if let Err(error) = &outcome {
                    tracing::debug!(%error, "Redis token hold failed");
                    self.quotas.failed();
                }
                // Whatever Redis holds of this request goes (its admission, and the tokens should the
                // call run late); it is decided here from now on.
                self.settled = true;
                self.quotas.forget(&self.key, &self.id);
                self.quotas
                    .clone()
                    .release_later(self.key.clone(), self.id.clone(), Some(charged));
                let mut local = self.quotas.locally(&self.key, self.limits)?;
                local.reserve_tokens(prompt, tokens)?;
                Ok(Some(local))
            }
        }
    }

    fn settle(&mut self, used: Option<u64>) {
        if std::mem::replace(&mut self.settled, true) {
            return;
        }
        self.quotas.forget(&self.key, &self.id);
        let names = KeyNames::new(&self.key);
        let reserved = self.tokens.map_or(-1, |t| t as i64);
        let call_args = vec![
            self.id.clone(),
            reserved.to_string(),
            used.map_or(-1, |u| u as i64).to_string(),
        ];
        let keys = vec![names.tokens, names.tokens_sum, names.concurrency];
        let quotas = self.quotas.clone();
        // Off the path that ends the response: one round trip. Should it fail, the lease (no longer
        // renewed) frees the slot, and the reservation leaves the window with time.
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        runtime.spawn(async move {
            let call = Call {
                script: &quotas.scripts.settle,
                keys,
                args: call_args,
            };
            if let Err(error) = quotas.link.run(call).await {
                tracing::warn!(%error, "could not settle a request's budget in Redis; its lease will expire");
            }
        });
    }
}

impl Drop for RedisHold {
    fn drop(&mut self) {
        self.settle(None);
    }
}

fn millis(ms: i64) -> Duration {
    Duration::from_millis(ms.max(0) as u64)
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
    fn start_renewing(self: &Arc<Self>) {
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

#[cfg(test)]
mod tests {
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
}
