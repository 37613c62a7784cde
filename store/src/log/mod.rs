//! The partitioned log: N append-only streams of encoded `StreamEntry` records, one per partition.
//!
//! Two implementations of one trait: [`RedisLog`] (production; each partition is a Redis stream) and
//! [`MemoryLog`] (`crier dev` and unit tests). Both are checked by the same behaviour tests in `tests/`.
//! The log knows nothing about conversations or payload formats; it stores opaque bytes under stream ids.
//!
//! Redis modules: `redis` (the log), `commit` (group commit of appends), `feed` (one pub/sub connection per
//! standalone node), `live` (a reader fed by it, catching up from the stream on any gap), `topology` (where
//! partitions live), `reply` (decoding replies).

mod commit;
mod feed;
mod live;
mod memory;
mod redis;
mod reply;
pub mod scan;
pub(crate) mod topology;

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use crier_proto::StreamId;

pub use self::memory::MemoryLog;
pub use self::redis::{RedisLog, RedisLogConfig};
pub use self::scan::{Gap, Limit, Page, Scan, Scanned, Unsendable, decode_entry, page, scan};
pub use self::topology::RedisTopology;

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
    /// The deployment stored a different partition count than this process was configured with.
    #[error(
        "Redis holds a deployment with {stored} partitions but this process is configured with {configured}; \
         use --partitions {stored} (changing the count of a live deployment would move conversations)"
    )]
    PartitionMismatch {
        /// The count stored at first start.
        stored: u32,
        /// The count of this process.
        configured: u32,
    },
    /// Entries after `after` were trimmed by retention before this reader could read them: whoever
    /// reads the partition live has missed them.
    #[error(
        "partition {partition}: entries after {after} were trimmed (up to {trimmed_up_to}) before they were read"
    )]
    Gap {
        /// The partition.
        partition: u32,
        /// The last id the reader had.
        after: StreamId,
        /// The greatest id removed.
        trimmed_up_to: StreamId,
    },
    /// The partition's stream was lost and recreated under a new epoch: whatever the old one held past
    /// the reader's position is gone.
    #[error("partition {partition}: stream lost, now epoch {epoch:x}")]
    EpochChanged {
        /// The partition.
        partition: u32,
        /// The new epoch.
        epoch: u64,
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

/// A partition's epoch and newest id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    /// The stream's epoch (created with the stream; changes when the stream is lost).
    pub epoch: u64,
    /// The newest entry's id, [`StreamId::ZERO`] when empty.
    pub last: StreamId,
}

/// The outcome of an append.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    /// The stream's epoch.
    pub epoch: u64,
    /// The entry's id.
    pub id: StreamId,
    /// `true` when the idempotency key was seen within the dedupe window: nothing new was appended and
    /// `epoch`/`id` are those of the first append.
    pub duplicate: bool,
}

/// Entries of a partition after some id, with what recovery needs to know they are complete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Range {
    /// The stream's epoch.
    pub epoch: u64,
    /// The greatest id ever trimmed or deleted ([`StreamId::ZERO`] if none): entries after `after` are all
    /// present only if this is `<= after`.
    pub max_deleted: StreamId,
    /// The newest id of the stream.
    pub last: StreamId,
    /// Sequence number of the newest entry (appends since the epoch began; the live channel's numbering),
    /// read atomically with `last`.
    pub seq: u64,
    /// Up to `count` entries with ids greater than `after`, oldest first.
    pub entries: Vec<Entry>,
}

/// The newest entries of a partition up to some id, newest first, with the epoch they belong to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Newest {
    /// The stream's epoch.
    pub epoch: u64,
    /// Up to `count` entries with ids at most `until`, newest first.
    pub entries: Vec<Entry>,
}

/// Idempotency of one append: a fixed-length token (`crier_proto::keys::dedupe_token`) remembered for
/// `window`.
#[derive(Debug, Clone, Copy)]
pub struct Dedupe<'a> {
    /// Hash of conversation and idempotency key.
    pub token: &'a str,
    /// How long the token is remembered.
    pub window: Duration,
}

/// N partition streams. Appends from any task; reads through a [`PartitionReader`].
#[async_trait]
pub trait PartitionedLog: Send + Sync + 'static {
    /// The number of partitions.
    fn partitions(&self) -> u32;

    /// Appends `data` to `partition`, trimming by the retention bounds, atomically with the idempotency
    /// check when `dedupe` is given. An error means nothing was appended as far as the log can tell.
    async fn append(
        &self,
        partition: u32,
        data: Bytes,
        dedupe: Option<Dedupe<'_>>,
    ) -> Result<Appended, LogError>;

    /// One partition on each store that fails on its own (each standalone Redis node), for readiness
    /// probes. By default partition 0: one store.
    fn probe_partitions(&self) -> Vec<u32> {
        vec![0]
    }

    /// The epoch and newest id of `partition`, creating the epoch if the stream has none yet. Reading after
    /// `last` yields exactly the entries appended later.
    async fn head(&self, partition: u32) -> Result<Head, LogError>;

    /// Up to `count` entries after `after`, with the epoch and trimming state (for recovery and history).
    async fn range(&self, partition: u32, after: StreamId, count: usize) -> Result<Range, LogError>;

    /// Up to `count` entries with ids at most `until`, newest first (`XREVRANGE`), with the epoch: the
    /// retained state a `last` subscribe shows.
    async fn newest(&self, partition: u32, until: StreamId, count: usize) -> Result<Newest, LogError>;

    /// A reader of `partition` for one consumer loop. Readers may hold a connection of their own, since
    /// their reads block.
    async fn reader(&self, partition: u32) -> Result<Box<dyn PartitionReader>, LogError>;
}

/// Reads one partition in order. Owned by one task.
#[async_trait]
pub trait PartitionReader: Send {
    /// The epoch the caller reads (from its [`Head`]): a reader that can tell reports a different one as
    /// [`LogError::EpochChanged`] instead of reading the new stream as if it were the old.
    fn expect_epoch(&mut self, _epoch: u64) {}

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
/// Retention bound of a partition stream in time: entries older than this are trimmed (`MINID ~`).
pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(600);
/// How long an idempotency key is remembered.
pub const DEFAULT_DEDUPE_WINDOW: Duration = Duration::from_secs(120);

/// Retention bounds of every partition stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Entries kept per partition (approximately, in Redis).
    pub max_len: usize,
    /// Entries older than this are trimmed (approximately, in Redis).
    pub max_age: Duration,
}

impl Default for Retention {
    fn default() -> Self {
        Self { max_len: DEFAULT_MAX_LEN, max_age: DEFAULT_MAX_AGE }
    }
}

/// A fresh random epoch (never 0, so 0 can mean "unknown").
fn new_epoch() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos()),
    );
    hasher.finish().max(1)
}

fn check_partition(partition: u32, partitions: u32) -> Result<(), LogError> {
    if partition < partitions { Ok(()) } else { Err(LogError::NoSuchPartition { partition, partitions }) }
}
