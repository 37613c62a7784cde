//! JWT validation with fixed keys (test-only PEM fixtures in `tests/fixtures/keys`) and a fixed clock.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use serde_json::{Value, json};

use super::*;

const NOW: u64 = 1_800_000_000;
const SECRET: &str = "test-secret-0123456789";

macro_rules! fixture {
    ($name:literal) => {
        include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/keys/", $name))
    };
}

fn sign(alg: Algorithm, key: &EncodingKey, claims: &Value) -> String {
    jsonwebtoken::encode(&Header::new(alg), claims, key).unwrap()
}

fn hs(claims: &Value) -> String {
    sign(Algorithm::HS256, &EncodingKey::from_secret(SECRET.as_bytes()), claims)
}

fn claims(extra: &Value) -> Value {
    let mut base = json!({"typ": "crier-connection", "sub": "u1", "exp": NOW + 60});
    base.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    base
}

fn verifier(config: JwtConfig) -> JwtVerifier {
    JwtVerifier::new(config).unwrap()
}

fn rs256() -> JwtConfig {
    JwtConfig {
        algorithms: vec![Algorithm::RS256],
        keys: KeySource::Pem(fixture!("rsa_a_public.pem").to_vec()),
        ..JwtConfig::hs256("unused")
    }
}

fn reason(result: Result<Verified, AuthError>) -> String {
    match result {
        Err(AuthError::InvalidToken(reason)) => reason,
        other => panic!("expected an invalid token, got {other:?}"),
    }
}

/// A valid HS256 token yields its subject, expiry and conversations claim.
#[test]
fn valid_token_yields_its_claims() {
    let token = hs(&claims(&json!({"conversations": ["c2", "c1"]})));
    let v = verifier(JwtConfig::hs256(SECRET)).verify_at(&token, NOW).unwrap();
    assert_eq!((v.user_id.as_str(), v.expires_at), ("u1", NOW + 60));
    assert_eq!(v.conversations, ["c2", "c1"]);
}

/// `exp` is required and checked with the leeway; `nbf` likewise when present.
#[test]
fn time_claims_use_the_clock_and_leeway() {
    let v = verifier(JwtConfig::hs256(SECRET));
    let token = hs(&claims(&json!({"exp": NOW - 5})));
    assert!(v.verify_at(&token, NOW).is_ok(), "within 5 s leeway");
    assert_eq!(reason(v.verify_at(&token, NOW + 1)), "expired");
    assert_eq!(reason(v.verify_at(&hs(&json!({"sub": "u1"})), NOW)), "missing claim exp");
    let early = hs(&claims(&json!({"nbf": NOW + 6})));
    assert_eq!(reason(v.verify_at(&early, NOW)), "not yet valid");
    assert!(v.verify_at(&early, NOW + 1).is_ok());
}

/// Configured `iss` and `aud` are required and must match; unconfigured `aud` in a token is refused.
#[test]
fn issuer_and_audience_when_configured() {
    let config =
        JwtConfig { issuer: Some("idp".into()), audience: Some("crier".into()), ..JwtConfig::hs256(SECRET) };
    let v = verifier(config);
    assert!(v.verify_at(&hs(&claims(&json!({"iss": "idp", "aud": ["x", "crier"]}))), NOW).is_ok());
    assert_eq!(
        reason(v.verify_at(&hs(&claims(&json!({"iss": "idp", "aud": "other"}))), NOW)),
        "wrong audience"
    );
    assert_eq!(
        reason(v.verify_at(&hs(&claims(&json!({"iss": "evil", "aud": "crier"}))), NOW)),
        "wrong issuer"
    );
    assert_eq!(reason(v.verify_at(&hs(&claims(&json!({"aud": "crier"}))), NOW)), "missing claim iss");
    let open = verifier(JwtConfig::hs256(SECRET));
    assert_eq!(reason(open.verify_at(&hs(&claims(&json!({"aud": "x"}))), NOW)), "wrong audience");
}

/// `alg:none` never verifies, whatever the configuration.
#[test]
fn alg_none_is_refused() {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
    let body = URL_SAFE_NO_PAD.encode(claims(&json!({})).to_string());
    let token = format!("{header}.{body}.");
    assert!(verifier(JwtConfig::hs256(SECRET)).verify_at(&token, NOW).is_err());
    assert!(verifier(rs256()).verify_at(&token, NOW).is_err());
}

/// RS256 tokens verify with the configured public key only; an HS256 token whose HMAC key is that public
/// key (algorithm confusion) is refused.
#[test]
fn rsa_pinning_refuses_wrong_key_and_confusion() {
    let v = verifier(rs256());
    let good = sign(
        Algorithm::RS256,
        &EncodingKey::from_rsa_pem(fixture!("rsa_a_private.pem")).unwrap(),
        &claims(&json!({})),
    );
    assert_eq!(v.verify_at(&good, NOW).unwrap().user_id, "u1");
    let wrong = sign(
        Algorithm::RS256,
        &EncodingKey::from_rsa_pem(fixture!("rsa_b_private.pem")).unwrap(),
        &claims(&json!({})),
    );
    assert_eq!(reason(v.verify_at(&wrong, NOW)), "bad signature");
    let confused =
        sign(Algorithm::HS256, &EncodingKey::from_secret(fixture!("rsa_a_public.pem")), &claims(&json!({})));
    assert_eq!(reason(v.verify_at(&confused, NOW)), "algorithm not allowed");
}

