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

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock, RwLockWriteGuard, Weak};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use tokio::sync::watch;

use super::error::RegistryError;
use super::{routing, Routed, ServedModel};
use crate::api::models::{Model, ModelKind, ModelStatus};
use crate::config::file::check_weights;
use crate::config::models::{AliasSpec, ModelsSpec, VersionSpec};
use crate::engine::{Engine, EngineError};
use crate::error::ApiError;
use crate::generation::admission::{Admission, AdmissionLimits};
use crate::metrics::Metrics;
use crate::process_memory;

/// How often a draining version is checked for requests still holding it.
const DRAIN_POLL: Duration = Duration::from_millis(50);
/// Roll-back steps kept per alias.
const HISTORY_DEPTH: usize = 16;

/// Turns a version's spec into a ready (loaded and warmed-up) engine.
pub trait Loader: Send + Sync + 'static {
    fn load(&self, spec: &VersionSpec) -> BoxFuture<'static, Result<Arc<dyn Engine>, EngineError>>;
}

/// A version's state as `/v1/models` and the admin API report it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VersionStatus {
    Loading,
    Ready,
    Draining,
    Failed(String),
}

enum State {
    Loading,
    Ready(Arc<ServedModel>),
    Failed(String),
    /// Taken out of service: lives while requests hold it.
    Draining {
        model: Weak<ServedModel>,
        admission: Admission,
    },
}

struct VersionEntry {
    spec: VersionSpec,
    id: String,
    state: State,
    /// Which load of this id a finished load belongs to (a version removed while loading is not revived).
    token: u64,
    /// Unix seconds when it was added (until it has loaded) or loaded.
    created: u64,
    /// Removed from the models file while an alias still routes to it: drained once none does.
    retiring: bool,
}

struct AliasEntry {
    name: String,
    /// The weights in force; empty until the first weights have a ready version.
    active: Vec<(String, u32)>,
    /// Weights waiting for their versions to be ready.
    pending: Option<Vec<(String, u32)>>,
    /// Earlier weights, most recent last: what roll back returns to.
    history: Vec<Vec<(String, u32)>>,
}

impl AliasEntry {
    fn routes_to(&self, id: &str) -> bool {
        let uses = |weights: &[(String, u32)]| weights.iter().any(|(v, w)| v == id && *w > 0);
        uses(&self.active) || self.pending.as_deref().is_some_and(uses)
    }

