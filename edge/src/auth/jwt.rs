//! JWT verification: pinned algorithms, keys from a secret, a PEM or a JWKS, and claim checks against an
//! explicit clock (`now`), so tests pin time instead of sleeping.
//!
//! Time claims are checked here rather than by jsonwebtoken so that one `now` governs `exp` and `nbf`:
//! `exp` is required, `nbf` is honoured when present, both with the configured leeway. `iss` and `aud` are
//! enforced (and required) only when configured. `alg:none` never parses (jsonwebtoken has no such
//! algorithm), and a token whose `alg` is not in the pinned list, or whose key family differs from its
//! `alg` (an HS token "signed" with an RSA public key), is refused before any signature check.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crier_proto::user_id::validate_user_id;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};

use super::AuthError;
use super::fetcher::{self, Fetcher};
use super::jwks::Jwks;

/// Where verification keys come from. `Debug` never prints key material.
#[derive(Clone, PartialEq, Eq)]
pub enum KeySource {
    /// An HMAC secret (HS256/384/512).
    Secret(String),
    /// A PEM public key (RSA, EC or Ed25519), as read from the configured file.
    Pem(Vec<u8>),
    /// A JWKS document at `url`, refetched every `refresh` and on an unknown `kid`, at most once per
    /// `min_refresh`.
    Jwks {
        /// `https://` (or `http://`) URL of the key set.
        url: String,
        /// PEM CA bundle trusted for an `https://` URL instead of the public roots (an internal CA).
        ca_pem: Option<Vec<u8>>,
        /// Regular refetch period.
        refresh: Duration,
        /// Lower bound between two fetches, whatever triggers them.
        min_refresh: Duration,
    },
}

impl fmt::Debug for KeySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Secret(_) => f.write_str("Secret(<redacted>)"),
            Self::Pem(pem) => write!(f, "Pem({} bytes)", pem.len()),
            Self::Jwks { url, ca_pem, refresh, min_refresh } => {
                let ca = ca_pem.as_ref().map(Vec::len);
                write!(
                    f,
                    "Jwks {{ url: {url:?}, ca_pem: {ca:?} bytes, refresh: {refresh:?}, min_refresh: {min_refresh:?} }}"
                )
            }
        }
    }
}

/// How connection and subscription tokens are verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwtConfig {
    /// Accepted `alg` values; all of one family, matching the key.
    pub algorithms: Vec<Algorithm>,
    /// The verification keys.
    pub keys: KeySource,
    /// Clock skew tolerated on `exp` and `nbf`.
    pub leeway: Duration,
    /// Required `iss`, if set.
    pub issuer: Option<String>,
    /// Required `aud` (one of the token's audiences), if set.
    pub audience: Option<String>,
    /// Claim holding the user id.
    pub user_claim: String,
    /// Array claim listing conversations the user may subscribe to.
    pub conversations_claim: String,
    /// Longest lifetime accepted: a token whose `exp` is further than this in the future is refused. Edges
    /// remember revocations this long (plus leeway), so no token accepted can outlive the memory.
    pub max_lifetime: Duration,
}

/// Default of `--jwt-max-lifetime`: a day, above any sane connection or subscription token lifetime.
pub const DEFAULT_MAX_LIFETIME: Duration = Duration::from_secs(24 * 3600);
/// Upper bound of `--jwt-max-lifetime`: the revocation memory must stay meaningful.
const MAX_MAX_LIFETIME: Duration = Duration::from_secs(30 * 24 * 3600);

impl JwtConfig {
    /// Clock skew allowed on `exp` and `nbf` unless configured.
    pub const DEFAULT_LEEWAY: Duration = Duration::from_secs(5);

    /// HS256 with `secret`, `sub` as the user, [`Self::DEFAULT_LEEWAY`], no `iss`/`aud`.
    #[must_use]
    pub fn hs256(secret: impl Into<String>) -> Self {
        Self {
            algorithms: vec![Algorithm::HS256],
            keys: KeySource::Secret(secret.into()),
            leeway: Self::DEFAULT_LEEWAY,
            issuer: None,
            audience: None,
            user_claim: "sub".to_owned(),
            conversations_claim: "conversations".to_owned(),
            max_lifetime: DEFAULT_MAX_LIFETIME,
        }
    }

