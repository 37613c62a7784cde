//! `crier.v1.AdminService`: presence and stats across edges from their heartbeat reports, and operator
//! disconnects reaching a user's connections on every edge.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Result, ensure};
use crier_edge::EdgeConfig;
use crier_proto::v1::admin_service_client::AdminServiceClient;
use crier_proto::v1::{
    DisconnectUserRequest, HistoryRequest, PresenceRequest, PresenceResponse, StatsRequest, StatsResponse,
};
use crier_store::control::{ControlPlane, MemoryControl, RedisControl};
use crier_store::log::{MemoryLog, PartitionedLog, RedisTopology, Retention};
use crier_tests::redis_server::redis_log;
use crier_tests::{RedisCluster, RedisServer, Servers, ServersConfig, WsClient, free_port, within};
use serde_json::json;
use tonic::transport::Channel;

/// Edges report this often in these tests, so answers follow changes within milliseconds.
const FAST_HEARTBEAT: Duration = Duration::from_millis(50);

async fn start(control: Arc<dyn ControlPlane>, log: Arc<dyn PartitionedLog>) -> Result<Servers> {
    let edge = EdgeConfig { heartbeat_interval: FAST_HEARTBEAT, ..EdgeConfig::dev() };
    let config = ServersConfig { edge, ..ServersConfig::dev(log.partitions(), 2) };
    Servers::start_with_control(log, control, config).await
}

async fn admin_client(servers: &Servers) -> Result<AdminServiceClient<Channel>> {
    let endpoint = tonic::transport::Endpoint::from_shared(servers.broker_url())?;
    Ok(AdminServiceClient::new(within("gRPC connect", endpoint.connect()).await??))
}

async fn connect(servers: &Servers, edge: usize, user: &str, conversation: &str) -> Result<WsClient> {
    let mut ws = servers.ws_client(edge).await?;
    ws.auth_dev(user).await?;
    ws.subscribe(conversation).await?;
    Ok(ws)
}

/// Polls `Presence` until `done` holds (the edges' next heartbeats carry the change).
async fn presence_until(
    admin: &mut AdminServiceClient<Channel>,
    conversation: &str,
    done: impl Fn(&PresenceResponse) -> bool,
) -> Result<PresenceResponse> {
    within(format!("presence of {conversation} to settle"), async {
        loop {
            let request = PresenceRequest { conversation_id: conversation.into() };
            let presence = admin.presence(request).await?.into_inner();
            if done(&presence) {
                return anyhow::Ok(presence);
            }
            tokio::time::sleep(FAST_HEARTBEAT / 2).await;
        }
    })
    .await?
}

/// Polls `Stats` until `done` holds.
async fn stats_until(
    admin: &mut AdminServiceClient<Channel>,
    done: impl Fn(&StatsResponse) -> bool,
) -> Result<StatsResponse> {
    within("stats to settle", async {
        loop {
            let stats = admin.stats(StatsRequest {}).await?.into_inner();
            if done(&stats) {
                return anyhow::Ok(stats);
            }
            tokio::time::sleep(FAST_HEARTBEAT / 2).await;
        }
    })
    .await?
}

/// Presence sums a user's connections over edges; Stats lists every edge with its counts.
#[tokio::test]
async fn presence_and_stats_cover_every_edge() -> Result<()> {
    let servers = start(Arc::new(MemoryControl::new()), Arc::new(MemoryLog::new(64, 100))).await?;
    let mut admin = admin_client(&servers).await?;
    let _a0 = connect(&servers, 0, "alice", "room").await?;
    let _a1 = connect(&servers, 1, "alice", "room").await?;
    let _b1 = connect(&servers, 1, "bob", "room").await?;
    let _idle = servers.ws_client(0).await?;
    let presence = presence_until(&mut admin, "room", |p| p.connections == 3).await?;
    let users: Vec<(&str, u32)> =
        presence.users.iter().map(|u| (u.user_id.as_str(), u.connections)).collect();
    ensure!(users == [("alice", 2), ("bob", 1)], "{users:?}");
    let stats = stats_until(&mut admin, |s| s.connections == 4 && s.subscriptions == 3).await?;
    let ids: Vec<&str> = stats.edges.iter().map(|e| e.edge_id.as_str()).collect();
    ensure!(ids == ["edge-0", "edge-1"], "{ids:?}");
    ensure!(stats.partitions_read == 1, "{stats:?}");
    ensure!(stats.edges[1].authenticated == 2, "{stats:?}");
    let empty = admin.presence(PresenceRequest { conversation_id: "nobody-here".into() }).await?.into_inner();
    ensure!(empty.users.is_empty() && empty.connections == 0);
    let bad = admin.presence(PresenceRequest { conversation_id: String::new() }).await;
    ensure!(bad.map_err(|s| s.code()).err() == Some(tonic::Code::InvalidArgument));
    // User ids follow the rule the edge and AccessService use: control characters are refused.
    let request = DisconnectUserRequest { user_id: "al\u{7}ice".into(), reason: String::new() };
    let bad = admin.disconnect_user(request).await;
    ensure!(bad.map_err(|s| s.code()).err() == Some(tonic::Code::InvalidArgument));
    servers.shutdown().await
}

/// DisconnectUser closes the user's connections on both edges (over Redis) with 4030 and the reason;
/// other users stay connected and keep receiving.
#[tokio::test]
async fn disconnect_user_closes_4030_on_every_edge() -> Result<()> {
    let redis = RedisServer::start().await?;
    let topology = RedisTopology::Nodes(vec![redis.url()]);
    disconnect_everywhere(topology, redis.redis_log(64, 1_000).await?).await
}