/// ES256 and EdDSA public keys from PEM verify their tokens.
#[test]
fn ec_and_eddsa_keys_verify() {
    let es = JwtConfig {
        algorithms: vec![Algorithm::ES256],
        keys: KeySource::Pem(fixture!("ec_p256_public.pem").to_vec()),
        ..JwtConfig::hs256("x")
    };
    let token = sign(
        Algorithm::ES256,
        &EncodingKey::from_ec_pem(fixture!("ec_p256_private.pem")).unwrap(),
        &claims(&json!({})),
    );
    assert!(verifier(es).verify_at(&token, NOW).is_ok());
    let ed = JwtConfig {
        algorithms: vec![Algorithm::EdDSA],
        keys: KeySource::Pem(fixture!("ed25519_public.pem").to_vec()),
        ..JwtConfig::hs256("x")
    };
    let token = sign(
        Algorithm::EdDSA,
        &EncodingKey::from_ed_pem(fixture!("ed25519_private.pem")).unwrap(),
        &claims(&json!({})),
    );
    assert!(verifier(ed).verify_at(&token, NOW).is_ok());
}

/// The user claim is configurable; a missing or empty one is refused.
#[test]
fn user_claim_is_configurable() {
    let v = verifier(JwtConfig { user_claim: "uid".into(), ..JwtConfig::hs256(SECRET) });
    assert_eq!(v.verify_at(&hs(&claims(&json!({"uid": "u7"}))), NOW).unwrap().user_id, "u7");
    assert_eq!(reason(v.verify_at(&hs(&claims(&json!({}))), NOW)), "missing user claim");
}

/// Mixed algorithm families, short secrets and non-matching PEM keys are configuration problems.
#[test]
fn bad_configs_are_reported() {
    let mixed =
        JwtConfig { algorithms: vec![Algorithm::HS256, Algorithm::RS256], ..JwtConfig::hs256(SECRET) };
    assert_eq!(mixed.problems().len(), 1);
    assert_eq!(JwtConfig::hs256("short").problems().len(), 1);
    let wrong_pem = JwtConfig { algorithms: vec![Algorithm::ES256], ..rs256() };
    assert!(wrong_pem.problems()[0].contains("not a ES256 public key"), "{:?}", wrong_pem.problems());
}

/// Errors never echo the token.
#[tokio::test]
async fn errors_do_not_echo_tokens() {
    let auth = Authenticator::new(&AuthMode::Jwt(Box::new(JwtConfig::hs256(SECRET)))).unwrap();
    let wrong = mint_hs256("another-secret-0123456789", "u1", Duration::from_secs(60), None).unwrap();
    let err = auth.authenticate(Some(&wrong), None).await.unwrap_err();
    assert!(!err.to_string().contains(&wrong));
    assert_eq!(auth.authenticate(None, Some("u1")).await, Err(AuthError::MissingToken));
}

/// Dev auth believes `userId` and ignores tokens.
#[tokio::test]
async fn dev_auth_takes_user_id() {
    let dev = Authenticator::new(&AuthMode::None).unwrap();
    assert_eq!(dev.authenticate(None, Some("u9")).await.unwrap().user_id.as_ref(), "u9");
    assert_eq!(dev.authenticate(Some("t"), None).await, Err(AuthError::MissingUserId));
}

/// The user-id rule (1..=256 bytes, no control characters) holds for dev user ids and token claims alike.
#[tokio::test]
async fn user_ids_follow_the_shared_rule() {
    let dev = Authenticator::new(&AuthMode::None).unwrap();
    for bad in ["", "line\nbreak", &"x".repeat(257)] {
        assert!(dev.authenticate(None, Some(bad)).await.is_err(), "dev user id {bad:?}");
    }
    let jwt = verifier(JwtConfig::hs256(SECRET));
    for bad in ["", "tab\there", &"x".repeat(257)] {
        let token = hs(&claims(&json!({"sub": bad})));
        assert!(jwt.verify_at(&token, NOW).is_err(), "sub {bad:?}");
    }
    assert!(jwt.verify_at(&hs(&claims(&json!({"sub": "ü-1"}))), NOW).is_ok());
}

/// `typ` is required and names the kind; a subscription token needs its `conversation`; `exp` beyond the
/// maximum lifetime (plus leeway) is refused.
#[test]
fn typ_and_lifetime_rules() {
    let v = verifier(JwtConfig { max_lifetime: Duration::from_secs(3600), ..JwtConfig::hs256(SECRET) });
    let untyped = hs(&json!({"sub": "u1", "exp": NOW + 60}));
    assert_eq!(reason(v.verify_at(&untyped, NOW)), "missing claim typ");
    assert_eq!(reason(v.verify_at(&hs(&claims(&json!({"typ": "id"}))), NOW)), "unknown typ");
    let sub = hs(&claims(&json!({"typ": "crier-subscription", "conversation": "c1"})));
    assert_eq!(v.verify_at(&sub, NOW).unwrap().kind, TokenKind::Subscription);
    let bare = hs(&claims(&json!({"typ": "crier-subscription"})));
    assert_eq!(reason(v.verify_at(&bare, NOW)), "missing claim conversation");
    assert!(v.verify_at(&hs(&claims(&json!({"exp": NOW + 3605}))), NOW).is_ok());
    let long = hs(&claims(&json!({"exp": NOW + 3606})));
    assert_eq!(reason(v.verify_at(&long, NOW)), "lifetime above --jwt-max-lifetime");
    let huge = hs(&claims(&json!({"exp": u64::MAX})));
    assert_eq!(reason(v.verify_at(&huge, NOW)), "lifetime above --jwt-max-lifetime");
}
