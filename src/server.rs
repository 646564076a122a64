//! The servers: the HTTP `app` that `main` and the tests both serve, the metrics and gRPC ports beside it,
//! start-up (the model loads in the background: `models::loading`) and the drain.

use std::net::SocketAddr;

use actix_web::body::MessageBody;
use actix_web::dev::{ServerHandle, ServiceFactory, ServiceRequest, ServiceResponse};
use actix_web::middleware::from_fn;
use actix_web::{web, App, HttpServer};

use crate::config::{Config, ModelsSpec};
use crate::extract::BodyLimit;
use crate::otlp::SpanExporter;
use crate::state::AppState;
use crate::{grpc, openapi, process_memory, routes};

/// The application: routes, the JSON body limit, request ids and logs, JSON 404s.
pub fn app(
    state: web::Data<AppState>,
) -> App<
    impl ServiceFactory<
        ServiceRequest,
        Config = (),
        Response = ServiceResponse<impl MessageBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    let limit = BodyLimit {
        max_bytes: state.config.server.max_request_body_bytes,
        read_timeout: state.config.server.body_read_timeout,
        min_bytes_per_sec: state.config.server.body_min_rate,
    };
    let metrics_here = state.config.server.metrics_port.is_none();
    let with_ui = state.config.server.ui;
    let cors = cors(&state.config.server.cors_allow_origins);
    let mut app = App::new().app_data(web::Data::from(state.metrics.clone()));
    // Registered only when configured: the middleware looks the exporter up by type.
    if let Some(spans) = state.spans.clone() {
        app = app.app_data(web::Data::new(spans));
    }
    app.app_data(state)
        .app_data(web::Data::new(limit))
        // The last wrapped runs first: CORS answers preflights before any key is asked for; every
        // request, refused or not, is logged; then the key is read (each handler's `Guarded` decides).
        .wrap(from_fn(routes::auth::authenticate))
        .wrap(from_fn(routes::http_log::request_context))
        .wrap(actix_web::middleware::Condition::new(
            cors.is_some(),
            cors.unwrap_or_default(),
        ))
        .configure(|cfg| routes::configure(cfg, metrics_here, with_ui))
        .configure(openapi::configure)
        .default_service(routes::guarded(web::route(), routes::not_found))
}

/// CORS for `--cors-allow-origin`; `None` when no origin is allowed.
fn cors(origins: &[String]) -> Option<actix_cors::Cors> {
    if origins.is_empty() {
        return None;
    }
    let mut cors = actix_cors::Cors::default()
        .allowed_methods(["GET", "POST", "PUT", "DELETE", "OPTIONS"])
        .allowed_headers([
            actix_web::http::header::AUTHORIZATION,
            actix_web::http::header::CONTENT_TYPE,
            actix_web::http::header::HeaderName::from_static("x-api-key"),
            actix_web::http::header::HeaderName::from_static("x-request-id"),
        ])
        .expose_headers([
            "x-request-id",
            "x-llmserve-model-version",
            "x-ratelimit-limit-requests",
            "x-ratelimit-remaining-requests",
            "x-ratelimit-reset-requests",
            "x-ratelimit-limit-tokens",
            "x-ratelimit-remaining-tokens",
            "x-ratelimit-reset-tokens",
            "retry-after",
        ])
        .max_age(3600);
    for origin in origins {
        cors = if origin == "*" {
            cors.allow_any_origin()
        } else {
            cors.allowed_origin(origin.trim_end_matches('/'))
        };
    }
    Some(cors)
}

