//! Partition readers: one task per partition that has local interest, reading the partition stream from a
//! position taken after the first subscriber joined and handing each entry to the hub.
//!
//! A reader owns its log reader (a connection of its own in Redis). On a read error it backs off and resumes
//! from the last id it handled, so a Redis restart costs latency, not entries still in the stream. It never
//! touches sockets: delivery is the hub's and the outboxes' job.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use crier_proto::v1::StreamEntry;
use crier_proto::{Position, StreamId};
use crier_store::log::{Entry, Head, LogError, PartitionReader, PartitionedLog, decode_entry};
use crier_store::telemetry;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::frame;
use crate::hub::{Hub, ReaderHandle, StartReader, Subscriber};
use crate::meters::{self, EdgeMeters};
use crate::protocol;

/// Back-off bounds between failed log calls.
const BACKOFF_MIN: Duration = Duration::from_millis(50);
const BACKOFF_MAX: Duration = Duration::from_secs(2);

/// Starts partition readers.
pub struct Consumer {
    log: Arc<dyn PartitionedLog>,
    batch: usize,
    block: Duration,
    // Bound: one reader task per partition with subscribers (the hub keeps ≤ 1 per partition).
    tracker: TaskTracker,
    shutdown: CancellationToken,
    meters: EdgeMeters,
    /// Numbers the readers started, so a hub shard can tell its current reader from a stopped one.
    serials: AtomicU64,
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
        meters: EdgeMeters,
    ) -> Self {
        Self { log, batch, block, tracker, shutdown, meters, serials: AtomicU64::new(0) }
    }

    /// The log's partition count.
    #[must_use]
    pub fn partitions(&self) -> u32 {
        self.log.partitions()
    }
}

impl StartReader for Consumer {
    /// Starts reading `partition` for `hub`.
    fn start(&self, partition: u32, hub: Arc<Hub>) -> ReaderHandle {
        let cancel = self.shutdown.child_token();
        let (started_tx, started) = watch::channel(None);
        let serial = self.serials.fetch_add(1, Ordering::Relaxed);
        let reader = Reader {
            log: Arc::clone(&self.log),
            partition,
            serial,
            hub,
            batch: self.batch,
            block: self.block,
            cancel: cancel.clone(),
            meters: self.meters.clone(),
        };
        self.tracker.spawn(reader.run(started_tx));
        ReaderHandle { serial, cancel, started }
    }
}

struct Reader {
    log: Arc<dyn PartitionedLog>,
    partition: u32,
    serial: u64,
    hub: Arc<Hub>,
    batch: usize,
    block: Duration,
    cancel: CancellationToken,
    meters: EdgeMeters,
}

impl Reader {
    async fn run(self, started: watch::Sender<Option<Head>>) {
        tracing::debug!(partition = self.partition, "partition reader started");
        self.meters.partitions_read.increment(1.0);
        self.read(started).await;
        self.meters.partitions_read.decrement(1.0);
        tracing::debug!(partition = self.partition, "partition reader stopped");
    }

    async fn read(&self, started: watch::Sender<Option<Head>>) {
        let Some(mut head) = self.retry(|| self.log.head(self.partition)).await else { return };
        self.hub.reader_at(self.partition, self.serial, head);
        started.send_replace(Some(head));
        while !self.cancel.is_cancelled() {
            let Some(mut reader) = self.retry(|| self.log.reader(self.partition)).await else { break };
            reader.expect_epoch(head.epoch);
            let (last, lost) = self.pump(reader.as_mut(), head).await;
            head.last = last;
            // After a failure the stream may be gone (Redis restarted empty, FLUSHDB): a new epoch means a
            // new stream, and whatever the old one held past this reader is lost.
            let Some(now) = self.retry(|| self.log.head(self.partition)).await else { break };
            if lost || now.epoch != head.epoch {
                // Live delivery resumes at the newest entry; the sessions that missed something are told.
                self.hub.reader_at(self.partition, self.serial, now);
                self.cut_off(last, "trimmed, or the stream was lost");
                head = now;
            }
        }
    }

