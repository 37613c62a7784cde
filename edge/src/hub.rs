//! The hub: which local sessions listen to which conversation, sharded by partition.
//!
//! Invariants:
//! - A partition's reader runs exactly while its shard has at least one subscription; the reader is started
//!   and stopped under the shard lock, so a leave racing a join can never stop a reader somebody needs.
//! - Each entry is delivered under its shard's lock, so a subscription made or ended meanwhile is wholly
//!   before the entry (delivered live, or recovered by the session) or wholly after it: never both, which a
//!   push still in flight after an unsubscribe and a resubscribe with `since` would be (a duplicate).
//!   Dispatch still never waits on a session: pushing a shared frame into an outbox never blocks.
//! - No lock is held across an `.await`.
//! - Only the shard's current reader is served: a reader stopped under the lock (its last subscriber left)
//!   may still be finishing a batch, and its lookups must not reach subscribers that joined after it, whose
//!   live delivery belongs to the next reader (else they would get entries twice, or from before they
//!   subscribed).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use bytes::Bytes;
use crier_proto::{StreamId, partition};
use crier_store::log::Head;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::outbox::{Outbox, Overflowed};

/// How the hub starts a partition reader: injected at construction (the edge's is
/// [`Consumer`](crate::consumer::Consumer)), so the hub knows nothing of how entries are read.
pub trait StartReader: Send + Sync {
    /// Starts reading `partition` for `hub`; the reader reports through [`Hub::reader_at`] and
    /// [`Hub::dispatch`] and exits once the handle's [`stop`](ReaderHandle::stop) is called.
    fn start(&self, partition: u32, hub: Arc<Hub>) -> ReaderHandle;
}

/// A running reader, held by its hub shard.
pub struct ReaderHandle {
    /// Unique per reader started for this hub: tells a shard's current reader from a stopped one.
    pub serial: u64,
    /// Cancelled to stop the reader.
    pub cancel: CancellationToken,
    /// Becomes the reader's starting head once it has one.
    pub started: watch::Receiver<Option<Head>>,
}

impl ReaderHandle {
    /// Stops the reader; it exits at its next await.
    pub fn stop(self) {
        self.cancel.cancel();
    }
}

/// One session's interest in one conversation.
#[derive(Clone)]
pub struct Subscriber {
    /// The session, unique per edge process.
    pub session: u64,
    /// Where its frames go.
    pub outbox: Arc<Outbox>,
    /// The session wants `{"type":"notification",...,"position"}` frames instead of bare payloads.
    pub positions: bool,
    /// Entries up to this id are not delivered live: the session recovers them itself (or already has
    /// them). [`StreamId::ZERO`] for a plain subscription.
    pub after: StreamId,
}

/// A subscription just registered: from which point the live path delivers.
pub struct Registration {
    /// The partition of the conversation.
    pub partition: u32,
    /// The conversation id as the hub keeps it, shared by every local subscription of the conversation.
    pub conversation: Arc<str>,
    /// Set when the partition's reader was already running: its epoch and the last id it had looked up
    /// subscribers for. Every later entry reaches the new subscriber live.
    pub at: Option<Head>,
    /// The reader's starting point, once it has one. When `at` is `None`, the reader started after the
    /// registration, so every entry after this head reaches the subscriber live.
    pub started: watch::Receiver<Option<Head>>,
}

/// Conversation → local subscribers, and the partition readers that feed them.
pub struct Hub {
    shards: Box<[Mutex<Shard>]>,
    readers: Box<dyn StartReader>,
}

#[derive(Default)]
struct Shard {
    /// Each conversation's subscribers, changed in place: every reader of a list (dispatch, presence, cut-off)
    /// holds the shard lock, so a subscribe is a push and an unsubscribe a swap-remove, never a copy of a
    /// popular conversation's list under the lock that dispatch waits for.
    // Bound: one entry per conversation with a subscriber on this edge (removed with its last one); the
    // lists hold ≤ --max-subscriptions per open connection in all.
    conversations: HashMap<Arc<str>, Vec<Subscriber>>,
    subscriptions: usize,
    // Bound: one reader per partition with subscribers (≤ --partitions readers per edge).
    reader: Option<ReaderHandle>,
    /// The reader's epoch and the last id it looked subscribers up for; `None` until it has started.
    /// Updated under this lock, which makes "registered before entry X was looked up" exact.
    dispatched: Option<Head>,
}

