//! The served model: its public name, its engine, whether it has finished loading, and the one lookup per
//! request ([`ModelRegistry::resolve`]); [`loading`] turns a configured source into an engine.

pub mod loading;

use std::sync::{Arc, RwLock};

use crate::api;
use crate::engine::Engine;
use crate::error::ApiError;

/// A loaded model under the id clients use.
pub struct ServedModel {
    pub name: String,
    /// `--model-version`: told apart in metrics and logs.
    pub version: String,
    /// Unix seconds when it finished loading (`created` in `/v1/models`).
    pub created: u64,
    pub engine: Arc<dyn Engine>,
}

impl ServedModel {
    pub fn to_wire(&self) -> api::models::Model {
        api::models::Model {
            id: self.name.clone(),
            object: "model".to_string(),
            created: self.created,
            owned_by: "llmserve".to_string(),
            max_model_len: self.engine.info().context_length,
        }
    }
}

#[derive(Clone)]
pub enum LoadState {
    Loading,
    Ready(Arc<ServedModel>),
    Failed(String),
}

/// The model registry: one configured model for now, known by name before it has loaded.
pub struct ModelRegistry {
    name: String,
    version: String,
    state: RwLock<LoadState>,
}

impl ModelRegistry {
    pub fn new(name: String, version: String) -> Self {
        ModelRegistry {
            name,
            version,
            state: RwLock::new(LoadState::Loading),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn state(&self) -> LoadState {
        self.state.read().expect("model state lock").clone()
    }

    pub fn set_ready(&self, engine: Arc<dyn Engine>) {
        let model = ServedModel {
            name: self.name.clone(),
            version: self.version.clone(),
            created: crate::ids::unix_now(),
            engine,
        };
        *self.state.write().expect("model state lock") = LoadState::Ready(Arc::new(model));
    }

    pub fn set_failed(&self, reason: String) {
        *self.state.write().expect("model state lock") = LoadState::Failed(reason);
    }

    pub fn ready(&self) -> Option<Arc<ServedModel>> {
        match self.state() {
            LoadState::Ready(model) => Some(model),
            _ => None,
        }
    }

    /// The model a request names (`None`: the served one): 404 for unknown names, 503 while loading.
    pub fn resolve(&self, requested: Option<&str>) -> Result<Arc<ServedModel>, ApiError> {
        if let Some(name) = requested {
            if name != self.name {
                return Err(ApiError::ModelNotFound(name.to_string()));
            }
        }
        self.ready().ok_or(ApiError::ModelNotReady)
    }
}
