//! `crier.v1.AdminService` over a [`ControlPlane`]: presence and stats from the edges' heartbeat reports,
//! `DisconnectUser` broadcast to every edge. Every error maps to the wire through [`BrokerError`].

use std::collections::BTreeSet;
use std::sync::Arc;

use crier_proto::Position;
use crier_proto::v1::admin_service_server::AdminService;
use crier_proto::v1::{
    DisconnectUserRequest, DisconnectUserResponse, EdgeStats, HistoryEntry, HistoryRequest, HistoryResponse,
    PresenceRequest, PresenceResponse, StatsRequest, StatsResponse, UserPresence,
};
use tonic::{Request, Response, Status};

use crate::error::{BrokerError, check_conversation_id, check_user_id};
use crate::history::{MAX_LIMIT, history};
use crier_store::control::{ControlMessage, ControlPlane};
use crier_store::log::PartitionedLog;

/// Longest close reason kept: a close frame carries at most 123 bytes of reason.
const MAX_REASON_BYTES: usize = 120;

/// The gRPC face of the control plane.
pub struct AdminServiceImpl {
    control: Arc<dyn ControlPlane>,
    /// For `History`.
    log: Arc<dyn PartitionedLog>,
    /// The broker's conversation-id limit, so ids the publisher refuses are refused here too.
    max_conversation_id_bytes: usize,
}

impl AdminServiceImpl {
    /// Serves `control`, and history from `log`; conversation ids longer than `max_conversation_id_bytes`
    /// are invalid arguments.
    #[must_use]
    pub fn new(
        control: Arc<dyn ControlPlane>,
        log: Arc<dyn PartitionedLog>,
        max_conversation_id_bytes: usize,
    ) -> Self {
        Self { control, log, max_conversation_id_bytes }
    }

    fn check_conversation(&self, conversation: &str) -> Result<(), BrokerError> {
        check_conversation_id(conversation, self.max_conversation_id_bytes)
    }
}

#[tonic::async_trait]
impl AdminService for AdminServiceImpl {
    async fn presence(
        &self,
        request: Request<PresenceRequest>,
    ) -> Result<Response<PresenceResponse>, Status> {
        let conversation = request.into_inner().conversation_id;
        self.check_conversation(&conversation)?;
        let users = self.control.presence(&conversation).await.map_err(BrokerError::from)?;
        let connections = users.values().sum();
        let users =
            users.into_iter().map(|(user_id, connections)| UserPresence { user_id, connections }).collect();
        Ok(Response::new(PresenceResponse { users, connections }))
    }

    async fn history(&self, request: Request<HistoryRequest>) -> Result<Response<HistoryResponse>, Status> {
        let request = request.into_inner();
        self.check_conversation(&request.conversation_id)?;
        let since = match request.since.as_str() {
            "" => None,
            since => {
                Some(since.parse::<Position>().map_err(|e| BrokerError::InvalidPosition(e.to_string()))?)
            }
        };
        let limit = match request.limit as usize {
            0 => MAX_LIMIT,
            n => n.min(MAX_LIMIT),
        };
        let (entries, complete) = history(self.log.as_ref(), &request.conversation_id, since, limit).await?;
        let entries = entries
            .into_iter()
            .map(|(position, payload)| HistoryEntry { position: position.to_string(), payload })
            .collect();
        Ok(Response::new(HistoryResponse { entries, complete }))
    }

    async fn stats(&self, _request: Request<StatsRequest>) -> Result<Response<StatsResponse>, Status> {
        let reports = self.control.stats().await.map_err(BrokerError::from)?;
        let partitions: BTreeSet<u32> =
            reports.iter().flat_map(|r| r.partitions_read.iter().copied()).collect();
        let response = StatsResponse {
            connections: reports.iter().map(|r| r.connections).sum(),
            subscriptions: reports.iter().map(|r| r.subscriptions).sum(),
            partitions_read: u32::try_from(partitions.len()).unwrap_or(u32::MAX),
            edges: reports
                .into_iter()
                .map(|r| EdgeStats {
                    edge_id: r.edge_id,
                    connections: r.connections,
                    authenticated: r.authenticated,
                    subscriptions: r.subscriptions,
                    partitions_read: r.partitions_read,
                    reported_at_ms: r.reported_at_ms,
                })
                .collect(),
        };
        Ok(Response::new(response))
    }

    async fn disconnect_user(
        &self,
        request: Request<DisconnectUserRequest>,
    ) -> Result<Response<DisconnectUserResponse>, Status> {
        let DisconnectUserRequest { user_id, mut reason } = request.into_inner();
        check_user_id(&user_id)?;
        if reason.len() > MAX_REASON_BYTES {
            let mut end = MAX_REASON_BYTES;
            while !reason.is_char_boundary(end) {
                end -= 1;
            }
            reason.truncate(end);
        }
        tracing::info!(user_id = %user_id, reason = %reason, "operator disconnects user");
        let message = ControlMessage::DisconnectUser { user_id, reason };
        let edges_notified = self.control.send(&message).await.map_err(BrokerError::from)?;
        Ok(Response::new(DisconnectUserResponse { edges_notified }))
    }
}
