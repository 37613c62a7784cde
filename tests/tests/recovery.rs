//! Positions and recovery: `?positions=1` frames, `subscribe` with `since`, and the seam between replayed and
//! live notifications (DESIGN.md §2, §5).

use std::sync::Arc;

use anyhow::{Result, ensure};
use crier_store::log::{MemoryLog, PartitionedLog};
use crier_tests::{RedisServer, Servers, within};
use serde_json::{Value, json};

/// With `?positions=1`, each notification arrives wrapped with its conversation and the position the broker
/// returned, the payload untouched inside `data`.
#[tokio::test]
async fn positions_opt_in_wraps_payload_with_its_position() -> Result<()> {
    let servers = Servers::dev(1).await?;
    let mut ws = servers.positions_client(0, "u1").await?;
    ws.subscribe("c1").await?;
    let payload = json!({"type": "research-progress", "progress": 10});
    let position = servers.publish_client().await?.publish("c1", &payload).await?;
    let frame = ws.expect_type("notification").await?;
    let want = json!({"type": "notification", "conversationId": "c1", "position": position, "data": payload});
    ensure!(frame == want, "got {frame}, want {want}");
    servers.shutdown().await
}

/// Reconnecting with `since` replays exactly the notifications missed, in order, then continues live.
#[tokio::test]
async fn since_replays_what_was_missed_then_continues_live() -> Result<()> {
    let redis = RedisServer::start().await?;
    let servers = Servers::start(redis.redis_log(64, 1_000).await?, 1).await?;
    let mut publisher = servers.publish_client().await?;
    let mut ws = servers.positions_client(0, "u1").await?;
    ws.subscribe("c1").await?;
    for seq in 0..3 {
        publisher.publish_seq("c1", seq).await?;
    }
    let mut last = String::new();
    for seq in 0..3 {
        let (got, position) = ws.expect_seq_notification("c1").await?;
        ensure!(got == seq);
        last = position;
    }
    ws.close().await?;
    for seq in 3..6 {
        publisher.publish_seq("c1", seq).await?;
    }
    let mut ws = servers.positions_client(0, "u1").await?;
    let subscribed = ws.subscribe_since("c1", &last).await?;
    ensure!(subscribed["recovered"] == true, "{subscribed}");
    for seq in 3..6 {
        ensure!(ws.expect_seq_notification("c1").await?.0 == seq);
    }
    publisher.publish_seq("c1", 6).await?;
    ensure!(ws.expect_seq_notification("c1").await?.0 == 6);
    servers.shutdown().await
}

/// While notifications keep flowing, a client that drops and resubscribes with `since` sees every one exactly
/// once: nothing lost or repeated where the replay hands over to live delivery.
async fn seam_has_no_gap_or_duplicate(log: Arc<dyn PartitionedLog>) -> Result<()> {
    const TOTAL: i64 = 400;
    let servers = Servers::start(log, 1).await?;
    let mut ws = servers.positions_client(0, "u1").await?;
    ws.subscribe("seam").await?;
    let mut publisher = servers.publish_client().await?;
    let publishing = tokio::spawn(async move {
        for seq in 0..TOTAL {
            publisher.publish_seq("seam", seq).await?;
        }
        anyhow::Ok(())
    });
    let mut seen = Vec::new();
    let mut last = String::new();
    while seen.len() < 50 {
        let (seq, position) = ws.expect_seq_notification("seam").await?;
        seen.push(seq);
        last = position;
    }
    // Drop without a goodbye: frames in flight are lost with the connection.
    drop(ws);
    let mut ws = servers.positions_client(0, "u1").await?;
    ensure!(ws.subscribe_since("seam", &last).await?["recovered"] == true);
    while seen.last() != Some(&(TOTAL - 1)) {
        seen.push(ws.expect_seq_notification("seam").await?.0);
    }
    within("the publisher", publishing).await???;
    let want: Vec<i64> = (0..TOTAL).collect();
    ensure!(seen == want, "gap or duplicate: got {} notifications: {seen:?}", seen.len());
    servers.shutdown().await
}

/// The seam on the in-memory log.
#[tokio::test]
async fn seam_has_no_gap_or_duplicate_on_memory() -> Result<()> {
    seam_has_no_gap_or_duplicate(Arc::new(MemoryLog::new(64, 10_000))).await
}

/// The seam through Redis.
#[tokio::test]
async fn seam_has_no_gap_or_duplicate_on_redis() -> Result<()> {
    let redis = RedisServer::start().await?;
    seam_has_no_gap_or_duplicate(redis.redis_log(64, 10_000).await?).await
}

/// A position whose successors were trimmed by retention is answered `recovered:false`, never with a silent
/// gap; live delivery works all the same.
async fn trimmed_position_is_not_recovered(log: Arc<dyn PartitionedLog>, appends: i64) -> Result<()> {
    let servers = Servers::start(log, 1).await?;
    let mut publisher = servers.publish_client().await?;
    let first = publisher.publish_seq("c1", 0).await?;
    for seq in 1..appends {
        publisher.publish_seq("c1", seq).await?;
    }
    let mut ws = servers.positions_client(0, "u1").await?;
    ensure!(ws.subscribe_since("c1", &first).await?["recovered"] == false);
    publisher.publish_seq("c1", appends).await?;
    ensure!(ws.expect_seq_notification("c1").await?.0 == appends, "live delivery after recovered:false");
    servers.shutdown().await
}

/// Trimmed positions on the in-memory log (exact trimming).
#[tokio::test]
async fn trimmed_position_is_not_recovered_on_memory() -> Result<()> {
    trimmed_position_is_not_recovered(Arc::new(MemoryLog::new(64, 5)), 20).await
}

/// Trimmed positions through Redis, whose `MAXLEN ~` trims whole 100-entry nodes and does not report what it
/// trimmed in `max-deleted-entry-id`.
#[tokio::test]
async fn trimmed_position_is_not_recovered_on_redis() -> Result<()> {
    let redis = RedisServer::start().await?;
    trimmed_position_is_not_recovered(redis.redis_log(64, 10).await?, 400).await
}

/// Positions that are garbage, of another partition, or of another epoch are not recoverable.
#[tokio::test]
async fn foreign_or_garbage_positions_are_not_recovered() -> Result<()> {
    let servers = Servers::dev(1).await?;
    let mut publisher = servers.publish_client().await?;
    let position = publisher.publish_seq("c1", 0).await?;
    let parts: Vec<&str> = position.split(':').collect();
    let other_epoch = format!("{}:{}:{}", parts[0], "1234abcd", parts[2]);
    let other_partition = format!("{}:{}:{}", (parts[0].parse::<u32>()? + 1) % 64, parts[1], parts[2]);
    let mut ws = servers.positions_client(0, "u1").await?;
    for (i, since) in ["garbage", "1:2:3", other_epoch.as_str(), other_partition.as_str()].iter().enumerate()
    {
        let conversation = format!("c{}", i + 10);
        let subscribed = ws.subscribe_since(&conversation, since).await?;
        ensure!(subscribed["recovered"] == false, "{since}: {subscribed}");
    }
    let mut ws = servers.positions_client(0, "u2").await?;
    let subscribed: Value = ws.subscribe_since("c1", &position).await?;
    ensure!(subscribed["recovered"] == true, "the genuine position recovers: {subscribed}");
    servers.shutdown().await
}
