//! Recovery for `subscribe` with `since`: the notifications of one conversation between the client's last
//! position and the point where live delivery took over, read from the partition stream.
//!
//! It never guesses: if the stream's epoch differs from the position's, or entries after the position were
//! trimmed, the answer is "not recoverable" and the client hears `recovered:false`.

use bytes::Bytes;
use crier_proto::{Position, StreamId};
use crier_store::log::{Gap, LogError, PartitionedLog, Scan, scan};

use crate::{frame, protocol};

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
    let mut frames = Vec::new();
    let wanted = Scan {
        conversation,
        partition: since.partition,
        after: since.id,
        epoch: Some(since.epoch),
        until: Some(until),
    };
    let scanned = scan(log, wanted, |position, payload| {
        frames.push(if positions {
            protocol::notification(conversation, &position, &payload)
        } else {
            frame::text(&payload)
        });
        true
    })
    .await?;
    match scanned.gap {
        None => Ok(frames),
        Some(Gap::EpochChanged) => Err(RecoveryError::EpochChanged),
        Some(Gap::Trimmed) => Err(RecoveryError::Trimmed),
    }
}
