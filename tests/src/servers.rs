//! [`Servers`]: one broker and N edges running as tasks of the test's runtime, each on its own
//! `127.0.0.1:0` listener, all on one shared log (a `MemoryLog`, or a `RedisLog` on a [`RedisServer`]).
//!
//! Listeners are bound before the servers are spawned, so clients may connect at once: the kernel queues
//! their connections until the server accepts. Dropping `Servers` cancels every server; [`Servers::shutdown`]
//! also waits for them to finish and reports the errors they stopped with.
//!
//! [`RedisServer`]: crate::RedisServer

use std::net::SocketAddr;
use std::sync::{Arc, Once};

use anyhow::{Context, anyhow};
use crier::dev_publisher::DevPublisher;
use crier_broker::{BrokerConfig, Publisher, Services};
use crier_edge::{DemoPublisher, EdgeConfig, EdgeDeps};
use crier_proto::partition::DEFAULT_PARTITIONS;
use crier_store::access::{AccessStore, MemoryAccessStore};
use crier_store::admin_http::{self, AdminState, LogReachable};
use crier_store::control::{ControlPlane, MemoryControl};
use crier_store::log::{DEFAULT_MAX_LEN, MemoryLog, PartitionedLog};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::access_client::AccessClient;
use crate::admin_client::AdminClient;
use crate::deadline::within;
use crate::publish_client::PublishClient;
use crate::ws_client::WsClient;

/// What to start.
#[derive(Debug, Clone)]
pub struct ServersConfig {
    /// The broker's settings.
    pub broker: BrokerConfig,
    /// Every edge's settings.
    pub edge: EdgeConfig,
    /// How many edges to start.
    pub edges: usize,
}

impl ServersConfig {
    /// `crier dev` settings (dev auth) for a log of `partitions`, with `edges` edges.
    #[must_use]
    pub fn dev(partitions: u32, edges: usize) -> Self {
        Self {
            broker: BrokerConfig { partitions, ..BrokerConfig::default() },
            edge: EdgeConfig { partitions, ..EdgeConfig::dev() },
            edges,
        }
    }
}

/// A running server task: its name (for error reports) and its outcome.
struct Task {
    name: String,
    /// Cancels this server alone; a child of the `Servers`' token.
    stop: CancellationToken,
    handle: Option<JoinHandle<anyhow::Result<()>>>,
}

/// What is needed to (re)start one edge at its address.
struct EdgeSlot {
    addr: SocketAddr,
    config: EdgeConfig,
    /// Serves the demo page and `POST /dev/publish`, as `crier dev` does.
    demo: bool,
}

/// A broker and its edges, stopped on drop.
pub struct Servers {
    log: Arc<dyn PartitionedLog>,
    /// The access store the broker manages and every edge checks.
    access: Arc<dyn AccessStore>,
    /// The control plane the broker's `AdminService` and every edge share.
    control: Arc<dyn ControlPlane>,
    broker: SocketAddr,
    /// Every edge, by index.
    edges: Vec<EdgeSlot>,
    /// Broker first, then the edges in index order.
    tasks: Vec<Task>,
    shutdown: CancellationToken,
    /// For restarting the broker with the same settings, and for demo edges' publishers.
    broker_config: BrokerConfig,
}

impl Servers {
    /// A broker and `edges` dev edges on an in-memory log with the default partitions and retention, as
    /// `crier dev` runs them.
    pub async fn dev(edges: usize) -> anyhow::Result<Self> {
        Self::start(Arc::new(MemoryLog::new(DEFAULT_PARTITIONS, DEFAULT_MAX_LEN)), edges).await
    }

    /// A broker and `edges` dev edges (dev auth, default limits) on `log`, with its partition count.
    pub async fn start(log: Arc<dyn PartitionedLog>, edges: usize) -> anyhow::Result<Self> {
        let config = ServersConfig::dev(log.partitions(), edges);
        Self::start_with(log, config).await
    }

    /// A broker and edges with exactly `config` (partition counts included, so mismatches can be tested),
    /// sharing a fresh in-memory access store and an in-process control plane.
    pub async fn start_with(log: Arc<dyn PartitionedLog>, config: ServersConfig) -> anyhow::Result<Self> {
        Self::start_with_access(log, Arc::new(MemoryAccessStore::new()), config).await
    }

    /// A broker and edges with exactly `config` on `log`, managing and checking grants in `access` (e.g. a
    /// `RedisAccessStore`, so revocations travel through Redis).
    pub async fn start_with_access(
        log: Arc<dyn PartitionedLog>,
        access: Arc<dyn AccessStore>,
        config: ServersConfig,
    ) -> anyhow::Result<Self> {
        Self::start_with_parts(log, access, Arc::new(MemoryControl::new()), config).await
    }

    /// A broker (with `AdminService`) and edges on `log`, reporting to `control`.
    pub async fn start_with_control(
        log: Arc<dyn PartitionedLog>,
        control: Arc<dyn ControlPlane>,
        config: ServersConfig,
    ) -> anyhow::Result<Self> {
        Self::start_with_parts(log, Arc::new(MemoryAccessStore::new()), control, config).await
    }

