//! One task per WebSocket: reads client messages, answers them, and writes everything queued in its outbox.
//!
//! Invariants:
//! - Every server frame, replies included, goes through the outbox, so frames leave in the order queued and
//!   one writer owns the socket.
//! - `subscribed` is queued before the hub registration and written only after the partition reader holds a
//!   position taken after it: everything appended after the client sees `subscribed` is delivered.
//! - A session's failure ends that session only; it unsubscribes everything on the way out.
//! - On shutdown a session keeps serving (deliveries included) until its own moment within the drain window,
//!   chosen at random so that clients reconnecting elsewhere do not arrive all at once; then it closes 1001.

use std::collections::{HashSet, VecDeque};
use std::hash::{BuildHasher, RandomState};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use crier_broker::log::{Head, PartitionedLog};
use crier_broker::publisher::validate_conversation_id;
use crier_proto::{Position, StreamId};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::auth::{Authenticator, Principal};
use crate::config::EdgeConfig;
use crate::error::CloseCode;
use crate::frame::{self, FrameWriter};
use crate::hub::{Hub, Subscriber};
use crate::inbound::{Inbound, MessageReader};
use crate::meters::EdgeMeters;
use crate::outbox::Outbox;
use crate::protocol::{self, ClientFrame, READY_MESSAGE, ServerFrame};
use crate::recovery;
use crate::registry::Registry;

/// How long a subscribe waits for its partition reader to take a position.
const SUBSCRIBE_READY_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a write already under way may still take once the outbox has overflowed, so the 4008 close can
/// follow a whole frame; a client that reads nothing is cut off after it.
const STALLED_WRITE_GRACE: Duration = Duration::from_secs(2);

