//! The production access store: a Redis set of user ids per conversation (`keys::grants`) and the control
//! stream (`keys::CONTROL_STREAM`) carrying grants and revocations to every edge. All access keys share the `{acl}`
//! hash tag; with several standalone nodes they live on the first `--redis-url`.
//!
//! A revoke (grant) removes (adds) the grant and appends to the control stream in one script, so no edge
//! can see the change before the set holds it. Feeds read the stream with `XREAD BLOCK` on a connection of
//! their own, from the requested replay point, and resume from their last id after an error: a Redis blip
//! delays changes, it does not lose them. A feed that finds the stream trimmed past its last id reports
//! the batch as lagged; a malformed entry is skipped (logged), never the rest of its batch.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use crier_proto::StreamId;
use crier_proto::keys::{
    self, CONTROL_CONVERSATION_FIELD, CONTROL_KIND_FIELD, CONTROL_KIND_GRANT, CONTROL_STREAM,
    CONTROL_USER_FIELD,
};
use redis::streams::{StreamId as RedisStreamId, StreamRangeReply, StreamReadReply};
use redis::{Cmd, FromRedisValue, RedisError};

use super::{AccessChange, AccessError, AccessStore, ChangeBatch, ChangeFeed, ChangeKind};
use crate::log::RedisTopology;
use crate::log::topology::{Conn, Connector, ReaderConn};

/// Changes kept in the control stream (approximate `MAXLEN ~`).
const CONTROL_MAX_LEN: usize = 10_000;
/// `BLOCK` of one feed read.
const FEED_BLOCK: Duration = Duration::from_secs(5);

/// SREM the grant and XADD the revocation, atomically (both keys carry the `{acl}` tag).
const REVOKE_SCRIPT: &str = "redis.call('SREM', KEYS[1], ARGV[1]) \
    return redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], '*', ARGV[4], ARGV[2], ARGV[5], ARGV[1])";
/// SADD the grant and XADD it, atomically. The kind field goes last: an edge predating grants reads the
/// entry as a revocation (a spurious kick), so roll out edges before brokers.
const GRANT_SCRIPT: &str = "redis.call('SADD', KEYS[1], ARGV[1]) \
    return redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], '*', ARGV[4], ARGV[2], ARGV[5], ARGV[1], \
    ARGV[6], ARGV[7])";

/// An [`AccessStore`] on Redis.
#[derive(Clone)]
pub struct RedisAccessStore {
    conn: Conn,
    connector: Arc<Connector>,
    timeout: Duration,
}

impl RedisAccessStore {
    /// Connects to the deployment's Redis; `timeout` bounds connecting and each command.
    pub async fn connect(topology: &RedisTopology, timeout: Duration) -> Result<Self, AccessError> {
        let connector = Connector::new(topology, timeout).map_err(AccessError::Unavailable)?;
        let conns = connector.command_conns(timeout).await.map_err(AccessError::Unavailable)?;
        let conn = conns
            .into_iter()
            .next()
            .ok_or_else(|| AccessError::Protocol("no Redis node configured".into()))?;
        Ok(Self { conn, connector: Arc::new(connector), timeout })
    }

    async fn query<T: FromRedisValue>(&self, cmd: &Cmd) -> Result<T, AccessError> {
        let value = self.conn.query(cmd).await.map_err(AccessError::Unavailable)?;
        redis::from_redis_value(value).map_err(|e| AccessError::Protocol(e.to_string()))
    }
}

#[async_trait]
impl AccessStore for RedisAccessStore {
    async fn grant(&self, conversation: &str, user: &str) -> Result<(), AccessError> {
        let mut cmd = change_script(GRANT_SCRIPT, conversation, user);
        cmd.arg(CONTROL_KIND_FIELD).arg(CONTROL_KIND_GRANT);
        self.query::<redis::Value>(&cmd).await.map(drop)
    }

    async fn revoke(&self, conversation: &str, user: &str) -> Result<(), AccessError> {
        self.query::<redis::Value>(&change_script(REVOKE_SCRIPT, conversation, user)).await.map(drop)
    }

    async fn check(&self, conversation: &str, user: &str) -> Result<bool, AccessError> {
        self.query(redis::cmd("SISMEMBER").arg(keys::grants(conversation)).arg(user)).await
    }

    async fn list_grants(&self, conversation: &str) -> Result<Vec<String>, AccessError> {
        let mut users: Vec<String> =
            self.query(redis::cmd("SMEMBERS").arg(keys::grants(conversation))).await?;
        users.sort_unstable();
        Ok(users)
    }

    async fn changes(&self, replay: Duration) -> Result<Box<dyn ChangeFeed>, AccessError> {
        let newest: StreamRangeReply = self
            .query(redis::cmd("XREVRANGE").arg(CONTROL_STREAM).arg("+").arg("-").arg("COUNT").arg(1))
            .await?;
        let newest = newest.ids.first().map_or(StreamId::ZERO, |e| parse_id(&e.id));
        // Stream ids are Redis' clock in ms: start `replay` before the newest entry (Redis' "now" as far
        // as this stream knows), never before the stream's start.
        let back = u64::try_from(replay.as_millis()).unwrap_or(u64::MAX);
        let last = if replay.is_zero() { newest } else { StreamId::new(newest.ms.saturating_sub(back), 0) };
        let connector = Arc::clone(&self.connector);
        Ok(Box::new(RedisFeed { connector, conn: None, last, read_once: false, timeout: self.timeout }))
    }
}

