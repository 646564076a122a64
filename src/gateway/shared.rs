//! Per-key limits shared by every replica through Redis (`--limits-redis`): the same sliding-minute windows
//! as [`super::quota`], kept in Redis sorted sets and changed by Lua scripts (each one round trip, atomic
//! on the server, timed by the server's clock so replicas' clocks do not matter). When Redis cannot be
//! reached the replica keeps serving on its own windows with each limit divided by `--limits-replicas`,
//! says so (log, `llmserve_limits_shared`, `/health/ready`'s body for keys), and goes back to Redis as
//! soon as it answers again.
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
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use super::quota::{QuotaError, Quotas, RateHeaders, Reservation, WINDOW};
use crate::config::keys::Limits;

/// The longest one Redis round trip may take before the replica decides locally.
const ROUND_TRIP_TIMEOUT: Duration = Duration::from_millis(250);
/// After Redis failed, admissions decide locally for this long before trying it again: a Redis that
/// does not answer would otherwise cost every admission the whole round-trip timeout, one at a time.
const RETRY_REDIS_AFTER: Duration = Duration::from_secs(1);
/// A running request's concurrent slot lasts this long unless renewed.
pub const CONCURRENCY_LEASE: Duration = Duration::from_secs(30);
/// How often the running requests' leases are renewed: three tries before a lease runs out.
const RENEW_EVERY: Duration = Duration::from_secs(10);
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

/// Why the Redis settings cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SharedLimitsError {
    #[error("--limits-redis `{url}`: {reason}")]
    BadUrl { url: String, reason: String },
    #[error("--limits-redis-ca-file {path}: {reason}")]
    BadCa { path: String, reason: String },
}

/// Where Redis is and how to reach it.
#[derive(Debug, Clone)]
pub struct RedisSettings {
    /// One URL (`redis://`, `rediss://`), or several: the nodes of a Redis Cluster.
    pub urls: Vec<String>,
    /// PEM roots to trust for `rediss://` (a private CA); `None`: the system's.
    pub ca_pem: Option<Vec<u8>>,
}

impl RedisSettings {
    /// `--limits-redis` (comma-separated for a cluster) and `--limits-redis-ca-file`, checked.
    pub fn from_flags(
        urls: &str,
        ca_file: Option<&std::path::Path>,
    ) -> Result<Self, SharedLimitsError> {
        let urls: Vec<String> = urls
            .split(',')
            .map(|u| u.trim().to_string())
            .filter(|u| !u.is_empty())
            .collect();
        let ca_pem = ca_file
            .map(|path| {
                std::fs::read(path).map_err(|e| SharedLimitsError::BadCa {
                    path: path.display().to_string(),
                    reason: e.to_string(),
                })
            })
            .transpose()?;
        let settings = RedisSettings { urls, ca_pem };
        settings.client()?;
        Ok(settings)
    }

    fn certificates(&self) -> redis::TlsCertificates {
        redis::TlsCertificates {
            client_tls: None,
            root_cert: self.ca_pem.clone(),
        }
    }

    fn client(&self) -> Result<RedisClient, SharedLimitsError> {
        let bad = |url: &str, reason: String| SharedLimitsError::BadUrl {
            url: redacted(url),
            reason,
        };
        match self.urls.as_slice() {
            [] => Err(bad("", "no URL".into())),
            [url] => {
                check_scheme(url).map_err(|r| bad(url, r))?;
                let client = if self.ca_pem.is_some() {
                    redis::Client::build_with_tls(url.as_str(), self.certificates())
                } else {
                    redis::Client::open(url.as_str())
                };
                client
                    .map(RedisClient::Single)
                    .map_err(|e| bad(url, e.to_string()))
            }
            urls => {
                for url in urls {
                    check_scheme(url).map_err(|r| bad(url, r))?;
                }
                let mut builder = redis::cluster::ClusterClientBuilder::new(urls.to_vec())
                    .connection_timeout(ROUND_TRIP_TIMEOUT)
                    .response_timeout(ROUND_TRIP_TIMEOUT);
                if self.ca_pem.is_some() {
                    builder = builder.certs(self.certificates());
                }
                builder
                    .build()
                    .map(RedisClient::Cluster)
                    .map_err(|e| bad(&urls.join(","), e.to_string()))
            }
        }
    }
}

fn check_scheme(url: &str) -> Result<(), String> {
    if url.starts_with("redis://") || url.starts_with("rediss://") {
        Ok(())
    } else {
        Err("expected redis://[user:password@]host[:port] or rediss://…".into())
    }
}

/// A URL without its password, for logs and errors.
pub use crate::config::cli::redact_url as redacted;

// One per process, made at start: the variants' sizes do not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Clone)]
enum RedisClient {
    Single(redis::Client),
    Cluster(redis::cluster::ClusterClient),
}

/// An open connection: multiplexed, so that a call that timed out does not block the next one.
#[derive(Clone)]
enum Connection {
    Single(redis::aio::ConnectionManager),
    Cluster(redis::cluster_async::ClusterConnection),
}

#[derive(Debug, thiserror::Error)]
enum RedisError {
    /// No connection: nothing was sent.
    #[error("redis: not connected: {0}")]
    NotConnected(String),
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// Sent, and no answer in time: Redis may still run it.
    #[error("redis: no answer within {0:?}")]
    Timeout(Duration),
}

