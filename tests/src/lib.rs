//! crier's test harness: real `redis-server` processes, in-process brokers and edges on port 0, and
//! independent clients (tokio-tungstenite WebSocket, tonic gRPC, jsonwebtoken) to drive them.
//!
//! ```text
//!  PublishClient ──gRPC──▶ broker ─┐                                  ┌─▶ edge ──WebSocket──▶ WsClient
//!                                  └─▶ PartitionedLog (RedisServer | MemoryLog) ─┘
//! ```
//!
//! Every wait is bounded (see [`deadline`]): a hang fails a test within seconds, naming what it waited for.
//!
//! - [`browser`]: `Browser`: headless Chromium driven over WebDriver (fantoccini + a spawned chromedriver).
//! - [`access_client`]: `AccessClient`: the gRPC access-management client backends use.
//! - [`bystander`]: `Bystander`: the well-behaved client that must not notice another's rejection.
//! - [`chaos`]: the chaos run: spawned cluster, brokers and edges under random faults, and its exact checker.
//! - [`admin_client`]: `AdminClient`: raw HTTP GETs of `/metrics`, `/healthz`, `/readyz`; `Scrape` parses.
//! - [`crier_process`]: `CrierProcess`: the built `crier` binary as a child process, for signal tests.
//! - [`deadline`]: `within`: the timeout wrapped around every await of the harness.
//! - [`delay_proxy`]: `DelayProxy`: a TCP proxy holding every chunk for a fixed delay (a slow Redis link).
//! - [`redis_monitor`]: `RedisMonitor`: Redis' own log of the commands it served (`MONITOR`).
//! - [`redis_server`]: `RedisServer`: a spawned `redis-server` (standalone or cluster node) on a free port,
//!   killed on drop.
//! - [`redis_cluster`]: `RedisCluster`: three spawned masters joined by `redis-cli --cluster create`.
//! - [`jwks_server`]: `JwksServer`: a JWKS document over HTTP or HTTPS (a CA of its own), swappable,
//!   counting fetches and refused TLS handshakes, or hanging.
//! - [`pki`]: `TestCa`: a CA per test run issuing server and client certificates as PEM files.
//! - [`publish_client`]: `PublishClient`: the gRPC publisher backends use.
//! - [`raw_ws`]: `RawWs`: a WebSocket client on a bare socket, for floods, raw fragments and resets.
//! - [`servers`]: `Servers`: a broker and N edges in-process on port 0, on one log.
//! - [`ws_client`]: `WsClient`: a browser stand-in speaking crier's WebSocket protocol.
//! - [`tokens`]: `mint_token`: HS256 JWTs for the edge's auth.

pub mod access_client;
pub mod admin_client;
pub mod browser;
pub mod bystander;
pub mod chaos;
pub mod crier_process;
pub mod deadline;
pub mod delay_proxy;
pub mod jwks_server;
pub mod pki;
pub mod publish_client;
pub mod raw_ws;
pub mod redis_cluster;
pub mod redis_monitor;
pub mod redis_server;
pub mod servers;
pub mod tokens;
pub mod ws_client;

pub use access_client::AccessClient;
pub use admin_client::{AdminClient, HttpReply, Scrape};
pub use browser::{BROWSER_STEP, Browser};
pub use bystander::Bystander;
pub use crier_process::{CrierProcess, crier_binary};
pub use deadline::{STEP, within, within_for};
pub use delay_proxy::DelayProxy;
pub use jwks_server::{JwksServer, rsa_jwk};
pub use pki::{Leaf, TestCa};
pub use publish_client::{PublishClient, stream_entry};
pub use raw_ws::RawWs;
pub use redis_cluster::RedisCluster;
pub use redis_monitor::{MonitoredCommand, RedisMonitor};
pub use redis_server::{RedisServer, free_port};
pub use servers::{Servers, ServersConfig};
pub use tokens::{
    CONNECTION_TYP, SUBSCRIPTION_TYP, mint_claims, mint_subscription_token, mint_token, unix_now,
};
pub use tokio_tungstenite::tungstenite;
pub use ws_client::WsClient;
