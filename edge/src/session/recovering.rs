//! Recovery in pages: a `subscribe` with a recoverable `since` is answered `subscribed` with
//! `recovered:true` at once, and what the client missed follows one bounded page at a time, the next page
//! read only while the session's queue (frames being written included) holds less than half its bound, so
//! a backlog of any size within retention and `--max-recovery-scan` arrives as the socket drains, in bounded
//! memory. Several recoveries of one connection take turns, one page each.
//!
//! The seam with live delivery, exact by construction: a recovering subscription is **not** in the hub. Its
//! pages go to the tail of the outbox, after `subscribed` and the pages before. When a page reaches the
//! stream's end, the subscription joins the hub with `after` = the last id read (the cursor), which yields
//! the join point J (the last id the partition reader looked subscribers up for, under the shard lock the
//! join takes). Then:
//! - every entry after J.last reaches the subscription live (the hub's invariant), and none at or before the
//!   cursor does (the `after` filter: the reader may lag behind the pages);
//! - the session reads (cursor, J.last] once more and inserts those frames at the outbox mark taken just
//!   before joining, ahead of every live frame.
//!
//! So each entry after `since` is sent exactly once and in order: by a page (≤ cursor), the last read
//! (cursor, J.last], or live (> J.last). The last read covers only what was appended between the page that
//! reached the end and the join (a round trip or two). Joining first and holding live entries back while
//! the pages go out was the other way; it needs a buffer that grows with the conversation's rate for as long
//! as a slow client takes to drain the backlog.
//!
//! Reads are work the client chose, so they are bounded and paid for: the probe refuses positions more than
//! `--max-recovery-scan` partition entries behind (`recovered:false`), and every 512 partition entries read
//! cost the connection's rate limiter one token, as a client message does. A recovery that loses its place
//! on the way (trimmed or epoch lost: the client was told `recovered:true`) closes the session with 4008, so
//! the client resubscribes from what it has and hears `recovered:false`: never a silent gap. When that
//! happens at the join (epoch changed, the last read failed, was trimmed or over the rate limit), live
//! frames may already be queued after the mark: the session drops everything queued since the mark before
//! it closes, so no client position moves past the hole.

use std::collections::VecDeque;
use std::num::NonZeroU32;
use std::sync::Arc;

use crier_proto::Position;
use crier_store::log::{Limit, LogError};

use super::{Ending, Session};
use crate::error::CloseReason;
use crate::meters::Recovery;
use crate::outbox::Mark;
use crate::protocol::ServerFrame;
use crate::recovery::{self, Budget, RecoveryError};

/// Partition entries read for recoveries that cost one token of the connection's rate limiter.
const ENTRIES_PER_TOKEN: u64 = 512;
/// Partition entries one page may read (skipping other conversations' entries) before the session looks
/// at its socket again.
const PAGE_READS: usize = 4 * PAGE;
/// Entries per log call at most.
const PAGE: usize = crier_store::log::scan::PAGE;

/// A connection's recoveries in progress and what they have cost; allocated with its first recovery.
#[derive(Default)]
pub(super) struct Recovering {
    /// Served round-robin, one page per turn.
    // Bound: ≤ --max-subscriptions (each is one of the session's subscriptions).
    queue: VecDeque<Place>,
    /// Partition entries read for this connection's recoveries so far.
    read: u64,
    /// Tokens charged for them so far.
    charged: u64,
}

/// Where one recovery stands.
struct Place {
    conversation: Arc<str>,
    /// The position of the last partition entry read (sent or skipped): the next page starts after it.
    at: Position,
    /// Entries the next page fetches per log call: about twice what the last page took, so a dense
    /// backlog of large notifications is not fetched 512 at a time to keep 16.
    fetch: usize,
}

/// Entries to fetch per log call for a page after one that read `read` partition entries.
fn fetch_after(read: usize) -> usize {
    read.saturating_mul(2).clamp(16, PAGE)
}

impl Session {
    fn budget(&self) -> Budget {
        Budget::new(self.ctx.config.max_queue_bytes, self.ctx.config.max_recovery_scan)
    }

    /// The queue, frames being written included, holds less than half its bound.
    fn has_room(&self) -> bool {
        self.outbox.bytes() + self.pending.bytes() < self.outbox.max_bytes() / 2
    }

    /// Whether a recovery waits for a page and the queue has room for one.
    pub(super) fn wants_page(&self) -> bool {
        self.recovering.as_ref().is_some_and(|r| !r.queue.is_empty())
            && self.has_room()
            && !self.outbox.is_overflowed()
    }

