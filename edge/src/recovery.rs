//! Recovery for `subscribe` with `since`: the notifications of one conversation after the client's last
//! position, read from the partition stream one bounded page at a time (the session asks for the next page
//! as its socket drains). And, for `last`, the newest few notifications of a conversation up to the point
//! where live delivery took over.
//!
//! It never guesses: if the stream's epoch differs from the position's, or entries after the position were
//! trimmed, the answer is "not recoverable" and the client hears `recovered:false`. The work is bounded too:
//! a position more than `--max-recovery-scan` partition entries behind the stream's end is refused the same
//! way, before anything is sent.

use bytes::Bytes;
use crier_proto::{Position, StreamId};
use crier_store::log::{Gap, Head, Limit, LogError, PartitionedLog, Scan, decode_entry, page};

use crate::{frame, protocol};

/// Entries fetched per `newest` call.
const PAGE: usize = crier_store::log::scan::PAGE;
/// Entries a `last` subscribe looks at, newest first, at most: the work is bounded however rare the
/// conversation is in its partition (what is older is not shown).
const NEWEST_SCAN: usize = 4 * PAGE;
/// Largest page of a recovery, in bytes of its frames.
const MAX_PAGE_BYTES: usize = 64 * 1024;
/// Entries a recovery's first page fetches per `range` call, before it knows how many a page takes.
pub const FIRST_FETCH: usize = PAGE / 4;

/// Why the missed notifications cannot be replayed.
#[derive(Debug, thiserror::Error)]
pub enum RecoveryError {
    /// The stream was lost and recreated since the position was handed out.
    #[error("epoch changed")]
    EpochChanged,
    /// Entries after the position were trimmed by retention.
    #[error("position trimmed")]
    Trimmed,
    /// More partition entries than `--max-recovery-scan` lie between the position and the stream's end.
    #[error("position beyond the recovery scan bound")]
    BeyondScanBound,
    /// The log could not be read.
    #[error(transparent)]
    Log(#[from] LogError),
}

impl From<Gap> for RecoveryError {
    fn from(gap: Gap) -> Self {
        match gap {
            Gap::EpochChanged => Self::EpochChanged,
            Gap::Trimmed => Self::Trimmed,
        }
    }
}

/// What one recovery may read and hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// Bytes of one page's frames: 64 KiB or a quarter of the queue bound, whichever is smaller.
    pub page_bytes: usize,
    /// Partition entries between the position and the stream's end (`--max-recovery-scan`).
    pub max_scan: usize,
}

impl Budget {
    /// The budget of sessions whose queues hold `max_queue_bytes`, with `--max-recovery-scan` `max_scan`.
    #[must_use]
    pub fn new(max_queue_bytes: usize, max_scan: usize) -> Self {
        Self { page_bytes: (max_queue_bytes / 4).clamp(1, MAX_PAGE_BYTES), max_scan }
    }
}

/// One page of a recovery.
#[derive(Debug, Default)]
pub struct Frames {
    /// The conversation's frames, oldest first: bare payloads, or notification frames with positions.
    pub frames: Vec<Bytes>,
    /// The last partition entry read: the next page starts after it.
    pub last_read: StreamId,
    /// Partition entries read past the page's start.
    pub read: usize,
    /// Nothing more up to the requested end (or the stream's end as it was when read).
    pub end: bool,
}

/// The next page of `conversation` after `at` (up to `until`, or the stream's end), within `limit`.
/// `fetched` counts the partition entries read from the log (charged to the connection's rate limit).
pub async fn next_page(
    log: &dyn PartitionedLog,
    conversation: &str,
    at: Position,
    until: Option<StreamId>,
    limit: Limit,
    positions: bool,
    fetched: &mut usize,
) -> Result<Frames, RecoveryError> {
    let wanted = Scan { conversation, partition: at.partition, after: at.id, epoch: Some(at.epoch), until };
    // The page's bytes are what its frames take in the queue: a small payload's envelope outweighs it.
    let limit = Limit { overhead: frame_overhead(conversation, positions), ..limit };
    let page = page(log, wanted, limit).await?;
    *fetched += page.fetched;
    if let Some(gap) = page.scanned.gap {
        return Err(gap.into());
    }
    let frames = page
        .entries
        .iter()
        .map(|(position, payload)| notification_frame(conversation, position, payload, positions))
        .collect();
    Ok(Frames { frames, last_read: page.scanned.last_read, read: page.read, end: page.end })
}

/// Whether `since` can be recovered within `budget`, and its first page (empty unless `keep`): reads on
/// without keeping anything, up to the bound, when the first page does not reach the stream's end.
pub async fn probe(
    log: &dyn PartitionedLog,
    conversation: &str,
    since: Position,
    budget: Budget,
    keep: bool,
    positions: bool,
    fetched: &mut usize,
) -> Result<Frames, RecoveryError> {
    let bytes = if keep { budget.page_bytes } else { 0 };
    let limit = Limit { bytes, reads: budget.max_scan, fetch: FIRST_FETCH, ..Limit::NONE };
    let first = next_page(log, conversation, since, None, limit, positions, fetched).await?;
    if first.end {
        return Ok(first);
    }
    let rest = Limit { bytes: 0, reads: budget.max_scan - first.read, ..Limit::NONE };
    let at = Position { id: first.last_read, ..since };
    let counted = next_page(log, conversation, at, None, rest, positions, fetched).await?;
    if counted.end { Ok(first) } else { Err(RecoveryError::BeyondScanBound) }
}

