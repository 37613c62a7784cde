//! One conversation's entries from its partition stream, page by page: the one scan behind both
//! `AdminService.History` and a browser's recovery with `since`, so both apply the same completeness rule.
//!
//! The rule: entries after a position are complete only while the stream still has the position's epoch and
//! retention has trimmed nothing after it. A scan never guesses; it reports the [`Gap`] it found.

use bytes::Bytes;
use crier_proto::v1::{STREAM_ENTRY_VERSION, StreamEntry};
use crier_proto::{Position, StreamId};
use prost::Message;

use super::{Entry, LogError, PartitionedLog, Range};

/// Entries fetched per `range` call at most.
pub const PAGE: usize = 512;

/// Why entries after a position may be missing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gap {
    /// The stream was lost and recreated since the position was handed out.
    EpochChanged,
    /// Entries after the position were trimmed by retention.
    Trimmed,
}

/// What to scan: `conversation`'s entries in `partition` after `after`, up to and including `until`.
#[derive(Debug, Clone, Copy)]
pub struct Scan<'a> {
    /// The conversation whose entries are wanted; others are skipped.
    pub conversation: &'a str,
    /// Its partition.
    pub partition: u32,
    /// Entries after this id.
    pub after: StreamId,
    /// The epoch `after` belongs to, when it came from a position: completeness is checked against it.
    pub epoch: Option<u64>,
    /// Stop after this id (`None`: at the stream's end).
    pub until: Option<StreamId>,
}

/// How a scan ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scanned {
    /// The first gap found; the scan stopped there.
    pub gap: Option<Gap>,
    /// The last id read (the scan's `after` if none).
    pub last_read: StreamId,
}

/// How much one [`page`] may read and hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    /// Payload bytes the page may hold: it stops before an entry that would take it past this, but holds at
    /// least one entry. `0`: the page keeps nothing and only reads (a count of the distance to the end).
    pub bytes: usize,
    /// Bytes each kept entry counts beyond its payload against `bytes` (what the caller wraps it in, such
    /// as a WebSocket frame with its position), so that `bytes` bounds what the page becomes.
    pub overhead: usize,
    /// Partition entries (of every conversation) the page may read past its start.
    pub reads: usize,
    /// Entries fetched by the first `range` call, doubling (up to [`PAGE`]) while whole batches are taken:
    /// what a page fetches but does not take is fetched again by the next page.
    pub fetch: usize,
}

impl Limit {
    /// No bound but the scan's `until`.
    pub const NONE: Self = Self { bytes: usize::MAX, overhead: 0, reads: usize::MAX, fetch: PAGE };
}

/// One page of a conversation's entries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    /// The conversation's entries, oldest first, with their positions.
    pub entries: Vec<(Position, Bytes)>,
    /// The gap found, if any, and the last id read: the next page starts after it.
    pub scanned: Scanned,
    /// Partition entries read past the start (the distance covered; what [`Limit::reads`] bounds).
    pub read: usize,
    /// Partition entries fetched from the log, some perhaps read again by the next page (the work done).
    pub fetched: usize,
    /// Nothing is left up to `until`, or up to the stream's end as it was when read.
    pub end: bool,
}

/// One page of the conversation's entries after `scan.after`: stops at `until` or the stream's end (`end`),
/// at a gap, after `limit.reads` partition entries, or before an entry that does not fit `limit.bytes`. The
/// one reader of the scan's completeness rule: history and recovery page through it.
pub async fn page(log: &dyn PartitionedLog, scan: Scan<'_>, limit: Limit) -> Result<Page, LogError> {
    let until = scan.until.unwrap_or(StreamId::new(u64::MAX, u64::MAX));
    let last_read = scan.after;
    let mut page = Page {
        entries: Vec::new(),
        scanned: Scanned { gap: None, last_read },
        read: 0,
        fetched: 0,
        end: false,
    };
    let (mut bytes, mut fetch) = (0, limit.fetch.clamp(1, PAGE));
    loop {
        let after = page.scanned.last_read;
        let count = fetch.min(limit.reads - page.read);
        if after >= until || count == 0 {
            page.end = after >= until;
            return Ok(page);
        }
        let range = log.range(scan.partition, after, count).await?;
        page.fetched += range.entries.len();
        if let Some(gap) = gap(scan.epoch, range.epoch, range.max_deleted, after) {
            page.scanned.gap = Some(gap);
            return Ok(page);
        }
        // The stream's newest id, read with the batch, tells the end even when the batch was full.
        let at_end = range.entries.len() < count || range.entries.last().is_some_and(|e| e.id >= range.last);
        if !page.take(&scan, range, until, limit, &mut bytes) {
            return Ok(page);
        }
        if at_end {
            page.end = true;
            return Ok(page);
        }
        // All of it was taken: the conversation is sparse here, fetch more at a time.
        fetch = (fetch * 2).min(PAGE);
    }
}

impl Page {
    /// Takes `range`'s entries up to `until`, keeping the conversation's while they fit `limit` (with
    /// `bytes` held so far); `false` when the page is complete (`end` set if `until` was passed).
    fn take(
        &mut self,
        scan: &Scan<'_>,
        range: Range,
        until: StreamId,
        limit: Limit,
        bytes: &mut usize,
    ) -> bool {
        let max_bytes = limit.bytes;
        for entry in range.entries {
            if entry.id > until {
                self.end = true;
                return false;
            }
            if let Ok(decoded) = decode_entry(scan.partition, &entry)
                && decoded.conversation_id == scan.conversation
                && max_bytes > 0
            {
                let size = decoded.payload.len().saturating_add(limit.overhead);
                if !self.entries.is_empty() && *bytes + size > max_bytes {
                    return false;
                }
                *bytes += size;
                let position = Position { partition: scan.partition, epoch: range.epoch, id: entry.id };
                self.entries.push((position, decoded.payload));
            }
            self.scanned.last_read = entry.id;
            self.read += 1;
        }
        true
    }
}

