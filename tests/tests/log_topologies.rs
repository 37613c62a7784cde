//! What the Redis topologies of the partitioned log promise beyond the shared behaviour (`log_behaviour.rs`):
//! where partitions live, what losing a node's data does to epochs, that a deployment's partition count is
//! fixed, and that a Redis Cluster keeps serving the partitions of its live masters when one dies.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use bytes::Bytes;
use crier_proto::StreamId;
use crier_proto::keys::PartitionKeys;
use crier_store::log::{Head, LogError, PartitionedLog, RedisLog, RedisTopology, Retention};
use crier_tests::redis_server::{LOG_COMMAND_TIMEOUT, redis_log};
use crier_tests::{RedisCluster, RedisServer, STEP, within, within_for};

/// Partitions of the placement and failure tests: enough for every node to hold several.
const PARTITIONS: u32 = 16;
/// Standalone nodes of the `Nodes` topology tests.
const NODES: usize = 3;
/// How long an operation against a dead node may take to fail: its command timeout, a retry, and slack.
const DEAD_NODE_LIMIT: Duration = Duration::from_secs(3 * LOG_COMMAND_TIMEOUT.as_secs() + 1);

fn payload(i: usize) -> Bytes {
    Bytes::from(format!("entry-{i}"))
}

/// The head of `partition` once its node answers again: the first attempts after a restart may still hit
/// the dead connection, as a retrying publisher's would.
async fn head_when_back(log: &dyn PartitionedLog, partition: u32) -> Result<Head> {
    within_for(STEP + DEAD_NODE_LIMIT, format!("head of partition {partition} after the restart"), async {
        loop {
            if let Ok(head) = log.head(partition).await {
                return head;
            }
        }
    })
    .await
}

/// After a standalone Redis without persistence restarts (its data lost), every partition reports a new
/// epoch and an empty stream: positions from before can never be taken for positions in the new stream.
#[tokio::test]
async fn standalone_redis_losing_its_data_gives_partitions_a_new_epoch() -> Result<()> {
    let mut redis = RedisServer::start().await?;
    let log = redis_log(RedisTopology::Nodes(vec![redis.url()]), 4, Retention::default()).await?;
    let before = within("append", log.append(0, payload(0), None)).await??;
    redis.restart().await?;
    let after = head_when_back(&*log, 0).await?;
    ensure!(after.epoch != before.epoch, "epoch {:x} survived the data loss", before.epoch);
    ensure!(after.last == StreamId::ZERO, "lost stream reports last {}", after.last);
    let appended = within("append", log.append(0, payload(1), None)).await??;
    ensure!(appended.epoch == after.epoch, "append in epoch {:x}, head {:x}", appended.epoch, after.epoch);
    Ok(())
}

/// When one of several standalone nodes loses its data, exactly the partitions it holds get a new epoch;
/// the others keep their epoch and entries.
#[tokio::test]
async fn node_losing_its_data_renews_only_its_partitions_epochs() -> Result<()> {
    let mut nodes = RedisServer::start_many(NODES).await?;
    let urls = nodes.iter().map(RedisServer::url).collect();
    let log = redis_log(RedisTopology::Nodes(urls), PARTITIONS, Retention::default()).await?;
    let mut before = Vec::new();
    for p in 0..PARTITIONS {
        before.push(within("append", log.append(p, payload(p as usize), None)).await??);
    }
    let lost = 2;
    nodes[lost].restart().await?;
    for p in 0..PARTITIONS {
        let head = head_when_back(&*log, p).await?;
        let on_lost = crier_proto::node_of(p, NODES) == lost;
        let was = before[p as usize];
        if on_lost {
            ensure!(head.epoch != was.epoch && head.last == StreamId::ZERO, "partition {p}: {head:?}");
        } else {
            ensure!(head == Head { epoch: was.epoch, last: was.id }, "partition {p}: {head:?}, was {was:?}");
        }
    }
    Ok(())
}

/// Connects a log with `partitions` to `topology` and returns why it was refused, if it was.
async fn connect_error(topology: &RedisTopology, partitions: u32) -> Result<Option<LogError>> {
    match redis_log(topology.clone(), partitions, Retention::default()).await {
        Ok(_) => Ok(None),
        Err(err) => err.downcast::<LogError>().map(Some).context("not a LogError"),
    }
}

