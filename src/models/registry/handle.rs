//! The registry handle: what its clones share (the table under its lock, the loader, the metrics, the drain
//! timeout, the change notifications), its construction, and the waits on its changes.

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, RwLock, RwLockWriteGuard};
use std::time::Duration;

use futures::future::BoxFuture;
use tokio::sync::watch;

use super::table::{State, Table};
use crate::config::models::{ModelsSpec, VersionSpec};
use crate::engine::{Engine, EngineError};
use crate::metrics::Metrics;

/// Turns a version's spec into a ready (loaded and warmed-up) engine.
pub trait Loader: Send + Sync + 'static {
    fn load(&self, spec: &VersionSpec) -> BoxFuture<'static, Result<Arc<dyn Engine>, EngineError>>;
}

pub(super) struct Inner {
    pub(super) table: RwLock<Table>,
    pub(super) loader: Arc<dyn Loader>,
    pub(super) metrics: Arc<Metrics>,
    pub(super) drain_timeout: Duration,
    /// One load at a time.
    pub(super) loading: tokio::sync::Mutex<()>,
    /// Bumped on every change of state: for whoever waits for one (start-up, tests).
    pub(super) changed: watch::Sender<u64>,
    pub(super) server_draining: AtomicBool,
    /// Whether `/v1/models` lists each `model@version` besides the aliases: with a models file, yes; with
    /// the flags' one model (one version, its name its only alias) the list stays that one name, as a
    /// single-model server's list does elsewhere (the version id is still accepted and described).
    pub(super) list_versions: bool,
}

/// The registry; clones share it.
#[derive(Clone)]
pub struct ModelRegistry {
    pub(super) inner: Arc<Inner>,
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

    pub(super) fn table(&self) -> std::sync::RwLockReadGuard<'_, Table> {
        self.inner.table.read().expect("registry lock")
    }

    pub(super) fn table_mut(&self) -> RwLockWriteGuard<'_, Table> {
        self.inner.table.write().expect("registry lock")
    }

    pub(super) fn bump(&self) {
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
}
