//! The access store: which users are granted which conversations (DESIGN.md §3), and the feed of
//! revocations every edge follows to kick live subscriptions.
//!
//! Two implementations of one trait: [`RedisAccessStore`] (production: a set per conversation and the
//! control stream `crier_proto::keys::CONTROL_STREAM`) and [`MemoryAccessStore`] (`crier dev`, tests). The
//! store knows nothing about tokens or claims: those are the edge's.

mod memory;
mod redis;

use async_trait::async_trait;

pub use self::memory::MemoryAccessStore;
pub use self::redis::RedisAccessStore;

/// One revoked grant, as carried to the edges.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revocation {
    /// The conversation.
    pub conversation: String,
    /// The user who lost it.
    pub user: String,
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
    /// A revocation feed fell behind and lost revocations; callers must forget every cached decision.
    #[error("revocation feed lagged behind")]
    Lagged,
}

/// Grants, checks and revocations.
#[async_trait]
pub trait AccessStore: Send + Sync + 'static {
    /// Grants `user` the `conversation` (idempotent).
    async fn grant(&self, conversation: &str, user: &str) -> Result<(), AccessError>;

    /// Removes the grant (idempotent) and announces the revocation on the feed, even when no grant
    /// existed: the user may hold the conversation through a claim or subscription token, and a revoke
    /// says they must not watch it now.
    async fn revoke(&self, conversation: &str, user: &str) -> Result<(), AccessError>;

    /// Whether `user` is granted `conversation`.
    async fn check(&self, conversation: &str, user: &str) -> Result<bool, AccessError>;

    /// The users granted `conversation`, sorted.
    async fn list_grants(&self, conversation: &str) -> Result<Vec<String>, AccessError>;

    /// A feed of the revocations made from now on.
    async fn revocations(&self) -> Result<Box<dyn RevocationFeed>, AccessError>;
}

/// Revocations in the order they were made. Owned by one task.
#[async_trait]
pub trait RevocationFeed: Send {
    /// The next revocations; waits a few seconds at most and may return an empty batch. After an error
    /// the feed may be polled again: it resumes where it stopped.
    async fn next_batch(&mut self) -> Result<Vec<Revocation>, AccessError>;
}
