//! [`ChaosDeployment`]: the processes of a chaos run. A 3-master Redis Cluster (`cluster-require-full-coverage
//! no`), brokers and edges as spawned `crier` binaries on fixed loopback ports (a restarted process comes
//! back on the same address, as a pod behind a service would), their logs appended to files in one directory.
//! Each process sits behind its own lock, so the fault loops of different kinds never wait for each other.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::net::TcpStream;
use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::crier_process::CrierProcess;
use crate::redis_cluster::RedisCluster;
use crate::redis_server::free_port;

/// Bound on a (re)started process accepting connections, retries included.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// Pause before respawning a process that exited while starting (e.g. partition 0's master is down).
const RESPAWN_PAUSE: Duration = Duration::from_millis(300);
/// Bound on a SIGTERMed process finishing its drain.
const EXIT_TIMEOUT: Duration = Duration::from_secs(10);

/// Broker or edge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `crier broker`.
    Broker,
    /// `crier edge`.
    Edge,
}

/// One broker or edge: how to start it, and the running process.
pub struct Role {
    name: String,
    args: Vec<String>,
    addr: SocketAddr,
    process: Option<CrierProcess>,
}

/// Every process of the run.
pub struct ChaosDeployment {
    /// The Redis Cluster.
    pub cluster: Mutex<RedisCluster>,
    brokers: Vec<Mutex<Role>>,
    edges: Vec<Mutex<Role>>,
    crier: PathBuf,
    logs: PathBuf,
}

impl ChaosDeployment {
    /// Starts the cluster, then `brokers` brokers and `edges` edges of binary `crier`, logging into `logs`.
    pub async fn start(crier: &Path, brokers: usize, edges: usize, logs: &Path) -> anyhow::Result<Self> {
        let cluster = RedisCluster::start().await?;
        let urls = cluster.urls().join(",");
        let redis = ["--redis-cluster".to_owned(), "--redis-url".to_owned(), urls];
        let role = |kind: Kind, i: usize| -> anyhow::Result<Mutex<Role>> {
            let addr = SocketAddr::from(([127, 0, 0, 1], free_port()?));
            let (name, mut args) = match kind {
                Kind::Broker => (format!("broker-{i}"), vec!["broker", "--grpc-listen"]),
                Kind::Edge => (format!("edge-{i}"), vec!["edge", "--listen"]),
            };
            let mut args: Vec<String> = args.drain(..).map(str::to_owned).collect();
            args.push(addr.to_string());
            args.extend(redis.iter().cloned());
            if kind == Kind::Edge {
                let edge = ["--auth-mode", "none", "--acl", "open", "--drain-window", "1s"];
                args.extend(edge.map(str::to_owned));
            }
            Ok(Mutex::new(Role { name, args, addr, process: None }))
        };
        let brokers = (0..brokers).map(|i| role(Kind::Broker, i)).collect::<anyhow::Result<_>>()?;
        let edges = (0..edges).map(|i| role(Kind::Edge, i)).collect::<anyhow::Result<_>>()?;
        let deployment = Self {
            cluster: Mutex::new(cluster),
            brokers,
            edges,
            crier: crier.to_owned(),
            logs: logs.to_owned(),
        };
        for kind in [Kind::Broker, Kind::Edge] {
            for i in 0..deployment.count(kind) {
                deployment.start_role(kind, i).await?;
            }
        }
        Ok(deployment)
    }

    /// How many processes of `kind`.
    #[must_use]
    pub fn count(&self, kind: Kind) -> usize {
        self.roles(kind).len()
    }

    fn roles(&self, kind: Kind) -> &[Mutex<Role>] {
        match kind {
            Kind::Broker => &self.brokers,
            Kind::Edge => &self.edges,
        }
    }

    /// `http://ADDR` of every broker.
    pub async fn broker_urls(&self) -> Vec<String> {
        let mut urls = Vec::new();
        for role in &self.brokers {
            urls.push(format!("http://{}", role.lock().await.addr));
        }
        urls
    }

    /// `ws://ADDR/api/ws?positions=1` of every edge.
    pub async fn edge_urls(&self) -> Vec<String> {
        let mut urls = Vec::new();
        for role in &self.edges {
            urls.push(format!("ws://{}/api/ws?positions=1", role.lock().await.addr));
        }
        urls
    }

    /// Starts process `i` of `kind` (again) and waits until it accepts connections; a process that exits
    /// while starting (its Redis not reachable yet) is started again, within [`START_TIMEOUT`].
    pub async fn start_role(&self, kind: Kind, i: usize) -> anyhow::Result<()> {
        let mut role = self.roles(kind)[i].lock().await;
        let deadline = Instant::now() + START_TIMEOUT;
        let log = self.logs.join(format!("{}.log", role.name));
        let argv = role.args.clone();
        let args: Vec<&str> = argv.iter().map(String::as_str).collect();
        let envs = [("RUST_LOG", "warn"), ("CRIER_LOG_FORMAT", "pretty")];
        let mut process = CrierProcess::spawn_binary(&self.crier, &args, &envs, Some(&log))?;
        while TcpStream::connect(role.addr).await.is_err() {
            if Instant::now() > deadline {
                bail!(
                    "{} not listening on {} after {START_TIMEOUT:?}; see {}",
                    role.name,
                    role.addr,
                    log.display()
                );
            }
            if process.exited()?.is_some() {
                tokio::time::sleep(RESPAWN_PAUSE).await;
                process = CrierProcess::spawn_binary(&self.crier, &args, &envs, Some(&log))?;
            } else {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        role.process = Some(process);
        Ok(())
    }

    /// Stops process `i` of `kind`: SIGKILL (a crash) or SIGTERM (a rollout: an edge drains its sessions).
    pub async fn stop_role(&self, kind: Kind, i: usize, graceful: bool) -> anyhow::Result<()> {
        let mut role = self.roles(kind)[i].lock().await;
        let name = role.name.clone();
        let Some(mut process) = role.process.take() else { return Ok(()) };
        if graceful {
            process.sigterm().await.with_context(|| format!("SIGTERM to {name}"))?;
            process.wait(EXIT_TIMEOUT).await.with_context(|| format!("{name} draining"))?;
        } else {
            process.kill().await.with_context(|| format!("killing {name}"))?;
        }
        Ok(())
    }

    /// Names of the processes of `kind` that exited although nobody stopped them; they are restarted.
    pub async fn restart_exited(&self, kind: Kind) -> anyhow::Result<Vec<String>> {
        let mut exited = Vec::new();
        for i in 0..self.count(kind) {
            let mut role = self.roles(kind)[i].lock().await;
            let gone = match role.process.as_mut() {
                Some(process) => process.exited()?.is_some(),
                None => false,
            };
            if gone {
                exited.push(role.name.clone());
                role.process = None;
                drop(role);
                self.start_role(kind, i).await?;
            }
        }
        Ok(exited)
    }
}
