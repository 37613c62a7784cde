//! A Redis Cluster master that crashes and comes back empty (no persistence): the same node, the same slots,
//! none of the keys. Its partitions' streams are gone, so their epochs change.

use std::time::Duration;

use anyhow::{Result, bail, ensure};
use crier_proto::keys::PartitionKeys;
use crier_proto::partition;
use crier_store::log::{RedisTopology, Retention};
use crier_tests::redis_server::redis_log;
use crier_tests::{PublishClient, RedisCluster, Servers, tungstenite, within_for};
use serde_json::json;

/// The master whose restart the test watches.
const RESTARTED: usize = 1;

/// A conversation whose partition master `master` serves.
async fn conversation_on(cluster: &RedisCluster, master: usize) -> Result<String> {
    for i in 0..10_000 {
        let conversation = format!("conv-{i}");
        let key = PartitionKeys::new(partition(&conversation, 64)).stream;
        if cluster.node_for_key(&key).await? == master {
            return Ok(conversation);
        }
    }
    bail!("no conversation on master {master}")
}

/// Publishes until the broker accepts (the master back and reachable), bounded.
async fn publish_when_back(publisher: &mut PublishClient, conversation: &str, seq: i64) -> Result<String> {
    let payload = json!({ "seq": seq }).to_string().into_bytes();
    within_for(Duration::from_secs(15), "the broker to accept publishes again", async {
        loop {
            match publisher.try_publish(conversation, payload.clone(), "").await? {
                Ok(position) => return anyhow::Ok(position),
                Err(status) if status.code() == tonic::Code::Unavailable => {
                    // The broker's cluster client reconnecting; the loop ends on the event.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(status) => bail!("unexpected status while the master restarts: {status}"),
            }
        }
    })
    .await?
}

/// A master comes back empty while an edge's partition reader waits on it (`XREAD BLOCK`). The reader must
/// notice the lost stream and close the partition's sessions with 4008 (their clients resubscribe with
/// `since` and hear `recovered:false`), never read the new stream as if it were the old: that would deliver
/// the new entries under the old epoch, positions naming entries that never existed there, and a client
/// recovering from one would silently skip what it missed. Before the fix the reader's cluster client
/// retried the broken read on the restarted node and did exactly that.
#[tokio::test]
async fn master_back_empty_closes_its_partitions_sessions_instead_of_mislabeling_entries() -> Result<()> {
    let mut cluster = RedisCluster::start().await?;
    let log = redis_log(RedisTopology::Cluster(cluster.urls()), 64, Retention::default()).await?;
    let servers = Servers::start(log, 1).await?;
    let conversation = conversation_on(&cluster, RESTARTED).await?;
    let mut publisher = servers.publish_client().await?;
    let mut ws = servers.positions_client(0, "u1").await?;
    ws.subscribe(&conversation).await?;
    let before = publisher.publish_seq(&conversation, 0).await?;
    let (_, got) = ws.expect_seq_notification(&conversation).await?;
    ensure!(got == before, "delivered at {got}, published at {before}");
    cluster.restart_master_empty(RESTARTED).await?;
    let after = publish_when_back(&mut publisher, &conversation, 1).await?;
    ensure!(after.split(':').nth(1) != before.split(':').nth(1), "{after} must be in a new epoch ({before})");
    let frame = within_for(Duration::from_secs(15), "the lost stream's 4008", ws.next_message()).await??;
    match frame {
        Some(tungstenite::Message::Close(Some(close))) if u16::from(close.code) == 4008 => {}
        other => bail!("expected close 4008 after the stream of {before} was lost, got {other:?}"),
    }
    let mut back = servers.positions_client(0, "u2").await?;
    ensure!(back.subscribe_since(&conversation, &before).await?["recovered"] == false, "old epoch recovered");
    let last = publisher.publish_seq(&conversation, 2).await?;
    let (seq, position) = back.expect_seq_notification(&conversation).await?;
    ensure!(
        seq == 2 && position == last,
        "after resubscribing: seq {seq} at {position}, published at {last}"
    );
    servers.shutdown().await
}
