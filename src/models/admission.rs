//! Admission control: at most `max_running` sequences in the engine, at most `max_waiting` requests queued
//! for a slot, refusals at admission only (429 / 503 with `Retry-After`), and the drain on shutdown.
//!
//! mistral.rs 0.8.1 queues without bound and exposes no queue length, so the queue is ours: the engine only
//! ever sees as many sequences as it runs at once. The permit lives inside the response (stream), so a
//! finished or abandoned request frees its slot.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;

use crate::engine::EngineHold;
use futures::FutureExt;
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};

/// Seconds a refused client is told to wait before retrying.
pub const RETRY_AFTER_SECS: u64 = 1;

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum AdmissionError {
    #[error("The server is overloaded: {waiting} requests are already waiting; retry shortly")]
    Overloaded { waiting: usize },
    #[error(
        "The request waited {waited_secs} s for a free slot without getting one; retry shortly"
    )]
    QueueTimeout { waited_secs: u64 },
    #[error("The server is shutting down and takes no new requests; retry on another instance")]
    Draining,
    #[error("The server shut down before the request finished")]
    ShutDown,
}

#[derive(Debug, Clone, Copy)]
pub struct AdmissionLimits {
    /// Sequences generating at once (the engine's `max_num_seqs`).
    pub max_running: usize,
    /// Requests waiting for a slot; beyond it, 429.
    pub max_waiting: usize,
    /// How long a request may wait for a slot; then 503.
    pub queue_timeout: Option<Duration>,
}

#[derive(Debug)]
struct Shared {
    limits: AdmissionLimits,
    slots: Arc<Semaphore>,
    running: AtomicUsize,
    waiting: AtomicUsize,
    draining: AtomicBool,
    /// Flipped to true to end every admitted request now (second signal, drain timeout).
    abort: watch::Sender<bool>,
}

/// The admission gate of one model.
#[derive(Debug, Clone)]
pub struct Admission {
    shared: Arc<Shared>,
}

/// A request's right to run: its sequences' slots, released on drop, or, while the engine still holds
/// one of its sequences, as soon as it lets go.
pub struct AdmissionPermit {
    slots: Option<OwnedSemaphorePermit>,
    shared: Arc<Shared>,
    abort: watch::Receiver<bool>,
    engine_holds: Vec<EngineHold>,
}

impl std::fmt::Debug for AdmissionPermit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdmissionPermit")
            .field("engine_holds", &self.engine_holds.len())
            .finish_non_exhaustive()
    }
}

/// How often a released request checks whether the engine has freed its sequences.
const ENGINE_RELEASE_POLL: Duration = Duration::from_millis(10);
/// The longest a slot waits for the engine; past it the slot is freed anyway (and a warning logged), so
/// an engine that never lets go cannot leak slots.
const ENGINE_RELEASE_LIMIT: Duration = Duration::from_secs(120);

impl Drop for AdmissionPermit {
    fn drop(&mut self) {
        let holds = std::mem::take(&mut self.engine_holds);
        let slots = self.slots.take();
        let shared = Arc::clone(&self.shared);
        let release = move || {
            drop(slots);
            shared.running.fetch_sub(1, Ordering::SeqCst);
        };
        if !holds.iter().any(|held| held()) {
            return release();
        }
        // mistral.rs notices a dropped receiver only at that sequence's next step. Until then the sequence
        // occupies the engine, so the slot stays taken: the engine never holds more than --max-num-seqs
        // sequences, and waiting requests queue here (bounded, with keep-alives) instead of piling up
        // behind cancelled sequences inside the engine.
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(async move {
                    let started = tokio::time::Instant::now();
                    while holds.iter().any(|held| held()) {
                        if started.elapsed() > ENGINE_RELEASE_LIMIT {
                            tracing::warn!(
                                "the engine did not free a cancelled sequence: slot released"
                            );
                            break;
                        }
                        tokio::time::sleep(ENGINE_RELEASE_POLL).await;
                    }
                    release();
                });
            }
            Err(_) => release(),
        }
    }
}

impl AdmissionPermit {
    /// Keeps the slot taken until the engine has freed this sequence too.
    pub fn also_hold(&mut self, held: EngineHold) {
        self.engine_holds.push(held);
    }

