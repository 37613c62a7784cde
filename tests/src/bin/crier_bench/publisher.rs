//! Publishing over gRPC (`crier.v1.PublishService`): [`flood`] as fast as the edge delivers (fan-out), and
//! [`at_rate`] at a fixed rate with a send timestamp in each payload (latency).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::Context;
use crier_proto::v1::publish_service_client::PublishServiceClient;
use crier_proto::v1::{PublishBatchRequest, PublishRequest};
use futures_util::future::join_all;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tonic::transport::Channel;

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
/// stamped with `clock` just before its `Publish` call. Calls overlap (one task each), so a slow reply
/// never delays the schedule. Returns once every call has been answered (or 10 s have passed).
pub async fn at_rate(
    client: &Client,
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
        let mut client = client.clone();
        let stats = Arc::clone(stats);
        tracker.spawn(async move {
            let sent_ns = clock.now_ns();
            let request = PublishRequest {
                conversation_id: conversation,
                payload: payload::stamped(sent_ns),
                idempotency_key: String::new(),
            };
            match client.publish(request).await {
                Ok(_) => stats.accepted(index),
                Err(status) => stats.fail(1, status.to_string()),
            }
        });
    }
    tracker.close();
    let _ = tokio::time::timeout(Duration::from_secs(10), tracker.wait()).await;
}