    fn activate(&mut self, weights: Vec<(String, u32)>) {
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

struct Table {
    versions: Vec<VersionEntry>,
    aliases: Vec<AliasEntry>,
    default_alias: String,
    /// The spec last applied (start-up or reload): the next reload applies its difference from this.
    applied: ModelsSpec,
    next_token: u64,
}

impl Table {
    fn version(&self, id: &str) -> Option<&VersionEntry> {
        self.versions.iter().find(|v| v.id == id)
    }

    fn version_mut(&mut self, id: &str) -> Option<&mut VersionEntry> {
        self.versions.iter_mut().find(|v| v.id == id)
    }

    fn alias(&self, name: &str) -> Option<&AliasEntry> {
        self.aliases.iter().find(|a| a.name == name)
    }

    fn ready(&self, id: &str) -> Option<&Arc<ServedModel>> {
        match &self.version(id)?.state {
            State::Ready(model) => Some(model),
            _ => None,
        }
    }

    fn status(&self, id: &str) -> Option<VersionStatus> {
        Some(match &self.version(id)?.state {
            State::Loading => VersionStatus::Loading,
            State::Ready(_) => VersionStatus::Ready,
            State::Draining { .. } => VersionStatus::Draining,
            State::Failed(reason) => VersionStatus::Failed(reason.clone()),
        })
    }

    /// The aliases in their order, the default one first.
    fn aliases_default_first(&self) -> Vec<&AliasEntry> {
        let mut aliases: Vec<&AliasEntry> = self.aliases.iter().collect();
        aliases.sort_by_key(|a| a.name != self.default_alias);
        aliases
    }

    fn aliases_routing_to(&self, id: &str) -> Vec<&str> {
        self.aliases
            .iter()
            .filter(|a| a.routes_to(id))
            .map(|a| a.name.as_str())
            .collect()
    }
}

struct Inner {
    table: RwLock<Table>,
    loader: Arc<dyn Loader>,
    metrics: Arc<Metrics>,
    drain_timeout: Duration,
    /// One load at a time.
    loading: tokio::sync::Mutex<()>,
    /// Bumped on every change of state: for whoever waits for one (start-up, tests).
    changed: watch::Sender<u64>,
    server_draining: AtomicBool,
    /// Whether `/v1/models` lists each `model@version` besides the aliases: with a models file, yes; with
    /// the flags' one model (one version, its name its only alias) the list stays that one name, as a
    /// single-model server's list does elsewhere (the version id is still accepted and described).
    list_versions: bool,
}

/// The registry; clones share it.
#[derive(Clone)]
pub struct ModelRegistry {
    inner: Arc<Inner>,
}

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
    /// An empty registry; [`Self::apply`] gives it its first spec.
    pub fn new(
        metrics: Arc<Metrics>,
        loader: Arc<dyn Loader>,
        drain_timeout: Duration,
        list_versions: bool,
    ) -> Self {
        ModelRegistry {
            inner: Arc::new(Inner {
                table: RwLock::new(Table {
                    versions: Vec::new(),
                    aliases: Vec::new(),
                    default_alias: String::new(),
                    applied: ModelsSpec {
                        versions: Vec::new(),
                        aliases: Vec::new(),
                        default_alias: String::new(),
                        keys: Default::default(),
                    },
                    next_token: 0,
                }),
                loader,
                metrics,
                drain_timeout,
                loading: tokio::sync::Mutex::new(()),
                changed: watch::channel(0).0,
                server_draining: AtomicBool::new(false),
                list_versions,
            }),
        }
    }

    fn table(&self) -> std::sync::RwLockReadGuard<'_, Table> {
        self.inner.table.read().expect("registry lock")
    }

