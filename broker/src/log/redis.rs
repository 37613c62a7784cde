//! The production log: each partition is a Redis stream (`crier_proto::keys`), appended with
//! `XADD MAXLEN ~` and read with `XREAD BLOCK`.
//!
//! Appends share one auto-reconnecting multiplexed connection. Each [`PartitionReader`] opens a connection of
//! its own: a blocked `XREAD` would otherwise stall every command queued behind it, and redis-rs' default
//! 500 ms response timeout would cut it short.

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use crier_proto::StreamId;
use crier_proto::keys::{ENTRY_FIELD, PartitionKeys};
use redis::aio::{ConnectionManager, ConnectionManagerConfig, MultiplexedConnection};
use redis::{AsyncConnectionConfig, Client, RedisError, Value};

use super::{Entry, LogError, PartitionReader, PartitionedLog, check_partition};

/// How to reach Redis and how to bound each partition.
#[derive(Debug, Clone)]
pub struct RedisLogConfig {
    /// `redis://HOST:PORT[/DB]`.
    pub url: String,
    /// The partition count.
    pub partitions: u32,
    /// Approximate entries kept per partition (`XADD MAXLEN ~`).
    pub max_len: usize,
    /// Bound on one command (appends, `last_id`) and on connecting.
    pub command_timeout: Duration,
}

/// A [`PartitionedLog`] on Redis streams.
#[derive(Clone)]
pub struct RedisLog {
    client: Client,
    conn: ConnectionManager,
    keys: std::sync::Arc<[PartitionKeys]>,
    max_len: usize,
    command_timeout: Duration,
}

impl RedisLog {
    /// Connects to Redis. Fails if it cannot be reached within the command timeout.
    pub async fn connect(config: RedisLogConfig) -> Result<Self, LogError> {
        let unavailable = |source| LogError::Unavailable { partition: 0, source };
        let client = Client::open(config.url.as_str()).map_err(unavailable)?;
        let manager_config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(config.command_timeout))
            .set_response_timeout(Some(config.command_timeout))
            .set_number_of_retries(1);
        let conn = client.get_connection_manager_with_config(manager_config).await.map_err(unavailable)?;
        Ok(Self {
            client,
            conn,
            keys: PartitionKeys::all(config.partitions).into(),
            max_len: config.max_len.max(1),
            command_timeout: config.command_timeout,
        })
    }

    fn keys(&self, partition: u32) -> Result<&PartitionKeys, LogError> {
        check_partition(partition, self.partitions())?;
        Ok(&self.keys[partition as usize])
    }
}

#[async_trait]
impl PartitionedLog for RedisLog {
    fn partitions(&self) -> u32 {
        u32::try_from(self.keys.len()).unwrap_or(u32::MAX)
    }

    async fn append(&self, partition: u32, data: Bytes) -> Result<StreamId, LogError> {
        let key = &self.keys(partition)?.stream;
        let reply: Value = redis::cmd("XADD")
            .arg(key)
            .arg("MAXLEN")
            .arg("~")
            .arg(self.max_len)
            .arg("*")
            .arg(ENTRY_FIELD)
            .arg(data.as_ref())
            .query_async(&mut self.conn.clone())
            .await
            .map_err(|source| LogError::Unavailable { partition, source })?;
        parse_id(partition, &reply)
    }

    async fn last_id(&self, partition: u32) -> Result<StreamId, LogError> {
        let key = &self.keys(partition)?.stream;
        let reply: Value = redis::cmd("XREVRANGE")
            .arg(key)
            .arg("+")
            .arg("-")
            .arg("COUNT")
            .arg(1)
            .query_async(&mut self.conn.clone())
            .await
            .map_err(|source| LogError::Unavailable { partition, source })?;
        let entries = parse_entries(partition, reply)?;
        Ok(entries.last().map_or(StreamId::ZERO, |e| e.id))
    }

