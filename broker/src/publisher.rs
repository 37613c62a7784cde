//! Publishing: validate the conversation id, payload and idempotency key, pick the partition, encode the
//! versioned `StreamEntry`, append it. Shared by every gRPC surface that publishes (single, batch,
//! broadcast) and by `crier dev`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use crier_proto::conversation_id::{validate_conversation_id, validate_printable};
use crier_proto::keys::dedupe_token;
use crier_proto::v1::{STREAM_ENTRY_VERSION, StreamEntry};
use crier_proto::{Position, partition};
use prost::Message;

use crate::config::{BrokerConfig, MAX_IDEMPOTENCY_KEY_LEN};
use crate::error::BrokerError;
use crier_store::log::{Dedupe, PartitionedLog};
use crier_store::telemetry;

/// Validates and appends notifications. Cheap to clone.
#[derive(Clone)]
pub struct Publisher {
    log: Arc<dyn PartitionedLog>,
    max_payload_bytes: usize,
    max_conversation_id_bytes: usize,
    dedupe_window: Duration,
}

/// One notification to publish.
#[derive(Debug, Clone)]
pub struct Item {
    /// The conversation.
    pub conversation_id: String,
    /// The JSON object, verbatim.
    pub payload: Bytes,
    /// Optional idempotency key (`""` for none).
    pub idempotency_key: String,
}

/// Where a published notification landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Published {
    /// Its position.
    pub position: Position,
    /// `true` when its idempotency key had been seen: nothing new was appended.
    pub duplicate: bool,
}

impl Publisher {
    /// A publisher appending to `log` with the limits of `config`.
    #[must_use]
    pub fn new(log: Arc<dyn PartitionedLog>, config: &BrokerConfig) -> Self {
        Self {
            log,
            max_payload_bytes: config.max_payload_bytes,
            max_conversation_id_bytes: config.max_conversation_id_bytes,
            dedupe_window: config.dedupe_window,
        }
    }

    /// Longest conversation id this publisher accepts; the other services of the broker apply the same.
    #[must_use]
    pub fn max_conversation_id_bytes(&self) -> usize {
        self.max_conversation_id_bytes
    }

    /// The log this publisher appends to.
    #[must_use]
    pub fn log(&self) -> &Arc<dyn PartitionedLog> {
        &self.log
    }

    /// Appends one notification; returns where it landed.
    pub async fn publish(&self, item: &Item) -> Result<Published, BrokerError> {
        let partition = self.validate(item)?;
        self.append(partition, item).await
    }

    /// Appends many notifications: in order within each partition, partitions concurrently (so a Redis
    /// connection pipelines them). One result per item, in input order.
    pub async fn publish_many(&self, items: &[Item]) -> Vec<Result<Published, BrokerError>> {
        let mut results: Vec<Option<Result<Published, BrokerError>>> = items.iter().map(|_| None).collect();
        // Bound: this one batch (≤ MAX_BATCH_ITEMS items), dropped with the call.
        let mut by_partition: BTreeMap<u32, Vec<usize>> = BTreeMap::new();
        for (index, item) in items.iter().enumerate() {
            match self.validate(item) {
                Ok(partition) => by_partition.entry(partition).or_default().push(index),
                Err(err) => results[index] = Some(Err(err)),
            }
        }
        let groups = by_partition.into_iter().map(|(partition, indices)| async move {
            let mut done = Vec::with_capacity(indices.len());
            for index in indices {
                done.push((index, self.append(partition, &items[index]).await));
            }
            done
        });
        for (index, result) in futures_util::future::join_all(groups).await.into_iter().flatten() {
            results[index] = Some(result);
        }
        results
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Err(BrokerError::Internal("item not processed"))))
            .collect()
    }

    /// Checks `item`; returns its partition.
    fn validate(&self, item: &Item) -> Result<u32, BrokerError> {
        validate_conversation_id(&item.conversation_id, self.max_conversation_id_bytes)
            .map_err(BrokerError::InvalidConversationId)?;
        validate_payload(&item.payload, self.max_payload_bytes).map_err(BrokerError::InvalidPayload)?;
        validate_idempotency_key(&item.idempotency_key).map_err(BrokerError::InvalidIdempotencyKey)?;
        Ok(partition(&item.conversation_id, self.log.partitions()))
    }

    async fn append(&self, partition: u32, item: &Item) -> Result<Published, BrokerError> {
        let entry = StreamEntry {
            version: STREAM_ENTRY_VERSION,
            conversation_id: item.conversation_id.clone(),
            payload: item.payload.clone(),
            published_at_ms: telemetry::now_ms(),
            // The caller's span (the `publish` RPC span): empty unless tracing is on and it is sampled.
            trace_context: telemetry::inject(&tracing::Span::current()),
        };
        let token = (!item.idempotency_key.is_empty())
            .then(|| dedupe_token(&item.conversation_id, &item.idempotency_key));
        let dedupe = token.as_deref().map(|token| Dedupe { token, window: self.dedupe_window });
        let appended = self.log.append(partition, entry.encode_to_vec().into(), dedupe).await?;
        let position = Position { partition, epoch: appended.epoch, id: appended.id };
        Ok(Published { position, duplicate: appended.duplicate })
    }
}

