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
//! - [`server`]: hyper accept loop, WebSocket upgrade, plain HTTP routes.
//! - [`assets`]: files embedded in the binary: the browser client `/crier.js` and the demo page.
//! - [`demo`]: `crier dev`'s demo page and its `POST /dev/publish` endpoint.
//! - [`session`]: one task per socket: protocol state machine, writes.
//! - [`inbound`]: client messages off the wire, size-capped.
//! - [`protocol`]: client/server frames of the browser protocol (pure).
//! - [`frame`]: WebSocket frame encoding (once per notification) and batched writes.
//! - [`outbox`]: a session's byte-bounded outbound queue.
//! - [`hub`]: conversation → subscribers, sharded by partition; starts and stops readers.
//! - [`consumer`]: partition reader tasks.
//! - [`recovery`]: replay of missed notifications for `subscribe` with `since`.
//! - [`auth`]: tokens → principal (JWT with pinned algorithms, PEM or JWKS keys; or dev auth).
//! - [`acl`]: the pure access decision table.
//! - [`gate`]: access checks for subscribes (claims, subscription tokens, cached store grants).
//! - [`revocations`]: follows the access store's revocation feed; kicks revoked subscriptions.
//! - [`connections`]: connection counts per edge and per user; reaching a user's sessions.
//! - [`handshake`]: origin check and handshake token sources.

pub mod acl;
pub mod assets;
pub mod auth;
pub mod config;
pub mod connections;
pub mod consumer;
pub mod demo;
pub mod error;
pub mod frame;
pub mod gate;
pub mod handshake;
pub mod hub;
pub mod inbound;
pub mod outbox;
pub mod protocol;
pub mod recovery;
pub mod revocations;
pub mod server;
pub mod session;

use std::sync::Arc;

use crier_broker::Publisher;
use crier_broker::access::AccessStore;
use crier_broker::log::PartitionedLog;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use config::{AclMode, AuthMode, EdgeConfig, JwtConfig, KeySource, Limits, OriginPolicy};
pub use demo::Demo;
pub use error::{CloseCode, EdgeError};

/// Serves WebSockets on `listener` until `shutdown` is cancelled; returns once every session and reader
/// task has ended. Subscriptions are checked against `access` (unless `config.acl` is open), whose
/// revocations kick live subscriptions.
pub async fn run(
    listener: TcpListener,
    config: EdgeConfig,
    log: Arc<dyn PartitionedLog>,
    access: Arc<dyn AccessStore>,
    shutdown: CancellationToken,
) -> Result<(), EdgeError> {
    run_with(listener, config, log, access, None, shutdown).await
}

/// [`run`], plus the demo page at `/` and `POST /dev/publish` publishing through `demo` when it is set
/// (`crier dev` only).
pub async fn run_with(
    listener: TcpListener,
    config: EdgeConfig,
    log: Arc<dyn PartitionedLog>,
    access: Arc<dyn AccessStore>,
    demo: Option<Publisher>,
    shutdown: CancellationToken,
) -> Result<(), EdgeError> {
    // Our own child token, so the tasks stop even if serving ends with an error.
    let stop = shutdown.child_token();
    let tracker = TaskTracker::new();
    let consumer = consumer::Consumer::new(
        Arc::clone(&log),
        config.read_batch,
        config.read_block,
        tracker.clone(),
        stop.clone(),
    );
    let hub = hub::Hub::new(consumer);
    let demo = demo.map(|publisher| Demo::new(publisher, &config.ws_path));
    let sessions = match session::SessionContext::new(config, hub, log, Arc::clone(&access)) {
        Ok(ctx) => Arc::new(ctx),
        Err(problem) => return Err(EdgeError::Config(problem)),
    };
    sessions.auth.start(&tracker, &stop);
    tracker.spawn(revocations::run(access, Arc::clone(&sessions), stop.clone()));
    let routes = Arc::new(server::Routes { sessions, demo });
    let result = server::serve(listener, routes, stop.clone(), tracker.clone()).await;
    stop.cancel();
    tracker.close();
    tracker.wait().await;
    result
}
