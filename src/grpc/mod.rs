//! The gRPC front (`--grpc-port`): `llmserve.v1.Llmserve` (proto/llmserve/v1/llmserve.proto), the standard
//! `grpc.health.v1.Health` service and server reflection, on a port of its own.
//!
//! A thin adapter like the HTTP routes: requests become the same wire requests, pass the same validation,
//! model lookup, admission queue and generation core, and are logged and counted like HTTP requests
//! (`transport="grpc"`). Health says SERVING exactly when HTTP readiness answers 200 (`AppState::is_ready`).

pub mod auth;
mod convert;
mod frames;
mod service;
mod status;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;

use crate::state::AppState;

/// The code generated from the `.proto` by build.rs.
pub mod proto {
    #![allow(clippy::all, clippy::pedantic)]
    tonic::include_proto!("llmserve.v1");

    /// The encoded descriptors of the `.proto`, for server reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/llmserve_descriptor.bin"));
}

/// The fully qualified service name, as health checks name it.
pub const SERVICE_NAME: &str = "llmserve.v1.Llmserve";

/// How often the health status follows the model's readiness and the drain.
const HEALTH_POLL: Duration = Duration::from_millis(200);

/// Serves gRPC on `listener` until `shutdown` resolves.
pub async fn serve(
    state: Arc<AppState>,
    listener: TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), tonic::transport::Error> {
    let (reporter, health) = tonic_health::server::health_reporter();
    let following = tokio::spawn(follow_health(state.clone(), reporter));
    let reflection_v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .expect("the descriptors are valid");
    // grpcurl and older clients still ask the v1alpha reflection service.
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()
        .expect("the descriptors are valid");
    // Every call passes one exhaustive table of methods first (`auth`): authenticated, authorized and,
    // where it counts, admitted against its key before its message is decoded.
    let served = tonic::transport::Server::builder()
        .layer(auth::AuthLayer {
            state: state.clone(),
        })
        .add_service(health)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(proto::llmserve_server::LlmserveServer::new(
            service::GrpcService::new(state),
        ))
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), shutdown)
        .await;
    following.abort();
    served
}

/// Binds the gRPC port now, so that a taken port fails start-up like the HTTP one.
pub fn bind(addr: (std::net::IpAddr, u16)) -> std::io::Result<(std::net::TcpListener, SocketAddr)> {
    let listener = std::net::TcpListener::bind(addr)?;
    listener.set_nonblocking(true)?;
    let local = listener.local_addr()?;
    Ok((listener, local))
}

async fn follow_health(state: Arc<AppState>, reporter: tonic_health::server::HealthReporter) {
    use tonic_health::ServingStatus;
    let mut last = None;
    loop {
        let serving = state.is_ready();
        if last != Some(serving) {
            let status = if serving {
                ServingStatus::Serving
            } else {
                ServingStatus::NotServing
            };
            for service in ["", SERVICE_NAME] {
                reporter.set_service_status(service, status).await;
            }
            last = Some(serving);
        }
        tokio::time::sleep(HEALTH_POLL).await;
    }
}
