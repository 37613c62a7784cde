//! `last` on subscribe: the newest retained notifications of a conversation, oldest first, then live ones
//! with no gap or duplicate at the seam, on the memory log and through Redis. One partition, so every
//! conversation shares the stream and the edge must filter.

use std::sync::Arc;

use anyhow::{Result, bail, ensure};
use crier_store::log::{MemoryLog, PartitionedLog};
use crier_tests::{RedisServer, Servers, WsClient, within};
use serde_json::{Value, json};

/// The stream id of a position (`<partition>:<epoch>:<ms>-<seq>`), comparable.
fn stream_id(position: &str) -> Result<(u64, u64)> {
    let id = position.rsplit(':').next().unwrap_or_default();
    let Some((ms, seq)) = id.split_once('-') else { bail!("not a position: {position}") };
    Ok((ms.parse()?, seq.parse()?))
}

async fn subscribe_last(ws: &mut WsClient, conversation: &str, last: Value) -> Result<Value> {
    ws.send_json(&json!({"action": "subscribe", "conversationId": conversation, "last": last})).await?;
    ws.recv_json().await
}

/// With notifications still being published, `last: 5` answers `subscribed`, then the five newest retained
/// ones of the conversation (none of the other conversation), oldest first, then live ones: every seq from
/// the first replayed one to the end exactly once.
async fn last_then_live_without_gap_or_duplicate(log: Arc<dyn PartitionedLog>) -> Result<()> {
    const TOTAL: i64 = 300;
    let servers = Servers::start(log, 1).await?;
    let mut publisher = servers.publish_client().await?;
    for seq in 0..20 {
        publisher.publish_seq("job", seq).await?;
        publisher.publish_seq("noise", seq).await?;
    }
    let publishing = tokio::spawn(async move {
        for seq in 20..TOTAL {
            publisher.publish_seq("job", seq).await?;
        }
        anyhow::Ok(())
    });
    let mut ws = servers.positions_client(0, "u1").await?;
    let subscribed = subscribe_last(&mut ws, "job", json!(5)).await?;
    ensure!(subscribed["type"] == "subscribed" && subscribed.get("recovered").is_none(), "{subscribed}");
    let live_from = stream_id(subscribed["position"].as_str().unwrap_or_default())?;
    let (mut seen, mut replayed) = (Vec::new(), 0);
    while seen.last() != Some(&(TOTAL - 1)) {
        let (seq, position) = ws.expect_seq_notification("job").await?;
        replayed += usize::from(stream_id(&position)? <= live_from);
        seen.push(seq);
    }
    within("the publisher", publishing).await???;
    ensure!(replayed == 5, "{replayed} notifications from before subscribed, want the 5 newest");
    let first = seen[0];
    let want: Vec<i64> = (first..TOTAL).collect();
    ensure!(seen == want, "gap or duplicate: {seen:?}");
    servers.shutdown().await
}

/// The seam on the in-memory log.
#[tokio::test]
async fn last_then_live_without_gap_or_duplicate_on_memory() -> Result<()> {
    last_then_live_without_gap_or_duplicate(Arc::new(MemoryLog::new(1, 10_000))).await
}

/// The seam through Redis (`XREVRANGE`).
#[tokio::test]
async fn last_then_live_without_gap_or_duplicate_on_redis() -> Result<()> {
    let redis = RedisServer::start().await?;
    last_then_live_without_gap_or_duplicate(redis.redis_log(1, 10_000).await?).await
}

/// Out-of-range `last` gets `Invalid last` naming the conversation and the connection stays; `last` larger
/// than what is retained gives what there is, verbatim without positions; with `since`, `since` wins.
async fn last_edge_cases(log: Arc<dyn PartitionedLog>) -> Result<()> {
    let servers = Servers::start(log, 1).await?;
    let mut publisher = servers.publish_client().await?;
    let first = publisher.publish_seq("c1", 0).await?;
    for seq in 1..3 {
        publisher.publish_seq("c1", seq).await?;
    }
    let mut ws = servers.ws_client(0).await?;
    ws.auth_dev("u1").await?;
    for bad in [json!(0), json!(101), json!(-1)] {
        let refused = subscribe_last(&mut ws, "c1", bad.clone()).await?;
        let want = json!({"type": "error", "message": "Invalid last", "conversationId": "c1"});
        ensure!(refused == want, "last {bad}: {refused}");
    }
    ensure!(subscribe_last(&mut ws, "c1", json!(100)).await?["type"] == "subscribed");
    for seq in 0..3 {
        ensure!(ws.recv_json().await? == json!({"type": "job-status", "seq": seq}));
    }
    let mut ws = servers.positions_client(0, "u2").await?;
    let request = json!({"action": "subscribe", "conversationId": "c1", "since": first, "last": 3});
    ws.send_json(&request).await?;
    ensure!(ws.expect_type("subscribed").await?["recovered"] == true);
    for seq in 1..4 {
        if seq == 3 {
            publisher.publish_seq("c1", 3).await?;
        }
        ensure!(ws.expect_seq_notification("c1").await?.0 == seq, "since wins: replay after it, then live");
    }
    servers.shutdown().await
}

/// Edge cases on the in-memory log.
#[tokio::test]
async fn last_edge_cases_on_memory() -> Result<()> {
    last_edge_cases(Arc::new(MemoryLog::new(1, 10_000))).await
}

/// Edge cases through Redis.
#[tokio::test]
async fn last_edge_cases_on_redis() -> Result<()> {
    let redis = RedisServer::start().await?;
    last_edge_cases(redis.redis_log(1, 10_000).await?).await
}
