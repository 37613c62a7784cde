//! Dead-peer detection: a WebSocket ping every `ping_interval`; a peer that sends nothing at all (no pong,
//! no message) within `pong_timeout` of a ping is gone, and its session ends. Any frame counts as life, so
//! a busy client never needs to answer a ping on time.

use std::time::Duration;

use fastwebsockets::OpCode;

use super::moment::Moment;
use crate::frame;
use crate::outbox::Outbox;

/// The ping/pong state of one session (the interval and timeout are the edge's, passed in).
pub struct Liveness {
    /// When [`on_timer`](Self::on_timer) must run next.
    next: Moment,
    awaiting_pong: bool,
}

/// The peer did not answer a ping in time.
#[derive(Debug)]
pub struct Dead;

impl Liveness {
    /// Starts the clock: the first ping goes out after `interval`.
    pub fn new(interval: Duration) -> Self {
        Self { next: Moment::now().after(interval), awaiting_pong: false }
    }

    /// When the timer fires next.
    #[must_use]
    pub(super) fn deadline(&self) -> Moment {
        self.next
    }

    /// Sends a ping, or checks that the last one was answered within `timeout`; pings go every `interval`.
    /// `heard` is the reader's "a frame arrived" flag, cleared here.
    pub fn on_timer(
        &mut self,
        outbox: &Outbox,
        heard: &mut bool,
        (interval, timeout): (Duration, Duration),
    ) -> Result<(), Dead> {
        let now = Moment::now();
        if self.awaiting_pong {
            if !std::mem::take(heard) {
                return Err(Dead);
            }
            self.awaiting_pong = false;
            self.next = now.after(interval.saturating_sub(timeout));
        } else {
            *heard = false;
            let _ = outbox.push(frame::encode(OpCode::Ping, b""));
            self.awaiting_pong = true;
            self.next = now.after(timeout);
        }
        Ok(())
    }
}
