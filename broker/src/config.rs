//! Broker settings. Built by the CLI from flags (or directly by tests) and validated before any port is bound.

use crier_proto::conversation_id::{self, DEFAULT_MAX_CONVERSATION_ID_BYTES};
use crier_proto::partition::DEFAULT_PARTITIONS;

/// Largest accepted payload by default: notifications are small ("notify, then fetch").
pub const DEFAULT_MAX_PAYLOAD_BYTES: usize = 64 * 1024;
/// Longest accepted idempotency key.
pub const MAX_IDEMPOTENCY_KEY_LEN: usize = 128;
/// Most items of one `PublishBatch` or conversations of one `Broadcast`.
pub const MAX_BATCH_ITEMS: usize = 1000;

/// What the broker needs besides its log and listener.
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    /// Number of partitions; must equal the log's.
    pub partitions: u32,
    /// Largest accepted payload, in bytes.
    pub max_payload_bytes: usize,
    /// Longest accepted conversation id, in bytes; edges must use the same.
    pub max_conversation_id_bytes: usize,
    /// How long an idempotency key is remembered.
    pub dedupe_window: std::time::Duration,
    /// Shared bearer secret callers of `PublishService` and `AccessService` must present; `None` lets
    /// every caller through (`crier dev`). Never logged.
    pub api_token: Option<String>,
    /// Bearer secret callers of `AdminService` must present instead of `api_token`; `None` keeps
    /// `AdminService` behind `api_token`. Never logged.
    pub admin_token: Option<String>,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        Self {
            partitions: DEFAULT_PARTITIONS,
            max_payload_bytes: DEFAULT_MAX_PAYLOAD_BYTES,
            max_conversation_id_bytes: DEFAULT_MAX_CONVERSATION_ID_BYTES,
            dedupe_window: crier_store::log::DEFAULT_DEDUPE_WINDOW,
            api_token: None,
            admin_token: None,
        }
    }
}

impl BrokerConfig {
    /// Every problem with this config, one line each; empty when it is usable.
    #[must_use]
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.partitions == 0 || self.partitions > 16_384 {
            problems.push(format!("--partitions must be 1..=16384, got {}", self.partitions));
        }
        if self.max_payload_bytes == 0 || self.max_payload_bytes > 16 * 1024 * 1024 {
            problems
                .push(format!("--max-payload-bytes must be 1..=16777216, got {}", self.max_payload_bytes));
        }
        problems.extend(conversation_id::max_bytes_problem(self.max_conversation_id_bytes));
        if self.dedupe_window.is_zero() {
            problems.push("--dedupe-window must be positive".to_owned());
        }
        if self.api_token.as_ref().is_some_and(|t| t.len() < 16) {
            problems.push("--api-token must be at least 16 bytes".to_owned());
        }
        if self.admin_token.as_ref().is_some_and(|t| t.len() < 16) {
            problems.push("--admin-token must be at least 16 bytes".to_owned());
        }
        problems
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Defaults are valid; zero partitions, zero payload size, a short token and an out-of-range
    /// conversation-id limit are each reported.
    #[test]
    fn reports_each_problem() {
        assert!(BrokerConfig::default().problems().is_empty());
        let bad = BrokerConfig {
            partitions: 0,
            max_payload_bytes: 0,
            max_conversation_id_bytes: 1025,
            api_token: Some("short".into()),
            ..BrokerConfig::default()
        };
        assert_eq!(bad.problems().len(), 4, "{:?}", bad.problems());
    }
}
