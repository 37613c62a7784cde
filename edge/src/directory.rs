//! The edge's one directory of sessions: who holds a seat (for `--max-connections`), which sessions each
//! user has (for `--max-connections-per-user`, revocations and operator disconnects), how to reach every
//! session (drain), and, through the hub, which conversations each session follows (presence).
//!
//! Membership is a guard: a [`Seat`] is taken at the handshake and becomes a [`Member`] when its session
//! starts; the member joins its user's list and conversations through the directory, and its `Drop` leaves
//! every one of them and frees the seat, however the session ends (even by its task being dropped). No
//! exit path has anything to remember.
//!
//! Updated on per-session events (connect, auth, subscribe, close), never per notification. Which sessions
//! follow a conversation is the hub's to know: presence is read from the hub when reported, not kept twice.
//! Locks: the directory's, then a hub shard's (the hub never takes the directory's); none is held across an
//! `.await`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crier_proto::StreamId;
use crier_store::control::{Presence, Users};
use metrics::Gauge;

use crate::hub::{Hub, Registration, Subscriber};
use crate::outbox::Outbox;

/// The sessions of one edge.
pub struct Directory {
    hub: Arc<Hub>,
    /// Seats taken (≤ `max`).
    seats: AtomicUsize,
    max: usize,
    max_per_user: usize,
    members: Mutex<Members>,
    /// Set (under the `members` lock) once the edge drains: sessions admitted later drain at once.
    draining: AtomicBool,
    next_id: AtomicU64,
    /// Live (session, conversation) subscriptions.
    subscriptions: Gauge,
}

#[derive(Default)]
struct Members {
    // Bound: one entry per admitted session (≤ --max-connections), removed when its member leaves.
    sessions: HashMap<u64, Entry>,
    // Bound: one entry per user with an authenticated session, ≤ --max-connections-per-user sessions each
    // and ≤ --max-connections in all; a user is removed with their last session.
    users: HashMap<Arc<str>, Vec<u64>>,
}

/// A session's entry.
struct Entry {
    /// Who it authenticated as; `None` until it has.
    user: Option<Arc<str>>,
    /// Reaches the session (revocations, operator disconnects, drain).
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

/// One connection's place under `--max-connections`, taken at the handshake; frees it on drop.
pub struct Seat {
    directory: Arc<Directory>,
}

/// One session's membership: its seat, its entry, its place in its user's list and its conversations.
/// Dropping it leaves them all.
pub struct Member {
    seat: Seat,
    id: u64,
    /// The conversations joined, as the hub keeps their ids. A few per connection: a vector, which costs an
    /// idle connection one small allocation where a hash set cost a table.
    // Bound: --max-subscriptions (more are refused before joining).
    conversations: Vec<Arc<str>>,
}

impl Directory {
    /// A directory over `hub`, admitting at most `max` connections and `max_per_user` sessions per user;
    /// `subscriptions` counts live subscriptions.
    #[must_use]
    pub fn new(hub: Arc<Hub>, max: usize, max_per_user: usize, subscriptions: Gauge) -> Arc<Self> {
        Arc::new(Self {
            hub,
            seats: AtomicUsize::new(0),
            max,
            max_per_user,
            members: Mutex::default(),
            draining: AtomicBool::new(false),
            next_id: AtomicU64::new(1),
            subscriptions,
        })
    }

