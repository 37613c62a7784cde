//! One conversation's entries from its partition stream, page by page: the one scan behind both
//! `AdminService.History` and a browser's recovery with `since`, so both apply the same completeness rule.
//!
//! The rule: entries after a position are complete only while the stream still has the position's epoch and
//! retention has trimmed nothing after it. A scan never guesses; it reports the [`Gap`] it found.

use bytes::Bytes;
use crier_proto::v1::{STREAM_ENTRY_VERSION, StreamEntry};
use crier_proto::{Position, StreamId};
use prost::Message;

use super::{Entry, LogError, PartitionedLog};

/// Entries fetched per `range` call.
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

/// Calls `visit` with the position and payload of each entry of the conversation, oldest first, until
/// `visit` answers `false`, `until` is passed, the stream ends, or a gap is found.
pub async fn scan(
    log: &dyn PartitionedLog,
    scan: Scan<'_>,
    mut visit: impl FnMut(Position, Bytes) -> bool,
) -> Result<Scanned, LogError> {
    let until = scan.until.unwrap_or(StreamId::new(u64::MAX, u64::MAX));
    let mut after = scan.after;
    while after < until {
        let range = log.range(scan.partition, after, PAGE).await?;
        if let Some(gap) = gap(scan.epoch, range.epoch, range.max_deleted, after) {
            return Ok(Scanned { gap: Some(gap), last_read: after });
        }
        let full_page = range.entries.len() == PAGE;
        for entry in range.entries.into_iter().take_while(|e| e.id <= until) {
            after = entry.id;
            let Ok(decoded) = decode_entry(scan.partition, &entry) else { continue };
            if decoded.conversation_id != scan.conversation {
                continue;
            }
            let position = Position { partition: scan.partition, epoch: range.epoch, id: entry.id };
            if !visit(position, decoded.payload) {
                return Ok(Scanned { gap: None, last_read: after });
            }
        }
        if !full_page {
            break;
        }
    }
    Ok(Scanned { gap: None, last_read: after })
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
    use super::*;

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
