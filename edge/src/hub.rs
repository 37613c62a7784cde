//! The hub: which local sessions listen to which conversation, sharded by partition.
//!
//! Invariants:
//! - A partition's reader runs exactly while its shard has at least one subscription; the reader is started
//!   and stopped under the shard lock, so a leave racing a join can never stop a reader somebody needs.
//! - Dispatch never waits on a session: it clones the conversation's subscriber list (an `Arc`) under the
//!   lock, releases it, and pushes the shared frame into each outbox, which never blocks.
//! - No lock is held across an `.await`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use bytes::Bytes;
use crier_proto::partition;
use tokio::sync::watch;

use crate::consumer::{Consumer, ReaderHandle};
use crate::outbox::{Outbox, Overflowed};

/// One session's interest in one conversation.
#[derive(Clone)]
pub struct Subscriber {
    /// The session, unique per edge process.
    pub session: u64,
    /// Where its frames go.
    pub outbox: Arc<Outbox>,
}

/// Conversation → local subscribers, and the partition readers that feed them.
pub struct Hub {
    shards: Box<[Mutex<Shard>]>,
    consumer: Consumer,
}

#[derive(Default)]
struct Shard {
    /// Copy-on-write lists: dispatch clones the `Arc`, (un)subscribe replaces it.
    conversations: HashMap<Box<str>, Arc<[Subscriber]>>,
    subscriptions: usize,
    reader: Option<ReaderHandle>,
}

impl Hub {
    /// A hub with one shard per partition of `consumer`'s log.
    #[must_use]
    pub fn new(consumer: Consumer) -> Arc<Self> {
        let shards = (0..consumer.partitions()).map(|_| Mutex::default()).collect();
        Arc::new(Self { shards, consumer })
    }

    fn shard(&self, partition: u32) -> MutexGuard<'_, Shard> {
        self.shards[partition as usize].lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn partition_of(&self, conversation: &str) -> u32 {
        // The shard count equals the partition count, which fits a u32.
        partition(conversation, self.shards.len() as u32)
    }

    /// Adds `subscriber` to `conversation`, starting the partition's reader if it is the first interest.
    /// The returned receiver turns `true` once the reader holds a position taken after this call: from then
    /// on every appended notification of `conversation` reaches the subscriber.
    pub fn subscribe(self: &Arc<Self>, conversation: &str, subscriber: Subscriber) -> watch::Receiver<bool> {
        let partition = self.partition_of(conversation);
        let mut shard = self.shard(partition);
        let list = shard.conversations.entry(conversation.into()).or_insert_with(|| Arc::new([]));
        *list = list.iter().cloned().chain([subscriber]).collect();
        shard.subscriptions += 1;
        let reader = shard.reader.get_or_insert_with(|| self.consumer.spawn(partition, Arc::clone(self)));
        reader.ready()
    }

    /// Removes `session` from `conversation`; stops the partition's reader when nobody is left.
    pub fn unsubscribe(&self, conversation: &str, session: u64) {
        let partition = self.partition_of(conversation);
        let mut shard = self.shard(partition);
        let Some(list) = shard.conversations.get_mut(conversation) else { return };
        let before = list.len();
        let kept: Arc<[Subscriber]> = list.iter().filter(|s| s.session != session).cloned().collect();
        let removed = before - kept.len();
        if kept.is_empty() {
            shard.conversations.remove(conversation);
        } else {
            *list = kept;
        }
        shard.subscriptions -= removed;
        if shard.subscriptions == 0
            && let Some(reader) = shard.reader.take()
        {
            reader.stop();
        }
    }

    /// The current subscribers of `conversation` in `partition`, if any.
    #[must_use]
    pub fn subscribers(&self, partition: u32, conversation: &str) -> Option<Arc<[Subscriber]>> {
        self.shard(partition).conversations.get(conversation).cloned()
    }

    /// Pushes `frame` to every subscriber in `subscribers`; returns how many took it.
    pub fn deliver(subscribers: &[Subscriber], frame: &Bytes) -> usize {
        subscribers.iter().filter(|s| s.outbox.push(frame.clone()) != Err(Overflowed)).count()
    }

    /// Partitions that currently have a reader.
    #[must_use]
    pub fn active_partitions(&self) -> Vec<u32> {
        (0..self.shards.len() as u32).filter(|&p| self.shard(p).reader.is_some()).collect()
    }
}
