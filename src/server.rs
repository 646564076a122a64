//! The servers: the HTTP `app` that `main` and the tests both serve, the metrics and gRPC ports beside it,
//! start-up (the model loads in the background: `models::loading`) and the drain.

use std::net::SocketAddr;

use actix_web::body::MessageBody;
use actix_web::dev::{ServerHandle, ServiceFactory, ServiceRequest, ServiceResponse};
use actix_web::middleware::from_fn;
use actix_web::{web, App, HttpServer};

use crate::config::Config;
use crate::extract::BodyLimit;
use crate::models::{loading, LoadState};
use crate::otlp::SpanExporter;
use crate::state::AppState;
use crate::{grpc, memory, openapi, routes, telemetry};

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
    let limit = BodyLimit(state.config.server.max_request_body_bytes);
    let metrics_here = state.config.server.metrics_port.is_none();
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
            timeout_secs = state.config.server.drain_timeout.as_secs(),
            "signal received: draining"
        );
        admission.start_draining();
        let drained = tokio::select! {
            _ = admission.idle() => true,
            _ = tokio::time::sleep(state.config.server.drain_timeout) => false,
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
    let bind_addr = (config.server.host, config.server.port);
    let workers = config.server.http_workers;
    let spans =
        config.telemetry.otlp_endpoint.as_deref().map(|endpoint| {
            SpanExporter::start(endpoint, config.telemetry.otlp_service_name.clone())
        });
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
    tracing::info!(
        model = state.models.name(),
        source = ?state.config.model.source,
        "loading model"
    );
    tracing::info!("paged attention {}", state.config.paged_attention_reason);
    let runtime = tokio::runtime::Handle::current();
    let source = state.config.model.source.clone();
    let settings = state.config.engine.clone();
    loading::load_in_background(source, settings, move |loaded| match loaded {
        Ok(engine) => {
            tracing::info!(
                model = state.models.name(),
                context_length = engine.info().context_length,
                "model ready"
            );
            state.models.set_ready(engine);
            // Loading leaves its temporary buffers (GGUF reads, requantization) in the heap.
            memory::trim();
            state
                .metrics
                .set_model_loaded(state.models.name(), &state.config.model.version, true);
        }
        Err(error) => {
            tracing::error!(%error, "model failed to load; shutting down");
            state.models.set_failed(error.to_string());
            runtime.spawn(server.stop(false));
        }
    });
}

#[cfg(test)]
mod tests;
