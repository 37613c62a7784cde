//! The access store: which users are granted which conversations (DESIGN.md §3), and the feed of grants
//! and revocations every edge follows to kick live subscriptions, remember revocations and keep its caches
//! true.
//!
//! Two implementations of one trait: [`RedisAccessStore`] (production: a set per conversation and the
//! control stream `crier_proto::keys::CONTROL_STREAM`) and [`MemoryAccessStore`] (`crier dev`, tests). The
//! store knows nothing about tokens or claims: those are the edge's.

mod memory;
mod redis;

use std::time::Duration;

use async_trait::async_trait;

pub use self::memory::MemoryAccessStore;
pub use self::redis::RedisAccessStore;

/// What happened to a (user, conversation) pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    /// `Revoke`: the user must not watch the conversation now, whatever source allowed it.
    Revoked,
    /// `Grant`: the user may watch it again.
    Granted,
}

/// One grant or revocation, as carried to the edges.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessChange {
    /// Granted or revoked.
    pub kind: ChangeKind,
    /// The conversation.
    pub conversation: String,
    /// The user.
    pub user: String,
}

impl AccessChange {
    /// A revocation of `user`'s access to `conversation`.
    #[must_use]
    pub fn revoked(conversation: &str, user: &str) -> Self {
        Self { kind: ChangeKind::Revoked, conversation: conversation.to_owned(), user: user.to_owned() }
    }

    /// A grant of `conversation` to `user`.
    #[must_use]
    pub fn granted(conversation: &str, user: &str) -> Self {
        Self { kind: ChangeKind::Granted, conversation: conversation.to_owned(), user: user.to_owned() }
    }
}

/// What one read of a feed brought.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChangeBatch {
    /// The changes, in the order they were made.
    pub changes: Vec<AccessChange>,
    /// Changes were lost before this read (trimmed from the stream, or a lagging in-memory feed): callers
    /// must forget every cached decision.
    pub lagged: bool,
}

/// Why an access-store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    /// The store could not be reached; nothing changed as far as crier can tell.
    #[error("access store unavailable: {0}")]
    Unavailable(#[source] ::redis::RedisError),
    /// The store answered something crier did not write.
    #[error("unexpected access store reply: {0}")]
    Protocol(String),
    /// An access-change feed fell behind and lost changes; callers must forget every cached decision.
    #[error("access-change feed lagged behind")]
    Lagged,
}

/// Grants, checks and revocations.
#[async_trait]
pub trait AccessStore: Send + Sync + 'static {
    /// Grants `user` the `conversation` (idempotent) and announces the grant on the feed.
    async fn grant(&self, conversation: &str, user: &str) -> Result<(), AccessError>;

    /// Removes the grant (idempotent) and announces the revocation on the feed, even when no grant
    /// existed: the user may hold the conversation through a claim or subscription token, and a revoke
    /// says they must not watch it now.
    async fn revoke(&self, conversation: &str, user: &str) -> Result<(), AccessError>;

    /// Whether `user` is granted `conversation`.
    async fn check(&self, conversation: &str, user: &str) -> Result<bool, AccessError>;

    /// The users granted `conversation`, sorted.
    async fn list_grants(&self, conversation: &str) -> Result<Vec<String>, AccessError>;

    /// A feed of the grants and revocations made from `replay` ago on (as far as the store still holds
    /// them: the Redis control stream keeps its last ~10,000 changes; the memory store replays nothing).
    async fn changes(&self, replay: Duration) -> Result<Box<dyn ChangeFeed>, AccessError>;
}

/// Grants and revocations in the order they were made. Owned by one task.
#[async_trait]
pub trait ChangeFeed: Send {
    /// The next changes; waits a few seconds at most and may return an empty batch. After an error the
    /// feed may be polled again: it resumes where it stopped.
    async fn next_batch(&mut self) -> Result<ChangeBatch, AccessError>;
}
