//! The production access store: a Redis set of user ids per conversation (`keys::grants`) and the control
//! stream (`keys::CONTROL_STREAM`) carrying revocations to every edge. All access keys share the `{acl}`
//! hash tag; with several standalone nodes they live on the first `--redis-url`.
//!
//! A revoke removes the grant and appends to the control stream in one script, so no edge can see the
//! revocation without the grant being gone. Feeds read the stream with `XREAD BLOCK` on a connection of
//! their own, from the stream's last id at the time the feed was opened, and resume from their last id
//! after an error: a Redis blip delays revocations, it does not lose them (within the stream's `MAXLEN`).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use crier_proto::keys::{self, CONTROL_CONVERSATION_FIELD, CONTROL_STREAM, CONTROL_USER_FIELD};
use redis::streams::{StreamId, StreamRangeReply, StreamReadReply};
use redis::{Cmd, FromRedisValue, RedisError};

use super::{AccessError, AccessStore, Revocation, RevocationFeed};
use crate::log::RedisTopology;
use crate::log::topology::{Conn, Connector, ReaderConn};

/// Revocations kept in the control stream (approximate `MAXLEN ~`).
const CONTROL_MAX_LEN: usize = 10_000;
/// `BLOCK` of one feed read.
const FEED_BLOCK: Duration = Duration::from_secs(5);

/// SREM the grant and XADD the revocation, atomically (both keys carry the `{acl}` tag).
const REVOKE_SCRIPT: &str = "redis.call('SREM', KEYS[1], ARGV[1]) \
    return redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], '*', ARGV[4], ARGV[2], ARGV[5], ARGV[1])";

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
        self.query::<redis::Value>(redis::cmd("SADD").arg(keys::grants(conversation)).arg(user))
            .await
            .map(drop)
    }

    async fn revoke(&self, conversation: &str, user: &str) -> Result<(), AccessError> {
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(REVOKE_SCRIPT).arg(2).arg(keys::grants(conversation)).arg(CONTROL_STREAM);
        cmd.arg(user)
            .arg(conversation)
            .arg(CONTROL_MAX_LEN)
            .arg(CONTROL_CONVERSATION_FIELD)
            .arg(CONTROL_USER_FIELD);
        self.query::<redis::Value>(&cmd).await.map(drop)
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

    async fn revocations(&self) -> Result<Box<dyn RevocationFeed>, AccessError> {
        let newest: StreamRangeReply = self
            .query(redis::cmd("XREVRANGE").arg(CONTROL_STREAM).arg("+").arg("-").arg("COUNT").arg(1))
            .await?;
        let last = newest.ids.first().map_or_else(|| "0-0".to_owned(), |e| e.id.clone());
        let connector = Arc::clone(&self.connector);
        Ok(Box::new(RedisFeed { connector, conn: None, last, timeout: self.timeout }))
    }
}

struct RedisFeed {
    connector: Arc<Connector>,
    /// Dropped after an error and reopened on the next read.
    conn: Option<ReaderConn>,
    /// The id of the last revocation handed out.
    last: String,
    timeout: Duration,
}

#[async_trait]
impl RevocationFeed for RedisFeed {
    async fn next_batch(&mut self) -> Result<Vec<Revocation>, AccessError> {
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

    async fn read(&mut self) -> Result<Vec<Revocation>, AccessError> {
        if self.conn.is_none() {
            self.conn = Some(self.open().await.map_err(AccessError::Unavailable)?);
        }
        let Some(conn) = self.conn.as_mut() else { return Ok(Vec::new()) };
        let block_ms = u64::try_from(FEED_BLOCK.as_millis()).unwrap_or(5_000);
        let mut cmd = redis::cmd("XREAD");
        cmd.arg("COUNT")
            .arg(256)
            .arg("BLOCK")
            .arg(block_ms)
            .arg("STREAMS")
            .arg(CONTROL_STREAM)
            .arg(&self.last);
        let value = tokio::time::timeout(FEED_BLOCK + self.timeout, conn.query(&cmd))
            .await
            .map_err(|_| AccessError::Unavailable(std::io::Error::from(std::io::ErrorKind::TimedOut).into()))?
            .map_err(AccessError::Unavailable)?;
        let reply: Option<StreamReadReply> =
            redis::from_redis_value(value).map_err(|e| AccessError::Protocol(e.to_string()))?;
        let mut batch = Vec::new();
        for entry in reply.into_iter().flat_map(|r| r.keys).flat_map(|k| k.ids) {
            batch.push(revocation(&entry)?);
            self.last = entry.id;
        }
        Ok(batch)
    }
}

fn revocation(entry: &StreamId) -> Result<Revocation, AccessError> {
    let field = |name: &str| {
        entry
            .get::<String>(name)
            .ok_or_else(|| AccessError::Protocol(format!("control entry {} lacks {name:?}", entry.id)))
    };
    Ok(Revocation { conversation: field(CONTROL_CONVERSATION_FIELD)?, user: field(CONTROL_USER_FIELD)? })
}