    /// Starts recovering `conversation` from `since`: `subscribed` with `recovered:true` and the first page
    /// (if the queue has room for it), or `Err` with why not (the caller subscribes live, `recovered:false`).
    /// `Ok(Some)` when the session must end (the reads exceeded its rate limit).
    pub(super) async fn recover(
        &mut self,
        conversation: &str,
        since: Position,
    ) -> Result<Option<Ending>, Recovery> {
        let keep = self.has_room();
        let (log, positions, budget) = (self.ctx.log.as_ref(), self.positions, self.budget());
        let mut fetched = 0;
        let probed = recovery::probe(log, conversation, since, budget, keep, positions, &mut fetched).await;
        if let Some(ending) = self.charge(fetched) {
            return Ok(Some(ending));
        }
        let first = probed.map_err(|err| self.refused(conversation, &err))?;
        let position = self.positions.then(|| since.to_string());
        let recovered = Some(true);
        self.send(&ServerFrame::Subscribed { conversation_id: conversation, recovered, position });
        tracing::info!(
            session = self.id(),
            conversation_id = conversation,
            ?recovered,
            "ws_client_subscribed"
        );
        // Without room the probe kept nothing: the pages start at `since`.
        let (frames, id, end, fetch) = if keep {
            (first.frames, first.last_read, first.end, fetch_after(first.read))
        } else {
            (Vec::new(), since.id, false, recovery::FIRST_FETCH)
        };
        let place = Place { conversation: Arc::from(conversation), at: Position { id, ..since }, fetch };
        Ok(self.advance(place, frames, end).await)
    }

    /// One page of the recovery whose turn it is.
    pub(super) async fn next_page(&mut self) -> Option<Ending> {
        let mut place = self.recovering.as_mut()?.queue.pop_front()?;
        let limit =
            Limit { bytes: self.budget().page_bytes, reads: PAGE_READS, fetch: place.fetch, ..Limit::NONE };
        let (log, positions) = (self.ctx.log.as_ref(), self.positions);
        let mut fetched = 0;
        let page =
            recovery::next_page(log, &place.conversation, place.at, None, limit, positions, &mut fetched)
                .await;
        if let Some(ending) = self.charge(fetched) {
            return Some(ending);
        }
        match page {
            Ok(page) => {
                (place.at.id, place.fetch) = (page.last_read, fetch_after(page.read));
                self.advance(place, page.frames, page.end).await
            }
            Err(err) => self.lost(&place.conversation, &err),
        }
    }

    /// Queues a page's frames; joins live delivery once the pages reached the stream's end, or waits for the
    /// next turn.
    async fn advance(&mut self, place: Place, frames: Vec<bytes::Bytes>, end: bool) -> Option<Ending> {
        // An overflow is noticed (and closes the session) at the next flush.
        let _ = self.outbox.push_all(frames);
        if end {
            return self.join(place).await;
        }
        self.recovering.get_or_insert_default().queue.push_back(place);
        None
    }

    /// Joins the hub after the last page and delivers what was appended meanwhile ahead of every live frame
    /// (the seam: see the module's doc).
    async fn join(&mut self, place: Place) -> Option<Ending> {
        let conversation = place.conversation;
        let mark = self.outbox.mark();
        let Some(live) = self.register_once(&conversation, place.at.id).await else {
            tracing::warn!(session = self.id(), conversation_id = %conversation, "recovery failed: log unavailable");
            self.ctx.meters.recovery(Recovery::Unavailable);
            self.end_subscription(&conversation, Some("log unavailable"));
            return None;
        };
        if live.epoch != place.at.epoch {
            return self.abandon(mark, &conversation, &RecoveryError::EpochChanged);
        }
        let mut frames = Vec::new();
        if live.last > place.at.id {
            let (log, positions) = (self.ctx.log.as_ref(), self.positions);
            let mut fetched = 0;
            let until = Some(live.last);
            let rest = recovery::next_page(
                log,
                &conversation,
                place.at,
                until,
                Limit::NONE,
                positions,
                &mut fetched,
            )
            .await;
            if let Some(ending) = self.charge(fetched) {
                self.outbox.truncate_at(mark);
                return Some(ending);
            }
            match rest {
                Ok(rest) => frames = rest.frames,
                Err(err) => return self.abandon(mark, &conversation, &err),
            }
        }
        let _ = self.outbox.insert_at(mark, frames);
        self.ctx.meters.recovery(Recovery::Recovered);
        tracing::debug!(session = self.id(), conversation_id = %conversation, "recovered; live from here");
        None
    }

