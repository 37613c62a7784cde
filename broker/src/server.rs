//! The broker's gRPC server: `PublishService`, `AccessService`, `grpc.health.v1` and server reflection on
//! one listener. Publish and Access calls pass the API-token interceptor first.

use std::sync::Arc;

use crier_proto::v1::FILE_DESCRIPTOR_SET;
use crier_proto::v1::access_service_server::AccessServiceServer;
use crier_proto::v1::publish_service_server::PublishServiceServer;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;

use crate::access::AccessStore;
use crate::access_service::AccessServiceImpl;
use crate::api_token::ApiToken;
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

/// What the broker serves.
pub struct Services {
    /// Backs `PublishService`.
    pub publisher: Publisher,
    /// Backs `AccessService`.
    pub access: Arc<dyn AccessStore>,
    /// Shared bearer secret of publishers; `None` lets every caller through.
    pub api_token: Option<String>,
}

/// Serves the broker's gRPC API on `listener` until `shutdown` is cancelled, then finishes in-flight calls.
pub async fn run(
    listener: TcpListener,
    services: Services,
    shutdown: CancellationToken,
) -> Result<(), ServeError> {
    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_serving::<PublishServiceServer<PublishServiceImpl>>().await;
    health.set_serving::<AccessServiceServer<AccessServiceImpl>>().await;
    let token = ApiToken::new(services.api_token.as_deref());
    let publish =
        PublishServiceServer::with_interceptor(PublishServiceImpl::new(services.publisher), token.clone());
    let access = AccessServiceServer::with_interceptor(AccessServiceImpl::new(services.access), token);
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    let addr = listener.local_addr().ok();
    tracing::info!(?addr, "broker listening for gRPC");
    Server::builder()
        .add_service(health_service)
        .add_service(reflection)
        .add_service(publish)
        .add_service(access)
        .serve_with_incoming_shutdown(TcpIncoming::from(listener), shutdown.cancelled_owned())
        .await?;
    Ok(())
}
