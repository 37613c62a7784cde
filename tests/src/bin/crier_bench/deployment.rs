//! [`Deployment`]: the servers a scenario measures. Either spawned by the bench (`crier dev`, or
//! `redis-server` + `crier broker` + `crier edge`) on free loopback ports and killed when the deployment is
//! dropped (also on Ctrl-C, error or panic), or a running deployment named by `--ws`/`--grpc`/`--pid`.
//! Spawned servers log to files in a temporary directory, so logging costs the server what it would cost
//! in production, not a terminal's speed.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use tempfile::TempDir;
use tokio::net::TcpStream;
use tokio::process::{Child, Command};

/// Bound on a spawned server starting to accept connections.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// Where the servers are: spawned (default) or given.
#[derive(Debug, Clone, Args)]
pub struct TargetArgs {
    /// The `crier` binary to spawn (default: `crier` next to this binary, i.e. target/release/crier).
    #[arg(long)]
    pub crier: Option<PathBuf>,
    /// Measure a running edge at this WebSocket address instead of spawning servers (needs --grpc).
    #[arg(long, requires = "grpc")]
    pub ws: Option<SocketAddr>,
    /// WebSocket endpoint path.
    #[arg(long, default_value = "/api/ws")]
    pub path: String,
    /// gRPC URL of the running broker, e.g. http://127.0.0.1:50051.
    #[arg(long, requires = "ws")]
    pub grpc: Option<String>,
    /// Process id of the running edge, for RSS and CPU figures.
    #[arg(long)]
    pub pid: Option<u32>,
    /// Client source addresses, spread over connections and workers.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "127.0.0.2,127.0.0.3,127.0.0.4,127.0.0.5,127.0.0.6,127.0.0.7,127.0.0.8,127.0.0.9"
    )]
    pub source_ips: Vec<IpAddr>,
}

/// A process the bench started; killed (SIGKILL) when dropped.
pub(crate) struct Spawned {
    name: &'static str,
    pub(crate) child: Child,
    log: PathBuf,
}

/// The servers of one scenario.
pub struct Deployment {
    /// The edge's WebSocket address and endpoint path.
    pub ws: SocketAddr,
    pub path: String,
    /// The broker's gRPC URL.
    pub grpc: String,
    /// The process whose RSS and CPU the figures are about (the edge; `crier dev` holds broker and edge).
    pub edge_pid: Option<u32>,
    /// Set for the replaced design: its publishers `PUBLISH` to this Redis directly, with no broker.
    pub publish_redis: Option<String>,
    // Field order matters: children are killed before their log directory is removed.
    children: Vec<Spawned>,
    _logs: Option<TempDir>,
}

impl Deployment {
    /// `crier dev` (in-memory log, dev auth), or the running deployment of `target`.
    pub async fn dev(target: &TargetArgs) -> anyhow::Result<Self> {
        if let Some(deployment) = Self::given(target) {
            return Ok(deployment);
        }
        let logs = TempDir::new()?;
        let (ws, grpc) = (free_addr()?, free_addr()?);
        let args = ["dev", "--listen", &ws.to_string(), "--grpc-listen", &grpc.to_string()];
        let dev = spawn("crier dev", &crier_binary(target)?, &args, logs.path())?;
        let mut deployment = Self::spawned(target, ws, grpc, logs);
        deployment.edge_pid = dev.child.id();
        deployment.children.push(dev);
        deployment.wait_listening(&[ws, grpc]).await?;
        Ok(deployment)
    }

    /// `redis-server` + `crier broker <broker_args>` + `crier edge --auth-mode none`, or the running
    /// deployment of `target`.
    pub async fn redis(target: &TargetArgs, broker_args: &[String]) -> anyhow::Result<Self> {
        if let Some(deployment) = Self::given(target) {
            return Ok(deployment);
        }
        let logs = TempDir::new()?;
        let crier = crier_binary(target)?;
        let (ws, grpc) = (free_addr()?, free_addr()?);
        let dir = logs.path().to_string_lossy().into_owned();
        let mut deployment = Self::spawned(target, ws, grpc, logs);
        let url = deployment.spawn_redis(Path::new(&dir)).await?;
        let grpc_listen = grpc.to_string();
        let mut broker = vec!["broker", "--grpc-listen", &grpc_listen, "--redis-url", &url];
        broker.extend(broker_args.iter().map(String::as_str));
        deployment.children.push(spawn("crier broker", &crier, &broker, Path::new(&dir))?);
        // Dev auth and open access, as `crier dev`: the bench measures delivery, not access checks.
        let edge = [
            "edge",
            "--listen",
            &ws.to_string(),
            "--redis-url",
            &url,
            "--auth-mode",
            "none",
            "--acl",
            "open",
        ];
        let edge = spawn("crier edge", &crier, &edge, Path::new(&dir))?;
        deployment.edge_pid = edge.child.id();
        deployment.children.push(edge);
        deployment.wait_listening(&[grpc, ws]).await?;
        Ok(deployment)
    }

