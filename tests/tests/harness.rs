//! The harness itself: the pieces other tests stand on start, connect and clean up as they promise. Each
//! test is also the smallest end-to-end path through crier, so a failure here points at the harness or the
//! plumbing before any behaviour test is read.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Result, ensure};
use crier_edge::EdgeConfig;
use crier_store::log::MemoryLog;
use crier_tests::{RedisServer, Servers, ServersConfig, WsClient, mint_token, within};
use serde_json::json;

/// A notification published over gRPC reaches a client subscribed over WebSocket, verbatim (memory log).
#[tokio::test]
async fn published_notification_reaches_subscriber_on_memory_log() -> Result<()> {
    let servers = Servers::dev(1).await?;
    let mut ws = servers.ws_client(0).await?;
    ws.auth_dev("u1").await?;
    ws.subscribe("c1").await?;
    let payload =
        json!({"type": "job-status", "jobId": "job-123", "status": "completed", "conversationId": "c1"});
    let position = servers.publish_client().await?.publish("c1", &payload).await?;
    ensure!(!position.is_empty(), "empty position");
    let got = ws.recv_json().await?;
    ensure!(got == payload, "got {got}, published {payload}");
    servers.shutdown().await
}

/// The same path through a `RedisLog` on a spawned redis-server, with two edges sharing it.
#[tokio::test]
async fn published_notification_reaches_subscribers_on_two_edges_via_redis() -> Result<()> {
    let redis = RedisServer::start().await?;
    let servers = Servers::start(redis.redis_log(8, 1_000).await?, 2).await?;
    let mut clients = Vec::new();
    for edge in 0..2 {
        let mut ws = servers.ws_client(edge).await?;
        ws.auth_dev(&format!("u{edge}")).await?;
        ws.subscribe("c1").await?;
        clients.push(ws);
    }
    let payload = json!({"type": "task-completed", "conversationId": "c1"});
    servers.publish_client().await?.publish("c1", &payload).await?;
    for ws in &mut clients {
        let got = ws.recv_json().await?;
        ensure!(got == payload, "got {got}, published {payload}");
    }
    servers.shutdown().await
}

/// A token minted by the harness is accepted by an edge configured with the same secret.
#[tokio::test]
async fn minted_token_authenticates_against_jwt_edge() -> Result<()> {
    const SECRET: &str = "harness-secret-0123456789";
    const PARTITIONS: u32 = 4;
    let mut config = ServersConfig::dev(PARTITIONS, 1);
    config.edge = EdgeConfig { partitions: PARTITIONS, ..EdgeConfig::with_jwt_secret(SECRET) };
    let servers = Servers::start_with(Arc::new(MemoryLog::new(PARTITIONS, 1_000)), config).await?;
    let mut ws = servers.ws_client(0).await?;
    ws.auth_token(&mint_token(SECRET, "alice", Duration::from_secs(60))?, "alice").await?;
    servers.shutdown().await
}

/// A client that is sent nothing sees no frame, and the absence check does not swallow a later frame.
#[tokio::test]
async fn expect_no_frame_within_passes_on_silence() -> Result<()> {
    let servers = Servers::dev(1).await?;
    let mut ws: WsClient = servers.ws_client(0).await?;
    ws.auth_dev("u1").await?;
    ws.subscribe("quiet").await?;
    ws.expect_no_frame_within(Duration::from_millis(100)).await?;
    ws.send_json(&json!({"action": "ping"})).await?;
    ws.expect_type("pong").await?;
    servers.shutdown().await
}

/// A restarted Redis listens on the same port and starts empty.
#[tokio::test]
async fn redis_restart_keeps_the_port_and_loses_the_data() -> Result<()> {
    let mut redis = RedisServer::start().await?;
    let port = redis.port();
    let mut conn = redis.connection().await?;
    within("SET", redis::cmd("SET").arg("k").arg("v").exec_async(&mut conn)).await??;
    redis.restart().await?;
    ensure!(redis.port() == port && redis.url() == format!("redis://127.0.0.1:{port}"));
    let mut conn = redis.connection().await?;
    let value: Option<String> = within("GET", redis::cmd("GET").arg("k").query_async(&mut conn)).await??;
    ensure!(value.is_none(), "data survived the restart: {value:?}");
    Ok(())
}
