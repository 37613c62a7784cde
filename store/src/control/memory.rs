//! The in-process control plane of `crier dev` and tests: reports in a map, commands on a broadcast channel.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, PoisonError};

use async_trait::async_trait;
use futures_util::StreamExt;
use tokio::sync::broadcast;
use tokio::time::Instant;

use super::{ControlError, ControlMessage, ControlPlane, ControlStream, EdgeReport, HEARTBEAT_TTL};

/// Commands buffered per listener before a slow one misses some.
const CHANNEL_CAPACITY: usize = 64;

/// A [`ControlPlane`] inside one process.
pub struct MemoryControl {
    /// Edge id → its last report and when it expires.
    // Bound: one entry per edge id (one per process in `crier dev`); expired ones dropped on every read.
    edges: Mutex<HashMap<String, (EdgeReport, Instant)>>,
    // Bound: CHANNEL_CAPACITY commands; a slower listener skips ahead.
    commands: broadcast::Sender<ControlMessage>,
}

impl MemoryControl {
    /// An empty control plane.
    #[must_use]
    pub fn new() -> Self {
        Self { edges: Mutex::new(HashMap::new()), commands: broadcast::channel(CHANNEL_CAPACITY).0 }
    }

    /// Runs `f` on the live reports, stale ones dropped first.
    fn with_live<T>(&self, f: impl FnOnce(&HashMap<String, (EdgeReport, Instant)>) -> T) -> T {
        let mut edges = self.edges.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        edges.retain(|_, (_, expires)| *expires > now);
        f(&edges)
    }
}

impl Default for MemoryControl {
    fn default() -> Self {
        Self::new()
    }
}

#[async_trait]
impl ControlPlane for MemoryControl {
    async fn report(&self, report: EdgeReport) -> Result<(), ControlError> {
        let expires = Instant::now() + HEARTBEAT_TTL;
        let mut edges = self.edges.lock().unwrap_or_else(PoisonError::into_inner);
        edges.insert(report.edge_id.clone(), (report, expires));
        Ok(())
    }

    async fn withdraw(&self, edge_id: &str) -> Result<(), ControlError> {
        self.edges.lock().unwrap_or_else(PoisonError::into_inner).remove(edge_id);
        Ok(())
    }

    async fn stats(&self) -> Result<Vec<EdgeReport>, ControlError> {
        let mut reports: Vec<EdgeReport> =
            self.with_live(|edges| edges.values().map(|(r, _)| r.without_presence()).collect());
        reports.sort_by(|a, b| a.edge_id.cmp(&b.edge_id));
        Ok(reports)
    }

    async fn presence(&self, conversation: &str) -> Result<BTreeMap<String, u32>, ControlError> {
        let mut users = BTreeMap::new();
        self.with_live(|edges| {
            for (report, _) in edges.values() {
                if let Some(found) = report.presence.get(conversation) {
                    found.merge_into(&mut users);
                }
            }
        });
        Ok(users)
    }

    async fn send(&self, message: &ControlMessage) -> Result<u32, ControlError> {
        let received = self.commands.send(message.clone()).unwrap_or(0);
        Ok(u32::try_from(received).unwrap_or(u32::MAX))
    }

    async fn listen(&self) -> Result<ControlStream, ControlError> {
        let receiver = self.commands.subscribe();
        let stream = futures_util::stream::unfold(receiver, |mut receiver| async move {
            loop {
                match receiver.recv().await {
                    Ok(message) => return Some((message, receiver)),
                    Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => return None,
                }
            }
        });
        Ok(stream.boxed())
    }
}
