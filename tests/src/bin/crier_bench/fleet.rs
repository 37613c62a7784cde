//! [`Fleet`]: the subscribed connections of one bench process (the bench itself or one worker), each read
//! by its own task that counts notifications into a shared [`Tally`].
//!
//! Connection `i` (global index across processes) authenticates as `u<i>` from source address
//! `source_ips[i % len]` and subscribes to `<prefix>-<i % conversations>`.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::raw_ws::{Ending, RawWs};
use crate::recorder::Recorder;

/// Bound on one connection's connect + upgrade + auth + subscribe.
const OPEN_TIMEOUT: Duration = Duration::from_secs(15);

/// Counters shared by a fleet's tasks.
#[derive(Debug, Default)]
pub struct Tally {
    /// Notification (text) frames received after `subscribed`.
    pub frames: AtomicU64,
    /// Connections subscribed and still open.
    pub open: AtomicU64,
    /// Open attempts that failed.
    pub failed: AtomicU64,
    /// Connections the server closed (or that broke) while the bench still wanted them.
    pub closed: AtomicU64,
    /// Notification frames per conversation index (empty: not counted per conversation).
    pub by_conversation: Vec<AtomicU64>,
}

impl Tally {
    /// A tally that also counts frames per conversation, for `conversations` conversations.
    pub fn per_conversation(conversations: usize) -> Self {
        Self { by_conversation: (0..conversations).map(|_| AtomicU64::new(0)).collect(), ..Self::default() }
    }

    /// Counts `frames` notifications received on a connection to conversation index `conversation`.
    pub fn add(&self, conversation: usize, frames: u64) {
        self.frames.fetch_add(frames, Ordering::Relaxed);
        if let Some(counter) = self.by_conversation.get(conversation) {
            counter.fetch_add(frames, Ordering::Relaxed);
        }
    }

    /// The per-conversation counts so far.
    pub fn conversation_counts(&self) -> Vec<u64> {
        self.by_conversation.iter().map(|c| c.load(Ordering::Relaxed)).collect()
    }
}

/// Which connections a fleet opens, and where.
#[derive(Debug, Clone)]
pub struct FleetSpec {
    pub server: SocketAddr,
    pub path: String,
    pub source_ips: Vec<IpAddr>,
    /// Global index of the first connection.
    pub first: usize,
    pub connections: usize,
    /// Number of distinct conversations the connections are spread over.
    pub conversations: usize,
    pub prefix: String,
    /// Connections being opened at once.
    pub concurrency: usize,
}

impl FleetSpec {
    /// The conversation connection `index` subscribes to.
    pub fn conversation(&self, index: usize) -> String {
        format!("{}-{}", self.prefix, self.conversation_index(index))
    }

    /// The index (0..conversations) of the conversation connection `index` subscribes to.
    pub fn conversation_index(&self, index: usize) -> usize {
        index % self.conversations.max(1)
    }

    /// This spec's connections shared as evenly as possible among `workers` processes; worker `w` connects
    /// from source address `source_ips[(first_worker + w) % len]` only.
    pub fn split(&self, workers: usize, first_worker: usize) -> Vec<Self> {
        let workers = workers.clamp(1, self.connections.max(1));
        let mut first = self.first;
        (0..workers)
            .map(|w| {
                let connections = self.connections / workers + usize::from(w < self.connections % workers);
                let source = self.source_ips[(first_worker + w) % self.source_ips.len()];
                let spec = Self { first, connections, source_ips: vec![source], ..self.clone() };
                first += connections;
                spec
            })
            .collect()
    }
}

/// Connections of one process and their receiving tasks.
pub struct Fleet {
    pub tally: Arc<Tally>,
    stop: CancellationToken,
    tracker: TaskTracker,
    first_error: Arc<Mutex<Option<String>>>,
}

impl Fleet {
    pub fn new() -> Self {
        Self::with_tally(Tally::default())
    }

    /// A fleet that also counts frames per conversation (see [`Tally::per_conversation`]).
    pub fn counting(conversations: usize) -> Self {
        Self::with_tally(Tally::per_conversation(conversations))
    }

