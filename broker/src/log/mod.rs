//! The partitioned log: N append-only streams of encoded `StreamEntry` records, one per partition.
//!
//! Two implementations of one trait: [`RedisLog`] (production; each partition is a Redis stream) and
//! [`MemoryLog`] (`crier dev` and unit tests). Both are checked by the same behaviour tests in `tests/`.
//! The log knows nothing about conversations or payload formats; it stores opaque bytes under stream ids.

mod memory;
mod redis;

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use crier_proto::StreamId;

pub use self::memory::MemoryLog;
pub use self::redis::{RedisLog, RedisLogConfig};

/// One record of a partition stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Its id in the partition stream.
    pub id: StreamId,
    /// The encoded `StreamEntry`.
    pub data: Bytes,
}

/// Why a log operation failed.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// The backing store could not be reached or did not answer; nothing was appended.
    #[error("log unavailable for partition {partition}: {source}")]
    Unavailable {
        /// The partition the operation was for.
        partition: u32,
        /// What the store said.
        #[source]
        source: ::redis::RedisError,
    },
    /// The store answered something crier did not write (a foreign or corrupt stream).
    #[error("unexpected reply for partition {partition}: {detail}")]
    Protocol {
        /// The partition the operation was for.
        partition: u32,
        /// What was wrong.
        detail: String,
    },
    /// A partition number outside `0..partitions`.
    #[error("partition {partition} out of range (the log has {partitions})")]
    NoSuchPartition {
        /// The requested partition.
        partition: u32,
        /// The log's partition count.
        partitions: u32,
    },
}

/// N partition streams. Appends from any task; reads through a [`PartitionReader`].
#[async_trait]
pub trait PartitionedLog: Send + Sync + 'static {
    /// The number of partitions.
    fn partitions(&self) -> u32;

    /// Appends `data` to `partition`, trimming old entries by the retention bound; returns the new id.
    /// An error means nothing was appended as far as the log can tell.
    async fn append(&self, partition: u32, data: Bytes) -> Result<StreamId, LogError>;

    /// The id of the newest entry of `partition` ([`StreamId::ZERO`] when empty). Reading after it yields
    /// exactly the entries appended later.
    async fn last_id(&self, partition: u32) -> Result<StreamId, LogError>;

    /// A reader of `partition` for one consumer loop. Readers may hold a connection of their own, since
    /// their reads block.
    async fn reader(&self, partition: u32) -> Result<Box<dyn PartitionReader>, LogError>;
}

/// Reads one partition in order. Owned by one task.
#[async_trait]
pub trait PartitionReader: Send {
    /// Up to `count` entries with ids greater than `after`, oldest first. Waits up to `block` for the first
    /// one and returns an empty batch if none arrived.
    async fn read_after(
        &mut self,
        after: StreamId,
        count: usize,
        block: Duration,
    ) -> Result<Vec<Entry>, LogError>;
}

/// Retention bound of a partition stream: `MAXLEN ~` entries.
pub const DEFAULT_MAX_LEN: usize = 10_000;

fn check_partition(partition: u32, partitions: u32) -> Result<(), LogError> {
    if partition < partitions { Ok(()) } else { Err(LogError::NoSuchPartition { partition, partitions }) }
}
