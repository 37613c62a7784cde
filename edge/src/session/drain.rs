//! How a session's end is counted in the metrics (the moment a draining session closes at is
//! [`timers`](super::timers)'; its membership is left by its [`Member`](crate::directory::Member)).

use super::{Ending, Session};
use crate::error::CloseCode;

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
            Ending::Close(reason) => Some(reason.code()),
            Ending::Kicked(_) => Some(CloseCode::Disconnected),
        });
    }
}