    /// A broker and edges on `log`, with grants in `access`, reporting to `control`.
    pub async fn start_with_parts(
        log: Arc<dyn PartitionedLog>,
        access: Arc<dyn AccessStore>,
        control: Arc<dyn ControlPlane>,
        config: ServersConfig,
    ) -> anyhow::Result<Self> {
        init_tracing();
        let shutdown = CancellationToken::new();
        let (broker, task) = start_broker(&log, &access, &control, &config.broker, &shutdown).await?;
        let tasks = vec![task];
        let broker_config = config.broker;
        let edges = Vec::new();
        let mut servers = Self { log, access, control, broker, edges, tasks, shutdown, broker_config };
        for _ in 0..config.edges {
            servers.add_edge(config.edge.clone()).await?;
        }
        Ok(servers)
    }

    /// Starts one more edge on the same log and control plane; returns its index. Its edge id is
    /// `edge-<index>`.
    pub async fn add_edge(&mut self, config: EdgeConfig) -> anyhow::Result<usize> {
        self.push_edge(config, false).await
    }

    /// Starts one more edge that also serves `crier dev`'s demo page at `/` and `POST /dev/publish`
    /// (publishing with the broker's settings); returns its index.
    pub async fn add_demo_edge(&mut self, config: EdgeConfig) -> anyhow::Result<usize> {
        self.push_edge(config, true).await
    }

    async fn push_edge(&mut self, config: EdgeConfig, demo: bool) -> anyhow::Result<usize> {
        let config = EdgeConfig { edge_id: format!("edge-{}", self.edges.len()), ..config };
        let listener = bind().await?;
        self.edges.push(EdgeSlot { addr: listener.local_addr()?, config, demo });
        let task = self.spawn_edge(self.edges.len() - 1, listener);
        self.tasks.push(task);
        Ok(self.edges.len() - 1)
    }

    /// Stops edge `index` (if [`Servers::stop_edge`] has not already) and starts it again at the same
    /// address with the same settings: what clients see when an edge behind a fixed address restarts.
    pub async fn restart_edge(&mut self, index: usize) -> anyhow::Result<()> {
        let addr = self.edges.get(index).with_context(|| format!("no edge {index}"))?.addr;
        self.stop_edge(index).await?;
        let listener = TcpListener::bind(addr).await.with_context(|| format!("rebinding {addr}"))?;
        self.tasks[index + 1] = self.spawn_edge(index, listener);
        Ok(())
    }

    fn spawn_edge(&self, index: usize, listener: TcpListener) -> Task {
        let slot = &self.edges[index];
        let name = format!("edge {index}");
        let stop = self.shutdown.child_token();
        // As in `crier dev`: the demo publishes to the broker's log with the broker's settings.
        let demo = slot.demo.then(|| -> Arc<dyn DemoPublisher> {
            Arc::new(DevPublisher(Publisher::new(Arc::clone(&self.log), &self.broker_config)))
        });
        let deps =
            EdgeDeps { access: Arc::clone(&self.access), control: Some(Arc::clone(&self.control)), demo };
        let run =
            crier_edge::run_with(listener, slot.config.clone(), Arc::clone(&self.log), deps, stop.clone());
        Task { handle: Some(spawn_named(&name, run)), name, stop }
    }

    /// The shared log, for tests that append or read behind the servers' backs.
    #[must_use]
    pub fn log(&self) -> &Arc<dyn PartitionedLog> {
        &self.log
    }

    /// The broker's gRPC endpoint: `http://127.0.0.1:PORT`.
    #[must_use]
    pub fn broker_url(&self) -> String {
        format!("http://{}", self.broker)
    }

    /// Edge `index`'s WebSocket endpoint: `ws://127.0.0.1:PORT/api/ws` (its configured path).
    ///
    /// # Panics
    /// If there is no edge `index`.
    #[must_use]
    pub fn edge_ws_url(&self, index: usize) -> String {
        let slot = &self.edges[index];
        format!("ws://{}{}", slot.addr, slot.config.ws_path)
    }

    /// Edge `index`'s HTTP base URL, `http://127.0.0.1:PORT`: `/crier.js`, and the demo page on demo edges.
    ///
    /// # Panics
    /// If there is no edge `index`.
    #[must_use]
    pub fn edge_http_url(&self, index: usize) -> String {
        format!("http://{}", self.edges[index].addr)
    }

    /// Edge `index`'s listening address, for raw HTTP requests.
    ///
    /// # Panics
    /// If there is no edge `index`.
    #[must_use]
    pub fn edge_addr(&self, index: usize) -> SocketAddr {
        self.edges[index].addr
    }

    /// How many edges were started.
    #[must_use]
    pub fn edge_count(&self) -> usize {
        self.edges.len()
    }

    /// Starts an admin listener (`/metrics`, `/healthz`, `/readyz`) on `127.0.0.1:0` beside these servers,
    /// ready while the shared log answers and until the servers shut down.
    pub async fn admin(&self) -> anyhow::Result<AdminClient> {
        let listener = bind().await?;
        let addr = listener.local_addr()?;
        let state = AdminState {
            readiness: Some(Arc::new(LogReachable(Arc::clone(&self.log)))),
            draining: self.shutdown.child_token(),
        };
        tokio::spawn(admin_http::serve(listener, state, self.shutdown.child_token()));
        Ok(AdminClient::new(addr))
    }

