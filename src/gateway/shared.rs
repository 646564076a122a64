//! Per-key limits shared by every replica through Redis (`--limits-redis redis://host:port`): the same
//! sliding-minute windows as [`super::quota`], kept in Redis sorted sets and changed by one Lua script per
//! admission and one per settlement (each one round trip, atomic on the server, timed by the server's
//! clock so replicas' clocks do not matter). When Redis cannot be reached the replica keeps serving on
//! its own windows with each limit divided by `--limits-replicas`, says so (log, `llmserve_limits_shared`,
//! `/health/ready`'s body), and goes back to Redis as soon as it answers again.
//!
//! The client is a minimal RESP2 one over one TCP connection (EVAL and its integer replies are all it
//! needs), reconnecting on the next request after any error.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufStream};
use tokio::net::TcpStream;

use super::quota::{QuotaError, Quotas, RateHeaders, Reservation, WINDOW};
use crate::config::keys::Limits;

/// The longest one Redis round trip may take before the replica falls back to its own windows.
const ROUND_TRIP_TIMEOUT: Duration = Duration::from_millis(250);
/// After Redis failed, admissions decide locally for this long before trying it again: a Redis that
/// does not answer would otherwise cost every admission the whole round-trip timeout, one at a time.
const RETRY_REDIS_AFTER: Duration = Duration::from_secs(1);
/// A request still holding a concurrency slot after this long is assumed lost (its replica died).
const CONCURRENCY_LEASE_MS: u64 = 15 * 60 * 1000;

/// Admission: prune the windows, check concurrency, requests and tokens, then record the request.
/// KEYS: requests zset, tokens zset, tokens sum, concurrency zset. ARGV: rpm, tpm, max_concurrent (0: no
/// limit), id, tokens, window ms, lease ms. Returns {allowed, reason, retry_ms, requests used, tokens used,
/// requests reset ms, tokens reset ms}; reason 0 ok, 1 concurrency, 2 requests, 3 tokens.
const ADMIT: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local rpm, tpm, conc = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local id, tokens, window, lease = ARGV[4], tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
local cutoff = now - window
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', cutoff)
local old = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', cutoff)
local freed = 0
for _, m in ipairs(old) do freed = freed + tonumber(string.match(m, ':(%d+)$')) end
if freed > 0 then redis.call('DECRBY', KEYS[3], freed) end
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', cutoff)
redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', now)
local used_req = redis.call('ZCARD', KEYS[1])
local used_tok = tonumber(redis.call('GET', KEYS[3]) or '0')
local function reset(key)
  local first = redis.call('ZRANGE', KEYS[key], 0, 0, 'WITHSCORES')
  if first[2] then return math.max(0, tonumber(first[2]) + window - now) end
  return 0
end
local function tokens_free_after(needed)
  local entries = redis.call('ZRANGE', KEYS[2], 0, -1, 'WITHSCORES')
  local left = used_tok
  for i = 1, #entries, 2 do
    left = left - tonumber(string.match(entries[i], ':(%d+)$'))
    if left + needed <= tpm then return math.max(1, tonumber(entries[i + 1]) + window - now) end
  end
  return window
end
if conc > 0 and redis.call('ZCARD', KEYS[4]) >= conc then
  return {0, 1, 1000, used_req, used_tok, reset(1), reset(2)}
end
if rpm > 0 and used_req >= rpm then
  return {0, 2, math.max(1, reset(1)), used_req, used_tok, reset(1), reset(2)}
end
if tpm > 0 then
  if tokens > tpm then tokens = tpm end
  if used_tok + tokens > tpm then
    return {0, 3, tokens_free_after(tokens), used_req, used_tok, reset(1), reset(2)}
  end
end
redis.call('ZADD', KEYS[1], now, id)
redis.call('ZADD', KEYS[2], now, id .. ':' .. tokens)
redis.call('INCRBY', KEYS[3], tokens)
redis.call('ZADD', KEYS[4], now + lease, id)
for i = 1, 3 do redis.call('PEXPIRE', KEYS[i], window * 2) end
redis.call('PEXPIRE', KEYS[4], lease)
return {1, 0, 0, used_req + 1, used_tok + tokens, reset(1), reset(2)}
"#;

/// Settlement: the reservation's token entry rewritten to what was used, the concurrency slot freed.
/// KEYS: tokens zset, tokens sum, concurrency zset. ARGV: id, reserved, used (-1: keep the reservation).
const SETTLE: &str = r#"
local id, reserved, used = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
redis.call('ZREM', KEYS[3], id)
if used < 0 then return 0 end
local member = id .. ':' .. reserved
local score = redis.call('ZSCORE', KEYS[1], member)
if not score then return 0 end
redis.call('ZREM', KEYS[1], member)
redis.call('ZADD', KEYS[1], score, id .. ':' .. used)
redis.call('INCRBY', KEYS[2], used - reserved)
return 1
"#;

