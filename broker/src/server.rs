//! The broker's gRPC server: `PublishService`, `grpc.health.v1` and server reflection on one listener.

use std::sync::Arc;

use crier_proto::v1::FILE_DESCRIPTOR_SET;
use crier_proto::v1::admin_service_server::AdminServiceServer;
use crier_proto::v1::publish_service_server::PublishServiceServer;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

use crate::admin_service::AdminServiceImpl;
use crate::control::ControlPlane;
use crate::publish_service::PublishServiceImpl;
use crate::publisher::Publisher;

/// Why the server stopped abnormally.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The reflection service could not be built from the embedded descriptors.
    #[error("building the reflection service: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    /// The transport failed.
    #[error("gRPC transport: {0}")]
    Transport(#[from] tonic::transport::Error),
}

/// Serves `PublishService` (no `AdminService`) on `listener` until `shutdown`; see [`serve`].
pub async fn run(
    listener: TcpListener,
    publisher: Publisher,
    shutdown: CancellationToken,
) -> Result<(), ServeError> {
    serve(listener, publisher, None, shutdown).await
}

/// Serves the broker's gRPC API on `listener` until `shutdown` is cancelled: `PublishService`, and
/// `AdminService` when given a control plane. Then health turns NOT_SERVING (overall `""` and per
/// service), the listener closes, and in-flight calls finish before this returns.
pub async fn serve(
    listener: TcpListener,
    publisher: Publisher,
    control: Option<Arc<dyn ControlPlane>>,
    shutdown: CancellationToken,
) -> Result<(), ServeError> {
    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_serving::<PublishServiceServer<PublishServiceImpl>>().await;
    health.set_service_status("", ServingStatus::Serving).await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    let addr = listener.local_addr().ok();
    tracing::info!(?addr, "broker listening for gRPC");
    Server::builder()
        .add_service(health_service)
        .add_service(reflection)
        .add_service(PublishServiceServer::new(PublishServiceImpl::new(publisher)))
        .add_optional_service(control.map(|c| AdminServiceServer::new(AdminServiceImpl::new(c))))
        .serve_with_incoming_shutdown(TcpIncoming::from(listener), drain(health, shutdown))
        .await?;
    Ok(())
}

/// Resolves once `shutdown` is cancelled, after health has turned NOT_SERVING.
async fn drain(health: HealthReporter, shutdown: CancellationToken) {
    shutdown.cancelled().await;
    tracing::info!("broker draining: health NOT_SERVING, finishing in-flight calls");
    health.set_service_status("", ServingStatus::NotServing).await;
    health.set_not_serving::<PublishServiceServer<PublishServiceImpl>>().await;
}
