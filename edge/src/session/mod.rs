//! One task per WebSocket: reads client messages, answers them, and writes everything queued in its outbox.
//!
//! Invariants:
//! - Every server frame, replies included, goes through the outbox, so frames leave in the order queued and
//!   one writer owns the socket.
//! - `subscribed` is queued before the hub registration and written only after the partition reader holds a
//!   position taken after it: everything appended after the client sees `subscribed` is delivered.
//! - A session's failure ends that session only; it unsubscribes everything on the way out.
//! - Every client message costs a token of the connection's bucket before it is even parsed.
//! - On shutdown a session keeps serving (deliveries included) until its own moment within the drain window,
//!   chosen at random so that clients reconnecting elsewhere do not arrive all at once; then it closes 1001.
//!
//! - [`handlers`]: what each client frame does (auth, refresh, unsubscribe), access checks, revocations.
//! - [`subscription`]: `subscribe`, with recovery from `since`.
//! - [`liveness`]: WebSocket ping/pong dead-peer detection.
//! - [`drain`]: when a draining session closes, and the accounting of a session's end.

mod drain;
mod handlers;
mod liveness;
mod subscription;

use std::collections::HashSet;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use crier_broker::access::AccessStore;
use crier_broker::log::PartitionedLog;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use self::liveness::Liveness;
use crate::auth::{Authenticator, Principal};
use crate::config::EdgeConfig;
use crate::connections::{ConnectionSlot, Connections, UserSlot};
use crate::error::CloseCode;
use crate::frame::{self, Pending};
use crate::gate::Gate;
use crate::hub::Hub;
use crate::inbound::{Inbound, InboundError, MessageReader};
use crate::meters::EdgeMeters;
use crate::outbox::Outbox;
use crate::protocol::{self, READY_MESSAGE, ServerFrame};
use crate::registry::Registry;

/// How long the last frames and the close may take to write; a client that reads nothing is cut off after it.
const CLOSING_WRITE_GRACE: Duration = Duration::from_secs(2);

/// What every session of an edge shares.
pub struct SessionContext {
    /// Conversation → subscribers.
    pub hub: Arc<Hub>,
    /// Checks tokens.
    pub auth: Authenticator,
    /// Access decisions.
    pub gate: Gate,
    /// Connection accounting and per-user reach.
    pub connections: Arc<Connections>,
    /// Limits and timeouts.
    pub config: Arc<EdgeConfig>,
    /// The partitioned log, for recovery reads.
    pub log: Arc<dyn PartitionedLog>,
    /// Metric handles, registered once per edge.
    pub meters: EdgeMeters,
    /// Every session's user and conversations, for presence and operator disconnects.
    pub registry: Arc<Registry>,
    next_id: AtomicU64,
}

impl SessionContext {
    /// Context for sessions of an edge with `config`, fed by `hub`, recovering from `log`, checking grants
    /// in `access`, counting in `meters`.
    pub fn new(
        config: EdgeConfig,
        hub: Arc<Hub>,
        log: Arc<dyn PartitionedLog>,
        access: Arc<dyn AccessStore>,
        meters: EdgeMeters,
    ) -> Result<Self, String> {
        let auth = Authenticator::new(&config.auth)?;
        let gate = Gate::new(config.acl, access, auth.clone());
        let connections =
            Connections::new(config.limits.max_connections, config.limits.max_connections_per_user);
        let config = Arc::new(config);
        let registry = Arc::new(Registry::default());
        let next_id = AtomicU64::new(1);
        Ok(Self { hub, auth, gate, connections, config, log, meters, registry, next_id })
    }
}

/// What the HTTP handshake handed over.
pub struct Handshake {
    /// A token from `Authorization`, `Sec-WebSocket-Protocol` or `?token=`.
    pub token: Option<String>,
    /// This connection's place under `--max-connections`.
    pub slot: ConnectionSlot,
    /// The client asked for notification frames with positions (`?positions=1`).
    pub positions: bool,
}

