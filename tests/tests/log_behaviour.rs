//! Behaviour of the partitioned log. Each behaviour is written once, against `dyn PartitionedLog`, and run
//! against both implementations by `both_logs!`: `MemoryLog` (`crier dev`) and `RedisLog` on a spawned
//! `redis-server`. Test names are `<behaviour>::memory` and `<behaviour>::redis`.
//!
//! Failure modes only Redis has (the server going away) are tested at the bottom, on Redis alone.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Result, ensure};
use bytes::Bytes;
use crier_broker::log::{Appended, LogError, MemoryLog, PartitionedLog};
use crier_proto::StreamId;
use crier_tests::redis_server::LOG_COMMAND_TIMEOUT;
use crier_tests::{RedisServer, STEP, within, within_for};

/// Partitions of every log under test: enough to show independence, few enough to stay cheap.
const PARTITIONS: u32 = 4;
/// Retention of logs whose test does not exercise trimming: never reached.
const ROOMY_MAX_LEN: usize = 10_000;
/// Entries per Redis stream macro node (`stream-node-max-entries`, default 100). `MAXLEN ~` only drops whole
/// nodes, so a Redis stream may keep up to this many entries beyond its bound.
const REDIS_NODE_ENTRIES: usize = 100;
/// How long the reads that must come back empty block: the only waits for absence in this file, bounded by
/// the log's own `block` parameter.
const SHORT_BLOCK: Duration = Duration::from_millis(200);
/// Block time of reads that must be woken by an append: far beyond [`STEP`], so only the append can end them
/// in time.
const LONG_BLOCK: Duration = Duration::from_secs(60);

/// A log under test, with the Redis server behind it (kept alive as long as the log is used).
struct Subject {
    log: Arc<dyn PartitionedLog>,
    redis: Option<RedisServer>,
}

impl Subject {
    fn memory(max_len: usize) -> Self {
        Self { log: Arc::new(MemoryLog::new(PARTITIONS, max_len)), redis: None }
    }

    async fn redis(max_len: usize) -> Result<Self> {
        let redis = RedisServer::start().await?;
        let log = redis.redis_log(PARTITIONS, max_len).await?;
        Ok(Self { log, redis: Some(redis) })
    }

