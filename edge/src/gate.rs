//! The edge's access gate: runs [`acl::decide`] for a subscribe, asking the access store only when claims
//! and subscription tokens say no, and caching the store's answers. It also remembers revocations.
//!
//! Invariants:
//! - A revoke is never answered from a stale cache: the change listener forgets the cached grant, and a
//!   store lookup that started before any change is not cached after it (a generation, bumped by every
//!   change, must be the same before the lookup and when its answer would be cached).
//! - A revocation outlives every token that could bring the access back: while the edge remembers a revoked
//!   (user, conversation) — for the longest token lifetime it accepts, plus leeway — neither the
//!   conversations claim nor a subscription token allows it; only the store can (a later `Grant`, which
//!   also ends the memory).
//! - Denials are cached briefly ([`DENIAL_TTL`]) and forgotten on `Grant`, so a flood of refused subscribes
//!   does not become a flood of store lookups.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use crier_store::access::{AccessError, AccessStore};

use crate::acl::{self, Decision, Evidence};
use crate::auth::{Authenticator, Principal};
use crate::config::AclMode;
use crate::expiring::ExpiringSet;

/// How long a cached grant is trusted even without a revocation (a safety net for lost feeds).
const GRANT_TTL: Duration = Duration::from_secs(60);
/// How long a cached denial stands unless a `Grant` ends it first.
pub const DENIAL_TTL: Duration = Duration::from_secs(5);
/// Bound of each cache (grants, denials): entries per edge, the oldest evicted first (~100 bytes each).
const MAX_CACHED: usize = 100_000;
/// Bound of the revocation memory: entries per edge (~100 bytes each, ~10 MB at most). Past it the oldest
/// revocation is forgotten, with a warning: a deployment revoking faster than that per token lifetime
/// needs shorter tokens.
pub const MAX_REVOKED: usize = 100_000;

/// (user, conversation).
type Key = (Arc<str>, Arc<str>);

/// The answer to a subscribe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Subscribe.
    Allowed,
    /// "Access denied to conversation".
    Denied,
    /// The access store could not answer.
    Unavailable,
}

/// The store's cached answers.
struct Caches {
    /// Bumped by every grant, revocation and resync: an answer fetched under an older generation may be
    /// stale and is not cached.
    generation: u64,
    granted: ExpiringSet<Key>,
    denied: ExpiringSet<Key>,
}

/// Access decisions of one edge.
pub struct Gate {
    mode: AclMode,
    store: Arc<dyn AccessStore>,
    auth: Authenticator,
    // Bound: see `Caches` (each cache capped, oldest evicted first).
    caches: Mutex<Caches>,
    /// Revoked (user, conversation) pairs, for `remember_revocations` each. Bound: its set's capacity.
    revoked: Mutex<ExpiringSet<Key>>,
}

impl Gate {
    /// A gate for `mode` over `store`; subscription tokens are verified by `auth`; revocations are
    /// remembered for `remember_revocations`.
    #[must_use]
    pub fn new(
        mode: AclMode,
        store: Arc<dyn AccessStore>,
        auth: Authenticator,
        remember_revocations: Duration,
    ) -> Self {
        let caches = Caches {
            generation: 0,
            granted: ExpiringSet::new(GRANT_TTL, MAX_CACHED),
            denied: ExpiringSet::new(DENIAL_TTL, MAX_CACHED),
        };
        let revoked = ExpiringSet::new(remember_revocations, MAX_REVOKED);
        Self { mode, store, auth, caches: Mutex::new(caches), revoked: Mutex::new(revoked) }
    }

    /// Whether revocations should kick subscriptions (not under `--acl open`).
    #[must_use]
    pub fn enforces(&self) -> bool {
        self.mode == AclMode::Checked
    }

    fn caches(&self) -> MutexGuard<'_, Caches> {
        self.caches.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn revoked(&self) -> MutexGuard<'_, ExpiringSet<Key>> {
        self.revoked.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// May `principal` subscribe to `conversation`, optionally with a subscription `token`?
    pub async fn check(&self, principal: &Principal, conversation: &str, token: Option<&str>) -> Verdict {
        if self.mode == AclMode::Open {
            return Verdict::Allowed;
        }
        let key: Key = (Arc::clone(&principal.user_id), conversation.into());
        let revoked = self.revoked().contains(&key);
        let subscription_token = match token {
            Some(token) if !revoked => self.auth.subscription_allows(token, &key.0, conversation).await,
            _ => false,
        };
        let claimed = !revoked && principal.claims(conversation);
        let mut evidence = Evidence { claimed, subscription_token, granted: None };
        if acl::decide(self.mode, evidence) == Decision::NeedGrant {
            match self.granted(&key).await {
                Ok(granted) => evidence.granted = Some(granted),
                Err(err) => {
                    tracing::warn!(error = %err, "access check failed");
                    return Verdict::Unavailable;
                }
            }
        }
        match acl::decide(self.mode, evidence) {
            Decision::Allow(_) => Verdict::Allowed,
            Decision::NeedGrant | Decision::Deny => Verdict::Denied,
        }
    }

    /// The store's answer for `key`, cached; an answer is cached only if no change arrived meanwhile.
    async fn granted(&self, key: &Key) -> Result<bool, AccessError> {
        let generation = {
            let caches = self.caches();
            if caches.granted.contains(key) {
                return Ok(true);
            }
            if caches.denied.contains(key) {
                return Ok(false);
            }
            caches.generation
        };
        let granted = self.store.check(&key.1, &key.0).await?;
        let mut caches = self.caches();
        if caches.generation == generation {
            let cache = if granted { &mut caches.granted } else { &mut caches.denied };
            cache.insert(key.clone());
        }
        Ok(granted)
    }

    /// `user` lost `conversation`: forget the cached grant and remember the revocation.
    pub fn revoked_access(&self, user: &str, conversation: &str) {
        let key: Key = (user.into(), conversation.into());
        {
            let mut caches = self.caches();
            caches.generation += 1;
            caches.granted.remove(&key);
        }
        if self.revoked().insert(key) {
            tracing::warn!(bound = MAX_REVOKED, "revocation memory full; forgot the oldest revocation");
        }
    }

    /// `user` was granted `conversation`: forget the cached denial and the revocation.
    pub fn granted_access(&self, user: &str, conversation: &str) {
        let key: Key = (user.into(), conversation.into());
        {
            let mut caches = self.caches();
            caches.generation += 1;
            caches.denied.remove(&key);
        }
        self.revoked().remove(&key);
    }

    /// Forgets every cached answer (the change feed lost changes). Remembered revocations stay.
    pub fn forget_all(&self) {
        let mut caches = self.caches();
        caches.generation += 1;
        caches.granted.clear();
        caches.denied.clear();
    }
}

#[cfg(test)]
mod tests;
