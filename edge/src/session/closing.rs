//! The lingering close. Once a session has decided to end it acts on no client frame again: it writes what
//! was queued and its close frame (or the echo of the client's), shuts its write side down, and keeps reading
//! and dropping until the client's close frame or EOF, then closes the socket. Over TLS the write side ends
//! with `close_notify` before the FIN, and reading goes on through the decryption: the client's close
//! frame, its `close_notify` or EOF end the wait.
//!
//! Why linger: closing a socket whose receive buffer still holds unread client bytes makes the kernel send
//! RST, and the client then discards what was in flight to it, the close frame included: a flooding client
//! would see 1006 instead of 4029 and reconnect at once. The whole close takes at most [`CLOSING_GRACE`]; a
//! client that neither reads nor hangs up is cut off after it.

use std::task::Poll;
use std::time::Duration;

use super::{Ending, Session};
use crate::error::CloseCode;
use crate::frame;
use crate::inbound::{Inbound, InboundError};
use crate::outbox::Outbox;

/// How long the last frames, the close frame and the wait for the client's close may take together.
const CLOSING_GRACE: Duration = Duration::from_secs(2);

/// How the client's remaining bytes are treated while lingering.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Reading {
    /// Parsed as frames, to notice the client's close frame.
    Frames,
    /// Dropped unparsed: the framing broke (oversized or malformed frame), so only EOF ends the wait.
    Raw,
}

impl Session {
    /// Queues the close frame for `ending` after whatever is queued (a client's close is echoed after the
    /// frame being written, if any, and nothing else), then lingers.
    pub(super) async fn close(&mut self, ending: &Ending) {
        let close = match ending {
            Ending::Close(reason) => {
                let (code, text) = (reason.code().code(), reason.text());
                tracing::debug!(session = self.id(), code, reason = text, "closing session");
                let _ = self.outbox.drain_into(self.pending.frames());
                frame::close(code, text)
            }
            Ending::Kicked(reason) => {
                let _ = self.outbox.drain_into(self.pending.frames());
                frame::close(CloseCode::Disconnected.code(), reason)
            }
            Ending::PeerClosed(echo) => {
                self.pending.discard_unstarted();
                echo.clone()
            }
            Ending::Peer => return,
        };
        self.pending.frames().push_back(close);
        let _ = tokio::time::timeout(self.closing_grace(ending), self.linger()).await;
    }

    /// How long this close may linger: [`CLOSING_GRACE`], but a drain lingers no longer than the drain
    /// window (none in `crier dev` and tests, whose clients mostly stop reading before the edge stops).
    fn closing_grace(&self, ending: &Ending) -> Duration {
        match ending {
            Ending::Close(reason) if reason.code() == CloseCode::GoingAway => {
                CLOSING_GRACE.min(self.ctx.config.drain_window)
            }
            _ => CLOSING_GRACE,
        }
    }

    /// Writes what is pending while reading and dropping client bytes, shuts the write side down once all is
    /// written, and returns at the client's close frame, EOF, or any socket error.
    async fn linger(&mut self) {
        // Nothing is written after the close frame: pongs for pings read meanwhile go nowhere.
        let nowhere = Outbox::new(0);
        let mut reading = Reading::Frames;
        let mut shut = false;
        loop {
            if !shut && self.pending.is_empty() {
                // Sends FIN after the close frame (and TLS close_notify): the client sees the end of the
                // stream, not a reset. A failed shutdown leaves nothing to write: only reading goes on.
                shut = self.stream.try_shutdown().await.unwrap_or(true);
            }
            let (writable, readable) = std::future::poll_fn(|cx| {
                let unsent = !self.pending.is_empty() || (!shut && self.stream.wants_flush());
                let writable = unsent && self.stream.poll_write_ready(cx).is_ready();
                let readable = self.stream.poll_read_ready(cx).is_ready();
                if writable || readable { Poll::Ready((writable, readable)) } else { Poll::Pending }
            })
            .await;
            if writable && self.pending.try_write(&mut self.stream).is_err() {
                return;
            }
            if readable {
                match self.read_while_closing(reading, &nowhere) {
                    Some(next) => reading = next,
                    None => return,
                }
            }
        }
    }

    /// Reads once and drops what arrived; `None` once the client closed or hung up.
    fn read_while_closing(&mut self, reading: Reading, nowhere: &Outbox) -> Option<Reading> {
        if reading == Reading::Raw {
            return self.reader.discard(&mut self.stream).ok().map(|()| Reading::Raw);
        }
        self.reader.fill(&mut self.stream).ok()?;
        loop {
            match self.reader.next(nowhere) {
                Ok(Some(Inbound::Close(_))) | Err(InboundError::Gone) => return None,
                Ok(Some(_)) => {}
                Ok(None) => return Some(Reading::Frames),
                Err(_) => return Some(Reading::Raw),
            }
        }
    }
}
