//! Who is connected to this edge: each session's user and conversations, for presence reports, and a way
//! to reach every session of a user, for operator disconnects.
//!
//! Updated on per-session events (connect, auth, subscribe, unsubscribe, close), never per notification.
//! The lock is held for map updates only, never across an `.await`.

use std::collections::HashMap;

use crier_broker::control::Users;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crate::outbox::Outbox;

/// A session's entry.
struct Entry {
    user: Option<Arc<str>>,
    conversations: Vec<Box<str>>,
    /// Reaches the session (operator disconnects).
    outbox: Arc<Outbox>,
}

/// Counts and presence of this edge at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// Open sessions.
    pub connections: u64,
    /// Authenticated sessions.
    pub authenticated: u64,
    /// (session, conversation) subscriptions.
    pub subscriptions: u64,
    /// Conversation → user → subscribed sessions.
    pub presence: HashMap<String, Users>,
}

/// The sessions of one edge.
#[derive(Default)]
pub struct Registry {
    sessions: Mutex<HashMap<u64, Entry>>,
    /// Set (under the `sessions` lock) once the edge drains: sessions registering later drain at once.
    draining: AtomicBool,
}

impl Registry {
    fn lock(&self) -> MutexGuard<'_, HashMap<u64, Entry>> {
        self.sessions.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Adds `session`, reached through `outbox` when an operator disconnects its user.
    pub fn register(&self, session: u64, outbox: Arc<Outbox>) {
        let mut sessions = self.lock();
        if self.draining.load(Ordering::Relaxed) {
            outbox.drain();
        }
        sessions.insert(session, Entry { user: None, conversations: Vec::new(), outbox });
    }

    /// Tells every session, present and future, that the edge drains.
    pub fn drain_all(&self) {
        let sessions = self.lock();
        self.draining.store(true, Ordering::Relaxed);
        for entry in sessions.values() {
            entry.outbox.drain();
        }
    }

    /// Records who `session` authenticated as.
    pub fn set_user(&self, session: u64, user: Arc<str>) {
        if let Some(entry) = self.lock().get_mut(&session) {
            entry.user = Some(user);
        }
    }

    /// Records a subscription of `session`.
    pub fn subscribed(&self, session: u64, conversation: &str) {
        if let Some(entry) = self.lock().get_mut(&session) {
            entry.conversations.push(conversation.into());
        }
    }

    /// Records the end of a subscription of `session`.
    pub fn unsubscribed(&self, session: u64, conversation: &str) {
        if let Some(entry) = self.lock().get_mut(&session) {
            entry.conversations.retain(|c| &**c != conversation);
        }
    }

    /// Forgets `session`.
    pub fn remove(&self, session: u64) {
        self.lock().remove(&session);
    }

    /// Tells every session of `user` to close with `reason`; returns how many were told.
    pub fn disconnect_user(&self, user: &str, reason: &str) -> usize {
        let reason: Arc<str> = reason.into();
        let sessions = self.lock();
        let mut told = 0;
        for entry in sessions.values().filter(|e| e.user.as_deref() == Some(user)) {
            entry.outbox.kick(Arc::clone(&reason));
            told += 1;
        }
        told
    }

    /// Counts and presence right now.
    #[must_use]
    pub fn snapshot(&self) -> Snapshot {
        let sessions = self.lock();
        let mut snapshot = Snapshot { connections: sessions.len() as u64, ..Snapshot::default() };
        for entry in sessions.values() {
            let Some(user) = &entry.user else { continue };
            snapshot.authenticated += 1;
            snapshot.subscriptions += entry.conversations.len() as u64;
            for conversation in &entry.conversations {
                match snapshot.presence.get_mut(&**conversation) {
                    Some(users) => users.add(user, 1),
                    None => drop(
                        snapshot
                            .presence
                            .insert(conversation.to_string(), Users(vec![(user.to_string(), 1)])),
                    ),
                }
            }
        }
        snapshot
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Presence counts sessions per user per conversation; anonymous sessions count only as connections.
    #[test]
    fn snapshot_counts_presence() {
        let registry = Registry::default();
        for session in 1..=3 {
            registry.register(session, Arc::new(Outbox::new(1024)));
        }
        registry.set_user(1, "u1".into());
        registry.set_user(2, "u1".into());
        registry.subscribed(1, "c1");
        registry.subscribed(2, "c1");
        registry.subscribed(2, "c2");
        registry.unsubscribed(2, "c2");
        let snapshot = registry.snapshot();
        assert_eq!((snapshot.connections, snapshot.authenticated, snapshot.subscriptions), (3, 2, 2));
        assert_eq!(snapshot.presence["c1"].get("u1"), Some(2));
        assert!(!snapshot.presence.contains_key("c2"));
    }

    /// A disconnect reaches every session of the user and no other.
    #[test]
    fn disconnect_reaches_only_the_user() {
        let registry = Registry::default();
        let (a, b) = (Arc::new(Outbox::new(1024)), Arc::new(Outbox::new(1024)));
        registry.register(1, Arc::clone(&a));
        registry.register(2, Arc::clone(&b));
        registry.set_user(1, "u1".into());
        registry.set_user(2, "u2".into());
        assert_eq!(registry.disconnect_user("u1", "bye"), 1);
        assert_eq!(a.kicked().as_deref(), Some("bye"));
        assert_eq!(b.kicked(), None);
    }

    /// A drain reaches every session, also one that registers afterwards.
    #[test]
    fn drain_reaches_present_and_later_sessions() {
        let registry = Registry::default();
        let (early, late) = (Arc::new(Outbox::new(1024)), Arc::new(Outbox::new(1024)));
        registry.register(1, Arc::clone(&early));
        assert!(!early.is_draining());
        registry.drain_all();
        registry.register(2, Arc::clone(&late));
        assert!(early.is_draining() && late.is_draining());
    }
}
