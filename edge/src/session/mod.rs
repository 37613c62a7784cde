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

use std::collections::{HashSet, VecDeque};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use crier_broker::access::AccessStore;
use crier_broker::log::PartitionedLog;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use self::liveness::Liveness;
use crate::auth::{Authenticator, Principal};
use crate::config::EdgeConfig;
use crate::connections::{ConnectionSlot, Connections, SessionControl, UserSlot};
use crate::error::CloseCode;
use crate::frame::{self, FrameWriter};
use crate::gate::Gate;
use crate::hub::Hub;
use crate::inbound::{Inbound, MessageReader};
use crate::meters::EdgeMeters;
use crate::outbox::Outbox;
use crate::protocol::{self, READY_MESSAGE, ServerFrame};
use crate::registry::Registry;

/// How long a write already under way may still take once the outbox has overflowed, so the 4008 close can
/// follow a whole frame; a client that reads nothing is cut off after it.
const STALLED_WRITE_GRACE: Duration = Duration::from_secs(2);

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

/// Serves one upgraded connection until either side ends it.
pub async fn run<S>(io: S, ctx: Arc<SessionContext>, shutdown: CancellationToken, handshake: Handshake)
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (read, write) = tokio::io::split(io);
    let mut reader = MessageReader::new(read, ctx.config.max_frame_bytes);
    let mut writer = FrameWriter::new(write);
    let limits = &ctx.config.limits;
    let liveness = Liveness::new(reader.heard(), limits.ping_interval, limits.pong_timeout);
    let mut session = Session::new(Arc::clone(&ctx), liveness, handshake.positions);
    let _slot = handshake.slot;
    session.ctx.meters.connections.increment(1.0);
    // Dev auth ignores tokens, wherever they come from.
    let token = handshake.token.filter(|_| !ctx.auth.is_dev());
    let ending = match token {
        Some(token) => session.authenticate(Some(token), None).await,
        None => {
            tracing::info!(session = session.id, "ws_client_connected_awaiting_auth");
            session.send(&ServerFrame::Ready { message: READY_MESSAGE });
            None
        }
    };
    let ending = match ending {
        Some(ending) => ending,
        None => session.serve(&mut reader, &mut writer, &shutdown).await,
    };
    session.leave_all();
    // Queued frames (replies, a close echo) go out first, best-effort: the peer may already be gone.
    let _ = session.outbox.drain_into(&mut session.pending);
    match &ending {
        Ending::Close(code, reason) => {
            tracing::debug!(session = session.id, code = code.code(), reason, "closing session");
            session.pending.push_back(frame::close(code.code(), reason));
        }
        Ending::Kicked(reason) => {
            session.pending.push_back(frame::close(CloseCode::Disconnected.code(), reason));
        }
        Ending::Peer => {}
    }
    let _ = tokio::time::timeout(Duration::from_secs(1), writer.write_all(&mut session.pending)).await;
    session.finish(&ending);
}

