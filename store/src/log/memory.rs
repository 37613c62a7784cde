//! The in-memory log of `crier dev`: one bounded deque per partition, readers woken through a `watch`
//! channel carrying the newest id. Ids follow Redis' rule (`<ms>-<seq>`, strictly increasing), epochs,
//! retention and idempotency behave as in Redis, so positions and recovery look the same in dev and
//! production (the behaviour tests in `tests/` run against both).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use crier_proto::StreamId;
use tokio::sync::watch;

use super::{
    Appended, Dedupe, Entry, Head, LogError, Newest, PartitionReader, PartitionedLog, Range, Retention,
    check_partition, new_epoch,
};

/// An in-memory [`PartitionedLog`]; entries vanish with the process.
#[derive(Clone)]
pub struct MemoryLog {
    partitions: Arc<[Partition]>,
    retention: Retention,
}

struct Partition {
    state: Mutex<State>,
    /// Newest id; readers wait on it instead of polling. Sent under the state lock.
    last: watch::Sender<StreamId>,
}

struct State {
    // Bound: the retention (`max_len` entries, `max_age`), trimmed on every append.
    entries: VecDeque<Entry>,
    epoch: u64,
    max_deleted: StreamId,
    /// Appends so far: the sequence number `range` reports, as Redis' live channel numbers them.
    appended: u64,
    /// Idempotency token → first append and when it is forgotten.
    // Bound: the keys of one dedupe window (--dedupe-window × keyed publishes/s); expired keys are dropped
    // on every append.
    dedupe: HashMap<String, (Appended, Instant)>,
}

impl MemoryLog {
    /// A log of `partitions` streams keeping at most `max_len` entries each, for the default time bound.
    #[must_use]
    pub fn new(partitions: u32, max_len: usize) -> Self {
        Self::with_retention(partitions, Retention { max_len, ..Retention::default() })
    }

    /// A log of `partitions` streams with the given retention.
    #[must_use]
    pub fn with_retention(partitions: u32, retention: Retention) -> Self {
        let partitions = (0..partitions)
            .map(|_| Partition {
                state: Mutex::new(State {
                    entries: VecDeque::new(),
                    epoch: new_epoch(),
                    max_deleted: StreamId::ZERO,
                    appended: 0,
                    dedupe: HashMap::new(),
                }),
                last: watch::Sender::new(StreamId::ZERO),
            })
            .collect();
        Self { partitions, retention: Retention { max_len: retention.max_len.max(1), ..retention } }
    }

    fn partition(&self, partition: u32) -> Result<&Partition, LogError> {
        let count = u32::try_from(self.partitions.len()).unwrap_or(u32::MAX);
        check_partition(partition, count)?;
        Ok(&self.partitions[partition as usize])
    }
}

impl Partition {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl State {
    fn trim(&mut self, retention: Retention, newest_ms: u64) {
        let min_ms =
            newest_ms.saturating_sub(u64::try_from(retention.max_age.as_millis()).unwrap_or(u64::MAX));
        while let Some(front) = self.entries.front() {
            if self.entries.len() <= retention.max_len && front.id.ms >= min_ms {
                break;
            }
            self.max_deleted = self.max_deleted.max(front.id);
            self.entries.pop_front();
        }
    }
}

/// The next id after `last`, as Redis' `XADD *` picks it.
fn next_id(last: StreamId, now_ms: u64) -> StreamId {
    if now_ms > last.ms { StreamId::new(now_ms, 0) } else { StreamId::new(last.ms, last.seq + 1) }
}

#[async_trait]
impl PartitionedLog for MemoryLog {
    fn partitions(&self) -> u32 {
        u32::try_from(self.partitions.len()).unwrap_or(u32::MAX)
    }

    async fn append(
        &self,
        partition: u32,
        data: Bytes,
        dedupe: Option<Dedupe<'_>>,
    ) -> Result<Appended, LogError> {
        let p = self.partition(partition)?;
        let mut state = p.lock();
        let now = Instant::now();
        state.dedupe.retain(|_, (_, until)| *until > now);
        if let Some(Dedupe { token, .. }) = dedupe
            && let Some((first, _)) = state.dedupe.get(token)
        {
            return Ok(Appended { duplicate: true, ..*first });
        }
        let id = next_id(*p.last.borrow(), crate::telemetry::now_ms());
        state.entries.push_back(Entry { id, data });
        state.appended += 1;
        state.trim(self.retention, id.ms);
        let appended = Appended { epoch: state.epoch, id, duplicate: false };
        if let Some(Dedupe { token, window }) = dedupe {
            state.dedupe.insert(token.to_owned(), (appended, now + window));
        }
        p.last.send_replace(id);
        Ok(appended)
    }

