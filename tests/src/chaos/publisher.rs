//! A chaos publisher: publishes at a steady pace to random conversations, each payload naming itself
//! (`{"type":"chaos","c":<conversation>,"p":<publisher>,"s":<seq>}`) under an idempotency key of its own, and
//! retries a payload until `Publish` answers OK: on `UNAVAILABLE` and other transient failures (a broker
//! down, a timeout), moving to the next broker each time, as a client behind a load balancer would. It
//! records every payload and acknowledgement in the [`Truth`]. When told to stop it finishes the payload in
//! flight.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use crier_proto::Position;
use crier_proto::v1::PublishRequest;
use crier_proto::v1::publish_service_client::PublishServiceClient;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tonic::transport::{Channel, Endpoint};

use super::history::PayloadId;
use super::truth::Truth;

/// Bound on one `Publish` call.
const CALL_TIMEOUT: Duration = Duration::from_secs(3);
/// A payload still not acknowledged after this long is given up (counted).
const GIVE_UP: Duration = Duration::from_secs(60);
/// Pauses between retries of one payload: from the first, doubling up to the last.
const RETRY_MIN: Duration = Duration::from_millis(20);
const RETRY_MAX: Duration = Duration::from_millis(500);

/// What one publisher does.
#[derive(Debug, Clone)]
pub struct PublisherSpec {
    /// Its index (the `p` of its payloads).
    pub index: u32,
    /// Conversations to publish to.
    pub conversations: Arc<[String]>,
    /// gRPC URLs of the brokers.
    pub brokers: Vec<String>,
    /// Payloads per second.
    pub rate: f64,
    /// Seed of its conversation choices and retry jitter.
    pub seed: u64,
}

/// What one publisher saw.
#[derive(Debug, Clone, Default)]
pub struct PublishStats {
    /// Failed attempts that were retried, by gRPC code.
    pub retried: BTreeMap<String, usize>,
    /// Payloads given up after [`GIVE_UP`].
    pub gave_up: usize,
    /// Payloads refused for good (a status not worth retrying), described.
    pub refused: Vec<String>,
}

impl PublishStats {
    /// Adds `other`'s counts.
    pub fn add(&mut self, other: Self) {
        for (code, n) in other.retried {
            *self.retried.entry(code).or_default() += n;
        }
        self.gave_up += other.gave_up;
        self.refused.extend(other.refused);
    }
}

/// Publishes until `stop`.
pub async fn run(
    spec: PublisherSpec,
    truth: Arc<Mutex<Truth>>,
    stop: CancellationToken,
) -> anyhow::Result<PublishStats> {
    let mut clients = Vec::new();
    for url in &spec.brokers {
        let endpoint = Endpoint::from_shared(url.clone()).with_context(|| format!("bad URL {url}"))?;
        let channel = endpoint.connect_timeout(CALL_TIMEOUT).timeout(CALL_TIMEOUT).connect_lazy();
        clients.push(PublishServiceClient::new(channel));
    }
    let mut rng = StdRng::seed_from_u64(spec.seed);
    let mut stats = PublishStats::default();
    let period = Duration::from_secs_f64(1.0 / spec.rate.max(0.001));
    let mut next = Instant::now();
    let mut broker = spec.index as usize;
    for seq in 0.. {
        tokio::select! {
            () = stop.cancelled() => break,
            () = tokio::time::sleep_until(next) => {}
        }
        next = (next + period).max(Instant::now() - period);
        let conversation = &spec.conversations[rng.random_range(0..spec.conversations.len())];
        let payload = PayloadId { publisher: spec.index, seq };
        lock(&truth).sent(payload, conversation);
        let acked = publish(&mut clients, &mut broker, conversation, payload, &mut rng, &mut stats).await;
        if let Some(position) = acked {
            lock(&truth).acked(payload, position);
        }
    }
    Ok(stats)
}

/// Publishes `payload` until acknowledged, given up or refused.
async fn publish(
    clients: &mut [PublishServiceClient<Channel>],
    broker: &mut usize,
    conversation: &str,
    payload: PayloadId,
    rng: &mut StdRng,
    stats: &mut PublishStats,
) -> Option<Position> {
    let request = request(conversation, payload);
    let deadline = Instant::now() + GIVE_UP;
    let mut pause = RETRY_MIN;
    loop {
        let client = &mut clients[*broker % clients.len()];
        let status = match client.publish(request.clone()).await {
            Ok(reply) => match reply.into_inner().position.parse() {
                Ok(position) => return Some(position),
                Err(err) => {
                    stats.refused.push(format!("{payload}: {err}"));
                    return None;
                }
            },
            Err(status) => status,
        };
        if !retryable(&status) {
            stats.refused.push(format!("{payload}: {status}"));
            return None;
        }
        *stats.retried.entry(format!("{:?}", status.code())).or_default() += 1;
        if Instant::now() + pause > deadline {
            stats.gave_up += 1;
            return None;
        }
        *broker += 1;
        tokio::time::sleep(pause.mul_f64(rng.random_range(0.5..1.0))).await;
        pause = (pause * 2).min(RETRY_MAX);
    }
}

/// The request publishing `payload`, under an idempotency key of its own.
fn request(conversation: &str, payload: PayloadId) -> PublishRequest {
    let data =
        serde_json::json!({"type": "chaos", "c": conversation, "p": payload.publisher, "s": payload.seq});
    PublishRequest {
        conversation_id: conversation.to_owned(),
        payload: data.to_string().into(),
        idempotency_key: format!("chaos-{}-{}", payload.publisher, payload.seq),
    }
}

/// Failures a retry with the same idempotency key may cure: the broker or its Redis unreachable, a call
/// that timed out or broke with its connection. The last includes a request sent while a stopping broker's
/// `GOAWAY` was on its way, which tonic reports as `INTERNAL` with the transport error as its source (a status
/// the broker itself sent has no source).
fn retryable(status: &tonic::Status) -> bool {
    use tonic::Code;
    let transport = std::error::Error::source(status).is_some_and(|s| s.is::<tonic::transport::Error>());
    transport
        || matches!(
            status.code(),
            Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled | Code::Unknown
        )
}

fn lock(truth: &Mutex<Truth>) -> std::sync::MutexGuard<'_, Truth> {
    // A publisher that panicked while holding the lock left whole records: keep using them.
    truth.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
