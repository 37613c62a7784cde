//! A session's outbound queue, bounded in bytes.
//!
//! Invariant: pushing never waits. The hub pushes shared frames from partition readers; when a session's
//! queue would exceed its bound, the queue is dropped and marked overflowed, and the session closes with 4008
//! (slow consumer) the next time it wakes. One slow client therefore never slows the hub or other clients.
//! An idle outbox holds an empty `VecDeque`, which allocates nothing.
//!
//! The outbox also carries the signals the rest of the edge sends a session outside its client's
//! traffic: access revocations, an operator's disconnect, and the edge's drain. One waker for all of them
//! (an `AtomicWaker`, no wait-list node held by the session) keeps an idle session small (the 2 KiB per idle connection budget).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use bytes::Bytes;
use futures_util::task::AtomicWaker;
use std::task::{Context, Poll};

/// Frames waiting to be written to one socket.
pub struct Outbox {
    state: Mutex<State>,
    /// The session task's waker. A push onto a non-empty queue does not wake (the session will find the
    /// frame when it drains), so only the session's main loop may consume `woken`.
    waker: AtomicWaker,
    /// Set with every wake-up, cleared by [`Outbox::poll_ready`]: a wake before the wait is not lost.
    woken: AtomicBool,
    /// A revocation or a disconnect arrived: lets the per-frame wake-up skip looking for signals.
    signalled: AtomicBool,
    max_bytes: usize,
}

#[derive(Default)]
struct State {
    // Bound: `max_bytes` (--max-queue-bytes); beyond it the queue is dropped and the session closed 4008.
    frames: VecDeque<Bytes>,
    bytes: usize,
    overflowed: bool,
    /// Frames ever drained, so a [`Mark`] (frames ever pushed) can be turned into a queue index.
    drained: u64,
    /// Conversations whose access was revoked, not yet handled by the session.
    // Bound: emptied on the session's next wake-up (each revocation wakes it, its loop never blocks on the
    // socket), so it holds the revocations of one turn; the feed's rate is an operator's, not traffic's.
    revoked: Vec<Box<str>>,
    /// Set to the close reason when an operator disconnects the session's user.
    // Bound: one reason (the last operator disconnect replaces an earlier one).
    kicked: Option<Arc<str>>,
    /// The edge is draining: the session picks its moment to close.
    draining: bool,
}

impl State {
    /// Counts `bytes` more queued, or, if that would exceed `max_bytes`, drops the queue and marks it
    /// overflowed (the caller then wakes the session to close it).
    fn admit(&mut self, bytes: usize, max_bytes: usize) -> bool {
        if self.bytes + bytes > max_bytes {
            self.overflow();
            return false;
        }
        self.bytes += bytes;
        true
    }

    /// Drops the queue and marks it overflowed for good.
    fn overflow(&mut self) {
        self.overflowed = true;
        self.frames = VecDeque::new();
        self.bytes = 0;
    }
}

/// A point in the outbox's sequence of frames: "after the frames pushed so far".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mark(u64);

/// The queue was over its bound; the session must close with 4008.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Overflowed;

impl Outbox {
    /// An empty outbox holding at most `max_bytes` of frames.
    #[must_use]
    pub fn new(max_bytes: usize) -> Self {
        Self {
            state: Mutex::new(State::default()),
            waker: AtomicWaker::new(),
            woken: AtomicBool::new(false),
            signalled: AtomicBool::new(false),
            max_bytes,
        }
    }

    /// Queues `frame` unless that would exceed the bound. Never waits.
    pub fn push(&self, frame: Bytes) -> Result<(), Overflowed> {
        self.enqueue(frame.len(), |frames| frames.push_back(frame))
    }

    /// Adds `bytes` of frames at the back (`add`) unless that would exceed the bound; wakes the session
    /// when the queue was empty.
    fn enqueue(&self, bytes: usize, add: impl FnOnce(&mut VecDeque<Bytes>)) -> Result<(), Overflowed> {
        let mut state = self.admit(bytes)?;
        let was_empty = state.frames.is_empty();
        add(&mut state.frames);
        drop(state);
        if was_empty {
            self.wake();
        }
        Ok(())
    }