impl Hub {
    /// A hub with one shard per partition of a log of `partitions`, starting readers with `readers`.
    #[must_use]
    pub fn new(partitions: u32, readers: Box<dyn StartReader>) -> Arc<Self> {
        let shards = (0..partitions).map(|_| Mutex::default()).collect();
        Arc::new(Self { shards, readers })
    }

    fn shard(&self, partition: u32) -> MutexGuard<'_, Shard> {
        self.shards[partition as usize].lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The partition of `conversation`.
    #[must_use]
    pub fn partition_of(&self, conversation: &str) -> u32 {
        // The shard count equals the partition count, which fits a u32.
        partition(conversation, self.shards.len() as u32)
    }

    /// Adds `subscriber` to `conversation`, starting the partition's reader if it is the first interest.
    /// See [`Registration`] for where live delivery starts. Sessions join through their
    /// [`Member`](crate::directory::Member), which leaves again when dropped.
    pub(crate) fn subscribe(self: &Arc<Self>, conversation: &str, subscriber: Subscriber) -> Registration {
        let partition = self.partition_of(conversation);
        let mut shard = self.shard(partition);
        let conversation = match shard.conversations.get_key_value(conversation) {
            Some((key, _)) => Arc::clone(key),
            None => Arc::from(conversation),
        };
        let list = shard.conversations.entry(Arc::clone(&conversation)).or_default();
        // Most conversations have one subscriber per edge: no room for four until a second arrives.
        list.reserve_exact(usize::from(list.is_empty()));
        list.push(subscriber);
        shard.subscriptions += 1;
        let at = shard.dispatched;
        let reader = shard.reader.get_or_insert_with(|| self.readers.start(partition, Arc::clone(self)));
        Registration { partition, conversation, at, started: reader.started.clone() }
    }

