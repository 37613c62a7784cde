//! Where partitions live in Redis: one standalone node, several standalone nodes (partition → node by
//! `crier_proto::node_of`, a jump consistent hash), or a Redis Cluster (partition keys carry a hash tag, so the
//! cluster client routes each partition to its slot's master).
//!
//! Command connections are shared and auto-reconnecting. Readers get connections of their own, without
//! redis-rs' response timeout, because `XREAD BLOCK` legitimately waits.

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::cluster::{ClusterClient, ClusterClientBuilder};
use redis::cluster_async::ClusterConnection;
use redis::io::tcp::TcpSettings;
use redis::{
    AsyncConnectionConfig, Client, Cmd, FromRedisValue, IntoConnectionInfo, Pipeline, RedisResult,
    ScriptInvocation, Value,
};

/// Response timeout of cluster reader connections: far above any BLOCK time the edge uses.
const READER_RESPONSE_TIMEOUT: Duration = Duration::from_secs(3600);

/// How the deployment's Redis is laid out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedisTopology {
    /// One or more independent standalone nodes; partitions spread over them by jump consistent hash.
    Nodes(Vec<String>),
    /// A Redis Cluster, reached through these seed nodes.
    Cluster(Vec<String>),
}

/// A client for the standalone node at `url` whose connections send every command at once.
pub fn open_client(url: &str) -> RedisResult<Client> {
    Client::open(url.into_connection_info()?.set_tcp_settings(tcp_settings()))
}

/// Settings of a shared standalone command connection: connecting and every reply bounded by `timeout`,
/// one retry.
pub fn manager_config(timeout: Duration) -> ConnectionManagerConfig {
    ConnectionManagerConfig::new()
        .set_connection_timeout(Some(timeout))
        .set_response_timeout(Some(timeout))
        .set_number_of_retries(1)
}

/// `TCP_NODELAY` on: redis-rs leaves Nagle's algorithm on by default, which holds a command back while an
/// earlier one on the same (multiplexed) connection is unacknowledged, up to the peer's delayed-ACK timer.
fn tcp_settings() -> TcpSettings {
    TcpSettings::default().set_nodelay(true)
}

/// A shared command connection to the node (or cluster) holding a partition.
#[derive(Clone)]
pub enum Conn {
    /// A standalone node.
    Node(ConnectionManager),
    /// A cluster; routed by key.
    Cluster(ClusterConnection),
}

impl Conn {
    /// Runs `cmd`.
    pub async fn query(&self, cmd: &Cmd) -> RedisResult<Value> {
        self.fetch(cmd).await
    }

    /// Runs `cmd`, converting its reply.
    pub async fn fetch<T: FromRedisValue>(&self, cmd: &Cmd) -> RedisResult<T> {
        match self {
            Self::Node(conn) => cmd.query_async(&mut conn.clone()).await,
            Self::Cluster(conn) => cmd.query_async(&mut conn.clone()).await,
        }
    }

    /// Runs a script by SHA1, loading it first when the node answers NOSCRIPT.
    pub async fn invoke(&self, call: &ScriptInvocation<'_>) -> RedisResult<Value> {
        match self {
            Self::Node(conn) => call.invoke_async(&mut conn.clone()).await,
            Self::Cluster(conn) => call.invoke_async(&mut conn.clone()).await,
        }
    }

    /// Runs `pipe`, converting its replies. On a cluster every key of it must be in one slot (hash tags).
    pub async fn pipeline<T: FromRedisValue>(&self, pipe: &Pipeline) -> RedisResult<T> {
        match self {
            Self::Node(conn) => pipe.query_async(&mut conn.clone()).await,
            Self::Cluster(conn) => pipe.query_async(&mut conn.clone()).await,
        }
    }
}

/// Opens connections of a topology.
pub enum Connector {
    /// One client per standalone node, in `--redis-url` order.
    Nodes(Vec<Client>),
    /// The cluster client for commands, and one for blocking readers: redis-rs' cluster client applies
    /// its response timeouts to every connection it makes, and `XREAD BLOCK` must outlast them; and a
    /// reader must see every failure itself instead of having it retried.
    Cluster {
        /// Bounded by the command timeout.
        commands: Box<ClusterClient>,
        /// Unbounded here; each read bounds itself by its BLOCK time plus the command timeout.
        readers: Box<ClusterClient>,
    },
}

