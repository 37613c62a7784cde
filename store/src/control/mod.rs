//! The control plane: how edges tell the deployment what they serve, and how operators reach every edge.
//!
//! Edges report an [`EdgeReport`] on a heartbeat (every [`HEARTBEAT_INTERVAL`]); a report is live for
//! [`HEARTBEAT_TTL`], so a crashed edge drops out of `Stats` and `Presence` by itself. Operator commands
//! ([`ControlMessage`]) are broadcast to every edge that listens at that moment: fire-and-forget, which
//! suits commands about live connections (an edge that is down has none).
//!
//! Two implementations, like the log: [`RedisControl`] (keys in `crier_proto::keys`) and [`MemoryControl`]
//! (`crier dev`, tests).

mod memory;
mod presence;
mod redis;

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use futures_util::stream::BoxStream;
use serde::{Deserialize, Serialize};

pub use self::memory::MemoryControl;
pub use self::presence::{Presence, Users};
pub use self::redis::RedisControl;

/// How often an edge reports.
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(5);
/// How long a report stays live: three missed heartbeats.
pub const HEARTBEAT_TTL: Duration = Duration::from_secs(15);

/// What one edge serves right now.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EdgeReport {
    /// The edge's id, unique in the deployment.
    pub edge_id: String,
    /// Open WebSocket connections.
    pub connections: u64,
    /// Connections that have authenticated.
    pub authenticated: u64,
    /// (connection, conversation) subscriptions.
    pub subscriptions: u64,
    /// Partitions the edge reads, ascending.
    pub partitions_read: Vec<u32>,
    /// When the report was made, Unix ms.
    pub reported_at_ms: u64,
    /// Conversation → user → subscribed connections. Empty in answers to [`ControlPlane::stats`].
    pub presence: Presence,
}

impl EdgeReport {
    /// The same report without presence (what [`ControlPlane::stats`] answers).
    #[must_use]
    pub fn without_presence(&self) -> Self {
        Self {
            edge_id: self.edge_id.clone(),
            partitions_read: self.partitions_read.clone(),
            presence: Presence::default(),
            ..*self
        }
    }
}

/// A command from an operator to every edge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ControlMessage {
    /// Close every connection of `user_id` with 4030 and `reason`.
    DisconnectUser {
        /// The user.
        user_id: String,
        /// The close reason sent to the clients.
        reason: String,
    },
}

/// Why a control-plane call failed.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// Redis could not be reached or did not answer.
    #[error("control plane unavailable: {0}")]
    Unavailable(#[from] ::redis::RedisError),
    /// Redis held something crier did not write.
    #[error("unexpected control-plane data at {key}: {detail}")]
    Protocol {
        /// The key read.
        key: String,
        /// What was wrong.
        detail: String,
    },
}

/// Commands an operator sends, as a stream an edge consumes.
pub type ControlStream = BoxStream<'static, ControlMessage>;

/// Where edges report and operators' commands travel.
#[async_trait]
pub trait ControlPlane: Send + Sync + 'static {
    /// Publishes `report` as the edge's current state, live for [`HEARTBEAT_TTL`].
    async fn report(&self, report: EdgeReport) -> Result<(), ControlError>;

    /// Removes the edge's report at once (clean shutdown).
    async fn withdraw(&self, edge_id: &str) -> Result<(), ControlError>;

    /// The live reports, without presence, sorted by edge id.
    async fn stats(&self) -> Result<Vec<EdgeReport>, ControlError>;

    /// User → subscribed connections of `conversation`, summed over the live edges.
    async fn presence(&self, conversation: &str) -> Result<BTreeMap<String, u32>, ControlError>;

    /// Broadcasts `message` to every listening edge; returns how many received it.
    async fn send(&self, message: &ControlMessage) -> Result<u32, ControlError>;

    /// Subscribes to operators' commands. The stream ends if the connection behind it is lost; listeners
    /// resubscribe.
    async fn listen(&self) -> Result<ControlStream, ControlError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Control messages are JSON tagged by `type`, the format every edge version must read.
    #[test]
    fn control_messages_are_tagged_json() {
        let message = ControlMessage::DisconnectUser { user_id: "u1".into(), reason: "bye".into() };
        let json = serde_json::to_string(&message).unwrap();
        assert_eq!(json, r#"{"type":"disconnect_user","user_id":"u1","reason":"bye"}"#);
        assert_eq!(serde_json::from_str::<ControlMessage>(&json).unwrap(), message);
    }
}
