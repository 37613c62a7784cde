//! [`RedisCluster`]: a real 3-master Redis Cluster per test (no replicas), assembled from spawned
//! [`RedisServer`] cluster nodes with `redis-cli --cluster create`. Each node has its own port, cluster bus port
//! and temporary directory; all are killed on drop and their logs printed if the test is panicking.
//!
//! The nodes run with a short `cluster-node-timeout`, so a killed master is flagged as failed within about a
//! second, and `cluster-require-full-coverage no`, so the surviving masters keep serving their slots.

use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use redis::aio::MultiplexedConnection;
use redis::{FromRedisValue, Value};
use tokio::time::Instant;

use crate::deadline::{within, within_for};
use crate::redis_server::{ClusterNode, RedisServer};

/// Masters of the cluster; every slot range has exactly one, without replicas.
pub const MASTERS: usize = 3;
/// `cluster-node-timeout` of every node: how long a silent master takes to be flagged as failed.
pub const NODE_TIMEOUT: Duration = Duration::from_millis(1_000);
/// How long `redis-cli --cluster create` plus the gossip until every node reports `cluster_state:ok` may
/// take (about a second on an idle machine).
const FORM_TIMEOUT: Duration = Duration::from_secs(20);
/// Interval between probes of a cluster-wide state change (nothing pushes it to a client).
const PROBE_INTERVAL: Duration = Duration::from_millis(20);

/// A Redis Cluster of [`MASTERS`] spawned masters; index `i` is the `i`-th of [`urls`](Self::urls).
pub struct RedisCluster {
    masters: Vec<RedisServer>,
}

impl RedisCluster {
    /// Starts [`MASTERS`] nodes, assigns them the slots evenly and waits until every node reports
    /// `cluster_state:ok`.
    ///
    /// # Panics
    /// If `redis-server` or `redis-cli` is not installed.
    pub async fn start() -> anyhow::Result<Self> {
        let node = ClusterNode { node_timeout: NODE_TIMEOUT };
        let masters =
            futures_util::future::try_join_all((0..MASTERS).map(|_| RedisServer::start_cluster_node(node)))
                .await?;
        let cluster = Self { masters };
        within_for(FORM_TIMEOUT, "the Redis Cluster to form", cluster.form()).await??;
        Ok(cluster)
    }

    /// `redis://127.0.0.1:PORT` of every master, by index (also of killed ones: seeds may be dead).
    #[must_use]
    pub fn urls(&self) -> Vec<String> {
        self.masters.iter().map(RedisServer::url).collect()
    }

    /// The `i`-th master's process.
    #[must_use]
    pub fn master(&self, i: usize) -> &RedisServer {
        &self.masters[i]
    }

    /// The masters' processes, by index.
    #[must_use]
    pub fn masters(&self) -> &[RedisServer] {
        &self.masters
    }

    /// Kills master `i` (SIGKILL). Its slots have no replica to fail over to: they stay unserved.
    pub fn kill_master(&mut self, i: usize) {
        self.masters[i].stop();
    }

    /// Kills master `i` (SIGKILL) if it runs and starts it again, empty, on the same port with the same `nodes.conf`: it
    /// comes back as the same node owning the same slots but holding no keys, as a master without
    /// persistence does after a crash. Returns once it answers and no running master flags it as failed.
    pub async fn restart_master_empty(&mut self, i: usize) -> anyhow::Result<()> {
        self.masters[i].restart().await?;
        self.until_rejoined(i).await
    }

    /// Returns once every running master (`i` included) sees master `i` without a `fail` or `fail?` flag.
    pub async fn until_rejoined(&self, i: usize) -> anyhow::Result<()> {
        let port = format!("127.0.0.1:{}@", self.masters[i].port());
        let limit = NODE_TIMEOUT * 10;
        within_for(limit, format!("master {i} to rejoin the cluster"), async {
            loop {
                let mut all = true;
                for master in self.masters.iter().filter(|m| m.is_running()) {
                    let flags = flags_of(master, &port).await?;
                    all &= flags.is_some_and(|f| !f.split(',').any(|f| f.starts_with("fail")));
                }
                if all {
                    return Ok(());
                }
                tokio::time::sleep(PROBE_INTERVAL).await;
            }
        })
        .await?
    }

    /// A plain connection to master `i` (not cluster-aware: keyed commands get `MOVED` for other slots).
    pub async fn connection(&self, i: usize) -> anyhow::Result<MultiplexedConnection> {
        self.masters[i].connection().await
    }

    /// The hash slot of `key` (`CLUSTER KEYSLOT`, asked of a running master).
    pub async fn slot_of(&self, key: &str) -> anyhow::Result<u16> {
        let mut conn = self.live_connection().await?;
        query(&mut conn, redis::cmd("CLUSTER").arg("KEYSLOT").arg(key)).await
    }

