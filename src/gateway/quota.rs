//! Per-key limits, in process: requests per minute, tokens per minute (prompt and completion) and
//! concurrent requests, over a sliding 60-second window (each admission and each token amount is kept with
//! its time, so no edge of a fixed window lets 2× through).
//!
//! Admission is in two steps, so that a refusal costs nothing: the request and its concurrent slot are
//! taken before its body is read ([`Quotas::admit`]); its tokens (its prompt plus the `max_tokens` it may
//! still generate) once they are counted ([`Reservation::reserve_tokens`]). They are settled with the real
//! count when its response ends, whichever way it ends (finished,
//! streamed, cancelled by the client, failed): a client cannot overrun its budget by streaming or by
//! disconnecting, and a short answer gives back what it did not use.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::config::keys::Limits;

/// The window every limit counts over.
pub const WINDOW: Duration = Duration::from_secs(60);

/// Why a request is over its key's limits, with when a retry can succeed.
#[derive(Debug, Clone, thiserror::Error, PartialEq)]
pub enum QuotaError {
    #[error("Rate limit reached for requests: limit {limit} per minute; retry after {retry_after_secs} s")]
    Requests {
        limit: u32,
        retry_after_secs: u64,
        headers: RateHeaders,
    },
    #[error("Rate limit reached for tokens: limit {limit} per minute, {used} used, {requested} requested; retry after {retry_after_secs} s")]
    Tokens {
        limit: u64,
        used: u64,
        requested: u64,
        retry_after_secs: u64,
        headers: RateHeaders,
    },
    #[error("Too many concurrent requests: limit {limit}; retry when one has finished")]
    Concurrency { limit: u32, headers: RateHeaders },
    #[error("Request too large: its prompt alone is {prompt} tokens, over the limit of {limit} tokens per minute")]
    TooLarge { limit: u64, prompt: u64 },
}

impl QuotaError {
    pub fn retry_after_secs(&self) -> Option<u64> {
        match self {
            QuotaError::Requests {
                retry_after_secs, ..
            }
            | QuotaError::Tokens {
                retry_after_secs, ..
            } => Some(*retry_after_secs),
            QuotaError::Concurrency { .. } => Some(1),
            QuotaError::TooLarge { .. } => None,
        }
    }

    pub fn headers(&self) -> Option<&RateHeaders> {
        match self {
            QuotaError::Requests { headers, .. }
            | QuotaError::Tokens { headers, .. }
            | QuotaError::Concurrency { headers, .. } => Some(headers),
            QuotaError::TooLarge { .. } => None,
        }
    }
}

/// OpenAI's rate-limit headers: limit, remaining and time to reset, for requests and for tokens.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RateHeaders {
    pub requests: Option<(u32, u32, Duration)>,
    pub tokens: Option<(u64, u64, Duration)>,
}

impl RateHeaders {
    /// `(name, value)` pairs: `x-ratelimit-limit-requests`, `-remaining-requests`, `-reset-requests`, and
    /// the same three for tokens; resets as OpenAI writes durations (`1s`, `6m0s`, `20ms`).
    pub fn pairs(&self) -> Vec<(&'static str, String)> {
        let mut pairs = Vec::new();
        if let Some((limit, remaining, reset)) = self.requests {
            pairs.push(("x-ratelimit-limit-requests", limit.to_string()));
            pairs.push(("x-ratelimit-remaining-requests", remaining.to_string()));
            pairs.push(("x-ratelimit-reset-requests", duration(reset)));
        }
        if let Some((limit, remaining, reset)) = self.tokens {
            pairs.push(("x-ratelimit-limit-tokens", limit.to_string()));
            pairs.push(("x-ratelimit-remaining-tokens", remaining.to_string()));
            pairs.push(("x-ratelimit-reset-tokens", duration(reset)));
        }
        pairs
    }
}

/// `20ms`, `1s`, `1.5s`, `6m0s`: the way OpenAI's reset headers write durations.
pub fn duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let secs = d.as_secs_f64();
    if secs < 60.0 {
        let rounded = (secs * 10.0).round() / 10.0;
        return if rounded.fract() == 0.0 {
            format!("{}s", rounded as u64)
        } else {
            format!("{rounded}s")
        };
    }
    let whole = d.as_secs();
    format!("{}m{}s", whole / 60, whole % 60)
}

