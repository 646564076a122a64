//! Stored responses in Redis (`--responses-store redis`, the `--limits-redis` server), so that
//! `previous_response_id` and `GET /v1/responses/{id}` work on every replica: the same per-key partitions,
//! count, byte and age bounds and least-recently-used order as [`super::store::MemoryStore`], kept by Lua
//! scripts (each one round trip, atomic, timed by the server's clock).
//!
//! One owner's keys share a hash tag (one Redis Cluster slot): a hash of the responses' JSON, one of
//! their sizes, their byte total, a use order and a creation order. The owner's name is hex-encoded into
//! the tag, so that no key id can reach another's keys. The whole partition expires with its newest
//! response, so an idle key leaves nothing behind.
//!
//! A put is written in the background (a stream's last event does not wait for Redis); until it lands,
//! this replica answers for the response from its own pending set. A read or delete that Redis does not
//! answer is a 503 with Retry-After, never a 404 it cannot know.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::stored::StoredResponse;
use super::ResponsesError;
use crate::api::responses::ResponseObject;
use crate::config::ResponsesStoreConfig;
use crate::gateway::redis_link::{Call, RedisLink, RedisSettings, SharedLimitsError};

/// One store call's deadline: a response's JSON can be megabytes (inline images).
const STORE_DEADLINE: Duration = Duration::from_secs(2);

const NOW: &str = "local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
";

/// Removes one response from its partition. KEYS as [`PUT`].
const DROP: &str = "local function drop(x)
  local b = redis.call('HGET', KEYS[4], x)
  if b then redis.call('DECRBY', KEYS[5], tonumber(b)) end
  redis.call('HDEL', KEYS[1], x)
  redis.call('HDEL', KEYS[4], x)
  redis.call('ZREM', KEYS[2], x)
  redis.call('ZREM', KEYS[3], x)
end
";

/// Keeps a response: the expired go, then this id's old entry, then the least recently used while the
/// partition is over its bounds. KEYS: json hash, use zset, created zset, sizes hash, byte total, use
/// tick. ARGV: id, json, bytes, ttl ms, capacity, max bytes.
const PUT: &str = "
local id, json, bytes = ARGV[1], ARGV[2], tonumber(ARGV[3])
local ttl, capacity, max_bytes = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
for _, x in ipairs(redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now - ttl)) do drop(x) end
drop(id)
redis.call('HSET', KEYS[1], id, json)
redis.call('HSET', KEYS[4], id, bytes)
redis.call('INCRBY', KEYS[5], bytes)
redis.call('ZADD', KEYS[2], redis.call('INCR', KEYS[6]), id)
redis.call('ZADD', KEYS[3], now, id)
while redis.call('ZCARD', KEYS[2]) > capacity or tonumber(redis.call('GET', KEYS[5]) or '0') > max_bytes do
  local oldest = redis.call('ZRANGE', KEYS[2], 0, 0)
  if not oldest[1] then break end
  drop(oldest[1])
end
for i = 1, 6 do redis.call('PEXPIRE', KEYS[i], ttl) end
return 1
";

/// A response's JSON if it is kept and not expired, marked as used. KEYS as [`PUT`]. ARGV: id, ttl ms.
const GET: &str = "
local created = redis.call('ZSCORE', KEYS[3], ARGV[1])
if not created or tonumber(created) <= now - tonumber(ARGV[2]) then return false end
redis.call('ZADD', KEYS[2], redis.call('INCR', KEYS[6]), ARGV[1])
return redis.call('HGET', KEYS[1], ARGV[1])
";

/// Forgets a response; 1 if it was kept and not expired. KEYS as [`PUT`]. ARGV: id, ttl ms.
const DELETE: &str = "
local created = redis.call('ZSCORE', KEYS[3], ARGV[1])
if not created then return 0 end
drop(ARGV[1])
if tonumber(created) <= now - tonumber(ARGV[2]) then return 0 end
return 1
";

/// What Redis keeps of a response.
#[derive(Serialize, Deserialize)]
struct Record {
    response: ResponseObject,
    conversation: Vec<Value>,
}

/// The Redis keys of one owner's partition.
fn partition_keys(owner: Option<&str>) -> Vec<String> {
    let tag = match owner {
        // Hex: braces, colons or anything else in a key id cannot reach another partition's keys.
        Some(owner) => owner
            .bytes()
            .map(|b| format!("{b:02x}"))
            .collect::<String>(),
        None => "-".to_string(),
    };
    ["json", "use", "created", "sizes", "bytes", "tick"]
        .iter()
        .map(|part| format!("llmserve:responses:{{{tag}}}:{part}"))
        .collect()
}

/// The store in Redis, with the puts still on their way there.
pub struct RedisStore {
    limits: ResponsesStoreConfig,
    link: RedisLink,
    put_script: redis::Script,
    get_script: redis::Script,
    delete_script: redis::Script,
    /// Responses whose write to Redis has not landed yet, by owner and id.
    pending: Mutex<HashMap<(Option<String>, String), StoredResponse>>,
}

