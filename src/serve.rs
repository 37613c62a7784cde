//! The server subcommands. Each validates its config first (exit 64), then builds the log, binds its
//! listeners and runs until SIGTERM or SIGINT.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;

use crier::dev_publisher::DevPublisher;
use crier_broker::{Publisher, Services};
use crier_edge::EdgeDeps;
use crier_store::access::{AccessStore, MemoryAccessStore, RedisAccessStore};
use crier_store::admin_http::{self, AdminState, LogReachable};
use crier_store::control::{ControlPlane, MemoryControl, RedisControl};
use crier_store::log::{LogError, MemoryLog, PartitionedLog, RedisLog, RedisLogConfig};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::cli::{BrokerArgs, DevArgs, EdgeArgs, LogArgs, RedisArgs};

/// BSD `EX_UNAVAILABLE`: a dependency (Redis, a port) is unavailable.
const EXIT_UNAVAILABLE: u8 = 69;

pub async fn dev(args: DevArgs) -> ExitCode {
    let (broker_config, edge_config, broker_tls) = match args.configs() {
        Ok(configs) => configs,
        Err(problems) => return crate::usage_error(&problems),
    };
    let log: Arc<dyn PartitionedLog> =
        Arc::new(MemoryLog::new(args.log.partitions, args.log.retention_max_len));
    let (grpc, ws) = match (bind(args.grpc_listen).await, bind(args.listen).await) {
        (Ok(grpc), Ok(ws)) => (grpc, ws),
        (Err(code), _) | (_, Err(code)) => return code,
    };
    let admin = match bind_admin(args.admin.admin_listen).await {
        Ok(admin) => admin,
        Err(code) => return code,
    };
    print_dev_banner(&grpc, &ws, &edge_config.ws_path, edge_config.tls.is_some());
    let shutdown = shutdown_on_signal();
    let publisher = Publisher::new(Arc::clone(&log), &broker_config);
    let admin = spawn_admin(admin, &log, &shutdown);
    let access: Arc<dyn AccessStore> = Arc::new(MemoryAccessStore::new());
    let control: Arc<dyn ControlPlane> = Arc::new(MemoryControl::new());
    // The demo page publishes through the same publisher as gRPC.
    let deps = EdgeDeps {
        access: Arc::clone(&access),
        control: Some(Arc::clone(&control)),
        demo: Some(Arc::new(DevPublisher(publisher.clone()))),
    };
    let edge = crier_edge::run_with(ws, edge_config, log, deps, shutdown.clone());
    let services = Services { publisher, access, api_token: None, admin_token: None, tls: broker_tls };
    let broker = crier_broker::server::serve(grpc, services, Some(control), shutdown.clone());
    let (broker, edge) = tokio::join!(broker, edge);
    admin.stop().await;
    finish("dev", broker.map_err(|e| e.to_string()).and(edge.map_err(|e| e.to_string())))
}

/// What a production broker or edge runs on: Redis-backed log, access store and control plane, and its
/// bound listeners. Built after the config is validated; any failure is the exit code to return.
struct Production {
    log: Arc<dyn PartitionedLog>,
    access: Arc<dyn AccessStore>,
    control: Arc<dyn ControlPlane>,
    listener: TcpListener,
    admin: Option<TcpListener>,
}

impl Production {
    async fn prepare(
        redis: &RedisArgs,
        log: &LogArgs,
        listen: SocketAddr,
        admin: Option<SocketAddr>,
    ) -> Result<Self, ExitCode> {
        Ok(Self {
            log: redis_log(redis, log).await?,
            access: redis_access(redis).await?,
            control: redis_control(redis).await?,
            listener: bind(listen).await?,
            admin: bind_admin(admin).await?,
        })
    }
}

pub async fn broker(args: BrokerArgs) -> ExitCode {
    let (config, tls) = match args.config() {
        Ok(config) => config,
        Err(problems) => return crate::usage_error(&problems),
    };
    let parts =
        match Production::prepare(&args.redis, &args.log, args.grpc_listen, args.admin.admin_listen).await {
            Ok(parts) => parts,
            Err(code) => return code,
        };
    let shutdown = shutdown_on_signal();
    let admin = spawn_admin(parts.admin, &parts.log, &shutdown);
    let publisher = Publisher::new(parts.log, &config);
    let services = Services {
        publisher,
        access: parts.access,
        api_token: config.api_token.clone(),
        admin_token: config.admin_token.clone(),
        tls,
    };
    let result = crier_broker::server::serve(parts.listener, services, Some(parts.control), shutdown).await;
    admin.stop().await;
    finish("broker", result.map_err(|e| e.to_string()))
}

pub async fn edge(args: EdgeArgs) -> ExitCode {
    let config = match args.config() {
        Ok(config) => config,
        Err(problems) => return crate::usage_error(&problems),
    };
    let parts = match Production::prepare(&args.redis, &args.log, args.listen, args.admin.admin_listen).await
    {
        Ok(parts) => parts,
        Err(code) => return code,
    };
    let shutdown = shutdown_on_signal();
    let admin = spawn_admin(parts.admin, &parts.log, &shutdown);
    let deps = EdgeDeps { access: parts.access, control: Some(parts.control), demo: None };
    let result = crier_edge::run_with(parts.listener, config, parts.log, deps, shutdown).await;
    admin.stop().await;
    finish("edge", result.map_err(|e| e.to_string()))
}

