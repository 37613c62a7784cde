//! Who is connected to this edge: the connection count (for `--max-connections`), each user's sessions
//! (for `--max-connections-per-user`), and a way to reach a user's sessions from outside them (access
//! revocations).
//!
//! A connection's place is an RAII guard: a connection that ends, however it ends, frees it. A session's
//! place in its user's list is left explicitly, by the session's end and by its `Drop` (no guard: that
//! would cost every connection 32 bytes for what the session already knows).

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crate::outbox::Outbox;

type UserSessions = HashMap<Arc<str>, Vec<(u64, Arc<Outbox>)>>;

/// Connection accounting of one edge.
pub struct Connections {
    open: AtomicUsize,
    max: usize,
    max_per_user: usize,
    // Bound: one entry per user with an open session, ≤ --max-connections-per-user sessions each and
    // ≤ --max-connections in all; a user is removed with their last session.
    users: Mutex<UserSessions>,
}

/// One open connection; frees its place on drop.
pub struct ConnectionSlot {
    connections: Arc<Connections>,
}

impl Connections {
    /// Accounting with the given limits.
    #[must_use]
    pub fn new(max: usize, max_per_user: usize) -> Arc<Self> {
        Arc::new(Self { open: AtomicUsize::new(0), max, max_per_user, users: Mutex::default() })
    }

    fn users(&self) -> MutexGuard<'_, UserSessions> {
        self.users.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A place for one more connection, or `None` at the limit.
    pub fn open(self: &Arc<Self>) -> Option<ConnectionSlot> {
        let admitted = self
            .open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < self.max).then_some(n + 1))
            .is_ok();
        admitted.then(|| ConnectionSlot { connections: Arc::clone(self) })
    }

    /// Open connections now.
    #[must_use]
    pub fn count(&self) -> usize {
        self.open.load(Ordering::Acquire)
    }

    /// Registers `session` of `user`; `false` when the user is at the per-user limit. The session must
    /// [`leave`](Self::leave) when it ends.
    pub fn join(&self, user: &Arc<str>, session: u64, outbox: Arc<Outbox>) -> bool {
        let mut users = self.users();
        // Most users have one session per edge: no room for four until a second arrives.
        let sessions = users.entry(Arc::clone(user)).or_insert_with(|| Vec::with_capacity(1));
        if sessions.len() >= self.max_per_user {
            if sessions.is_empty() {
                users.remove(user);
            }
            return false;
        }
        sessions.push((session, outbox));
        true
    }

    /// Removes `session` from `user`'s list.
    pub fn leave(&self, user: &str, session: u64) {
        let mut users = self.users();
        if let Some(sessions) = users.get_mut(user) {
            sessions.retain(|(id, _)| *id != session);
            if sessions.is_empty() {
                users.remove(user);
            }
        }
    }

    /// Tells every session of `user` that its access to `conversation` is revoked.
    pub fn revoke(&self, user: &str, conversation: &str) {
        let users = self.users();
        for (_, outbox) in users.get(user).into_iter().flatten() {
            outbox.revoke(conversation);
        }
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        self.connections.open.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Both limits admit exactly their number, and dropped slots and left sessions free their places.
    #[test]
    fn limits_and_release() {
        let connections = Connections::new(2, 1);
        let (a, _b) = (connections.open().unwrap(), connections.open().unwrap());
        assert!(connections.open().is_none());
        drop(a);
        assert!(connections.open().is_some());
        let user: Arc<str> = "u1".into();
        let outbox = || Arc::new(Outbox::new(1024));
        assert!(connections.join(&user, 1, outbox()));
        assert!(!connections.join(&user, 2, outbox()));
        connections.leave(&user, 1);
        assert!(connections.join(&user, 3, outbox()));
    }

    /// A revocation reaches every session of the user and no other.
    #[test]
    fn revocation_reaches_the_users_sessions() {
        let connections = Connections::new(10, 10);
        let (mine, theirs) = (Arc::new(Outbox::new(1024)), Arc::new(Outbox::new(1024)));
        assert!(connections.join(&"u1".into(), 1, Arc::clone(&mine)));
        assert!(connections.join(&"u2".into(), 2, Arc::clone(&theirs)));
        connections.revoke("u1", "c1");
        assert_eq!(mine.take_revoked(), [Box::from("c1")]);
        assert!(theirs.take_revoked().is_empty());
    }
}
