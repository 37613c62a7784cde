//! The in-memory access store of `crier dev` and tests: a map of sets and a broadcast channel of changes.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::broadcast;

use super::{AccessChange, AccessError, AccessStore, ChangeBatch, ChangeFeed};

/// Changes buffered per feed before it counts as lagging.
const FEED_CAPACITY: usize = 4096;
/// How long one `next_batch` waits for a change.
const FEED_WAIT: Duration = Duration::from_secs(5);

/// An [`AccessStore`] in process memory.
pub struct MemoryAccessStore {
    // Bound: the grants operators made and did not revoke (operator data, not traffic).
    grants: Mutex<HashMap<String, BTreeSet<String>>>,
    // Bound: FEED_CAPACITY changes; a lagging feed is told so (edges then forget cached answers).
    changes: broadcast::Sender<AccessChange>,
}

impl Default for MemoryAccessStore {
    fn default() -> Self {
        Self { grants: Mutex::default(), changes: broadcast::Sender::new(FEED_CAPACITY) }
    }
}

impl MemoryAccessStore {
    /// An empty store.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    fn grants(&self) -> MutexGuard<'_, HashMap<String, BTreeSet<String>>> {
        self.grants.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[async_trait]
impl AccessStore for MemoryAccessStore {
    async fn grant(&self, conversation: &str, user: &str) -> Result<(), AccessError> {
        self.grants().entry(conversation.to_owned()).or_default().insert(user.to_owned());
        // No feed listening is fine: no edge then.
        let _ = self.changes.send(AccessChange::granted(conversation, user));
        Ok(())
    }

    async fn revoke(&self, conversation: &str, user: &str) -> Result<(), AccessError> {
        let mut grants = self.grants();
        if let Some(users) = grants.get_mut(conversation) {
            users.remove(user);
            if users.is_empty() {
                grants.remove(conversation);
            }
        }
        drop(grants);
        // No feed listening is fine: nobody can be subscribed then.
        let _ = self.changes.send(AccessChange::revoked(conversation, user));
        Ok(())
    }

    async fn check(&self, conversation: &str, user: &str) -> Result<bool, AccessError> {
        Ok(self.grants().get(conversation).is_some_and(|users| users.contains(user)))
    }

    async fn list_grants(&self, conversation: &str) -> Result<Vec<String>, AccessError> {
        Ok(self.grants().get(conversation).map(|users| users.iter().cloned().collect()).unwrap_or_default())
    }

    async fn changes(&self, _replay: Duration) -> Result<Box<dyn ChangeFeed>, AccessError> {
        Ok(Box::new(MemoryFeed { rx: self.changes.subscribe() }))
    }
}

struct MemoryFeed {
    rx: broadcast::Receiver<AccessChange>,
}

#[async_trait]
impl ChangeFeed for MemoryFeed {
    async fn next_batch(&mut self) -> Result<ChangeBatch, AccessError> {
        let mut batch = ChangeBatch::default();
        match tokio::time::timeout(FEED_WAIT, self.rx.recv()).await {
            Err(_) | Ok(Err(broadcast::error::RecvError::Closed)) => return Ok(batch),
            Ok(Err(broadcast::error::RecvError::Lagged(_))) => batch.lagged = true,
            Ok(Ok(first)) => batch.changes.push(first),
        }
        loop {
            match self.rx.try_recv() {
                Ok(next) => batch.changes.push(next),
                Err(broadcast::error::TryRecvError::Lagged(_)) => batch.lagged = true,
                Err(_) => return Ok(batch),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Grant, check, list and revoke behave as a set; grants and revocations reach a feed opened before them.
    #[tokio::test]
    async fn grants_and_revocations() {
        let store = MemoryAccessStore::new();
        let mut feed = store.changes(Duration::ZERO).await.unwrap();
        store.grant("c1", "u2").await.unwrap();
        store.grant("c1", "u1").await.unwrap();
        assert!(store.check("c1", "u1").await.unwrap());
        assert_eq!(store.list_grants("c1").await.unwrap(), ["u1", "u2"]);
        store.revoke("c1", "u1").await.unwrap();
        assert!(!store.check("c1", "u1").await.unwrap());
        let batch = feed.next_batch().await.unwrap();
        let expected = [("c1", "u2"), ("c1", "u1")].map(|(c, u)| AccessChange::granted(c, u));
        assert_eq!(batch.changes[..2], expected);
        assert_eq!(batch.changes[2..], [AccessChange::revoked("c1", "u1")]);
        assert!(!batch.lagged);
    }
}
