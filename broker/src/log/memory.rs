//! The in-memory log of `crier dev`: one bounded deque per partition, readers woken through a `watch`
//! channel carrying the newest id. Ids follow Redis' rule (`<ms>-<seq>`, strictly increasing), so positions
//! look the same in dev and production.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use bytes::Bytes;
use crier_proto::StreamId;
use tokio::sync::watch;

use super::{Entry, LogError, PartitionReader, PartitionedLog, check_partition};

/// An in-memory [`PartitionedLog`]; entries vanish with the process.
#[derive(Clone)]
pub struct MemoryLog {
    partitions: Arc<[Partition]>,
    max_len: usize,
}

struct Partition {
    entries: Mutex<VecDeque<Entry>>,
    /// Newest id; readers wait on it instead of polling.
    last: watch::Sender<StreamId>,
}

impl MemoryLog {
    /// A log of `partitions` streams keeping at most `max_len` entries each.
    #[must_use]
    pub fn new(partitions: u32, max_len: usize) -> Self {
        let partitions = (0..partitions)
            .map(|_| Partition {
                entries: Mutex::new(VecDeque::new()),
                last: watch::Sender::new(StreamId::ZERO),
            })
            .collect();
        Self { partitions, max_len: max_len.max(1) }
    }

    fn partition(&self, partition: u32) -> Result<&Partition, LogError> {
        let count = u32::try_from(self.partitions.len()).unwrap_or(u32::MAX);
        check_partition(partition, count)?;
        Ok(&self.partitions[partition as usize])
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
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

    async fn append(&self, partition: u32, data: Bytes) -> Result<StreamId, LogError> {
        let p = self.partition(partition)?;
        let id = {
            let mut entries = p.entries.lock().unwrap_or_else(PoisonError::into_inner);
            let id = next_id(*p.last.borrow(), now_ms());
            entries.push_back(Entry { id, data });
            while entries.len() > self.max_len {
                entries.pop_front();
            }
            // Sent under the lock so `last` and the deque move together.
            p.last.send_replace(id);
            id
        };
        Ok(id)
    }

    async fn last_id(&self, partition: u32) -> Result<StreamId, LogError> {
        Ok(*self.partition(partition)?.last.borrow())
    }

    async fn reader(&self, partition: u32) -> Result<Box<dyn PartitionReader>, LogError> {
        self.partition(partition)?;
        Ok(Box::new(MemoryReader { log: self.clone(), partition }))
    }
}

struct MemoryReader {
    log: MemoryLog,
    partition: u32,
}

impl MemoryReader {
    fn collect_after(&self, after: StreamId, count: usize) -> Result<Vec<Entry>, LogError> {
        let p = self.log.partition(self.partition)?;
        let entries = p.entries.lock().unwrap_or_else(PoisonError::into_inner);
        let start = entries.partition_point(|e| e.id <= after);
        Ok(entries.range(start..).take(count).cloned().collect())
    }
}

#[async_trait]
impl PartitionReader for MemoryReader {
    async fn read_after(
        &mut self,
        after: StreamId,
        count: usize,
        block: Duration,
    ) -> Result<Vec<Entry>, LogError> {
        let mut last = self.log.partition(self.partition)?.last.subscribe();
        // Waiting for `last > after` before reading cannot miss an append: the watch value is set under the
        // same lock as the deque.
        let _ = tokio::time::timeout(block, last.wait_for(|id| *id > after)).await;
        self.collect_after(after, count)
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

    /// The deque keeps at most `max_len` entries, dropping the oldest.
    #[tokio::test]
    async fn trims_to_max_len() {
        let log = MemoryLog::new(1, 2);
        for i in 0..5u8 {
            log.append(0, Bytes::from(vec![i])).await.unwrap();
        }
        let mut reader = log.reader(0).await.unwrap();
        let got = reader.read_after(StreamId::ZERO, 10, Duration::ZERO).await.unwrap();
        let data: Vec<u8> = got.iter().map(|e| e.data[0]).collect();
        assert_eq!(data, [3, 4]);
    }
}