/// How a session ends.
enum Ending {
    /// The peer closed (echo queued) or vanished.
    Peer,
    /// The server closes with this code and reason.
    Close(CloseCode, &'static str),
    /// An operator disconnected the user (4030) with this reason.
    Kicked(Arc<str>),
}

/// Serves one upgraded connection until either side ends it. `early` holds client bytes that arrived
/// with the handshake.
pub async fn run(
    stream: TcpStream,
    early: Bytes,
    ctx: Arc<SessionContext>,
    shutdown: CancellationToken,
    handshake: Handshake,
) {
    // Copied, so that hyper's read buffer, which `early` may point into, is freed now.
    let mut reader = MessageReader::new(ctx.config.max_frame_bytes, &early);
    drop(early);
    let limits = &ctx.config.limits;
    let liveness = Liveness::new(limits.ping_interval, limits.pong_timeout);
    let mut session = Session::new(Arc::clone(&ctx), liveness, handshake.positions);
    let _slot = handshake.slot;
    session.ctx.meters.connections.increment(1.0);
    // Dev auth ignores tokens, wherever they come from.
    let token = handshake.token.filter(|_| !ctx.auth.is_dev());
    let ending = match token {
        Some(token) => Box::pin(session.authenticate(Some(token), None)).await,
        None => {
            tracing::info!(session = session.id, "ws_client_connected_awaiting_auth");
            session.send(&ServerFrame::Ready { message: READY_MESSAGE });
            None
        }
    };
    let ending = match ending {
        Some(ending) => ending,
        None => session.serve(&stream, &mut reader, &shutdown).await,
    };
    session.leave_all();
    session.close(&stream, &ending).await;
    session.finish(&ending);
}

struct Session {
    id: u64,
    ctx: Arc<SessionContext>,
    outbox: Arc<Outbox>,
    /// Frames taken from the outbox and not yet fully written.
    pending: Pending,
    principal: Option<Principal>,
    /// When the connection token expires (close 4003 unless refreshed).
    expires: Option<Instant>,
    /// Holds this session in its user's list; reached by revocations.
    user_slot: Option<UserSlot>,
    subscriptions: HashSet<Box<str>>,
    limiter: DefaultDirectRateLimiter,
    liveness: Liveness,
    /// Notifications arrive as `{"type":"notification",...,"position"}` frames.
    positions: bool,
}

impl Session {
    fn new(ctx: Arc<SessionContext>, liveness: Liveness, positions: bool) -> Self {
        let id = ctx.next_id.fetch_add(1, Ordering::Relaxed);
        let outbox = Arc::new(Outbox::new(ctx.config.max_queue_bytes));
        let limits = &ctx.config.limits;
        // Config validation rejects zero rates; `MIN` only guards the type.
        let rate = NonZeroU32::new(limits.messages_per_second).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(limits.message_burst).unwrap_or(NonZeroU32::MIN);
        let limiter = RateLimiter::direct(Quota::per_second(rate).allow_burst(burst));
        ctx.registry.register(id, Arc::clone(&outbox));
        Self {
            id,
            ctx,
            outbox,
            pending: Pending::default(),
            principal: None,
            expires: None,
            user_slot: None,
            subscriptions: HashSet::new(),
            limiter,
            liveness,
            positions,
        }
    }

    fn send(&self, frame: &ServerFrame<'_>) {
        // An overflow is noticed (and closes the session) at the next flush.
        let _ = self.outbox.push(frame.encode());
    }

    /// Reads, answers and writes until the session must end. Messages already read are handled before the
    /// socket is read again; everything else waits in one `select!` whose futures are all small, so an idle
    /// session costs little memory (issue 8).
    async fn serve(
        &mut self,
        stream: &TcpStream,
        reader: &mut MessageReader,
        shutdown: &CancellationToken,
    ) -> Ending {
        let timers = Timers { auth: Instant::now() + self.ctx.config.auth_timeout, drain: None };
        let mut timers = timers;
        let outbox = Arc::clone(&self.outbox);
        let sleep = tokio::time::sleep_until(self.next_deadline(&timers));
        tokio::pin!(sleep);
        loop {
            match reader.next(&outbox) {
                Ok(Some(message)) => match Box::pin(self.handle(message)).await {
                    Some(ending) => return ending,
                    None => continue,
                },
                Ok(None) => {}
                Err(err) => return inbound_ending(&err, self.id),
            }
            let deadline = self.next_deadline(&timers);
            if sleep.deadline() != deadline {
                sleep.as_mut().reset(deadline);
            }
            let ending = tokio::select! {
                () = shutdown.cancelled(), if timers.drain.is_none() => {
                    timers.drain = Some(drain::drain_deadline(self.ctx.config.drain_window, self.id));
                    None
                }
                () = &mut sleep => self.on_deadline(&timers, reader),
                () = outbox.ready() => self.on_wake(stream),
                Ok(()) = stream.writable(), if !self.pending.is_empty() => self.flush(stream),
                readable = stream.readable() => match readable.map_err(|_| InboundError::Gone).and_then(|()| reader.fill(stream)) {
                    Ok(_) => None,
                    Err(err) => Some(inbound_ending(&err, self.id)),
                },
            };
            if let Some(ending) = ending {
                return ending;
            }
        }
    }

    /// The earliest moment a timer needs attention.
    fn next_deadline(&self, timers: &Timers) -> Instant {
        let auth = self.principal.is_none().then_some(timers.auth);
        [Some(self.liveness.deadline()), auth, self.expires, timers.drain]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or_else(|| self.liveness.deadline())
    }

