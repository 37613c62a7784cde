//! A conversation's retained notifications after a position, read from its partition stream: the backend's
//! counterpart of a browser's recovery with `since`, with the same completeness rule.

use bytes::Bytes;
use crier_proto::v1::{STREAM_ENTRY_VERSION, StreamEntry};
use crier_proto::{Position, StreamId, partition};
use prost::Message;

use crate::error::BrokerError;
use crier_store::log::PartitionedLog;

/// Most entries one call returns.
pub const MAX_LIMIT: usize = 1000;
/// Entries scanned per `range` call.
const PAGE: usize = 512;

/// Up to `limit` notifications of `conversation` after `since` (or from the oldest retained), and whether
/// nothing after `since` can be missing.
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
    let mut after = since.map_or(StreamId::ZERO, |p| p.id);
    let mut entries = Vec::new();
    let mut complete = true;
    loop {
        let range = log.range(partition, after, PAGE).await?;
        if let Some(since) = since
            && (range.epoch != since.epoch || range.max_deleted > after)
        {
            complete = false;
        }
        let full_page = range.entries.len() == PAGE;
        for entry in range.entries {
            after = entry.id;
            let Ok(decoded) = StreamEntry::decode(entry.data) else { continue };
            if decoded.version == STREAM_ENTRY_VERSION && decoded.conversation_id == conversation {
                entries.push((Position { partition, epoch: range.epoch, id: entry.id }, decoded.payload));
                if entries.len() == limit {
                    return Ok((entries, complete));
                }
            }
        }
        if !full_page {
            return Ok((entries, complete));
        }
    }
}
