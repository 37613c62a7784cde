//! The production log: each partition is a Redis stream (`crier_proto::keys`) with an epoch key beside it,
//! appended, trimmed and deduplicated by one Lua script per call (all keys of a partition share a hash tag,
//! so this holds in Redis Cluster too) and read with `XREAD BLOCK` on the reader's own connection.
//!
//! Bound (in Redis): each stream is trimmed on every append to `MAXLEN ~ --retention-max-len` and `MINID ~`
//! (now − --retention-max-age); each idempotency key expires (`PX`) after the dedupe window; one epoch key
//! per partition. Nothing here grows with time at a steady publish rate.
//!
//! Requires Redis 7.0+ (`XINFO STREAM` reports `max-deleted-entry-id`, which recovery relies on).

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use crier_proto::StreamId;
use crier_proto::keys::{ENTRY_FIELD, PARTITION_COUNT, PartitionKeys};
use redis::{Cmd, ErrorKind, RedisError, Script, ServerErrorKind, Value};

use super::reply::{self, protocol};
use super::topology::{Conn, Connector, ReaderConn, RedisTopology};
use super::{
    Appended, Dedupe, Entry, Head, LogError, Newest, PartitionReader, PartitionedLog, Range, Retention,
    check_partition, new_epoch,
};

const APPEND: &str = concat!(include_str!("lua/epoch.lua"), include_str!("lua/append.lua"));
const HEAD: &str = concat!(include_str!("lua/epoch.lua"), include_str!("lua/head.lua"));
const RANGE: &str = concat!(include_str!("lua/epoch.lua"), include_str!("lua/range.lua"));
const NEWEST: &str = concat!(include_str!("lua/epoch.lua"), include_str!("lua/newest.lua"));

/// A partition script, sent by SHA1 (`EVALSHA`); its text goes over the wire only when a node does not know
/// it yet (first use, or after a restart or `SCRIPT FLUSH`).
struct Lua {
    text: &'static str,
    sha1: String,
}

impl Lua {
    fn new(text: &'static str) -> Self {
        Self { text, sha1: Script::new(text).get_hash().to_owned() }
    }
}

struct Scripts {
    append: Lua,
    head: Lua,
    range: Lua,
    newest: Lua,
}

static SCRIPTS: LazyLock<Scripts> = LazyLock::new(|| Scripts {
    append: Lua::new(APPEND),
    head: Lua::new(HEAD),
    range: Lua::new(RANGE),
    newest: Lua::new(NEWEST),
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
    keys: Arc<[PartitionKeys]>,
    retention: Retention,
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
        Ok(Self {
            connector: Arc::new(connector),
            conns: conns.into(),
            keys: PartitionKeys::all(config.partitions).into(),
            retention: Retention { max_len: config.retention.max_len.max(1), ..config.retention },
            command_timeout: config.command_timeout,
        })
    }

    fn keys(&self, partition: u32) -> Result<&PartitionKeys, LogError> {
        check_partition(partition, self.partitions())?;
        Ok(&self.keys[partition as usize])
    }

    /// Runs one of the partition scripts with the stream and epoch keys first: `EVALSHA`, and `EVAL` once
    /// when the node answers NOSCRIPT (which also caches the script there).
    async fn script(
        &self,
        partition: u32,
        script: &Lua,
        extra_keys: &[&str],
        args: &[&[u8]],
    ) -> Result<Value, LogError> {
        let keys = self.keys(partition)?;
        let call = |name: &str, script: &str| {
            let mut cmd = redis::cmd(name);
            cmd.arg(script).arg(2 + extra_keys.len()).arg(&keys.stream).arg(&keys.epoch);
            cmd.arg(extra_keys).arg(format!("{:x}", new_epoch()));
            for arg in args {
                cmd.arg(*arg);
            }
            cmd
        };
        let conn = &self.conns[self.connector.conn_index(partition)];
        let run = async {
            match conn.query(&call("EVALSHA", &script.sha1)).await {
                Err(err) if err.kind() == ErrorKind::Server(ServerErrorKind::NoScript) => {
                    conn.query(&call("EVAL", script.text)).await
                }
                reply => reply,
            }
        };
        tokio::time::timeout(self.command_timeout, run)
            .await
            .map_err(|_| LogError::Unavailable { partition, source: timed_out("script") })?
            .map_err(|source| LogError::Unavailable { partition, source })
    }
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

fn timed_out(what: &str) -> RedisError {
    RedisError::from(std::io::Error::new(std::io::ErrorKind::TimedOut, format!("{what} timed out")))
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
        let dedupe_key = dedupe.map(|d| self.keys(partition).map(|k| k.dedupe(d.token))).transpose()?;
        let extra: Vec<&str> = dedupe_key.iter().map(String::as_str).collect();
        let (max_len, max_age) = (self.retention.max_len.to_string(), ms(self.retention.max_age).to_string());
        let window = dedupe.map_or(0, |d| ms(d.window).max(1)).to_string();
        let args: [&[u8]; 5] =
            [ENTRY_FIELD.as_bytes(), &data, max_len.as_bytes(), max_age.as_bytes(), window.as_bytes()];
        let reply = reply::array(partition, self.script(partition, &SCRIPTS.append, &extra, &args).await?)?;
        let (Some(result), Some(duplicate)) = (reply.first(), reply.get(1)) else {
            return Err(protocol(partition, &reply));
        };
        let (epoch, id) =
            reply::text(result).and_then(|t| t.split_once(' ')).ok_or_else(|| protocol(partition, result))?;
        Ok(Appended {
            epoch: u64::from_str_radix(epoch, 16).map_err(|_| protocol(partition, result))?,
            id: id.parse().map_err(|_| protocol(partition, result))?,
            duplicate: matches!(duplicate, Value::Int(1)),
        })
    }

    async fn head(&self, partition: u32) -> Result<Head, LogError> {
        let reply = reply::array(partition, self.script(partition, &SCRIPTS.head, &[], &[]).await?)?;
        match reply.as_slice() {
            [epoch, last] => {
                Ok(Head { epoch: reply::epoch(partition, epoch)?, last: reply::stream_id(partition, last)? })
            }
            _ => Err(protocol(partition, &reply)),
        }
    }

    async fn range(&self, partition: u32, after: StreamId, count: usize) -> Result<Range, LogError> {
        let (start, count) = (format!("({after}"), count.max(1).to_string());
        let reply =
            self.script(partition, &SCRIPTS.range, &[], &[start.as_bytes(), count.as_bytes()]).await?;
        let mut reply = reply::array(partition, reply)?;
        if reply.len() != 6 {
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
        Ok(Range { epoch: reply::epoch(partition, &reply[0])?, last, max_deleted, entries })
    }

    async fn newest(&self, partition: u32, until: StreamId, count: usize) -> Result<Newest, LogError> {
        let (end, count) = (until.to_string(), count.max(1).to_string());
        let reply = self.script(partition, &SCRIPTS.newest, &[], &[end.as_bytes(), count.as_bytes()]).await?;
        match <[Value; 2]>::try_from(reply::array(partition, reply)?) {
            Ok([epoch, entries]) => Ok(Newest {
                epoch: reply::epoch(partition, &epoch)?,
                entries: reply::entries(partition, entries)?,
            }),
            Err(reply) => Err(protocol(partition, &reply)),
        }
    }

    async fn reader(&self, partition: u32) -> Result<Box<dyn PartitionReader>, LogError> {
        let key = self.keys(partition)?.stream.clone();
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