    async fn reader(&self, partition: u32) -> Result<Box<dyn PartitionReader>, LogError> {
        let key = self.keys(partition)?.stream.clone();
        // No response timeout of redis-rs' own: each read bounds itself by its BLOCK time plus this margin.
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.command_timeout))
            .set_response_timeout(None);
        let conn = self
            .client
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .map_err(|source| LogError::Unavailable { partition, source })?;
        Ok(Box::new(RedisReader { conn, key, partition, margin: self.command_timeout }))
    }
}

struct RedisReader {
    conn: MultiplexedConnection,
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
        let block_ms = u64::try_from(block.as_millis()).unwrap_or(u64::MAX).max(1);
        let mut cmd = redis::cmd("XREAD");
        cmd.arg("COUNT")
            .arg(count)
            .arg("BLOCK")
            .arg(block_ms)
            .arg("STREAMS")
            .arg(&self.key)
            .arg(after.to_string());
        let query = cmd.query_async::<Value>(&mut self.conn);
        let reply = tokio::time::timeout(block + self.margin, query)
            .await
            .map_err(|_| LogError::Unavailable { partition, source: timed_out() })?
            .map_err(|source| LogError::Unavailable { partition, source })?;
        match reply {
            Value::Nil => Ok(Vec::new()),
            // [[key, entries]] for the one stream asked for.
            Value::Array(mut streams) if streams.len() == 1 => match streams.pop() {
                Some(Value::Array(mut pair)) if pair.len() == 2 => {
                    parse_entries(partition, pair.pop().unwrap_or(Value::Nil))
                }
                other => Err(protocol(partition, &other)),
            },
            Value::Map(mut streams) if streams.len() == 1 => match streams.pop() {
                Some((_, entries)) => parse_entries(partition, entries),
                None => Ok(Vec::new()),
            },
            other => Err(protocol(partition, &other)),
        }
    }
}

fn timed_out() -> RedisError {
    RedisError::from(std::io::Error::new(std::io::ErrorKind::TimedOut, "blocked read overran its BLOCK time"))
}

fn protocol(partition: u32, value: &impl std::fmt::Debug) -> LogError {
    LogError::Protocol { partition, detail: format!("{value:?}") }
}

fn parse_id(partition: u32, value: &Value) -> Result<StreamId, LogError> {
    let text = match value {
        Value::BulkString(b) => std::str::from_utf8(b).ok(),
        Value::SimpleString(s) => Some(s.as_str()),
        _ => None,
    };
    text.and_then(|t| t.parse().ok()).ok_or_else(|| protocol(partition, value))
}

/// `[[id, [field, value, ...]], ...]` → entries carrying the `ENTRY_FIELD` value, without copying it.
fn parse_entries(partition: u32, value: Value) -> Result<Vec<Entry>, LogError> {
    let Value::Array(items) = value else {
        return match value {
            Value::Nil => Ok(Vec::new()),
            other => Err(protocol(partition, &other)),
        };
    };
    items.into_iter().map(|item| parse_entry(partition, item)).collect()
}

fn parse_entry(partition: u32, item: Value) -> Result<Entry, LogError> {
    let Value::Array(mut pair) = item else { return Err(protocol(partition, &item)) };
    let (Some(fields), Some(id)) = (pair.pop(), pair.pop()) else {
        return Err(protocol(partition, &pair));
    };
    let id = parse_id(partition, &id)?;
    let Value::Array(fields) = fields else { return Err(protocol(partition, &fields)) };
    let mut fields = fields.into_iter();
    while let (Some(name), Some(value)) = (fields.next(), fields.next()) {
        if matches!(&name, Value::BulkString(n) if n == ENTRY_FIELD.as_bytes())
            && let Value::BulkString(data) = value
        {
            return Ok(Entry { id, data: Bytes::from(data) });
        }
    }
    Err(LogError::Protocol { partition, detail: format!("entry {id} has no field {ENTRY_FIELD:?}") })
}