/// A deployment's partition count is recorded at first start: a process configured with another count is
/// refused with `PartitionMismatch` naming both, and one with the recorded count still connects.
async fn other_partition_count_is_refused(topology: RedisTopology) -> Result<()> {
    let first = connect_error(&topology, 64).await?;
    ensure!(first.is_none(), "first start with 64 partitions refused: {first:?}");
    let other = connect_error(&topology, 32).await?;
    ensure!(
        matches!(other, Some(LogError::PartitionMismatch { stored: 64, configured: 32 })),
        "connecting with 32 partitions to a 64-partition deployment: {other:?}"
    );
    let again = connect_error(&topology, 64).await?;
    ensure!(again.is_none(), "reconnecting with the recorded count refused: {again:?}");
    Ok(())
}

/// See [`other_partition_count_is_refused`], on a standalone Redis.
#[tokio::test]
async fn standalone_redis_refuses_another_partition_count() -> Result<()> {
    let redis = RedisServer::start().await?;
    other_partition_count_is_refused(RedisTopology::Nodes(vec![redis.url()])).await
}

/// See [`other_partition_count_is_refused`], on several standalone nodes.
#[tokio::test]
async fn standalone_nodes_refuse_another_partition_count() -> Result<()> {
    let nodes = RedisServer::start_many(NODES).await?;
    other_partition_count_is_refused(RedisTopology::Nodes(nodes.iter().map(RedisServer::url).collect())).await
}

/// See [`other_partition_count_is_refused`], on a Redis Cluster.
#[tokio::test]
async fn redis_cluster_refuses_another_partition_count() -> Result<()> {
    let cluster = RedisCluster::start().await?;
    other_partition_count_is_refused(RedisTopology::Cluster(cluster.urls())).await
}

/// On several standalone nodes, each partition's stream and epoch live on the node
/// `crier_proto::node_of(partition, nodes)` names, and on no other (the placement is a storage contract
/// between brokers and edges).
#[tokio::test]
async fn each_partition_lives_on_the_node_its_jump_hash_names() -> Result<()> {
    let nodes = RedisServer::start_many(NODES).await?;
    let urls = nodes.iter().map(RedisServer::url).collect();
    let log = redis_log(RedisTopology::Nodes(urls), PARTITIONS, Retention::default()).await?;
    for p in 0..PARTITIONS {
        within("append", log.append(p, payload(0), None)).await??;
    }
    for (i, node) in nodes.iter().enumerate() {
        let mut conn = node.connection().await?;
        for p in 0..PARTITIONS {
            let keys = PartitionKeys::new(p);
            let mut exists = redis::cmd("EXISTS");
            exists.arg(&keys.stream).arg(&keys.epoch);
            let exists: u32 = within("EXISTS", exists.query_async(&mut conn)).await??;
            let home = crier_proto::node_of(p, NODES);
            let want = if home == i { 2 } else { 0 };
            ensure!(exists == want, "partition {p} (home node {home}): {exists} of its keys on node {i}");
        }
    }
    Ok(())
}

/// For each master of `cluster`, one partition whose keys it serves.
async fn partition_per_master(cluster: &RedisCluster) -> Result<Vec<u32>> {
    let mut found = vec![None; cluster.masters().len()];
    for p in 0..PARTITIONS {
        let node = cluster.node_for_key(&PartitionKeys::new(p).stream).await?;
        found[node].get_or_insert(p);
    }
    found
        .into_iter()
        .enumerate()
        .map(|(node, p)| p.with_context(|| format!("no partition of {PARTITIONS} on master {node}")))
        .collect()
}

/// Appends to `partition` and checks the entry is readable by `range` and by a new reader.
async fn append_and_read(log: &Arc<RedisLog>, partition: u32, i: usize) -> Result<()> {
    let id = within(format!("append to partition {partition}"), log.append(partition, payload(i), None))
        .await??
        .id;
    let range = within("range", log.range(partition, StreamId::ZERO, 100)).await??;
    ensure!(range.entries.last().is_some_and(|e| e.id == id), "partition {partition}: range {range:?}");
    let mut reader = within("reader", log.reader(partition)).await??;
    let read = within("read", reader.read_after(StreamId::ZERO, 100, Duration::ZERO)).await??;
    ensure!(
        read.last().is_some_and(|e| e.id == id && e.data == payload(i)),
        "partition {partition}: {read:?}"
    );
    Ok(())
}

