//! JWT rejection paths against a real RS256 edge (issuer and audience configured), each with the exact
//! error frame and close code, while a bystander on the same edge keeps receiving.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Result, ensure};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use crier_edge::{EdgeConfig, JwtConfig, KeySource};
use crier_store::log::MemoryLog;
use crier_tests::{Bystander, JwksServer, Servers, ServersConfig, rsa_jwk, unix_now};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

const RSA_A_PRIVATE: &[u8] = include_bytes!("../fixtures/keys/rsa_a_private.pem");
const RSA_A_PUBLIC: &[u8] = include_bytes!("../fixtures/keys/rsa_a_public.pem");
const RSA_B_PRIVATE: &[u8] = include_bytes!("../fixtures/keys/rsa_b_private.pem");

fn rs256_edge() -> EdgeConfig {
    let jwt = JwtConfig {
        algorithms: vec![Algorithm::RS256],
        keys: KeySource::Pem(RSA_A_PUBLIC.to_vec()),
        issuer: Some("idp".into()),
        audience: Some("crier".into()),
        ..JwtConfig::hs256("unused")
    };
    EdgeConfig { partitions: 8, ..EdgeConfig::with_jwt(jwt) }
}

fn claims(user: &str, extra: &Value) -> Value {
    let now = unix_now();
    let mut claims = json!({"typ": "crier-connection", "sub": user, "iss": "idp", "aud": "crier", "iat": now, "exp": now + 300,
        "conversations": ["bystander"]});
    if let Some(c) = claims.as_object_mut() {
        c.extend(extra.as_object().cloned().unwrap_or_default());
    }
    claims
}

fn sign(alg: Algorithm, key: &EncodingKey, claims: &Value) -> Result<String> {
    Ok(jsonwebtoken::encode(&Header::new(alg), claims, key)?)
}

fn rs256(claims: &Value) -> Result<String> {
    sign(Algorithm::RS256, &EncodingKey::from_rsa_pem(RSA_A_PRIVATE)?, claims)
}

