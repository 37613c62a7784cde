//! JWKS over HTTPS, through the flags operators use: a real `crier edge` process fetches keys from a local
//! HTTPS server whose certificate chains to a CA made for the test, trusted only through
//! `--jwt-jwks-ca-file`. Without that file the certificate is refused, tokens are refused as usual, the
//! failure is logged with its cause, and the edge keeps serving. A JWKS endpoint that hangs holds only the
//! tokens that need a refetch.

use std::path::Path;
use std::time::Duration;

use anyhow::{Result, ensure};
use crier_broker::publisher::Item;
use crier_broker::{BrokerConfig, Publisher};
use crier_tests::{
    AdminClient, CrierProcess, JwksServer, RedisServer, WsClient, free_port, rsa_jwk, unix_now, within,
};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;

const RSA_A_PRIVATE: &[u8] = include_bytes!("../fixtures/keys/rsa_a_private.pem");

/// A running edge process and where to reach it.
struct Edge {
    process: CrierProcess,
    ws_url: String,
}

/// Starts `crier edge` verifying RS256 tokens against `jwks_url`, trusting `ca_file` when given; returns
/// once `/readyz` answers 200.
async fn start_edge(redis: &RedisServer, jwks_url: &str, ca_file: Option<&Path>) -> Result<Edge> {
    let (ws_port, admin_port) = (free_port()?, free_port()?);
    let listen = format!("127.0.0.1:{ws_port}");
    let mut args = vec!["edge", "--listen", &listen, "--jwt-algorithms", "RS256", "--jwt-jwks-url", jwks_url];
    // A token naming a key the edge lacks waits for one refetch; let it happen at once.
    args.extend(["--jwt-jwks-min-refresh", "10ms"]);
    let ca = ca_file.map(|p| p.display().to_string());
    if let Some(ca) = &ca {
        args.extend(["--jwt-jwks-ca-file", ca]);
    }
    let admin_listen = format!("127.0.0.1:{admin_port}");
    let redis_url = redis.url();
    let envs = [
        ("CRIER_REDIS_URL", redis_url.as_str()),
        ("CRIER_ADMIN_LISTEN", &admin_listen),
        ("CRIER_DRAIN_WINDOW", "0s"),
        ("RUST_LOG", "info"),
    ];
    let process = CrierProcess::spawn(&args, &envs)?;
    let admin = AdminClient::new(admin_listen.parse()?);
    within("the edge to become ready", async {
        while admin.get("/readyz").await.map(|r| r.status).unwrap_or(0) != 200 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await?;
    Ok(Edge { process, ws_url: format!("ws://{listen}/api/ws") })
}

/// An RS256 token for `user` naming key `k1`, listing conversation `c1`.
fn token(user: &str) -> Result<String> {
    token_naming(user, "k1")
}

/// An RS256 token for `user` naming key `kid`, listing conversation `c1`.
fn token_naming(user: &str, kid: &str) -> Result<String> {
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(kid.to_owned());
    let claims =
        json!({"typ": "crier-connection", "sub": user, "exp": unix_now() + 300, "conversations": ["c1"]});
    Ok(jsonwebtoken::encode(&header, &claims, &EncodingKey::from_rsa_pem(RSA_A_PRIVATE)?)?)
}

/// With `--jwt-jwks-ca-file`, the edge fetches the JWKS over HTTPS, accepts a token signed by its key and
/// delivers to the session.
#[tokio::test]
async fn https_jwks_with_ca_file_verifies_tokens() -> Result<()> {
    let redis = RedisServer::start().await?;
    let jwks = JwksServer::start_https(vec![rsa_jwk(RSA_A_PRIVATE, "k1")?]).await?;
    ensure!(jwks.url().starts_with("https://127.0.0.1:"), "{}", jwks.url());
    let dir = tempfile::tempdir()?;
    let ca_file = dir.path().join("jwks-ca.pem");
    std::fs::write(&ca_file, jwks.ca_pem().unwrap_or_default())?;
    let edge = start_edge(&redis, &jwks.url(), Some(&ca_file)).await?;
    let mut ws = WsClient::connect(&edge.ws_url).await?;
    ws.auth_token(&token("alice")?, "alice").await?;
    ws.subscribe("c1").await?;
    let publisher = Publisher::new(redis.redis_log(64, 100).await?, &BrokerConfig::default());
    let payload = json!({"type": "job-status", "jobId": "j1"});
    let item = Item {
        conversation_id: "c1".into(),
        payload: payload.to_string().into(),
        idempotency_key: "".into(),
    };
    publisher.publish(&item).await?;
    ensure!(ws.recv_json().await? == payload);
    ensure!(jwks.fetches() >= 1, "the JWKS was never fetched");
    edge.process.sigterm().await?;
    let (status, logs) = edge.process.wait(Duration::from_secs(5)).await?;
    ensure!(status.success(), "edge exited with {status}; log:\n{logs}");
    Ok(())
}

/// Without the CA file, the test CA's certificate is refused: the fetch fails (logged with the certificate
/// problem), a token is refused with `Authentication failed` and 4001, and the edge keeps serving the
/// connection that was already open.
#[tokio::test]
async fn https_jwks_without_ca_file_refuses_tokens_and_edge_stays_up() -> Result<()> {
    let redis = RedisServer::start().await?;
    let jwks = JwksServer::start_https(vec![rsa_jwk(RSA_A_PRIVATE, "k1")?]).await?;
    let edge = start_edge(&redis, &jwks.url(), None).await?;
    let mut calm = WsClient::connect(&edge.ws_url).await?;
    calm.expect_type("ready").await?;
    let mut refused = WsClient::connect(&edge.ws_url).await?;
    refused.expect_type("ready").await?;
    refused.send_json(&json!({"action": "auth", "token": token("bob")?})).await?;
    ensure!(refused.expect_type("error").await?["message"] == "Authentication failed");
    ensure!(refused.expect_close().await? == Some(4001));
    jwks.handshake_failed().await?;
    ensure!(jwks.fetches() == 0, "{} fetches got through TLS", jwks.fetches());
    calm.send_json(&json!({"action": "ping"})).await?;
    calm.expect_type("pong").await?;
    edge.process.sigterm().await?;
    let (status, logs) = edge.process.wait(Duration::from_secs(5)).await?;
    ensure!(status.success(), "edge exited with {status}; log:\n{logs}");
    ensure!(
        logs.lines().any(|l| l.contains("JWKS fetch failed") && l.contains("certificate")),
        "no JWKS failure naming the certificate in the log:\n{logs}"
    );
    Ok(())
}

/// The JWKS endpoint hangs (accepts, never answers) while a token naming a key the edge lacks waits for a
/// refetch: meanwhile the authenticated session keeps receiving and a token with a known key authenticates.
/// Only the unknown key's session waits, and is then refused with 4001.
#[tokio::test]
async fn hanging_jwks_holds_only_tokens_that_need_a_refetch() -> Result<()> {
    let redis = RedisServer::start().await?;
    let jwks = JwksServer::start(vec![rsa_jwk(RSA_A_PRIVATE, "k1")?]).await?;
    let edge = start_edge(&redis, &jwks.url(), None).await?;
    let mut calm = WsClient::connect(&edge.ws_url).await?;
    calm.auth_token(&token("alice")?, "alice").await?;
    calm.subscribe("c1").await?;
    jwks.hang();
    let mut waiting = WsClient::connect(&edge.ws_url).await?;
    waiting.expect_type("ready").await?;
    waiting.send_json(&json!({"action": "auth", "token": token_naming("bob", "k2")?})).await?;
    jwks.holding_a_request().await?;
    let publisher = Publisher::new(redis.redis_log(64, 100).await?, &BrokerConfig::default());
    let item =
        Item { conversation_id: "c1".into(), payload: r#"{"n":1}"#.into(), idempotency_key: "".into() };
    publisher.publish(&item).await?;
    ensure!(calm.recv_json().await?["n"] == 1, "delivery stalled behind the hanging JWKS");
    let mut known = WsClient::connect(&edge.ws_url).await?;
    known.auth_token(&token("carol")?, "carol").await?;
    waiting.expect_no_frame_within(Duration::ZERO).await?;
    ensure!(waiting.expect_type("error").await?["message"] == "Authentication failed");
    ensure!(waiting.expect_close().await? == Some(4001));
    edge.process.sigterm().await?;
    let (status, logs) = edge.process.wait(Duration::from_secs(5)).await?;
    ensure!(
        status.success(),
        "edge exited with {status}; log:
{logs}"
    );
    Ok(())
}

/// An `https://` URL is accepted and any other scheme refused at startup: exit 64, one line naming the flag.
#[tokio::test]
async fn jwks_url_scheme_is_checked_before_start() -> Result<()> {
    let process = CrierProcess::spawn(
        &["edge", "--redis-url", "redis://127.0.0.1:1", "--jwt-algorithms", "RS256"],
        &[
            ("CRIER_JWT_JWKS_URL", "ftp://idp.example.com/jwks.json"),
            ("CRIER_JWT_JWKS_CA_FILE", "/no/such/ca.pem"),
        ],
    )?;
    let (status, logs) = process.wait(Duration::from_secs(5)).await?;
    ensure!(status.code() == Some(64), "exit {status}; log:\n{logs}");
    let lines: Vec<&str> = logs.lines().collect();
    ensure!(lines.len() == 2, "one line per problem:\n{logs}");
    ensure!(lines.iter().any(|l| l.contains("--jwt-jwks-url must be an http:// or https:// URL")), "{logs}");
    ensure!(lines.iter().any(|l| l.contains("--jwt-jwks-ca-file /no/such/ca.pem")), "{logs}");
    Ok(())
}
