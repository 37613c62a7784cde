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
//! - A session's failure ends that session only; it unsubscribes everything on the way out.
//! - Every client message, WebSocket ping and unfinished fragment costs a token of the connection's bucket
//!   before it is even parsed.
//! - On shutdown a session keeps serving (deliveries included) until its own moment within the drain window,
//!   chosen at random so that clients reconnecting elsewhere do not arrive all at once; then it closes 1001.
//!
//! - [`handlers`]: what each client frame does (auth, refresh, unsubscribe), access checks, revocations.
//! - [`subscription`]: `subscribe`, with replay of the newest notifications (`last`).
//! - [`recovering`]: recovery from `since` in pages as the socket drains, and its seam with live delivery.
//! - [`liveness`]: WebSocket ping/pong dead-peer detection.
//! - [`io`]: the session's loop: waiting on socket, outbox and timers; reading and writing.
//! - [`closing`]: the lingering close: last frames and the close frame out, the peer's rest read and dropped.
//! - [`drain`]: when a draining session closes, and the accounting of a session's end.

mod closing;
mod drain;
mod handlers;
mod io;
mod liveness;
mod recovering;
mod subscription;

use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use crier_store::access::AccessStore;
use crier_store::log::PartitionedLog;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use tokio::time::Instant;

use self::liveness::Liveness;
use self::recovering::Recovering;
use crate::auth::{Authenticator, Principal};
use crate::config::EdgeConfig;
use crate::connections::{ConnectionSlot, Connections};
use crate::error::CloseCode;
use crate::frame::Pending;
use crate::gate::Gate;
use crate::hub::Hub;
use crate::inbound::{Inbound, MessageReader};
use crate::meters::EdgeMeters;
use crate::outbox::Outbox;
use crate::protocol::{self, READY_MESSAGE, ServerFrame};
use crate::registry::Registry;
use crate::stream::Stream;

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
        let gate = Gate::new(config.acl, access, auth.clone(), config.revocation_memory());
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
    /// The peer vanished: nothing more can be written.
    Peer,
    /// The peer sent a close frame; this is the echo to send back.
    PeerClosed(Bytes),
    /// The server closes with this code and reason.
    Close(CloseCode, &'static str),
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
    let session = Box::new(Session::new(stream, early, ctx, handshake.slot, handshake.positions));
    // Dev auth ignores tokens, wherever they come from.
    let token = handshake.token.filter(|_| !session.ctx.auth.is_dev());
    session.run(token)
}

struct Session {
    id: u64,
    ctx: Arc<SessionContext>,
    stream: Stream,
    reader: MessageReader,
    outbox: Arc<Outbox>,
    /// Frames taken from the outbox and not yet fully written.
    pending: Pending,
    principal: Option<Principal>,
    /// Until authenticated, when the auth frame must have arrived (close 4001); after, when the connection
    /// token expires (close 4003 unless refreshed; `None` for tokens without expiry, i.e. dev auth).
    deadline: Option<Instant>,
    /// When a draining session closes; `None` until the edge drains.
    drain_at: Option<Instant>,
    /// When the session closes for want of client messages (`--idle-timeout`); `None` when off.
    idle_at: Option<Instant>,
    /// This connection's place under `--max-connections`.
    _slot: ConnectionSlot,
    subscriptions: Subscriptions,
    /// Recoveries in progress (their subscriptions are in `subscriptions`, not yet in the hub); boxed, as
    /// most connections never recover.
    recovering: Option<Box<Recovering>>,
    limiter: DefaultDirectRateLimiter,
    liveness: Liveness,
    /// Notifications arrive as `{"type":"notification",...,"position"}` frames.
    positions: bool,
    /// The session is in its user's list in [`Connections`] and must leave it.
    in_user_list: bool,
}

