//! The table: versions (loading, ready, draining, failed) and aliases (weights in force, weights waiting
//! for their versions, the history that roll back returns to), with the lookups and pure functions over it.
//! It knows nothing of loading or draining: the operations in the sibling files change it under the lock.

use std::collections::BTreeMap;
use std::sync::{Arc, Weak};

use crate::config::models::{AliasSpec, ModelsSpec, VersionSpec};
use crate::models::admission::Admission;
use crate::models::ServedModel;

/// Roll-back steps kept per alias.
const HISTORY_DEPTH: usize = 16;

/// A version's state as `/v1/models` and the admin API report it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VersionStatus {
    Loading,
    Ready,
    Draining,
    Failed(String),
}

pub(super) enum State {
    Loading,
    Ready(Arc<ServedModel>),
    Failed(String),
    /// Taken out of service: lives while requests hold it.
    Draining {
        model: Weak<ServedModel>,
        admission: Admission,
    },
}

pub(super) struct VersionEntry {
    pub(super) spec: VersionSpec,
    pub(super) id: String,
    pub(super) state: State,
    /// Which load of this id a finished load belongs to (a version removed while loading is not revived).
    pub(super) token: u64,
    /// Unix seconds when it was added (until it has loaded) or loaded.
    pub(super) created: u64,
    /// Removed from the models file while an alias still routes to it: drained once none does.
    pub(super) retiring: bool,
}

pub(super) struct AliasEntry {
    pub(super) name: String,
    /// The weights in force; empty until the first weights have a ready version.
    pub(super) active: Vec<(String, u32)>,
    /// Weights waiting for their versions to be ready.
    pub(super) pending: Option<Vec<(String, u32)>>,
    /// Earlier weights, most recent last: what roll back returns to.
    pub(super) history: Vec<Vec<(String, u32)>>,
}

impl AliasEntry {
    fn routes_to(&self, id: &str) -> bool {
        let uses = |weights: &[(String, u32)]| weights.iter().any(|(v, w)| v == id && *w > 0);
        uses(&self.active) || self.pending.as_deref().is_some_and(uses)
    }

    pub(super) fn activate(&mut self, weights: Vec<(String, u32)>) {
        let previous = std::mem::replace(&mut self.active, weights);
        if !previous.is_empty() && previous != self.active {
            self.history.push(previous);
            if self.history.len() > HISTORY_DEPTH {
                self.history.remove(0);
            }
        }
        self.pending = None;
    }
}

pub(super) struct Table {
    pub(super) versions: Vec<VersionEntry>,
    pub(super) aliases: Vec<AliasEntry>,
    pub(super) default_alias: String,
    /// The spec last applied (start-up or reload): the next reload applies its difference from this.
    pub(super) applied: ModelsSpec,
    pub(super) next_token: u64,
}

impl Table {
    pub(super) fn version(&self, id: &str) -> Option<&VersionEntry> {
        self.versions.iter().find(|v| v.id == id)
    }

    pub(super) fn version_mut(&mut self, id: &str) -> Option<&mut VersionEntry> {
        self.versions.iter_mut().find(|v| v.id == id)
    }

    pub(super) fn alias(&self, name: &str) -> Option<&AliasEntry> {
        self.aliases.iter().find(|a| a.name == name)
    }

    pub(super) fn ready(&self, id: &str) -> Option<&Arc<ServedModel>> {
        match &self.version(id)?.state {
            State::Ready(model) => Some(model),
            _ => None,
        }
    }

    pub(super) fn status(&self, id: &str) -> Option<VersionStatus> {
        Some(match &self.version(id)?.state {
            State::Loading => VersionStatus::Loading,
            State::Ready(_) => VersionStatus::Ready,
            State::Draining { .. } => VersionStatus::Draining,
            State::Failed(reason) => VersionStatus::Failed(reason.clone()),
        })
    }

    /// The aliases in their order, the default one first.
    pub(super) fn aliases_default_first(&self) -> Vec<&AliasEntry> {
        let mut aliases: Vec<&AliasEntry> = self.aliases.iter().collect();
        aliases.sort_by_key(|a| a.name != self.default_alias);
        aliases
    }

    pub(super) fn aliases_routing_to(&self, id: &str) -> Vec<&str> {
        self.aliases
            .iter()
            .filter(|a| a.routes_to(id))
            .map(|a| a.name.as_str())
            .collect()
    }
}

/// New weights for an alias (created if new), in force at once where nothing waits to load.
pub(super) fn set_pending(table: &mut Table, alias: &AliasSpec) {
    match table.aliases.iter_mut().find(|a| a.name == alias.name) {
        Some(entry) => entry.pending = Some(alias.weights.clone()),
        None => table.aliases.push(AliasEntry {
            name: alias.name.clone(),
            active: Vec::new(),
            pending: Some(alias.weights.clone()),
            history: Vec::new(),
        }),
    }
}

pub(super) fn describe(weights: &[(String, u32)]) -> String {
    weights
        .iter()
        .map(|(id, w)| format!("{id}={w}"))
        .collect::<Vec<_>>()
        .join(", ")
}

pub(super) fn weight_map(weights: &[(String, u32)]) -> BTreeMap<String, u32> {
    weights.iter().cloned().collect()
}
