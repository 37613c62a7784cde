//! Behaviour of the partitioned log. Each behaviour is written once, against `dyn PartitionedLog`, and run
//! by `every_log!` against four logs: `MemoryLog` (`crier dev`) and `RedisLog` on a spawned standalone
//! `redis-server`, on three standalone nodes sharing the partitions (`RedisTopology::Nodes`) and on a
//! three-master Redis Cluster (`RedisTopology::Cluster`). Test names are `<behaviour>::memory`, `::redis`,
//! `::redis_nodes` and `::redis_cluster`.
//!
//! Failure modes only Redis has (the server going away) are tested at the bottom, on Redis alone; what is
//! specific to one topology (placement, losing a node, a cluster master dying) is in `log_topologies.rs`.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Result, ensure};
use bytes::Bytes;
use crier_proto::StreamId;
use crier_proto::keys::dedupe_token;
use crier_store::log::{
    Appended, Dedupe, LogError, MemoryLog, PartitionedLog, Range, RedisTopology, Retention,
};
use crier_tests::redis_server::{LOG_COMMAND_TIMEOUT, redis_log};
use crier_tests::{RedisCluster, RedisServer, STEP, within, within_for};

/// Partitions of every log under test: enough to show independence (and, on 3 nodes or a 3-master
/// cluster, to put a partition on every node), few enough to stay cheap.
const PARTITIONS: u32 = 4;
/// Retention of logs whose test does not exercise trimming: never reached.
const ROOMY: Retention = Retention { max_len: 10_000, max_age: Duration::from_secs(600) };
/// Entries per Redis stream macro node (`stream-node-max-entries`, default 100). `MAXLEN ~` and `MINID ~`
/// only drop whole nodes, so a Redis stream may keep up to this many entries beyond its bound.
const REDIS_NODE_ENTRIES: usize = 100;
/// How long the reads that must come back empty block: with [`PAST_COMMAND_TIMEOUT`] the only waits for
/// absence in this file, bounded by the log's own `block` parameter.
const SHORT_BLOCK: Duration = Duration::from_millis(200);
/// Block time of reads that must be woken by an append: far beyond [`STEP`], so only the append can end them
/// in time.
const LONG_BLOCK: Duration = Duration::from_secs(60);
/// Dedupe window of tests that must see a duplicate: far beyond any test's runtime.
const LONG_WINDOW: Duration = Duration::from_secs(60);

/// What a log under test runs on, kept alive as long as the log is used.
enum Backend {
    Memory,
    Redis(RedisServer),
    Nodes(Vec<RedisServer>),
    Cluster(RedisCluster),
}

/// A log under test and its backend.
struct Subject {
    log: Arc<dyn PartitionedLog>,
    backend: Backend,
}

impl Subject {
    fn memory(retention: Retention) -> Self {
        Self { log: Arc::new(MemoryLog::with_retention(PARTITIONS, retention)), backend: Backend::Memory }
    }

    async fn redis(retention: Retention) -> Result<Self> {
        let redis = RedisServer::start().await?;
        let log = redis_log(RedisTopology::Nodes(vec![redis.url()]), PARTITIONS, retention).await?;
        Ok(Self { log, backend: Backend::Redis(redis) })
    }

    async fn redis_nodes(retention: Retention) -> Result<Self> {
        let nodes = RedisServer::start_many(3).await?;
        let urls = nodes.iter().map(RedisServer::url).collect();
        let log = redis_log(RedisTopology::Nodes(urls), PARTITIONS, retention).await?;
        Ok(Self { log, backend: Backend::Nodes(nodes) })
    }

    async fn redis_cluster(retention: Retention) -> Result<Self> {
        let cluster = RedisCluster::start().await?;
        let log = redis_log(RedisTopology::Cluster(cluster.urls()), PARTITIONS, retention).await?;
        Ok(Self { log, backend: Backend::Cluster(cluster) })
    }

