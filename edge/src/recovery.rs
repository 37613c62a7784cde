//! Recovery for `subscribe` with `since`: the notifications of one conversation between the client's last
//! position and the point where live delivery took over, read from the partition stream.
//!
//! It never guesses: if the stream's epoch differs from the position's, or entries after the position were
//! trimmed, the answer is "not recoverable" and the client hears `recovered:false`.

use bytes::Bytes;
use crier_proto::{Position, StreamId};
use crier_store::log::{LogError, PartitionedLog};

use crate::consumer::decode_entry;
use crate::{frame, protocol};

/// Entries fetched per `range` call.
const PAGE: usize = 512;

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
    let mut after = since.id;
    while after < until {
        let range = log.range(since.partition, after, PAGE).await?;
        if range.epoch != since.epoch {
            return Err(RecoveryError::EpochChanged);
        }
        if range.max_deleted > after {
            return Err(RecoveryError::Trimmed);
        }
        let full_page = range.entries.len() == PAGE;
        for entry in range.entries.into_iter().take_while(|e| e.id <= until) {
            after = entry.id;
            let Some(decoded) = decode_entry(since.partition, &entry) else { continue };
            if decoded.conversation_id != conversation {
                continue;
            }
            frames.push(if positions {
                let position = Position { id: entry.id, ..since };
                protocol::notification(conversation, &position, &decoded.payload)
            } else {
                frame::text(&decoded.payload)
            });
        }
        if !full_page {
            break;
        }
    }
    Ok(frames)
}
