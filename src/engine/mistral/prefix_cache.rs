//! The prefix cache's byte budget (`--prefix-cache-mib`), set once at start-up: without paged attention
//! the engine keeps whole KV copies of finished sequences (engine patch 0014), and an agent's history of
//! a few thousand tokens makes each entry large, so the entry count alone does not bound its memory.

/// Puts the budget in force for every model of the process.
pub fn limit_bytes(bytes: usize) {
    mistralrs::core::PREFIX_CACHE_MAX_BYTES.store(bytes, std::sync::atomic::Ordering::Relaxed);
}