impl RedisStore {
    pub fn new(
        limits: ResponsesStoreConfig,
        settings: &RedisSettings,
    ) -> Result<Self, SharedLimitsError> {
        let script =
            |body: &str, helpers: &str| redis::Script::new(&format!("{NOW}{helpers}{body}"));
        Ok(RedisStore {
            limits,
            link: RedisLink::new(settings)?,
            put_script: script(PUT, DROP),
            get_script: script(GET, ""),
            delete_script: script(DELETE, DROP),
            pending: Mutex::new(HashMap::new()),
        })
    }

    fn ttl_ms(&self) -> String {
        self.limits.ttl.as_millis().max(1).to_string()
    }

    /// Keeps a response for its owner: at once in the pending set, in Redis as soon as it answers.
    pub fn put(self: &Arc<Self>, owner: Option<&str>, stored: StoredResponse) {
        if self.limits.capacity == 0 || stored.approximate_bytes() > self.limits.max_bytes {
            return;
        }
        let record = Record {
            response: (*stored.response).clone(),
            conversation: (*stored.conversation).clone(),
        };
        let Ok(json) = serde_json::to_string(&record) else {
            return;
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let owner = owner.map(str::to_string);
        let id = stored.response.id.clone();
        let slot = (owner.clone(), id.clone());
        self.pending
            .lock()
            .expect("pending lock")
            .insert(slot.clone(), stored);
        let store = self.clone();
        runtime.spawn(async move {
            let call = Call {
                script: &store.put_script,
                keys: partition_keys(owner.as_deref()),
                args: vec![
                    id.clone(),
                    json.clone(),
                    json.len().to_string(),
                    store.ttl_ms(),
                    store.limits.capacity.to_string(),
                    store.limits.max_bytes.to_string(),
                ],
            };
            if let Err(error) = store.link.run_value(call, STORE_DEADLINE).await {
                tracing::warn!(%error, response_id = %id, "could not store a response in Redis");
            }
            let deleted_meanwhile = store
                .pending
                .lock()
                .expect("pending lock")
                .remove(&slot)
                .is_none();
            if deleted_meanwhile {
                // Its delete ran before this write landed: the write must not bring it back.
                let _ = store.delete_in_redis(owner.as_deref(), &id).await;
            }
        });
    }

    /// The response `id`, if `owner` made it and it is still kept; an error when Redis does not answer.
    pub async fn get(
        &self,
        owner: Option<&str>,
        id: &str,
    ) -> Result<Option<StoredResponse>, ResponsesError> {
        let slot = (owner.map(str::to_string), id.to_string());
        if let Some(stored) = self.pending.lock().expect("pending lock").get(&slot) {
            return Ok(Some(stored.clone()));
        }
        let call = Call {
            script: &self.get_script,
            keys: partition_keys(owner),
            args: vec![id.to_string(), self.ttl_ms()],
        };
        let reply = self
            .link
            .run_value(call, STORE_DEADLINE)
            .await
            .map_err(|error| {
                tracing::warn!(%error, "the response store in Redis did not answer");
                ResponsesError::StoreUnavailable
            })?;
        let json = match reply {
            redis::Value::BulkString(bytes) => bytes,
            _ => return Ok(None),
        };
        let record: Record = serde_json::from_slice(&json).map_err(|error| {
            tracing::error!(%error, response_id = id, "a stored response in Redis does not parse");
            ResponsesError::StoreUnavailable
        })?;
        Ok(Some(StoredResponse {
            response: Arc::new(record.response),
            conversation: Arc::new(record.conversation),
        }))
    }

    /// Forgets the response `id`; whether `owner` had one by that id.
    pub async fn delete(&self, owner: Option<&str>, id: &str) -> Result<bool, ResponsesError> {
        let slot = (owner.map(str::to_string), id.to_string());
        let was_pending = self
            .pending
            .lock()
            .expect("pending lock")
            .remove(&slot)
            .is_some();
        match self.delete_in_redis(owner, id).await {
            Ok(deleted) => Ok(was_pending || deleted),
            Err(_) if was_pending => Ok(true),
            Err(error) => {
                tracing::warn!(%error, "the response store in Redis did not answer");
                Err(ResponsesError::StoreUnavailable)
            }
        }
    }

    async fn delete_in_redis(
        &self,
        owner: Option<&str>,
        id: &str,
    ) -> Result<bool, crate::gateway::redis_link::RedisError> {
        let call = Call {
            script: &self.delete_script,
            keys: partition_keys(owner),
            args: vec![id.to_string(), self.ttl_ms()],
        };
        let reply = self.link.run_value(call, STORE_DEADLINE).await?;
        Ok(crate::gateway::redis_link::integers(&reply).first() == Some(&1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ResponsesBackend;
    use crate::responses::stored::tests::response;
    use std::process::{Child, Command, Stdio};
    use std::time::Instant;

    /// A redis-server of its own on a free loopback port (Debian's, installed by scripts/test-tools.sh).
    struct Redis(Child, u16);

    impl Drop for Redis {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    fn redis() -> Redis {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server (scripts/test-tools.sh installs it)");
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "redis-server did not listen"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Redis(child, port)
    }

    fn store(redis: &Redis, capacity: usize, max_bytes: usize, ttl: Duration) -> Arc<RedisStore> {
        let limits = ResponsesStoreConfig {
            capacity,
            max_bytes,
            ttl,
            backend: ResponsesBackend::Redis,
        };
        let settings =
            RedisSettings::from_flags(&format!("redis://127.0.0.1:{}", redis.1), None).unwrap();
        Arc::new(RedisStore::new(limits, &settings).unwrap())
    }

    /// Puts land in the background: waits until this store has none on its way.
    async fn landed(store: &RedisStore) {
        let started = Instant::now();
        while !store.pending.lock().unwrap().is_empty() {
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "a put never landed"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    async fn put(store: &Arc<RedisStore>, owner: Option<&str>, id: &str, bytes: usize) {
        store.put(owner, response(id, bytes));
        landed(store).await;
    }

    async fn has(store: &RedisStore, owner: Option<&str>, id: &str) -> bool {
        store.get(owner, id).await.unwrap().is_some()
    }

    #[tokio::test]
    async fn another_replica_reads_what_one_stored_and_owners_see_only_their_own() {
        let redis = redis();
        let (a, b) = (
            store(&redis, 2, 1 << 20, Duration::from_secs(60)),
            store(&redis, 2, 1 << 20, Duration::from_secs(60)),
        );
        put(&a, None, "a", 1).await;
        put(&a, None, "b", 1).await;
        let read = b
            .get(None, "a")
            .await
            .unwrap()
            .expect("b reads a's response");
        assert_eq!(
            serde_json::to_value(&*read.response).unwrap(),
            serde_json::to_value(&*response("a", 1).response).unwrap()
        );
        assert_eq!(read.conversation, response("a", 1).conversation);
        // `a` was just used through b: `b` is the least recently used when `c` arrives.
        put(&b, None, "c", 1).await;
        assert!(!has(&a, None, "b").await, "b was the least recently used");
        assert!(has(&a, None, "a").await && has(&a, None, "c").await);

        put(&a, Some("k1"), "d", 1).await;
        assert!(!has(&b, Some("k2"), "d").await);
        assert!(!b.delete(Some("k2"), "d").await.unwrap());
        // A key id shaped like another partition's tag reaches nothing of it.
        assert!(!has(&b, Some("}k1{"), "d").await);
        // Ids as an attacker sends them (percent-encoded, path-like, a hash tag, very long) are plain
        // names: nothing found, no error, nothing of another's reached.
        for id in ["d}", "{k1}:json", "%64", "../d", &"d".repeat(4096)] {
            assert!(!has(&b, Some("k1"), id).await, "{id}");
            assert!(!b.delete(Some("k1"), id).await.unwrap(), "{id}");
        }
        assert!(has(&b, Some("k1"), "d").await);
        assert!(has(&b, Some("k1"), "d").await);
        assert!(b.delete(Some("k1"), "d").await.unwrap());
        assert!(!has(&a, Some("k1"), "d").await);
    }

    #[tokio::test]
    async fn a_flood_evicts_its_own_and_bytes_and_age_bound_the_store() {
        let redis = redis();
        let flooded = store(&redis, 3, 4_000, Duration::from_secs(60));
        put(&flooded, Some("victim"), "v1", 1).await;
        for i in 0..20 {
            put(&flooded, Some("flood"), &format!("f{i}"), 1).await;
        }
        assert!(has(&flooded, Some("victim"), "v1").await);
        assert!(has(&flooded, Some("flood"), "f19").await);
        assert!(
            !has(&flooded, Some("flood"), "f16").await,
            "the flood evicts its own"
        );

        put(&flooded, None, "a", 1_500).await;
        put(&flooded, None, "b", 1_500).await;
        put(&flooded, None, "c", 1_500).await;
        assert!(
            !has(&flooded, None, "a").await,
            "over the byte bound, a went"
        );
        assert!(has(&flooded, None, "b").await && has(&flooded, None, "c").await);
        put(&flooded, None, "huge", 10_000).await;
        assert!(
            !has(&flooded, None, "huge").await,
            "larger than the bound: not kept"
        );
        assert!(has(&flooded, None, "c").await, "and nothing evicted for it");

        let brief = store(&redis, 100, 1 << 20, Duration::from_millis(50));
        put(&brief, None, "a", 1).await;
        tokio::time::sleep(Duration::from_millis(120)).await;
        assert!(!has(&brief, None, "a").await, "expired");
    }

    #[tokio::test]
    async fn without_redis_reads_are_unavailable_not_missing() {
        let gone = {
            let redis = redis();
            store(&redis, 10, 1 << 20, Duration::from_secs(60))
        };
        assert_eq!(
            gone.get(None, "resp_x").await.unwrap_err(),
            ResponsesError::StoreUnavailable
        );
        assert_eq!(
            gone.delete(None, "resp_x").await.unwrap_err(),
            ResponsesError::StoreUnavailable
        );
        // What this replica stored is still its own to read while Redis is away.
        gone.put(None, response("mine", 1));
        assert!(gone.get(None, "mine").await.unwrap().is_some());
    }
}
