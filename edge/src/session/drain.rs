//! How a session ends: the random moment a draining session closes at, and the accounting of its end in the
//! metrics.

use std::hash::{BuildHasher, RandomState};
use std::time::Duration;

use tokio::time::Instant;

use super::{Ending, Session};
use crate::error::CloseCode;

/// A random moment within `window` from now: when a draining session closes.
pub(super) fn drain_deadline(window: Duration, session: u64) -> Instant {
    // RandomState is seeded per instance, so this is a fresh random number without a dependency.
    let random = RandomState::new().hash_one(session);
    let nanos = u64::try_from(window.as_nanos()).unwrap_or(u64::MAX);
    let offset = if nanos == 0 { 0 } else { random % nanos };
    Instant::now() + Duration::from_nanos(offset)
}

impl Session {
    /// Accounts for the session's end in the metrics (its `Drop` leaves the registry).
    pub(super) fn finish(&self, ending: &Ending) {
        let meters = &self.ctx.meters;
        meters.connections.decrement(1.0);
        if self.principal.is_some() {
            meters.authenticated.decrement(1.0);
        }
        meters.closed(match ending {
            Ending::Peer | Ending::PeerClosed(_) => None,
            Ending::Close(code, _) => Some(*code),
            Ending::Kicked(_) => Some(CloseCode::Disconnected),
        });
    }
}