/// Starts the edge with a bystander, sends `token` in an auth frame, and asserts the rejection.
async fn assert_refused(token: &str) -> Result<()> {
    let servers = Servers::start_with(
        Arc::new(MemoryLog::new(8, 1_000)),
        ServersConfig { edge: rs256_edge(), ..ServersConfig::dev(8, 1) },
    )
    .await?;
    let mut ws = servers.ws_client(0).await?;
    ws.auth_token(&rs256(&claims("calm", &json!({})))?, "calm").await?;
    let mut bystander = Bystander::subscribe(ws, servers.publish_client().await?, "bystander").await?;
    let mut bad = servers.ws_client(0).await?;
    bad.expect_type("ready").await?;
    bad.send_json(&json!({"action": "auth", "token": token})).await?;
    ensure!(bad.recv_text().await? == r#"{"type":"error","message":"Authentication failed"}"#);
    ensure!(bad.expect_close().await? == Some(4001));
    bystander.check().await?;
    servers.shutdown().await
}

/// An expired token is refused with 4001.
#[tokio::test]
async fn expired_token_is_refused() -> Result<()> {
    assert_refused(&rs256(&claims("u1", &json!({"exp": unix_now() - 60})))?).await
}

/// A token whose `nbf` lies in the future is refused with 4001.
#[tokio::test]
async fn not_yet_valid_token_is_refused() -> Result<()> {
    assert_refused(&rs256(&claims("u1", &json!({"nbf": unix_now() + 3_600})))?).await
}

/// A token for another audience is refused with 4001.
#[tokio::test]
async fn wrong_audience_token_is_refused() -> Result<()> {
    assert_refused(&rs256(&claims("u1", &json!({"aud": "another-service"})))?).await
}

/// A token from another issuer is refused with 4001.
#[tokio::test]
async fn wrong_issuer_token_is_refused() -> Result<()> {
    assert_refused(&rs256(&claims("u1", &json!({"iss": "evil"})))?).await
}

/// An unsigned `alg:none` token is refused with 4001.
#[tokio::test]
async fn alg_none_token_is_refused() -> Result<()> {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
    let body = URL_SAFE_NO_PAD.encode(claims("u1", &json!({})).to_string());
    assert_refused(&format!("{header}.{body}.")).await
}

/// A token signed by another RSA key is refused with 4001.
#[tokio::test]
async fn wrong_key_token_is_refused() -> Result<()> {
    assert_refused(&sign(
        Algorithm::RS256,
        &EncodingKey::from_rsa_pem(RSA_B_PRIVATE)?,
        &claims("u1", &json!({})),
    )?)
    .await
}

/// Algorithm confusion: an HS256 token whose HMAC key is the edge's RSA public key is refused with 4001.
#[tokio::test]
async fn hs_token_signed_with_rsa_public_key_is_refused() -> Result<()> {
    assert_refused(&sign(
        Algorithm::HS256,
        &EncodingKey::from_secret(RSA_A_PUBLIC),
        &claims("u1", &json!({})),
    )?)
    .await
}

/// A token that expires without a refresh closes the session with 4003; the bystander stays.
#[tokio::test]
async fn expired_session_is_closed_with_4003() -> Result<()> {
    let servers = Servers::start_with(
        Arc::new(MemoryLog::new(8, 1_000)),
        ServersConfig { edge: rs256_edge(), ..ServersConfig::dev(8, 1) },
    )
    .await?;
    let mut ws = servers.ws_client(0).await?;
    ws.auth_token(&rs256(&claims("calm", &json!({})))?, "calm").await?;
    let mut bystander = Bystander::subscribe(ws, servers.publish_client().await?, "bystander").await?;
    let mut short = servers.ws_client(0).await?;
    short.auth_token(&rs256(&claims("brief", &json!({"exp": unix_now() + 1})))?, "brief").await?;
    ensure!(short.expect_type("error").await?["message"] == "Token expired");
    ensure!(short.expect_close_within(Duration::from_secs(5)).await? == Some(4003));
    bystander.check().await?;
    servers.shutdown().await
}

/// `refresh` with a token of the same user extends the session and answers `refreshed` with its `exp`;
/// a token of another user is refused and the session keeps its user.
#[tokio::test]
async fn refresh_extends_the_session_for_the_same_user_only() -> Result<()> {
    let servers = Servers::start_with(
        Arc::new(MemoryLog::new(8, 1_000)),
        ServersConfig { edge: rs256_edge(), ..ServersConfig::dev(8, 1) },
    )
    .await?;
    let mut ws = servers.ws_client(0).await?;
    ws.auth_token(&rs256(&claims("u1", &json!({"exp": unix_now() + 2})))?, "u1").await?;
    let exp = unix_now() + 600;
    ws.send_json(&json!({"action": "refresh", "token": rs256(&claims("u1", &json!({"exp": exp})))?})).await?;
    ensure!(ws.recv_text().await? == format!(r#"{{"type":"refreshed","expiresAt":{exp}}}"#));
    ws.send_json(&json!({"action": "refresh", "token": rs256(&claims("u2", &json!({})))?})).await?;
    ensure!(ws.expect_type("error").await?["message"] == "Refresh token must be for the same user");
    // The old token's expiry has passed by now; the refreshed session is still served.
    ws.expect_no_frame_within(Duration::from_millis(2_500)).await?;
    ws.send_json(&json!({"action": "ping"})).await?;
    ws.expect_type("pong").await?;
    servers.shutdown().await
}

fn jwks_edge(url: String, min_refresh: Duration) -> EdgeConfig {
    let keys = KeySource::Jwks { url, ca_pem: None, refresh: Duration::from_secs(3_600), min_refresh };
    let jwt = JwtConfig { algorithms: vec![Algorithm::RS256], keys, ..JwtConfig::hs256("unused") };
    EdgeConfig { partitions: 8, ..EdgeConfig::with_jwt(jwt) }
}

fn with_kid(kid: &str, private: &[u8], user: &str) -> Result<String> {
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(kid.to_owned());
    let claims = json!({"typ": "crier-connection", "sub": user, "exp": unix_now() + 300});
    Ok(jsonwebtoken::encode(&header, &claims, &EncodingKey::from_rsa_pem(private)?)?)
}

/// Keys come from a JWKS chosen by `kid`; a token signed with a rotated-in key triggers an early refresh
/// and is accepted.
#[tokio::test]
async fn jwks_keys_are_selected_by_kid_and_rotation_refreshes() -> Result<()> {
    let jwks = JwksServer::start(vec![rsa_jwk(RSA_A_PRIVATE, "k1")?]).await?;
    let edge = jwks_edge(jwks.url(), Duration::from_millis(10));
    let servers = Servers::start_with(
        Arc::new(MemoryLog::new(8, 1_000)),
        ServersConfig { edge, ..ServersConfig::dev(8, 1) },
    )
    .await?;
    let mut ws = servers.ws_client(0).await?;
    ws.auth_token(&with_kid("k1", RSA_A_PRIVATE, "u1")?, "u1").await?;
    jwks.set_keys(vec![rsa_jwk(RSA_A_PRIVATE, "k1")?, rsa_jwk(RSA_B_PRIVATE, "k2")?])?;
    let mut rotated = servers.ws_client(0).await?;
    rotated.auth_token(&with_kid("k2", RSA_B_PRIVATE, "u2")?, "u2").await?;
    let mut forged = servers.ws_client(0).await?;
    forged.expect_type("ready").await?;
    forged.send_json(&json!({"action": "auth", "token": with_kid("k1", RSA_B_PRIVATE, "u3")?})).await?;
    ensure!(forged.expect_type("error").await?["message"] == "Authentication failed");
    ensure!(forged.expect_close().await? == Some(4001));
    servers.shutdown().await
}

/// Unknown `kid`s cannot make the edge refetch the JWKS more than once per `min_refresh`.
#[tokio::test]
async fn unknown_kids_do_not_hammer_the_jwks() -> Result<()> {
    let jwks = JwksServer::start(vec![rsa_jwk(RSA_A_PRIVATE, "k1")?]).await?;
    let edge = jwks_edge(jwks.url(), Duration::from_secs(3_600));
    let servers = Servers::start_with(
        Arc::new(MemoryLog::new(8, 1_000)),
        ServersConfig { edge, ..ServersConfig::dev(8, 1) },
    )
    .await?;
    let mut ws = servers.ws_client(0).await?;
    ws.auth_token(&with_kid("k1", RSA_A_PRIVATE, "u1")?, "u1").await?;
    let mut clients = Vec::new();
    for i in 0..5 {
        let mut bad = servers.ws_client(0).await?;
        bad.expect_type("ready").await?;
        bad.send_json(
            &json!({"action": "auth", "token": with_kid(&format!("random-{i}"), RSA_B_PRIVATE, "x")?}),
        )
        .await?;
        clients.push(bad);
    }
    for mut bad in clients {
        ensure!(bad.expect_type("error").await?["message"] == "Authentication failed");
        ensure!(bad.expect_close().await? == Some(4001));
    }
    ensure!(jwks.fetches() == 1, "{} fetches", jwks.fetches());
    servers.shutdown().await
}
