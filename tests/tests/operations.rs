//! What an operator sees: Prometheus metrics and health on the admin listener, gRPC health through a
//! shutdown, and in-flight publishes finishing while the broker drains.

use std::sync::Arc;

use anyhow::{Result, ensure};
use async_trait::async_trait;
use bytes::Bytes;
use crier_broker::{BrokerConfig, Publisher, Services};
use crier_proto::StreamId;
use crier_store::access::MemoryAccessStore;
use crier_store::log::{
    Appended, Dedupe, Head, LogError, MemoryLog, Newest, PartitionReader, PartitionedLog, Range,
    RedisTopology, Retention,
};
use crier_tests::redis_server::redis_log;
use crier_tests::{PublishClient, RedisServer, Servers, within};
use serde_json::json;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};

/// One publish path's worth of traffic shows up on `/metrics` under the documented names.
#[tokio::test]
async fn metrics_count_connections_publishes_and_deliveries() -> Result<()> {
    let servers = Servers::dev(1).await?;
    let admin = servers.admin().await?;
    let mut ws = servers.ws_client(0).await?;
    ws.auth_dev("u1").await?;
    ws.subscribe("metered").await?;
    let mut publisher = servers.publish_client().await?;
    for seq in 0..3 {
        publisher.publish("metered", &json!({"type": "job-status", "seq": seq})).await?;
        ws.recv_json().await?;
    }
    let refused = publisher.try_publish("metered", b"not json".to_vec(), "").await?;
    ensure!(refused.is_err(), "a non-JSON payload was accepted");
    let scrape = admin.scrape().await?;
    // Other tests may share this process (cargo test), so counts are lower bounds.
    ensure!(scrape.value(r#"crier_broker_publishes_total{result="ok"}"#)? >= 3.0);
    ensure!(scrape.value(r#"crier_broker_publishes_total{result="invalid_argument"}"#)? >= 1.0);
    ensure!(scrape.value("crier_broker_publish_latency_seconds_count")? >= 4.0);
    ensure!(scrape.value("crier_edge_deliveries_total")? >= 3.0);
    ensure!(scrape.value("crier_edge_delivery_latency_seconds_count")? >= 3.0);
    ensure!(scrape.value("crier_edge_connections")? >= 1.0);
    ensure!(scrape.value("crier_edge_sessions_authenticated")? >= 1.0);
    ensure!(scrape.value("crier_edge_subscriptions")? >= 1.0);
    ensure!(scrape.value("crier_edge_partitions_read")? >= 1.0);
    ensure!(scrape.has("crier_edge_outbound_queue_bytes_bucket"), "{}", scrape.text);
    ensure!(scrape.has("crier_edge_partition_read_lag_seconds_count"), "{}", scrape.text);
    ensure!(scrape.value(r#"crier_edge_drops_total{reason="slow_consumer"}"#).is_ok());
    ensure!(scrape.value("crier_edge_redis_errors_total").is_ok());
    ws.close().await?;
    let closed = within("the close to be counted", async {
        loop {
            let scrape = admin.scrape().await?;
            if scrape.value(r#"crier_edge_closes_total{code="peer"}"#).unwrap_or(0.0) >= 1.0 {
                return anyhow::Ok(());
            }
            tokio::task::yield_now().await;
        }
    })
    .await;
    closed??;
    servers.shutdown().await
}

/// `/healthz` says alive whatever Redis does; `/readyz` follows Redis' reachability.
#[tokio::test]
async fn readyz_follows_redis_and_healthz_stays_up() -> Result<()> {
    let mut redis = RedisServer::start().await?;
    let servers = Servers::start(redis.redis_log(64, 1_000).await?, 1).await?;
    let admin = servers.admin().await?;
    ensure!(admin.get("/healthz").await?.status == 200);
    let ready = admin.get("/readyz").await?;
    ensure!(ready.status == 200, "{ready:?}");
    redis.stop();
    let unready = admin.get("/readyz").await?;
    ensure!(unready.status == 503, "{unready:?}");
    ensure!(admin.get("/healthz").await?.status == 200);
    ensure!(admin.get("/nope").await?.status == 404);
    servers.shutdown().await
}

/// With several standalone nodes, `/readyz` stays ready while any node answers (a dead node's partitions
/// are unavailable, but the others still serve), and turns unready when none does.
#[tokio::test]
async fn readyz_with_several_nodes_needs_any_of_them() -> Result<()> {
    let mut nodes = [RedisServer::start().await?, RedisServer::start().await?];
    let topology = RedisTopology::Nodes(nodes.iter().map(RedisServer::url).collect());
    let servers = Servers::start(redis_log(topology, 64, Retention::default()).await?, 1).await?;
    let admin = servers.admin().await?;
    ensure!(admin.get("/readyz").await?.status == 200);
    // First the node holding partition 0, which used to be the only one probed.
    let first = crier_proto::node_of(0, nodes.len());
    nodes[first].stop();
    let one_left = admin.get("/readyz").await?;
    ensure!(one_left.status == 200, "one node still answers: {one_left:?}");
    nodes[1 - first].stop();
    let none_left = admin.get("/readyz").await?;
    ensure!(none_left.status == 503, "no node answers: {none_left:?}");
    servers.shutdown().await
}

/// Server reflection answers in both dialects: `v1`, and `v1alpha` for the tools that speak only that one
/// (Python's reflection client, older grpcurl, Postman); each lists crier's services.
#[tokio::test]
async fn reflection_lists_services_in_v1_and_v1alpha() -> Result<()> {
    use tonic_reflection::pb::{v1, v1alpha};
    let servers = Servers::dev(0).await?;
    let channel = tonic::transport::Endpoint::from_shared(servers.broker_url())?.connect().await?;
    let request = v1alpha::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(
            v1alpha::server_reflection_request::MessageRequest::ListServices(String::new()),
        ),
    };
    let mut client = v1alpha::server_reflection_client::ServerReflectionClient::new(channel.clone());
    let mut answers =
        within("v1alpha reflection", client.server_reflection_info(futures_util::stream::iter([request])))
            .await??;
    let answer = within("v1alpha answer", answers.get_mut().message()).await??;
    ensure!(format!("{answer:?}").contains("crier.v1.PublishService"), "v1alpha: {answer:?}");
    let request = v1::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(v1::server_reflection_request::MessageRequest::ListServices(String::new())),
    };
    let mut client = v1::server_reflection_client::ServerReflectionClient::new(channel);
    let mut answers =
        within("v1 reflection", client.server_reflection_info(futures_util::stream::iter([request])))
            .await??;
    let answer = within("v1 answer", answers.get_mut().message()).await??;
    ensure!(format!("{answer:?}").contains("crier.v1.PublishService"), "v1: {answer:?}");
    servers.shutdown().await
}

/// `grpc.health.v1` reports `""` SERVING, then NOT_SERVING as soon as the broker starts shutting down.
#[tokio::test]
async fn broker_health_turns_not_serving_on_shutdown() -> Result<()> {
    let servers = Servers::dev(0).await?;
    let channel = tonic::transport::Endpoint::from_shared(servers.broker_url())?.connect().await?;
    let mut health = HealthClient::new(channel);
    let check = within("Health.Check", health.check(HealthCheckRequest { service: String::new() })).await??;
    ensure!(check.into_inner().status == ServingStatus::Serving as i32);
    let request = HealthCheckRequest { service: String::new() };
    let mut watch = within("Health.Watch", health.watch(request)).await??.into_inner();
    ensure!(next_status(&mut watch).await? == ServingStatus::Serving as i32);
    let shutdown = tokio::spawn(servers.shutdown());
    ensure!(next_status(&mut watch).await? == ServingStatus::NotServing as i32);
    // The broker waits for open calls, this watch included, before it finishes.
    drop(watch);
    within("the broker to finish", shutdown).await???;
    Ok(())
}

async fn next_status(watch: &mut tonic::Streaming<HealthCheckResponse>) -> Result<i32> {
    let message = within("a health update", watch.message()).await??;
    Ok(message.map_or(-1, |m| m.status))
}

/// A publish already inside the broker when shutdown begins still completes and is acknowledged.
#[tokio::test]
async fn in_flight_publish_completes_during_shutdown() -> Result<()> {
    let log = Arc::new(GatedLog::new(MemoryLog::new(8, 100)));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    let shutdown = CancellationToken::new();
    let publisher = Publisher::new(
        Arc::clone(&log) as Arc<dyn PartitionedLog>,
        &BrokerConfig { partitions: 8, ..BrokerConfig::default() },
    );
    let access = Arc::new(MemoryAccessStore::new());
    let services = Services { publisher, access, api_token: None, admin_token: None, tls: None };
    let broker = tokio::spawn(crier_broker::run(listener, services, shutdown.clone()));
    let mut client = PublishClient::connect(&url).await?;
    let publish = tokio::spawn(async move { client.publish("c1", &json!({"type": "job-status"})).await });
    within("the publish to reach the log", log.entered.notified()).await?;
    shutdown.cancel();
    log.release.notify_one();
    let position = within("the in-flight publish", publish).await???;
    ensure!(position.starts_with(&format!("{}:", crier_proto::partition("c1", 8))), "{position}");
    within("the broker to finish", broker).await???;
    Ok(())
}

/// A log whose appends wait for a go-ahead, so a test can hold a publish in flight.
struct GatedLog {
    inner: MemoryLog,
    entered: Notify,
    release: Notify,
}

impl GatedLog {
    fn new(inner: MemoryLog) -> Self {
        Self { inner, entered: Notify::new(), release: Notify::new() }
    }
}

#[async_trait]
impl PartitionedLog for GatedLog {
    fn partitions(&self) -> u32 {
        self.inner.partitions()
    }

    async fn append(
        &self,
        partition: u32,
        data: Bytes,
        dedupe: Option<Dedupe<'_>>,
    ) -> Result<Appended, LogError> {
        self.entered.notify_one();
        self.release.notified().await;
        self.inner.append(partition, data, dedupe).await
    }

    async fn head(&self, partition: u32) -> Result<Head, LogError> {
        self.inner.head(partition).await
    }

    async fn range(&self, partition: u32, after: StreamId, count: usize) -> Result<Range, LogError> {
        self.inner.range(partition, after, count).await
    }

    async fn newest(&self, partition: u32, until: StreamId, count: usize) -> Result<Newest, LogError> {
        self.inner.newest(partition, until, count).await
    }

    async fn reader(&self, partition: u32) -> Result<Box<dyn PartitionReader>, LogError> {
        self.inner.reader(partition).await
    }
}
