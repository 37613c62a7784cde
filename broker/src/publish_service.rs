//! `crier.v1.PublishService` over a [`Publisher`]: single publishes, batches and broadcasts.

use crier_proto::v1::publish_result::Result as ItemResult;
use crier_proto::v1::publish_service_server::PublishService;
use crier_proto::v1::{
    BroadcastRequest, BroadcastResponse, PublishBatchRequest, PublishBatchResponse, PublishError,
    PublishRequest, PublishResponse, PublishResult,
};
use tonic::{Request, Response, Status};

use crate::config::MAX_BATCH_ITEMS;
use crate::error::BrokerError;
use crate::publisher::{Item, Published, Publisher};

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

fn item(request: PublishRequest) -> Item {
    Item {
        conversation_id: request.conversation_id,
        payload: request.payload,
        idempotency_key: request.idempotency_key,
    }
}

fn response(published: Published) -> PublishResponse {
    PublishResponse { position: published.position.to_string(), duplicate: published.duplicate }
}

fn result(outcome: Result<Published, BrokerError>) -> PublishResult {
    let result = match outcome {
        Ok(published) => ItemResult::Published(response(published)),
        Err(err) => {
            let status = Status::from(err);
            ItemResult::Error(PublishError {
                code: status.code() as i32,
                message: status.message().to_owned(),
            })
        }
    };
    PublishResult { result: Some(result) }
}

fn check_batch_size(len: usize, what: &str) -> Result<(), Status> {
    if len == 0 || len > MAX_BATCH_ITEMS {
        let reason = format!("{what} must have 1..={MAX_BATCH_ITEMS} entries, got {len}");
        return Err(BrokerError::InvalidRequest(reason).into());
    }
    Ok(())
}

#[tonic::async_trait]
impl PublishService for PublishServiceImpl {
    async fn publish(&self, request: Request<PublishRequest>) -> Result<Response<PublishResponse>, Status> {
        let item = item(request.into_inner());
        match self.publisher.publish(&item).await {
            Ok(published) => Ok(Response::new(response(published))),
            Err(err) => {
                tracing::debug!(conversation_id = %item.conversation_id, error = %err, "publish rejected");
                Err(err.into())
            }
        }
    }

    async fn publish_batch(
        &self,
        request: Request<PublishBatchRequest>,
    ) -> Result<Response<PublishBatchResponse>, Status> {
        let items: Vec<Item> = request.into_inner().items.into_iter().map(item).collect();
        check_batch_size(items.len(), "items")?;
        let results = self.publisher.publish_many(&items).await.into_iter().map(result).collect();
        Ok(Response::new(PublishBatchResponse { results }))
    }

    async fn broadcast(
        &self,
        request: Request<BroadcastRequest>,
    ) -> Result<Response<BroadcastResponse>, Status> {
        let request = request.into_inner();
        check_batch_size(request.conversation_ids.len(), "conversation_ids")?;
        let items: Vec<Item> = request
            .conversation_ids
            .into_iter()
            .map(|conversation_id| Item {
                conversation_id,
                payload: request.payload.clone(),
                idempotency_key: request.idempotency_key.clone(),
            })
            .collect();
        let results = self.publisher.publish_many(&items).await.into_iter().map(result).collect();
        Ok(Response::new(BroadcastResponse { results }))
    }
}
