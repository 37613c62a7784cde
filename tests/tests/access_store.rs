//! The access store's behaviour, the same on memory, one Redis node and Redis Cluster: grants are a set,
//! and a grant or revoke is both a changed set and an entry on the change feed. On Redis, the feed skips
//! only a malformed entry, reports a trim past its position as lag, and replays a window at start.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Result, ensure};
use crier_proto::keys::CONTROL_STREAM;
use crier_store::access::{AccessChange, AccessStore, ChangeFeed, MemoryAccessStore, RedisAccessStore};
use crier_store::log::RedisTopology;
use crier_tests::{RedisCluster, RedisServer, within};

async fn behaves(store: Arc<dyn AccessStore>) -> Result<()> {
    let mut feed = store.changes(Duration::ZERO).await?;
    store.grant("conv-a", "u2").await?;
    store.grant("conv-a", "u1").await?;
    store.grant("conv-a", "u1").await?;
    ensure!(store.check("conv-a", "u1").await? && !store.check("conv-b", "u1").await?);
    ensure!(store.list_grants("conv-a").await? == ["u1", "u2"]);
    store.revoke("conv-a", "u1").await?;
    store.revoke("conv-z", "u9").await?;
    ensure!(!store.check("conv-a", "u1").await?);
    let seen = collect(feed.as_mut(), 5).await?;
    let expected = [
        AccessChange::granted("conv-a", "u2"),
        AccessChange::granted("conv-a", "u1"),
        AccessChange::granted("conv-a", "u1"),
        AccessChange::revoked("conv-a", "u1"),
        AccessChange::revoked("conv-z", "u9"),
    ];
    ensure!(seen == expected, "{seen:?}");
    Ok(())
}

/// Reads `n` changes, failing on a lagged batch.
async fn collect(feed: &mut dyn ChangeFeed, n: usize) -> Result<Vec<AccessChange>> {
    let mut seen = Vec::new();
    while seen.len() < n {
        let batch = within("changes on the feed", feed.next_batch()).await??;
        ensure!(!batch.lagged, "unexpected lag after {seen:?}");
        seen.extend(batch.changes);
    }
    Ok(seen)
}

async fn redis_store(redis: &RedisServer) -> Result<RedisAccessStore> {
    let topology = RedisTopology::Nodes(vec![redis.url()]);
    Ok(RedisAccessStore::connect(&topology, Duration::from_secs(2)).await?)
}

/// A malformed control entry is skipped alone: the revocations before and after it in the same read are
/// delivered.
#[tokio::test]
async fn malformed_control_entry_is_skipped_alone() -> Result<()> {
    let redis = RedisServer::start().await?;
    let store = redis_store(&redis).await?;
    let mut feed = store.changes(Duration::ZERO).await?;
    store.revoke("c1", "u1").await?;
    let mut conn = redis.connection().await?;
    let _: String =
        redis::cmd("XADD").arg(CONTROL_STREAM).arg("*").arg("junk").arg("1").query_async(&mut conn).await?;
    store.revoke("c2", "u2").await?;
    let seen = collect(feed.as_mut(), 2).await?;
    ensure!(seen == [AccessChange::revoked("c1", "u1"), AccessChange::revoked("c2", "u2")], "{seen:?}");
    Ok(())
}

/// Changes trimmed from the stream before a feed read them make its next batch report lag (callers then
/// drop every cached answer) instead of vanishing silently.
#[tokio::test]
async fn trimmed_changes_are_reported_as_lag() -> Result<()> {
    let redis = RedisServer::start().await?;
    let store = redis_store(&redis).await?;
    let mut feed = store.changes(Duration::ZERO).await?;
    store.revoke("c1", "u1").await?;
    collect(feed.as_mut(), 1).await?;
    store.revoke("c2", "u2").await?;
    store.revoke("c3", "u3").await?;
    let mut conn = redis.connection().await?;
    let _: i64 = redis::cmd("XTRIM").arg(CONTROL_STREAM).arg("MAXLEN").arg(1).query_async(&mut conn).await?;
    let batch = within("the batch after the trim", feed.next_batch()).await??;
    ensure!(batch.lagged && batch.changes == [AccessChange::revoked("c3", "u3")], "{batch:?}");
    Ok(())
}

/// A feed opened with a replay window starts with the changes made within it, in order.
#[tokio::test]
async fn feed_replays_recent_changes_at_start() -> Result<()> {
    let redis = RedisServer::start().await?;
    let store = redis_store(&redis).await?;
    store.revoke("c1", "u1").await?;
    store.grant("c1", "u1").await?;
    store.revoke("c2", "u2").await?;
    let mut feed = store.changes(Duration::from_secs(3_600)).await?;
    let seen = collect(feed.as_mut(), 3).await?;
    let expected = [
        AccessChange::revoked("c1", "u1"),
        AccessChange::granted("c1", "u1"),
        AccessChange::revoked("c2", "u2"),
    ];
    ensure!(seen == expected, "{seen:?}");
    Ok(())
}

/// The in-memory store of `crier dev`.
#[tokio::test]
async fn memory_access_store_behaves() -> Result<()> {
    behaves(Arc::new(MemoryAccessStore::new())).await
}

/// One standalone Redis node.
#[tokio::test]
async fn redis_access_store_behaves() -> Result<()> {
    let redis = RedisServer::start().await?;
    let topology = RedisTopology::Nodes(vec![redis.url()]);
    behaves(Arc::new(RedisAccessStore::connect(&topology, Duration::from_secs(2)).await?)).await
}

/// Redis Cluster: the `{acl}` hash tag keeps the revoke script on one slot.
#[tokio::test]
async fn redis_cluster_access_store_behaves() -> Result<()> {
    let cluster = RedisCluster::start().await?;
    let topology = RedisTopology::Cluster(cluster.urls());
    behaves(Arc::new(RedisAccessStore::connect(&topology, Duration::from_secs(2)).await?)).await
}
