//! The registry: versions (loading, ready, draining, failed) and aliases (weights in force, weights waiting
//! for their versions, the history that roll back returns to).
//!
//! Hot swap, as the registry does it:
//! - A new version loads beside the others (one load at a time: memory peaks stay one model high, and each
//!   load's memory can be stated) and is warmed up by the loader before it counts as ready.
//! - New weights that give traffic to a version not yet ready wait (`pending`) and switch atomically, under
//!   the table's lock, once every such version is ready; the weights in force serve until then.
//! - A removed version takes no new requests; the requests it already has finish on it, since each holds
//!   the version (an `Arc`) until its response ends. Once the last one has let go, the engine is dropped
//!   and its memory returned; after the drain timeout its remaining requests are ended with an error.
//! - Reload applies the difference between the spec last applied and the new one: what the new file did
//!   not change (weights an operator shifted, versions loaded through the admin API) stays as it is.
//!
//! The files: `table` is the table itself (versions, aliases, their states, the pure functions over them);
//! `handle` the shared [`ModelRegistry`] around it; this file the request path's lookups (resolve,
//! readiness); `listing` what `/v1/models` and the admin API list; `reload` applies a models spec; `admin`
//! the admin API's changes; `lifecycle` loads, settles, takes out and drains versions.

mod admin;
mod handle;
mod lifecycle;
mod listing;
mod reload;
mod table;

use std::sync::Arc;

use super::{routing, Routed, ServedModel};
use crate::error::ApiError;
use crate::models::admission::Admission;
use table::State;

pub use handle::{Loader, ModelRegistry};
pub use table::VersionStatus;

/// One alias's readiness, for the probes and the `llmserve_ready` gauge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AliasReadiness {
    pub alias: String,
    /// A request for it would be routed now and find room in its version's queue.
    pub ready: bool,
    /// Why not, when not.
    pub reason: Option<String>,
}

impl ModelRegistry {
    // --- the request path -------------------------------------------------------------------------------

    /// The version that serves a request for `requested` (an alias or a `model@version` id; `None`: the
    /// default alias): 404 for unknown names, 503 while nothing behind the name is ready. `identity` makes
    /// the pick sticky per caller.
    pub fn resolve(
        &self,
        requested: Option<&str>,
        identity: Option<&str>,
    ) -> Result<Routed, ApiError> {
        let table = self.table();
        let name = requested.unwrap_or(&table.default_alias);
        let routed = |served: &Arc<ServedModel>| Routed {
            requested: name.to_string(),
            served: served.clone(),
        };
        if let Some(alias) = table.alias(name) {
            let index = routing::pick(
                name,
                &alias.active,
                |id| table.ready(id).is_some(),
                identity,
            )
            .ok_or(ApiError::ModelNotReady)?;
            let served = table
                .ready(&alias.active[index].0)
                .ok_or(ApiError::ModelNotReady)?;
            return Ok(routed(served));
        }
        match table.version(name).map(|v| &v.state) {
            Some(State::Ready(served)) => Ok(routed(served)),
            Some(State::Loading) | Some(State::Failed(_)) => Err(ApiError::ModelNotReady),
            Some(State::Draining { .. }) | None => Err(ApiError::ModelNotFound(name.to_string())),
        }
    }

    /// A ready version of the default alias (the largest weight): for what describes "the" model, such as
    /// the bounds in the served OpenAPI document.
    pub fn default_model(&self) -> Option<Arc<ServedModel>> {
        let table = self.table();
        let alias = table.alias(&table.default_alias)?;
        let mut weights = alias.active.clone();
        weights.sort_by_key(|(_, w)| std::cmp::Reverse(*w));
        weights
            .iter()
            .find_map(|(id, w)| (*w > 0).then(|| table.ready(id)).flatten().cloned())
    }

    /// What a request without `model` gets.
    pub fn default_alias(&self) -> String {
        self.table().default_alias.clone()
    }

    /// Every ready version.
    pub fn ready_versions(&self) -> Vec<Arc<ServedModel>> {
        let table = self.table();
        table
            .versions
            .iter()
            .filter_map(|v| match &v.state {
                State::Ready(model) => Some(model.clone()),
                _ => None,
            })
            .collect()
    }

    /// The admission queues of every version that may still run requests (ready and draining).
    pub fn admissions(&self) -> Vec<Admission> {
        let table = self.table();
        table
            .versions
            .iter()
            .filter_map(|v| match &v.state {
                State::Ready(model) => Some(model.admission.clone()),
                State::Draining { admission, .. } => Some(admission.clone()),
                _ => None,
            })
            .collect()
    }

    /// Requests running and waiting over every version.
    pub fn load(&self) -> (usize, usize) {
        self.admissions().iter().fold((0, 0), |(r, w), a| {
            (r + a.requests_running(), w + a.requests_waiting())
        })
    }

    /// Versions that failed to load, with the reason.
    pub fn failures(&self) -> Vec<(String, String)> {
        let table = self.table();
        table
            .versions
            .iter()
            .filter_map(|v| match &v.state {
                State::Failed(reason) => Some((v.id.clone(), reason.clone())),
                _ => None,
            })
            .collect()
    }

    pub fn status(&self, id: &str) -> Option<VersionStatus> {
        self.table().status(id)
    }

    /// Each alias: can a request for it be served now?
    pub fn readiness(&self) -> Vec<AliasReadiness> {
        let table = self.table();
        table
            .aliases_default_first()
            .into_iter()
            .map(|alias| {
                let weighted: Vec<&str> = alias
                    .active
                    .iter()
                    .filter(|(_, w)| *w > 0)
                    .map(|(id, _)| id.as_str())
                    .collect();
                let ready: Vec<&Arc<ServedModel>> =
                    weighted.iter().filter_map(|id| table.ready(id)).collect();
                let reason = if ready.is_empty() {
                    let loading = alias
                        .pending
                        .iter()
                        .flatten()
                        .map(|(id, _)| id.as_str())
                        .chain(weighted.iter().copied())
                        .any(|id| table.status(id) == Some(VersionStatus::Loading));
                    Some(if loading {
                        "loading".to_string()
                    } else {
                        "no version of it is ready".to_string()
                    })
                } else {
                    None
                };
                AliasReadiness {
                    alias: alias.name.clone(),
                    ready: reason.is_none(),
                    reason,
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests;
