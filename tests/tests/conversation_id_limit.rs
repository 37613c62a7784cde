//! `--max-conversation-id-bytes` end to end: the broker (Publish, AccessService) and the edge (subscribe)
//! apply the configured limit, not the default of 256, and a refused subscribe leaves the connection open.

use std::sync::Arc;

use anyhow::{Result, ensure};
use crier_store::log::MemoryLog;
use crier_tests::{Servers, ServersConfig};
use serde_json::json;

/// Broker and edge with a conversation-id limit of `max` bytes, dev auth, open access.
async fn servers_with_limit(max: usize) -> Result<Servers> {
    let mut config = ServersConfig::dev(8, 1);
    config.broker.max_conversation_id_bytes = max;
    config.edge.max_conversation_id_bytes = max;
    Servers::start_with(Arc::new(MemoryLog::new(8, 1_000)), config).await
}

/// With a 16-byte limit, a 17-byte id is INVALID_ARGUMENT with the reason at Publish and ListGrants, and an
/// `Invalid conversationId` error frame at subscribe; the same session then subscribes to a 16-byte id and
/// receives what is published to it.
#[tokio::test]
async fn smaller_limit_refuses_longer_ids_at_publish_and_subscribe() -> Result<()> {
    let servers = servers_with_limit(16).await?;
    let (at_limit, over) = ("c".repeat(16), "c".repeat(17));
    let mut publisher = servers.publish_client().await?;
    let status = publisher.try_publish(&over, b"{}".to_vec(), "").await?.unwrap_err();
    ensure!(status.code() == tonic::Code::InvalidArgument, "{status:?}");
    ensure!(status.message() == "invalid conversation_id: 17 bytes, at most 16 allowed", "{status:?}");
    let listed = servers.access_client().await?.list_grants(&over).await?.unwrap_err();
    ensure!(listed.code() == tonic::Code::InvalidArgument, "{listed:?}");
    ensure!(listed.message() == "invalid conversation_id: 17 bytes, at most 16 allowed", "{listed:?}");

    let mut ws = servers.ws_client(0).await?;
    ws.auth_dev("u1").await?;
    ws.send_json(&json!({"action": "subscribe", "conversationId": over})).await?;
    ensure!(ws.recv_text().await? == r#"{"type":"error","message":"Invalid conversationId"}"#);
    ws.subscribe(&at_limit).await?;
    let payload = json!({"type": "job-status", "status": "completed"});
    publisher.publish(&at_limit, &payload).await?;
    ensure!(ws.recv_json().await? == payload);
    servers.shutdown().await
}

/// A limit above the default lets a 300-byte id through publish and subscribe.
#[tokio::test]
async fn larger_limit_admits_ids_beyond_the_default() -> Result<()> {
    let servers = servers_with_limit(512).await?;
    let long = "x".repeat(300);
    let mut ws = servers.ws_client(0).await?;
    ws.auth_dev("u1").await?;
    ws.subscribe(&long).await?;
    let payload = json!({"type": "task-completed"});
    servers.publish_client().await?.publish(&long, &payload).await?;
    ensure!(ws.recv_json().await? == payload);
    servers.shutdown().await
}
