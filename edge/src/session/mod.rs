//! One task per WebSocket: reads client messages, answers them, and writes everything queued in its outbox.
//!
//! Invariants:
//! - Every server frame, replies included, goes through the outbox, so frames leave in the order queued and
//!   one writer owns the socket.
//! - `subscribed` is queued before the hub registration and written only after the partition reader holds a
//!   position taken after it: everything appended after the client sees `subscribed` is delivered. A
//!   recovering subscription (`since`) joins the hub only once its pages reached the stream's end, with an
//!   exact seam (see [`recovering`]).
//! - Recovery pages are read only while the queue holds less than half its bound: a backlog never overflows
//!   it.
//! - A session's failure ends that session only. Its membership (seat, user list, conversations) is a
//!   [`Member`] of the edge's [`Directory`]: however the session ends, dropping it leaves everything.
//! - Every client message, WebSocket ping and unfinished fragment costs a token of the connection's bucket
//!   before it is even parsed.
//! - On shutdown a session keeps serving (deliveries included) until its own moment within the drain window,
//!   chosen at random so that clients reconnecting elsewhere do not arrive all at once; then it closes 1001.
//!
//! - [`handlers`]: what each client frame does (auth, refresh, unsubscribe), access checks, revocations.
//! - [`subscription`]: `subscribe`, with replay of the newest notifications (`last`).
//! - [`recovering`]: recovery from `since` in pages as the socket drains, and its seam with live delivery.
//! - [`timers`]: the session's clocks (auth timeout, token expiry, idle, drain moment, ping) on the tokio
//!   clock.
//! - [`liveness`]: WebSocket ping/pong dead-peer detection.
//! - [`limiter`]: the message rate limit, on the tokio clock.
//! - [`io`]: the session's loop: waiting on socket, outbox and timers; reading and writing.
//! - [`closing`]: the lingering close: last frames and the close frame out, the peer's rest read and dropped.
//! - [`drain`]: the accounting of a session's end.

mod closing;
mod drain;
mod handlers;
mod io;
mod limiter;
mod liveness;
mod moment;
mod recovering;
mod subscription;
mod timers;

use std::sync::Arc;

use bytes::Bytes;
use crier_store::access::AccessStore;
use crier_store::log::PartitionedLog;

use self::limiter::Limiter;
use self::recovering::Recovering;
use self::timers::Timers;
use crate::auth::{Authenticator, Principal};
use crate::config::EdgeConfig;
use crate::directory::{Directory, Member, Seat};
use crate::error::CloseReason;
use crate::frame::Pending;
use crate::gate::Gate;
use crate::hub::Hub;
use crate::inbound::{Inbound, MessageReader};
use crate::meters::EdgeMeters;
use crate::outbox::Outbox;
use crate::protocol::{self, READY_MESSAGE, ServerFrame};
use crate::stream::Stream;

/// What every session of an edge shares.
pub struct SessionContext {
    /// Every session's membership: seats, users, conversations (through the hub).
    pub directory: Arc<Directory>,
    /// Checks tokens.
    pub auth: Authenticator,
    /// Access decisions.
    pub gate: Gate,
    /// Limits and timeouts.
    pub config: Arc<EdgeConfig>,
    /// The partitioned log, for recovery reads.
    pub log: Arc<dyn PartitionedLog>,
    /// Metric handles, registered once per edge.
    pub meters: EdgeMeters,
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
        let gate = Gate::new(config.acl, access, auth.clone(), config.revocation_memory());
        let limits = &config.limits;
        let subscriptions = meters.subscriptions.clone();
        let directory =
            Directory::new(hub, limits.max_connections, limits.max_connections_per_user, subscriptions);
        let config = Arc::new(config);
        Ok(Self { directory, auth, gate, config, log, meters })
    }
}

/// What the HTTP handshake handed over.
pub struct Handshake {
    /// A token from `Authorization`, `Sec-WebSocket-Protocol` or `?token=`.
    pub token: Option<String>,
    /// This connection's place under `--max-connections`.
    pub seat: Seat,
    /// The client asked for notification frames with positions (`?positions=1`).
    pub positions: bool,
}

/// How a session ends.
enum Ending {
    /// The peer vanished: nothing more can be written.
    Peer,
    /// The peer sent a close frame; this is the echo to send back.
    PeerClosed(Bytes),
    /// The server closes for this reason (its code and text are in the close table).
    Close(CloseReason),
    /// An operator disconnected the user (4030) with this reason.
    Kicked(Arc<str>),
}

