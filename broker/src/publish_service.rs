//! `crier.v1.PublishService` over a [`Publisher`]: single publishes, batches and broadcasts.
//!
//! Each call runs in a `publish` span that continues the caller's W3C `traceparent` (gRPC metadata), so the
//! trace context the publisher stores in each stream entry makes the edges' delivery spans its children.

use std::time::Instant;

use crier_proto::v1::publish_result::Result as ItemResult;
use crier_proto::v1::publish_service_server::PublishService;
use crier_proto::v1::{
    BroadcastRequest, BroadcastResponse, PublishBatchRequest, PublishBatchResponse, PublishError,
    PublishRequest, PublishResponse, PublishResult,
};
use tonic::{Request, Response, Status};
use tracing::{Instrument, Span};

use crate::config::MAX_BATCH_ITEMS;
use crate::error::BrokerError;
use crate::meters::BrokerMeters;
use crate::publisher::{Item, Published, Publisher};
use crate::trace_parent;

/// The gRPC face of a [`Publisher`].
pub struct PublishServiceImpl {
    publisher: Publisher,
    meters: BrokerMeters,
}

impl PublishServiceImpl {
    /// Serves `publisher`.
    #[must_use]
    pub fn new(publisher: Publisher) -> Self {
        Self { publisher, meters: BrokerMeters::new() }
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

/// The span of one publishing RPC, child of the caller's `traceparent` if it sent one; a disabled span
/// (free to enter) while no trace exporter exists, so an untraced call builds no span and parses no metadata.
fn rpc_span<T>(name: &'static str, request: &Request<T>) -> Span {
    if !crier_store::telemetry::exporting() {
        return Span::none();
    }
    let span = tracing::info_span!("publish", otel.kind = "server", rpc = name);
    trace_parent::set_parent_from_metadata(&span, request.metadata());
    span
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
        let started = Instant::now();
        let span = rpc_span("Publish", &request);
        let item = item(request.into_inner());
        let result = self.publisher.publish(&item).instrument(span).await;
        self.meters.publish(&result, started.elapsed());
        match result {
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
        let started = Instant::now();
        let span = rpc_span("PublishBatch", &request);
        let items: Vec<Item> = request.into_inner().items.into_iter().map(item).collect();
        check_batch_size(items.len(), "items")?;
        let outcomes = self.publisher.publish_many(&items).instrument(span).await;
        self.meters.publish_many(&outcomes, started.elapsed());
        let results = outcomes.into_iter().map(result).collect();
        Ok(Response::new(PublishBatchResponse { results }))
    }

    async fn broadcast(
        &self,
        request: Request<BroadcastRequest>,
    ) -> Result<Response<BroadcastResponse>, Status> {
        let started = Instant::now();
        let span = rpc_span("Broadcast", &request);
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
        let outcomes = self.publisher.publish_many(&items).instrument(span).await;
        self.meters.publish_many(&outcomes, started.elapsed());
        let results = outcomes.into_iter().map(result).collect();
        Ok(Response::new(BroadcastResponse { results }))
    }
}
