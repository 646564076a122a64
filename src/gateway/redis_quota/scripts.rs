//! The Lua scripts that keep a key's windows in Redis (each one atomic round trip), and the Redis keys
//! they work on.

/// Admission: prune the windows, check concurrency and requests, then record the request and its
/// concurrent lease. KEYS: requests zset, concurrency zset, this id's release marker. ARGV: rpm,
/// max_concurrent (0: no limit), id, window ms, lease ms. Returns {allowed, reason, retry ms, requests
/// used, requests reset ms}; reason 0 ok, 1 concurrency, 2 requests, 4 released before it ran.
pub(super) const ADMIT: &str = r#"
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
pub(super) const TOKENS: &str = r#"
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
pub(super) const SETTLE: &str = r#"
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
pub(super) const RELEASE: &str = r#"
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
pub(super) const HEARTBEAT: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local lease = tonumber(ARGV[2])
redis.call('ZADD', KEYS[1], now + lease, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('PEXPIRE', KEYS[1], lease * 2)
return {redis.call('ZCARD', KEYS[1])}
"#;

/// Lease renewal for a key's running requests. KEYS: concurrency zset. ARGV: lease ms, ids...
pub(super) const RENEW: &str = r#"
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
pub(super) struct KeyNames {
    pub(super) requests: String,
    pub(super) concurrency: String,
    pub(super) tokens: String,
    pub(super) tokens_sum: String,
}

impl KeyNames {
    pub(super) fn new(key: &str) -> Self {
        let name = |part: &str| format!("llmserve:{{{key}}}:{part}");
        KeyNames {
            requests: name("req"),
            concurrency: name("conc"),
            tokens: name("tok"),
            tokens_sum: name("toksum"),
        }
    }

    pub(super) fn released(key: &str, id: &str) -> String {
        format!("llmserve:{{{key}}}:released:{id}")
    }
}

pub(super) struct Scripts {
    pub(super) admit: redis::Script,
    pub(super) tokens: redis::Script,
    pub(super) settle: redis::Script,
    pub(super) release: redis::Script,
    pub(super) renew: redis::Script,
    pub(super) heartbeat: redis::Script,
    pub(super) leave: redis::Script,
}