/// Serves one upgraded connection until either side ends it. `early` holds client bytes that arrived
/// with the handshake. Not an `async fn`: the session is built here, so the task's future holds it once.
pub fn run(
    stream: Stream,
    early: &[u8],
    ctx: Arc<SessionContext>,
    handshake: Handshake,
) -> impl Future<Output = ()> + Send + use<> {
    let session = Box::new(Session::new(stream, early, ctx, handshake.seat, handshake.positions));
    // Dev auth ignores tokens, wherever they come from.
    let token = handshake.token.filter(|_| !session.ctx.auth.is_dev());
    session.run(token)
}

struct Session {
    /// The session's membership; dropped with the session, it leaves everything.
    member: Member,
    ctx: Arc<SessionContext>,
    stream: Stream,
    reader: MessageReader,
    outbox: Arc<Outbox>,
    /// Frames taken from the outbox and not yet fully written.
    pending: Pending,
    principal: Option<Principal>,
    /// Auth timeout, token expiry, idle timeout, drain moment, ping.
    timers: Timers,
    limiter: Limiter,
    /// Recoveries in progress (subscriptions of the session not yet in the hub); boxed, as most connections
    /// never recover.
    recovering: Option<Box<Recovering>>,
    /// Notifications arrive as `{"type":"notification",...,"position"}` frames.
    positions: bool,
}

impl Session {
    fn new(stream: Stream, early: &[u8], ctx: Arc<SessionContext>, seat: Seat, positions: bool) -> Self {
        let outbox = Arc::new(Outbox::new(ctx.config.max_queue_bytes));
        let limits = &ctx.config.limits;
        let limiter = Limiter::new(limits.messages_per_second, limits.message_burst);
        let timers = Timers::new(ctx.config.auth_timeout, limits.ping_interval, limits.idle_timeout);
        let member = seat.admit(Arc::clone(&outbox));
        ctx.meters.connections.increment(1.0);
        Self {
            member,
            reader: MessageReader::new(ctx.config.max_frame_bytes, early),
            ctx,
            stream,
            outbox,
            pending: Pending::default(),
            principal: None,
            timers,
            limiter,
            recovering: None,
            positions,
        }
    }

    /// The whole life of the session: authentication by handshake token (if any), serving, closing. Not an
    /// `async fn`: its arguments would stay in the task for the session's whole life (the token twice),
    /// which made every connection's task a 128-byte step larger. The token lives in the boxed first step.
    fn run(self: Box<Self>, token: Option<String>) -> impl Future<Output = ()> + Send + use<> {
        let start = Box::pin(self.start(token));
        async move {
            let (mut session, ending) = start.await;
            let ending = match ending {
                Some(ending) => ending,
                None => session.serve().await,
            };
            // Its user may connect again, and nothing more is delivered, while the close lingers.
            session.member.retire();
            Box::pin(session.close(&ending)).await;
            session.finish(&ending);
        }
    }

    /// Authenticates with the handshake's token, or greets the client to send one.
    async fn start(mut self: Box<Self>, token: Option<String>) -> (Box<Self>, Option<Ending>) {
        let ending = match token {
            Some(token) => self.authenticate(Some(token), None).await,
            None => {
                tracing::info!(session = self.id(), "ws_client_connected_awaiting_auth");
                self.send(&ServerFrame::Ready { message: READY_MESSAGE });
                None
            }
        };
        (self, ending)
    }

    fn send(&self, frame: &ServerFrame<'_>) {
        // An overflow is noticed (and closes the session) at the next flush.
        let _ = self.outbox.push(frame.encode());
    }

    async fn handle(&mut self, message: Inbound) -> Option<Ending> {
        let charged = !matches!(message, Inbound::Close(_));
        if charged && !self.limiter.take() {
            tracing::debug!(session = self.id(), "rate limit exceeded");
            return self.end(CloseReason::RateLimited);
        }
        let text = match message {
            Inbound::Close(echo) => return Some(Ending::PeerClosed(echo)),
            Inbound::Ping | Inbound::Fragment => return None,
            Inbound::Binary => {
                tracing::debug!(session = self.id(), reason = "binary frame", "ws_invalid_message");
                self.send(&ServerFrame::error("Binary frames are not supported"));
                return None;
            }
            Inbound::Text(text) => text,
        };
        // Only messages count as activity: pings and pongs come from browsers on their own.
        self.timers.heard_message(self.ctx.config.limits.idle_timeout);
        match protocol::decode(&text) {
            Ok(frame) => self.handle_frame(frame).await,
            Err(err) => {
                tracing::debug!(session = self.id(), reason = %err.message(), "ws_invalid_message");
                self.send(&ServerFrame::error(&err.message()));
                None
            }
        }
    }

    /// Ends the session for `reason`: its error frame (if the table lists one) goes out before the close.
    fn end(&self, reason: CloseReason) -> Option<Ending> {
        if let Some(message) = reason.error_message() {
            self.send(&ServerFrame::error(message));
        }
        Some(Ending::Close(reason))
    }

    fn id(&self) -> u64 {
        self.member.id()
    }
}