    /// Resolves when the server ends every request (it never resolves otherwise).
    pub async fn aborted(&mut self) {
        if self.abort.wait_for(|aborted| *aborted).await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// The outcome of [`Admission::admit_or_defer`].
pub enum Admitted {
    Now(AdmissionPermit),
    /// Still queued: the wait goes on in this future (dropping it leaves the queue).
    Queued(BoxFuture<'static, Result<AdmissionPermit, AdmissionError>>),
}

struct WaitingGuard<'a>(&'a AtomicUsize);

impl Drop for WaitingGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Admission {
    pub fn new(limits: AdmissionLimits) -> Self {
        let limits = AdmissionLimits {
            max_running: limits.max_running.max(1),
            ..limits
        };
        Admission {
            shared: Arc::new(Shared {
                slots: Arc::new(Semaphore::new(limits.max_running)),
                limits,
                running: AtomicUsize::new(0),
                waiting: AtomicUsize::new(0),
                draining: AtomicBool::new(false),
                abort: watch::channel(false).0,
            }),
        }
    }

    /// The refusal `admit` would give right now without waiting, if any: lets a caller skip work for a
    /// request that cannot get in. `admit` decides again (the state may change in between).
    pub fn refuse_early(&self) -> Result<(), AdmissionError> {
        if self.is_draining() {
            return Err(AdmissionError::Draining);
        }
        if self.queue_full() {
            return Err(AdmissionError::Overloaded {
                waiting: self.requests_waiting(),
            });
        }
        Ok(())
    }

    /// Waits (bounded) for slots for `sequences` sequences; refuses at once when the queue is full.
    pub async fn admit(&self, sequences: usize) -> Result<AdmissionPermit, AdmissionError> {
        let shared = &self.shared;
        if shared.draining.load(Ordering::SeqCst) {
            return Err(AdmissionError::Draining);
        }
        // A request never needs more slots than exist (a long prompt list runs in turns within its slots).
        let wanted = sequences.clamp(1, shared.limits.max_running) as u32;
        let slots = match Arc::clone(&shared.slots).try_acquire_many_owned(wanted) {
            Ok(slots) => slots,
            Err(_) => {
                let already = shared.waiting.fetch_add(1, Ordering::SeqCst);
                let _waiting = WaitingGuard(&shared.waiting);
                if already >= shared.limits.max_waiting {
                    return Err(AdmissionError::Overloaded { waiting: already });
                }
                let acquire = Arc::clone(&shared.slots).acquire_many_owned(wanted);
                let acquired = match shared.limits.queue_timeout {
                    Some(limit) => tokio::time::timeout(limit, acquire).await.map_err(|_| {
                        AdmissionError::QueueTimeout {
                            waited_secs: limit.as_secs(),
                        }
                    })?,
                    None => acquire.await,
                };
                // The semaphore closes only when the server starts draining.
                acquired.map_err(|_| AdmissionError::Draining)?
            }
        };
        if shared.draining.load(Ordering::SeqCst) {
            return Err(AdmissionError::Draining);
        }
        shared.running.fetch_add(1, Ordering::SeqCst);
        Ok(AdmissionPermit {
            slots: Some(slots),
            shared: Arc::clone(shared),
            abort: shared.abort.subscribe(),
            engine_holds: Vec::new(),
        })
    }

    /// Like [`Admission::admit`], but a request still queued after `within` is handed back as the rest of
    /// its wait (its place in the queue kept), so that its caller can answer while it waits.
    pub async fn admit_or_defer(
        &self,
        sequences: usize,
        within: Duration,
    ) -> Result<Admitted, AdmissionError> {
        let admission = self.clone();
        let mut waiting = async move { admission.admit(sequences).await }.boxed();
        match tokio::time::timeout(within, &mut waiting).await {
            Ok(admitted) => admitted.map(Admitted::Now),
            Err(_) => Ok(Admitted::Queued(waiting)),
        }
    }

    /// Requests admitted and not yet finished.
    pub fn requests_running(&self) -> usize {
        self.shared.running.load(Ordering::SeqCst)
    }

    /// Requests waiting for a slot.
    pub fn requests_waiting(&self) -> usize {
        self.shared.waiting.load(Ordering::SeqCst)
    }

    /// True when the next request that has to wait would be refused.
    pub fn queue_full(&self) -> bool {
        self.requests_waiting() >= self.shared.limits.max_waiting
            && self.shared.slots.available_permits() == 0
    }

    /// Stops admitting: every new request, and every queued one, gets 503 from now on.
    pub fn start_draining(&self) {
        self.shared.draining.store(true, Ordering::SeqCst);
        // Wakes the queued requests with an error; admitted permits are released as usual.
        self.shared.slots.close();
    }

    pub fn is_draining(&self) -> bool {
        self.shared.draining.load(Ordering::SeqCst)
    }

    /// Ends every admitted request now: streams send an error event and `[DONE]`.
    pub fn abort_all(&self) {
        self.shared.abort.send_replace(true);
    }

    /// Resolves once nothing runs or waits.
    pub async fn idle(&self) {
        while self.requests_running() > 0 || self.requests_waiting() > 0 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admission(
        max_running: usize,
        max_waiting: usize,
        queue_timeout: Option<Duration>,
    ) -> Admission {
        Admission::new(AdmissionLimits {
            max_running,
            max_waiting,
            queue_timeout,
        })
    }

    #[tokio::test]
    async fn permits_count_until_dropped() {
        let gate = admission(2, 0, None);
        let a = gate.admit(1).await.unwrap();
        let b = gate.admit(1).await.unwrap();
        assert_eq!(gate.requests_running(), 2);
        drop(a);
        assert_eq!(gate.requests_running(), 1);
        drop(b);
        assert_eq!(gate.requests_running(), 0);
    }

    #[tokio::test]
    async fn a_full_queue_refuses_at_once() {
        let gate = admission(1, 1, None);
        let _running = gate.admit(1).await.unwrap();
        let queued = tokio::spawn({
            let gate = gate.clone();
            async move { gate.admit(1).await.map(|_| ()) }
        });
        while gate.requests_waiting() == 0 {
            tokio::task::yield_now().await;
        }
        assert!(gate.queue_full());
        assert_eq!(
            gate.refuse_early().unwrap_err(),
            AdmissionError::Overloaded { waiting: 1 }
        );
        assert_eq!(
            gate.admit(1).await.unwrap_err(),
            AdmissionError::Overloaded { waiting: 1 }
        );
        drop(_running);
        queued.await.unwrap().unwrap();
        assert_eq!(gate.requests_waiting(), 0);
    }

    #[tokio::test]
    async fn a_queue_wait_is_bounded() {
        let gate = admission(1, 8, Some(Duration::from_secs(1)));
        let _running = gate.admit(1).await.unwrap();
        assert_eq!(
            gate.admit(1).await.unwrap_err(),
            AdmissionError::QueueTimeout { waited_secs: 1 }
        );
        assert_eq!(gate.requests_waiting(), 0);
    }

    #[tokio::test]
    async fn a_deferred_request_keeps_its_place_and_refusals_stay_immediate() {
        let gate = admission(1, 1, None);
        let running = gate.admit(1).await.unwrap();
        let queued = match gate.admit_or_defer(1, Duration::from_millis(20)).await {
            Ok(Admitted::Queued(waiting)) => waiting,
            _ => panic!("the request should still be queued"),
        };
        assert_eq!(gate.requests_waiting(), 1);
        // The queue is full: the next request is refused at once, not deferred.
        assert!(matches!(
            gate.admit_or_defer(1, Duration::from_secs(5)).await,
            Err(AdmissionError::Overloaded { waiting: 1 })
        ));
        drop(running);
        let permit = queued.await.unwrap();
        assert_eq!((gate.requests_running(), gate.requests_waiting()), (1, 0));
        drop(permit);
        assert!(matches!(
            gate.admit_or_defer(1, Duration::from_millis(20)).await,
            Ok(Admitted::Now(_))
        ));
    }

    #[tokio::test]
    async fn a_slot_stays_taken_until_the_engine_frees_the_sequence() {
        let gate = admission(1, 1, None);
        let engine_holds = Arc::new(AtomicBool::new(true));
        let mut permit = gate.admit(1).await.unwrap();
        let held = Arc::clone(&engine_holds);
        permit.also_hold(Box::new(move || held.load(Ordering::SeqCst)));
        drop(permit);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(gate.requests_running(), 1);
        assert!(gate
            .admit_or_defer(1, Duration::from_millis(20))
            .await
            .is_ok_and(|admitted| matches!(admitted, Admitted::Queued(_))));
        engine_holds.store(false, Ordering::SeqCst);
        tokio::time::timeout(Duration::from_secs(1), gate.idle())
            .await
            .unwrap();
        assert!(matches!(
            gate.admit_or_defer(1, Duration::from_millis(20)).await,
            Ok(Admitted::Now(_))
        ));
    }

    #[tokio::test]
    async fn draining_refuses_new_requests_and_abort_reaches_permits() {
        let gate = admission(2, 2, None);
        let mut permit = gate.admit(1).await.unwrap();
        gate.start_draining();
        assert_eq!(gate.refuse_early().unwrap_err(), AdmissionError::Draining);
        assert_eq!(gate.admit(1).await.unwrap_err(), AdmissionError::Draining);
        gate.abort_all();
        tokio::time::timeout(Duration::from_secs(1), permit.aborted())
            .await
            .unwrap();
    }
}
