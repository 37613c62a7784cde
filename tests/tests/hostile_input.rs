//! Limits and hostile input (DESIGN.md §6) against a real dev edge: each rejection has its exact error frame
//! or close code and stays local to its connection, while a bystander on the same edge keeps receiving.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Result, bail, ensure};
use crier_edge::{EdgeConfig, Limits, OriginPolicy};
use crier_store::log::MemoryLog;
use crier_tests::raw_ws::{OP_CONTINUATION, OP_TEXT, ServerFrame, client_frame, text_frame};
use crier_tests::tungstenite::protocol::frame::Frame;
use crier_tests::tungstenite::protocol::frame::coding::{Data, OpCode};
use crier_tests::tungstenite::{Error as WsError, Message};
use crier_tests::{Bystander, RawWs, Servers, ServersConfig, WsClient, within_for};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn servers_with(edge: EdgeConfig) -> Result<(Servers, Bystander)> {
    let config = ServersConfig { edge: EdgeConfig { partitions: 8, ..edge }, ..ServersConfig::dev(8, 1) };
    let servers = Servers::start_with(Arc::new(MemoryLog::new(8, 10_000)), config).await?;
    let mut ws = servers.ws_client(0).await?;
    ws.auth_dev("calm").await?;
    let bystander = Bystander::subscribe(ws, servers.publish_client().await?, "bystander").await?;
    Ok((servers, bystander))
}

fn limits(f: impl FnOnce(&mut Limits)) -> EdgeConfig {
    let mut config = EdgeConfig::dev();
    f(&mut config.limits);
    config
}