    fn table_mut(&self) -> RwLockWriteGuard<'_, Table> {
        self.inner.table.write().expect("registry lock")
    }

    fn bump(&self) {
        self.inner.changed.send_modify(|n| *n += 1);
    }

    /// A receiver that sees every change of state.
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.inner.changed.subscribe()
    }

    /// Waits until no version is loading.
    pub async fn settled(&self) {
        let mut changes = self.changes();
        loop {
            let loading = {
                let table = self.table();
                table
                    .versions
                    .iter()
                    .any(|v| matches!(v.state, State::Loading))
            };
            if !loading || changes.changed().await.is_err() {
                return;
            }
        }
    }

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

    /// `/v1/models`: the aliases (the default first), then every version (with a models file), each with
    /// its state.
    pub fn list(&self) -> Vec<Model> {
        let mut models = self.list_all();
        if !self.inner.list_versions {
            models.retain(|m| m.kind == ModelKind::Alias);
        }
        models
    }

    /// Every alias and every version, whatever the listing rule (the admin API).
    pub fn list_all(&self) -> Vec<Model> {
        let table = self.table();
        let mut models: Vec<Model> = table
            .aliases_default_first()
            .into_iter()
            .map(|a| alias_entry(&table, a))
            .collect();
        models.extend(table.versions.iter().map(version_entry));
        models
    }

    /// One entry of [`Self::list`] by id.
    pub fn describe(&self, id: &str) -> Option<Model> {
        let table = self.table();
        if let Some(alias) = table.alias(id) {
            return Some(alias_entry(&table, alias));
        }
        table.version(id).map(version_entry)
    }

    // --- changes --------------------------------------------------------------------------------------

    /// Applies `next` as the difference from the spec applied last: new versions load, versions it no
    /// longer names drain (once no alias routes to them), aliases it changed take their new weights (once
    /// their versions are ready). Checked whole first: a refused spec changes nothing. Returns what it
    /// changed, one line each.
    pub fn apply(&self, next: ModelsSpec) -> Result<Vec<String>, RegistryError> {
        let (changes, loads) = self.apply_to_table(next)?;
        for (spec, token) in loads {
            self.spawn_load(spec, token);
        }
        Ok(changes)
    }

    /// [`Self::apply`] without starting the loads it needs: they are returned.
    #[allow(clippy::type_complexity)]
    fn apply_to_table(
        &self,
        next: ModelsSpec,
    ) -> Result<(Vec<String>, Vec<(VersionSpec, u64)>), RegistryError> {
        let mut changes = Vec::new();
        let mut loads = Vec::new();
        {
            let mut table = self.table_mut();
            let previous = table.applied.clone();
            for version in &next.versions {
                let id = version.id();
                match table.version(&id) {
                    Some(entry) if matches!(entry.state, State::Draining { .. }) => {
                        return Err(RegistryError::VersionDraining(id))
                    }
                    Some(entry) if entry.spec != *version => {
                        return Err(RegistryError::VersionChanged(id))
                    }
                    _ => {}
                }
            }
            // All checked: from here on, only changes.
            for version in &next.versions {
                let id = version.id();
                if let Some(entry) = table.version_mut(&id) {
                    // Named again after a reload that removed it: it stays.
                    entry.retiring = false;
                    continue;
                }
                if previous.version(&id).is_some() {
                    // Unloaded through the admin API since the last reload, which did not change it.
                    continue;
                }
                let token = table.next_token;
                table.next_token += 1;
                table.versions.push(VersionEntry {
                    spec: version.clone(),
                    id: id.clone(),
                    state: State::Loading,
                    token,
                    created: crate::ids::unix_now(),
                    retiring: false,
                });
                loads.push((version.clone(), token));
                changes.push(format!("load {id}"));
            }
            for alias in &next.aliases {
                if previous.alias(&alias.name) == Some(alias) {
                    continue;
                }
                changes.push(format!(
                    "alias {} → {}",
                    alias.name,
                    describe(&alias.weights)
                ));
                set_pending(&mut table, alias);
            }
            let removed_aliases: Vec<String> = previous
                .aliases
                .iter()
                .filter(|a| next.alias(&a.name).is_none())
                .map(|a| a.name.clone())
                .collect();
            for name in removed_aliases {
                changes.push(format!("remove alias {name}"));
                table.aliases.retain(|a| a.name != name);
            }
            for version in &previous.versions {
                let id = version.id();
                if next.version(&id).is_none() {
                    if let Some(entry) = table.version_mut(&id) {
                        entry.retiring = true;
                        changes.push(format!("unload {id}"));
                    }
                }
            }
            if table.default_alias != next.default_alias {
                changes.push(format!("default model → {}", next.default_alias));
                table.default_alias = next.default_alias.clone();
            }
            table.applied = next;
            self.settle(&mut table);
        }
        for spec in &loads {
            self.declare(&spec.0);
        }
        self.bump();
        Ok((changes, loads))
    }

    /// Tests of the layers above: applies a spec whose versions stay loading until [`Self::finish_load`].
    #[cfg(test)]
    pub fn apply_without_loading(&self, next: ModelsSpec) {
        self.apply_to_table(next).expect("a valid spec");
    }

    /// Tests of the layers above: a version of the spec applied last is loaded with this engine.
    #[cfg(test)]
    pub fn finish_load(&self, id: &str, engine: Arc<dyn Engine>) {
        let (spec, token) = {
            let table = self.table();
            let entry = table.version(id).expect("a version of the applied spec");
            (entry.spec.clone(), entry.token)
        };
        self.loaded(&spec, token, Ok(engine), None);
    }

    /// Loads a version beside the others (the admin API).
    pub fn add_version(&self, spec: VersionSpec) -> Result<(), RegistryError> {
        let id = spec.id();
        let token = {
            let mut table = self.table_mut();
            if table.version(&id).is_some() {
                return Err(RegistryError::VersionExists(id));
            }
            let token = table.next_token;
            table.next_token += 1;
            table.versions.push(VersionEntry {
                spec: spec.clone(),
                id,
                state: State::Loading,
                token,
                created: crate::ids::unix_now(),
                retiring: false,
            });
            token
        };
        self.declare(&spec);
        self.spawn_load(spec, token);
        self.bump();
        Ok(())
    }

    /// Takes a version out of service (the admin API): refused while an alias routes to it. Its running
    /// requests finish on it; then it is unloaded.
    pub fn remove_version(&self, id: &str) -> Result<(), RegistryError> {
        {
            let mut table = self.table_mut();
            let entry = table
                .version(id)
                .ok_or_else(|| RegistryError::UnknownVersion(id.to_string()))?;
            if matches!(entry.state, State::Draining { .. }) {
                return Err(RegistryError::VersionDraining(id.to_string()));
            }
            let aliases = table.aliases_routing_to(id);
            if !aliases.is_empty() {
                return Err(RegistryError::VersionInUse {
                    id: id.to_string(),
                    aliases: aliases
                        .iter()
                        .map(|a| format!("`{a}`"))
                        .collect::<Vec<_>>()
                        .join(", "),
                });
            }
            self.take_out(&mut table, id);
        }
        self.bump();
        Ok(())
    }

    /// New weights for an alias (the admin API); `Ok(true)` when they are in force now, `Ok(false)` when
    /// they wait for a version that is still loading.
    pub fn set_weights(
        &self,
        alias: &str,
        weights: Vec<(String, u32)>,
    ) -> Result<bool, RegistryError> {
        let active = {
            let mut table = self.table_mut();
            if table.alias(alias).is_none() {
                return Err(RegistryError::UnknownAlias(alias.to_string()));
            }
            check_weights(alias, &weights, |id| table.version(id).is_some())
                .map_err(RegistryError::Invalid)?;
            for (id, weight) in &weights {
                match table.status(id) {
                    _ if *weight == 0 => {}
                    Some(VersionStatus::Draining) => {
                        return Err(RegistryError::VersionDraining(id.clone()))
                    }
                    Some(VersionStatus::Failed(_)) => {
                        return Err(RegistryError::VersionFailed(id.clone()))
                    }
                    _ => {}
                }
                if table.version(id).is_some_and(|v| v.retiring) && *weight > 0 {
                    return Err(RegistryError::Invalid(format!(
                        "`{id}` was removed from the models file and is being unloaded"
                    )));
                }
            }
            set_pending(
                &mut table,
                &AliasSpec {
                    name: alias.to_string(),
                    weights: weights.clone(),
                },
            );
            self.settle(&mut table);
            table.alias(alias).is_some_and(|a| a.pending.is_none())
        };
        self.bump();
        Ok(active)
    }

    /// Returns an alias to its weights before the last change.
    pub fn roll_back(&self, alias: &str) -> Result<Vec<(String, u32)>, RegistryError> {
        let weights = {
            let mut table = self.table_mut();
            let entry = table
                .aliases
                .iter()
                .find(|a| a.name == alias)
                .ok_or_else(|| RegistryError::UnknownAlias(alias.to_string()))?;
            let previous = entry
                .history
                .last()
                .cloned()
                .ok_or_else(|| RegistryError::NothingToRollBack(alias.to_string()))?;
            if let Some((id, _)) = previous
                .iter()
                .find(|(id, w)| *w > 0 && table.ready(id).is_none())
            {
                return Err(RegistryError::Invalid(format!(
                    "cannot roll `{alias}` back: `{id}`, which it routed to, is no longer ready"
                )));
            }
            let entry = table
                .aliases
                .iter_mut()
                .find(|a| a.name == alias)
                .expect("found above");
            entry.history.pop();
            entry.active = previous.clone();
            entry.pending = None;
            self.settle(&mut table);
            previous
        };
        self.bump();
        Ok(weights)
    }

    /// The server drains: every version refuses new requests (as do versions that finish loading now).
    pub fn start_draining(&self) {
        self.inner.server_draining.store(true, Ordering::SeqCst);
        for admission in self.admissions() {
            admission.start_draining();
        }
    }

    pub fn is_draining(&self) -> bool {
        self.inner.server_draining.load(Ordering::SeqCst)
    }

    // --- internals -------------------------------------------------------------------------------------

    fn declare(&self, spec: &VersionSpec) {
        self.inner.metrics.declare_model(&spec.model, &spec.version);
        self.inner
            .metrics
            .set_model_loaded(&spec.model, &spec.version, false);
    }

    /// Pending weights switch in once their versions are ready (or are dropped when one failed); retiring
    /// versions no alias routes to any more are taken out.
    fn settle(&self, table: &mut Table) {
        let statuses: BTreeMap<String, Option<VersionStatus>> = table
            .aliases
            .iter()
            .flat_map(|a| a.pending.iter().flatten())
            .map(|(id, _)| (id.clone(), table.status(id)))
            .collect();
        for alias in &mut table.aliases {
            let Some(pending) = alias.pending.clone() else {
                continue;
            };
            let weighted: Vec<&Option<VersionStatus>> = pending
                .iter()
                .filter(|(_, w)| *w > 0)
                .map(|(id, _)| &statuses[id])
                .collect();
            let is = |s: &Option<VersionStatus>, want: fn(&VersionStatus) -> bool| {
                s.as_ref().is_some_and(want)
            };
            let all_ready = weighted
                .iter()
                .all(|s| is(s, |s| *s == VersionStatus::Ready));
            let any_loading = weighted
                .iter()
                .any(|s| is(s, |s| *s == VersionStatus::Loading));
            let any_ready = weighted
                .iter()
                .any(|s| is(s, |s| *s == VersionStatus::Ready));
            if all_ready {
                tracing::info!(alias = %alias.name, weights = %describe(&pending), "alias switched");
                alias.activate(pending);
            } else if any_loading {
                continue;
            } else if alias.active.is_empty() && any_ready {
                // A new alias whose canary failed: it serves from what did load.
                tracing::warn!(alias = %alias.name, weights = %describe(&pending), "alias switched; some of its versions failed to load");
                alias.activate(pending);
            } else {
                tracing::error!(alias = %alias.name, weights = %describe(&pending), "new weights dropped: a version they need failed to load; the alias keeps its weights");
                alias.pending = None;
            }
        }
        let retired: Vec<String> = table
            .versions
            .iter()
            .filter(|v| v.retiring && !matches!(v.state, State::Draining { .. }))
            .filter(|v| table.aliases_routing_to(&v.id).is_empty())
            .map(|v| v.id.clone())
            .collect();
        for id in retired {
            self.take_out(table, &id);
        }
    }

    /// Out of service: a loading or failed version is dropped now, a ready one drains.
    fn take_out(&self, table: &mut Table, id: &str) {
        let Some(index) = table.versions.iter().position(|v| v.id == id) else {
            return;
        };
        let entry = &mut table.versions[index];
        if matches!(entry.state, State::Draining { .. }) {
            return;
        }
        match std::mem::replace(&mut entry.state, State::Loading) {
            State::Ready(model) => {
                tracing::info!(
                    version = id,
                    running = model.admission.requests_running(),
                    waiting = model.admission.requests_waiting(),
                    "version draining"
                );
                entry.state = State::Draining {
                    model: Arc::downgrade(&model),
                    admission: model.admission.clone(),
                };
                self.spawn_drain(id.to_string(), entry.token, Arc::downgrade(&model));
            }
            State::Loading | State::Failed(_) | State::Draining { .. } => {
                // A load still under way finds its entry gone and drops what it loaded.
                let spec = table.versions.remove(index).spec;
                self.inner
                    .metrics
                    .set_model_loaded(&spec.model, &spec.version, false);
                tracing::info!(version = id, "version removed");
            }
        }
    }

    fn spawn_load(&self, spec: VersionSpec, token: u64) {
        let registry = self.clone();
        tokio::spawn(async move {
            let id = spec.id();
            let _one_at_a_time = registry.inner.loading.lock().await;
            // Removed while it waited its turn: nothing to load.
            let wanted = registry
                .table()
                .version(&id)
                .is_some_and(|v| v.token == token && matches!(v.state, State::Loading));
            if !wanted {
                return;
            }
            tracing::info!(version = %id, source = ?spec.source, paged_attention = spec.paged_attention_reason, "loading model version");
            let before = process_memory::resident_bytes();
            let loaded = registry.inner.loader.load(&spec).await;
            // Loading leaves its temporary buffers (GGUF reads, requantization) in the heap.
            process_memory::trim();
            let after = process_memory::resident_bytes();
            registry.loaded(&spec, token, loaded, before.zip(after));
        });
    }

    fn loaded(
        &self,
        spec: &VersionSpec,
        token: u64,
        loaded: Result<Arc<dyn Engine>, EngineError>,
        rss: Option<(u64, u64)>,
    ) {
        let id = spec.id();
        {
            let mut table = self.table_mut();
            let Some(entry) = table
                .version_mut(&id)
                .filter(|v| v.token == token && matches!(v.state, State::Loading))
            else {
                tracing::info!(version = %id, "loaded after it was removed: dropped");
                return;
            };
            match loaded {
                Ok(engine) => {
                    let mib = |b: u64| b / (1024 * 1024);
                    tracing::info!(
                        version = %id,
                        context_length = engine.info().context_length,
                        rss_before_mib = rss.map(|(b, _)| mib(b)),
                        rss_after_mib = rss.map(|(_, a)| mib(a)),
                        memory_mib = rss.map(|(b, a)| mib(a.saturating_sub(b))),
                        "model version ready"
                    );
                    let admission = Admission::new(AdmissionLimits {
                        max_running: spec.engine.max_num_seqs,
                        max_waiting: spec.queue.max_waiting,
                        queue_timeout: spec.queue.timeout,
                    });
                    if self.is_draining() {
                        admission.start_draining();
                    }
                    entry.created = crate::ids::unix_now();
                    entry.state = State::Ready(Arc::new(ServedModel {
                        name: spec.model.clone(),
                        version: spec.version.clone(),
                        id: id.clone(),
                        created: entry.created,
                        engine,
                        admission,
                    }));
                    self.inner
                        .metrics
                        .set_model_loaded(&spec.model, &spec.version, true);
                }
                Err(error) => {
                    tracing::error!(version = %id, %error, "model version failed to load");
                    entry.state = State::Failed(error.to_string());
                }
            }
            self.settle(&mut table);
        }
        self.bump();
    }

    /// Waits for the last request on a version taken out of service, ends what is left after the drain
    /// timeout, then removes the version (its engine is dropped with the last `Arc`).
    fn spawn_drain(&self, id: String, token: u64, model: Weak<ServedModel>) {
        let registry = self.clone();
        let admission = model.upgrade().map(|m| m.admission.clone());
        tokio::spawn(async move {
            let started = Instant::now();
            let before = process_memory::resident_bytes();
            let mut ended = false;
            while model.strong_count() > 0 {
                if !ended && started.elapsed() >= registry.inner.drain_timeout {
                    tracing::warn!(version = %id, "drain timeout: ending the requests still running");
                    if let Some(admission) = &admission {
                        admission.start_draining();
                        admission.abort_all();
                    }
                    ended = true;
                }
                tokio::time::sleep(DRAIN_POLL).await;
            }
            let spec = {
                let mut table = registry.table_mut();
                let index = table
                    .versions
                    .iter()
                    .position(|v| v.id == id && v.token == token);
                index.map(|i| table.versions.remove(i).spec)
            };
            if let Some(spec) = &spec {
                registry
                    .inner
                    .metrics
                    .set_model_loaded(&spec.model, &spec.version, false);
            }
            // The engine's thread ends on its own once the engine is dropped; give it a moment, then hand
            // the freed memory back.
            tokio::time::sleep(Duration::from_millis(500)).await;
            tokio::task::spawn_blocking(process_memory::trim).await.ok();
            let after = process_memory::resident_bytes();
            let mib = |b: u64| b / (1024 * 1024);
            tracing::info!(
                version = %id,
                drained_secs = started.elapsed().as_secs_f64(),
                rss_before_mib = before.map(mib),
                rss_after_mib = after.map(mib),
                "version unloaded"
            );
            registry.bump();
        });
    }
}

