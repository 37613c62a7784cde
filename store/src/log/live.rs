//! A partition reader fed by pub/sub: live entries arrive on the partition's channel, each with its epoch
//! and sequence number; the stream is read (`XRANGE`) only to catch up.
//!
//! Exact gap detection: the reader delivers a live message only when its sequence number is the next one
//! expected. Its first read, or a jump, make it catch up from the stream after the last id delivered (the
//! range script answers the sequence number of the newest entry with the entries, atomically) before
//! anything newer. When retention dropped entries it missed while live, it fails with [`LogError::Gap`];
//! when the stream was lost (a new epoch), with [`LogError::EpochChanged`]; when the pub/sub connection was
//! lost, with `Unavailable` (its consumer starts a new reader, which catches up). Never a silent gap. Like
//! an `XREAD` reader, its first read returns what is left after `after` (the consumer checks trimming then).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use crier_proto::StreamId;
use tokio::sync::mpsc;

use super::feed::{Feed, Live};
use super::{Entry, LogError, PartitionReader, PartitionedLog};

/// Numbers readers, so a feed can tell a reader's leave from a later reader's join of the same channel.
static READERS: AtomicU64 = AtomicU64::new(0);

/// Where a reader stands in the live sequence.
#[derive(Debug, Clone, Copy)]
struct Synced {
    epoch: u64,
    /// Sequence number of the next live message to deliver.
    next: u64,
}

/// Reads one partition from its live channel, catching up from the stream.
pub(super) struct LiveReader {
    log: Arc<dyn PartitionedLog>,
    feed: Arc<Feed>,
    partition: u32,
    channel: String,
    id: u64,
    live: Option<mpsc::UnboundedReceiver<Live>>,
    /// The epoch the consumer reads (from its head); `None` until told.
    epoch: Option<u64>,
    synced: Option<Synced>,
    /// It has delivered live messages: from now on, anything trimmed before a catch-up read it is a gap.
    live_once: bool,
}

impl LiveReader {
    pub fn new(log: Arc<dyn PartitionedLog>, feed: Arc<Feed>, partition: u32, channel: String) -> Self {
        let id = READERS.fetch_add(1, Ordering::Relaxed);
        Self { log, feed, partition, channel, id, live: None, epoch: None, synced: None, live_once: false }
    }

    /// Joins the channel once; every message published after this returns reaches the reader.
    async fn join(&mut self) -> Result<(), LogError> {
        if self.live.is_some() {
            return Ok(());
        }
        let (route, live) = mpsc::unbounded_channel();
        if !self.feed.join(&self.channel, self.id, route).await {
            return Err(self.unavailable("live channel subscription failed"));
        }
        self.live = Some(live);
        Ok(())
    }

    /// Reads entries after `after` from the stream; once it has reached the newest, live messages take over.
    async fn catch_up(&mut self, after: StreamId, count: usize) -> Result<Vec<Entry>, LogError> {
        let range = self.log.range(self.partition, after, count).await?;
        let epoch = *self.epoch.get_or_insert(range.epoch);
        if range.epoch != epoch {
            return Err(LogError::EpochChanged { partition: self.partition, epoch: range.epoch });
        }
        if self.live_once && range.max_deleted > after {
            return Err(LogError::Gap { partition: self.partition, after, trimmed_up_to: range.max_deleted });
        }
        if range.entries.last().is_none_or(|e| e.id >= range.last) {
            self.synced = Some(Synced { epoch, next: range.seq + 1 });
        }
        Ok(range.entries)
    }

    /// Takes in a live message: `Ok(Some(entry))` to deliver, `Ok(None)` to skip (an entry the catch-up
    /// already returned, or a gap that unsynced the reader).
    fn accept(&mut self, message: &Bytes, after: StreamId) -> Result<Option<Entry>, LogError> {
        let Some(synced) = self.synced.as_mut() else { return Ok(None) };
        let Some((epoch, seq, id, data)) = parse(message) else {
            return Err(LogError::Protocol {
                partition: self.partition,
                detail: "malformed live message".into(),
            });
        };
        if epoch != synced.epoch {
            // Catching up tells whether the old stream is gone (a new epoch) or this message is stale.
            self.synced = None;
            return Ok(None);
        }
        if seq < synced.next || id <= after {
            return Ok(None);
        }
        if seq > synced.next {
            self.synced = None;
            return Ok(None);
        }
        synced.next += 1;
        self.live_once = true;
        Ok(Some(Entry { id, data: message.slice_ref(data) }))
    }

