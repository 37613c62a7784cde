//! The session's loop. Between messages a session waits in one hand-written poll over its outbox's waker,
//! its socket's readiness and one timer, so an idle session holds no buffers and no wait-list nodes: its
//! task is the [`Session`] and one `Sleep` (the 2 KiB per idle connection budget).
//!
//! Frames stay in the (bounded) outbox while a batch is being written; a client that stops reading overflows
//! it and is closed with 4008 after the frame being written, if any.
//!
//! While a recovery waits for its next page and the queue has room for one, the loop does not wait: it
//! serves whatever is ready, then reads one page (`recovering`), so pages follow the socket's draining and
//! client messages, writes and timers are still served between them.

use std::task::{Context, Poll};

use tokio::time::Sleep;

use super::{Ending, Session};
use crate::error::CloseReason;
use crate::inbound::InboundError;

/// What ended a wait: every source that was ready, so that none starves another (a session whose outbox
/// refills all the time still reads, and its timers still fire).
#[derive(Default)]
struct Wake {
    /// Frames or signals in the outbox.
    outbox: bool,
    /// The socket takes writes again.
    writable: bool,
    /// The socket has bytes (or the peer hung up).
    readable: bool,
    /// A deadline passed.
    timer: bool,
    /// The socket failed.
    failed: bool,
}

impl Session {
    /// Reads, answers and writes until the session must end. Messages already read are handled before the
    /// socket is read again.
    pub(super) async fn serve(&mut self) -> Ending {
        let sleep = tokio::time::sleep_until(self.timers.next());
        tokio::pin!(sleep);
        loop {
            match self.reader.next(&self.outbox) {
                Ok(Some(message)) => match Box::pin(self.handle(message)).await {
                    Some(ending) => return ending,
                    None => continue,
                },
                Ok(None) => {}
                Err(err) => return inbound_ending(&err, self.id()),
            }
            let deadline = self.timers.next();
            if sleep.deadline() != deadline {
                sleep.as_mut().reset(deadline);
            }
            // A recovery waiting for a page only looks at what is ready, then reads its page.
            let paging = self.wants_page();
            let wake = std::future::poll_fn(|cx| match self.poll_wake(sleep.as_mut(), cx) {
                Poll::Pending if paging => Poll::Ready(Wake::default()),
                polled => polled,
            })
            .await;
            if let Some(ending) = self.on_wake(&wake) {
                return ending;
            }
            if self.wants_page()
                && let Some(ending) = Box::pin(self.next_page()).await
            {
                return ending;
            }
        }
    }

    /// Acts on every ready source: outbox (signals, then writing), the socket, then timers.
    fn on_wake(&mut self, wake: &Wake) -> Option<Ending> {
        if wake.failed {
            return Some(Ending::Peer);
        }
        if wake.outbox
            && let Some(ending) = self.on_outbox()
        {
            return Some(ending);
        }
        if wake.writable
            && let Some(ending) = self.flush()
        {
            return Some(ending);
        }
        if wake.readable
            && let Err(err) = self.reader.fill(&mut self.stream)
        {
            return Some(inbound_ending(&err, self.id()));
        }
        if wake.timer { self.on_deadline() } else { None }
    }

    /// Polls every source (each registers the waker) and is ready when any is.
    fn poll_wake(&self, sleep: std::pin::Pin<&mut Sleep>, cx: &mut Context<'_>) -> Poll<Wake> {
        let mut wake = Wake { outbox: self.outbox.poll_ready(cx).is_ready(), ..Wake::default() };
        if (!self.pending.is_empty() || self.stream.wants_flush())
            && let Poll::Ready(ready) = self.stream.poll_write_ready(cx)
        {
            wake.writable = ready.is_ok();
            wake.failed |= ready.is_err();
        }
        if let Poll::Ready(ready) = self.stream.poll_read_ready(cx) {
            wake.readable = ready.is_ok();
            wake.failed |= ready.is_err();
        }
        wake.timer = sleep.poll(cx).is_ready();
        let any = wake.outbox || wake.writable || wake.readable || wake.timer || wake.failed;
        if any { Poll::Ready(wake) } else { Poll::Pending }
    }

    /// Whatever is due now (see [`Timers::due`](super::timers::Timers::due)).
    fn on_deadline(&mut self) -> Option<Ending> {
        let limits = &self.ctx.config.limits;
        let ping = (limits.ping_interval, limits.pong_timeout);
        let authenticated = self.principal.is_some();
        let reason = self.timers.due(authenticated, &self.outbox, &mut self.reader.heard, ping)?;
        let session = self.id();
        match reason {
            CloseReason::IdleTimeout => tracing::debug!(session, "no client message within the idle timeout"),
            CloseReason::AuthTimeout => tracing::info!(session, "ws_auth_timeout"),
            CloseReason::TokenExpired => tracing::debug!(session, "token expired without refresh"),
            CloseReason::PingTimeout => tracing::debug!(session, "peer did not answer ping"),
            _ => {}
        }
        self.end(reason)
    }

    /// Something arrived in the outbox: an operator's disconnect, the drain, revocations, frames to write.
    fn on_outbox(&mut self) -> Option<Ending> {
        if self.outbox.take_signalled() {
            if let Some(reason) = self.outbox.kicked() {
                tracing::info!(session = self.id(), %reason, "disconnected by operator");
                return Some(Ending::Kicked(reason));
            }
            if self.outbox.is_draining() {
                self.timers.drain_within(self.ctx.config.drain_window, self.id());
            }
            self.handle_revocations();
        }
        self.flush()
    }

    /// Writes what the socket takes now, taking the next batch from the outbox whenever the last one is out;
    /// `Some` when the session must end.
    fn flush(&mut self) -> Option<Ending> {
        if let Err(err) = self.stream.try_flush()
            && err.kind() != std::io::ErrorKind::WouldBlock
        {
            return Some(Ending::Peer);
        }
        loop {
            if !self.pending.is_empty() && self.outbox.is_overflowed() {
                self.pending.discard_unstarted();
                return self.end(CloseReason::SlowConsumer);
            }
            if self.pending.is_empty() {
                if self.outbox.drain_into(self.pending.frames()).is_err() {
                    return self.end(CloseReason::SlowConsumer);
                }
                if self.pending.is_empty() {
                    return None;
                }
                self.ctx.meters.queue_bytes.record(self.pending.bytes() as f64);
            }
            if self.pending.try_write(&mut self.stream).is_err() {
                return Some(Ending::Peer);
            }
            if !self.pending.is_empty() {
                return None;
            }
        }
    }
}

/// How a read error ends the session.
fn inbound_ending(err: &InboundError, session: u64) -> Ending {
    tracing::debug!(session, error = ?err, "ws_invalid_message");
    err.close_reason().map_or(Ending::Peer, Ending::Close)
}