/// What every session of an edge shares.
pub struct SessionContext {
    /// Conversation → subscribers.
    pub hub: Arc<Hub>,
    /// Checks `auth` frames.
    pub auth: Authenticator,
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
    /// Context for sessions of an edge with `config`, fed by `hub`, recovering from `log`.
    #[must_use]
    pub fn new(config: EdgeConfig, hub: Arc<Hub>, log: Arc<dyn PartitionedLog>, meters: EdgeMeters) -> Self {
        let auth = Authenticator::new(&config.auth);
        let registry = Arc::new(Registry::default());
        Self { hub, auth, config: Arc::new(config), log, meters, registry, next_id: AtomicU64::new(1) }
    }
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

/// Serves one upgraded connection until either side ends it. `positions`: the client asked for
/// notification frames with positions (`?positions=1`).
pub async fn run<S>(io: S, ctx: Arc<SessionContext>, shutdown: CancellationToken, positions: bool)
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (read, write) = tokio::io::split(io);
    let mut reader = MessageReader::new(read, ctx.config.max_frame_bytes);
    let mut writer = FrameWriter::new(write);
    let mut session = Session::new(ctx, positions);
    session.ctx.meters.connections.increment(1.0);
    tracing::info!(session = session.id, "ws_client_connected_awaiting_auth");
    session.send(&ServerFrame::Ready { message: READY_MESSAGE });
    let ending = session.serve(&mut reader, &mut writer, &shutdown).await;
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

/// A random moment within `window` from now: when a draining session closes.
fn drain_deadline(window: Duration, session: u64) -> Instant {
    // RandomState is seeded per instance, so this is a fresh random number without a dependency.
    let random = RandomState::new().hash_one(session);
    let nanos = u64::try_from(window.as_nanos()).unwrap_or(u64::MAX);
    let offset = if nanos == 0 { 0 } else { random % nanos };
    Instant::now() + Duration::from_nanos(offset)
}

struct Session {
    id: u64,
    ctx: Arc<SessionContext>,
    outbox: Arc<Outbox>,
    /// Frames taken from the outbox and not yet fully written.
    pending: VecDeque<Bytes>,
    principal: Option<Principal>,
    subscriptions: HashSet<Box<str>>,
    /// Notifications arrive as `{"type":"notification",...,"position"}` frames.
    positions: bool,
    /// Turns `Some(reason)` when an operator disconnects this session's user.
    kicked: tokio::sync::watch::Receiver<Option<Arc<str>>>,
}

impl Session {
    fn new(ctx: Arc<SessionContext>, positions: bool) -> Self {
        let id = ctx.next_id.fetch_add(1, Ordering::Relaxed);
        let outbox = Arc::new(Outbox::new(ctx.config.max_queue_bytes));
        let kicked = ctx.registry.register(id);
        let subscriptions = HashSet::new();
        let pending = VecDeque::new();
        Self { id, ctx, outbox, pending, principal: None, subscriptions, positions, kicked }
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
        let mut drain_at: Option<Instant> = None;
        loop {
            // The read future lives across wake-ups for writes: reads are not cancel-safe.
            let read = reader.read(&outbox);
            tokio::pin!(read);
            let message = loop {
                tokio::select! {
                    () = shutdown.cancelled(), if drain_at.is_none() => {
                        drain_at = Some(drain_deadline(self.ctx.config.drain_window, self.id));
                    }
                    () = tokio::time::sleep_until(drain_at.unwrap_or(auth_deadline)), if drain_at.is_some() => {
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
                () = outbox.ready() => if outbox.is_overflowed() { break },
            }
        }
        match tokio::time::timeout(STALLED_WRITE_GRACE, write).await {
            Ok(Ok(())) => slow,
            _ => Some(Ending::Peer),
        }
    }

    async fn handle(&mut self, message: Inbound) -> Option<Ending> {
        let text = match message {
            Inbound::Close => return Some(Ending::Peer),
            Inbound::Binary => {
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

    async fn handle_frame(&mut self, frame: ClientFrame) -> Option<Ending> {
        match frame {
            ClientFrame::Auth { token, user_id, positions } => {
                self.positions |= positions;
                return self.authenticate(token, user_id);
            }
            ClientFrame::Ping => self.send(&ServerFrame::Pong),
            _ if self.principal.is_none() => self.send(&ServerFrame::error("Not authenticated")),
            ClientFrame::Subscribe { conversation_id, since } => {
                self.subscribe(&conversation_id, since.as_deref()).await;
            }
            ClientFrame::Unsubscribe { conversation_id } => self.unsubscribe(&conversation_id),
        }
        None
    }

    fn authenticate(&mut self, token: Option<String>, user_id: Option<String>) -> Option<Ending> {
        if self.principal.is_some() {
            self.send(&ServerFrame::error("Already authenticated"));
            return None;
        }
        match self.ctx.auth.authenticate(token.as_deref(), user_id.as_deref()) {
            Ok(principal) => {
                tracing::info!(session = self.id, user_id = %principal.user_id, "ws_client_authenticated");
                self.ctx.meters.authenticated.increment(1.0);
                self.ctx.registry.set_user(self.id, Arc::clone(&principal.user_id));
                self.send(&ServerFrame::Authenticated { user_id: &principal.user_id });
                self.principal = Some(principal);
                None
            }
            Err(err) => {
                tracing::debug!(session = self.id, error = %err, "authentication failed");
                self.send(&ServerFrame::error("Authentication failed"));
                Some(Ending::Close(CloseCode::AuthFailed, "Authentication failed"))
            }
        }
    }

    /// Subscribes; with `since`, replays what the client missed first. The `subscribed` frame (and any
    /// replayed frames) go in at the outbox position taken before registering, ahead of every live frame.
    async fn subscribe(&mut self, conversation: &str, since: Option<&str>) {
        if let Err(reason) = validate_conversation_id(conversation) {
            tracing::debug!(session = self.id, %reason, "ws_invalid_message");
            self.send(&ServerFrame::error("Invalid conversationId"));
            return;
        }
        let asked = since.is_some();
        if self.subscriptions.contains(conversation) {
            let recovered = asked.then_some(false);
            self.send(&ServerFrame::Subscribed { conversation_id: conversation, recovered, position: None });
            return;
        }
        let partition = self.ctx.hub.partition_of(conversation);
        let since = since.and_then(|s| s.parse::<Position>().ok()).filter(|p| p.partition == partition);
        let mark = self.outbox.mark();
        let Some((live, since)) = self.register(conversation, since).await else {
            tracing::warn!(
                session = self.id,
                conversation_id = conversation,
                "subscription failed: log unavailable"
            );
            let reason = Some("log unavailable");
            self.send(&ServerFrame::Unsubscribed { conversation_id: conversation, reason });
            return;
        };
        let missed = match since {
            Some(since) => {
                recovery::missed(self.ctx.log.as_ref(), conversation, since, live.last, self.positions)
                    .await
                    .ok()
            }
            None => None,
        };
        let recovered = asked.then_some(missed.is_some());
        // Replayed frames carry their own positions; without replay, the client has everything up to `live`.
        let resume = match (&missed, since) {
            (Some(_), Some(since)) => since,
            _ => Position { partition, epoch: live.epoch, id: live.last },
        };
        let position = self.positions.then(|| resume.to_string());
        let subscribed = ServerFrame::Subscribed { conversation_id: conversation, recovered, position };
        let mut frames = vec![subscribed.encode()];
        frames.extend(missed.unwrap_or_default());
        let _ = self.outbox.insert_at(mark, frames);
        self.subscriptions.insert(conversation.into());
        self.ctx.meters.subscriptions.increment(1.0);
        self.ctx.registry.subscribed(self.id, conversation);
        tracing::info!(session = self.id, conversation_id = conversation, ?recovered, "ws_client_subscribed");
    }

    /// Registers with the hub and waits until live delivery has a starting point. Returns that point and
    /// the recovery position still usable: a `since` of another epoch is dropped (and the registration
    /// redone without it, so live delivery skips nothing). `None` when the log is unavailable.
    async fn register(
        &mut self,
        conversation: &str,
        since: Option<Position>,
    ) -> Option<(Head, Option<Position>)> {
        let live = self.register_once(conversation, since.map_or(StreamId::ZERO, |p| p.id)).await?;
        match since {
            Some(p) if p.epoch != live.epoch => {
                self.ctx.hub.unsubscribe(conversation, self.id);
                Some((self.register_once(conversation, StreamId::ZERO).await?, None))
            }
            since => Some((live, since)),
        }
    }

    async fn register_once(&mut self, conversation: &str, after: StreamId) -> Option<Head> {
        let outbox = Arc::clone(&self.outbox);
        let subscriber = Subscriber { session: self.id, outbox, positions: self.positions, after };
        let mut registration = self.ctx.hub.subscribe(conversation, subscriber);
        if let Some(at) = registration.at {
            return Some(at);
        }
        let started =
            tokio::time::timeout(SUBSCRIBE_READY_TIMEOUT, registration.started.wait_for(Option::is_some));
        match started.await {
            Ok(Ok(head)) => *head,
            _ => {
                self.ctx.hub.unsubscribe(conversation, self.id);
                None
            }
        }
    }

    fn unsubscribe(&mut self, conversation: &str) {
        if self.subscriptions.remove(conversation) {
            self.ctx.hub.unsubscribe(conversation, self.id);
            self.ctx.meters.subscriptions.decrement(1.0);
            self.ctx.registry.unsubscribed(self.id, conversation);
            tracing::info!(session = self.id, conversation_id = conversation, "ws_client_unsubscribed");
        }
        self.send(&ServerFrame::Unsubscribed { conversation_id: conversation, reason: None });
    }

    fn leave_all(&mut self) {
        self.ctx.meters.subscriptions.decrement(self.subscriptions.len() as f64);
        for conversation in self.subscriptions.drain() {
            self.ctx.hub.unsubscribe(&conversation, self.id);
        }
    }

    /// Accounts for the session's end in the registry and the metrics.
    fn finish(&self, ending: &Ending) {
        self.ctx.registry.remove(self.id);
        let meters = &self.ctx.meters;
        meters.connections.decrement(1.0);
        if self.principal.is_some() {
            meters.authenticated.decrement(1.0);
        }
        meters.closed(match ending {
            Ending::Peer => None,
            Ending::Close(code, _) => Some(*code),
            Ending::Kicked(_) => Some(CloseCode::Disconnected),
        });
    }
}
