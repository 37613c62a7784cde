//! Publishing over gRPC (`crier.v1.PublishService`): [`flood`] as fast as the edge delivers (fan-out), and
//! [`at_rate`] at a fixed rate or [`unlimited`] with a send timestamp in each payload (latency), to a
//! [`Sink`]: crier's `Publish`, or the replaced design's `PUBLISH conversation:<id>` straight to Redis.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use crier_proto::v1::publish_service_client::PublishServiceClient;
use crier_proto::v1::{PublishBatchRequest, PublishRequest};
use futures_util::future::join_all;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tonic::transport::Channel;

use crate::deployment::Deployment;
use crate::payload::{self, Clock};

/// A gRPC client of the broker.
pub type Client = PublishServiceClient<Channel>;

/// Connects to the broker at `url`.
pub async fn connect(url: &str) -> anyhow::Result<Client> {
    let connect = PublishServiceClient::connect(url.to_owned());
    tokio::time::timeout(Duration::from_secs(10), connect)
        .await
        .with_context(|| format!("gRPC connect to {url} timed out"))?
        .with_context(|| format!("gRPC connect to {url}"))
}

/// Where a latency run's notifications go, one call per notification as a job worker makes them.
#[derive(Clone)]
pub enum Sink {
    /// crier's `PublishService.Publish`.
    Grpc(Client),
    /// The replaced design: Redis `PUBLISH conversation:<id> <payload>` on one multiplexed connection.
    Redis(redis::aio::MultiplexedConnection),
}

impl Sink {
    /// Redis `PUBLISH` when the deployment publishes that way (the replaced design), else gRPC.
    pub async fn connect(deployment: &Deployment) -> anyhow::Result<Self> {
        let Some(url) = &deployment.publish_redis else {
            return Ok(Self::Grpc(connect(&deployment.grpc).await?));
        };
        let client = redis::Client::open(url.as_str())?;
        let connecting = client.get_multiplexed_async_connection();
        let conn = tokio::time::timeout(Duration::from_secs(10), connecting)
            .await
            .with_context(|| format!("connecting to {url} timed out"))??;
        Ok(Self::Redis(conn))
    }

    async fn send(&mut self, conversation: String, payload: Bytes) -> Result<(), String> {
        match self {
            Self::Grpc(client) => {
                let request =
                    PublishRequest { conversation_id: conversation, payload, idempotency_key: String::new() };
                client.publish(request).await.map(drop).map_err(|status| status.to_string())
            }
            Self::Redis(conn) => {
                let mut publish = redis::cmd("PUBLISH");
                publish.arg(format!("conversation:{conversation}")).arg(payload.as_ref());
                publish.query_async::<i64>(conn).await.map(drop).map_err(|err| err.to_string())
            }
        }
    }
}

/// Counters of a publishing run.
#[derive(Debug, Default)]
pub struct PublishStats {
    /// Notifications the broker accepted.
    pub published: AtomicU64,
    /// Notifications refused or lost in transport.
    pub failed: AtomicU64,
    /// Accepted notifications per conversation index of [`at_rate`] (empty: not counted).
    pub by_conversation: Vec<AtomicU64>,
    first_error: Mutex<Option<String>>,
}

impl PublishStats {
    /// Counters that also count accepted notifications per conversation, for `conversations` of them.
    pub fn per_conversation(conversations: usize) -> Self {
        Self { by_conversation: (0..conversations).map(|_| AtomicU64::new(0)).collect(), ..Self::default() }
    }

