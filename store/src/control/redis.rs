//! The control plane on Redis: each edge's report in two hashes that expire with the heartbeat TTL, a sorted
//! set of edges by last heartbeat, and a pub/sub channel for operators' commands (key names in
//! `crier_proto::keys`).
//!
//! A report replaces the edge's presence hash atomically (written under a scratch key, then `RENAME`d: both
//! keys share the edge's hash tag), so a reader never sees half of it.
//!
//! Where it lives: with standalone nodes, on the first one. On a Redis Cluster, keys are routed by slot (an
//! edge's keys share its hash tag, so each pipeline below addresses one slot), and commands travel by
//! classic pub/sub through the first seed node that answers: the cluster bus carries a `PUBLISH` to
//! subscribers on every node, and as every edge subscribes and every broker publishes on that one node
//! (given the same seed order), the count `PUBLISH` returns (its node's subscribers) is every edge listening.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use async_trait::async_trait;
use crier_proto::keys::{CONTROL_CHANNEL, EDGES, EdgeKeys};
use futures_util::StreamExt;
use redis::Client;
use redis::aio::ConnectionManager;

use super::{
    ControlError, ControlMessage, ControlPlane, ControlStream, EdgeReport, HEARTBEAT_TTL, Presence, Users,
};
use crate::log::RedisTopology;
use crate::log::topology::{Conn, Connector, manager_config, open_client};
use crate::telemetry::now_ms;

/// A [`ControlPlane`] on Redis.
#[derive(Clone)]
pub struct RedisControl {
    /// Reports, stats and presence.
    conn: Conn,
    /// Commands: `PUBLISH` here, and listeners subscribe through `pubsub_client`.
    pubsub: ConnectionManager,
    pubsub_client: Client,
}

impl RedisControl {
    /// Connects to the control plane's Redis in `topology` (the log's Redis; see the module docs), each
    /// call bounded by `timeout`. On a cluster, commands go through the first seed node that answers: list
    /// the seeds in the same order everywhere.
    pub async fn connect(topology: &RedisTopology, timeout: Duration) -> Result<Self, ControlError> {
        let (RedisTopology::Nodes(urls) | RedisTopology::Cluster(urls)) = topology;
        let seeds = match topology {
            RedisTopology::Nodes(_) => &urls[..urls.len().min(1)],
            RedisTopology::Cluster(_) => &urls[..],
        };
        let (pubsub_client, pubsub) = first_answering(seeds, timeout).await?;
        let conn = match topology {
            RedisTopology::Nodes(_) => Conn::Node(pubsub.clone()),
            RedisTopology::Cluster(_) => {
                let connector = Connector::new(topology, timeout)?;
                connector.command_conns(timeout).await?.swap_remove(0)
            }
        };
        Ok(Self { conn, pubsub, pubsub_client })
    }

    /// Ids of edges that reported within the TTL; stale ones are removed on the way.
    async fn live_edges(&self) -> Result<Vec<String>, ControlError> {
        let cutoff = now_ms().saturating_sub(ttl_ms());
        let mut pipe = redis::pipe();
        pipe.cmd("ZREMRANGEBYSCORE").arg(EDGES).arg("-inf").arg(format!("({cutoff}")).ignore();
        pipe.cmd("ZRANGE").arg(EDGES).arg(0).arg(-1);
        let (ids,): (Vec<String>,) = self.conn.pipeline(&pipe).await?;
        Ok(ids)
    }
}

/// A client and connection for the first of `urls` that answers; the last error if none does.
async fn first_answering(
    urls: &[String],
    timeout: Duration,
) -> Result<(Client, ConnectionManager), ControlError> {
    let config = manager_config(timeout);
    let mut last = None;
    for url in urls {
        let client = open_client(url)?;
        match client.get_connection_manager_with_config(config.clone()).await {
            Ok(conn) => return Ok((client, conn)),
            Err(err) => last = Some(err),
        }
    }
    let none = || redis::RedisError::from((redis::ErrorKind::InvalidClientConfig, "no Redis URL"));
    Err(last.unwrap_or_else(none).into())
}

/// Conversations per `HSET` of a presence report: few commands, none of them huge.
const PRESENCE_FIELDS_PER_COMMAND: usize = 1_000;

/// Queues `HSET key conversation users-json ...` for all of `presence`, in commands of bounded size.
fn write_presence(pipe: &mut redis::Pipeline, key: &str, presence: &Presence) {
    let new_hset = || {
        let mut hset = redis::cmd("HSET");
        hset.arg(key);
        hset
    };
    let (mut hset, mut fields, mut json) = (new_hset(), 0, Vec::new());
    for (conversation, users) in presence.iter() {
        json.clear();
        // Serializing a map of strings to numbers into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut json, users);
        hset.arg(conversation).arg(&json[..]);
        fields += 1;
        if fields == PRESENCE_FIELDS_PER_COMMAND {
            pipe.add_command(std::mem::replace(&mut hset, new_hset())).ignore();
            fields = 0;
        }
    }
    if fields > 0 {
        pipe.add_command(hset).ignore();
    }
}

fn ttl_ms() -> u64 {
    u64::try_from(HEARTBEAT_TTL.as_millis()).unwrap_or(u64::MAX)
}

