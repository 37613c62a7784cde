//! JWTs for tests, minted with `jsonwebtoken` (HS256) independently of the edge's verification code, so a
//! token bug on either side cannot hide behind shared code.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

/// The `typ` claim of connection tokens.
pub const CONNECTION_TYP: &str = "crier-connection";
/// The `typ` claim of subscription tokens.
pub const SUBSCRIPTION_TYP: &str = "crier-subscription";

/// An HS256 connection token for `user` (`sub`), issued now (`iat`) and expiring after `ttl` (`exp`).
pub fn mint_token(secret: &str, user: &str, ttl: Duration) -> anyhow::Result<String> {
    let now = unix_now();
    mint_claims(
        secret,
        &json!({ "typ": CONNECTION_TYP, "sub": user, "iat": now, "exp": now + ttl.as_secs() }),
    )
}

/// An HS256 subscription token letting `user` subscribe to `conversation` for `ttl`.
pub fn mint_subscription_token(
    secret: &str,
    user: &str,
    conversation: &str,
    ttl: Duration,
) -> anyhow::Result<String> {
    let now = unix_now();
    let exp = now + ttl.as_secs();
    mint_claims(
        secret,
        &json!({ "typ": SUBSCRIPTION_TYP, "sub": user, "conversation": conversation, "exp": exp }),
    )
}

/// An HS256 token with exactly `claims` (for expired tokens, extra claims such as `conversations`, or
/// missing ones; a valid one needs `typ`).
pub fn mint_claims(secret: &str, claims: &Value) -> anyhow::Result<String> {
    jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &EncodingKey::from_secret(secret.as_bytes()))
        .context("signing a test JWT")
}

/// Seconds since the Unix epoch, for building `iat`/`exp`/`nbf` claims.
#[must_use]
pub fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{DecodingKey, Validation};

    /// A minted token verifies with the same secret and carries sub, iat and exp.
    #[test]
    fn minted_token_verifies_with_its_secret() {
        let token = mint_token("0123456789abcdef", "u1", Duration::from_secs(60)).unwrap();
        let key = DecodingKey::from_secret(b"0123456789abcdef");
        let data = jsonwebtoken::decode::<Value>(&token, &key, &Validation::new(Algorithm::HS256)).unwrap();
        assert_eq!(data.claims["sub"], "u1");
        let (iat, exp) = (data.claims["iat"].as_u64().unwrap(), data.claims["exp"].as_u64().unwrap());
        assert_eq!(exp - iat, 60);
    }
}
