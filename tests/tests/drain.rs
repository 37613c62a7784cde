//! Graceful drain of real `crier` processes on a real SIGTERM, as Kubernetes stops a pod.

use std::time::{Duration, Instant};

use anyhow::{Result, ensure};
use crier_broker::publisher::Item;
use crier_broker::{BrokerConfig, Publisher};
use crier_tests::{AdminClient, CrierProcess, RedisServer, WsClient, free_port, within};
use serde_json::json;

/// Sessions of the drained edge.
const CLIENTS: usize = 12;
/// `--drain-window` of the edge under test, in seconds.
const DRAIN_SECONDS: u64 = 2;
/// Notifications queued for each client before the signal, none read yet.
const QUEUED: usize = 20;

/// SIGTERM → /readyz 503 → no new connections → every session gets its queued notifications, then 1001, at
/// moments spread over the drain window → exit 0 within the window plus a margin.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_edge_with_jittered_1001_and_exits_zero() -> Result<()> {
    let redis = RedisServer::start().await?;
    let (ws_port, admin_port) = (free_port()?, free_port()?);
    let ws_url = format!("ws://127.0.0.1:{ws_port}/api/ws");
    let edge = CrierProcess::spawn(
        // Open access: this test is about the drain; production's checked access would refuse its subscribe.
        &["edge", "--listen", &format!("127.0.0.1:{ws_port}"), "--auth-mode", "none", "--acl", "open"],
        &[
            ("CRIER_REDIS_URL", &redis.url()),
            ("CRIER_ADMIN_LISTEN", &format!("127.0.0.1:{admin_port}")),
            ("CRIER_DRAIN_WINDOW", &format!("{DRAIN_SECONDS}s")),
            // One worker thread, as the Helm chart runs it: the current-thread runtime drains too.
            ("CRIER_WORKER_THREADS", "1"),
        ],
    )?;
    let admin = AdminClient::new(format!("127.0.0.1:{admin_port}").parse()?);
    within("the edge to become ready", wait_for_status(&admin, "/readyz", 200)).await??;
    let mut clients = Vec::new();
    for i in 0..CLIENTS {
        let mut ws = WsClient::connect(&ws_url).await?;
        ws.auth_dev(&format!("u{i}")).await?;
        ws.subscribe("draining").await?;
        clients.push(ws);
    }
    let publisher = Publisher::new(redis.redis_log(64, 1_000).await?, &BrokerConfig::default());
    for seq in 0..QUEUED {
        let payload = json!({"type": "job-status", "seq": seq}).to_string();
        let item = Item {
            conversation_id: "draining".into(),
            payload: payload.into(),
            idempotency_key: String::new(),
        };
        publisher.publish(&item).await?;
    }
    let signalled = Instant::now();
    edge.sigterm().await?;
    within("/readyz to report draining", wait_for_status(&admin, "/readyz", 503)).await??;
    within("new connections to be refused", async {
        while WsClient::connect(&ws_url).await.is_ok() {
            tokio::task::yield_now().await;
        }
    })
    .await?;
    let closes =
        futures_util::future::try_join_all(clients.into_iter().map(|ws| read_until_close(ws, signalled)));
    let closed_after = within(format!("{CLIENTS} sessions to close"), closes).await??;
    let (status, logs) = edge.wait(Duration::from_secs(DRAIN_SECONDS + 5)).await?;
    ensure!(status.success(), "edge exited with {status}; log:\n{logs}");
    let window = Duration::from_secs(DRAIN_SECONDS);
    let first = closed_after.iter().min().copied().unwrap_or_default();
    let last = closed_after.iter().max().copied().unwrap_or_default();
    ensure!(last <= window + Duration::from_secs(1), "last close {last:?} after the signal");
    // Uniform moments: 12 of them all within a quarter of the window has probability < 1e-6.
    ensure!(last - first >= window / 4, "closes not spread: {closed_after:?}");
    Ok(())
}

/// Reads every queued notification in order, then the close; returns when the close came after `since`.
async fn read_until_close(mut ws: WsClient, since: Instant) -> Result<Duration> {
    for seq in 0..QUEUED {
        let got = ws.recv_json().await?;
        ensure!(got["seq"] == seq, "expected seq {seq} before the close, got {got}");
    }
    let code = ws.expect_close_within(Duration::from_secs(DRAIN_SECONDS + 2)).await?;
    ensure!(code == Some(1001), "closed with {code:?}, not 1001");
    Ok(since.elapsed())
}

/// Polls `path` until it answers `status` (the event awaited is the server's state change; the caller's
/// timeout bounds the loop). Connection errors count as "not yet".
async fn wait_for_status(admin: &AdminClient, path: &str, status: u16) -> Result<()> {
    loop {
        if let Ok(reply) = admin.get(path).await
            && reply.status == status
        {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A broker process on SIGTERM exits 0 promptly after answering what it was asked.
#[tokio::test]
async fn sigterm_stops_broker_with_exit_zero() -> Result<()> {
    let redis = RedisServer::start().await?;
    let grpc_port = free_port()?;
    let broker = CrierProcess::spawn(
        &["broker", "--grpc-listen", &format!("127.0.0.1:{grpc_port}")],
        // One worker thread, as the Helm chart runs it: the current-thread runtime stops cleanly too.
        &[("CRIER_REDIS_URL", &redis.url()), ("CRIER_WORKER_THREADS", "1")],
    )?;
    let url = format!("http://127.0.0.1:{grpc_port}");
    let mut client = within("the broker to accept gRPC", async {
        loop {
            if let Ok(client) = crier_tests::PublishClient::connect(&url).await {
                return client;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await?;
    client.publish("c1", &json!({"type": "job-status"})).await?;
    broker.sigterm().await?;
    let (status, logs) = broker.wait(Duration::from_secs(5)).await?;
    ensure!(status.success(), "broker exited with {status}; log:\n{logs}");
    ensure!(logs.contains("NOT_SERVING"), "no drain in the log:\n{logs}");
    Ok(())
}