/// A RESP2 reply.
#[derive(Debug, Clone, PartialEq)]
enum Reply {
    Int(i64),
    Text(Option<String>),
    Array(Vec<Reply>),
}

#[derive(Debug, thiserror::Error)]
enum RedisError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("redis: {0}")]
    Server(String),
    #[error("redis: unexpected reply: {0}")]
    Protocol(String),
    #[error("redis: no answer within {0:?}")]
    Timeout(Duration),
}

/// One connection to Redis, opened on first use and again after any error.
struct RedisClient {
    address: String,
    connection: tokio::sync::Mutex<Option<BufStream<TcpStream>>>,
}

impl RedisClient {
    /// `redis://host:port` (the port defaults to 6379).
    fn parse(url: &str) -> Option<String> {
        let rest = url.strip_prefix("redis://")?;
        let host = rest.split('/').next()?.rsplit('@').next()?;
        if host.is_empty() {
            return None;
        }
        Some(if host.contains(':') {
            host.to_string()
        } else {
            format!("{host}:6379")
        })
    }

    async fn eval(
        &self,
        script: &str,
        keys: &[String],
        args: &[String],
    ) -> Result<Reply, RedisError> {
        let mut guard = self.connection.lock().await;
        let outcome = tokio::time::timeout(ROUND_TRIP_TIMEOUT, async {
            if guard.is_none() {
                *guard = Some(BufStream::new(TcpStream::connect(&self.address).await?));
            }
            let stream = guard.as_mut().expect("connected above");
            let mut parts: Vec<&str> = vec!["EVAL", script];
            let count = keys.len().to_string();
            parts.push(&count);
            parts.extend(keys.iter().map(String::as_str));
            parts.extend(args.iter().map(String::as_str));
            let mut command = format!("*{}\r\n", parts.len()).into_bytes();
            for part in parts {
                command.extend_from_slice(format!("${}\r\n", part.len()).as_bytes());
                command.extend_from_slice(part.as_bytes());
                command.extend_from_slice(b"\r\n");
            }
            stream.write_all(&command).await?;
            stream.flush().await?;
            read_reply(stream).await
        })
        .await
        .unwrap_or(Err(RedisError::Timeout(ROUND_TRIP_TIMEOUT)));
        if outcome.is_err() {
            // A connection in an unknown state is not reused.
            *guard = None;
        }
        outcome
    }
}

async fn read_line(stream: &mut BufStream<TcpStream>) -> Result<String, RedisError> {
    let mut line = String::new();
    if stream.read_line(&mut line).await? == 0 {
        return Err(RedisError::Protocol("connection closed".into()));
    }
    Ok(line.trim_end_matches("\r\n").to_string())
}

fn read_reply(
    stream: &mut BufStream<TcpStream>,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<Reply, RedisError>> + Send + '_>> {
    Box::pin(async move {
        let line = read_line(stream).await?;
        let (kind, rest) = line.split_at(line.len().min(1));
        let number = || {
            rest.parse::<i64>()
                .map_err(|_| RedisError::Protocol(line.clone()))
        };
        match kind {
            ":" => Ok(Reply::Int(number()?)),
            "+" => Ok(Reply::Text(Some(rest.to_string()))),
            "-" => Err(RedisError::Server(rest.to_string())),
            "$" => match number()? {
                -1 => Ok(Reply::Text(None)),
                len => {
                    let mut data = vec![0u8; len as usize + 2];
                    stream.read_exact(&mut data).await?;
                    data.truncate(len as usize);
                    Ok(Reply::Text(Some(
                        String::from_utf8_lossy(&data).into_owned(),
                    )))
                }
            },
            "*" => {
                let len = number()?;
                let mut items = Vec::with_capacity(len.max(0) as usize);
                for _ in 0..len.max(0) {
                    items.push(read_reply(stream).await?);
                }
                Ok(Reply::Array(items))
            }
            _ => Err(RedisError::Protocol(line.clone())),
        }
    })
}

/// Limits kept in Redis, with this replica's own windows as the fallback.
pub struct SharedQuotas {
    redis: RedisClient,
    local: Quotas,
    replicas: u32,
    shared: AtomicBool,
    /// While set and in the future, Redis is not asked.
    retry_at: std::sync::Mutex<Option<std::time::Instant>>,
}

