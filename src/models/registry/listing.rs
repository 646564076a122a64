//! What `/v1/models` and the admin API list: each alias and each version as a [`Model`], with its state.

use std::sync::Arc;

use super::handle::ModelRegistry;
use super::table::{weight_map, AliasEntry, State, Table, VersionEntry, VersionStatus};
use crate::api::models::{Model, ModelKind, ModelStatus};
use crate::models::admission::Admission;
use crate::models::ServedModel;

impl ModelRegistry {
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
