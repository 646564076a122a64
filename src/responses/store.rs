//! Stored responses, for `GET /v1/responses/{id}` and `previous_response_id`: bounded by count, bytes and
//! age; the least recently used go first. Each API key has its own partition within those bounds: a
//! response is visible only to the key that made it, and no key's responses can push out another key's
//! (the worst case is the byte bound times the keys that store responses).
//!
//! [`ResponseStore`] is where they live (`--responses-store`): [`MemoryStore`] in this process (a
//! restart or another replica forgets them), or [`super::redis_store::RedisStore`] in the Redis that
//! holds the limits, so that a continuation works on whichever replica a balancer picks.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use super::redis_store::RedisStore;
pub use super::stored::StoredResponse;
use super::ResponsesError;
use crate::config::{ResponsesBackend, ResponsesStoreConfig};
use crate::gateway::redis_link::{RedisSettings, SharedLimitsError};

#[derive(Debug)]
struct Entry {
    stored: StoredResponse,
    stored_at: Instant,
    /// Its place in the use order (`Partition::by_use`).
    used: u64,
    bytes: usize,
}

/// One owner's responses, bounded on their own: an owner's puts evict only its own responses.
#[derive(Debug, Default)]
struct Partition {
    entries: HashMap<String, Entry>,
    /// Use tick → id, oldest first.
    by_use: BTreeMap<u64, String>,
    tick: u64,
    bytes: usize,
}

impl Partition {
    fn remove(&mut self, id: &str) -> Option<Entry> {
        let entry = self.entries.remove(id)?;
        self.by_use.remove(&entry.used);
        self.bytes -= entry.bytes;
        Some(entry)
    }

    fn touch(&mut self, id: &str) {
        self.tick += 1;
        let tick = self.tick;
        if let Some(entry) = self.entries.get_mut(id) {
            self.by_use.remove(&entry.used);
            entry.used = tick;
            self.by_use.insert(tick, id.to_string());
        }
    }
}

/// Where stored responses live.
pub enum ResponseStore {
    Memory(MemoryStore),
    Redis(Arc<RedisStore>),
}

impl ResponseStore {
    /// The store `--responses-store` names; `redis`: the `--limits-redis` server.
    pub fn new(
        limits: ResponsesStoreConfig,
        redis: Option<&RedisSettings>,
    ) -> Result<Self, SharedLimitsError> {
        Ok(match (limits.backend, redis) {
            (ResponsesBackend::Redis, Some(settings)) => {
                ResponseStore::Redis(Arc::new(RedisStore::new(limits, settings)?))
            }
            // Config refuses `redis` without --limits-redis.
            _ => ResponseStore::Memory(MemoryStore::new(limits)),
        })
    }

    /// Keeps a response for its owner. In Redis the write goes on in the background (a stream's last
    /// event is not held for it); until it lands this replica answers for it itself.
    pub fn put(&self, owner: Option<&str>, stored: StoredResponse) {
        match self {
            ResponseStore::Memory(store) => store.put(owner, stored),
            ResponseStore::Redis(store) => store.put(owner, stored),
        }
    }

    /// The response `id`, if `owner` made it and it is still kept.
    pub async fn get(
        &self,
        owner: Option<&str>,
        id: &str,
    ) -> Result<Option<StoredResponse>, ResponsesError> {
        match self {
            ResponseStore::Memory(store) => Ok(store.get(owner, id)),
            ResponseStore::Redis(store) => store.get(owner, id).await,
        }
    }

    /// Forgets the response `id`; whether `owner` had one by that id.
    pub async fn delete(&self, owner: Option<&str>, id: &str) -> Result<bool, ResponsesError> {
        match self {
            ResponseStore::Memory(store) => Ok(store.delete(owner, id)),
            ResponseStore::Redis(store) => store.delete(owner, id).await,
        }
    }
}

/// The bounded store in this process: a partition per owner (the API key id that made a response;
/// `None` on a server without keys), each within the configured bounds.
#[derive(Debug)]
pub struct MemoryStore {
    limits: ResponsesStoreConfig,
    partitions: Mutex<HashMap<Option<String>, Partition>>,
}

impl MemoryStore {
    pub fn new(limits: ResponsesStoreConfig) -> Self {
        MemoryStore {
            limits,
            partitions: Mutex::new(HashMap::new()),
        }
    }