/// A request's hold on its key's budget, wherever it is kept; settled when its response ends.
pub enum Held {
    Local(Reservation),
    Shared {
        limits: Arc<SharedQuotas>,
        key: String,
        id: String,
        reserved: u64,
        headers: RateHeaders,
    },
}

impl Held {
    pub fn headers(&self) -> &RateHeaders {
        match self {
            Held::Local(reservation) => &reservation.headers,
            Held::Shared { headers, .. } => headers,
        }
    }

    /// Charges what was used (`None`: the reservation stands) and frees the concurrency slot.
    pub fn settle(self, used: Option<u64>) {
        match self {
            Held::Local(reservation) => match used {
                Some(used) => reservation.settle(used),
                None => drop(reservation),
            },
            Held::Shared {
                limits,
                key,
                id,
                reserved,
                ..
            } => {
                // Off the path that ends the response: one round trip, whose failure only leaves the
                // reservation standing until it leaves the window.
                tokio::spawn(async move {
                    let keys = key_names(&key);
                    let args = [
                        id,
                        reserved.to_string(),
                        used.map_or(-1, |u| u as i64).to_string(),
                    ];
                    let keys = [keys[1].clone(), keys[2].clone(), keys[3].clone()];
                    if let Err(error) = limits.redis.eval(SETTLE, &keys, &args).await {
                        tracing::warn!(%error, "could not settle a request's budget in Redis");
                    }
                });
            }
        }
    }
}

fn key_names(key: &str) -> [String; 4] {
    // One hash tag per key: all four live on the same Redis Cluster slot.
    ["req", "tok", "toksum", "conc"].map(|part| format!("llmserve:{{{key}}}:{part}"))
}

impl SharedQuotas {
    /// `None` for a URL that is not `redis://host[:port]`.
    pub fn new(url: &str, replicas: u32) -> Option<Arc<Self>> {
        Some(Arc::new(SharedQuotas {
            redis: RedisClient {
                address: RedisClient::parse(url)?,
                connection: tokio::sync::Mutex::new(None),
            },
            local: Quotas::default(),
            replicas: replicas.max(1),
            shared: AtomicBool::new(true),
            retry_at: std::sync::Mutex::new(None),
        }))
    }

    /// Whether the last admission was decided in Redis.
    pub fn is_shared(&self) -> bool {
        self.shared.load(Ordering::Relaxed)
    }

    fn mark(&self, shared: bool) {
        let was = self.shared.swap(shared, Ordering::Relaxed);
        if was && !shared {
            tracing::warn!(replicas = self.replicas, "Redis unreachable: limits are per replica now (each divided by --limits-replicas) until it answers again");
        } else if !was && shared {
            tracing::info!("Redis answers again: limits are shared across replicas");
        }
    }

    pub async fn reserve(
        self: &Arc<Self>,
        key: &str,
        limits: Limits,
        prompt: u64,
        tokens: u64,
    ) -> Result<Held, QuotaError> {
        if let Some(limit) = limits.tpm.filter(|limit| prompt > *limit) {
            return Err(QuotaError::TooLarge { limit, prompt });
        }
        let id = crate::ids::random_id(16);
        let charged = limits.tpm.map_or(tokens, |limit| tokens.min(limit));
        let args = [
            limits.rpm.unwrap_or(0).to_string(),
            limits.tpm.unwrap_or(0).to_string(),
            limits.max_concurrent.unwrap_or(0).to_string(),
            id.clone(),
            charged.to_string(),
            WINDOW.as_millis().to_string(),
            CONCURRENCY_LEASE_MS.to_string(),
        ];
        let backing_off = self
            .retry_at
            .lock()
            .expect("retry lock")
            .is_some_and(|at| std::time::Instant::now() < at);
        if backing_off {
            return self.locally(key, limits, prompt, tokens);
        }
        match self.redis.eval(ADMIT, &key_names(key), &args).await {
            Ok(reply) => {
                self.mark(true);
                *self.retry_at.lock().expect("retry lock") = None;
                match integers(&reply) {
                    Some(n) => self.decided(key, limits, id, charged, &n),
                    None => {
                        tracing::error!(?reply, "unexpected reply from the admission script");
                        self.locally(key, limits, prompt, tokens)
                    }
                }
            }
            Err(error) => {
                tracing::debug!(%error, "Redis admission failed");
                self.mark(false);
                *self.retry_at.lock().expect("retry lock") =
                    Some(std::time::Instant::now() + RETRY_REDIS_AFTER);
                self.locally(key, limits, prompt, tokens)
            }
        }
    }