/// The app of the separate `--metrics-port`: `/metrics` only (its scrapes are not themselves counted).
fn metrics_app(
    state: web::Data<AppState>,
) -> App<
    impl ServiceFactory<
        ServiceRequest,
        Config = (),
        Response = ServiceResponse<impl MessageBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    App::new()
        .app_data(state)
        // Whoever reaches this port may read the metrics, and nothing else.
        .wrap(from_fn(routes::auth::scraper))
        .configure(routes::metrics::configure)
        .default_service(routes::guarded(web::route(), routes::not_found))
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("could not bind {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
    #[error("server failed: {0}")]
    Server(#[from] std::io::Error),
    #[error("{0}")]
    ModelLoad(String),
    #[error("{0}")]
    CpuKernels(String),
}

/// A bound server whose model loads in the background (probes answer 503 until it is ready).
pub struct RunningServer {
    pub local_addr: SocketAddr,
    /// Where `/metrics` is served when `--metrics-port` is set.
    pub metrics_addr: Option<SocketAddr>,
    /// Where gRPC is served when `--grpc-port` is set.
    pub grpc_addr: Option<SocketAddr>,
    pub state: web::Data<AppState>,
    server: actix_web::dev::Server,
    side_servers: SideServers,
}

/// The servers beside the API port, stopped after it.
struct SideServers {
    metrics: Option<ServerHandle>,
    /// Dropping (or sending on) it stops the gRPC server, which then lets its last calls end.
    grpc: Option<GrpcServer>,
}

impl SideServers {
    async fn stop(self) {
        if let Some(handle) = self.metrics {
            handle.stop(false).await;
        }
        if let Some((stop, task)) = self.grpc {
            let _ = stop.send(());
            let _ = tokio::time::timeout(ABORT_GRACE, task).await;
        }
    }
}

impl RunningServer {
    pub fn handle(&self) -> ServerHandle {
        self.server.handle()
    }

    /// Serves until stopped (model-load failure, or a handle's `stop`); a failed load is an error.
    pub async fn wait(self) -> Result<(), ServeError> {
        let RunningServer {
            state,
            server,
            side_servers,
            ..
        } = self;
        server.await?;
        side_servers.stop().await;
        outcome(&state)
    }

    /// Serves until SIGTERM or SIGINT, then drains: readiness turns 503, new and queued requests get 503
    /// with `Retry-After`, admitted requests and streams run to completion for up to `--drain-timeout`.
    /// A second signal, or the timeout, ends what is left with an error event and `[DONE]`.
    ///
    /// SIGHUP reads the models file again and applies what changed (`AppState::reload_models_file`).
    pub async fn serve_until_signalled(self) -> Result<(), ServeError> {
        use tokio::signal::unix::{signal, SignalKind};
        let mut terminate = signal(SignalKind::terminate())?;
        let mut interrupt = signal(SignalKind::interrupt())?;
        let mut hangup = signal(SignalKind::hangup())?;
        let RunningServer {
            state,
            mut server,
            side_servers,
            ..
        } = self;
        let handle = server.handle();
        loop {
            tokio::select! {
                finished = &mut server => {
                    finished?;
                    side_servers.stop().await;
                    return outcome(&state);
                }
                _ = hangup.recv() => {
                    tracing::info!("SIGHUP: reloading the models file");
                    // Refusals are logged where they are decided; the server serves on either way.
                    let _ = state.reload_models_file();
                    continue;
                }
                _ = terminate.recv() => {}
                _ = interrupt.recv() => {}
            }
            break;
        }
        let (running, waiting) = state.models.load();
        tracing::info!(
            running,
            waiting,
            timeout_secs = state.config.server.drain_timeout.as_secs(),
            "signal received: draining"
        );
        state.models.start_draining();
        let idle = async {
            for admission in state.models.admissions() {
                admission.idle().await;
            }
        };
        let drained = tokio::select! {
            _ = idle => true,
            _ = tokio::time::sleep(state.config.server.drain_timeout) => false,
            _ = terminate.recv() => false,
            _ = interrupt.recv() => false,
        };
        if drained {
            tracing::info!("drained: every request finished");
        } else {
            tracing::warn!(
                running = state.models.load().0,
                "ending the requests still running"
            );
            let admissions = state.models.admissions();
            for admission in &admissions {
                admission.abort_all();
            }
            // Ended streams still send their error event and [DONE].
            let idle = async {
                for admission in &admissions {
                    admission.idle().await;
                }
            };
            let _ = tokio::time::timeout(ABORT_GRACE, idle).await;
        }
        state.limiter.stop().await;
        tokio::spawn(handle.stop(true));
        server.await?;
        side_servers.stop().await;
        outcome(&state)
    }
}

/// How long actix waits for connections to close once we stop it (after our own drain).
const SHUTDOWN_TIMEOUT_SECS: u64 = 5;
/// How long ended streams get to write their error event before the server stops.
const ABORT_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

/// With the flags' one model, a model that failed to load ends the server with an error; a models file's
/// failures are reported in `/v1/models` while the other models serve.
fn outcome(state: &AppState) -> Result<(), ServeError> {
    if state.config.models_file.is_some() {
        return Ok(());
    }
    match state.models.failures().into_iter().next() {
        Some((_, reason)) => Err(ServeError::ModelLoad(reason)),
        None => Ok(()),
    }
}

/// Binds the port and starts loading the model. Call inside a multi-thread tokio runtime.
pub fn start(config: Config) -> Result<RunningServer, ServeError> {
    let bind_addr = (config.server.host, config.server.port);
    let workers = config.server.http_workers;
    let spans =
        config.telemetry.otlp_endpoint.as_deref().map(|endpoint| {
            SpanExporter::start(endpoint, config.telemetry.otlp_service_name.clone())
        });
    // Read once: the keys are in force before the port answers, and the models are those of the same
    // file contents.
    let spec = config
        .models_spec()
        .map_err(|e| ServeError::ModelLoad(e.to_string()))?;
    crate::state::redis_settings(&config).map_err(|e| ServeError::ModelLoad(e.to_string()))?;
    let cpu_kernels = crate::engine::mistral::cpu_kernels::apply(config.cpu_kernels)
        .map_err(ServeError::CpuKernels)?;
    tracing::info!(cpu_kernels, "CPU matmul kernels");
    crate::engine::mistral::prefix_cache::limit_bytes(config.prefix_cache_bytes);
    let mut state = AppState::new(config, spec.keys.clone());
    state.spans = spans;
    state.limiter.start();
    let state = web::Data::new(state);
    if let (Some(path), Some(every)) = (&state.config.models_file, state.config.models_file_poll) {
        crate::reload::spawn_models_file_watch(state.clone(), path, every);
    }
    let app_state = state.clone();
    // HTTP clients do not half-close; a read EOF means the client is gone. Without this, actix keeps a
    // non-streaming handler (and its engine sequence) running until the answer is complete.
    let mut http = HttpServer::new(move || app(app_state.clone()))
        .h1_allow_half_closed(false)
        // Signals are ours (`serve_until_signalled`): actix's own graceful stop knows nothing of SSE streams.
        .disable_signals()
        .shutdown_timeout(SHUTDOWN_TIMEOUT_SECS);
    if let Some(workers) = workers {
        http = http.workers(workers);
    }
    let http = http.bind(bind_addr).map_err(|source| ServeError::Bind {
        addr: format!("{}:{}", bind_addr.0, bind_addr.1),
        source,
    })?;
    let local_addr = http.addrs()[0];
    let (metrics_addr, metrics_server) = match state.config.server.metrics_port {
        Some(port) => {
            let (addr, handle) = start_metrics_server(state.clone(), (bind_addr.0, port))?;
            (Some(addr), Some(handle))
        }
        None => (None, None),
    };
    let (grpc_addr, grpc) = match state.config.server.grpc_port {
        Some(port) => {
            let (addr, running) = start_grpc_server(state.clone(), (bind_addr.0, port))?;
            (Some(addr), Some(running))
        }
        None => (None, None),
    };
    let server = http.run();
    start_models(state.clone(), spec, server.handle())?;
    let watched = state.clone();
    process_memory::spawn_idle_trimmer(move || {
        watched.models.load() != (0, 0)
            || watched
                .models
                .ready_versions()
                .iter()
                .any(|model| model.engine.sequences_alive() > 0)
    });
    Ok(RunningServer {
        local_addr,
        metrics_addr,
        grpc_addr,
        state,
        server,
        side_servers: SideServers {
            metrics: metrics_server,
            grpc,
        },
    })
}

type GrpcServer = (
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<()>,
);

fn start_grpc_server(
    state: web::Data<AppState>,
    bind_addr: (std::net::IpAddr, u16),
) -> Result<(SocketAddr, GrpcServer), ServeError> {
    let bind_error = |source| ServeError::Bind {
        addr: format!("{}:{}", bind_addr.0, bind_addr.1),
        source,
    };
    let (listener, addr) = grpc::bind(bind_addr).map_err(bind_error)?;
    let listener = tokio::net::TcpListener::from_std(listener).map_err(bind_error)?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tracing::info!(%addr, "gRPC listening");
    let task = tokio::spawn(async move {
        let shutdown = async {
            let _ = stopped.await;
        };
        if let Err(error) = grpc::serve(state.into_inner(), listener, shutdown).await {
            tracing::error!(%error, "the gRPC server failed");
        }
    });
    Ok((addr, (stop, task)))
}

fn start_metrics_server(
    state: web::Data<AppState>,
    bind_addr: (std::net::IpAddr, u16),
) -> Result<(SocketAddr, ServerHandle), ServeError> {
    let http = HttpServer::new(move || metrics_app(state.clone()))
        .workers(1)
        .disable_signals()
        .bind(bind_addr)
        .map_err(|source| ServeError::Bind {
            addr: format!("{}:{}", bind_addr.0, bind_addr.1),
            source,
        })?;
    let addr = http.addrs()[0];
    let server = http.run();
    let handle = server.handle();
    tokio::spawn(server);
    Ok((addr, handle))
}

/// Applies the configured models (they load in the background, one at a time). With the flags' one model,
/// a failed load stops the server (`wait` and `serve_until_signalled` then return the error).
fn start_models(
    state: web::Data<AppState>,
    spec: ModelsSpec,
    server: ServerHandle,
) -> Result<(), ServeError> {
    tracing::info!(
        versions = spec.versions.len(),
        aliases = spec.aliases.len(),
        default_model = %spec.default_alias,
        "loading models"
    );
    state
        .models
        .apply(spec)
        .map_err(|e| ServeError::ModelLoad(e.to_string()))?;
    if state.config.models_file.is_none() {
        tokio::spawn(async move {
            state.models.settled().await;
            if let Some((version, error)) = state.models.failures().into_iter().next() {
                tracing::error!(%version, %error, "the model failed to load; shutting down");
                server.stop(false).await;
            }
        });
    }
    Ok(())
}

#[cfg(test)]
mod access_limit_tests;
#[cfg(test)]
mod access_support;
#[cfg(test)]
mod access_tests;
#[cfg(test)]
mod queue_tests;
#[cfg(test)]
mod test_support;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tool_call_tests;
