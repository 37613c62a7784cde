//! Failures with real processes: Redis killed and restarted empty, an edge shut down, a broker restarted, a
//! client that stops reading (DESIGN.md §5).

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Result, bail, ensure};
use crier_broker::BrokerConfig;
use crier_edge::EdgeConfig;
use crier_proto::keys::PartitionKeys;
use crier_proto::v1::PublishRequest;
use crier_proto::{node_of, partition};
use crier_store::log::MemoryLog;
use crier_store::log::{RedisTopology, Retention};
use crier_tests::redis_server::redis_log;
use crier_tests::{PublishClient, RedisCluster, RedisServer, Servers, ServersConfig, within, within_for};
use serde_json::json;

/// Publishes until the broker accepts (Redis coming back), bounded.
async fn publish_when_back(publisher: &mut PublishClient, payload: &serde_json::Value) -> Result<String> {
    within_for(Duration::from_secs(15), "the broker to accept publishes again", async {
        loop {
            match publisher.try_publish("c1", payload.to_string().into_bytes(), "").await? {
                Ok(position) => return anyhow::Ok(position),
                Err(status) if status.code() == tonic::Code::Unavailable => {
                    // Reconnect back-off of the broker's Redis connection; the loop ends on the event.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(status) => bail!("unexpected status while Redis restarts: {status}"),
            }
        }
    })
    .await?
}

/// Redis dies: publishes fail UNAVAILABLE (never accepted and dropped), WebSockets stay open. Redis comes
/// back empty: the edge cannot know what the lost stream held past what it delivered, so the partition's
/// sessions are closed with 4008 (never a silent gap), an old position is answered `recovered:false`, and
/// delivery resumes for the resubscribed client.
#[tokio::test]
async fn redis_restart_keeps_sockets_and_never_fakes_recovery() -> Result<()> {
    let mut redis = RedisServer::start().await?;
    let servers = Servers::start(redis.redis_log(64, 1_000).await?, 1).await?;
    let mut publisher = servers.publish_client().await?;
    let mut ws = servers.positions_client(0, "u1").await?;
    ws.subscribe("c1").await?;
    let before = publisher.publish("c1", &json!({"seq": 0})).await?;
    ensure!(ws.expect_type("notification").await?["position"] == before);
    redis.stop();
    let refused = publisher.try_publish("c1", br#"{"seq":1}"#.to_vec(), "").await?;
    ensure!(refused.as_ref().map_err(tonic::Status::code) == Err(tonic::Code::Unavailable), "{refused:?}");
    ws.send_json(&json!({"action": "ping"})).await?;
    ws.expect_type("pong").await?;
    redis.restart().await?;
    let closed = ws.expect_close_within(Duration::from_secs(15)).await?;
    ensure!(closed == Some(4008), "the lost stream must be announced with 4008, got {closed:?}");
    let mut late = servers.positions_client(0, "u2").await?;
    ensure!(late.subscribe_since("c1", &before).await?["recovered"] == false, "old epoch must not recover");
    let after = publish_when_back(&mut publisher, &json!({"seq": 2})).await?;
    let frame = within("delivery after Redis is back", late.expect_type("notification")).await??;
    ensure!(frame["position"] == after && frame["data"]["seq"] == 2, "{frame}");
    servers.shutdown().await
}

/// An edge goes away: its client reconnects to another edge with `since` and gets everything it missed.
#[tokio::test]
async fn client_of_a_stopped_edge_recovers_on_another_edge() -> Result<()> {
    let redis = RedisServer::start().await?;
    let mut servers = Servers::start(redis.redis_log(64, 1_000).await?, 2).await?;
    let mut publisher = servers.publish_client().await?;
    let mut ws = servers.positions_client(0, "u1").await?;
    ws.subscribe("c1").await?;
    publisher.publish("c1", &json!({"seq": 0})).await?;
    let last = ws.expect_type("notification").await?["position"].as_str().unwrap_or_default().to_owned();
    servers.stop_edge(0).await?;
    ensure!(ws.expect_close().await? == Some(1001), "edge shutdown closes with 1001");
    for seq in 1..4 {
        publisher.publish("c1", &json!({"seq": seq})).await?;
    }
    let mut ws = servers.positions_client(1, "u1").await?;
    ensure!(ws.subscribe_since("c1", &last).await?["recovered"] == true);
    for seq in 1..4 {
        ensure!(ws.expect_type("notification").await?["data"]["seq"] == seq);
    }
    servers.shutdown().await
}

/// A publisher retrying with the same idempotency key across a broker restart appends once and gets the
/// first position back.
#[tokio::test]
async fn idempotent_retry_across_broker_restart_appends_once() -> Result<()> {
    let redis = RedisServer::start().await?;
    let mut servers = Servers::start(redis.redis_log(64, 1_000).await?, 0).await?;
    let request = PublishRequest {
        conversation_id: "c1".into(),
        payload: br#"{"type":"task-completed"}"#.to_vec().into(),
        idempotency_key: "job-123-done".into(),
    };
    let mut publisher = servers.publish_client().await?;
    let first = within("publish", publisher.inner().publish(request.clone())).await??.into_inner();
    ensure!(!first.duplicate);
    servers.restart_broker().await?;
    let mut publisher = servers.publish_client().await?;
    let retry = within("publish", publisher.inner().publish(request)).await??.into_inner();
    ensure!(retry.duplicate && retry.position == first.position, "{first:?} vs {retry:?}");
    let partition: u32 = first.position.split(':').next().unwrap_or_default().parse()?;
    let range = servers.log().range(partition, crier_proto::StreamId::ZERO, 10).await?;
    ensure!(range.entries.len() == 1, "appended {} times", range.entries.len());
    servers.shutdown().await
}

/// A client that stops reading is cut off once its queue bound is exceeded (close 4008, or the connection
/// dropped when even that cannot be written), while a reading client on the same edge gets everything.
#[tokio::test]
async fn slow_consumer_is_cut_off_without_slowing_others() -> Result<()> {
    const COUNT: usize = 400;
    let edge = EdgeConfig { max_queue_bytes: 64 * 1024, ..EdgeConfig::dev() };
    let config = ServersConfig { edge, broker: BrokerConfig::default(), edges: 1 };
    let servers = Servers::start_with(Arc::new(MemoryLog::new(64, 10_000)), config).await?;
    let mut slow = servers.ws_client(0).await?;
    slow.auth_dev("slow").await?;
    slow.subscribe("big").await?;
    let mut fast = servers.ws_client(0).await?;
    fast.auth_dev("fast").await?;
    fast.subscribe("big").await?;
    let filler = "x".repeat(32 * 1024);
    let mut publisher = servers.publish_client().await?;
    let publishing = tokio::spawn(async move {
        for seq in 0..COUNT {
            publisher.publish("big", &json!({"seq": seq, "filler": filler})).await?;
        }
        anyhow::Ok(())
    });
    for seq in 0..COUNT {
        ensure!(fast.recv_json().await?["seq"] == seq, "fast client lost or reordered {seq}");
    }
    within("the publisher", publishing).await???;
    let mut received = 0;
    loop {
        match within("the slow client's stream", slow.next_message()).await?? {
            Some(tokio_tungstenite::tungstenite::Message::Text(_)) => received += 1,
            Some(tokio_tungstenite::tungstenite::Message::Close(frame)) => {
                let code = frame.map(|f| u16::from(f.code));
                ensure!(code == Some(4008), "closed with {code:?}");
                break;
            }
            Some(_) => {}
            None => break,
        }
    }
    ensure!(received < COUNT, "the slow client got all {received}: it was never cut off");
    servers.shutdown().await
}

/// One conversation id per cluster master, by index.
async fn conversation_per_master(cluster: &RedisCluster) -> Result<Vec<String>> {
    let mut found: Vec<Option<String>> = vec![None; crier_tests::redis_cluster::MASTERS];
    for i in 0.. {
        let conversation = format!("conv-{i}");
        let key = PartitionKeys::new(partition(&conversation, 64)).stream;
        let node = cluster.node_for_key(&key).await?;
        found[node].get_or_insert(conversation);
        if found.iter().all(Option::is_some) {
            break;
        }
    }
    Ok(found.into_iter().flatten().collect())
}

/// A Redis Cluster master dies: conversations whose partitions live on the other masters keep flowing end
/// to end, publishes to the dead master's partitions are refused (UNAVAILABLE), and nothing hangs.
#[tokio::test]
async fn cluster_master_death_leaves_other_partitions_flowing() -> Result<()> {
    let mut cluster = RedisCluster::start().await?;
    let log = redis_log(RedisTopology::Cluster(cluster.urls()), 64, Retention::default()).await?;
    let servers = Servers::start(log, 1).await?;
    let conversations = conversation_per_master(&cluster).await?;
    let mut ws = servers.ws_client(0).await?;
    ws.auth_dev("u1").await?;
    for conversation in &conversations {
        ws.subscribe(conversation).await?;
    }
    let mut publisher = servers.publish_client().await?;
    for conversation in &conversations {
        publisher.publish(conversation, &json!({"to": conversation})).await?;
        ensure!(ws.recv_json().await?["to"] == conversation.as_str());
    }
    let dead = 1;
    cluster.kill_master(dead);
    let refused = publisher.try_publish(&conversations[dead], br#"{"to":"dead"}"#.to_vec(), "").await?;
    ensure!(refused.map_err(|s| s.code()) == Err(tonic::Code::Unavailable), "the dead master's partition");
    for (node, conversation) in conversations.iter().enumerate().filter(|(node, _)| *node != dead) {
        publisher.publish(conversation, &json!({"to": conversation, "after": true})).await?;
        let got = ws.recv_json().await?;
        ensure!(got["to"] == conversation.as_str() && got["after"] == true, "master {node}: {got}");
    }
    servers.shutdown().await
}

/// One of three standalone nodes dies: conversations on the other two keep flowing end to end, the dead
/// node's are refused as UNAVAILABLE.
#[tokio::test]
async fn standalone_node_death_leaves_other_nodes_partitions_flowing() -> Result<()> {
    let mut nodes = RedisServer::start_many(3).await?;
    let urls = nodes.iter().map(RedisServer::url).collect();
    let servers =
        Servers::start(redis_log(RedisTopology::Nodes(urls), 64, Retention::default()).await?, 1).await?;
    let mut conversations: Vec<Option<String>> = vec![None; 3];
    for i in 0.. {
        let conversation = format!("conv-{i}");
        conversations[node_of(partition(&conversation, 64), 3)].get_or_insert(conversation);
        if conversations.iter().all(Option::is_some) {
            break;
        }
    }
    let conversations: Vec<String> = conversations.into_iter().flatten().collect();
    let mut ws = servers.ws_client(0).await?;
    ws.auth_dev("u1").await?;
    for conversation in &conversations {
        ws.subscribe(conversation).await?;
    }
    let dead = 2;
    nodes[dead].stop();
    let mut publisher = servers.publish_client().await?;
    let refused = publisher.try_publish(&conversations[dead], br#"{"to":"dead"}"#.to_vec(), "").await?;
    ensure!(refused.map_err(|s| s.code()) == Err(tonic::Code::Unavailable), "the dead node's partition");
    for conversation in conversations.iter().take(dead) {
        publisher.publish(conversation, &json!({"to": conversation})).await?;
        ensure!(ws.recv_json().await?["to"] == conversation.as_str());
    }
    servers.shutdown().await
}

/// A partition reader that falls behind the stream's retention never skips silently: a subscriber gets
/// every notification in order, or an in-order prefix followed by close 4008 (so the client resubscribes
/// with `since` and learns what is recoverable). A stream kept to 3 entries and read 2 at a time, under
/// bursts of 100, loses entries before the reader sees them; before the fix the subscriber just skipped them.
#[tokio::test]
async fn reader_behind_retention_closes_with_4008_instead_of_skipping() -> Result<()> {
    const BURSTS: usize = 5;
    const BURST: usize = 100;
    let edge = EdgeConfig { read_batch: 2, ..EdgeConfig::dev() };
    let config = ServersConfig { edge, broker: BrokerConfig::default(), edges: 1 };
    let servers = Servers::start_with(Arc::new(MemoryLog::new(4, 3)), config).await?;
    let mut ws = servers.ws_client(0).await?;
    ws.auth_dev("behind").await?;
    ws.subscribe("fast-stream").await?;
    let mut publisher = servers.publish_client().await?;
    for burst in 0..BURSTS {
        let items = (0..BURST)
            .map(|i| PublishRequest {
                conversation_id: "fast-stream".into(),
                payload: json!({"seq": burst * BURST + i}).to_string().into_bytes().into(),
                idempotency_key: String::new(),
            })
            .collect();
        let batch = crier_proto::v1::PublishBatchRequest { items };
        within("publish batch", publisher.inner().publish_batch(batch)).await??;
    }
    let mut next = 0;
    while next < BURSTS * BURST {
        match within("the subscriber's stream", ws.next_message()).await?? {
            Some(tokio_tungstenite::tungstenite::Message::Text(text)) => {
                let got: serde_json::Value = serde_json::from_str(&text)?;
                ensure!(got["seq"] == next, "expected seq {next}, got {got}: entries were skipped silently");
                next += 1;
            }
            Some(tokio_tungstenite::tungstenite::Message::Close(frame)) => {
                let code = frame.map(|f| u16::from(f.code));
                ensure!(code == Some(4008), "closed with {code:?} after {next} notifications");
                break;
            }
            Some(_) => {}
            None => bail!("connection dropped after {next} notifications without a close frame"),
        }
    }
    servers.shutdown().await
}