    /// A gRPC publisher connected to the broker (presenting its API token, if it has one).
    pub async fn publish_client(&self) -> anyhow::Result<PublishClient> {
        PublishClient::connect_with_token(&self.broker_url(), self.broker_config.api_token.as_deref()).await
    }

    /// A gRPC `AccessService` client connected to the broker (presenting its API token, if any).
    pub async fn access_client(&self) -> anyhow::Result<AccessClient> {
        AccessClient::connect(&self.broker_url(), self.broker_config.api_token.as_deref()).await
    }

    /// The access store shared by the broker and the edges.
    #[must_use]
    pub fn access(&self) -> &Arc<dyn AccessStore> {
        &self.access
    }

    /// A WebSocket client connected to edge `index` (not yet authenticated: `ready` is its first frame).
    pub async fn ws_client(&self, index: usize) -> anyhow::Result<WsClient> {
        WsClient::connect(&self.edge_ws_url(index)).await
    }

    /// A client of edge `index` authenticated (dev auth) as `user`, with positions on (`?positions=1`).
    pub async fn positions_client(&self, index: usize, user: &str) -> anyhow::Result<WsClient> {
        let mut ws = WsClient::connect(&format!("{}?positions=1", self.edge_ws_url(index))).await?;
        ws.auth_dev(user).await?;
        Ok(ws)
    }

    /// Shuts edge `index` down (its sessions see its drain) and waits for it to finish.
    pub async fn stop_edge(&mut self, index: usize) -> anyhow::Result<()> {
        let task = self.tasks.get_mut(index + 1).with_context(|| format!("no edge {index}"))?;
        task.stop.cancel();
        join(task).await
    }

    /// Stops the broker (letting in-flight calls finish) and starts a new one, on a new port, on the same log.
    pub async fn restart_broker(&mut self) -> anyhow::Result<()> {
        self.tasks[0].stop.cancel();
        join(&mut self.tasks[0]).await?;
        let (broker, task) =
            start_broker(&self.log, &self.access, &self.control, &self.broker_config, &self.shutdown).await?;
        self.broker = broker;
        self.tasks[0] = task;
        Ok(())
    }

    /// Cancels every server, waits for each to finish, and reports the first error one stopped with.
    pub async fn shutdown(mut self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        let mut first_error = None;
        for task in &mut self.tasks {
            if let Err(err) = join(task).await {
                first_error.get_or_insert(err);
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

impl Drop for Servers {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

async fn start_broker(
    log: &Arc<dyn PartitionedLog>,
    access: &Arc<dyn AccessStore>,
    control: &Arc<dyn ControlPlane>,
    config: &BrokerConfig,
    shutdown: &CancellationToken,
) -> anyhow::Result<(SocketAddr, Task)> {
    let listener = bind().await?;
    let addr = listener.local_addr()?;
    let publisher = Publisher::new(Arc::clone(log), config);
    let services = Services {
        publisher,
        access: Arc::clone(access),
        api_token: config.api_token.clone(),
        admin_token: config.admin_token.clone(),
        tls: None,
    };
    let stop = shutdown.child_token();
    let control = Some(Arc::clone(control));
    let handle =
        spawn_named("broker", crier_broker::server::serve(listener, services, control, stop.clone()));
    Ok((addr, Task { name: "broker".to_owned(), stop, handle: Some(handle) }))
}

async fn bind() -> anyhow::Result<TcpListener> {
    TcpListener::bind("127.0.0.1:0").await.context("binding 127.0.0.1:0")
}

/// Spawns a server; an error it stops with is printed at once (the test may be blocked elsewhere) and kept.
fn spawn_named<E>(
    name: &str,
    server: impl Future<Output = Result<(), E>> + Send + 'static,
) -> JoinHandle<anyhow::Result<()>>
where
    E: std::error::Error + Send + Sync + 'static,
{
    let name = name.to_owned();
    tokio::spawn(async move {
        server.await.map_err(|err| {
            eprintln!("{name} stopped with an error: {err}");
            anyhow::Error::new(err).context(name)
        })
    })
}

/// Waits for `task` to end (once; later calls return `Ok`).
async fn join(task: &mut Task) -> anyhow::Result<()> {
    let Some(handle) = task.handle.take() else { return Ok(()) };
    let name = &task.name;
    within(format!("{name} to shut down"), handle)
        .await?
        .map_err(|err| anyhow!("{name} panicked or was cancelled: {err}"))?
}

/// Server logs go to the test's captured output (shown by nextest when a test fails). `RUST_LOG` overrides
/// the default filter.
fn init_tracing() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
            tracing_subscriber::EnvFilter::new("warn,crier_broker=debug,crier_edge=debug")
        });
        // Fails only if another subscriber is installed, which then gets the logs instead.
        let _ = tracing_subscriber::fmt().with_env_filter(filter).with_test_writer().try_init();
    });
}