    fn unavailable(&self, what: &'static str) -> LogError {
        let source = redis::RedisError::from(std::io::Error::new(std::io::ErrorKind::NotConnected, what));
        LogError::Unavailable { partition: self.partition, source }
    }
}

#[async_trait]
impl PartitionReader for LiveReader {
    fn expect_epoch(&mut self, epoch: u64) {
        self.epoch = Some(epoch);
    }

    async fn read_after(
        &mut self,
        after: StreamId,
        count: usize,
        block: Duration,
    ) -> Result<Vec<Entry>, LogError> {
        self.join().await?;
        let deadline = tokio::time::Instant::now() + block;
        let mut cursor = after;
        let mut entries = Vec::new();
        loop {
            if self.synced.is_none() {
                entries = self.catch_up(after, count).await?;
                if !entries.is_empty() || self.synced.is_none() {
                    return Ok(entries);
                }
            }
            let Some(next) = self.next_live(deadline, entries.is_empty()).await? else { return Ok(entries) };
            match next {
                Live::Lost => return Err(self.unavailable("live pub/sub connection lost")),
                Live::Message(message) => {
                    if let Some(entry) = self.accept(&message, cursor)? {
                        cursor = entry.id;
                        entries.push(entry);
                    }
                }
            }
            if !entries.is_empty() && (self.synced.is_none() || entries.len() >= count) {
                return Ok(entries);
            }
        }
    }
}

impl LiveReader {
    /// The next live item: waiting until `deadline` when `wait`, else only what is already there. `None`
    /// when there is none.
    async fn next_live(
        &mut self,
        deadline: tokio::time::Instant,
        wait: bool,
    ) -> Result<Option<Live>, LogError> {
        let Some(live) = self.live.as_mut() else { return Err(self.unavailable("not joined")) };
        let next = if wait {
            match tokio::time::timeout_at(deadline, live.recv()).await {
                Ok(next) => next,
                Err(_) => return Ok(None),
            }
        } else {
            match live.try_recv() {
                Ok(next) => Some(next),
                Err(mpsc::error::TryRecvError::Empty) => return Ok(None),
                Err(mpsc::error::TryRecvError::Disconnected) => None,
            }
        };
        next.map(Some).ok_or_else(|| self.unavailable("live feed stopped"))
    }
}

impl Drop for LiveReader {
    fn drop(&mut self) {
        if self.live.is_some() {
            self.feed.leave(&self.channel, self.id);
        }
    }
}

/// `"<epoch hex> <seq> <id> <data>"` → its parts (`data` borrowed from `message`).
fn parse(message: &[u8]) -> Option<(u64, u64, StreamId, &[u8])> {
    let mut parts = message.splitn(4, |&b| b == b' ');
    let mut text = || parts.next().and_then(|p| std::str::from_utf8(p).ok());
    let epoch = u64::from_str_radix(text()?, 16).ok()?;
    let seq = text()?.parse().ok()?;
    let id = text()?.parse().ok()?;
    let data = parts.next()?;
    Some((epoch, seq, id, data))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A live message splits into epoch, sequence, id and the entry bytes, which may contain spaces.
    #[test]
    fn live_message_parts() {
        let (epoch, seq, id, data) = parse(b"ff 7 1700000000000-3 a b").unwrap();
        assert_eq!((epoch, seq, id, data), (255, 7, StreamId::new(1_700_000_000_000, 3), &b"a b"[..]));
        assert!(parse(b"ff 7 1-0").is_none());
        assert!(parse(b"zz 7 1-0 x").is_none());
    }
}