/// Frames of `conversation`'s newest `count` entries up to and including `live.last`, oldest first (the
/// live subscription delivers what comes after). Looks at most [`NEWEST_SCAN`] entries of the partition;
/// nothing when the stream's epoch is no longer `live`'s.
pub async fn newest(
    log: &dyn PartitionedLog,
    conversation: &str,
    partition: u32,
    live: Head,
    count: usize,
    positions: bool,
) -> Result<Vec<Bytes>, LogError> {
    let mut frames = Vec::new();
    let (mut until, mut scanned) = (live.last, 0);
    while frames.len() < count && scanned < NEWEST_SCAN && until != StreamId::ZERO {
        let page = log.newest(partition, until, PAGE.min(NEWEST_SCAN - scanned)).await?;
        if page.epoch != live.epoch {
            return Ok(Vec::new());
        }
        scanned += page.entries.len();
        let Some(oldest) = page.entries.last() else { break };
        until = oldest.id.prev();
        for entry in &page.entries {
            let Ok(decoded) = decode_entry(partition, entry) else { continue };
            if decoded.conversation_id == conversation && frames.len() < count {
                let position = Position { partition, epoch: live.epoch, id: entry.id };
                frames.push(notification_frame(conversation, &position, &decoded.payload, positions));
            }
        }
    }
    frames.reverse();
    Ok(frames)
}

/// Bytes a notification's frame adds to its payload, at most: the WebSocket header, and with positions the
/// `notification` envelope around it.
fn frame_overhead(conversation: &str, positions: bool) -> usize {
    // A payload of 64 KiB or more takes the longest header, 8 bytes more than an empty one's.
    const LONGEST_HEADER: usize = 10;
    if !positions {
        return LONGEST_HEADER;
    }
    let widest = Position { partition: u32::MAX, epoch: u64::MAX, id: StreamId::new(u64::MAX, u64::MAX) };
    protocol::notification(conversation, &widest, b"").len() + LONGEST_HEADER - 2
}

/// The frame a session gets for one notification: the payload verbatim, or a `notification` frame with its
/// position when the session asked for positions.
fn notification_frame(conversation: &str, position: &Position, payload: &Bytes, positions: bool) -> Bytes {
    if positions { protocol::notification(conversation, position, payload) } else { frame::text(payload) }
}

#[cfg(test)]
mod tests {
    use crier_proto::v1::{STREAM_ENTRY_VERSION, StreamEntry};
    use crier_store::log::MemoryLog;
    use prost::Message;

    use super::*;

    async fn append(log: &MemoryLog, conversation: &str, payload: Vec<u8>) -> Position {
        let entry = StreamEntry {
            version: STREAM_ENTRY_VERSION,
            conversation_id: conversation.into(),
            payload: payload.into(),
            published_at_ms: 0,
            trace_context: std::collections::HashMap::default(),
        };
        let appended = log.append(0, entry.encode_to_vec().into(), None).await.unwrap();
        Position { partition: 0, epoch: appended.epoch, id: appended.id }
    }

    /// 200 × 1 KiB missed (between entries of another conversation) with a 16 KiB queue come in pages of at
    /// most 4 KiB, all of them once and in order, the last reaching the end; a position farther behind than
    /// the scan bound is refused before anything is read for sending.
    #[tokio::test]
    async fn backlog_comes_in_bounded_pages_and_far_positions_are_refused() {
        let log = MemoryLog::new(1, 10_000);
        let since = append(&log, "c", b"0".to_vec()).await;
        for seq in 1..=200u32 {
            append(&log, "other", vec![b'x'; 100]).await;
            let mut payload = format!("{seq:04}").into_bytes();
            payload.resize(1024, b' ');
            append(&log, "c", payload).await;
        }
        let budget = Budget::new(16 * 1024, 1_000);
        assert_eq!(budget.page_bytes, 4 * 1024);
        let mut fetched = 0;
        let first = probe(&log, "c", since, budget, true, false, &mut fetched).await.unwrap();
        let (mut seen, mut at, mut end) = (Vec::new(), since, first.end);
        let mut pages = vec![first.frames];
        at.id = first.last_read;
        while !end {
            let limit = Limit { bytes: budget.page_bytes, overhead: 0, reads: 1_000, fetch: 8 };
            let page = next_page(&log, "c", at, None, limit, false, &mut fetched).await.unwrap();
            (at.id, end) = (page.last_read, page.end);
            pages.push(page.frames);
        }
        for page in &pages {
            let bytes: usize = page.iter().map(Bytes::len).sum();
            // Each frame adds its 4-byte WebSocket header to the payload bytes the page counts.
            assert!(bytes <= budget.page_bytes + 4 * page.len(), "a page of {bytes} bytes");
            seen.extend(page.iter().map(|frame| String::from_utf8_lossy(&frame[4..8]).into_owned()));
        }
        let want: Vec<String> = (1..=200).map(|seq| format!("{seq:04}")).collect();
        assert_eq!(seen, want);
        assert!(pages.len() >= 50, "{} pages", pages.len());
        assert!(fetched >= 400, "fetched {fetched}");

        let near = Budget::new(16 * 1024, 400);
        assert!(probe(&log, "c", since, near, true, false, &mut fetched).await.is_ok());
        let far = Budget::new(16 * 1024, 399);
        let refused = probe(&log, "c", since, far, true, false, &mut fetched).await;
        assert!(matches!(refused, Err(RecoveryError::BeyondScanBound)), "{refused:?}");
    }
}
