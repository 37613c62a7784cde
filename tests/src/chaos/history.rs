//! What one chaos client saw, in the order it saw it: the record the checker judges. Pure data; the client
//! (`chaos::client`) writes it, `chaos::checker` reads it.

use crier_proto::Position;

/// Names one published notification: which publisher, its sequence number there. Every payload carries it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PayloadId {
    /// The publisher's index.
    pub publisher: u32,
    /// The publisher's own count, from 0.
    pub seq: u64,
}

impl std::fmt::Display for PayloadId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "p{}#{}", self.publisher, self.seq)
    }
}

/// One thing a client did or received, per conversation where it concerns one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// It sent `subscribe`, with `since` when it had a position.
    Subscribe {
        /// The conversation.
        conversation: String,
        /// The `since` it sent.
        since: Option<Position>,
    },
    /// `subscribed`: `recovered` is present when `since` was sent; `position` is where it stands now.
    Subscribed {
        /// The conversation.
        conversation: String,
        /// The edge's answer to `since`.
        recovered: Option<bool>,
        /// The resume position the frame carried.
        position: Position,
    },
    /// A notification: its position, and the payload id and conversation its data named.
    Notification {
        /// The frame's `conversationId`.
        conversation: String,
        /// The frame's `position`.
        position: Position,
        /// The `p`/`s` of its data.
        payload: PayloadId,
        /// The conversation its data says it was published to.
        published_to: String,
    },
    /// `unsubscribed` with a reason (the edge ended the subscription), or an error frame naming the
    /// conversation: no longer (or not) subscribed.
    Dropped {
        /// The conversation.
        conversation: String,
        /// The frame, for the report.
        why: String,
    },
    /// A frame the client could not make sense of (not JSON, a notification without position, ...).
    Garbled {
        /// The frame.
        frame: String,
    },
    /// The connection ended: the close code, `None` without a close frame (reset, EOF, a timeout).
    Closed {
        /// The code of the edge's close frame.
        code: Option<u16>,
    },
}

/// Everything one client saw.
#[derive(Debug, Clone, Default)]
pub struct History {
    /// The client's index, for the report.
    pub client: usize,
    /// Its events, in order.
    pub events: Vec<Event>,
}
