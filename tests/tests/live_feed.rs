//! The live path through Redis pub/sub: every seam it opens (a message pub/sub never delivered, a lost
//! pub/sub connection, a stream that vanished) ends in exact catch-up from the stream or an explicit 4008,
//! never a silent gap or a duplicate.

use anyhow::{Result, bail, ensure};
use crier_proto::keys::{ENTRY_FIELD, PartitionKeys};
use crier_proto::partition;
use crier_tests::{RedisServer, Servers, WsClient, stream_entry, within};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

const PARTITIONS: u32 = 8;

async fn subscribed(servers: &Servers, query: &str, conversation: &str) -> Result<WsClient> {
    let mut ws = WsClient::connect(&format!("{}{query}", servers.edge_ws_url(0))).await?;
    ws.auth_dev("u1").await?;
    ws.subscribe(conversation).await?;
    Ok(ws)
}

/// The next `n` frames' `seq` fields, in arrival order.
async fn next_seqs(ws: &mut WsClient, n: usize) -> Result<Vec<i64>> {
    let mut seqs = Vec::with_capacity(n);
    for _ in 0..n {
        let frame = ws.recv_json().await?;
        seqs.push(frame["seq"].as_i64().ok_or_else(|| anyhow::anyhow!("not a notification: {frame}"))?);
    }
    Ok(seqs)
}

/// An entry appended and numbered as the append script does, but never published: what a subscriber sees
/// when pub/sub drops a message.
async fn append_unpublished(redis: &RedisServer, conversation: &str, payload: &Value) -> Result<()> {
    let keys = PartitionKeys::new(partition(conversation, PARTITIONS));
    let entry = stream_entry(conversation, payload.to_string().into_bytes());
    let mut pipe = redis::pipe();
    pipe.atomic().cmd("XADD").arg(&keys.stream).arg("*").arg(ENTRY_FIELD).arg(entry);
    pipe.cmd("INCR").arg(&keys.seq);
    let mut conn = redis.connection().await?;
    within("XADD + INCR", pipe.query_async::<()>(&mut conn)).await??;
    Ok(())
}

/// A message the subscriber's pub/sub connection never got (the sequence jumps) is read from the stream
/// and delivered in order before the newer one; without gap detection it would be skipped silently.
#[tokio::test]
async fn sequence_jump_is_caught_up_from_the_stream() -> Result<()> {
    let redis = RedisServer::start().await?;
    let servers = Servers::start(redis.redis_log(PARTITIONS, 1_000).await?, 1).await?;
    let mut publisher = servers.publish_client().await?;
    let mut ws = subscribed(&servers, "", "c1").await?;
    publisher.publish("c1", &json!({"seq": 0})).await?;
    ensure!(next_seqs(&mut ws, 1).await? == [0]);
    append_unpublished(&redis, "c1", &json!({"seq": 1})).await?;
    publisher.publish("c1", &json!({"seq": 2})).await?;
    let got = next_seqs(&mut ws, 2).await?;
    ensure!(got == [1, 2], "expected [1, 2] after the jump, got {got:?}");
    servers.shutdown().await
}

/// The edge's pub/sub connection is killed while notifications keep coming: after it reconnects the
/// subscriber has every one, in order, exactly once.
#[tokio::test]
async fn pubsub_reconnect_loses_and_repeats_nothing() -> Result<()> {
    const EACH: i64 = 50;
    let redis = RedisServer::start().await?;
    let servers = Servers::start(redis.redis_log(PARTITIONS, 10_000).await?, 1).await?;
    let mut publisher = servers.publish_client().await?;
    let mut ws = subscribed(&servers, "", "c1").await?;
    let mut conn = redis.connection().await?;
    for seq in 0..EACH {
        publisher.publish("c1", &json!({"seq": seq})).await?;
    }
    let killed: i64 = within(
        "CLIENT KILL",
        redis::cmd("CLIENT").arg("KILL").arg("TYPE").arg("pubsub").query_async(&mut conn),
    )
    .await??;
    ensure!(killed >= 1, "no pub/sub connection to kill");
    for seq in EACH..3 * EACH {
        publisher.publish("c1", &json!({"seq": seq})).await?;
    }
    let got = next_seqs(&mut ws, 3 * EACH as usize).await?;
    ensure!(got == (0..3 * EACH).collect::<Vec<_>>(), "gap or duplicate across the reconnect: {got:?}");
    ws.expect_no_frame_within(std::time::Duration::from_millis(200)).await?;
    servers.shutdown().await
}

/// The stream vanishes under a live subscription (FLUSHDB) and the next publish starts a new epoch: the
/// session is closed with 4008 instead of going on as if nothing happened, and its old position is answered
/// `recovered:false`.
#[tokio::test]
async fn flushed_stream_is_never_a_silent_gap() -> Result<()> {
    let redis = RedisServer::start().await?;
    let servers = Servers::start(redis.redis_log(PARTITIONS, 1_000).await?, 1).await?;
    let mut publisher = servers.publish_client().await?;
    let mut ws = subscribed(&servers, "?positions=1", "c1").await?;
    let before = publisher.publish("c1", &json!({"seq": 0})).await?;
    ensure!(ws.expect_type("notification").await?["position"] == before);
    let mut conn = redis.connection().await?;
    within("FLUSHDB", redis::cmd("FLUSHDB").query_async::<()>(&mut conn)).await??;
    publisher.publish("c1", &json!({"seq": 1})).await?;
    match within("the close", ws.next_message()).await?? {
        Some(Message::Close(frame)) => {
            let code = frame.map(|f| u16::from(f.code));
            ensure!(code == Some(4008), "closed with {code:?}");
        }
        other => bail!("expected close 4008 after the stream was lost, got {other:?}"),
    }
    let mut again = WsClient::connect(&format!("{}?positions=1", servers.edge_ws_url(0))).await?;
    again.auth_dev("u1").await?;
    ensure!(again.subscribe_since("c1", &before).await?["recovered"] == false, "old epoch must not recover");
    servers.shutdown().await
}