    /// Whatever is due now: the drain moment, the auth timeout, token expiry, the ping timer.
    fn on_deadline(&mut self, timers: &Timers, reader: &mut MessageReader) -> Option<Ending> {
        let now = Instant::now();
        if timers.drain.is_some_and(|at| at <= now) {
            return Some(Ending::Close(CloseCode::GoingAway, "server shutting down"));
        }
        if self.principal.is_none() && timers.auth <= now {
            tracing::info!(session = self.id, "ws_auth_timeout");
            self.send(&ServerFrame::error("Authentication timeout"));
            return Some(Ending::Close(CloseCode::AuthFailed, "Authentication timeout"));
        }
        if self.expires.is_some_and(|at| at <= now) {
            tracing::debug!(session = self.id, "token expired without refresh");
            self.send(&ServerFrame::error("Token expired"));
            return Some(Ending::Close(CloseCode::TokenExpired, "Token expired"));
        }
        if self.liveness.deadline() <= now && self.liveness.on_timer(&self.outbox, &mut reader.heard).is_err()
        {
            tracing::debug!(session = self.id, "peer did not answer ping");
            return Some(Ending::Close(CloseCode::GoingAway, "ping timeout"));
        }
        None
    }

    /// Something arrived in the outbox: an operator's disconnect, revocations, frames to write.
    fn on_wake(&mut self, stream: &TcpStream) -> Option<Ending> {
        if self.outbox.take_signalled() {
            if let Some(reason) = self.outbox.kicked() {
                tracing::info!(session = self.id, %reason, "disconnected by operator");
                return Some(Ending::Kicked(reason));
            }
            self.handle_revocations();
        }
        self.flush(stream)
    }

    /// Writes what the socket takes now, taking the next batch from the outbox whenever the last one is out;
    /// `Some` when the session must end. Frames stay in the (bounded) outbox while a batch is being written,
    /// so a client that stops reading overflows it and is closed with 4008 (after the frame being written).
    fn flush(&mut self, stream: &TcpStream) -> Option<Ending> {
        loop {
            if !self.pending.is_empty() && self.outbox.is_overflowed() {
                self.pending.discard_unstarted();
                return Some(Ending::Close(CloseCode::SlowConsumer, "slow consumer"));
            }
            if self.pending.is_empty() {
                if self.outbox.drain_into(self.pending.frames()).is_err() {
                    return Some(Ending::Close(CloseCode::SlowConsumer, "slow consumer"));
                }
                if self.pending.is_empty() {
                    return None;
                }
                self.ctx.meters.queue_bytes.record(self.pending.bytes() as f64);
            }
            if self.pending.try_write(stream).is_err() {
                return Some(Ending::Peer);
            }
            if !self.pending.is_empty() {
                return None;
            }
        }
    }

    /// Queues the close frame (if any) after whatever is queued and writes it all, within a grace period: the
    /// peer may already be gone, or read nothing.
    async fn close(&mut self, stream: &TcpStream, ending: &Ending) {
        let _ = self.outbox.drain_into(self.pending.frames());
        let close = match ending {
            Ending::Close(code, reason) => {
                tracing::debug!(session = self.id, code = code.code(), reason, "closing session");
                frame::close(code.code(), reason)
            }
            Ending::Kicked(reason) => frame::close(CloseCode::Disconnected.code(), reason),
            Ending::Peer => return,
        };
        self.pending.frames().push_back(close);
        let _ = tokio::time::timeout(CLOSING_WRITE_GRACE, self.pending.write_all(stream)).await;
    }

    async fn handle(&mut self, message: Inbound) -> Option<Ending> {
        if matches!(message, Inbound::Text(_) | Inbound::Binary) && self.limiter.check().is_err() {
            tracing::debug!(session = self.id, "rate limit exceeded");
            self.send(&ServerFrame::error("Rate limit exceeded"));
            return Some(Ending::Close(CloseCode::RateLimited, "rate limit exceeded"));
        }
        let text = match message {
            Inbound::Close => return Some(Ending::Peer),
            Inbound::Binary => {
                tracing::debug!(session = self.id, reason = "binary frame", "ws_invalid_message");
                self.send(&ServerFrame::error("Binary frames are not supported"));
                return None;
            }
            Inbound::Text(text) => text,
        };
        match protocol::decode(&text) {
            Ok(frame) => self.handle_frame(frame).await,
            Err(err) => {
                tracing::debug!(session = self.id, reason = %err.message(), "ws_invalid_message");
                self.send(&ServerFrame::error(&err.message()));
                None
            }
        }
    }

    fn leave_all(&mut self) {
        self.ctx.meters.subscriptions.decrement(self.subscriptions.len() as f64);
        for conversation in self.subscriptions.drain() {
            self.ctx.hub.unsubscribe(&conversation, self.id);
        }
        self.user_slot = None;
    }
}

/// The session's own deadlines (token expiry and pings live in the session).
struct Timers {
    /// The auth frame must arrive by then.
    auth: Instant,
    /// When a draining session closes; `None` until the edge drains.
    drain: Option<Instant>,
}

/// How a read error ends the session.
fn inbound_ending(err: &InboundError, session: u64) -> Ending {
    tracing::debug!(session, error = ?err, "ws_invalid_message");
    err.close_code().map_or(Ending::Peer, |code| Ending::Close(code, "invalid frame"))
}