struct Session {
    id: u64,
    ctx: Arc<SessionContext>,
    outbox: Arc<Outbox>,
    /// Frames taken from the outbox and not yet fully written.
    pending: VecDeque<Bytes>,
    principal: Option<Principal>,
    /// When the connection token expires (close 4003 unless refreshed).
    expires: Option<Instant>,
    /// Holds this session in its user's list; reached by revocations.
    user_slot: Option<UserSlot>,
    control: Arc<SessionControl>,
    subscriptions: HashSet<Box<str>>,
    limiter: DefaultDirectRateLimiter,
    liveness: Liveness,
    /// Notifications arrive as `{"type":"notification",...,"position"}` frames.
    positions: bool,
    /// Turns `Some(reason)` when an operator disconnects this session's user.
    kicked: tokio::sync::watch::Receiver<Option<Arc<str>>>,
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
        let kicked = ctx.registry.register(id);
        Self {
            id,
            ctx,
            outbox,
            pending: VecDeque::new(),
            principal: None,
            expires: None,
            user_slot: None,
            control: Arc::default(),
            subscriptions: HashSet::new(),
            limiter,
            liveness,
            positions,
            kicked,
        }
    }

    fn send(&self, frame: &ServerFrame<'_>) {
        // An overflow is noticed (and closes the session) at the next flush.
        let _ = self.outbox.push(frame.encode());
    }

    async fn serve<R, W>(
        &mut self,
        reader: &mut MessageReader<R>,
        writer: &mut FrameWriter<W>,
        shutdown: &CancellationToken,
    ) -> Ending
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        let auth_deadline = Instant::now() + self.ctx.config.auth_timeout;
        let outbox = Arc::clone(&self.outbox);
        let control = Arc::clone(&self.control);
        let mut drain_at: Option<Instant> = None;
        loop {
            // The read future lives across wake-ups for writes: reads are not cancel-safe.
            let read = reader.read(&outbox);
            tokio::pin!(read);
            let message = loop {
                let expires = self.expires;
                tokio::select! {
                    () = shutdown.cancelled(), if drain_at.is_none() => {
                        drain_at = Some(drain::drain_deadline(self.ctx.config.drain_window, self.id));
                    }
                    () = sleep_until_some(drain_at), if drain_at.is_some() => {
                        return Ending::Close(CloseCode::GoingAway, "server shutting down");
                    }
                    Ok(()) = self.kicked.changed() => {
                        if let Some(reason) = self.kicked.borrow_and_update().clone() {
                            tracing::info!(session = self.id, %reason, "disconnected by operator");
                            return Ending::Kicked(reason);
                        }
                    }
                    () = tokio::time::sleep_until(auth_deadline), if self.principal.is_none() => {
                        tracing::info!(session = self.id, "ws_auth_timeout");
                        self.send(&ServerFrame::error("Authentication timeout"));
                        return Ending::Close(CloseCode::AuthFailed, "Authentication timeout");
                    }
                    () = sleep_until_some(expires), if expires.is_some() => {
                        tracing::debug!(session = self.id, "token expired without refresh");
                        self.send(&ServerFrame::error("Token expired"));
                        return Ending::Close(CloseCode::TokenExpired, "Token expired");
                    }
                    () = tokio::time::sleep_until(self.liveness.deadline()) => {
                        if self.liveness.on_timer(&outbox).is_err() {
                            tracing::debug!(session = self.id, "peer did not answer ping");
                            return Ending::Close(CloseCode::GoingAway, "ping timeout");
                        }
                    }
                    () = control.ready() => self.handle_revocations(),
                    () = outbox.ready() => {
                        if let Some(ending) = self.flush(writer).await {
                            return ending;
                        }
                    }
                    message = &mut read => break message,
                }
            };
            let ending = match message {
                Ok(message) => self.handle(message).await,
                Err(err) => {
                    tracing::debug!(session = self.id, error = ?err, "ws_invalid_message");
                    Some(err.close_code().map_or(Ending::Peer, |code| Ending::Close(code, "invalid frame")))
                }
            };
            if let Some(ending) = ending {
                return ending;
            }
        }
    }

    /// Writes everything queued; `Some` when the session must end. While a write waits on a slow socket,
    /// an overflow of the outbox still ends the session: the write gets a short grace to finish its frame
    /// (so the 4008 close is well-formed), then the connection is dropped.
    async fn flush<W: AsyncWrite + Unpin>(&mut self, writer: &mut FrameWriter<W>) -> Option<Ending> {
        let slow = Some(Ending::Close(CloseCode::SlowConsumer, "slow consumer"));
        if self.outbox.drain_into(&mut self.pending).is_err() {
            self.pending.clear();
            return slow;
        }
        let queued: usize = self.pending.iter().map(Bytes::len).sum();
        self.ctx.meters.queue_bytes.record(queued as f64);
        let outbox = Arc::clone(&self.outbox);
        let write = writer.write_all(&mut self.pending);
        tokio::pin!(write);
        loop {
            tokio::select! {
                result = &mut write => return result.err().map(|_| Ending::Peer),
                () = outbox.overflowed() => break,
            }
        }
        match tokio::time::timeout(STALLED_WRITE_GRACE, write).await {
            Ok(Ok(())) => slow,
            _ => Some(Ending::Peer),
        }
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

/// Sleeps until `at`; forever when `None` (the select branch is disabled then anyway).
async fn sleep_until_some(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
