//! Where a key's limits are kept (this process, or Redis for every replica) and a request's hold on
//! them, [`KeyBudget`]: taken when the request is admitted, before its body is read (its request and its
//! concurrent slot), its tokens added once they are counted, settled when its response ends.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use super::quota::{QuotaError, Quotas, RateHeaders};
use super::redis_quota::{Hold, SharedQuotas};
use crate::config::keys::Limits;

/// Where the limits live: this process, or Redis (with this process as the fallback).
pub enum Limiter {
    Local(Quotas),
    Shared(Arc<SharedQuotas>),
}

impl Limiter {
    /// Admits a request of `key` under `limits` (requests per minute, concurrency), or says when to
    /// retry. A key without such limits holds nothing (and, with Redis, costs no round trip).
    pub async fn admit(&self, key: &str, limits: Limits) -> Result<KeyBudget, QuotaError> {
        if !limits.counts_requests() {
            return Ok(KeyBudget::unlimited());
        }
        let hold = match self {
            Limiter::Local(quotas) => Hold::Local(quotas.admit(key, limits)?),
            Limiter::Shared(shared) => shared.admit(key, limits).await?,
        };
        Ok(KeyBudget(Some(Arc::new(Budget {
            limits,
            hold: Mutex::new(Some(hold)),
        }))))
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

    /// With Redis: what each limit is divided by should Redis become unreachable (the live replicas it
    /// last counted).
    pub fn replicas(&self) -> Option<u32> {
        match self {
            Limiter::Local(_) => None,
            Limiter::Shared(shared) => Some(shared.replicas()),
        }
    }

    /// With Redis: leaves the live replicas (the server is stopping).
    pub async fn stop(&self) {
        if let Limiter::Shared(shared) = self {
            shared.leave().await;
        }
    }

    /// Starts what runs in the background (with Redis: this replica's heartbeat and lease renewals).
    pub fn start(&self) {
        if let Limiter::Shared(shared) = self {
            shared.start();
        }
    }
}

/// A request's hold on its key's budget; cheap to clone into the hook that settles it. Dropped
/// unsettled (a request that ended before its usage was known), its slot is freed and what it reserved
/// stands.
#[derive(Clone, Default)]
pub struct KeyBudget(Option<Arc<Budget>>);

struct Budget {
    limits: Limits,
    /// Taken out while a token hold is asked for, and when settled.
    hold: Mutex<Option<Hold>>,
}

impl KeyBudget {
    /// No budget: a server without keys, a key without limits, a route that counts nothing.
    pub fn unlimited() -> Self {
        KeyBudget(None)
    }

    /// The key's token limit, when it has one.
    pub fn token_limit(&self) -> Option<u64> {
        self.0.as_ref().and_then(|b| b.limits.tpm)
    }

    /// Holds `prompt + completion` tokens for the request (the completion already fitted to the
    /// limit); the `x-ratelimit-*` headers of what is left.
    pub async fn reserve_tokens(
        &self,
        prompt: u64,
        completion: u64,
    ) -> Result<RateHeaders, QuotaError> {
        let Some(budget) = &self.0 else {
            return Ok(RateHeaders::default());
        };
        if let Some(limit) = budget.limits.tpm.filter(|limit| prompt > *limit) {
            return Err(QuotaError::TooLarge { limit, prompt });
        }
        let taken = budget.hold.lock().expect("budget lock").take();
        let Some(mut hold) = taken else {
            return Ok(RateHeaders::default());
        };
        let outcome = hold.reserve_tokens(prompt, prompt + completion).await;
        let headers = hold.headers();
        *budget.hold.lock().expect("budget lock") = Some(hold);
        outcome.map(|()| headers)
    }

    /// The headers as they stand (after admission: the requests budget).
    pub fn headers(&self) -> RateHeaders {
        self.0
            .as_ref()
            .and_then(|b| {
                b.hold
                    .lock()
                    .expect("budget lock")
                    .as_ref()
                    .map(Hold::headers)
            })
            .unwrap_or_default()
    }