    /// Spawns a `redis-server` without persistence, logging into `dir`; returns its URL once it listens.
    pub(crate) async fn spawn_redis(&mut self, dir: &Path) -> anyhow::Result<String> {
        let redis = free_addr()?;
        let (port, dir_arg) = (redis.port().to_string(), dir.to_string_lossy());
        let args =
            ["--port", &port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", &dir_arg];
        self.children.push(spawn("redis-server", Path::new("redis-server"), &args, dir)?);
        self.wait_listening(&[redis]).await?;
        Ok(format!("redis://{redis}"))
    }

    /// Adds a spawned process; it is what the figures name `name`, killed with the deployment.
    pub(crate) fn push(&mut self, spawned: Spawned) {
        self.children.push(spawned);
    }

    /// Process ids of everything spawned, named (for CPU accounting of the whole server side).
    pub fn processes(&self) -> Vec<(&'static str, u32)> {
        self.children.iter().filter_map(|s| Some((s.name, s.child.id()?))).collect()
    }

    fn given(target: &TargetArgs) -> Option<Self> {
        let ws = target.ws?;
        let grpc = target.grpc.clone()?;
        let path = target.path.clone();
        Some(Self {
            ws,
            path,
            grpc,
            edge_pid: target.pid,
            publish_redis: None,
            children: Vec::new(),
            _logs: None,
        })
    }

    pub(crate) fn spawned(target: &TargetArgs, ws: SocketAddr, grpc: SocketAddr, logs: TempDir) -> Self {
        let grpc = format!("http://{grpc}");
        let path = target.path.clone();
        let children = Vec::new();
        Self { ws, path, grpc, edge_pid: None, publish_redis: None, children, _logs: Some(logs) }
    }

    /// Waits until every address accepts TCP connections, failing early if a spawned process exits.
    pub(crate) async fn wait_listening(&mut self, addrs: &[SocketAddr]) -> anyhow::Result<()> {
        let deadline = Instant::now() + START_TIMEOUT;
        for &addr in addrs {
            while TcpStream::connect(addr).await.is_err() {
                for spawned in &mut self.children {
                    if let Some(status) = spawned.child.try_wait()? {
                        bail!("{} exited ({status}):\n{}", spawned.name, log_tail(&spawned.log));
                    }
                }
                if Instant::now() > deadline {
                    bail!("nothing listening on {addr} after {START_TIMEOUT:?}");
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        Ok(())
    }
}

/// `--crier`, or `crier` next to the running binary.
fn crier_binary(target: &TargetArgs) -> anyhow::Result<PathBuf> {
    if let Some(path) = &target.crier {
        return Ok(path.clone());
    }
    let exe = std::env::current_exe()?;
    let sibling = exe.with_file_name("crier");
    if !sibling.exists() {
        bail!("no {} (build it: cargo build --release --bin crier, or pass --crier)", sibling.display());
    }
    Ok(sibling)
}

pub(crate) fn spawn(
    name: &'static str,
    program: &Path,
    args: &[&str],
    dir: &Path,
) -> anyhow::Result<Spawned> {
    let log = dir.join(format!("{}.log", name.replace(' ', "-")));
    let file = std::fs::File::create(&log)?;
    let child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(file.try_clone()?)
        .stderr(file)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {}", program.display()))?;
    Ok(Spawned { name, child, log })
}

/// A loopback address with a port nobody listens on right now.
pub(crate) fn free_addr() -> anyhow::Result<SocketAddr> {
    let listener = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    Ok(listener.local_addr()?)
}

fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}