    fn accepted(&self, conversation: usize) {
        self.published.fetch_add(1, Ordering::Relaxed);
        if let Some(counter) = self.by_conversation.get(conversation) {
            counter.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Accepted notifications per conversation index so far.
    pub fn conversation_counts(&self) -> Vec<u64> {
        self.by_conversation.iter().map(|c| c.load(Ordering::Relaxed)).collect()
    }

    fn fail(&self, count: u64, error: String) {
        self.failed.fetch_add(count, Ordering::Relaxed);
        self.first_error.lock().unwrap_or_else(PoisonError::into_inner).get_or_insert(error);
    }

    /// The first failure, if any.
    pub fn first_error(&self) -> Option<String> {
        self.first_error.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }
}

/// How hard [`flood`] pushes.
#[derive(Debug, Clone, Copy)]
pub struct Flood {
    /// Notifications per `PublishBatch`.
    pub batch: usize,
    /// Batches in flight at once.
    pub in_flight: usize,
    /// Most notifications published but not yet delivered to the average subscriber. Keeps every
    /// subscriber's outbox far below the edge's 1 MiB bound, so the run measures throughput, not 4008s.
    pub window: u64,
}

/// Publishes `PublishBatch`es of one payload to `conversation` until `stop`, as fast as deliveries follow.
/// `delivered()` answers (frames received, subscribers): the receivers' progress.
pub async fn flood(
    client: &Client,
    conversation: &str,
    flood: Flood,
    delivered: &(dyn Fn() -> (u64, u64) + Sync),
    stop: &CancellationToken,
    stats: &PublishStats,
) {
    let item = PublishRequest {
        conversation_id: conversation.to_owned(),
        payload: payload::stamped(0),
        idempotency_key: String::new(),
    };
    let request = PublishBatchRequest { items: vec![item; flood.batch] };
    let sent = AtomicU64::new(0);
    let lanes = (0..flood.in_flight.max(1)).map(|_| async {
        let mut client = client.clone();
        while !stop.is_cancelled() {
            let (frames, subscribers) = delivered();
            let behind = sent.load(Ordering::Relaxed).saturating_sub(frames / subscribers.max(1));
            if behind + flood.batch as u64 > flood.window {
                tokio::time::sleep(Duration::from_millis(1)).await;
                continue;
            }
            sent.fetch_add(flood.batch as u64, Ordering::Relaxed);
            match client.publish_batch(request.clone()).await {
                Ok(_) => drop(stats.published.fetch_add(flood.batch as u64, Ordering::Relaxed)),
                Err(status) => stats.fail(flood.batch as u64, status.to_string()),
            }
        }
    });
    join_all(lanes).await;
}

/// Publishes `rate` notifications per second for `duration`, round-robin over `conversations`, each
/// stamped with `clock` just before its call. Calls overlap (one task each), so a slow reply never delays
/// the schedule. Returns once every call has been answered (or 10 s have passed).
pub async fn at_rate(
    sink: &Sink,
    conversations: &[String],
    rate: f64,
    duration: Duration,
    clock: Clock,
    stats: &Arc<PublishStats>,
) {
    let tracker = TaskTracker::new();
    let start = Instant::now();
    let total = (duration.as_secs_f64() * rate).round() as u64;
    for n in 0..total {
        tokio::time::sleep_until(start + Duration::from_secs_f64(n as f64 / rate)).await;
        let index = n as usize % conversations.len();
        let conversation = conversations[index].clone();
        let mut sink = sink.clone();
        let stats = Arc::clone(stats);
        tracker.spawn(async move {
            let payload = payload::stamped(clock.now_ns());
            match sink.send(conversation, payload).await {
                Ok(()) => stats.accepted(index),
                Err(error) => stats.fail(1, error),
            }
        });
    }
    tracker.close();
    let _ = tokio::time::timeout(Duration::from_secs(10), tracker.wait()).await;
}

/// Calls in flight at once when publishing [`unlimited`].
const UNLIMITED_LANES: usize = 64;

/// Publishes round-robin over `conversations` for `duration` as fast as deliveries follow: 64 calls in
/// flight, never more than `window` notifications ahead of what `delivered()` (notifications received by
/// every subscriber, on average) reports, so the run measures throughput, not overflowing queues.
pub async fn unlimited(
    sink: &Sink,
    conversations: &[String],
    duration: Duration,
    window: u64,
    clock: Clock,
    delivered: &(dyn Fn() -> u64 + Sync),
    stats: &PublishStats,
) {
    let next = AtomicU64::new(0);
    let deadline = Instant::now() + duration;
    let lanes = (0..UNLIMITED_LANES).map(|_| async {
        let mut sink = sink.clone();
        while Instant::now() < deadline {
            if next.load(Ordering::Relaxed).saturating_sub(delivered()) >= window {
                tokio::time::sleep(Duration::from_millis(1)).await;
                continue;
            }
            let index = (next.fetch_add(1, Ordering::Relaxed) % conversations.len() as u64) as usize;
            let payload = payload::stamped(clock.now_ns());
            match sink.send(conversations[index].clone(), payload).await {
                Ok(()) => stats.accepted(index),
                Err(error) => stats.fail(1, error),
            }
        }
    });
    join_all(lanes).await;
}
