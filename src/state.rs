//! What every handler reads: the configuration, the served models, admission, metrics, span export and
//! the image fetcher. Its own module so that the routes and the server that builds it import it from
//! below rather than from each other.

use std::sync::Arc;

use crate::config::Config;
use crate::generation::admission::{Admission, AdmissionLimits};
use crate::metrics::Metrics;
use crate::models::ModelRegistry;
use crate::otlp::SpanExporter;
use crate::remote_images::RemoteImages;

/// What every handler reads.
pub struct AppState {
    pub config: Arc<Config>,
    pub models: ModelRegistry,
    pub admission: Admission,
    pub metrics: Arc<Metrics>,
    /// Span export, when `--otlp-endpoint` is set (started inside the runtime by `start`).
    pub spans: Option<SpanExporter>,
    /// The image fetcher, when `--allow-remote-images` is set.
    pub remote_images: Option<RemoteImages>,
}

impl AppState {
    pub fn new(config: Config) -> Self {
        let metrics = Metrics::new();
        metrics.declare_model(&config.model.served_name);
        metrics.set_model_loaded(&config.model.served_name, &config.model.version, false);
        AppState {
            spans: None,
            remote_images: config.server.allow_remote_images.then(RemoteImages::new),
            metrics: Arc::new(metrics),
            models: ModelRegistry::new(
                config.model.served_name.clone(),
                config.model.version.clone(),
            ),
            admission: Admission::new(AdmissionLimits {
                max_running: config.engine.max_num_seqs,
                max_waiting: config.queue.max_waiting,
                queue_timeout: config.queue.timeout,
            }),
            config: Arc::new(config),
        }
    }
}

impl AppState {
    /// Whether this server takes new requests: the model is loaded, it is not draining and the queue has
    /// room. The HTTP readiness probe, the `llmserve_ready` gauge and the gRPC health status all say this.
    pub fn is_ready(&self) -> bool {
        self.models.ready().is_some()
            && !self.admission.is_draining()
            && !self.admission.queue_full()
    }
}
