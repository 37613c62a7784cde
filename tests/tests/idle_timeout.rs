//! `--idle-timeout` against a real dev edge with a short timeout: a session without client messages gets
//! `Session timeout` and close 1000; `{"action":"ping"}` keeps it alive, WebSocket pongs do not.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Result, bail, ensure};
use crier_edge::EdgeConfig;
use crier_store::log::MemoryLog;
use crier_tests::tungstenite::Message;
use crier_tests::{Servers, ServersConfig, WsClient, within_for};
use serde_json::json;
use tokio::time::Instant;

const IDLE: Duration = Duration::from_millis(600);
const SESSION_TIMEOUT: &str = r#"{"type":"error","message":"Session timeout"}"#;

async fn servers() -> Result<Servers> {
    let mut edge = EdgeConfig { partitions: 8, ..EdgeConfig::dev() };
    edge.limits.idle_timeout = Some(IDLE);
    let config = ServersConfig { edge, ..ServersConfig::dev(8, 1) };
    Servers::start_with(Arc::new(MemoryLog::new(8, 1_000)), config).await
}

/// Expects the idle-timeout error frame, then close 1000 with reason `Session timeout`.
async fn expect_session_timeout(ws: &mut WsClient) -> Result<()> {
    ensure!(ws.recv_text().await? == SESSION_TIMEOUT);
    match within_for(Duration::from_secs(3), "the idle close", ws.next_message()).await?? {
        Some(Message::Close(Some(frame))) => {
            ensure!(u16::from(frame.code) == 1000 && frame.reason.as_str() == "Session timeout", "{frame:?}");
            Ok(())
        }
        other => bail!("expected close 1000 Session timeout, got {other:?}"),
    }
}

/// A subscribed session from which no message arrives is told `Session timeout` and closed with 1000, no
/// sooner than the timeout after its last message.
#[tokio::test]
async fn idle_session_is_closed_with_session_timeout() -> Result<()> {
    let servers = servers().await?;
    let mut ws = servers.ws_client(0).await?;
    ws.auth_dev("idle").await?;
    // Taken before the last message is sent: the edge's clock starts when it arrives, later.
    let last_message = Instant::now();
    ws.subscribe("c1").await?;
    expect_session_timeout(&mut ws).await?;
    ensure!(last_message.elapsed() >= IDLE, "closed after {:?}", last_message.elapsed());
    servers.shutdown().await
}

/// `{"action":"ping"}` every 150 ms keeps a session open for twice the 600 ms timeout; a session sending
/// only WebSocket pongs meanwhile is closed; once the pinging stops, that session is closed too.
#[tokio::test]
async fn pings_are_activity_and_pongs_are_not() -> Result<()> {
    let servers = servers().await?;
    let mut pinger = servers.ws_client(0).await?;
    pinger.auth_dev("pinger").await?;
    let mut ponger = servers.ws_client(0).await?;
    ponger.auth_dev("ponger").await?;
    let pinging = async {
        for _ in 0..8 {
            // Pacing, not synchronisation: the point is time passing between messages.
            tokio::time::sleep(Duration::from_millis(150)).await;
            pinger.send_json(&json!({"action": "ping"})).await?;
            pinger.expect_type("pong").await?;
        }
        anyhow::Ok(())
    };
    let ponging = async {
        let started = Instant::now();
        let mut every = tokio::time::interval(Duration::from_millis(100));
        loop {
            every.tick().await;
            ponger.send_raw(Message::Pong(Vec::new().into())).await?;
            if let Ok(message) = tokio::time::timeout(Duration::from_millis(50), ponger.next_message()).await
            {
                return anyhow::Ok((message?, started.elapsed()));
            }
        }
    };
    let ponging = within_for(Duration::from_secs(3), "the ponging session's close", ponging);
    let (pinged, ponged) = tokio::join!(pinging, ponging);
    pinged?;
    let (message, after) = ponged??;
    ensure!(matches!(&message, Some(Message::Text(t)) if t.as_str() == SESSION_TIMEOUT), "{message:?}");
    ensure!(after >= IDLE, "pong-only session closed after {after:?}");
    expect_session_timeout(&mut pinger).await?;
    servers.shutdown().await
}
