//! Tokens carried by the handshake (`Authorization: Bearer`, the bearer subprotocol, `?token=`) authenticate
//! at once (`authenticated` instead of `ready`), and no token, good or bad, ever reaches the logs.
//!
//! This file installs its own log capture, so it must stay a test binary of its own (the subscriber is
//! process-global; nextest runs each test in its own process).

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Result, ensure};
use crier_edge::EdgeConfig;
use crier_store::log::MemoryLog;
use crier_tests::{CONNECTION_TYP, Servers, ServersConfig, WsClient, mint_claims, mint_token, unix_now};
use serde_json::json;

const SECRET: &str = "handshake-secret-0123456789";

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().map_err(|_| std::io::Error::other("poisoned"))?.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

async fn jwt_servers() -> Result<Servers> {
    let edge = EdgeConfig { partitions: 8, ..EdgeConfig::with_jwt_secret(SECRET) };
    Servers::start_with(
        Arc::new(MemoryLog::new(8, 1_000)),
        ServersConfig { edge, ..ServersConfig::dev(8, 1) },
    )
    .await
}

/// Every handshake source authenticates at once; a bad token via any path, a refresh and an auth frame all
/// leave no token (nor its signature) in trace-level logs.
#[tokio::test]
async fn handshake_tokens_authenticate_and_never_reach_the_logs() -> Result<()> {
    let logs = Captured::default();
    let writer = logs.clone();
    // Everything the servers (and the HTTP stack under them) log, at trace; not the test's own WebSocket
    // client, which logs its requests, tokens included.
    let filter = tracing_subscriber::EnvFilter::new("trace,tungstenite=off,tokio_tungstenite=off");
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(move || writer.clone()).init();
    let servers = jwt_servers().await?;
    let url = servers.edge_ws_url(0);
    let mut tokens = Vec::new();
    for (i, how) in ["header", "subprotocol", "query"].into_iter().enumerate() {
        let user = format!("user-{i}");
        let token = mint_token(SECRET, &user, Duration::from_secs(60))?;
        let mut ws = match how {
            "header" => {
                WsClient::connect_with_headers(&url, &[("Authorization", &format!("Bearer {token}"))]).await?
            }
            "subprotocol" => {
                WsClient::connect_with_headers(
                    &url,
                    &[("Sec-WebSocket-Protocol", &format!("bearer, {token}"))],
                )
                .await?
            }
            _ => WsClient::connect(&format!("{url}?token={token}")).await?,
        };
        ws.expect_authenticated(&user).await?;
        tokens.push(token);
    }
    let bad = mint_token("some-other-secret-0123456789", "mallory", Duration::from_secs(60))?;
    let mut ws = WsClient::connect(&format!("{url}?token={bad}")).await?;
    ensure!(ws.expect_type("error").await?["message"] == "Authentication failed");
    ensure!(ws.expect_close().await? == Some(4001));
    tokens.push(bad);
    let frame_token =
        mint_claims(SECRET, &json!({"typ": CONNECTION_TYP, "sub": "frame", "exp": unix_now() + 60}))?;
    let refresh =
        mint_claims(SECRET, &json!({"typ": CONNECTION_TYP, "sub": "frame", "exp": unix_now() + 120}))?;
    let mut ws = servers.ws_client(0).await?;
    ws.auth_token(&frame_token, "frame").await?;
    ws.send_json(&json!({"action": "refresh", "token": refresh})).await?;
    ws.expect_type("refreshed").await?;
    tokens.extend([frame_token, refresh]);
    servers.shutdown().await?;
    let logs = String::from_utf8_lossy(&logs.0.lock().map_err(|_| anyhow::anyhow!("poisoned"))?).into_owned();
    ensure!(logs.contains("ws_client_authenticated"), "capture saw no session logs:\n{logs}");
    for token in &tokens {
        let signature = token.rsplit('.').next().unwrap_or(token);
        ensure!(!logs.contains(signature), "a token leaked into the logs:\n{logs}");
    }
    Ok(())
}

/// Dev auth ignores handshake tokens: the client still gets `ready` and authenticates with `userId`.
#[tokio::test]
async fn dev_auth_ignores_handshake_tokens() -> Result<()> {
    let servers = Servers::dev(1).await?;
    let mut ws = WsClient::connect(&format!("{}?token=a.b.c", servers.edge_ws_url(0))).await?;
    ws.auth_dev("u1").await?;
    servers.shutdown().await
}
