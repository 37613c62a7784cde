//! `subscribe`: shape, limit and access checks first (each refusal an error frame naming the
//! conversation), then registration with the hub and, with `since`, replay of what the client missed, or,
//! with `last`, of the conversation's newest retained notifications.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use crier_proto::conversation_id::validate_conversation_id;
use crier_proto::{Position, StreamId};
use crier_store::log::Head;

use super::Session;
use crate::protocol::ServerFrame;
use crate::recovery::{self, RecoveryError};

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
    /// Subscribes; with `since`, replays what the client missed first, with `last` the newest notifications.
    /// The `subscribed` frame (and any replayed frames) go in at the outbox position taken before
    /// registering, ahead of every live frame.
    pub(super) async fn subscribe(&mut self, conversation: &str, replay: Replay, token: Option<&str>) {
        if !self.may_subscribe(conversation, token).await {
            return;
        }
        let (since, last) = match &replay {
            Replay::None => (None, None),
            Replay::Since(since) => (Some(since.as_str()), None),
            Replay::Last(n) if (1..=MAX_LAST).contains(n) => (None, usize::try_from(*n).ok()),
            Replay::Last(_) => {
                let conversation_id = Some(conversation);
                self.send(&ServerFrame::Error { message: "Invalid last", conversation_id });
                return;
            }
        };
        let asked = since.is_some();
        if self.member.is_joined(conversation) {
            let recovered = asked.then_some(false);
            self.send(&ServerFrame::Subscribed { conversation_id: conversation, recovered, position: None });
            return;
        }
        let partition = self.ctx.directory.partition_of(conversation);
        let since = since.and_then(|s| s.parse::<Position>().ok()).filter(|p| p.partition == partition);
        let mark = self.outbox.mark();
        let Some((live, since)) = self.register(conversation, since).await else {
            tracing::warn!(
                session = self.id(),
                conversation_id = conversation,
                "subscription failed: log unavailable"
            );
            let reason = Some("log unavailable");
            self.send(&ServerFrame::Unsubscribed { conversation_id: conversation, reason });
            return;
        };
        let missed = self.replayed(conversation, live, since, last).await;
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
        tracing::info!(
            session = self.id(),
            conversation_id = conversation,
            ?recovered,
            "ws_client_subscribed"
        );
    }

    /// The frames to replay after `subscribed`: what was missed after `since` (`None`: not recoverable), or
    /// the newest `last` up to `live.last`, which are exactly the entries live delivery skips (no gap, no
    /// duplicate; a failed read shows nothing).
    async fn replayed(
        &self,
        conversation: &str,
        live: Head,
        since: Option<Position>,
        last: Option<usize>,
    ) -> Option<Vec<Bytes>> {
        let (log, positions) = (self.ctx.log.as_ref(), self.positions);
        let replayed = match (since, last) {
            (Some(since), _) => recovery::missed(log, conversation, since, live.last, positions).await,
            (None, Some(n)) => {
                let partition = self.ctx.directory.partition_of(conversation);
                recovery::newest(log, conversation, partition, live, n, positions).await.map_err(Into::into)
            }
            (None, None) => return None,
        };
        match replayed {
            Ok(frames) => Some(frames),
            // The log failed: the client hears recovered:false; the operator hears why.
            Err(RecoveryError::Log(err)) => {
                tracing::warn!(session = self.id(), conversation_id = conversation, error = %err, "replay read failed");
                None
            }
            Err(gap) => {
                tracing::debug!(session = self.id(), conversation_id = conversation, %gap, "not recoverable");
                None
            }
        }
    }

    /// Shape, per-connection limit and access; each refusal is answered here.
    async fn may_subscribe(&mut self, conversation: &str, token: Option<&str>) -> bool {
        if let Err(reason) = validate_conversation_id(conversation, self.ctx.config.max_conversation_id_bytes)
        {
            tracing::debug!(session = self.id(), %reason, "ws_invalid_message");
            self.send(&ServerFrame::error("Invalid conversationId"));
            return false;
        }
        let fresh = !self.member.is_joined(conversation);
        if fresh && self.member.joined() >= self.ctx.config.limits.max_subscriptions {
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

    /// Joins the conversation (through the directory) and waits until live delivery has a starting point.
    /// Returns that point and the recovery position still usable (a `since` of another epoch is dropped,
    /// and the registration redone without it, so live delivery skips nothing). `None` when the log is
    /// unavailable.
    async fn register(
        &mut self,
        conversation: &str,
        since: Option<Position>,
    ) -> Option<(Head, Option<Position>)> {
        let live = self.register_once(conversation, since.map_or(StreamId::ZERO, |p| p.id)).await?;
        match since {
            Some(p) if p.epoch != live.epoch => {
                self.member.leave(conversation);
                let live = self.register_once(conversation, StreamId::ZERO).await?;
                Some((live, None))
            }
            since => Some((live, since)),
        }
    }

    async fn register_once(&mut self, conversation: &str, after: StreamId) -> Option<Head> {
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