impl Session {
    fn new(
        stream: Stream,
        early: &[u8],
        ctx: Arc<SessionContext>,
        slot: ConnectionSlot,
        positions: bool,
    ) -> Self {
        let id = ctx.next_id.fetch_add(1, Ordering::Relaxed);
        let outbox = Arc::new(Outbox::new(ctx.config.max_queue_bytes));
        let limits = &ctx.config.limits;
        // Config validation rejects zero rates; `MIN` only guards the type.
        let rate = NonZeroU32::new(limits.messages_per_second).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(limits.message_burst).unwrap_or(NonZeroU32::MIN);
        let limiter = RateLimiter::direct(Quota::per_second(rate).allow_burst(burst));
        let liveness = Liveness::new(limits.ping_interval);
        let idle_at = limits.idle_timeout.map(|timeout| Instant::now() + timeout);
        ctx.registry.register(id, Arc::clone(&outbox));
        ctx.meters.connections.increment(1.0);
        Self {
            id,
            reader: MessageReader::new(ctx.config.max_frame_bytes, early),
            deadline: Some(Instant::now() + ctx.config.auth_timeout),
            ctx,
            stream,
            outbox,
            pending: Pending::default(),
            principal: None,
            drain_at: None,
            idle_at,
            _slot: slot,
            subscriptions: Subscriptions::default(),
            recovering: None,
            limiter,
            liveness,
            positions,
            in_user_list: false,
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
            session.leave_all();
            Box::pin(session.close(&ending)).await;
            session.finish(&ending);
        }
    }

    /// Authenticates with the handshake's token, or greets the client to send one.
    async fn start(mut self: Box<Self>, token: Option<String>) -> (Box<Self>, Option<Ending>) {
        let ending = match token {
            Some(token) => self.authenticate(Some(token), None).await,
            None => {
                tracing::info!(session = self.id, "ws_client_connected_awaiting_auth");
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
        if charged && self.limiter.check().is_err() {
            tracing::debug!(session = self.id, "rate limit exceeded");
            self.send(&ServerFrame::error("Rate limit exceeded"));
            return Some(Ending::Close(CloseCode::RateLimited, "rate limit exceeded"));
        }
        let text = match message {
            Inbound::Close(echo) => return Some(Ending::PeerClosed(echo)),
            Inbound::Ping | Inbound::Fragment => return None,
            Inbound::Binary => {
                tracing::debug!(session = self.id, reason = "binary frame", "ws_invalid_message");
                self.send(&ServerFrame::error("Binary frames are not supported"));
                return None;
            }
            Inbound::Text(text) => text,
        };
        // Only messages count as activity: pings and pongs come from browsers on their own.
        self.idle_at = self.ctx.config.limits.idle_timeout.map(|timeout| Instant::now() + timeout);
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
        self.recovering = None;
        self.leave_user_list();
    }

    /// Leaves the user's list (per-user limit, revocations), if the session is in it: an authenticated
    /// session is, until it ends.
    fn leave_user_list(&mut self) {
        if let Some(principal) = &self.principal
            && std::mem::take(&mut self.in_user_list)
        {
            self.ctx.connections.leave(&principal.user_id, self.id);
        }
    }
}

/// However a session ends, even by its task being dropped (runtime shutdown), it leaves the hub, its user's
/// list and the registry. After a normal end only the registry entry is left to remove.
impl Drop for Session {
    fn drop(&mut self) {
        self.leave_all();
        self.ctx.registry.remove(self.id);
    }
}

/// A session's conversations: a few per connection (`--max-subscriptions`), so a vector, which costs an idle
/// connection one small allocation where a hash set cost a table. The ids are the hub's own (shared).
#[derive(Default)]
// Bound: --max-subscriptions (more are refused with an error frame).
struct Subscriptions(Vec<Arc<str>>);

impl Subscriptions {
    fn contains(&self, conversation: &str) -> bool {
        self.0.iter().any(|c| &**c == conversation)
    }

    fn insert(&mut self, conversation: Arc<str>) {
        if self.contains(&conversation) {
            return;
        }
        // Most connections follow one conversation: no room for four until a second arrives.
        if self.0.capacity() == 0 {
            self.0.reserve_exact(1);
        }
        self.0.push(conversation);
    }

    /// Whether `conversation` was there.
    fn remove(&mut self, conversation: &str) -> bool {
        let before = self.0.len();
        self.0.retain(|c| &**c != conversation);
        self.0.len() != before
    }

    fn len(&self) -> usize {
        self.0.len()
    }

    fn drain(&mut self) -> std::vec::Drain<'_, Arc<str>> {
        self.0.drain(..)
    }
}
