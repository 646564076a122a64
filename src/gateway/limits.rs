//! In-flight generation accounting: a guard per request, held by the response (stream) until it ends.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

#[derive(Debug, Default, Clone)]
pub struct RequestTracker {
    running: Arc<AtomicUsize>,
}

impl RequestTracker {
    /// Counts a generation request until the returned guard is dropped (response done or client gone).
    pub fn begin(&self) -> InFlightGuard {
        self.running.fetch_add(1, Ordering::SeqCst);
        InFlightGuard {
            running: Arc::clone(&self.running),
        }
    }

    pub fn requests_running(&self) -> usize {
        self.running.load(Ordering::SeqCst)
    }
}

#[derive(Debug)]
pub struct InFlightGuard {
    running: Arc<AtomicUsize>,
}

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        self.running.fetch_sub(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guards_count_until_dropped() {
        let tracker = RequestTracker::default();
        let a = tracker.begin();
        let b = tracker.begin();
        assert_eq!(tracker.requests_running(), 2);
        drop(a);
        assert_eq!(tracker.requests_running(), 1);
        drop(b);
        assert_eq!(tracker.requests_running(), 0);
    }
}