    /// Every problem with this config, one line each.
    #[must_use]
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let Some(first) = self.algorithms.first() else {
            return vec!["--jwt-algorithms must name at least one algorithm".to_owned()];
        };
        if self.algorithms.iter().any(|a| a.family() != first.family()) {
            problems.push("--jwt-algorithms must all be of one family (HS*, RS*/PS*, ES*, EdDSA)".to_owned());
        }
        match &self.keys {
            KeySource::Secret(secret) if secret.len() < 16 => {
                problems.push("--jwt-secret must be at least 16 bytes (HS256 needs a strong key)".to_owned());
            }
            KeySource::Secret(_) if first.family() != jsonwebtoken::AlgorithmFamily::Hmac => {
                problems.push(format!("--jwt-secret needs HS* algorithms, got {first:?}"));
            }
            KeySource::Pem(pem) => {
                if let Err(err) = pem_key(pem, *first) {
                    problems.push(format!("--jwt-public-key-file is not a {first:?} public key: {err}"));
                }
            }
            KeySource::Jwks { url, ca_pem, .. } => problems.extend(fetcher::problems(url, ca_pem.as_deref())),
            _ => {}
        }
        if self.leeway > Duration::from_secs(300) {
            problems.push("--jwt-leeway must be at most 5m".to_owned());
        }
        if self.max_lifetime.is_zero() || self.max_lifetime > MAX_MAX_LIFETIME {
            problems.push("--jwt-max-lifetime must be between 1s and 30d".to_owned());
        }
        if self.user_claim.is_empty() || self.conversations_claim.is_empty() {
            problems.push("--jwt-user-claim and --jwt-conversations-claim must not be empty".to_owned());
        }
        problems
    }
}

/// A PEM public key for `alg`'s family.
fn pem_key(pem: &[u8], alg: Algorithm) -> Result<DecodingKey, jsonwebtoken::errors::Error> {
    use jsonwebtoken::AlgorithmFamily;
    match alg.family() {
        AlgorithmFamily::Rsa => DecodingKey::from_rsa_pem(pem),
        AlgorithmFamily::Ec => DecodingKey::from_ec_pem(pem),
        AlgorithmFamily::Ed => DecodingKey::from_ed_pem(pem),
        AlgorithmFamily::Hmac => Err(jsonwebtoken::errors::ErrorKind::InvalidKeyFormat.into()),
    }
}

/// The required `typ` claim: what a token is for. A token of one kind is refused where the other is
/// expected, so a subscription token handed to a less-trusted page cannot open a connection as its user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    /// `"typ": "crier-connection"`: authenticates a connection (`auth` frame, handshake, `refresh`).
    Connection,
    /// `"typ": "crier-subscription"`: with a `conversation` claim, allows one subscribe.
    Subscription,
}

impl TokenKind {
    /// The `typ` claim value.
    #[must_use]
    pub fn claim(self) -> &'static str {
        match self {
            Self::Connection => "crier-connection",
            Self::Subscription => "crier-subscription",
        }
    }

    fn from_claim(value: Option<&Value>) -> Result<Self, AuthError> {
        match value.map(|v| v.as_str()) {
            None => Err(AuthError::InvalidToken("missing claim typ".into())),
            Some(Some("crier-connection")) => Ok(Self::Connection),
            Some(Some("crier-subscription")) => Ok(Self::Subscription),
            Some(_) => Err(AuthError::InvalidToken("unknown typ".into())),
        }
    }
}

/// What a valid token says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// What the token is for.
    pub kind: TokenKind,
    /// The user claim.
    pub user_id: String,
    /// `exp`, seconds since the Unix epoch.
    pub expires_at: u64,
    /// The conversations claim (empty when absent).
    pub conversations: Vec<String>,
    /// The `conversation` claim of a subscription token.
    pub conversation: Option<String>,
}

/// Verifies tokens against one [`JwtConfig`].
pub struct JwtVerifier {
    config: JwtConfig,
    keys: Keys,
    validation: Validation,
}

enum Keys {
    Static(Box<DecodingKey>),
    Jwks(Arc<Jwks>),
}

impl JwtVerifier {
    /// A verifier for `config`; `Err` names the first problem (see [`JwtConfig::problems`]).
    pub fn new(config: JwtConfig) -> Result<Self, String> {
        if let Some(problem) = config.problems().into_iter().next() {
            return Err(problem);
        }
        let first = config.algorithms[0];
        let keys = match &config.keys {
            KeySource::Secret(secret) => Keys::Static(Box::new(DecodingKey::from_secret(secret.as_bytes()))),
            KeySource::Pem(pem) => Keys::Static(Box::new(pem_key(pem, first).map_err(|e| e.to_string())?)),
            KeySource::Jwks { url, ca_pem, refresh, min_refresh } => {
                let fetcher = Fetcher::new(url, ca_pem.as_deref())?;
                Keys::Jwks(Arc::new(Jwks::new(fetcher, *refresh, *min_refresh)))
            }
        };
        let mut validation = Validation::new(first);
        validation.algorithms.clone_from(&config.algorithms);
        validation.required_spec_claims.clear();
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.leeway = 0;
        // RFC 7519 §4.1.3: a token naming audiences is refused unless this edge is one of them.
        validation.validate_aud = true;
        if let Some(audience) = &config.audience {
            validation.set_audience(&[audience]);
            validation.required_spec_claims.insert("aud".to_owned());
        }
        if let Some(issuer) = &config.issuer {
            validation.set_issuer(&[issuer]);
            validation.required_spec_claims.insert("iss".to_owned());
        }
        Ok(Self { config, keys, validation })
    }

