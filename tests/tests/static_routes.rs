//! The edge's plain-HTTP routes, over raw HTTP/1.1: the browser client on every edge, the demo page and its
//! publish endpoint only where `crier dev` enables them.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{Context, Result, ensure};
use crier_edge::EdgeConfig;
use crier_proto::partition::DEFAULT_PARTITIONS;
use crier_store::log::{DEFAULT_MAX_LEN, MemoryLog};
use crier_tests::{Servers, within};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Sends one request (`Connection: close`) and returns the status code and the whole response text.
async fn request(addr: SocketAddr, head: &str, body: &str) -> Result<(u16, String)> {
    let mut stream = within(format!("connecting to {addr}"), TcpStream::connect(addr)).await??;
    let request = format!(
        "{head}\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    within("sending the request", stream.write_all(request.as_bytes())).await??;
    let mut response = String::new();
    within("the response", stream.read_to_string(&mut response)).await??;
    let status = response.split(' ').nth(1).and_then(|s| s.parse().ok()).context("no status line")?;
    Ok((status, response))
}

/// Every edge serves `/crier.js` (to any origin) and its types; an edge outside `crier dev` has no demo page
/// and no publish endpoint.
#[tokio::test]
async fn client_library_is_on_every_edge_and_the_demo_only_in_dev() -> Result<()> {
    let servers = Servers::dev(1).await?;
    let addr = servers.edge_addr(0);
    let (status, js) = request(addr, "GET /crier.js HTTP/1.1", "").await?;
    ensure!(status == 200, "GET /crier.js: {js}");
    ensure!(
        js.contains("content-type: text/javascript") && js.contains("access-control-allow-origin: *"),
        "{js}"
    );
    ensure!(js.contains("export class CrierClient"), "not the client");
    let (status, types) = request(addr, "GET /crier.d.ts HTTP/1.1", "").await?;
    ensure!(status == 200 && types.contains("export declare class CrierClient"), "{types}");
    let (status, _) = request(addr, "GET / HTTP/1.1", "").await?;
    ensure!(status == 404, "GET / on a non-dev edge: {status}");
    let publish = "POST /dev/publish HTTP/1.1\r\nContent-Type: application/json";
    let (status, _) = request(addr, publish, r#"{"conversationId":"c1","payload":{}}"#).await?;
    ensure!(status == 404, "POST /dev/publish on a non-dev edge: {status}");
    servers.shutdown().await
}

/// A dev edge serves the demo page and publishes JSON posts through the broker's publisher; other content
/// types are refused, so a foreign page cannot post without a CORS preflight.
#[tokio::test]
async fn dev_edge_serves_the_demo_and_publishes_json_only() -> Result<()> {
    let log = Arc::new(MemoryLog::new(DEFAULT_PARTITIONS, DEFAULT_MAX_LEN));
    let mut servers = Servers::start(log, 0).await?;
    let edge = servers.add_demo_edge(EdgeConfig::dev()).await?;
    let addr = servers.edge_addr(edge);
    let (status, page) = request(addr, "GET / HTTP/1.1", "").await?;
    ensure!(status == 200 && page.contains("content-type: text/html"), "GET /: {status}");
    ensure!(page.contains(r#"<meta name="crier-ws-path" content="/api/ws">"#), "ws path not filled in");
    let body = r#"{"conversationId":"c1","payload":{"type":"task-completed"}}"#;
    let json = "POST /dev/publish HTTP/1.1\r\nContent-Type: application/json";
    let (status, answer) = request(addr, json, body).await?;
    ensure!(status == 200 && answer.contains(r#""position":""#), "{answer}");
    let form = "POST /dev/publish HTTP/1.1\r\nContent-Type: text/plain";
    let (status, _) = request(addr, form, body).await?;
    ensure!(status == 415, "text/plain publish: {status}");
    let (status, _) = request(addr, "GET /dev/publish HTTP/1.1", "").await?;
    ensure!(status == 405, "GET /dev/publish: {status}");
    servers.shutdown().await
}
