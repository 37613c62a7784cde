//! Payloads that are not UTF-8 (issue 17, item 3): the broker refuses them at `Publish` on every log, and an
//! edge that finds one in a stream anyway (an older broker, another writer) skips and counts it instead of
//! sending a text frame every conforming client would fail the connection on (1007).

use std::sync::Arc;

use anyhow::{Result, ensure};
use bytes::Bytes;
use crier_proto::partition;
use crier_store::log::{MemoryLog, PartitionedLog};
use crier_tests::{RedisServer, Servers, ServersConfig, WsClient, stream_entry};
use serde_json::json;

/// A JSON object whose string holds the byte 0xff.
const INVALID: &[u8] = b"{\"a\":\"\xff\"}";

/// `Publish` answers `INVALID_ARGUMENT` naming UTF-8 for a JSON string holding an invalid byte, on the memory
/// and the Redis log alike, and appends nothing: the subscriber's next frame is the next valid notification.
#[tokio::test]
async fn publish_refuses_invalid_utf8_inside_json_strings() -> Result<()> {
    let redis = RedisServer::start().await?;
    let logs: [Arc<dyn PartitionedLog>; 2] =
        [Arc::new(MemoryLog::new(8, 1_000)), redis.redis_log(8, 1_000).await?];
    for log in logs {
        let servers = Servers::start_with(log, ServersConfig::dev(8, 1)).await?;
        let mut ws = servers.ws_client(0).await?;
        ws.auth_dev("u1").await?;
        ws.subscribe("c1").await?;
        let mut publisher = servers.publish_client().await?;
        let refused = publisher.try_publish("c1", INVALID.to_vec(), "").await?;
        let status = refused.err().ok_or_else(|| anyhow::anyhow!("invalid UTF-8 was accepted"))?;
        ensure!(status.code() == tonic::Code::InvalidArgument, "{status:?}");
        ensure!(status.message().contains("not valid UTF-8"), "{}", status.message());
        publisher.publish_raw("c1", r#"{"type":"after"}"#).await?;
        ensure!(ws.recv_text().await? == r#"{"type":"after"}"#);
        servers.shutdown().await?;
    }
    Ok(())
}

/// An entry whose payload is not UTF-8, written to the Redis stream behind the broker's back, is skipped
/// (counted as `crier_edge_drops_total{reason="invalid_utf8"}`) and the connection stays usable: the next
/// valid notification arrives as the next frame, live and on recovery.
#[tokio::test]
async fn edge_skips_and_counts_entries_that_are_not_utf8() -> Result<()> {
    let redis = RedisServer::start().await?;
    let servers = Servers::start_with(redis.redis_log(8, 1_000).await?, ServersConfig::dev(8, 1)).await?;
    let admin = servers.admin().await?;
    let mut ws = positions_client(&servers).await?;
    let subscribed = ws.subscribe("c1").await?;
    let since = subscribed["position"].as_str().unwrap_or_default().to_owned();
    let entry = stream_entry("c1", Bytes::from_static(INVALID));
    servers.log().append(partition("c1", 8), entry.into(), None).await?;
    servers.publish_client().await?.publish_raw("c1", r#"{"type":"after"}"#).await?;
    let live = ws.recv_json().await?;
    ensure!(live["type"] == "notification" && live["data"] == json!({"type": "after"}), "{live}");
    let series = r#"crier_edge_drops_total{reason="invalid_utf8"}"#;
    ensure!(admin.scrape().await?.value(series)? >= 1.0);
    let mut again = positions_client(&servers).await?;
    let recovered = again.subscribe_since("c1", &since).await?;
    ensure!(recovered["recovered"] == true, "{recovered}");
    let replayed = again.recv_json().await?;
    ensure!(replayed["data"] == json!({"type": "after"}), "{replayed}");
    servers.shutdown().await
}

async fn positions_client(servers: &Servers) -> Result<WsClient> {
    let mut ws = servers.ws_client(0).await?;
    ws.expect_type("ready").await?;
    ws.send_json(&json!({"action": "auth", "userId": "u1", "positions": true})).await?;
    ws.expect_authenticated("u1").await?;
    Ok(ws)
}