    fn members(&self) -> MutexGuard<'_, Members> {
        self.members.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A seat for one more connection, or `None` at the limit.
    pub fn seat(self: &Arc<Self>) -> Option<Seat> {
        let admitted = self
            .seats
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < self.max).then_some(n + 1))
            .is_ok();
        admitted.then(|| Seat { directory: Arc::clone(self) })
    }

    /// Seats taken now.
    #[must_use]
    pub fn seats(&self) -> usize {
        self.seats.load(Ordering::Acquire)
    }

    /// The partition of `conversation`.
    #[must_use]
    pub fn partition_of(&self, conversation: &str) -> u32 {
        self.hub.partition_of(conversation)
    }

    /// Tells every session, present and future, that the edge drains.
    pub fn drain_all(&self) {
        let members = self.members();
        self.draining.store(true, Ordering::Relaxed);
        for entry in members.sessions.values() {
            entry.outbox.drain();
        }
    }

    /// Tells every session of `user` to close with `reason`; returns how many were told.
    pub fn disconnect_user(&self, user: &str, reason: &str) -> usize {
        let reason: Arc<str> = reason.into();
        let members = self.members();
        let outboxes = members.outboxes_of(user);
        outboxes.clone().for_each(|outbox| outbox.kick(Arc::clone(&reason)));
        outboxes.count()
    }

    /// Tells every session of `user` that its access to `conversation` is revoked.
    pub fn revoke(&self, user: &str, conversation: &str) {
        self.members().outboxes_of(user).for_each(|outbox| outbox.revoke(conversation));
    }

    /// Counts right now, and presence from the hub's subscriptions. Takes the directory's lock, then each
    /// hub shard's in turn.
    #[must_use]
    pub fn snapshot(&self) -> Snapshot {
        let members = self.members();
        let sessions = &members.sessions;
        let authenticated = sessions.values().filter(|e| e.user.is_some()).count();
        let mut snapshot = Snapshot {
            connections: sessions.len() as u64,
            authenticated: authenticated as u64,
            ..Snapshot::default()
        };
        let mut presence = Vec::with_capacity(self.hub.conversations());
        self.hub.each_conversation(|conversation, subscribers| {
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

    /// Forgets session `id`: its entry and its place in its user's list.
    fn remove(&self, id: u64) {
        let mut members = self.members();
        let Some(Entry { user: Some(user), .. }) = members.sessions.remove(&id) else { return };
        if let Some(sessions) = members.users.get_mut(&user) {
            sessions.retain(|session| *session != id);
            if sessions.is_empty() {
                members.users.remove(&user);
            }
        }
    }
}

impl Members {
    /// The outboxes of `user`'s sessions.
    fn outboxes_of<'a>(&'a self, user: &str) -> impl Iterator<Item = &'a Arc<Outbox>> + Clone + 'a {
        let ids = self.users.get(user).into_iter().flatten();
        ids.filter_map(|id| self.sessions.get(id)).map(|entry| &entry.outbox)
    }
}

impl Seat {
    /// Makes this connection's session a member, reached through `outbox` (drained at once if the edge
    /// already drains).
    #[must_use]
    pub fn admit(self, outbox: Arc<Outbox>) -> Member {
        let directory = &self.directory;
        let id = directory.next_id.fetch_add(1, Ordering::Relaxed);
        let mut members = directory.members();
        if directory.draining.load(Ordering::Relaxed) {
            outbox.drain();
        }
        members.sessions.insert(id, Entry { user: None, outbox });
        drop(members);
        Member { seat: self, id, conversations: Vec::new() }
    }
}

impl Drop for Seat {
    fn drop(&mut self) {
        self.directory.seats.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Member {
    /// The session's id, unique per edge process.
    #[must_use]
    pub fn id(&self) -> u64 {
        self.id
    }

    fn directory(&self) -> &Directory {
        &self.seat.directory
    }

    /// Enters the session in `user`'s list; `false` when the user is at the per-user limit.
    pub fn authenticate(&mut self, user: &Arc<str>) -> bool {
        let directory = &self.seat.directory;
        let mut members = directory.members();
        let members = &mut *members;
        let Some(entry) = members.sessions.get_mut(&self.id) else { return false };
        // Most users have one session per edge: no room for four until a second arrives.
        let sessions = members.users.entry(Arc::clone(user)).or_insert_with(|| Vec::with_capacity(1));
        if sessions.len() >= directory.max_per_user {
            if sessions.is_empty() {
                members.users.remove(user);
            }
            return false;
        }
        sessions.push(self.id);
        entry.user = Some(Arc::clone(user));
        true
    }

    /// Joins `conversation` through the hub: its frames go to `outbox` (with positions when `positions`),
    /// live after `after`. See [`Registration`] for where live delivery starts.
    pub fn join(
        &mut self,
        conversation: &str,
        outbox: Arc<Outbox>,
        positions: bool,
        after: StreamId,
    ) -> Registration {
        // The session asks only for conversations it has not joined (a repeated subscribe is answered
        // without joining): the hub holds one entry per member and conversation, which `leave` removes.
        debug_assert!(!self.is_joined(conversation), "joined {conversation} twice");
        let subscriber = Subscriber { session: self.id, outbox, positions, after };
        let registration = self.directory().hub.subscribe(conversation, subscriber);
        // Most connections follow one conversation: no room for four until a second arrives.
        if self.conversations.capacity() == 0 {
            self.conversations.reserve_exact(1);
        }
        self.conversations.push(Arc::clone(&registration.conversation));
        self.directory().subscriptions.increment(1.0);
        registration
    }

    /// Leaves `conversation`; whether it was joined.
    pub fn leave(&mut self, conversation: &str) -> bool {
        let before = self.conversations.len();
        self.conversations.retain(|c| &**c != conversation);
        let joined = self.conversations.len() != before;
        if joined {
            self.directory().hub.unsubscribe(conversation, self.id);
            self.directory().subscriptions.decrement(1.0);
        }
        joined
    }

    /// Whether the session has joined `conversation`.
    #[must_use]
    pub fn is_joined(&self, conversation: &str) -> bool {
        self.conversations.iter().any(|c| &**c == conversation)
    }

    /// How many conversations the session has joined.
    #[must_use]
    pub fn joined(&self) -> usize {
        self.conversations.len()
    }

    /// Leaves everything but the seat: conversations, user list, entry. A closing session calls it before
    /// its lingering close, so that its user may connect again and nothing more is delivered to it; the
    /// seat is freed with the connection. `Drop` does the same, so no exit path can miss it.
    pub fn retire(&mut self) {
        let directory = Arc::clone(&self.seat.directory);
        directory.subscriptions.decrement(self.conversations.len() as f64);
        for conversation in self.conversations.drain(..) {
            directory.hub.unsubscribe(&conversation, self.id);
        }
        directory.remove(self.id);
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        self.retire();
    }
}

#[cfg(test)]
mod tests;
