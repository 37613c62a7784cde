//! `--idle-timeout` against a real dev edge with a short timeout: a session without client messages gets
//! `Session timeout` and close 1000; WebSocket pongs do not keep it alive. (Messages postponing the close
//! are tested on a paused clock in `edge/src/session/timers`.)

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Result, bail, ensure};
use crier_edge::EdgeConfig;
use crier_store::log::MemoryLog;
use crier_tests::tungstenite::Message;
use crier_tests::{Servers, ServersConfig, WsClient, within_for};
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

/// A session sending only WebSocket pongs is closed at the idle timeout: pongs are not activity. (That each
/// client message starts the idle clock again is tested on a paused clock in the edge's session timers.)
#[tokio::test]
async fn pongs_are_not_activity() -> Result<()> {
    let servers = servers().await?;
    let mut ponger = servers.ws_client(0).await?;
    ponger.auth_dev("ponger").await?;
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
    let (message, after) =
        within_for(Duration::from_secs(3), "the ponging session's close", ponging).await??;
    ensure!(matches!(&message, Some(Message::Text(t)) if t.as_str() == SESSION_TIMEOUT), "{message:?}");
    ensure!(after >= IDLE, "pong-only session closed after {after:?}");
    servers.shutdown().await
}