/// Appends to `partition`, whose master is dead, must fail with `Unavailable` within seconds.
async fn append_fails_unavailable(log: &Arc<RedisLog>, partition: u32) -> Result<()> {
    let started = Instant::now();
    let result =
        within_for(DEAD_NODE_LIMIT, "append to a dead master", log.append(partition, payload(0), None))
            .await?;
    ensure!(
        matches!(result, Err(LogError::Unavailable { partition: p, .. }) if p == partition),
        "append to partition {partition} on the dead master after {:?}: {result:?}",
        started.elapsed()
    );
    Ok(())
}

/// When one master of a Redis Cluster dies, the partitions on the other masters stay appendable and
/// readable, both before and after the cluster flags it as failed, while appends to the dead master's
/// partitions fail with `Unavailable` within seconds instead of hanging.
#[tokio::test]
async fn cluster_keeps_serving_partitions_of_live_masters_when_one_dies() -> Result<()> {
    let mut cluster = RedisCluster::start().await?;
    let log = redis_log(RedisTopology::Cluster(cluster.urls()), PARTITIONS, Retention::default()).await?;
    let partitions = partition_per_master(&cluster).await?;
    for &p in &partitions {
        append_and_read(&log, p, 0).await?;
    }
    let dead = 1;
    cluster.kill_master(dead);
    let live: Vec<u32> =
        partitions.iter().enumerate().filter(|(node, _)| *node != dead).map(|(_, p)| *p).collect();
    for &p in &live {
        append_and_read(&log, p, 1)
            .await
            .with_context(|| format!("partition {p}, failure not yet noticed"))?;
    }
    append_fails_unavailable(&log, partitions[dead]).await?;
    cluster.until_failure_detected(dead).await?;
    for &p in &live {
        append_and_read(&log, p, 2).await.with_context(|| format!("partition {p}, master {dead} failed"))?;
    }
    append_fails_unavailable(&log, partitions[dead]).await
}

/// How often a script's text went to Redis: `EVAL` calls and `SCRIPT LOAD`s.
async fn texts_sent(redis: &RedisServer) -> Result<u64> {
    Ok(calls(redis, "eval").await? + calls(redis, "script|load").await?)
}

/// Calls of `command` (lower case) Redis has served, from `INFO commandstats`.
async fn calls(redis: &RedisServer, command: &str) -> Result<u64> {
    let mut conn = redis.connection().await?;
    let info: String =
        within("INFO", redis::cmd("INFO").arg("commandstats").query_async(&mut conn)).await??;
    let prefix = format!("cmdstat_{command}:calls=");
    Ok(info
        .lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .and_then(|rest| rest.split(',').next())
        .map_or(Ok(0), str::parse)?)
}

/// Scripts go by SHA1: their text is sent once per node that does not know them (`EVAL`, or `SCRIPT LOAD`
/// then `EVALSHA`), at first use and again after `SCRIPT FLUSH` (as after a restart), and appends keep working
/// across the flush.
#[tokio::test]
async fn scripts_are_sent_by_hash_and_reloaded_when_flushed() -> Result<()> {
    let redis = RedisServer::start().await?;
    let log = redis_log(RedisTopology::Nodes(vec![redis.url()]), 4, Retention::default()).await?;
    for i in 0..10 {
        within("append", log.append(0, payload(i), None)).await??;
    }
    ensure!(texts_sent(&redis).await? == 1, "script text sent more than once before the flush");
    let mut conn = redis.connection().await?;
    let _: () = within("SCRIPT FLUSH", redis::cmd("SCRIPT").arg("FLUSH").query_async(&mut conn)).await??;
    for i in 10..20 {
        within("append", log.append(0, payload(i), None)).await??;
    }
    ensure!(texts_sent(&redis).await? == 2, "script text not sent exactly once after the flush");
    ensure!(calls(&redis, "evalsha").await? >= 20, "appends did not go by EVALSHA");
    let range = within("range", log.range(0, StreamId::ZERO, 100)).await??;
    ensure!(range.entries.len() == 20, "{} entries after 20 appends", range.entries.len());
    Ok(())
}

