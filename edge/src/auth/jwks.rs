//! A JWKS key set fetched over HTTP or HTTPS (see [`Fetcher`]) and refreshed in the background: every
//! `refresh`, and early when a token names a `kid` the set lacks (key rotation), but never more than once per
//! `min_refresh`, so a flood of tokens with random `kid`s cannot turn the edge into a fetch amplifier.
//!
//! A failed fetch keeps the previous keys (none before the first success): tokens are then refused as
//! signed by an unknown key, and the edge keeps serving everyone else.

use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey};
use tokio::sync::{Notify, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::AuthError;
use super::fetcher::Fetcher;

/// Bound on one fetch.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a token with an unknown `kid` waits for a refresh before it is refused.
const UNKNOWN_KID_WAIT: Duration = Duration::from_secs(2);

/// The current key set and its refresher.
pub struct Jwks {
    fetcher: Fetcher,
    refresh: Duration,
    min_refresh: Duration,
    // Bound: replaced whole by each fetch, whose body is capped at MAX_JWKS_BYTES (1 MiB); unknown `kid`s
    // are not remembered: such a token waits ≤ UNKNOWN_KID_WAIT for one refresh (≤ 1 per min_refresh).
    keys: RwLock<Arc<JwkSet>>,
    /// Asks the refresher for an early fetch.
    wanted: Notify,
    /// Counts completed fetch attempts, so waiters know one happened.
    fetched: watch::Sender<u64>,
}

impl Jwks {
    /// An empty key set fetched by `fetcher`; keys arrive once [`run`](Self::run) has fetched them.
    #[must_use]
    pub fn new(fetcher: Fetcher, refresh: Duration, min_refresh: Duration) -> Self {
        Self {
            fetcher,
            refresh,
            min_refresh,
            keys: RwLock::new(Arc::new(JwkSet { keys: Vec::new() })),
            wanted: Notify::new(),
            fetched: watch::Sender::new(0),
        }
    }

    /// The key for a token with `kid` and `alg`: by `kid`, or the only key when the token names none.
    pub fn key_for(&self, kid: Option<&str>, alg: Algorithm) -> Result<DecodingKey, AuthError> {
        let set = Arc::clone(&self.keys.read().unwrap_or_else(PoisonError::into_inner));
        let jwk = match kid {
            Some(kid) => set.find(kid),
            None if set.keys.len() == 1 => set.keys.first(),
            None => None,
        };
        let jwk = jwk.ok_or(AuthError::UnknownKey)?;
        if let Some(key_alg) = jwk.common.key_algorithm
            && Algorithm::try_from(key_alg).ok() != Some(alg)
        {
            return Err(AuthError::InvalidToken("key does not match algorithm".into()));
        }
        DecodingKey::from_jwk(jwk).map_err(|_| AuthError::InvalidToken("unusable key".into()))
    }

    /// Asks for an early refresh and waits (briefly) for the next fetch to finish.
    pub async fn refreshed(&self) {
        let mut fetched = self.fetched.subscribe();
        fetched.mark_unchanged();
        self.wanted.notify_one();
        let _ = tokio::time::timeout(UNKNOWN_KID_WAIT, fetched.changed()).await;
    }

    /// Fetches the key set now and then until `shutdown`.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        loop {
            let started = Instant::now();
            let url = self.fetcher.url();
            match tokio::time::timeout(FETCH_TIMEOUT, self.fetcher.fetch()).await {
                Ok(Ok(set)) => {
                    tracing::debug!(keys = set.keys.len(), %url, "JWKS refreshed");
                    *self.keys.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(set);
                }
                Ok(Err(err)) => tracing::warn!(%url, error = %err, "JWKS fetch failed"),
                Err(_) => tracing::warn!(%url, "JWKS fetch timed out"),
            }
            self.fetched.send_modify(|n| *n += 1);
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(self.refresh) => {}
                () = self.wanted.notified() => {
                    tokio::select! {
                        () = shutdown.cancelled() => return,
                        () = tokio::time::sleep_until(started + self.min_refresh) => {}
                    }
                }
            }
        }
    }
}
