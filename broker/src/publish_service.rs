//! `crier.v1.PublishService` over a [`Publisher`].

use crier_proto::v1::publish_service_server::PublishService;
use crier_proto::v1::{PublishRequest, PublishResponse};
use tonic::{Request, Response, Status};

use crate::publisher::Publisher;

/// The gRPC face of a [`Publisher`].
pub struct PublishServiceImpl {
    publisher: Publisher,
}

impl PublishServiceImpl {
    /// Serves `publisher`.
    #[must_use]
    pub fn new(publisher: Publisher) -> Self {
        Self { publisher }
    }
}

#[tonic::async_trait]
impl PublishService for PublishServiceImpl {
    async fn publish(&self, request: Request<PublishRequest>) -> Result<Response<PublishResponse>, Status> {
        let request = request.into_inner();
        let result = self.publisher.publish(&request.conversation_id, request.payload).await;
        match result {
            Ok(position) => Ok(Response::new(PublishResponse { position: position.to_string() })),
            Err(err) => {
                tracing::debug!(conversation_id = %request.conversation_id, error = %err, "publish rejected");
                Err(err.into())
            }
        }
    }
}