    /// Reads and dispatches until cancelled or the log fails; returns the last handled id and whether the
    /// log reported entries this reader can no longer read (a gap: trimmed, or the stream lost).
    async fn pump(&self, reader: &mut dyn PartitionReader, head: Head) -> (StreamId, bool) {
        let mut cursor = head.last;
        // Right after (re)connecting, and whenever a read comes back full (the reader is behind), entries may
        // have been trimmed before this reader saw them.
        let mut check = true;
        loop {
            let batch = tokio::select! {
                () = self.cancel.cancelled() => return (cursor, false),
                batch = reader.read_after(cursor, self.batch, self.block) => batch,
            };
            match batch {
                Ok(entries) => {
                    self.record_lag(&entries);
                    if check || entries.len() >= self.batch {
                        self.cut_off_if_trimmed(cursor).await;
                    }
                    check = false;
                    for entry in entries {
                        cursor = entry.id;
                        self.dispatch(head.epoch, entry);
                    }
                }
                Err(err @ (LogError::Gap { .. } | LogError::EpochChanged { .. })) => {
                    tracing::warn!(partition = self.partition, error = %err, "partition reader missed entries");
                    return (cursor, true);
                }
                Err(err) => {
                    self.meters.redis_errors.increment(1);
                    tracing::warn!(partition = self.partition, error = %err, "partition read failed; reconnecting");
                    return (cursor, false);
                }
            }
        }
    }

    /// When entries after `cursor` were trimmed before this reader read them, the partition's live
    /// subscribers have missed them: they are closed with 4008, so that clients resubscribe with `since` and
    /// learn (`recovered`) what can still be recovered, instead of silently skipping. Conservative: a
    /// reader exactly at the trimming point may close sessions that missed nothing; they recover in full.
    async fn cut_off_if_trimmed(&self, cursor: StreamId) {
        let Ok(range) = self.log.range(self.partition, cursor, 1).await else { return };
        if range.max_deleted > cursor {
            self.cut_off(cursor, "trimmed before it read them");
        }
    }

    /// Closes every session of the partition with 4008 (their clients resubscribe with `since` and learn,
    /// by `recovered`, what can still be recovered): entries after `after` were `lost` before this reader
    /// could deliver them.
    fn cut_off(&self, after: StreamId, lost: &'static str) {
        let sessions = self.hub.cut_off(self.partition, self.serial);
        self.meters.reader_gaps.increment(1);
        tracing::warn!(
            partition = self.partition,
            %after,
            sessions,
            lost,
            "partition reader missed entries; closing its sessions with 4008"
        );
    }

    fn dispatch(&self, epoch: u64, entry: Entry) {
        let decoded = match decode_entry(self.partition, &entry) {
            Ok(decoded) => decoded,
            Err(why) => return self.meters.skipped(why),
        };
        let conversation = &decoded.conversation_id;
        let position = Position { partition: self.partition, epoch, id: entry.id };
        // Encoded only for conversations with local subscribers: a partition carries many others.
        let deliver = |subscribers: &[Subscriber]| {
            let frame: Bytes = frame::text(&decoded.payload);
            Hub::deliver(subscribers, entry.id, &frame, || {
                protocol::notification(conversation, &position, &decoded.payload)
            })
        };
        let traced = |subscribers: &[Subscriber]| match self.delivery_span(&decoded, subscribers.len()) {
            Some(span) => span.in_scope(|| deliver(subscribers)),
            None => deliver(subscribers),
        };
        let Some((delivered, dropped)) =
            self.hub.dispatch(self.partition, self.serial, conversation, entry.id, traced)
        else {
            return;
        };
        self.meters.delivered(delivered, dropped, decoded.published_at_ms);
        tracing::debug!(
            partition = self.partition,
            conversation_id = %conversation,
            recipients = delivered,
            "ws_broadcast_completed"
        );
    }

    /// A delivery span, only for entries carrying a sampled trace context: nothing to do when tracing is off.
    fn delivery_span(&self, decoded: &StreamEntry, recipients: usize) -> Option<tracing::Span> {
        if decoded.trace_context.is_empty() {
            return None;
        }
        let span = tracing::info_span!(
            "deliver",
            otel.kind = "consumer",
            conversation_id = %decoded.conversation_id,
            partition = self.partition,
            recipients,
        );
        telemetry::set_parent_from_map(&span, &decoded.trace_context);
        Some(span)
    }

    /// Records how far behind the log this reader is: the age of the oldest entry just read.
    fn record_lag(&self, entries: &[Entry]) {
        if let Some(first) = entries.first() {
            self.meters.read_lag.record(meters::age(first.id.ms).as_secs_f64());
        }
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
                    self.meters.redis_errors.increment(1);
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
