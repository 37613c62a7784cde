//! The broker's gRPC server: `PublishService`, `AccessService`, `AdminService` (with a control plane),
//! `grpc.health.v1` and server reflection on one listener. Publish, Access and Admin calls pass the API-token
//! interceptor first.

use std::sync::Arc;
use std::time::Duration;

use crier_proto::v1::FILE_DESCRIPTOR_SET;
use crier_proto::v1::access_service_server::AccessServiceServer;
use crier_proto::v1::admin_service_server::AdminServiceServer;
use crier_proto::v1::publish_service_server::PublishServiceServer;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

use crate::access_service::AccessServiceImpl;
use crate::admin_service::AdminServiceImpl;
use crate::api_token::ApiToken;
use crate::publish_service::PublishServiceImpl;
use crate::publisher::Publisher;
use crier_store::access::AccessStore;
use crier_store::control::ControlPlane;

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
    /// Bearer secret of `AdminService` callers; `None` leaves it behind `api_token`.
    pub admin_token: Option<String>,
    /// Serve gRPC over TLS; `None`: plaintext (h2c).
    pub tls: Option<BrokerTls>,
}

/// The broker's TLS identity and, for mTLS, the CA client certificates must chain to. PEM, already read and
/// checked by the caller (the CLI refuses bad files with exit 64).
#[derive(Debug, Clone)]
pub struct BrokerTls {
    /// Certificate chain, leaf first.
    pub cert_pem: Vec<u8>,
    /// The leaf's private key.
    pub key_pem: Vec<u8>,
    /// Require client certificates signed by these CAs; `None`: no client certificates asked for.
    pub client_ca_pem: Option<Vec<u8>>,
    /// Bound on one TLS handshake (handshakes run concurrently, each in its own task).
    pub handshake_timeout: Duration,
}

impl BrokerTls {
    fn server_config(&self) -> ServerTlsConfig {
        let identity = Identity::from_pem(&self.cert_pem, &self.key_pem);
        let config = ServerTlsConfig::new().identity(identity).timeout(self.handshake_timeout);
        match &self.client_ca_pem {
            Some(ca) => config.client_ca_root(Certificate::from_pem(ca)),
            None => config,
        }
    }
}

/// Serves `PublishService` and `AccessService` (no `AdminService`) on `listener` until `shutdown`; see
/// [`serve`].
pub async fn run(
    listener: TcpListener,
    services: Services,
    shutdown: CancellationToken,
) -> Result<(), ServeError> {
    serve(listener, services, None, shutdown).await
}

/// Serves the broker's gRPC API on `listener` until `shutdown` is cancelled: `PublishService`,
/// `AccessService`, and `AdminService` when given a control plane. Then health turns NOT_SERVING (overall `""` and per
/// service), the listener closes, and in-flight calls finish before this returns.
pub async fn serve(
    listener: TcpListener,
    services: Services,
    control: Option<Arc<dyn ControlPlane>>,
    shutdown: CancellationToken,
) -> Result<(), ServeError> {
    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_serving::<PublishServiceServer<PublishServiceImpl>>().await;
    health.set_serving::<AccessServiceServer<AccessServiceImpl>>().await;
    health.set_service_status("", ServingStatus::Serving).await;
    let token = ApiToken::new(services.api_token.as_deref());
    let log = Arc::clone(services.publisher.log());
    // One conversation-id limit for every service: the publisher's, from the broker's config.
    let max_id = services.publisher.max_conversation_id_bytes();
    let publish =
        PublishServiceServer::with_interceptor(PublishServiceImpl::new(services.publisher), token.clone());
    let access =
        AccessServiceServer::with_interceptor(AccessServiceImpl::new(services.access, max_id), token.clone());
    // Least privilege: with an admin token, the publishers' token does not open AdminService.
    let admin_token = ApiToken::new(services.admin_token.as_deref().or(services.api_token.as_deref()));
    let admin = control
        .map(|c| AdminServiceServer::with_interceptor(AdminServiceImpl::new(c, log, max_id), admin_token));
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    // v1alpha too: Python's reflection client, older grpcurl and Postman speak only that one.
    let (reflection, reflection_v1alpha) = (reflection().build_v1()?, reflection().build_v1alpha()?);
    let addr = listener.local_addr().ok();
    let mtls = services.tls.as_ref().is_some_and(|tls| tls.client_ca_pem.is_some());
    tracing::info!(?addr, tls = services.tls.is_some(), mtls, "broker listening for gRPC");
    let mut builder = Server::builder();
    if let Some(tls) = &services.tls {
        builder = builder.tls_config(tls.server_config())?;
    }
    builder
        .add_service(health_service)
        .add_service(reflection)
        .add_service(reflection_v1alpha)
        .add_service(publish)
        .add_service(access)
        .add_optional_service(admin)
        .serve_with_incoming_shutdown(
            TcpIncoming::from(listener).with_nodelay(Some(true)),
            drain(health, shutdown),
        )
        .await?;
    Ok(())
}

/// Resolves once `shutdown` is cancelled, after health has turned NOT_SERVING.
async fn drain(health: HealthReporter, shutdown: CancellationToken) {
    shutdown.cancelled().await;
    tracing::info!("broker draining: health NOT_SERVING, finishing in-flight calls");
    health.set_service_status("", ServingStatus::NotServing).await;
    health.set_not_serving::<PublishServiceServer<PublishServiceImpl>>().await;
    health.set_not_serving::<AccessServiceServer<AccessServiceImpl>>().await;
}