/// One key's window.
#[derive(Default)]
struct KeyWindow {
    /// When each request admitted in the window was.
    requests: VecDeque<Instant>,
    /// Token amounts in the window: `(when, reservation id, tokens)`; a settlement rewrites its entry.
    tokens: VecDeque<(Instant, u64, u64)>,
    /// The sum of `tokens`' amounts, kept as they change (a window can hold thousands of entries).
    tokens_total: u64,
    running: u32,
}

impl KeyWindow {
    fn prune(&mut self, now: Instant) {
        while self
            .requests
            .front()
            .is_some_and(|t| now.duration_since(*t) >= WINDOW)
        {
            self.requests.pop_front();
        }
        while self
            .tokens
            .front()
            .is_some_and(|(t, _, _)| now.duration_since(*t) >= WINDOW)
        {
            if let Some((_, _, n)) = self.tokens.pop_front() {
                self.tokens_total -= n;
            }
        }
    }

    fn tokens_used(&self) -> u64 {
        self.tokens_total
    }

    /// When `needed` more tokens fit under `limit`: as entries leave the window, oldest first.
    fn tokens_free_after(&self, now: Instant, limit: u64, needed: u64) -> Duration {
        let mut used = self.tokens_used();
        for (at, _, n) in &self.tokens {
            if used + needed <= limit {
                break;
            }
            used -= n;
            if used + needed <= limit {
                return (*at + WINDOW).saturating_duration_since(now);
            }
        }
        Duration::ZERO
    }

    fn headers(&self, now: Instant, limits: Limits) -> RateHeaders {
        let reset = |oldest: Option<Instant>| {
            oldest.map_or(Duration::ZERO, |t| {
                (t + WINDOW).saturating_duration_since(now)
            })
        };
        RateHeaders {
            requests: limits.rpm.map(|limit| {
                let used = self.requests.len() as u32;
                (
                    limit,
                    limit.saturating_sub(used),
                    reset(self.requests.front().copied()),
                )
            }),
            tokens: limits.tpm.map(|limit| {
                let used = self.tokens_used();
                (
                    limit,
                    limit.saturating_sub(used),
                    reset(self.tokens.front().map(|(t, _, _)| *t)),
                )
            }),
        }
    }
}

#[derive(Default)]
struct Inner {
    keys: Mutex<HashMap<String, KeyWindow>>,
    next_id: std::sync::atomic::AtomicU64,
}

/// Every key's window, in this process.
#[derive(Clone, Default)]
pub struct Quotas {
    inner: Arc<Inner>,
}

/// An admitted request's hold on its key's budget: its request and concurrent slot from admission, its
/// tokens once counted; settled (tokens rewritten to the real count, the concurrent slot freed) by
/// [`Reservation::settle`], or on drop with what was reserved.
pub struct Reservation {
    key: String,
    id: u64,
    quotas: Quotas,
    limits: Limits,
    /// The tokens held, once [`Reservation::reserve_tokens`] has run.
    tokens: Option<u64>,
    settled: bool,
    /// What the response's headers say.
    pub headers: RateHeaders,
}

impl Quotas {
    /// Admits a request of `key` under `limits`, before its body is read: its concurrent slot and its
    /// place in the requests-per-minute window, or when to retry. Its tokens are held later, once they
    /// are counted ([`Reservation::reserve_tokens`]).
    pub fn admit(&self, key: &str, limits: Limits) -> Result<Reservation, QuotaError> {
        self.admit_at(key, limits, Instant::now())
    }

    fn admit_at(&self, key: &str, limits: Limits, now: Instant) -> Result<Reservation, QuotaError> {
        let mut keys = self.inner.keys.lock().expect("quota lock");
        let window = keys.entry(key.to_string()).or_default();
        window.prune(now);
        if let Some(limit) = limits
            .max_concurrent
            .filter(|limit| window.running >= *limit)
        {
            return Err(QuotaError::Concurrency {
                limit,
                headers: window.headers(now, limits),
            });
        }
        if let Some(limit) = limits
            .rpm
            .filter(|limit| window.requests.len() as u32 >= *limit)
        {
            let oldest = *window.requests.front().expect("a full window has entries");
            let wait = (oldest + WINDOW).saturating_duration_since(now);
            return Err(QuotaError::Requests {
                limit,
                retry_after_secs: wait.as_secs_f64().ceil().max(1.0) as u64,
                headers: window.headers(now, limits),
            });
        }
        let id = self
            .inner
            .next_id
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        window.requests.push_back(now);
        window.running += 1;
        Ok(Reservation {
            key: key.to_string(),
            id,
            quotas: self.clone(),
            limits,
            tokens: None,
            settled: false,
            headers: window.headers(now, limits),
        })
    }

