//! The servers: the HTTP `app` that `main` and the tests both serve, the metrics and gRPC ports beside it,
//! start-up, the drain, and model loading.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use actix_web::body::MessageBody;
use actix_web::dev::{ServerHandle, ServiceFactory, ServiceRequest, ServiceResponse};
use actix_web::middleware::from_fn;
use actix_web::{web, App, HttpServer};

use crate::config::{Config, ModelSource};
use crate::engine::mistral::{LoadOptions, LoadTarget, MistralEngine};
use crate::engine::{Engine, EngineError};
use crate::extract::BodyLimit;
use crate::models::LoadState;
use crate::otlp::SpanExporter;
use crate::state::AppState;
use crate::{default_model, grpc, memory, openapi, routes, telemetry};

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
    let limit = BodyLimit(state.config.max_request_body_bytes);
    let metrics_here = state.config.metrics_port.is_none();
    let mut app = App::new().app_data(web::Data::from(state.metrics.clone()));
    // Registered only when configured: the middleware looks the exporter up by type.
    if let Some(spans) = state.spans.clone() {
        app = app.app_data(web::Data::new(spans));
    }
    app.app_data(state)
        .app_data(web::Data::new(limit))
        .wrap(from_fn(telemetry::request_context))
        .configure(|cfg| routes::configure(cfg, metrics_here))
        .configure(openapi::configure)
        .default_service(web::to(routes::not_found))
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
        .configure(routes::metrics::configure)
        .default_service(web::to(routes::not_found))
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
    pub async fn serve_until_signalled(self) -> Result<(), ServeError> {
        use tokio::signal::unix::{signal, SignalKind};
        let mut terminate = signal(SignalKind::terminate())?;
        let mut interrupt = signal(SignalKind::interrupt())?;
        let RunningServer {
            state,
            mut server,
            side_servers,
            ..
        } = self;
        let handle = server.handle();
        tokio::select! {
            finished = &mut server => {
                finished?;
                side_servers.stop().await;
                return outcome(&state);
            }
            _ = terminate.recv() => {}
            _ = interrupt.recv() => {}
        }
        let admission = &state.admission;
        tracing::info!(
            running = admission.requests_running(),
            waiting = admission.requests_waiting(),
            timeout_secs = state.config.drain_timeout.as_secs(),
            "signal received: draining"
        );
        admission.start_draining();
        let drained = tokio::select! {
            _ = admission.idle() => true,
            _ = tokio::time::sleep(state.config.drain_timeout) => false,
            _ = terminate.recv() => false,
            _ = interrupt.recv() => false,
        };
        if drained {
            tracing::info!("drained: every request finished");
        } else {
            tracing::warn!(
                running = admission.requests_running(),
                "ending the requests still running"
            );
            admission.abort_all();
            // Ended streams still send their error event and [DONE].
            let _ = tokio::time::timeout(ABORT_GRACE, admission.idle()).await;
        }
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

fn outcome(state: &AppState) -> Result<(), ServeError> {
    match state.models.state() {
        LoadState::Failed(reason) => Err(ServeError::ModelLoad(reason)),
        _ => Ok(()),
    }
}

/// Binds the port and starts loading the model. Call inside a multi-thread tokio runtime.
pub fn start(config: Config) -> Result<RunningServer, ServeError> {
    let bind_addr = (config.host, config.port);
    let workers = config.http_workers;
    let spans = config
        .otlp_endpoint
        .as_deref()
        .map(|endpoint| SpanExporter::start(endpoint, config.otlp_service_name.clone()));
    let state = web::Data::new(AppState {
        spans,
        ..AppState::new(config)
    });
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
    let (metrics_addr, metrics_server) = match state.config.metrics_port {
        Some(port) => {
            let (addr, handle) = start_metrics_server(state.clone(), (bind_addr.0, port))?;
            (Some(addr), Some(handle))
        }
        None => (None, None),
    };
    let (grpc_addr, grpc) = match state.config.grpc_port {
        Some(port) => {
            let (addr, running) = start_grpc_server(state.clone(), (bind_addr.0, port))?;
            (Some(addr), Some(running))
        }
        None => (None, None),
    };
    let server = http.run();
    spawn_model_loader(state.clone(), server.handle());
    let watched = state.clone();
    memory::spawn_idle_trimmer(move || {
        watched.admission.requests_running() > 0
            || watched.admission.requests_waiting() > 0
            || watched
                .models
                .ready()
                .is_some_and(|model| model.engine.sequences_alive() > 0)
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

fn spawn_model_loader(state: web::Data<AppState>, server: ServerHandle) {
    let runtime = tokio::runtime::Handle::current();
    // Loading blocks for seconds to minutes (pip, requantization, mistral.rs's synchronous loader): it runs on
    // a blocking thread, never on an HTTP worker.
    tokio::task::spawn_blocking(move || {
        let loaded = resolve_target(&state.config.model_source).and_then(|target| {
            tracing::info!(model = state.models.name(), ?target, "loading model");
            tracing::info!("paged attention {}", state.config.paged_attention_reason);
            let options = LoadOptions {
                max_num_seqs: state.config.max_num_seqs,
                prefix_cache_n: state.config.prefix_cache_n,
                dtype: state.config.dtype,
                paged_attention: state.config.paged_attention,
                chat_template: state.config.chat_template.clone(),
            };
            runtime.block_on(MistralEngine::load(target, options))
        });
        match loaded {
            Ok(engine) => {
                tracing::info!(
                    model = state.models.name(),
                    context_length = engine.info().context_length,
                    "model ready"
                );
                state.models.set_ready(Arc::new(engine));
                // Loading leaves its temporary buffers (GGUF reads, requantization) in the heap.
                memory::trim();
                state.metrics.set_model_loaded(
                    state.models.name(),
                    &state.config.model_version,
                    true,
                );
            }
            Err(error) => {
                tracing::error!(%error, "model failed to load; shutting down");
                state.models.set_failed(error.to_string());
                runtime.spawn(server.stop(false));
            }
        }
    });
}

/// Turns the configured source into files the loader can open, fetching the default model if needed.
fn resolve_target(source: &ModelSource) -> Result<LoadTarget, EngineError> {
    match source {
        ModelSource::Default { cache_dir } => gguf_file_target(&default_model::ensure(cache_dir)?),
        ModelSource::GgufFile(path) => gguf_file_target(path),
        ModelSource::LocalDir(dir) => local_dir_target(dir),
        ModelSource::HubRepo { repo, multimodal } => Ok(LoadTarget::Hub {
            repo: repo.clone(),
            multimodal: *multimodal,
        }),
    }
}

fn gguf_file_target(path: &Path) -> Result<LoadTarget, EngineError> {
    let path = path
        .canonicalize()
        .map_err(|e| EngineError::Load(format!("{}: {e}", path.display())))?;
    let dir = path
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("/"));
    let file = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .ok_or_else(|| EngineError::Load(format!("{}: not a file", path.display())))?;
    Ok(LoadTarget::Gguf {
        dir,
        files: vec![file],
    })
}

fn local_dir_target(dir: &Path) -> Result<LoadTarget, EngineError> {
    let entries =
        std::fs::read_dir(dir).map_err(|e| EngineError::Load(format!("{}: {e}", dir.display())))?;
    let mut ggufs: Vec<String> = entries
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| name.to_ascii_lowercase().ends_with(".gguf"))
        .collect();
    ggufs.sort();
    let is_split = |name: &str| name.contains("-of-");
    match ggufs.len() {
        0 if dir.join("config.json").is_file() || dir.join("params.json").is_file() => {
            Ok(LoadTarget::Safetensors(dir.to_path_buf()))
        }
        0 => Err(EngineError::Load(format!(
            "{}: no .gguf file and no config.json: not a model directory",
            dir.display()
        ))),
        1 => gguf_file_target(&dir.join(&ggufs[0])),
        _ if ggufs.iter().all(|name| is_split(name)) => Ok(LoadTarget::Gguf {
            dir: dir.to_path_buf(),
            files: ggufs,
        }),
        _ => Err(EngineError::Load(format!(
            "{}: several GGUF files ({}); pass one with --model {}/FILE.gguf",
            dir.display(),
            ggufs.join(", "),
            dir.display()
        ))),
    }
}

#[cfg(test)]
mod tests;