    /// A join that cannot deliver what lies between its last page and the join point. Live frames of the
    /// conversation may already be queued after `mark`; delivered, they would move the client's position past
    /// the hole and its resubscription would hear `recovered:true`. So the session drops everything queued
    /// since `mark` and closes with 4008 (a log failure too): the client resubscribes from what it has.
    fn abandon(&mut self, mark: Mark, conversation: &str, err: &RecoveryError) -> Option<Ending> {
        self.outbox.truncate_at(mark);
        if let RecoveryError::Log(err) = err {
            self.replay_read_failed(conversation, err);
            self.ctx.meters.recovery(Recovery::Unavailable);
            return Some(Ending::Close(CloseReason::RecoveryInterrupted));
        }
        self.lost(conversation, err)
    }

    /// Logs a failed replay read (recovery or `last`) with its cause: operators and a test look for it.
    pub(super) fn replay_read_failed(&self, conversation: &str, err: &LogError) {
        tracing::warn!(session = self.id(), conversation_id = conversation, error = %err, "replay read failed");
    }

    /// Why `since` is not recovered, logged; the client hears `recovered:false`.
    fn refused(&self, conversation: &str, err: &RecoveryError) -> Recovery {
        match err {
            RecoveryError::Log(err) => {
                self.replay_read_failed(conversation, err);
                Recovery::Unavailable
            }
            RecoveryError::BeyondScanBound => {
                tracing::debug!(session = self.id(), conversation_id = conversation, %err, "not recoverable");
                Recovery::BeyondScanBound
            }
            RecoveryError::EpochChanged | RecoveryError::Trimmed => {
                tracing::debug!(session = self.id(), conversation_id = conversation, %err, "not recoverable");
                Recovery::NotRecovered
            }
        }
    }

    /// A recovery that already answered `recovered:true` cannot go on: the log failed (the subscription ends
    /// with `unsubscribed`, reason `log unavailable`), or what it still had to send is gone (close 4008).
    fn lost(&mut self, conversation: &str, err: &RecoveryError) -> Option<Ending> {
        if let RecoveryError::Log(err) = err {
            self.replay_read_failed(conversation, err);
            self.ctx.meters.recovery(Recovery::Unavailable);
            self.end_subscription(conversation, Some("log unavailable"));
            return None;
        }
        tracing::debug!(session = self.id(), conversation_id = conversation, %err, "recovery lost its place");
        self.ctx.meters.recovery(Recovery::Interrupted);
        Some(Ending::Close(CloseReason::RecoveryInterrupted))
    }

    /// Charges `fetched` more partition entries read to the connection's rate limiter (one token per 512,
    /// rounded up over the connection's recoveries); `Some` when that exceeds it.
    fn charge(&mut self, fetched: usize) -> Option<Ending> {
        if fetched == 0 {
            return None;
        }
        let recovering = self.recovering.get_or_insert_default();
        recovering.read += fetched as u64;
        let due = recovering.read.div_ceil(ENTRIES_PER_TOKEN);
        let tokens = due - recovering.charged;
        recovering.charged = due;
        let tokens = NonZeroU32::new(u32::try_from(tokens).unwrap_or(u32::MAX))?;
        if self.limiter.take_n(tokens) {
            return None;
        }
        tracing::debug!(session = self.id(), "rate limit exceeded by recovery reads");
        self.end(CloseReason::RateLimited)
    }

    /// Stops recovering `conversation` (unsubscribed, revoked); whether it was.
    pub(super) fn forget_recovery(&mut self, conversation: &str) -> bool {
        let Some(recovering) = &mut self.recovering else { return false };
        let before = recovering.queue.len();
        recovering.queue.retain(|place| &*place.conversation != conversation);
        recovering.queue.len() != before
    }

    /// Whether `conversation` is being recovered (a subscription of the session, not yet in the hub).
    pub(super) fn is_recovering(&self, conversation: &str) -> bool {
        self.recovering.as_ref().is_some_and(|r| r.queue.iter().any(|p| &*p.conversation == conversation))
    }

    /// How many recoveries are in progress.
    pub(super) fn recoveries(&self) -> usize {
        self.recovering.as_ref().map_or(0, |r| r.queue.len())
    }
}