    /// Holds `tokens` (the prompt plus what the request may generate) for an admitted request. `prompt`
    /// alone over the token limit can never pass.
    fn reserve_tokens_at(
        &self,
        reservation: &mut Reservation,
        prompt: u64,
        tokens: u64,
        now: Instant,
    ) -> Result<(), QuotaError> {
        let limits = reservation.limits;
        if let Some(limit) = limits.tpm.filter(|limit| prompt > *limit) {
            return Err(QuotaError::TooLarge { limit, prompt });
        }
        // A request that could fit an empty window is charged at most the whole limit.
        let charged = limits.tpm.map_or(tokens, |limit| tokens.min(limit));
        let mut keys = self.inner.keys.lock().expect("quota lock");
        let window = keys.entry(reservation.key.clone()).or_default();
        window.prune(now);
        if let Some(limit) = limits.tpm {
            let used = window.tokens_used();
            if used + charged > limit {
                let wait = window.tokens_free_after(now, limit, charged);
                return Err(QuotaError::Tokens {
                    limit,
                    used,
                    requested: charged,
                    retry_after_secs: wait.as_secs_f64().ceil().max(1.0) as u64,
                    headers: window.headers(now, limits),
                });
            }
        }
        window.tokens.push_back((now, reservation.id, charged));
        window.tokens_total += charged;
        reservation.tokens = Some(charged);
        reservation.headers = window.headers(now, limits);
        Ok(())
    }

    fn settle(&self, key: &str, id: u64, used: Option<u64>) {
        let mut keys = self.inner.keys.lock().expect("quota lock");
        let Some(window) = keys.get_mut(key) else {
            return;
        };
        window.running = window.running.saturating_sub(1);
        if let Some(used) = used {
            // Newest last: a settlement is for a recent entry, searched from the back.
            if let Some(entry) = window.tokens.iter_mut().rev().find(|(_, i, _)| *i == id) {
                window.tokens_total = window.tokens_total - entry.2 + used;
                entry.2 = used;
            }
        }
    }

    /// Requests of `key` running now (holding a concurrent slot).
    pub fn running(&self, key: &str) -> u32 {
        let keys = self.inner.keys.lock().expect("quota lock");
        keys.get(key).map_or(0, |w| w.running)
    }
}

