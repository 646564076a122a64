//! Versions in and out of service: loading (one at a time), settling pending weights once their versions
//! are ready, taking a version out and draining it until its last request has let go; and the server's
//! own drain.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use super::handle::ModelRegistry;
use super::table::{describe, State, Table, VersionStatus};
use crate::config::models::VersionSpec;
use crate::engine::{Engine, EngineError};
use crate::models::admission::{Admission, AdmissionLimits};
use crate::models::ServedModel;
use crate::process_memory;

/// How often a draining version is checked for requests still holding it.
pub(super) const DRAIN_POLL: Duration = Duration::from_millis(50);

impl ModelRegistry {
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

    pub(super) fn declare(&self, spec: &VersionSpec) {
        self.inner.metrics.declare_model(&spec.model, &spec.version);
        self.inner
            .metrics
            .set_model_loaded(&spec.model, &spec.version, false);
    }

    /// Pending weights switch in once their versions are ready (or are dropped when one failed); retiring
    /// versions no alias routes to any more are taken out.
    pub(super) fn settle(&self, table: &mut Table) {
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
    pub(super) fn take_out(&self, table: &mut Table, id: &str) {
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

    pub(super) fn spawn_load(&self, spec: VersionSpec, token: u64) {
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

    pub(super) fn loaded(
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
