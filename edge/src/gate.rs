//! The edge's access gate: runs [`acl::decide`] for a subscribe, asking the access store only when claims
//! and subscription tokens say no, and caching positive store answers. The revocation listener invalidates
//! the cache entry of every revoked grant (and the whole cache when the feed lost revocations), so a revoke
//! is never answered from a stale cache.
//!
//! Only grants are cached: a denial is always re-asked, so a fresh `Grant` takes effect at once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use crier_store::access::AccessStore;
use tokio::time::Instant;

use crate::acl::{self, Decision, Evidence};
use crate::auth::{Authenticator, Principal};
use crate::config::AclMode;

/// How long a cached grant is trusted even without a revocation (a safety net for lost feeds).
const GRANT_TTL: Duration = Duration::from_secs(60);
/// Cached grants per edge; the cache starts over when full.
const MAX_CACHED: usize = 100_000;

/// (user, conversation) → when the store said yes.
type GrantCache = HashMap<(Arc<str>, Box<str>), Instant>;

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

/// Access decisions of one edge.
pub struct Gate {
    mode: AclMode,
    store: Arc<dyn AccessStore>,
    auth: Authenticator,
    // Bound: MAX_CACHED entries (the cache starts over when full), each trusted for GRANT_TTL at most.
    granted: Mutex<GrantCache>,
}

impl Gate {
    /// A gate for `mode` over `store`; subscription tokens are verified by `auth`.
    #[must_use]
    pub fn new(mode: AclMode, store: Arc<dyn AccessStore>, auth: Authenticator) -> Self {
        Self { mode, store, auth, granted: Mutex::default() }
    }

    /// Whether revocations should kick subscriptions (not under `--acl open`).
    #[must_use]
    pub fn enforces(&self) -> bool {
        self.mode == AclMode::Checked
    }

    fn cache(&self) -> MutexGuard<'_, GrantCache> {
        self.granted.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// May `principal` subscribe to `conversation`, optionally with a subscription `token`?
    pub async fn check(&self, principal: &Principal, conversation: &str, token: Option<&str>) -> Verdict {
        let user = &principal.user_id;
        let subscription_token = match token {
            Some(token) if self.mode == AclMode::Checked => {
                self.auth.subscription_allows(token, user, conversation).await
            }
            _ => false,
        };
        let mut evidence =
            Evidence { claimed: principal.claims(conversation), subscription_token, granted: None };
        if acl::decide(self.mode, evidence) == Decision::NeedGrant {
            evidence.granted = Some(match self.cached(user, conversation) {
                true => true,
                false => match self.store.check(conversation, user).await {
                    Ok(granted) => {
                        if granted {
                            self.remember(user, conversation);
                        }
                        granted
                    }
                    Err(err) => {
                        tracing::warn!(error = %err, "access check failed");
                        return Verdict::Unavailable;
                    }
                },
            });
        }
        match acl::decide(self.mode, evidence) {
            Decision::Allow(_) => Verdict::Allowed,
            Decision::NeedGrant | Decision::Deny => Verdict::Denied,
        }
    }

    fn cached(&self, user: &Arc<str>, conversation: &str) -> bool {
        let key = (Arc::clone(user), Box::from(conversation));
        self.cache().get(&key).is_some_and(|at| at.elapsed() < GRANT_TTL)
    }

    fn remember(&self, user: &Arc<str>, conversation: &str) {
        let mut cache = self.cache();
        if cache.len() >= MAX_CACHED {
            cache.clear();
        }
        cache.insert((Arc::clone(user), conversation.into()), Instant::now());
    }

    /// Forgets the cached grant of `user` to `conversation`.
    pub fn forget(&self, user: &str, conversation: &str) {
        self.cache().remove(&(Arc::from(user), Box::from(conversation)));
    }

    /// Forgets every cached grant.
    pub fn forget_all(&self) {
        self.cache().clear();
    }
}