    async fn head(&self, partition: u32) -> Result<Head, LogError> {
        let p = self.partition(partition)?;
        let state = p.lock();
        Ok(Head { epoch: state.epoch, last: *p.last.borrow() })
    }

    async fn range(&self, partition: u32, after: StreamId, count: usize) -> Result<Range, LogError> {
        let p = self.partition(partition)?;
        let state = p.lock();
        Ok(Range {
            epoch: state.epoch,
            max_deleted: state.max_deleted,
            last: *p.last.borrow(),
            seq: state.appended,
            entries: entries_after(&state.entries, after, count),
        })
    }

    async fn newest(&self, partition: u32, until: StreamId, count: usize) -> Result<Newest, LogError> {
        let p = self.partition(partition)?;
        let state = p.lock();
        let end = state.entries.partition_point(|e| e.id <= until);
        let entries = state.entries.range(..end).rev().take(count).cloned().collect();
        Ok(Newest { epoch: state.epoch, entries })
    }

    async fn reader(&self, partition: u32) -> Result<Box<dyn PartitionReader>, LogError> {
        self.partition(partition)?;
        Ok(Box::new(MemoryReader { log: self.clone(), partition }))
    }
}

fn entries_after(entries: &VecDeque<Entry>, after: StreamId, count: usize) -> Vec<Entry> {
    let start = entries.partition_point(|e| e.id <= after);
    entries.range(start..).take(count).cloned().collect()
}

struct MemoryReader {
    log: MemoryLog,
    partition: u32,
}

#[async_trait]
impl PartitionReader for MemoryReader {
    async fn read_after(
        &mut self,
        after: StreamId,
        count: usize,
        block: Duration,
    ) -> Result<Vec<Entry>, LogError> {
        let p = self.log.partition(self.partition)?;
        let mut last = p.last.subscribe();
        // Waiting for `last > after` before reading cannot miss an append: the watch value is set under the
        // same lock as the deque.
        let _ = tokio::time::timeout(block, last.wait_for(|id| *id > after)).await;
        Ok(entries_after(&p.lock().entries, after, count))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Ids follow Redis' rule: a later millisecond resets the sequence, the same or an earlier one bumps it.
    #[test]
    fn next_id_is_strictly_increasing() {
        assert_eq!(next_id(StreamId::new(5, 3), 9), StreamId::new(9, 0));
        assert_eq!(next_id(StreamId::new(5, 3), 5), StreamId::new(5, 4));
        assert_eq!(next_id(StreamId::new(5, 3), 1), StreamId::new(5, 4));
    }

    /// The deque keeps at most `max_len` entries, dropping the oldest and remembering what it dropped.
    #[tokio::test]
    async fn trims_to_max_len() {
        let log = MemoryLog::new(1, 2);
        let mut ids = Vec::new();
        for i in 0..5u8 {
            ids.push(log.append(0, Bytes::from(vec![i]), None).await.unwrap().id);
        }
        let range = log.range(0, StreamId::ZERO, 10).await.unwrap();
        let data: Vec<u8> = range.entries.iter().map(|e| e.data[0]).collect();
        assert_eq!(data, [3, 4]);
        assert_eq!(range.max_deleted, ids[2]);
    }

    /// Entries older than the time bound are trimmed even under the length bound.
    #[test]
    fn trims_by_age() {
        let mut state = State {
            entries: VecDeque::new(),
            epoch: 1,
            max_deleted: StreamId::ZERO,
            appended: 0,
            dedupe: HashMap::new(),
        };
        for ms in [1_000, 5_000, 9_000] {
            state.entries.push_back(Entry { id: StreamId::new(ms, 0), data: Bytes::new() });
        }
        state.trim(Retention { max_len: 10, max_age: Duration::from_secs(5) }, 9_000);
        assert_eq!(state.entries.len(), 2);
        assert_eq!(state.max_deleted, StreamId::new(1_000, 0));
    }
}