    /// Every Redis process behind the log (none for memory).
    fn servers(&self) -> &[RedisServer] {
        match &self.backend {
            Backend::Memory => &[],
            Backend::Redis(redis) => std::slice::from_ref(redis),
            Backend::Nodes(nodes) => nodes,
            Backend::Cluster(cluster) => cluster.masters(),
        }
    }

    /// Returns once a reader is parked waiting for entries. Redis reports blocked clients in `INFO clients`
    /// (an `XREAD BLOCK` reader, on a Cluster) or the live channels subscribed (`PUBSUB CHANNELS`, a
    /// pub/sub-fed reader on standalone nodes: from then on every append reaches it), on whichever node
    /// holds the partition; a memory reader registers its waiter the first time it is polled, which happens
    /// as soon as this task yields to the (current-thread) runtime.
    async fn until_reader_blocked(&self) -> Result<()> {
        if let Backend::Memory = self.backend {
            tokio::task::yield_now().await;
            return Ok(());
        }
        let mut conns = Vec::new();
        for server in self.servers() {
            conns.push(server.connection().await?);
        }
        within("a reader blocked in XREAD or subscribed", async {
            loop {
                for conn in &mut conns {
                    let info: String = redis::cmd("INFO").arg("clients").query_async(conn).await?;
                    if info
                        .lines()
                        .any(|l| l.strip_prefix("blocked_clients:").is_some_and(|n| n.trim() != "0"))
                    {
                        return anyhow::Ok(());
                    }
                    let live: Vec<String> = redis::cmd("PUBSUB").arg("CHANNELS").query_async(conn).await?;
                    if !live.is_empty() {
                        return anyhow::Ok(());
                    }
                }
                // Polling a server-side state change; nothing would push it to us.
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await?
    }
}

/// Runs one behaviour (an `async fn(&Subject) -> Result<()>`) against every log, with [`ROOMY`] retention
/// unless given.
macro_rules! every_log {
    ($behaviour:ident) => {
        every_log!($behaviour, ROOMY);
    };
    ($behaviour:ident, $retention:expr) => {
        mod $behaviour {
            use super::*;

            #[tokio::test]
            async fn memory() -> Result<()> {
                super::$behaviour(&Subject::memory($retention)).await
            }

            #[tokio::test]
            async fn redis() -> Result<()> {
                super::$behaviour(&Subject::redis($retention).await?).await
            }

            #[tokio::test]
            async fn redis_nodes() -> Result<()> {
                super::$behaviour(&Subject::redis_nodes($retention).await?).await
            }

            #[tokio::test]
            async fn redis_cluster() -> Result<()> {
                super::$behaviour(&Subject::redis_cluster($retention).await?).await
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
async fn read_all(log: &dyn PartitionedLog, partition: u32) -> Result<Vec<crier_store::log::Entry>> {
    let mut reader = within("reader", log.reader(partition)).await??;
    Ok(within("read", reader.read_after(StreamId::ZERO, usize::MAX / 2, Duration::ZERO)).await??)
}

every_log!(append_returns_strictly_increasing_ids);
/// Ids of one partition strictly increase, even for appends within the same millisecond.
async fn append_returns_strictly_increasing_ids(s: &Subject) -> Result<()> {
    let ids = append_n(&*s.log, 0, 200).await?;
    ensure!(ids[0] > StreamId::ZERO, "first id {} not after 0-0", ids[0]);
    for pair in ids.windows(2) {
        ensure!(pair[0] < pair[1], "ids not increasing: {} then {}", pair[0], pair[1]);
    }
    Ok(())
}

every_log!(head_is_zero_when_empty_then_the_newest_id);
/// `head().last` is `0-0` for an empty partition, then the id of the newest append.
async fn head_is_zero_when_empty_then_the_newest_id(s: &Subject) -> Result<()> {
    ensure!(within("head", s.log.head(1)).await??.last == StreamId::ZERO);
    let ids = append_n(&*s.log, 1, 3).await?;
    let last = within("head", s.log.head(1)).await??.last;
    ensure!(Some(&last) == ids.last(), "head {last}, appended {ids:?}");
    Ok(())
}

every_log!(reader_after_head_sees_exactly_later_entries_in_order);
/// Reading after `head().last` yields exactly the entries appended afterwards, in order, with their bytes.
async fn reader_after_head_sees_exactly_later_entries_in_order(s: &Subject) -> Result<()> {
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

every_log!(read_count_limits_the_batch);
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

every_log!(blocked_read_wakes_up_on_append);
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

every_log!(blocked_read_without_append_returns_empty_after_its_block_time);
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

every_log!(partitions_are_independent);
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

/// Retention bound of the trimming tests: small, so trimming must happen.
const TRIM_MAX_LEN: usize = 10;
/// Retention of the trimming tests.
const TRIM: Retention = Retention { max_len: TRIM_MAX_LEN, ..ROOMY };
/// Appends of the trimming test: several Redis macro nodes beyond the bound.
const TRIM_APPENDS: usize = 1_000;

every_log!(trimming_keeps_about_max_len_newest_entries, TRIM);
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

every_log!(out_of_range_partition_is_rejected);
/// Every operation on a partition outside `0..partitions` fails with `NoSuchPartition`.
async fn out_of_range_partition_is_rejected(s: &Subject) -> Result<()> {
    let is_no_such = |e: &LogError| {
        matches!(e, LogError::NoSuchPartition { partition: PARTITIONS, partitions: PARTITIONS })
    };
    let append = within("append", s.log.append(PARTITIONS, payload(0), None)).await?;
    ensure!(append.as_ref().is_err_and(is_no_such), "append: {append:?}");
    let head = within("head", s.log.head(PARTITIONS)).await?;
    ensure!(head.as_ref().is_err_and(is_no_such), "head: {head:?}");
    let range = within("range", s.log.range(PARTITIONS, StreamId::ZERO, 10)).await?;
    ensure!(range.as_ref().is_err_and(is_no_such), "range: {range:?}");
    let reader = within("reader", s.log.reader(PARTITIONS)).await?;
    ensure!(reader.as_ref().err().is_some_and(is_no_such), "reader was created");
    Ok(())
}

/// Block time of the read that must outlast the log's command timeout and still come back empty.
const PAST_COMMAND_TIMEOUT: Duration = LOG_COMMAND_TIMEOUT.saturating_add(Duration::from_millis(500));

every_log!(blocked_read_outlasting_the_command_timeout_returns_empty_not_an_error);
/// A read may block longer than the log's command timeout (edges block for seconds on quiet partitions):
/// with nothing appended it returns an empty batch, not `Unavailable`.
async fn blocked_read_outlasting_the_command_timeout_returns_empty_not_an_error(s: &Subject) -> Result<()> {
    let block = PAST_COMMAND_TIMEOUT;
    let mut reader = within("reader", s.log.reader(0)).await??;
    let got =
        within_for(block + STEP, "a long empty read", reader.read_after(StreamId::ZERO, 10, block)).await?;
    ensure!(matches!(&got, Ok(entries) if entries.is_empty()), "read blocking {block:?}: {got:?}");
    Ok(())
}

every_log!(epoch_is_stable_across_appends_and_agreed_by_head_and_range);
/// A partition's epoch is not 0, does not change while appending, and `append`, `head` and `range` all
/// report the same one (positions taken from any of them compare equal).
async fn epoch_is_stable_across_appends_and_agreed_by_head_and_range(s: &Subject) -> Result<()> {
    let epoch = within("head", s.log.head(1)).await??.epoch;
    ensure!(epoch != 0, "epoch 0 means unknown");
    for i in 0..3 {
        let appended = within("append", s.log.append(1, payload(i), None)).await??;
        ensure!(appended.epoch == epoch, "append {i} in epoch {:x}, head said {epoch:x}", appended.epoch);
    }
    let head = within("head", s.log.head(1)).await??.epoch;
    let range = within("range", s.log.range(1, StreamId::ZERO, 10)).await??.epoch;
    ensure!(head == epoch && range == epoch, "head {head:x}, range {range:x}, first head {epoch:x}");
    Ok(())
}

/// An idempotency token as the publisher derives it.
fn token(key: &str) -> String {
    dedupe_token("conversation-1", key)
}

/// Everything in `partition` as (id, data), via `range`.
async fn ranged(log: &dyn PartitionedLog, partition: u32) -> Result<Vec<(StreamId, Bytes)>> {
    let range = within("range", log.range(partition, StreamId::ZERO, 1_000)).await??;
    Ok(range.entries.into_iter().map(|e| (e.id, e.data)).collect())
}

every_log!(same_token_within_window_returns_first_append_and_appends_nothing);
/// A retried append (same token, within the window) answers the first append's epoch and id with
/// `duplicate: true`, and the partition holds the first append only.
async fn same_token_within_window_returns_first_append_and_appends_nothing(s: &Subject) -> Result<()> {
    let (token, first_data) = (token("k1"), Bytes::from_static(b"first"));
    let dedupe = Some(Dedupe { token: &token, window: LONG_WINDOW });
    let first = within("append", s.log.append(2, first_data.clone(), dedupe)).await??;
    ensure!(!first.duplicate, "first append flagged duplicate: {first:?}");
    let retry = within("retried append", s.log.append(2, Bytes::from_static(b"retry"), dedupe)).await??;
    ensure!(retry == Appended { duplicate: true, ..first }, "retry {retry:?}, first {first:?}");
    let stored = ranged(&*s.log, 2).await?;
    ensure!(stored == [(first.id, first_data)], "partition holds {stored:?}");
    Ok(())
}

every_log!(different_tokens_append_separately);
/// Appends with different tokens (or none) are distinct publishes: each is appended.
async fn different_tokens_append_separately(s: &Subject) -> Result<()> {
    let (a, b) = (token("k1"), token("k2"));
    let mut appended = Vec::new();
    for (i, token) in [Some(&a), Some(&b), None].into_iter().enumerate() {
        let dedupe = token.map(|token| Dedupe { token, window: LONG_WINDOW });
        appended.push(within("append", s.log.append(3, payload(i), dedupe)).await??);
    }
    ensure!(appended.iter().all(|a| !a.duplicate), "flagged duplicate: {appended:?}");
    let want: Vec<(StreamId, Bytes)> = appended.iter().enumerate().map(|(i, a)| (a.id, payload(i))).collect();
    let stored = ranged(&*s.log, 3).await?;
    ensure!(stored == want, "partition holds {stored:?}, want {want:?}");
    Ok(())
}

/// Dedupe window of the expiry test: short, so the test waits little.
const SHORT_WINDOW: Duration = Duration::from_millis(200);

every_log!(token_is_forgotten_after_its_window);
/// A token is remembered for its whole window and forgotten after it: a retry after the window appends a
/// new entry.
async fn token_is_forgotten_after_its_window(s: &Subject) -> Result<()> {
    let token = token("k1");
    let dedupe = Some(Dedupe { token: &token, window: SHORT_WINDOW });
    let started = Instant::now();
    let first = within("append", s.log.append(0, payload(0), dedupe)).await??;
    // Retrying until the log forgets the token: the window is the log's clock, nothing to wait on.
    let later = within("the token to expire", async {
        loop {
            let retry = s.log.append(0, payload(1), dedupe).await?;
            if !retry.duplicate {
                return anyhow::Ok(retry);
            }
            ensure!(retry == Appended { duplicate: true, ..first }, "retry {retry:?}, first {first:?}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await??;
    let waited = started.elapsed();
    ensure!(waited >= SHORT_WINDOW, "token forgotten after {waited:?}, window {SHORT_WINDOW:?}");
    ensure!(later.id > first.id && later.epoch == first.epoch, "first {first:?}, later {later:?}");
    let stored: Vec<StreamId> = ranged(&*s.log, 0).await?.into_iter().map(|(id, _)| id).collect();
    ensure!(stored == [first.id, later.id], "partition holds {stored:?}");
    Ok(())
}

every_log!(range_after_an_id_returns_later_entries_in_order_with_last);
/// `range(after, count)` returns up to `count` entries after `after`, oldest first with their bytes, and
/// always the stream's newest id as `last` (so a client knows whether it has caught up).
async fn range_after_an_id_returns_later_entries_in_order_with_last(s: &Subject) -> Result<()> {
    let ids = append_n(&*s.log, 1, 5).await?;
    let newest = ids[4];
    let epoch = within("head", s.log.head(1)).await??.epoch;
    let all = within("range", s.log.range(1, ids[1], 100)).await??;
    let want: Vec<(StreamId, Bytes)> = ids[2..].iter().zip(2..).map(|(id, i)| (*id, payload(i))).collect();
    let got: Vec<(StreamId, Bytes)> = all.entries.iter().map(|e| (e.id, e.data.clone())).collect();
    ensure!(got == want, "after {}: got {got:?}, want {want:?}", ids[1]);
    ensure!(all.last == newest && all.epoch == epoch, "range {all:?}, newest {newest}, epoch {epoch:x}");
    let page = within("range", s.log.range(1, ids[1], 2)).await??;
    let page_ids: Vec<StreamId> = page.entries.iter().map(|e| e.id).collect();
    ensure!(page_ids == ids[2..4] && page.last == newest, "count 2 after {}: {page:?}", ids[1]);
    let caught_up = within("range", s.log.range(1, newest, 10)).await??;
    ensure!(caught_up.entries.is_empty() && caught_up.last == newest, "after newest: {caught_up:?}");
    Ok(())
}

every_log!(newest_returns_entries_up_to_an_id_newest_first);
/// `newest(until, count)` returns up to `count` entries with ids at most `until` (inclusive), newest first
/// with their bytes, and the stream's epoch; before the first entry, nothing.
async fn newest_returns_entries_up_to_an_id_newest_first(s: &Subject) -> Result<()> {
    let ids = append_n(&*s.log, 1, 5).await?;
    let epoch = within("head", s.log.head(1)).await??.epoch;
    let page = within("newest", s.log.newest(1, ids[3], 2)).await??;
    let got: Vec<(StreamId, Bytes)> = page.entries.iter().map(|e| (e.id, e.data.clone())).collect();
    ensure!(got == [(ids[3], payload(3)), (ids[2], payload(2))], "until {}: {got:?}", ids[3]);
    ensure!(page.epoch == epoch, "epoch {:x}, head says {epoch:x}", page.epoch);
    let all = within("newest", s.log.newest(1, ids[4], 100)).await??;
    let all_ids: Vec<StreamId> = all.entries.iter().map(|e| e.id).collect();
    ensure!(all_ids.iter().rev().eq(ids.iter()), "everything newest first: {all_ids:?}");
    let before = within("newest", s.log.newest(1, ids[0].prev(), 10)).await??;
    ensure!(before.entries.is_empty(), "before the first entry: {before:?}");
    Ok(())
}

every_log!(max_deleted_is_zero_until_trimming_then_covers_every_trimmed_id, TRIM);
/// `max_deleted` is `0-0` while nothing was trimmed, and after trimming it is at least every trimmed id
/// (and before the oldest kept one): recovery from a trimmed position can tell it has a gap.
async fn max_deleted_is_zero_until_trimming_then_covers_every_trimmed_id(s: &Subject) -> Result<()> {
    let mut ids = append_n(&*s.log, 2, TRIM_MAX_LEN / 2).await?;
    let before = within("range", s.log.range(2, StreamId::ZERO, 1)).await??;
    ensure!(before.max_deleted == StreamId::ZERO, "nothing trimmed yet, max_deleted {}", before.max_deleted);
    ids.extend(append_n(&*s.log, 2, TRIM_APPENDS).await?);
    let Range { max_deleted, entries, .. } = within("range", s.log.range(2, StreamId::ZERO, 1)).await??;
    let oldest_kept = entries.first().map(|e| e.id).unwrap_or_default();
    let newest_trimmed = ids.iter().copied().filter(|id| *id < oldest_kept).max().unwrap_or_default();
    ensure!(newest_trimmed > StreamId::ZERO, "nothing was trimmed (oldest kept {oldest_kept})");
    ensure!(
        newest_trimmed <= max_deleted && max_deleted < oldest_kept,
        "max_deleted {max_deleted}; trimmed up to {newest_trimmed}, oldest kept {oldest_kept}"
    );
    Ok(())
}

/// Time bound of the age-retention test: short, so little wall time passes.
const AGE: Retention = Retention { max_len: 10_000, max_age: Duration::from_secs(1) };

every_log!(entries_older_than_max_age_are_trimmed, AGE);
/// Appends trim entries older than `max_age` (in Redis with `MINID ~`, so once a whole macro node of them
/// is older), keeping the newer ones.
async fn entries_older_than_max_age_are_trimmed(s: &Subject) -> Result<()> {
    // One full Redis macro node of entries that will grow old; the next append opens a new node.
    let old = append_n(&*s.log, 3, REDIS_NODE_ENTRIES).await?;
    let newest_old = old[old.len() - 1];
    // Waiting for the wall clock (entry ids are milliseconds of it), not for another task.
    let old_at = UNIX_EPOCH + Duration::from_millis(newest_old.ms);
    let remaining = (old_at + AGE.max_age).duration_since(SystemTime::now()).unwrap_or_default();
    tokio::time::sleep(remaining + Duration::from_millis(20)).await;
    let mut fresh = Vec::new();
    let oldest = within("the old entries to be trimmed", async {
        for i in 0..REDIS_NODE_ENTRIES {
            fresh.push(s.log.append(3, payload(i), None).await?.id);
            let range = s.log.range(3, StreamId::ZERO, 1).await?;
            let oldest = range.entries.first().map(|e| e.id).unwrap_or_default();
            if oldest > newest_old {
                return anyhow::Ok(oldest);
            }
        }
        anyhow::bail!("old entries still there after {REDIS_NODE_ENTRIES} appends past max_age")
    })
    .await??;
    ensure!(oldest == fresh[0], "oldest kept {oldest}, first fresh entry {}", fresh[0]);
    Ok(())
}

/// How long an operation against a dead Redis may take to fail: its command timeout, a retry, and slack.
const DEAD_REDIS_LIMIT: Duration = Duration::from_secs(3 * LOG_COMMAND_TIMEOUT.as_secs() + 1);

/// With Redis down, an append fails with `Unavailable` within seconds: never a hang, never a fake success.
#[tokio::test]
async fn redis_append_fails_unavailable_when_redis_is_down() -> Result<()> {
    let mut redis = RedisServer::start().await?;
    let log = redis.redis_log(PARTITIONS, ROOMY.max_len).await?;
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
    let mut subject = Subject::redis(ROOMY).await?;
    let mut reader = within("reader", subject.log.reader(2)).await??;
    let read = tokio::spawn(async move { reader.read_after(StreamId::ZERO, 10, LONG_BLOCK).await });
    subject.until_reader_blocked().await?;
    if let Backend::Redis(redis) = &mut subject.backend {
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
    let log = redis.redis_log(PARTITIONS, ROOMY.max_len).await?;
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