impl RedisError {
    /// Whether Redis may have run the call (or may still run it) although no answer came: a timeout, or
    /// a connection lost after sending. An error reply, or no connection at all, ran nothing.
    fn may_have_run(&self) -> bool {
        match self {
            RedisError::NotConnected(_) => false,
            RedisError::Timeout(_) => true,
            RedisError::Redis(error) => {
                error.is_timeout() || error.is_io_error() || error.is_connection_dropped()
            }
        }
    }
}

/// A script call: keys and arguments, sent as EVALSHA (EVAL the first time).
struct Call<'a> {
    script: &'a redis::Script,
    keys: Vec<String>,
    args: Vec<String>,
}

impl SharedQuotas {
    async fn connection(&self) -> Result<Connection, RedisError> {
        if let Some(connection) = self.connection.lock().expect("connection lock").clone() {
            return Ok(connection);
        }
        let connecting = async {
            Ok::<_, redis::RedisError>(match &self.client {
                RedisClient::Single(client) => {
                    let config = redis::aio::ConnectionManagerConfig::new()
                        .set_connection_timeout(Some(ROUND_TRIP_TIMEOUT))
                        .set_response_timeout(Some(ROUND_TRIP_TIMEOUT))
                        .set_number_of_retries(1);
                    Connection::Single(
                        redis::aio::ConnectionManager::new_with_config(client.clone(), config)
                            .await?,
                    )
                }
                RedisClient::Cluster(client) => {
                    Connection::Cluster(client.get_async_connection().await?)
                }
            })
        };
        let connection = tokio::time::timeout(ROUND_TRIP_TIMEOUT, connecting)
            .await
            .map_err(|_| RedisError::NotConnected("connecting timed out".into()))?
            .map_err(|e| RedisError::NotConnected(e.to_string()))?;
        *self.connection.lock().expect("connection lock") = Some(connection.clone());
        Ok(connection)
    }

    /// Runs a script within the round-trip timeout; its integer array reply.
    async fn run(&self, call: Call<'_>) -> Result<Vec<i64>, RedisError> {
        let mut invocation = call.script.prepare_invoke();
        for key in &call.keys {
            invocation.key(key);
        }
        for arg in &call.args {
            invocation.arg(arg);
        }
        let started = Instant::now();
        let connection = self.connection().await?;
        let left = ROUND_TRIP_TIMEOUT.saturating_sub(started.elapsed());
        let attempt = async {
            let reply: redis::RedisResult<redis::Value> = match connection {
                Connection::Single(mut c) => invocation.invoke_async(&mut c).await,
                Connection::Cluster(mut c) => invocation.invoke_async(&mut c).await,
            };
            Ok::<_, RedisError>(integers(&reply?))
        };
        tokio::time::timeout(left, attempt)
            .await
            .map_err(|_| RedisError::Timeout(ROUND_TRIP_TIMEOUT))?
    }
}

fn integers(value: &redis::Value) -> Vec<i64> {
    match value {
        redis::Value::Array(items) => items
            .iter()
            .map(|item| match item {
                redis::Value::Int(n) => *n,
                _ => i64::MIN,
            })
            .collect(),
        redis::Value::Int(n) => vec![*n],
        _ => Vec::new(),
    }
}

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
    client: RedisClient,
    connection: Mutex<Option<Connection>>,
    scripts: Scripts,
    local: Quotas,
    replicas: u32,
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
        match self.quotas.run(call).await {
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
            if let Err(error) = quotas.run(call).await {
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
        // rustls cannot pick a provider when the tree enables two; this process uses aws-lc-rs (an
        // error only says one is installed already).
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        Ok(Arc::new(SharedQuotas {
            client: settings.client()?,
            connection: Mutex::new(None),
            scripts: Scripts {
                admit: redis::Script::new(ADMIT),
                tokens: redis::Script::new(TOKENS),
                settle: redis::Script::new(SETTLE),
                release: redis::Script::new(RELEASE),
                renew: redis::Script::new(RENEW),
            },
            local: Quotas::default(),
            replicas: replicas.max(1),
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
            tracing::warn!(replicas = self.replicas, "Redis unreachable: limits are per replica now (each divided by --limits-replicas) until it answers again");
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
        let reply = match self.run(call).await {
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
        let share = |n: u64| (n / u64::from(self.replicas)).max(1);
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
                match self.run(call).await {
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

    /// One task per process renews the leases of the running requests admitted in Redis.
    fn start_renewing(self: &Arc<Self>) {
        if self.renewing.swap(true, Ordering::Relaxed) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            self.renewing.store(false, Ordering::Relaxed);
            return;
        };
        let weak: Weak<SharedQuotas> = Arc::downgrade(self);
        runtime.spawn(async move {
            loop {
                tokio::time::sleep(RENEW_EVERY).await;
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
                    if let Err(error) = quotas.run(call).await {
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
        let reply = self.run(call).await.ok()?;
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

    #[test]
    fn urls_are_checked_and_passwords_never_shown() {
        assert!(RedisSettings::from_flags("redis://127.0.0.1:6380", None).is_ok());
        assert!(RedisSettings::from_flags("rediss://user:pw@cache:7000/0", None).is_ok());
        assert!(RedisSettings::from_flags("redis://a:1,redis://b:2", None).is_ok());
        let error = RedisSettings::from_flags("http://user:secret@cache", None)
            .unwrap_err()
            .to_string();
        assert!(!error.contains("secret"), "{error}");
        assert_eq!(
            redacted("rediss://alice:secret@cache:6380/0"),
            "rediss://alice:***@cache:6380/0"
        );
        assert_eq!(redacted("redis://cache"), "redis://cache");
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
