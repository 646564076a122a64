//! The served models: versions (each its own engine and admission queue) under aliases that route by
//! weight, the one lookup per request ([`ModelRegistry::resolve`]) and hot swap ([`registry`]);
//! [`routing`] picks a version of an alias; [`loading`] turns a configured source into a warmed-up engine.

pub mod admission;
pub mod error;
pub mod loading;
pub mod registry;
pub mod routing;

use std::ops::Deref;
use std::sync::Arc;

use crate::engine::Engine;
use admission::Admission;

pub use error::RegistryError;
pub use registry::{ModelRegistry, VersionStatus};

/// One loaded version of a model: its engine and its own admission queue in front of the engine's slots.
/// Requests hold it (an `Arc`) until their response ends, so that an unloaded version lives exactly as
/// long as its last request.
pub struct ServedModel {
    pub name: String,
    pub version: String,
    /// `name@version`: what responses name in `system_fingerprint` and `x-llmserve-model-version`.
    pub id: String,
    /// Unix seconds when it finished loading.
    pub created: u64,
    pub engine: Arc<dyn Engine>,
    pub admission: Admission,
}

/// A request's model: what the client asked for (an alias, a version id, or the default) and the version
/// routing chose for it.
#[derive(Clone)]
pub struct Routed {
    /// The response's `model`: what the client sent (or the default alias when it sent none).
    pub requested: String,
    pub served: Arc<ServedModel>,
}

impl Deref for Routed {
    type Target = ServedModel;

    fn deref(&self) -> &ServedModel {
        &self.served
    }
}

impl ServedModel {
    /// A ready version around an engine, for the tests of the layers above.
    #[cfg(test)]
    pub fn for_tests(engine: Arc<dyn Engine>) -> Arc<ServedModel> {
        use crate::models::admission::AdmissionLimits;
        Arc::new(ServedModel {
            name: "m".into(),
            version: "v".into(),
            id: "m@v".into(),
            created: 0,
            engine,
            admission: Admission::new(AdmissionLimits {
                max_running: 16,
                max_waiting: 16,
                queue_timeout: None,
            }),
        })
    }
}
