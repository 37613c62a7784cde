//! A dependency that answers slowly, or a client that stops reading, costs only the sessions that depend on
//! it: a Redis node behind a link adding 200 ms each way delays only its own partitions, and metrics
//! scrapes that stall or reset never stall delivery. (A hanging JWKS endpoint: `jwks_https.rs`.)

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Result, ensure};
use crier_proto::{node_of, partition};
use crier_store::log::{RedisTopology, Retention};
use crier_tests::redis_server::redis_log;
use crier_tests::{DelayProxy, RedisServer, Servers, within};
use serde_json::json;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpSocket, TcpStream};

const PARTITIONS: u32 = 64;

/// A conversation whose partition lives on node `node` of `nodes`.
fn conversation_on(node: usize, nodes: usize) -> String {
    (0..)
        .map(|i| format!("conv-{i}"))
        .find(|c| node_of(partition(c, PARTITIONS), nodes) == node)
        .unwrap_or_default()
}

/// Two standalone nodes, the second behind a link that turns slow (200 ms each way) once everything is
/// subscribed. A notification published on the slow node first is still on its way when one published on
/// the fast node afterwards reaches the same session: neither the broker nor the edge queues the fast node's
/// traffic behind the slow one's. The slow one arrives too, after it.
#[tokio::test]
async fn slow_redis_node_delays_only_its_own_partitions() -> Result<()> {
    let (fast, slow) = (RedisServer::start().await?, RedisServer::start().await?);
    let proxy = DelayProxy::start(SocketAddr::from(([127, 0, 0, 1], slow.port()))).await?;
    let topology = RedisTopology::Nodes(vec![fast.url(), proxy.redis_url()]);
    let servers = Servers::start(redis_log(topology, PARTITIONS, Retention::default()).await?, 1).await?;
    let (on_fast, on_slow) = (conversation_on(0, 2), conversation_on(1, 2));
    let mut ws = servers.ws_client(0).await?;
    ws.auth_dev("u1").await?;
    ws.subscribe(&on_slow).await?;
    ws.subscribe(&on_fast).await?;
    proxy.slow_down(Duration::from_millis(200));
    let mut slow_publisher = servers.publish_client().await?;
    let slow_publish = {
        let on_slow = on_slow.clone();
        tokio::spawn(async move { slow_publisher.publish(&on_slow, &json!({"to": "slow"})).await })
    };
    proxy.sent(br#"{"to":"slow"}"#).await?;
    servers.publish_client().await?.publish(&on_fast, &json!({"to": "fast"})).await?;
    let first = ws.recv_json().await?;
    ensure!(first["to"] == "fast", "the fast node's notification waited for the slow node's: {first}");
    ensure!(ws.recv_json().await?["to"] == "slow");
    within("the slow publish", slow_publish).await???;
    servers.shutdown().await
}

/// Opens a scrape that never reads its answers: many pipelined `GET /metrics` on a socket with a small
/// receive buffer, so the admin server's writes to it block.
async fn stalled_scrape(admin: SocketAddr) -> Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.set_recv_buffer_size(4096)?;
    let mut stream = socket.connect(admin).await?;
    let request = format!("GET /metrics HTTP/1.1\r\nHost: {admin}\r\n\r\n").repeat(200);
    stream.write_all(request.as_bytes()).await?;
    Ok(stream)
}

/// Scrapes that stall (never read, or send half a request) or reset mid-answer: delivery goes on at full
/// speed meanwhile, and a well-behaved scrape is still answered.
#[tokio::test]
async fn stalled_and_failed_scrapes_do_not_stall_delivery() -> Result<()> {
    let servers = Servers::dev(1).await?;
    let admin = servers.admin().await?;
    let mut ws = servers.ws_client(0).await?;
    ws.auth_dev("u1").await?;
    ws.subscribe("c1").await?;
    let mut publisher = servers.publish_client().await?;
    publisher.publish("c1", &json!({"seq": 0})).await?;
    ensure!(ws.recv_json().await?["seq"] == 0);
    let mut stalled = Vec::new();
    for _ in 0..20 {
        stalled.push(stalled_scrape(admin.addr()).await?);
    }
    let mut half = TcpStream::connect(admin.addr()).await?;
    half.write_all(b"GET /metr").await?;
    // Closed with the answers unread in its receive buffer: the kernel resets the connection.
    drop(stalled_scrape(admin.addr()).await?);
    for seq in 1..=200 {
        publisher.publish("c1", &json!({"seq": seq})).await?;
        ensure!(ws.recv_json().await?["seq"] == seq, "notification {seq}");
    }
    let scrape = admin.get("/metrics").await?;
    ensure!(scrape.status == 200, "a well-behaved scrape beside stalled ones: {}", scrape.status);
    drop((stalled, half));
    servers.shutdown().await
}