    /// Keeps a response for its owner; the owner's least recently used go while its partition is over
    /// its bounds. One larger than the whole byte bound is not kept.
    pub fn put(&self, owner: Option<&str>, stored: StoredResponse) {
        let bytes = stored.approximate_bytes();
        if self.limits.capacity == 0 || bytes > self.limits.max_bytes {
            return;
        }
        let mut partitions = self.partitions.lock().expect("store lock");
        let partition = partitions.entry(owner.map(str::to_string)).or_default();
        let id = stored.response.id.clone();
        partition.remove(&id);
        partition.tick += 1;
        let used = partition.tick;
        partition.by_use.insert(used, id.clone());
        partition.bytes += bytes;
        partition.entries.insert(
            id,
            Entry {
                stored,
                stored_at: Instant::now(),
                used,
                bytes,
            },
        );
        while partition.entries.len() > self.limits.capacity
            || partition.bytes > self.limits.max_bytes
        {
            let Some((_, oldest)) = partition.by_use.pop_first() else {
                break;
            };
            partition.remove(&oldest);
        }
    }

    /// The response `id`, if `owner` made it and it has not expired.
    pub fn get(&self, owner: Option<&str>, id: &str) -> Option<StoredResponse> {
        let mut partitions = self.partitions.lock().expect("store lock");
        let partition = partitions.get_mut(&owner.map(str::to_string))?;
        let entry = partition.entries.get(id)?;
        if entry.stored_at.elapsed() > self.limits.ttl {
            partition.remove(id);
            return None;
        }
        let stored = entry.stored.clone();
        partition.touch(id);
        Some(stored)
    }

    /// Forgets the response `id`; whether `owner` had one by that id.
    pub fn delete(&self, owner: Option<&str>, id: &str) -> bool {
        let mut partitions = self.partitions.lock().expect("store lock");
        let Some(partition) = partitions.get_mut(&owner.map(str::to_string)) else {
            return false;
        };
        let visible = partition
            .entries
            .get(id)
            .is_some_and(|e| e.stored_at.elapsed() <= self.limits.ttl);
        if visible {
            partition.remove(id);
        }
        visible
    }

    pub fn len(&self) -> usize {
        let partitions = self.partitions.lock().expect("store lock");
        partitions.values().map(|p| p.entries.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::responses::stored::tests::response;
    use std::time::Duration;

    fn limits(capacity: usize, max_bytes: usize, ttl: Duration) -> ResponsesStoreConfig {
        ResponsesStoreConfig {
            capacity,
            max_bytes,
            ttl,
            backend: ResponsesBackend::Memory,
        }
    }

    #[test]
    fn least_recently_used_go_first_and_owners_see_only_their_own() {
        let store = MemoryStore::new(limits(2, 1 << 20, Duration::from_secs(60)));
        store.put(None, response("a", 1));
        store.put(None, response("b", 1));
        assert!(store.get(None, "a").is_some(), "a is now the most recent");
        store.put(None, response("c", 1));
        assert!(
            store.get(None, "b").is_none(),
            "b was the least recently used"
        );
        assert!(store.get(None, "a").is_some() && store.get(None, "c").is_some());

        store.put(Some("k1"), response("d", 1));
        assert!(store.get(Some("k2"), "d").is_none());
        assert!(!store.delete(Some("k2"), "d"));
        assert!(store.get(Some("k1"), "d").is_some());
        assert!(store.delete(Some("k1"), "d"));
        assert!(store.get(Some("k1"), "d").is_none());
        assert!(store.len() <= 2);
    }

    #[test]
    fn one_key_filling_its_store_never_evicts_another_keys() {
        let store = MemoryStore::new(limits(3, 1 << 20, Duration::from_secs(60)));
        store.put(Some("victim"), response("v1", 1));
        for i in 0..100 {
            store.put(Some("flood"), response(&format!("f{i}"), 1));
        }
        assert!(store.get(Some("victim"), "v1").is_some());
        assert!(store.get(Some("flood"), "f99").is_some());
        assert!(
            store.get(Some("flood"), "f96").is_none(),
            "the flood evicts its own"
        );
        assert_eq!(store.len(), 4);
    }

    #[test]
    fn bytes_and_age_bound_the_store() {
        let store = MemoryStore::new(limits(100, 4_000, Duration::from_secs(60)));
        store.put(None, response("a", 1_500));
        store.put(None, response("b", 1_500));
        store.put(None, response("c", 1_500));
        assert!(
            store.get(None, "a").is_none(),
            "over the byte bound, a went"
        );
        assert_eq!(store.len(), 2);
        store.put(None, response("huge", 10_000));
        assert!(
            store.get(None, "huge").is_none(),
            "larger than the bound: not kept"
        );
        assert_eq!(store.len(), 2, "and nothing else evicted for it");

        let store = MemoryStore::new(limits(100, 1 << 20, Duration::ZERO));
        store.put(None, response("a", 1));
        std::thread::sleep(Duration::from_millis(2));
        assert!(store.get(None, "a").is_none(), "expired");
        assert!(store.is_empty());
    }
}