    /// The response has ended: charge what it used (`None`: what was reserved stands) and free the slot.
    pub fn settle(&self, used: Option<u64>) {
        if let Some(budget) = &self.0 {
            if let Some(hold) = budget.hold.lock().expect("budget lock").take() {
                hold.settle(used);
            }
        }
    }
}

/// A request's settlement with its key: what it used, charged once, when its answer ends. The generation
/// stream settles it as its last step (the totals, or on a failure what was used so far); a stream
/// dropped before its end (the client went away) settles it here, with the tokens generated until then.
/// A request that never got a slot is charged no tokens.
pub struct Settlement {
    budget: KeyBudget,
    prompt_tokens: u64,
    completion_tokens: u64,
    admitted: AdmittedMark,
    settled: bool,
}

/// Marks a settlement's request admitted from where its slot is taken: that may be inside a future the
/// stream awaits later, while the settlement itself travels with the stream.
#[derive(Clone, Default)]
pub struct AdmittedMark(Arc<AtomicBool>);

impl AdmittedMark {
    /// The request holds a slot: from now on it is charged what it uses.
    pub fn set(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    fn is_set(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

impl Settlement {
    /// The settlement of `budget` for a request of `prompt_tokens` (as counted before generation).
    pub fn new(budget: KeyBudget, prompt_tokens: usize) -> Self {
        Settlement {
            budget,
            prompt_tokens: prompt_tokens as u64,
            completion_tokens: 0,
            admitted: AdmittedMark::default(),
            settled: false,
        }
    }

    /// The request holds a slot: from now on it is charged what it uses.
    pub fn admitted(&mut self) {
        self.admitted.set();
    }

    /// The mark that says the request got its slot, for the code that takes it.
    pub fn admitted_mark(&self) -> AdmittedMark {
        self.admitted.clone()
    }

    /// Tokens generated (and sent) so far.
    pub fn generated(&mut self, tokens: usize) {
        self.completion_tokens += tokens as u64;
    }

    /// The answer is complete: charge its totals (the engine's counts where it reported them).
    pub fn complete(&mut self, prompt_tokens: usize, completion_tokens: usize) {
        self.prompt_tokens = prompt_tokens as u64;
        self.completion_tokens = completion_tokens as u64;
        self.settle();
    }

    /// Charges what was used (nothing, if the request never got a slot) and frees the key's slot; once.
    pub fn settle(&mut self) {
        if std::mem::replace(&mut self.settled, true) {
            return;
        }
        let used = if self.admitted.is_set() {
            self.prompt_tokens + self.completion_tokens
        } else {
            0
        };
        self.budget.settle(Some(used));
    }
}

impl Drop for Settlement {
    fn drop(&mut self) {
        self.settle();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "k";

    fn limits() -> Limits {
        Limits {
            tpm: Some(1_000),
            max_concurrent: Some(4),
            ..Limits::default()
        }
    }

    /// Tokens the key has left in its minute, read from a fresh request's headers.
    async fn tokens_left(limiter: &Limiter) -> u64 {
        let probe = limiter.admit(KEY, limits()).await.unwrap();
        let headers = probe.reserve_tokens(0, 0).await.unwrap();
        probe.settle(Some(0));
        headers.tokens.expect("a token limit").1
    }

    fn running(limiter: &Limiter) -> u32 {
        match limiter {
            Limiter::Local(quotas) => quotas.running(KEY),
            Limiter::Shared(_) => unreachable!("a local limiter"),
        }
    }

    /// A request is charged once, when its answer ends: the totals when it completes, the prompt and the
    /// tokens sent so far when its stream is dropped, nothing when it never got a slot; its concurrent
    /// slot is freed in every case.
    #[tokio::test]
    async fn a_settlement_charges_what_was_used_once() {
        let limiter = Limiter::Local(Quotas::default());

        let budget = limiter.admit(KEY, limits()).await.unwrap();
        budget.reserve_tokens(10, 100).await.unwrap();
        let mut completed = Settlement::new(budget, 10);
        completed.admitted();
        completed.generated(3);
        completed.complete(12, 7);
        drop(completed);
        assert_eq!(tokens_left(&limiter).await, 1_000 - 19);

        let budget = limiter.admit(KEY, limits()).await.unwrap();
        budget.reserve_tokens(10, 100).await.unwrap();
        let mut abandoned = Settlement::new(budget, 10);
        abandoned.admitted();
        abandoned.generated(5);
        assert_eq!(running(&limiter), 1, "held until the answer ends");
        drop(abandoned);
        assert_eq!(running(&limiter), 0);
        assert_eq!(tokens_left(&limiter).await, 1_000 - 19 - 15);

        let budget = limiter.admit(KEY, limits()).await.unwrap();
        budget.reserve_tokens(10, 100).await.unwrap();
        drop(Settlement::new(budget, 10));
        assert_eq!(running(&limiter), 0);
        assert_eq!(
            tokens_left(&limiter).await,
            1_000 - 19 - 15,
            "never admitted: free"
        );
    }
}
