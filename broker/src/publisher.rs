//! One publish: validate the conversation id and payload, pick the partition, encode the versioned
//! `StreamEntry`, append it. Shared by every gRPC surface that publishes (and by `crier dev`'s helpers).

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use crier_proto::v1::{STREAM_ENTRY_VERSION, StreamEntry};
use crier_proto::{Position, partition};
use prost::Message;

use crate::config::{BrokerConfig, MAX_CONVERSATION_ID_LEN};
use crate::error::BrokerError;
use crate::log::PartitionedLog;

/// Validates and appends notifications. Cheap to clone.
#[derive(Clone)]
pub struct Publisher {
    log: Arc<dyn PartitionedLog>,
    max_payload_bytes: usize,
}

impl Publisher {
    /// A publisher appending to `log` with the limits of `config`.
    #[must_use]
    pub fn new(log: Arc<dyn PartitionedLog>, config: &BrokerConfig) -> Self {
        Self { log, max_payload_bytes: config.max_payload_bytes }
    }

    /// Appends one notification; returns where it landed.
    pub async fn publish(&self, conversation_id: &str, payload: Bytes) -> Result<Position, BrokerError> {
        validate_conversation_id(conversation_id).map_err(BrokerError::InvalidConversationId)?;
        validate_payload(&payload, self.max_payload_bytes).map_err(BrokerError::InvalidPayload)?;
        let partition = partition(conversation_id, self.log.partitions());
        let entry = StreamEntry {
            version: STREAM_ENTRY_VERSION,
            conversation_id: conversation_id.to_owned(),
            payload,
            published_at_ms: now_ms(),
            trace_context: Default::default(),
        };
        let id = self.log.append(partition, entry.encode_to_vec().into()).await?;
        Ok(Position { partition, id })
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// 1..=256 printable ASCII characters (0x20..=0x7E). The edge applies the same rule to subscriptions.
pub fn validate_conversation_id(id: &str) -> Result<(), String> {
    if id.is_empty() {
        return Err("must not be empty".into());
    }
    if id.len() > MAX_CONVERSATION_ID_LEN {
        return Err(format!("{} bytes, at most {MAX_CONVERSATION_ID_LEN} allowed", id.len()));
    }
    if let Some(pos) = id.bytes().position(|b| !(0x20..=0x7e).contains(&b)) {
        return Err(format!("byte {pos} is not printable ASCII"));
    }
    Ok(())
}

/// A JSON object of at most `max_bytes` bytes.
fn validate_payload(payload: &[u8], max_bytes: usize) -> Result<(), String> {
    if payload.len() > max_bytes {
        return Err(format!("{} bytes, at most {max_bytes} allowed", payload.len()));
    }
    if payload.trim_ascii_start().first() != Some(&b'{') {
        return Err("must be a JSON object".into());
    }
    serde_json::from_slice::<serde::de::IgnoredAny>(payload)
        .map(|_| ())
        .map_err(|e| format!("not valid JSON: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Conversation ids: length bounds and printable ASCII, each with its reason.
    #[test]
    fn conversation_id_rules() {
        assert!(validate_conversation_id("c1").is_ok());
        assert!(validate_conversation_id(&"x".repeat(256)).is_ok());
        assert!(validate_conversation_id("").unwrap_err().contains("empty"));
        assert!(validate_conversation_id(&"x".repeat(257)).unwrap_err().contains("at most 256"));
        assert!(validate_conversation_id("a\nb").unwrap_err().contains("byte 1"));
        assert!(validate_conversation_id("é").is_err());
    }

    /// Payloads: JSON objects only, within the size limit.
    #[test]
    fn payload_rules() {
        assert!(validate_payload(br#"{"type":"job-status"}"#, 64).is_ok());
        assert!(validate_payload(b" {}", 64).is_ok());
        assert!(validate_payload(b"[1]", 64).unwrap_err().contains("JSON object"));
        assert!(validate_payload(b"{", 64).unwrap_err().contains("not valid JSON"));
        assert!(validate_payload(b"{} x", 64).unwrap_err().contains("not valid JSON"));
        assert!(validate_payload(&[b' '; 65], 64).unwrap_err().contains("at most 64"));
    }
}
