//! Closes against a real dev edge: every close code the edge sends reaches a client that is still sending
//! (the lingering close), and a client's own close is echoed with its code. A bystander on the same edge keeps
//! receiving throughout.

use std::sync::Arc;

use anyhow::{Result, ensure};
use crier_edge::EdgeConfig;
use crier_store::log::MemoryLog;
use crier_tests::raw_ws::{OP_CLOSE, OP_TEXT, ServerFrame, client_frame, text_frame};
use crier_tests::tungstenite::Message;
use crier_tests::tungstenite::protocol::CloseFrame;
use crier_tests::{Bystander, RawWs, Servers, ServersConfig};

async fn servers_with(edge: EdgeConfig) -> Result<(Servers, Bystander)> {
    let config = ServersConfig { edge: EdgeConfig { partitions: 8, ..edge }, ..ServersConfig::dev(8, 1) };
    let servers = Servers::start_with(Arc::new(MemoryLog::new(8, 10_000)), config).await?;
    let mut ws = servers.ws_client(0).await?;
    ws.auth_dev("calm").await?;
    let bystander = Bystander::subscribe(ws, servers.publish_client().await?, "bystander").await?;
    Ok((servers, bystander))
}

/// A raw connection authenticated as `user` (its `ready` and `authenticated` frames read).
async fn raw_client(servers: &Servers, user: &str) -> Result<RawWs> {
    let mut raw = RawWs::connect(servers.edge_addr(0), "/api/ws").await?;
    raw.write(&text_frame(&format!(r#"{{"action":"auth","userId":"{user}"}}"#))).await?;
    for expected in ["ready", "authenticated"] {
        let frame = raw.next_frame().await?;
        let text = frame.as_ref().map(ServerFrame::text).unwrap_or_default();
        ensure!(text.contains(&format!(r#""type":"{expected}""#)), "expected {expected}, got {frame:?}");
    }
    Ok(raw)
}

/// A client that writes 2,000 `ping` frames at once without reading receives its pongs, then the
/// `Rate limit exceeded` error frame and close 4029, and then a clean end of stream, not a reset.
#[tokio::test]
async fn flooding_client_receives_rate_limit_error_and_4029() -> Result<()> {
    let (servers, mut bystander) = servers_with(EdgeConfig::dev()).await?;
    let mut raw = raw_client(&servers, "flooder").await?;
    let flood: Vec<u8> = (0..2_000).flat_map(|_| text_frame(r#"{"action":"ping"}"#)).collect();
    raw.write(&flood).await?;
    let frames = raw.frames_until_close().await?;
    let (close, texts) = frames.split_last().unzip();
    ensure!(close.and_then(ServerFrame::close_code) == Some(4029), "last frames {:?}", frames.last());
    let texts = texts.unwrap_or_default();
    ensure!(texts.iter().all(|f| f.opcode == OP_TEXT));
    let error = texts.last().map(ServerFrame::text);
    ensure!(error.as_deref() == Some(r#"{"type":"error","message":"Rate limit exceeded"}"#), "{error:?}");
    ensure!((45..200).contains(&texts.len()), "{} frames before the limit", texts.len());
    ensure!(raw.ends_cleanly().await?, "the edge reset the connection after its close frame");
    bystander.check().await?;
    servers.shutdown().await
}

/// A client that writes a 2 MiB message in one go (over the 64 KiB limit) receives close 1009 and a clean
/// end of stream.
#[tokio::test]
async fn two_mib_message_receives_1009() -> Result<()> {
    let (servers, mut bystander) = servers_with(EdgeConfig::dev()).await?;
    let mut raw = raw_client(&servers, "big").await?;
    raw.write(&client_frame(OP_TEXT, true, &vec![b'x'; 2 * 1024 * 1024])).await?;
    let frames = raw.frames_until_close().await?;
    let last = frames.last();
    ensure!(last.is_some_and(|f| f.opcode == OP_CLOSE && f.close_code() == Some(1009)), "{last:?}");
    ensure!(raw.ends_cleanly().await?, "the edge reset the connection after its close frame");
    bystander.check().await?;
    servers.shutdown().await
}

/// A client that closes with 4100 receives its close echoed with 4100 (a browser would otherwise report
/// 1006).
#[tokio::test]
async fn client_close_is_echoed_with_its_code() -> Result<()> {
    let (servers, mut bystander) = servers_with(EdgeConfig::dev()).await?;
    let mut ws = servers.ws_client(0).await?;
    ws.auth_dev("leaver").await?;
    ws.subscribe("c1").await?;
    let frame = CloseFrame { code: 4100.into(), reason: "bye".into() };
    ws.send_raw(Message::Close(Some(frame))).await?;
    let code = ws.expect_close().await?;
    ensure!(code == Some(4100), "close echo {code:?}");
    drop(ws);
    bystander.check().await?;
    servers.shutdown().await
}