async fn redis_log(redis: &RedisArgs, log: &LogArgs) -> Result<Arc<dyn PartitionedLog>, ExitCode> {
    let config = RedisLogConfig {
        topology: redis.topology(),
        partitions: log.partitions,
        retention: log.retention(),
        command_timeout: redis.redis_timeout,
    };
    match RedisLog::connect(config).await {
        Ok(log) => Ok(Arc::new(log)),
        Err(err @ LogError::PartitionMismatch { .. }) => Err(crate::usage_error(&[err.to_string()])),
        Err(err) => {
            eprintln!("crier: cannot connect to Redis at {}: {err}", redis.redis_url.join(","));
            Err(ExitCode::from(EXIT_UNAVAILABLE))
        }
    }
}

async fn redis_access(redis: &RedisArgs) -> Result<Arc<dyn AccessStore>, ExitCode> {
    match RedisAccessStore::connect(&redis.topology(), redis.redis_timeout).await {
        Ok(store) => Ok(Arc::new(store)),
        Err(err) => {
            eprintln!(
                "crier: cannot connect to Redis at {} (access store): {err}",
                redis.redis_url.join(",")
            );
            Err(ExitCode::from(EXIT_UNAVAILABLE))
        }
    }
}

/// The control plane on the deployment's Redis (see `RedisControl` for where its keys live).
async fn redis_control(redis: &RedisArgs) -> Result<Arc<dyn ControlPlane>, ExitCode> {
    let shown = redis.redis_url.join(",");
    let topology = redis.topology();
    let connect = RedisControl::connect(&topology, redis.redis_timeout);
    // Each seed tried in turn may take the timeout, then the cluster's own connection.
    let attempts = u32::try_from(redis.redis_url.len() + 1).unwrap_or(u32::MAX);
    match tokio::time::timeout(redis.redis_timeout.saturating_mul(attempts), connect).await {
        Ok(Ok(control)) => Ok(Arc::new(control)),
        Ok(Err(err)) => {
            eprintln!("crier: cannot connect to Redis at {shown} (control plane): {err}");
            Err(ExitCode::from(EXIT_UNAVAILABLE))
        }
        Err(_) => {
            eprintln!("crier: cannot connect to Redis at {shown} (control plane): timed out");
            Err(ExitCode::from(EXIT_UNAVAILABLE))
        }
    }
}

async fn bind(addr: SocketAddr) -> Result<TcpListener, ExitCode> {
    TcpListener::bind(addr).await.map_err(|err| {
        eprintln!("crier: cannot listen on {addr}: {err}");
        ExitCode::from(EXIT_UNAVAILABLE)
    })
}

async fn bind_admin(addr: Option<SocketAddr>) -> Result<Option<TcpListener>, ExitCode> {
    match addr {
        Some(addr) => bind(addr).await.map(Some),
        None => Ok(None),
    }
}

/// The admin listener running beside a server: it reports not-ready once `draining` is cancelled and keeps
/// serving `/metrics` and `/healthz` until [`Admin::stop`], after the server has finished.
struct Admin {
    stop: CancellationToken,
    tracker: TaskTracker,
}

impl Admin {
    async fn stop(self) {
        self.stop.cancel();
        self.tracker.close();
        self.tracker.wait().await;
    }
}

fn spawn_admin(
    listener: Option<TcpListener>,
    log: &Arc<dyn PartitionedLog>,
    draining: &CancellationToken,
) -> Admin {
    let admin = Admin { stop: CancellationToken::new(), tracker: TaskTracker::new() };
    if let Some(listener) = listener {
        let state = AdminState {
            readiness: Some(Arc::new(LogReachable(Arc::clone(log)))),
            draining: draining.clone(),
        };
        admin.tracker.spawn(admin_http::serve(listener, state, admin.stop.clone()));
    }
    admin
}

/// A token cancelled on the first SIGTERM or SIGINT.
fn shutdown_on_signal() -> CancellationToken {
    let token = CancellationToken::new();
    let cancel = token.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutdown requested");
        cancel.cancel();
    });
    token
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(err) => {
            tracing::warn!(error = %err, "cannot watch SIGTERM; only SIGINT stops crier");
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

fn finish(role: &str, result: Result<(), String>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("crier {role}: {err}");
            ExitCode::FAILURE
        }
    }
}

fn print_dev_banner(grpc: &TcpListener, ws: &TcpListener, ws_path: &str, tls: bool) {
    let grpc = grpc.local_addr().map_or_else(|_| "?".to_owned(), |a| a.to_string());
    let ws = ws.local_addr().map_or_else(|_| "?".to_owned(), |a| a.to_string());
    let (http, wss) = if tls { ("https", "wss") } else { ("http", "ws") };
    println!(
        r#"crier dev: in-memory log, dev auth (no Redis, no secrets)
  Demo page  {http}://{ws}/          <- open this in a browser
  WebSocket  {wss}://{ws}{ws_path}
  JS client  {http}://{ws}/crier.js
  gRPC       {http}://{grpc}   (crier.v1.PublishService; reflection on)

Or by hand, in a browser console:
  const ws = new WebSocket("{wss}://{ws}{ws_path}");
  ws.onmessage = (e) => console.log(e.data);
  ws.onopen = () => {{
    ws.send(JSON.stringify({{ action: "auth", userId: "u1" }}));
    ws.send(JSON.stringify({{ action: "subscribe", conversationId: "c1" }}));
  }};
Then, in a shell:
  crier publish --broker {http}://{grpc} --conversation c1 '{{"type":"job-status","jobId":"job-123","status":"completed","conversationId":"c1"}}'
"#
    );
}
