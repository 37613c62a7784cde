//! [`RedisServer`]: a real `redis-server` process per test, on a free port with its own temporary directory,
//! nothing persisted (`--save "" --appendonly no`). It is killed on drop; if the test is panicking, its log is
//! printed to stderr so a failure shows what Redis saw.
//!
//! [`RedisServer::start_cluster_node`] starts one as an empty Redis Cluster node instead (see
//! `RedisCluster`).
//!
//! Readiness is checked by asking the server for its `process_id` (`INFO server`): a `PONG` from some other
//! test's Redis that grabbed the same port would otherwise pass for ours.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use crier_store::log::{RedisLog, RedisLogConfig, RedisTopology, Retention};
use redis::AsyncConnectionConfig;
use redis::aio::MultiplexedConnection;
use tempfile::TempDir;
use tokio::time::Instant;

use crate::deadline::within;

/// How long a freshly spawned server may take to answer.
const READY_TIMEOUT: Duration = Duration::from_secs(10);
/// Interval between readiness probes of a starting server.
const PROBE_INTERVAL: Duration = Duration::from_millis(20);
/// Free ports found by binding port 0 can be taken by someone else before Redis binds them: retry this often.
const PORT_ATTEMPTS: usize = 5;
/// Command timeout of logs built by [`RedisServer::redis_log`]: long enough for a loaded CI machine, short
/// enough that "Redis is down" tests see `Unavailable` within seconds.
pub const LOG_COMMAND_TIMEOUT: Duration = Duration::from_secs(2);

/// Highest port a Redis Cluster node may use: its cluster bus listens on `port + 10000`, which must fit too.
const MAX_CLUSTER_PORT: u16 = 55_534;

/// A `redis-server` child process, killed on drop.
pub struct RedisServer {
    port: u16,
    dir: TempDir,
    child: Option<Child>,
    /// Started as a Redis Cluster node (see [`start_cluster_node`](Self::start_cluster_node)).
    cluster: Option<ClusterNode>,
}

/// Settings of a server started as a Redis Cluster node.
#[derive(Debug, Clone, Copy)]
pub struct ClusterNode {
    /// `cluster-node-timeout`: how long a silent node takes to be flagged as failed.
    pub node_timeout: Duration,
}

/// How one launch attempt ended.
enum Launch {
    Ready,
    /// The process exited before answering, e.g. because its port was taken.
    Exited(String),
}

impl RedisServer {
    /// Starts a server on a free port and waits until it answers.
    ///
    /// # Panics
    /// If the `redis-server` binary is not installed.
    pub async fn start() -> anyhow::Result<Self> {
        Self::start_as(None).await
    }

    /// Starts `n` independent servers concurrently (the "several standalone nodes" topology).
    ///
    /// # Panics
    /// If the `redis-server` binary is not installed.
    pub async fn start_many(n: usize) -> anyhow::Result<Vec<Self>> {
        futures_util::future::try_join_all((0..n).map(|_| Self::start())).await
    }

    /// Starts an empty Redis Cluster node (no slots, not yet met by others) on a port whose cluster bus port
    /// (`port + 10000`) was free too. Its `nodes.conf` lives in its temporary directory. Assemble nodes with
    /// [`RedisCluster`](crate::RedisCluster).
    ///
    /// # Panics
    /// If the `redis-server` binary is not installed.
    pub async fn start_cluster_node(node: ClusterNode) -> anyhow::Result<Self> {
        Self::start_as(Some(node)).await
    }