    fn with_tally(tally: Tally) -> Self {
        Self {
            tally: Arc::new(tally),
            stop: CancellationToken::new(),
            tracker: TaskTracker::new(),
            first_error: Arc::default(),
        }
    }

    /// Opens every connection of `spec`, `spec.concurrency` at a time; returns when each attempt has
    /// succeeded or failed. Latencies go to `recorder` when given.
    pub async fn connect(&self, spec: FleetSpec, recorder: Option<Arc<Recorder>>) {
        let spec = Arc::new(spec);
        let mut connectors = JoinSet::new();
        for lane in 0..spec.concurrency.clamp(1, spec.connections.max(1)) {
            let spec = Arc::clone(&spec);
            let recorder = recorder.clone();
            let fleet = self.handle();
            connectors.spawn(async move {
                for local in (lane..spec.connections).step_by(spec.concurrency.max(1)) {
                    fleet.open_one(&spec, spec.first + local, recorder.clone()).await;
                }
            });
        }
        while connectors.join_next().await.is_some() {}
    }

    /// The first open failure, if any.
    pub fn first_error(&self) -> Option<String> {
        self.first_error.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Closes every connection and waits (bounded) for the receiving tasks to end.
    pub async fn shutdown(&self) {
        self.stop.cancel();
        self.tracker.close();
        let _ = tokio::time::timeout(Duration::from_secs(5), self.tracker.wait()).await;
    }

    fn handle(&self) -> Self {
        Self {
            tally: Arc::clone(&self.tally),
            stop: self.stop.clone(),
            tracker: self.tracker.clone(),
            first_error: Arc::clone(&self.first_error),
        }
    }

    async fn open_one(&self, spec: &FleetSpec, index: usize, recorder: Option<Arc<Recorder>>) {
        let source = spec.source_ips[index % spec.source_ips.len()];
        let user = format!("u{index}");
        let conversation = spec.conversation(index);
        let slot = spec.conversation_index(index);
        let open = RawWs::open(source, spec.server, &spec.path, &user, &conversation);
        let ws = match tokio::time::timeout(OPEN_TIMEOUT, open).await {
            Ok(Ok(ws)) => ws,
            Ok(Err(err)) => return self.failed(format!("{err:#}")),
            Err(_) => return self.failed(format!("no `subscribed` within {OPEN_TIMEOUT:?}")),
        };
        self.tally.open.fetch_add(1, Ordering::Relaxed);
        let tally = Arc::clone(&self.tally);
        let stop = self.stop.clone();
        self.tracker.spawn(async move {
            let ending = ws.receive(&tally, slot, recorder.as_deref(), &stop).await;
            if !matches!(ending, Ok(Ending::Stopped)) {
                tally.closed.fetch_add(1, Ordering::Relaxed);
            }
            tally.open.fetch_sub(1, Ordering::Relaxed);
        });
    }

    fn failed(&self, error: String) {
        self.tally.failed.fetch_add(1, Ordering::Relaxed);
        self.first_error.lock().unwrap_or_else(PoisonError::into_inner).get_or_insert(error);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A split covers every connection once, in order, one source address per worker.
    #[test]
    fn split_covers_each_connection_once() {
        let spec = FleetSpec {
            server: "127.0.0.1:3000".parse().unwrap(),
            path: "/api/ws".to_owned(),
            source_ips: vec!["127.0.0.2".parse().unwrap(), "127.0.0.3".parse().unwrap()],
            first: 100,
            connections: 10,
            conversations: 1,
            prefix: "c".to_owned(),
            concurrency: 4,
        };
        let parts = spec.split(3, 1);
        let ranges: Vec<(usize, usize)> = parts.iter().map(|p| (p.first, p.connections)).collect();
        assert_eq!(ranges, [(100, 4), (104, 3), (107, 3)]);
        assert_eq!(parts[0].source_ips, ["127.0.0.3".parse::<IpAddr>().unwrap()]);
        assert_eq!(parts[1].source_ips, ["127.0.0.2".parse::<IpAddr>().unwrap()]);
    }
}
