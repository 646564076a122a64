//! Freed memory handed back to the OS once the server goes idle.
//!
//! glibc keeps what the engine frees (prefill activations, per-sequence KV caches, batch buffers) in its
//! arenas for reuse, so a server that served a burst stays at its high-water mark. Measured on the default
//! model: 636 MB after 60 requests at concurrency 4, 498 MB after one `malloc_trim(0)`. Trimming takes a
//! few milliseconds and contends with allocation, so it runs only when nothing runs or waits, and the
//! engine holds no sequence: mistral.rs keeps finished sequences (and their KV caches) of other length
//! buckets for up to ~10 s after their answers went out, so a trim when the last response ends released
//! nothing (measured: 952 MB for those 10 s after 100 mixed chat and completion requests).

use std::time::Duration;

/// How often the trimmer looks whether the server has gone idle.
const IDLE_CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// Returns free heap memory to the OS; reports whether the allocator released any.
pub fn trim() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        extern "C" {
            fn malloc_trim(pad: usize) -> std::ffi::c_int;
        }
        // SAFETY: glibc's malloc_trim only walks the allocator's own free lists; any thread may call it.
        unsafe { malloc_trim(0) != 0 }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}

/// Resident memory of this process in bytes (`/proc/self/statm`), for the load and unload log lines.
pub fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

/// Trims once after every burst of work: when the server goes from busy (as `busy` says: requests running
/// or waiting, or sequences the engine still holds) to idle.
pub fn spawn_idle_trimmer(busy: impl Fn() -> bool + Send + 'static) {
    tokio::spawn(async move {
        let mut worked_since_trim = false;
        loop {
            tokio::time::sleep(IDLE_CHECK_INTERVAL).await;
            let busy = busy();
            if busy {
                worked_since_trim = true;
            } else if std::mem::take(&mut worked_since_trim) {
                let released = tokio::task::spawn_blocking(trim).await.unwrap_or(false);
                tracing::debug!(released, "idle: returned freed memory to the OS");
            }
        }
    });
}
