//! The access store's behaviour, the same on memory, one Redis node and Redis Cluster: grants are a set,
//! and a revoke is both a removed grant and an entry on the revocation feed.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Result, ensure};
use crier_store::access::{AccessStore, MemoryAccessStore, RedisAccessStore, Revocation};
use crier_store::log::RedisTopology;
use crier_tests::{RedisCluster, RedisServer, within};

async fn behaves(store: Arc<dyn AccessStore>) -> Result<()> {
    let mut feed = store.revocations().await?;
    store.grant("conv-a", "u2").await?;
    store.grant("conv-a", "u1").await?;
    store.grant("conv-a", "u1").await?;
    ensure!(store.check("conv-a", "u1").await? && !store.check("conv-b", "u1").await?);
    ensure!(store.list_grants("conv-a").await? == ["u1", "u2"]);
    store.revoke("conv-a", "u1").await?;
    store.revoke("conv-z", "u9").await?;
    ensure!(!store.check("conv-a", "u1").await?);
    let mut seen = Vec::new();
    while seen.len() < 2 {
        seen.extend(within("revocations on the feed", feed.next_batch()).await??);
    }
    let expected = [("conv-a", "u1"), ("conv-z", "u9")]
        .map(|(c, u)| Revocation { conversation: c.to_owned(), user: u.to_owned() });
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
