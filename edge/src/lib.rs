//! crier edge: terminates browser WebSockets and delivers the notifications of the conversations they
//! subscribe to, reading only the partitions its local clients need.
//!
//! ```text
//!  browser ◀─ws─ session ◀─ outbox ◀─ hub (conversation → subscribers, per partition)
//!                 │ auth, subscribe       ▲
//!                 └─▶ directory ─▶ hub ──starts──▶ consumer: one reader per partition with local interest
//!                                          └─ PartitionedLog (crier-store's log: Redis XREAD | memory)
//! ```
//!
//! - [`config`]: edge settings and their validation.
//! - [`error`]: the close-code table and `EdgeError`.
//! - [`server`]: hyper accept loop, WebSocket upgrade, plain HTTP routes.
//! - [`tls`]: `https://`/`wss://`: certificate files, reloaded when they change.
//! - [`stream`]: a session's connection, TCP or TLS, read and written without blocking.
//! - [`assets`]: files embedded in the binary: the browser client `/crier.js` and the demo page.
//! - [`demo`]: `crier dev`'s demo page and its `POST /dev/publish` endpoint.
//! - [`session`]: one task per socket: protocol state machine, writes.
//! - [`inbound`]: client messages off the wire, size-capped.
//! - [`protocol`]: client/server frames of the browser protocol (pure).
//! - [`frame`]: WebSocket frame encoding (once per notification) and batched writes.
//! - [`outbox`]: a session's byte-bounded outbound queue.
//! - [`directory`]: every session's membership (seat, user, conversations) behind one guard; limits per edge
//!   and per user; reaching a user's sessions (revocations, disconnects) and every session (drain); presence.
//! - [`hub`]: conversation → subscribers, sharded by partition; starts and stops readers through an injected
//!   [`hub::StartReader`].
//! - [`consumer`]: partition reader tasks.
//! - [`recovery`]: missed notifications for `subscribe` with `since`, read in bounded pages within the scan
//!   bound; the newest few for `last`.
//! - [`auth`]: tokens → principal (JWT with pinned algorithms, PEM or JWKS keys; or dev auth).
//! - [`acl`]: the pure access decision table.
//! - [`expiring`]: a bounded set whose members expire (the gate's caches and revocation memory).
//! - [`gate`]: access checks for subscribes (claims, subscription tokens, cached store answers, remembered
//!   revocations).
//! - [`revocations`]: follows the access store's revocation feed; kicks revoked subscriptions.
//! - [`handshake`]: origin check and handshake token sources.
//! - [`meters`]: the edge's Prometheus metrics.
//! - [`heartbeat`]: reports to the control plane; carries out operators' commands.
//!
//! Shutdown (drain): when `shutdown` is cancelled the edge stops accepting, every session closes with 1001 at
//! its own random moment within `drain_window` (delivering until then) after flushing what it has queued,
//! and only then do the partition readers (and the revocation, key refresh and heartbeat tasks) stop. The
//! admin listener (`crier_store::admin_http`, run by the caller) reports not-ready from the first moment of
//! the drain.

pub mod acl;
pub mod assets;
pub mod auth;
pub mod config;
pub mod consumer;
pub mod demo;
pub mod directory;
pub mod error;
pub mod expiring;
pub mod frame;
pub mod gate;
pub mod handshake;
pub mod heartbeat;
pub mod hub;
pub mod inbound;
pub mod meters;
pub mod outbox;
pub mod protocol;
pub mod recovery;
pub mod revocations;
pub mod server;
pub mod session;
pub mod stream;
pub mod tls;

use std::sync::Arc;

use crier_store::access::AccessStore;
use crier_store::control::{ControlPlane, MemoryControl};
use crier_store::log::PartitionedLog;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use config::{AclMode, AuthMode, EdgeConfig, JwtConfig, KeySource, Limits, OriginPolicy};
pub use demo::{Demo, DemoPublished, DemoPublisher, DemoRefusal};
pub use error::{CloseCode, CloseReason, EdgeError};

