//! [`ExpiringSet`]: a bounded set whose members expire a fixed time after they were (last) inserted. The
//! gate's caches (grants, denials) and its memory of revocations are each one.
//!
//! Every operation is O(1) amortised: members expire in insertion order (one TTL per set), so a queue in
//! that order finds the expired and, when the set is full, the oldest member to evict.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::time::Duration;

use tokio::time::Instant;

/// At most `capacity` members, each for `ttl`.
#[derive(Debug)]
pub struct ExpiringSet<K> {
    ttl: Duration,
    capacity: usize,
    /// Member → (when it was last inserted, that insertion's number).
    members: HashMap<K, (Instant, u64)>,
    /// (member, insertion time, insertion number) in insertion order; entries whose number no longer
    /// matches `members` are stale (re-inserted or removed since) and skipped. At most `2 × capacity + 1`
    /// long: compacted past that.
    order: VecDeque<(K, Instant, u64)>,
    /// Numbers insertions.
    inserted: u64,
}

impl<K: Hash + Eq + Clone> ExpiringSet<K> {
    /// An empty set; `capacity` is at least 1.
    #[must_use]
    pub fn new(ttl: Duration, capacity: usize) -> Self {
        Self { ttl, capacity: capacity.max(1), members: HashMap::new(), order: VecDeque::new(), inserted: 0 }
    }

    /// Whether `key` is a member that has not expired.
    #[must_use]
    pub fn contains(&self, key: &K) -> bool {
        self.members.get(key).is_some_and(|(at, _)| at.elapsed() < self.ttl)
    }

    /// Inserts `key` (or restarts its time). Returns `true` when a live member had to be evicted to make
    /// room.
    pub fn insert(&mut self, key: K) -> bool {
        let now = Instant::now();
        self.expire(now);
        let mut evicted = false;
        if !self.members.contains_key(&key) && self.members.len() >= self.capacity {
            evicted = self.evict_oldest();
        }
        self.inserted += 1;
        self.members.insert(key.clone(), (now, self.inserted));
        self.order.push_back((key, now, self.inserted));
        if self.order.len() > 2 * self.capacity {
            let members = &self.members;
            self.order.retain(|(k, _, n)| members.get(k).is_some_and(|(_, m)| m == n));
        }
        evicted
    }

    /// Removes `key`.
    pub fn remove(&mut self, key: &K) {
        self.members.remove(key);
    }

    /// Removes every member.
    pub fn clear(&mut self) {
        self.members.clear();
        self.order.clear();
    }

    /// Members, expired ones not yet dropped included.
    #[must_use]
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Whether there is no member.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    fn expire(&mut self, now: Instant) {
        while let Some((_, at, _)) = self.order.front() {
            if now.duration_since(*at) < self.ttl {
                break;
            }
            self.pop_front();
        }
    }

    /// Drops the oldest live member; `true` if there was one.
    fn evict_oldest(&mut self) -> bool {
        while !self.order.is_empty() {
            if self.pop_front() {
                return true;
            }
        }
        false
    }

    /// Pops the queue's front; removes its member unless the entry was stale. `true` when it removed one.
    fn pop_front(&mut self) -> bool {
        let Some((key, _, number)) = self.order.pop_front() else { return false };
        match self.members.entry(key) {
            Entry::Occupied(member) if member.get().1 == number => {
                member.remove();
                true
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Members expire after the TTL, counted from their last insertion.
    #[tokio::test(start_paused = true)]
    async fn members_expire_after_ttl() {
        let mut set = ExpiringSet::new(Duration::from_secs(10), 8);
        set.insert("a");
        tokio::time::advance(Duration::from_secs(6)).await;
        set.insert("b");
        set.insert("a");
        tokio::time::advance(Duration::from_secs(6)).await;
        assert!(set.contains(&"a") && set.contains(&"b"));
        tokio::time::advance(Duration::from_secs(5)).await;
        assert!(!set.contains(&"a") && !set.contains(&"b"));
        set.insert("c");
        assert_eq!(set.len(), 1, "expired members are dropped on insert");
    }

    /// A full set evicts its oldest member, and the queue stays bounded under churn of one key.
    #[tokio::test(start_paused = true)]
    async fn full_set_evicts_the_oldest_and_stays_bounded() {
        let mut set = ExpiringSet::new(Duration::from_secs(60), 2);
        assert!(!set.insert(1));
        assert!(!set.insert(2));
        assert!(!set.insert(1), "re-inserting a member evicts nothing");
        assert!(set.insert(3));
        assert!(!set.contains(&2) && set.contains(&1) && set.contains(&3));
        for _ in 0..100 {
            set.insert(3);
        }
        assert!(set.order.len() <= 5 && set.len() == 2);
        set.remove(&1);
        assert!(!set.contains(&1));
    }
}
