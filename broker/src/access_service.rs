//! `crier.v1.AccessService` over an [`AccessStore`].

use std::sync::Arc;

use crier_proto::v1::access_service_server::AccessService;
use crier_proto::v1::{
    CheckRequest, CheckResponse, GrantRequest, GrantResponse, ListGrantsRequest, ListGrantsResponse,
    RevokeRequest, RevokeResponse,
};
use tonic::{Request, Response, Status};

use crate::error::{BrokerError, check_conversation_id, check_user_id};
use crier_store::access::AccessStore;

/// The gRPC face of an [`AccessStore`].
pub struct AccessServiceImpl {
    store: Arc<dyn AccessStore>,
    /// The broker's conversation-id limit: no grant for an id nobody could publish to or subscribe to.
    max_conversation_id_bytes: usize,
}

impl AccessServiceImpl {
    /// Serves `store`; conversation ids longer than `max_conversation_id_bytes` are invalid arguments.
    #[must_use]
    pub fn new(store: Arc<dyn AccessStore>, max_conversation_id_bytes: usize) -> Self {
        Self { store, max_conversation_id_bytes }
    }

    fn validate(&self, conversation: &str, user: Option<&str>) -> Result<(), Status> {
        check_conversation_id(conversation, self.max_conversation_id_bytes)?;
        user.map_or(Ok(()), check_user_id)?;
        Ok(())
    }
}

fn failed(op: &str, conversation: &str, err: BrokerError) -> Status {
    tracing::warn!(op, conversation_id = conversation, error = %err, "access store call failed");
    err.into()
}

#[tonic::async_trait]
impl AccessService for AccessServiceImpl {
    async fn grant(&self, request: Request<GrantRequest>) -> Result<Response<GrantResponse>, Status> {
        let GrantRequest { conversation_id, user_id } = request.into_inner();
        self.validate(&conversation_id, Some(&user_id))?;
        let result = self.store.grant(&conversation_id, &user_id).await;
        result.map_err(|e| failed("grant", &conversation_id, e.into()))?;
        tracing::debug!(conversation_id, user_id, "access granted");
        Ok(Response::new(GrantResponse {}))
    }

    async fn revoke(&self, request: Request<RevokeRequest>) -> Result<Response<RevokeResponse>, Status> {
        let RevokeRequest { conversation_id, user_id } = request.into_inner();
        self.validate(&conversation_id, Some(&user_id))?;
        let result = self.store.revoke(&conversation_id, &user_id).await;
        result.map_err(|e| failed("revoke", &conversation_id, e.into()))?;
        tracing::info!(conversation_id, user_id, "access revoked");
        Ok(Response::new(RevokeResponse {}))
    }

    async fn check(&self, request: Request<CheckRequest>) -> Result<Response<CheckResponse>, Status> {
        let CheckRequest { conversation_id, user_id } = request.into_inner();
        self.validate(&conversation_id, Some(&user_id))?;
        let result = self.store.check(&conversation_id, &user_id).await;
        let allowed = result.map_err(|e| failed("check", &conversation_id, e.into()))?;
        Ok(Response::new(CheckResponse { allowed }))
    }

    async fn list_grants(
        &self,
        request: Request<ListGrantsRequest>,
    ) -> Result<Response<ListGrantsResponse>, Status> {
        let ListGrantsRequest { conversation_id } = request.into_inner();
        self.validate(&conversation_id, None)?;
        let result = self.store.list_grants(&conversation_id).await;
        let user_ids = result.map_err(|e| failed("list_grants", &conversation_id, e.into()))?;
        Ok(Response::new(ListGrantsResponse { user_ids }))
    }
}