    /// The key set refresher, when keys come from a JWKS.
    #[must_use]
    pub fn jwks(&self) -> Option<&Arc<Jwks>> {
        match &self.keys {
            Keys::Jwks(jwks) => Some(jwks),
            Keys::Static(_) => None,
        }
    }

    /// Verifies `token` at `now` (seconds since the Unix epoch).
    pub fn verify_at(&self, token: &str, now: u64) -> Result<Verified, AuthError> {
        let header = jsonwebtoken::decode_header(token).map_err(|e| invalid(&e))?;
        if !self.validation.algorithms.contains(&header.alg) {
            return Err(AuthError::InvalidToken("algorithm not allowed".into()));
        }
        let fetched;
        let key: &DecodingKey = match &self.keys {
            Keys::Static(key) => key,
            Keys::Jwks(jwks) => {
                fetched = jwks.key_for(header.kid.as_deref(), header.alg)?;
                &fetched
            }
        };
        if key.family() != header.alg.family() {
            return Err(AuthError::InvalidToken("key does not match algorithm".into()));
        }
        let data = jsonwebtoken::decode::<Map<String, Value>>(token, key, &self.validation)
            .map_err(|e| invalid(&e))?;
        self.check_claims(&data.claims, now)
    }

    fn check_claims(&self, claims: &Map<String, Value>, now: u64) -> Result<Verified, AuthError> {
        let leeway = self.config.leeway.as_secs();
        let expires_at = claims
            .get("exp")
            .and_then(Value::as_u64)
            .ok_or_else(|| AuthError::InvalidToken("missing claim exp".into()))?;
        if expires_at.saturating_add(leeway) < now {
            return Err(AuthError::InvalidToken("expired".into()));
        }
        if expires_at > now.saturating_add(self.config.max_lifetime.as_secs()).saturating_add(leeway) {
            return Err(AuthError::InvalidToken("lifetime above --jwt-max-lifetime".into()));
        }
        if let Some(nbf) = claims.get("nbf") {
            let nbf = nbf.as_u64().ok_or_else(|| AuthError::InvalidToken("malformed nbf".into()))?;
            if nbf > now.saturating_add(leeway) {
                return Err(AuthError::InvalidToken("not yet valid".into()));
            }
        }
        let user_id = claims
            .get(&self.config.user_claim)
            .and_then(Value::as_str)
            .ok_or_else(|| AuthError::InvalidToken("missing user claim".into()))?
            .to_owned();
        validate_user_id(&user_id)
            .map_err(|reason| AuthError::InvalidToken(format!("bad user claim: {reason}")))?;
        let conversations = match claims.get(&self.config.conversations_claim) {
            None => Vec::new(),
            Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).map(str::to_owned).collect(),
            Some(_) => return Err(AuthError::InvalidToken("conversations claim is not an array".into())),
        };
        let kind = TokenKind::from_claim(claims.get("typ"))?;
        let conversation = claims.get("conversation").and_then(Value::as_str).map(str::to_owned);
        if kind == TokenKind::Subscription && conversation.is_none() {
            return Err(AuthError::InvalidToken("missing claim conversation".into()));
        }
        Ok(Verified { kind, user_id, expires_at, conversations, conversation })
    }
}

/// Describes a jsonwebtoken error without echoing any input.
fn invalid(err: &jsonwebtoken::errors::Error) -> AuthError {
    use jsonwebtoken::errors::ErrorKind;
    let reason = match err.kind() {
        ErrorKind::InvalidSignature => "bad signature".into(),
        ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => "algorithm not allowed".into(),
        ErrorKind::InvalidAudience => "wrong audience".into(),
        ErrorKind::InvalidIssuer => "wrong issuer".into(),
        ErrorKind::MissingRequiredClaim(claim) => format!("missing claim {claim}"),
        _ => "malformed".into(),
    };
    AuthError::InvalidToken(reason)
}
