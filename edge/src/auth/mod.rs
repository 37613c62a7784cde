//! Who a session is: a token (from the `auth` frame or the handshake) → [`Principal`]; or, in dev auth only,
//! a bare `userId`. Also verifies per-conversation subscription tokens. The two kinds are told apart by
//! their required `typ` claim ([`TokenKind`]) and never accepted for each other.
//!
//! Tokens are secrets: nothing here logs them or puts them into errors.
//!
//! - [`jwt`]: `JwtConfig`, `KeySource`, `JwtVerifier` (pinned algorithms, claims, explicit clock).
//! - [`jwks`]: a JWKS key set refreshed in the background.
//! - [`fetcher`]: one GET of a JWKS document over http or https (rustls, pinned trust roots).

pub mod fetcher;
pub mod jwks;
pub mod jwt;

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crier_proto::user_id::validate_user_id;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::Serialize;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use self::jwt::{JwtConfig, JwtVerifier, KeySource, TokenKind, Verified};

/// How sessions prove who they are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthMode {
    /// A JWT from the `auth` frame or the handshake, verified per this config (boxed: it is large and
    /// read once, at startup).
    Jwt(Box<JwtConfig>),
    /// `{"action":"auth","userId":"<id>"}` is believed. `crier dev` and tests only.
    None,
}

/// An authenticated user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The user id (the configured user claim of the token).
    pub user_id: Arc<str>,
    /// `exp` of the connection token (seconds since the Unix epoch); `None` in dev auth.
    pub expires_at: Option<u64>,
    /// Conversations granted by the token's conversations claim, sorted.
    pub conversations: Box<[Box<str>]>,
}

impl Principal {
    /// Whether the token's conversations claim lists `conversation`.
    #[must_use]
    pub fn claims(&self, conversation: &str) -> bool {
        self.conversations.binary_search_by(|c| c.as_ref().cmp(conversation)).is_ok()
    }
}

/// Why authentication failed. Messages are safe to log: they never contain the token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No token where one is required.
    #[error("no token")]
    MissingToken,
    /// No `userId` in an `auth` frame of a dev-auth edge.
    #[error("no userId")]
    MissingUserId,
    /// The token names a key the JWKS does not (yet) have.
    #[error("unknown signing key")]
    UnknownKey,
    /// The token is malformed, badly signed, expired, or lacks a usable user claim.
    #[error("invalid token: {0}")]
    InvalidToken(String),
}

/// Checks tokens. Cheap to clone.
#[derive(Clone)]
pub struct Authenticator {
    inner: Arc<Inner>,
}

enum Inner {
    Jwt(Box<JwtVerifier>),
    None,
}

impl Authenticator {
    /// An authenticator for `mode`; `Err` when its config is unusable (see `EdgeConfig::problems`).
    pub fn new(mode: &AuthMode) -> Result<Self, String> {
        let inner = match mode {
            AuthMode::Jwt(config) => Inner::Jwt(Box::new(JwtVerifier::new(JwtConfig::clone(config))?)),
            AuthMode::None => Inner::None,
        };
        Ok(Self { inner: Arc::new(inner) })
    }

    /// Starts background work (JWKS refresh) on `tracker` until `shutdown`.
    pub fn start(&self, tracker: &TaskTracker, shutdown: &CancellationToken) {
        if let Inner::Jwt(verifier) = &*self.inner
            && let Some(jwks) = verifier.jwks()
        {
            tracker.spawn(Arc::clone(jwks).run(shutdown.clone()));
        }
    }

    /// Whether a bare `userId` is believed (dev auth).
    #[must_use]
    pub fn is_dev(&self) -> bool {
        matches!(&*self.inner, Inner::None)
    }

    /// The principal of an `auth` frame carrying `token` and/or `user_id`.
    pub async fn authenticate(
        &self,
        token: Option<&str>,
        user_id: Option<&str>,
    ) -> Result<Principal, AuthError> {
        match &*self.inner {
            Inner::Jwt(_) => {
                let verified = self.verify(token.ok_or(AuthError::MissingToken)?).await?;
                if verified.kind != TokenKind::Connection {
                    return Err(AuthError::InvalidToken("not a connection token".into()));
                }
                let mut conversations: Vec<Box<str>> =
                    verified.conversations.into_iter().map(String::into_boxed_str).collect();
                conversations.sort_unstable();
                conversations.dedup();
                Ok(Principal {
                    user_id: verified.user_id.into(),
                    expires_at: Some(verified.expires_at),
                    conversations: conversations.into_boxed_slice(),
                })
            }
            Inner::None => {
                let user_id = user_id.ok_or(AuthError::MissingUserId)?;
                validate_user_id(user_id).map_err(|reason| AuthError::InvalidToken(reason.into()))?;
                Ok(Principal { user_id: user_id.into(), expires_at: None, conversations: Box::new([]) })
            }
        }
    }

    /// Verifies `token` now; on an unknown JWKS key, waits for one refresh and tries again.
    pub async fn verify(&self, token: &str) -> Result<Verified, AuthError> {
        let Inner::Jwt(verifier) = &*self.inner else {
            return Err(AuthError::InvalidToken("tokens are not accepted in dev auth".into()));
        };
        match verifier.verify_at(token, unix_now()) {
            Err(AuthError::UnknownKey) => match verifier.jwks() {
                Some(jwks) => {
                    jwks.refreshed().await;
                    verifier.verify_at(token, unix_now())
                }
                None => Err(AuthError::UnknownKey),
            },
            other => other,
        }
    }

    /// Whether subscription `token` lets `user` subscribe to `conversation`.
    pub async fn subscription_allows(&self, token: &str, user: &str, conversation: &str) -> bool {
        match self.verify(token).await {
            Ok(v) if v.kind != TokenKind::Subscription => {
                tracing::debug!("subscription token refused: not a subscription token");
                false
            }
            Ok(v) => v.user_id == user && v.conversation.as_deref() == Some(conversation),
            Err(err) => {
                tracing::debug!(error = %err, "subscription token refused");
                false
            }
        }
    }
}

/// Seconds since the Unix epoch.
#[must_use]
pub fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

#[derive(Serialize)]
struct MintClaims<'a> {
    typ: &'static str,
    sub: &'a str,
    exp: u64,
    iat: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    conversation: Option<&'a str>,
}

/// Mints an HS256 token for `user_id` valid for `ttl` (`crier token`, tests): a connection token, or with
/// `conversation` a subscription token for it.
pub fn mint_hs256(
    secret: &str,
    user_id: &str,
    ttl: Duration,
    conversation: Option<&str>,
) -> Result<String, jsonwebtoken::errors::Error> {
    let now = unix_now();
    let kind = if conversation.is_some() { TokenKind::Subscription } else { TokenKind::Connection };
    let claims = MintClaims {
        typ: kind.claim(),
        sub: user_id,
        exp: now.saturating_add(ttl.as_secs()),
        iat: now,
        conversation,
    };
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
}

#[cfg(test)]
mod tests;
