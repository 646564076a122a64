//! Running a planned request: it waits for its slot in its version's queue (now, or inside a stream
//! that is already answering), its choices go to the engine, and out come its events.

use std::time::Duration;

use futures::future::BoxFuture;
use futures::{FutureExt, Stream};

use crate::engine::GenerationRequest;
use crate::error::ApiError;
use crate::gateway::limiter::{AdmittedMark, Settlement};
use crate::generation::choices::ChoiceSource;
use crate::generation::output::{self, GenerationEvent, Started, StreamSettings};
use crate::generation::plan::{constraint_param, PlannedGeneration};
use crate::models::admission::{AdmissionPermit, Admitted};

impl PlannedGeneration {
    /// Submits every choice under an admission permit, which then also covers the engine's hold on each
    /// sequence: the slot is free only once the engine has really let go of it.
    async fn submit(
        self,
        mut permit: AdmissionPermit,
        admitted: AdmittedMark,
    ) -> Result<Started, ApiError> {
        // From here the request is charged what it uses, even if its submission fails.
        self.log.admitted();
        admitted.set();
        let mut sources = Vec::with_capacity(self.choices.len());
        // `best_of` ranks its candidates by their total log probability, so they need logprobs.
        let logprobs = match self.generation.logprobs {
            None if self.generation.generated > self.generation.n => Some(0),
            other => other,
        };
        for (index, choice) in self.choices.into_iter().enumerate() {
            let submitted = self
                .model
                .engine
                .generate(GenerationRequest {
                    seed: choice.seed,
                    logit_bias: self.generation.logit_bias.clone(),
                    logprobs,
                    constraint: self.generation.constraint.clone(),
                    ..GenerationRequest::new(
                        choice.prompt,
                        self.generation.sampling.clone(),
                        choice.max_tokens,
                        self.generation.stop.clone(),
                    )
                })
                .await?;
            permit.also_hold(submitted.held);
            sources.push(ChoiceSource {
                index,
                events: submitted.events,
                stop: self.generation.stop.clone(),
            });
        }
        Ok(Started {
            permit,
            sources,
            model: self.model,
        })
    }

    /// The request's events, the key's settlement made as their last step. A request refused at once
    /// (queue full, draining) is an error here, before any response has begun.
    ///
    /// `Answering::Streamed(within)`: a request admitted within `within` is submitted now, so that a
    /// refusal is still a plain 4xx/5xx; one that has to wait longer is handed back still waiting, and
    /// waits inside the stream (keep-alive `Idle` events, so that proxies do not cut a queued stream); a
    /// refusal then arrives as a `Failed` event before any token. `Answering::Whole`: the request waits
    /// for its slot here, and its failures are the caller's to log.
    pub async fn run(
        self,
        answering: Answering,
        keep_alive: Duration,
        settlement: Settlement,
    ) -> Result<impl Stream<Item = GenerationEvent> + Send + 'static, ApiError> {
        let settings = StreamSettings {
            prompt_tokens: self.prompt_tokens,
            keep_alive,
            log: self.log.clone(),
            settlement,
            log_failures: matches!(answering, Answering::Streamed(_)),
            constraint: self.generation.constraint.as_ref().map(constraint_param),
        };
        let mark = settings.settlement.admitted_mark();
        let start = self.start(answering, mark).await?;
        Ok(output::events(start, settings))
    }

    /// Admission (now, or the rest of a wait handed back), then submission.
    async fn start(
        self,
        answering: Answering,
        mark: AdmittedMark,
    ) -> Result<BoxFuture<'static, Result<Started, ApiError>>, ApiError> {
        let admission = self.model.admission.clone();
        let admitted = match answering {
            Answering::Whole => Admitted::Now(admission.admit(self.sequences()).await?),
            Answering::Streamed(within) => {
                admission.admit_or_defer(self.sequences(), within).await?
            }
        };
        match admitted {
            Admitted::Now(permit) => {
                let started = self.submit(permit, mark).await?;
                Ok(futures::future::ready(Ok(started)).boxed())
            }
            Admitted::Queued(waiting) => Ok(async move {
                let permit = waiting.await?;
                self.submit(permit, mark).await
            }
            .boxed()),
        }
    }
}

/// How an answer is sent: streamed (headers due within this long, then waiting inside the stream), or
/// whole once every choice has finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answering {
    Streamed(Duration),
    Whole,
}
