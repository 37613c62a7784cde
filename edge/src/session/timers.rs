//! A session's clocks on the tokio clock, so tests drive them with `tokio::time::pause()`: the auth timeout
//! (4001), then token expiry (4003), the idle timeout (1000 `Session timeout`), the drain moment (1001, at
//! a random point of the drain window so that clients do not reconnect all at once) and ping/pong
//! (1001 `ping timeout`). The session sleeps until [`Timers::next`] and asks [`Timers::due`] what is due.

use std::hash::{BuildHasher, RandomState};
use std::time::Duration;

use tokio::time::Instant;

use super::liveness::Liveness;
use super::moment::Moment;
use crate::auth::unix_now;
use crate::error::CloseReason;
use crate::outbox::Outbox;

/// The deadlines of one session (the edge's durations are passed in, not kept per session), each
/// [`Moment::NEVER`] when it does not apply.
pub(super) struct Timers {
    /// Until authenticated, when the auth frame must have arrived; after, when the connection token
    /// expires (never for tokens without expiry, i.e. dev auth).
    deadline: Moment,
    /// When a draining session closes; never until the edge drains.
    drain_at: Moment,
    /// When the session closes for want of client messages; never when `--idle-timeout` is off.
    idle_at: Moment,
    liveness: Liveness,
}

impl Timers {
    /// Starts the clocks of a new connection: it has `auth_timeout` to authenticate, the first ping goes out
    /// after `ping_interval`, and without a message it is idle after `idle_timeout`.
    pub(super) fn new(
        auth_timeout: Duration,
        ping_interval: Duration,
        idle_timeout: Option<Duration>,
    ) -> Self {
        let now = Moment::now();
        Self {
            deadline: now.after(auth_timeout),
            drain_at: Moment::NEVER,
            idle_at: idle_timeout.map_or(Moment::NEVER, |timeout| now.after(timeout)),
            liveness: Liveness::new(ping_interval),
        }
    }

    /// The earliest moment a timer needs attention.
    pub(super) fn next(&self) -> Instant {
        let ping = self.liveness.deadline();
        [self.deadline, self.drain_at, self.idle_at].into_iter().fold(ping, Moment::min).instant()
    }

    /// The session authenticated (or refreshed) with a token expiring at `exp` (Unix seconds); `None`: never.
    pub(super) fn expires(&mut self, exp: Option<u64>) {
        self.deadline = exp.map_or(Moment::NEVER, expiry);
    }

    /// A client message arrived: the idle clock starts again.
    pub(super) fn heard_message(&mut self, idle_timeout: Option<Duration>) {
        self.idle_at = idle_timeout.map_or(Moment::NEVER, |timeout| Moment::now().after(timeout));
    }

    /// The edge drains: the session closes at a random moment within `window` from now (once).
    pub(super) fn drain_within(&mut self, window: Duration, session: u64) {
        if self.drain_at == Moment::NEVER {
            self.drain_at = drain_deadline(window, session);
        }
    }

    /// What is due now, in order: the drain moment, the idle timeout, the auth timeout (`authenticated`
    /// false) or token expiry, the ping timer (which queues pings to `outbox`; `heard` is the reader's "a
    /// frame arrived" flag, `ping` the interval and pong timeout).
    pub(super) fn due(
        &mut self,
        authenticated: bool,
        outbox: &Outbox,
        heard: &mut bool,
        ping: (Duration, Duration),
    ) -> Option<CloseReason> {
        let now = Moment::now();
        if self.drain_at.reached(now) {
            return Some(CloseReason::ShuttingDown);
        }
        if self.idle_at.reached(now) {
            return Some(CloseReason::IdleTimeout);
        }
        if self.deadline.reached(now) {
            return Some(if authenticated { CloseReason::TokenExpired } else { CloseReason::AuthTimeout });
        }
        let dead =
            self.liveness.deadline().reached(now) && self.liveness.on_timer(outbox, heard, ping).is_err();
        dead.then_some(CloseReason::PingTimeout)
    }
}

/// A random moment within `window` from now: when a draining session closes.
fn drain_deadline(window: Duration, session: u64) -> Moment {
    // RandomState is seeded per instance, so this is a fresh random number without a dependency.
    let random = RandomState::new().hash_one(session);
    let nanos = u64::try_from(window.as_nanos()).unwrap_or(u64::MAX);
    let offset = if nanos == 0 { 0 } else { random % nanos };
    Moment::now().after(Duration::from_nanos(offset))
}

/// The moment a token with `exp` (Unix seconds) stops being valid; saturates instead of overflowing.
fn expiry(exp: u64) -> Moment {
    Moment::now().after(Duration::from_secs(exp.saturating_sub(unix_now())))
}

#[cfg(test)]
mod tests;
