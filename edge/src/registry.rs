//! Who is connected to this edge: each session's user, for counts, presence and operator disconnects, and
//! a way to reach every session (drain).
//!
//! Updated on per-session events (connect, auth, close), never per notification. Which conversations a
//! session follows is the hub's to know: presence is read from the hub when reported, not kept twice.
//! The lock is held for map updates only, never across an `.await`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crier_store::control::{Presence, Users};

use crate::hub::Hub;
use crate::outbox::Outbox;

/// A session's entry.
struct Entry {
    user: Option<Arc<str>>,
    /// Reaches the session (operator disconnects, drain).
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
    pub presence: Presence,
}

/// The sessions of one edge.
#[derive(Default)]
pub struct Registry {
    // Bound: one entry per open connection (≤ --max-connections), removed when its session ends.
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
        sessions.insert(session, Entry { user: None, outbox });
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

    /// Counts right now, and presence from `hub`'s subscriptions. Takes the registry's lock, then each hub
    /// shard's in turn (the hub never takes the registry's).
    #[must_use]
    pub fn snapshot(&self, hub: &Hub) -> Snapshot {
        let sessions = self.lock();
        let authenticated = sessions.values().filter(|e| e.user.is_some()).count();
        let mut snapshot = Snapshot {
            connections: sessions.len() as u64,
            authenticated: authenticated as u64,
            ..Snapshot::default()
        };
        let mut presence = Vec::with_capacity(hub.conversations());
        hub.each_conversation(|conversation, subscribers| {
            snapshot.subscriptions += subscribers.len() as u64;
            let mut users = Users::default();
            for subscriber in subscribers {
                if let Some(user) = sessions.get(&subscriber.session).and_then(|e| e.user.as_ref()) {
                    users.add(user, 1);
                }
            }
            if !users.0.is_empty() {
                presence.push((Arc::clone(conversation), users));
            }
        });
        snapshot.presence = Presence::new(presence);
        snapshot
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hub::tests::{hub, subscriber};

    /// Presence counts sessions per user per conversation, from the hub; anonymous sessions count only as
    /// connections.
    #[tokio::test]
    async fn snapshot_counts_presence() {
        let (registry, hub) = (Registry::default(), hub());
        for session in 1..=3 {
            registry.register(session, Arc::new(Outbox::new(1024)));
        }
        registry.set_user(1, "u1".into());
        registry.set_user(2, "u1".into());
        hub.subscribe("c1", subscriber(1));
        hub.subscribe("c1", subscriber(2));
        hub.subscribe("c2", subscriber(2));
        hub.unsubscribe("c2", 2);
        let snapshot = registry.snapshot(&hub);
        assert_eq!((snapshot.connections, snapshot.authenticated, snapshot.subscriptions), (3, 2, 2));
        assert_eq!(snapshot.presence.get("c1").and_then(|users| users.get("u1")), Some(2));
        assert!(snapshot.presence.get("c2").is_none());
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
