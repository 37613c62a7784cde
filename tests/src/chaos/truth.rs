//! [`Truth`]: what `Publish` acknowledged, per conversation: each payload's position (partition, epoch,
//! stream id), and the payloads that were sent but never acknowledged (they may exist in a stream all the
//! same: a retry whose first attempt Redis executed before the connection broke). Pure: the publishers record
//! into it, the checker reads it.

use std::collections::{BTreeMap, HashMap};

use crier_proto::{Position, StreamId};

use super::history::PayloadId;

/// The acknowledged entries of one conversation in one epoch, by stream id.
pub type EpochEntries = BTreeMap<StreamId, PayloadId>;

/// The publishers' record.
#[derive(Debug, Clone, Default)]
pub struct Truth {
    /// Every payload sent: its conversation.
    sent: HashMap<PayloadId, String>,
    /// Acknowledged payloads: their position (the first acknowledgement; a retry with the same key must
    /// return the same one).
    acked: HashMap<PayloadId, Position>,
    /// Conversation → epoch → acknowledged entries.
    entries: HashMap<String, HashMap<u64, EpochEntries>>,
    /// Conversation → epoch of its last acknowledgement (in the order acknowledgements were recorded).
    last_epoch: HashMap<String, u64>,
    /// Acknowledgements that contradict an earlier one: two positions for one payload in one epoch (the
    /// idempotency key did not hold), or one position for two payloads.
    conflicts: Vec<String>,
}

impl Truth {
    /// Records that `payload` is being published to `conversation` (before the first attempt).
    pub fn sent(&mut self, payload: PayloadId, conversation: &str) {
        self.sent.insert(payload, conversation.to_owned());
    }

    /// Records that `Publish` answered OK with `position` for `payload`.
    pub fn acked(&mut self, payload: PayloadId, position: Position) {
        let Some(conversation) = self.sent.get(&payload).cloned() else {
            self.conflicts.push(format!("{payload} acknowledged at {position} but never sent"));
            return;
        };
        if let Some(&first) = self.acked.get(&payload) {
            if first != position && first.epoch == position.epoch {
                self.conflicts.push(format!("{payload} acknowledged at {first} and again at {position}"));
            }
            return;
        }
        let epoch = self.entries.entry(conversation.clone()).or_default().entry(position.epoch).or_default();
        if let Some(other) = epoch.insert(position.id, payload) {
            self.conflicts.push(format!("{position} acknowledged for {other} and for {payload}"));
        }
        self.acked.insert(payload, position);
        self.last_epoch.insert(conversation, position.epoch);
    }

    /// Payloads sent.
    #[must_use]
    pub fn sent_count(&self) -> usize {
        self.sent.len()
    }

    /// Payloads acknowledged.
    #[must_use]
    pub fn acked_count(&self) -> usize {
        self.acked.len()
    }

    /// The conversation `payload` was sent to, if it was sent.
    #[must_use]
    pub fn conversation_of(&self, payload: PayloadId) -> Option<&str> {
        self.sent.get(&payload).map(String::as_str)
    }

    /// Where `payload` was acknowledged, if it was.
    #[must_use]
    pub fn position_of(&self, payload: PayloadId) -> Option<Position> {
        self.acked.get(&payload).copied()
    }

    /// The acknowledged entries of `conversation` in `epoch` (empty if none).
    #[must_use]
    pub fn entries(&self, conversation: &str, epoch: u64) -> Option<&EpochEntries> {
        self.entries.get(conversation)?.get(&epoch)
    }

    /// The epoch of the last acknowledgement to `conversation`: where every client should end up.
    #[must_use]
    pub fn last_epoch(&self, conversation: &str) -> Option<u64> {
        self.last_epoch.get(conversation).copied()
    }

    /// The last acknowledged position of `conversation` in its last epoch.
    #[must_use]
    pub fn last_position(&self, conversation: &str) -> Option<Position> {
        let epoch = self.last_epoch(conversation)?;
        let (&id, payload) = self.entries(conversation, epoch)?.last_key_value()?;
        let partition = self.acked.get(payload)?.partition;
        Some(Position { partition, epoch, id })
    }

    /// Contradictory acknowledgements.
    #[must_use]
    pub fn conflicts(&self) -> &[String] {
        &self.conflicts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(epoch: u64, ms: u64) -> Position {
        Position { partition: 1, epoch, id: StreamId::new(ms, 0) }
    }

    /// Acknowledgements index by conversation and epoch; the last epoch follows the acknowledgements.
    #[test]
    fn acknowledgements_index_by_conversation_and_epoch() {
        let mut truth = Truth::default();
        let (a, b) = (PayloadId { publisher: 0, seq: 0 }, PayloadId { publisher: 0, seq: 1 });
        truth.sent(a, "c");
        truth.sent(b, "c");
        truth.acked(a, at(7, 10));
        truth.acked(b, at(8, 20));
        assert_eq!(truth.entries("c", 7).map(|e| e.len()), Some(1));
        assert_eq!(truth.last_position("c"), Some(at(8, 20)));
        assert_eq!((truth.sent_count(), truth.acked_count()), (2, 2));
        assert!(truth.conflicts().is_empty());
    }

    /// A payload acknowledged at two positions of one epoch is a broken idempotency key; in a new epoch
    /// (the dedupe record was lost with the stream) it is not.
    #[test]
    fn second_position_in_one_epoch_is_a_conflict() {
        let mut truth = Truth::default();
        let a = PayloadId { publisher: 1, seq: 0 };
        truth.sent(a, "c");
        truth.acked(a, at(7, 10));
        truth.acked(a, at(8, 30));
        assert!(truth.conflicts().is_empty());
        truth.acked(a, at(7, 11));
        assert_eq!(truth.conflicts().len(), 1);
    }
}
