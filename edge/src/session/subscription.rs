//! `subscribe`: shape, limit and access checks first (each refusal an error frame naming the
//! conversation), then, with `since`, recovery of what the client missed (see [`super::recovering`]), or
//! registration with the hub and, with `last`, replay of the conversation's newest retained notifications.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use crier_proto::conversation_id::validate_conversation_id;
use crier_proto::{Position, StreamId};
use crier_store::log::Head;

use super::{Ending, Session};
use crate::meters::Recovery;
use crate::protocol::ServerFrame;
use crate::recovery;

/// How long a subscribe waits for its partition reader to take a position.
const SUBSCRIBE_READY_TIMEOUT: Duration = Duration::from_secs(5);
/// The largest `last` a client may ask for.
const MAX_LAST: i64 = 100;

/// What a subscribe replays before live delivery.
pub(super) enum Replay {
    /// Nothing: live from now.
    None,
    /// What the client missed after this position (`since`).
    Since(String),
    /// The newest N retained notifications (`last`, checked to be 1..=100 here).
    Last(i64),
}

impl Session {
    /// Subscribes; with `since`, recovers what the client missed first (in pages, see [`super::recovering`]),
    /// with `last` replays the newest notifications. `Some` when the session must end (its rate limit).
    pub(super) async fn subscribe(
        &mut self,
        conversation: &str,
        replay: Replay,
        token: Option<&str>,
    ) -> Option<Ending> {
        if !self.may_subscribe(conversation, token).await {
            return None;
        }
        let (since, last) = match &replay {
            Replay::None => (None, None),
            Replay::Since(since) => (Some(since.as_str()), None),
            Replay::Last(n) if (1..=MAX_LAST).contains(n) => (None, usize::try_from(*n).ok()),
            Replay::Last(_) => {
                let conversation_id = Some(conversation);
                self.send(&ServerFrame::Error { message: "Invalid last", conversation_id });
                return None;
            }
        };
        let asked = since.is_some();
        if self.is_subscribed(conversation) {
            let recovered = asked.then_some(false);
            self.send(&ServerFrame::Subscribed { conversation_id: conversation, recovered, position: None });
            return None;
        }
        let partition = self.ctx.directory.partition_of(conversation);
        let position = since.and_then(|s| s.parse::<Position>().ok()).filter(|p| p.partition == partition);
        if let Some(since) = position {
            match self.recover(conversation, since).await {
                Ok(ending) => return ending,
                Err(outcome) => self.ctx.meters.recovery(outcome),
            }
        } else if asked {
            self.ctx.meters.recovery(Recovery::NotRecovered);
        }
        self.subscribe_live(conversation, asked, last).await;
        None
    }

    /// Subscribes from now on (`recovered:false` when a recovery was `asked` for), after the newest `last`
    /// notifications when asked. The `subscribed` frame (and any replayed frames) go in at the outbox
    /// position taken before registering, ahead of every live frame.
    async fn subscribe_live(&mut self, conversation: &str, asked: bool, last: Option<usize>) {
        let mark = self.outbox.mark();
        let Some(live) = self.register_once(conversation, StreamId::ZERO).await else {
            tracing::warn!(
                session = self.id(),
                conversation_id = conversation,
                "subscription failed: log unavailable"
            );
            let reason = Some("log unavailable");
            self.send(&ServerFrame::Unsubscribed { conversation_id: conversation, reason });
            return;
        };
        let replayed = match last {
            Some(n) => self.newest(conversation, live, n).await,
            None => Vec::new(),
        };
        let recovered = asked.then_some(false);
        // The client has everything up to `live`: replayed frames carry their own positions.
        let partition = self.ctx.directory.partition_of(conversation);
        let resume = Position { partition, epoch: live.epoch, id: live.last };
        let position = self.positions.then(|| resume.to_string());
        let subscribed = ServerFrame::Subscribed { conversation_id: conversation, recovered, position };
        let mut frames = vec![subscribed.encode()];
        frames.extend(replayed);
        let _ = self.outbox.insert_at(mark, frames);
        tracing::info!(
            session = self.id(),
            conversation_id = conversation,
            ?recovered,
            "ws_client_subscribed"
        );
    }

    /// The newest `n` notifications up to `live.last`, which are exactly the entries live delivery skips (no
    /// gap, no duplicate; a failed read shows nothing).
    async fn newest(&self, conversation: &str, live: Head, n: usize) -> Vec<Bytes> {
        let (log, positions) = (self.ctx.log.as_ref(), self.positions);
        let partition = self.ctx.directory.partition_of(conversation);
        match recovery::newest(log, conversation, partition, live, n, positions).await {
            Ok(frames) => frames,
            Err(err) => {
                self.replay_read_failed(conversation, &err);
                Vec::new()
            }
        }
    }

    /// Whether the session follows `conversation`, live or still recovering.
    pub(super) fn is_subscribed(&self, conversation: &str) -> bool {
        self.member.is_joined(conversation) || self.is_recovering(conversation)
    }

    /// Shape, per-connection limit and access; each refusal is answered here.
    async fn may_subscribe(&mut self, conversation: &str, token: Option<&str>) -> bool {
        if let Err(reason) = validate_conversation_id(conversation, self.ctx.config.max_conversation_id_bytes)
        {
            tracing::debug!(session = self.id(), %reason, "ws_invalid_message");
            self.send(&ServerFrame::error("Invalid conversationId"));
            return false;
        }
        let fresh = !self.is_subscribed(conversation);
        if fresh && self.member.joined() + self.recoveries() >= self.ctx.config.limits.max_subscriptions {
            tracing::debug!(
                session = self.id(),
                conversation_id = conversation,
                "subscription limit reached"
            );
            let conversation_id = Some(conversation);
            self.send(&ServerFrame::Error { message: "Too many subscriptions", conversation_id });
            return false;
        }
        if let Some(refusal) = self.access_refusal(conversation, token).await {
            self.send(&ServerFrame::Error { message: refusal, conversation_id: Some(conversation) });
            return false;
        }
        true
    }

    /// Joins the conversation (through the directory), live delivery taking entries after `after` only, and
    /// waits until it has a starting point, which it returns; `None` when the log is unavailable.
    pub(super) async fn register_once(&mut self, conversation: &str, after: StreamId) -> Option<Head> {
        let outbox = Arc::clone(&self.outbox);
        let mut registration = self.member.join(conversation, outbox, self.positions, after);
        if let Some(at) = registration.at {
            return Some(at);
        }
        let started =
            tokio::time::timeout(SUBSCRIBE_READY_TIMEOUT, registration.started.wait_for(Option::is_some));
        match started.await {
            Ok(Ok(head)) => *head,
            _ => {
                self.member.leave(conversation);
                None
            }
        }
    }
}