/// A user's third connection, over a limit of two, is refused with an error frame and 4029.
#[tokio::test]
async fn per_user_connection_limit_closes_with_4029() -> Result<()> {
    let (servers, mut bystander) = servers_with(limits(|l| l.max_connections_per_user = 2)).await?;
    let mut kept = Vec::new();
    for _ in 0..2 {
        let mut ws = servers.ws_client(0).await?;
        ws.auth_dev("greedy").await?;
        kept.push(ws);
    }
    let mut third = servers.ws_client(0).await?;
    third.expect_type("ready").await?;
    third.send_json(&json!({"action": "auth", "userId": "greedy"})).await?;
    ensure!(third.recv_text().await? == r#"{"type":"error","message":"Too many connections"}"#);
    ensure!(third.expect_close().await? == Some(4029));
    bystander.check().await?;
    servers.shutdown().await
}

/// A subscription over the per-connection limit is refused with an error frame naming it; the connection
/// and its earlier subscriptions stay.
#[tokio::test]
async fn subscription_limit_refuses_with_an_error_frame() -> Result<()> {
    let (servers, mut bystander) = servers_with(limits(|l| l.max_subscriptions = 3)).await?;
    let mut ws = servers.ws_client(0).await?;
    ws.auth_dev("u1").await?;
    for c in ["a", "b", "c"] {
        ws.subscribe(c).await?;
    }
    ws.send_json(&json!({"action": "subscribe", "conversationId": "d"})).await?;
    ensure!(
        ws.recv_text().await?
            == r#"{"type":"error","message":"Too many subscriptions","conversationId":"d"}"#
    );
    ws.subscribe("a").await?;
    bystander.check().await?;
    servers.shutdown().await
}

/// A message over `max_frame_bytes` closes the connection with 1009.
#[tokio::test]
async fn oversized_frame_closes_with_1009() -> Result<()> {
    let (servers, mut bystander) =
        servers_with(EdgeConfig { max_frame_bytes: 1_024, ..EdgeConfig::dev() }).await?;
    let mut ws = servers.ws_client(0).await?;
    ws.auth_dev("u1").await?;
    ws.send_text(&"x".repeat(2_000)).await?;
    ensure!(ws.expect_close().await? == Some(1009));
    bystander.check().await?;
    servers.shutdown().await
}

/// A binary frame gets an error frame; the connection stays usable.
#[tokio::test]
async fn binary_frame_gets_an_error_frame() -> Result<()> {
    let (servers, mut bystander) = servers_with(EdgeConfig::dev()).await?;
    let mut ws = servers.ws_client(0).await?;
    ws.auth_dev("u1").await?;
    ws.send_raw(Message::binary(vec![1, 2, 3])).await?;
    ensure!(ws.recv_text().await? == r#"{"type":"error","message":"Binary frames are not supported"}"#);
    ws.subscribe("c1").await?;
    bystander.check().await?;
    servers.shutdown().await
}

/// A text frame that is not UTF-8 closes the connection with 1007.
#[tokio::test]
async fn invalid_utf8_closes_with_1007() -> Result<()> {
    let (servers, mut bystander) = servers_with(EdgeConfig::dev()).await?;
    let mut ws = servers.ws_client(0).await?;
    ws.auth_dev("u1").await?;
    let frame = Frame::message(vec![b'{', 0xff, 0xfe, b'}'], OpCode::Data(Data::Text), true);
    ws.send_raw(Message::Frame(frame)).await?;
    ensure!(ws.expect_close().await? == Some(1007));
    bystander.check().await?;
    servers.shutdown().await
}

/// 1,000 garbage frames each get "Invalid message" (rate limit raised out of the way); the connection still
/// subscribes and receives afterwards.
#[tokio::test]
async fn a_thousand_garbage_frames_leave_the_edge_serving() -> Result<()> {
    let edge = limits(|l| (l.messages_per_second, l.message_burst) = (1_000_000, 1_000_000));
    let (servers, mut bystander) = servers_with(edge).await?;
    let mut ws = servers.ws_client(0).await?;
    ws.auth_dev("u1").await?;
    for i in 0..1_000 {
        ws.send_text(&format!("{{garbage {i} \u{1}")).await?;
    }
    for _ in 0..1_000 {
        ensure!(ws.recv_text().await? == r#"{"type":"error","message":"Invalid message"}"#);
    }
    bystander.check().await?;
    ws.subscribe("after-garbage").await?;
    servers.shutdown().await
}

/// A flood beyond the burst is answered with "Rate limit exceeded" and close 4029.
#[tokio::test]
async fn message_flood_closes_with_4029() -> Result<()> {
    let (servers, mut bystander) = servers_with(EdgeConfig::dev()).await?;
    let mut ws = servers.ws_client(0).await?;
    ws.auth_dev("flooder").await?;
    for _ in 0..200 {
        if ws.send_json(&json!({"action": "ping"})).await.is_err() {
            break;
        }
    }
    let mut pongs = 0;
    loop {
        let frame = ws.recv_json().await?;
        if frame["type"] == "pong" {
            pongs += 1;
            continue;
        }
        ensure!(frame == json!({"type": "error", "message": "Rate limit exceeded"}), "{frame}");
        break;
    }
    // The burst of 50 covers the auth frame too.
    ensure!((45..200).contains(&pongs), "{pongs} pongs before the limit");
    ensure!(ws.expect_close().await? == Some(4029));
    bystander.check().await?;
    servers.shutdown().await
}

/// WebSocket pings are charged like messages: 200 of them beyond the burst close the connection with 4029.
#[tokio::test]
async fn ping_frame_flood_closes_with_4029() -> Result<()> {
    let (servers, mut bystander) = servers_with(EdgeConfig::dev()).await?;
    let mut ws = servers.ws_client(0).await?;
    ws.auth_dev("pinger").await?;
    for _ in 0..200 {
        if ws.send_raw(Message::Ping(vec![1].into())).await.is_err() {
            break;
        }
    }
    ensure!(ws.expect_close().await? == Some(4029));
    bystander.check().await?;
    servers.shutdown().await
}

/// Non-final fragments are charged like messages: a message sent as 200 unfinished fragments closes the
/// connection with 4029 long before it is complete.
#[tokio::test]
async fn fragment_flood_closes_with_4029() -> Result<()> {
    let (servers, mut bystander) = servers_with(EdgeConfig::dev()).await?;
    let mut raw = RawWs::connect(servers.edge_addr(0), "/api/ws").await?;
    let mut bytes = text_frame(r#"{"action":"auth","userId":"fragmenter"}"#);
    bytes.extend(client_frame(OP_TEXT, false, b"{"));
    for _ in 0..199 {
        bytes.extend(client_frame(OP_CONTINUATION, false, b" "));
    }
    raw.write(&bytes).await?;
    let frames = raw.frames_until_close().await?;
    let close = frames.last().and_then(ServerFrame::close_code);
    ensure!(close == Some(4029), "last frame {:?}", frames.last());
    bystander.check().await?;
    servers.shutdown().await
}

/// A handshake from a foreign origin is refused with HTTP 403 before the upgrade; a listed one passes.
#[tokio::test]
async fn cross_origin_handshake_is_refused_with_403() -> Result<()> {
    let origins = OriginPolicy::AllowList(vec!["https://app.example".into()]);
    let (servers, mut bystander) = servers_with(EdgeConfig { origins, ..EdgeConfig::dev() }).await?;
    let url = servers.edge_ws_url(0);
    let refused = WsClient::connect_with_headers(&url, &[("Origin", "https://evil.example")]).await;
    let status = match refused.as_ref().map_err(|e| e.downcast_ref::<WsError>()) {
        Err(Some(WsError::Http(response))) => response.status().as_u16(),
        Err(_) => bail!("unexpected failure: {:?}", refused.err()),
        Ok(_) => bail!("cross-origin handshake was accepted"),
    };
    ensure!(status == 403, "status {status}");
    let mut ok = WsClient::connect_with_headers(&url, &[("Origin", "https://app.example")]).await?;
    ok.auth_dev("u1").await?;
    bystander.check().await?;
    servers.shutdown().await
}

/// A client that never finishes its request head is disconnected after the handshake timeout.
#[tokio::test]
async fn slow_handshake_is_cut_off() -> Result<()> {
    let edge = limits(|l| l.handshake_timeout = Duration::from_millis(300));
    let (servers, mut bystander) = servers_with(edge).await?;
    let mut tcp = tokio::net::TcpStream::connect(servers.edge_addr(0)).await?;
    tcp.write_all(b"GET /api/ws HTTP/1.1\r\nHost: x\r\n").await?;
    let mut buf = Vec::new();
    within_for(Duration::from_secs(3), "the edge to drop a slow handshake", tcp.read_to_end(&mut buf))
        .await??;
    bystander.check().await?;
    servers.shutdown().await
}

/// A full edge answers new handshakes with HTTP 503 before the upgrade; existing sessions are unaffected.
#[tokio::test]
async fn full_edge_refuses_handshakes_with_503() -> Result<()> {
    let (servers, mut bystander) = servers_with(limits(|l| l.max_connections = 2)).await?;
    let _second = servers.ws_client(0).await?;
    let refused = servers.ws_client(0).await;
    match refused.as_ref().map_err(|e| e.downcast_ref::<WsError>()) {
        Err(Some(WsError::Http(response))) => ensure!(response.status().as_u16() == 503),
        other => bail!("expected HTTP 503, got {:?}", other.map(drop)),
    }
    bystander.check().await?;
    servers.shutdown().await
}

/// A peer that completes the handshake and then never answers the server's pings is disconnected after
/// ping interval + pong timeout; a live client, whose WebSocket library answers pings while it reads, stays
/// connected and keeps receiving.
#[tokio::test]
async fn dead_peer_is_disconnected_after_missed_pong() -> Result<()> {
    let edge = limits(|l| {
        (l.ping_interval, l.pong_timeout) = (Duration::from_millis(100), Duration::from_millis(100))
    });
    let config = ServersConfig { edge: EdgeConfig { partitions: 8, ..edge }, ..ServersConfig::dev(8, 1) };
    let servers = Servers::start_with(Arc::new(MemoryLog::new(8, 1_000)), config).await?;
    let mut live = servers.ws_client(0).await?;
    live.auth_dev("live").await?;
    live.subscribe("still-here").await?;
    let mut tcp = tokio::net::TcpStream::connect(servers.edge_addr(0)).await?;
    let request = "GET /api/ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
        Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";
    tcp.write_all(request.as_bytes()).await?;
    let mut buf = Vec::new();
    // The server writes its 101, `ready` and pings, then gives up and closes: read_to_end returns. The
    // live client reads meanwhile (answering pings) and sees no frame.
    let silent =
        within_for(Duration::from_secs(3), "the edge to drop a silent peer", tcp.read_to_end(&mut buf));
    let (silent, quiet) = tokio::join!(silent, live.expect_no_frame_within(Duration::from_millis(800)));
    silent??;
    quiet?;
    ensure!(buf.starts_with(b"HTTP/1.1 101"), "{}", String::from_utf8_lossy(&buf));
    let payload = json!({"type": "job-status"});
    servers.publish_client().await?.publish("still-here", &payload).await?;
    ensure!(live.recv_json().await? == payload);
    servers.shutdown().await
}