impl Connector {
    /// Clients for `topology` (no I/O yet).
    pub fn new(topology: &RedisTopology, timeout: Duration) -> RedisResult<Self> {
        match topology {
            RedisTopology::Nodes(urls) => {
                urls.iter().map(|u| open_client(u)).collect::<RedisResult<_>>().map(Self::Nodes)
            }
            RedisTopology::Cluster(urls) => {
                let builder = || {
                    ClusterClientBuilder::new(urls.iter().map(String::as_str))
                        .connection_timeout(timeout)
                        .tcp_settings(tcp_settings())
                };
                let commands = builder().response_timeout(timeout).build()?;
                // No retries: a read broken by a node's crash must fail, so the consumer re-checks the epoch.
                // Retried, it lands on the node restarted empty and reads its new stream as the old one.
                let readers = builder()
                    .response_timeout(READER_RESPONSE_TIMEOUT)
                    .overall_response_timeout(None)
                    .retries(0)
                    .build()?;
                Ok(Self::Cluster { commands: Box::new(commands), readers: Box::new(readers) })
            }
        }
    }

    /// The shared command connections: one per node, or one for the whole cluster.
    pub async fn command_conns(&self, timeout: Duration) -> RedisResult<Vec<Conn>> {
        match self {
            Self::Nodes(clients) => {
                let config = manager_config(timeout);
                let mut conns = Vec::with_capacity(clients.len());
                for client in clients {
                    conns.push(Conn::Node(client.get_connection_manager_with_config(config.clone()).await?));
                }
                Ok(conns)
            }
            Self::Cluster { commands, .. } => Ok(vec![Conn::Cluster(commands.get_async_connection().await?)]),
        }
    }

    /// A connection for one blocking reader of `partition`, without a response timeout of its own.
    pub async fn reader_conn(&self, partition: u32, timeout: Duration) -> RedisResult<ReaderConn> {
        match self {
            Self::Nodes(clients) => {
                let client = &clients[crier_proto::node_of(partition, clients.len())];
                let config = AsyncConnectionConfig::new()
                    .set_connection_timeout(Some(timeout))
                    .set_response_timeout(None);
                Ok(ReaderConn::Node(client.get_multiplexed_async_connection_with_config(&config).await?))
            }
            Self::Cluster { readers, .. } => Ok(ReaderConn::Cluster(readers.get_async_connection().await?)),
        }
    }

    /// The lowest of `partitions` on each standalone node (nodes holding none are skipped); on a cluster,
    /// partition 0 (the cluster client follows failovers itself).
    #[must_use]
    pub fn probe_partitions(&self, partitions: u32) -> Vec<u32> {
        match self {
            Self::Nodes(clients) => (0..clients.len())
                .filter_map(|node| (0..partitions).find(|&p| crier_proto::node_of(p, clients.len()) == node))
                .collect(),
            Self::Cluster { .. } => vec![0],
        }
    }

    /// How many standalone nodes (0 on a Cluster).
    #[must_use]
    pub fn nodes(&self) -> usize {
        match self {
            Self::Nodes(clients) => clients.len(),
            Self::Cluster { .. } => 0,
        }
    }

    /// The client of the standalone node holding `partition`, and its index; `None` on a Cluster.
    #[must_use]
    pub fn node_client(&self, partition: u32) -> Option<(&Client, usize)> {
        match self {
            Self::Nodes(clients) => {
                let node = crier_proto::node_of(partition, clients.len());
                Some((&clients[node], node))
            }
            Self::Cluster { .. } => None,
        }
    }

    /// Index into [`command_conns`](Self::command_conns) of the connection serving `partition`.
    #[must_use]
    pub fn conn_index(&self, partition: u32) -> usize {
        match self {
            Self::Nodes(clients) => crier_proto::node_of(partition, clients.len()),
            Self::Cluster { .. } => 0,
        }
    }
}

/// A reader's own connection.
pub enum ReaderConn {
    /// To a standalone node.
    Node(redis::aio::MultiplexedConnection),
    /// To the cluster (its own set of node connections).
    Cluster(ClusterConnection),
}

impl ReaderConn {
    /// Runs `cmd`.
    pub async fn query(&mut self, cmd: &Cmd) -> RedisResult<Value> {
        match self {
            Self::Node(conn) => cmd.query_async(conn).await,
            Self::Cluster(conn) => cmd.query_async(conn).await,
        }
    }
}