/// The same on a Redis Cluster: edge keys spread over the masters by their hash tags, commands by pub/sub
/// through the first seed node that answers (the first one listed is down).
#[tokio::test]
async fn disconnect_user_closes_4030_on_every_edge_on_a_cluster() -> Result<()> {
    let cluster = RedisCluster::start().await?;
    let log = redis_log(RedisTopology::Cluster(cluster.urls()), 16, Retention::default()).await?;
    let dead_seed = format!("redis://127.0.0.1:{}", free_port()?);
    let seeds = std::iter::once(dead_seed).chain(cluster.urls()).collect();
    disconnect_everywhere(RedisTopology::Cluster(seeds), log).await
}

async fn disconnect_everywhere(topology: RedisTopology, log: Arc<dyn PartitionedLog>) -> Result<()> {
    let control = RedisControl::connect(&topology, Duration::from_secs(2));
    let control = Arc::new(within("RedisControl::connect", control).await??);
    let servers = start(control, log).await?;
    let mut admin = admin_client(&servers).await?;
    let mut m0 = connect(&servers, 0, "mallory", "room").await?;
    let mut m1 = connect(&servers, 1, "mallory", "room").await?;
    let mut alice = connect(&servers, 0, "alice", "room").await?;
    // Both edges' Stats reports show they run, and their command listeners subscribe at start; retry the
    // (idempotent) disconnect until both edges have heard it.
    within("both edges to hear the disconnect", async {
        loop {
            let request =
                DisconnectUserRequest { user_id: "mallory".into(), reason: "account suspended".into() };
            if admin.disconnect_user(request).await?.into_inner().edges_notified == 2 {
                return anyhow::Ok(());
            }
            tokio::time::sleep(FAST_HEARTBEAT).await;
        }
    })
    .await??;
    for ws in [&mut m0, &mut m1] {
        ensure!(ws.expect_close().await? == Some(4030));
    }
    servers.publish_client().await?.publish("room", &json!({"type": "job-status"})).await?;
    ensure!(alice.recv_json().await?["type"] == "job-status");
    // Heartbeats arrive at their own pace: wait for the reports in which only alice is left.
    let only_alice = |p: &PresenceResponse| p.users.len() == 1 && p.users[0].user_id == "alice";
    let presence = presence_until(&mut admin, "room", only_alice).await?;
    ensure!(presence.connections == 1, "{presence:?}");
    let stats = stats_until(&mut admin, |s| s.edges.len() == 2 && s.connections == 1).await?;
    ensure!(stats.subscriptions == 1, "{stats:?}");
    servers.shutdown().await
}

/// `History` returns a conversation's retained notifications after a position, verbatim and in order, and
/// says when entries after the position may be missing.
#[tokio::test]
async fn history_returns_what_followed_a_position() -> Result<()> {
    let control: Arc<dyn ControlPlane> = Arc::new(MemoryControl::new());
    let servers = start(control, Arc::new(MemoryLog::new(64, 5))).await?;
    let mut publisher = servers.publish_client().await?;
    let first = publisher.publish("h1", &json!({"n": 0})).await?;
    for n in 1..3 {
        publisher.publish("h1", &json!({"n": n})).await?;
        publisher.publish("other", &json!({"n": n})).await?;
    }
    let mut admin = admin_client(&servers).await?;
    let request = HistoryRequest { conversation_id: "h1".into(), since: first.clone(), limit: 0 };
    let reply = within("History", admin.history(request)).await??.into_inner();
    let payloads: Vec<&[u8]> = reply.entries.iter().map(|e| e.payload.as_ref()).collect();
    ensure!(payloads == [&br#"{"n":1}"#[..], br#"{"n":2}"#], "{payloads:?}");
    ensure!(reply.complete, "nothing was trimmed yet");
    for n in 3..10 {
        publisher.publish("h1", &json!({"n": n})).await?;
    }
    let request = HistoryRequest { conversation_id: "h1".into(), since: first, limit: 2 };
    let reply = within("History", admin.history(request)).await??.into_inner();
    ensure!(!reply.complete && reply.entries.len() == 2, "trimmed past the position: {reply:?}");
    servers.shutdown().await
}

/// A report larger than one `HSET` (1,000 conversations each) lands whole on Redis, and the next report
/// replaces it: conversations no longer reported are gone.
#[tokio::test]
async fn redis_presence_reports_of_any_size_replace_the_last() -> Result<()> {
    use crier_store::control::{EdgeReport, Presence, Users};

    let redis = RedisServer::start().await?;
    let control = within(
        "RedisControl::connect",
        RedisControl::connect(&RedisTopology::Nodes(vec![redis.url()]), Duration::from_secs(2)),
    )
    .await??;
    let report = |conversations: usize| {
        let user: Arc<str> = "u".into();
        let entries =
            (0..conversations).map(|i| (format!("c{i}").into(), Users(vec![(Arc::clone(&user), 1)])));
        let presence = Presence::new(entries.collect());
        let reported_at_ms = crier_store::telemetry::now_ms();
        EdgeReport { edge_id: "e1".into(), presence, reported_at_ms, ..EdgeReport::default() }
    };
    control.report(report(2_500)).await?;
    for conversation in ["c0", "c999", "c1000", "c2499"] {
        let users = control.presence(conversation).await?;
        ensure!(users.get("u") == Some(&1), "{conversation}: {users:?}");
    }
    control.report(report(10)).await?;
    ensure!(control.presence("c9").await?.len() == 1, "kept conversations stay");
    ensure!(control.presence("c10").await?.is_empty(), "dropped conversations go");
    ensure!(control.stats().await?.len() == 1, "one edge reports");
    Ok(())
}