    async fn start_as(cluster: Option<ClusterNode>) -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new().prefix("crier-redis-").tempdir().context("creating Redis dir")?;
        let mut server = Self { port: 0, dir, child: None, cluster };
        for _ in 0..PORT_ATTEMPTS {
            server.port = if cluster.is_some() { free_cluster_port()? } else { free_port()? };
            if let Launch::Ready = server.launch().await? {
                return Ok(server);
            }
        }
        bail!("redis-server exited early {PORT_ATTEMPTS} times; last log:\n{}", server.log_contents())
    }

    /// The port it listens on (kept across [`restart`](Self::restart)).
    #[must_use]
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:PORT`.
    #[must_use]
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// A new multiplexed connection to this server.
    pub async fn connection(&self) -> anyhow::Result<MultiplexedConnection> {
        let client = redis::Client::open(self.url())?;
        let conn = within("a Redis connection", client.get_multiplexed_async_connection()).await??;
        Ok(conn)
    }

    /// A [`RedisLog`] on this server with [`LOG_COMMAND_TIMEOUT`].
    pub async fn redis_log(&self, partitions: u32, max_len: usize) -> anyhow::Result<Arc<RedisLog>> {
        let retention = Retention { max_len, ..Retention::default() };
        redis_log(RedisTopology::Nodes(vec![self.url()]), partitions, retention).await
    }

    /// Kills the server (SIGKILL, no shutdown save): clients see connection errors from now on.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // Errors mean it already exited; either way it is gone once `wait` returns.
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops the server if it runs and starts a fresh, empty one on the same port (nothing is persisted, as
    /// when a Redis without persistence restarts and loses its data).
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        self.stop();
        match self.launch().await? {
            Launch::Ready => Ok(()),
            Launch::Exited(status) => {
                bail!("redis-server on port {} {status} on restart; log:\n{}", self.port, self.log_contents())
            }
        }
    }

    /// Whether the process is running (it may still be starting).
    #[must_use]
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// The server's log file so far (empty if it has none yet).
    #[must_use]
    pub fn log_contents(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("redis.log")
    }

    async fn launch(&mut self) -> anyhow::Result<Launch> {
        let child = self.spawn()?;
        let pid = child.id();
        self.child = Some(child);
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                self.child = None;
                return Ok(Launch::Exited(format!("exited with {status}")));
            }
            if answering_pid(self.port).await == Some(pid) {
                return Ok(Launch::Ready);
            }
            if Instant::now() >= deadline {
                self.stop();
                bail!("redis-server on port {} not ready within {READY_TIMEOUT:?}", self.port);
            }
            tokio::time::sleep(PROBE_INTERVAL).await;
        }
    }

    fn spawn(&self) -> anyhow::Result<Child> {
        let port = self.port.to_string();
        let mut cmd = Command::new("redis-server");
        cmd.args(["--port", &port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .arg("--logfile")
            .arg(self.log_path())
            .args(self.cluster.map(|node| self.cluster_args(node)).unwrap_or_default())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        match cmd.spawn() {
            Ok(child) => Ok(child),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                panic!("redis-server not found: install it with `apt-get install -y redis-server`")
            }
            Err(err) => Err(err).context("spawning redis-server"),
        }
    }

    /// Flags of a cluster node. Without replicas, a dead master's slots stay uncovered: with Redis' default
    /// `cluster-require-full-coverage yes` the whole cluster would then refuse every command, so crier's
    /// promise "partitions on the other masters keep flowing" needs it off (deployments must set it too).
    fn cluster_args(&self, node: ClusterNode) -> Vec<std::ffi::OsString> {
        let conf = self.dir.path().join(format!("nodes-{}.conf", self.port));
        let timeout = node.node_timeout.as_millis().to_string();
        let mut args: Vec<std::ffi::OsString> = vec!["--cluster-enabled".into(), "yes".into()];
        args.extend(["--cluster-config-file".into(), conf.into_os_string()]);
        args.extend(["--cluster-node-timeout".into(), timeout.into()]);
        args.extend(["--cluster-require-full-coverage".into(), "no".into()]);
        args
    }
}

/// A [`RedisLog`] on `topology` with [`LOG_COMMAND_TIMEOUT`] and the given retention.
pub async fn redis_log(
    topology: RedisTopology,
    partitions: u32,
    retention: Retention,
) -> anyhow::Result<Arc<RedisLog>> {
    let config = RedisLogConfig { topology, partitions, retention, command_timeout: LOG_COMMAND_TIMEOUT };
    let log = within("RedisLog::connect", RedisLog::connect(config)).await??;
    Ok(Arc::new(log))
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
        if std::thread::panicking() {
            eprintln!(
                "--- redis-server log (port {}) ---\n{}--- end of log ---",
                self.port,
                self.log_contents()
            );
        }
    }
}

/// A port nobody listened on a moment ago.
/// A port nothing listens on right now (another process may take it before the caller binds it).
pub fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("binding a free port")?;
    Ok(listener.local_addr()?.port())
}

/// A free port below [`MAX_CLUSTER_PORT`] whose cluster bus port is free too (a moment ago).
fn free_cluster_port() -> anyhow::Result<u16> {
    for _ in 0..1_000 {
        let port = free_port()?;
        if port <= MAX_CLUSTER_PORT && std::net::TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok() {
            return Ok(port);
        }
    }
    bail!("found no free port below {MAX_CLUSTER_PORT} with a free cluster bus port")
}

/// The `process_id` of the Redis answering on `port`, if one answers.
async fn answering_pid(port: u16) -> Option<u32> {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}")).ok()?;
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(1)))
        .set_response_timeout(Some(Duration::from_secs(1)));
    let mut conn = client.get_multiplexed_async_connection_with_config(&config).await.ok()?;
    let info: String = redis::cmd("INFO").arg("server").query_async(&mut conn).await.ok()?;
    info.lines().find_map(|line| line.strip_prefix("process_id:")?.trim().parse().ok())
}
