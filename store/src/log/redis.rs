//! The production log: each partition is a Redis stream (`crier_proto::keys`) with an epoch and a sequence
//! key beside it, appended, trimmed, deduplicated and published on the partition's live channel by one Lua
//! script per call (all keys of a partition share a hash tag, so this holds in Redis Cluster too).
//! Appends go through group-commit lanes (`commit`). On standalone nodes readers are fed by pub/sub (`feed`,
//! `live`) and read the stream only to catch up; on a Cluster they read it with `XREAD BLOCK` on a
//! connection of their own.
//!
//! Bound (in Redis): each stream is trimmed on every append to `MAXLEN ~ --retention-max-len` and `MINID ~`
//! (now − --retention-max-age); each idempotency key expires (`PX`) after the dedupe window; one epoch key
//! per partition. Nothing here grows with time at a steady publish rate.
//!
//! Requires Redis 7.0+ (`XINFO STREAM` reports `max-deleted-entry-id`, which recovery relies on).

use std::sync::{Arc, LazyLock, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use crier_proto::StreamId;
use crier_proto::keys::{PARTITION_COUNT, PartitionKeys};
use redis::{Cmd, Script, Value};

use super::commit::{Lane, Shared};
use super::feed::Feed;
use super::live::LiveReader;
use super::reply::{self, protocol, timed_out};
use super::topology::{Conn, Connector, ReaderConn, RedisTopology};
use super::{
    Appended, Dedupe, Entry, Head, LogError, Newest, PartitionReader, PartitionedLog, Range, Retention,
    check_partition, new_epoch,
};

/// The partition scripts, each sent by SHA1 (`EVALSHA`; `redis::Script` loads it on NOSCRIPT).
struct Scripts {
    append: Script,
    head: Script,
    range: Script,
    newest: Script,
}

static SCRIPTS: LazyLock<Scripts> = LazyLock::new(|| Scripts {
    append: Script::new(concat!(include_str!("lua/epoch.lua"), include_str!("lua/append.lua"))),
    head: Script::new(concat!(include_str!("lua/epoch.lua"), include_str!("lua/head.lua"))),
    range: Script::new(concat!(include_str!("lua/epoch.lua"), include_str!("lua/range.lua"))),
    newest: Script::new(concat!(include_str!("lua/epoch.lua"), include_str!("lua/newest.lua"))),
});

/// How to reach Redis and how to bound each partition.
#[derive(Debug, Clone)]
pub struct RedisLogConfig {
    /// Standalone node(s) or cluster.
    pub topology: RedisTopology,
    /// The partition count; checked against the one stored at first start.
    pub partitions: u32,
    /// Retention per partition.
    pub retention: Retention,
    /// Bound on one command (appends, heads, ranges) and on connecting.
    pub command_timeout: Duration,
}

/// A [`PartitionedLog`] on Redis streams.
#[derive(Clone)]
pub struct RedisLog {
    connector: Arc<Connector>,
    conns: Arc<[Conn]>,
    /// Group-commit lanes: one per standalone node, or one per partition on a Cluster.
    lanes: Arc<[Lane]>,
    /// The live pub/sub feed of each standalone node, started by its first reader.
    feeds: Arc<[OnceLock<Arc<Feed>>]>,
    keys: Arc<[PartitionKeys]>,
    command_timeout: Duration,
}

impl RedisLog {
    /// Connects and checks (or, at first start, records) the deployment's partition count.
    pub async fn connect(config: RedisLogConfig) -> Result<Self, LogError> {
        let unavailable = |source| LogError::Unavailable { partition: 0, source };
        let connector = Connector::new(&config.topology, config.command_timeout).map_err(unavailable)?;
        let conns = connector.command_conns(config.command_timeout).await.map_err(unavailable)?;
        for conn in &conns {
            check_partition_count(conn, config.partitions).await?;
        }
        let keys: Arc<[PartitionKeys]> = PartitionKeys::all(config.partitions).into();
        let lanes = lanes(&connector, &conns, &config, Arc::clone(&keys));
        let feeds = (0..connector.nodes()).map(|_| OnceLock::new()).collect();
        Ok(Self {
            connector: Arc::new(connector),
            conns: conns.into(),
            lanes,
            feeds,
            keys,
            command_timeout: config.command_timeout,
        })
    }

    fn keys(&self, partition: u32) -> Result<&PartitionKeys, LogError> {
        check_partition(partition, self.partitions())?;
        Ok(&self.keys[partition as usize])
    }

    /// Runs the head or range script on `partition`: keys stream, epoch, seq; a fresh epoch, then `args`.
    async fn script(&self, partition: u32, script: &Script, args: &[&[u8]]) -> Result<Value, LogError> {
        let keys = self.keys(partition)?;
        let mut call = script.key(&keys.stream);
        call.key(&keys.epoch).key(&keys.seq).arg(format!("{:x}", new_epoch()));
        for arg in args {
            call.arg(*arg);
        }
        let conn = &self.conns[self.connector.conn_index(partition)];
        tokio::time::timeout(self.command_timeout, conn.invoke(&call))
            .await
            .map_err(|_| LogError::Unavailable { partition, source: timed_out("script") })?
            .map_err(|source| LogError::Unavailable { partition, source })
    }

    /// The live feed of the standalone node holding `partition`, started on first use; `None` on a Cluster.
    fn feed(&self, partition: u32) -> Option<Arc<Feed>> {
        let (client, node) = self.connector.node_client(partition)?;
        let feed =
            self.feeds[node].get_or_init(|| Arc::new(Feed::start(client.clone(), self.command_timeout)));
        Some(Arc::clone(feed))
    }
}

/// One group-commit lane per standalone node, or per partition on a Cluster (a script's keys share a slot).
fn lanes(
    connector: &Connector,
    conns: &[Conn],
    config: &RedisLogConfig,
    keys: Arc<[PartitionKeys]>,
) -> Arc<[Lane]> {
    let cluster = matches!(connector, Connector::Cluster { .. });
    let shared = Arc::new(Shared {
        keys,
        script: &SCRIPTS.append,
        max_len: config.retention.max_len.max(1).to_string(),
        max_age_ms: ms(config.retention.max_age).to_string(),
        publish: if cluster { "SPUBLISH" } else { "PUBLISH" },
        timeout: config.command_timeout,
    });
    let count = if cluster { config.partitions as usize } else { conns.len() };
    (0..count).map(|lane| Lane::start(conns[lane % conns.len()].clone(), Arc::clone(&shared))).collect()
}

async fn check_partition_count(conn: &Conn, configured: u32) -> Result<(), LogError> {
    let unavailable = |source| LogError::Unavailable { partition: 0, source };
    let mut set = Cmd::new();
    set.arg("SET").arg(PARTITION_COUNT).arg(configured).arg("NX").arg("GET");
    let stored = conn.query(&set).await.map_err(unavailable)?;
    match reply::text(&stored).map(str::parse::<u32>) {
        None => Ok(()),
        Some(Ok(stored)) if stored == configured => Ok(()),
        Some(Ok(stored)) => Err(LogError::PartitionMismatch { stored, configured }),
        Some(Err(_)) => Err(protocol(0, &stored)),
    }
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[async_trait]
impl PartitionedLog for RedisLog {
    fn partitions(&self) -> u32 {
        u32::try_from(self.keys.len()).unwrap_or(u32::MAX)
    }

    fn probe_partitions(&self) -> Vec<u32> {
        self.connector.probe_partitions(self.partitions())
    }

    async fn append(
        &self,
        partition: u32,
        data: Bytes,
        dedupe: Option<Dedupe<'_>>,
    ) -> Result<Appended, LogError> {
        let keys = self.keys(partition)?;
        let dedupe = dedupe.map(|d| (keys.dedupe(d.token), ms(d.window).max(1)));
        let lane = match &*self.connector {
            Connector::Cluster { .. } => partition as usize,
            Connector::Nodes(_) => self.connector.conn_index(partition),
        };
        self.lanes[lane].append(partition, data, dedupe).await
    }

    async fn head(&self, partition: u32) -> Result<Head, LogError> {
        let reply = reply::array(partition, self.script(partition, &SCRIPTS.head, &[]).await?)?;
        match reply.as_slice() {
            [epoch, last] => {
                Ok(Head { epoch: reply::epoch(partition, epoch)?, last: reply::stream_id(partition, last)? })
            }
            _ => Err(protocol(partition, &reply)),
        }
    }

    async fn range(&self, partition: u32, after: StreamId, count: usize) -> Result<Range, LogError> {
        let (start, count) = (format!("({after}"), count.max(1).to_string());
        let reply = self.script(partition, &SCRIPTS.range, &[start.as_bytes(), count.as_bytes()]).await?;
        let mut reply = reply::array(partition, reply)?;
        if reply.len() != 7 {
            return Err(protocol(partition, &reply));
        }
        let entries = reply::entries(partition, reply.pop().unwrap_or(Value::Nil))?;
        let last = reply::stream_id(partition, &reply[1])?;
        let deleted = reply::stream_id(partition, &reply[2])?;
        // Trimming (MAXLEN/MINID) does not move Redis' max-deleted-entry-id: when anything was ever removed,
        // everything before the oldest entry left counts as possibly gone (all of it, if none is left).
        let max_deleted = if matches!(reply[3], Value::Int(1)) {
            let first = reply::stream_id(partition, &reply[4])?;
            deleted.max(if first == StreamId::ZERO { last } else { first.prev() })
        } else {
            deleted
        };
        let seq = match reply[5] {
            Value::Int(seq) => u64::try_from(seq).map_err(|_| protocol(partition, &reply[5]))?,
            ref other => return Err(protocol(partition, other)),
        };
        Ok(Range { epoch: reply::epoch(partition, &reply[0])?, last, max_deleted, seq, entries })
    }

    async fn newest(&self, partition: u32, until: StreamId, count: usize) -> Result<Newest, LogError> {
        let (end, count) = (until.to_string(), count.max(1).to_string());
        let reply = self.script(partition, &SCRIPTS.newest, &[end.as_bytes(), count.as_bytes()]).await?;
        match <[Value; 2]>::try_from(reply::array(partition, reply)?) {
            Ok([epoch, entries]) => Ok(Newest {
                epoch: reply::epoch(partition, &epoch)?,
                entries: reply::entries(partition, entries)?,
            }),
            Err(reply) => Err(protocol(partition, &reply)),
        }
    }

    async fn reader(&self, partition: u32) -> Result<Box<dyn PartitionReader>, LogError> {
        let keys = self.keys(partition)?;
        if let Some(feed) = self.feed(partition) {
            return Ok(Box::new(LiveReader::new(Arc::new(self.clone()), feed, partition, keys.live.clone())));
        }
        let key = keys.stream.clone();
        let conn = self
            .connector
            .reader_conn(partition, self.command_timeout)
            .await
            .map_err(|source| LogError::Unavailable { partition, source })?;
        Ok(Box::new(RedisReader { conn, key, partition, margin: self.command_timeout }))
    }
}

struct RedisReader {
    conn: ReaderConn,
    key: String,
    partition: u32,
    /// Extra time a blocked read may take past its BLOCK before the connection counts as dead.
    margin: Duration,
}

#[async_trait]
impl PartitionReader for RedisReader {
    async fn read_after(
        &mut self,
        after: StreamId,
        count: usize,
        block: Duration,
    ) -> Result<Vec<Entry>, LogError> {
        let partition = self.partition;
        let mut cmd = redis::cmd("XREAD");
        cmd.arg("COUNT").arg(count).arg("BLOCK").arg(ms(block).max(1));
        cmd.arg("STREAMS").arg(&self.key).arg(after.to_string());
        let reply = tokio::time::timeout(block + self.margin, self.conn.query(&cmd))
            .await
            .map_err(|_| LogError::Unavailable { partition, source: timed_out("blocked read") })?
            .map_err(|source| LogError::Unavailable { partition, source })?;
        reply::xread(partition, reply)
    }
}