    fn locally(
        &self,
        key: &str,
        limits: Limits,
        prompt: u64,
        tokens: u64,
    ) -> Result<Held, QuotaError> {
        let share = |n: u64| (n / u64::from(self.replicas)).max(1);
        let divided = Limits {
            rpm: limits.rpm.map(|n| share(u64::from(n)) as u32),
            tpm: limits.tpm.map(share),
            max_concurrent: limits.max_concurrent.map(|n| share(u64::from(n)) as u32),
        };
        self.local
            .reserve(key, divided, prompt, tokens)
            .map(Held::Local)
    }

    fn decided(
        self: &Arc<Self>,
        key: &str,
        limits: Limits,
        id: String,
        charged: u64,
        n: &[i64],
    ) -> Result<Held, QuotaError> {
        let [allowed, reason, retry_ms, used_req, used_tok, reset_req, reset_tok] = n[..] else {
            return self.locally(key, limits, 0, charged);
        };
        let ms = |v: i64| Duration::from_millis(v.max(0) as u64);
        let headers = RateHeaders {
            requests: limits
                .rpm
                .map(|l| (l, l.saturating_sub(used_req.max(0) as u32), ms(reset_req))),
            tokens: limits
                .tpm
                .map(|l| (l, l.saturating_sub(used_tok.max(0) as u64), ms(reset_tok))),
        };
        let retry_after_secs = (retry_ms.max(1) as u64).div_ceil(1000);
        if allowed == 1 {
            return Ok(Held::Shared {
                limits: self.clone(),
                key: key.to_string(),
                id,
                reserved: charged,
                headers,
            });
        }
        Err(match reason {
            1 => QuotaError::Concurrency {
                limit: limits.max_concurrent.unwrap_or(0),
                headers,
            },
            2 => QuotaError::Requests {
                limit: limits.rpm.unwrap_or(0),
                retry_after_secs,
                headers,
            },
            _ => QuotaError::Tokens {
                limit: limits.tpm.unwrap_or(0),
                used: used_tok.max(0) as u64,
                requested: charged,
                retry_after_secs,
                headers,
            },
        })
    }
}

fn integers(reply: &Reply) -> Option<Vec<i64>> {
    match reply {
        Reply::Array(items) => items
            .iter()
            .map(|item| match item {
                Reply::Int(n) => Some(*n),
                _ => None,
            })
            .collect(),
        _ => None,
    }
}

/// Where the limits live: this process, or Redis (with this process as the fallback).
pub enum Limiter {
    Local(Quotas),
    Shared(Arc<SharedQuotas>),
}

impl Limiter {
    pub async fn reserve(
        &self,
        key: &str,
        limits: Limits,
        prompt: u64,
        tokens: u64,
    ) -> Result<Held, QuotaError> {
        match self {
            Limiter::Local(quotas) => quotas.reserve(key, limits, prompt, tokens).map(Held::Local),
            Limiter::Shared(shared) => shared.reserve(key, limits, prompt, tokens).await,
        }
    }

    /// `local`, `shared`, or `local: Redis unreachable` (for `/health/ready` and the log).
    pub fn state(&self) -> &'static str {
        match self {
            Limiter::Local(_) => "local",
            Limiter::Shared(shared) if shared.is_shared() => "shared",
            Limiter::Shared(_) => "local: Redis unreachable",
        }
    }

    /// `Some(shared now)` when Redis is configured.
    pub fn shared(&self) -> Option<bool> {
        match self {
            Limiter::Local(_) => None,
            Limiter::Shared(shared) => Some(shared.is_shared()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redis_urls_name_host_and_port() {
        assert_eq!(
            RedisClient::parse("redis://127.0.0.1:6380").as_deref(),
            Some("127.0.0.1:6380")
        );
        assert_eq!(
            RedisClient::parse("redis://cache").as_deref(),
            Some("cache:6379")
        );
        assert_eq!(
            RedisClient::parse("redis://:pw@cache:7000/0").as_deref(),
            Some("cache:7000")
        );
        assert_eq!(RedisClient::parse("http://cache"), None);
    }

    #[tokio::test]
    async fn without_redis_the_limits_are_this_replicas_share() {
        // Nothing listens on port 1: every admission falls back, with the limit divided by 2.
        let shared = SharedQuotas::new("redis://127.0.0.1:1", 2).unwrap();
        let limits = Limits {
            rpm: Some(4),
            tpm: None,
            max_concurrent: None,
        };
        for _ in 0..2 {
            shared
                .reserve("k", limits, 1, 1)
                .await
                .unwrap()
                .settle(Some(1));
        }
        assert!(!shared.is_shared());
        assert!(matches!(
            shared.reserve("k", limits, 1, 1).await,
            Err(QuotaError::Requests { limit: 2, .. })
        ));
    }
}
