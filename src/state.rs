//! What every handler reads: the configuration, the model registry, the generation service, metrics
//! and span export. Its own module so that the routes and the server that builds it import it from
//! below rather than from each other.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::config::keys::KeysSpec;
use crate::config::Config;
use crate::gateway::limiter::Limiter;
use crate::gateway::quota::Quotas;
use crate::gateway::redis_quota::{RedisSettings, SharedQuotas};
use crate::gateway::Gateway;
use crate::generation::GenerationService;
use crate::metrics::Metrics;
use crate::models::loading::MistralLoader;
use crate::models::{ModelRegistry, RegistryError};
use crate::otlp::SpanExporter;
use crate::remote_images::RemoteImages;
use crate::responses::store::ResponseStore;

/// What every handler reads.
pub struct AppState {
    pub config: Arc<Config>,
    /// The models, each version with its own admission queue.
    pub models: ModelRegistry,
    /// API keys: who may call what.
    pub gateway: Gateway,
    /// Per-key limits: in this process, or in Redis.
    pub limiter: Limiter,
    pub metrics: Arc<Metrics>,
    /// Span export, when `--otlp-endpoint` is set (started inside the runtime by `start`).
    pub spans: Option<SpanExporter>,
    /// The one entrance for generation (chat, completions, Responses, embeddings; HTTP and gRPC).
    pub generation: GenerationService,
    /// Responses kept for `previous_response_id` and `GET /v1/responses/{id}`.
    pub responses: Arc<ResponseStore>,
    /// Set the first time the server is ready: the startup probe's answer from then on.
    started: AtomicBool,
}

/// The Redis behind `--limits-redis`, when set: its URLs parsed and its CA file read.
pub fn redis_settings(
    config: &Config,
) -> Result<Option<RedisSettings>, crate::gateway::redis_quota::SharedLimitsError> {
    config
        .limits
        .redis
        .as_deref()
        .map(|urls| RedisSettings::from_flags(urls, config.limits.redis_ca_file.as_deref()))
        .transpose()
}

impl AppState {
    /// A state whose registry loads with mistral.rs; it holds no model until the spec is applied.
    /// `keys`: the models file's, read once with its models (none with the flags alone), in force
    /// from the first request.
    pub fn new(config: Config, keys: KeysSpec) -> Self {
        let metrics = Arc::new(Metrics::new());
        let models = ModelRegistry::new(
            metrics.clone(),
            Arc::new(MistralLoader),
            config.server.drain_timeout,
            config.models_file.is_some(),
        );
        for key in &keys.keys {
            metrics.declare_key(&key.id);
        }
        AppState {
            gateway: Gateway::new(keys),
            limiter: match redis_settings(&config).expect("server::start checks --limits-redis") {
                Some(settings) => Limiter::Shared(
                    SharedQuotas::new(&settings, config.limits.replicas)
                        .expect("server::start checks --limits-redis"),
                ),
                None => Limiter::Local(Quotas::default()),
            },
            spans: None,
            responses: Arc::new(
                ResponseStore::new(
                    config.server.responses_store,
                    redis_settings(&config)
                        .expect("server::start checks --limits-redis")
                        .as_ref(),
                )
                .expect("server::start checks --limits-redis"),
            ),
            generation: GenerationService::new(
                models.clone(),
                config.server.allow_remote_images.then(RemoteImages::new),
                config.server.sse_keep_alive,
            ),
            models,
            metrics,
            config: Arc::new(config),
            started: AtomicBool::new(false),
        }
    }

    /// Whether the server has been ready at least once (`ready_now`: whether it is now).
    pub fn started(&self, ready_now: bool) -> bool {
        if ready_now {
            self.started.store(true, Ordering::Relaxed);
        }
        self.started.load(Ordering::Relaxed)
    }

    /// Whether this server takes new requests: not draining, and every alias has a ready version with
    /// room in its queue. The HTTP readiness probe, the `llmserve_ready` gauge and the gRPC health status
    /// all say this.
    pub fn is_ready(&self) -> bool {
        let aliases = self.models.readiness();
        !self.models.is_draining() && !aliases.is_empty() && aliases.iter().all(|a| a.ready)
    }
}

impl AppState {
    /// Reads the models file again and applies what changed (SIGHUP, `POST /admin/reload`). A file that
    /// does not read, parse or validate changes nothing; the reason is returned (and logged).
    pub fn reload_models_file(&self) -> Result<Vec<String>, RegistryError> {
        let outcome = match &self.config.models_file {
            None => Err(RegistryError::Invalid(
                "no models file to reload: the server was started without --config".into(),
            )),
            Some(_) => self
                .config
                .models_spec()
                .map_err(|e| RegistryError::Invalid(e.to_string()))
                .and_then(|spec| {
                    let keys = spec.keys.clone();
                    let mut changes = self.models.apply(spec)?;
                    for key in &keys.keys {
                        self.metrics.declare_key(&key.id);
                    }
                    // Keys change only with a file the registry took: a refused file changes nothing.
                    if self.gateway.replace(keys) {
                        changes.push("keys replaced".to_string());
                    }
                    Ok(changes)
                }),
        };
        match &outcome {
            Ok(changes) if changes.is_empty() => tracing::info!("reload: nothing changed"),
            Ok(changes) => tracing::info!(changes = %changes.join("; "), "reload applied"),
            Err(error) => tracing::error!(%error, "reload refused; serving on as before"),
        }
        outcome
    }
}