#[async_trait]
impl ControlPlane for RedisControl {
    async fn report(&self, report: EdgeReport) -> Result<(), ControlError> {
        let keys = EdgeKeys::new(&report.edge_id);
        let scratch = format!("{}:next", keys.presence);
        let partitions: Vec<String> = report.partitions_read.iter().map(u32::to_string).collect();
        let mut pipe = redis::pipe();
        pipe.cmd("HSET")
            .arg(&keys.stats)
            .arg("connections")
            .arg(report.connections)
            .arg("authenticated")
            .arg(report.authenticated)
            .arg("subscriptions")
            .arg(report.subscriptions)
            .arg("partitions_read")
            .arg(partitions.join(","))
            .arg("reported_at_ms")
            .arg(report.reported_at_ms)
            .ignore();
        pipe.cmd("PEXPIRE").arg(&keys.stats).arg(ttl_ms()).ignore();
        pipe.cmd("DEL").arg(&scratch).ignore();
        write_presence(&mut pipe, &scratch, &report.presence);
        if report.presence.is_empty() {
            pipe.cmd("DEL").arg(&keys.presence).ignore();
        } else {
            pipe.cmd("RENAME").arg(&scratch).arg(&keys.presence).ignore();
            pipe.cmd("PEXPIRE").arg(&keys.presence).arg(ttl_ms()).ignore();
        }
        self.conn.pipeline::<()>(&pipe).await?;
        // Listed only once its report is readable.
        let mut zadd = redis::cmd("ZADD");
        zadd.arg(EDGES).arg(report.reported_at_ms).arg(&report.edge_id);
        self.conn.fetch::<()>(&zadd).await?;
        Ok(())
    }

    async fn withdraw(&self, edge_id: &str) -> Result<(), ControlError> {
        let keys = EdgeKeys::new(edge_id);
        self.conn.fetch::<()>(redis::cmd("ZREM").arg(EDGES).arg(edge_id)).await?;
        let mut pipe = redis::pipe();
        pipe.cmd("DEL").arg(&keys.stats).ignore().cmd("DEL").arg(&keys.presence).ignore();
        self.conn.pipeline::<()>(&pipe).await?;
        Ok(())
    }

    async fn stats(&self) -> Result<Vec<EdgeReport>, ControlError> {
        let mut reports = Vec::new();
        for edge_id in self.live_edges().await? {
            let keys = EdgeKeys::new(&edge_id);
            let fields: HashMap<String, String> =
                self.conn.fetch(redis::cmd("HGETALL").arg(&keys.stats)).await?;
            if !fields.is_empty() {
                reports.push(parse_stats(edge_id, &fields, &keys.stats)?);
            }
        }
        Ok(reports)
    }

    async fn presence(&self, conversation: &str) -> Result<BTreeMap<String, u32>, ControlError> {
        let mut users = BTreeMap::new();
        for edge_id in self.live_edges().await? {
            let key = EdgeKeys::new(&edge_id).presence;
            let json: Option<String> =
                self.conn.fetch(redis::cmd("HGET").arg(&key).arg(conversation)).await?;
            if let Some(json) = json {
                let found: Users = serde_json::from_str(&json)
                    .map_err(|e| ControlError::Protocol { key: key.clone(), detail: e.to_string() })?;
                found.merge_into(&mut users);
            }
        }
        Ok(users)
    }

    async fn send(&self, message: &ControlMessage) -> Result<u32, ControlError> {
        let json = serde_json::to_string(message).unwrap_or_default();
        let received: u32 = redis::cmd("PUBLISH")
            .arg(CONTROL_CHANNEL)
            .arg(json)
            .query_async(&mut self.pubsub.clone())
            .await?;
        Ok(received)
    }

    async fn listen(&self) -> Result<ControlStream, ControlError> {
        let mut pubsub = self.pubsub_client.get_async_pubsub().await?;
        pubsub.subscribe(CONTROL_CHANNEL).await?;
        let stream = pubsub.into_on_message().filter_map(|message| async move {
            let parsed = serde_json::from_slice::<ControlMessage>(message.get_payload_bytes());
            if let Err(err) = &parsed {
                tracing::warn!(error = %err, "ignoring an unreadable control message");
            }
            parsed.ok()
        });
        Ok(stream.boxed())
    }
}

fn parse_stats(
    edge_id: String,
    fields: &HashMap<String, String>,
    key: &str,
) -> Result<EdgeReport, ControlError> {
    let number = |name: &str| -> Result<u64, ControlError> {
        fields.get(name).map_or(Ok(0), |v| {
            v.parse()
                .map_err(|_| ControlError::Protocol { key: key.to_owned(), detail: format!("{name}={v:?}") })
        })
    };
    let partitions_read = fields
        .get("partitions_read")
        .map(|list| list.split(',').filter_map(|p| p.parse().ok()).collect())
        .unwrap_or_default();
    Ok(EdgeReport {
        edge_id,
        connections: number("connections")?,
        authenticated: number("authenticated")?,
        subscriptions: number("subscriptions")?,
        partitions_read,
        reported_at_ms: number("reported_at_ms")?,
        presence: Presence::default(),
    })
}