    /// Returns once a reader is parked waiting for entries. Redis reports blocked clients in `INFO clients`;
    /// a memory reader registers its waiter the first time it is polled, which happens as soon as this task
    /// yields to the (current-thread) runtime.
    async fn until_reader_blocked(&self) -> Result<()> {
        let Some(redis) = &self.redis else {
            tokio::task::yield_now().await;
            return Ok(());
        };
        let mut conn = redis.connection().await?;
        within("a reader blocked in XREAD", async {
            loop {
                let info: String = redis::cmd("INFO").arg("clients").query_async(&mut conn).await?;
                if info.lines().any(|l| l.strip_prefix("blocked_clients:").is_some_and(|n| n.trim() != "0")) {
                    return anyhow::Ok(());
                }
                // Polling a server-side state change; nothing would push it to us.
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await?
    }
}

/// Runs one behaviour (an `async fn(&Subject) -> Result<()>`) against both logs.
macro_rules! both_logs {
    ($behaviour:ident) => {
        both_logs!($behaviour, max_len = ROOMY_MAX_LEN);
    };
    ($behaviour:ident, max_len = $max_len:expr) => {
        mod $behaviour {
            use super::*;

            #[tokio::test]
            async fn memory() -> Result<()> {
                super::$behaviour(&Subject::memory($max_len)).await
            }

            #[tokio::test]
            async fn redis() -> Result<()> {
                super::$behaviour(&Subject::redis($max_len).await?).await
            }
        }
    };
}

fn payload(i: usize) -> Bytes {
    Bytes::from(format!("entry-{i}"))
}

async fn append_n(log: &dyn PartitionedLog, partition: u32, n: usize) -> Result<Vec<StreamId>> {
    let mut ids = Vec::with_capacity(n);
    for i in 0..n {
        ids.push(within("append", log.append(partition, payload(i), None)).await??.id);
    }
    Ok(ids)
}

/// Everything in `partition`, oldest first (reads after `0-0` without blocking).
async fn read_all(log: &dyn PartitionedLog, partition: u32) -> Result<Vec<crier_broker::log::Entry>> {
    let mut reader = within("reader", log.reader(partition)).await??;
    Ok(within("read", reader.read_after(StreamId::ZERO, usize::MAX / 2, Duration::ZERO)).await??)
}

both_logs!(append_returns_strictly_increasing_ids);
/// Ids of one partition strictly increase, even for appends within the same millisecond.
async fn append_returns_strictly_increasing_ids(s: &Subject) -> Result<()> {
    let ids = append_n(&*s.log, 0, 200).await?;
    ensure!(ids[0] > StreamId::ZERO, "first id {} not after 0-0", ids[0]);
    for pair in ids.windows(2) {
        ensure!(pair[0] < pair[1], "ids not increasing: {} then {}", pair[0], pair[1]);
    }
    Ok(())
}

both_logs!(last_id_is_zero_when_empty_then_the_newest_id);
/// `last_id` is `0-0` for an empty partition, then the id of the newest append.
async fn last_id_is_zero_when_empty_then_the_newest_id(s: &Subject) -> Result<()> {
    ensure!(within("head", s.log.head(1)).await??.last == StreamId::ZERO);
    let ids = append_n(&*s.log, 1, 3).await?;
    let last = within("head", s.log.head(1)).await??.last;
    ensure!(Some(&last) == ids.last(), "last_id {last}, appended {ids:?}");
    Ok(())
}

both_logs!(reader_after_last_id_sees_exactly_later_entries_in_order);
/// Reading after `last_id` yields exactly the entries appended afterwards, in order, with their bytes.
async fn reader_after_last_id_sees_exactly_later_entries_in_order(s: &Subject) -> Result<()> {
    append_n(&*s.log, 2, 3).await?;
    let mark = within("head", s.log.head(2)).await??.last;
    let mut reader = within("reader", s.log.reader(2)).await??;
    let later: Vec<Bytes> = vec![Bytes::from_static(b"d"), Bytes::from((0..=255u8).collect::<Vec<_>>())];
    let mut ids = Vec::new();
    for data in &later {
        ids.push(within("append", s.log.append(2, data.clone(), None)).await??.id);
    }
    let got = within("read", reader.read_after(mark, 100, Duration::ZERO)).await??;
    let got: Vec<(StreamId, Bytes)> = got.into_iter().map(|e| (e.id, e.data)).collect();
    let want: Vec<(StreamId, Bytes)> = ids.into_iter().zip(later).collect();
    ensure!(got == want, "after {mark}: got {got:?}, want {want:?}");
    Ok(())
}

both_logs!(read_count_limits_the_batch);
/// A read returns at most `count` entries; reading on from the last one returned continues in order.
async fn read_count_limits_the_batch(s: &Subject) -> Result<()> {
    let ids = append_n(&*s.log, 0, 5).await?;
    let mut reader = within("reader", s.log.reader(0)).await??;
    let mut after = StreamId::ZERO;
    let mut batches = Vec::new();
    for _ in 0..3 {
        let batch = within("read", reader.read_after(after, 2, Duration::ZERO)).await??;
        after = batch.last().map_or(after, |e| e.id);
        batches.push(batch.into_iter().map(|e| e.id).collect::<Vec<_>>());
    }
    ensure!(batches == [ids[0..2].to_vec(), ids[2..4].to_vec(), ids[4..].to_vec()], "{batches:?} vs {ids:?}");
    Ok(())
}

both_logs!(blocked_read_wakes_up_on_append);
/// A read blocked on an empty tail returns the entry as soon as it is appended, long before its block time.
async fn blocked_read_wakes_up_on_append(s: &Subject) -> Result<()> {
    let mark = within("head", s.log.head(3)).await??.last;
    let mut reader = within("reader", s.log.reader(3)).await??;
    let read = tokio::spawn(async move { reader.read_after(mark, 10, LONG_BLOCK).await });
    s.until_reader_blocked().await?;
    let id = within("append", s.log.append(3, payload(7), None)).await??.id;
    let got = within("the blocked read to wake up", read).await???;
    ensure!(got.len() == 1 && got[0].id == id && got[0].data == payload(7), "got {got:?}, appended {id}");
    Ok(())
}

both_logs!(blocked_read_without_append_returns_empty_after_its_block_time);
/// A blocked read with nothing appended returns an empty batch once its block time is over, not earlier.
async fn blocked_read_without_append_returns_empty_after_its_block_time(s: &Subject) -> Result<()> {
    append_n(&*s.log, 1, 2).await?;
    let mark = within("head", s.log.head(1)).await??.last;
    let mut reader = within("reader", s.log.reader(1)).await??;
    let started = Instant::now();
    let got = within("an empty read", reader.read_after(mark, 10, SHORT_BLOCK)).await??;
    let waited = started.elapsed();
    ensure!(got.is_empty(), "expected nothing after {mark}, got {got:?}");
    ensure!(waited >= SHORT_BLOCK.mul_f32(0.9), "returned after {waited:?}, block was {SHORT_BLOCK:?}");
    Ok(())
}

both_logs!(partitions_are_independent);
/// Appends to one partition are invisible in the others and do not wake their readers.
async fn partitions_are_independent(s: &Subject) -> Result<()> {
    let mut reader1 = within("reader", s.log.reader(1)).await??;
    let ids0 = append_n(&*s.log, 0, 3).await?;
    let ids1 = append_n(&*s.log, 1, 2).await?;
    let in0: Vec<StreamId> = read_all(&*s.log, 0).await?.into_iter().map(|e| e.id).collect();
    let in1: Vec<StreamId> = read_all(&*s.log, 1).await?.into_iter().map(|e| e.id).collect();
    ensure!(in0 == ids0 && in1 == ids1, "p0 {in0:?} (want {ids0:?}), p1 {in1:?} (want {ids1:?})");
    ensure!(within("head", s.log.head(2)).await??.last == StreamId::ZERO, "partition 2 not empty");
    append_n(&*s.log, 0, 1).await?;
    let woken = within("read of p1", reader1.read_after(ids1[1], 10, SHORT_BLOCK)).await??;
    ensure!(woken.is_empty(), "an append to p0 showed up in p1: {woken:?}");
    Ok(())
}

/// Retention bound of the trimming test: small, so trimming must happen.
const TRIM_MAX_LEN: usize = 10;
/// Appends of the trimming test: several Redis macro nodes beyond the bound.
const TRIM_APPENDS: usize = 1_000;

both_logs!(trimming_keeps_about_max_len_newest_entries, max_len = TRIM_MAX_LEN);
/// Appends trim the partition to about `max_len` entries, dropping the oldest: never fewer than `max_len`,
/// and never more than one Redis macro node beyond it (`MAXLEN ~` trims whole nodes only).
async fn trimming_keeps_about_max_len_newest_entries(s: &Subject) -> Result<()> {
    let ids = append_n(&*s.log, 0, TRIM_APPENDS).await?;
    let kept: Vec<StreamId> = read_all(&*s.log, 0).await?.into_iter().map(|e| e.id).collect();
    let bounds = TRIM_MAX_LEN..=TRIM_MAX_LEN + REDIS_NODE_ENTRIES;
    ensure!(bounds.contains(&kept.len()), "kept {} entries, expected {bounds:?}", kept.len());
    ensure!(kept[..] == ids[ids.len() - kept.len()..], "kept entries are not the newest ones, in order");
    Ok(())
}

both_logs!(out_of_range_partition_is_rejected);
/// Every operation on a partition outside `0..partitions` fails with `NoSuchPartition`.
async fn out_of_range_partition_is_rejected(s: &Subject) -> Result<()> {
    let is_no_such = |e: &LogError| {
        matches!(e, LogError::NoSuchPartition { partition: PARTITIONS, partitions: PARTITIONS })
    };
    let append = within("append", s.log.append(PARTITIONS, payload(0), None)).await?;
    ensure!(append.as_ref().is_err_and(is_no_such), "append: {append:?}");
    let last = within("head", s.log.head(PARTITIONS)).await?;
    ensure!(last.as_ref().is_err_and(is_no_such), "last_id: {last:?}");
    let reader = within("reader", s.log.reader(PARTITIONS)).await?;
    ensure!(reader.as_ref().err().is_some_and(is_no_such), "reader was created");
    Ok(())
}

/// How long an operation against a dead Redis may take to fail: its command timeout, a retry, and slack.
const DEAD_REDIS_LIMIT: Duration = Duration::from_secs(3 * LOG_COMMAND_TIMEOUT.as_secs() + 1);

/// With Redis down, an append fails with `Unavailable` within seconds: never a hang, never a fake success.
#[tokio::test]
async fn redis_append_fails_unavailable_when_redis_is_down() -> Result<()> {
    let mut redis = RedisServer::start().await?;
    let log = redis.redis_log(PARTITIONS, ROOMY_MAX_LEN).await?;
    within("append", log.append(0, payload(0), None)).await??;
    redis.stop();
    let result =
        within_for(DEAD_REDIS_LIMIT, "append to a dead Redis", log.append(0, payload(1), None)).await?;
    ensure!(matches!(result, Err(LogError::Unavailable { partition: 0, .. })), "{result:?}");
    Ok(())
}

/// A read blocked in Redis fails with `Unavailable` when the server dies, instead of waiting out its block.
#[tokio::test]
async fn redis_blocked_read_fails_unavailable_when_redis_dies() -> Result<()> {
    let mut subject = Subject::redis(ROOMY_MAX_LEN).await?;
    let mut reader = within("reader", subject.log.reader(2)).await??;
    let read = tokio::spawn(async move { reader.read_after(StreamId::ZERO, 10, LONG_BLOCK).await });
    subject.until_reader_blocked().await?;
    if let Some(redis) = subject.redis.as_mut() {
        redis.stop();
    }
    let result = within_for(DEAD_REDIS_LIMIT, "the blocked read to fail", read).await??;
    ensure!(matches!(result, Err(LogError::Unavailable { partition: 2, .. })), "{result:?}");
    Ok(())
}

/// Once Redis is back (empty, on the same address), appends succeed again without a new log object.
#[tokio::test]
async fn redis_append_recovers_after_redis_restarts() -> Result<()> {
    let mut redis = RedisServer::start().await?;
    let log = redis.redis_log(PARTITIONS, ROOMY_MAX_LEN).await?;
    within("append", log.append(0, payload(0), None)).await??;
    redis.restart().await?;
    // A publisher retries UNAVAILABLE; the first attempts may still hit the dead connection.
    let id = within_for(STEP + DEAD_REDIS_LIMIT, "an append after the restart", async {
        loop {
            if let Ok(Appended { id, .. }) = log.append(0, payload(1), None).await {
                return id;
            }
        }
    })
    .await?;
    ensure!(within("head", log.head(0)).await??.last == id, "appended {id} is not the newest entry");
    Ok(())
}