    /// The index of the master serving `slot`, according to a running master's `CLUSTER SLOTS`.
    pub async fn node_for_slot(&self, slot: u16) -> anyhow::Result<usize> {
        let mut conn = self.live_connection().await?;
        let slots: Value = query(&mut conn, redis::cmd("CLUSTER").arg("SLOTS")).await?;
        let port = slot_port(&slots, slot).with_context(|| format!("slot {slot} in {slots:?}"))?;
        self.masters
            .iter()
            .position(|m| m.port() == port)
            .with_context(|| format!("slot {slot} is served on port {port}, not by one of our masters"))
    }

    /// The index of the master serving `key`.
    pub async fn node_for_key(&self, key: &str) -> anyhow::Result<usize> {
        self.node_for_slot(self.slot_of(key).await?).await
    }

    /// Returns once every running master flags master `dead` as failed (`fail` in `CLUSTER NODES`, not the
    /// tentative `fail?`), i.e. the cluster has noticed the failure, not just a slow answer.
    pub async fn until_failure_detected(&self, dead: usize) -> anyhow::Result<()> {
        let port = format!("127.0.0.1:{}@", self.masters[dead].port());
        let limit = NODE_TIMEOUT * 10;
        within_for(limit, format!("master {dead} to be flagged as failed"), async {
            loop {
                let mut all = true;
                for (i, master) in self.masters.iter().enumerate().filter(|(i, _)| *i != dead) {
                    ensure!(master.is_running(), "master {i} is not running");
                    let flags = flags_of(master, &port).await?;
                    all &= flags.is_some_and(|f| f.split(',').any(|f| f == "fail"));
                }
                if all {
                    return Ok(());
                }
                tokio::time::sleep(PROBE_INTERVAL).await;
            }
        })
        .await?
    }

    async fn live_connection(&self) -> anyhow::Result<MultiplexedConnection> {
        let live = self.masters.iter().find(|m| m.is_running()).context("every master is dead")?;
        live.connection().await
    }

    /// Runs `redis-cli --cluster create`, then waits for every node to report `cluster_state:ok`.
    async fn form(&self) -> anyhow::Result<()> {
        let addrs: Vec<String> = self.masters.iter().map(|m| format!("127.0.0.1:{}", m.port())).collect();
        let mut cmd = tokio::process::Command::new("redis-cli");
        cmd.args(["--cluster", "create"])
            .args(&addrs)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdin(Stdio::null())
            .kill_on_drop(true);
        let output = match cmd.output().await {
            Ok(output) => output,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                panic!("redis-cli not found: install it with `apt-get install -y redis-server redis-tools`")
            }
            Err(err) => return Err(err).context("running redis-cli --cluster create"),
        };
        ensure!(
            output.status.success(),
            "redis-cli --cluster create {addrs:?} {}:\n{}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        let deadline = Instant::now() + FORM_TIMEOUT;
        loop {
            let mut ok = true;
            for master in &self.masters {
                ok &= cluster_command(master, "INFO").await?.lines().any(|l| l.trim() == "cluster_state:ok");
            }
            if ok {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!("cluster of {addrs:?} not ok within {FORM_TIMEOUT:?}");
            }
            tokio::time::sleep(PROBE_INTERVAL).await;
        }
    }
}

/// `CLUSTER <sub>` on one node, as text.
async fn cluster_command(node: &RedisServer, sub: &str) -> anyhow::Result<String> {
    query(&mut node.connection().await?, redis::cmd("CLUSTER").arg(sub)).await
}

/// The flags (`master`, `fail?`, ...) `observer`'s `CLUSTER NODES` shows for the node whose address starts
/// with `address` (`127.0.0.1:<port>@`); `None` when it lists no such node.
async fn flags_of(observer: &RedisServer, address: &str) -> anyhow::Result<Option<String>> {
    let nodes = cluster_command(observer, "NODES").await?;
    let line = nodes.lines().find(|l| l.split(' ').nth(1).is_some_and(|a| a.starts_with(address)));
    Ok(line.and_then(|l| l.split(' ').nth(2)).map(str::to_owned))
}

/// Runs `cmd`, bounded by [`STEP`](crate::STEP).
async fn query<T: FromRedisValue>(conn: &mut MultiplexedConnection, cmd: &redis::Cmd) -> anyhow::Result<T> {
    let what = format!("{:?}", String::from_utf8_lossy(&cmd.get_packed_command()));
    Ok(within(what, cmd.query_async(conn)).await??)
}

/// The master port serving `slot` in a `CLUSTER SLOTS` reply: `[[start, end, [ip, port, id], ...], ...]`.
fn slot_port(slots: &Value, slot: u16) -> Option<u16> {
    let Value::Array(ranges) = slots else { return None };
    ranges.iter().find_map(|range| {
        let Value::Array(fields) = range else { return None };
        match fields.as_slice() {
            [Value::Int(start), Value::Int(end), Value::Array(master), ..]
                if (*start..=*end).contains(&i64::from(slot)) =>
            {
                match master.get(1) {
                    Some(Value::Int(port)) => u16::try_from(*port).ok(),
                    _ => None,
                }
            }
            _ => None,
        }
    })
}
