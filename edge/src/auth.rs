//! Who a session is: the `auth` frame → [`Principal`]. HS256 JWTs signed with the configured secret, or, in
//! dev auth only, a bare `userId`.
//!
//! Tokens are secrets: nothing here logs them or puts them into errors.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::config::AuthMode;

/// An authenticated user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The user id (`sub` of the token).
    pub user_id: Arc<str>,
}

/// Why authentication failed. Messages are safe to log: they never contain the token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No token in an `auth` frame of a JWT-mode edge.
    #[error("no token")]
    MissingToken,
    /// No `userId` in an `auth` frame of a dev-auth edge.
    #[error("no userId")]
    MissingUserId,
    /// The token is malformed, badly signed, expired, or lacks a usable `sub`.
    #[error("invalid token: {0}")]
    InvalidToken(String),
}

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: String,
    exp: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    iat: Option<u64>,
}

/// Checks `auth` frames.
#[derive(Clone)]
pub struct Authenticator {
    inner: Arc<Inner>,
}

enum Inner {
    Jwt { key: Box<DecodingKey>, validation: Box<Validation> },
    None,
}

impl Authenticator {
    /// An authenticator for `mode`.
    #[must_use]
    pub fn new(mode: &AuthMode) -> Self {
        let inner = match mode {
            AuthMode::Jwt { secret } => {
                let mut validation = Validation::new(Algorithm::HS256);
                validation.leeway = 5;
                validation.set_required_spec_claims(&["exp", "sub"]);
                Inner::Jwt {
                    key: Box::new(DecodingKey::from_secret(secret.as_bytes())),
                    validation: Box::new(validation),
                }
            }
            AuthMode::None => Inner::None,
        };
        Self { inner: Arc::new(inner) }
    }

    /// The principal of an `auth` frame carrying `token` and/or `user_id`.
    pub fn authenticate(&self, token: Option<&str>, user_id: Option<&str>) -> Result<Principal, AuthError> {
        let user_id = match &*self.inner {
            Inner::Jwt { key, validation } => {
                let token = token.ok_or(AuthError::MissingToken)?;
                let data = jsonwebtoken::decode::<Claims>(token, key, validation)
                    .map_err(|e| AuthError::InvalidToken(e.kind_description()))?;
                data.claims.sub
            }
            Inner::None => user_id.ok_or(AuthError::MissingUserId)?.to_owned(),
        };
        if user_id.is_empty() || user_id.len() > 256 {
            return Err(AuthError::InvalidToken("user id must be 1..=256 bytes".into()));
        }
        Ok(Principal { user_id: user_id.into() })
    }
}

/// Describes a jsonwebtoken error without echoing any input.
trait KindDescription {
    fn kind_description(&self) -> String;
}

impl KindDescription for jsonwebtoken::errors::Error {
    fn kind_description(&self) -> String {
        use jsonwebtoken::errors::ErrorKind;
        match self.kind() {
            ErrorKind::ExpiredSignature => "expired".into(),
            ErrorKind::InvalidSignature => "bad signature".into(),
            ErrorKind::InvalidAlgorithm => "algorithm not allowed".into(),
            ErrorKind::ImmatureSignature => "not yet valid".into(),
            ErrorKind::MissingRequiredClaim(claim) => format!("missing claim {claim}"),
            _ => "malformed".into(),
        }
    }
}

/// Mints an HS256 token for `user_id` valid for `ttl` (`crier token`, tests).
pub fn mint_hs256(secret: &str, user_id: &str, ttl: Duration) -> Result<String, jsonwebtoken::errors::Error> {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let claims = Claims { sub: user_id.to_owned(), exp: now + ttl.as_secs(), iat: Some(now) };
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "test-secret-0123456789";

    fn jwt() -> Authenticator {
        Authenticator::new(&AuthMode::Jwt { secret: SECRET.into() })
    }

    /// A token minted with the edge's secret authenticates its `sub`.
    #[test]
    fn valid_token_yields_its_subject() {
        let token = mint_hs256(SECRET, "u1", Duration::from_secs(60)).unwrap();
        assert_eq!(jwt().authenticate(Some(&token), None).unwrap().user_id.as_ref(), "u1");
    }

    /// Wrong key, expiry and a missing token are refused, and the errors never contain the token.
    #[test]
    fn bad_tokens_are_refused_without_echo() {
        let wrong = mint_hs256("another-secret-0123456789", "u1", Duration::from_secs(60)).unwrap();
        let err = jwt().authenticate(Some(&wrong), None).unwrap_err();
        assert_eq!(err, AuthError::InvalidToken("bad signature".into()));
        assert!(!err.to_string().contains(&wrong));
        let expired = {
            let claims = Claims { sub: "u1".into(), exp: 1_000, iat: None };
            jsonwebtoken::encode(&Header::default(), &claims, &EncodingKey::from_secret(SECRET.as_bytes()))
                .unwrap()
        };
        assert_eq!(jwt().authenticate(Some(&expired), None), Err(AuthError::InvalidToken("expired".into())));
        assert_eq!(jwt().authenticate(None, Some("u1")), Err(AuthError::MissingToken));
    }

    /// Dev auth believes `userId` and ignores tokens.
    #[test]
    fn dev_auth_takes_user_id() {
        let dev = Authenticator::new(&AuthMode::None);
        assert_eq!(dev.authenticate(None, Some("u9")).unwrap().user_id.as_ref(), "u9");
        assert_eq!(dev.authenticate(Some("t"), None), Err(AuthError::MissingUserId));
    }
}