    /// The shard of `partition` while `reader` is its current reader.
    fn shard_of_reader(&self, partition: u32, reader: u64) -> Option<MutexGuard<'_, Shard>> {
        let shard = self.shard(partition);
        shard.reader.as_ref().is_some_and(|r| r.serial == reader).then_some(shard)
    }

    /// Called by reader `reader` when it (re)starts reading `partition` at `head`.
    pub fn reader_at(&self, partition: u32, reader: u64, head: Head) {
        if let Some(mut shard) = self.shard_of_reader(partition, reader) {
            shard.dispatched = Some(head);
        }
    }

    /// Hands the subscribers of `conversation` for the entry `id` of `partition`, read by `reader`, to
    /// `deliver`, under the shard's lock (see the invariants), and records `id` as looked up. `None` when
    /// nobody listens, or when `reader` is no longer the partition's reader. `deliver` must not block.
    pub fn dispatch<R>(
        &self,
        partition: u32,
        reader: u64,
        conversation: &str,
        id: StreamId,
        deliver: impl FnOnce(&[Subscriber]) -> R,
    ) -> Option<R> {
        let mut shard = self.shard_of_reader(partition, reader)?;
        if let Some(head) = &mut shard.dispatched {
            head.last = id;
        }
        shard.conversations.get(conversation).map(|subscribers| deliver(subscribers))
    }

    /// Removes `session` from `conversation`; stops the partition's reader when nobody is left. Sessions
    /// leave through their [`Member`](crate::directory::Member).
    pub(crate) fn unsubscribe(&self, conversation: &str, session: u64) {
        let partition = self.partition_of(conversation);
        let mut shard = self.shard(partition);
        let Some(list) = shard.conversations.get_mut(conversation) else { return };
        let Some(index) = list.iter().position(|s| s.session == session) else { return };
        // Order among a conversation's subscribers does not matter: each gets every entry.
        list.swap_remove(index);
        if list.is_empty() {
            shard.conversations.remove(conversation);
        } else if list.len() < list.capacity() / 4 {
            // A crowd that left gives its room back.
            list.shrink_to(2 * list.len());
        }
        shard.subscriptions -= 1;
        if shard.subscriptions == 0
            && let Some(reader) = shard.reader.take()
        {
            reader.stop();
            shard.dispatched = None;
        }
    }

    /// Pushes entry `id`'s frame to every subscriber of `subscribers` that wants it live: the bare payload
    /// `frame`, or `positioned()` (encoded at most once) for sessions with positions. Returns how many
    /// outboxes took it and how many were full (those sessions close with 4008).
    pub fn deliver(
        subscribers: &[Subscriber],
        id: StreamId,
        frame: &Bytes,
        positioned: impl FnOnce() -> Bytes,
    ) -> (usize, usize) {
        let mut encode = Some(positioned);
        let mut with_position: Option<Bytes> = None;
        let (mut delivered, mut dropped) = (0, 0);
        for subscriber in subscribers.iter().filter(|s| id > s.after) {
            let frame = if subscriber.positions {
                with_position.get_or_insert_with(|| encode.take().map_or_else(Bytes::new, |f| f())).clone()
            } else {
                frame.clone()
            };
            if subscriber.outbox.push(frame) == Err(Overflowed) {
                dropped += 1;
            } else {
                delivered += 1;
            }
        }
        (delivered, dropped)
    }

    /// Cuts off every session subscribed to a conversation of `partition` (their outboxes overflow: close
    /// 4008) when `reader` is still its reader; returns how many subscriptions were cut.
    pub fn cut_off(&self, partition: u32, reader: u64) -> usize {
        let Some(shard) = self.shard_of_reader(partition, reader) else { return 0 };
        let subscribers = shard.conversations.values().flat_map(|list| list.iter());
        subscribers.map(|subscriber| subscriber.outbox.cut_off()).count()
    }

    /// Calls `f` with every conversation that has local subscribers, and its subscribers; holds one shard's
    /// lock at a time.
    pub fn each_conversation(&self, mut f: impl FnMut(&Arc<str>, &[Subscriber])) {
        for partition in 0..self.shards.len() as u32 {
            let shard = self.shard(partition);
            for (conversation, subscribers) in &shard.conversations {
                f(conversation, subscribers);
            }
        }
    }

    /// Conversations with local subscribers right now.
    #[must_use]
    pub fn conversations(&self) -> usize {
        (0..self.shards.len() as u32).map(|p| self.shard(p).conversations.len()).sum()
    }

    /// Partitions that currently have a reader.
    #[must_use]
    pub fn active_partitions(&self) -> Vec<u32> {
        (0..self.shards.len() as u32).filter(|&p| self.shard(p).reader.is_some()).collect()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A reader start: its partition, serial, stop token, and the sender of its starting head.
    type Started = (u32, u64, CancellationToken, watch::Sender<Option<Head>>);

    /// Records the readers the hub starts and stops, instead of reading a log: the seam under test is the
    /// hub's bookkeeping, not reading.
    #[derive(Clone, Default)]
    pub(crate) struct Readers(Arc<Mutex<Vec<Started>>>);

    impl StartReader for Readers {
        fn start(&self, partition: u32, _hub: Arc<Hub>) -> ReaderHandle {
            let mut started = self.0.lock().unwrap();
            let (serial, cancel) = (started.len() as u64, CancellationToken::new());
            let (tx, rx) = watch::channel(None);
            started.push((partition, serial, cancel.clone(), tx));
            ReaderHandle { serial, cancel, started: rx }
        }
    }

    impl Readers {
        /// Partitions whose reader runs (started and not stopped), in start order.
        pub(crate) fn running(&self) -> Vec<u32> {
            let started = self.0.lock().unwrap();
            started.iter().filter(|(_, _, cancel, _)| !cancel.is_cancelled()).map(|(p, ..)| *p).collect()
        }

        /// How many readers were started in all.
        pub(crate) fn starts(&self) -> usize {
            self.0.lock().unwrap().len()
        }
    }

    /// A hub of four partitions and the readers it starts.
    pub(crate) fn hub_and_readers() -> (Arc<Hub>, Readers) {
        let readers = Readers::default();
        (Hub::new(4, Box::new(readers.clone())), readers)
    }

    pub(crate) fn hub() -> Arc<Hub> {
        hub_and_readers().0
    }

    pub(crate) fn subscriber(session: u64) -> Subscriber {
        let outbox = Arc::new(Outbox::new(1024));
        Subscriber { session, outbox, positions: false, after: StreamId::ZERO }
    }

    fn reader_of(hub: &Hub, partition: u32) -> Option<u64> {
        hub.shard(partition).reader.as_ref().map(|r| r.serial)
    }

    /// Subscribes and unsubscribes change a conversation's list in place: whoever is left is found, each
    /// once, and the partition's count follows.
    #[test]
    fn churn_leaves_exactly_the_remaining_subscribers() {
        let hub = hub();
        let partition = hub.subscribe("c", subscriber(1)).partition;
        for session in 2..=5 {
            hub.subscribe("c", subscriber(session));
        }
        hub.unsubscribe("c", 2);
        hub.unsubscribe("c", 4);
        hub.unsubscribe("c", 4);
        let reader = reader_of(&hub, partition).expect("subscribers keep the reader");
        let sessions = |list: &[Subscriber]| {
            let mut sessions: Vec<u64> = list.iter().map(|s| s.session).collect();
            sessions.sort_unstable();
            sessions
        };
        let found = hub.dispatch(partition, reader, "c", StreamId { ms: 1, seq: 0 }, sessions);
        assert_eq!(found, Some(vec![1, 3, 5]));
        assert_eq!(hub.shard(partition).subscriptions, 3);
    }

    /// A partition's reader runs exactly while the partition has a subscriber: one start for many
    /// subscribers, one stop with the last leave, a new start for the next subscriber.
    #[test]
    fn a_reader_runs_while_its_partition_has_subscribers() {
        let (hub, readers) = hub_and_readers();
        let partition = hub.subscribe("c", subscriber(1)).partition;
        hub.subscribe("c", subscriber(2));
        assert_eq!((readers.running(), readers.starts()), (vec![partition], 1));
        hub.unsubscribe("c", 1);
        assert_eq!(readers.running(), [partition], "a subscriber is left");
        hub.unsubscribe("c", 2);
        assert!(readers.running().is_empty(), "the last leave stops the reader");
        assert_eq!(hub.conversations(), 0);
        hub.subscribe("c", subscriber(3));
        assert_eq!((readers.running(), readers.starts()), (vec![partition], 2));
    }

    /// A subscriber that joins before the reader has a position learns it from `started`; one that joins
    /// after learns it at once, with the last id looked up.
    #[test]
    fn registrations_say_where_live_delivery_starts() {
        let (hub, readers) = hub_and_readers();
        let first = hub.subscribe("c", subscriber(1));
        assert!(first.at.is_none() && first.started.borrow().is_none());
        let head = Head { epoch: 7, last: StreamId { ms: 5, seq: 0 } };
        let serial = reader_of(&hub, first.partition).unwrap();
        hub.reader_at(first.partition, serial, head);
        readers.0.lock().unwrap()[0].3.send_replace(Some(head));
        assert_eq!(*first.started.borrow(), Some(head));
        let id = StreamId { ms: 9, seq: 1 };
        assert_eq!(hub.dispatch(first.partition, serial, "c", id, <[Subscriber]>::len), Some(1));
        let second = hub.subscribe("c", subscriber(2));
        assert_eq!(second.at, Some(Head { epoch: 7, last: id }));
    }

    /// Delivery skips what a subscriber recovers itself (`after`) and encodes positioned frames once.
    #[test]
    fn delivery_respects_after_and_positions() {
        let mut recovering = subscriber(1);
        recovering.after = StreamId { ms: 10, seq: 0 };
        let (mut a, mut b) = (subscriber(2), subscriber(3));
        (a.positions, b.positions) = (true, true);
        let list = [recovering.clone(), a.clone(), b.clone()];
        let mut encoded = 0;
        let frame = Bytes::from_static(b"bare");
        let positioned_frame = || Bytes::from_static(b"positioned");
        let positioned = || {
            encoded += 1;
            positioned_frame()
        };
        assert_eq!(Hub::deliver(&list, StreamId { ms: 10, seq: 0 }, &frame, positioned), (2, 0));
        assert_eq!(encoded, 1);
        let frames = |s: &Subscriber| {
            let mut frames = std::collections::VecDeque::new();
            s.outbox.drain_into(&mut frames).unwrap();
            frames
        };
        assert!(frames(&recovering).is_empty());
        assert_eq!((frames(&a), frames(&b)), ([positioned_frame()].into(), [positioned_frame()].into()));
    }

    #[test]
    fn a_stopped_reader_no_longer_reaches_later_subscribers() {
        let hub = hub();
        let partition = hub.subscribe("c", subscriber(1)).partition;
        let old = reader_of(&hub, partition).expect("first subscriber starts a reader");
        hub.unsubscribe("c", 1);
        assert_eq!(reader_of(&hub, partition), None, "last leave stops the reader");
        hub.subscribe("c", subscriber(2));
        let new = reader_of(&hub, partition).expect("next subscriber starts another reader");
        assert_ne!(old, new);

        let id = StreamId { ms: 1, seq: 0 };
        let sessions = |list: &[Subscriber]| list.iter().map(|s| s.session).collect::<Vec<_>>();
        assert!(hub.dispatch(partition, old, "c", id, sessions).is_none(), "stopped reader must find nobody");
        assert_eq!(hub.cut_off(partition, old), 0, "stopped reader must cut nobody off");
        let found =
            hub.dispatch(partition, new, "c", id, sessions).expect("current reader finds the subscriber");
        assert_eq!(found, [2]);
    }
}
