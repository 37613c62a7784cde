use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use crier_store::access::{ChangeFeed, MemoryAccessStore};
use tokio::sync::Notify;

use super::*;
use crate::auth::AuthMode;

/// The memory store, whose `check` can be held after it read its answer, until released.
#[derive(Default)]
struct HeldStore {
    inner: MemoryAccessStore,
    hold: AtomicBool,
    looked_up: Notify,
    release: Notify,
}

#[async_trait]
impl AccessStore for HeldStore {
    async fn grant(&self, conversation: &str, user: &str) -> Result<(), AccessError> {
        self.inner.grant(conversation, user).await
    }
    async fn revoke(&self, conversation: &str, user: &str) -> Result<(), AccessError> {
        self.inner.revoke(conversation, user).await
    }
    async fn check(&self, conversation: &str, user: &str) -> Result<bool, AccessError> {
        let answer = self.inner.check(conversation, user).await;
        if self.hold.swap(false, Ordering::SeqCst) {
            self.looked_up.notify_one();
            self.release.notified().await;
        }
        answer
    }
    async fn list_grants(&self, conversation: &str) -> Result<Vec<String>, AccessError> {
        self.inner.list_grants(conversation).await
    }
    async fn changes(&self, replay: Duration) -> Result<Box<dyn ChangeFeed>, AccessError> {
        self.inner.changes(replay).await
    }
}

fn gate(store: &Arc<HeldStore>) -> Arc<Gate> {
    let auth = Authenticator::new(&AuthMode::None).unwrap();
    let store: Arc<dyn AccessStore> = Arc::clone(store) as _;
    Arc::new(Gate::new(AclMode::Checked, store, auth, Duration::from_secs(3_600)))
}

fn principal(user: &str, claims: &[&str]) -> Principal {
    let conversations = claims.iter().map(|&c| Box::from(c)).collect();
    Principal { user_id: user.into(), expires_at: None, conversations }
}

/// A store lookup that read "granted" before a revoke, and finishes after the listener applied it, is
/// answered but not cached: the next check asks the store again and is denied.
#[tokio::test]
async fn lookup_started_before_a_revoke_is_never_cached_after_it() {
    let store = Arc::new(HeldStore::default());
    store.grant("c1", "u1").await.unwrap();
    let gate = gate(&store);
    store.hold.store(true, Ordering::SeqCst);
    let early = tokio::spawn({
        let gate = Arc::clone(&gate);
        async move { gate.check(&principal("u1", &[]), "c1", None).await }
    });
    store.looked_up.notified().await;
    store.revoke("c1", "u1").await.unwrap();
    gate.revoked_access("u1", "c1");
    store.release.notify_one();
    assert_eq!(early.await.unwrap(), Verdict::Allowed, "answered as of when it asked");
    assert_eq!(gate.check(&principal("u1", &[]), "c1", None).await, Verdict::Denied);
}

/// A revocation outweighs the conversations claim until a grant; the grant then allows by the store and
/// by the claim again.
#[tokio::test]
async fn revocation_outweighs_the_claim_until_a_grant() {
    let store = Arc::new(HeldStore::default());
    let gate = gate(&store);
    let claiming = principal("u1", &["c1"]);
    assert_eq!(gate.check(&claiming, "c1", None).await, Verdict::Allowed);
    gate.revoked_access("u1", "c1");
    assert_eq!(gate.check(&claiming, "c1", None).await, Verdict::Denied);
    assert_eq!(gate.check(&principal("u2", &["c1"]), "c1", None).await, Verdict::Allowed, "others keep it");
    gate.granted_access("u1", "c1");
    assert_eq!(gate.check(&claiming, "c1", None).await, Verdict::Allowed);
}

/// A denial is cached (the store is not asked again) until a grant arrives.
#[tokio::test]
async fn denial_is_cached_until_a_grant() {
    let store = Arc::new(HeldStore::default());
    let gate = gate(&store);
    let user = principal("u1", &[]);
    assert_eq!(gate.check(&user, "c1", None).await, Verdict::Denied);
    store.inner.grant("c1", "u1").await.unwrap();
    assert_eq!(gate.check(&user, "c1", None).await, Verdict::Denied, "cached denial");
    gate.granted_access("u1", "c1");
    assert_eq!(gate.check(&user, "c1", None).await, Verdict::Allowed);
}
