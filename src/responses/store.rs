//! Stored responses, for `GET /v1/responses/{id}` and `previous_response_id`: in memory, bounded by count,
//! bytes and age; the least recently used go first. Each is visible only to the API key that made it.
//!
//! In memory on purpose: a restart or another replica forgets them, as the README says; a client that
//! needs a conversation to outlive that sends its whole input (or `store: false` and does so always).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde_json::Value;

use crate::api::responses::ResponseObject;
use crate::config::ResponsesStoreConfig;

/// A stored response and the conversation it ends: the chat messages of its input (after any earlier
/// responses', without `instructions`) and its own output, which a continuing response starts from.
#[derive(Debug, Clone)]
pub struct StoredResponse {
    pub response: Arc<ResponseObject>,
    pub conversation: Arc<Vec<Value>>,
}

#[derive(Debug)]
struct Entry {
    stored: StoredResponse,
    /// The API key id that made it (`None` on a server without keys).
    owner: Option<String>,
    stored_at: Instant,
    /// Its place in the use order (`Inner::by_use`).
    used: u64,
    bytes: usize,
}

#[derive(Debug, Default)]
struct Inner {
    entries: HashMap<String, Entry>,
    /// Use tick → id, oldest first.
    by_use: BTreeMap<u64, String>,
    tick: u64,
    bytes: usize,
}

impl Inner {
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

/// The bounded store.
#[derive(Debug)]
pub struct ResponseStore {
    limits: ResponsesStoreConfig,
    inner: Mutex<Inner>,
}

impl ResponseStore {
    pub fn new(limits: ResponsesStoreConfig) -> Self {
        ResponseStore {
            limits,
            inner: Mutex::new(Inner::default()),
        }
    }

    /// Keeps a response for its owner; the least recently used go while the store is over its bounds.
    /// One larger than the whole byte bound is not kept.
    pub fn put(&self, owner: Option<&str>, stored: StoredResponse) {
        let bytes = approximate_bytes(&stored);
        if self.limits.capacity == 0 || bytes > self.limits.max_bytes {
            return;
        }
        let mut inner = self.inner.lock().expect("store lock");
        let id = stored.response.id.clone();
        inner.remove(&id);
        inner.tick += 1;
        let used = inner.tick;
        inner.by_use.insert(used, id.clone());
        inner.bytes += bytes;
        inner.entries.insert(
            id,
            Entry {
                stored,
                owner: owner.map(str::to_string),
                stored_at: Instant::now(),
                used,
                bytes,
            },
        );
        while inner.entries.len() > self.limits.capacity || inner.bytes > self.limits.max_bytes {
            let Some((_, oldest)) = inner.by_use.pop_first() else {
                break;
            };
            inner.remove(&oldest);
        }
    }

    /// The response `id`, if `owner` made it and it has not expired.
    pub fn get(&self, owner: Option<&str>, id: &str) -> Option<StoredResponse> {
        let mut inner = self.inner.lock().expect("store lock");
        let entry = inner.entries.get(id)?;
        if entry.stored_at.elapsed() > self.limits.ttl {
            inner.remove(id);
            return None;
        }
        if entry.owner.as_deref() != owner {
            return None;
        }
        let stored = entry.stored.clone();
        inner.touch(id);
        Some(stored)
    }

    /// Forgets the response `id`; whether `owner` had one by that id.
    pub fn delete(&self, owner: Option<&str>, id: &str) -> bool {
        let mut inner = self.inner.lock().expect("store lock");
        let visible = inner.entries.get(id).is_some_and(|e| {
            e.owner.as_deref() == owner && e.stored_at.elapsed() <= self.limits.ttl
        });
        if visible {
            inner.remove(id);
        }
        visible
    }

    pub fn len(&self) -> usize {
        self.inner.lock().expect("store lock").entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// What a stored response holds, as JSON text (images inline as data URLs dominate it).
fn approximate_bytes(stored: &StoredResponse) -> usize {
    let response = serde_json::to_string(&*stored.response).map_or(0, |s| s.len());
    let conversation: usize = stored
        .conversation
        .iter()
        .map(|m| serde_json::to_string(m).map_or(0, |s| s.len()))
        .sum();
    response + conversation
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::responses::ResponseStatus;
    use std::time::Duration;

    fn response(id: &str, text_bytes: usize) -> StoredResponse {
        let response = ResponseObject {
            id: id.to_string(),
            object: "response".into(),
            created_at: 0,
            status: ResponseStatus::Completed,
            error: None,
            incomplete_details: None,
            instructions: None,
            max_output_tokens: None,
            model: "m".into(),
            output: Vec::new(),
            parallel_tool_calls: true,
            previous_response_id: None,
            store: true,
            temperature: 1.0,
            top_p: 1.0,
            text: Value::Null,
            tool_choice: Value::Null,
            tools: Vec::new(),
            truncation: "disabled".into(),
            usage: None,
            user: None,
            metadata: Default::default(),
        };
        StoredResponse {
            response: Arc::new(response),
            conversation: Arc::new(vec![Value::String("x".repeat(text_bytes))]),
        }
    }

    fn limits(capacity: usize, max_bytes: usize, ttl: Duration) -> ResponsesStoreConfig {
        ResponsesStoreConfig {
            capacity,
            max_bytes,
            ttl,
        }
    }

    #[test]
    fn least_recently_used_go_first_and_owners_see_only_their_own() {
        let store = ResponseStore::new(limits(2, 1 << 20, Duration::from_secs(60)));
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
    fn bytes_and_age_bound_the_store() {
        let store = ResponseStore::new(limits(100, 4_000, Duration::from_secs(60)));
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

        let store = ResponseStore::new(limits(100, 1 << 20, Duration::ZERO));
        store.put(None, response("a", 1));
        std::thread::sleep(Duration::from_millis(2));
        assert!(store.get(None, "a").is_none(), "expired");
        assert!(store.is_empty());
    }
}
