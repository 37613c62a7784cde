//! The whole path, gRPC Publish → partitioned log → edge → WebSocket, as browsers and backends see it.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Result, ensure};
use crier_edge::EdgeConfig;
use crier_proto::keys::PartitionKeys;
use crier_proto::partition;
use crier_store::log::MemoryLog;
use crier_tests::{MonitoredCommand, RedisMonitor, RedisServer, Servers, ServersConfig, WsClient, within};
use serde_json::json;

/// The exact frames of DESIGN.md §2 in dev mode, byte for byte, as the replaced system's clients expect.
#[tokio::test]
async fn dev_mode_speaks_the_replaced_systems_transcript() -> Result<()> {
    let servers = Servers::dev(1).await?;
    let mut ws = servers.ws_client(0).await?;
    ensure!(ws.recv_text().await? == r#"{"type":"ready","message":"Send auth message with JWT token"}"#);
    ws.send_text(r#"{"action":"auth","userId":"u1"}"#).await?;
    ensure!(ws.recv_text().await? == r#"{"type":"authenticated","userId":"u1"}"#);
    ws.send_text(r#"{"action":"subscribe","conversationId":"c1"}"#).await?;
    ensure!(ws.recv_text().await? == r#"{"type":"subscribed","conversationId":"c1"}"#);
    ws.send_text(r#"{"action":"ping"}"#).await?;
    ensure!(ws.recv_text().await? == r#"{"type":"pong"}"#);
    // Verbatim: odd spacing and key order survive, byte for byte.
    let payload = r#"{"type":"job-status", "jobId":"job-123","status":"completed","conversationId":"c1","messageId":"m1"}"#;
    servers.publish_client().await?.publish_raw("c1", payload).await?;
    let got = ws.recv_text().await?;
    ensure!(got == payload, "got {got}");
    ws.send_text(r#"{"action":"unsubscribe","conversationId":"c1"}"#).await?;
    ensure!(ws.recv_text().await? == r#"{"type":"unsubscribed","conversationId":"c1"}"#);
    servers.shutdown().await
}

/// One publish through one broker reaches subscribers of that conversation on two edges over Redis.
#[tokio::test]
async fn publish_reaches_subscribers_on_two_edges() -> Result<()> {
    let redis = RedisServer::start().await?;
    let servers = Servers::start(redis.redis_log(64, 1_000).await?, 2).await?;
    let mut a = servers.ws_client(0).await?;
    let mut b = servers.ws_client(1).await?;
    a.auth_dev("alice").await?;
    b.auth_dev("bob").await?;
    a.subscribe("conv-shared").await?;
    b.subscribe("conv-shared").await?;
    let payload = json!({"type": "research-progress", "progress": 40, "conversationId": "conv-shared"});
    servers.publish_client().await?.publish("conv-shared", &payload).await?;
    ensure!(a.recv_json().await? == payload);
    ensure!(b.recv_json().await? == payload);
    servers.shutdown().await
}

/// Notifications of one conversation arrive in publish order, with none lost or repeated.
#[tokio::test]
async fn notifications_of_a_conversation_arrive_in_publish_order() -> Result<()> {
    let redis = RedisServer::start().await?;
    let servers = Servers::start(redis.redis_log(64, 10_000).await?, 1).await?;
    let mut ws = servers.ws_client(0).await?;
    ws.auth_dev("u1").await?;
    ws.subscribe("ordered").await?;
    let mut publisher = servers.publish_client().await?;
    for seq in 0..300 {
        publisher.publish("ordered", &json!({"type": "job-status", "seq": seq})).await?;
    }
    for seq in 0..300 {
        let got = ws.recv_json().await?;
        ensure!(got["seq"] == seq, "expected seq {seq}, got {got}");
    }
    servers.shutdown().await
}

/// A conversation sharing the subscriber's partition is read but not delivered: the marker published after
/// it is the first frame the subscriber gets.
#[tokio::test]
async fn foreign_conversation_is_not_delivered() -> Result<()> {
    let servers = Servers::dev(1).await?;
    let mine = "mine";
    let foreign = same_partition_as(mine, 64);
    let mut ws = servers.ws_client(0).await?;
    ws.auth_dev("u1").await?;
    ws.subscribe(mine).await?;
    let mut publisher = servers.publish_client().await?;
    publisher.publish(&foreign, &json!({"type": "job-status", "secret": true})).await?;
    publisher.publish(mine, &json!({"type": "job-status", "marker": true})).await?;
    let got = ws.recv_json().await?;
    ensure!(got["marker"] == true, "the foreign notification leaked: {got}");
    servers.shutdown().await
}

/// A connection that does not authenticate in time gets the error frame and close code 4001.
#[tokio::test]
async fn missing_auth_closes_with_4001() -> Result<()> {
    let edge = EdgeConfig { auth_timeout: Duration::from_millis(300), ..EdgeConfig::dev() };
    let config = ServersConfig { edge, ..ServersConfig::dev(64, 1) };
    let servers = Servers::start_with(Arc::new(MemoryLog::new(64, 100)), config).await?;
    let mut ws = servers.ws_client(0).await?;
    ws.expect_type("ready").await?;
    let error = ws.expect_type("error").await?;
    ensure!(error["message"] == "Authentication timeout", "{error}");
    ensure!(ws.expect_close().await? == Some(4001));
    servers.shutdown().await
}

/// Malformed JSON and unknown actions are answered with an error frame; the connection keeps working.
#[tokio::test]
async fn malformed_frames_get_an_error_and_the_connection_stays_usable() -> Result<()> {
    let servers = Servers::dev(1).await?;
    let mut ws = servers.ws_client(0).await?;
    ws.auth_dev("u1").await?;
    for bad in ["{not json", "[]", r#"{"action":"subscribe"}"#, r#"{"conversationId":"c1"}"#] {
        ws.send_text(bad).await?;
        let error = ws.expect_type("error").await?;
        ensure!(error["message"] == "Invalid message", "{bad} → {error}");
    }
    ws.send_text(r#"{"action":"dance"}"#).await?;
    ensure!(ws.expect_type("error").await?["message"] == "Unknown action: dance");
    ws.subscribe("c1").await?;
    let payload = json!({"type": "task-completed"});
    servers.publish_client().await?.publish("c1", &payload).await?;
    ensure!(ws.recv_json().await? == payload);
    servers.shutdown().await
}

/// Subscribing before authenticating is refused without closing.
#[tokio::test]
async fn subscribe_before_auth_is_refused() -> Result<()> {
    let servers = Servers::dev(1).await?;
    let mut ws = servers.ws_client(0).await?;
    ws.expect_type("ready").await?;
    ws.send_json(&json!({"action": "subscribe", "conversationId": "c1"})).await?;
    ensure!(ws.expect_type("error").await?["message"] == "Not authenticated");
    ws.send_json(&json!({"action": "auth", "userId": "u1"})).await?;
    ws.expect_authenticated("u1").await?;
    servers.shutdown().await
}

/// With 64 partitions and one subscribed conversation, the edge reads exactly one partition, its stream and
/// its live channel (Redis' own MONITOR says so), and leaves the channel when the last subscriber leaves.
#[tokio::test]
async fn edge_reads_only_partitions_with_local_subscribers() -> Result<()> {
    let redis = RedisServer::start().await?;
    let servers = Servers::start(redis.redis_log(64, 1_000).await?, 1).await?;
    let mut monitor = RedisMonitor::start(redis.port()).await?;
    let mut ws = servers.ws_client(0).await?;
    ws.auth_dev("u1").await?;
    ws.subscribe("only-me").await?;
    let mut publisher = servers.publish_client().await?;
    // Traffic on every other partition too: the edge must not read any of it.
    for i in 0..256 {
        publisher.publish(&format!("other-{i}"), &json!({"type": "job-status"})).await?;
    }
    publisher.publish("only-me", &json!({"type": "job-status", "last": true})).await?;
    ensure!(ws.recv_json().await?["last"] == true);
    let keys = PartitionKeys::new(partition("only-me", 64));
    // Everything up to the last publish, which the edge received: every read the edge made is in there.
    let last_publish =
        |c: &MonitoredCommand| c.name == "PUBLISH" && c.args.iter().any(|a| a.contains("\"last\""));
    let seen = monitor.until(Duration::from_secs(5), last_publish).await?;
    let mut read_keys = BTreeSet::new();
    let reads = ["XREAD", "XREVRANGE", "XRANGE", "SUBSCRIBE", "SSUBSCRIBE"];
    for command in seen.iter().filter(|c| reads.contains(&c.name.as_str())) {
        read_keys.extend(command.args.iter().filter(|a| a.starts_with("crier:")).cloned());
    }
    let wanted = BTreeSet::from([keys.stream.clone(), keys.live.clone()]);
    ensure!(read_keys == wanted, "edge read {read_keys:?}");
    ws.unsubscribe("only-me").await?;
    within("the partition reader to leave Redis", wait_until_unsubscribed(&redis, &keys.live)).await??;
    servers.shutdown().await
}

/// Polls `PUBSUB NUMSUB` until nobody listens on `channel` (the event awaited: the reader is gone).
async fn wait_until_unsubscribed(redis: &RedisServer, channel: &str) -> Result<()> {
    let mut conn = redis.connection().await?;
    loop {
        let (_, listeners): (String, u64) =
            redis::cmd("PUBSUB").arg("NUMSUB").arg(channel).query_async(&mut conn).await?;
        if listeners == 0 {
            return Ok(());
        }
        // Polling Redis' own view; the loop ends on the event, the caller's timeout bounds it.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Another conversation id that lands in the same partition as `id`.
fn same_partition_as(id: &str, partitions: u32) -> String {
    let target = partition(id, partitions);
    (0..).map(|i| format!("foreign-{i}")).find(|c| partition(c, partitions) == target).unwrap_or_default()
}

/// A client that never subscribed gets nothing, even while others receive (checked after a later frame).
#[tokio::test]
async fn unsubscribed_client_gets_nothing() -> Result<()> {
    let servers = Servers::dev(1).await?;
    let mut idle = servers.ws_client(0).await?;
    idle.auth_dev("idle").await?;
    let mut busy = servers.ws_client(0).await?;
    busy.auth_dev("busy").await?;
    busy.subscribe("c1").await?;
    servers.publish_client().await?.publish("c1", &json!({"type": "job-status"})).await?;
    busy.recv_json().await?;
    idle.send_json(&json!({"action": "ping"})).await?;
    ensure!(idle.recv_json().await? == json!({"type": "pong"}), "idle client got a notification");
    drop(WsClient::connect(&servers.edge_ws_url(0)).await?);
    servers.shutdown().await
}
