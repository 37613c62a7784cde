//! Partition readers: one task per partition that has local interest, reading the partition stream from a
//! position taken after the first subscriber joined and handing each entry to the hub.
//!
//! A reader owns its log reader (a connection of its own in Redis). On a read error it backs off and resumes
//! from the last id it handled, so a Redis restart costs latency, not entries still in the stream. It never
//! touches sockets: delivery is the hub's and the outboxes' job.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use crier_broker::log::{Entry, LogError, PartitionReader, PartitionedLog};
use crier_proto::StreamId;
use crier_proto::v1::{STREAM_ENTRY_VERSION, StreamEntry};
use prost::Message;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::frame;
use crate::hub::Hub;

/// Back-off bounds between failed log calls.
const BACKOFF_MIN: Duration = Duration::from_millis(50);
const BACKOFF_MAX: Duration = Duration::from_secs(2);

/// Starts partition readers.
pub struct Consumer {
    log: Arc<dyn PartitionedLog>,
    batch: usize,
    block: Duration,
    tracker: TaskTracker,
    shutdown: CancellationToken,
}

/// A running reader, held by its hub shard.
pub struct ReaderHandle {
    cancel: CancellationToken,
    ready: watch::Receiver<bool>,
}

impl ReaderHandle {
    /// Turns `true` once the reader has its starting position.
    #[must_use]
    pub fn ready(&self) -> watch::Receiver<bool> {
        self.ready.clone()
    }

    /// Stops the reader; it exits at its next await.
    pub fn stop(self) {
        self.cancel.cancel();
    }
}

impl Consumer {
    /// Readers on `log`, fetching up to `batch` entries per read and blocking at most `block` per read.
    /// Their tasks go on `tracker` and end when `shutdown` is cancelled.
    #[must_use]
    pub fn new(
        log: Arc<dyn PartitionedLog>,
        batch: usize,
        block: Duration,
        tracker: TaskTracker,
        shutdown: CancellationToken,
    ) -> Self {
        Self { log, batch, block, tracker, shutdown }
    }

    /// The log's partition count.
    #[must_use]
    pub fn partitions(&self) -> u32 {
        self.log.partitions()
    }

    /// Starts reading `partition` for `hub`.
    pub fn spawn(&self, partition: u32, hub: Arc<Hub>) -> ReaderHandle {
        let cancel = self.shutdown.child_token();
        let (ready_tx, ready) = watch::channel(false);
        let reader = Reader {
            log: Arc::clone(&self.log),
            partition,
            hub,
            batch: self.batch,
            block: self.block,
            cancel: cancel.clone(),
        };
        self.tracker.spawn(reader.run(ready_tx));
        ReaderHandle { cancel, ready }
    }
}

struct Reader {
    log: Arc<dyn PartitionedLog>,
    partition: u32,
    hub: Arc<Hub>,
    batch: usize,
    block: Duration,
    cancel: CancellationToken,
}

impl Reader {
    async fn run(self, ready: watch::Sender<bool>) {
        tracing::debug!(partition = self.partition, "partition reader started");
        let Some(mut cursor) = self.retry(|| self.log.last_id(self.partition)).await else { return };
        ready.send_replace(true);
        while !self.cancel.is_cancelled() {
            let Some(mut reader) = self.retry(|| self.log.reader(self.partition)).await else { break };
            cursor = self.pump(reader.as_mut(), cursor).await;
        }
        tracing::debug!(partition = self.partition, "partition reader stopped");
    }

    /// Reads and dispatches until cancelled or the log fails; returns the last handled id.
    async fn pump(&self, reader: &mut dyn PartitionReader, mut cursor: StreamId) -> StreamId {
        loop {
            let batch = tokio::select! {
                () = self.cancel.cancelled() => return cursor,
                batch = reader.read_after(cursor, self.batch, self.block) => batch,
            };
            match batch {
                Ok(entries) => {
                    for entry in entries {
                        cursor = entry.id;
                        self.dispatch(entry);
                    }
                }
                Err(err) => {
                    tracing::warn!(partition = self.partition, error = %err, "partition read failed; reconnecting");
                    return cursor;
                }
            }
        }
    }

    fn dispatch(&self, entry: Entry) {
        let decoded = match StreamEntry::decode(entry.data) {
            Ok(e) if e.version == STREAM_ENTRY_VERSION => e,
            Ok(e) => {
                tracing::warn!(partition = self.partition, id = %entry.id, version = e.version, "skipping entry of unknown version");
                return;
            }
            Err(err) => {
                tracing::warn!(partition = self.partition, id = %entry.id, error = %err, "skipping undecodable entry");
                return;
            }
        };
        let Some(subscribers) = self.hub.subscribers(self.partition, &decoded.conversation_id) else {
            return;
        };
        let frame: Bytes = frame::text(&decoded.payload);
        Hub::deliver(&subscribers, &frame);
    }

    /// Calls `op` until it succeeds, backing off between failures; `None` once cancelled.
    async fn retry<T, F, Fut>(&self, mut op: F) -> Option<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, LogError>>,
    {
        let mut backoff = BACKOFF_MIN;
        loop {
            let result = tokio::select! {
                () = self.cancel.cancelled() => return None,
                result = op() => result,
            };
            match result {
                Ok(value) => return Some(value),
                Err(err) => {
                    tracing::warn!(partition = self.partition, error = %err, ?backoff, "log call failed; retrying");
                }
            }
            tokio::select! {
                () = self.cancel.cancelled() => return None,
                () = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
    }
}
