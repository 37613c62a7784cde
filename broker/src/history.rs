//! A conversation's retained notifications after a position, read from its partition stream: the backend's
//! counterpart of a browser's recovery with `since`, with the same completeness rule (one scan,
//! [`crier_store::log::scan`], serves both).

use bytes::Bytes;
use crier_proto::{Position, StreamId, partition};
use crier_store::log::{PartitionedLog, Scan, scan};

use crate::error::BrokerError;

/// Most entries one call returns.
pub const MAX_LIMIT: usize = 1000;

/// Up to `limit` notifications of `conversation` after `since` (or from the oldest retained), and whether
/// nothing after `since` can be missing. When something is missing, what is still retained after `since` is
/// returned all the same.
pub async fn history(
    log: &dyn PartitionedLog,
    conversation: &str,
    since: Option<Position>,
    limit: usize,
) -> Result<(Vec<(Position, Bytes)>, bool), BrokerError> {
    let partition = partition(conversation, log.partitions());
    if since.is_some_and(|p| p.partition != partition) {
        return Err(BrokerError::InvalidRequest("since is a position of another partition".into()));
    }
    let after = since.map_or(StreamId::ZERO, |p| p.id);
    let mut entries = Vec::new();
    let mut wanted = Scan { conversation, partition, after, epoch: since.map(|p| p.epoch), until: None };
    let mut visit = |position, payload| {
        entries.push((position, payload));
        entries.len() < limit
    };
    let scanned = scan(log, wanted, &mut visit).await?;
    if scanned.gap.is_some() {
        // Go on from where the gap was found, reading what survives without the check.
        wanted.after = scanned.last_read;
        wanted.epoch = None;
        scan(log, wanted, &mut visit).await?;
    }
    Ok((entries, scanned.gap.is_none()))
}
