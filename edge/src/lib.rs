//! crier edge: terminates browser WebSockets and delivers the notifications of the conversations they
//! subscribe to, reading only the partitions its local clients need.
//!
//! ```text
//!  browser ◀─ws─ session ◀─ outbox ◀─ hub (conversation → subscribers, per partition)
//!                 │ auth, subscribe       ▲
//!                 └──────▶ hub ──starts──▶ consumer: one reader per partition with local interest
//!                                          └─ PartitionedLog (crier-broker's log: Redis XREAD | memory)
//! ```
//!
//! - [`config`]: edge settings and their validation.
//! - [`error`]: the close-code table and `EdgeError`.
//! - [`server`]: hyper accept loop and WebSocket upgrade.
//! - [`session`]: one task per socket: protocol state machine, writes.
//! - [`inbound`]: client messages off the wire, size-capped.
//! - [`protocol`]: client/server frames of the browser protocol (pure).
//! - [`frame`]: WebSocket frame encoding (once per notification) and batched writes.
//! - [`outbox`]: a session's byte-bounded outbound queue.
//! - [`hub`]: conversation → subscribers, sharded by partition; starts and stops readers.
//! - [`consumer`]: partition reader tasks.
//! - [`recovery`]: replay of missed notifications for `subscribe` with `since`.
//! - [`auth`]: `auth` frame → principal (HS256 JWT or dev auth); dev token minting.
//! - [`acl`]: access decisions.
//! - [`meters`]: the edge's Prometheus metrics.
//! - [`registry`]: who is connected: users and conversations per session, for presence and disconnects.
//! - [`heartbeat`]: reports to the control plane; carries out operators' commands.
//!
//! Shutdown (drain): when `shutdown` is cancelled the edge stops accepting, every session closes with 1001 at
//! its own random moment within `drain_window` (delivering until then) after flushing what it has queued,
//! and only then do the partition readers stop. The admin listener (`crier_broker::admin_http`, run by the
//! caller) reports not-ready from the first moment of the drain.

pub mod acl;
pub mod auth;
pub mod config;
pub mod consumer;
pub mod error;
pub mod frame;
pub mod heartbeat;
pub mod hub;
pub mod inbound;
pub mod meters;
pub mod outbox;
pub mod protocol;
pub mod recovery;
pub mod registry;
pub mod server;
pub mod session;

use std::sync::Arc;

use crier_broker::control::{ControlPlane, MemoryControl};
use crier_broker::log::PartitionedLog;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use config::{AuthMode, EdgeConfig};
pub use error::{CloseCode, EdgeError};

/// [`run_with_control`] on a control plane of its own: no other process sees this edge's reports.
pub async fn run(
    listener: TcpListener,
    config: EdgeConfig,
    log: Arc<dyn PartitionedLog>,
    shutdown: CancellationToken,
) -> Result<(), EdgeError> {
    run_with_control(listener, config, log, Arc::new(MemoryControl::new()), shutdown).await
}

/// Serves WebSockets on `listener` until `shutdown` is cancelled, then drains; returns once every session
/// and reader task has ended. Reports to `control` and carries out the operator commands it brings.
pub async fn run_with_control(
    listener: TcpListener,
    config: EdgeConfig,
    log: Arc<dyn PartitionedLog>,
    control: Arc<dyn ControlPlane>,
    shutdown: CancellationToken,
) -> Result<(), EdgeError> {
    // Sessions drain on `draining`; readers stop on `stop`, only after the sessions they feed are gone.
    let draining = shutdown.child_token();
    let stop = CancellationToken::new();
    let readers = TaskTracker::new();
    let sessions = TaskTracker::new();
    let meters = meters::EdgeMeters::new();
    let consumer = consumer::Consumer::new(
        Arc::clone(&log),
        config.read_batch,
        config.read_block,
        readers.clone(),
        stop.clone(),
        meters.clone(),
    );
    let hub = hub::Hub::new(consumer);
    let drain_window = config.drain_window;
    let (edge_id, interval) = (config.edge_id.clone(), config.heartbeat_interval);
    let ctx = Arc::new(session::SessionContext::new(config, Arc::clone(&hub), log, meters));
    let registry = Arc::clone(&ctx.registry);
    let heartbeat = heartbeat::Heartbeat { edge_id, control, registry, hub, interval };
    readers.spawn(heartbeat.clone().report_until(stop.clone()));
    readers.spawn(heartbeat.listen_until(stop.clone()));
    let result = server::serve(listener, ctx, draining.clone(), sessions.clone()).await;
    draining.cancel();
    tracing::info!(?drain_window, "edge draining: closing sessions with 1001");
    sessions.close();
    sessions.wait().await;
    stop.cancel();
    readers.close();
    readers.wait().await;
    tracing::info!("edge drained");
    result
}