/// `EVAL script` over the grants set and the control stream, with the arguments both scripts share.
fn change_script(script: &str, conversation: &str, user: &str) -> Cmd {
    let mut cmd = redis::cmd("EVAL");
    cmd.arg(script).arg(2).arg(keys::grants(conversation)).arg(CONTROL_STREAM);
    cmd.arg(user)
        .arg(conversation)
        .arg(CONTROL_MAX_LEN)
        .arg(CONTROL_CONVERSATION_FIELD)
        .arg(CONTROL_USER_FIELD);
    cmd
}

/// A stream id Redis wrote; `0-0` for anything else (only compared, never sent back as a position).
fn parse_id(id: &str) -> StreamId {
    id.parse().unwrap_or(StreamId::ZERO)
}

struct RedisFeed {
    connector: Arc<Connector>,
    /// Dropped after an error and reopened on the next read.
    conn: Option<ReaderConn>,
    /// The id of the last change handed out (or where replay starts).
    last: StreamId,
    /// `last` is an id this feed read: anything trimmed past it was lost. Until the first read, `last`
    /// is only where replay starts (best effort, as far back as the stream still reaches).
    read_once: bool,
    timeout: Duration,
}

#[async_trait]
impl ChangeFeed for RedisFeed {
    async fn next_batch(&mut self) -> Result<ChangeBatch, AccessError> {
        let result = self.read().await;
        if result.is_err() {
            self.conn = None;
        }
        result
    }
}

impl RedisFeed {
    /// A blocking-read connection to where the access keys live.
    async fn open(&self) -> Result<ReaderConn, RedisError> {
        match &*self.connector {
            Connector::Nodes(clients) => {
                let config = redis::AsyncConnectionConfig::new()
                    .set_connection_timeout(Some(self.timeout))
                    .set_response_timeout(None);
                let client =
                    clients.first().ok_or_else(|| RedisError::from(std::io::Error::other("no node")))?;
                Ok(ReaderConn::Node(client.get_multiplexed_async_connection_with_config(&config).await?))
            }
            Connector::Cluster { readers, .. } => {
                Ok(ReaderConn::Cluster(readers.get_async_connection().await?))
            }
        }
    }

    async fn read(&mut self) -> Result<ChangeBatch, AccessError> {
        if self.conn.is_none() {
            self.conn = Some(self.open().await.map_err(AccessError::Unavailable)?);
        }
        let Some(conn) = self.conn.as_mut() else { return Ok(ChangeBatch::default()) };
        let block_ms = u64::try_from(FEED_BLOCK.as_millis()).unwrap_or(5_000);
        let mut cmd = redis::cmd("XREAD");
        cmd.arg("COUNT").arg(256).arg("BLOCK").arg(block_ms);
        cmd.arg("STREAMS").arg(CONTROL_STREAM).arg(self.last.to_string());
        let value = query(conn, &cmd, FEED_BLOCK + self.timeout).await?;
        let reply: Option<StreamReadReply> =
            redis::from_redis_value(value).map_err(|e| AccessError::Protocol(e.to_string()))?;
        let entries: Vec<_> = reply.into_iter().flat_map(|r| r.keys).flat_map(|k| k.ids).collect();
        if entries.is_empty() {
            return Ok(ChangeBatch::default());
        }
        let lagged = self.read_once && trimmed_past(conn, self.last, self.timeout).await?;
        self.read_once = true;
        let mut batch = ChangeBatch { changes: Vec::with_capacity(entries.len()), lagged };
        for entry in entries {
            match change(&entry) {
                Ok(change) => batch.changes.push(change),
                Err(err) => tracing::warn!(error = %err, "skipping malformed control entry"),
            }
            self.last = parse_id(&entry.id);
        }
        Ok(batch)
    }
}

/// Whether the stream lost entries after `last` to trimming: its oldest entry is newer than `last`
/// (conservative: also when only `last` itself went).
async fn trimmed_past(conn: &mut ReaderConn, last: StreamId, limit: Duration) -> Result<bool, AccessError> {
    let mut cmd = redis::cmd("XRANGE");
    cmd.arg(CONTROL_STREAM).arg("-").arg("+").arg("COUNT").arg(1);
    let oldest: StreamRangeReply = redis::from_redis_value(query(conn, &cmd, limit).await?)
        .map_err(|e| AccessError::Protocol(e.to_string()))?;
    Ok(oldest.ids.first().is_some_and(|e| parse_id(&e.id) > last))
}

/// `cmd` on the feed's connection, bounded by `limit`.
async fn query(conn: &mut ReaderConn, cmd: &Cmd, limit: Duration) -> Result<redis::Value, AccessError> {
    tokio::time::timeout(limit, conn.query(cmd))
        .await
        .map_err(|_| AccessError::Unavailable(std::io::Error::from(std::io::ErrorKind::TimedOut).into()))?
        .map_err(AccessError::Unavailable)
}

fn change(entry: &RedisStreamId) -> Result<AccessChange, AccessError> {
    let field = |name: &str| {
        entry
            .get::<String>(name)
            .ok_or_else(|| AccessError::Protocol(format!("control entry {} lacks {name:?}", entry.id)))
    };
    let kind = match entry.get::<String>(CONTROL_KIND_FIELD).as_deref() {
        None => ChangeKind::Revoked,
        Some(CONTROL_KIND_GRANT) => ChangeKind::Granted,
        Some(other) => {
            return Err(AccessError::Protocol(format!("control entry {} has kind {other:?}", entry.id)));
        }
    };
    Ok(AccessChange {
        kind,
        conversation: field(CONTROL_CONVERSATION_FIELD)?,
        user: field(CONTROL_USER_FIELD)?,
    })
}