    /// The locked queue with `bytes` more counted in, or `Err` when it has overflowed (now, in which case
    /// the session is woken to close, or before).
    fn admit(&self, bytes: usize) -> Result<MutexGuard<'_, State>, Overflowed> {
        let mut state = self.lock();
        if state.overflowed {
            return Err(Overflowed);
        }
        if !state.admit(bytes, self.max_bytes) {
            drop(state);
            self.wake();
            return Err(Overflowed);
        }
        Ok(state)
    }

    /// Moves every queued frame to the back of `into`; `Err` once the queue has overflowed.
    pub fn drain_into(&self, into: &mut VecDeque<Bytes>) -> Result<(), Overflowed> {
        let mut state = self.lock();
        if state.overflowed {
            return Err(Overflowed);
        }
        state.bytes = 0;
        state.drained += state.frames.len() as u64;
        if into.is_empty() {
            std::mem::swap(into, &mut state.frames);
        } else {
            into.append(&mut state.frames);
        }
        Ok(())
    }

    /// The current end of the queue.
    pub fn mark(&self) -> Mark {
        let state = self.lock();
        Mark(state.drained + state.frames.len() as u64)
    }

    /// Queues `frames` in order, all or none: over the bound, the queue overflows as with [`Outbox::push`].
    /// One lock for the batch.
    pub fn push_all(&self, frames: Vec<Bytes>) -> Result<(), Overflowed> {
        if frames.is_empty() {
            return Ok(());
        }
        self.enqueue(frames.iter().map(Bytes::len).sum(), |queue| queue.extend(frames))
    }

    /// Inserts `frames` at `mark`, before everything pushed since. The session must not have drained past
    /// `mark` (it owns the draining, so it knows); if it did, they go to the front. One splice under the
    /// lock: the frames after the mark are moved once, whatever the count on either side.
    pub fn insert_at(&self, mark: Mark, frames: Vec<Bytes>) -> Result<(), Overflowed> {
        let mut state = self.admit(frames.iter().map(Bytes::len).sum())?;
        let index =
            usize::try_from(mark.0.saturating_sub(state.drained)).unwrap_or(0).min(state.frames.len());
        let later = state.frames.split_off(index);
        state.frames.extend(frames);
        state.frames.extend(later);
        drop(state);
        self.wake();
        Ok(())
    }

    /// Drops every frame pushed since `mark`, for a session about to close that must not let its client see
    /// frames past a gap it could not fill: what the client receives of each conversation stays a prefix of
    /// the stream, which its resubscription with `since` then continues.
    pub fn truncate_at(&self, mark: Mark) {
        let mut state = self.lock();
        let index =
            usize::try_from(mark.0.saturating_sub(state.drained)).unwrap_or(0).min(state.frames.len());
        let dropped: usize = state.frames.drain(index..).map(|frame| frame.len()).sum();
        state.bytes -= dropped;
    }

    /// Bytes queued and not yet taken by the session's writer.
    pub fn bytes(&self) -> usize {
        self.lock().bytes
    }

    /// The most bytes the queue holds.
    pub fn max_bytes(&self) -> usize {
        self.max_bytes
    }

    /// Drops the queue and marks it overflowed, as if the client had fallen behind: the session closes with
    /// 4008 and the client resubscribes with `since`.
    pub fn cut_off(&self) {
        self.lock().overflow();
        self.wake();
    }

    /// Tells the session that access to `conversation` was revoked.
    pub fn revoke(&self, conversation: &str) {
        self.lock().revoked.push(conversation.into());
        self.signal();
    }

    /// Tells the session to close: an operator disconnected its user.
    pub fn kick(&self, reason: Arc<str>) {
        self.lock().kicked = Some(reason);
        self.signal();
    }

    /// Tells the session that the edge is draining.
    pub fn drain(&self) {
        self.lock().draining = true;
        self.signal();
    }

    /// Whether the edge is draining.
    pub fn is_draining(&self) -> bool {
        self.lock().draining
    }

    fn signal(&self) {
        self.signalled.store(true, Ordering::Release);
        self.wake();
    }

    fn wake(&self) {
        self.woken.store(true, Ordering::Release);
        self.waker.wake();
    }

    /// Whether a signal (revocation, disconnect, drain) arrived since the last call.
    pub fn take_signalled(&self) -> bool {
        self.signalled.swap(false, Ordering::AcqRel)
    }

    /// The revoked conversations queued so far.
    pub fn take_revoked(&self) -> Vec<Box<str>> {
        std::mem::take(&mut self.lock().revoked)
    }

    /// The operator's close reason, once the session was kicked.
    pub fn kicked(&self) -> Option<Arc<str>> {
        self.lock().kicked.clone()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether the queue has overflowed (the session must close with 4008).
    pub fn is_overflowed(&self) -> bool {
        self.lock().overflowed
    }

    /// Ready once a frame was pushed (or the queue overflowed, or a signal arrived) since the last time it
    /// was ready. For the session's main loop only (see `waker`).
    pub fn poll_ready(&self, cx: &mut Context<'_>) -> Poll<()> {
        if self.woken.swap(false, Ordering::AcqRel) {
            return Poll::Ready(());
        }
        self.waker.register(cx.waker());
        if self.woken.swap(false, Ordering::AcqRel) { Poll::Ready(()) } else { Poll::Pending }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Frames come out in the order they went in, and the byte count restarts after a drain.
    #[test]
    fn drains_in_order_and_frees_budget() {
        let outbox = Outbox::new(10);
        outbox.push(Bytes::from_static(b"abcd")).unwrap();
        outbox.push(Bytes::from_static(b"efgh")).unwrap();
        let mut out = VecDeque::new();
        outbox.drain_into(&mut out).unwrap();
        assert_eq!(out, [Bytes::from_static(b"abcd"), Bytes::from_static(b"efgh")]);
        outbox.push(Bytes::from_static(b"0123456789")).unwrap();
    }

    /// Exceeding the bound drops the queue and reports the overflow to pusher and drainer alike.
    #[test]
    fn overflow_is_sticky() {
        let outbox = Outbox::new(5);
        outbox.push(Bytes::from_static(b"abc")).unwrap();
        assert_eq!(outbox.push(Bytes::from_static(b"def")), Err(Overflowed));
        assert_eq!(outbox.push(Bytes::from_static(b"g")), Err(Overflowed));
        assert_eq!(outbox.drain_into(&mut VecDeque::new()), Err(Overflowed));
    }

    /// Frames inserted at a mark go before everything pushed after the mark, also after a drain.
    #[test]
    fn insert_at_mark_goes_before_later_pushes() {
        let outbox = Outbox::new(100);
        outbox.push(Bytes::from_static(b"a")).unwrap();
        let mut out = VecDeque::new();
        outbox.drain_into(&mut out).unwrap();
        outbox.push(Bytes::from_static(b"b")).unwrap();
        let mark = outbox.mark();
        outbox.push(Bytes::from_static(b"live")).unwrap();
        outbox.insert_at(mark, vec![Bytes::from_static(b"r1"), Bytes::from_static(b"r2")]).unwrap();
        let mut out = VecDeque::new();
        outbox.drain_into(&mut out).unwrap();
        assert_eq!(out, [&b"b"[..], b"r1", b"r2", b"live"].map(Bytes::from_static));
    }

    /// Many frames inserted at a mark in front of many live ones keep both runs in order, count against the
    /// bound, and overflow the queue as a whole when they do not fit.
    #[test]
    fn insert_at_splices_a_batch_and_respects_the_bound() {
        let frame = |i: usize| Bytes::from(format!("{i:04}"));
        let outbox = Outbox::new(4 * 2_000);
        outbox.push(frame(0)).unwrap();
        let mark = outbox.mark();
        outbox.push_all((1_000..1_500).map(frame).collect()).unwrap();
        outbox.insert_at(mark, (1..1_000).map(frame).collect()).unwrap();
        assert_eq!(outbox.bytes(), 4 * 1_500);
        let mut out = VecDeque::new();
        outbox.drain_into(&mut out).unwrap();
        assert_eq!(out, (0..1_500).map(frame).collect::<Vec<_>>());

        let mark = outbox.mark();
        outbox.push(frame(1)).unwrap();
        assert_eq!(outbox.insert_at(mark, (0..2_000).map(frame).collect()), Err(Overflowed));
        assert!(outbox.is_overflowed());
        assert_eq!(outbox.push_all(vec![frame(2)]), Err(Overflowed));
    }

    /// Truncating at a mark keeps what came before it (also after part was drained) and its byte count.
    #[test]
    fn truncate_at_drops_only_what_came_after_the_mark() {
        let frame = |i: usize| Bytes::from(format!("{i:04}"));
        let outbox = Outbox::new(4 * 100);
        outbox.push_all((0..10).map(frame).collect()).unwrap();
        let mut out = VecDeque::new();
        outbox.drain_into(&mut out).unwrap();
        outbox.push_all((10..15).map(frame).collect()).unwrap();
        let mark = outbox.mark();
        outbox.push_all((15..40).map(frame).collect()).unwrap();
        outbox.truncate_at(mark);
        assert_eq!(outbox.bytes(), 4 * 5);
        outbox.drain_into(&mut out).unwrap();
        assert_eq!(out, (0..15).map(frame).collect::<Vec<_>>());
        outbox.push_all((15..115).map(frame).collect()).unwrap();
    }

    /// A push made before anyone waits still wakes the next wait.
    #[tokio::test]
    async fn push_before_wait_wakes() {
        let outbox = Outbox::new(5);
        outbox.push(Bytes::from_static(b"a")).unwrap();
        let ready = std::future::poll_fn(|cx| outbox.poll_ready(cx));
        tokio::time::timeout(std::time::Duration::from_secs(1), ready).await.unwrap();
    }
}