/// New weights for an alias (created if new), in force at once where nothing waits to load.
fn set_pending(table: &mut Table, alias: &AliasSpec) {
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

fn describe(weights: &[(String, u32)]) -> String {
    weights
        .iter()
        .map(|(id, w)| format!("{id}={w}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn weight_map(weights: &[(String, u32)]) -> BTreeMap<String, u32> {
    weights.iter().cloned().collect()
}

fn alias_entry(table: &Table, alias: &AliasEntry) -> Model {
    let ready: Vec<&Arc<ServedModel>> = alias
        .active
        .iter()
        .filter(|(_, w)| *w > 0)
        .filter_map(|(id, _)| table.ready(id))
        .collect();
    let loading = alias
        .active
        .iter()
        .chain(alias.pending.iter().flatten())
        .any(|(id, _)| table.status(id) == Some(VersionStatus::Loading));
    let (status, reason) = match (ready.is_empty(), loading) {
        (false, _) => (ModelStatus::Ready, None),
        (true, true) => (ModelStatus::Loading, None),
        (true, false) => (
            ModelStatus::Failed,
            Some("no version it routes to is ready".to_string()),
        ),
    };
    Model {
        id: alias.name.clone(),
        object: "model".into(),
        created: ready.iter().map(|m| m.created).min().unwrap_or(0),
        owned_by: "llmserve".into(),
        max_model_len: ready.iter().map(|m| m.engine.info().context_length).min(),
        kind: ModelKind::Alias,
        status,
        status_reason: reason,
        weights: Some(weight_map(&alias.active)),
        pending_weights: alias.pending.as_deref().map(weight_map),
        requests_running: None,
        requests_waiting: None,
    }
}

fn version_entry(entry: &VersionEntry) -> Model {
    let (status, reason, served) = match &entry.state {
        State::Loading => (ModelStatus::Loading, None, None),
        State::Ready(model) => (
            ModelStatus::Ready,
            entry
                .retiring
                .then(|| "removed from the models file: unloads once no alias routes to it".into()),
            Some(model.clone()),
        ),
        State::Failed(reason) => (ModelStatus::Failed, Some(reason.clone()), None),
        State::Draining { model, .. } => (ModelStatus::Draining, None, model.upgrade()),
    };
    let admission = match &entry.state {
        State::Draining { admission, .. } => Some(admission.clone()),
        _ => served.as_ref().map(|m| m.admission.clone()),
    };
    Model {
        id: entry.id.clone(),
        object: "model".into(),
        created: entry.created,
        owned_by: "llmserve".into(),
        max_model_len: served.as_ref().map(|m| m.engine.info().context_length),
        kind: ModelKind::Version,
        status,
        status_reason: reason,
        weights: None,
        pending_weights: None,
        requests_running: admission.as_ref().map(Admission::requests_running),
        requests_waiting: admission.as_ref().map(Admission::requests_waiting),
    }
}

#[cfg(test)]
mod tests;
