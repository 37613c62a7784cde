//! Recovery for `subscribe` with `since`: the notifications of one conversation between the client's last
//! position and the point where live delivery took over, read from the partition stream. And, for `last`,
//! the newest few notifications of a conversation up to that point.
//!
//! It never guesses: if the stream's epoch differs from the position's, or entries after the position were
//! trimmed, the answer is "not recoverable" and the client hears `recovered:false`.

use bytes::Bytes;
use crier_proto::{Position, StreamId};
use crier_store::log::{Gap, Head, LogError, PartitionedLog, Scan, decode_entry, scan};

use crate::{frame, protocol};

/// Entries fetched per `newest` call.
const PAGE: usize = crier_store::log::scan::PAGE;
/// Entries a `last` subscribe looks at, newest first, at most: the work is bounded however rare the
/// conversation is in its partition (what is older is not shown).
const NEWEST_SCAN: usize = 4 * PAGE;

/// Why the missed notifications cannot be replayed.
#[derive(Debug, thiserror::Error)]
pub enum RecoveryError {
    /// The stream was lost and recreated since the position was handed out.
    #[error("epoch changed")]
    EpochChanged,
    /// Entries after the position were trimmed by retention.
    #[error("position trimmed")]
    Trimmed,
    /// The log could not be read.
    #[error(transparent)]
    Log(#[from] LogError),
}

/// Frames of `conversation`'s entries after `since` up to and including `until`, in order; bare payloads,
/// or notification frames with positions when `positions` is set.
pub async fn missed(
    log: &dyn PartitionedLog,
    conversation: &str,
    since: Position,
    until: StreamId,
    positions: bool,
) -> Result<Vec<Bytes>, RecoveryError> {
    // Bound: the conversation's entries still in the partition (retention: --retention-max-len entries of
    // ≤ --max-payload-bytes each), NOT the outbox's max_bytes: a large backlog is held whole before the
    // outbox refuses it (see the soak report).
    let mut frames = Vec::new();
    let wanted = Scan {
        conversation,
        partition: since.partition,
        after: since.id,
        epoch: Some(since.epoch),
        until: Some(until),
    };
    let scanned = scan(log, wanted, |position, payload| {
        frames.push(notification_frame(conversation, &position, &payload, positions));
        true
    })
    .await?;
    match scanned.gap {
        None => Ok(frames),
        Some(Gap::EpochChanged) => Err(RecoveryError::EpochChanged),
        Some(Gap::Trimmed) => Err(RecoveryError::Trimmed),
    }
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

/// The frame a session gets for one notification: the payload verbatim, or a `notification` frame with its
/// position when the session asked for positions.
fn notification_frame(conversation: &str, position: &Position, payload: &Bytes, positions: bool) -> Bytes {
    if positions { protocol::notification(conversation, position, payload) } else { frame::text(payload) }
}