/// Calls `visit` with the position and payload of each entry of the conversation, oldest first, until
/// `visit` answers `false`, `until` is passed, the stream ends, or a gap is found.
pub async fn scan(
    log: &dyn PartitionedLog,
    mut scan: Scan<'_>,
    mut visit: impl FnMut(Position, Bytes) -> bool,
) -> Result<Scanned, LogError> {
    loop {
        let page = page(log, scan, Limit { reads: PAGE, ..Limit::NONE }).await?;
        for (position, payload) in page.entries {
            if !visit(position, payload) {
                return Ok(Scanned { gap: None, last_read: position.id });
            }
        }
        if page.end || page.scanned.gap.is_some() {
            return Ok(page.scanned);
        }
        scan.after = page.scanned.last_read;
    }
}

/// The completeness rule for entries after `after` of a position of `expected` epoch.
fn gap(expected: Option<u64>, epoch: u64, max_deleted: StreamId, after: StreamId) -> Option<Gap> {
    let expected = expected?;
    if epoch != expected {
        Some(Gap::EpochChanged)
    } else if max_deleted > after {
        Some(Gap::Trimmed)
    } else {
        None
    }
}

/// Why an entry is not sent to anyone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unsendable {
    /// Garbage, or a format version this reader does not know.
    Unreadable,
    /// The payload is not UTF-8: sent as a text frame it would make every conforming client fail the
    /// connection (1007), and again on each replay. Brokers refuse such payloads; this guards against
    /// older brokers and other writers.
    NotUtf8,
}

/// The `StreamEntry` in `entry`, or why it is skipped (logged here).
pub fn decode_entry(partition: u32, entry: &Entry) -> Result<StreamEntry, Unsendable> {
    match StreamEntry::decode(entry.data.clone()) {
        Ok(e) if e.version != STREAM_ENTRY_VERSION => {
            tracing::warn!(partition, id = %entry.id, version = e.version, "skipping entry of unknown version");
            Err(Unsendable::Unreadable)
        }
        // Once per entry and reader, not per recipient; SIMD-fast.
        Ok(e) if std::str::from_utf8(&e.payload).is_err() => {
            tracing::warn!(partition, id = %entry.id, "skipping entry whose payload is not UTF-8");
            Err(Unsendable::NotUtf8)
        }
        Ok(e) => Ok(e),
        Err(err) => {
            tracing::warn!(partition, id = %entry.id, error = %err, "skipping undecodable entry");
            Err(Unsendable::Unreadable)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::MemoryLog;
    use super::*;

    async fn append(log: &MemoryLog, conversation: &str, payload: &'static [u8]) -> StreamId {
        let entry = StreamEntry {
            version: STREAM_ENTRY_VERSION,
            conversation_id: conversation.into(),
            payload: Bytes::from_static(payload),
            ..StreamEntry::default()
        };
        log.append(0, entry.encode_to_vec().into(), None).await.unwrap().id
    }

    /// A page keeps the conversation's entries while they fit (at least one), stops after `reads`
    /// partition entries, and knows the stream's end even when its last batch was full.
    #[tokio::test]
    async fn a_page_stops_at_its_bytes_its_reads_or_the_end() {
        let log = MemoryLog::new(1, 100);
        let start = append(&log, "c", b"0000").await;
        let mut ids = Vec::new();
        for _ in 0..4 {
            append(&log, "other", b"..").await;
            ids.push(append(&log, "c", b"1234").await);
        }
        let wanted = Scan { conversation: "c", partition: 0, after: start, epoch: None, until: None };
        let got = page(&log, wanted, Limit { bytes: 10, overhead: 0, reads: 100, fetch: 3 }).await.unwrap();
        let kept: Vec<StreamId> = got.entries.iter().map(|(p, _)| p.id).collect();
        assert_eq!((kept, got.end), (ids[..2].to_vec(), false));
        let last_read = got.scanned.last_read;
        assert!(ids[1] < last_read && last_read < ids[2], "the next page starts with what did not fit");
        let got = page(&log, wanted, Limit { bytes: 1, overhead: 0, reads: 100, fetch: PAGE }).await.unwrap();
        assert_eq!(got.entries.len(), 1, "a page holds at least one entry");
        let got = page(&log, wanted, Limit { bytes: 0, overhead: 0, reads: 8, fetch: PAGE }).await.unwrap();
        assert!(got.entries.is_empty() && got.end && got.read == 8, "{got:?}");
        let got = page(&log, wanted, Limit { bytes: 0, overhead: 0, reads: 7, fetch: PAGE }).await.unwrap();
        assert!(!got.end && got.read == 7, "{got:?}");
    }

    /// Completeness is checked only for positions, and the epoch before trimming.
    #[test]
    fn gap_rule() {
        let id = |ms| StreamId { ms, seq: 0 };
        assert_eq!(gap(None, 2, id(9), id(1)), None);
        assert_eq!(gap(Some(1), 2, id(0), id(1)), Some(Gap::EpochChanged));
        assert_eq!(gap(Some(2), 2, id(9), id(1)), Some(Gap::Trimmed));
        assert_eq!(gap(Some(2), 2, id(1), id(1)), None);
    }
}