/// Appends that arrive together go out in one script call (group commit) that checks each stream's epoch
/// once: every entry of a partition gets the partition's one epoch, and its live sequence counts every entry
/// exactly once, even when the partition's first appends all arrive at the same time.
#[tokio::test]
async fn concurrent_first_appends_share_one_epoch_and_a_gapless_sequence() -> Result<()> {
    const PER_PARTITION: usize = 200;
    let redis = RedisServer::start().await?;
    let log = redis_log(RedisTopology::Nodes(vec![redis.url()]), 4, Retention::default()).await?;
    let appends = (0..4 * PER_PARTITION).map(|i| {
        let log = Arc::clone(&log);
        async move { log.append((i % 4) as u32, payload(i), None).await.map(|a| ((i % 4) as u32, a)) }
    });
    let appended = within("concurrent appends", futures_util::future::try_join_all(appends)).await??;
    let mut conn = redis.connection().await?;
    for p in 0..4 {
        let head = within("head", log.head(p)).await??;
        let mine: Vec<_> = appended.iter().filter(|(q, _)| *q == p).map(|(_, a)| a).collect();
        ensure!(mine.iter().all(|a| a.epoch == head.epoch), "partition {p}: entries in several epochs");
        let seq: usize = redis::cmd("GET").arg(&PartitionKeys::new(p).seq).query_async(&mut conn).await?;
        ensure!(seq == PER_PARTITION, "partition {p}: sequence {seq} after {PER_PARTITION} appends");
    }
    Ok(())
}

/// A stream that disappears on its own (deleted, evicted) while its epoch key survives is a new stream:
/// the next append gives it a new epoch, so positions from the lost one are never taken for its own.
#[tokio::test]
async fn redis_append_after_the_stream_alone_was_deleted_starts_a_new_epoch() -> Result<()> {
    let redis = RedisServer::start().await?;
    let log = redis_log(RedisTopology::Nodes(vec![redis.url()]), 4, Retention::default()).await?;
    let before = within("append", log.append(1, payload(0), None)).await??;
    let mut conn = redis.connection().await?;
    let () = redis::cmd("DEL").arg(&PartitionKeys::new(1).stream).query_async(&mut conn).await?;
    let after = within("append", log.append(1, payload(1), None)).await??;
    ensure!(after.epoch != before.epoch, "epoch {:x} kept after its stream was deleted", before.epoch);
    let head = within("head", log.head(1)).await??;
    ensure!(head == Head { epoch: after.epoch, last: after.id }, "head {head:?} after append {after:?}");
    Ok(())
}

/// An epoch key that disappears on its own (deleted, evicted) while its stream survives gives the stream a
/// new epoch at the next append, and its live sequence starts over with it: an edge reading the old epoch
/// must not take the new numbers for the old ones.
#[tokio::test]
async fn redis_append_after_the_epoch_alone_was_deleted_starts_a_new_epoch_and_sequence() -> Result<()> {
    let redis = RedisServer::start().await?;
    let log = redis_log(RedisTopology::Nodes(vec![redis.url()]), 4, Retention::default()).await?;
    let keys = PartitionKeys::new(2);
    for i in 0..3 {
        within("append", log.append(2, payload(i), None)).await??;
    }
    let before = within("head", log.head(2)).await??;
    let mut conn = redis.connection().await?;
    let () = redis::cmd("DEL").arg(&keys.epoch).query_async(&mut conn).await?;
    let after = within("append", log.append(2, payload(3), None)).await??;
    ensure!(after.epoch != before.epoch, "epoch {:x} kept after its key was deleted", before.epoch);
    let seq: u64 = redis::cmd("GET").arg(&keys.seq).query_async(&mut conn).await?;
    ensure!(seq == 1, "sequence {seq} in the new epoch after one append");
    let range = within("range", log.range(2, StreamId::ZERO, 100)).await??;
    ensure!(range.epoch == after.epoch && range.entries.len() == 4, "range after the new epoch: {range:?}");
    Ok(())
}