/// Empty (no key) or up to 128 printable ASCII characters.
fn validate_idempotency_key(key: &str) -> Result<(), String> {
    validate_printable(key, MAX_IDEMPOTENCY_KEY_LEN)
}

/// A JSON object of at most `max_bytes` bytes, UTF-8 throughout.
///
/// The JSON check skips the contents of strings without validating them, so UTF-8 is checked first, over
/// the whole payload: the edge forwards it verbatim as a text frame, and one invalid byte there makes every
/// conforming client fail the connection (1007), again on each replay.
fn validate_payload(payload: &[u8], max_bytes: usize) -> Result<(), String> {
    if payload.len() > max_bytes {
        return Err(format!("{} bytes, at most {max_bytes} allowed", payload.len()));
    }
    if let Err(err) = std::str::from_utf8(payload) {
        return Err(format!("not valid UTF-8 (byte {})", err.valid_up_to()));
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
    use crier_store::log::MemoryLog;

    /// The configured conversation-id limit is the one applied: at it passes, one byte over is refused.
    #[tokio::test]
    async fn configured_conversation_id_limit_applies() {
        let config = BrokerConfig { partitions: 8, max_conversation_id_bytes: 4, ..BrokerConfig::default() };
        let publisher = Publisher::new(Arc::new(MemoryLog::new(8, 100)), &config);
        assert_eq!(publisher.max_conversation_id_bytes(), 4);
        assert!(publisher.publish(&item("abcd", "{}", "")).await.is_ok());
        let refused = publisher.publish(&item("abcde", "{}", "")).await.unwrap_err();
        assert_eq!(refused.to_string(), "invalid conversation_id: 5 bytes, at most 4 allowed");
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
        let invalid = validate_payload(b"{\"a\":\"\xff\"}", 64).unwrap_err();
        assert_eq!(invalid, "not valid UTF-8 (byte 6)");
    }

    fn item(conversation: &str, payload: &'static str, key: &str) -> Item {
        Item {
            conversation_id: conversation.into(),
            payload: Bytes::from_static(payload.as_bytes()),
            idempotency_key: key.into(),
        }
    }

    /// A batch answers per item, in input order, rejecting bad items without stopping good ones.
    #[tokio::test]
    async fn batch_results_follow_input_order() {
        let publisher = Publisher::new(
            Arc::new(MemoryLog::new(8, 100)),
            &BrokerConfig { partitions: 8, ..BrokerConfig::default() },
        );
        let items =
            [item("a", "{}", ""), item("b", "[]", ""), item("a", r#"{"n":2}"#, ""), item("", "{}", "")];
        let results = publisher.publish_many(&items).await;
        assert!(results[0].is_ok() && results[2].is_ok());
        assert!(matches!(results[1], Err(BrokerError::InvalidPayload(_))));
        assert!(matches!(results[3], Err(BrokerError::InvalidConversationId(_))));
        let (first, second) = (results[0].as_ref().unwrap(), results[2].as_ref().unwrap());
        assert!(first.position.id < second.position.id, "same partition keeps input order");
    }

    /// The same idempotency key on the same conversation appends once; on another conversation it does not
    /// collide.
    #[tokio::test]
    async fn idempotency_key_appends_once_per_conversation() {
        let publisher = Publisher::new(
            Arc::new(MemoryLog::new(8, 100)),
            &BrokerConfig { partitions: 8, ..BrokerConfig::default() },
        );
        let first = publisher.publish(&item("a", "{}", "k1")).await.unwrap();
        let again = publisher.publish(&item("a", "{}", "k1")).await.unwrap();
        let other = publisher.publish(&item("b", "{}", "k1")).await.unwrap();
        assert_eq!((again.position, again.duplicate), (first.position, true));
        assert!(!other.duplicate);
    }
}
