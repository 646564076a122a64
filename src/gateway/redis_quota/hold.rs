//! A request's hold on its key's budget, in this process's windows or in Redis: its tokens held, and
//! its settlement when its response ends.

use std::sync::Arc;
use std::time::Duration;

use super::scripts::KeyNames;
use super::SharedQuotas;
use crate::config::keys::Limits;
use crate::gateway::quota::{QuotaError, RateHeaders, Reservation, WINDOW};
use crate::gateway::redis_link::Call;

/// A request's hold on its key's budget, wherever it was decided; settled when its response ends.
pub enum Hold {
    /// In this process's windows: no Redis, or Redis did not answer in time.
    Local(Reservation),
    Redis(RedisHold),
}

/// A request admitted in Redis.
pub struct RedisHold {
    pub(super) quotas: Arc<SharedQuotas>,
    pub(super) key: String,
    pub(super) id: String,
    pub(super) limits: Limits,
    /// The tokens held in Redis, once asked for.
    pub(super) tokens: Option<u64>,
    pub(super) headers: RateHeaders,
    pub(super) settled: bool,
}

impl Hold {
    pub fn headers(&self) -> RateHeaders {
        match self {
            Hold::Local(reservation) => reservation.headers.clone(),
            Hold::Redis(hold) => hold.headers.clone(),
        }
    }

    /// Whether it was decided in Redis.
    pub fn is_shared(&self) -> bool {
        matches!(self, Hold::Redis(_))
    }

    /// Holds the request's tokens, where its admission was decided. A Redis hold whose token call gets
    /// no answer in time is released in Redis and decided again locally.
    pub async fn reserve_tokens(&mut self, prompt: u64, tokens: u64) -> Result<(), QuotaError> {
        match self {
            Hold::Local(reservation) => reservation.reserve_tokens(prompt, tokens),
            Hold::Redis(hold) => {
                if let Some(local) = hold.reserve_tokens(prompt, tokens).await? {
                    *self = Hold::Local(local);
                }
                Ok(())
            }
        }
    }

    /// Charges what was used (`None`: the reservation stands) and frees the concurrent slot.
    pub fn settle(self, used: Option<u64>) {
        match self {
            Hold::Local(reservation) => match used {
                Some(used) => reservation.settle(used),
                None => drop(reservation),
            },
            Hold::Redis(mut hold) => hold.settle(used),
        }
    }
}

impl RedisHold {
    /// `Ok(Some(local))` when Redis did not answer and the tokens were held locally instead.
    async fn reserve_tokens(
        &mut self,
        prompt: u64,
        tokens: u64,
    ) -> Result<Option<Reservation>, QuotaError> {
        if let Some(limit) = self.limits.tpm.filter(|limit| prompt > *limit) {
            return Err(QuotaError::TooLarge { limit, prompt });
        }
        let Some(tpm) = self.limits.tpm else {
            return Ok(None);
        };
        let charged = tokens.min(tpm);
        let names = KeyNames::new(&self.key);
        let call = Call {
            script: &self.quotas.scripts.tokens,
            keys: vec![
                names.tokens,
                names.tokens_sum,
                KeyNames::released(&self.key, &self.id),
            ],
            args: vec![
                tpm.to_string(),
                self.id.clone(),
                charged.to_string(),
                WINDOW.as_millis().to_string(),
            ],
        };
        match self.quotas.link.run(call).await {
            Ok(reply) if reply.len() == 5 && reply[0] == 1 => {
                self.quotas.mark(true);
                self.tokens = Some(charged);
                self.headers.tokens = Some((
                    tpm,
                    tpm.saturating_sub(reply[3].max(0) as u64),
                    millis(reply[4]),
                ));
                Ok(None)
            }
            Ok(reply) if reply.len() == 5 && reply[1] == 3 => {
                let headers = RateHeaders {
                    tokens: Some((
                        tpm,
                        tpm.saturating_sub(reply[3].max(0) as u64),
                        millis(reply[4]),
                    )),
                    ..self.headers.clone()
                };
                Err(QuotaError::Tokens {
                    limit: tpm,
                    used: reply[3].max(0) as u64,
                    requested: charged,
                    retry_after_secs: (reply[2].max(1) as u64).div_ceil(1000),
                    headers,
                })
            }
            outcome => {
                if let Err(error) = &outcome {
                    tracing::debug!(%error, "Redis token hold failed");
                    self.quotas.failed();
                }
                // Whatever Redis holds of this request goes (its admission, and the tokens should the
                // call run late); it is decided here from now on.
                self.settled = true;
                self.quotas.forget(&self.key, &self.id);
                self.quotas
                    .clone()
                    .release_later(self.key.clone(), self.id.clone(), Some(charged));
                let mut local = self.quotas.locally(&self.key, self.limits)?;
                local.reserve_tokens(prompt, tokens)?;
                Ok(Some(local))
            }
        }
    }

    fn settle(&mut self, used: Option<u64>) {
        if std::mem::replace(&mut self.settled, true) {
            return;
        }
        self.quotas.forget(&self.key, &self.id);
        let names = KeyNames::new(&self.key);
        let reserved = self.tokens.map_or(-1, |t| t as i64);
        let call_args = vec![
            self.id.clone(),
            reserved.to_string(),
            used.map_or(-1, |u| u as i64).to_string(),
        ];
        let keys = vec![names.tokens, names.tokens_sum, names.concurrency];
        let quotas = self.quotas.clone();
        // Off the path that ends the response: one round trip. Should it fail, the lease (no longer
        // renewed) frees the slot, and the reservation leaves the window with time.
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        runtime.spawn(async move {
            let call = Call {
                script: &quotas.scripts.settle,
                keys,
                args: call_args,
            };
            if let Err(error) = quotas.link.run(call).await {
                tracing::warn!(%error, "could not settle a request's budget in Redis; its lease will expire");
            }
        });
    }
}

impl Drop for RedisHold {
    fn drop(&mut self) {
        self.settle(None);
    }
}

pub(super) fn millis(ms: i64) -> Duration {
    Duration::from_millis(ms.max(0) as u64)
}