impl std::fmt::Debug for Reservation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reservation")
            .field("key", &self.key)
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl Reservation {
    /// Holds the request's tokens (see [`Quotas`]); the headers then say what is left of both budgets.
    pub fn reserve_tokens(&mut self, prompt: u64, tokens: u64) -> Result<(), QuotaError> {
        let quotas = self.quotas.clone();
        quotas.reserve_tokens_at(self, prompt, tokens, Instant::now())
    }

    /// The response has ended: the key is charged what the request really used (prompt and completion
    /// tokens as counted), and its concurrent slot is freed.
    pub fn settle(mut self, used_tokens: u64) {
        self.settled = true;
        let used = self.tokens.map(|_| used_tokens);
        self.quotas.settle(&self.key, self.id, used);
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if !self.settled {
            // Ended before anything was counted: the reservation stands, the slot is freed.
            self.quotas.settle(&self.key, self.id, None);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(rpm: Option<u32>, tpm: Option<u64>, max_concurrent: Option<u32>) -> Limits {
        Limits {
            rpm,
            tpm,
            max_concurrent,
            ..Limits::default()
        }
    }

    impl Quotas {
        /// Both steps at `now`: admission, then the tokens.
        fn reserve_at(
            &self,
            key: &str,
            limits: Limits,
            prompt: u64,
            tokens: u64,
            now: Instant,
        ) -> Result<Reservation, QuotaError> {
            let mut reservation = self.admit_at(key, limits, now)?;
            self.reserve_tokens_at(&mut reservation, prompt, tokens, now)?;
            Ok(reservation)
        }
    }

    #[test]
    fn requests_per_minute_slide_with_the_window() {
        let quotas = Quotas::default();
        let start = Instant::now();
        let l = limits(Some(3), None, None);
        for i in 0..3 {
            let at = start + Duration::from_secs(i * 10);
            quotas.reserve_at("k", l, 1, 1, at).unwrap().settle(1);
        }
        let refused = quotas.reserve_at("k", l, 1, 1, start + Duration::from_secs(30));
        assert!(
            matches!(
                refused,
                Err(QuotaError::Requests {
                    retry_after_secs: 30,
                    ..
                })
            ),
            "{refused:?}"
        );
        // No fixed-window edge: 59 s after the first, still refused; at 60 s, one more fits.
        assert!(quotas
            .reserve_at("k", l, 1, 1, start + Duration::from_secs(59))
            .is_err());
        let ok = quotas
            .reserve_at("k", l, 1, 1, start + Duration::from_secs(60))
            .unwrap();
        assert_eq!(ok.headers.requests.unwrap().1, 0);
        // Other keys have their own window.
        assert!(quotas.reserve_at("other", l, 1, 1, start).is_ok());
    }

    #[test]
    fn tokens_are_reserved_then_settled_to_what_was_used() {
        let quotas = Quotas::default();
        let now = Instant::now();
        let l = limits(None, Some(100), None);
        let big = quotas.reserve_at("k", l, 10, 80, now).unwrap();
        // 80 reserved: 30 more do not fit until it settles.
        let refused = quotas.reserve_at("k", l, 10, 30, now);
        assert!(
            matches!(refused, Err(QuotaError::Tokens { used: 80, .. })),
            "{refused:?}"
        );
        big.settle(25);
        let second = quotas.reserve_at("k", l, 10, 30, now).unwrap();
        assert_eq!(second.headers.tokens.unwrap().1, 100 - 25 - 30);
        // A request whose budget is over the whole limit is charged the limit, and waits for room.
        drop(second);
        assert!(matches!(
            quotas.reserve_at("k", l, 10, 500, now),
            Err(QuotaError::Tokens { requested: 100, .. })
        ));
        assert!(matches!(
            quotas.reserve_at("k", l, 101, 101, now),
            Err(QuotaError::TooLarge { .. })
        ));
    }

    #[test]
    fn concurrency_is_freed_when_a_response_ends() {
        let quotas = Quotas::default();
        let now = Instant::now();
        let l = limits(None, None, Some(1));
        let first = quotas.reserve_at("k", l, 1, 1, now).unwrap();
        assert!(matches!(
            quotas.reserve_at("k", l, 1, 1, now),
            Err(QuotaError::Concurrency { .. })
        ));
        drop(first);
        assert!(quotas.reserve_at("k", l, 1, 1, now).is_ok());
    }

    #[test]
    fn a_request_is_counted_before_its_tokens_are_known() {
        let quotas = Quotas::default();
        let now = Instant::now();
        let l = limits(Some(2), Some(100), Some(1));
        // Admitted: its slot is taken before any token is counted.
        let first = quotas.admit_at("k", l, now).unwrap();
        assert_eq!(quotas.running("k"), 1);
        assert!(matches!(
            quotas.admit_at("k", l, now),
            Err(QuotaError::Concurrency { limit: 1, .. })
        ));
        drop(first);
        assert_eq!(quotas.running("k"), 0);
        // A request refused at its tokens still counts as a request (it was read and counted).
        let mut second = quotas.admit_at("k", l, now).unwrap();
        assert!(matches!(
            quotas.reserve_tokens_at(&mut second, 101, 101, now),
            Err(QuotaError::TooLarge { .. })
        ));
        drop(second);
        assert!(matches!(
            quotas.admit_at("k", l, now),
            Err(QuotaError::Requests { limit: 2, .. })
        ));
    }

    #[test]
    fn durations_are_written_as_openai_does() {
        assert_eq!(duration(Duration::from_millis(20)), "20ms");
        assert_eq!(duration(Duration::from_secs(1)), "1s");
        assert_eq!(duration(Duration::from_millis(1500)), "1.5s");
        assert_eq!(duration(Duration::from_secs(360)), "6m0s");
    }
}
