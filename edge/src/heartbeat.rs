//! The edge's link to the control plane: a heartbeat task reporting what this edge serves (for `Stats` and
//! `Presence`), and a listener carrying out operators' commands (`DisconnectUser`).
//!
//! Both loops retry with back-off while the control plane is unreachable, and end on the stop token; the
//! heartbeat withdraws the edge's report on the way out.

use std::sync::Arc;
use std::time::Duration;

use crier_store::control::{ControlMessage, ControlPlane, EdgeReport};
use crier_store::telemetry::now_ms;
use futures_util::StreamExt;
use tokio_util::sync::CancellationToken;

use crate::directory::Directory;
use crate::hub::Hub;

/// Wait before re-subscribing to operators' commands after losing the subscription.
const RESUBSCRIBE_BACKOFF: Duration = Duration::from_secs(1);

/// What the heartbeat and the command listener work with.
#[derive(Clone)]
pub struct Heartbeat {
    /// This edge's id in reports.
    pub edge_id: String,
    /// Where reports and commands travel.
    pub control: Arc<dyn ControlPlane>,
    /// The edge's sessions.
    pub directory: Arc<Directory>,
    /// The edge's hub, for the partitions read.
    pub hub: Arc<Hub>,
    /// Time between reports.
    pub interval: Duration,
}

impl Heartbeat {
    /// Reports every `interval` until `stop`, then withdraws the report.
    pub async fn report_until(self, stop: CancellationToken) {
        loop {
            if let Err(err) = self.control.report(self.report()).await {
                tracing::warn!(error = %err, "edge heartbeat failed");
            }
            tokio::select! {
                () = stop.cancelled() => break,
                () = tokio::time::sleep(self.interval) => {}
            }
        }
        if let Err(err) = self.control.withdraw(&self.edge_id).await {
            tracing::debug!(error = %err, "withdrawing the edge report failed");
        }
    }

    fn report(&self) -> EdgeReport {
        let snapshot = self.directory.snapshot();
        EdgeReport {
            edge_id: self.edge_id.clone(),
            connections: snapshot.connections,
            authenticated: snapshot.authenticated,
            subscriptions: snapshot.subscriptions,
            partitions_read: self.hub.active_partitions(),
            reported_at_ms: now_ms(),
            presence: snapshot.presence,
        }
    }

    /// Carries out operators' commands until `stop`, resubscribing when the subscription is lost.
    pub async fn listen_until(self, stop: CancellationToken) {
        while !stop.is_cancelled() {
            let subscribed = tokio::select! {
                () = stop.cancelled() => break,
                subscribed = self.control.listen() => subscribed,
            };
            match subscribed {
                Ok(mut commands) => loop {
                    let command = tokio::select! {
                        () = stop.cancelled() => return,
                        command = commands.next() => command,
                    };
                    let Some(command) = command else { break };
                    self.apply(&command);
                },
                Err(err) => tracing::warn!(error = %err, "subscribing to operator commands failed"),
            }
            tokio::select! {
                () = stop.cancelled() => break,
                () = tokio::time::sleep(RESUBSCRIBE_BACKOFF) => {}
            }
        }
    }

    fn apply(&self, command: &ControlMessage) {
        match command {
            ControlMessage::DisconnectUser { user_id, reason } => {
                let sessions = self.directory.disconnect_user(user_id, reason);
                tracing::info!(user_id = %user_id, reason = %reason, sessions, "disconnecting user on operator request");
            }
        }
    }
}