/// What an edge works with besides its listener, config and log.
pub struct EdgeDeps {
    /// Grants subscriptions are checked against (unless `config.acl` is open); its revocations kick live
    /// subscriptions.
    pub access: Arc<dyn AccessStore>,
    /// Where the edge reports (`Stats`, `Presence`) and hears operator commands; `None`: a control plane of
    /// its own, which no other process sees.
    pub control: Option<Arc<dyn ControlPlane>>,
    /// Serves the demo page at `/` and `POST /dev/publish`, publishing through this (`crier dev` only).
    pub demo: Option<Arc<dyn DemoPublisher>>,
}

impl EdgeDeps {
    /// Checks against `access`; no shared control plane, no demo.
    #[must_use]
    pub fn new(access: Arc<dyn AccessStore>) -> Self {
        Self { access, control: None, demo: None }
    }
}

/// [`run_with`] checking against `access`, with a control plane of its own and no demo page.
pub async fn run(
    listener: TcpListener,
    config: EdgeConfig,
    log: Arc<dyn PartitionedLog>,
    access: Arc<dyn AccessStore>,
    shutdown: CancellationToken,
) -> Result<(), EdgeError> {
    run_with(listener, config, log, EdgeDeps::new(access), shutdown).await
}

/// Serves WebSockets on `listener` until `shutdown` is cancelled, then drains; returns once every session
/// and background task has ended. Subscriptions are checked against `deps.access`, whose revocations kick
/// live subscriptions; the edge reports to `deps.control` and carries out the operator commands it brings.
pub async fn run_with(
    listener: TcpListener,
    config: EdgeConfig,
    log: Arc<dyn PartitionedLog>,
    deps: EdgeDeps,
    shutdown: CancellationToken,
) -> Result<(), EdgeError> {
    let EdgeDeps { access, control, demo } = deps;
    let control = control.unwrap_or_else(|| Arc::new(MemoryControl::new()));
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
    let hub = hub::Hub::new(log.partitions(), Box::new(consumer));
    let demo = demo.map(|publisher| Demo::new(publisher, &config.ws_path));
    let drain_window = config.drain_window;
    let tls = match &config.tls {
        Some(files) => Some(serve_tls(files.clone(), &readers, &stop)?),
        None => None,
    };
    let (edge_id, interval) = (config.edge_id.clone(), config.heartbeat_interval);
    let ctx = match session::SessionContext::new(config, Arc::clone(&hub), log, Arc::clone(&access), meters) {
        Ok(ctx) => Arc::new(ctx),
        Err(problem) => return Err(EdgeError::Config(problem)),
    };
    ctx.auth.start(&readers, &stop);
    readers.spawn(revocations::run(access, Arc::clone(&ctx), stop.clone()));
    let directory = Arc::clone(&ctx.directory);
    let heartbeat =
        heartbeat::Heartbeat { edge_id, control, directory: Arc::clone(&directory), hub, interval };
    readers.spawn(heartbeat.clone().report_until(stop.clone()));
    readers.spawn(heartbeat.listen_until(stop.clone()));
    let routes = Arc::new(server::Routes { sessions: ctx, demo, tls });
    let result = server::serve(listener, routes, draining.clone(), sessions.clone()).await;
    draining.cancel();
    directory.drain_all();
    tracing::info!(?drain_window, "edge draining: closing sessions with 1001");
    sessions.close();
    sessions.wait().await;
    stop.cancel();
    readers.close();
    readers.wait().await;
    tracing::info!("edge drained");
    result
}

/// The acceptor for `files`, whose changes a task on `readers` follows until `stop`.
fn serve_tls(
    files: tls::TlsFiles,
    readers: &TaskTracker,
    stop: &CancellationToken,
) -> Result<tokio_rustls::TlsAcceptor, EdgeError> {
    let store = tls::CertStore::open(files).map_err(EdgeError::Config)?;
    let acceptor = store.acceptor().map_err(EdgeError::Config)?;
    readers.spawn(store.watch(stop.clone()));
    Ok(acceptor)
}
